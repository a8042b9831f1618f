/* fuzz_api.c — libFuzzer target over the HTTP API parsers: the first byte picks completions, chat,
 * Triton generate, tokenize or detokenize (and the model's function-call format); the rest is the request body.
 * Every input must give SS_OK or a 4xx/5xx error with a message, never a crash or leak; accepted requests also build
 * responses, and a chat request with tools has the body itself parsed as an answer holding calls. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/alloc.h"
#include "serve/api_openai.h"
#include "serve/api_triton.h"
#include "serve/sse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const ss_api_limits lim = {.max_context = 4096, .vocab_size = 128256, .max_n = 8,
                               .tool_format = (ss_tool_format)((data[0] >> 4) % 4)};
    const char *body = (const char *)data + 1;
    size_t len = size - 1;
    ss_api_error e;
    ss_api_request r;
    ss_status st = SS_OK;
    switch (data[0] % 5) {
    case 0: st = ss_api_openai_parse(body, len, SS_API_COMPLETION, &lim, &r, &e); break;
    case 1: st = ss_api_openai_parse(body, len, SS_API_CHAT, &lim, &r, &e); break;
    case 2: st = ss_api_triton_parse(body, len, data[0] & 8, &lim, &r, &e); break;
    case 3: {
        char *prompt = NULL;
        int add = 0;
        if (ss_api_tokenize_parse(body, len, &prompt, &add, &e) == SS_OK)
            ss_free(prompt);
        return 0;
    }
    default: {
        int32_t *ids = NULL, n = 0;
        if (ss_api_detokenize_parse(body, len, &lim, &ids, &n, &e) == SS_OK)
            ss_free(ids);
        return 0;
    }
    }
    if (st != SS_OK) {
        if (e.http_status < 400 || e.message[0] == '\0')
            __builtin_trap();
        size_t jl;
        ss_free(ss_api_error_openai_json(&e, &jl));
        return 0;
    }
    /* Build a response from the parsed request's own strings. */
    ss_api_choice c;
    memset(&c, 0, sizeof c);
    const char *t = r.prompt ? r.prompt : "x";
    if (r.tools) { /* the body as the answer: its calls */
        int hold = 0, plain = 0, forced = r.tool_choice == SS_TOOL_CHOICE_REQUIRED || r.tool_choice == SS_TOOL_CHOICE_NAMED;
        ss_api_choice_append_text(&c, body, len, 1 << 20);
        if (ss_tool_stream_sendable(lim.tool_format, forced, c.text, c.text_len, &hold, &plain) > c.text_len)
            __builtin_trap();
        if (ss_tool_calls_parse(lim.tool_format, forced, c.text, c.text_len, r.tools, r.parallel_tool_calls ? 64 : 1,
                                &c.calls) != SS_OK)
            __builtin_trap();
        ss_tool_calls_name(&c.calls, lim.tool_format, "chatcmpl-0123", 1);
    } else {
        ss_api_choice_append_text(&c, t, strlen(t), 1 << 20);
    }
    ss_api_resp_meta m = {r.kind == SS_API_CHAT ? SS_API_CHAT : SS_API_COMPLETION, "id", 1, t, r.logprobs,
                          r.top_logprobs};
    size_t jl;
    ss_free(ss_api_openai_response_json(&m, &c, 1, NULL, &jl));
    if (c.calls.n > 0)
        ss_free(ss_api_openai_tool_chunk_json(&m, 0, &c.calls, &jl));
    char *chunk = ss_api_openai_chunk_json(&m, 0, t, strlen(t), NULL, 1, 1, NULL, NULL, &jl);
    if (chunk) {
        ss_jbuf b;
        ss_jbuf_init(&b, (size_t)1 << 24);
        ss_sse_event(&b, chunk, jl);
        ss_jbuf_free(&b);
        ss_free(chunk);
    }
    ss_free(ss_api_triton_response_json(t, &c, 1, &jl));
    ss_api_choice_clear(&c);
    ss_api_request_clear(&r);
    return 0;
}
