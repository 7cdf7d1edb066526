/* runstat.c: runs one benchmark client and reports what it cost.
 *
 *   runstat STATFILE -- PROGRAM [ARGS...]
 *
 * Reads CLOCK_MONOTONIC just before fork and hands it to the child as
 * BENCH_T0_NS (the child reports "process start to first result" against
 * it), waits with wait4 and writes one line to STATFILE:
 *
 *   wall_ms user_us sys_us maxrss_kb exit_status
 *
 * The child's stdout and stderr pass through untouched. Exits with the
 * child's status (128+signal when it was killed).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv) {
  const char *statfile;
  char t0[32];
  long long start, end;
  struct rusage ru;
  int status = 0, rc;
  pid_t pid;
  FILE *f;
  if (argc < 4 || strcmp(argv[2], "--") != 0) {
    fprintf(stderr, "usage: runstat STATFILE -- PROGRAM [ARGS...]\n");
    return 2;
  }
  statfile = argv[1];
  start = mono_ns();
  snprintf(t0, sizeof t0, "%lld", start);
  if (setenv("BENCH_T0_NS", t0, 1) != 0) { perror("runstat: setenv"); return 2; }
  pid = fork();
  if (pid < 0) { perror("runstat: fork"); return 2; }
  if (pid == 0) {
    execvp(argv[3], argv + 3);
    fprintf(stderr, "runstat: cannot run %s: %s\n", argv[3], strerror(errno));
    _exit(127);
  }
  memset(&ru, 0, sizeof ru);
  while (wait4(pid, &status, 0, &ru) < 0) {
    if (errno != EINTR) { perror("runstat: wait4"); return 2; }
  }
  end = mono_ns();
  rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  f = fopen(statfile, "w");
  if (!f) { perror("runstat: statfile"); return 2; }
  fprintf(f, "%.3f %ld %ld %ld %d\n", (double)(end - start) / 1e6,
          (long)(ru.ru_utime.tv_sec * 1000000L + ru.ru_utime.tv_usec),
          (long)(ru.ru_stime.tv_sec * 1000000L + ru.ru_stime.tv_usec),
          ru.ru_maxrss, rc);
  fclose(f);
  return rc;
}
