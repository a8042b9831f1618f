/* api_common.c — shared pieces of the HTTP APIs: errors, the bounded JSON writer, typed JSON field
 * access with field-naming error messages, and the per-choice result accumulator. */
#include "serve/api_common.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/alloc.h"
#include "core/json_num.h"

/* ---- errors ---------------------------------------------------------------------------------- */

static const char *api_error_type(int http_status)
{
    switch (http_status) {
    case 400: return "invalid_request_error";
    case 401: return "authentication_error";
    case 404: return "not_found_error";
    case 405: /* the client's method, as OpenAI reports it */
    case 417: /* an Expect, a version: the client's request */
    case 505: return "invalid_request_error";
    case 413:
    case 431: return "request_too_large";
    case 429: return "rate_limit_error";
    case 503: return "service_unavailable";
    case 504: return "timeout_error";
    default: return "server_error";
    }
}

static int api_cmp_names(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* A key that occurs twice in obj (cJSON keeps both; its lookups see the first), or NULL. Sorted, so a body of
 * many keys costs n log n. */
static const char *api_duplicate_key(const cJSON *obj)
{
    int n = cJSON_GetArraySize(obj);
    if (n < 2)
        return NULL;
    const char **names = ss_malloc((size_t)n * sizeof *names);
    if (!names)
        return NULL; /* the request then runs with the first value, as before */
    int k = 0;
    for (const cJSON *c = obj->child; c && k < n; c = c->next)
        names[k++] = c->string ? c->string : "";
    qsort(names, (size_t)k, sizeof *names, api_cmp_names);
    const char *dup = NULL;
    for (int i = 1; i < k && !dup; i++)
        if (!strcmp(names[i - 1], names[i]))
            dup = names[i];
    ss_free(names);
    return dup;
}

/* The first key given twice in v or any object or array inside it. Recursion is bounded by cJSON's nesting
 * limit (CJSON_NESTING_LIMIT), which the parse enforced. */
static const char *api_duplicate_key_deep(const cJSON *v)
{
    const char *dup = cJSON_IsObject(v) ? api_duplicate_key(v) : NULL;
    if (cJSON_IsObject(v) || cJSON_IsArray(v))
        for (const cJSON *c = v->child; c && !dup; c = c->next)
            dup = api_duplicate_key_deep(c);
    return dup;
}

/* The offset of the first byte below 0x20 that JSON does not allow where it stands: any inside a string, any but
 * tab, line feed and carriage return outside; len when there is none. Only string boundaries are tracked: a body
 * malformed otherwise is cJSON's to refuse. */
static size_t api_raw_control(const char *body, size_t len)
{
    int in_string = 0;
    for (size_t i = 0; i < len; i++) {
        const unsigned char c = (unsigned char)body[i];
        if (c < 0x20 && (in_string || (c != '\t' && c != '\n' && c != '\r')))
            return i;
        if (in_string && c == '\\')
            i++; /* the escaped byte (a control character there is refused by cJSON) */
        else if (c == '"')
            in_string = !in_string;
    }
    return len;
}

ss_status ss_api_parse_object(const char *body, size_t len, cJSON **root, ss_api_error *e)
{
    *root = NULL;
    if (!body || len == 0)
        return ss_api_fail(e, 400, "", "request body is empty; expected a JSON object");
    /* a raw NUL byte is no JSON, and cJSON would end a string there (the rest of a prompt lost in silence) */
    const char *nul = memchr(body, 0, len);
    if (nul)
        return ss_api_fail(e, 400, "", "malformed JSON in request body: a NUL byte at byte %zu", (size_t)(nul - body));
    /* cJSON takes raw control characters inside strings, and any byte up to 0x20 as white space; JSON (RFC 8259)
     * takes neither (a raw line break in a string is a client's bug, which strict parsers such as vLLM's refuse) */
    size_t bad = api_raw_control(body, len);
    if (bad < len)
        return ss_api_fail(e, 400, "", "malformed JSON in request body: a raw control character (0x%02x) at byte %zu; "
                           "escape it (\\n, \\t, \\u001b)", (unsigned)(unsigned char)body[bad], bad);
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(body, len, &end, 0);
    if (!j) {
        size_t off = end && end >= body ? (size_t)(end - body) : 0;
        return ss_api_fail(e, 400, "", "malformed JSON in request body near byte %zu", off);
    }
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return ss_api_fail(e, 400, "", "request body must be a JSON object");
    }
    /* cJSON stops after the first value: anything but white space after it is a malformed body */
    for (const char *p = end; p && p < body + len; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            cJSON_Delete(j);
            return ss_api_fail(e, 400, "", "malformed JSON in request body: unexpected data after the object at byte %zu",
                               (size_t)(p - body));
        }
    /* A field given twice: refused rather than guessed (parsers differ on which value wins), in every object
     * of the body (the request's fields, Triton's "parameters", each of the chat's messages, ...). */
    const char *dup = api_duplicate_key_deep(j);
    if (dup) {
        ss_status st = ss_api_fail(e, 400, dup, "malformed request: the key '%.64s' occurs twice", dup);
        cJSON_Delete(j);
        return st;
    }
    /* cJSON decodes \u0000 into a C string that ends there: a prompt would lose its rest in silence. An
     * escape starts at a backslash preceded by an even run of backslashes. */
    for (size_t i = 0; i + 6 <= len; i++) {
        if (body[i] != '\\' || memcmp(body + i + 1, "u0000", 5) != 0)
            continue;
        size_t run = 1;
        while (run <= i && body[i - run] == '\\')
            run++;
        if (run % 2 == 1) {
            cJSON_Delete(j);
            return ss_api_fail(e, 400, "", "strings holding a NUL character (\\u0000, at byte %zu) are not supported", i);
        }
    }
    *root = j;
    return SS_OK;
}

