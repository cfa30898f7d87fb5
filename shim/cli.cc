#include "shim/cli.h"

#include <cstdio>
#include <cstring>

#include "shim/options.h"
#include "shim/verbs.h"

namespace crshim {

int cli_main(int argc, char** argv) {
  auto opts = parse_command_line(argc, argv);
  if (!opts) {
    fprintf(stderr, "Error: %s\n", opts.error().render().c_str());
    return 1;
  }
  if (opts->version) {
    printf("Version: %s\n", CRSHIM_VERSION);
    return 0;
  }
  if (opts->help || opts->verb == Verb::help || opts->verb == Verb::none) {
    std::string verb = opts->verb == Verb::help && !opts->args.empty() ? opts->args[0]
                       : opts->verb != Verb::help                      ? std::string(verb_name(opts->verb))
                                                                       : std::string();
    fputs(usage(verb).c_str(), stdout);
    return opts->verb == Verb::none && !opts->help ? 1 : 0;
  }
  switch (opts->verb) {
    case Verb::dump:
    case Verb::pre_dump: return run_dump(*opts);
    case Verb::restore: return opts->bundle.dir ? run_restore_bundle(*opts) : run_restore(*opts);
    case Verb::checkpoint: return run_checkpoint_bundle(*opts);
    case Verb::check: return run_check(*opts);
    case Verb::show: return run_show(*opts);
    case Verb::features: return run_features(*opts);
    case Verb::swrk: return run_swrk(*opts);
    case Verb::service: return run_service(*opts);
    case Verb::lazy_pages: return run_lazy_pages(*opts);
    case Verb::page_server: return run_page_server(*opts);
    default:
      fprintf(stderr, "Error: '%s' is not implemented yet; hint: see 'crshim help' for the commands that work\n",
              std::string(verb_name(opts->verb)).c_str());
      return 1;
  }
}

}  // namespace crshim
