/* load_check.c — the quick digest of a rank file, read with pread on a thread beside the loader (whose mmap then finds
 * the pages in the page cache), compared when the load is done. */
#include "engine/load_check.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "core/alloc.h"
#include "engine/quick_digest.h"

struct ss_load_check {
    char *path, *expected;
    pthread_t th;
    _Atomic int cancel;
    ss_status st;     /* the thread's: SS_OK when it read the whole file */
    ss_err err;
    char got[SS_QUICK_DIGEST_LEN];
};

static void *lc_main(void *arg)
{
    ss_load_check *c = arg;
    const size_t cap = 8u << 20;
    int fd = open(c->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        c->st = ss_err_set(&c->err, SS_ERR_IO, "%s: %s", c->path, strerror(errno));
        return NULL;
    }
    (void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    uint8_t *buf = ss_malloc(cap);
    ss_quick_digest *h = NULL;
    c->st = buf ? ss_quick_digest_create(&h, &c->err) : ss_err_set(&c->err, SS_ERR_NOMEM, "%s: out of memory", c->path);
    for (off_t off = 0; c->st == SS_OK;) {
        if (atomic_load(&c->cancel)) {
            c->st = ss_err_set(&c->err, SS_ERR_CANCELLED, "%s: check cancelled", c->path);
            break;
        }
        ssize_t r = pread(fd, buf, cap, off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            c->st = ss_err_set(&c->err, SS_ERR_IO, "%s: read: %s", c->path, strerror(errno));
            break;
        }
        if (r == 0)
            break;
        c->st = ss_quick_digest_update(h, buf, (size_t)r, &c->err);
        off += r;
    }
    if (c->st == SS_OK)
        ss_quick_digest_text(h, c->got);
    ss_quick_digest_destroy(h);
    ss_free(buf);
    close(fd);
    return NULL;
}

static void lc_free(ss_load_check *c)
{
    if (!c)
        return;
    ss_free(c->path);
    ss_free(c->expected);
    ss_free(c);
}

ss_status ss_load_check_start(const char *path, const char *expected, ss_load_check **out, ss_err *err)
{
    *out = NULL;
    ss_load_check *c = ss_calloc(1, sizeof *c);
    if (!c || !(c->path = ss_strdup(path)) || !(c->expected = ss_strdup(expected))) {
        lc_free(c);
        return ss_err_set(err, SS_ERR_NOMEM, "%s: out of memory", path);
    }
    int e = pthread_create(&c->th, NULL, lc_main, c);
    if (e) {
        lc_free(c);
        return ss_err_set(err, SS_ERR_INTERNAL, "%s: cannot start the digest check: %s", path, strerror(e));
    }
    *out = c;
    return SS_OK;
}

ss_status ss_load_check_finish(ss_load_check *c, ss_err *err)
{
    pthread_join(c->th, NULL);
    ss_status st = c->st;
    if (st != SS_OK) {
        if (err)
            *err = c->err;
    } else if (strcmp(c->got, c->expected)) {
        st = ss_err_set(err, SS_ERR_MISMATCH, "%s: %s, the manifest says %s (damaged engine file: `shardserve prepare "
                        "--verify full` rebuilds the engine)", c->path, c->got, c->expected);
    }
    lc_free(c);
    return st;
}

void ss_load_check_cancel(ss_load_check *c)
{
    if (!c)
        return;
    atomic_store(&c->cancel, 1);
    pthread_join(c->th, NULL);
    lc_free(c);
}
