/* runner.h — one rank of a replica: its backend, weights, KV cache and forward pass, and the
 * execution of a step plan (metadata, forward, sampling on the last stage). */
#ifndef SS_RUNNER_H
#define SS_RUNNER_H

#include "backend/backend.h"
#include "comm/comm.h"
#include "model/config.h"
#include "runner/step_plan.h"

typedef struct ss_runner ss_runner;

typedef struct ss_runner_params {
    const char *model_dir;     /* checkpoint folder, or engine folder with rank files (borrowed) */
    int tp, pp, rank;
    ss_backend_params backend;
    int32_t block_size;
    int32_t num_kv_blocks;     /* 0: derived */
    int32_t max_seq_len;
    int64_t max_batch_tokens;
    int32_t max_seqs;
    int no_graphs;             /* 1: run decode steps op by op (no CUDA graphs) */
    int32_t graph_bucket;      /* a graph step's token bucket (ss_forward_params; 0: powers of two) */
} ss_runner_params;

/* Loads config and weights, allocates the cache. links: comms borrowed for the runner's lifetime
 * (tp: group of this stage; world + neighbours for pipeline stages). Caller destroys. */
typedef struct ss_runner_links {
    ss_comm *tp;
    ss_comm *world;
    int nccl; /* comms are NCCL: wait on them with a deadline before reading results back */
} ss_runner_links;

ss_status ss_runner_create(const ss_runner_params *p, const ss_runner_links *links, ss_runner **out, ss_err *err);
void ss_runner_destroy(ss_runner *r);
/* Replaces the comms (links->tp must not be NULL). Collective over links->tp (see ss_forward_set_links). */
ss_status ss_runner_set_links(ss_runner *r, const ss_runner_links *links, ss_err *err);
/* The rank's backend (borrowed), e.g. for a comm that enqueues on its stream. */
ss_backend *ss_runner_backend(const ss_runner *r);

/* Validates and runs a plan. On the last stage's tp rank 0, fills out (caller clears); elsewhere out
 * is left empty. Invalid plans return SS_ERR_INVALID_ARG without touching the device.
 * = ss_runner_submit, then ss_runner_collect. */
ss_status ss_runner_step(ss_runner *r, const ss_step_plan *plan, ss_step_output *out, ss_err *err);

/* The same in two halves, so that the host can plan and submit step k+1 while step k runs on the
 * device: submit enqueues the plan's work (on a single-rank replica sampling on the device, it returns
 * without waiting for the device), collect waits for the oldest submitted step and hands over its
 * output (caller clears). At most SS_DOWNLOAD_SLOTS steps are pending; steps run in submit order.
 * A plan token SS_TOKEN_PREV is the token its sequence sampled in the step submitted just before
 * (fed on the device when the backend can, else read back first); a sequence that did not sample
 * there is an invalid plan. Plan memory is not kept after submit returns. */
ss_status ss_runner_submit(ss_runner *r, const ss_step_plan *plan, ss_err *err);
ss_status ss_runner_collect(ss_runner *r, ss_step_output *out, ss_err *err);
/* Steps submitted and not collected. */
int ss_runner_pending(const ss_runner *r);
/* Whether the oldest pending step is done (collect would not wait), without waiting: *ready = 1 also when
 * nothing is pending. On NCCL a stopped or failed communicator, or its deadline passed, is the error. */
ss_status ss_runner_ready(ss_runner *r, int *ready, ss_err *err);
/* The checks submit makes before running a plan (sizes, ids, and that every SS_TOKEN_PREV names a
 * sequence that sampled in the last submitted step), without running it. */
ss_status ss_runner_check_plan(ss_runner *r, const ss_step_plan *plan, ss_err *err);
/* Whether every rank of the replica holds the last submitted step's tokens on its device (tp > 1 steps
 * that chose their tokens there: greedy, or sampled without host work; no pipeline stages): plans may then
 * carry SS_TOKEN_PREV to every rank. */
int ss_runner_prev_fed_everywhere(const ss_runner *r);
/* tokens[0..plan->n_tokens) = plan's tokens with SS_TOKEN_PREV replaced by the previous step's tokens on
 * the host (waiting for that step's read-back if needed; this rank must be the one that samples). */
ss_status ss_runner_resolve_prev(ss_runner *r, const ss_step_plan *plan, int32_t *tokens, ss_err *err);
/* 1 when the backend runs ops asynchronously (a GPU), so that submit can return before the step is done. */
int ss_runner_async(const ss_runner *r);

const ss_model_config *ss_runner_config(const ss_runner *r);
int32_t ss_runner_num_kv_blocks(const ss_runner *r);
int32_t ss_runner_block_size(const ss_runner *r);
int32_t ss_runner_max_seq_len(const ss_runner *r);
/* The projections' format the backend holds (--quantization auto resolved: fp8 for an fp8 checkpoint). */
ss_linear_type ss_runner_linear_type(const ss_runner *r);
int64_t ss_runner_max_batch_tokens(const ss_runner *r);
int32_t ss_runner_max_seqs(const ss_runner *r);
/* 1 when this rank returns step outputs (last stage, tp rank 0). */
int ss_runner_is_output_rank(const ss_runner *r);
const char *ss_runner_device_desc(const ss_runner *r);

/* Deterministic uniform in [0, 1) for draw `counter` of stream `seed` (independent of batching). */
float ss_rng_uniform(uint64_t seed, uint64_t counter);

#endif
