/* test_json_guide.c — JSON mode's grammar and token masks: valid objects accepted byte by byte and whole only at
 * their end, invalid ones refused at the exact byte, accepted texts parsed by cJSON, and every mask equal to a
 * token-by-token check over the real Llama 3.1 and Llama 2 vocabularies. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <cmocka.h> /* after setjmp.h, stdarg.h, stddef.h */

#include "core/alloc.h"
#include "serve/guide_vocab.h"
#include "serve/json_guide.h"
#include "tokenizer/tokenizer.h"

#define TOK_NM SS_SOURCE_DIR "/tests/node_modules/@lenml/tokenizer-"

/* Feeds text; returns the offset of the first refused byte, or -1 when all were accepted. */
static long refused_at(ss_json_state *s, const char *text, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!ss_json_push(s, (uint8_t)text[i]))
            return (long)i;
    return -1;
}

static const char *const valid_docs[] = {
    "{}",
    " \n\t\r{ }",
    "{\"a\":1}",
    "{\"a\": -0.5e+10, \"b\": [true, false, null], \"c\": {\"d\": []}}",
    "{\"k\": 0, \"l\": 0.0, \"m\": 10E3, \"n\": -7, \"o\": 1e-2, \"p\": 123456789}",
    "{\"s\": \"esc \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u00e9 \\uD83D\\uDE00\"}",
    "{\"utf8\": \"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xed\x9f\xbf \xf4\x8f\xbf\xbf\"}",
    "{\"\": \"\", \"nested\": [[[[{}]]], {\"x\": [1, [2, [3]]]}]}",
    "{\"del\": \"\x7f\"}",
    "{\n  \"pretty\": [\n    1,\n    2\n  ]\n}",
};

/* Every valid object: each byte accepted, whole exactly after its last byte, nothing accepted after it, and
 * cJSON agrees it is an object. */
static void test_valid(void **state)
{
    (void)state;
    for (size_t k = 0; k < sizeof valid_docs / sizeof valid_docs[0]; k++) {
        const char *d = valid_docs[k];
        size_t n = strlen(d);
        ss_json_state s;
        ss_json_init(&s);
        for (size_t i = 0; i < n; i++) {
            assert_false(ss_json_done(&s));
            if (!ss_json_push(&s, (uint8_t)d[i]))
                fail_msg("doc %zu: byte %zu (0x%02x) refused", k, i, (unsigned char)d[i]);
        }
        assert_true(ss_json_done(&s));
        ss_json_state after = s;
        assert_false(ss_json_push(&after, ' '));
        after = s;
        assert_false(ss_json_push(&after, '{'));
        cJSON *j = cJSON_Parse(d);
        assert_non_null(j);
        assert_true(cJSON_IsObject(j));
        cJSON_Delete(j);
    }
}

typedef struct bad_case {
    const char *text;
    long at; /* the byte refused */
} bad_case;

static const bad_case bad_docs[] = {
    {"[]", 0}, /* the output is an object */
    {"\"x\"", 0},
    {"{,}", 1},
    {"{\"a\" 1}", 5}, /* a colon is due */
    {"{\"a\":}", 5},
    {"{\"a\":1,}", 7}, /* no trailing comma */
    {"{\"a\":[1,]}", 8},
    {"{\"a\":01}", 6}, /* no leading zeros */
    {"{\"a\":1.}", 7}, /* digits after '.' */
    {"{\"a\":.5}", 5},
    {"{\"a\":+1}", 5},
    {"{\"a\":1e}", 7},
    {"{\"a\":-}", 6},
    {"{\"a\":tru}", 8},
    {"{\"a\":nul1}", 8},
    {"{\"a\":True}", 5},
    {"{\"a\":\"\\x\"}", 7}, /* unknown escape */
    {"{\"a\":\"\\u12g4\"}", 10},
    {"{\"a\":\"tab\there\"}", 9}, /* a raw control character */
    {"{\"a\":\"\xc0\xaf\"}", 6},  /* overlong */
    {"{\"a\":\"\xe0\x80\xaf\"}", 7},
    {"{\"a\":\"\xed\xa0\x80\"}", 7},     /* a surrogate */
    {"{\"a\":\"\xf4\x90\x80\x80\"}", 7}, /* past U+10FFFF */
    {"{\"a\":\"\xf5\"}", 6},
    {"{\"a\":\"\x80\"}", 6}, /* a lone continuation byte */
    {"{\"a\":\"\xc3\"}", 7}, /* an unfinished character */
    {"{\"a\":1]", 6},        /* the wrong bracket */
    {"{\"a\":[1}", 7},
    {"{}}", 2},
    {"{} ", 2}, /* nothing after the object */
    {"{\"a\":1 2}", 7},
    {"{'a':1}", 1},
};

