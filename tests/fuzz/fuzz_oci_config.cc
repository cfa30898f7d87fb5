// libFuzzer target: config.json parsing and validation (oci::parse_config), and what the bundle verbs
// do with a config that parsed: the restore and checkpoint plans, the security check, the hook state.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "oci/config.h"
#include "oci/plan.h"

namespace {

using namespace crshim;

// Every failure names config.json and says which field is wrong.
void check_error(const Error& e, const char* what) {
  if (e.message.empty() || e.render().empty()) {
    fprintf(stderr, "%s: an error without a message: '%s'\n", what, e.render().c_str());
    abort();
  }
}

void use_config(const oci::Config& c) {
  // Whatever parsed must satisfy what the bundle verbs rely on.
  if (c.root_path.empty()) {
    fprintf(stderr, "parse_config accepted an empty root.path\n");
    abort();
  }
  for (const auto* list : {&c.hooks.prestart, &c.hooks.create_runtime, &c.hooks.create_container,
                           &c.hooks.start_container, &c.hooks.poststart, &c.hooks.poststop})
    for (const auto& h : *list)
      if (h.path.empty() || h.path[0] != '/' || (h.timeout && *h.timeout <= 0)) {
        fprintf(stderr, "parse_config accepted hook path '%s' timeout %d\n", h.path.c_str(), h.timeout.value_or(0));
        abort();
      }

  oci::HostView host;
  host.hierarchies.push_back({{""}, "/sys/fs/cgroup"});
  host.hierarchies.push_back({{"cpu", "cpuacct"}, "/sys/fs/cgroup/cpu,cpuacct"});
  host.own_cgroups.push_back({"", "/user.slice", 0});
  host.own_cgroups.push_back({"cpu,cpuacct", "/user.slice", 0});
  oci::BundleRecord record{{{"/sys/fs/cgroup", "", "/ctr"}, {"/sys/fs/cgroup/cpu", "cpu,cpuacct", "/"}}, {"/dev/null"}};
  auto plan = oci::plan_restore(c, "/bundle", {"/dev/null", "pipe:[1]", "socket:[2]"}, record, host);
  if (!plan) check_error(plan.error(), "plan_restore");
  else if (plan->root.empty() || plan->root[0] != '/') {
    fprintf(stderr, "plan_restore made a relative root '%s'\n", plan->root.c_str());
    abort();
  }

  oci::ContainerView view;
  view.ns_inodes["net"] = 4026531840u;
  for (const auto& n : c.namespaces)
    if (!n.path.empty()) view.ns_path_inodes[n.path] = 4026531841u;
  auto cp = oci::plan_checkpoint(c, view);
  if (!cp) check_error(cp.error(), "plan_checkpoint");

  oci::InitSecurity init;
  init.caps.bounding = init.caps.effective = init.caps.permitted = 0x1ffffffffffull;
  if (auto st = oci::check_security(c, init); !st) check_error(st.error(), "check_security");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto c = oci::parse_config(text, "config.json");
  if (!c) {
    check_error(c.error(), "parse_config");
    if (c.error().object != "config.json") {
      fprintf(stderr, "parse_config error names '%s', not config.json\n", c.error().object.c_str());
      abort();
    }
  } else {
    use_config(*c);
  }
  // The other JSON files of a bundle checkpoint: they come from the images, which may be anything.
  if (auto d = oci::parse_descriptors(text); !d) check_error(d.error(), "parse_descriptors");
  if (auto r = oci::parse_record(text); !r) check_error(r.error(), "parse_record");
  else if (auto again = oci::parse_record(oci::record_json(*r)); !again || *again != *r) {
    fprintf(stderr, "crshim-oci.json does not round-trip\n");
    abort();
  }
  return 0;
}
