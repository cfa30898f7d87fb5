// libFuzzer target: the image Reader and the JSON renderer over arbitrary bytes of any image kind.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include <google/protobuf/stubs/logging.h>

#include "checkpoint/image/catalog.h"
#include "checkpoint/image/image.h"
#include "checkpoint/image/json.h"

namespace {

using namespace crshim;

constexpr const char* kName = "fuzz.img";

UniqueFd memfd_with(const uint8_t* data, size_t size) {
  UniqueFd fd(memfd_create("fuzz-image", MFD_CLOEXEC));
  if (fd.get() < 0) abort();
  for (size_t off = 0; off < size;) {
    ssize_t n = write(fd.get(), data + off, size - off);
    if (n <= 0) abort();
    off += size_t(n);
  }
  lseek(fd.get(), 0, SEEK_SET);
  return fd;
}

// Every failure must be a corrupt-image error about the file, with a message.
void check_error(const Error& e) {
  if (e.code != Errc::corrupt_image || e.object != kName || e.message.empty() ||
      e.render().find(kName) == std::string::npos) {
    fprintf(stderr, "unexpected error: %s\n", e.render().c_str());
    abort();
  }
}

void read_all(const uint8_t* data, size_t size) {
  auto r = image::Reader::from_fd(memfd_with(data, size), kName);
  if (!r) return check_error(r.error());
  const image::Kind& k = r->kind();
  if (!k.entry) return;
  for (int n = 0;; n++) {
    bool head = n == 0 && k.head;
    std::unique_ptr<google::protobuf::Message> m((head ? k.head : k.entry)->New());
    auto got = r->read(*m);
    if (!got) return check_error(got.error());
    if (!*got) return;
    if (k.payload_size && !head) {
      auto st = r->read_raw(k.payload_size(*m));
      if (!st) return check_error(st.error());
    }
  }
}

// `show`'s path: whatever it renders must be JSON.
void render(const uint8_t* data, size_t size) {
  UniqueFd fd = memfd_with(data, size);
  std::string path = "/proc/self/fd/" + std::to_string(fd.get());
  auto text = image::image_to_json(AT_FDCWD, path);
  if (!text) return;
  if (nlohmann::json::parse(*text, nullptr, false).is_discarded()) {
    fprintf(stderr, "image_to_json produced invalid JSON:\n%s\n", text->c_str());
    abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  google::protobuf::SetLogHandler(nullptr);  // decoding failures are expected here, and reported as values
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  read_all(data, size);
  render(data, size);
  return 0;
}
