// libFuzzer target: CRIU-syntax config files (apply_config_text), alone and as parse_options() reads
// them (a config file under a command line, then validation).
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "checkpoint/base/unique_fd.h"
#include "shim/options.h"

namespace {

using namespace crshim;

constexpr const char* kOrigin = "fuzz.conf";

// Every failure is one line naming the file and line it comes from.
void check_error(const Error& e, const std::string& origin) {
  std::string text = e.render();
  if (e.message.empty() || text.find(origin) == std::string::npos || text.find('\n') != std::string::npos) {
    fprintf(stderr, "unexpected error (wanted one line naming %s): %s\n", origin.c_str(), text.c_str());
    abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  Options o;
  if (Status st = apply_config_text(o, text, kOrigin); !st) check_error(st.error(), kOrigin);
  else (void)validate_options(o);

  // The same text as $CRIU_CONFIG_FILE under "crshim dump -t 1 -D /tmp".
  UniqueFd fd(memfd_create("fuzz-config", MFD_CLOEXEC));
  if (!fd.valid()) abort();
  for (size_t off = 0; off < size;) {
    ssize_t n = write(fd.get(), data + off, size - off);
    if (n <= 0) abort();
    off += size_t(n);
  }
  ConfigSources sources;
  sources.etc_default.clear();
  sources.env_file = "/proc/self/fd/" + std::to_string(fd.get());
  char a0[] = "crshim", a1[] = "dump", a2[] = "-t", a3[] = "1", a4[] = "-D", a5[] = "/tmp";
  char* argv[] = {a0, a1, a2, a3, a4, a5, nullptr};
  auto parsed = parse_options(6, argv, sources);
  if (parsed && (parsed->verb != Verb::dump || parsed->tree_pid != 1)) {
    fprintf(stderr, "a config file changed the command line's verb or pid\n");
    abort();
  }
  return 0;
}