ss_status ss_api_fail(ss_api_error *e, int http_status, const char *param, const char *fmt, ...)
{
    if (!e)
        return SS_ERR_INVALID_ARG;
    e->http_status = http_status;
    e->type = api_error_type(http_status);
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return SS_ERR_INVALID_ARG;
}

/* ---- JSON writer ------------------------------------------------------------------------------ */

void ss_jbuf_init(ss_jbuf *b, size_t max)
{
    memset(b, 0, sizeof *b);
    b->max = max;
}

void ss_jbuf_free(ss_jbuf *b)
{
    ss_free(b->data);
    memset(b, 0, sizeof *b);
}

static int jbuf_reserve(ss_jbuf *b, size_t extra)
{
    if (b->failed)
        return 0;
    if (extra > b->max || b->len > b->max - extra) {
        b->failed = 1;
        return 0;
    }
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return 1;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap *= 2;
    char *p = ss_realloc(b->data, cap);
    if (!p) {
        b->failed = 1;
        return 0;
    }
    b->data = p;
    b->cap = cap;
    return 1;
}

void ss_jbuf_raw(ss_jbuf *b, const char *s, size_t n)
{
    if (!jbuf_reserve(b, n))
        return;
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void ss_jbuf_cstr(ss_jbuf *b, const char *s)
{
    ss_jbuf_raw(b, s, strlen(s));
}

void ss_jbuf_printf(ss_jbuf *b, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof tmp) {
        b->failed = 1; /* only short numeric fragments go through here */
        return;
    }
    ss_jbuf_raw(b, tmp, (size_t)n);
}

/* Length of the valid UTF-8 sequence at s[0..n) (1..4), or 0 when it is not valid UTF-8
 * (overlong forms, surrogates and code points past U+10FFFF included). */
static size_t jbuf_utf8_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    size_t len;
    unsigned lo = 0x80, hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        if (c == 0xe0)
            lo = 0xa0;
        else if (c == 0xed)
            hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        if (c == 0xf0)
            lo = 0x90;
        else if (c == 0xf4)
            hi = 0x8f;
    } else {
        return 0;
    }
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xbf)
            return 0;
    return len;
}

/* Bytes one input position takes in the output and how many input bytes it consumes. Invalid UTF-8
 * becomes U+FFFD (3 bytes), so every document we write is valid JSON text. */
static size_t jbuf_piece(const unsigned char *s, size_t n, size_t *consumed)
{
    unsigned char c = s[0];
    *consumed = 1;
    switch (c) {
    case '"': case '\\': case '\n': case '\r': case '\t': return 2;
    default: break;
    }
    if (c < 0x20 || c == 0x7f)
        return 6;
    size_t u = jbuf_utf8_len(s, n);
    if (u == 0)
        return 3;
    *consumed = u;
    return u;
}

