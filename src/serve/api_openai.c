/* api_openai.c — OpenAI-compatible request parsing and response building (completions, chat,
 * models, tokenize/detokenize). Field names, defaults and shapes follow the OpenAI API reference. */
#include "serve/api_openai.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/json_num.h"

#define OAI_MAX_RESPONSE ((size_t)256 << 20)
#define OAI_MAX_MESSAGES 4096
#define OAI_MAX_LOGPROBS_COMPLETIONS 20
#define OAI_DEFAULT_MAX_TOKENS 16

/* prompt: "text" | [ids] | ["text"] | [[ids]] */
static ss_status oai_parse_prompt(const cJSON *root, const ss_api_limits *lim, ss_api_request *r, ss_api_error *e)
{
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(root, "prompt");
    if (!p || cJSON_IsNull(p))
        return ss_api_fail(e, 400, "prompt", "'prompt' is required");
    if (cJSON_IsArray(p) && cJSON_GetArraySize(p) == 1 && (cJSON_IsString(p->child) || cJSON_IsArray(p->child)))
        p = p->child;
    else if (cJSON_IsArray(p) && p->child && !cJSON_IsNumber(p->child))
        return ss_api_fail(e, 400, "prompt",
                           "'prompt' must be a string, a list of token ids, or a list holding one of those "
                           "(batched prompts are not supported: send one request per prompt)");
    if (cJSON_IsString(p)) {
        if (p->valuestring[0] == '\0')
            return ss_api_fail(e, 400, "prompt", "'prompt' must not be empty");
        r->prompt = ss_strdup(p->valuestring);
        return r->prompt ? SS_OK : ss_api_fail(e, 500, "prompt", "out of memory");
    }
    if (!cJSON_IsArray(p))
        return ss_api_fail(e, 400, "prompt", "'prompt' must be a string or a list of token ids");
    int count = cJSON_GetArraySize(p);
    if (count == 0)
        return ss_api_fail(e, 400, "prompt", "'prompt' must not be empty");
    if (count > lim->max_context)
        return ss_api_fail(e, 400, "prompt", "'prompt' has %d tokens, more than the context length %d", count,
                           (int)lim->max_context);
    r->prompt_ids = ss_malloc((size_t)count * sizeof *r->prompt_ids);
    if (!r->prompt_ids)
        return ss_api_fail(e, 500, "prompt", "out of memory");
    const cJSON *v;
    cJSON_ArrayForEach(v, p)
    {
        if (!ss_json_i32(v, 0, lim->vocab_size - 1, &r->prompt_ids[r->n_prompt_ids]))
            return ss_api_fail(e, 400, "prompt", "'prompt' token ids must be integers in [0, %d)",
                               (int)lim->vocab_size);
        r->n_prompt_ids++;
    }
    return SS_OK;
}

/* An assistant message's earlier calls: OpenAI clients send each call's arguments as a JSON text, chat templates
 * read them as a mapping (Llama 3's `arguments | tojson`, Qwen's `arguments | tojson`), so a text that holds an object
 * becomes that object, as vLLM does. */
static ss_status oai_call_arguments(cJSON *msg, int i, ss_api_error *e)
{
    cJSON *calls = cJSON_GetObjectItemCaseSensitive(msg, "tool_calls");
    if (!calls || cJSON_IsNull(calls))
        return SS_OK;
    if (!cJSON_IsArray(calls))
        return ss_api_fail(e, 400, "messages", "'messages[%d].tool_calls' must be a list", i);
    cJSON *call;
    cJSON_ArrayForEach(call, calls)
    {
        cJSON *f = cJSON_GetObjectItemCaseSensitive(call, "function");
        cJSON *name = cJSON_GetObjectItemCaseSensitive(f, "name");
        if (!cJSON_IsObject(call) || !cJSON_IsObject(f) || !cJSON_IsString(name))
            return ss_api_fail(e, 400, "messages",
                               "'messages[%d].tool_calls' entries must be {\"function\": {\"name\": ..., \"arguments\": "
                               "...}}",
                               i);
        cJSON *args = cJSON_GetObjectItemCaseSensitive(f, "arguments");
        if (!cJSON_IsString(args))
            continue;
        cJSON *obj = cJSON_Parse(args->valuestring);
        if (!cJSON_IsObject(obj)) {
            cJSON_Delete(obj);
            continue; /* not an object: the template gets the text as it is */
        }
        if (!cJSON_ReplaceItemInObjectCaseSensitive(f, "arguments", obj)) {
            cJSON_Delete(obj);
            return ss_api_fail(e, 500, "messages", "out of memory");
        }
    }
    return SS_OK;
}

/* messages: [{role, content}] with content a string, null, or a list of {type:"text", text} parts.
 * The result keeps role/content (content flattened to a string) and any other keys as given. */
