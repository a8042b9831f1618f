/* load_check.c — the quick digest of a rank file, over the loader's own mapping on a thread beside the load (its page
 * faults read ahead of the loader), compared when the load is done; and the same over a file read by path. */
#include "engine/load_check.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include "core/alloc.h"
#include "engine/digest.h"
#include "engine/quick_digest.h"

#define LC_STEP ((size_t)8 << 20) /* hashed between looks at the cancel flag */

struct ss_load_check {
    const uint8_t *data; /* borrowed */
    size_t len;
    char *name, *expected;
    pthread_t th;
    _Atomic int cancel;
    ss_status st;        /* the thread's: SS_OK when it hashed everything */
    ss_err err;
    char got[SS_QUICK_DIGEST_LEN];
};

/* The mismatch's message: the file, both digests, and the way out. */
static ss_status lc_mismatch(ss_err *err, const char *name, const char *got, const char *expected)
{
    return ss_err_set(err, SS_ERR_MISMATCH, "%s: %s, the manifest says %s (damaged engine file: run the `shardserve "
                      "prepare` that built the engine again with --verify full, which rebuilds it)", name, got,
                      expected);
}

static void *lc_main(void *arg)
{
    ss_load_check *c = arg;
    ss_quick_digest *h = NULL;
    c->st = ss_quick_digest_create(&h, &c->err);
    for (size_t off = 0; c->st == SS_OK && off < c->len; off += LC_STEP) {
        if (atomic_load(&c->cancel)) {
            c->st = ss_err_set(&c->err, SS_ERR_CANCELLED, "%s: check cancelled", c->name);
            break;
        }
        c->st = ss_quick_digest_update(h, c->data + off, c->len - off < LC_STEP ? c->len - off : LC_STEP, &c->err);
    }
    if (c->st == SS_OK)
        ss_quick_digest_text(h, c->got);
    ss_quick_digest_destroy(h);
    return NULL;
}

static void lc_free(ss_load_check *c)
{
    if (!c)
        return;
    ss_free(c->name);
    ss_free(c->expected);
    ss_free(c);
}

ss_status ss_load_check_start(const void *data, size_t len, const char *name, const char *expected,
                              ss_load_check **out, ss_err *err)
{
    *out = NULL;
    ss_load_check *c = ss_calloc(1, sizeof *c);
    if (!c || !(c->name = ss_strdup(name)) || !(c->expected = ss_strdup(expected))) {
        lc_free(c);
        return ss_err_set(err, SS_ERR_NOMEM, "%s: out of memory", name);
    }
    c->data = data;
    c->len = len;
    int e = pthread_create(&c->th, NULL, lc_main, c);
    if (e) {
        lc_free(c);
        return ss_err_set(err, SS_ERR_INTERNAL, "%s: cannot start the digest check: %s", name, strerror(e));
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
        st = lc_mismatch(err, c->name, c->got, c->expected);
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

static ss_status lc_block(void *ctx, const void *block, size_t n, ss_err *err)
{
    return ss_quick_digest_update(ctx, block, n, err);
}

ss_status ss_load_check_file(const char *path, const char *expected, ss_err *err)
{
    ss_quick_digest *h = NULL;
    ss_status st = ss_quick_digest_create(&h, err);
    if (st == SS_OK)
        st = ss_file_blocks(path, lc_block, h, err);
    char got[SS_QUICK_DIGEST_LEN];
    if (st == SS_OK) {
        ss_quick_digest_text(h, got);
        if (strcmp(got, expected))
            st = lc_mismatch(err, path, got, expected);
    }
    ss_quick_digest_destroy(h);
    return st;
}
