// Format oracle: a complete single-process image set written by the image library must be decodable by
// Debian's crit (CRIU 3.17), with the values we wrote showing up under CRIU's field names.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "tests/unit/image_set_builder.h"

namespace crshim {
namespace {

using nlohmann::json;
using namespace imgtest;

constexpr const char* kCrit = "/usr/bin/crit";

struct Decoded {
  int status = -1;
  std::string out, err;
  json j;
};

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Runs `crit decode -i FILE` for every name at once (each run is mostly interpreter start-up).
std::map<std::string, Decoded> crit_decode_all(const TempDir& dir, const std::vector<std::string>& names) {
  std::map<std::string, FILE*> running;
  for (const auto& n : names) {
    std::string cmd = std::string(kCrit) + " decode -i '" + dir.file(n) + "' 2>'" + dir.file(n) + ".err'";
    running[n] = popen(cmd.c_str(), "r");
  }
  std::map<std::string, Decoded> out;
  for (auto& [n, p] : running) {
    Decoded& d = out[n];
    if (!p) continue;
    char buf[8192];
    size_t got;
    while ((got = fread(buf, 1, sizeof buf, p)) > 0) d.out.append(buf, got);
    d.status = pclose(p);
    d.err = slurp(dir.file(n) + ".err");
    d.j = json::parse(d.out, nullptr, false);
  }
  return out;
}

class CritOracle : public ::testing::Test {
 protected:
  void SetUp() override {
    if (access(kCrit, X_OK) != 0) GTEST_SKIP() << "crit is not installed";
    ASSERT_FALSE(dir_.path().empty());
    auto st = write_image_set(dir_.fd(), spec_);
    ASSERT_TRUE(st) << st.error().render();
    for (const auto& e : std::filesystem::directory_iterator(dir_.path())) {
      std::string n = e.path().filename().string();
      if (!image::is_raw_file(n)) names_.push_back(n);
    }
  }

  // Decodes the images a test looks at, all at once.
  void decode(const std::vector<std::string>& names) { decoded_ = crit_decode_all(dir_, names); }

  const json& entries(const std::string& name, const char* magic) {
    static const json kNone = json::array();
    auto it = decoded_.find(name);
    EXPECT_NE(it, decoded_.end()) << name << " was not written";
    if (it == decoded_.end()) return kNone;
    const Decoded& d = it->second;
    EXPECT_EQ(d.status, 0) << name << ": " << d.err;
    EXPECT_FALSE(d.j.is_discarded()) << name << " is not JSON: " << d.out.substr(0, 200);
    if (d.j.is_discarded() || !d.j.contains("entries")) return kNone;
    EXPECT_EQ(d.j.value("magic", ""), magic) << name;
    return d.j["entries"];
  }

