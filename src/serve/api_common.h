/* api_common.h — what the HTTP API families share: the parsed generation request (JSON in, C out),
 * API errors with their HTTP status, a bounded JSON writer, and the per-choice result accumulator.
 * Pure functions: no sockets, no scheduler, so every parser and response builder is unit-testable. */
#ifndef SS_API_COMMON_H
#define SS_API_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "core/status.h"
#include "runner/step_plan.h"
#include "serve/json_schema.h"
#include "serve/tool_calls.h"

#define SS_API_MAX_STOP 16      /* equals SS_MAX_STOP_STRINGS of serve/sched.h */
#define SS_API_MAX_STOP_LEN 1024 /* bytes per stop string (SS_STOP_MAX_LEN of serve/stop.h) */
#define SS_API_MAX_BAD_WORDS 64
#define SS_API_MAX_STOP_IDS 64
#define SS_API_MAX_N 16
/* Smallest repetition_penalty both APIs take: logits are divided by it, and a float near zero (what a
 * tiny double becomes) would turn them into inf and the probabilities into NaN. */
#define SS_API_MIN_REPETITION_PENALTY 1e-6
#define SS_API_MAX_STRING (1u << 20) /* one stop/bad word string, model name */

/* ---- errors ---------------------------------------------------------------------------------- */

/* An error answered to the client. type is static ("invalid_request_error", ...); param names the
 * offending field ("" when none). */
typedef struct ss_api_error {
    int http_status;
    const char *type;
    char param[64];
    char message[512];
} ss_api_error;