static ss_status oai_parse_messages(const cJSON *root, ss_api_request *r, ss_api_error *e)
{
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(root, "messages");
    if (!m || cJSON_IsNull(m))
        return ss_api_fail(e, 400, "messages", "'messages' is required");
    if (!cJSON_IsArray(m))
        return ss_api_fail(e, 400, "messages", "'messages' must be a list of message objects");
    int count = cJSON_GetArraySize(m);
    if (count == 0)
        return ss_api_fail(e, 400, "messages", "'messages' must not be empty");
    if (count > OAI_MAX_MESSAGES)
        return ss_api_fail(e, 400, "messages", "'messages' has %d entries, at most %d are allowed", count,
                           OAI_MAX_MESSAGES);
    r->messages = cJSON_Duplicate(m, 1);
    if (!r->messages)
        return ss_api_fail(e, 500, "messages", "out of memory");
    int i = 0;
    cJSON *msg;
    cJSON_ArrayForEach(msg, r->messages)
    {
        if (!cJSON_IsObject(msg))
            return ss_api_fail(e, 400, "messages", "'messages[%d]' must be an object", i);
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(msg, "role");
        if (!cJSON_IsString(role) || role->valuestring[0] == '\0')
            return ss_api_fail(e, 400, "messages", "'messages[%d].role' must be a non-empty string", i);
        cJSON *content = cJSON_GetObjectItemCaseSensitive(msg, "content");
        if (content && cJSON_IsArray(content)) {
            ss_jbuf b;
            ss_jbuf_init(&b, SS_API_MAX_STRING * 16);
            ss_jbuf_raw(&b, "", 0);
            const cJSON *part;
            cJSON_ArrayForEach(part, content)
            {
                const cJSON *type = cJSON_GetObjectItemCaseSensitive(part, "type");
                const cJSON *text = cJSON_GetObjectItemCaseSensitive(part, "text");
                if (!cJSON_IsString(type) || strcmp(type->valuestring, "text") || !cJSON_IsString(text)) {
                    ss_jbuf_free(&b);
                    return ss_api_fail(e, 400, "messages",
                                       "'messages[%d].content' parts must be {\"type\": \"text\", \"text\": ...}",
                                       i);
                }
                ss_jbuf_cstr(&b, text->valuestring);
            }
            char *flat = ss_jbuf_take(&b, NULL);
            if (!flat)
                return ss_api_fail(e, 400, "messages", "'messages[%d].content' is too large", i);
            cJSON *s = cJSON_CreateString(flat);
            ss_free(flat);
            if (!s || !cJSON_ReplaceItemInObjectCaseSensitive(msg, "content", s)) {
                cJSON_Delete(s);
                return ss_api_fail(e, 500, "messages", "out of memory");
            }
        } else if (content && !cJSON_IsString(content) && !cJSON_IsNull(content)) {
            return ss_api_fail(e, 400, "messages", "'messages[%d].content' must be a string or a list of parts", i);
        }
        SS_CHECK(oai_call_arguments(msg, i, e));
        i++;
    }
    return SS_OK;
}

static ss_status oai_parse_sampling(const cJSON *root, const ss_api_limits *lim, ss_api_request *r,
                                    ss_api_error *e)
{
    int present;
    double d;
    int64_t v;
    SS_CHECK(ss_api_get_number(root, "temperature", &d, &present, e));
    if (present) {
        if (d < 0 || d > 100)
            return ss_api_fail(e, 400, "temperature", "'temperature' must be in [0, 100] (got %g)", d);
        r->sp.temperature = (float)d;
    }
    SS_CHECK(ss_api_get_number(root, "top_p", &d, &present, e));
    if (present) {
        if (!(d > 0 && d <= 1))
            return ss_api_fail(e, 400, "top_p", "'top_p' must be in (0, 1] (got %g)", d);
        r->sp.top_p = (float)d;
    }
    SS_CHECK(ss_api_get_int(root, "top_k", &v, &present, e));
    if (present) {
        if (v < -1 || v > lim->vocab_size)
            return ss_api_fail(e, 400, "top_k", "'top_k' must be -1 (off), 0 (off) or in [1, %d]",
                               (int)lim->vocab_size);
        r->sp.top_k = v < 0 ? 0 : (int32_t)v;
    }
    SS_CHECK(ss_api_get_number(root, "min_p", &d, &present, e));
    if (present) {
        if (d < 0 || d > 1)
            return ss_api_fail(e, 400, "min_p", "'min_p' must be in [0, 1] (got %g)", d);
        r->sp.min_p = (float)d;
    }
    static const char *const pen[2] = {"presence_penalty", "frequency_penalty"};
    for (int i = 0; i < 2; i++) {
        SS_CHECK(ss_api_get_number(root, pen[i], &d, &present, e));
        if (!present)
            continue;
        if (d < -2 || d > 2)
            return ss_api_fail(e, 400, pen[i], "'%s' must be in [-2, 2] (got %g)", pen[i], d);
        if (i == 0)
            r->sp.presence_penalty = (float)d;
        else
            r->sp.frequency_penalty = (float)d;
    }
    SS_CHECK(ss_api_get_number(root, "repetition_penalty", &d, &present, e));
    if (present) {
        if (!(d >= SS_API_MIN_REPETITION_PENALTY) || d > 10)
            return ss_api_fail(e, 400, "repetition_penalty", "'repetition_penalty' must be in [%g, 10] (got %g)",
                               SS_API_MIN_REPETITION_PENALTY, d);
        r->sp.repetition_penalty = (float)d;
    }
    SS_CHECK(ss_api_get_seed(root, "seed", &r->sp.seed, &present, e));
    r->seed_given |= present;
    return SS_OK;
}

static ss_status oai_parse_lengths(const cJSON *root, const ss_api_limits *lim, ss_api_request *r,
                                   ss_api_error *e)
{
    int present, present2;
    int64_t v = 0, v2 = 0;
    SS_CHECK(ss_api_get_int(root, "max_tokens", &v, &present, e));
    SS_CHECK(ss_api_get_int(root, "max_completion_tokens", &v2, &present2, e));
    const char *name = "max_tokens";
    if (present2) {
        v = v2;
        name = "max_completion_tokens";
        present = 1;
    }
    if (present) {
        if (v <= 0)
            return ss_api_fail(e, 400, name, "'%s' must be at least 1 (got %lld)", name, (long long)v);
        if (v > lim->max_context)
            return ss_api_fail(e, 400, name, "'%s' is %lld, more than the context length %d", name, (long long)v,
                               (int)lim->max_context);
        r->max_tokens = (int32_t)v;
    } else if (r->kind == SS_API_COMPLETION) {
        r->max_tokens = OAI_DEFAULT_MAX_TOKENS < lim->max_context ? OAI_DEFAULT_MAX_TOKENS : lim->max_context;
    }
    SS_CHECK(ss_api_get_int(root, "min_tokens", &v, &present, e));
    if (present) {
        if (v < 0 || v > lim->max_context)
            return ss_api_fail(e, 400, "min_tokens", "'min_tokens' must be in [0, %d]", (int)lim->max_context);
        if (r->max_tokens && v > r->max_tokens)
            return ss_api_fail(e, 400, "min_tokens", "'min_tokens' (%lld) must not exceed max_tokens (%d)",
                               (long long)v, (int)r->max_tokens);
        r->min_tokens = (int32_t)v;
    }
    return SS_OK;
}

