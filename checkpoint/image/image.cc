#include "checkpoint/image/image.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "checkpoint/base/sys.h"
#include "checkpoint/image/catalog.h"

namespace crshim::image {

namespace {

constexpr size_t kWriteBuffer = 1u << 20;

void put_u32(std::string& out, uint32_t v) { out.append(reinterpret_cast<const char*>(&v), 4); }

Error corrupt(const std::string& name, uint64_t offset, std::string what) {
  return make_error(Errc::corrupt_image, "read", name, "at offset " + std::to_string(offset) + ": " + std::move(what))
      .with_hint("the image is truncated or damaged; re-create it with a new dump");
}

}  // namespace

// ---- Writer ----

Result<Writer> Writer::create(int dirfd, const std::string& name, const Kind& kind) {
  auto fd = CR_TRY(sys::open_at(dirfd, name, O_WRONLY | O_CREAT | O_TRUNC, 0600));
  Writer w(std::move(fd), name);
  if (kind.magic == kMagicInventory) {
    put_u32(w.buf_, kMagicInventory);
  } else if (kind.magic != 0) {
    put_u32(w.buf_, kind.service ? kImgService : kImgCommon);
    put_u32(w.buf_, kind.magic);
  }
  return w;
}

Result<Writer> Writer::create_raw(int dirfd, const std::string& name) {
  auto fd = CR_TRY(sys::open_at(dirfd, name, O_WRONLY | O_CREAT | O_TRUNC, 0600));
  return Writer(std::move(fd), name);
}

Status Writer::write(const google::protobuf::Message& msg) {
  if (!msg.IsInitialized())
    return fail(make_error(Errc::internal, "write", name_,
                           "message " + msg.GetTypeName() + " misses required fields: " + msg.InitializationErrorString()));
  size_t size = msg.ByteSizeLong();
  if (size > kMaxEntrySize)
    return fail(make_error(Errc::internal, "write", name_, "entry of " + std::to_string(size) + " bytes is too large"));
  put_u32(buf_, uint32_t(size));
  size_t at = buf_.size();
  buf_.resize(at + size);
  if (!msg.SerializeToArray(buf_.data() + at, int(size)))
    return fail(make_error(Errc::internal, "serialize", name_, msg.GetTypeName()));
  if (buf_.size() >= kWriteBuffer) return flush();
  return {};
}

Status Writer::write_raw(const void* data, size_t size) {
  if (size >= kWriteBuffer) {
    // Big payloads (pages) go straight to the file; no point copying them through the buffer.
    CR_OK(flush());
    CR_OK(sys::write_all(fd_.get(), data, size, name_));
    bytes_ += size;
    return {};
  }
  buf_.append(static_cast<const char*>(data), size);
  if (buf_.size() >= kWriteBuffer) return flush();
  return {};
}

Status Writer::flush() {
  if (buf_.empty()) return {};
  CR_OK(sys::write_all(fd_.get(), buf_, name_));
  bytes_ += buf_.size();
  buf_.clear();
  return {};
}

Status Writer::close() {
  CR_OK(flush());
  int fd = fd_.release();
  if (fd >= 0 && ::close(fd) < 0) return fail(sys_error("close", name_));
  return {};
}

Status write_single(int dirfd, const std::string& name, const Kind& kind, const google::protobuf::Message& msg) {
  auto w = CR_TRY(Writer::create(dirfd, name, kind));
  CR_OK(w.write(msg));
  return w.close();
}

// ---- Reader ----

Result<Reader> Reader::from_fd(UniqueFd fd, const std::string& name) {
  Reader r(std::move(fd), name, nullptr);
  CR_OK(r.fill(4));
  if (r.buf_.size() < 4) return fail(corrupt(name, 0, "file too short for an image header"));
  uint32_t first;
  memcpy(&first, r.buf_.data(), 4);
  if (first == kMagicInventory) {
    r.kind_ = find_kind(kMagicInventory);
    r.pos_ = 4;
  } else {
    CR_OK(r.fill(8));
    if (r.buf_.size() < 8) return fail(corrupt(name, 0, "file too short for an image header"));
    uint32_t second;
    memcpy(&second, r.buf_.data() + 4, 4);
    if (first != kImgCommon && first != kImgService) {
      char hex[16];
      snprintf(hex, sizeof hex, "0x%08x", first);
      return fail(corrupt(name, 0, std::string("unknown class magic ") + hex));
    }
    r.kind_ = find_kind(second);
    if (!r.kind_ || r.kind_->service != (first == kImgService)) {
      char hex[16];
      snprintf(hex, sizeof hex, "0x%08x", second);
      return fail(corrupt(name, 4, std::string("unknown image magic ") + hex));
    }
    r.pos_ = 8;
  }
  r.offset_ = r.pos_;
  return r;
}

Result<Reader> Reader::open_any(int dirfd, const std::string& name) {
  auto fd = CR_TRY(sys::open_at(dirfd, name, O_RDONLY));
  return from_fd(std::move(fd), name);
}

Result<Reader> Reader::open(int dirfd, const std::string& name, const Kind& kind) {
  auto r = CR_TRY(open_any(dirfd, name));
  if (r.kind_->magic != kind.magic)
    return fail(make_error(Errc::corrupt_image, "open", name,
                           std::string("holds a ") + r.kind_->name + " image, expected " + kind.name));
  return r;
}

// Makes at least `want` unread bytes available in buf_ (fewer only at EOF).
Status Reader::fill(size_t want) {
  if (pos_ > 0 && pos_ == buf_.size()) {
    buf_.clear();
    pos_ = 0;
  }
  while (!eof_ && buf_.size() - pos_ < want) {
    if (pos_ > (1u << 20)) {
      buf_.erase(0, pos_);
      pos_ = 0;
    }
    // Grow by at most 1 MiB per read: a huge length in a tiny file must not allocate it all up front.
    size_t chunk = std::clamp<size_t>(want - (buf_.size() - pos_), 64 * 1024, 1u << 20);
    size_t at = buf_.size();
    buf_.resize(at + chunk);
    ssize_t n;
    do {
      n = ::read(fd_.get(), buf_.data() + at, chunk);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
      buf_.resize(at);
      return fail(sys_error("read", name_));
    }
    buf_.resize(at + size_t(n));
    if (n == 0) eof_ = true;
  }
  return {};
}

Result<bool> Reader::read(google::protobuf::Message& msg) {
  CR_OK(fill(4));
  size_t avail = buf_.size() - pos_;
  if (avail == 0) return false;
  if (avail < 4) return fail(corrupt(name_, offset_, "truncated entry length"));
  uint32_t len;
  memcpy(&len, buf_.data() + pos_, 4);
  if (len > kMaxEntrySize)
    return fail(corrupt(name_, offset_, "entry length " + std::to_string(len) + " exceeds the limit of " +
                                            std::to_string(kMaxEntrySize)));
  CR_OK(fill(4 + size_t(len)));
  if (buf_.size() - pos_ < 4 + size_t(len))
    return fail(corrupt(name_, offset_, "truncated entry: " + std::to_string(len) + " bytes announced, " +
                                            std::to_string(buf_.size() - pos_ - 4) + " present"));
  // Partial parse plus our own required-field check: protobuf's ParseFromArray would also log to stderr.
  bool ok = false;
  try {
    ok = msg.ParsePartialFromArray(buf_.data() + pos_ + 4, int(len));
  } catch (...) {
    ok = false;
  }
  if (!ok) return fail(corrupt(name_, offset_, "cannot decode " + msg.GetTypeName()));
  if (!msg.IsInitialized())
    return fail(corrupt(name_, offset_,
                        "cannot decode " + msg.GetTypeName() + " (missing " + msg.InitializationErrorString() + ")"));
  pos_ += 4 + size_t(len);
  offset_ += 4 + len;
  return true;
}

Status Reader::read_raw(void* data, size_t size) {
  auto* out = static_cast<char*>(data);
  while (size > 0) {
    CR_OK(fill(std::min<size_t>(size, 1u << 20)));
    size_t avail = buf_.size() - pos_;
    if (avail == 0) return fail(corrupt(name_, offset_, "truncated payload: " + std::to_string(size) + " bytes missing"));
    size_t n = std::min(avail, size);
    memcpy(out, buf_.data() + pos_, n);
    out += n;
    size -= n;
    pos_ += n;
    offset_ += n;
  }
  return {};
}

Result<std::string> Reader::read_raw(size_t size) {
  if (size > (1ull << 32)) return fail(corrupt(name_, offset_, "payload of " + std::to_string(size) + " bytes is absurd"));
  // Grow as data arrives, so a lying length in a tiny file cannot make us allocate gigabytes.
  std::string out;
  while (out.size() < size) {
    size_t step = std::min<size_t>(size - out.size(), 1u << 20);
    size_t at = out.size();
    out.resize(at + step);
    CR_OK(read_raw(out.data() + at, step));
  }
  return out;
}

Status Reader::read_one(google::protobuf::Message& msg) {
  bool got = CR_TRY(read(msg));
  if (!got) return fail(make_error(Errc::corrupt_image, "read", name_, "image holds no entry"));
  std::unique_ptr<google::protobuf::Message> extra(msg.New());
  bool more = CR_TRY(read(*extra));
  if (more) return fail(make_error(Errc::corrupt_image, "read", name_, "image holds more than one entry"));
  return {};
}

}  // namespace crshim::image
