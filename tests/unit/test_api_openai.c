/* test_api_openai.c — OpenAI request parsing (good bodies and a matrix of bad ones with exact status,
 * field and message), response/chunk/usage JSON byte for byte, tokenize bodies, the JSON writer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "serve/api_openai.h"
#include "serve/http_server.h"

static const ss_api_limits LIM = {.max_context = 2048, .vocab_size = 1000, .max_n = 4};

static ss_status parse(const char *body, ss_api_kind kind, ss_api_request *r, ss_api_error *e)
{
    memset(e, 0, sizeof *e);
    return ss_api_openai_parse(body, strlen(body), kind, &LIM, r, e);
}

static void test_completion_full(void **state)
{
    (void)state;
    ss_api_request r;
    ss_api_error e;
    const char *body = "{\"model\":\"m\",\"prompt\":\"Hello\",\"max_tokens\":5,\"temperature\":0.7,\"top_p\":0.9,"
                       "\"top_k\":40,\"min_p\":0.05,\"seed\":3,\"stop\":[\"a\",\"bc\"],\"n\":2,\"logprobs\":2,"
                       "\"stream\":true,\"stream_options\":{\"include_usage\":true},\"presence_penalty\":0.5,"
                       "\"frequency_penalty\":-0.5,\"ignore_eos\":true,\"user\":\"x\"}";
    assert_int_equal(parse(body, SS_API_COMPLETION, &r, &e), SS_OK);
    assert_string_equal(r.model, "m");
    assert_string_equal(r.prompt, "Hello");
    assert_null(r.prompt_ids);
    assert_int_equal(r.max_tokens, 5);
    assert_true(r.sp.temperature > 0.69f && r.sp.temperature < 0.71f);
    assert_true(r.sp.top_p > 0.89f && r.sp.top_p < 0.91f);
    assert_int_equal(r.sp.top_k, 40);
    assert_true(r.sp.min_p > 0.04f && r.sp.min_p < 0.06f);
    assert_int_equal(r.sp.seed, 3);
    assert_true(r.seed_given);
    assert_int_equal(r.n_stop, 2);
    assert_string_equal(r.stop[1], "bc");
    assert_int_equal(r.n, 2);
    assert_int_equal(r.logprobs, 1);
    assert_int_equal(r.top_logprobs, 2);
    assert_int_equal(r.sp.n_logprobs, 2);
    assert_true(r.stream);
    assert_true(r.include_usage);
    assert_true(r.ignore_eos);
    assert_true(r.sp.presence_penalty == 0.5f);
    assert_true(r.sp.frequency_penalty == -0.5f);
    ss_api_request_clear(&r);
}

static void test_completion_defaults_and_prompt_forms(void **state)
{
    (void)state;
    ss_api_request r;
    ss_api_error e;
    assert_int_equal(parse("{\"prompt\":\"x\"}", SS_API_COMPLETION, &r, &e), SS_OK);
    assert_int_equal(r.max_tokens, 16);
    assert_true(r.sp.temperature == 0.0f);
    assert_int_equal(r.n, 1);
    assert_false(r.stream);
    assert_false(r.seed_given);
    assert_null(r.model);
    ss_api_request_clear(&r);

    /* seeds: the 64-bit range clients draw from (helper-78: past 9e15 was "must be an integer"), negative ones
     * modulo 2^64 */
    static const struct {
        const char *body;
        uint64_t seed;
    } seeds[] = {{"{\"prompt\":\"x\",\"seed\":4611686018427387904}", UINT64_C(4611686018427387904)},
                 {"{\"prompt\":\"x\",\"seed\":18446744073709549568}", UINT64_C(18446744073709549568)},
                 {"{\"prompt\":\"x\",\"seed\":-1}", UINT64_MAX},
                 {"{\"prompt\":\"x\",\"seed\":-9223372036854775808}", UINT64_C(9223372036854775808)},
                 {"{\"prompt\":\"x\",\"seed\":0}", 0}};
    for (size_t i = 0; i < sizeof seeds / sizeof *seeds; i++) {
        assert_int_equal(parse(seeds[i].body, SS_API_COMPLETION, &r, &e), SS_OK);
        assert_true(r.seed_given);
        assert_true(r.sp.seed == seeds[i].seed);
        ss_api_request_clear(&r);
    }
    const char *bad_seeds[] = {"18446744073709551616", "-9223372036854777856", "1.5", "1e300", "true"};
    for (size_t i = 0; i < sizeof bad_seeds / sizeof *bad_seeds; i++) {
        char body[96];
        snprintf(body, sizeof body, "{\"prompt\":\"x\",\"seed\":%s}", bad_seeds[i]);
        assert_int_equal(parse(body, SS_API_COMPLETION, &r, &e), SS_ERR_INVALID_ARG);
        assert_int_equal(e.http_status, 400);
        assert_non_null(strstr(e.message, "'seed' must be an integer from -2^63 to 2^64 - 1"));
    }

    /* white space after the object, an empty tool list and the text response format are fine */
    assert_int_equal(parse("{\"prompt\":\"x\"} \r\n\t", SS_API_COMPLETION, &r, &e), SS_OK);
    ss_api_request_clear(&r);
    /* a raw NUL byte inside a string is no JSON: refused, not a prompt cut short */
    static const char raw_nul[] = "{\"prompt\":\"hello\0 world\"}";
    memset(&e, 0, sizeof e);
    assert_int_equal(ss_api_openai_parse(raw_nul, sizeof raw_nul - 1, SS_API_COMPLETION, &LIM, &r, &e), SS_ERR_INVALID_ARG);
    assert_int_equal(e.http_status, 400);
    assert_string_equal(e.message, "malformed JSON in request body: a NUL byte at byte 16");
    ss_api_request_clear(&r);
    /* raw control characters: none in strings (a raw line break), only tab, LF and CR between tokens */
    static const struct {
        const char *body;
        const char *msg;
    } raw_ctl[] = {
        {"{\"prompt\":\"two\nlines\"}", "a raw control character (0x0a) at byte 14"},
        {"{\"prompt\":\"a\\\"\tb\"}", "a raw control character (0x09) at byte 14"}, /* after an escaped quote */
        {"{\"prompt\":\x01\"x\"}", "a raw control character (0x01) at byte 10"},
    };
    for (size_t i = 0; i < sizeof raw_ctl / sizeof raw_ctl[0]; i++) {
        memset(&e, 0, sizeof e);
        assert_int_equal(parse(raw_ctl[i].body, SS_API_COMPLETION, &r, &e), SS_ERR_INVALID_ARG);
        assert_int_equal(e.http_status, 400);
        assert_non_null(strstr(e.message, raw_ctl[i].msg));
        ss_api_request_clear(&r);
    }
    assert_int_equal(parse("{\"prompt\":\"a\\nb \\\\\"}\r\n", SS_API_COMPLETION, &r, &e), SS_OK); /* escapes are fine */
    assert_string_equal(r.prompt, "a\nb \\");
    ss_api_request_clear(&r);
    /* an escaped backslash before "u0000" is text, not a NUL */
    assert_int_equal(parse("{\"prompt\":\"a\\\\u0000b\"}", SS_API_COMPLETION, &r, &e), SS_OK);
    assert_string_equal(r.prompt, "a\\u0000b");
    ss_api_request_clear(&r);
    assert_int_equal(parse("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[],\"functions\":null,"
                           "\"response_format\":{\"type\":\"text\"}}",
                           SS_API_CHAT, &r, &e),
                     SS_OK);
    assert_false(r.json_mode);
    ss_api_request_clear(&r);
    /* JSON mode, on both routes */
    assert_int_equal(parse("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
                           "\"response_format\":{\"type\":\"json_object\"}}",
                           SS_API_CHAT, &r, &e),
                     SS_OK);
    assert_true(r.json_mode);
    ss_api_request_clear(&r);
    assert_int_equal(parse("{\"prompt\":\"x\",\"response_format\":{\"type\":\"json_object\"}}", SS_API_COMPLETION, &r, &e),
                     SS_OK);
    assert_true(r.json_mode);
    assert_null(r.json_schema);
    ss_api_request_clear(&r);
    /* a schema: kept (as a copy of the request's), as is vLLM's guided_json */
    assert_int_equal(parse("{\"prompt\":\"x\",\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"p\","
                           "\"strict\":true,\"schema\":{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"}}}}}}",
                           SS_API_COMPLETION, &r, &e),
                     SS_OK);
    assert_true(r.json_mode);
    assert_non_null(r.json_schema);
    const ss_json_node *root = ss_json_schema_node(r.json_schema, ss_json_schema_root(r.json_schema));
    assert_int_equal(root->n_props, 1);
    assert_int_equal(ss_json_schema_node(r.json_schema, root->prop[0])->kind, SS_JK_INTEGER);
    ss_api_request_clear(&r);
    assert_int_equal(parse("{\"prompt\":\"x\",\"guided_json\":{\"properties\":{\"b\":{}}}}", SS_API_COMPLETION, &r, &e), SS_OK);
    assert_true(r.json_mode && r.json_schema);
    ss_api_request_clear(&r);
    /* vLLM also takes guided_json as a JSON text */
    assert_int_equal(parse("{\"prompt\":\"x\",\"guided_json\":\"{\\\"properties\\\":{\\\"b\\\":{}}}\"}", SS_API_COMPLETION,
                           &r, &e),
                     SS_OK);
    assert_true(r.json_mode && r.json_schema);
    ss_api_request_clear(&r);

    assert_int_equal(parse("{\"prompt\":[1,2,999]}", SS_API_COMPLETION, &r, &e), SS_OK);
    assert_int_equal(r.n_prompt_ids, 3);
    assert_int_equal(r.prompt_ids[2], 999);
    ss_api_request_clear(&r);

    assert_int_equal(parse("{\"prompt\":[[7,8]]}", SS_API_COMPLETION, &r, &e), SS_OK);
    assert_int_equal(r.n_prompt_ids, 2);
    assert_int_equal(r.prompt_ids[0], 7);
    ss_api_request_clear(&r);

    assert_int_equal(parse("{\"prompt\":[\"hi\"],\"stop\":\"\\n\",\"max_completion_tokens\":9}", SS_API_COMPLETION,
                           &r, &e),
                     SS_OK);
    assert_string_equal(r.prompt, "hi");
    assert_int_equal(r.n_stop, 1);
    assert_string_equal(r.stop[0], "\n");
    assert_int_equal(r.max_tokens, 9);
    ss_api_request_clear(&r);
}

