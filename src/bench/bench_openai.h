/* bench_openai.h — the OpenAI-compatible wire format as `shardserve bench` speaks it: the streaming
 * /v1/completions request body, and the JSON of one streamed chunk parsed into a C struct. */
#ifndef SS_BENCH_OPENAI_H
#define SS_BENCH_OPENAI_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

typedef struct ss_bench_body_params {
    const char *model;         /* borrowed; required */
    const int64_t *prompt_ids; /* [n_prompt_ids] borrowed; used when prompt_text is NULL */
    size_t n_prompt_ids;
    const char *prompt_text; /* borrowed; a text prompt instead of ids, or NULL */
    int64_t max_tokens;
    double temperature;
    int ignore_eos; /* send vLLM's "ignore_eos": true, so every request runs to max_tokens */
    const char *extra_body; /* borrowed; JSON text of an object whose members are set in every body, or NULL */
} ss_bench_body_params;

/* Checks that text is the JSON text of one object (--extra-body) without "stream" or "stream_options" (the
 * measurement needs them as bench sets them); SS_ERR_INVALID_ARG saying why. */
ss_status ss_bench_extra_body_check(const char *text, ss_err *err);

/* Builds {"model", "prompt", "max_tokens", "temperature", "stream": true,
 * "stream_options": {"include_usage": true}[, "ignore_eos": true]}, then each member of extra_body set in it
 * (replacing a field of the same name: extra_body has the last word). *out (NUL-terminated, *out_len
 * bytes) is owned by the caller (ss_free). */
ss_status ss_bench_body_build(const ss_bench_body_params *p, char **out, size_t *out_len, ss_err *err);

/* One streamed event's payload, parsed. */
typedef struct ss_bench_chunk {
    int done;                  /* the "[DONE]" sentinel */
    int has_choice;            /* choices[] is non-empty: the chunk carries generated output */
    size_t text_len;           /* bytes of choices[0].text (or choices[0].delta.content for chat) */
    int has_usage;             /* a non-null "usage" object */
    int64_t prompt_tokens;     /* usage.prompt_tokens (-1 when absent) */
    int64_t completion_tokens; /* usage.completion_tokens (-1 when absent) */
    int is_error;              /* the server streamed {"error": ...} */
    char error[256];           /* its message, truncated */
    char finish_reason[32];    /* choices[0].finish_reason, "" when null/absent */
} ss_bench_chunk;

/* Parses data (len bytes) of one SSE event. SS_ERR_FORMAT (err says why) for anything that is not
 * "[DONE]" or a JSON object of the chunk shape (choices an array, usage counts non-negative integers). */
ss_status ss_bench_chunk_parse(const char *data, size_t len, ss_bench_chunk *out, ss_err *err);

#endif
