/* api_triton.c — Triton / KServe v2 generate: request fields of the TensorRT-LLM ensemble (accepted at
 * the top level or inside "parameters"), responses, and the v2 server/model metadata documents. */
#include "serve/api_triton.h"

#include <math.h>
#include <string.h>

#include "core/alloc.h"

#define TRT_MAX_RESPONSE ((size_t)256 << 20)
#define TRT_DEFAULT_MAX_TOKENS 16

/* The object holding `name`: the body itself, else its "parameters" object (KServe style). */
static const cJSON *trt_src(const cJSON *root, const cJSON *params, const char *name)
{
    if (cJSON_GetObjectItemCaseSensitive(root, name) || !params)
        return root;
    return params;
}

/* TensorRT-LLM's guided decoding: guided_decoding_guide_type "json" (any object) or "json_schema" (the schema in
 * guided_decoding_guide, a JSON text); regex and grammars are refused. */
static ss_status trt_guide(const cJSON *root, const cJSON *params, ss_api_request *r, ss_api_error *e)
{
    char *type = NULL;
    int present = 0;
    SS_CHECK(ss_api_get_string(trt_src(root, params, "guided_decoding_guide_type"), "guided_decoding_guide_type",
                               &type, &present, e));
    if (!present)
        return SS_OK;
    const cJSON *guide = cJSON_GetObjectItemCaseSensitive(trt_src(root, params, "guided_decoding_guide"),
                                                          "guided_decoding_guide");
    ss_status st = SS_OK;
    if (!strcmp(type, "json"))
        r->json_mode = 1;
    else if (!strcmp(type, "json_schema") && (cJSON_IsString(guide) || cJSON_IsObject(guide)))
        st = ss_api_take_schema(r, guide, "guided_decoding_guide", e);
    else if (!strcmp(type, "json_schema"))
        st = ss_api_fail(e, 400, "guided_decoding_guide", "'guided_decoding_guide' must hold the JSON schema");
    else
        st = ss_api_fail(e, 400, "guided_decoding_guide_type",
                         "'guided_decoding_guide_type' '%.40s' is not supported (json or json_schema)", type);
    ss_free(type);
    if (st == SS_OK && r->min_tokens > 0)
        st = ss_api_fail(e, 400, "min_length",
                         "'min_length' cannot be combined with JSON mode, which ends when the object closes");
    return st;
}

static ss_status trt_number(const cJSON *root, const cJSON *params, const char *name, double lo, double hi,
                            double *out, int *present, ss_api_error *e)
{
    SS_CHECK(ss_api_get_number(trt_src(root, params, name), name, out, present, e));
    if (*present && (*out < lo || *out > hi))
        return ss_api_fail(e, 400, name, "'%s' must be in [%g, %g] (got %g)", name, lo, hi, *out);
    return SS_OK;
}

static ss_status trt_int(const cJSON *root, const cJSON *params, const char *name, int64_t lo, int64_t hi,
                         int64_t *out, int *present, ss_api_error *e)
{
    SS_CHECK(ss_api_get_int(trt_src(root, params, name), name, out, present, e));
    if (*present && (*out < lo || *out > hi))
        return ss_api_fail(e, 400, name, "'%s' must be in [%lld, %lld] (got %lld)", name, (long long)lo,
                           (long long)hi, (long long)*out);
    return SS_OK;
}

