/* guide_vocab.c — JSON mode's token masks: the vocabulary sorted by bytes, walked once per mask with the
 * guide's state shared along common prefixes, whole runs of tokens skipped behind a rejected prefix, and inside
 * strings the tokens that cannot leave one taken as a block. */
#include "serve/guide_vocab.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/cpus.h"

/* Tokens in byte order: token i is bytes[off[i] .. off[i] + len[i]), its id ids[i]. */
typedef struct tok_list {
    int32_t n;
    int32_t *ids;
    uint32_t *off;
    uint16_t *len; /* <= SS_GUIDE_MAX_TOKEN_BYTES */
    uint16_t *lcp; /* bytes in common with the token before (0 for the first) */
} tok_list;

struct ss_guide_vocab {
    int32_t model_vocab;
    uint8_t *bytes;       /* every allowed token's bytes, in byte order */
    tok_list all;         /* every token a guide may allow */
    tok_list rest;        /* those not in in_string, in the same order */
    uint32_t *in_string;  /* mask of the tokens that stay inside a string from any point between characters
                           * (no unescaped '"', whole UTF-8 characters, no control bytes) */
    int32_t *index_of;    /* [model_vocab] position in all, -1 for tokens never allowed */
    ss_json_state *state; /* [max_len + 1] scratch of ss_guide_vocab_mask: the state after each prefix byte */
    size_t max_len;       /* the longest token's bytes */
};

typedef struct entry {
    char *p; /* owned until copied */
    size_t len;
    int32_t id;
} entry;

static int entry_cmp(const void *a, const void *b)
{
    const entry *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->p, y->p, n);
    if (c)
        return c;
    if (x->len != y->len)
        return x->len < y->len ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

static void entries_free(entry *e, int32_t n)
{
    for (int32_t i = 0; i < n; i++)
        ss_free(e[i].p);
    ss_free(e);
}

/* Reads the allowed tokens' bytes into e (sorted); *n_out entries, *total their bytes, *max_len the longest. */
static ss_status read_tokens(const ss_tokenizer *tok, int32_t model_vocab, entry **out, int32_t *n_out, size_t *total,
                             size_t *max_len, ss_err *err)
{
    int32_t tv = ss_tokenizer_vocab_size(tok);
    if (tv > model_vocab)
        tv = model_vocab;
    entry *e = ss_calloc(tv > 0 ? (size_t)tv : 1, sizeof *e);
    if (!e)
        return ss_err_set(err, SS_ERR_NOMEM, "JSON mode: out of memory for the vocabulary (%d tokens)", tv);
    int32_t n = 0;
    *total = *max_len = 0;
    for (int32_t id = 0; id < tv; id++) {
        if (ss_tokenizer_is_special(tok, id))
            continue;
        char *b = NULL;
        size_t len = 0;
        ss_status st = ss_tokenizer_token_bytes_mid(tok, id, &b, &len, err);
        if (st != SS_OK) {
            entries_free(e, n);
            return st;
        }
        if (len == 0 || len > SS_GUIDE_MAX_TOKEN_BYTES) {
            ss_free(b);
            continue;
        }
        e[n++] = (entry){b, len, id};
        *total += len;
        if (len > *max_len)
            *max_len = len;
    }
    qsort(e, (size_t)n, sizeof *e, entry_cmp);
    *out = e;
    *n_out = n;
    return SS_OK;
}

static int list_alloc(tok_list *l, int32_t n)
{
    size_t m = n ? (size_t)n : 1;
    l->n = 0;
    l->ids = ss_malloc(m * sizeof *l->ids);
    l->off = ss_malloc(m * sizeof *l->off);
    l->len = ss_malloc(m * sizeof *l->len);
    l->lcp = ss_malloc(m * sizeof *l->lcp);
    return l->ids && l->off && l->len && l->lcp;
}

