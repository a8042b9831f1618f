/* tok_encode.c — text to ids: added tokens split out first, then per segment the normalizers,
 * the pre-tokenizers (streamed depth-first, no piece list), the BPE model, and the post-processor. */
#include <stdlib.h>
#include <string.h>

#include <utf8proc.h>

#include "core/alloc.h"
#include "tokenizer/tok_internal.h"

/* Per-call cache of short pre-tokens -> ids: natural text repeats its words, and a merge-table
 * probe is a cache miss. Lives for one encode call, so the tokenizer stays immutable. */
typedef struct enc_cache_entry {
    uint32_t key_off, key_len, ids_off, ids_n;
} enc_cache_entry;
typedef struct enc_cache {
    uint64_t *slots; /* (hash << 32) | (entry + 1); 0 = empty */
    size_t mask;
    enc_cache_entry *entries;
    size_t n, max;
    ss_tok_buf keys;
    ss_tok_ids ids;
} enc_cache;

#define ENC_CACHE_WORD 48       /* longest pre-token cached (bytes) */
#define ENC_CACHE_SLOTS 16384   /* largest table */

typedef struct enc_ctx {
    const ss_tokenizer *tok;
    enc_cache cache;
    ss_tok_ids *out;
    ss_err *err;
    pcre2_match_data *md;
    pcre2_match_context *mctx;
    pcre2_jit_stack *jit;
    ss_tok_buf stage_buf[16]; /* one scratch buffer per pre-tokenizer stage */
    ss_tok_buf norm_buf;
} enc_ctx;

#define ENC_MAX_STAGES 16

static ss_status enc_nomem(enc_ctx *c)
{
    return ss_err_set(c->err, SS_ERR_NOMEM, "tokenizer: out of memory while encoding");
}

/* ---- normalizers ---- */

static ss_status norm_unicode(ss_tok_norm_kind kind, const char *s, size_t n, ss_tok_buf *out)
{
    uint32_t limit = kind == SS_TOK_NORM_NFC ? 0x300 : 0x80; /* below: the text is already normal */
    const unsigned char *u = (const unsigned char *)s;
    int plain = 1;
    for (size_t i = 0; i < n && plain;) {
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        size_t k = ss_tok_utf8_len(u + i, n - i);
        if (!k || ss_tok_utf8_decode(u + i, k) >= limit)
            plain = 0;
        i += k ? k : 1;
    }
    if (plain)
        return ss_tok_buf_append(out, s, n);
    int opts = UTF8PROC_STABLE;
    switch (kind) {
    case SS_TOK_NORM_NFC: opts |= UTF8PROC_COMPOSE; break;
    case SS_TOK_NORM_NFD: opts |= UTF8PROC_DECOMPOSE; break;
    case SS_TOK_NORM_NFKC: opts |= UTF8PROC_COMPOSE | UTF8PROC_COMPAT; break;
    default: opts |= UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT; break;
    }
    utf8proc_uint8_t *dst = NULL;
    utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &dst, (utf8proc_option_t)opts);
    if (r < 0) {
        free(dst);
        return r == UTF8PROC_ERROR_NOMEM ? SS_ERR_NOMEM : SS_ERR_INVALID_ARG;
    }
    ss_status st = ss_tok_buf_append(out, dst, (size_t)r);
    free(dst); /* utf8proc allocates with malloc */
    return st;
}

