// Renders an image file as JSON, in the shape crit uses: {"magic": NAME, "entries": [...]}.
#pragma once

#include <string>

#include "checkpoint/base/result.h"

namespace crshim::image {

Result<std::string> image_to_json(int dirfd, const std::string& name);

}  // namespace crshim::image
