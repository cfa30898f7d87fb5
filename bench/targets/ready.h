/* Benchmark targets: report readiness through a file and then idle until SIGTERM. */
#pragma once

#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Prints why and exits; targets fail before they report ready, so the runner sees no ready file. */
static void bench_die(const char* what) {
  perror(what);
  exit(1);
}

/* Writes "ready" to a temporary name and renames it, so the runner never reads a partial file. */
static void bench_ready(const char* path) {
  char tmp[4096];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) bench_die("open ready file");
  if (write(fd, "ready\n", 6) != 6) bench_die("write ready file");
  close(fd);
  if (rename(tmp, path) != 0) bench_die("rename ready file");
}

/* SIGTERM keeps its default action, so the target installs no handler that a dump must carry. */
static void bench_idle(void) {
  for (;;) pause();
}
