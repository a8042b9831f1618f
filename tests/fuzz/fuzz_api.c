/* fuzz_api.c — libFuzzer target over the HTTP API parsers: the first byte picks completions, chat,
 * Triton generate, tokenize or detokenize (and the model's function-call format); the rest is the request body.
 * Every input must give SS_OK or a 4xx/5xx error with a message, never a crash or leak; accepted requests also build
 * responses, and a chat request with tools has the body itself parsed as an answer holding calls, and streamed (the
 * stream's calls and content must be the whole parse's, byte for byte). */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/alloc.h"
#include "serve/api_openai.h"
#include "serve/api_triton.h"
#include "serve/sse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* c's text streamed in pieces of 1 to 8 bytes (drawn from the text): the events' content and arguments must be what
 * the whole parse (c->calls) gives, byte for byte; the chunks are built. */
static void stream_calls(const ss_api_resp_meta *m, ss_tool_format fmt, int forced, const ss_api_request *r,
                         const ss_api_choice *c)
{
    ss_tool_stream_params p = ss_tool_stream_default_params();
    p.fmt = fmt;
    p.forced = forced;
    p.tools = r->tools;
    p.max_calls = r->parallel_tool_calls ? 64 : 1;
    p.response_id = "chatcmpl-0123";
    p.choice = 1;
    ss_tool_stream *ts = NULL;
    if (ss_tool_stream_create(&p, &ts) != SS_OK)
        return;
    ss_jbuf content, args;
    ss_jbuf_init(&content, (size_t)1 << 24);
    ss_jbuf_init(&args, (size_t)1 << 24);
    int32_t calls = 0, args_of = -1;
    uint32_t h = 2166136261u;
    ss_tool_outcome out = SS_TOOL_OUTCOME_OPEN;
    for (size_t i = 0, n = 0; i <= c->text_len; i += n) {
        ss_status st;
        if (i < c->text_len) {
            h = (h ^ (uint8_t)c->text[i]) * 16777619u;
            n = 1 + (h >> 7) % 8;
            n = n < c->text_len - i ? n : c->text_len - i;
            st = ss_tool_stream_feed(ts, c->text + i, n);
        } else {
            n = 1;
            st = ss_tool_stream_finish(ts, &out);
        }
        if (st != SS_OK)
            __builtin_trap();
        ss_tool_event ev;
        while (ss_tool_stream_next(ts, &ev)) {
            size_t jl;
            if (ev.kind == SS_TOOL_EVENT_CONTENT) {
                ss_jbuf_raw(&content, ev.text, ev.len);
                continue;
            }
            if (ev.kind == SS_TOOL_EVENT_CALL) { /* the calls in order; each one's arguments compared when it ends */
                if (ev.index != calls++ || (args_of >= 0 && args_of < c->calls.n &&
                                            strcmp(args.data ? args.data : "", c->calls.calls[args_of].arguments)))
                    __builtin_trap();
                args.len = 0;
                if (args.data)
                    args.data[0] = '\0';
                args_of = ev.index;
            } else {
                if (ev.index != args_of)
                    __builtin_trap();
                ss_jbuf_raw(&args, ev.text, ev.len);
            }
            ss_free(ss_api_openai_tool_chunk_json(m, 1, &ev, &jl));
        }
    }
    /* the whole parse has the last word: calls stream as calls, exactly; otherwise all of it is content */
    if ((out == SS_TOOL_OUTCOME_CALLS) != (c->calls.n > 0))
        __builtin_trap();
    if (out == SS_TOOL_OUTCOME_CALLS) {
        if (calls != c->calls.n || content.len != c->calls.content_len ||
            memcmp(content.data ? content.data : "", c->text, content.len) ||
            strcmp(args.data ? args.data : "", c->calls.calls[c->calls.n - 1].arguments))
            __builtin_trap();
    } else if (content.len != c->text_len || memcmp(content.data ? content.data : "", c->text, c->text_len) ||
               (out == SS_TOOL_OUTCOME_BROKEN) != (calls > 0)) {
        __builtin_trap();
    }
    size_t jl;
    ss_free(ss_api_openai_tool_chunk_json(m, 1, NULL, &jl));
    ss_jbuf_free(&content);
    ss_jbuf_free(&args);
    ss_tool_stream_destroy(ts);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const ss_api_limits lim = {.max_context = 4096, .vocab_size = 128256, .max_n = 8,
                               .tool_format = (ss_tool_format)((data[0] >> 4) % 6)};
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
    if (r.tools) { /* the body as the answer: its calls, parsed whole and streamed in pieces */
        int forced = r.tool_choice == SS_TOOL_CHOICE_REQUIRED || r.tool_choice == SS_TOOL_CHOICE_NAMED;
        ss_api_choice_append_text(&c, body, len, 1 << 20);
        if (ss_tool_calls_parse(lim.tool_format, forced, c.text, c.text_len, r.tools, r.parallel_tool_calls ? 64 : 1,
                                &c.calls) != SS_OK)
            __builtin_trap();
        ss_tool_calls_name(&c.calls, lim.tool_format, "chatcmpl-0123", 1);
        ss_api_resp_meta cm = {SS_API_CHAT, "id", 1, "m", 0, 0};
        stream_calls(&cm, lim.tool_format, forced, &r, &c);
    } else {
        ss_api_choice_append_text(&c, t, strlen(t), 1 << 20);
    }
    ss_api_resp_meta m = {r.kind == SS_API_CHAT ? SS_API_CHAT : SS_API_COMPLETION, "id", 1, t, r.logprobs,
                          r.top_logprobs};
    size_t jl;
    ss_free(ss_api_openai_response_json(&m, &c, 1, NULL, &jl));
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