/* logit_bias: {"token id": number in [-100, 100], ...} (OpenAI's shape; the keys are decimal token ids below
 * the vocabulary, each once), at most SS_MAX_LOGIT_BIAS entries. null or {} is none. */
static ss_status oai_parse_logit_bias(const cJSON *root, const ss_api_limits *lim, ss_api_request *r, ss_api_error *e)
{
    const cJSON *lb = cJSON_GetObjectItemCaseSensitive(root, "logit_bias");
    if (!lb || cJSON_IsNull(lb))
        return SS_OK;
    if (!cJSON_IsObject(lb))
        return ss_api_fail(e, 400, "logit_bias", "'logit_bias' must be an object of token ids to numbers");
    int count = cJSON_GetArraySize(lb);
    if (count > SS_MAX_LOGIT_BIAS)
        return ss_api_fail(e, 400, "logit_bias", "'logit_bias' has %d entries, at most %d are allowed", count,
                           SS_MAX_LOGIT_BIAS);
    if (count == 0)
        return SS_OK;
    r->bias_ids = ss_malloc((size_t)count * sizeof *r->bias_ids);
    r->bias_vals = ss_malloc((size_t)count * sizeof *r->bias_vals);
    if (!r->bias_ids || !r->bias_vals)
        return ss_api_fail(e, 500, "logit_bias", "out of memory");
    r->n_bias = 0;
    for (const cJSON *v = lb->child; v; v = v->next) {
        const char *k = v->string ? v->string : "";
        int64_t id = 0;
        size_t len = strlen(k);
        for (size_t i = 0; i < len && id < lim->vocab_size; i++)
            id = k[i] >= '0' && k[i] <= '9' ? id * 10 + (k[i] - '0') : INT64_MAX;
        if (len == 0 || len > 10 || id >= lim->vocab_size)
            return ss_api_fail(e, 400, "logit_bias", "'logit_bias' keys must be token ids in [0, %d) (got \"%.32s\")",
                               (int)lim->vocab_size, k);
        if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble < -100 || v->valuedouble > 100)
            return ss_api_fail(e, 400, "logit_bias", "'logit_bias' values must be numbers in [-100, 100] (token %d)",
                               (int)id);
        for (int32_t i = 0; i < r->n_bias; i++)
            if (r->bias_ids[i] == (int32_t)id)
                return ss_api_fail(e, 400, "logit_bias", "'logit_bias' names token %d twice", (int)id);
        r->bias_ids[r->n_bias] = (int32_t)id;
        r->bias_vals[r->n_bias++] = (float)v->valuedouble;
    }
    return SS_OK;
}

/* Chat's tools, tool_choice and parallel_tool_calls (after any JSON response format, which a forced call cannot
 * share): the tools go to the template; a forced call becomes the JSON schema the answer follows. */
static ss_status oai_parse_tools(const cJSON *root, const ss_api_limits *lim, ss_api_request *r, ss_api_error *e)
{
    const cJSON *tools = cJSON_GetObjectItemCaseSensitive(root, "tools");
    const cJSON *choice = cJSON_GetObjectItemCaseSensitive(root, "tool_choice");
    ss_tool_choice tc;
    const char *named = NULL, *param = NULL;
    char msg[256];
    if (tools && !cJSON_IsNull(tools) && !(cJSON_IsArray(tools) && cJSON_GetArraySize(tools) == 0) &&
        lim->tool_format == SS_TOOL_FORMAT_NONE)
        return ss_api_fail(e, 400, "tools",
                           "'tools' is not supported for this model: its chat template takes no tools, or writes calls "
                           "in a format this server does not read (Hermes <tool_call> blocks, Llama 3 JSON, Mistral's "
                           "[TOOL_CALLS] and DeepSeek's markers are read)");
    if (ss_tools_check(tools, choice, &tc, &named, &param, msg, sizeof msg) != SS_OK)
        return ss_api_fail(e, 400, param, "%s", msg);
    int present = 0;
    SS_CHECK(ss_api_get_bool(root, "parallel_tool_calls", &r->parallel_tool_calls, &present, e));
    if (!present)
        r->parallel_tool_calls = 1;
    if (!tools || !cJSON_IsArray(tools) || cJSON_GetArraySize(tools) == 0)
        return SS_OK;
    if (!(r->tools = cJSON_Duplicate(tools, 1)))
        return ss_api_fail(e, 500, NULL, "out of memory");
    r->tool_choice = tc;
    if (tc == SS_TOOL_CHOICE_NONE || tc == SS_TOOL_CHOICE_AUTO) {
        if (tc == SS_TOOL_CHOICE_AUTO && r->stream && r->logprobs)
            return ss_api_fail(e, 400, "logprobs", "'logprobs' in a stream with 'tools' is not supported");
        return SS_OK;
    }
    if (r->json_mode)
        return ss_api_fail(e, 400, "tool_choice", "'tool_choice' \"%s\" and a JSON response format both given",
                           tc == SS_TOOL_CHOICE_NAMED ? "function" : "required");
    if (r->min_tokens > 0)
        return ss_api_fail(e, 400, "min_tokens", "'min_tokens' cannot be combined with a forced tool call");
    if (r->stream && r->logprobs)
        return ss_api_fail(e, 400, "logprobs", "'logprobs' in a stream with 'tools' is not supported");
    cJSON *schema = NULL;
    ss_status st = ss_tools_forced_schema(r->tools, named, lim->tool_format, &schema, msg, sizeof msg);
    if (st == SS_ERR_NOMEM)
        return ss_api_fail(e, 500, NULL, "out of memory");
    if (st != SS_OK)
        return ss_api_fail(e, 400, "tool_choice", "%s", msg);
    st = ss_api_take_schema(r, schema, "tool_choice", e);
    cJSON_Delete(schema);
    return st;
}