static void list_free(tok_list *l)
{
    ss_free(l->ids);
    ss_free(l->off);
    ss_free(l->len);
    ss_free(l->lcp);
}

/* Appends a token (after every token before it in byte order) whose bytes are bytes[off .. off + len). */
static void list_push(tok_list *l, const uint8_t *bytes, int32_t id, uint32_t off, uint16_t len)
{
    int32_t i = l->n++;
    uint16_t c = 0;
    if (i > 0) {
        const uint8_t *a = bytes + l->off[i - 1], *b = bytes + off;
        uint16_t m = len < l->len[i - 1] ? len : l->len[i - 1];
        while (c < m && a[c] == b[c])
            c++;
    }
    l->ids[i] = id;
    l->off[i] = off;
    l->len[i] = len;
    l->lcp[i] = c;
}

/* 1 when the guide accepts every byte of p inside a string between two characters and never leaves the
 * string: then it does so from any such point, whatever the rest of the state (key or value, depth). */
static int stays_in_string(const uint8_t *p, size_t n)
{
    const ss_json_schema *any = ss_json_schema_any_object();
    ss_json_state s;
    ss_json_init(&s, any);
    if (!ss_json_push_bytes(any, &s, (const uint8_t *)"{\"", 2))
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!ss_json_push(any, &s, p[i]) || !ss_json_in_string(&s))
            return 0;
    return 1;
}

ss_status ss_guide_vocab_create(const ss_tokenizer *tok, int32_t model_vocab, ss_guide_vocab **out, ss_err *err)
{
    if (!tok || !out || model_vocab <= 0)
        return ss_err_set(err, SS_ERR_INVALID_ARG, "ss_guide_vocab_create: bad argument");
    *out = NULL;
    entry *e = NULL;
    int32_t n = 0;
    size_t total = 0, max_len = 0;
    SS_CHECK(read_tokens(tok, model_vocab, &e, &n, &total, &max_len, err));
    if (total > UINT32_MAX) {
        entries_free(e, n);
        return ss_err_set(err, SS_ERR_CAPACITY, "JSON mode: the vocabulary's bytes (%zu) exceed 4 GiB", total);
    }
    ss_guide_vocab *v = ss_calloc(1, sizeof *v);
    int ok = v && list_alloc(&v->all, n) && list_alloc(&v->rest, n);
    if (ok) {
        v->model_vocab = model_vocab;
        v->bytes = ss_malloc(total ? total : 1);
        v->index_of = ss_malloc((size_t)model_vocab * sizeof *v->index_of);
        v->in_string = ss_calloc((size_t)ss_guide_vocab_words(v), sizeof *v->in_string);
        v->state = ss_malloc((max_len + 1) * sizeof *v->state);
        v->max_len = max_len;
        ok = v->bytes && v->index_of && v->in_string && v->state;
    }
    if (!ok) {
        entries_free(e, n);
        ss_guide_vocab_destroy(v);
        return ss_err_set(err, SS_ERR_NOMEM, "JSON mode: out of memory for the vocabulary (%d tokens)", n);
    }
    for (int32_t t = 0; t < model_vocab; t++)
        v->index_of[t] = -1;
    size_t at = 0;
    for (int32_t i = 0; i < n; i++) {
        memcpy(v->bytes + at, e[i].p, e[i].len);
        v->index_of[e[i].id] = v->all.n;
        list_push(&v->all, v->bytes, e[i].id, (uint32_t)at, (uint16_t)e[i].len);
        if (stays_in_string(v->bytes + at, e[i].len))
            v->in_string[e[i].id >> 5] |= (uint32_t)1 << (e[i].id & 31);
        else
            list_push(&v->rest, v->bytes, e[i].id, (uint32_t)at, (uint16_t)e[i].len);
        at += e[i].len;
    }
    entries_free(e, n);
    *out = v;
    return SS_OK;
}