static void test_chat_parse(void **state)
{
    (void)state;
    ss_api_request r;
    ss_api_error e;
    const char *body = "{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},"
                       "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"Hi \"},{\"type\":\"text\","
                       "\"text\":\"there\"}]}],\"logprobs\":true,\"top_logprobs\":3}";
    assert_int_equal(parse(body, SS_API_CHAT, &r, &e), SS_OK);
    assert_int_equal(r.max_tokens, 0); /* chat: rest of the context, decided after tokenizing */
    assert_int_equal(r.logprobs, 1);
    assert_int_equal(r.top_logprobs, 3);
    assert_int_equal(r.sp.n_logprobs, 3);
    char *j = cJSON_PrintUnformatted(r.messages);
    assert_string_equal(j, "[{\"role\":\"system\",\"content\":\"Be brief.\"},{\"role\":\"user\",\"content\":\"Hi there\"}]");
    cJSON_free(j);
    ss_api_request_clear(&r);
}

typedef struct bad_case {
    ss_api_kind kind;
    const char *body;
    int status;
    const char *param;
    const char *message;
} bad_case;

static void test_bad_matrix(void **state)
{
    (void)state;
    static const bad_case cases[] = {
        {SS_API_COMPLETION, "", 400, "", "request body is empty; expected a JSON object"},
        {SS_API_COMPLETION, "{\"prompt\": \"x\"", 400, "", "malformed JSON in request body near byte 13"},
        {SS_API_COMPLETION, "[1,2]", 400, "", "request body must be a JSON object"},
        {SS_API_COMPLETION, "{}", 400, "prompt", "'prompt' is required"},
        {SS_API_COMPLETION, "{\"prompt\":\"\"}", 400, "prompt", "'prompt' must not be empty"},
        {SS_API_COMPLETION, "{\"prompt\":[]}", 400, "prompt", "'prompt' must not be empty"},
        {SS_API_COMPLETION, "{\"prompt\":5}", 400, "prompt", "'prompt' must be a string or a list of token ids"},
        {SS_API_COMPLETION, "{\"prompt\":[1,1000]}", 400, "prompt", "'prompt' token ids must be integers in [0, 1000)"},
        {SS_API_COMPLETION, "{\"prompt\":[1,2.5]}", 400, "prompt", "'prompt' token ids must be integers in [0, 1000)"},
        {SS_API_COMPLETION, "{\"prompt\":[\"a\",\"b\"]}", 400, "prompt",
         "'prompt' must be a string, a list of token ids, or a list holding one of those (batched prompts are not "
         "supported: send one request per prompt)"},
        {SS_API_COMPLETION, "{\"prompt\":\"x\",\"max_tokens\":0}", 400, "max_tokens", "'max_tokens' must be at least 1 (got 0)"},
        {SS_API_COMPLETION, "{\"prompt\":\"x\",\"max_tokens\":-3}", 400, "max_tokens", "'max_tokens' must be at least 1 (got -3)"},
        {SS_API_COMPLETION, "{\"prompt\":\"x\",\"max_tokens\":100000}", 400, "max_tokens",
         "'max_tokens' is 100000, more than the context length 2048"},
        {SS_API_COMPLETION, "{\"prompt\":\"x\",\"max_tokens\":\"5\"}", 400, "max_tokens", "'max_tokens' must be an integer"},
        {SS_API_COMPLETION, "{\"prompt\":\"x\",\"max_tokens\":1.5}", 400, "max_tokens", "'max_tokens' must be an integer"},
        {SS_API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_completion_tokens\":0}", 400,
         "max_completion_tokens", "'max_completion_tokens' must be at least 1 (got 0)"},
        {SS_API_COMPLETION, "{\"prompt\":\"x\",\"temperature\":-0.1}", 400, "temperature",
         "'temperature' must be in [0, 100] (got -0.1)"},
        {SS_API_COMPLETION, "{\"prompt\":\"x\",\"temperature\":101}", 400, "temperature",
         "'temperature' must be in [0, 100] (got 101)"},
        {SS_API_COMPLETION, "{\"prompt\":\"a\\u0000b\"}", 400, "",
         "strings holding a NUL character (\\u0000, at byte 12) are not supported"},
        {SS_API_COMPLETION, "{\"prompt\":\"a\\\\\\u0000b\"}", 400, "",
         "strings holding a NUL character (\\u0000, at byte 14) are not supported"},
        {SS_API_COMPLETION, "{\"prompt\":\"x\",\"max_tokens\":2,\"max_tokens\":-1}", 400, "max_tokens",
         "malformed request: the key 'max_tokens' occurs twice"},
        {SS_API_COMPLETION, "{\"prompt\":\"x\",\"stream_options\":{\"include_usage\":true,\"include_usage\":false}}", 400,
         "include_usage", "malformed request: the key 'include_usage' occurs twice"},
        {SS_API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\",\"role\":\"system\"}]}", 400, "role",
         "malformed request: the key 'role' occurs twice"},
        {SS_API_COMPLETION, "{\"prompt\":\"x\"} x", 400, "",
         "malformed JSON in request body: unexpected data after the object at byte 15"},
        {SS_API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{}]}", 400, "tools",
         "'tools' is not supported for this model: its chat template takes no tools, or writes calls in a format this "
         "server does not read (Hermes <tool_call> blocks, Llama 3 JSON, Mistral's [TOOL_CALLS] and DeepSeek's markers "
         "are read)"},
        {SS_API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"functions\":[{}]}", 400, "functions",
         "'functions' is not supported (the legacy form: use 'tools')"},
        {SS_API_COMPLETION, "{\"prompt\":\"x\",\"tools\":[{}]}", 400, "tools",
         "'tools' is not supported (function calling is for chat completions)"},
        {SS_API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tool_choice\":\"auto\"}", 400,
         "tool_choice", "'tool_choice' needs 'tools'"},
        {SS_API_CHAT, "{\"messages\":[{\"role\":\"assistant\",\"tool_calls\":{}}]}", 400, "messages",
         "'messages[0].tool_calls' must be a list"},
        {SS_API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"response_format\":{\"type\":\"json_schema\"}}",
         400, "response_format",
         "'response_format' of type json_schema needs 'json_schema': {\"name\": ..., \"schema\": {...}}"},
        {SS_API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"response_format\":{\"type\":\"yaml\"}}",
         400, "response_format", "'response_format' type 'yaml' is not supported (text, json_object or json_schema)"},
        {SS_API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"response_format\":{\"type\":\"json_schema\","
                      "\"json_schema\":{\"name\":\"p\",\"schema\":{\"type\":\"object\",\"properties\":{\"a\":{\"pattern\":\"x\"}}}}}}",
         400, "response_format",
         "JSON schema at 'properties.a.pattern': this keyword is not supported (JSON mode enforces types, properties, "
         "required, items, enum, const, anyOf and $ref)"},
        {SS_API_COMPLETION, "{\"prompt\":\"x\",\"guided_json\":{\"type\":\"array\"}}", 400, "guided_json",
         "JSON schema: the top level must describe an object (\"type\": \"object\")"},
        {SS_API_COMPLETION, "{\"prompt\":\"x\",\"guided_json\":\"{not json\"}", 400, "guided_json",
         "'guided_json' is a string that holds no JSON schema"},
        {SS_API_COMPLETION, "{\"prompt\":\"x\",\"response_format\":{\"type\":\"json_object\"},\"guided_json\":{}}", 400,
         "guided_json", "'guided_json' and a JSON response_format both given"},
        {SS_API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"response_format\":\"text\"}", 400,
         "response_format", "'response_format' must be an object with a string 'type'"},
        {SS_API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"response_format\":{\"type\":1}}", 400,
         "response_format", "'response_format' must be an object with a string 'type'"},
        {SS_API_COMPLETION, "{\"prompt\":\"x\",\"min_tokens\":2,\"response_format\":{\"type\":\"json_object\"}}", 400,
         "min_tokens", "'min_tokens' cannot be combined with JSON mode, which ends when the object closes"},
        {SS_API_COMPLETION, "{\"prompt\":\"x\",\"temperature\":\"hot\"}", 400, "temperature", "'temperature' must be a number"},
        {SS_API_COMPLETION, "{\"prompt\":\"x\",\"top_p\":0}", 400, "top_p", "'top_p' must be in (0, 1] (got 0)"},
        {SS_API_COMPLETION, "{\"prompt\":\"x\",\"top_p\":1.5}", 400, "top_p", "'top_p' must be in (0, 1] (got 1.5)"},
        {SS_API_COMPLETION, "{\"prompt\":\"x\",\"top_k\":-2}", 400, "top_k", "'top_k' must be -1 (off), 0 (off) or in [1, 1000]"},
        {SS_API_COMPLETION, "{\"prompt\":\"x\",\"min_p\":2}", 400, "min_p", "'min_p' must be in [0, 1] (got 2)"},
        {SS_API_COMPLETION, "{\"prompt\":\"x\",\"presence_penalty\":3}", 400, "presence_penalty",
         "'presence_penalty' must be in [-2, 2] (got 3)"},
        {SS_API_COMPLETION, "{\"prompt\":\"x\",\"repetition_penalty\":1e-45}", 400, "repetition_penalty",
         "'repetition_penalty' must be in [1e-06, 10] (got 1e-45)"},
        {SS_API_COMPLETION, "{\"prompt\":\"x\",\"repetition_penalty\":0}", 400, "repetition_penalty",
         "'repetition_penalty' must be in [1e-06, 10] (got 0)"},
        {SS_API_COMPLETION, "{\"prompt\":\"x\",\"n\":0}", 400, "n", "'n' must be in [1, 4] (got 0)"},
        {SS_API_COMPLETION, "{\"prompt\":\"x\",\"n\":5}", 400, "n", "'n' must be in [1, 4] (got 5)"},
        {SS_API_COMPLETION, "{\"prompt\":\"x\",\"stream\":\"yes\"}", 400, "stream", "'stream' must be a boolean"},
        {SS_API_COMPLETION, "{\"prompt\":\"x\",\"stream_options\":3}", 400, "stream_options", "'stream_options' must be an object"},
        {SS_API_COMPLETION, "{\"prompt\":\"x\",\"seed\":\"1\"}", 400, "seed", "'seed' must be an integer from -2^63 to 2^64 - 1"},
        {SS_API_COMPLETION, "{\"prompt\":\"x\",\"stop\":7}", 400, "stop", "'stop' must be a string or a list of strings"},
        {SS_API_COMPLETION, "{\"prompt\":\"x\",\"stop\":[\"a\",1]}", 400, "stop", "'stop' must be a string or a list of strings"},
        {SS_API_COMPLETION, "{\"prompt\":\"x\",\"stop\":[\"\"]}", 400, "stop", "'stop' must not contain empty strings"},
        {SS_API_COMPLETION, "{\"prompt\":\"x\",\"stop\":\"\"}", 400, "stop", "'stop' must not be an empty string"},
        {SS_API_COMPLETION,
         "{\"prompt\":\"x\",\"stop\":[\"1\",\"2\",\"3\",\"4\",\"5\",\"6\",\"7\",\"8\",\"9\",\"10\",\"11\",\"12\",\"13\","
         "\"14\",\"15\",\"16\",\"17\"]}",
         400, "stop", "'stop' has 17 entries, at most 16 are allowed"},
        {SS_API_COMPLETION, "{\"prompt\":\"x\",\"logprobs\":21}", 400, "logprobs", "'logprobs' must be in [0, 20]"},
        {SS_API_COMPLETION, "{\"prompt\":\"x\",\"logit_bias\":[1]}", 400, "logit_bias",
         "'logit_bias' must be an object of token ids to numbers"},
        {SS_API_COMPLETION, "{\"prompt\":\"x\",\"logit_bias\":{\"abc\":1}}", 400, "logit_bias",
         "'logit_bias' keys must be token ids in [0, 1000) (got \"abc\")"},
        {SS_API_COMPLETION, "{\"prompt\":\"x\",\"logit_bias\":{\"-1\":1}}", 400, "logit_bias",
         "'logit_bias' keys must be token ids in [0, 1000) (got \"-1\")"},
        {SS_API_COMPLETION, "{\"prompt\":\"x\",\"logit_bias\":{\"1000\":1}}", 400, "logit_bias",
         "'logit_bias' keys must be token ids in [0, 1000) (got \"1000\")"},
        {SS_API_COMPLETION, "{\"prompt\":\"x\",\"logit_bias\":{\"\":1}}", 400, "logit_bias",
         "'logit_bias' keys must be token ids in [0, 1000) (got \"\")"},
        {SS_API_COMPLETION, "{\"prompt\":\"x\",\"logit_bias\":{\" 5\":1}}", 400, "logit_bias",
         "'logit_bias' keys must be token ids in [0, 1000) (got \" 5\")"},
        {SS_API_COMPLETION, "{\"prompt\":\"x\",\"logit_bias\":{\"5\":100.5}}", 400, "logit_bias",
         "'logit_bias' values must be numbers in [-100, 100] (token 5)"},
        {SS_API_COMPLETION, "{\"prompt\":\"x\",\"logit_bias\":{\"5\":\"1\"}}", 400, "logit_bias",
         "'logit_bias' values must be numbers in [-100, 100] (token 5)"},
        {SS_API_COMPLETION, "{\"prompt\":\"x\",\"logit_bias\":{\"5\":1,\"005\":2}}", 400, "logit_bias",
         "'logit_bias' names token 5 twice"},
        {SS_API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"logit_bias\":{\"7\":-101}}", 400,
         "logit_bias", "'logit_bias' values must be numbers in [-100, 100] (token 7)"},
        {SS_API_COMPLETION, "{\"prompt\":\"x\",\"echo\":true}", 400, "echo", "'echo' is not supported"},
        {SS_API_COMPLETION, "{\"prompt\":\"x\",\"suffix\":\"end\"}", 400, "suffix", "'suffix' is not supported (no insertion mode)"},
        {SS_API_COMPLETION, "{\"prompt\":\"x\",\"suffix\":3}", 400, "suffix", "'suffix' is not supported (no insertion mode)"},
        {SS_API_COMPLETION, "{\"prompt\":\"x\",\"model\":7}", 400, "model", "'model' must be a string"},
        {SS_API_CHAT, "{}", 400, "messages", "'messages' is required"},
        {SS_API_CHAT, "{\"messages\":[]}", 400, "messages", "'messages' must not be empty"},
        {SS_API_CHAT, "{\"messages\":\"hi\"}", 400, "messages", "'messages' must be a list of message objects"},
        {SS_API_CHAT, "{\"messages\":[3]}", 400, "messages", "'messages[0]' must be an object"},
        {SS_API_CHAT, "{\"messages\":[{\"content\":\"x\"}]}", 400, "messages", "'messages[0].role' must be a non-empty string"},
        {SS_API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":5}]}", 400, "messages",
         "'messages[0].content' must be a string or a list of parts"},
        {SS_API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"}]}]}", 400, "messages",
         "'messages[0].content' parts must be {\"type\": \"text\", \"text\": ...}"},
        {SS_API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"logprobs\":1}", 400, "logprobs",
         "'logprobs' must be a boolean"},
        {SS_API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"top_logprobs\":2}", 400, "top_logprobs",
         "'top_logprobs' needs 'logprobs': true"},
        {SS_API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"top_logprobs\":21,\"logprobs\":true}", 400,
         "top_logprobs", "'top_logprobs' must be in [0, 20]"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ss_api_request r;
        ss_api_error e;
        ss_status st = parse(cases[i].body, cases[i].kind, &r, &e);
        if (st == SS_OK || strcmp(e.message, cases[i].message) != 0 || strcmp(e.param, cases[i].param) != 0)
            print_error("case %zu (%s): got status %d param '%s' message '%s'\n", i, cases[i].body, (int)st, e.param,
                        e.message);
        assert_int_equal(st, SS_ERR_INVALID_ARG);
        assert_int_equal(e.http_status, cases[i].status);
        assert_string_equal(e.param, cases[i].param);
        assert_string_equal(e.message, cases[i].message);
        assert_string_equal(e.type, "invalid_request_error");
        /* The request is cleared on error: nothing left to free. */
        assert_null(r.prompt);
        assert_null(r.messages);
        assert_int_equal(r.n_stop, 0);
    }
}