static ss_status oai_parse_output_opts(const cJSON *root, const ss_api_limits *lim, ss_api_request *r,
                                       ss_api_error *e)
{
    int present;
    int64_t v;
    int b;
    SS_CHECK(ss_api_get_int(root, "n", &v, &present, e));
    if (present) {
        if (v < 1 || v > lim->max_n)
            return ss_api_fail(e, 400, "n", "'n' must be in [1, %d] (got %lld)", (int)lim->max_n, (long long)v);
        r->n = (int32_t)v;
    }
    SS_CHECK(ss_api_get_bool(root, "stream", &r->stream, &present, e));
    const cJSON *so = cJSON_GetObjectItemCaseSensitive(root, "stream_options");
    if (so && !cJSON_IsNull(so)) {
        if (!cJSON_IsObject(so))
            return ss_api_fail(e, 400, "stream_options", "'stream_options' must be an object");
        SS_CHECK(ss_api_get_bool(so, "include_usage", &r->include_usage, &present, e));
    }
    SS_CHECK(ss_api_get_bool(root, "ignore_eos", &r->ignore_eos, &present, e));
    SS_CHECK(ss_api_get_bool(root, "echo", &b, &present, e));
    if (present && b)
        return ss_api_fail(e, 400, "echo", "'echo' is not supported");
    const cJSON *suffix = cJSON_GetObjectItemCaseSensitive(root, "suffix"); /* insertion: a text after the answer */
    if (suffix && !cJSON_IsNull(suffix) && !(cJSON_IsString(suffix) && suffix->valuestring[0] == '\0'))
        return ss_api_fail(e, 400, "suffix", "'suffix' is not supported (no insertion mode)");
    /* Silently ignoring these would hand a client plain text where it asked for calls. */
    static const char *const no_calls[] = {"tools", "functions"};
    for (size_t i = r->kind == SS_API_CHAT; i < sizeof no_calls / sizeof no_calls[0]; i++) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(root, no_calls[i]);
        if (t && !cJSON_IsNull(t) && !(cJSON_IsArray(t) && cJSON_GetArraySize(t) == 0))
            return ss_api_fail(e, 400, no_calls[i], "'%s' is not supported (%s)", no_calls[i],
                               i ? "the legacy form: use 'tools'" : "function calling is for chat completions");
    }
    const cJSON *rf = cJSON_GetObjectItemCaseSensitive(root, "response_format");
    if (rf && !cJSON_IsNull(rf)) {
        const cJSON *t = cJSON_IsObject(rf) ? cJSON_GetObjectItemCaseSensitive(rf, "type") : NULL;
        if (!cJSON_IsString(t))
            return ss_api_fail(e, 400, "response_format", "'response_format' must be an object with a string 'type'");
        if (strcmp(t->valuestring, "json_schema") == 0) {
            const cJSON *js = cJSON_GetObjectItemCaseSensitive(rf, "json_schema");
            const cJSON *schema = cJSON_IsObject(js) ? cJSON_GetObjectItemCaseSensitive(js, "schema") : NULL;
            if (!schema)
                return ss_api_fail(e, 400, "response_format",
                                   "'response_format' of type json_schema needs 'json_schema': {\"name\": ..., "
                                   "\"schema\": {...}}");
            SS_CHECK(ss_api_take_schema(r, schema, "response_format", e));
        } else if (strcmp(t->valuestring, "json_object") == 0) {
            r->json_mode = 1;
        } else if (strcmp(t->valuestring, "text") != 0) {
            return ss_api_fail(e, 400, "response_format",
                               "'response_format' type '%.40s' is not supported (text, json_object or json_schema)",
                               t->valuestring);
        }
    }
    const cJSON *guided = cJSON_GetObjectItemCaseSensitive(root, "guided_json"); /* vLLM's extension */
    if (guided && !cJSON_IsNull(guided)) {
        if (r->json_mode)
            return ss_api_fail(e, 400, "guided_json", "'guided_json' and a JSON response_format both given");
        SS_CHECK(ss_api_take_schema(r, guided, "guided_json", e));
    }
    if (r->json_mode && r->min_tokens > 0) /* (parsed above) */
        return ss_api_fail(e, 400, "min_tokens",
                           "'min_tokens' cannot be combined with JSON mode, which ends when the object closes");
    SS_CHECK(ss_api_get_int(root, "best_of", &v, &present, e));
    if (present && v != r->n && v != 1)
        return ss_api_fail(e, 400, "best_of", "'best_of' is not supported (only best_of = n)");

    if (r->kind == SS_API_COMPLETION) {
        SS_CHECK(ss_api_get_int(root, "logprobs", &v, &present, e));
        if (present) {
            if (v < 0 || v > OAI_MAX_LOGPROBS_COMPLETIONS)
                return ss_api_fail(e, 400, "logprobs", "'logprobs' must be in [0, %d]", OAI_MAX_LOGPROBS_COMPLETIONS);
            r->logprobs = 1;
            r->top_logprobs = (int32_t)v;
        }
    } else {
        SS_CHECK(ss_api_get_bool(root, "logprobs", &r->logprobs, &present, e));
        SS_CHECK(ss_api_get_int(root, "top_logprobs", &v, &present, e));
        if (present) {
            if (v < 0 || v > SS_MAX_TOP_LOGPROBS)
                return ss_api_fail(e, 400, "top_logprobs", "'top_logprobs' must be in [0, %d]", SS_MAX_TOP_LOGPROBS);
            if (v > 0 && !r->logprobs)
                return ss_api_fail(e, 400, "top_logprobs", "'top_logprobs' needs 'logprobs': true");
            r->top_logprobs = (int32_t)v;
        }
    }
    r->sp.n_logprobs = r->logprobs ? r->top_logprobs : 0;

    SS_CHECK(ss_api_get_strings(root, "stop", SS_API_MAX_STOP, r->stop, &r->n_stop, e));
    for (int32_t i = 0; i < r->n_stop; i++) {
        if (r->stop[i][0] == '\0')
            return ss_api_fail(e, 400, "stop", "'stop' must not contain empty strings");
        if (strlen(r->stop[i]) > SS_API_MAX_STOP_LEN)
            return ss_api_fail(e, 400, "stop", "'stop' strings must be at most %d bytes", SS_API_MAX_STOP_LEN);
    }
    int32_t n_ids = 0;
    SS_CHECK(ss_api_get_ids(root, "stop_token_ids", SS_API_MAX_STOP_IDS, lim->vocab_size, &r->stop_ids, &n_ids, e));
    r->n_stop_ids = n_ids;
    SS_CHECK(oai_parse_logit_bias(root, lim, r, e));
    if (r->kind == SS_API_CHAT)
        SS_CHECK(oai_parse_tools(root, lim, r, e));
    return SS_OK;
}

