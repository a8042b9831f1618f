/* test_api_triton.c — Triton/KServe v2 generate parsing (top level and "parameters", bad bodies with
 * exact messages), response and stream-chunk JSON, metadata documents, SSE framing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "core/alloc.h"
#include "serve/api_triton.h"
#include "serve/sse.h"

static const ss_api_limits LIM = {.max_context = 512, .vocab_size = 1000, .max_n = 4};

static ss_status parse(const char *body, int stream, ss_api_request *r, ss_api_error *e)
{
    memset(e, 0, sizeof *e);
    return ss_api_triton_parse(body, strlen(body), stream, &LIM, r, e);
}

static void test_fields_top_level(void **state)
{
    (void)state;
    ss_api_request r;
    ss_api_error e;
    const char *body = "{\"text_input\":\"What is ML?\",\"max_tokens\":20,\"temperature\":0.5,\"top_k\":5,\"top_p\":0.8,"
                       "\"random_seed\":11,\"stop_words\":[\"\\n\\n\",\"END\"],\"bad_words\":[\"foo\"],\"end_id\":2,"
                       "\"min_length\":3,\"repetition_penalty\":1.2,\"presence_penalty\":0.1,\"frequency_penalty\":0.2,"
                       "\"return_log_probs\":true,\"pad_id\":0,\"beam_width\":1}";
    assert_int_equal(parse(body, 0, &r, &e), SS_OK);
    assert_int_equal(r.kind, SS_API_TRITON);
    assert_string_equal(r.prompt, "What is ML?");
    assert_int_equal(r.max_tokens, 20);
    assert_true(r.sp.temperature == 0.5f);
    assert_int_equal(r.sp.top_k, 5);
    assert_true(r.sp.top_p > 0.79f && r.sp.top_p < 0.81f);
    assert_int_equal(r.sp.seed, 11);
    assert_true(r.seed_given);
    assert_int_equal(r.n_stop, 2);
    assert_string_equal(r.stop[0], "\n\n");
    assert_int_equal(r.n_bad_words, 1);
    assert_string_equal(r.bad_words[0], "foo");
    assert_int_equal(r.n_stop_ids, 1);
    assert_int_equal(r.stop_ids[0], 2);
    assert_int_equal(r.min_tokens, 3);
    assert_true(r.sp.repetition_penalty > 1.19f && r.sp.repetition_penalty < 1.21f);
    assert_true(r.return_log_probs);
    assert_false(r.stream);
    ss_api_request_clear(&r);
}

static void test_fields_in_parameters(void **state)
{
    (void)state;
    ss_api_request r;
    ss_api_error e;
    const char *body = "{\"text_input\":\"hi\",\"parameters\":{\"max_tokens\":7,\"temperature\":1.0,\"top_p\":0,"
                       "\"stream\":false,\"stop_words\":\"x\"}}";
    assert_int_equal(parse(body, 1, &r, &e), SS_OK);
    assert_int_equal(r.max_tokens, 7);
    assert_true(r.sp.temperature == 1.0f);
    assert_true(r.sp.top_p == 1.0f); /* 0 = off, as TensorRT-LLM clients send it */
    assert_true(r.stream);            /* generate_stream forces streaming */
    assert_int_equal(r.n_stop, 1);
    ss_api_request_clear(&r);
    assert_int_equal(parse("{\"text_input\":\"hi\"}", 0, &r, &e), SS_OK);
    assert_int_equal(r.max_tokens, 16);
    assert_false(r.json_mode);
    ss_api_request_clear(&r);
    /* TensorRT-LLM's guided decoding: json, and json_schema with the schema as a JSON text */
    assert_int_equal(parse("{\"text_input\":\"hi\",\"guided_decoding_guide_type\":\"json\"}", 0, &r, &e), SS_OK);
    assert_true(r.json_mode);
    assert_null(r.json_schema);
    ss_api_request_clear(&r);
    assert_int_equal(parse("{\"text_input\":\"hi\",\"parameters\":{\"guided_decoding_guide_type\":\"json_schema\","
                           "\"guided_decoding_guide\":\"{\\\"properties\\\":{\\\"a\\\":{\\\"type\\\":\\\"null\\\"}}}\"}}",
                           0, &r, &e),
                     SS_OK);
    assert_true(r.json_mode);
    assert_non_null(r.json_schema);
    const ss_json_node *root = ss_json_schema_node(r.json_schema, ss_json_schema_root(r.json_schema));
    assert_int_equal(root->n_props, 1);
    ss_api_request_clear(&r);
}

