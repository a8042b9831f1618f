/* forward.h — the model's forward pass, written once against the backend and comm tables.
 * Runs this rank's layers for a packed batch of tokens (prefill chunks and decode tokens alike). */
#ifndef SS_FORWARD_H
#define SS_FORWARD_H

#include <stdint.h>

#include "backend/backend.h"
#include "comm/comm.h"
#include "model/config.h"
#include "model/weights.h"

/* Device buffers of one rank, sized once for the largest step (see ss_forward_create). */
typedef struct ss_forward ss_forward;

typedef struct ss_forward_params {
    int64_t max_tokens;   /* tokens per step */
    int32_t max_rows;     /* logits rows per step (sampled sequences, or all tokens for tests) */
    int32_t max_seqs;     /* sequences per step */
    int32_t max_blocks;   /* block table width (max_seq_len / block_size, rounded up) */
    int32_t block_size;
    int32_t num_blocks;   /* KV blocks in the cache of each layer */
    int graphs;           /* replay decode steps from graphs when the backend has them (single-rank) */
    int32_t graph_bucket; /* ss_forward_graph_pad's bucket (ss_forward_graph_bucket; 0: powers of two); the same on
                           * every rank of a tp group, as a graph step's collectives carry the padded count */
} ss_forward_params;

/* Step inputs on the host; ss_forward_run uploads them. */
typedef struct ss_forward_batch {
    int64_t n_tokens;
    const int32_t *ids;          /* [n_tokens]; < 0: a fed token (ss_forward_set_fed) */
    const int32_t *tok_seq;      /* [n_tokens] */
    const int32_t *tok_pos;      /* [n_tokens] */
    const int32_t *slots;        /* [n_tokens] */
    int32_t n_seqs;
    const int32_t *block_tables; /* [n_seqs, max_blocks] */
    const int32_t *seq_lens;     /* [n_seqs] */
    int32_t max_seq_len;
    int32_t n_rows;              /* logits rows wanted (last stage) */
    const int32_t *rows;         /* [n_rows] token indices */
    int greedy_only;             /* every row wants only its argmax and log-probability: with tp > 1 the
                                  * vocabulary shards are reduced without gathering whole rows */
} ss_forward_batch;

/* Borrowed: be, cfg, w, comms (tp: the tensor-parallel group; pp_prev/pp_next: world comm and peer
 * ranks for pipeline activations, or NULL/-1). Caller destroys. */
typedef struct ss_forward_links {
    ss_comm *tp;       /* size 1 comm when tp == 1 */
    ss_comm *world;    /* for send/recv between stages; may be NULL when pp == 1 */
    int prev_rank;     /* world rank of the previous stage's peer, -1 on the first stage */
    int next_rank;     /* world rank of the next stage's peer, -1 on the last stage */
} ss_forward_links;

ss_status ss_forward_create(ss_backend *be, const ss_model_config *cfg, const ss_model_weights *w,
                            const ss_forward_params *p, const ss_forward_links *links, ss_forward **out, ss_err *err);
void ss_forward_destroy(ss_forward *f);
/* Replaces the comm links (set after comms that need the backend's stream exist). Collective over
 * links->tp when tp > 1 and batch-1 steps run in the backend's decode_layers: every rank then asks the
 * tp comm for the window that op exchanges its sums through (where the comm has none, those steps run
 * op by op). Errors are the comm's. */
ss_status ss_forward_set_links(ss_forward *f, const ss_forward_links *links, ss_err *err);

/* Runs the step. On the last stage, when n_rows > 0, *logits receives a device pointer to f32 logits
 * [n_rows, cfg->vocab_size] of the full vocabulary (gathered across tp), valid until the next run;
 * elsewhere *logits is NULL. */
ss_status ss_forward_run(ss_forward *f, const ss_forward_batch *b, const float **logits, ss_err *err);
/* After a run with greedy_only and tp > 1 on the last stage: enqueues the combine of the vocabulary shards'
 * results (the backend's greedy_combine) into out_tok[0..n) and out_logprob[0..n) (device buffers of this
 * rank; every rank of the group gets the same tokens) and sets *n_rows = n; otherwise sets *n_rows = 0 and
 * enqueues nothing. Call it after ss_forward_run, before the next run. */
ss_status ss_forward_greedy_device(ss_forward *f, int32_t *out_tok, float *out_logprob, int32_t *n_rows, ss_err *err);
/* Token feedback between steps: from now on a batch id < 0 stands for fed[-1 - id], read on the device
 * when the step runs (fed: device buffer borrowed for f's lifetime, e.g. where the previous step's
 * sampler wrote its tokens). Ignored (and ss_forward_feeds returns 0) when the backend has no embed_fed. */
void ss_forward_set_fed(ss_forward *f, const int32_t *fed);
int ss_forward_feeds(const ss_forward *f);
/* The most tokens of one sequence that a graph-replayed step's attention takes as one query tile, reading their
 * keys once (a speculating sequence's token and its drafts): SS_FWD_CHAIN_TILE, or the benchmark switch
 * SS_GRAPH_TILE (1..SS_ATTN_LONG_TILE - 1). Steps run op by op take runs of up to SS_ATTN_TILE_MAX. */
#define SS_FWD_CHAIN_TILE 8
int32_t ss_forward_chain_tile(void);
/* Decode steps of up to this many tokens are replayed from CUDA graphs (one per token bucket, ss_forward_graph_pad,
 * and per power-of-two context bound); larger steps are compute-bound and run eagerly. */
#define SS_FWD_GRAPH_MAX_TOKENS 256
/* A graph-replayed step's padded token count for n tokens: the next power of two; with bucket > 0, from 2 * bucket
 * tokens on the next multiple of bucket where that is smaller (batch 160 then runs as 160 rows instead of 256: its
 * GEMMs compute the padding rows too, and a launcher's rule sees a count near the batch, not a power of two). */
int64_t ss_forward_graph_pad(int64_t n, int32_t bucket);
/* ss_forward_graph_pad's bucket by default. One H200, 8B steps at 128-token prompts (session 50), each
 * against the next coarser: buckets of 32 against powers of two at batch 72 / 160 / 200 -4.5 / -15.5 / -0.9% (fp8
 * cache: 160 -16.9%), a server at 160 clients +7.0% output tok/s; 16 against 32 at 72 / 104 / 200 -1.8 / -2.0 / -5.8%
 * (fp8: 200 -6.0%), a server at 200 clients +2.2%; 8 against 16 at 72 / 136 / 200 -2.7 / -1.2 / -3.0% (fp8: 200
 * -2.9%), a server at 200 clients +1.1%. Up to 256 tokens that is 35 buckets a context bound (powers of two: 9), each
 * captured once when first used (sessions 51-52: ~1-2 ms recording and ~2-3 ms instantiating; a size's first
 * capture with cuBLASLt GEMMs records for 9-21 ms; the server's warm-up captures the first context bound's). */
#define SS_GRAPH_BUCKET_DEFAULT 8
/* The bucket for ss_forward_graph_pad: SS_GRAPH_BUCKET_DEFAULT, or the benchmark switch SS_GRAPH_BUCKET (0: powers
 * of two; or a multiple of 8 from 8 to 64). Read by the replica's leader only, which hands it to every rank with the
 * other settings (another rank's process may not share this one's environment). */
int32_t ss_forward_graph_bucket(void);
/* Bytes of KV cache this rank allocated. */
size_t ss_forward_kv_bytes(const ss_forward *f);

#endif
