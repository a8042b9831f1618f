/* clock.h — the monotonic clock, read in one place: deadlines, rates, timeouts and the durations that logs and
 * metrics report, in the unit each caller wants. Never the wall clock (it jumps). */
#ifndef SS_CORE_CLOCK_H
#define SS_CORE_CLOCK_H

#include <stdint.h>

/* CLOCK_MONOTONIC in milliseconds / microseconds / seconds. */
int64_t ss_now_ms(void);
int64_t ss_now_us(void);
double ss_now_s(void);

#endif