static ss_status norm_one(const ss_tok_norm *d, const char *s, size_t n, ss_tok_buf *out)
{
    switch (d->kind) {
    case SS_TOK_NORM_NFC:
    case SS_TOK_NORM_NFD:
    case SS_TOK_NORM_NFKC:
    case SS_TOK_NORM_NFKD: return norm_unicode(d->kind, s, n, out);
    case SS_TOK_NORM_PREPEND:
        if (n)
            SS_CHECK(ss_tok_buf_append(out, d->a, d->a_len));
        return ss_tok_buf_append(out, s, n);
    case SS_TOK_NORM_REPLACE: {
        size_t i = 0, run = 0;
        while (i + d->a_len <= n) {
            if (s[i] == d->a[0] && !memcmp(s + i, d->a, d->a_len)) {
                SS_CHECK(ss_tok_buf_append(out, s + run, i - run));
                SS_CHECK(ss_tok_buf_append(out, d->b, d->b_len));
                i += d->a_len;
                run = i;
            } else {
                i++;
            }
        }
        return ss_tok_buf_append(out, s + run, n - run);
    }
    case SS_TOK_NORM_STRIP: {
        const unsigned char *u = (const unsigned char *)s;
        size_t a = 0, b = n;
        while (d->left && a < b) {
            size_t k = ss_tok_utf8_len(u + a, b - a);
            if (!k || !ss_tok_is_space(ss_tok_utf8_decode(u + a, k)))
                break;
            a += k;
        }
        while (d->right && b > a) {
            size_t st = b - 1;
            while (st > a && (u[st] & 0xC0) == 0x80)
                st--;
            size_t k = ss_tok_utf8_len(u + st, b - st);
            if (!k || !ss_tok_is_space(ss_tok_utf8_decode(u + st, k)))
                break;
            b = st;
        }
        return ss_tok_buf_append(out, s + a, b - a);
    }
    }
    return SS_ERR_INTERNAL;
}

ss_status ss_tok_normalize(const ss_tokenizer *tok, const char *s, size_t n, ss_tok_buf *out, ss_err *err)
{
    const size_t limit = ss_tok_growth_limit(n);
    ss_tok_buf tmp[2] = {{.limit = limit}, {.limit = limit}};
    const size_t out_limit = out->limit;
    out->limit = limit;
    const char *cur = s;
    size_t cur_n = n;
    ss_status st = SS_OK;
    out->len = 0;
    for (size_t i = 0; i < tok->n_norms; i++) {
        ss_tok_buf *dst = i + 1 == tok->n_norms ? out : &tmp[i & 1];
        dst->len = 0;
        if ((st = norm_one(&tok->norms[i], cur, cur_n, dst)) != SS_OK)
            break;
        if (!dst->p && (st = ss_tok_buf_append(dst, "", 0)) != SS_OK)
            break;
        cur = dst->p;
        cur_n = dst->len;
    }
    if (st == SS_OK && !tok->n_norms)
        st = ss_tok_buf_append(out, s, n);
    ss_tok_buf_free(&tmp[0]);
    ss_tok_buf_free(&tmp[1]);
    out->limit = out_limit;
    if (st == SS_ERR_CAPACITY)
        return ss_err_set(err, st, "tokenizer: the normalizers grow a %zu-byte text beyond %zu bytes (%d times): "
                          "refused", n, limit, SS_TOK_MAX_GROWTH);
    if (st != SS_OK)
        return ss_err_set(err, st, "tokenizer: normalization failed (%s)", ss_status_str(st));
    return SS_OK;
}

/* ---- pre-tokenizers ---- */

static ss_status pretok_run(enc_ctx *c, size_t stage, const char *p, size_t n, int at_origin);

/* Applies a split behavior to the stream of (interval, is_match) of one piece. */
typedef struct split_state {
    enc_ctx *c;
    size_t stage;
    const char *base;
    int at_origin;
    ss_tok_split_behavior beh;
    int pending; /* ps..pe held back, pm: it is a match */
    size_t ps, pe;
    int pm;
} split_state;

static ss_status split_emit(split_state *s, size_t a, size_t b)
{
    return pretok_run(s->c, s->stage + 1, s->base + a, b - a, s->at_origin && a == 0);
}

static ss_status split_add(split_state *s, size_t a, size_t b, int is_match)
{
    switch (s->beh) {
    case SS_TOK_SPLIT_REMOVED: return is_match ? SS_OK : split_emit(s, a, b);
    case SS_TOK_SPLIT_ISOLATED: return split_emit(s, a, b);
    case SS_TOK_SPLIT_MERGED_PREV:
        if (is_match && s->pending && !s->pm) {
            s->pe = b;
            s->pm = 1;
            return SS_OK;
        }
        break;
    case SS_TOK_SPLIT_MERGED_NEXT:
        if (!is_match && s->pending && s->pm) {
            s->pe = b;
            s->pm = 0;
            SS_CHECK(split_emit(s, s->ps, s->pe));
            s->pending = 0;
            return SS_OK;
        }
        break;
    case SS_TOK_SPLIT_CONTIGUOUS:
        if (s->pending && is_match == s->pm) {
            s->pe = b;
            return SS_OK;
        }
        break;
    }
    if (s->pending)
        SS_CHECK(split_emit(s, s->ps, s->pe));
    s->pending = 1;
    s->ps = a;
    s->pe = b;
    s->pm = is_match;
    return SS_OK;
}

