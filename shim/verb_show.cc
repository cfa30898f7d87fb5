// `crshim show FILE|DIR`: print images as JSON, like `crit show`.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <vector>

#include "checkpoint/base/sys.h"
#include "checkpoint/image/catalog.h"
#include "checkpoint/image/json.h"
#include "shim/verbs.h"

namespace crshim {

namespace {

bool is_image_name(const std::string& n) {
  auto ends = [&](const char* s) { return n.size() > strlen(s) && n.compare(n.size() - strlen(s), strlen(s), s) == 0; };
  return (ends(".img") || n == image::kStatsDumpFile || n == image::kStatsRestoreFile) && !image::is_raw_file(n);
}

}  // namespace

int run_show(const Options& opts) {
  int rc = 0;
  for (const auto& path : opts.args) {
    struct stat st;
    if (::stat(path.c_str(), &st) < 0) {
      fprintf(stderr, "Error: show: %s\n", sys_error("stat", path).render().c_str());
      rc = 1;
      continue;
    }
    if (!S_ISDIR(st.st_mode)) {
      auto json = image::image_to_json(AT_FDCWD, path);
      if (!json) {
        fprintf(stderr, "Error: show: %s\n", json.error().render().c_str());
        rc = 1;
        continue;
      }
      fputs(json->c_str(), stdout);
      continue;
    }
    std::vector<std::string> names;
    if (DIR* d = opendir(path.c_str())) {
      while (dirent* e = readdir(d))
        if (is_image_name(e->d_name)) names.push_back(e->d_name);
      closedir(d);
    }
    std::sort(names.begin(), names.end());
    auto dir = sys::open(path, O_RDONLY | O_DIRECTORY);
    if (!dir) {
      fprintf(stderr, "Error: show: %s\n", dir.error().render().c_str());
      rc = 1;
      continue;
    }
    printf("{");
    for (size_t i = 0; i < names.size(); i++) {
      auto json = image::image_to_json(dir->get(), names[i]);
      printf("%s\n\"%s\": ", i ? "," : "", names[i].c_str());
      if (json) {
        std::string body = *json;
        while (!body.empty() && body.back() == '\n') body.pop_back();
        fputs(body.c_str(), stdout);
      } else {
        std::string msg;
        for (char c : json.error().render()) {
          if (c == '"' || c == '\\') msg += '\\';
          if (static_cast<unsigned char>(c) >= 0x20) msg += c;
        }
        printf("{\"error\": \"%s\"}", msg.c_str());
        rc = 1;
      }
    }
    printf("\n}\n");
  }
  return rc;
}

}  // namespace crshim