static void test_error_json(void **state)
{
    (void)state;
    ss_api_error e;
    ss_api_fail(&e, 400, "top_p", "'top_p' must be in (0, 1] (got %g)", 2.0);
    size_t len = 0;
    char *j = ss_api_error_openai_json(&e, &len);
    assert_string_equal(j, "{\"error\":{\"message\":\"'top_p' must be in (0, 1] (got 2)\",\"type\":\"invalid_request_error\","
                           "\"param\":\"top_p\",\"code\":400}}");
    assert_int_equal(len, strlen(j));
    ss_free(j);
    ss_api_fail(&e, 404, NULL, "model \"x\" not found");
    j = ss_api_error_openai_json(&e, &len);
    assert_string_equal(j, "{\"error\":{\"message\":\"model \\\"x\\\" not found\",\"type\":\"not_found_error\","
                           "\"param\":null,\"code\":404}}");
    ss_free(j);
    j = ss_api_error_triton_json(&e, &len);
    assert_string_equal(j, "{\"error\":\"model \\\"x\\\" not found\"}");
    ss_free(j);
}

static size_t fake_token_text(void *user, int32_t token, char *buf, size_t cap)
{
    (void)user;
    static const char *const words[] = {"A", " b", "\"c", "\n"};
    const char *w = token >= 0 && token < 4 ? words[token] : "?";
    size_t n = strlen(w) < cap ? strlen(w) : cap - 1;
    memcpy(buf, w, n);
    buf[n] = '\0';
    return n;
}

