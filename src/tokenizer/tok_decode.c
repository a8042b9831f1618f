/* tok_decode.c — ids to text through the decoder chain (ByteLevel, Metaspace, Replace, ByteFallback,
 * Fuse, Strip), and the incremental detokenizer that streams it at UTF-8 character boundaries. */
#include <string.h>

#include "core/alloc.h"
#include "tokenizer/tok_internal.h"

static const char dec_fffd[3] = {(char)0xEF, (char)0xBF, (char)0xBD};

/* A list of token strings: token i is text[ends[i-1] .. ends[i]). */
typedef struct dec_list {
    ss_tok_buf text;
    size_t *ends;
    size_t n, cap;
} dec_list;

static ss_status dl_push(dec_list *l, const char *p, size_t n)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        size_t *e = ss_realloc(l->ends, cap * sizeof *e);
        if (!e)
            return SS_ERR_NOMEM;
        l->ends = e;
        l->cap = cap;
    }
    SS_CHECK(ss_tok_buf_append(&l->text, p, n));
    l->ends[l->n++] = l->text.len;
    return SS_OK;
}

/* Appends to the last token (which must exist). */
static ss_status dl_extend(dec_list *l, const char *p, size_t n)
{
    SS_CHECK(ss_tok_buf_append(&l->text, p, n));
    l->ends[l->n - 1] = l->text.len;
    return SS_OK;
}

static const char *dl_get(const dec_list *l, size_t i, size_t *n)
{
    size_t a = i ? l->ends[i - 1] : 0;
    *n = l->ends[i] - a;
    return l->text.p + a;
}

static void dl_reset(dec_list *l)
{
    l->text.len = 0;
    l->n = 0;
}

static void dl_free(dec_list *l)
{
    ss_tok_buf_free(&l->text);
    ss_free(l->ends);
    memset(l, 0, sizeof *l);
}

