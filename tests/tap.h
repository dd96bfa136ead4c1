/*
** tap.h -- TAP output for the C tests: check() prints "ok N - what" or
** "not ok N - what"; tap_done() prints the plan "1..N" and returns the
** exit status (1 if any check failed).
*/
#ifndef TAP_H
#define TAP_H

#include <stdio.h>

static int ntests = 0;
static int nfailed = 0;

static void check(int cond, const char *what) {
  ntests++;
  if (!cond) nfailed++;
  printf("%s %d - %s\n", cond ? "ok" : "not ok", ntests, what);
  fflush(stdout);
}

static int tap_done(void) {
  printf("1..%d\n", ntests);
  return nfailed == 0 ? 0 : 1;
}

#endif