static void test_invalid(void **state)
{
    (void)state;
    for (size_t k = 0; k < sizeof bad_docs / sizeof bad_docs[0]; k++) {
        ss_json_state s;
        ss_json_init(&s);
        long at = refused_at(&s, bad_docs[k].text, strlen(bad_docs[k].text));
        if (at != bad_docs[k].at)
            fail_msg("case %zu (%s): refused at %ld, expected %ld", k, bad_docs[k].text, at, bad_docs[k].at);
    }
}

/* Depth: 64 open containers accepted, the 65th refused; whitespace: 32 bytes in a row, not 33. */
static void test_limits(void **state)
{
    (void)state;
    ss_json_state s;
    ss_json_init(&s);
    assert_int_equal(refused_at(&s, "{\"a\":", 5), -1);
    for (int d = 2; d <= SS_JSON_MAX_DEPTH; d++)
        assert_true(ss_json_push(&s, '['));
    ss_json_state deeper = s;
    assert_false(ss_json_push(&deeper, '['));
    assert_false(ss_json_push(&deeper, '{'));
    for (int d = 2; d <= SS_JSON_MAX_DEPTH; d++)
        assert_true(ss_json_push(&s, ']'));
    assert_true(ss_json_push(&s, '}'));
    assert_true(ss_json_done(&s));

    ss_json_init(&s);
    assert_true(ss_json_push(&s, '{'));
    for (int i = 0; i < SS_JSON_MAX_WS; i++)
        assert_true(ss_json_push(&s, i % 2 ? ' ' : '\n'));
    ss_json_state more = s;
    assert_false(ss_json_push(&more, ' '));
    assert_true(ss_json_push(&s, '"')); /* content resets the run */
    assert_true(ss_json_push_bytes(&s, (const uint8_t *)"k\":", 3));
    for (int i = 0; i < SS_JSON_MAX_WS; i++)
        assert_true(ss_json_push(&s, ' '));
    /* whitespace inside strings is not limited */
    assert_true(ss_json_push(&s, '"'));
    for (int i = 0; i < 4 * SS_JSON_MAX_WS; i++)
        assert_true(ss_json_push(&s, ' '));
}