static ss_status split_finish(split_state *s)
{
    if (s->pending && s->beh != SS_TOK_SPLIT_REMOVED && s->beh != SS_TOK_SPLIT_ISOLATED) {
        s->pending = 0;
        return split_emit(s, s->ps, s->pe);
    }
    return SS_OK;
}

static ss_status split_regex(enc_ctx *c, split_state *s, const pcre2_code *re, const char *p, size_t n)
{
    size_t off = 0, prev = 0;
    while (off <= n) {
        int rc = pcre2_match(re, (PCRE2_SPTR)p, n, off, PCRE2_NO_UTF_CHECK, c->md, c->mctx);
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT && !c->jit) {
            /* the default JIT stack is small; a big one only for the inputs that need it */
            c->jit = pcre2_jit_stack_create(256 * 1024, 64 * 1024 * 1024, c->tok->gctx);
            if (!c->jit)
                return enc_nomem(c);
            pcre2_jit_stack_assign(c->mctx, NULL, c->jit);
            continue;
        }
        if (rc == PCRE2_ERROR_NOMATCH)
            break;
        if (rc < 0) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return ss_err_set(c->err, rc == PCRE2_ERROR_NOMEMORY ? SS_ERR_NOMEM : SS_ERR_CAPACITY,
                              "tokenizer: pre-tokenizer regex failed on a %zu-byte piece: %s", n, (char *)msg);
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(c->md);
        size_t ms = ov[0], me = ov[1];
        if (me <= ms) { /* empty match: step over one character */
            size_t k = off < n ? ss_tok_utf8_len((const unsigned char *)p + off, n - off) : 1;
            off += k ? k : 1;
            continue;
        }
        if (ms > prev)
            SS_CHECK(split_add(s, prev, ms, 0));
        SS_CHECK(split_add(s, ms, me, 1));
        prev = off = me;
    }
    if (prev < n)
        SS_CHECK(split_add(s, prev, n, 0));
    return split_finish(s);
}

static ss_status split_literal(split_state *s, const char *lit, size_t lit_len, const char *p, size_t n)
{
    size_t i = 0, prev = 0;
    while (i + lit_len <= n) {
        if (p[i] == lit[0] && !memcmp(p + i, lit, lit_len)) {
            if (i > prev)
                SS_CHECK(split_add(s, prev, i, 0));
            SS_CHECK(split_add(s, i, i + lit_len, 1));
            i += lit_len;
            prev = i;
        } else {
            i++;
        }
    }
    if (prev < n)
        SS_CHECK(split_add(s, prev, n, 0));
    return split_finish(s);
}

static ss_status split_digits(split_state *s, const char *p, size_t n)
{
    const unsigned char *u = (const unsigned char *)p;
    size_t i = 0, prev = 0;
    while (i < n) {
        size_t k = ss_tok_utf8_len(u + i, n - i);
        if (!k)
            k = 1;
        if (ss_tok_is_numeric(ss_tok_utf8_decode(u + i, k))) {
            if (i > prev)
                SS_CHECK(split_add(s, prev, i, 0));
            SS_CHECK(split_add(s, i, i + k, 1));
            prev = i + k;
        }
        i += k;
    }
    if (prev < n)
        SS_CHECK(split_add(s, prev, n, 0));
    return split_finish(s);
}

