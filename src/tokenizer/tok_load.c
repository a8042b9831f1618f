/* tok_load.c — reads tokenizer.json (+ tokenizer_config.json) into an immutable ss_tokenizer:
 * BPE vocabulary and merges, normalizers, pre-tokenizers, post-processor, decoders, added tokens.
 * Anything it cannot reproduce exactly is refused here, by type name. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "core/alloc.h"
#include "core/fileio.h"
#include "core/json_num.h"
#include "tokenizer/tok_internal.h"

#define TOK_MAX_FILE ((size_t)1 << 30)
#define TOK_MAX_ID ((int64_t)1 << 24)

/* ---- small helpers ---- */

static void *tok_pcre_malloc(PCRE2_SIZE n, void *data)
{
    (void)data;
    return ss_malloc(n);
}

static void tok_pcre_free(void *p, void *data)
{
    (void)data;
    ss_free(p);
}

/* Reads a whole file; *out NUL-terminated, caller ss_free's. */
static ss_status tok_read_file(const char *path, char **out, size_t *len, ss_err *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return ss_err_set(err, ss_file_error_status(errno), "%s: %s", path, strerror(errno));
    ss_tok_buf b = {0};
    ss_status st = SS_OK;
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (b.len + n > TOK_MAX_FILE) {
            st = ss_err_set(err, SS_ERR_FORMAT, "%s: larger than %zu bytes", path, TOK_MAX_FILE);
            break;
        }
        if (ss_tok_buf_append(&b, chunk, n) != SS_OK) {
            st = ss_err_set(err, SS_ERR_NOMEM, "%s: out of memory reading", path);
            break;
        }
    }
    if (st == SS_OK && ferror(f)) /* (a folder opens, and reads fail with EISDIR) */
        st = ss_err_set(err, ss_file_error_status(errno), "%s: %s", path, strerror(errno));
    fclose(f);
    if (st == SS_OK && !b.p && ss_tok_buf_append(&b, "", 0) != SS_OK)
        st = ss_err_set(err, SS_ERR_NOMEM, "%s: out of memory reading", path);
    if (st != SS_OK) {
        ss_tok_buf_free(&b);
        return st;
    }
    *out = b.p;
    *len = b.len;
    return SS_OK;
}

static int tok_json_bool(const cJSON *obj, const char *key, int def)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (cJSON_IsBool(v))
        return cJSON_IsTrue(v);
    return def;
}

static const char *tok_json_str(const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static const char *tok_json_type(const cJSON *obj)
{
    const char *t = tok_json_str(obj, "type");
    return t ? t : "(no type)";
}

static ss_status tok_dup(const char *s, char **out, size_t *len, ss_err *err)
{
    *len = strlen(s);
    *out = ss_strndup(s, *len);
    if (!*out)
        return ss_err_set(err, SS_ERR_NOMEM, "out of memory");
    return SS_OK;
}

/* Pattern object {"String": s} or {"Regex": r}: *is_regex, *text borrowed. */
static ss_status tok_pattern(const cJSON *obj, const char *what, int *is_regex, const char **text, ss_err *err)
{
    const cJSON *pat = cJSON_GetObjectItemCaseSensitive(obj, "pattern");
    const char *s = tok_json_str(pat, "String");
    const char *r = tok_json_str(pat, "Regex");
    if (!s && !r)
        return ss_err_set(err, SS_ERR_FORMAT, "%s: 'pattern' must be {\"String\": ...} or {\"Regex\": ...}", what);
    *is_regex = s == NULL;
    *text = s ? s : r;
    return SS_OK;
}

static ss_status tok_compile(ss_tokenizer *tok, const char *pattern, pcre2_code **out, ss_err *err)
{
    int code;
    PCRE2_SIZE off;
    pcre2_compile_context *cctx = pcre2_compile_context_create(tok->gctx);
    if (!cctx)
        return ss_err_set(err, SS_ERR_NOMEM, "out of memory compiling a regex");
    pcre2_code *re =
        pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &code, &off, cctx);
    pcre2_compile_context_free(cctx);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(code, msg, sizeof msg);
        if (code == PCRE2_ERROR_HEAP_FAILED || code == PCRE2_ERROR_NOMEMORY)
            return ss_err_set(err, SS_ERR_NOMEM, "out of memory compiling a regex");
        return ss_err_set(err, SS_ERR_FORMAT, "regex '%s' at offset %zu: %s", pattern, (size_t)off, (char *)msg);
    }
    (void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* the interpreter is the fallback */
    *out = re;
    return SS_OK;
}

static ss_status tok_prepend_scheme(const cJSON *obj, const char *what, ss_tok_prepend *out, ss_err *err)
{
    const char *s = tok_json_str(obj, "prepend_scheme");
    if (!s) {
        *out = tok_json_bool(obj, "add_prefix_space", 1) ? SS_TOK_PREPEND_ALWAYS : SS_TOK_PREPEND_NEVER;
        return SS_OK;
    }
    if (!strcmp(s, "always"))
        *out = SS_TOK_PREPEND_ALWAYS;
    else if (!strcmp(s, "first"))
        *out = SS_TOK_PREPEND_FIRST;
    else if (!strcmp(s, "never"))
        *out = SS_TOK_PREPEND_NEVER;
    else
        return ss_err_set(err, SS_ERR_FORMAT, "%s: unknown prepend_scheme '%s'", what, s);
    return SS_OK;
}

/* Single character string (the Metaspace replacement, Strip content). */
static ss_status tok_one_char(const char *s, const char *what, uint32_t *cp, ss_err *err)
{
    size_t n = strlen(s);
    size_t k = ss_tok_utf8_len((const unsigned char *)s, n);
    if (!k || k != n)
        return ss_err_set(err, SS_ERR_FORMAT, "%s: expected a single character, got '%s'", what, s);
    *cp = ss_tok_utf8_decode((const unsigned char *)s, k);
    return SS_OK;
}

/* ---- normalizers ---- */