static void test_completion_response(void **state)
{
    (void)state;
    ss_api_choice c[2];
    memset(c, 0, sizeof c);
    c[0].index = 0;
    c[1].index = 1;
    assert_int_equal(ss_api_choice_append_text(&c[0], "A b", 3, 100), SS_OK);
    assert_int_equal(ss_api_choice_append_text(&c[1], "\"c\n", 3, 100), SS_OK);
    assert_int_equal(ss_api_choice_append_text(&c[1], "xxxxxxxx", 8, 10), SS_ERR_CAPACITY);
    int32_t top[2] = {1, 2};
    float toplp[2] = {-0.25f, -1.5f};
    assert_int_equal(ss_api_choice_append_lp(&c[0], 0, -0.5f, 2, top, toplp), SS_OK);
    assert_int_equal(ss_api_choice_append_lp(&c[0], 1, -0.25f, 2, top, toplp), SS_OK);
    c[0].finish = 2;
    c[1].finish = 1;
    c[0].prompt_tokens = c[1].prompt_tokens = 4;
    c[0].completion_tokens = 2;
    c[1].completion_tokens = 3;
    ss_api_resp_meta m = {SS_API_COMPLETION, "cmpl-1", 1700000000, "tiny", 1, 1};
    ss_api_vocab v = {fake_token_text, NULL};
    size_t len;
    char *j = ss_api_openai_response_json(&m, c, 2, &v, &len);
    assert_string_equal(
        j, "{\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":1700000000,\"model\":\"tiny\","
           "\"system_fingerprint\":null,\"choices\":[{\"index\":0,\"text\":\"A b\",\"logprobs\":{\"tokens\":[\"A\",\" b\"],"
           "\"token_logprobs\":[-0.5,-0.25],\"top_logprobs\":[{\" b\":-0.25},{\" b\":-0.25}],\"text_offset\":[0,1]},"
           "\"finish_reason\":\"length\"},{\"index\":1,\"text\":\"\\\"c\\n\",\"logprobs\":{\"tokens\":[],"
           "\"token_logprobs\":[],\"top_logprobs\":[],\"text_offset\":[]},\"finish_reason\":\"stop\"}],"
           "\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":5,\"total_tokens\":9,"
           "\"prompt_tokens_details\":{\"cached_tokens\":0}}}");
    ss_free(j);

    m.kind = SS_API_CHAT;
    m.id = "chatcmpl-1";
    m.logprobs = 0;
    j = ss_api_openai_response_json(&m, c, 1, &v, &len);
    assert_string_equal(j, "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\",\"created\":1700000000,\"model\":\"tiny\","
                           "\"system_fingerprint\":null,\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
                           "\"content\":\"A b\"},\"logprobs\":null,\"finish_reason\":\"length\"}],\"usage\":"
                           "{\"prompt_tokens\":4,\"completion_tokens\":2,\"total_tokens\":6,"
                           "\"prompt_tokens_details\":{\"cached_tokens\":0}}}");
    ss_free(j);

    m.logprobs = 1;
    j = ss_api_openai_response_json(&m, c, 1, &v, &len);
    assert_non_null(strstr(j, "\"logprobs\":{\"content\":[{\"token\":\"A\",\"bytes\":[65],\"logprob\":-0.5,"
                              "\"top_logprobs\":[{\"token\":\" b\",\"bytes\":[32,98],\"logprob\":-0.25}]},"));
    ss_free(j);
    ss_api_choice_clear(&c[0]);
    ss_api_choice_clear(&c[1]);
}