/* The model stage, through the per-call cache. */
static ss_status enc_word(enc_ctx *c, const char *p, size_t n)
{
    enc_cache *k = &c->cache;
    if (n > ENC_CACHE_WORD || !k->slots)
        return ss_tok_bpe_word(c->tok, p, n, 0, c->out, c->err);
    uint32_t h = ss_tok_hash(p, n);
    size_t i = h & k->mask;
    for (uint64_t v; (v = k->slots[i]) != 0; i = (i + 1) & k->mask) {
        if ((uint32_t)(v >> 32) != h)
            continue;
        const enc_cache_entry *e = &k->entries[(uint32_t)v - 1];
        if (e->key_len != n || memcmp(k->keys.p + e->key_off, p, n))
            continue;
        for (uint32_t j = 0; j < e->ids_n; j++)
            if (ss_tok_ids_push(c->out, k->ids.v[e->ids_off + j]) != SS_OK)
                return enc_nomem(c);
        return SS_OK;
    }
    size_t start = c->out->n;
    SS_CHECK(ss_tok_bpe_word(c->tok, p, n, 0, c->out, c->err));
    if (k->n >= k->max) /* full: stop caching, keep encoding */
        return SS_OK;
    enc_cache_entry e = {(uint32_t)k->keys.len, (uint32_t)n, (uint32_t)k->ids.n, (uint32_t)(c->out->n - start)};
    if (ss_tok_buf_append(&k->keys, p, n) != SS_OK)
        return enc_nomem(c);
    for (size_t j = start; j < c->out->n; j++)
        if (ss_tok_ids_push(&k->ids, c->out->v[j]) != SS_OK)
            return enc_nomem(c);
    k->entries[k->n] = e;
    k->slots[i] = ((uint64_t)h << 32) | (uint64_t)(++k->n);
    return SS_OK;
}

static ss_status pretok_run(enc_ctx *c, size_t stage, const char *p, size_t n, int at_origin)
{
    const ss_tokenizer *tok = c->tok;
    if (!n)
        return SS_OK;
    if (stage == tok->n_pretoks)
        return enc_word(c, p, n);
    const ss_tok_pretok *pt = &tok->pretoks[stage];
    ss_tok_buf *buf = &c->stage_buf[stage];
    split_state s = {.c = c, .stage = stage, .at_origin = at_origin, .beh = SS_TOK_SPLIT_ISOLATED};
    switch (pt->kind) {
    case SS_TOK_PRE_SPLIT:
        s.beh = pt->behavior;
        s.base = p;
        if (pt->re)
            return split_regex(c, &s, pt->re, p, n);
        return split_literal(&s, pt->literal, pt->literal_len, p, n);
    case SS_TOK_PRE_BYTELEVEL:
        if (pt->add_prefix_space && p[0] != ' ') {
            buf->len = 0;
            if (ss_tok_buf_append(buf, " ", 1) != SS_OK || ss_tok_buf_append(buf, p, n) != SS_OK)
                return enc_nomem(c);
            p = buf->p;
            n = buf->len;
        }
        s.base = p;
        if (pt->re)
            return split_regex(c, &s, pt->re, p, n);
        return pretok_run(c, stage + 1, p, n, at_origin);
    case SS_TOK_PRE_METASPACE: {
        buf->len = 0;
        int starts = n >= pt->repl_len && !memcmp(p, pt->repl, pt->repl_len);
        if (!starts && p[0] == ' ')
            starts = 1; /* the space becomes the replacement below */
        if (!starts && (pt->prepend == SS_TOK_PREPEND_ALWAYS || (pt->prepend == SS_TOK_PREPEND_FIRST && at_origin)))
            if (ss_tok_buf_append(buf, pt->repl, pt->repl_len) != SS_OK)
                return enc_nomem(c);
        size_t run = 0;
        for (size_t i = 0; i < n; i++) {
            if (p[i] != ' ')
                continue;
            if (ss_tok_buf_append(buf, p + run, i - run) != SS_OK || ss_tok_buf_append(buf, pt->repl, pt->repl_len) != SS_OK)
                return enc_nomem(c);
            run = i + 1;
        }
        if (ss_tok_buf_append(buf, p + run, n - run) != SS_OK)
            return enc_nomem(c);
        if (!pt->split)
            return pretok_run(c, stage + 1, buf->p, buf->len, at_origin);
        s.beh = SS_TOK_SPLIT_MERGED_NEXT;
        s.base = buf->p;
        return split_literal(&s, pt->repl, pt->repl_len, buf->p, buf->len);
    }
    case SS_TOK_PRE_DIGITS:
        s.beh = pt->individual_digits ? SS_TOK_SPLIT_ISOLATED : SS_TOK_SPLIT_CONTIGUOUS;
        s.base = p;
        return split_digits(&s, p, n);
    }
    return ss_err_set(c->err, SS_ERR_INTERNAL, "tokenizer: bad pre-tokenizer");
}

/* ---- added tokens ---- */

/* Finds the leftmost-longest added token at or after *pos in s[0..n); returns its index in
 * tok->added or -1, with [*ms, *me) its span. */