static ss_status tok_add_norm(ss_tokenizer *tok, const cJSON *n, ss_err *err)
{
    const char *type = tok_json_type(n);
    if (!strcmp(type, "Sequence")) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(n, "normalizers");
        if (!cJSON_IsArray(list))
            return ss_err_set(err, SS_ERR_FORMAT, "normalizer Sequence: 'normalizers' must be an array");
        const cJSON *it;
        cJSON_ArrayForEach(it, list) SS_CHECK(tok_add_norm(tok, it, err));
        return SS_OK;
    }
    ss_tok_norm *arr = ss_realloc(tok->norms, (tok->n_norms + 1) * sizeof *arr);
    if (!arr)
        return ss_err_set(err, SS_ERR_NOMEM, "out of memory");
    tok->norms = arr;
    ss_tok_norm *d = &arr[tok->n_norms];
    memset(d, 0, sizeof *d);
    if (!strcmp(type, "NFC") || !strcmp(type, "NFD") || !strcmp(type, "NFKC") || !strcmp(type, "NFKD")) {
        d->kind = !strcmp(type, "NFC")    ? SS_TOK_NORM_NFC
                  : !strcmp(type, "NFD")  ? SS_TOK_NORM_NFD
                  : !strcmp(type, "NFKC") ? SS_TOK_NORM_NFKC
                                          : SS_TOK_NORM_NFKD;
    } else if (!strcmp(type, "Prepend")) {
        const char *s = tok_json_str(n, "prepend");
        if (!s)
            return ss_err_set(err, SS_ERR_FORMAT, "normalizer Prepend: missing 'prepend'");
        d->kind = SS_TOK_NORM_PREPEND;
        SS_CHECK(tok_dup(s, &d->a, &d->a_len, err));
    } else if (!strcmp(type, "Replace")) {
        int is_regex;
        const char *pat, *content = tok_json_str(n, "content");
        SS_CHECK(tok_pattern(n, "normalizer Replace", &is_regex, &pat, err));
        if (is_regex)
            return ss_err_set(err, SS_ERR_UNSUPPORTED, "normalizer Replace with a Regex pattern is not supported");
        if (!content || !*pat)
            return ss_err_set(err, SS_ERR_FORMAT, "normalizer Replace: needs a non-empty pattern and a content");
        d->kind = SS_TOK_NORM_REPLACE;
        tok->n_norms++; /* owned strings below are freed with the array */
        SS_CHECK(tok_dup(pat, &d->a, &d->a_len, err));
        SS_CHECK(tok_dup(content, &d->b, &d->b_len, err));
        return SS_OK;
    } else if (!strcmp(type, "Strip")) {
        d->kind = SS_TOK_NORM_STRIP;
        d->left = tok_json_bool(n, "strip_left", 1);
        d->right = tok_json_bool(n, "strip_right", 1);
    } else {
        return ss_err_set(err, SS_ERR_UNSUPPORTED, "normalizer '%s' is not supported", type);
    }
    tok->n_norms++;
    return SS_OK;
}

/* ---- pre-tokenizers ---- */

static ss_status tok_add_pretok(ss_tokenizer *tok, const cJSON *p, ss_err *err)
{
    const char *type = tok_json_type(p);
    if (!strcmp(type, "Sequence")) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(p, "pretokenizers");
        if (!cJSON_IsArray(list))
            return ss_err_set(err, SS_ERR_FORMAT, "pre-tokenizer Sequence: 'pretokenizers' must be an array");
        const cJSON *it;
        cJSON_ArrayForEach(it, list) SS_CHECK(tok_add_pretok(tok, it, err));
        return SS_OK;
    }
    ss_tok_pretok *arr = ss_realloc(tok->pretoks, (tok->n_pretoks + 1) * sizeof *arr);
    if (!arr)
        return ss_err_set(err, SS_ERR_NOMEM, "out of memory");
    tok->pretoks = arr;
    ss_tok_pretok *d = &arr[tok->n_pretoks];
    memset(d, 0, sizeof *d);
    if (!strcmp(type, "Split")) {
        int is_regex;
        const char *pat, *beh = tok_json_str(p, "behavior");
        SS_CHECK(tok_pattern(p, "pre-tokenizer Split", &is_regex, &pat, err));
        if (tok_json_bool(p, "invert", 0))
            return ss_err_set(err, SS_ERR_UNSUPPORTED, "pre-tokenizer Split with invert=true is not supported");
        if (!beh)
            return ss_err_set(err, SS_ERR_FORMAT, "pre-tokenizer Split: missing 'behavior'");
        if (!strcmp(beh, "Removed"))
            d->behavior = SS_TOK_SPLIT_REMOVED;
        else if (!strcmp(beh, "Isolated"))
            d->behavior = SS_TOK_SPLIT_ISOLATED;
        else if (!strcmp(beh, "MergedWithPrevious"))
            d->behavior = SS_TOK_SPLIT_MERGED_PREV;
        else if (!strcmp(beh, "MergedWithNext"))
            d->behavior = SS_TOK_SPLIT_MERGED_NEXT;
        else if (!strcmp(beh, "Contiguous"))
            d->behavior = SS_TOK_SPLIT_CONTIGUOUS;
        else
            return ss_err_set(err, SS_ERR_UNSUPPORTED, "pre-tokenizer Split: behavior '%s' is not supported", beh);
        d->kind = SS_TOK_PRE_SPLIT;
        tok->n_pretoks++;
        if (is_regex) {
            ss_status st = tok_compile(tok, pat, &d->re, err);
            if (st != SS_OK)
                ss_err_prefix(err, "pre-tokenizer Split");
            return st;
        }
        if (!*pat)
            return ss_err_set(err, SS_ERR_FORMAT, "pre-tokenizer Split: empty pattern");
        return tok_dup(pat, &d->literal, &d->literal_len, err);
    }
    if (!strcmp(type, "ByteLevel")) {
        d->kind = SS_TOK_PRE_BYTELEVEL;
        d->add_prefix_space = tok_json_bool(p, "add_prefix_space", 1);
        tok->n_pretoks++;
        if (tok_json_bool(p, "use_regex", 1))
            return tok_compile(tok,
                               "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+",
                               &d->re, err);
        return SS_OK;
    }
    if (!strcmp(type, "Metaspace")) {
        const char *r = tok_json_str(p, "replacement");
        uint32_t cp = 0;
        SS_CHECK(tok_one_char(r ? r : "\xe2\x96\x81", "pre-tokenizer Metaspace replacement", &cp, err));
        d->kind = SS_TOK_PRE_METASPACE;
        d->repl_len = ss_tok_utf8_encode(cp, d->repl);
        d->split = tok_json_bool(p, "split", 1);
        SS_CHECK(tok_prepend_scheme(p, "pre-tokenizer Metaspace", &d->prepend, err));
        tok->n_pretoks++;
        return SS_OK;
    }
    if (!strcmp(type, "Digits")) {
        d->kind = SS_TOK_PRE_DIGITS;
        d->individual_digits = tok_json_bool(p, "individual_digits", 0);
        tok->n_pretoks++;
        return SS_OK;
    }
    return ss_err_set(err, SS_ERR_UNSUPPORTED, "pre-tokenizer '%s' is not supported", type);
}