ss_status ss_api_openai_parse(const char *body, size_t len, ss_api_kind kind, const ss_api_limits *lim,
                              ss_api_request *out, ss_api_error *e)
{
    ss_api_request_init(out, kind);
    if (lim->defaults)
        out->sp = *lim->defaults;
    cJSON *root = NULL;
    ss_status st;
    SS_CHECK_GOTO(ss_api_parse_object(body, len, &root, e), st, fail);
    int present;
    SS_CHECK_GOTO(ss_api_get_string(root, "model", &out->model, &present, e), st, fail);
    if (kind == SS_API_CHAT)
        SS_CHECK_GOTO(oai_parse_messages(root, out, e), st, fail);
    else
        SS_CHECK_GOTO(oai_parse_prompt(root, lim, out, e), st, fail);
    SS_CHECK_GOTO(oai_parse_lengths(root, lim, out, e), st, fail);
    SS_CHECK_GOTO(oai_parse_sampling(root, lim, out, e), st, fail);
    SS_CHECK_GOTO(oai_parse_output_opts(root, lim, out, e), st, fail);
    cJSON_Delete(root);
    return SS_OK;
fail:
    cJSON_Delete(root);
    ss_api_request_clear(out);
    return st;
}

/* ---- responses ---------------------------------------------------------------------------------- */

void ss_api_openai_make_id(ss_api_kind kind, uint64_t a, uint64_t b, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s-%016llx%016llx", kind == SS_API_CHAT ? "chatcmpl" : "cmpl", (unsigned long long)a,
             (unsigned long long)b);
}

static void oai_token_str(ss_jbuf *b, const ss_api_vocab *vocab, int32_t token, int with_bytes)
{
    char tmp[512];
    size_t n = 0;
    if (vocab && vocab->token_text)
        n = vocab->token_text(vocab->user, token, tmp, sizeof tmp);
    else
        n = (size_t)snprintf(tmp, sizeof tmp, "token_id:%d", (int)token);
    if (n >= sizeof tmp)
        n = sizeof tmp - 1;
    if (!with_bytes) {
        ss_jbuf_str(b, tmp, n);
        return;
    }
    ss_jbuf_cstr(b, "\"token\":");
    ss_jbuf_str(b, tmp, n);
    ss_jbuf_cstr(b, ",\"bytes\":[");
    for (size_t i = 0; i < n; i++)
        ss_jbuf_printf(b, i ? ",%u" : "%u", (unsigned)(unsigned char)tmp[i]);
    ss_jbuf_cstr(b, "]");
}

/* Chat: {"content":[{"token","logprob","bytes","top_logprobs":[...]}, ...]} */
static void oai_chat_logprobs(ss_jbuf *b, const ss_api_resp_meta *m, const ss_api_token_lp *lps, int32_t n,
                              const ss_api_vocab *vocab)
{
    ss_jbuf_cstr(b, "{\"content\":[");
    for (int32_t i = 0; i < n; i++) {
        const ss_api_token_lp *t = &lps[i];
        ss_jbuf_cstr(b, i ? ",{" : "{");
        oai_token_str(b, vocab, t->token, 1);
        ss_jbuf_cstr(b, ",\"logprob\":");
        ss_jbuf_float(b, t->logprob);
        ss_jbuf_cstr(b, ",\"top_logprobs\":[");
        int32_t k = t->n_top < m->top_logprobs ? t->n_top : m->top_logprobs;
        for (int32_t j = 0; j < k && t->top_ids[j] >= 0; j++) { /* (-1: fewer tokens were possible: JSON mode) */
            ss_jbuf_cstr(b, j ? ",{" : "{");
            oai_token_str(b, vocab, t->top_ids[j], 1);
            ss_jbuf_cstr(b, ",\"logprob\":");
            ss_jbuf_float(b, t->top_logprobs[j]);
            ss_jbuf_cstr(b, "}");
        }
        ss_jbuf_cstr(b, "]}");
    }
    ss_jbuf_cstr(b, "]}");
}

/* Length of the UTF-8 sequence a lead byte starts (1..4), or 0 for a byte no valid sequence starts with
 * (a continuation byte, C0, C1, F5..FF): the rules of the JSON writer, which prints U+FFFD for such bytes. */
static size_t oai_utf8_seq_len(unsigned char c)
{
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        return 2;
    if (c >= 0xe0 && c <= 0xef)
        return 3;
    if (c >= 0xf0 && c <= 0xf4)
        return 4;
    return 0;
}

