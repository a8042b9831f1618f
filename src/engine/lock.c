/* lock.c — the O_EXCL lock file with heartbeat and rename-based takeover (see lock.h).
 * Takeover renames the stale file to a unique name first, so of several waiters only one can remove
 * a given stale lock; the one that moved a fresh lock by mistake (inode changed) puts it back.
 * Correctness of the engine never rests on the lock alone: builds go to private temp dirs and are
 * published by rename, so a lost race only costs duplicate work. */
#include "engine/lock.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"

struct ss_lock {
    char *path;
    int fd;
    dev_t dev;
    ino_t ino;
    double heartbeat_s;
    pthread_t thread;
    int thread_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;
};

ss_lock_params ss_lock_default_params(void)
{
    ss_lock_params p = {30.0, 2.0, 0.25, 0.0, 5.0};
    return p;
}

static double lock_wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void lock_sleep(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static void *lock_heartbeat(void *arg)
{
    ss_lock *l = arg;
    pthread_mutex_lock(&l->mu);
    while (!l->stop) {
        struct timespec dl;
        clock_gettime(CLOCK_REALTIME, &dl);
        double t = (double)dl.tv_sec + 1e-9 * (double)dl.tv_nsec + l->heartbeat_s;
        dl.tv_sec = (time_t)t;
        dl.tv_nsec = (long)((t - (double)(time_t)t) * 1e9);
        pthread_cond_timedwait(&l->cv, &l->mu, &dl);
        if (!l->stop)
            (void)futimens(l->fd, NULL);
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

/* Holder identity parsed from the lock file. */
typedef struct lock_holder {
    char host[256];
    long pid;
    long start;
} lock_holder;

static void lock_parse(const char *text, lock_holder *h)
{
    memset(h, 0, sizeof *h);
    h->pid = -1;
    const char *p = text;
    while (*p) {
        const char *eol = strchr(p, '\n');
        size_t n = eol ? (size_t)(eol - p) : strlen(p);
        if (n > 5 && !strncmp(p, "host=", 5)) {
            size_t m = n - 5 < sizeof h->host - 1 ? n - 5 : sizeof h->host - 1;
            memcpy(h->host, p + 5, m);
            h->host[m] = '\0';
        } else if (n > 4 && !strncmp(p, "pid=", 4)) {
            h->pid = strtol(p + 4, NULL, 10);
        } else if (n > 6 && !strncmp(p, "start=", 6)) {
            h->start = strtol(p + 6, NULL, 10);
        }
        p += n;
        if (*p == '\n')
            p++;
    }
}

static ss_status lock_create(const char *path, const ss_lock_params *prm, ss_lock **out, int *exists, ss_err *err)
{
    *exists = 0;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
        if (errno == EEXIST) {
            *exists = 1;
            return SS_OK;
        }
        return ss_err_set(err, SS_ERR_IO, "%s: cannot create the lock: %s", path, strerror(errno));
    }
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    char body[512];
    int n = snprintf(body, sizeof body, "host=%s\npid=%ld\nstart=%ld\n", host, (long)getpid(), (long)time(NULL));
    ssize_t w = write(fd, body, (size_t)n);
    (void)fsync(fd);
    struct stat sb;
    ss_lock *l = ss_calloc(1, sizeof *l);
    if (w != n || fstat(fd, &sb) != 0 || !l || !(l->path = ss_strdup(path))) {
        ss_status st = l ? ss_err_set(err, SS_ERR_IO, "%s: cannot write the lock", path)
                         : ss_err_set(err, SS_ERR_NOMEM, "%s: out of memory", path);
        if (l)
            ss_free(l->path);
        ss_free(l);
        unlink(path);
        close(fd);
        return st;
    }
    l->fd = fd;
    l->dev = sb.st_dev;
    l->ino = sb.st_ino;
    l->heartbeat_s = prm->heartbeat_s > 0 ? prm->heartbeat_s : 2.0;
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cv, NULL);
    if (pthread_create(&l->thread, NULL, lock_heartbeat, l) == 0)
        l->thread_started = 1;
    else
        SS_LOGW("%s: no heartbeat thread; the lock may be taken over after %.0f s", path, prm->stale_s);
    *out = l;
    return SS_OK;
}

/* Removes the stale lock observed as (dev, ino); returns 1 when this call removed it. */
static int lock_takeover(const char *path, dev_t dev, ino_t ino)
{
    char aside[4096];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(aside, sizeof aside, "%s.stale.%ld.%lu.%ld", path, (long)getpid(), (unsigned long)ino, (long)ts.tv_nsec);
    if (rename(path, aside) != 0)
        return 0; /* someone else moved it first */
    struct stat sb;
    if (stat(aside, &sb) == 0 && (sb.st_dev != dev || sb.st_ino != ino)) {
        /* We moved a fresh lock created after our look: put it back (fails harmlessly if a third
         * process created one meanwhile). */
        if (link(aside, path) != 0)
            SS_LOGW("%s: a fresh lock was displaced during takeover; a duplicate build may run", path);
        unlink(aside);
        return 0;
    }
    unlink(aside);
    return 1;
}

ss_status ss_lock_try(const char *path, const ss_lock_params *p, ss_lock **out, char *holder, size_t cap,
                      ss_err *err)
{
    ss_lock_params prm = p ? *p : ss_lock_default_params();
    *out = NULL;
    for (int attempt = 0; attempt < 8; attempt++) {
        int exists = 0;
        SS_CHECK(lock_create(path, &prm, out, &exists, err));
        if (!exists)
            return SS_OK;
        struct stat sb;
        if (stat(path, &sb) != 0) {
            if (errno == ENOENT)
                continue; /* released meanwhile: try again */
            return ss_err_set(err, SS_ERR_IO, "%s: %s", path, strerror(errno));
        }
        char text[1024] = "";
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
            ssize_t r = read(fd, text, sizeof text - 1);
            text[r > 0 ? r : 0] = '\0';
            close(fd);
        }
        lock_holder h;
        lock_parse(text, &h);
        double age = lock_wall() - ((double)sb.st_mtim.tv_sec + 1e-9 * (double)sb.st_mtim.tv_nsec);
        char me[256] = "";
        gethostname(me, sizeof me - 1);
        const int here = h.pid > 0 && !strcmp(h.host, me);
        int dead = here && kill((pid_t)h.pid, 0) != 0 && errno == ESRCH;
        /* A holder alive on this host only missed heartbeats (a loaded machine, a stalled disk): it is taken over only
         * after ten times the limit (its pid may have gone to another process since), not while it writes. */
        const double limit = here && !dead ? 10 * prm.stale_s : prm.stale_s;
        if (holder && cap)
            snprintf(holder, cap, "host %s pid %ld (heartbeat %.1f s ago)", h.host[0] ? h.host : "?", h.pid,
                     age < 0 ? 0.0 : age);
        if (dead || age > limit) {
            if (lock_takeover(path, sb.st_dev, sb.st_ino)) {
                if (dead)
                    SS_LOGW("%s: holder pid %ld on this host is gone; taking the lock over", path, h.pid);
                else
                    SS_LOGW("%s: holder %s pid %ld silent for %.0f s (> %.0f s); taking the lock over", path,
                            h.host[0] ? h.host : "?", h.pid, age, limit);
            }
            continue;
        }
        return SS_OK;
    }
    return SS_OK;
}

