// OCI bundle front end (config.json -> engine requests): config parsing, the request plan, OCI hooks, archives.
#pragma once

#include "oci/archive.h"
#include "oci/config.h"
#include "oci/oci_hooks.h"
#include "oci/plan.h"