/* Whether c may follow the pending bytes of a sequence started by lead (no overlong forms, surrogates or
 * code points past U+10FFFF, as the JSON writer checks). */
static int oai_utf8_continues(unsigned char lead, uint8_t n_pend, unsigned char c)
{
    unsigned lo = 0x80, hi = 0xbf;
    if (n_pend == 1) {
        if (lead == 0xe0)
            lo = 0xa0;
        else if (lead == 0xed)
            hi = 0x9f;
        else if (lead == 0xf0)
            lo = 0x90;
        else if (lead == 0xf4)
            hi = 0x8f;
    }
    return c >= lo && c <= hi;
}

int64_t ss_api_text_pos_advance(ss_api_text_pos *pos, const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    int64_t start = -1;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = u[i];
        if (pos->n_pend > 0) {
            if (oai_utf8_continues(pos->pend[0], pos->n_pend, c)) {
                if (start < 0)
                    start = pos->chars; /* the token begins inside this character */
                pos->pend[pos->n_pend++] = c;
                if (pos->n_pend == oai_utf8_seq_len(pos->pend[0])) {
                    pos->chars++;
                    pos->n_pend = 0;
                }
                continue;
            }
            /* A sequence cut short (a valid start of a character) shows as one U+FFFD, before c: the byte-level
             * decoders (Llama 3, Qwen) replace each maximal ill-formed part once, as Rust's from_utf8_lossy. */
            pos->chars++;
            pos->n_pend = 0;
        }
        if (start < 0)
            start = pos->chars;
        if (oai_utf8_seq_len(c) <= 1) {
            pos->chars++; /* ASCII, or a byte no sequence starts with (one U+FFFD) */
        } else {
            pos->pend[0] = c;
            pos->n_pend = 1;
        }
    }
    return start < 0 ? pos->chars : start;
}

/* Completions: {"tokens":[..],"token_logprobs":[..],"top_logprobs":[{tok: lp}],"text_offset":[..]}; text_offset
 * in characters from pos, which ends past the last token. */
static void oai_completion_logprobs(ss_jbuf *b, const ss_api_resp_meta *m, const ss_api_token_lp *lps,
                                    int32_t n, ss_api_text_pos *pos, const ss_api_vocab *vocab)
{
    ss_jbuf_cstr(b, "{\"tokens\":[");
    for (int32_t i = 0; i < n; i++) {
        if (i)
            ss_jbuf_cstr(b, ",");
        oai_token_str(b, vocab, lps[i].token, 0);
    }
    ss_jbuf_cstr(b, "],\"token_logprobs\":[");
    for (int32_t i = 0; i < n; i++) {
        if (i)
            ss_jbuf_cstr(b, ",");
        ss_jbuf_float(b, lps[i].logprob);
    }
    ss_jbuf_cstr(b, "],\"top_logprobs\":[");
    for (int32_t i = 0; i < n; i++) {
        ss_jbuf_cstr(b, i ? ",{" : "{");
        int32_t k = lps[i].n_top < m->top_logprobs ? lps[i].n_top : m->top_logprobs;
        for (int32_t j = 0; j < k && lps[i].top_ids[j] >= 0; j++) { /* (-1: fewer tokens were possible) */
            if (j)
                ss_jbuf_cstr(b, ",");
            oai_token_str(b, vocab, lps[i].top_ids[j], 0);
            ss_jbuf_cstr(b, ":");
            ss_jbuf_float(b, lps[i].top_logprobs[j]);
        }
        ss_jbuf_cstr(b, "}");
    }
    ss_jbuf_cstr(b, "],\"text_offset\":[");
    char tmp[512];
    for (int32_t i = 0; i < n; i++) {
        size_t tl = vocab && vocab->token_text ? vocab->token_text(vocab->user, lps[i].token, tmp, sizeof tmp) : 0;
        int64_t off = ss_api_text_pos_advance(pos, tmp, tl < sizeof tmp ? tl : sizeof tmp - 1);
        ss_jbuf_printf(b, i ? ",%lld" : "%lld", (long long)off);
    }
    ss_jbuf_cstr(b, "]}");
}

static void oai_head(ss_jbuf *b, const ss_api_resp_meta *m, int chunk)
{
    const char *object = m->kind == SS_API_CHAT ? (chunk ? "chat.completion.chunk" : "chat.completion")
                                                : "text_completion";
    ss_jbuf_cstr(b, "{\"id\":");
    ss_jbuf_str(b, m->id, strlen(m->id));
    ss_jbuf_cstr(b, ",\"object\":");
    ss_jbuf_str(b, object, strlen(object));
    ss_jbuf_printf(b, ",\"created\":%lld,\"model\":", (long long)m->created);
    ss_jbuf_str(b, m->model, strlen(m->model));
    ss_jbuf_cstr(b, ",\"system_fingerprint\":null");
}

static void oai_finish(ss_jbuf *b, int finish)
{
    ss_jbuf_cstr(b, ",\"finish_reason\":");
    if (finish == 1 || finish == 2) {
        const char *s = ss_api_finish_str(finish);
        ss_jbuf_str(b, s, strlen(s));
    } else if (finish) {
        ss_jbuf_cstr(b, "\"abort\"");
    } else {
        ss_jbuf_cstr(b, "null");
    }
}

/* "tool_calls":[{"index","id","type":"function","function":{"name","arguments"}}...] (ids: ss_tool_calls_name). */
static void oai_tool_calls(ss_jbuf *b, const ss_tool_calls *c)
{
    ss_jbuf_cstr(b, "\"tool_calls\":[");
    for (int32_t i = 0; i < c->n; i++) {
        ss_jbuf_printf(b, "%s{\"index\":%d,\"id\":", i ? "," : "", (int)i);
        ss_jbuf_str(b, c->calls[i].id, strlen(c->calls[i].id));
        ss_jbuf_cstr(b, ",\"type\":\"function\",\"function\":{\"name\":");
        ss_jbuf_str(b, c->calls[i].name, strlen(c->calls[i].name));
        ss_jbuf_cstr(b, ",\"arguments\":");
        ss_jbuf_str(b, c->calls[i].arguments, strlen(c->calls[i].arguments));
        ss_jbuf_cstr(b, "}}");
    }
    ss_jbuf_cstr(b, "]");
}

