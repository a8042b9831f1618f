/* bench_openai.c — streaming /v1/completions bodies and chunk parsing for `shardserve bench`. */
#include "bench/bench_openai.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"

/* Parses --extra-body's text; *out (owned by the caller, cJSON_Delete) is the object. */
static ss_status extra_parse(const char *text, cJSON **out, ss_err *err)
{
    *out = cJSON_Parse(text);
    if (!*out || !cJSON_IsObject(*out)) {
        int parsed = *out != NULL;
        cJSON_Delete(*out);
        *out = NULL;
        return ss_err_set(err, SS_ERR_INVALID_ARG, "--extra-body: %s", parsed ? "not a JSON object" : "not valid JSON");
    }
    return SS_OK;
}

ss_status ss_bench_extra_body_check(const char *text, ss_err *err)
{
    cJSON *o = NULL;
    SS_CHECK(extra_parse(text, &o, err));
    /* the measurement reads a stream with usage: fields that would change that are bench's own */
    static const char *const own[] = {"stream", "stream_options"};
    for (size_t i = 0; i < sizeof own / sizeof own[0]; i++)
        if (cJSON_GetObjectItemCaseSensitive(o, own[i])) {
            cJSON_Delete(o);
            return ss_err_set(err, SS_ERR_INVALID_ARG, "--extra-body: '%s' is bench's own (it measures streams)",
                              own[i]);
        }
    cJSON_Delete(o);
    return SS_OK;
}

/* Sets each member of extra (borrowed) in root, replacing a member of the same name. 0: out of memory. */
static int extra_merge(cJSON *root, const cJSON *extra)
{
    for (const cJSON *m = extra->child; m; m = m->next) {
        cJSON *dup = cJSON_Duplicate(m, 1);
        if (!dup)
            return 0;
        cJSON_DeleteItemFromObjectCaseSensitive(root, m->string);
        if (!cJSON_AddItemToObject(root, m->string, dup)) {
            cJSON_Delete(dup);
            return 0;
        }
    }
    return 1;
}

ss_status ss_bench_body_build(const ss_bench_body_params *p, char **out, size_t *out_len, ss_err *err)
{
    *out = NULL;
    *out_len = 0;
    if (!p->model || (!p->prompt_text && !p->prompt_ids && p->n_prompt_ids > 0))
        return ss_err_set(err, SS_ERR_INVALID_ARG, "bench: a request needs a model and a prompt");
    cJSON *extra = NULL;
    if (p->extra_body)
        SS_CHECK(extra_parse(p->extra_body, &extra, err));
    ss_status st = SS_ERR_NOMEM;
    char *txt = NULL;
    cJSON *root = cJSON_CreateObject();
    if (!root || !cJSON_AddStringToObject(root, "model", p->model))
        goto out;
    if (p->prompt_text) {
        if (!cJSON_AddStringToObject(root, "prompt", p->prompt_text))
            goto out;
    } else {
        cJSON *arr = cJSON_AddArrayToObject(root, "prompt");
        if (!arr)
            goto out;
        for (size_t i = 0; i < p->n_prompt_ids; i++) {
            cJSON *n = cJSON_CreateNumber((double)p->prompt_ids[i]);
            if (!n || !cJSON_AddItemToArray(arr, n)) {
                cJSON_Delete(n);
                goto out;
            }
        }
    }
    cJSON *opts = NULL;
    if (!cJSON_AddNumberToObject(root, "max_tokens", (double)p->max_tokens) ||
        !cJSON_AddNumberToObject(root, "temperature", p->temperature) || !cJSON_AddTrueToObject(root, "stream") ||
        !(opts = cJSON_AddObjectToObject(root, "stream_options")) || !cJSON_AddTrueToObject(opts, "include_usage"))
        goto out;
    if (p->ignore_eos && !cJSON_AddTrueToObject(root, "ignore_eos"))
        goto out;
    if (extra && !extra_merge(root, extra))
        goto out;
    txt = cJSON_PrintUnformatted(root);
    if (!txt)
        goto out;
    /* Copy into our allocator so the caller frees with ss_free (cJSON keeps the libc one). */
    size_t n = strlen(txt);
    *out = ss_strndup(txt, n);
    if (!*out)
        goto out;
    *out_len = n;
    st = SS_OK;
out:
    if (txt)
        cJSON_free(txt);
    cJSON_Delete(root);
    cJSON_Delete(extra);
    if (st != SS_OK)
        return ss_err_set(err, st, "bench: out of memory building a request body");
    return SS_OK;
}