static int added_find(const ss_tokenizer *tok, const ss_tok_matcher *m, int normalized, const char *s, size_t n,
                      size_t pos, size_t *ms, size_t *me)
{
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = pos; i < n; i++) {
        unsigned b = u[i];
        for (uint32_t k = m->start[b]; k < m->start[b + 1]; k++) {
            uint32_t idx = m->order[k];
            const char *c = normalized ? m->norm_content[idx] : tok->added[idx].content;
            size_t len = normalized ? m->norm_len[idx] : tok->added[idx].len;
            if (len <= n - i && !memcmp(s + i, c, len)) {
                *ms = i;
                *me = i + len;
                return (int)idx;
            }
        }
    }
    return -1;
}

static uint32_t prev_char(const char *s, size_t end)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t st = end - 1;
    while (st > 0 && (u[st] & 0xC0) == 0x80)
        st--;
    size_t k = ss_tok_utf8_len(u + st, end - st);
    return k ? ss_tok_utf8_decode(u + st, k) : 0xFFFD;
}

static uint32_t next_char(const char *s, size_t start, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t k = ss_tok_utf8_len(u + start, n - start);
    return k ? ss_tok_utf8_decode(u + start, k) : 0xFFFD;
}

typedef ss_status (*seg_fn)(enc_ctx *c, const char *p, size_t n, int at_origin);

/* Splits s on the matcher's added tokens: gaps go to fn, tokens to the output. */
static ss_status added_split(enc_ctx *c, const ss_tok_matcher *m, int normalized, const char *s, size_t n,
                             int at_origin, seg_fn fn)
{
    const ss_tokenizer *tok = c->tok;
    size_t start_offset = 0, pos = 0;
    if (m->start[256] == 0)
        return fn(c, s, n, at_origin);
    for (;;) {
        size_t ms, me;
        int idx = added_find(tok, m, normalized, s, n, pos, &ms, &me);
        if (idx < 0)
            break;
        const ss_tok_added *a = &tok->added[idx];
        pos = me;
        if (a->single_word) {
            int start_ok = ms == 0 || !ss_tok_is_word(prev_char(s, ms));
            int stop_ok = me == n || !ss_tok_is_word(next_char(s, me, n));
            if (!start_ok || !stop_ok)
                continue;
        }
        size_t start = ms, stop = me;
        if (a->lstrip) {
            size_t ns = start;
            while (ns > 0) {
                const unsigned char *u = (const unsigned char *)s;
                size_t st = ns - 1;
                while (st > 0 && (u[st] & 0xC0) == 0x80)
                    st--;
                if (!ss_tok_is_space(prev_char(s, ns)))
                    break;
                ns = st;
            }
            start = ns > start_offset ? ns : start_offset;
        }
        if (a->rstrip) {
            while (stop < n) {
                size_t k = ss_tok_utf8_len((const unsigned char *)s + stop, n - stop);
                if (!k || !ss_tok_is_space(ss_tok_utf8_decode((const unsigned char *)s + stop, k)))
                    break;
                stop += k;
            }
            pos = stop;
        }
        if (start > start_offset)
            SS_CHECK(fn(c, s + start_offset, start - start_offset, at_origin && start_offset == 0));
        if (ss_tok_ids_push(c->out, a->id) != SS_OK)
            return enc_nomem(c);
        start_offset = stop;
    }
    if (start_offset < n)
        SS_CHECK(fn(c, s + start_offset, n - start_offset, at_origin && start_offset == 0));
    return SS_OK;
}

static ss_status seg_pretok(enc_ctx *c, const char *p, size_t n, int at_origin)
{
    return pretok_run(c, 0, p, n, at_origin);
}

/* A segment free of raw added tokens: normalize, split normalized added tokens, pre-tokenize. */
static ss_status seg_normalize(enc_ctx *c, const char *p, size_t n, int at_origin)
{
    const ss_tokenizer *tok = c->tok;
    if (!n)
        return SS_OK;
    if (tok->n_norms) {
        SS_CHECK(ss_tok_normalize(tok, p, n, &c->norm_buf, c->err));
        p = c->norm_buf.p;
        n = c->norm_buf.len;
    }
    return added_split(c, &tok->match_norm, 1, p, n, at_origin, seg_pretok);
}