/* Random objects (a fixed seed), pretty or compact: accepted whole; and one byte changed: when the grammar still
 * takes the text as a whole object, cJSON parses it as one. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(uint32_t n)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state % n);
}

static void gen_value(char *b, size_t *n, size_t cap, int depth);

static void put(char *b, size_t *n, size_t cap, const char *s)
{
    size_t l = strlen(s);
    if (*n + l < cap) {
        memcpy(b + *n, s, l);
        *n += l;
    }
}

static void gen_ws(char *b, size_t *n, size_t cap)
{
    static const char *const ws[] = {"", "", " ", "\n  ", "\t"};
    put(b, n, cap, ws[rnd(5)]);
}

static void gen_string(char *b, size_t *n, size_t cap)
{
    static const char *const parts[] = {
        "a", "Z", " ", "\\n", "\\\"", "\\u00FF", "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "1", "{", "]", ","};
    put(b, n, cap, "\"");
    for (uint32_t i = rnd(6); i > 0; i--)
        put(b, n, cap, parts[rnd(sizeof parts / sizeof parts[0])]);
    put(b, n, cap, "\"");
}

static void gen_object(char *b, size_t *n, size_t cap, int depth)
{
    put(b, n, cap, "{");
    for (uint32_t i = 0, m = rnd(4); i < m; i++) {
        if (i)
            put(b, n, cap, ",");
        gen_ws(b, n, cap);
        gen_string(b, n, cap);
        gen_ws(b, n, cap);
        put(b, n, cap, ":");
        gen_ws(b, n, cap);
        gen_value(b, n, cap, depth + 1);
        gen_ws(b, n, cap);
    }
    put(b, n, cap, "}");
}

static void gen_value(char *b, size_t *n, size_t cap, int depth)
{
    static const char *const scalars[] = {"0", "-1", "3.25", "1e5", "-0.0E-3", "true", "false", "null", "42"};
    uint32_t k = depth > 4 ? rnd(2) : rnd(4);
    if (k == 0) {
        put(b, n, cap, scalars[rnd(sizeof scalars / sizeof scalars[0])]);
    } else if (k == 1) {
        gen_string(b, n, cap);
    } else if (k == 2) {
        gen_object(b, n, cap, depth);
    } else {
        put(b, n, cap, "[");
        for (uint32_t i = 0, m = rnd(4); i < m; i++) {
            if (i)
                put(b, n, cap, ",");
            gen_ws(b, n, cap);
            gen_value(b, n, cap, depth + 1);
        }
        put(b, n, cap, "]");
    }
}

static void test_random_against_cjson(void **state)
{
    (void)state;
    static const char alphabet[] = "{}[]\":,0123456789.eE+-truefalsn \n\\u\x01\xc3\xa9";
    int whole_mutants = 0;
    for (int it = 0; it < 3000; it++) {
        char b[4096];
        size_t n = 0;
        gen_object(b, &n, sizeof b - 1, 1);
        b[n] = '\0';
        ss_json_state s;
        ss_json_init(&s);
        if (refused_at(&s, b, n) != -1 || !ss_json_done(&s))
            fail_msg("generated object refused: %s", b);
        /* one byte replaced */
        size_t at = rnd((uint32_t)n);
        b[at] = alphabet[rnd(sizeof alphabet - 1)];
        ss_json_init(&s);
        if (refused_at(&s, b, n) == -1 && ss_json_done(&s)) {
            whole_mutants++;
            cJSON *j = cJSON_ParseWithLength(b, n);
            if (!j || !cJSON_IsObject(j))
                fail_msg("the grammar took as an object what cJSON does not: %s", b);
            cJSON_Delete(j);
        }
    }
    assert_true(whole_mutants > 100); /* the check above has run often enough to mean something */
}

/* ---- masks over real vocabularies ---- */

/* The states after every prefix of a few objects (and inside every kind of token boundary). */
static const char *const mask_docs[] = {
    "{\"name\": \"J\xc3\xa9r\xc3\xb4me \\\"JJ\\\" \\u00e9\", \"age\": -12.5e+3, \"ok\": [true, false, null, {}]}",
    "{\n  \"list\": [\n    {\"a\": 0},\n    \"\xf0\x9f\x98\x80\"\n  ]\n}",
};

typedef struct brute {
    char **bytes; /* [vocab] mid-text bytes of every token, NULL for special ones */
    size_t *lens;
    int32_t n;
} brute;

static void brute_load(const ss_tokenizer *tok, brute *b)
{
    b->n = ss_tokenizer_vocab_size(tok);
    b->bytes = calloc((size_t)b->n, sizeof *b->bytes);
    b->lens = calloc((size_t)b->n, sizeof *b->lens);
    assert_non_null(b->bytes);
    assert_non_null(b->lens);
    for (int32_t t = 0; t < b->n; t++) {
        if (ss_tokenizer_is_special(tok, t))
            continue;
        ss_err e;
        assert_int_equal(ss_tokenizer_token_bytes_mid(tok, t, &b->bytes[t], &b->lens[t], &e), SS_OK);
    }
}

static void brute_free(brute *b)
{
    for (int32_t t = 0; t < b->n; t++)
        ss_free(b->bytes[t]);
    free(b->bytes);
    free(b->lens);
}

/* The mask from each state equals accepting each token's bytes alone from a copy of the state; ids past the
 * tokenizer's vocabulary and special tokens are never allowed. Returns the states checked. */