static ss_status trt_parse_fields(const cJSON *root, const cJSON *params, const ss_api_limits *lim,
                                  ss_api_request *r, ss_api_error *e)
{
    int present;
    double d;
    int64_t v;
    const cJSON *src = trt_src(root, params, "text_input");
    SS_CHECK(ss_api_get_string(src, "text_input", &r->prompt, &present, e));
    if (!present)
        return ss_api_fail(e, 400, "text_input", "'text_input' is required");
    if (r->prompt[0] == '\0')
        return ss_api_fail(e, 400, "text_input", "'text_input' must not be empty");

    SS_CHECK(ss_api_get_int(trt_src(root, params, "max_tokens"), "max_tokens", &v, &present, e));
    if (present) {
        if (v <= 0)
            return ss_api_fail(e, 400, "max_tokens", "'max_tokens' must be at least 1 (got %lld)", (long long)v);
        if (v > lim->max_context)
            return ss_api_fail(e, 400, "max_tokens", "'max_tokens' is %lld, more than the context length %d",
                               (long long)v, (int)lim->max_context);
        r->max_tokens = (int32_t)v;
    } else {
        r->max_tokens = TRT_DEFAULT_MAX_TOKENS < lim->max_context ? TRT_DEFAULT_MAX_TOKENS : lim->max_context;
    }
    SS_CHECK(trt_int(root, params, "min_length", 0, r->max_tokens, &v, &present, e));
    if (present)
        r->min_tokens = (int32_t)v;
    int stream = 0;
    SS_CHECK(ss_api_get_bool(trt_src(root, params, "stream"), "stream", &stream, &present, e));
    if (present)
        r->stream = r->stream || stream;

    SS_CHECK(trt_number(root, params, "temperature", 0, 100, &d, &present, e));
    if (present)
        r->sp.temperature = (float)d;
    SS_CHECK(trt_int(root, params, "top_k", 0, lim->vocab_size, &v, &present, e));
    if (present)
        r->sp.top_k = (int32_t)v;
    /* TensorRT-LLM clients send top_p 0 to mean "off"; anything else must be in (0, 1]. */
    SS_CHECK(trt_number(root, params, "top_p", 0, 1, &d, &present, e));
    if (present)
        r->sp.top_p = d == 0 ? 1.0f : (float)d;
    SS_CHECK(trt_number(root, params, "repetition_penalty", SS_API_MIN_REPETITION_PENALTY, 10, &d, &present, e));
    if (present)
        r->sp.repetition_penalty = (float)d;
    SS_CHECK(trt_number(root, params, "presence_penalty", -2, 2, &d, &present, e));
    if (present)
        r->sp.presence_penalty = (float)d;
    SS_CHECK(trt_number(root, params, "frequency_penalty", -2, 2, &d, &present, e));
    if (present)
        r->sp.frequency_penalty = (float)d;
    SS_CHECK(ss_api_get_seed(trt_src(root, params, "random_seed"), "random_seed", &r->sp.seed, &present, e));
    r->seed_given |= present;
    SS_CHECK(trt_int(root, params, "beam_width", 1, 1, &v, &present, e));
    SS_CHECK(ss_api_get_bool(trt_src(root, params, "return_log_probs"), "return_log_probs", &r->return_log_probs,
                             &present, e));
    SS_CHECK(ss_api_get_int(trt_src(root, params, "end_id"), "end_id", &v, &present, e));
    if (present) {
        if (v < 0 || v >= lim->vocab_size)
            return ss_api_fail(e, 400, "end_id", "'end_id' must be a token id in [0, %d)", (int)lim->vocab_size);
        r->stop_ids = ss_malloc(sizeof *r->stop_ids);
        if (!r->stop_ids)
            return ss_api_fail(e, 500, "end_id", "out of memory");
        r->stop_ids[0] = (int32_t)v;
        r->n_stop_ids = 1;
    }
    SS_CHECK(ss_api_get_strings(trt_src(root, params, "stop_words"), "stop_words", SS_API_MAX_STOP, r->stop,
                                &r->n_stop, e));
    for (int32_t i = 0; i < r->n_stop; i++)
        if (strlen(r->stop[i]) > SS_API_MAX_STOP_LEN)
            return ss_api_fail(e, 400, "stop_words", "'stop_words' strings must be at most %d bytes",
                               SS_API_MAX_STOP_LEN);
    SS_CHECK(trt_guide(root, params, r, e));
    r->bad_words = ss_calloc(SS_API_MAX_BAD_WORDS, sizeof *r->bad_words);
    if (!r->bad_words)
        return ss_api_fail(e, 500, "bad_words", "out of memory");
    SS_CHECK(ss_api_get_strings(trt_src(root, params, "bad_words"), "bad_words", SS_API_MAX_BAD_WORDS,
                                r->bad_words, &r->n_bad_words, e));
    return SS_OK;
}