/* Fills e and returns SS_ERR_INVALID_ARG (status 400 unless http_status says otherwise). */
ss_status ss_api_fail(ss_api_error *e, int http_status, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Parses a request body that must be one JSON object and nothing after it but white space, or fails with
 * 400 naming the byte where it went wrong. On success the caller owns *root (cJSON_Delete). */
ss_status ss_api_parse_object(const char *body, size_t len, cJSON **root, ss_api_error *e);


/* ---- bounded JSON writer ---------------------------------------------------------------------- */

/* A growable byte buffer with a hard cap; once an append fails, `failed` stays set and later appends
 * are no-ops, so builders check once at the end. Memory: data is ss_malloc'd, freed by ss_jbuf_free. */
typedef struct ss_jbuf {
    char *data;
    size_t len, cap, max;
    int failed;
} ss_jbuf;

void ss_jbuf_init(ss_jbuf *b, size_t max);
void ss_jbuf_free(ss_jbuf *b);
void ss_jbuf_raw(ss_jbuf *b, const char *s, size_t n);
void ss_jbuf_cstr(ss_jbuf *b, const char *s);              /* raw, NUL-terminated */
void ss_jbuf_printf(ss_jbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void ss_jbuf_str(ss_jbuf *b, const char *s, size_t n);     /* quoted + escaped JSON string */
void ss_jbuf_float(ss_jbuf *b, double v);                  /* finite JSON number (-inf -> -9999) */
/* Moves the text out (NUL-terminated, caller ss_frees) or NULL if an append failed. */
char *ss_jbuf_take(ss_jbuf *b, size_t *len);

/* {"error": {"message","type","param","code"}} (OpenAI) — caller ss_frees. */
char *ss_api_error_openai_json(const ss_api_error *e, size_t *len);
/* {"error": "..."} (Triton / KServe v2) — caller ss_frees. */
char *ss_api_error_triton_json(const ss_api_error *e, size_t *len);

/* ---- parsed request --------------------------------------------------------------------------- */

typedef enum ss_api_kind { SS_API_COMPLETION = 0, SS_API_CHAT, SS_API_TRITON } ss_api_kind;

/* What the model accepts, known once the replica is up. */
typedef struct ss_api_limits {
    int32_t max_context; /* context length in tokens: max_tokens and prompts must fit */
    int32_t vocab_size;  /* token ids in prompts, end ids must be below it */
    int32_t max_n;       /* default SS_API_MAX_N */
    const ss_sampling_params *defaults; /* the sampling of fields a request leaves out (borrowed); NULL:
                                         * ss_sampling_default(), greedy */
    ss_tool_format tool_format; /* how the model writes function calls (its chat template); NONE: no tools */
} ss_api_limits;

/* A generation request parsed from JSON, before tokenization. Everything is owned by the struct
 * (ss_api_request_clear frees it). max_tokens == 0 means "not given": chat then uses the rest of the
 * context; completions and Triton default to 16 when the parser sets it. */
typedef struct ss_api_request {
    ss_api_kind kind;
    char *model;                 /* requested model name, or NULL when absent */
    char *prompt;                /* text prompt (completion, triton), or NULL */
    int32_t *prompt_ids;         /* token-id prompt (completion), or NULL */
    int32_t n_prompt_ids;
    cJSON *messages;             /* chat: normalized messages array (content as strings), for the template */
    int32_t max_tokens;
    int32_t min_tokens;
    ss_sampling_params sp;
    int seed_given;
    int ignore_eos;
    int32_t *stop_ids;           /* Triton end_id / extension stop_token_ids */
    int32_t n_stop_ids;
    int32_t *bias_ids;           /* OpenAI logit_bias: distinct token ids and what to add to their logits */
    float *bias_vals;
    int32_t n_bias;
    char *stop[SS_API_MAX_STOP];
    int32_t n_stop;
    char **bad_words;            /* [n_bad_words] strings, tokenized by the server */
    int32_t n_bad_words;
    int32_t n;                   /* choices (OpenAI n) */
    int stream;
    int include_usage;           /* stream_options.include_usage */
    int logprobs;                /* completions: the integer; chat: the boolean */
    int32_t top_logprobs;        /* chat's top_logprobs; completions: = logprobs */
    int return_log_probs;        /* Triton */
    int json_mode;               /* OpenAI response_format {"type": "json_object"} or json_schema */
    ss_json_schema *json_schema; /* json_schema's schema, compiled (one reference), or NULL */
    cJSON *tools;                /* chat: the request's tools, for the template (owned), or NULL */
    ss_tool_choice tool_choice;  /* NONE unless calls are parsed out of the answer (or forced: REQUIRED, NAMED) */
    int parallel_tool_calls;     /* default 1; 0: at most one call */
} ss_api_request;

/* Defaults: greedy sampling, n = 1, nothing streaming. */
void ss_api_request_init(ss_api_request *r, ss_api_kind kind);
void ss_api_request_clear(ss_api_request *r);

/* Returns "stop" / "length" / "cancelled" / "error" (static). */
const char *ss_api_finish_str(int finish_reason);

/* Seconds since the epoch, for OpenAI's `created`. */
int64_t ss_api_now_unix(void);

/* ---- typed JSON field access (shared by the API families) -------------------------------------
 * Each returns SS_OK with *present = 0 when the field is absent or null, SS_OK with *present = 1 and
 * the value when it has the right type, or fails e (400, naming the field) on a wrong type. */
ss_status ss_api_get_number(const cJSON *obj, const char *name, double *out, int *present, ss_api_error *e);
ss_status ss_api_get_int(const cJSON *obj, const char *name, int64_t *out, int *present, ss_api_error *e);
/* A seed: any whole number from -2^63 to 2^64 - 1 (clients draw 64-bit seeds), negative ones taken modulo 2^64.
 * Past 2^53 it is the double cJSON read (the nearest one), so neighbouring large seeds can be the same seed. */
ss_status ss_api_get_seed(const cJSON *obj, const char *name, uint64_t *out, int *present, ss_api_error *e);
ss_status ss_api_get_bool(const cJSON *obj, const char *name, int *out, int *present, ss_api_error *e);
/* *out is ss_malloc'd (caller frees); strings longer than SS_API_MAX_STRING are refused. */
ss_status ss_api_get_string(const cJSON *obj, const char *name, char **out, int *present, ss_api_error *e);
/* A string or (allow_list) a list of strings, at most max of them; out[] entries are ss_malloc'd. */
ss_status ss_api_get_strings(const cJSON *obj, const char *name, int32_t max, char **out, int32_t *n,
                             ss_api_error *e);
/* An integer or a list of integers in [0, bound), at most max; *out ss_malloc'd. */
ss_status ss_api_get_ids(const cJSON *obj, const char *name, int32_t max, int32_t bound, int32_t **out,
                         int32_t *n, ss_api_error *e);

/* JSON mode with a schema (OpenAI's response_format json_schema, vLLM's guided_json, TensorRT-LLM's
 * guided_decoding_guide; schema an object or a JSON text): compiled into r->json_schema here, on the parsing
 * worker (not the event loop), once for all the request's choices; a schema this server cannot enforce fails e
 * with 400 naming param and where in the schema. */
ss_status ss_api_take_schema(ss_api_request *r, const cJSON *schema, const char *param, ss_api_error *e);

/* ---- accumulated result of one choice ----------------------------------------------------------- */

typedef struct ss_api_token_lp {
    int32_t token;
    float logprob;
    int32_t n_top;
    int32_t top_ids[SS_MAX_TOP_LOGPROBS];
    float top_logprobs[SS_MAX_TOP_LOGPROBS];
} ss_api_token_lp;

typedef struct ss_api_choice {
    int32_t index;
    char *text;                  /* accumulated output text (ss_malloc'd) */
    size_t text_len, text_cap;
    ss_api_token_lp *lps;        /* [n_lps] when logprobs were asked */
    int32_t n_lps, cap_lps;
    int finish;                  /* ss_finish_reason; 0 while running */
    int32_t prompt_tokens, completion_tokens, cached_tokens;
    ss_tool_calls calls;         /* function calls parsed out of text (n = 0: none; owned) */
} ss_api_choice;

/* Appends generated text / a token's logprobs. SS_ERR_CAPACITY past max bytes or tokens. */
ss_status ss_api_choice_append_text(ss_api_choice *c, const char *s, size_t n, size_t max);
ss_status ss_api_choice_append_lp(ss_api_choice *c, int32_t token, float logprob, int32_t n_top,
                                  const int32_t *top_ids, const float *top_lps);
void ss_api_choice_clear(ss_api_choice *c);

/* Turns a token id into its text, for logprob entries; writes at most cap-1 bytes + NUL and returns
 * the length. Supplied by the server (tokenizer), borrowed during one builder call. */
typedef struct ss_api_vocab {
    size_t (*token_text)(void *user, int32_t token, char *buf, size_t cap);
    void *user;
} ss_api_vocab;

/* The model name a server without --served-model-name answers to: the last component of its model directory,
 * lower-cased ("model" when there is none). Caller ss_free's; NULL when out of memory. */
char *ss_api_default_model_name(const char *dir);

#endif
