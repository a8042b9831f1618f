/* api_openai.h — the OpenAI-compatible API as pure functions: request bodies of /v1/completions and
 * /v1/chat/completions into ss_api_request (or a 400 naming the field), results into response JSON,
 * stream chunks, /v1/models, /tokenize and /detokenize bodies. */
#ifndef SS_API_OPENAI_H
#define SS_API_OPENAI_H

#include "serve/api_common.h"
#include "serve/tool_stream.h"

/* Parses a completions (kind SS_API_COMPLETION) or chat (SS_API_CHAT) body. out is initialized here;
 * on error it is cleared and e says why (status 400, param = field). */
ss_status ss_api_openai_parse(const char *body, size_t len, ss_api_kind kind, const ss_api_limits *lim,
                              ss_api_request *out, ss_api_error *e);

/* What every response of one request repeats. Borrowed strings. */
typedef struct ss_api_resp_meta {
    ss_api_kind kind;      /* SS_API_COMPLETION or SS_API_CHAT */
    const char *id;        /* "cmpl-…" / "chatcmpl-…" */
    int64_t created;       /* unix seconds */
    const char *model;     /* served model name */
    int logprobs;          /* request's logprobs (int for completions, bool for chat) */
    int32_t top_logprobs;  /* top entries per token to print */
} ss_api_resp_meta;

/* A position in a completion's text for legacy completions' logprobs.text_offset: offsets count Unicode code
 * points (characters) of the concatenated token texts, as OpenAI and vLLM do, not bytes. A character whose
 * bytes are split across tokens counts once its last byte arrives: a token that begins inside it gets the
 * offset of that character. Invalid UTF-8 counts as the JSON writer shows it, one U+FFFD per byte (a
 * sequence cut short by the next token included). Zero-initialize at the completion's start (offsets start
 * at 0: there is no echo of the prompt). */
typedef struct ss_api_text_pos {
    int64_t chars;         /* characters complete so far */
    unsigned char pend[4]; /* the first bytes of a character not complete yet */
    uint8_t n_pend;        /* how many of them */
} ss_api_text_pos;

/* Moves pos past the n bytes of one token's text; returns the token's text_offset. */
int64_t ss_api_text_pos_advance(ss_api_text_pos *pos, const char *s, size_t n);

/* Writes "cmpl-<32 hex>" or "chatcmpl-<32 hex>" from a caller-supplied 128-bit value. buf >= 48. */
void ss_api_openai_make_id(ss_api_kind kind, uint64_t a, uint64_t b, char *buf, size_t cap);

/* Whole (non-stream) response for n choices, with usage. Caller ss_frees; NULL on no memory. */
char *ss_api_openai_response_json(const ss_api_resp_meta *m, const ss_api_choice *choices, int32_t n,
                                  const ss_api_vocab *vocab, size_t *len);
/* One stream chunk for choice `index`: text piece (may be empty), optional token logprob entry (NULL
 * when none), finish reason (0 = not finished), first = 1 adds the chat role delta. pos: the choice's
 * position so far (completions' text_offset), advanced past lp's token; NULL counts from 0. Caller ss_frees. */
char *ss_api_openai_chunk_json(const ss_api_resp_meta *m, int32_t index, const char *text, size_t text_len,
                               const ss_api_token_lp *lp, int finish, int first, const ss_api_vocab *vocab,
                               ss_api_text_pos *pos, size_t *len);
/* A chat stream's chunk for choice `index` of a call event (serve/tool_stream.h): CALL: delta.tool_calls = [{"index",
 * "id", "type": "function", "function": {"name", "arguments": ""}}]; ARGS: [{"index", "function": {"arguments":
 * piece}}]; ev NULL: the last chunk of an answer that was calls, an empty delta with finish_reason "tool_calls".
 * (CONTENT events go as ss_api_openai_chunk_json's.) Caller ss_frees. */
char *ss_api_openai_tool_chunk_json(const ss_api_resp_meta *m, int32_t index, const ss_tool_event *ev, size_t *len);
/* The final usage chunk of stream_options.include_usage (choices: []). Caller ss_frees. */
char *ss_api_openai_usage_chunk_json(const ss_api_resp_meta *m, int32_t prompt_tokens,
                                     int32_t completion_tokens, int32_t cached_tokens, size_t *len);
/* What GET /v1/models says of the served model (name borrowed). */
typedef struct ss_api_model_card {
    const char *name;
    int64_t created;       /* unix seconds */
    int32_t max_model_len; /* tokens of context a request may use; 0 while loading (both fields are left out) */
    int32_t vocab_size;    /* valid token ids are [0, vocab_size) */
} ss_api_model_card;

/* GET /v1/models. Caller ss_frees. */
char *ss_api_openai_models_json(const ss_api_model_card *m, size_t *len);
/* GET /v1/models/{model}: the one model object. Caller ss_frees. */
char *ss_api_openai_model_json(const ss_api_model_card *m, size_t *len);

/* POST /tokenize {"prompt": "...", "add_special_tokens": bool} (default true). *prompt ss_malloc'd. */
ss_status ss_api_tokenize_parse(const char *body, size_t len, char **prompt, int *add_special, ss_api_error *e);
char *ss_api_tokenize_json(const int32_t *ids, int32_t n, int32_t max_model_len, size_t *len);
/* POST /detokenize {"tokens": [ids]}. *ids ss_malloc'd. */
ss_status ss_api_detokenize_parse(const char *body, size_t len, const ss_api_limits *lim, int32_t **ids,
                                  int32_t *n, ss_api_error *e);
char *ss_api_detokenize_json(const char *text, size_t text_len, size_t *len);

#endif