/* ---- decoders ---- */

static ss_status tok_add_dec(ss_tokenizer *tok, const cJSON *p, ss_err *err)
{
    const char *type = tok_json_type(p);
    if (!strcmp(type, "Sequence")) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(p, "decoders");
        if (!cJSON_IsArray(list))
            return ss_err_set(err, SS_ERR_FORMAT, "decoder Sequence: 'decoders' must be an array");
        const cJSON *it;
        cJSON_ArrayForEach(it, list) SS_CHECK(tok_add_dec(tok, it, err));
        return SS_OK;
    }
    ss_tok_dec *arr = ss_realloc(tok->decs, (tok->n_decs + 1) * sizeof *arr);
    if (!arr)
        return ss_err_set(err, SS_ERR_NOMEM, "out of memory");
    tok->decs = arr;
    ss_tok_dec *d = &arr[tok->n_decs];
    memset(d, 0, sizeof *d);
    if (!strcmp(type, "ByteLevel")) {
        d->kind = SS_TOK_DEC_BYTELEVEL;
    } else if (!strcmp(type, "ByteFallback")) {
        d->kind = SS_TOK_DEC_BYTEFALLBACK;
    } else if (!strcmp(type, "Fuse")) {
        d->kind = SS_TOK_DEC_FUSE;
    } else if (!strcmp(type, "Strip")) {
        const char *c = tok_json_str(p, "content");
        const cJSON *start = cJSON_GetObjectItemCaseSensitive(p, "start");
        const cJSON *stop = cJSON_GetObjectItemCaseSensitive(p, "stop");
        int64_t n_start, n_stop;
        if (!c || !ss_json_int(start, 0, 1000000, &n_start) || !ss_json_int(stop, 0, 1000000, &n_stop))
            return ss_err_set(err, SS_ERR_FORMAT, "decoder Strip: needs 'content', 'start' and 'stop'");
        SS_CHECK(tok_one_char(c, "decoder Strip content", &d->strip_char, err));
        d->kind = SS_TOK_DEC_STRIP;
        d->start = (size_t)n_start;
        d->stop = (size_t)n_stop;
    } else if (!strcmp(type, "Replace")) {
        int is_regex;
        const char *pat, *content = tok_json_str(p, "content");
        SS_CHECK(tok_pattern(p, "decoder Replace", &is_regex, &pat, err));
        if (is_regex)
            return ss_err_set(err, SS_ERR_UNSUPPORTED, "decoder Replace with a Regex pattern is not supported");
        if (!content || !*pat)
            return ss_err_set(err, SS_ERR_FORMAT, "decoder Replace: needs a non-empty pattern and a content");
        d->kind = SS_TOK_DEC_REPLACE;
        tok->n_decs++;
        SS_CHECK(tok_dup(pat, &d->a, &d->a_len, err));
        return tok_dup(content, &d->b, &d->b_len, err);
    } else if (!strcmp(type, "Metaspace")) {
        const char *r = tok_json_str(p, "replacement");
        uint32_t cp = 0;
        char buf[4];
        SS_CHECK(tok_one_char(r ? r : "\xe2\x96\x81", "decoder Metaspace replacement", &cp, err));
        SS_CHECK(tok_prepend_scheme(p, "decoder Metaspace", &d->prepend, err));
        d->kind = SS_TOK_DEC_METASPACE;
        tok->n_decs++;
        size_t k = ss_tok_utf8_encode(cp, buf);
        d->a = ss_strndup(buf, k);
        if (!d->a)
            return ss_err_set(err, SS_ERR_NOMEM, "out of memory");
        d->a_len = k;
        return SS_OK;
    } else {
        return ss_err_set(err, SS_ERR_UNSUPPORTED, "decoder '%s' is not supported", type);
    }
    tok->n_decs++;
    return SS_OK;
}

/* Whether the detokenizer may restart its window after a clean cut (see tok_decode.c). */
static int tok_dec_window_safe(const ss_tokenizer *tok)
{
    int collapsed = 0;
    for (size_t i = 0; i < tok->n_decs; i++) {
        const ss_tok_dec *d = &tok->decs[i];
        switch (d->kind) {
        case SS_TOK_DEC_BYTELEVEL:
        case SS_TOK_DEC_FUSE: collapsed = 1; break;
        case SS_TOK_DEC_METASPACE:
        case SS_TOK_DEC_BYTEFALLBACK:
            if (collapsed)
                return 0;
            break;
        case SS_TOK_DEC_REPLACE:
            if (collapsed && ss_tok_utf8_len((const unsigned char *)d->a, d->a_len) != d->a_len)
                return 0;
            break;
        case SS_TOK_DEC_STRIP:
            if (collapsed && d->stop > 0)
                return 0;
            break;
        }
    }
    return 1;
}

/* ---- post-processors ---- */

static ss_status tok_tmpl_push(ss_tokenizer *tok, ss_tok_tmpl *t, int is_seq, const int32_t *ids, size_t n,
                               ss_err *err)
{
    (void)tok;
    ss_tok_tmpl_item *items = ss_realloc(t->items, (t->n + 1) * sizeof *items);
    if (!items)
        return ss_err_set(err, SS_ERR_NOMEM, "out of memory");
    t->items = items;
    ss_tok_tmpl_item *it = &items[t->n];
    memset(it, 0, sizeof *it);
    it->is_seq = is_seq;
    if (n) {
        it->ids = ss_malloc(n * sizeof *ids);
        if (!it->ids)
            return ss_err_set(err, SS_ERR_NOMEM, "out of memory");
        memcpy(it->ids, ids, n * sizeof *ids);
        it->n = n;
    }
    t->n++;
    return SS_OK;
}

static ss_status tok_new_tmpl(ss_tokenizer *tok, ss_tok_tmpl **out, ss_err *err)
{
    ss_tok_tmpl *arr = ss_realloc(tok->tmpls, (tok->n_tmpls + 1) * sizeof *arr);
    if (!arr)
        return ss_err_set(err, SS_ERR_NOMEM, "out of memory");
    tok->tmpls = arr;
    memset(&arr[tok->n_tmpls], 0, sizeof arr[0]);
    *out = &arr[tok->n_tmpls++];
    return SS_OK;
}