/* Token texts with multi-byte UTF-8, some split across tokens, some invalid. */
static size_t utf8_token_text(void *user, int32_t token, char *buf, size_t cap)
{
    (void)user;
    static const char *const pieces[] = {
        "A",                        /* 0 */
        "\xc3\xa9",                 /* 1: é, 2 bytes */
        "\xe6\x97\xa5\xe6\x9c\xac", /* 2: 日本, 2 characters of 3 bytes */
        "\xe2\x82",                 /* 3: the first 2 bytes of € (e2 82 ac) */
        "\xac",                     /* 4: its last byte */
        "\xf0\x9f",                 /* 5: the first half of U+1F600 (f0 9f 98 80) */
        "\x98\x80",                 /* 6: its second half */
        "\xe6",                     /* 7: a lead byte... */
        "\x80",                     /* 8: a stray continuation byte */
        "",                         /* 9: no text */
    };
    const char *w = token >= 0 && token < 10 ? pieces[token] : "?";
    size_t n = strlen(w) < cap ? strlen(w) : cap - 1;
    memcpy(buf, w, n);
    buf[n] = '\0';
    return n;
}

/* The text_offset array of a non-stream completion whose choice has these tokens. Caller ss_frees. */
static char *offsets_of(const int32_t *tokens, int32_t n)
{
    ss_api_choice c;
    memset(&c, 0, sizeof c);
    for (int32_t i = 0; i < n; i++)
        assert_int_equal(ss_api_choice_append_lp(&c, tokens[i], -1.0f, 0, NULL, NULL), SS_OK);
    ss_api_resp_meta m = {SS_API_COMPLETION, "cmpl-u", 1, "tiny", 1, 0};
    ss_api_vocab v = {utf8_token_text, NULL};
    size_t len;
    char *j = ss_api_openai_response_json(&m, &c, 1, &v, &len);
    ss_api_choice_clear(&c);
    const char *a = strstr(j, "\"text_offset\":[");
    assert_non_null(a);
    a += strlen("\"text_offset\":");
    const char *z = strchr(a, ']');
    assert_non_null(z);
    char *out = ss_malloc((size_t)(z - a) + 2);
    memcpy(out, a, (size_t)(z - a) + 1);
    out[z - a + 1] = '\0';
    ss_free(j);
    return out;
}

