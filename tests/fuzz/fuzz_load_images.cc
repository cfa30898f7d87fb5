// libFuzzer target: the whole-set validator (restorer::load_images) over an image directory built from
// the input. Input format, repeated: u8 name length (mod 32), name, u32 LE data length, data.
// With CRSHIM_FUZZ_WRITE_SEEDS=DIR set, writes seed inputs (a valid single-process set and the
// fixture sets, pages left out) to DIR and exits.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include <google/protobuf/stubs/logging.h>

#include "checkpoint/base/sys.h"
#include "checkpoint/restore/images.h"
#include "tests/unit/image_set_builder.h"

namespace {

using namespace crshim;
namespace fs = std::filesystem;

constexpr size_t kMaxFiles = 24;

struct State {
  std::string dir;
  int dirfd = -1;
  std::vector<std::string> written;  // by the previous input, removed before the next
};

State& state() {
  static State s;  // one scratch directory per fuzzing process
  return s;
}

std::string sanitize(std::string name) {
  for (char& c : name)
    if (!isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '.' && c != '_') c = '_';
  if (name.empty() || name == "." || name == "..") return "";
  return name;
}

void put_u32(std::string& out, uint32_t v) {
  for (int i = 0; i < 4; i++) out.push_back(char(v >> (8 * i)));
}

// Encodes the *.img files of `dir` in the input format (raw payload images left out if asked).
std::string pack(const fs::path& dir, bool skip_pages) {
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file()) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  std::string out;
  for (const auto& f : files) {
    std::string name = f.filename().string();
    if (name.size() > 31 || !name.ends_with(".img")) continue;
    if (skip_pages && image::is_raw_file(name)) continue;
    std::ifstream in(f, std::ios::binary);
    std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    out.push_back(char(name.size()));
    out += name;
    put_u32(out, uint32_t(data.size()));
    out += data;
  }
  return out;
}

void write_file(const fs::path& path, const std::string& data) {
  std::ofstream(path, std::ios::binary) << data;
}

int write_seeds(const char* out_dir) {
  fs::create_directories(out_dir);
  imgtest::TempDir tmp;
  auto st = imgtest::write_image_set(tmp.fd(), imgtest::single_process_set());
  if (!st) {
    fprintf(stderr, "%s\n", st.error().render().c_str());
    return 1;
  }
  write_file(fs::path(out_dir) / "single-process", pack(tmp.path(), false));
  for (const auto& e : fs::directory_iterator(fs::path(CRSHIM_FIXTURES_DIR) / "criu-4.2"))
    if (e.is_directory()) write_file(fs::path(out_dir) / ("fixture-" + e.path().filename().string()), pack(e.path(), true));
  return 0;
}

void fail_check(const char* what, const std::string& detail) {
  fprintf(stderr, "%s: %s\n", what, detail.c_str());
  abort();
}

// What restore does with a set that passed validation must not throw or index out of range.
void use_like_restore(const restorer::ImageSet& set) {
  for (const auto& p : set.processes) {
    if (p.cores.size() != size_t(p.pstree.threads_size())) fail_check("cores", std::to_string(p.pid()));
    if (!p.alive()) continue;
    (void)set.files.at(p.mm.exe_file_id()).reg().name();
    (void)set.files.at(p.fs.root_id()).reg().name();
    (void)set.files.at(p.fs.cwd_id()).reg().name();
    for (const auto& fd : p.fds) (void)set.files.at(fd.id());
    for (const auto& v : p.mm.vmas())
      if (v.status() & (1u << 6 | 1u << 7)) (void)set.files.at(uint32_t(v.shmid()));
    for (const auto& c : p.cores) {
      const auto& tcore = c.thread_core();
      if (tcore.seccomp_mode() != filter) continue;
      uint32_t i = tcore.seccomp_filter();
      for (int guard = 0; guard <= set.seccomp.seccomp_filters_size(); guard++) {
        const auto& f = set.seccomp.seccomp_filters().at(int(i));
        if (!f.has_prev()) break;
        i = f.prev();
      }
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  google::protobuf::SetLogHandler(nullptr);
  if (const char* out = getenv("CRSHIM_FUZZ_WRITE_SEEDS")) exit(write_seeds(out));
  State& s = state();
  std::string base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : fs::temp_directory_path().string();
  std::string tmpl = base + "/crshim-fuzz-XXXXXX";
  if (!mkdtemp(tmpl.data())) abort();
  s.dir = tmpl;
  s.dirfd = open(s.dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (s.dirfd < 0) abort();
  atexit([] {
    std::error_code ec;
    fs::remove_all(state().dir, ec);
  });
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  State& s = state();
  for (const auto& n : s.written) unlinkat(s.dirfd, n.c_str(), 0);
  s.written.clear();

  size_t off = 0;
  while (off < size && s.written.size() < kMaxFiles) {
    size_t nlen = data[off++] % 32;
    if (size - off < nlen + 4) break;
    std::string name = sanitize(std::string(reinterpret_cast<const char*>(data + off), nlen));
    off += nlen;
    uint32_t dlen;
    memcpy(&dlen, data + off, 4);
    off += 4;
    size_t len = std::min<size_t>(dlen, size - off);
    if (!name.empty()) {
      int fd = openat(s.dirfd, name.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
      if (fd < 0) abort();
      if (len && write(fd, data + off, len) != ssize_t(len)) abort();
      close(fd);
      s.written.push_back(name);
    }
    off += len;
  }

  auto set = restorer::load_images(s.dirfd);
  if (!set) {
    const Error& e = set.error();
    bool honest = e.code == Errc::corrupt_image || e.code == Errc::incompatible || e.code == Errc::unsupported;
    if (!honest || e.object.empty() || e.message.empty()) fail_check("unexpected error", e.render());
    return 0;
  }
  use_like_restore(*set);
  return 0;
}
