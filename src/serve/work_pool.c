/* work_pool.c — a fixed set of worker threads taking jobs from one queue, and an event that hands finished
 * jobs back to the loop thread. Plain pthreads: libevent has no thread pool, and no Debian library we use does. */
#include "serve/work_pool.h"

#include <pthread.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "core/alloc.h"

#define WP_MAX_THREADS 64

struct ss_work_pool {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    ss_work *todo_head, *todo_tail; /* queued, not started */
    ss_work *done_head, *done_tail; /* run, not yet handed back */
    int stopping;
    struct event *ready; /* activated by a worker when done_* is not empty */
    pthread_t threads[WP_MAX_THREADS];
    int n_threads;
    char *hold_path; /* owned; NULL, or a file whose presence keeps the workers from starting jobs */
};

static void wp_push(ss_work **head, ss_work **tail, ss_work *w)
{
    w->next = NULL;
    if (*tail)
        (*tail)->next = w;
    else
        *head = w;
    *tail = w;
}

/* With p->mu held: whether the test switch's file holds the workers back (checked again every 2 ms: a test
 * switch only, so a poll is enough and no file-watching dependency is worth it). */
static int wp_held(ss_work_pool *p)
{
    if (!p->hold_path || access(p->hold_path, F_OK) != 0)
        return 0;
    pthread_mutex_unlock(&p->mu);
    nanosleep(&(struct timespec){0, 2000000}, NULL);
    pthread_mutex_lock(&p->mu);
    return 1;
}

static void *wp_main(void *arg)
{
    ss_work_pool *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->todo_head && !p->stopping)
            pthread_cond_wait(&p->cv, &p->mu);
        if (p->stopping)
            break;
        if (wp_held(p))
            continue;
        ss_work *w = p->todo_head;
        p->todo_head = w->next;
        if (!p->todo_head)
            p->todo_tail = NULL;
        pthread_mutex_unlock(&p->mu);
        w->run(w);
        pthread_mutex_lock(&p->mu);
        wp_push(&p->done_head, &p->done_tail, w);
        event_active(p->ready, EV_READ, 0);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* Loop thread: every finished job's done callback, in the order they finished. */
static void wp_ready_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    ss_work_pool *p = arg;
    pthread_mutex_lock(&p->mu);
    ss_work *w = p->done_head;
    p->done_head = p->done_tail = NULL;
    pthread_mutex_unlock(&p->mu);
    while (w) {
        ss_work *next = w->next; /* done may free w */
        w->done(w);
        w = next;
    }
}

ss_status ss_work_pool_create(struct event_base *base, int threads, const char *hold_path, ss_work_pool **out,
                              ss_err *err)
{
    *out = NULL;
    ss_work_pool *p = ss_calloc(1, sizeof *p);
    if (!p)
        return ss_err_set(err, SS_ERR_NOMEM, "work pool: out of memory");
    if (hold_path && !(p->hold_path = ss_strdup(hold_path))) {
        ss_free(p);
        return ss_err_set(err, SS_ERR_NOMEM, "work pool: out of memory");
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->ready = event_new(base, -1, 0, wp_ready_cb, p);
    if (!p->ready) {
        ss_work_pool_destroy(p);
        return ss_err_set(err, SS_ERR_NOMEM, "work pool: cannot create its event");
    }
    threads = threads < 1 ? 1 : threads > WP_MAX_THREADS ? WP_MAX_THREADS : threads;
    for (int i = 0; i < threads; i++) {
        if (pthread_create(&p->threads[i], NULL, wp_main, p) != 0) {
            ss_work_pool_destroy(p);
            return ss_err_set(err, SS_ERR_INTERNAL, "work pool: cannot start worker thread %d of %d", i + 1, threads);
        }
        p->n_threads++;
    }
    *out = p;
    return SS_OK;
}

void ss_work_pool_submit(ss_work_pool *p, ss_work *w)
{
    w->cancelled = 0;
    pthread_mutex_lock(&p->mu);
    wp_push(&p->todo_head, &p->todo_tail, w);
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

void ss_work_pool_destroy(ss_work_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stopping = 1;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n_threads; i++)
        pthread_join(p->threads[i], NULL);
    /* The workers are gone: what ran is handed back as it is, what did not as cancelled. */
    if (p->ready)
        wp_ready_cb(-1, 0, p);
    for (ss_work *w = p->todo_head, *next; w; w = next) {
        next = w->next;
        w->cancelled = 1;
        w->done(w);
    }
    if (p->ready)
        event_free(p->ready);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    ss_free(p->hold_path);
    ss_free(p);
}
