/* sched.h — the scheduler: one thread that owns the step loop of a replica (continuous batching,
 * chunked prefill, paged KV with prefix caching, preemption). The HTTP side talks to it only through this. */
#ifndef SS_SCHED_H
#define SS_SCHED_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "runner/replica.h"
#include "runner/step_plan.h"
#include "serve/json_schema.h"
#include "tokenizer/tokenizer.h"

typedef struct ss_sched ss_sched;

#define SS_MAX_STOP_STRINGS 16

/* A generation request, already parsed and tokenized by the API layer. All arrays are owned by the
 * request; ss_sched_submit takes ownership of the whole struct (it frees it with ss_gen_request_free). */
typedef struct ss_gen_request {
    int32_t *prompt;          /* [n_prompt] token ids */
    int32_t n_prompt;
    int32_t max_tokens;       /* >= 1 */
    int32_t min_tokens;       /* EOS and stop strings ignored before this many */
    ss_sampling_params sp;
    int ignore_eos;
    int32_t *stop_ids;        /* extra end ids (Triton end_id) besides the model's EOS ids */
    int32_t n_stop_ids;
    int32_t *bias_ids;        /* logit_bias: bias_vals[i] added to the logit of bias_ids[i] (distinct ids) */
    float *bias_vals;
    int32_t n_bias;           /* at most SS_MAX_LOGIT_BIAS */
    char *stop[SS_MAX_STOP_STRINGS]; /* stop strings (not included in the output text) */
    int32_t n_stop;
    int32_t **bad_words;      /* token sequences that must not be generated */
    int32_t *bad_word_lens;
    int32_t n_bad_words;
    int include_prompt_penalty; /* repetition_penalty also counts prompt tokens (HF semantics) */
    int json_mode;            /* the output is one JSON object (response_format json_object): only tokens that
                               * keep it a valid prefix are sampled, and it stops when the object closes */
    ss_json_schema *json_schema; /* JSON mode's schema (one reference, dropped with the request), NULL: any object */
    int64_t deadline_ms;      /* absolute CLOCK_MONOTONIC ms; 0 = none */
    int64_t arrival_ms;       /* set by the API layer (CLOCK_MONOTONIC ms) */
} ss_gen_request;

void ss_gen_request_free(ss_gen_request *req);
/* Checks q against a model of vocab ids and a context of max_seq_len positions (have_tokenizer: stop strings and
 * JSON mode are possible): SS_OK, or the reason it cannot run (SS_ERR_INVALID_ARG, SS_ERR_UNSUPPORTED). */
ss_status ss_gen_request_check(const ss_gen_request *q, int32_t vocab, int32_t max_seq_len, int have_tokenizer,
                               ss_err *err);

typedef enum ss_finish_reason {
    SS_FINISH_NONE = 0,
    SS_FINISH_STOP,      /* EOS / end id / stop string */
    SS_FINISH_LENGTH,    /* max_tokens or context length */
    SS_FINISH_CANCELLED, /* client went away or cancelled */
    SS_FINISH_ERROR,     /* failed: see message */
} ss_finish_reason;

typedef enum ss_gen_event_kind {
    SS_GEN_TOKEN = 0, /* one generated token (text may be empty while a UTF-8 char or stop string is pending) */
    SS_GEN_DONE,      /* last event of a request (finish reason, usage, maybe a final text piece) */
} ss_gen_event_kind;

/* An event for the API layer. Borrowed: valid only during the callback. */
typedef struct ss_gen_event {
    ss_gen_event_kind kind;
    uint64_t req_id;
    int32_t token;              /* SS_GEN_TOKEN */
    float logprob;
    int32_t n_top;
    const int32_t *top_ids;
    const float *top_logprobs;
    const char *text;           /* text released by this event (stop strings held back and cut) */
    size_t text_len;
    ss_finish_reason finish;    /* SS_GEN_DONE */
    ss_status status;           /* SS_GEN_DONE with SS_FINISH_ERROR: why */
    const char *message;        /* SS_GEN_DONE with error: human-readable */
    int32_t prompt_tokens;      /* usage, on SS_GEN_DONE */
    int32_t completion_tokens;
    int32_t cached_tokens;      /* prompt tokens served from the prefix cache */
    int64_t queue_us, ttft_us;  /* timings on SS_GEN_DONE */
} ss_gen_event;

/* Called on the scheduler thread; must not block (queue the event and wake the I/O loop). */
typedef void (*ss_gen_callback)(void *user, const ss_gen_event *ev);

typedef enum ss_sched_overlap {
    SS_OVERLAP_AUTO = 0, /* where the replica returns from submit before the device is done (a GPU replica of one stage) */
    SS_OVERLAP_OFF,      /* collect each step before planning the next */
    SS_OVERLAP_ON,       /* also where submit runs the whole step (cpu): no gain, tokens reach clients a
                          * step later; for tests of the overlap's bookkeeping */
} ss_sched_overlap;