static ss_status tok_id_of_pair(const cJSON *pair, const char *what, int32_t *id, ss_err *err)
{
    const cJSON *v = cJSON_GetArrayItem(pair, 1);
    if (!cJSON_IsArray(pair) || !ss_json_i32(v, 0, TOK_MAX_ID - 1, id))
        return ss_err_set(err, SS_ERR_FORMAT, "%s: expected [token, id]", what);
    return SS_OK;
}

static ss_status tok_add_post(ss_tokenizer *tok, const cJSON *p, ss_err *err)
{
    const char *type = tok_json_type(p);
    if (!strcmp(type, "Sequence")) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(p, "processors");
        if (!cJSON_IsArray(list))
            return ss_err_set(err, SS_ERR_FORMAT, "post-processor Sequence: 'processors' must be an array");
        const cJSON *it;
        cJSON_ArrayForEach(it, list) SS_CHECK(tok_add_post(tok, it, err));
        return SS_OK;
    }
    if (!strcmp(type, "ByteLevel"))
        return SS_OK; /* only trims offsets: no effect on ids */
    if (!strcmp(type, "BertProcessing") || !strcmp(type, "RobertaProcessing")) {
        int32_t cls, sep;
        SS_CHECK(tok_id_of_pair(cJSON_GetObjectItemCaseSensitive(p, "cls"), type, &cls, err));
        SS_CHECK(tok_id_of_pair(cJSON_GetObjectItemCaseSensitive(p, "sep"), type, &sep, err));
        ss_tok_tmpl *t = NULL;
        SS_CHECK(tok_new_tmpl(tok, &t, err));
        SS_CHECK(tok_tmpl_push(tok, t, 0, &cls, 1, err));
        SS_CHECK(tok_tmpl_push(tok, t, 1, NULL, 0, err));
        return tok_tmpl_push(tok, t, 0, &sep, 1, err);
    }
    if (!strcmp(type, "TemplateProcessing")) {
        const cJSON *single = cJSON_GetObjectItemCaseSensitive(p, "single");
        const cJSON *specials = cJSON_GetObjectItemCaseSensitive(p, "special_tokens");
        if (!cJSON_IsArray(single))
            return ss_err_set(err, SS_ERR_FORMAT, "post-processor TemplateProcessing: 'single' must be an array");
        ss_tok_tmpl *t = NULL;
        SS_CHECK(tok_new_tmpl(tok, &t, err));
        const cJSON *it;
        cJSON_ArrayForEach(it, single)
        {
            const cJSON *sp = cJSON_GetObjectItemCaseSensitive(it, "SpecialToken");
            const cJSON *sq = cJSON_GetObjectItemCaseSensitive(it, "Sequence");
            if (sq) {
                const char *id = tok_json_str(sq, "id");
                if (!id || strcmp(id, "A"))
                    return ss_err_set(err, SS_ERR_FORMAT, "TemplateProcessing: single template refers to '%s'",
                                      id ? id : "?");
                SS_CHECK(tok_tmpl_push(tok, t, 1, NULL, 0, err));
                continue;
            }
            const char *name = tok_json_str(sp, "id");
            if (!name)
                return ss_err_set(err, SS_ERR_FORMAT, "TemplateProcessing: bad item in 'single'");
            const cJSON *def = cJSON_GetObjectItemCaseSensitive(specials, name);
            const cJSON *ids = cJSON_GetObjectItemCaseSensitive(def, "ids");
            if (!cJSON_IsArray(ids))
                return ss_err_set(err, SS_ERR_FORMAT, "TemplateProcessing: special token '%s' has no ids", name);
            int n = cJSON_GetArraySize(ids);
            int32_t *buf = ss_malloc((size_t)(n ? n : 1) * sizeof *buf);
            if (!buf)
                return ss_err_set(err, SS_ERR_NOMEM, "out of memory");
            int k = 0;
            const cJSON *v;
            cJSON_ArrayForEach(v, ids)
            {
                if (!ss_json_i32(v, 0, TOK_MAX_ID - 1, &buf[k])) {
                    ss_free(buf);
                    return ss_err_set(err, SS_ERR_FORMAT, "TemplateProcessing: bad id for '%s'", name);
                }
                k++;
            }
            ss_status st = tok_tmpl_push(tok, t, 0, buf, (size_t)k, err);
            ss_free(buf);
            SS_CHECK(st);
        }
        return SS_OK;
    }
    return ss_err_set(err, SS_ERR_UNSUPPORTED, "post-processor '%s' is not supported", type);
}

/* ---- model ---- */

/* GPT-2's byte <-> printable character table. */
static uint32_t tok_byte_char(unsigned b)
{
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174)
        return b;
    unsigned n = 0;
    for (unsigned x = 0; x < b; x++)
        if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || x >= 174))
            n++;
    return 256 + n;
}

/* Maps a byte-level token string back to the bytes it stands for; 0 when a character is outside
 * the table. out must hold len bytes. */
static int tok_unbyte(const char *s, size_t len, const int16_t *char_byte, char *out, size_t *out_len)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, k = 0;
    while (i < len) {
        size_t c = ss_tok_utf8_len(u + i, len - i);
        if (!c)
            return 0;
        uint32_t cp = ss_tok_utf8_decode(u + i, c);
        if (cp >= 324 || char_byte[cp] < 0)
            return 0;
        out[k++] = (char)char_byte[cp];
        i += c;
    }
    *out_len = k;
    return 1;
}

static ss_status tok_merge_one(ss_tokenizer *tok, const char *a, size_t a_len, const char *b, size_t b_len,
                               uint32_t rank, ss_tok_buf *scratch, ss_err *err)
{
    int32_t ia = ss_tok_strmap_get(&tok->tok_map, a, a_len);
    int32_t ib = ss_tok_strmap_get(&tok->tok_map, b, b_len);
    scratch->len = 0;
    if (ss_tok_buf_append(scratch, a, a_len) != SS_OK || ss_tok_buf_append(scratch, b, b_len) != SS_OK)
        return ss_err_set(err, SS_ERR_NOMEM, "out of memory");
    int32_t in = ss_tok_strmap_get(&tok->tok_map, scratch->p, scratch->len);
    if (ia < 0 || ib < 0 || in < 0)
        return ss_err_set(err, SS_ERR_FORMAT, "merge %u '%.*s %.*s': token not in the vocabulary", rank, (int)a_len,
                          a, (int)b_len, b);
    ss_tok_mergemap_put(&tok->merges, ia, ib, rank, in);
    return SS_OK;
}