static int dec_hex(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* "<0xXX>" -> byte (the reference parses XX as a base-16 integer, so "+X" passes too). */
static int dec_byte_token(const char *s, size_t n)
{
    if (n != 6 || memcmp(s, "<0x", 3) || s[5] != '>')
        return -1;
    int hi = dec_hex(s[3]), lo = dec_hex(s[4]);
    if (s[3] == '+' && lo >= 0)
        return lo;
    if (hi < 0 || lo < 0)
        return -1;
    return hi * 16 + lo;
}

static ss_status dec_flush_bytes(dec_list *out, ss_tok_buf *bytes, int raw)
{
    if (!bytes->len)
        return SS_OK;
    if (raw || ss_tok_utf8_validate(bytes->p, bytes->len) == bytes->len) {
        SS_CHECK(dl_push(out, bytes->p, bytes->len));
    } else {
        for (size_t i = 0; i < bytes->len; i++)
            SS_CHECK(dl_push(out, dec_fffd, 3));
    }
    bytes->len = 0;
    return SS_OK;
}

/* One decoder over in -> out. collapsed: the list is already one fused string. raw: bytes that are not valid
 * UTF-8 stay as they are (no U+FFFD), for ss_tokenizer_token_bytes. */
static ss_status dec_step(const ss_tokenizer *tok, const ss_tok_dec *d, const dec_list *in, dec_list *out,
                          int at_start, int collapsed, int raw, ss_tok_buf *scratch)
{
    dl_reset(out);
    switch (d->kind) {
    case SS_TOK_DEC_FUSE:
        SS_CHECK(dl_push(out, in->text.p ? in->text.p : "", in->text.len));
        return SS_OK;
    case SS_TOK_DEC_BYTELEVEL: {
        scratch->len = 0;
        for (size_t i = 0; i < in->n; i++) {
            size_t n;
            const char *s = dl_get(in, i, &n);
            const unsigned char *u = (const unsigned char *)s;
            size_t mark = scratch->len;
            int ok = 1;
            for (size_t k = 0; k < n && ok;) {
                size_t c = ss_tok_utf8_len(u + k, n - k);
                uint32_t cp = c ? ss_tok_utf8_decode(u + k, c) : 0xFFFFFFFF;
                if (cp >= 324 || tok->char_byte[cp] < 0) {
                    ok = 0;
                    break;
                }
                char b = (char)tok->char_byte[cp];
                SS_CHECK(ss_tok_buf_append(scratch, &b, 1));
                k += c;
            }
            if (!ok) { /* not in the byte alphabet: the token's own bytes */
                scratch->len = mark;
                SS_CHECK(ss_tok_buf_append(scratch, s, n));
            }
        }
        SS_CHECK(dl_push(out, "", 0)); /* one token: the lossy UTF-8 of all bytes (raw: the bytes) */
        if (raw)
            SS_CHECK(ss_tok_buf_append(&out->text, scratch->p ? scratch->p : "", scratch->len));
        else
            SS_CHECK(ss_tok_utf8_lossy_append(&out->text, scratch->p ? scratch->p : "", scratch->len));
        out->ends[0] = out->text.len;
        return SS_OK;
    }
    case SS_TOK_DEC_BYTEFALLBACK: {
        scratch->len = 0;
        for (size_t i = 0; i < in->n; i++) {
            size_t n;
            const char *s = dl_get(in, i, &n);
            int b = dec_byte_token(s, n);
            if (b >= 0) {
                char c = (char)b;
                SS_CHECK(ss_tok_buf_append(scratch, &c, 1));
                continue;
            }
            SS_CHECK(dec_flush_bytes(out, scratch, raw));
            SS_CHECK(dl_push(out, s, n));
        }
        return dec_flush_bytes(out, scratch, raw);
    }
    case SS_TOK_DEC_REPLACE:
    case SS_TOK_DEC_METASPACE:
        for (size_t i = 0; i < in->n; i++) {
            size_t n;
            const char *s = dl_get(in, i, &n);
            int drop = d->kind == SS_TOK_DEC_METASPACE && i == 0 && at_start && d->prepend != SS_TOK_PREPEND_NEVER;
            const char *rep = d->kind == SS_TOK_DEC_METASPACE ? " " : d->b;
            size_t rep_len = d->kind == SS_TOK_DEC_METASPACE ? 1 : d->b_len;
            SS_CHECK(dl_push(out, "", 0));
            size_t k = 0, run = 0;
            while (k + d->a_len <= n) {
                if (s[k] == d->a[0] && !memcmp(s + k, d->a, d->a_len)) {
                    SS_CHECK(dl_extend(out, s + run, k - run));
                    if (!drop)
                        SS_CHECK(dl_extend(out, rep, rep_len));
                    k += d->a_len;
                    run = k;
                } else {
                    k++;
                }
            }
            SS_CHECK(dl_extend(out, s + run, n - run));
        }
        return SS_OK;
    case SS_TOK_DEC_STRIP:
        for (size_t i = 0; i < in->n; i++) {
            size_t n;
            const char *s = dl_get(in, i, &n);
            const unsigned char *u = (const unsigned char *)s;
            size_t a = 0, b = n;
            size_t start = collapsed && !at_start ? 0 : d->start;
            for (size_t c = 0; c < start && a < n; c++) {
                size_t k = ss_tok_utf8_len(u + a, n - a);
                if (!k || ss_tok_utf8_decode(u + a, k) != d->strip_char)
                    break;
                a += k;
            }
            for (size_t c = 0; c < d->stop && b > a; c++) {
                size_t st = b - 1;
                while (st > a && (u[st] & 0xC0) == 0x80)
                    st--;
                size_t k = ss_tok_utf8_len(u + st, b - st);
                if (!k || ss_tok_utf8_decode(u + st, k) != d->strip_char)
                    break;
                b = st;
            }
            SS_CHECK(dl_push(out, s + a, b - a));
        }
        return SS_OK;
    }
    return SS_ERR_INTERNAL;
}

ss_status ss_tok_decode_tokens(const ss_tokenizer *tok, const char *const *toks, const size_t *lens, size_t n,
                               int at_start, int raw, ss_tok_buf *out, ss_err *err)
{
    ss_status st = SS_OK;
    if (!tok->has_decoder) {
        for (size_t i = 0; i < n && st == SS_OK; i++) {
            if ((i > 0 || !at_start) && (st = ss_tok_buf_append(out, " ", 1)) != SS_OK)
                break;
            st = ss_tok_buf_append(out, toks[i], lens[i]);
        }
        if (st != SS_OK)
            return ss_err_set(err, st, "tokenizer: out of memory while decoding");
        return SS_OK;
    }
    size_t in_bytes = 0;
    for (size_t i = 0; i < n; i++)
        in_bytes += lens[i];
    const size_t limit = ss_tok_growth_limit(in_bytes);
    dec_list lists[2];
    memset(lists, 0, sizeof lists);
    lists[0].text.limit = lists[1].text.limit = limit;
    ss_tok_buf scratch = {.limit = limit};
    int cur = 0, collapsed = 0;
    for (size_t i = 0; i < n && st == SS_OK; i++)
        st = dl_push(&lists[0], toks[i], lens[i]);
    for (size_t k = 0; k < tok->n_decs && st == SS_OK; k++) {
        const ss_tok_dec *d = &tok->decs[k];
        st = dec_step(tok, d, &lists[cur], &lists[cur ^ 1], at_start, collapsed, raw, &scratch);
        cur ^= 1;
        if (d->kind == SS_TOK_DEC_FUSE || d->kind == SS_TOK_DEC_BYTELEVEL)
            collapsed = 1;
    }
    if (st == SS_OK)
        st = ss_tok_buf_append(out, lists[cur].text.p ? lists[cur].text.p : "", lists[cur].text.len);
    dl_free(&lists[0]);
    dl_free(&lists[1]);
    ss_tok_buf_free(&scratch);
    if (st == SS_ERR_CAPACITY)
        return ss_err_set(err, st, "tokenizer: the decoders grow %zu bytes of tokens beyond %zu (%d times): refused",
                          in_bytes, limit, SS_TOK_MAX_GROWTH);
    if (st != SS_OK)
        return ss_err_set(err, st, "tokenizer: %s while decoding", ss_status_str(st));
    return SS_OK;
}

/* Collects the token strings of ids (skipping specials when asked, and ids without a token). */
static ss_status dec_collect(const ss_tokenizer *tok, const int32_t *ids, size_t n, int skip_special,
                             const char ***toks, size_t **lens, size_t *m, ss_err *err)
{
    *toks = ss_malloc((n ? n : 1) * sizeof **toks);
    *lens = ss_malloc((n ? n : 1) * sizeof **lens);
    if (!*toks || !*lens) {
        ss_free(*toks);
        ss_free(*lens);
        return ss_err_set(err, SS_ERR_NOMEM, "tokenizer: out of memory while decoding");
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (skip_special && ss_tokenizer_is_special(tok, ids[i]))
            continue;
        size_t len;
        const char *s = ss_tok_strtab_get(&tok->vocab, (size_t)ids[i], &len);
        if (!s)
            continue;
        (*toks)[k] = s;
        (*lens)[k] = len;
        k++;
    }
    *m = k;
    return SS_OK;
}

static ss_status dec_check_ids(const ss_tokenizer *tok, const int32_t *ids, size_t n, ss_err *err)
{
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= tok->vocab_size)
            return ss_err_set(err, SS_ERR_INVALID_ARG, "tokenizer: token id %d at position %zu is outside [0, %d)",
                              ids[i], i, tok->vocab_size);
    return SS_OK;
}

