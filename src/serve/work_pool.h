/* work_pool.h — worker threads for the CPU-heavy parts of a request (tokenizing a prompt), so that the event
 * loop stays free for every other client; each job's result comes back on the loop thread. */
#ifndef SS_WORK_POOL_H
#define SS_WORK_POOL_H

#include "core/status.h"

struct event_base;

typedef struct ss_work ss_work;
typedef void (*ss_work_fn)(ss_work *w);

/* A job: embedded in the caller's own struct (which the callbacks recover from w). The caller sets run and
 * done; the pool owns the rest while the job is in it. */
struct ss_work {
    ss_work_fn run;  /* on a worker thread */
    ss_work_fn done; /* on the loop thread, once: after run, or with cancelled = 1 when the pool stops first */
    int cancelled;   /* set by the pool: run did not happen */
    ss_work *next;   /* the pool's */
};

typedef struct ss_work_pool ss_work_pool;

/* Starts `threads` workers (at least 1) whose results are handed back through an event on base. hold_path
 * (borrowed; NULL in production) is a test switch: while that file exists the workers start no job, so that a
 * test can fill the queue deterministically. Caller destroys, on the loop thread. */
ss_status ss_work_pool_create(struct event_base *base, int threads, const char *hold_path, ss_work_pool **out,
                              ss_err *err);
/* Queues w (borrowed until its done callback has run). Loop thread; never fails. */
void ss_work_pool_submit(ss_work_pool *p, ss_work *w);
/* Stops the workers (a job running finishes its run), then calls done for every job still held: jobs that ran
 * as they are, jobs that did not with cancelled = 1. Loop thread, before base is freed; NULL is a no-op. */
void ss_work_pool_destroy(ss_work_pool *p);

#endif