static ss_status tok_load_model(ss_tokenizer *tok, const cJSON *model, ss_err *err)
{
    const char *type = tok_json_str(model, "type");
    if (type && strcmp(type, "BPE"))
        return ss_err_set(err, SS_ERR_UNSUPPORTED, "model '%s' is not supported (only BPE)", type);
    if (!type && !cJSON_GetObjectItemCaseSensitive(model, "merges"))
        return ss_err_set(err, SS_ERR_UNSUPPORTED, "model without type or merges is not supported (only BPE)");
    const cJSON *drop = cJSON_GetObjectItemCaseSensitive(model, "dropout");
    if (cJSON_IsNumber(drop) && drop->valuedouble != 0.0)
        return ss_err_set(err, SS_ERR_UNSUPPORTED, "BPE dropout is not supported (non-deterministic)");
    const char *pre = tok_json_str(model, "continuing_subword_prefix");
    const char *suf = tok_json_str(model, "end_of_word_suffix");
    if ((pre && *pre) || (suf && *suf))
        return ss_err_set(err, SS_ERR_UNSUPPORTED, "BPE continuing_subword_prefix/end_of_word_suffix not supported");
    tok->byte_fallback = tok_json_bool(model, "byte_fallback", 0);
    tok->fuse_unk = tok_json_bool(model, "fuse_unk", 0);
    tok->ignore_merges = tok_json_bool(model, "ignore_merges", 0);

    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    if (!cJSON_IsObject(vocab))
        return ss_err_set(err, SS_ERR_FORMAT, "model.vocab must be an object");
    if (merges && !cJSON_IsArray(merges) && !cJSON_IsNull(merges))
        return ss_err_set(err, SS_ERR_FORMAT, "model.merges must be an array");
    const cJSON *it;
    int64_t max_id = -1;
    cJSON_ArrayForEach(it, vocab)
    {
        int64_t id;
        if (!ss_json_int(it, 0, TOK_MAX_ID - 1, &id))
            return ss_err_set(err, SS_ERR_FORMAT, "model.vocab['%s']: bad id", it->string);
        if (id > max_id)
            max_id = id;
    }
    if (max_id + 1 > tok->vocab_size)
        tok->vocab_size = (int32_t)(max_id + 1);
    return SS_OK;
}

static ss_status tok_fill_model(ss_tokenizer *tok, const cJSON *model, ss_err *err)
{
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    const cJSON *it;
    size_t nv = (size_t)tok->vocab_size;
    if (ss_tok_strtab_init(&tok->model_toks, nv) != SS_OK || ss_tok_strtab_init(&tok->vocab, nv) != SS_OK)
        return ss_err_set(err, SS_ERR_NOMEM, "out of memory");
    cJSON_ArrayForEach(it, vocab)
    {
        size_t len = strlen(it->string);
        size_t id = (size_t)it->valuedouble;
        if (ss_tok_strtab_set(&tok->model_toks, id, it->string, len) != SS_OK ||
            ss_tok_strtab_set(&tok->vocab, id, it->string, len) != SS_OK)
            return ss_err_set(err, SS_ERR_NOMEM, "out of memory");
    }
    if (ss_tok_strmap_build(&tok->tok_map, &tok->model_toks) != SS_OK)
        return ss_err_set(err, SS_ERR_NOMEM, "out of memory");

    /* the bytes the model matches on */
    int16_t *char_byte = tok->char_byte;
    for (int i = 0; i < 324; i++)
        char_byte[i] = -1;
    for (unsigned b = 0; b < 256; b++)
        char_byte[tok_byte_char(b)] = (int16_t)b;
    if (tok->byte_level) {
        if (ss_tok_strtab_init(&tok->enc_keys, nv) != SS_OK)
            return ss_err_set(err, SS_ERR_NOMEM, "out of memory");
        ss_tok_buf tmp = {0};
        for (size_t id = 0; id < nv; id++) {
            size_t len, out_len;
            const char *s = ss_tok_strtab_get(&tok->model_toks, id, &len);
            if (!s)
                continue;
            if (ss_tok_buf_reserve(&tmp, len) != SS_OK) {
                ss_tok_buf_free(&tmp);
                return ss_err_set(err, SS_ERR_NOMEM, "out of memory");
            }
            if (tok_unbyte(s, len, char_byte, tmp.p, &out_len) &&
                ss_tok_strtab_set(&tok->enc_keys, id, tmp.p, out_len) != SS_OK) {
                ss_tok_buf_free(&tmp);
                return ss_err_set(err, SS_ERR_NOMEM, "out of memory");
            }
        }
        ss_tok_buf_free(&tmp);
        if (ss_tok_strmap_build(&tok->enc_map, &tok->enc_keys) != SS_OK)
            return ss_err_set(err, SS_ERR_NOMEM, "out of memory");
        for (unsigned b = 0; b < 256; b++) {
            char c = (char)b;
            tok->byte_id[b] = ss_tok_strmap_get(&tok->enc_map, &c, 1);
        }
    } else {
        if (ss_tok_strmap_build(&tok->enc_map, &tok->model_toks) != SS_OK)
            return ss_err_set(err, SS_ERR_NOMEM, "out of memory");
        for (unsigned b = 0; b < 256; b++)
            tok->byte_id[b] = -1;
    }
    for (unsigned b = 0; b < 128; b++) {
        char c = (char)b;
        tok->ascii_id[b] = ss_tok_strmap_get(&tok->enc_map, &c, 1);
    }
    for (unsigned b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        tok->byte_fb_id[b] = tok->byte_fallback ? ss_tok_strmap_get(&tok->tok_map, name, 6) : -1;
    }
    const char *unk = tok_json_str(model, "unk_token");
    tok->unk_id = -1;
    if (unk) {
        tok->unk_id = ss_tok_strmap_get(&tok->tok_map, unk, strlen(unk));
        if (tok->unk_id < 0)
            return ss_err_set(err, SS_ERR_FORMAT, "model.unk_token '%s' is not in the vocabulary", unk);
    }

    /* merges: "a b" strings or [a, b] pairs; rank = position */
    size_t nm = cJSON_IsArray(merges) ? (size_t)cJSON_GetArraySize(merges) : 0;
    if (ss_tok_mergemap_init(&tok->merges, nm) != SS_OK)
        return ss_err_set(err, SS_ERR_NOMEM, "out of memory");
    ss_tok_buf scratch = {0};
    ss_status st = SS_OK;
    uint32_t rank = 0;
    if (nm) {
        cJSON_ArrayForEach(it, merges)
        {
            if (cJSON_IsString(it)) {
                const char *s = it->valuestring;
                const char *sp = strchr(s, ' ');
                if (!sp || strchr(sp + 1, ' ')) {
                    st = ss_err_set(err, SS_ERR_FORMAT, "merge %u '%s': expected two tokens", rank, s);
                    break;
                }
                st = tok_merge_one(tok, s, (size_t)(sp - s), sp + 1, strlen(sp + 1), rank, &scratch, err);
            } else if (cJSON_IsArray(it) && cJSON_GetArraySize(it) == 2 && cJSON_IsString(cJSON_GetArrayItem(it, 0)) &&
                       cJSON_IsString(cJSON_GetArrayItem(it, 1))) {
                const char *a = cJSON_GetArrayItem(it, 0)->valuestring, *b = cJSON_GetArrayItem(it, 1)->valuestring;
                st = tok_merge_one(tok, a, strlen(a), b, strlen(b), rank, &scratch, err);
            } else {
                st = ss_err_set(err, SS_ERR_FORMAT, "merge %u: expected \"a b\" or [a, b]", rank);
            }
            if (st != SS_OK)
                break;
            rank++;
        }
    }
    ss_tok_buf_free(&scratch);
    return st;
}