static void test_text_offset_characters(void **state)
{
    (void)state;
    /* "Aé日本€A😀A": offsets in characters (as Python's len counts), not bytes ([0,1,3,9,...]). A token
     * that begins inside a character (the € and 😀 halves) gets that character's offset. */
    static const int32_t valid[] = {0, 1, 2, 3, 4, 0, 5, 6, 0};
    char *o = offsets_of(valid, 9);
    assert_string_equal(o, "[0,1,2,4,4,5,6,6,7]");
    ss_free(o);
    /* Invalid UTF-8 counts as it is shown, one U+FFFD per byte: "\xe6" cut short by "A", then a stray
     * continuation byte: "\ufffdA\ufffdé"; a token without text sits where the next one starts. */
    static const int32_t invalid[] = {7, 0, 8, 1, 9, 0};
    o = offsets_of(invalid, 6);
    assert_string_equal(o, "[0,1,2,3,4,4]");
    ss_free(o);
    /* A 2-byte prefix of a 3-byte character cut short by another character: one U+FFFD (the decoder's maximal
     * ill-formed part, helper-78's finding: it counted two, past the end of the text), then 日本. */
    static const int32_t cut[] = {3, 2, 0};
    o = offsets_of(cut, 3);
    assert_string_equal(o, "[0,1,3]");
    ss_free(o);

    /* The position alone: overlong forms and surrogates are invalid bytes, as the JSON writer has them. */
    ss_api_text_pos p = {0};
    assert_int_equal(ss_api_text_pos_advance(&p, "\xc0\xaf", 2), 0); /* overlong '/': 2 x U+FFFD */
    assert_int_equal(p.chars, 2);
    assert_int_equal(ss_api_text_pos_advance(&p, "\xed\xa0\x80", 3), 2); /* a surrogate: 3 x U+FFFD */
    assert_int_equal(p.chars, 5);
    assert_int_equal(ss_api_text_pos_advance(&p, "\xf4\x90", 2), 5); /* past U+10FFFF */
    assert_int_equal(ss_api_text_pos_advance(&p, "x", 1), 7);
    assert_int_equal(ss_api_text_pos_advance(&p, "\xe2", 1), 8);
    assert_int_equal(p.n_pend, 1);
    assert_int_equal(ss_api_text_pos_advance(&p, "", 0), 8);
    assert_int_equal(ss_api_text_pos_advance(&p, "\x82", 1), 8);
    assert_int_equal(ss_api_text_pos_advance(&p, "\xac\xc3\xa9", 3), 8); /* € ends, é follows */
    assert_int_equal(p.chars, 10);
    assert_int_equal(p.n_pend, 0);

    /* Streaming: each chunk's offset continues from the choice's position. */
    ss_api_resp_meta m = {SS_API_COMPLETION, "cmpl-s", 1, "tiny", 1, 0};
    ss_api_vocab v = {utf8_token_text, NULL};
    ss_api_text_pos sp = {0};
    static const int32_t stream[] = {1, 3, 4, 2, 0};
    static const char *const want[] = {"[0]", "[1]", "[1]", "[2]", "[4]"};
    for (int i = 0; i < 5; i++) {
        ss_api_token_lp lp;
        memset(&lp, 0, sizeof lp);
        lp.token = stream[i];
        size_t len;
        char *j = ss_api_openai_chunk_json(&m, 0, "", 0, &lp, 0, 0, &v, &sp, &len);
        char needle[64];
        snprintf(needle, sizeof needle, "\"text_offset\":%s}", want[i]);
        if (!strstr(j, needle))
            fail_msg("chunk %d: %s lacks %s", i, j, needle);
        ss_free(j);
    }
}

static void test_chunks(void **state)
{
    (void)state;
    ss_api_resp_meta m = {SS_API_CHAT, "chatcmpl-9", 5, "tiny", 0, 0};
    size_t len;
    char *j = ss_api_openai_chunk_json(&m, 0, "", 0, NULL, 0, 1, NULL, NULL, &len);
    assert_string_equal(j, "{\"id\":\"chatcmpl-9\",\"object\":\"chat.completion.chunk\",\"created\":5,\"model\":\"tiny\","
                           "\"system_fingerprint\":null,\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\","
                           "\"content\":\"\"},\"logprobs\":null,\"finish_reason\":null}]}");
    ss_free(j);
    j = ss_api_openai_chunk_json(&m, 1, "hi", 2, NULL, 1, 0, NULL, NULL, &len);
    assert_string_equal(j, "{\"id\":\"chatcmpl-9\",\"object\":\"chat.completion.chunk\",\"created\":5,\"model\":\"tiny\","
                           "\"system_fingerprint\":null,\"choices\":[{\"index\":1,\"delta\":{\"content\":\"hi\"},"
                           "\"logprobs\":null,\"finish_reason\":\"stop\"}]}");
    ss_free(j);
    m.kind = SS_API_COMPLETION;
    m.id = "cmpl-9";
    j = ss_api_openai_chunk_json(&m, 0, "x", 1, NULL, 0, 0, NULL, NULL, &len);
    assert_string_equal(j, "{\"id\":\"cmpl-9\",\"object\":\"text_completion\",\"created\":5,\"model\":\"tiny\","
                           "\"system_fingerprint\":null,\"choices\":[{\"index\":0,\"text\":\"x\",\"logprobs\":null,"
                           "\"finish_reason\":null}]}");
    ss_free(j);
    j = ss_api_openai_usage_chunk_json(&m, 3, 4, 0, &len);
    assert_string_equal(j, "{\"id\":\"cmpl-9\",\"object\":\"text_completion\",\"created\":5,\"model\":\"tiny\","
                           "\"system_fingerprint\":null,\"choices\":[],\"usage\":{\"prompt_tokens\":3,"
                           "\"completion_tokens\":4,\"total_tokens\":7,"
                           "\"prompt_tokens_details\":{\"cached_tokens\":0}}}");
    ss_free(j);
    ss_api_model_card card = {"tiny", 42, 2048, 4096};
    j = ss_api_openai_models_json(&card, &len);
    assert_string_equal(j, "{\"object\":\"list\",\"data\":[{\"id\":\"tiny\",\"object\":\"model\",\"created\":42,"
                           "\"owned_by\":\"shardserve\",\"max_model_len\":2048,\"vocab_size\":4096}]}");
    ss_free(j);
    ss_api_model_card loading = {"tiny", 42, 0, 0}; /* not loaded yet: no limits stated */
    j = ss_api_openai_model_json(&loading, &len);
    assert_string_equal(j, "{\"id\":\"tiny\",\"object\":\"model\",\"created\":42,\"owned_by\":\"shardserve\"}");
    ss_free(j);
    char id[64];
    ss_api_openai_make_id(SS_API_CHAT, 1, 0xabc, id, sizeof id);
    assert_string_equal(id, "chatcmpl-00000000000000010000000000000abc");
}

static void test_tokenize_bodies(void **state)
{
    (void)state;
    char *prompt = NULL;
    int add = 0;
    ss_api_error e;
    const char *b = "{\"prompt\":\"hi\",\"add_special_tokens\":false}";
    assert_int_equal(ss_api_tokenize_parse(b, strlen(b), &prompt, &add, &e), SS_OK);
    assert_string_equal(prompt, "hi");
    assert_int_equal(add, 0);
    ss_free(prompt);
    b = "{\"text\":\"hi\"}";
    assert_int_equal(ss_api_tokenize_parse(b, strlen(b), &prompt, &add, &e), SS_ERR_INVALID_ARG);
    assert_string_equal(e.message, "'prompt' is required");
    assert_null(prompt);
    int32_t ids[3] = {1, 2, 3};
    size_t len;
    char *j = ss_api_tokenize_json(ids, 3, 2048, &len);
    assert_string_equal(j, "{\"tokens\":[1,2,3],\"count\":3,\"max_model_len\":2048}");
    ss_free(j);
    int32_t *out = NULL, n = 0;
    b = "{\"tokens\":[5,6]}";
    assert_int_equal(ss_api_detokenize_parse(b, strlen(b), &LIM, &out, &n, &e), SS_OK);
    assert_int_equal(n, 2);
    assert_int_equal(out[1], 6);
    ss_free(out);
    b = "{\"tokens\":[5,1000]}";
    assert_int_equal(ss_api_detokenize_parse(b, strlen(b), &LIM, &out, &n, &e), SS_ERR_INVALID_ARG);
    assert_string_equal(e.message, "'tokens' must hold token ids in [0, 1000)");
    b = "{\"tokens\":\"5\"}";
    assert_int_equal(ss_api_detokenize_parse(b, strlen(b), &LIM, &out, &n, &e), SS_ERR_INVALID_ARG);
    assert_string_equal(e.message, "'tokens' must be a list of token ids");
    j = ss_api_detokenize_json("a\tb", 3, &len);
    assert_string_equal(j, "{\"prompt\":\"a\\tb\"}");
    ss_free(j);
}