static ss_status enc_setup(enc_ctx *c, size_t text_len)
{
    const ss_tokenizer *tok = c->tok;
    if (tok->n_pretoks > ENC_MAX_STAGES)
        return ss_err_set(c->err, SS_ERR_UNSUPPORTED, "tokenizer: more than %d pre-tokenizers", ENC_MAX_STAGES);
    if (text_len >= 4096) { /* below that, the table would cost more than it saves */
        size_t slots = 64;
        while (slots < ENC_CACHE_SLOTS && slots < text_len / 2)
            slots *= 2;
        c->cache.slots = ss_calloc(slots, sizeof *c->cache.slots);
        c->cache.entries = ss_malloc(slots / 2 * sizeof *c->cache.entries);
        if (!c->cache.slots || !c->cache.entries)
            return enc_nomem(c);
        c->cache.mask = slots - 1;
        c->cache.max = slots / 2;
    }
    int need_re = 0;
    for (size_t i = 0; i < tok->n_pretoks; i++)
        need_re |= tok->pretoks[i].re != NULL;
    if (!need_re)
        return SS_OK;
    c->md = pcre2_match_data_create(4, tok->gctx);
    c->mctx = pcre2_match_context_create(tok->gctx);
    if (!c->md || !c->mctx)
        return enc_nomem(c);
    return SS_OK;
}

static void enc_teardown(enc_ctx *c)
{
    ss_free(c->cache.slots);
    ss_free(c->cache.entries);
    ss_tok_buf_free(&c->cache.keys);
    ss_free(c->cache.ids.v);
    pcre2_match_data_free(c->md);
    pcre2_match_context_free(c->mctx);
    pcre2_jit_stack_free(c->jit);
    for (size_t i = 0; i < ENC_MAX_STAGES; i++)
        ss_tok_buf_free(&c->stage_buf[i]);
    ss_tok_buf_free(&c->norm_buf);
}

static ss_status enc_post(const ss_tokenizer *tok, ss_tok_ids *ids, ss_err *err)
{
    for (size_t t = 0; t < tok->n_tmpls; t++) {
        const ss_tok_tmpl *tm = &tok->tmpls[t];
        ss_tok_ids out = {0};
        for (size_t i = 0; i < tm->n; i++) {
            const int32_t *src = tm->items[i].is_seq ? ids->v : tm->items[i].ids;
            size_t cnt = tm->items[i].is_seq ? ids->n : tm->items[i].n;
            for (size_t k = 0; k < cnt; k++) {
                if (ss_tok_ids_push(&out, src[k]) != SS_OK) {
                    ss_free(out.v);
                    return ss_err_set(err, SS_ERR_NOMEM, "tokenizer: out of memory");
                }
            }
        }
        ss_free(ids->v);
        *ids = out;
    }
    return SS_OK;
}

ss_status ss_tokenizer_encode(const ss_tokenizer *tok, const char *text, size_t len, int add_special,
                              int32_t **ids, size_t *n_ids, ss_err *err)
{
    if (!tok || (!text && len) || !ids || !n_ids)
        return ss_err_set(err, SS_ERR_INVALID_ARG, "ss_tokenizer_encode: NULL argument");
    *ids = NULL;
    *n_ids = 0;
    if (len > SS_TOKENIZER_MAX_TEXT)
        return ss_err_set(err, SS_ERR_CAPACITY, "tokenizer: text of %zu bytes exceeds the %zu-byte limit", len,
                          SS_TOKENIZER_MAX_TEXT);
    size_t bad = ss_tok_utf8_validate(text, len);
    if (bad != len)
        return ss_err_set(err, SS_ERR_INVALID_ARG, "tokenizer: invalid UTF-8 at byte %zu", bad);
    ss_tok_ids out = {0};
    enc_ctx c = {.tok = tok, .out = &out, .err = err};
    ss_status st = enc_setup(&c, len);
    if (st == SS_OK && len)
        st = added_split(&c, &tok->match_raw, 0, text, len, 1, seg_normalize);
    enc_teardown(&c);
    if (st == SS_OK && add_special)
        st = enc_post(tok, &out, err);
    if (st != SS_OK) {
        ss_free(out.v);
        return st;
    }
    *ids = out.v;
    *n_ids = out.n;
    return SS_OK;
}