static void test_bad_bodies(void **state)
{
    (void)state;
    static const struct {
        const char *body, *param, *message;
    } cases[] = {
        {"nope", "", "malformed JSON in request body near byte 0"},
        {"\"x\"", "", "request body must be a JSON object"},
        {"{\"text_input\":\"x\",\"parameters\":{\"max_tokens\":2,\"max_tokens\":3}}", "max_tokens",
         "malformed request: the key 'max_tokens' occurs twice"},
        {"{\"text_input\":\"x\"},", "", "malformed JSON in request body: unexpected data after the object at byte 18"},
        {"{}", "text_input", "'text_input' is required"},
        {"{\"text_input\":\"\"}", "text_input", "'text_input' must not be empty"},
        {"{\"text_input\":3}", "text_input", "'text_input' must be a string"},
        {"{\"text_input\":\"x\",\"parameters\":5}", "parameters", "'parameters' must be an object"},
        {"{\"text_input\":\"x\",\"max_tokens\":0}", "max_tokens", "'max_tokens' must be at least 1 (got 0)"},
        {"{\"text_input\":\"x\",\"max_tokens\":513}", "max_tokens", "'max_tokens' is 513, more than the context length 512"},
        {"{\"text_input\":\"x\",\"parameters\":{\"max_tokens\":\"9\"}}", "max_tokens", "'max_tokens' must be an integer"},
        {"{\"text_input\":\"x\",\"temperature\":-1}", "temperature", "'temperature' must be in [0, 100] (got -1)"},
        {"{\"text_input\":\"x\",\"top_p\":1.1}", "top_p", "'top_p' must be in [0, 1] (got 1.1)"},
        {"{\"text_input\":\"x\",\"top_k\":-1}", "top_k", "'top_k' must be in [0, 1000] (got -1)"},
        {"{\"text_input\":\"x\",\"end_id\":1000}", "end_id", "'end_id' must be a token id in [0, 1000)"},
        {"{\"text_input\":\"x\",\"beam_width\":2}", "beam_width", "'beam_width' must be in [1, 1] (got 2)"},
        {"{\"text_input\":\"x\",\"stop_words\":[1]}", "stop_words", "'stop_words' must be a string or a list of strings"},
        {"{\"text_input\":\"x\",\"bad_words\":{}}", "bad_words", "'bad_words' must be a string or a list of strings"},
        {"{\"text_input\":\"x\",\"return_log_probs\":1}", "return_log_probs", "'return_log_probs' must be a boolean"},
        {"{\"text_input\":\"x\",\"max_tokens\":4,\"min_length\":5}", "min_length", "'min_length' must be in [0, 4] (got 5)"},
        {"{\"text_input\":\"x\",\"guided_decoding_guide_type\":\"regex\",\"guided_decoding_guide\":\"a+\"}",
         "guided_decoding_guide_type", "'guided_decoding_guide_type' 'regex' is not supported (json or json_schema)"},
        {"{\"text_input\":\"x\",\"guided_decoding_guide_type\":\"json_schema\"}", "guided_decoding_guide",
         "'guided_decoding_guide' must hold the JSON schema"},
        {"{\"text_input\":\"x\",\"guided_decoding_guide_type\":\"json_schema\",\"guided_decoding_guide\":\"{\\\"type\\\":"
         "\\\"string\\\"}\"}",
         "guided_decoding_guide", "JSON schema: the top level must describe an object (\"type\": \"object\")"},
        {"{\"text_input\":\"x\",\"min_length\":2,\"guided_decoding_guide_type\":\"json\"}", "min_length",
         "'min_length' cannot be combined with JSON mode, which ends when the object closes"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ss_api_request r;
        ss_api_error e;
        ss_status st = parse(cases[i].body, 0, &r, &e);
        if (st == SS_OK || strcmp(e.message, cases[i].message) != 0)
            print_error("case %zu (%s): got '%s'\n", i, cases[i].body, e.message);
        assert_int_equal(st, SS_ERR_INVALID_ARG);
        assert_int_equal(e.http_status, 400);
        assert_string_equal(e.param, cases[i].param);
        assert_string_equal(e.message, cases[i].message);
        assert_null(r.prompt);
        assert_null(r.bad_words);
    }
}

static void test_responses(void **state)
{
    (void)state;
    ss_api_choice c;
    memset(&c, 0, sizeof c);
    assert_int_equal(ss_api_choice_append_text(&c, "Machine learning", 16, 1000), SS_OK);
    assert_int_equal(ss_api_choice_append_lp(&c, 5, -0.5f, 0, NULL, NULL), SS_OK);
    assert_int_equal(ss_api_choice_append_lp(&c, 6, -1.25f, 0, NULL, NULL), SS_OK);
    size_t len;
    char *j = ss_api_triton_response_json("llama", &c, 0, &len);
    assert_string_equal(j, "{\"model_name\":\"llama\",\"model_version\":\"1\",\"text_output\":\"Machine learning\"}");
    ss_free(j);
    j = ss_api_triton_response_json("llama", &c, 1, &len);
    assert_string_equal(j, "{\"model_name\":\"llama\",\"model_version\":\"1\",\"text_output\":\"Machine learning\","
                           "\"output_log_probs\":[-0.5,-1.25],\"cum_log_probs\":-1.75}");
    ss_free(j);
    ss_api_choice_clear(&c);
    ss_api_token_lp lp = {.token = 5, .logprob = -0.5f};
    j = ss_api_triton_chunk_json("llama", " ML", 3, &lp, -2.5, 1, &len);
    assert_string_equal(j, "{\"model_name\":\"llama\",\"model_version\":\"1\",\"text_output\":\" ML\","
                           "\"output_log_probs\":[-0.5],\"cum_log_probs\":-2.5}");
    ss_free(j);
    j = ss_api_triton_server_json("0.1.0", &len);
    assert_string_equal(j, "{\"name\":\"shardserve\",\"version\":\"0.1.0\",\"extensions\":[\"generate\","
                           "\"generate_stream\"]}");
    ss_free(j);
    j = ss_api_triton_model_json("llama", &len);
    assert_non_null(strstr(j, "{\"name\":\"llama\",\"versions\":[\"1\"],\"platform\":\"shardserve\","));
    ss_free(j);
}

static void test_sse(void **state)
{
    (void)state;
    ss_jbuf b;
    ss_jbuf_init(&b, 1024);
    ss_sse_event(&b, "{\"a\":1}", 7);
    ss_sse_event(&b, "x\ny\r\nz", 6);
    ss_sse_event(&b, "", 0);
    ss_sse_done(&b);
    size_t len;
    char *s = ss_jbuf_take(&b, &len);
    assert_string_equal(s, "data: {\"a\":1}\n\ndata: x\ndata: y\ndata: z\n\ndata: \n\ndata: [DONE]\n\n");
    assert_int_equal(len, strlen(s));
    ss_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fields_top_level),
        cmocka_unit_test(test_fields_in_parameters),
        cmocka_unit_test(test_bad_bodies),
        cmocka_unit_test(test_responses),
        cmocka_unit_test(test_sse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
