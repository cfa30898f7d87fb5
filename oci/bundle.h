// OCI bundle front end (config.json -> engine requests).
#pragma once
