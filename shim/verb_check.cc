// `crshim check` and `crshim features`: what this kernel offers checkpoint/restore.
#include <cstdio>
#include <string>

#include "checkpoint/kernel/features.h"
#include "shim/verbs.h"

namespace crshim {

namespace {

// The names `criu check --feature` takes for what crshim also uses, and whether this kernel has it.
struct NamedFeature {
  const char* name;
  bool (*has)(const kernel::Features&);
};

const NamedFeature kNamedFeatures[] = {
    {"mem_dirty_track", [](const kernel::Features& f) { return f.write_tracking(); }},
    {"uffd", [](const kernel::Features& f) { return f.userfaultfd; }},
    {"uffd-noncoop", [](const kernel::Features& f) { return f.lazy_restore(); }},
    {"pidfd_store", [](const kernel::Features& f) { return f.pidfd_store(); }},
    {"clone3_set_tid", [](const kernel::Features& f) { return f.clone3_set_tid; }},
    {"timens", [](const kernel::Features& f) { return f.time_ns; }},
    {"get_rseq_conf", [](const kernel::Features& f) { return f.ptrace_rseq_config; }},
};

// --feature NAME...: "NAME is supported" or "NAME is *NOT* supported" for each, as CRIU prints them;
// `list` names them all.
int check_named(const kernel::Features& f, const std::vector<std::string>& names) {
  int rc = 0;
  for (const auto& name : names) {
    if (name == "list") {
      for (const auto& nf : kNamedFeatures) printf("%s\n", nf.name);
      continue;
    }
    const NamedFeature* found = nullptr;
    for (const auto& nf : kNamedFeatures)
      if (name == nf.name) found = &nf;
    if (!found) {
      fprintf(stderr, "Error: check failed: unknown feature '%s'; hint: `crshim check --feature list` names them\n",
              name.c_str());
      return 1;
    }
    bool has = found->has(f);
    printf("%s is %ssupported\n", found->name, has ? "" : "*NOT* ");
    if (!has) rc = 1;
  }
  return rc;
}

}  // namespace

int run_check(const Options& opts) {
  auto f = kernel::probe_features();
  if (!f) {
    fprintf(stderr, "Error: check failed: %s\n", f.error().render().c_str());
    return 1;
  }
  if (!opts.features.empty()) return check_named(*f, opts.features);
  fputs(kernel::render_check(*f).c_str(), stdout);
  return f->usable() ? 0 : 1;
}

int run_features(const Options&) {
  auto f = kernel::probe_features();
  if (!f) {
    fprintf(stderr, "Error: features failed: %s\n", f.error().render().c_str());
    return 1;
  }
  printf("%s\n", kernel::features_json(*f).c_str());
  return 0;
}

}  // namespace crshim