static void test_jbuf(void **state)
{
    (void)state;
    ss_jbuf b;
    ss_jbuf_init(&b, 64);
    ss_jbuf_str(&b, "q\"\\\x01\x7f\xc3\xa9", 7);
    size_t len;
    char *s = ss_jbuf_take(&b, &len);
    assert_string_equal(s, "\"q\\\"\\\\\\u0001\\u007f\xc3\xa9\"");
    ss_free(s);
    /* Invalid UTF-8 (lone continuation, truncated sequence, overlong, surrogate) becomes U+FFFD. */
    ss_jbuf_init(&b, 128);
    ss_jbuf_str(&b, "a\x80" "b\xe2\x82\xc0\xaf" "c\xed\xa0\x80\xf0\x9f\x98\x80\xe2\x82", 17);
    s = ss_jbuf_take(&b, &len);
    assert_string_equal(s, "\"a\xef\xbf\xbd" "b\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
                           "c\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xf0\x9f\x98\x80\xef\xbf\xbd\xef\xbf\xbd\"");
    ss_free(s);
    ss_jbuf_init(&b, 8);
    ss_jbuf_cstr(&b, "12345678");
    assert_false(b.failed);
    ss_jbuf_cstr(&b, "9");
    assert_true(b.failed);
    assert_null(ss_jbuf_take(&b, &len));
    ss_jbuf_init(&b, 64);
    ss_jbuf_float(&b, -1.0 / 0.0);
    s = ss_jbuf_take(&b, &len);
    assert_string_equal(s, "-9999");
    ss_free(s);
}

static void test_consttime(void **state)
{
    (void)state;
    assert_true(ss_http_consttime_eq("secret", 6, "secret", 6));
    assert_false(ss_http_consttime_eq("secreT", 6, "secret", 6));
    assert_false(ss_http_consttime_eq("secret1", 7, "secret", 6));
    assert_false(ss_http_consttime_eq("", 0, "secret", 6));
    assert_false(ss_http_consttime_eq("secre", 5, "secret", 6));
}

/* logit_bias: parsed into distinct ids and values, for completions and chat; null and {} are none; more than
 * SS_MAX_LOGIT_BIAS entries are refused. */
static void test_logit_bias(void **state)
{
    (void)state;
    ss_api_request r;
    ss_api_error e;
    assert_int_equal(parse("{\"prompt\":\"x\",\"logit_bias\":{\"5\":100,\"0\":-100,\"999\":0.25}}", SS_API_COMPLETION, &r, &e), SS_OK);
    assert_int_equal(r.n_bias, 3);
    assert_int_equal(r.bias_ids[0], 5);
    assert_true(r.bias_vals[0] == 100.0f);
    assert_int_equal(r.bias_ids[1], 0);
    assert_true(r.bias_vals[1] == -100.0f);
    assert_int_equal(r.bias_ids[2], 999);
    assert_true(r.bias_vals[2] == 0.25f);
    ss_api_request_clear(&r);
    assert_int_equal(parse("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"logit_bias\":{\"42\":-3}}", SS_API_CHAT, &r, &e), SS_OK);
    assert_int_equal(r.n_bias, 1);
    assert_int_equal(r.bias_ids[0], 42);
    assert_true(r.bias_vals[0] == -3.0f);
    ss_api_request_clear(&r);
    static const char *const none[] = {"{\"prompt\":\"x\",\"logit_bias\":null}", "{\"prompt\":\"x\",\"logit_bias\":{}}"};
    for (int i = 0; i < 2; i++) {
        assert_int_equal(parse(none[i], SS_API_COMPLETION, &r, &e), SS_OK);
        assert_int_equal(r.n_bias, 0);
        assert_null(r.bias_ids);
        ss_api_request_clear(&r);
    }
    /* SS_MAX_LOGIT_BIAS + 1 entries (ids 0..1024 need a larger vocabulary than LIM's) */
    char *big = malloc(64 + (SS_MAX_LOGIT_BIAS + 1) * 12);
    assert_non_null(big);
    size_t o = (size_t)sprintf(big, "{\"prompt\":\"x\",\"logit_bias\":{");
    for (int i = 0; i <= SS_MAX_LOGIT_BIAS; i++)
        o += (size_t)sprintf(big + o, "%s\"%d\":1", i ? "," : "", i);
    strcpy(big + o, "}}");
    const ss_api_limits wide = {.max_context = 2048, .vocab_size = 5000, .max_n = 4};
    assert_int_equal(ss_api_openai_parse(big, strlen(big), SS_API_COMPLETION, &wide, &r, &e), SS_ERR_INVALID_ARG);
    assert_int_equal(e.http_status, 400);
    assert_string_equal(e.message, "'logit_bias' has 1025 entries, at most 1024 are allowed");
    free(big);
}

