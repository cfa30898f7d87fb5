// The mount options reach the engine: CLI --root/--external mnt[...]/--ext-mount-map and RPC root/ext_mnt.
#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "checkpoint/mnt/mounts.h"
#include "shim/options.h"
#include "shim/requests.h"
#include "shim/rpc.h"

namespace crshim {
namespace {

using Pairs = std::vector<std::pair<std::string, std::string>>;

Result<Options> parse(std::vector<std::string> args) {
  ConfigSources src;
  src.etc_default = "/nonexistent/crshim-test/etc/default.conf";
  src.home_default = "/nonexistent/crshim-test/home/.criu/default.conf";
  args.insert(args.begin(), "crshim");
  std::vector<char*> argv;
  for (auto& s : args) argv.push_back(s.data());
  argv.push_back(nullptr);
  return parse_options(static_cast<int>(args.size()), argv.data(), src);
}

TEST(MntRequests, CliRestoreCarriesRootAndEveryExternalMountForm) {
  auto o = parse({"restore", "-D", "/img", "--root", "/new/root", "--external", "mnt[data]:/srv/data", "-M",
                  "/etc/hosts:/run/hosts"});
  ASSERT_TRUE(o.has_value()) << o.error().render();
  ASSERT_TRUE(refuse_unsupported(*o).has_value());
  RestoreRequest req = restore_request(*o);
  EXPECT_EQ(req.root, "/new/root");
  EXPECT_EQ(req.ext_mounts, (Pairs{{"/etc/hosts", "/run/hosts"}}));
  auto map = mnt::external_map(req.external, req.ext_mounts);
  ASSERT_TRUE(map.has_value());
  EXPECT_EQ(map->at("data"), "/srv/data");
  EXPECT_EQ(map->at("/etc/hosts"), "/run/hosts");
}

TEST(MntRequests, CliDumpCarriesExternalMounts) {
  auto o = parse({"dump", "-t", "42", "-D", "/img", "--external", "mnt[/data]:data", "--ext-mount-map", "/x:y"});
  ASSERT_TRUE(o.has_value()) << o.error().render();
  ASSERT_TRUE(refuse_unsupported(*o).has_value());
  DumpRequest req = dump_request(*o);
  EXPECT_EQ(req.external, std::vector<std::string>{"mnt[/data]:data"});
  EXPECT_EQ(req.ext_mounts, (Pairs{{"/x", "y"}}));
}

TEST(MntRequests, CliRefusesAutoDetectedExternalMounts) {
  for (auto args : {std::vector<std::string>{"dump", "-t", "42", "-D", "/img", "--ext-mount-map", "auto"},
                    std::vector<std::string>{"dump", "-t", "42", "-D", "/img", "--external", "mnt[]"}}) {
    auto o = parse(args);
    ASSERT_TRUE(o.has_value()) << o.error().render();
    auto st = refuse_unsupported(*o);
    ASSERT_FALSE(st.has_value()) << args.back();
    EXPECT_EQ(st.error().code, Errc::unsupported);
  }
}

TEST(MntRequests, RpcRestoreWithRootAndExtMntAsRuncSendsIt) {
  criu_req r;
  r.set_type(::RESTORE);
  criu_opts* opts = r.mutable_opts();
  opts->set_images_dir_fd(3);
  opts->set_root("/run/runc/ctr/criu-root");
  auto* m = opts->add_ext_mnt();
  m->set_key("/data");
  m->set_val("/srv/ctr-data");
  auto job = rpc::map_request(r, Options{}, rpc::Peer{4242, 0, 0}, rpc::Mode::swrk);
  ASSERT_TRUE(job.has_value()) << job.error().render();
  auto ignored = rpc::check_engine_support(*job);
  ASSERT_TRUE(ignored.has_value()) << ignored.error().render();
  for (const auto& s : *ignored) {
    EXPECT_EQ(s.find("root"), std::string::npos) << s;
    EXPECT_EQ(s.find("ext_mnt"), std::string::npos) << s;
  }
  RestoreRequest req = restore_request(job->opts);
  EXPECT_EQ(req.root, "/run/runc/ctr/criu-root");
  EXPECT_EQ(req.ext_mounts, (Pairs{{"/data", "/srv/ctr-data"}}));
}

}  // namespace
}  // namespace crshim
