// A directory under $TMPDIR for one test, removed with everything in it.
#pragma once

#include <fcntl.h>
#include <stdlib.h>

#include <filesystem>
#include <string>
#include <system_error>

#include "checkpoint/base/unique_fd.h"

namespace crshim::test {

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "crshim-test-XXXXXX").string();
    if (mkdtemp(tmpl.data())) path_ = tmpl;
    if (!path_.empty()) fd_ = UniqueFd(::open(path_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  }
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  int fd() const { return fd_.get(); }
  std::string file(const std::string& name) const { return path_ + "/" + name; }
  bool has(const std::string& name) const { return std::filesystem::exists(file(name)); }

 private:
  std::string path_;
  UniqueFd fd_;
};

}  // namespace crshim::test