void ss_jbuf_str(ss_jbuf *b, const char *str, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = (const unsigned char *)str;
    size_t need = 2, used;
    for (size_t i = 0; i < n; i += used)
        need += jbuf_piece(s + i, n - i, &used);
    if (!jbuf_reserve(b, need))
        return;
    char *o = b->data + b->len;
    *o++ = '"';
    for (size_t i = 0; i < n; i += used) {
        unsigned char c = s[i];
        size_t w = jbuf_piece(s + i, n - i, &used);
        switch (c) {
        case '"': *o++ = '\\'; *o++ = '"'; continue;
        case '\\': *o++ = '\\'; *o++ = '\\'; continue;
        case '\n': *o++ = '\\'; *o++ = 'n'; continue;
        case '\r': *o++ = '\\'; *o++ = 'r'; continue;
        case '\t': *o++ = '\\'; *o++ = 't'; continue;
        default: break;
        }
        if (w == 6) {
            memcpy(o, "\\u00", 4);
            o[4] = hex[c >> 4];
            o[5] = hex[c & 15];
            o += 6;
        } else if (w == 3 && used == 1) {
            memcpy(o, "\xef\xbf\xbd", 3); /* U+FFFD for an invalid byte */
            o += 3;
        } else {
            memcpy(o, s + i, used);
            o += used;
        }
    }
    *o++ = '"';
    b->len = (size_t)(o - b->data);
    b->data[b->len] = '\0';
}

char *ss_jbuf_take(ss_jbuf *b, size_t *len)
{
    if (b->failed || !jbuf_reserve(b, 0)) {
        ss_jbuf_free(b);
        return NULL;
    }
    char *p = b->data;
    if (len)
        *len = b->len;
    b->data = NULL;
    b->len = b->cap = 0;
    return p;
}

void ss_jbuf_float(ss_jbuf *b, double v)
{
    if (isnan(v))
        v = -9999.0;
    if (isinf(v))
        v = v < 0 ? -9999.0 : 9999.0;
    ss_jbuf_printf(b, "%.9g", v);
}

char *ss_api_error_openai_json(const ss_api_error *e, size_t *len)
{
    ss_jbuf b;
    ss_jbuf_init(&b, 4096);
    ss_jbuf_cstr(&b, "{\"error\":{\"message\":");
    ss_jbuf_str(&b, e->message, strlen(e->message));
    ss_jbuf_cstr(&b, ",\"type\":");
    ss_jbuf_str(&b, e->type ? e->type : "server_error", strlen(e->type ? e->type : "server_error"));
    ss_jbuf_cstr(&b, ",\"param\":");
    if (e->param[0])
        ss_jbuf_str(&b, e->param, strlen(e->param));
    else
        ss_jbuf_cstr(&b, "null");
    ss_jbuf_printf(&b, ",\"code\":%d}}", e->http_status);
    return ss_jbuf_take(&b, len);
}

char *ss_api_error_triton_json(const ss_api_error *e, size_t *len)
{
    ss_jbuf b;
    ss_jbuf_init(&b, 4096);
    ss_jbuf_cstr(&b, "{\"error\":");
    ss_jbuf_str(&b, e->message, strlen(e->message));
    ss_jbuf_cstr(&b, "}");
    return ss_jbuf_take(&b, len);
}

/* ---- request ------------------------------------------------------------------------------------ */

void ss_api_request_init(ss_api_request *r, ss_api_kind kind)
{
    memset(r, 0, sizeof *r);
    r->kind = kind;
    r->sp = ss_sampling_default(); /* greedy, no penalties, no logprobs */
    r->n = 1;
    r->parallel_tool_calls = 1;
}

void ss_api_request_clear(ss_api_request *r)
{
    ss_free(r->model);
    ss_free(r->prompt);
    ss_free(r->prompt_ids);
    cJSON_Delete(r->messages);
    cJSON_Delete(r->tools);
    ss_json_schema_destroy(r->json_schema);
    ss_free(r->stop_ids);
    ss_free(r->bias_ids);
    ss_free(r->bias_vals);
    for (int32_t i = 0; i < r->n_stop; i++)
        ss_free(r->stop[i]);
    for (int32_t i = 0; i < r->n_bad_words; i++)
        ss_free(r->bad_words[i]);
    ss_free(r->bad_words);
    ss_api_request_init(r, r->kind);
}

const char *ss_api_finish_str(int finish_reason)
{
    switch (finish_reason) {
    case 1: return "stop";      /* SS_FINISH_STOP */
    case 2: return "length";    /* SS_FINISH_LENGTH */
    case 3: return "cancelled"; /* SS_FINISH_CANCELLED */
    case 4: return "error";     /* SS_FINISH_ERROR */
    default: return "null";
    }
}

int64_t ss_api_now_unix(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec;
}

/* ---- typed JSON access -------------------------------------------------------------------------- */

static const cJSON *api_field(const cJSON *obj, const char *name, int *present)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, name);
    *present = it && !cJSON_IsNull(it);
    return *present ? it : NULL;
}