static void oai_usage(ss_jbuf *b, int32_t prompt, int32_t completion, int32_t cached)
{
    ss_jbuf_printf(b, "\"usage\":{\"prompt_tokens\":%d,\"completion_tokens\":%d,\"total_tokens\":%d", (int)prompt,
                   (int)completion, (int)(prompt + completion));
    /* always there, 0 when nothing was cached, as OpenAI sends it (clients read it without a check) */
    ss_jbuf_printf(b, ",\"prompt_tokens_details\":{\"cached_tokens\":%d}}", (int)(cached > 0 ? cached : 0));
}

char *ss_api_openai_response_json(const ss_api_resp_meta *m, const ss_api_choice *choices, int32_t n,
                                  const ss_api_vocab *vocab, size_t *len)
{
    ss_jbuf b;
    ss_jbuf_init(&b, OAI_MAX_RESPONSE);
    oai_head(&b, m, 0);
    ss_jbuf_cstr(&b, ",\"choices\":[");
    int32_t prompt = 0, completion = 0, cached = 0;
    for (int32_t i = 0; i < n; i++) {
        const ss_api_choice *c = &choices[i];
        ss_jbuf_printf(&b, "%s{\"index\":%d,", i ? "," : "", (int)c->index);
        if (m->kind == SS_API_CHAT) {
            ss_jbuf_cstr(&b, "\"message\":{\"role\":\"assistant\",\"content\":");
            if (c->calls.n > 0 && c->calls.content_len == 0) {
                ss_jbuf_cstr(&b, "null,");
                oai_tool_calls(&b, &c->calls);
            } else if (c->calls.n > 0) {
                ss_jbuf_str(&b, c->text, c->calls.content_len < c->text_len ? c->calls.content_len : c->text_len);
                ss_jbuf_cstr(&b, ",");
                oai_tool_calls(&b, &c->calls);
            } else {
                ss_jbuf_str(&b, c->text ? c->text : "", c->text_len);
            }
            ss_jbuf_cstr(&b, "},\"logprobs\":");
            if (m->logprobs)
                oai_chat_logprobs(&b, m, c->lps, c->n_lps, vocab);
            else
                ss_jbuf_cstr(&b, "null");
        } else {
            ss_jbuf_cstr(&b, "\"text\":");
            ss_jbuf_str(&b, c->text ? c->text : "", c->text_len);
            ss_jbuf_cstr(&b, ",\"logprobs\":");
            ss_api_text_pos pos = {0};
            if (m->logprobs)
                oai_completion_logprobs(&b, m, c->lps, c->n_lps, &pos, vocab);
            else
                ss_jbuf_cstr(&b, "null");
        }
        if (c->calls.n > 0)
            ss_jbuf_cstr(&b, ",\"finish_reason\":\"tool_calls\"");
        else
            oai_finish(&b, c->finish);
        ss_jbuf_cstr(&b, "}");
        if (c->prompt_tokens > prompt)
            prompt = c->prompt_tokens;
        if (c->cached_tokens > cached)
            cached = c->cached_tokens;
        completion += c->completion_tokens;
    }
    ss_jbuf_cstr(&b, "],");
    oai_usage(&b, prompt, completion, cached);
    ss_jbuf_cstr(&b, "}");
    return ss_jbuf_take(&b, len);
}

char *ss_api_openai_chunk_json(const ss_api_resp_meta *m, int32_t index, const char *text, size_t text_len,
                               const ss_api_token_lp *lp, int finish, int first, const ss_api_vocab *vocab,
                               ss_api_text_pos *pos, size_t *len)
{
    ss_api_text_pos from_start = {0};
    ss_jbuf b;
    ss_jbuf_init(&b, OAI_MAX_RESPONSE);
    oai_head(&b, m, 1);
    ss_jbuf_printf(&b, ",\"choices\":[{\"index\":%d,", (int)index);
    if (m->kind == SS_API_CHAT) {
        ss_jbuf_cstr(&b, "\"delta\":{");
        if (first)
            ss_jbuf_cstr(&b, "\"role\":\"assistant\",");
        ss_jbuf_cstr(&b, "\"content\":");
        ss_jbuf_str(&b, text ? text : "", text ? text_len : 0);
        ss_jbuf_cstr(&b, "},\"logprobs\":");
        if (m->logprobs && lp)
            oai_chat_logprobs(&b, m, lp, 1, vocab);
        else
            ss_jbuf_cstr(&b, "null");
    } else {
        ss_jbuf_cstr(&b, "\"text\":");
        ss_jbuf_str(&b, text ? text : "", text ? text_len : 0);
        ss_jbuf_cstr(&b, ",\"logprobs\":");
        if (m->logprobs && lp)
            oai_completion_logprobs(&b, m, lp, 1, pos ? pos : &from_start, vocab);
        else
            ss_jbuf_cstr(&b, "null");
    }
    oai_finish(&b, finish);
    ss_jbuf_cstr(&b, "}]}");
    return ss_jbuf_take(&b, len);
}

