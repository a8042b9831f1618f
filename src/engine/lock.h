/* lock.h — a build lock on a shared volume: a file created with O_CREAT|O_EXCL holding {host, pid,
 * start time}, its mtime refreshed by a heartbeat thread. Dead or silent holders are taken over. */
#ifndef SS_ENGINE_LOCK_H
#define SS_ENGINE_LOCK_H

#include <stddef.h>

#include "core/status.h"

typedef struct ss_lock_params {
    double stale_s;     /* a heartbeat older than this means the holder is gone (default 30) */
    double heartbeat_s; /* the holder touches the lock this often (default 2) */
    double poll_s;      /* waiters look again this often (default 0.25) */
    double timeout_s;   /* waiters give up after this long (0 = wait while the holder lives; default 0) */
    double status_s;    /* waiters print a status line this often (default 5) */
} ss_lock_params;

ss_lock_params ss_lock_default_params(void);

typedef struct ss_lock ss_lock;

/* One attempt. On success *out is the held lock (heartbeat running). When another process holds it,
 * returns SS_OK with *out NULL and holder (optional, cap bytes) describing it; a stale lock (old
 * heartbeat, or dead pid on this host) is taken over first. */
ss_status ss_lock_try(const char *path, const ss_lock_params *p, ss_lock **out, char *holder, size_t cap,
                      ss_err *err);

/* Waits for the lock. Between polls, calls done(ctx) (may be NULL): when it returns 1 the wait ends
 * with SS_OK and *out NULL (someone else finished the work). Prints who holds it while waiting.
 * SS_ERR_TIMEOUT after timeout_s. */
ss_status ss_lock_acquire(const char *path, const ss_lock_params *p, int (*done)(void *ctx), void *ctx,
                          ss_lock **out, ss_err *err);

/* Stops the heartbeat, removes the lock file if it is still ours, frees. NULL is fine. */
void ss_lock_release(ss_lock *l);

#endif