ss_status ss_api_get_number(const cJSON *obj, const char *name, double *out, int *present, ss_api_error *e)
{
    const cJSON *it = api_field(obj, name, present);
    if (!it)
        return SS_OK;
    if (!cJSON_IsNumber(it) || !isfinite(it->valuedouble))
        return ss_api_fail(e, 400, name, "'%s' must be a number", name);
    *out = it->valuedouble;
    return SS_OK;
}

ss_status ss_api_get_int(const cJSON *obj, const char *name, int64_t *out, int *present, ss_api_error *e)
{
    const cJSON *it = api_field(obj, name, present);
    if (!it)
        return SS_OK;
    if (!ss_json_int(it, -INT64_C(9000000000000000), INT64_C(9000000000000000), out))
        return ss_api_fail(e, 400, name, "'%s' must be an integer", name);
    return SS_OK;
}

ss_status ss_api_get_seed(const cJSON *obj, const char *name, uint64_t *out, int *present, ss_api_error *e)
{
    const cJSON *it = api_field(obj, name, present);
    if (!it)
        return SS_OK;
    const double d = cJSON_IsNumber(it) ? it->valuedouble : NAN;
    /* -2^63 and 2^64 are exact doubles; the comparisons reject NaN and infinities before any conversion */
    if (!(d >= -9223372036854775808.0 && d < 18446744073709551616.0) || d != floor(d))
        return ss_api_fail(e, 400, name, "'%s' must be an integer from -2^63 to 2^64 - 1", name);
    *out = d < 0 ? (uint64_t)(int64_t)d : (uint64_t)d;
    return SS_OK;
}

ss_status ss_api_get_bool(const cJSON *obj, const char *name, int *out, int *present, ss_api_error *e)
{
    const cJSON *it = api_field(obj, name, present);
    if (!it)
        return SS_OK;
    if (!cJSON_IsBool(it))
        return ss_api_fail(e, 400, name, "'%s' must be a boolean", name);
    *out = cJSON_IsTrue(it) ? 1 : 0;
    return SS_OK;
}

static ss_status api_dup_string(const cJSON *it, const char *name, char **out, ss_api_error *e)
{
    size_t n = strlen(it->valuestring);
    if (n > SS_API_MAX_STRING)
        return ss_api_fail(e, 400, name, "'%s' is longer than %u bytes", name, SS_API_MAX_STRING);
    *out = ss_strndup(it->valuestring, n);
    if (!*out)
        return ss_api_fail(e, 500, name, "out of memory");
    return SS_OK;
}

ss_status ss_api_get_string(const cJSON *obj, const char *name, char **out, int *present, ss_api_error *e)
{
    const cJSON *it = api_field(obj, name, present);
    if (!it)
        return SS_OK;
    if (!cJSON_IsString(it))
        return ss_api_fail(e, 400, name, "'%s' must be a string", name);
    return api_dup_string(it, name, out, e);
}

ss_status ss_api_get_strings(const cJSON *obj, const char *name, int32_t max, char **out, int32_t *n,
                             ss_api_error *e)
{
    int present;
    const cJSON *it = api_field(obj, name, &present);
    *n = 0;
    if (!it)
        return SS_OK;
    if (cJSON_IsString(it)) {
        if (max < 1)
            return ss_api_fail(e, 400, name, "'%s': too many entries (at most %d)", name, (int)max);
        if (it->valuestring[0] == '\0') /* as in a list: an empty stop or bad word would mean nothing or everything */
            return ss_api_fail(e, 400, name, "'%s' must not be an empty string", name);
        SS_CHECK(api_dup_string(it, name, &out[0], e));
        *n = 1;
        return SS_OK;
    }
    if (!cJSON_IsArray(it))
        return ss_api_fail(e, 400, name, "'%s' must be a string or a list of strings", name);
    int count = cJSON_GetArraySize(it);
    if (count > max)
        return ss_api_fail(e, 400, name, "'%s' has %d entries, at most %d are allowed", name, count, (int)max);
    const cJSON *s;
    cJSON_ArrayForEach(s, it)
    {
        if (!cJSON_IsString(s))
            return ss_api_fail(e, 400, name, "'%s' must be a string or a list of strings", name);
        if (s->valuestring[0] == '\0')
            return ss_api_fail(e, 400, name, "'%s' must not contain empty strings", name);
        SS_CHECK(api_dup_string(s, name, &out[*n], e));
        (*n)++;
    }
    return SS_OK;
}