static int check_masks(const char *dir, int32_t pad)
{
    ss_tokenizer *tok = NULL;
    ss_err e;
    if (ss_tokenizer_load(dir, &tok, &e) != SS_OK)
        fail_msg("%s: %s", dir, e.msg);
    brute b;
    brute_load(tok, &b);
    const int32_t V = b.n + pad;
    ss_guide_vocab *v = NULL;
    assert_int_equal(ss_guide_vocab_create(tok, V, &v, &e), SS_OK);
    assert_int_equal(ss_guide_vocab_words(v), (V + 31) / 32);
    uint32_t *mask = calloc((size_t)ss_guide_vocab_words(v), sizeof *mask);
    assert_non_null(mask);
    int checked = 0;
    for (size_t k = 0; k < sizeof mask_docs / sizeof mask_docs[0]; k++) {
        const char *d = mask_docs[k];
        ss_json_state s;
        ss_json_init(&s);
        for (size_t i = 0; i <= strlen(d); i++) {
            if (i > 0)
                assert_true(ss_json_push(&s, (uint8_t)d[i - 1]));
            int64_t allowed = ss_guide_vocab_mask(v, &s, mask);
            int64_t want = 0;
            for (int32_t t = 0; t < V; t++) {
                int ok = 0;
                if (t < b.n && b.bytes[t] && b.lens[t] > 0) {
                    ss_json_state c = s;
                    ok = ss_json_push_bytes(&c, (const uint8_t *)b.bytes[t], b.lens[t]);
                }
                int got = (int)((mask[t >> 5] >> (t & 31)) & 1u);
                if (got != ok)
                    fail_msg("%s: after %zu bytes of doc %zu, token %d (%.*s) is %s by the mask", dir, i, k, (int)t,
                             (int)(t < b.n && b.bytes[t] ? b.lens[t] : 0), t < b.n && b.bytes[t] ? b.bytes[t] : "",
                             got ? "allowed" : "refused");
                want += ok;
            }
            assert_int_equal(allowed, want);
            if (!ss_json_done(&s))
                assert_true(allowed > 0); /* a real vocabulary can always go on */
            else
                assert_int_equal(allowed, 0);
            checked++;
        }
        assert_true(ss_json_done(&s));
    }
    /* a token's bytes come back as the token adds them in mid-text; a special token has none */
    for (int32_t t = 0; t < b.n; t += 997) {
        size_t n = 0;
        const uint8_t *p = ss_guide_vocab_bytes(v, t, &n);
        if (!b.bytes[t] || b.lens[t] == 0) {
            assert_null(p);
        } else {
            assert_int_equal(n, b.lens[t]);
            assert_memory_equal(p, b.bytes[t], n);
        }
    }
    size_t n = 1;
    assert_null(ss_guide_vocab_bytes(v, b.n, &n)); /* a padded id */
    assert_int_equal(n, 0);
    free(mask);
    ss_guide_vocab_destroy(v);
    brute_free(&b);
    ss_tokenizer_destroy(tok);
    return checked;
}

static void test_masks_llama3(void **state)
{
    (void)state;
    assert_true(check_masks(TOK_NM "llama3_1/models", 5) > 100);
}

/* SentencePiece: a token's leading "▁" is a space in mid-text (the form the guide reads) but dropped as the
 * text's first token; the masks hold there too. */
static void test_masks_llama2(void **state)
{
    (void)state;
    ss_tokenizer *tok = NULL;
    ss_err e;
    assert_int_equal(ss_tokenizer_load(TOK_NM "llama2/models", &tok, &e), SS_OK);
    int32_t id = ss_tokenizer_token_to_id(tok, "\xe2\x96\x81{");
    assert_true(id >= 0);
    char *first = NULL, *mid = NULL;
    size_t lf = 0, lm = 0;
    assert_int_equal(ss_tokenizer_token_bytes(tok, id, &first, &lf, &e), SS_OK);
    assert_int_equal(ss_tokenizer_token_bytes_mid(tok, id, &mid, &lm, &e), SS_OK);
    assert_int_equal(lf, 1);
    assert_memory_equal(first, "{", 1);
    assert_int_equal(lm, 2);
    assert_memory_equal(mid, " {", 2);
    ss_free(first);
    ss_free(mid);
    ss_tokenizer_destroy(tok);
    assert_true(check_masks(TOK_NM "llama2/models", 0) > 100);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid),        cmocka_unit_test(test_invalid),
        cmocka_unit_test(test_limits),       cmocka_unit_test(test_random_against_cjson),
        cmocka_unit_test(test_masks_llama3), cmocka_unit_test(test_masks_llama2),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