void ss_guide_vocab_destroy(ss_guide_vocab *v)
{
    if (!v)
        return;
    list_free(&v->all);
    list_free(&v->rest);
    ss_free(v->in_string);
    ss_free(v->bytes);
    ss_free(v->index_of);
    ss_free(v->state);
    ss_free(v);
}

int32_t ss_guide_vocab_words(const ss_guide_vocab *v)
{
    return (v->model_vocab + 31) / 32;
}

/* One pass over l. state[d] is the guide after the first d bytes of the token before; a token that shares c
 * bytes with it starts from state[c]. When byte d of a token is refused, every token after it that shares those
 * d + 1 bytes is refused too, and is skipped by comparing lcp alone. Sets the accepted tokens' bits. */
static int64_t mask_walk(const ss_guide_vocab *v, const tok_list *l, const ss_json_schema *sc, ss_json_state *st,
                         uint32_t *mask)
{
    int32_t ok = 0; /* state[0 .. ok] hold for the token before */
    int dead = 0;   /* its byte ok was refused */
    int64_t allowed = 0;
    for (int32_t i = 0; i < l->n; i++) {
        int32_t c = l->lcp[i];
        if (dead && c > ok)
            continue; /* it begins with the refused prefix */
        const uint8_t *p = v->bytes + l->off[i];
        int32_t len = l->len[i];
        int32_t d = c; /* c <= ok: state[c] holds */
        dead = 0;
        for (; d < len; d++) {
            ss_json_state_copy(&st[d + 1], &st[d]);
            if (!ss_json_push(sc, &st[d + 1], p[d])) {
                dead = 1;
                break;
            }
        }
        ok = d;
        if (!dead) {
            int32_t t = l->ids[i];
            mask[t >> 5] |= (uint32_t)1 << (t & 31);
            allowed++;
        }
    }
    return allowed;
}

size_t ss_guide_vocab_scratch_len(const ss_guide_vocab *v)
{
    return v->max_len + 1;
}

int64_t ss_guide_vocab_mask_into(const ss_guide_vocab *v, const ss_json_schema *sc, const ss_json_state *s,
                                 uint32_t *mask, ss_json_state *scratch)
{
    const size_t words = (size_t)ss_guide_vocab_words(v);
    scratch[0] = *s;
    if (!ss_json_between_chars(s)) {
        memset(mask, 0, words * sizeof *mask);
        return mask_walk(v, &v->all, sc, scratch, mask);
    }
    /* between two characters of a string: the tokens that stay in it are all accepted; walk the others */
    memcpy(mask, v->in_string, words * sizeof *mask);
    int64_t allowed = v->all.n - v->rest.n;
    return allowed + mask_walk(v, &v->rest, sc, scratch, mask);
}

int64_t ss_guide_vocab_mask(ss_guide_vocab *v, const ss_json_schema *sc, const ss_json_state *s, uint32_t *mask)
{
    return ss_guide_vocab_mask_into(v, sc, s, mask, v->state);
}

ss_status ss_guide_feed(ss_guide *g, const ss_guide_vocab *v, int32_t tok, ss_err *err)
{
    size_t n = 0;
    const uint8_t *b = ss_guide_vocab_bytes(v, tok, &n);
    if (!b || !ss_json_push_bytes(g->schema, &g->st, b, n))
        return ss_err_set(err, SS_ERR_INTERNAL, "JSON mode: token %d does not continue the object", (int)tok);
    g->last = tok;
    return SS_OK;
}

ss_status ss_guide_remask(ss_guide *g, const ss_guide_vocab *v, ss_json_state *scratch, ss_err *err)
{
    if (ss_guide_vocab_mask_into(v, g->schema, &g->st, g->allow, scratch) == 0)
        return ss_err_set(err, SS_ERR_UNSUPPORTED,
                          "JSON mode: no token of this vocabulary continues the object after token %d", (int)g->last);
    return SS_OK;
}