/* Hands a decode's buffer to the caller (NUL-terminated, "" when empty), or frees it when st failed. */
static ss_status dec_hand_over(ss_tok_buf *out, ss_status st, char **text, size_t *len, ss_err *err)
{
    if (st == SS_OK && !out->p && ss_tok_buf_append(out, "", 0) != SS_OK)
        st = ss_err_set(err, SS_ERR_NOMEM, "tokenizer: out of memory while decoding");
    if (st != SS_OK) {
        ss_tok_buf_free(out);
        return st;
    }
    *text = out->p;
    *len = out->len;
    return SS_OK;
}

ss_status ss_tokenizer_decode(const ss_tokenizer *tok, const int32_t *ids, size_t n, int skip_special,
                              char **text, size_t *len, ss_err *err)
{
    if (!tok || (!ids && n) || !text || !len)
        return ss_err_set(err, SS_ERR_INVALID_ARG, "ss_tokenizer_decode: NULL argument");
    *text = NULL;
    *len = 0;
    SS_CHECK(dec_check_ids(tok, ids, n, err));
    const char **toks;
    size_t *lens, m;
    SS_CHECK(dec_collect(tok, ids, n, skip_special, &toks, &lens, &m, err));
    ss_tok_buf out = {0};
    ss_status st = ss_tok_decode_tokens(tok, toks, lens, m, 1, 0, &out, err);
    ss_free(toks);
    ss_free(lens);
    return dec_hand_over(&out, st, text, len, err);
}

