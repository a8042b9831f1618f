/* hangup_watch.c — the hang-up watcher: one thread polls the sockets for POLLRDHUP (no reads) and a
 * pipe that stop closes; the first hang-up is reported through the callback, then the thread ends. */
#include "runner/hangup_watch.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "core/alloc.h"

struct ss_hangup_watch {
    pthread_t thread;
    int stop[2];              /* stop closes [1]: the thread sees [0] readable (EOF) and ends */
    struct pollfd pf[SS_HANGUP_WATCH_MAX + 1];
    int n;                    /* sockets watched (pf[1..n]) */
    ss_hangup_fn fn;
    void *ctx;
    _Atomic int reported;     /* the index given to fn, or -1 */
};

static void *hw_main(void *arg)
{
    ss_hangup_watch *w = arg;
    for (;;) {
        int m = poll(w->pf, (nfds_t)w->n + 1, -1);
        if (m < 0 && errno == EINTR)
            continue;
        if (m < 0 || w->pf[0].revents)
            return NULL;
        for (int i = 1; i <= w->n; i++) {
            if (!(w->pf[i].revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)))
                continue;
            atomic_store(&w->reported, i - 1);
            w->fn(w->ctx, i - 1);
            return NULL;
        }
    }
}

ss_status ss_hangup_watch_start(const int *fds, int n, ss_hangup_fn fn, void *ctx, ss_hangup_watch **out,
                                ss_err *err)
{
    *out = NULL;
    if (n < 1 || n > SS_HANGUP_WATCH_MAX || !fn)
        return ss_err_set(err, SS_ERR_INVALID_ARG, "hang-up watch: %d sockets (1..%d) or no callback", n,
                          SS_HANGUP_WATCH_MAX);
    ss_hangup_watch *w = ss_calloc(1, sizeof *w);
    if (!w)
        return ss_err_set(err, SS_ERR_NOMEM, "hang-up watch: out of memory");
    if (pipe2(w->stop, O_CLOEXEC) != 0) {
        ss_free(w);
        return ss_err_set(err, SS_ERR_IO, "hang-up watch: pipe: %s", strerror(errno));
    }
    w->pf[0] = (struct pollfd){w->stop[0], POLLIN, 0};
    for (int i = 0; i < n; i++)
        w->pf[i + 1] = (struct pollfd){fds[i], POLLRDHUP, 0};
    w->n = n, w->fn = fn, w->ctx = ctx;
    atomic_init(&w->reported, -1);
    if (pthread_create(&w->thread, NULL, hw_main, w) != 0) {
        close(w->stop[0]);
        close(w->stop[1]);
        ss_free(w);
        return ss_err_set(err, SS_ERR_IO, "hang-up watch: cannot start its thread");
    }
    *out = w;
    return SS_OK;
}

int ss_hangup_watch_stop(ss_hangup_watch *w)
{
    if (!w)
        return -1;
    close(w->stop[1]);
    pthread_join(w->thread, NULL);
    close(w->stop[0]);
    int r = atomic_load(&w->reported);
    ss_free(w);
    return r;
}
