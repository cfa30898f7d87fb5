#include "checkpoint/mem/compress.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "checkpoint/base/sys.h"

namespace crshim::mem {

namespace {

// Fast enough to keep up with the page copy on one core; memory images compress well even so.
constexpr int kLevel = 1;
constexpr uint32_t kZstdMagic = 0xFD2FB528;

Error zstd_error(const char* op, const std::string& object, size_t code) {
  return make_error(Errc::system, op, object, std::string("zstd: ") + ZSTD_getErrorName(code));
}

}  // namespace

Result<PagesCompressor> PagesCompressor::create() {
  PagesCompressor c;
  c.ctx_ = ZSTD_createCCtx();
  if (!c.ctx_) return fail(make_error(Errc::system, "zstd", "compressor", "out of memory"));
  size_t r = ZSTD_CCtx_setParameter(static_cast<ZSTD_CCtx*>(c.ctx_), ZSTD_c_compressionLevel, kLevel);
  if (ZSTD_isError(r)) return fail(zstd_error("set level", "compressor", r));
  c.buf_.resize(ZSTD_CStreamOutSize());
  return c;
}

PagesCompressor::PagesCompressor(PagesCompressor&& o) noexcept : ctx_(std::exchange(o.ctx_, nullptr)), buf_(std::move(o.buf_)) {}

PagesCompressor& PagesCompressor::operator=(PagesCompressor&& o) noexcept {
  if (this != &o) {
    ZSTD_freeCCtx(static_cast<ZSTD_CCtx*>(ctx_));
    ctx_ = std::exchange(o.ctx_, nullptr);
    buf_ = std::move(o.buf_);
  }
  return *this;
}

PagesCompressor::~PagesCompressor() { ZSTD_freeCCtx(static_cast<ZSTD_CCtx*>(ctx_)); }

Status PagesCompressor::pump(image::Writer& out, const void* data, size_t size, bool end) {
  ZSTD_inBuffer in{data, size, 0};
  for (;;) {
    ZSTD_outBuffer o{buf_.data(), buf_.size(), 0};
    size_t left = ZSTD_compressStream2(static_cast<ZSTD_CCtx*>(ctx_), &o, &in, end ? ZSTD_e_end : ZSTD_e_continue);
    if (ZSTD_isError(left)) return fail(zstd_error("compress", out.name(), left));
    if (o.pos) CR_OK(out.write_raw(buf_.data(), o.pos));
    if (end ? left == 0 : in.pos == in.size) return {};
  }
}

Status PagesCompressor::write(image::Writer& out, const void* data, size_t size) { return pump(out, data, size, false); }

Status PagesCompressor::finish(image::Writer& out) { return pump(out, nullptr, 0, true); }

Result<bool> is_compressed(int dirfd, const std::string& name) {
  auto fd = CR_TRY(sys::open_at(dirfd, name, O_RDONLY));
  uint32_t magic = 0;
  ssize_t n = ::pread(fd.get(), &magic, sizeof magic, 0);
  if (n < 0) return fail(sys_error("read", name));
  return n == sizeof magic && magic == kZstdMagic;
}

Result<PagesImage> PagesImage::open(int dirfd, const std::string& name) {
  auto fd = CR_TRY(sys::open_at(dirfd, name, O_RDONLY));
  struct stat st;
  if (::fstat(fd.get(), &st) < 0) return fail(sys_error("fstat", name));
  PagesImage img;
  if (st.st_size == 0) return img;
  void* file = ::mmap(nullptr, size_t(st.st_size), PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd.get(), 0);
  if (file == MAP_FAILED) return fail(sys_error("mmap", name));
  uint32_t magic = 0;
  if (size_t(st.st_size) >= sizeof magic) memcpy(&magic, file, sizeof magic);
  if (magic != kZstdMagic) {
    img.base_ = file;
    img.size_ = img.mapped_ = size_t(st.st_size);
    return img;
  }
  // Compressed: decompressed into anonymous memory that grows as needed (mremap moves no data).
  struct Unmap {
    void* p;
    size_t n;
    ~Unmap() { ::munmap(p, n); }
  } compressed{file, size_t(st.st_size)};
  std::unique_ptr<ZSTD_DCtx, size_t (*)(ZSTD_DCtx*)> ctx(ZSTD_createDCtx(), ZSTD_freeDCtx);
  if (!ctx) return fail(make_error(Errc::system, "zstd", name, "out of memory"));
  size_t cap = std::max<size_t>(size_t(st.st_size) * 4, 1u << 20);
  void* out = ::mmap(nullptr, cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (out == MAP_FAILED) return fail(sys_error("mmap", name + " (decompressed)"));
  img.base_ = out;
  img.mapped_ = cap;
  ZSTD_inBuffer in{file, size_t(st.st_size), 0};
  for (;;) {
    if (img.size_ == img.mapped_) {
      void* grown = ::mremap(img.base_, img.mapped_, img.mapped_ * 2, MREMAP_MAYMOVE);
      if (grown == MAP_FAILED) return fail(sys_error("mremap", name + " (decompressed)"));
      img.base_ = grown;
      img.mapped_ *= 2;
    }
    ZSTD_outBuffer o{static_cast<char*>(img.base_) + img.size_, img.mapped_ - img.size_, 0};
    size_t left = ZSTD_decompressStream(ctx.get(), &o, &in);
    if (ZSTD_isError(left)) return fail(make_error(Errc::corrupt_image, "decompress", name, ZSTD_getErrorName(left)));
    img.size_ += o.pos;
    if (in.pos < in.size || o.pos == o.size) continue;
    if (left == 0) break;  // every frame ended
    return fail(make_error(Errc::corrupt_image, "decompress", name, "the compressed image is truncated"));
  }
  ::mprotect(img.base_, img.mapped_, PROT_READ);
  return img;
}

PagesImage::PagesImage(PagesImage&& o) noexcept
    : base_(std::exchange(o.base_, nullptr)), size_(std::exchange(o.size_, 0)), mapped_(std::exchange(o.mapped_, 0)) {}

PagesImage& PagesImage::operator=(PagesImage&& o) noexcept {
  if (this != &o) {
    if (base_) ::munmap(base_, mapped_);
    base_ = std::exchange(o.base_, nullptr);
    size_ = std::exchange(o.size_, 0);
    mapped_ = std::exchange(o.mapped_, 0);
  }
  return *this;
}

PagesImage::~PagesImage() {
  if (base_) ::munmap(base_, mapped_);
}

}  // namespace crshim::mem