char *ss_api_openai_tool_chunk_json(const ss_api_resp_meta *m, int32_t index, const ss_tool_event *ev, size_t *len)
{
    ss_jbuf b;
    ss_jbuf_init(&b, OAI_MAX_RESPONSE);
    oai_head(&b, m, 1);
    ss_jbuf_printf(&b, ",\"choices\":[{\"index\":%d,\"delta\":{", (int)index);
    if (ev && ev->kind == SS_TOOL_EVENT_CALL) {
        ss_jbuf_printf(&b, "\"tool_calls\":[{\"index\":%d,\"id\":", (int)ev->index);
        ss_jbuf_str(&b, ev->id, strlen(ev->id));
        ss_jbuf_cstr(&b, ",\"type\":\"function\",\"function\":{\"name\":");
        ss_jbuf_str(&b, ev->name, strlen(ev->name));
        ss_jbuf_cstr(&b, ",\"arguments\":\"\"}}]");
    } else if (ev && ev->kind == SS_TOOL_EVENT_ARGS) {
        ss_jbuf_printf(&b, "\"tool_calls\":[{\"index\":%d,\"function\":{\"arguments\":", (int)ev->index);
        ss_jbuf_str(&b, ev->text, ev->len);
        ss_jbuf_cstr(&b, "}}]");
    }
    ss_jbuf_cstr(&b, ev ? "},\"logprobs\":null,\"finish_reason\":null}]}"
                        : "},\"logprobs\":null,\"finish_reason\":\"tool_calls\"}]}");
    return ss_jbuf_take(&b, len);
}

char *ss_api_openai_usage_chunk_json(const ss_api_resp_meta *m, int32_t prompt_tokens,
                                     int32_t completion_tokens, int32_t cached_tokens, size_t *len)
{
    ss_jbuf b;
    ss_jbuf_init(&b, 4096);
    oai_head(&b, m, 1);
    ss_jbuf_cstr(&b, ",\"choices\":[],");
    oai_usage(&b, prompt_tokens, completion_tokens, cached_tokens);
    ss_jbuf_cstr(&b, "}");
    return ss_jbuf_take(&b, len);
}

/* OpenAI's model object, with vLLM's max_model_len and the vocabulary size (clients such as
 * `shardserve bench` draw valid token ids from it). */
static void oai_model_object(ss_jbuf *b, const ss_api_model_card *m)
{
    ss_jbuf_cstr(b, "{\"id\":");
    ss_jbuf_str(b, m->name, strlen(m->name));
    ss_jbuf_printf(b, ",\"object\":\"model\",\"created\":%lld,\"owned_by\":\"shardserve\"", (long long)m->created);
    if (m->max_model_len > 0 && m->vocab_size > 0) /* known once the model has loaded */
        ss_jbuf_printf(b, ",\"max_model_len\":%d,\"vocab_size\":%d", (int)m->max_model_len, (int)m->vocab_size);
    ss_jbuf_cstr(b, "}");
}

char *ss_api_openai_models_json(const ss_api_model_card *m, size_t *len)
{
    ss_jbuf b;
    ss_jbuf_init(&b, 4096);
    ss_jbuf_cstr(&b, "{\"object\":\"list\",\"data\":[");
    oai_model_object(&b, m);
    ss_jbuf_cstr(&b, "]}");
    return ss_jbuf_take(&b, len);
}

char *ss_api_openai_model_json(const ss_api_model_card *m, size_t *len)
{
    ss_jbuf b;
    ss_jbuf_init(&b, 1024);
    oai_model_object(&b, m);
    return ss_jbuf_take(&b, len);
}

/* ---- tokenize / detokenize ---------------------------------------------------------------------- */

ss_status ss_api_tokenize_parse(const char *body, size_t len, char **prompt, int *add_special, ss_api_error *e)
{
    cJSON *root = NULL;
    *prompt = NULL;
    *add_special = 1;
    SS_CHECK(ss_api_parse_object(body, len, &root, e));
    int present;
    ss_status st = ss_api_get_string(root, "prompt", prompt, &present, e);
    if (st == SS_OK && !present)
        st = ss_api_fail(e, 400, "prompt", "'prompt' is required");
    if (st == SS_OK)
        st = ss_api_get_bool(root, "add_special_tokens", add_special, &present, e);
    cJSON_Delete(root);
    if (st != SS_OK) {
        ss_free(*prompt);
        *prompt = NULL;
    }
    return st;
}

char *ss_api_tokenize_json(const int32_t *ids, int32_t n, int32_t max_model_len, size_t *len)
{
    ss_jbuf b;
    ss_jbuf_init(&b, OAI_MAX_RESPONSE);
    ss_jbuf_cstr(&b, "{\"tokens\":[");
    for (int32_t i = 0; i < n; i++)
        ss_jbuf_printf(&b, i ? ",%d" : "%d", (int)ids[i]);
    ss_jbuf_printf(&b, "],\"count\":%d,\"max_model_len\":%d}", (int)n, (int)max_model_len);
    return ss_jbuf_take(&b, len);
}

ss_status ss_api_detokenize_parse(const char *body, size_t len, const ss_api_limits *lim, int32_t **ids,
                                  int32_t *n, ss_api_error *e)
{
    cJSON *root = NULL;
    *ids = NULL;
    *n = 0;
    SS_CHECK(ss_api_parse_object(body, len, &root, e));
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(root, "tokens");
    ss_status st;
    if (!t || cJSON_IsNull(t))
        st = ss_api_fail(e, 400, "tokens", "'tokens' is required");
    else if (!cJSON_IsArray(t))
        st = ss_api_fail(e, 400, "tokens", "'tokens' must be a list of token ids");
    else
        st = ss_api_get_ids(root, "tokens", 1 << 24, lim->vocab_size, ids, n, e);
    cJSON_Delete(root);
    return st;
}

char *ss_api_detokenize_json(const char *text, size_t text_len, size_t *len)
{
    ss_jbuf b;
    ss_jbuf_init(&b, OAI_MAX_RESPONSE);
    ss_jbuf_cstr(&b, "{\"prompt\":");
    ss_jbuf_str(&b, text, text_len);
    ss_jbuf_cstr(&b, "}");
    return ss_jbuf_take(&b, len);
}