static void test_default_model_name(void **state)
{
    (void)state;
    static const char *const cases[][2] = {
        {"/models/Meta-Llama-3-8B/", "meta-llama-3-8b"}, {"shardserve-demo", "shardserve-demo"}, {"/", "model"}, {"", "model"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *n = ss_api_default_model_name(cases[i][0]);
        assert_non_null(n);
        assert_string_equal(n, cases[i][1]);
        ss_free(n);
    }
}

/* Function calling with a template that takes tools (JSON format): tools kept for the template, a forced call turned
 * into JSON mode, misuse refused; calls in the response and in a stream chunk, byte for byte. */
static void test_tools(void **state)
{
    (void)state;
    const ss_api_limits lim = {.max_context = 2048, .vocab_size = 1000, .max_n = 4, .tool_format = SS_TOOL_FORMAT_JSON};
    const char *tools = "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"now\"}}]";
    char body[1024];
    ss_api_request r;
    ss_api_error e;
    snprintf(body, sizeof body,
             "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"},{\"role\":\"assistant\",\"tool_calls\":[{\"id\":"
             "\"c\",\"function\":{\"name\":\"now\",\"arguments\":\"{\\\"a\\\":1}\"}}]}],%s}",
             tools);
    assert_int_equal(ss_api_openai_parse(body, strlen(body), SS_API_CHAT, &lim, &r, &e), SS_OK);
    assert_int_equal(r.tool_choice, SS_TOOL_CHOICE_AUTO);
    assert_non_null(r.tools);
    assert_false(r.json_mode);
    assert_int_equal(r.parallel_tool_calls, 1);
    const cJSON *args = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(
            cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(r.messages, 1), "tool_calls"), 0),
            "function"),
        "arguments");
    assert_true(cJSON_IsObject(args)); /* the JSON text became the object templates read */
    ss_api_request_clear(&r);
    snprintf(body, sizeof body,
             "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],%s,\"tool_choice\":{\"type\":\"function\","
             "\"function\":{\"name\":\"now\"}},\"parallel_tool_calls\":false}",
             tools);
    assert_int_equal(ss_api_openai_parse(body, strlen(body), SS_API_CHAT, &lim, &r, &e), SS_OK);
    assert_int_equal(r.tool_choice, SS_TOOL_CHOICE_NAMED);
    assert_true(r.json_mode && r.json_schema);
    assert_int_equal(r.parallel_tool_calls, 0);
    ss_api_request_clear(&r);
    static const char *const bad[][3] = {
        {",\"tool_choice\":\"required\",\"response_format\":{\"type\":\"json_object\"}", "tool_choice",
         "'tool_choice' \"required\" and a JSON response format both given"},
        {",\"stream\":true,\"logprobs\":true", "logprobs", "'logprobs' in a stream with 'tools' is not supported"},
        {",\"tool_choice\":\"required\",\"min_tokens\":3", "min_tokens",
         "'min_tokens' cannot be combined with a forced tool call"},
        {",\"parallel_tool_calls\":1", "parallel_tool_calls", "'parallel_tool_calls' must be a boolean"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(body, sizeof body, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],%s%s}", tools, bad[i][0]);
        assert_int_equal(ss_api_openai_parse(body, strlen(body), SS_API_CHAT, &lim, &r, &e), SS_ERR_INVALID_ARG);
        assert_int_equal(e.http_status, 400);
        assert_string_equal(e.param, bad[i][1]);
        assert_string_equal(e.message, bad[i][2]);
    }
    /* the response: content null, the call with an id from the response's, finish_reason tool_calls */
    ss_api_choice c;
    memset(&c, 0, sizeof c);
    assert_int_equal(ss_api_choice_append_text(&c, "{\"name\":\"now\"}", 14, 100), SS_OK);
    c.finish = 1;
    c.calls.n = 1;
    c.calls.calls = ss_malloc(sizeof *c.calls.calls);
    c.calls.calls[0] = (ss_tool_call){.name = ss_strdup("now"), .arguments = ss_strdup("{\"a\":1}")};
    ss_tool_calls_name(&c.calls, SS_TOOL_FORMAT_JSON, "chatcmpl-abc", 0);
    ss_api_resp_meta m = {SS_API_CHAT, "chatcmpl-abc", 1700000000, "tiny", 0, 0};
    size_t len;
    char *j = ss_api_openai_response_json(&m, &c, 1, NULL, &len);
    assert_string_equal(j, "{\"id\":\"chatcmpl-abc\",\"object\":\"chat.completion\",\"created\":1700000000,\"model\":"
                           "\"tiny\",\"system_fingerprint\":null,\"choices\":[{\"index\":0,\"message\":{\"role\":"
                           "\"assistant\",\"content\":null,\"tool_calls\":[{\"index\":0,\"id\":\"call_abc_0_0\",\"type\":"
                           "\"function\",\"function\":{\"name\":\"now\",\"arguments\":\"{\\\"a\\\":1}\"}}]},"
                           "\"logprobs\":null,\"finish_reason\":\"tool_calls\"}],\"usage\":{\"prompt_tokens\":0,"
                           "\"completion_tokens\":0,\"total_tokens\":0,"
                           "\"prompt_tokens_details\":{\"cached_tokens\":0}}}");
    ss_free(j);
    /* streamed: a call's start (id, name, arguments ""), pieces of its arguments, the last chunk */
    ss_tool_event ev = {SS_TOOL_EVENT_CALL, 1, "call_abc_0_1", "now", NULL, 0};
    j = ss_api_openai_tool_chunk_json(&m, 2, &ev, &len);
    assert_string_equal(j, "{\"id\":\"chatcmpl-abc\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,"
                           "\"model\":\"tiny\",\"system_fingerprint\":null,\"choices\":[{\"index\":2,\"delta\":{"
                           "\"tool_calls\":[{\"index\":1,\"id\":\"call_abc_0_1\",\"type\":\"function\",\"function\":{"
                           "\"name\":\"now\",\"arguments\":\"\"}}]},\"logprobs\":null,\"finish_reason\":null}]}");
    assert_int_equal(len, strlen(j));
    ss_free(j);
    ev = (ss_tool_event){SS_TOOL_EVENT_ARGS, 1, NULL, NULL, "{\"a\":\"\xc3\xa9\n", 9};
    j = ss_api_openai_tool_chunk_json(&m, 0, &ev, &len);
    assert_string_equal(j, "{\"id\":\"chatcmpl-abc\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,"
                           "\"model\":\"tiny\",\"system_fingerprint\":null,\"choices\":[{\"index\":0,\"delta\":{"
                           "\"tool_calls\":[{\"index\":1,\"function\":{\"arguments\":\"{\\\"a\\\":\\\"\xc3\xa9\\n\"}}]},"
                           "\"logprobs\":null,\"finish_reason\":null}]}");
    ss_free(j);
    j = ss_api_openai_tool_chunk_json(&m, 0, NULL, &len);
    assert_string_equal(j, "{\"id\":\"chatcmpl-abc\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,"
                           "\"model\":\"tiny\",\"system_fingerprint\":null,\"choices\":[{\"index\":0,\"delta\":{},"
                           "\"logprobs\":null,\"finish_reason\":\"tool_calls\"}]}");
    ss_free(j);
    ss_api_choice_clear(&c);
}

static void test_parse_under_alloc_failures(void **state)
{
    (void)state;
    const char *body = "{\"model\":\"m\",\"prompt\":[1,2,3],\"stop\":[\"a\",\"b\"],\"stop_token_ids\":[4],\"n\":2,"
                       "\"logit_bias\":{\"7\":1.5}}";
    for (long k = 0; k < 40; k++) {
        ss_api_request r;
        ss_api_error e;
        ss_alloc_fail_after(k);
        ss_status st = ss_api_openai_parse(body, strlen(body), SS_API_COMPLETION, &LIM, &r, &e);
        ss_alloc_fail_after(-1);
        if (st == SS_OK)
            ss_api_request_clear(&r);
        else
            assert_int_equal(e.http_status, 500);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_completion_full),
        cmocka_unit_test(test_completion_defaults_and_prompt_forms),
        cmocka_unit_test(test_chat_parse),
        cmocka_unit_test(test_bad_matrix),
        cmocka_unit_test(test_error_json),
        cmocka_unit_test(test_completion_response),
        cmocka_unit_test(test_text_offset_characters),
        cmocka_unit_test(test_chunks),
        cmocka_unit_test(test_tokenize_bodies),
        cmocka_unit_test(test_jbuf),
        cmocka_unit_test(test_consttime),
        cmocka_unit_test(test_parse_under_alloc_failures),
        cmocka_unit_test(test_logit_bias),
        cmocka_unit_test(test_default_model_name),
        cmocka_unit_test(test_tools),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
