// What every engine verb sets up from its options: the images/work directories and the log.
#pragma once

#include <memory>
#include <string>

#include "checkpoint/base/log.h"
#include "checkpoint/base/unique_fd.h"
#include "checkpoint/engine.h"
#include "shim/options.h"
#include "shim/progress_line.h"

namespace crshim {

struct Job {
  Logger log;
  UniqueFd images_dir;
  UniqueFd work_dir;
  std::string log_path;  // for the "see LOG" hint; "-" for stderr
  std::unique_ptr<TerminalProgress> progress;  // when stderr is a terminal the log does not use

  Session session() { return Session{log, images_dir.get(), work_dir.get(), progress.get()}; }
};

// Opens the directories (creating the images dir for dumps) and the log file, CRIU-style:
// -o NAME lands in the work dir, which defaults to the images dir.
Result<std::unique_ptr<Job>> open_job(const Options& opts, const std::string& default_log, bool create_images_dir);

// Reports a failed operation: the full error in the log, one line on stderr naming the log.
int report_failure(Job* job, const char* what, const Error& e);

}  // namespace crshim
