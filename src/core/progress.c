/* progress.c — a throttled progress reporter: atomic byte counter, one printer at a time. */
#include "core/progress.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"

struct ss_progress {
    char phase[160];
    int64_t total;
    int tty, quiet;
    _Atomic int64_t done;
    double t0, last_print;
    pthread_mutex_t mu;
    int drew; /* a status line is on screen */
};

ss_status ss_progress_create(const char *phase, int64_t total, int tty, int quiet, ss_progress **out, ss_err *err)
{
    ss_progress *p = ss_calloc(1, sizeof *p);
    if (!p)
        return ss_err_set(err, SS_ERR_NOMEM, "progress: out of memory");
    snprintf(p->phase, sizeof p->phase, "%s", phase);
    p->total = total;
    p->tty = tty;
    p->quiet = quiet;
    p->t0 = p->last_print = ss_now_s();
    pthread_mutex_init(&p->mu, NULL);
    *out = p;
    return SS_OK;
}

static void prog_print(ss_progress *p, double now)
{
    int64_t done = atomic_load(&p->done);
    double el = now - p->t0;
    double rate = el > 0 ? (double)done / el : 0;
    char eta[32] = "?";
    if (p->total > 0 && rate > 0)
        snprintf(eta, sizeof eta, "%.0fs", (double)(p->total - done) / rate);
    if (p->tty) {
        char line[320];
        int n = snprintf(line, sizeof line, "\r%s: %.2f / %.2f GB  %.2f GB/s  ETA %s   ", p->phase, (double)done / 1e9,
                         (double)p->total / 1e9, rate / 1e9, eta);
        if (n > 0) {
            ssize_t w = write(STDERR_FILENO, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
            (void)w;
        }
        p->drew = 1;
    } else {
        SS_LOGI("%s: %.2f / %.2f GB, %.2f GB/s, ETA %s", p->phase, (double)done / 1e9, (double)p->total / 1e9,
                rate / 1e9, eta);
    }
}

void ss_progress_add(ss_progress *p, int64_t n)
{
    atomic_fetch_add(&p->done, n);
    if (p->quiet)
        return;
    double now = ss_now_s();
    double every = p->tty ? 0.25 : 5.0;
    if (now - p->last_print < every || pthread_mutex_trylock(&p->mu) != 0)
        return;
    if (now - p->last_print >= every) {
        p->last_print = now;
        prog_print(p, now);
    }
    pthread_mutex_unlock(&p->mu);
}

int64_t ss_progress_bytes(const ss_progress *p)
{
    return atomic_load(&((ss_progress *)p)->done);
}

double ss_progress_elapsed(const ss_progress *p)
{
    return ss_now_s() - p->t0;
}

void ss_progress_finish(ss_progress *p)
{
    pthread_mutex_lock(&p->mu);
    if (p->drew) {
        ssize_t w = write(STDERR_FILENO, "\n", 1);
        (void)w;
        p->drew = 0;
    }
    double el = ss_now_s() - p->t0;
    int64_t done = atomic_load(&p->done);
    SS_LOGI("%s: %.3f GB in %.2f s (%.2f GB/s)", p->phase, (double)done / 1e9, el,
            el > 0 ? (double)done / el / 1e9 : 0.0);
    pthread_mutex_unlock(&p->mu);
}

void ss_progress_destroy(ss_progress *p)
{
    if (!p)
        return;
    pthread_mutex_destroy(&p->mu);
    ss_free(p);
}