  ImageSetSpec spec_ = single_process_set();
  TempDir dir_;
  std::vector<std::string> names_;
  std::map<std::string, Decoded> decoded_;
};

// The tests below decode every one of these (crit's start-up dominates, so each image is decoded once).
TEST_F(CritOracle, TheSetHasElevenDecodableImages) {
  std::sort(names_.begin(), names_.end());
  const std::vector<std::string> want = {
      image::core_file(kTestPid), image::fdinfo_file(kTestFilesId), image::kFilesFile, image::fs_file(kTestPid),
      image::ids_file(kTestPid),  image::kInventoryFile,            image::mm_file(kTestPid),
      image::pagemap_file(kTestPid), image::kPstreeFile, image::kSeccompFile, image::kStatsDumpFile,
  };
  EXPECT_EQ(names_, want);
}

TEST_F(CritOracle, InventoryAndPstree) {
  decode({"inventory.img", "pstree.img"});
  const json& inv = entries("inventory.img", "INVENTORY");
  ASSERT_EQ(inv.size(), 1u);
  EXPECT_EQ(inv[0]["img_version"], 2);
  EXPECT_EQ(inv[0]["fdinfo_per_id"], true);
  EXPECT_EQ(inv[0]["root_ids"]["files_id"], 2);
  EXPECT_EQ(inv[0]["root_cg_set"], 1);  // (dump_criu_run_id is newer than crit 3.17)

  const json& ps = entries("pstree.img", "PSTREE");
  ASSERT_EQ(ps.size(), 1u);
  EXPECT_EQ(ps[0]["pid"], kTestPid);
  EXPECT_EQ(ps[0]["ppid"], 0);
  EXPECT_EQ(ps[0]["sid"], kTestPid);
  EXPECT_EQ(ps[0]["threads"], json::array({kTestPid}));
}

TEST_F(CritOracle, CoreRegistersTaskStateAndSigactions) {
  decode({image::core_file(kTestPid)});
  const json& core = entries(image::core_file(kTestPid), "CORE");
  ASSERT_EQ(core.size(), 1u);
  const json& c = core[0];
  EXPECT_EQ(c["mtype"], "X86_64");
  EXPECT_EQ(c["thread_info"]["gpregs"]["ip"], kTestIp);
  EXPECT_EQ(c["thread_info"]["gpregs"]["sp"], kTestSp);
  EXPECT_EQ(c["thread_info"]["gpregs"]["ax"], kTestPid);
  EXPECT_EQ(c["thread_info"]["gpregs"]["mode"], "NATIVE");
  EXPECT_EQ(c["thread_info"]["fpregs"]["mxcsr"], 0x1f80);
  EXPECT_EQ(c["thread_info"]["fpregs"]["xmm_space"].size(), 64u);
  EXPECT_EQ(c["thread_info"]["tls"].size(), 3u);
  EXPECT_EQ(c["tc"]["comm"], kTestComm);
  EXPECT_EQ(c["tc"]["task_state"], 1);
  EXPECT_EQ(c["tc"]["blk_sigset"], 0x10000);
  ASSERT_EQ(c["tc"]["sigactions"].size(), 62u);
  // signal 15 is the 13th entry: 1..8, 10..15 (9 skipped)
  EXPECT_EQ(c["tc"]["sigactions"][13]["sigaction"], 0x401500);
  EXPECT_EQ(c["tc"]["rlimits"]["rlimits"].size(), 16u);
  EXPECT_EQ(c["tc"]["rlimits"]["rlimits"][7]["cur"], 1024);
  EXPECT_EQ(c["tc"]["timers"]["real"]["vsec"], 30);
  EXPECT_EQ(c["thread_core"]["creds"]["uid"], 1000);
  EXPECT_EQ(c["thread_core"]["creds"]["groups"], json::array({1001}));
  EXPECT_EQ(c["thread_core"]["seccomp_mode"], "filter");
  EXPECT_EQ(c["thread_core"]["futex_rla_len"], 24);
}

TEST_F(CritOracle, IdsMmAndPagemap) {
  decode({image::ids_file(kTestPid), image::mm_file(kTestPid), image::pagemap_file(kTestPid)});
  const json& ids = entries(image::ids_file(kTestPid), "IDS");
  ASSERT_EQ(ids.size(), 1u);
  EXPECT_EQ(ids[0]["files_id"], kTestFilesId);
  EXPECT_EQ(ids[0]["mnt_ns_id"], 15);

  const json& mm = entries(image::mm_file(kTestPid), "MM");
  ASSERT_EQ(mm.size(), 1u);
  EXPECT_EQ(mm[0]["exe_file_id"], kExeId);
  EXPECT_EQ(mm[0]["mm_brk"], kTestHeapStart + 0x21000);
  EXPECT_EQ(mm[0]["mm_saved_auxv"].size(), 44u);
  ASSERT_EQ(mm[0]["vmas"].size(), 4u);
  EXPECT_EQ(mm[0]["vmas"][0]["start"], kTestTextStart);
  EXPECT_EQ(mm[0]["vmas"][0]["shmid"], kExeId);
  EXPECT_EQ(mm[0]["vmas"][3]["start"], kTestStackStart);
  EXPECT_EQ(mm[0]["vmas"][3]["end"], kTestStackStart + 0x21000);
  EXPECT_EQ(mm[0]["vmas"][3]["fd"], -1);

  // crit 3.17 knows field 2 as nr_pages (CRIU 4.2 writes 0 there) and not field 5: only check the rest.
  const json& pm = entries(image::pagemap_file(kTestPid), "PAGEMAP");
  ASSERT_EQ(pm.size(), 4u);
  EXPECT_EQ(pm[0]["pages_id"], kTestPagesId);
  EXPECT_EQ(pm[1]["vaddr"], kTestDataStart);
  EXPECT_EQ(pm[1]["flags"], 4);
  EXPECT_EQ(pm[3]["vaddr"], kTestStackStart + 0x1f000);
}

TEST_F(CritOracle, FsFdinfoAndFiles) {
  decode({image::fs_file(kTestPid), image::fdinfo_file(kTestFilesId), image::kFilesFile});
  const json& fs = entries(image::fs_file(kTestPid), "FS");
  ASSERT_EQ(fs.size(), 1u);
  EXPECT_EQ(fs[0]["cwd_id"], kCwdId);
  EXPECT_EQ(fs[0]["root_id"], kRootId);
  EXPECT_EQ(fs[0]["umask"], 022);

  const json& fds = entries(image::fdinfo_file(kTestFilesId), "FDINFO");
  ASSERT_EQ(fds.size(), 4u);
  EXPECT_EQ(fds[3]["fd"], 3);
  EXPECT_EQ(fds[3]["id"], kDataFileId);
  EXPECT_EQ(fds[3]["type"], "REG");
  EXPECT_EQ(fds[3]["flags"], 1);

  const json& files = entries(image::kFilesFile, "FILES");
  ASSERT_EQ(files.size(), 5u);
  std::map<uint32_t, std::string> names;
  for (const auto& f : files) {
    EXPECT_EQ(f["type"], "REG");
    EXPECT_EQ(f["id"], f["reg"]["id"]);
    names[f["id"].get<uint32_t>()] = f["reg"]["name"].get<std::string>();
  }
  EXPECT_EQ(names[kExeId], kTestExe);
  EXPECT_EQ(names[kDataFileId], kTestDataFile);
  EXPECT_EQ(names[kRootId], "/");
  EXPECT_EQ(files[kDataFileId - 1]["reg"]["pos"], 17);
}

TEST_F(CritOracle, SeccompAndStats) {
  decode({image::kSeccompFile, image::kStatsDumpFile});
  const json& sc = entries(image::kSeccompFile, "SECCOMP");
  ASSERT_EQ(sc.size(), 1u);
  ASSERT_EQ(sc[0]["seccomp_filters"].size(), 1u);
  // base64 of the 8-byte ALLOW program (crit appends a newline)
  std::string filter = sc[0]["seccomp_filters"][0]["filter"].get<std::string>();
  std::erase(filter, '\n');
  EXPECT_EQ(filter, "BgAAAAAA/38=");

  const json& st = entries(image::kStatsDumpFile, "STATS");
  ASSERT_EQ(st.size(), 1u);
  EXPECT_EQ(st[0]["dump"]["pages_written"], 5);
  EXPECT_EQ(st[0]["dump"]["frozen_time"], 3400);
}

}  // namespace
}  // namespace crshim