/* ---- added tokens ---- */

static ss_status tok_load_added(ss_tokenizer *tok, const cJSON *list, ss_err *err)
{
    if (!list || cJSON_IsNull(list))
        return SS_OK;
    if (!cJSON_IsArray(list))
        return ss_err_set(err, SS_ERR_FORMAT, "added_tokens must be an array");
    size_t n = (size_t)cJSON_GetArraySize(list);
    tok->added = ss_calloc(n ? n : 1, sizeof *tok->added);
    if (!tok->added)
        return ss_err_set(err, SS_ERR_NOMEM, "out of memory");
    const cJSON *it;
    cJSON_ArrayForEach(it, list)
    {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(it, "id");
        const char *content = tok_json_str(it, "content");
        int32_t id_v;
        if (!ss_json_i32(id, 0, TOK_MAX_ID - 1, &id_v) || !content)
            return ss_err_set(err, SS_ERR_FORMAT, "added_tokens[%zu]: needs 'id' and 'content'", tok->n_added);
        ss_tok_added *a = &tok->added[tok->n_added++];
        SS_CHECK(tok_dup(content, &a->content, &a->len, err));
        a->id = id_v;
        a->special = tok_json_bool(it, "special", 0);
        a->single_word = tok_json_bool(it, "single_word", 0);
        a->lstrip = tok_json_bool(it, "lstrip", 0);
        a->rstrip = tok_json_bool(it, "rstrip", 0);
        a->normalized = tok_json_bool(it, "normalized", !a->special);
        if (a->id + 1 > tok->vocab_size)
            tok->vocab_size = a->id + 1;
    }
    return SS_OK;
}

ss_status ss_tok_matcher_build(ss_tokenizer *tok, ss_tok_matcher *m, int normalized, ss_err *err)
{
    memset(m, 0, sizeof *m);
    size_t n = 0;
    for (size_t i = 0; i < tok->n_added; i++)
        n += tok->added[i].normalized == normalized && tok->added[i].len > 0;
    m->order = ss_malloc((n ? n : 1) * sizeof *m->order);
    m->norm_content = ss_calloc(tok->n_added ? tok->n_added : 1, sizeof *m->norm_content);
    m->norm_len = ss_calloc(tok->n_added ? tok->n_added : 1, sizeof *m->norm_len);
    if (!m->order || !m->norm_content || !m->norm_len)
        return ss_err_set(err, SS_ERR_NOMEM, "out of memory");
    m->n = tok->n_added;
    /* the text each token is matched against: its normalized form for normalized tokens */
    for (size_t i = 0; i < tok->n_added; i++) {
        const ss_tok_added *a = &tok->added[i];
        if (a->normalized != normalized || !a->len)
            continue;
        if (normalized) {
            ss_tok_buf b = {0};
            ss_status st = ss_tok_normalize(tok, a->content, a->len, &b, err);
            if (st != SS_OK) {
                ss_tok_buf_free(&b);
                return st;
            }
            if (!b.p && ss_tok_buf_append(&b, "", 0) != SS_OK)
                return ss_err_set(err, SS_ERR_NOMEM, "out of memory");
            m->norm_content[i] = b.p;
            m->norm_len[i] = b.len;
        }
    }
    /* bucket by first byte, longest first (counting sort by byte, then insertion sort by length) */
    uint32_t count[257] = {0};
    for (size_t i = 0; i < tok->n_added; i++) {
        const ss_tok_added *a = &tok->added[i];
        if (a->normalized != normalized || !a->len)
            continue;
        const char *c = normalized ? m->norm_content[i] : a->content;
        size_t len = normalized ? m->norm_len[i] : a->len;
        if (len)
            count[(unsigned char)c[0] + 1]++;
    }
    for (int b = 0; b < 256; b++)
        count[b + 1] += count[b];
    memcpy(m->start, count, sizeof count);
    uint32_t fill[256];
    memcpy(fill, count, sizeof fill);
    for (size_t i = 0; i < tok->n_added; i++) {
        const ss_tok_added *a = &tok->added[i];
        if (a->normalized != normalized || !a->len)
            continue;
        const char *c = normalized ? m->norm_content[i] : a->content;
        size_t len = normalized ? m->norm_len[i] : a->len;
        if (!len)
            continue;
        unsigned b = (unsigned char)c[0];
        uint32_t pos = fill[b]++;
        while (pos > m->start[b]) {
            uint32_t prev = m->order[pos - 1];
            size_t plen = normalized ? m->norm_len[prev] : tok->added[prev].len;
            if (plen >= len)
                break;
            m->order[pos] = prev;
            pos--;
        }
        m->order[pos] = (uint32_t)i;
    }
    return SS_OK;
}

void ss_tok_matcher_free(ss_tok_matcher *m)
{
    if (m->norm_content)
        for (size_t i = 0; i < m->n; i++)
            ss_free(m->norm_content[i]);
    ss_free(m->norm_content);
    ss_free(m->norm_len);
    ss_free(m->order);
    memset(m, 0, sizeof *m);
}