/* One token's raw bytes, decoded as the first token of a text (at_start) or after others. */
static ss_status token_bytes(const ss_tokenizer *tok, int32_t id, int at_start, char **bytes, size_t *len,
                             ss_err *err)
{
    if (!tok || !bytes || !len)
        return ss_err_set(err, SS_ERR_INVALID_ARG, "ss_tokenizer_token_bytes: NULL argument");
    *bytes = NULL;
    *len = 0;
    SS_CHECK(dec_check_ids(tok, &id, 1, err));
    size_t n;
    const char *s = ss_tok_strtab_get(&tok->vocab, (size_t)id, &n);
    ss_tok_buf out = {0};
    ss_status st = s ? ss_tok_decode_tokens(tok, &s, &n, 1, at_start, 1, &out, err) : SS_OK;
    return dec_hand_over(&out, st, bytes, len, err);
}

ss_status ss_tokenizer_token_bytes(const ss_tokenizer *tok, int32_t id, char **bytes, size_t *len, ss_err *err)
{
    return token_bytes(tok, id, 1, bytes, len, err);
}

ss_status ss_tokenizer_token_bytes_mid(const ss_tokenizer *tok, int32_t id, char **bytes, size_t *len, ss_err *err)
{
    return token_bytes(tok, id, 0, bytes, len, err);
}

/* ---- incremental detokenizer ----
 * The ids since the last clean cut form a window; each push decodes the window (the first one as
 * the start of the text, later ones as continuations) and either emits it all and starts a new
 * window, or holds it: while the text is empty, ends in U+FFFD (an incomplete character), or ends
 * in a byte-fallback token (a later byte may turn the whole byte run into U+FFFDs). Decoder chains
 * that cannot be cut this way (tok->detok_no_cut) hold everything until flush.
 * A held window longer than DETOK_TAIL tokens is cut before its last DETOK_TAIL (detok_cut): text ending in
 * U+FFFD need not be an incomplete character — a model can emit partial bytes again and again (E2 80 E2 80 …,
 * each invalid once the next byte comes), and such a window used to be held, and decoded again at every push,
 * until a clean end (session 32: 110 tokens, 3.3 s of silence in a stream from a random-weight 70B). */
#define DETOK_TAIL 4 /* tokens held after a cut: at least the 3 bytes that decide a UTF-8 sequence's end */
struct ss_detok {
    const ss_tokenizer *tok;
    int skip_special;
    int at_start;
    ss_tok_ids win;
    ss_tok_buf text;
    ss_tok_buf rest; /* detok_cut's decode of the window's tail */
    int has_bytefallback;
};

ss_status ss_detok_create(const ss_tokenizer *tok, int skip_special, ss_detok **out, ss_err *err)
{
    if (!tok || !out)
        return ss_err_set(err, SS_ERR_INVALID_ARG, "ss_detok_create: NULL argument");
    ss_detok *d = ss_calloc(1, sizeof *d);
    if (!d)
        return ss_err_set(err, SS_ERR_NOMEM, "tokenizer: out of memory");
    d->tok = tok;
    d->skip_special = skip_special;
    d->at_start = 1;
    for (size_t i = 0; i < tok->n_decs; i++)
        d->has_bytefallback |= tok->decs[i].kind == SS_TOK_DEC_BYTEFALLBACK;
    *out = d;
    return SS_OK;
}

/* Decodes window ids [from, to) into *out (replacing it): as the text's start when at_start. */
static ss_status detok_decode(ss_detok *d, size_t from, size_t to, int at_start, ss_tok_buf *out, ss_err *err)
{
    const char **toks;
    size_t *lens, m;
    SS_CHECK(dec_collect(d->tok, d->win.v + from, to - from, 0, &toks, &lens, &m, err));
    out->len = 0;
    ss_status st = ss_tok_decode_tokens(d->tok, toks, lens, m, at_start, 0, out, err);
    ss_free(toks);
    ss_free(lens);
    if (st == SS_OK && !out->p && ss_tok_buf_append(out, "", 0) != SS_OK)
        st = ss_err_set(err, SS_ERR_NOMEM, "tokenizer: out of memory");
    return st;
}

static ss_status detok_decode_window(ss_detok *d, ss_err *err)
{
    return detok_decode(d, 0, d->win.n, d->at_start, &d->text, err);
}

static int detok_is_byte(const ss_detok *d, int32_t id)
{
    size_t n;
    const char *s = ss_tok_strtab_get(&d->tok->vocab, (size_t)id, &n);
    return d->has_bytefallback && s && dec_byte_token(s, n) >= 0;
}

