/* step_plan.h — what the leader tells every rank to do in one scheduler step, and what comes back.
 * Plans are self-contained (no rank keeps per-request state), so preemption and restarts are simple. */
#ifndef SS_STEP_PLAN_H
#define SS_STEP_PLAN_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

#define SS_MAX_TOP_LOGPROBS 20

typedef struct ss_sampling_params {
    float temperature;        /* <= 0: greedy */
    int32_t top_k;            /* <= 0: off */
    float top_p;              /* >= 1: off */
    float min_p;              /* <= 0: off */
    float repetition_penalty; /* 1: off (HF semantics, over penalty tokens) */
    float presence_penalty;   /* 0: off (OpenAI semantics, over penalty tokens) */
    float frequency_penalty;  /* 0: off */
    uint64_t seed;            /* RNG stream of this request */
    int32_t n_logprobs;       /* top log-probabilities to return, 0..SS_MAX_TOP_LOGPROBS */
} ss_sampling_params;

/* Defaults: greedy, no penalties, no logprobs. */
ss_sampling_params ss_sampling_default(void);

typedef struct ss_plan_seq {
    uint64_t seq_id;          /* the scheduler's id, for logs */
    int32_t n_tokens;         /* this sequence's tokens in this step (contiguous in plan->tokens) */
    int32_t pos_start;        /* position of the first of them */
    int32_t n_blocks;         /* length of blocks */
    int32_t *blocks;          /* physical KV block ids covering positions 0 .. pos_start+n_tokens-1 */
    int32_t sample;           /* 1: sample one token after the last of them */
    uint64_t rng_counter;     /* draw index within the request's RNG stream (= tokens generated so far) */
    ss_sampling_params sp;
    int32_t n_penalty_tokens; /* tokens the penalties count (generated so far, or prompt+generated) */
    int32_t *penalty_tokens;
    int32_t n_banned;         /* token ids that must not be sampled this step (bad words, eos before min_length) */
    int32_t *banned;
    int32_t n_bias;           /* OpenAI's logit_bias: bias_vals[i] added to the logit of bias_ids[i] (ids distinct) */
    int32_t *bias_ids;
    float *bias_vals;
    int32_t n_allow;          /* JSON mode: words of allow, (vocab + 31) / 32; 0: every token may be sampled */
    uint32_t *allow;          /* bit t % 32 of word t / 32 set: token t may be sampled (the others cannot) */
} ss_plan_seq;

/* Most logit_bias entries a request may carry. */
#define SS_MAX_LOGIT_BIAS 1024

enum {
    SS_PLAN_ALL_LOGITS = 1 << 0, /* return f32 logits of every token (tests, prompt logprobs) */
    SS_PLAN_LAST_LOGITS = 1 << 1, /* return f32 logits of each sampled sequence's last token */
    SS_PLAN_SHUTDOWN = 1 << 2,    /* workers leave their loop after acknowledging */
};

/* A plan token that stands for the token its sequence sampled in the step submitted just before this
 * one (ss_replica_submit): the leader may plan a decode step before that token is known to it. */
#define SS_TOKEN_PREV (-1)

typedef struct ss_step_plan {
    uint64_t step_id;
    uint32_t flags;
    int32_t n_seqs;
    ss_plan_seq *seqs;
    int64_t n_tokens;
    int32_t *tokens; /* [n_tokens] */
} ss_step_plan;

/* What the last stage returns to the leader: one entry per sequence with sample = 1, in plan order. */
typedef struct ss_step_output {
    int32_t n;              /* sampled sequences */
    int32_t *token;         /* [n] */
    float *logprob;         /* [n] log-probability of token (raw distribution) */
    int32_t n_top;          /* top logprobs per entry (max of the plan's n_logprobs) */
    int32_t *top_ids;       /* [n, n_top] */
    float *top_logprobs;    /* [n, n_top] */
    int64_t logits_rows;    /* rows of logits returned (flags), 0 otherwise */
    int32_t vocab;
    float *logits;          /* [logits_rows, vocab] */
} ss_step_output;

/* 1 when plan entry q continues entry prev's tokens: one sequence (seq_id), q's first position right after prev's last,
 * and prev's blocks a prefix of q's. Speculative decoding plans each draft token as such an entry; the runner makes
 * a run of them one sequence of the forward pass, whose attention may then read its keys once for all of them (each
 * token still attends exactly the keys it would alone). */
int ss_plan_seq_continues(const ss_plan_seq *prev, const ss_plan_seq *q);

/* The sequences that sampled in a step, in output order: where SS_TOKEN_PREV finds its row. */
typedef struct ss_sampled_seqs {
    int32_t n, cap;
    uint64_t *seq_ids; /* [n], owned */
} ss_sampled_seqs;

/* Records plan's sampling sequences (replacing what s held). */
ss_status ss_sampled_seqs_record(ss_sampled_seqs *s, const ss_step_plan *plan, ss_err *err);
/* The output row of seq_id, or -1 when it did not sample. hint: the row to try first. */
int32_t ss_sampled_seqs_find(const ss_sampled_seqs *s, uint64_t seq_id, int32_t hint);
void ss_sampled_seqs_free(ss_sampled_seqs *s);

/* Frees the arrays inside out (not out itself) and zeroes it. */
void ss_step_output_clear(ss_step_output *out);

/* Serialization for the control plane (leader -> ranks). *buf is allocated (caller frees). */
ss_status ss_step_plan_encode(const ss_step_plan *plan, uint8_t **buf, size_t *len, ss_err *err);
/* Decodes into *plan; arrays point into one allocation freed by ss_step_plan_free. Bounds-checked. */
ss_status ss_step_plan_decode(const uint8_t *buf, size_t len, ss_step_plan *plan, ss_err *err);
void ss_step_plan_free(ss_step_plan *plan);

ss_status ss_step_output_encode(const ss_step_output *o, uint8_t **buf, size_t *len, ss_err *err);
ss_status ss_step_output_decode(const uint8_t *buf, size_t len, ss_step_output *o, ss_err *err);

#endif
