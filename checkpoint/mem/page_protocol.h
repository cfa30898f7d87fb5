// CRIU's page-server wire protocol: the fixed request header, its commands, how a pagemap is named on
// the wire and what each side answers. Shared by the page server, the dump side streaming to it and
// lazy restore (PS_IOV_GET). Facts match CRIU 3.x and 4.x so either side can be CRIU.
#pragma once

#include <cstdint>
#include <cstring>
#include <optional>

namespace crshim::mem::ps {

// Every request starts with this header, in the sender's native byte order (x86_64: little endian),
// no padding. Page data (nr_pages * 4096 bytes) follows an ADD whose flags say PRESENT.
struct Iov {
  uint32_t cmd = 0;       // command in the low 16 bits, pagemap entry flags above (encode_cmd)
  uint32_t nr_pages = 0;  // pages of the entry (ADD), asked for (GET)
  uint64_t vaddr = 0;     // first address of the entry (an offset in the object for shmem)
  uint64_t dst_id = 0;    // which pagemap: encode_dst
};
static_assert(sizeof(Iov) == 24, "page_server_iov is 24 bytes on the wire");

inline constexpr size_t kIovSize = sizeof(Iov);

// Commands.
inline constexpr uint32_t kAdd = 1;     // present pages follow (old senders)
inline constexpr uint32_t kHole = 2;    // pages left to the parent images (old senders)
inline constexpr uint32_t kOpen = 3;    // start a pagemap, no answer
inline constexpr uint32_t kOpen2 = 4;   // start a pagemap; answer: 1 byte, non-zero when the parent holds it
inline constexpr uint32_t kParent = 5;  // does the parent hold this pagemap? answer: int32 (1 yes, 0 no)
inline constexpr uint32_t kAddF = 6;    // an entry with its flags in cmd; data follows when PRESENT
inline constexpr uint32_t kGet = 7;     // lazy restore asks for pages; answer: an ADD header + data
inline constexpr uint32_t kClose = 0x1023;       // "flush": the dump is complete; answer: int32 status 0
inline constexpr uint32_t kForceClose = 0x1024;  // the same, and the server ends though the socket stays open

inline constexpr uint32_t kCmdBits = 16;
inline constexpr uint32_t kCmdMask = (1u << kCmdBits) - 1;
inline constexpr uint32_t kTypeBits = 8;
inline constexpr uint64_t kTypeMask = (1u << kTypeBits) - 1;

// pagemap_entry.flags (PE_*), carried in the high half of cmd by ADD_F.
inline constexpr uint32_t kPeParent = 1;
inline constexpr uint32_t kPeLazy = 2;
inline constexpr uint32_t kPePresent = 4;

// Page servers name the pages images they write from this id up, so that pages ids the dump side
// gives to images it keeps (shmem) never collide with them when both share one directory.
inline constexpr uint32_t kServerPagesIdBase = 0x10000 + 1;

inline constexpr uint32_t encode_cmd(uint32_t cmd, uint32_t flags) { return flags << kCmdBits | cmd; }
inline constexpr uint32_t cmd_of(uint32_t wire) { return wire & kCmdMask; }
inline constexpr uint32_t flags_of(uint32_t wire) { return wire >> kCmdBits; }

// What a pagemap belongs to: pagemap-<pid>.img or pagemap-shmem-<shmid>.img.
enum class Target : uint8_t { process = 1, shmem = 2 };

struct Dst {
  Target target;
  uint64_t id;  // the process's pid in the dump, or the shmem object's id
  bool operator==(const Dst&) const = default;
};

inline constexpr uint64_t encode_dst(Target t, uint64_t id) { return id << kTypeBits | uint64_t(t); }

// Also takes the type numbers older CRIUs sent (their image enum values at the time).
inline constexpr std::optional<Dst> decode_dst(uint64_t dst_id) {
  uint64_t id = dst_id >> kTypeBits;
  switch (dst_id & kTypeMask) {
    case 1: case 10: case 11: case 16: case 17: return Dst{Target::process, id};
    case 2: case 27: case 28: case 29: case 32: case 33: case 34: return Dst{Target::shmem, id};
    default: return std::nullopt;
  }
}

inline void encode(const Iov& iov, unsigned char out[kIovSize]) { std::memcpy(out, &iov, kIovSize); }
inline Iov decode(const unsigned char in[kIovSize]) {
  Iov iov;
  std::memcpy(&iov, in, kIovSize);
  return iov;
}

}  // namespace crshim::mem::ps
