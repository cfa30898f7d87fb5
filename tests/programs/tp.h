/* Test-program contract: set up state, report ready, wait for SIGTERM, verify, report PASS/FAIL.
 * argv[1] = ready file (created when set up), argv[2] = result file ("PASS" or "FAIL: why").
 * The result goes to a file because a restored program is no longer the test driver's child. */
#pragma once

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char* tp_result_path;
static volatile sig_atomic_t tp_term;

static void tp_on_term(int sig) {
  (void)sig;
  tp_term = 1;
}

static void tp_write_file(const char* path, const char* text) {
  char tmp[4096];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) _exit(3);
  if (write(fd, text, strlen(text)) < 0) _exit(3);
  close(fd);
  rename(tmp, path); /* readers never see a half-written file */
}

/* Fails the test with a message; never returns. */
static void tp_fail(const char* fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void tp_fail(const char* fmt, ...) {
  char msg[2048] = "FAIL: ";
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg + 6, sizeof msg - 7, fmt, ap);
  va_end(ap);
  strcat(msg, "\n");
  fputs(msg, stderr);
  if (tp_result_path) tp_write_file(tp_result_path, msg);
  _exit(1);
}

#define TP_CHECK(cond, ...) \
  do {                      \
    if (!(cond)) tp_fail(__VA_ARGS__); \
  } while (0)

/* Parses the contract arguments and installs the SIGTERM handler. */
static void tp_init(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s READY_FILE RESULT_FILE\n", argv[0]);
    exit(2);
  }
  tp_result_path = argv[2];
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = tp_on_term;
  sigaction(SIGTERM, &sa, NULL);
}

static void tp_ready(char** argv) { tp_write_file(argv[1], "ready\n"); }

/* Sleeps until SIGTERM, calling tick() (if given) every few milliseconds. */
static void tp_wait_for_term(void (*tick)(void)) {
  while (!tp_term) {
    if (tick) tick();
    usleep(5000);
  }
}

/* The controlling terminal of this process as /proc/self/stat encodes it (tty_nr), or -1. */
static inline int tp_tty_nr(void) {
  char buf[1024];
  int fd = open("/proc/self/stat", O_RDONLY);
  ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof buf - 1);
  if (fd >= 0) close(fd);
  if (n <= 0) return -1;
  buf[n] = 0;
  char* p = strrchr(buf, ')');
  int tty_nr = -1;
  if (!p || sscanf(p + 2, "%*c %*d %*d %*d %d", &tty_nr) != 1) return -1;
  return tty_nr;
}

static void tp_pass(void) {
  if (tp_result_path) tp_write_file(tp_result_path, "PASS\n");
  exit(0);
}
