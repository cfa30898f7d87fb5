// Schema tests: our proto/ files against real CRIU 4.2 images (byte-identical round trips) and
// against Debian's crit (it must decode what we encode, field names and values intact).
#include <gtest/gtest.h>
#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>
#include <google/protobuf/unknown_field_set.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "cgroup.pb.h"
#include "core.pb.h"
#include "fdinfo.pb.h"
#include "fs.pb.h"
#include "inventory.pb.h"
#include "ipc-var.pb.h"
#include "mm.pb.h"
#include "mnt.pb.h"
#include "pagemap.pb.h"
#include "pipe-data.pb.h"
#include "rpc.pb.h"
#include "seccomp.pb.h"
#include "stats.pb.h"
#include "timens.pb.h"
#include "utsns.pb.h"

namespace crshim {
namespace {

namespace fs = std::filesystem;
namespace pb = google::protobuf;
using nlohmann::json;

constexpr uint32_t kInventoryMagic = 0x58313116;  // the only single-word header
constexpr uint32_t kImgCommon = 0x54564319;
constexpr uint32_t kImgService = 0x55105940;
constexpr uint32_t kCoreMagic = 0x55053847;
constexpr uint32_t kMmMagic = 0x57492820;
constexpr uint32_t kFilesMagic = 0x56303138;

// Raw bytes that follow an entry (pipes-data carries the pipe contents after each entry).
using ExtraLen = uint64_t (*)(const pb::Message&);
uint64_t pipe_data_extra(const pb::Message& m) {
  return static_cast<const pipe_data_entry&>(m).bytes();
}

struct Schema {
  const pb::Message* head;   // type of the first entry, when it differs (pagemap)
  const pb::Message* entry;  // type of every (other) entry
  ExtraLen extra;
};

// Image magic -> our message type, for every kind the fixtures contain.
const std::map<uint32_t, Schema>& schemas() {
  static const std::map<uint32_t, Schema> table = {
      {kInventoryMagic, {nullptr, &inventory_entry::default_instance(), nullptr}},
      {0x50273030, {nullptr, &pstree_entry::default_instance(), nullptr}},         // PSTREE
      {kCoreMagic, {nullptr, &core_entry::default_instance(), nullptr}},           // CORE
      {0x54432030, {nullptr, &task_kobj_ids_entry::default_instance(), nullptr}},  // IDS
      {kMmMagic, {nullptr, &mm_entry::default_instance(), nullptr}},               // MM
      {0x56084025, {&pagemap_head::default_instance(), &pagemap_entry::default_instance(), nullptr}},
      {0x51403912, {nullptr, &fs_entry::default_instance(), nullptr}},      // FS
      {0x56213732, {nullptr, &fdinfo_entry::default_instance(), nullptr}},  // FDINFO
      {kFilesMagic, {nullptr, &file_entry::default_instance(), nullptr}},   // FILES
      {0x56453709, {nullptr, &pipe_data_entry::default_instance(), pipe_data_extra}},  // PIPES_DATA
      {0x64413049, {nullptr, &seccomp_entry::default_instance(), nullptr}},  // SECCOMP
      {0x43114433, {nullptr, &timens_entry::default_instance(), nullptr}},   // TIMENS
      {0x57093306, {nullptr, &stats_entry::default_instance(), nullptr}},    // STATS
      {0x59383330, {nullptr, &cgroup_entry::default_instance(), nullptr}},   // CGROUP
      {0x55563928, {nullptr, &mnt_entry::default_instance(), nullptr}},      // MNTS
      {0x54473203, {nullptr, &utsns_entry::default_instance(), nullptr}},    // UTSNS
      {0x53115007, {nullptr, &ipc_var_entry::default_instance(), nullptr}},  // IPC_VAR
  };
  return table;
}

struct Image {
  uint32_t magic = 0;
  std::vector<std::unique_ptr<pb::Message>> entries;
  std::vector<std::string> extras;  // raw bytes after each entry (empty for most kinds)
};

uint32_t le32(const std::string& data, size_t off) {
  const auto* p = reinterpret_cast<const unsigned char*>(data.data() + off);
  return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
}

std::string read_whole(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Unknown fields mean the schema lacks a field (or has the wrong wire type for one).
void expect_no_unknown_fields(const pb::Message& m, const std::string& where) {
  const pb::Reflection* r = m.GetReflection();
  EXPECT_TRUE(r->GetUnknownFields(m).empty()) << where << ": unknown fields in " << m.GetTypeName();
  std::vector<const pb::FieldDescriptor*> fields;
  r->ListFields(m, &fields);
  for (const pb::FieldDescriptor* f : fields) {
    if (f->cpp_type() != pb::FieldDescriptor::CPPTYPE_MESSAGE) continue;
    if (f->is_repeated()) {
      for (int i = 0; i < r->FieldSize(m, f); ++i)
        expect_no_unknown_fields(r->GetRepeatedMessage(m, f, i), where + "." + f->name());
    } else {
      expect_no_unknown_fields(r->GetMessage(m, f), where + "." + f->name());
    }
  }
}

// Decodes one image file and checks every entry: parses, is initialized, has no unknown fields
// and re-serializes to exactly the bytes CRIU wrote.
void decode_image(const fs::path& path, Image* out) {
  const std::string data = read_whole(path);
  const std::string name = path.filename().string();
  ASSERT_GE(data.size(), 4u) << name;
  size_t pos = 0;
  const uint32_t first = le32(data, 0);
  if (first == kInventoryMagic) {
    out->magic = first;
    pos = 4;
  } else {
    ASSERT_TRUE(first == kImgCommon || first == kImgService) << name << ": class magic " << std::hex << first;
    ASSERT_GE(data.size(), 8u) << name;
    out->magic = le32(data, 4);
    pos = 8;
    // Service-class files are exactly the stats ones.
    EXPECT_EQ(first == kImgService, out->magic == 0x57093306) << name;
  }
  auto it = schemas().find(out->magic);
  ASSERT_NE(it, schemas().end()) << name << ": no schema for magic 0x" << std::hex << out->magic;
  const Schema& schema = it->second;

  while (pos < data.size()) {
    const size_t index = out->entries.size();
    const std::string where = name + "[" + std::to_string(index) + "]";
    ASSERT_LE(pos + 4, data.size()) << where << ": truncated length word";
    const uint32_t len = le32(data, pos);
    pos += 4;
    ASSERT_LE(pos + len, data.size()) << where << ": truncated payload";
    const std::string payload = data.substr(pos, len);
    pos += len;

    const pb::Message* proto = (index == 0 && schema.head) ? schema.head : schema.entry;
    std::unique_ptr<pb::Message> msg(proto->New());
    ASSERT_TRUE(msg->ParseFromString(payload)) << where << " as " << proto->GetTypeName();
    EXPECT_TRUE(msg->IsInitialized()) << where << ": missing " << msg->InitializationErrorString();
    expect_no_unknown_fields(*msg, where);
    EXPECT_EQ(msg->SerializeAsString(), payload) << where << ": round trip differs";

    std::string extra;
    if (schema.extra) {
      const uint64_t n = schema.extra(*msg);
      ASSERT_LE(pos + n, data.size()) << where << ": truncated raw payload";
      extra = data.substr(pos, n);
      pos += n;
    }
    out->entries.push_back(std::move(msg));
    out->extras.push_back(std::move(extra));
  }
  EXPECT_EQ(pos, data.size()) << name;
}

bool is_raw_or_foreign(const std::string& name) {
  auto ends = [&](const std::string& s) {
    return name.size() >= s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0;
  };
  return name.rfind("pages-", 0) == 0 || ends(".tar.gz.img") || name == "descriptors.json" ||
         name.rfind("README", 0) == 0;
}

fs::path fixtures() { return fs::path(CRSHIM_FIXTURES_DIR) / "criu-4.2"; }

template <class M>
const M& entry(const Image& img, size_t i) {
  return static_cast<const M&>(*img.entries.at(i));
}

Image load(const std::string& set, const std::string& file) {
  Image img;
  decode_image(fixtures() / set / file, &img);
  return img;
}

TEST(SchemaFixtures, EveryImageRoundTripsByteForByte) {
  std::map<std::string, size_t> files_per_set;
  std::map<std::string, size_t> entries;  // "set/file" -> entry count
  for (const auto& set : fs::directory_iterator(fixtures())) {
    if (!set.is_directory()) continue;
    for (const auto& file : fs::directory_iterator(set.path())) {
      const std::string name = file.path().filename().string();
      if (!file.is_regular_file() || is_raw_or_foreign(name)) continue;
      SCOPED_TRACE(file.path().string());
      Image img;
      ASSERT_NO_FATAL_FAILURE(decode_image(file.path(), &img));
      ++files_per_set[set.path().filename().string()];
      entries[set.path().filename().string() + "/" + name] = img.entries.size();
    }
  }
  // Every protobuf image of both sets was visited (raw pages/tar files excluded).
  EXPECT_EQ(files_per_set["busybox-pipe-tree"], 25u);
  EXPECT_EQ(files_per_set["runc-busybox-ticker"], 22u);

  EXPECT_EQ(entries["busybox-pipe-tree/pstree.img"], 3u);
  EXPECT_EQ(entries["busybox-pipe-tree/inventory.img"], 1u);
  EXPECT_EQ(entries["busybox-pipe-tree/core-737.img"], 1u);
  EXPECT_EQ(entries["busybox-pipe-tree/fdinfo-2.img"], 5u);
  EXPECT_EQ(entries["busybox-pipe-tree/files.img"], 12u);
  EXPECT_EQ(entries["busybox-pipe-tree/pagemap-735.img"], 8u);  // head + 7 entries
  EXPECT_EQ(entries["busybox-pipe-tree/pipes-data.img"], 1u);
  EXPECT_EQ(entries["busybox-pipe-tree/seccomp.img"], 1u);
  EXPECT_EQ(entries["runc-busybox-ticker/pstree.img"], 2u);
  EXPECT_EQ(entries["runc-busybox-ticker/cgroup.img"], 1u);
  EXPECT_GT(entries["runc-busybox-ticker/mountpoints-13.img"], 10u);
}

TEST(SchemaFixtures, BusyboxTreeValues) {
  const std::string set = "busybox-pipe-tree";

  Image pstree = load(set, "pstree.img");
  ASSERT_EQ(pstree.entries.size(), 3u);
  const uint32_t pids[] = {735, 737, 738}, ppids[] = {0, 735, 737};
  for (size_t i = 0; i < 3; ++i) {
    const auto& e = entry<pstree_entry>(pstree, i);
    EXPECT_EQ(e.pid(), pids[i]);
    EXPECT_EQ(e.ppid(), ppids[i]);
    EXPECT_EQ(e.pgid(), 735u);
    EXPECT_EQ(e.sid(), 735u);
    ASSERT_EQ(e.threads_size(), 1);
    EXPECT_EQ(e.threads(0), pids[i]);
  }

  Image inv = load(set, "inventory.img");
  ASSERT_EQ(inv.entries.size(), 1u);
  const auto& ie = entry<inventory_entry>(inv, 0);
  EXPECT_EQ(ie.img_version(), 2u);
  EXPECT_TRUE(ie.fdinfo_per_id());
  EXPECT_TRUE(ie.ns_per_id());
  EXPECT_EQ(ie.root_ids().mnt_ns_id(), 6u);
  EXPECT_EQ(ie.root_ids().time_ns_id(), 5u);
  EXPECT_EQ(ie.lsmtype(), NO_LSM);
  EXPECT_TRUE(ie.has_plugins_entry());
  EXPECT_EQ(ie.plugins_entry().plugins_size(), 0);
  EXPECT_EQ(ie.dump_criu_run_id(), "2f4ed3d4-17d9-4236-9159-42969c026712");

  Image ids = load(set, "ids-735.img");
  EXPECT_EQ(entry<task_kobj_ids_entry>(ids, 0).files_id(), 2u);
  EXPECT_EQ(entry<task_kobj_ids_entry>(ids, 0).mnt_ns_id(), ie.root_ids().mnt_ns_id());

  Image core = load(set, "core-735.img");
  ASSERT_EQ(core.entries.size(), 1u);
  const auto& ce = entry<core_entry>(core, 0);
  EXPECT_EQ(ce.mtype(), core_entry::X86_64);
  ASSERT_TRUE(ce.has_tc());
  EXPECT_EQ(ce.tc().comm(), "busybox");  // the leader is busybox running as sh
  EXPECT_EQ(ce.tc().task_state(), 1u);
  EXPECT_EQ(ce.tc().sigactions_size(), 62);
  EXPECT_EQ(ce.tc().sigactions(1).sigaction(), 1u);  // SIGINT ignored in the background job
  EXPECT_EQ(ce.tc().rlimits().rlimits_size(), 16);
  EXPECT_EQ(ce.tc().rlimits().rlimits(3).cur(), 8388608u);  // RLIMIT_STACK
  EXPECT_EQ(ce.tc().loginuid(), 4294967295u);
  const auto& ti = ce.thread_info();
  EXPECT_EQ(ti.clear_tid_addr(), 252868240u);
  EXPECT_EQ(ti.gpregs().ip(), 4285923u);
  EXPECT_EQ(ti.gpregs().sp(), 140720365200312u);
  EXPECT_EQ(ti.gpregs().fs_base(), 252867520u);
  EXPECT_EQ(ti.gpregs().mode(), NATIVE);
  EXPECT_EQ(ti.fpregs().st_space_size(), 32);
  EXPECT_EQ(ti.fpregs().xmm_space_size(), 64);
  EXPECT_EQ(ti.fpregs().mxcsr(), 8064u);
  EXPECT_EQ(ti.fpregs().cwd(), 895u);
  EXPECT_EQ(ti.fpregs().xsave().xstate_bv(), 162u);
  EXPECT_EQ(ti.fpregs().xsave().ymmh_space_size(), 64);
  EXPECT_EQ(ti.fpregs().xsave().hi16_zmm_size(), 128);
  ASSERT_EQ(ti.tls_size(), 3);
  EXPECT_EQ(ti.tls(0).entry_number(), 12u);
  EXPECT_TRUE(ti.tls(2).seg_not_present());
  const auto& tc = ce.thread_core();
  EXPECT_EQ(tc.futex_rla_len(), 24u);
  EXPECT_EQ(tc.sas().ss_flags(), 2u);  // SS_DISABLE
  EXPECT_EQ(tc.creds().cap_eff_size(), 2);
  EXPECT_EQ(tc.creds().cap_eff(0), 4278190079u);
  EXPECT_EQ(tc.creds().cap_eff(1), 511u);
  EXPECT_EQ(tc.rseq_entry().rseq_abi_size(), 32u);
  EXPECT_EQ(tc.rseq_entry().signature(), 1392848979u);

  Image mm = load(set, "mm-735.img");
  const auto& me = entry<mm_entry>(mm, 0);
  EXPECT_EQ(me.exe_file_id(), 1u);
  EXPECT_EQ(me.mm_saved_auxv_size(), 44);
  EXPECT_EQ(me.mm_arg_start(), 140720365207451u);
  EXPECT_EQ(me.dumpable(), 1);
  ASSERT_EQ(me.vmas_size(), 11);
  EXPECT_EQ(me.vmas(0).start(), 4194304u);
  EXPECT_EQ(me.vmas(0).status(), 0x41u);  // REGULAR | FILE_PRIVATE
  EXPECT_EQ(me.vmas(0).fd(), -1);         // zigzag sint64
  EXPECT_EQ(me.vmas(6).status(), 0x221u);  // heap
  EXPECT_EQ(me.vmas(7).madv(), 65536u);
  EXPECT_EQ(me.vmas(10).status(), 0x204u);  // vsyscall

  Image pagemap = load(set, "pagemap-735.img");
  EXPECT_EQ(entry<pagemap_head>(pagemap, 0).pages_id(), 1u);
  const auto& pe = entry<pagemap_entry>(pagemap, 1);
  EXPECT_EQ(pe.vaddr(), 4198400u);
  EXPECT_EQ(pe.compat_nr_pages(), 0u);
  EXPECT_EQ(pe.flags(), 4u);  // PE_PRESENT
  EXPECT_GT(pe.nr_pages(), 0u);

  Image fsimg = load(set, "fs-735.img");
  EXPECT_EQ(entry<fs_entry>(fsimg, 0).cwd_id(), 6u);
  EXPECT_EQ(entry<fs_entry>(fsimg, 0).root_id(), 7u);
  EXPECT_EQ(entry<fs_entry>(fsimg, 0).umask(), 18u);

  Image fdinfo = load(set, "fdinfo-2.img");
  EXPECT_EQ(entry<fdinfo_entry>(fdinfo, 4).type(), PIPE);
  EXPECT_EQ(entry<fdinfo_entry>(fdinfo, 4).fd(), 251u);

  Image files = load(set, "files.img");
  const auto& exe = entry<file_entry>(files, 0);
  EXPECT_EQ(exe.type(), REG);
  EXPECT_EQ(exe.reg().name(), "/usr/bin/busybox");
  EXPECT_EQ(exe.reg().mode(), 33261u);
  EXPECT_EQ(exe.reg().build_id_size(), 5);
  EXPECT_FALSE(exe.reg().has_mnt_id());
  EXPECT_EQ(exe.reg().mnt_id(), -1);  // declared default
  const auto& pipe = entry<file_entry>(files, 7);
  EXPECT_EQ(pipe.type(), PIPE);
  EXPECT_EQ(pipe.pipe().pipe_id(), 780696u);

  Image pipes = load(set, "pipes-data.img");
  ASSERT_EQ(pipes.entries.size(), 1u);
  EXPECT_EQ(entry<pipe_data_entry>(pipes, 0).pipe_id(), 780696u);
  EXPECT_EQ(entry<pipe_data_entry>(pipes, 0).size(), 65536u);
  EXPECT_EQ(pipes.extras[0], "hello-pipe-data\n");

  Image seccomp = load(set, "seccomp.img");
  EXPECT_EQ(entry<seccomp_entry>(seccomp, 0).seccomp_filters_size(), 0);

  Image timens = load(set, "timens-0.img");
  EXPECT_EQ(entry<timens_entry>(timens, 0).monotonic().tv_sec(), 4196u);
  EXPECT_EQ(entry<timens_entry>(timens, 0).boottime().tv_nsec(), 470373612u);

  Image stats = load(set, "stats-dump");
  EXPECT_EQ(entry<stats_entry>(stats, 0).dump().pages_written(), 52u);
  EXPECT_EQ(entry<stats_entry>(stats, 0).dump().pages_scanned(), 73u);
  EXPECT_FALSE(entry<stats_entry>(stats, 0).has_restore());
}

TEST(SchemaFixtures, RuncContainerValues) {
  const std::string set = "runc-busybox-ticker";

  Image pstree = load(set, "pstree.img");
  ASSERT_EQ(pstree.entries.size(), 2u);
  EXPECT_EQ(entry<pstree_entry>(pstree, 0).pid(), 1u);
  EXPECT_EQ(entry<pstree_entry>(pstree, 1).pid(), 17u);
  EXPECT_EQ(entry<pstree_entry>(pstree, 1).ppid(), 1u);

  Image core = load(set, "core-1.img");
  EXPECT_EQ(entry<core_entry>(core, 0).tc().comm(), "sh");
  EXPECT_EQ(entry<core_entry>(core, 0).thread_core().creds().cap_eff(0), 536871968u);

  Image uts = load(set, "utsns-12.img");
  EXPECT_EQ(entry<utsns_entry>(uts, 0).nodename(), "runc");
  EXPECT_EQ(entry<utsns_entry>(uts, 0).domainname(), "(none)");

  Image ipc = load(set, "ipcns-var-11.img");
  const auto& iv = entry<ipc_var_entry>(ipc, 0);
  ASSERT_EQ(iv.sem_ctls_size(), 4);
  EXPECT_EQ(iv.sem_ctls(1), 1024000000u);
  EXPECT_EQ(iv.shm_ctlmax(), 18446744073692774399u);
  EXPECT_EQ(iv.mq_msgsize_default(), 8192u);

  Image mnts = load(set, "mountpoints-13.img");
  const auto& m1 = entry<mnt_entry>(mnts, 1);
  EXPECT_EQ(m1.fstype(), uint32_t(TMPFS));
  EXPECT_EQ(m1.mountpoint(), "/proc/timer_list");
  EXPECT_EQ(m1.ext_key(), "/dev/null");
  EXPECT_EQ(entry<mnt_entry>(mnts, 4).fstype(), uint32_t(PROC));

  Image cg = load(set, "cgroup.img");
  const auto& ce = entry<cgroup_entry>(cg, 0);
  ASSERT_GE(ce.sets_size(), 1);
  EXPECT_EQ(ce.sets(0).id(), 2u);
  EXPECT_EQ(ce.sets(0).ctls(1).name(), "blkio");
  ASSERT_GE(ce.controllers_size(), 1);
  EXPECT_EQ(ce.controllers(0).cnames(0), "pids");
  EXPECT_EQ(ce.controllers(0).dirs(0).properties(0).name(), "pids.max");
}

// ---- crit decodes what we encode ----

constexpr const char* kCrit = "/usr/bin/crit";
constexpr const char* kSystemPython = "/usr/bin/python3";

struct CommandResult {
  int status = -1;
  std::string output;
};

CommandResult run(const std::string& cmd) {
  CommandResult r;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
  r.status = pclose(p);
  return r;
}

class TempFile {
 public:
  TempFile() {
    std::string tmpl = (fs::temp_directory_path() / "crshim-schema-XXXXXX").string();
    int fd = mkstemp(tmpl.data());
    if (fd >= 0) close(fd);
    path_ = tmpl;
  }
  ~TempFile() { std::error_code ec; fs::remove(path_, ec); }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

void put32(std::string* out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out->push_back(char((v >> (8 * i)) & 0xff));
}

// One-entry image: two-word header, u32 length, payload.
void write_image(const std::string& path, uint32_t magic, const pb::Message& m) {
  std::string data;
  put32(&data, kImgCommon);
  put32(&data, magic);
  const std::string payload = m.SerializeAsString();
  put32(&data, uint32_t(payload.size()));
  data += payload;
  std::ofstream(path, std::ios::binary) << data;
}

std::string base64(const std::string& in) {
  static const char* kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    uint32_t v = uint8_t(in[i]) << 16 | uint8_t(in[i + 1]) << 8 | uint8_t(in[i + 2]);
    for (int k = 3; k >= 0; --k) out += kAlphabet[(v >> (6 * k)) & 63];
  }
  if (i + 1 == in.size()) {
    uint32_t v = uint8_t(in[i]) << 16;
    out += std::string{kAlphabet[v >> 18], kAlphabet[(v >> 12) & 63], '=', '='};
  } else if (i + 2 == in.size()) {
    uint32_t v = uint8_t(in[i]) << 16 | uint8_t(in[i + 1]) << 8;
    out += std::string{kAlphabet[v >> 18], kAlphabet[(v >> 12) & 63], kAlphabet[(v >> 6) & 63], '='};
  }
  return out;
}

json scalar_json(const pb::Message& m, const pb::FieldDescriptor* f, int i) {
  const pb::Reflection* r = m.GetReflection();
  const bool rep = f->is_repeated();
  switch (f->cpp_type()) {
    case pb::FieldDescriptor::CPPTYPE_INT32: return rep ? r->GetRepeatedInt32(m, f, i) : r->GetInt32(m, f);
    case pb::FieldDescriptor::CPPTYPE_INT64: return rep ? r->GetRepeatedInt64(m, f, i) : r->GetInt64(m, f);
    case pb::FieldDescriptor::CPPTYPE_UINT32: return rep ? r->GetRepeatedUInt32(m, f, i) : r->GetUInt32(m, f);
    case pb::FieldDescriptor::CPPTYPE_UINT64: return rep ? r->GetRepeatedUInt64(m, f, i) : r->GetUInt64(m, f);
    case pb::FieldDescriptor::CPPTYPE_BOOL: return rep ? r->GetRepeatedBool(m, f, i) : r->GetBool(m, f);
    case pb::FieldDescriptor::CPPTYPE_ENUM:
      return (rep ? r->GetRepeatedEnum(m, f, i) : r->GetEnum(m, f))->name();
    case pb::FieldDescriptor::CPPTYPE_STRING: {
      std::string s = rep ? r->GetRepeatedString(m, f, i) : r->GetString(m, f);
      return f->type() == pb::FieldDescriptor::TYPE_BYTES ? json(base64(s)) : json(s);
    }
    default: return nullptr;
  }
}

std::string strip_newlines(std::string s) {
  std::erase(s, '\n');
  return s;
}

// Every field set in `m` must appear in crit's JSON under the same name with the same value.
void expect_json_matches(const pb::Message& m, const json& j, const std::string& where) {
  ASSERT_TRUE(j.is_object()) << where;
  std::vector<const pb::FieldDescriptor*> fields;
  m.GetReflection()->ListFields(m, &fields);
  for (const pb::FieldDescriptor* f : fields) {
    const std::string at = where + "." + f->name();
    ASSERT_TRUE(j.contains(f->name())) << at << " missing from crit output";
    const json& v = j.at(f->name());
    const int n = f->is_repeated() ? m.GetReflection()->FieldSize(m, f) : 1;
    if (f->is_repeated()) {
      ASSERT_EQ(v.size(), size_t(n)) << at;
    }
    for (int i = 0; i < n; ++i) {
      const json& item = f->is_repeated() ? v.at(i) : v;
      if (f->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE) {
        const pb::Message& sub = f->is_repeated() ? m.GetReflection()->GetRepeatedMessage(m, f, i)
                                                  : m.GetReflection()->GetMessage(m, f);
        expect_json_matches(sub, item, at);
      } else if (f->type() == pb::FieldDescriptor::TYPE_BYTES) {
        EXPECT_EQ(strip_newlines(item.get<std::string>()), scalar_json(m, f, i)) << at;
      } else {
        EXPECT_EQ(item, scalar_json(m, f, i)) << at;
      }
    }
  }
}

// Sets every singular scalar field of `m` to a distinct value derived from its number, so a
// field-number mismatch with crit's schema shows up as a wrong value under some name.
void fill_scalars(pb::Message* m, uint64_t seed) {
  const pb::Descriptor* d = m->GetDescriptor();
  const pb::Reflection* r = m->GetReflection();
  for (int i = 0; i < d->field_count(); ++i) {
    const pb::FieldDescriptor* f = d->field(i);
    if (f->is_repeated()) continue;
    const uint64_t v = seed + 7 * uint64_t(f->number());
    switch (f->cpp_type()) {
      case pb::FieldDescriptor::CPPTYPE_UINT64: r->SetUInt64(m, f, v << 20); break;
      case pb::FieldDescriptor::CPPTYPE_UINT32: r->SetUInt32(m, f, uint32_t(v)); break;
      case pb::FieldDescriptor::CPPTYPE_INT32: r->SetInt32(m, f, -int32_t(v)); break;
      case pb::FieldDescriptor::CPPTYPE_INT64: r->SetInt64(m, f, -int64_t(v)); break;
      case pb::FieldDescriptor::CPPTYPE_BOOL: r->SetBool(m, f, f->number() % 2 == 1); break;
      default: break;
    }
  }
}

json crit_decode(const pb::Message& m, uint32_t magic) {
  TempFile tmp;
  write_image(tmp.path(), magic, m);
  CommandResult r = run(std::string(kCrit) + " decode -i " + tmp.path() + " 2>&1");
  EXPECT_EQ(r.status, 0) << r.output;
  json j = json::parse(r.output, nullptr, false);
  EXPECT_FALSE(j.is_discarded()) << r.output;
  return j;
}

bool have_crit() { return access(kCrit, X_OK) == 0 && access(kSystemPython, X_OK) == 0; }

TEST(SchemaCrit, DecodesCoreEntry) {
  if (!have_crit()) GTEST_SKIP() << "crit not installed";
  core_entry core;
  core.set_mtype(core_entry::X86_64);
  thread_info_x86* ti = core.mutable_thread_info();
  ti->set_clear_tid_addr(0x7f0000001234);
  fill_scalars(ti->mutable_gpregs(), 0x1000);
  ti->mutable_gpregs()->set_mode(COMPAT);
  user_x86_fpregs_entry* fp = ti->mutable_fpregs();
  fill_scalars(fp, 0x2000);
  for (uint32_t i = 0; i < 32; ++i) fp->add_st_space(i * 3);
  for (uint32_t i = 0; i < 64; ++i) fp->add_xmm_space(0xffffff00u + i);
  fp->mutable_xsave()->set_xstate_bv(0xe7);
  for (uint64_t i = 0; i < 8; ++i) fp->mutable_xsave()->add_opmask_reg(i << 40);
  for (int i = 0; i < 3; ++i) {
    user_desc_t* tls = ti->add_tls();
    tls->set_entry_number(12 + i);
    tls->set_base_addr(0);
    tls->set_limit(0xfffff);
    tls->set_seg_32bit(i == 1);
    tls->set_contents_h(false);
    tls->set_contents_l(false);
    tls->set_read_exec_only(true);
    tls->set_limit_in_pages(i == 1);
    tls->set_seg_not_present(i != 1);
    tls->set_usable(i == 1);
  }
  task_core_entry* tc = core.mutable_tc();
  tc->set_task_state(1);
  tc->set_exit_code(0);
  tc->set_personality(0x0040000);
  tc->set_flags(0x400100);
  tc->set_blk_sigset(0xfffffffe7ffbfeffull);
  tc->set_comm("schema-test");
  tc->set_oom_score_adj(-999);  // plain int32: 10-byte varint
  sa_entry* sa = tc->add_sigactions();
  sa->set_sigaction(0x401234);
  sa->set_flags(0x4000000);
  sa->set_restorer(0x405678);
  sa->set_mask(1u << 13);
  sa->set_compat_sigaction(false);
  thread_core_entry* th = core.mutable_thread_core();
  th->set_futex_rla(0x7f0000004000);
  th->set_futex_rla_len(24);
  th->set_sched_nice(-5);  // zigzag
  th->set_seccomp_mode(filter);
  th->set_seccomp_filter(3);
  ASSERT_TRUE(core.IsInitialized()) << core.InitializationErrorString();

  json j = crit_decode(core, kCoreMagic);
  ASSERT_EQ(j.value("magic", ""), "CORE");
  ASSERT_EQ(j["entries"].size(), 1u);
  const json& e = j["entries"][0];
  EXPECT_EQ(e["mtype"], "X86_64");
  EXPECT_EQ(e["tc"]["comm"], "schema-test");
  EXPECT_EQ(e["tc"]["oom_score_adj"], -999);
  EXPECT_EQ(e["thread_core"]["sched_nice"], -5);
  EXPECT_EQ(e["thread_core"]["seccomp_mode"], "filter");
  EXPECT_EQ(e["thread_info"]["gpregs"]["mode"], "COMPAT");
  expect_json_matches(core, e, "core");
}

TEST(SchemaCrit, DecodesMmEntryWithVmas) {
  if (!have_crit()) GTEST_SKIP() << "crit not installed";
  mm_entry mm;
  fill_scalars(&mm, 0x400000);
  mm.set_dumpable(1);
  for (uint64_t i = 0; i < 44; ++i) mm.add_mm_saved_auxv(i % 2 ? 0x7ffd00000000 + i : i / 2);
  vma_entry* v = mm.add_vmas();
  v->set_start(0x400000);
  v->set_end(0x401000);
  v->set_pgoff(0);
  v->set_shmid(1);
  v->set_prot(5);
  v->set_flags(0x2);
  v->set_status(0x41);
  v->set_fd(-1);  // zigzag sint64
  v->set_fdflags(0);
  vma_entry* stack = mm.add_vmas();
  stack->set_start(0x7ffd00000000);
  stack->set_end(0x7ffd00021000);
  stack->set_pgoff(0);
  stack->set_shmid(0);
  stack->set_prot(3);
  stack->set_flags(0x122);
  stack->set_status(0x201);
  stack->set_fd(-1);
  stack->set_madv(1u << 14);
  aio_ring_entry* aio = mm.add_aios();
  aio->set_id(0x7f1234560000);
  aio->set_nr_req(128);
  aio->set_ring_len(8192);
  ASSERT_TRUE(mm.IsInitialized()) << mm.InitializationErrorString();

  json j = crit_decode(mm, kMmMagic);
  ASSERT_EQ(j.value("magic", ""), "MM");
  const json& e = j["entries"][0];
  EXPECT_EQ(e["vmas"][0]["fd"], -1);
  EXPECT_EQ(e["vmas"][1]["madv"], 16384);
  EXPECT_EQ(e["mm_saved_auxv"].size(), 44u);
  expect_json_matches(mm, e, "mm");
}

TEST(SchemaCrit, DecodesFileEntryWithReg) {
  if (!have_crit()) GTEST_SKIP() << "crit not installed";
  file_entry fe;
  fe.set_type(REG);
  fe.set_id(42);
  reg_file_entry* reg = fe.mutable_reg();
  reg->set_id(42);
  reg->set_flags(0x8002);  // O_LARGEFILE | O_RDWR
  reg->set_pos(123456789012ull);
  fill_scalars(reg->mutable_fown(), 1);
  reg->set_name("/tmp/some file \xe2\x9c\x93");
  reg->set_mnt_id(-7);  // zigzag sint32
  reg->set_size(4096);
  reg->set_mode(0100644);
  reg->add_build_id(0xdeadbeef);
  reg->add_build_id(0x01020304);
  ASSERT_TRUE(fe.IsInitialized()) << fe.InitializationErrorString();

  json j = crit_decode(fe, kFilesMagic);
  ASSERT_EQ(j.value("magic", ""), "FILES");
  const json& e = j["entries"][0];
  EXPECT_EQ(e["type"], "REG");
  EXPECT_EQ(e["reg"]["name"], "/tmp/some file \xe2\x9c\x93");
  EXPECT_EQ(e["reg"]["mnt_id"], -7);
  expect_json_matches(fe, e, "file");
}

TEST(SchemaCrit, CriuOwnRpcSchemaReadsOurRequest) {
  if (!have_crit()) GTEST_SKIP() << "crit not installed";
  criu_req req;
  req.set_type(DUMP);
  req.set_keep_open(false);
  criu_opts* o = req.mutable_opts();
  o->set_images_dir_fd(7);
  o->set_pid(4242);
  o->set_leave_running(true);
  o->set_log_level(4);
  o->set_log_file("dump.log");
  o->set_root("/run/container/rootfs");
  o->set_manage_cgroups_mode(SOFT);
  o->set_ghost_limit(0);
  o->add_external("mnt[/etc/hosts]:hosts");
  o->add_external("net[4026531992]:extnet");
  inherit_fd* ifd = o->add_inherit_fd();
  ifd->set_key("pipe:[758733]");
  ifd->set_fd(5);
  join_namespace* jn = o->add_join_ns();
  jn->set_ns("net");
  jn->set_ns_file("/proc/1/ns/net");
  o->mutable_ps()->set_address("127.0.0.1");
  o->mutable_ps()->set_port(27);
  o->set_network_lock(NFTABLES);
  o->set_pre_dump_mode(VM_READ);
  ASSERT_TRUE(req.IsInitialized()) << req.InitializationErrorString();

  TempFile tmp;
  std::ofstream(tmp.path(), std::ios::binary) << req.SerializeAsString();
  // CRIU's own compiled rpc schema (shipped with crit) must read our bytes without leftovers.
  const std::string script =
      "import json,sys; from pycriu import rpc_pb2; from pycriu.images import pb2dict; "
      "m = rpc_pb2.criu_req(); m.ParseFromString(open(sys.argv[1], 'rb').read()); "
      "assert m.SerializeToString() == open(sys.argv[1], 'rb').read(); "
      "print(json.dumps(pb2dict.pb2dict(m)))";
  CommandResult r = run(std::string(kSystemPython) + " -c \"" + script + "\" " + tmp.path() + " 2>&1");
  ASSERT_EQ(r.status, 0) << r.output;
  json j = json::parse(r.output, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << r.output;
  EXPECT_EQ(j["type"], "DUMP");
  EXPECT_EQ(j["opts"]["manage_cgroups_mode"], "SOFT");
  EXPECT_EQ(j["opts"]["network_lock"], "NFTABLES");
  EXPECT_EQ(j["opts"]["inherit_fd"][0]["key"], "pipe:[758733]");
  expect_json_matches(req, j, "req");
}

}  // namespace
}  // namespace crshim
