/* clock.c — the monotonic clock in milliseconds, microseconds and seconds (CLOCK_MONOTONIC: unaffected by
 * changes of the wall clock). */
#include "core/clock.h"

#include <time.h>

static struct timespec clock_read(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts;
}

int64_t ss_now_ms(void)
{
    struct timespec ts = clock_read();
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t ss_now_us(void)
{
    struct timespec ts = clock_read();
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

double ss_now_s(void)
{
    struct timespec ts = clock_read();
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