ss_status ss_api_triton_parse(const char *body, size_t len, int stream_endpoint, const ss_api_limits *lim,
                              ss_api_request *out, ss_api_error *e)
{
    ss_api_request_init(out, SS_API_TRITON);
    if (lim->defaults)
        out->sp = *lim->defaults;
    out->stream = stream_endpoint ? 1 : 0;
    cJSON *root = NULL;
    SS_CHECK(ss_api_parse_object(body, len, &root, e));
    ss_status st;
    const cJSON *params = cJSON_GetObjectItemCaseSensitive(root, "parameters");
    if (params && !cJSON_IsNull(params) && !cJSON_IsObject(params)) {
        st = ss_api_fail(e, 400, "parameters", "'parameters' must be an object");
        goto fail;
    }
    if (params && !cJSON_IsObject(params))
        params = NULL;
    SS_CHECK_GOTO(trt_parse_fields(root, params, lim, out, e), st, fail);
    out->sp.n_logprobs = 0;
    cJSON_Delete(root);
    return SS_OK;
fail:
    cJSON_Delete(root);
    ss_api_request_clear(out);
    return st;
}

static void trt_head(ss_jbuf *b, const char *model)
{
    ss_jbuf_cstr(b, "{\"model_name\":");
    ss_jbuf_str(b, model, strlen(model));
    ss_jbuf_cstr(b, ",\"model_version\":\"1\",\"text_output\":");
}

char *ss_api_triton_response_json(const char *model, const ss_api_choice *c, int return_log_probs, size_t *len)
{
    ss_jbuf b;
    ss_jbuf_init(&b, TRT_MAX_RESPONSE);
    trt_head(&b, model);
    ss_jbuf_str(&b, c->text ? c->text : "", c->text_len);
    if (return_log_probs) {
        double cum = 0;
        ss_jbuf_cstr(&b, ",\"output_log_probs\":[");
        for (int32_t i = 0; i < c->n_lps; i++) {
            if (i)
                ss_jbuf_cstr(&b, ",");
            ss_jbuf_float(&b, c->lps[i].logprob);
            cum += c->lps[i].logprob;
        }
        ss_jbuf_cstr(&b, "],\"cum_log_probs\":");
        ss_jbuf_float(&b, cum);
    }
    ss_jbuf_cstr(&b, "}");
    return ss_jbuf_take(&b, len);
}

char *ss_api_triton_chunk_json(const char *model, const char *text, size_t text_len, const ss_api_token_lp *lp,
                               double cum_log_prob, int return_log_probs, size_t *len)
{
    ss_jbuf b;
    ss_jbuf_init(&b, TRT_MAX_RESPONSE);
    trt_head(&b, model);
    ss_jbuf_str(&b, text ? text : "", text ? text_len : 0);
    if (return_log_probs) {
        ss_jbuf_cstr(&b, ",\"output_log_probs\":[");
        if (lp)
            ss_jbuf_float(&b, lp->logprob);
        ss_jbuf_cstr(&b, "],\"cum_log_probs\":");
        ss_jbuf_float(&b, cum_log_prob);
    }
    ss_jbuf_cstr(&b, "}");
    return ss_jbuf_take(&b, len);
}

char *ss_api_triton_server_json(const char *version, size_t *len)
{
    ss_jbuf b;
    ss_jbuf_init(&b, 4096);
    ss_jbuf_cstr(&b, "{\"name\":\"shardserve\",\"version\":");
    ss_jbuf_str(&b, version, strlen(version));
    ss_jbuf_cstr(&b, ",\"extensions\":[\"generate\",\"generate_stream\"]}");
    return ss_jbuf_take(&b, len);
}

char *ss_api_triton_model_json(const char *model, size_t *len)
{
    ss_jbuf b;
    ss_jbuf_init(&b, 4096);
    ss_jbuf_cstr(&b, "{\"name\":");
    ss_jbuf_str(&b, model, strlen(model));
    ss_jbuf_cstr(&b, ",\"versions\":[\"1\"],\"platform\":\"shardserve\","
                     "\"inputs\":[{\"name\":\"text_input\",\"datatype\":\"BYTES\",\"shape\":[1]},"
                     "{\"name\":\"max_tokens\",\"datatype\":\"INT32\",\"shape\":[1]}],"
                     "\"outputs\":[{\"name\":\"text_output\",\"datatype\":\"BYTES\",\"shape\":[-1]}]}");
    return ss_jbuf_take(&b, len);
}
