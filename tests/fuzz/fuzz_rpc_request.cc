// libFuzzer target: the RPC request decoder, criu_req bytes -> engine options (rpc::map_request) and
// the engine-support check, in swrk and service mode, as a client's bytes reach them.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <google/protobuf/stubs/logging.h>

#include "rpc.pb.h"
#include "shim/rpc.h"

namespace {

using namespace crshim;

void expect_code(const Error& e, Errc want, const char* what) {
  if (e.code != want || e.message.empty()) {
    fprintf(stderr, "%s: unexpected error: %s\n", what, e.render().c_str());
    abort();
  }
}

void map(const criu_req& req, rpc::Mode mode) {
  Options base;
  base.log_file = "criu.log";
  rpc::Peer peer{::getpid(), 0, 0};
  auto job = rpc::map_request(req, base, peer, mode);
  if (!job) return expect_code(job.error(), Errc::invalid_argument, "map_request");
  // What map_request promises about every request it accepts.
  const Options& o = job->opts;
  // Positional arguments only ever come from exec_cmd (the command to run after a restore).
  if (o.images_dir.empty() || o.swrk_fd != -1 || (!o.args.empty() && !o.exec_cmd)) {
    fprintf(stderr, "map_request accepted a request with images_dir '%s', swrk_fd %d, %zu args\n",
            o.images_dir.c_str(), o.swrk_fd, o.args.size());
    abort();
  }
  const std::string log = o.log_file.value_or("");
  if (log.empty() || (log != "-" && log.find('/') != std::string::npos)) {
    fprintf(stderr, "map_request accepted log file '%s'\n", log.c_str());
    abort();
  }
  if (mode == rpc::Mode::service && !o.inherit_fds.empty()) {
    fprintf(stderr, "service mode accepted inherit_fd\n");
    abort();
  }
  auto support = rpc::check_engine_support(*job);
  if (!support) expect_code(support.error(), Errc::unsupported, "check_engine_support");
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  google::protobuf::SetLogHandler(nullptr);  // undecodable requests are expected here
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  criu_req req;
  if (!req.ParseFromArray(data, static_cast<int>(size))) return 0;
  // A config file would be read from this machine: the fuzzer's bytes name none.
  if (req.has_opts()) req.mutable_opts()->clear_config_file();
  map(req, rpc::Mode::swrk);
  map(req, rpc::Mode::service);
  return 0;
}