/* ---- tokenizer_config.json ---- */

static ss_status tok_config_str(const cJSON *v, char **out, ss_err *err)
{
    if (cJSON_IsObject(v))
        v = cJSON_GetObjectItemCaseSensitive(v, "content");
    if (!cJSON_IsString(v))
        return SS_OK;
    *out = ss_strdup(v->valuestring);
    if (!*out)
        return ss_err_set(err, SS_ERR_NOMEM, "out of memory");
    return SS_OK;
}

static ss_status tok_load_config(ss_tokenizer *tok, const char *path, ss_err *err)
{
    char *text;
    size_t len;
    SS_CHECK(tok_read_file(path, &text, &len, err));
    cJSON *root = cJSON_ParseWithLength(text, len);
    ss_free(text);
    if (!root)
        return ss_err_set(err, SS_ERR_FORMAT, "%s: malformed JSON", path);
    ss_status st = SS_OK;
    if (!cJSON_IsObject(root)) {
        st = ss_err_set(err, SS_ERR_FORMAT, "%s: expected a JSON object", path);
        goto out;
    }
    const cJSON *ct = cJSON_GetObjectItemCaseSensitive(root, "chat_template");
    if (cJSON_IsArray(ct)) {
        const cJSON *it;
        cJSON_ArrayForEach(it, ct)
        {
            const char *name = tok_json_str(it, "name");
            if (name && !strcmp(name, "default")) {
                ct = cJSON_GetObjectItemCaseSensitive(it, "template");
                break;
            }
        }
    }
    if (cJSON_IsString(ct) && (tok->chat_template = ss_strdup(ct->valuestring)) == NULL) {
        st = ss_err_set(err, SS_ERR_NOMEM, "out of memory");
        goto out;
    }
    if ((st = tok_config_str(cJSON_GetObjectItemCaseSensitive(root, "bos_token"), &tok->bos_token, err)) != SS_OK)
        goto out;
    st = tok_config_str(cJSON_GetObjectItemCaseSensitive(root, "eos_token"), &tok->eos_token, err);
out:
    cJSON_Delete(root);
    return st;
}

/* ---- load ---- */

static ss_status tok_load_json(ss_tokenizer *tok, const cJSON *root, ss_err *err)
{
    if (!cJSON_IsObject(root))
        return ss_err_set(err, SS_ERR_FORMAT, "expected a JSON object");
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (!cJSON_IsObject(model))
        return ss_err_set(err, SS_ERR_FORMAT, "missing 'model'");
    const cJSON *trunc = cJSON_GetObjectItemCaseSensitive(root, "truncation");
    const cJSON *pad = cJSON_GetObjectItemCaseSensitive(root, "padding");
    if ((trunc && !cJSON_IsNull(trunc)) || (pad && !cJSON_IsNull(pad)))
        SS_CHECK(ss_err_set(err, SS_ERR_UNSUPPORTED, "truncation/padding in tokenizer.json is not supported"));

    const cJSON *norm = cJSON_GetObjectItemCaseSensitive(root, "normalizer");
    if (norm && !cJSON_IsNull(norm))
        SS_CHECK(tok_add_norm(tok, norm, err));
    const cJSON *pre = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    if (pre && !cJSON_IsNull(pre))
        SS_CHECK(tok_add_pretok(tok, pre, err));
    for (size_t i = 0; i < tok->n_pretoks; i++) {
        if (tok->pretoks[i].kind != SS_TOK_PRE_BYTELEVEL)
            continue;
        if (i + 1 != tok->n_pretoks)
            return ss_err_set(err, SS_ERR_UNSUPPORTED, "pre-tokenizer ByteLevel must come last in its Sequence");
        tok->byte_level = 1;
    }
    const cJSON *post = cJSON_GetObjectItemCaseSensitive(root, "post_processor");
    if (post && !cJSON_IsNull(post))
        SS_CHECK(tok_add_post(tok, post, err));
    const cJSON *dec = cJSON_GetObjectItemCaseSensitive(root, "decoder");
    if (dec && !cJSON_IsNull(dec)) {
        SS_CHECK(tok_add_dec(tok, dec, err));
        tok->has_decoder = 1;
    }
    tok->detok_no_cut = !tok_dec_window_safe(tok);

    SS_CHECK(tok_load_model(tok, model, err));
    SS_CHECK(tok_load_added(tok, cJSON_GetObjectItemCaseSensitive(root, "added_tokens"), err));
    if (tok->vocab_size <= 0)
        return ss_err_set(err, SS_ERR_FORMAT, "empty vocabulary");
    SS_CHECK(tok_fill_model(tok, model, err));

    tok->added_by_id = ss_malloc((size_t)tok->vocab_size * sizeof *tok->added_by_id);
    if (!tok->added_by_id)
        return ss_err_set(err, SS_ERR_NOMEM, "out of memory");
    for (int32_t i = 0; i < tok->vocab_size; i++)
        tok->added_by_id[i] = -1;
    for (size_t i = 0; i < tok->n_added; i++) {
        const ss_tok_added *a = &tok->added[i];
        tok->added_by_id[a->id] = (int32_t)i;
        if (ss_tok_strtab_set(&tok->vocab, (size_t)a->id, a->content, a->len) != SS_OK)
            return ss_err_set(err, SS_ERR_NOMEM, "out of memory");
    }
    SS_CHECK(ss_tok_matcher_build(tok, &tok->match_raw, 0, err));
    SS_CHECK(ss_tok_matcher_build(tok, &tok->match_norm, 1, err));
    for (size_t t = 0; t < tok->n_tmpls; t++)
        for (size_t i = 0; i < tok->tmpls[t].n; i++)
            for (size_t k = 0; k < tok->tmpls[t].items[i].n; k++)
                if (tok->tmpls[t].items[i].ids[k] >= tok->vocab_size)
                    return ss_err_set(err, SS_ERR_FORMAT, "post-processor: id %d outside the vocabulary",
                                      tok->tmpls[t].items[i].ids[k]);
    return SS_OK;
}