/* Reads a non-negative integer count; -1 when the field is absent or null. */
static ss_status openai_count(const cJSON *obj, const char *name, int64_t *out, ss_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    *out = -1;
    if (!v || cJSON_IsNull(v))
        return SS_OK;
    double d = cJSON_IsNumber(v) ? v->valuedouble : -1.0;
    if (!(d >= 0.0 && d <= 9.0e15) || floor(d) != d)
        return ss_err_set(err, SS_ERR_FORMAT, "chunk: usage.%s is not a non-negative integer", name);
    *out = (int64_t)d;
    return SS_OK;
}

static void openai_copy(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src ? src : "");
}

ss_status ss_bench_chunk_parse(const char *data, size_t len, ss_bench_chunk *out, ss_err *err)
{
    memset(out, 0, sizeof *out);
    out->prompt_tokens = out->completion_tokens = -1;
    if (len == 6 && !memcmp(data, "[DONE]", 6)) {
        out->done = 1;
        return SS_OK;
    }
    cJSON *root = cJSON_ParseWithLength(data, len);
    if (!root)
        return ss_err_set(err, SS_ERR_FORMAT, "chunk: not JSON: %.*s", (int)(len < 80 ? len : 80), data);
    ss_status st = SS_OK;
    if (!cJSON_IsObject(root)) {
        st = ss_err_set(err, SS_ERR_FORMAT, "chunk: not a JSON object: %.*s", (int)(len < 80 ? len : 80), data);
        goto out;
    }
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(root, "error");
    if (e && !cJSON_IsNull(e)) {
        out->is_error = 1;
        const cJSON *msg = cJSON_IsObject(e) ? cJSON_GetObjectItemCaseSensitive(e, "message") : e;
        openai_copy(out->error, sizeof out->error, cJSON_IsString(msg) ? msg->valuestring : "(no message)");
        goto out;
    }
    const cJSON *choices = cJSON_GetObjectItemCaseSensitive(root, "choices");
    if (choices && !cJSON_IsNull(choices)) {
        if (!cJSON_IsArray(choices)) {
            st = ss_err_set(err, SS_ERR_FORMAT, "chunk: \"choices\" is not an array");
            goto out;
        }
        const cJSON *c0 = cJSON_GetArrayItem(choices, 0);
        if (c0) {
            if (!cJSON_IsObject(c0)) {
                st = ss_err_set(err, SS_ERR_FORMAT, "chunk: choices[0] is not an object");
                goto out;
            }
            out->has_choice = 1;
            const cJSON *text = cJSON_GetObjectItemCaseSensitive(c0, "text");
            const cJSON *delta = cJSON_GetObjectItemCaseSensitive(c0, "delta");
            if (!text && cJSON_IsObject(delta))
                text = cJSON_GetObjectItemCaseSensitive(delta, "content");
            if (cJSON_IsString(text))
                out->text_len = strlen(text->valuestring);
            else if (text && !cJSON_IsNull(text)) {
                st = ss_err_set(err, SS_ERR_FORMAT, "chunk: choices[0].text is not a string");
                goto out;
            }
            const cJSON *fr = cJSON_GetObjectItemCaseSensitive(c0, "finish_reason");
            if (cJSON_IsString(fr))
                openai_copy(out->finish_reason, sizeof out->finish_reason, fr->valuestring);
        }
    }
    const cJSON *usage = cJSON_GetObjectItemCaseSensitive(root, "usage");
    if (usage && !cJSON_IsNull(usage)) {
        if (!cJSON_IsObject(usage)) {
            st = ss_err_set(err, SS_ERR_FORMAT, "chunk: \"usage\" is not an object");
            goto out;
        }
        out->has_usage = 1;
        st = openai_count(usage, "prompt_tokens", &out->prompt_tokens, err);
        if (st == SS_OK)
            st = openai_count(usage, "completion_tokens", &out->completion_tokens, err);
    }
out:
    cJSON_Delete(root);
    return st;
}
