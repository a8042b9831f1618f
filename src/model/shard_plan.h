/* shard_plan.h — which slice of which tensor each rank of a tp × pp replica holds (DESIGN.md §4).
 * Megatron style: q/k/v, gate/up by output rows; o, down by input columns; embedding and lm_head by vocabulary. */
#ifndef SS_SHARD_PLAN_H
#define SS_SHARD_PLAN_H

#include <stdint.h>

#include "core/status.h"
#include "model/config.h"

typedef struct ss_shard_plan {
    int tp, pp;             /* degrees */
    int rank;               /* stage * tp + tp_rank */
    int tp_rank, stage;
    int32_t layer_start;    /* first layer of this stage */
    int32_t layer_end;      /* one past the last */
    int32_t q_head_start;   /* this rank's query heads: [q_head_start, +q_heads) */
    int32_t q_heads;
    int32_t kv_head_start;  /* its kv heads (replicated when tp > n_kv_heads) */
    int32_t kv_heads;
    int32_t inter_start;    /* its MLP inner slice */
    int32_t inter_size;
    int32_t vocab_start;    /* its vocabulary rows of embedding and lm_head */
    int32_t vocab_size;     /* may be smaller on the last tp rank, or 0 */
    int32_t vocab_per_rank; /* ceil(vocab / tp): the stride of the vocab split */
    int first_stage, last_stage;
} ss_shard_plan;

/* Checks that (cfg, tp, pp) can be split; returns SS_ERR_INVALID_ARG with the reason otherwise
 * (heads not divisible by tp, kv heads neither dividing nor divisible by tp, pp > layers, ...). */
ss_status ss_shard_check(const ss_model_config *cfg, int tp, int pp, ss_err *err);
/* Computes rank's plan (0 <= rank < tp*pp). Calls ss_shard_check. */
ss_status ss_shard_plan_make(const ss_model_config *cfg, int tp, int pp, int rank, ss_shard_plan *out, ss_err *err);

/* How a checkpoint tensor is cut for a rank. */
typedef enum ss_slice_kind {
    SS_SLICE_SKIP = 0,   /* the rank does not hold this tensor (other stage, unknown name) */
    SS_SLICE_FULL,       /* whole tensor (norms, replicated) */
    SS_SLICE_ROWS,       /* rows [start, start+len) of dim 0 */
    SS_SLICE_COLS,       /* columns [start, start+len) of dim 1 */
} ss_slice_kind;

typedef struct ss_slice {
    ss_slice_kind kind;
    int64_t start, len;
} ss_slice;

/* The slice of the Hugging Face tensor `name` that the plan's rank holds. Row slices of q/k/v are
 * in units of rows (heads * head_dim). Tied embeddings: "model.embed_tokens.weight" is also held
 * by the last stage (as its lm_head) — the caller asks for "lm_head.weight" and maps it. */
ss_slice ss_shard_slice_for(const ss_shard_plan *plan, const ss_model_config *cfg, const char *name);

#endif
