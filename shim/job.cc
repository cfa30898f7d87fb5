#include "shim/job.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>

#include "checkpoint/base/sys.h"

namespace crshim {

Result<std::unique_ptr<Job>> open_job(const Options& opts, const std::string& default_log, bool create_images_dir) {
  auto job = std::make_unique<Job>();
  job->log.set_level(opts.verbosity);
  job->log.set_json(opts.log_format == LogFormat::json);
  if (create_images_dir && ::mkdir(opts.images_dir.c_str(), 0700) < 0 && errno != EEXIST)
    return fail(sys_error("mkdir", opts.images_dir, "images directory"));
  auto images = sys::open(opts.images_dir, O_RDONLY | O_DIRECTORY);
  if (!images) {
    // Name what the path was meant to be: a bare "open DIR: ENOENT" does not say which option is wrong.
    Error e = std::move(images.error());
    e.message = "images directory";
    if (e.err == ENOENT || e.err == ENOTDIR)
      e.with_hint("check -D (--image-path with --bundle): it names the directory of the images");
    return fail(std::move(e));
  }
  job->images_dir = std::move(*images);
  if (opts.work_dir) {
    if (::mkdir(opts.work_dir->c_str(), 0700) < 0 && errno != EEXIST)
      return fail(sys_error("mkdir", *opts.work_dir, "work directory"));
    job->work_dir = CR_TRY(sys::open(*opts.work_dir, O_RDONLY | O_DIRECTORY));
  } else {
    job->work_dir = UniqueFd(::fcntl(job->images_dir.get(), F_DUPFD_CLOEXEC, 3));
  }
  std::string log = opts.log_file.value_or(default_log);
  if (log != "-") {
    if (Status st = job->log.open_file(job->work_dir.get(), log); !st) {
      Error e = st.error();
      e.message = "log file";
      if (e.err == ENOENT) e.with_hint("-o takes a name in the work directory, or a path in an existing directory");
      return fail(std::move(e));
    }
    std::string dir = opts.work_dir.value_or(opts.images_dir);
    job->log_path = log[0] == '/' ? log : dir + "/" + log;
  } else {
    job->log_path = "-";
  }
  if (job->log_path != "-" && ::isatty(STDERR_FILENO)) job->progress = std::make_unique<TerminalProgress>(STDERR_FILENO);
  return job;
}

int report_failure(Job* job, const char* what, const Error& e) {
  std::string line = e.render();
  if (job) {
    job->log.log_error(__FILE__, __LINE__, e);
    LOG_ERROR(job->log, "%s failed", what);
    if (job->log_path != "-")
      fprintf(stderr, "Error: %s failed: %s (full log: %s)\n", what, line.c_str(), job->log_path.c_str());
  } else {
    fprintf(stderr, "Error: %s failed: %s\n", what, line.c_str());
  }
  return 1;
}

}  // namespace crshim
