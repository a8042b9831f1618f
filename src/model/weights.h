/* weights.h — one rank's weights on its device: loaded from a checkpoint (sliced on the fly) or from
 * a prepared engine rank file (already sliced), into one device allocation, q/k/v and gate/up fused. */
#ifndef SS_WEIGHTS_H
#define SS_WEIGHTS_H

#include <stddef.h>

#include "backend/backend.h"
#include "model/config.h"
#include "model/safetensors.h"
#include "model/shard_plan.h"

typedef struct ss_layer_weights {
    void *attn_norm; /* [dim] */
    void *wqkv;      /* [(q_heads + 2*kv_heads) * head_dim, dim]: this rank's q rows, then k, then v */
    void *bqkv;      /* [(q_heads + 2*kv_heads) * head_dim] or NULL */
    void *q_norm;    /* [head_dim] (Qwen3) or NULL */
    void *k_norm;    /* [head_dim] or NULL */
    void *wo;        /* [dim, q_heads * head_dim] */
    void *mlp_norm;  /* [dim] */
    void *wgu;       /* [2 * inter_size, dim]: gate rows, then up rows */
    void *wdown;     /* [dim, inter_size] */
} ss_layer_weights;

typedef struct ss_model_weights {
    ss_shard_plan plan;
    void *embed;              /* [vocab_size(plan), dim] on the first stage, else NULL */
    void *final_norm;         /* [dim] on the last stage */
    void *lm_head;            /* [vocab_size(plan), dim] on the last stage */
    ss_layer_weights *layers; /* [layer_end - layer_start] */
    void *arena;              /* the one device allocation holding all of the above */
    size_t bytes;
} ss_model_weights;

/* Loads the plan's weights from ck onto be. presliced: ck is an engine rank file whose tensors are
 * already the rank's slices. Every shape is checked; errors name the tensor and file. Caller frees
 * with ss_weights_free (the checkpoint may be closed right after). */
ss_status ss_weights_load(ss_backend *be, const ss_model_config *cfg, const ss_shard_plan *plan,
                          const ss_checkpoint *ck, int presliced, ss_model_weights **out, ss_err *err);
void ss_weights_free(ss_backend *be, ss_model_weights *w);
/* Checks, without loading, that ck holds every tensor ss_weights_load would take for the plan, each of the shape the
 * config gives (the plan's slice when presliced): the errors ss_weights_load would give (SS_ERR_NOT_FOUND for a
 * missing tensor, SS_ERR_FORMAT for a wrong shape, naming tensor and file), before anything is built on ck. */
ss_status ss_weights_check(const ss_model_config *cfg, const ss_shard_plan *plan, const ss_checkpoint *ck,
                           int presliced, ss_err *err);
/* Whether a rank's projection input widths suit fp8 projections (multiples of 16: hidden, its slice of the
 * intermediate size, its heads' width); ss_weights_load refuses SS_LINEAR_FP8 otherwise. */
int ss_weights_fp8_widths_ok(const ss_model_config *cfg, const ss_shard_plan *plan);

#endif
