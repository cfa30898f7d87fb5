// One function per CLI verb; each returns the process exit code.
#pragma once

#include "shim/options.h"

namespace crshim {

int run_dump(const Options& opts);
int run_restore(const Options& opts);
int run_check(const Options& opts);
int run_show(const Options& opts);
int run_features(const Options& opts);
int run_swrk(const Options& opts);
int run_service(const Options& opts);
// verb_lazy_pages.cc: the daemon that serves a tree restored with --lazy-pages.
int run_lazy_pages(const Options& opts);
// `page-server` (verb_page_server.cc): receive a dump's pages over TCP.
int run_page_server(const Options& opts);
// OCI bundle mode (verb_bundle.cc): checkpoint --bundle, restore --bundle.
int run_checkpoint_bundle(const Options& opts);
int run_restore_bundle(const Options& opts);

}  // namespace crshim
