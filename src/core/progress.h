/* progress.h — progress of one phase (download, build, verify, a rank's weights): bytes, rate, ETA. On a terminal a
 * rewritten status line on stderr; otherwise a log line every few seconds. Thread-safe counters. */
#ifndef SS_CORE_PROGRESS_H
#define SS_CORE_PROGRESS_H

#include <stdint.h>

#include "core/status.h"

typedef struct ss_progress ss_progress;

/* phase: e.g. "download org/name" (copied). total: expected bytes (0 if unknown). tty: draw a status
 * line instead of log lines. quiet: print nothing until the summary. Caller destroys. */
ss_status ss_progress_create(const char *phase, int64_t total, int tty, int quiet, ss_progress **out, ss_err *err);
/* Adds n bytes done; may print. Safe from several threads. */
void ss_progress_add(ss_progress *p, int64_t n);
int64_t ss_progress_bytes(const ss_progress *p);
/* Seconds since create. */
double ss_progress_elapsed(const ss_progress *p);
/* Prints the summary line "<phase>: X GB in Y s (Z GB/s)". */
void ss_progress_finish(ss_progress *p);
void ss_progress_destroy(ss_progress *p);

#endif