ss_status ss_lock_acquire(const char *path, const ss_lock_params *p, int (*done)(void *ctx), void *ctx,
                          ss_lock **out, ss_err *err)
{
    ss_lock_params prm = p ? *p : ss_lock_default_params();
    double t0 = ss_now_s(), last_status = -1e9;
    *out = NULL;
    for (;;) {
        char holder[512] = "";
        SS_CHECK(ss_lock_try(path, &prm, out, holder, sizeof holder, err));
        if (*out)
            return SS_OK;
        if (done && done(ctx))
            return SS_OK;
        double now = ss_now_s();
        if (prm.timeout_s > 0 && now - t0 > prm.timeout_s)
            return ss_err_set(err, SS_ERR_TIMEOUT, "%s: still held by %s after %.0f s", path, holder, now - t0);
        if (now - last_status >= (prm.status_s > 0 ? prm.status_s : 5.0)) {
            SS_LOGI("waiting: %s is held by %s; waited %.0f s", path, holder, now - t0);
            last_status = now;
        }
        lock_sleep(prm.poll_s > 0 ? prm.poll_s : 0.25);
    }
}

void ss_lock_release(ss_lock *l)
{
    if (!l)
        return;
    if (l->thread_started) {
        pthread_mutex_lock(&l->mu);
        l->stop = 1;
        pthread_cond_signal(&l->cv);
        pthread_mutex_unlock(&l->mu);
        pthread_join(l->thread, NULL);
    }
    struct stat sb;
    if (stat(l->path, &sb) == 0 && sb.st_dev == l->dev && sb.st_ino == l->ino)
        unlink(l->path);
    close(l->fd);
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->cv);
    ss_free(l->path);
    ss_free(l);
}
