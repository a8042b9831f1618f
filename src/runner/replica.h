/* replica.h — one model replica as the leader sees it: W = tp × pp ranks that run step plans.
 * The scheduler drives a replica through ss_replica_submit/collect; ranks, comm and sharding stay inside. */
#ifndef SS_REPLICA_H
#define SS_REPLICA_H

#include <stdint.h>

#include "backend/backend.h"
#include "core/status.h"
#include "model/config.h"
#include "runner/step_plan.h"

typedef struct ss_replica ss_replica;

typedef struct ss_replica_params {
    const char *model_dir;   /* checkpoint folder or prepared engine folder (borrowed) */
    int tp, pp;              /* parallel degrees (1, 1 = single process) */
    ss_backend_params backend;
    int32_t block_size;      /* KV block size in tokens (default 16) */
    int32_t num_kv_blocks;   /* 0 = size from free memory (cuda) or 8 sequences of min(context, 8192) (cpu) */
    int32_t max_seq_len;     /* context cap; 0 = the model's positions; capped at what the KV cache holds */
    int32_t max_batch_tokens;/* tokens per step cap (sizes scratch); default 2048 */
    int32_t max_seqs;        /* sequences per step cap; default 256 */
    int no_graphs;           /* 1: decode steps run op by op instead of replaying CUDA graphs */
    /* Multi-rank: how ranks find each other (see runner/bootstrap.h); NULL = spawn local ranks. */
    const char *leader_addr; /* "host:port" */
    int nnodes, node_rank, gpus_per_node;
    int comm_timeout_ms;     /* collective deadline; default 60000 */
    const char *worker_exe;  /* binary started for local ranks; NULL = this executable */
    int local_ranks;         /* ranks this process starts here, itself included (0: all when leader_addr is
                              * NULL, else gpus_per_node; 1: a launcher such as mpirun starts the others) */
    /* Asked every ~200 ms while the leader waits for its ranks (to join, then to load): nonzero ends the wait
     * with SS_ERR_CANCELLED (the server: a SIGTERM during start-up). NULL: never. Called on the creating thread. */
    int (*cancelled)(void *arg);
    void *cancelled_arg;     /* (borrowed) */
} ss_replica_params;

ss_replica_params ss_replica_default_params(void);

/* Loads the model on every rank and returns when all are ready (caller destroys). */
ss_status ss_replica_create(const ss_replica_params *params, ss_replica **out, ss_err *err);
/* Runs one step on all ranks. out is filled (caller clears with ss_step_output_clear).
 * A lost rank gives SS_ERR_COMM / SS_ERR_TIMEOUT; the replica is then unusable. Not thread-safe:
 * one scheduler thread calls it. */
ss_status ss_replica_step(ss_replica *r, const ss_step_plan *plan, ss_step_output *out, ss_err *err);
/* The same in two halves (see ss_runner_submit): submit the plan of step k+1, with SS_TOKEN_PREV for
 * the tokens of step k, before collecting step k, and the host's planning overlaps the device's work.
 * Steps are collected in submit order; at most SS_DOWNLOAD_SLOTS are pending. */
ss_status ss_replica_submit(ss_replica *r, const ss_step_plan *plan, ss_err *err);
ss_status ss_replica_collect(ss_replica *r, ss_step_output *out, ss_err *err);
/* Steps submitted and not collected. */
int ss_replica_pending(const ss_replica *r);
/* *ready = whether the oldest pending step's device work has ended (collect would not wait), without
 * waiting; 1 when nothing is pending or the steps run within submit. */
ss_status ss_replica_ready(ss_replica *r, int *ready, ss_err *err);
/* 1 when submit returns before the step's device work ends (one rank on a GPU); with several ranks, or on
 * the cpu, each step runs within submit, and submitting ahead gains nothing. */
int ss_replica_overlaps(const ss_replica *r);
/* The first rank whose control connection closed (its process is gone), or 0 while none has; any thread. The
 * replica is unusable once it is nonzero: its next step fails naming that rank. */
int ss_replica_lost_rank(ss_replica *r);
/* The rows a decode step of n sequences (one token each) computes as a replayed CUDA graph (n padded to its
 * bucket); 0 when such a step runs op by op (no GPU, pipeline stages, --no-graphs, n beyond max_seqs or
 * SS_FWD_GRAPH_MAX_TOKENS). */
int32_t ss_replica_graph_rows(const ss_replica *r, int32_t n);
const ss_model_config *ss_replica_config(const ss_replica *r);
int32_t ss_replica_num_kv_blocks(const ss_replica *r);
int32_t ss_replica_block_size(const ss_replica *r);
int32_t ss_replica_max_seq_len(const ss_replica *r);
/* The projections' format (rank 0's; every rank resolves --quantization auto alike). */
ss_linear_type ss_replica_linear_type(const ss_replica *r);
/* The step sizes the ranks were built for: a plan must not exceed them. */
int64_t ss_replica_max_batch_tokens(const ss_replica *r);
int32_t ss_replica_max_seqs(const ss_replica *r);
/* Tells workers to exit and releases everything. */
void ss_replica_destroy(ss_replica *r);

#endif