ss_status ss_api_get_ids(const cJSON *obj, const char *name, int32_t max, int32_t bound, int32_t **out,
                         int32_t *n, ss_api_error *e)
{
    int present;
    const cJSON *it = api_field(obj, name, &present);
    *n = 0;
    *out = NULL;
    if (!it)
        return SS_OK;
    int count = cJSON_IsArray(it) ? cJSON_GetArraySize(it) : 1;
    if (!cJSON_IsArray(it) && !cJSON_IsNumber(it))
        return ss_api_fail(e, 400, name, "'%s' must be a token id or a list of token ids", name);
    if (count > max)
        return ss_api_fail(e, 400, name, "'%s' has %d entries, at most %d are allowed", name, count, (int)max);
    if (count == 0)
        return SS_OK;
    *out = ss_malloc((size_t)count * sizeof **out);
    if (!*out)
        return ss_api_fail(e, 500, name, "out of memory");
    const cJSON *v = cJSON_IsArray(it) ? it->child : it;
    for (int i = 0; i < count && v; i++, v = v->next) {
        if (!ss_json_i32(v, 0, bound - 1, &(*out)[*n])) {
            ss_free(*out);
            *out = NULL;
            return ss_api_fail(e, 400, name, "'%s' must hold token ids in [0, %d)", name, (int)bound);
        }
        (*n)++;
    }
    return SS_OK;
}

/* ---- choice accumulator ------------------------------------------------------------------------- */

ss_status ss_api_choice_append_text(ss_api_choice *c, const char *s, size_t n, size_t max)
{
    if (n == 0)
        return SS_OK;
    if (n > max || c->text_len > max - n)
        return SS_ERR_CAPACITY;
    if (c->text_len + n + 1 > c->text_cap) {
        size_t cap = c->text_cap ? c->text_cap : 64;
        while (cap < c->text_len + n + 1)
            cap *= 2;
        char *p = ss_realloc(c->text, cap);
        if (!p)
            return SS_ERR_NOMEM;
        c->text = p;
        c->text_cap = cap;
    }
    memcpy(c->text + c->text_len, s, n);
    c->text_len += n;
    c->text[c->text_len] = '\0';
    return SS_OK;
}

ss_status ss_api_choice_append_lp(ss_api_choice *c, int32_t token, float logprob, int32_t n_top,
                                  const int32_t *top_ids, const float *top_lps)
{
    if (c->n_lps == c->cap_lps) {
        int32_t cap = c->cap_lps ? c->cap_lps * 2 : 16;
        if (cap > (1 << 24))
            return SS_ERR_CAPACITY;
        ss_api_token_lp *p = ss_realloc(c->lps, (size_t)cap * sizeof *p);
        if (!p)
            return SS_ERR_NOMEM;
        c->lps = p;
        c->cap_lps = cap;
    }
    ss_api_token_lp *t = &c->lps[c->n_lps++];
    t->token = token;
    t->logprob = logprob;
    if (n_top < 0 || !top_ids || !top_lps)
        n_top = 0;
    if (n_top > SS_MAX_TOP_LOGPROBS)
        n_top = SS_MAX_TOP_LOGPROBS;
    t->n_top = n_top;
    for (int32_t i = 0; i < n_top; i++) {
        t->top_ids[i] = top_ids[i];
        t->top_logprobs[i] = top_lps[i];
    }
    return SS_OK;
}

void ss_api_choice_clear(ss_api_choice *c)
{
    ss_free(c->text);
    ss_free(c->lps);
    ss_tool_calls_free(&c->calls);
    memset(c, 0, sizeof *c);
}

char *ss_api_default_model_name(const char *dir)
{
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/')
        n--;
    size_t b = n;
    while (b > 0 && dir[b - 1] != '/')
        b--;
    char *name = ss_strndup(dir + b, n - b);
    if (!name)
        return NULL;
    for (char *p = name; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    if (!name[0]) {
        ss_free(name);
        return ss_strdup("model");
    }
    return name;
}

ss_status ss_api_take_schema(ss_api_request *r, const cJSON *schema, const char *param, ss_api_error *e)
{
    cJSON *parsed = NULL;
    if (cJSON_IsString(schema) && !(schema = parsed = cJSON_Parse(schema->valuestring)))
        return ss_api_fail(e, 400, param, "'%s' is a string that holds no JSON schema", param);
    ss_err err;
    ss_status st = ss_json_schema_compile(schema, &r->json_schema, &err);
    cJSON_Delete(parsed);
    if (st == SS_ERR_NOMEM)
        return ss_api_fail(e, 500, NULL, "out of memory");
    if (st != SS_OK)
        return ss_api_fail(e, 400, param, "%s", err.msg);
    r->json_mode = 1;
    return SS_OK;
}