/* A held window of more than DETOK_TAIL tokens: emits (*piece, *len) the text of all but its last DETOK_TAIL
 * tokens and keeps those, when that is safe: the head's text must be a prefix of the whole window's text and the
 * tail's (decoded as a continuation) the rest of it, so the pieces still spell what one decode of all ids gives,
 * and the cut must not split a byte-fallback run (a later byte may change a whole run's text). Otherwise holds.
 * have_text: d->text already holds the whole window's text. */
static ss_status detok_cut(ss_detok *d, int have_text, const char **piece, size_t *len, ss_err *err)
{
    size_t k = d->win.n - DETOK_TAIL;
    if (detok_is_byte(d, d->win.v[k - 1]) && detok_is_byte(d, d->win.v[k]))
        return SS_OK;
    for (size_t i = k; i < d->win.n; i++) { /* each tail token brings a byte at least */
        size_t n = 0;
        if (!ss_tok_strtab_get(&d->tok->vocab, (size_t)d->win.v[i], &n) || !n)
            return SS_OK;
    }
    if (!have_text)
        SS_CHECK(detok_decode_window(d, err)); /* the whole window: its text, to compare with */
    SS_CHECK(detok_decode(d, k, d->win.n, 0, &d->rest, err));
    size_t all = d->text.len, tail = d->rest.len;
    if (tail >= all || memcmp(d->text.p + all - tail, d->rest.p, tail))
        return SS_OK;
    ss_tok_buf whole = d->text; /* keep the whole text while the head decodes into d->text */
    d->text = (ss_tok_buf){0};
    ss_status st = detok_decode(d, 0, k, d->at_start, &d->text, err);
    int same = st == SS_OK && d->text.len == all - tail && !memcmp(d->text.p, whole.p, d->text.len);
    ss_tok_buf_free(&whole);
    SS_CHECK(st);
    if (!same)
        return SS_OK;
    memmove(d->win.v, d->win.v + k, DETOK_TAIL * sizeof *d->win.v);
    d->win.n = DETOK_TAIL;
    d->at_start = 0;
    *piece = d->text.p;
    *len = d->text.len;
    return SS_OK;
}

ss_status ss_detok_push(ss_detok *d, int32_t id, const char **piece, size_t *len, ss_err *err)
{
    if (!d || !piece || !len)
        return ss_err_set(err, SS_ERR_INVALID_ARG, "ss_detok_push: NULL argument");
    *piece = "";
    *len = 0;
    SS_CHECK(dec_check_ids(d->tok, &id, 1, err));
    size_t tlen;
    const char *ts = ss_tok_strtab_get(&d->tok->vocab, (size_t)id, &tlen);
    if (!ts || (d->skip_special && ss_tokenizer_is_special(d->tok, id)))
        return SS_OK;
    if (ss_tok_ids_push(&d->win, id) != SS_OK)
        return ss_err_set(err, SS_ERR_NOMEM, "tokenizer: out of memory");
    if (d->tok->detok_no_cut)
        return SS_OK;
    if (d->has_bytefallback && dec_byte_token(ts, tlen) >= 0)
        return d->win.n > DETOK_TAIL ? detok_cut(d, 0, piece, len, err) : SS_OK;
    SS_CHECK(detok_decode_window(d, err));
    if (!d->text.len || (d->text.len >= 3 && !memcmp(d->text.p + d->text.len - 3, dec_fffd, 3)))
        return d->win.n > DETOK_TAIL ? detok_cut(d, 1, piece, len, err) : SS_OK;
    d->win.n = 0;
    d->at_start = 0;
    *piece = d->text.p;
    *len = d->text.len;
    return SS_OK;
}

ss_status ss_detok_flush(ss_detok *d, const char **piece, size_t *len, ss_err *err)
{
    if (!d || !piece || !len)
        return ss_err_set(err, SS_ERR_INVALID_ARG, "ss_detok_flush: NULL argument");
    *piece = "";
    *len = 0;
    if (!d->win.n)
        return SS_OK;
    SS_CHECK(detok_decode_window(d, err));
    d->win.n = 0;
    d->at_start = 0;
    *piece = d->text.p;
    *len = d->text.len;
    return SS_OK;
}

void ss_detok_destroy(ss_detok *d)
{
    if (!d)
        return;
    ss_free(d->win.v);
    ss_tok_buf_free(&d->text);
    ss_tok_buf_free(&d->rest);
    ss_free(d);
}
