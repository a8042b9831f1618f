/* hangup_watch.h — a thread that watches connected sockets for the peer's hang-up (a process that died
 * closes its sockets at once) and reports the first, so that a rank can stop collectives stuck on it. */
#ifndef SS_HANGUP_WATCH_H
#define SS_HANGUP_WATCH_H

#include "core/status.h"

#define SS_HANGUP_WATCH_MAX 64

typedef struct ss_hangup_watch ss_hangup_watch;

/* Called once, on the watcher's thread, with the index in fds of the first socket whose peer hung up
 * (closed, reset, or shut its side down). It must be safe to call from another thread than the one
 * using the sockets (e.g. ss_comm_nccl_stop). */
typedef void (*ss_hangup_fn)(void *ctx, int index);

/* Starts watching fds[0..n) (borrowed: they must stay open until ss_hangup_watch_stop returns). The
 * watcher never reads: data waiting on a socket stays for its owner. 1 <= n <= SS_HANGUP_WATCH_MAX.
 * *out is the caller's: release it with ss_hangup_watch_stop. */
ss_status ss_hangup_watch_start(const int *fds, int n, ss_hangup_fn fn, void *ctx, ss_hangup_watch **out,
                                ss_err *err);

/* Ends the watch and joins its thread; after it returns fn is not running and will not run. Returns the
 * index reported to fn, or -1 if none was. NULL is fine (-1). */
int ss_hangup_watch_stop(ss_hangup_watch *w);

#endif