ss_status ss_tokenizer_load_json(const char *json, size_t len, const char *name, ss_tokenizer **out, ss_err *err)
{
    if (!json || !name || !out)
        return ss_err_set(err, SS_ERR_INVALID_ARG, "ss_tokenizer_load_json: NULL argument");
    *out = NULL;
    ss_tokenizer *tok = ss_calloc(1, sizeof *tok);
    if (!tok)
        return ss_err_set(err, SS_ERR_NOMEM, "%s: out of memory", name);
    ss_status st;
    cJSON *root = NULL;
    tok->path = ss_strdup(name);
    tok->gctx = pcre2_general_context_create(tok_pcre_malloc, tok_pcre_free, NULL);
    if (!tok->path || !tok->gctx) {
        st = ss_err_set(err, SS_ERR_NOMEM, "%s: out of memory", name);
        goto fail;
    }
    /* JSON is UTF-8 (RFC 8259), and cJSON passes a string's bytes through as they are: the normalizers' and decoders'
     * strings reach PCRE2's matcher, which is told the text is valid UTF-8 (session 52's fuzzing: a Prepend of 0xFF
     * bytes crashed the JIT). cJSON refuses \u escapes that make no character, so checking the text covers them. */
    const size_t bad = ss_tok_utf8_validate(json, len);
    if (bad != len) {
        st = ss_err_set(err, SS_ERR_FORMAT, "%s: not UTF-8 (byte %zu)", name, bad);
        goto fail;
    }
    root = cJSON_ParseWithLength(json, len);
    if (!root) {
        st = ss_err_set(err, SS_ERR_FORMAT, "%s: malformed JSON", name);
        goto fail;
    }
    st = tok_load_json(tok, root, err);
    cJSON_Delete(root);
    if (st != SS_OK) {
        ss_err_prefix(err, "%s", name);
        goto fail;
    }
    *out = tok;
    return SS_OK;
fail:
    ss_tokenizer_destroy(tok);
    return st;
}

ss_status ss_tokenizer_load_files(const char *tokenizer_json, const char *config_json, ss_tokenizer **out,
                                  ss_err *err)
{
    if (!tokenizer_json || !out)
        return ss_err_set(err, SS_ERR_INVALID_ARG, "ss_tokenizer_load_files: NULL argument");
    *out = NULL;
    char *text = NULL;
    size_t len;
    SS_CHECK(tok_read_file(tokenizer_json, &text, &len, err));
    ss_tokenizer *tok = NULL;
    ss_status st = ss_tokenizer_load_json(text, len, tokenizer_json, &tok, err);
    ss_free(text);
    if (st == SS_OK && config_json && (st = tok_load_config(tok, config_json, err)) != SS_OK) {
        ss_tokenizer_destroy(tok);
        return st;
    }
    *out = tok;
    return st;
}

ss_status ss_tokenizer_load(const char *dir, ss_tokenizer **out, ss_err *err)
{
    if (!dir || !out)
        return ss_err_set(err, SS_ERR_INVALID_ARG, "ss_tokenizer_load: NULL argument");
    size_t n = strlen(dir);
    char *tj = ss_malloc(n + 32), *cj = ss_malloc(n + 32);
    ss_status st;
    if (!tj || !cj) {
        st = ss_err_set(err, SS_ERR_NOMEM, "%s: out of memory", dir);
        goto out;
    }
    snprintf(tj, n + 32, "%s/tokenizer.json", dir);
    snprintf(cj, n + 32, "%s/tokenizer_config.json", dir);
    FILE *f = fopen(cj, "rb");
    if (f)
        fclose(f);
    st = ss_tokenizer_load_files(tj, f ? cj : NULL, out, err);
out:
    ss_free(tj);
    ss_free(cj);
    return st;
}

void ss_tokenizer_destroy(ss_tokenizer *tok)
{
    if (!tok)
        return;
    ss_tok_strtab_free(&tok->vocab);
    ss_tok_strtab_free(&tok->model_toks);
    ss_tok_strtab_free(&tok->enc_keys);
    ss_tok_strmap_free(&tok->enc_map);
    ss_tok_strmap_free(&tok->tok_map);
    ss_tok_mergemap_free(&tok->merges);
    for (size_t i = 0; i < tok->n_norms; i++) {
        ss_free(tok->norms[i].a);
        ss_free(tok->norms[i].b);
    }
    ss_free(tok->norms);
    for (size_t i = 0; i < tok->n_pretoks; i++) {
        pcre2_code_free(tok->pretoks[i].re);
        ss_free(tok->pretoks[i].literal);
    }
    ss_free(tok->pretoks);
    for (size_t i = 0; i < tok->n_decs; i++) {
        ss_free(tok->decs[i].a);
        ss_free(tok->decs[i].b);
    }
    ss_free(tok->decs);
    for (size_t t = 0; t < tok->n_tmpls; t++) {
        for (size_t i = 0; i < tok->tmpls[t].n; i++)
            ss_free(tok->tmpls[t].items[i].ids);
        ss_free(tok->tmpls[t].items);
    }
    ss_free(tok->tmpls);
    for (size_t i = 0; i < tok->n_added; i++)
        ss_free(tok->added[i].content);
    ss_free(tok->added);
    ss_free(tok->added_by_id);
    ss_tok_matcher_free(&tok->match_raw);
    ss_tok_matcher_free(&tok->match_norm);
    pcre2_general_context_free(tok->gctx);
    ss_free(tok->chat_template);
    ss_free(tok->bos_token);
    ss_free(tok->eos_token);
    ss_free(tok->path);
    ss_free(tok);
}

int32_t ss_tokenizer_vocab_size(const ss_tokenizer *tok)
{
    return tok->vocab_size;
}

int32_t ss_tokenizer_token_to_id(const ss_tokenizer *tok, const char *token)
{
    if (!token)
        return -1;
    size_t len = strlen(token);
    for (size_t i = 0; i < tok->n_added; i++)
        if (tok->added[i].len == len && !memcmp(tok->added[i].content, token, len))
            return tok->added[i].id;
    return ss_tok_strmap_get(&tok->tok_map, token, len);
}

int ss_tokenizer_is_special(const ss_tokenizer *tok, int32_t id)
{
    if (id < 0 || id >= tok->vocab_size || tok->added_by_id[id] < 0)
        return 0;
    return tok->added[tok->added_by_id[id]].special;
}

const char *ss_tokenizer_chat_template(const ss_tokenizer *tok)
{
    return tok->chat_template;
}

const char *ss_tokenizer_bos_token(const ss_tokenizer *tok)
{
    return tok->bos_token;
}

const char *ss_tokenizer_eos_token(const ss_tokenizer *tok)
{
    return tok->eos_token;
}