const uint8_t *ss_guide_vocab_bytes(const ss_guide_vocab *v, int32_t id, size_t *len)
{
    *len = 0;
    if (id < 0 || id >= v->model_vocab || v->index_of[id] < 0)
        return NULL;
    int32_t i = v->index_of[id];
    *len = v->all.len[i];
    return v->bytes + v->all.off[i];
}

ss_status ss_guide_start(ss_guide *g, ss_guide_vocab *v, const ss_json_schema *sc, ss_err *err)
{
    g->schema = sc;
    g->allow = ss_malloc((size_t)ss_guide_vocab_words(v) * sizeof *g->allow);
    if (!g->allow)
        return ss_err_set(err, SS_ERR_NOMEM, "JSON mode: out of memory for a token mask");
    ss_json_init(&g->st, sc);
    if (ss_guide_vocab_mask(v, sc, &g->st, g->allow) == 0)
        return ss_err_set(err, SS_ERR_UNSUPPORTED, "JSON mode: no token of this vocabulary can begin the object");
    return SS_OK;
}

ss_status ss_guide_advance(ss_guide *g, ss_guide_vocab *v, int32_t tok, ss_err *err)
{
    SS_CHECK(ss_guide_feed(g, v, tok, err));
    return ss_guide_done(g) ? SS_OK : ss_guide_remask(g, v, v->state, err);
}

int ss_guide_done(const ss_guide *g)
{
    return ss_json_done(&g->st);
}

void ss_guide_clear(ss_guide *g)
{
    ss_free(g->allow);
    g->allow = NULL;
}

struct ss_guide_batch {
    int threads;
    int32_t max;
    size_t len;            /* scratch states per thread */
    ss_json_state *scratch; /* [threads * len] */
    ss_status *st;         /* [max] */
    ss_err *err;           /* [max] */
};

ss_status ss_guide_batch_create(const ss_guide_vocab *v, int threads, int32_t max_guides, ss_guide_batch **out,
                                ss_err *err)
{
    *out = NULL;
    if (threads <= 0)
        threads = ss_helper_threads();
    ss_guide_batch *b = ss_calloc(1, sizeof *b);
    if (b) {
        b->threads = threads;
        b->max = max_guides > 0 ? max_guides : 1;
        b->len = ss_guide_vocab_scratch_len(v);
        b->scratch = ss_malloc((size_t)threads * b->len * sizeof *b->scratch);
        b->st = ss_malloc((size_t)b->max * sizeof *b->st);
        b->err = ss_malloc((size_t)b->max * sizeof *b->err);
    }
    if (!b || !b->scratch || !b->st || !b->err) {
        ss_guide_batch_destroy(b);
        return ss_err_set(err, SS_ERR_NOMEM, "JSON mode: out of memory for the mask workers");
    }
    *out = b;
    return SS_OK;
}

void ss_guide_batch_destroy(ss_guide_batch *b)
{
    if (!b)
        return;
    ss_free(b->scratch);
    ss_free(b->st);
    ss_free(b->err);
    ss_free(b);
}

int ss_guide_batch_threads(const ss_guide_batch *b)
{
    return b->threads;
}

int32_t ss_guide_batch_remask(ss_guide_batch *b, const ss_guide_vocab *v, ss_guide *const *g, int32_t n)
{
    int threads = n < b->threads ? (int)n : b->threads;
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1) if (threads > 1)
    for (int32_t i = 0; i < n; i++)
        b->st[i] = ss_guide_remask(g[i], v, b->scratch + (size_t)omp_get_thread_num() * b->len, &b->err[i]);
    int32_t failed = 0;
    for (int32_t i = 0; i < n; i++)
        failed += b->st[i] != SS_OK;
    return failed;
}

ss_status ss_guide_batch_error(const ss_guide_batch *b, int32_t i, const char **msg)
{
    *msg = b->st[i] != SS_OK ? b->err[i].msg : "";
    return b->st[i];
}