typedef struct ss_sched_params {
    int32_t max_waiting;        /* queue bound: submit returns SS_ERR_CAPACITY beyond it (default 1024) */
    int32_t max_running;        /* sequences in one batch (default 256) */
    int32_t max_step_tokens;    /* token budget per step, chunked prefill (default 512) */
    int enable_prefix_cache;    /* default 1 */
    ss_sched_overlap overlap;   /* planning a pure-decode step while the one before it runs (its tokens fed
                                 * on the device), which hides the host's turnaround; default AUTO */
    int pace;                   /* with overlap: plan that step only shortly before the running one is expected
                                 * to end, so that a request arriving meanwhile joins it instead of waiting a
                                 * step more (default 1; 0 plans it at once, as before session 28) */
    int32_t pace_min_us;        /* decode steps shorter than this are not paced (default 1000) */
    int32_t pace_margin_min_us; /* the adaptive margin before a step's expected end never falls below this
                                 * (default 250; see pace_adapt) */
    int prefill_attn_budget;    /* 1: beside decoding sequences, a prompt chunk's attention counts against
                                 * max_step_tokens too (sched.c chunk_fit; default 0) */
    int mask_threads;           /* JSON mode: threads that make the next token masks after a step (0, the default:
                                 * half the cores, at most 8; 1 on fewer than 4 cores) */
    int32_t spec_tokens;        /* speculative decoding by prompt lookup (spec_ngram.h): draft tokens a decoding
                                 * sequence may have verified in one step, 0..SS_SPEC_MAX_TOKENS (0, the default: off) */
    int32_t spec_max_running;   /* ... only while at most this many sequences run (default 4) */
    int spec_pace;              /* ... pausing a sequence's drafts after steps that confirmed none (ss_spec_pace; default
                                 * 0: drafts whenever prompt lookup finds something; SS_SPEC_PACE=1 / 0 overrides) */
    int32_t spec_tile;          /* ... the drafts' KV bound (ss_spec_keys_room) counts one read of a sequence's keys
                                 * a tile of this many of its tokens (0 or 1, the default: a read a draft, though a
                                 * GPU's graph steps read them once for up to 8: with the reads so counted, 4 clients
                                 * at 8k-token prompts lost 12% on the 8B shape, session 40; SS_SPEC_TILE overrides) */
    int spec_adapt;             /* ... each sequence's drafts by how many of its last ones were confirmed
                                 * (ss_spec_pace_len; default 0: as many as allowed, as it lost 2% at one client on
                                 * the 8B shape, session 41; SS_SPEC_ADAPT=1 / 0 overrides) */
} ss_sched_params;

/* Most draft tokens a sequence may have verified in one step. */
#define SS_SPEC_MAX_TOKENS 32

/* Plan entries a step may hold with p's batch and speculation: the ranks are sized for it (the replica's max_seqs). */
int32_t ss_sched_max_entries(const ss_sched_params *p);

ss_sched_params ss_sched_default_params(void);

/* Statistics for metrics (a consistent snapshot). */
typedef struct ss_sched_stats {
    int64_t running, waiting;
    int64_t kv_blocks_total, kv_blocks_used;
    int64_t prefix_hits, prefix_queries;   /* in tokens */
    int64_t preemptions;
    int64_t prompt_tokens, generated_tokens;
    int64_t steps;
    int64_t steps_ahead; /* steps planned and submitted before the previous step's tokens were known */
    int64_t steps_paced; /* of those, steps held back until shortly before the previous one's expected end */
    int64_t steps_paced_late; /* of those, steps submitted after the previous one had ended (the device idled) */
    int64_t spec_draft_tokens, spec_accepted_tokens; /* speculative decoding: tokens proposed, and those the model
                                                      * confirmed (each verified step also yields one token more) */
    double step_seconds_total;
    int64_t requests_ok, requests_failed, requests_cancelled;
} ss_sched_stats;

/* Creates a scheduler over a ready replica and tokenizer (both borrowed; they must outlive it) and
 * starts its thread. */
ss_status ss_sched_create(const ss_sched_params *params, ss_replica *replica, const ss_tokenizer *tok,
                          ss_sched **out, ss_err *err);
/* Submits req (ownership moves, also on error). Events go to cb(user, ...) until SS_GEN_DONE.
 * SS_ERR_CAPACITY: queue full (answer 429); SS_ERR_INVALID_ARG: prompt too long for the context. */
ss_status ss_sched_submit(ss_sched *s, ss_gen_request *req, ss_gen_callback cb, void *user, uint64_t *req_id,
                          ss_err *err);
/* Cancels a request (client disconnected); its blocks are freed before the next step. A DONE event
 * with SS_FINISH_CANCELLED still follows. Thread-safe. */
void ss_sched_cancel(ss_sched *s, uint64_t req_id);
void ss_sched_stats_get(ss_sched *s, ss_sched_stats *out);
/* 1 while the replica is healthy; 0 once a step failed (rank lost) or ss_sched_fail was called. */
int ss_sched_healthy(ss_sched *s);
/* Marks the replica unusable from outside a step (the server: a rank's process is gone while idle): requests
 * queued now and later fail with st and msg, as after a failed step. Thread-safe. */
void ss_sched_fail(ss_sched *s, ss_status st, const char *msg);
/* Stops accepting, waits up to deadline_ms for running requests, fails the rest, stops the thread. */
void ss_sched_drain(ss_sched *s, int64_t deadline_ms);
void ss_sched_destroy(ss_sched *s);

#endif
