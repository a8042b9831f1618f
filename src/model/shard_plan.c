/* shard_plan.c — splitting a model over tp × pp ranks: head, MLP, vocabulary and layer ranges. */
#include "model/shard_plan.h"

#include <stdio.h>
#include <string.h>

ss_status ss_shard_check(const ss_model_config *cfg, int tp, int pp, ss_err *err)
{
    if (tp < 1 || pp < 1)
        return ss_err_set(err, SS_ERR_INVALID_ARG, "tp (%d) and pp (%d) must be >= 1", tp, pp);
    if (cfg->n_heads % tp)
        return ss_err_set(err, SS_ERR_INVALID_ARG, "tp %d does not divide the %d attention heads", tp, cfg->n_heads);
    if (cfg->n_kv_heads % tp && tp % cfg->n_kv_heads)
        return ss_err_set(err, SS_ERR_INVALID_ARG,
                          "tp %d and the %d kv heads: one must divide the other (kv heads are split or replicated)",
                          tp, cfg->n_kv_heads);
    if (cfg->intermediate_size % tp)
        return ss_err_set(err, SS_ERR_INVALID_ARG, "tp %d does not divide intermediate_size %d", tp,
                          cfg->intermediate_size);
    if (pp > cfg->n_layers)
        return ss_err_set(err, SS_ERR_INVALID_ARG, "pp %d exceeds the %d layers", pp, cfg->n_layers);
    if (tp > cfg->vocab_size)
        return ss_err_set(err, SS_ERR_INVALID_ARG, "tp %d exceeds the vocabulary %d", tp, cfg->vocab_size);
    return SS_OK;
}

ss_status ss_shard_plan_make(const ss_model_config *cfg, int tp, int pp, int rank, ss_shard_plan *out, ss_err *err)
{
    SS_CHECK(ss_shard_check(cfg, tp, pp, err));
    if (rank < 0 || rank >= tp * pp)
        return ss_err_set(err, SS_ERR_INVALID_ARG, "rank %d outside 0..%d", rank, tp * pp - 1);
    ss_shard_plan p;
    memset(&p, 0, sizeof p);
    p.tp = tp;
    p.pp = pp;
    p.rank = rank;
    p.tp_rank = rank % tp;
    p.stage = rank / tp;
    /* Near-even contiguous layer ranges; the first (layers % pp) stages take one extra layer. */
    int32_t base = cfg->n_layers / pp, extra = cfg->n_layers % pp;
    p.layer_start = p.stage * base + (p.stage < extra ? p.stage : extra);
    p.layer_end = p.layer_start + base + (p.stage < extra ? 1 : 0);
    p.q_heads = cfg->n_heads / tp;
    p.q_head_start = p.tp_rank * p.q_heads;
    if (cfg->n_kv_heads >= tp) {
        p.kv_heads = cfg->n_kv_heads / tp;
        p.kv_head_start = p.tp_rank * p.kv_heads;
    } else { /* replicate: tp / n_kv ranks share one kv head, the one their q heads map to */
        p.kv_heads = 1;
        p.kv_head_start = p.tp_rank / (tp / cfg->n_kv_heads);
    }
    p.inter_size = cfg->intermediate_size / tp;
    p.inter_start = p.tp_rank * p.inter_size;
    p.vocab_per_rank = (cfg->vocab_size + tp - 1) / tp;
    p.vocab_start = p.tp_rank * p.vocab_per_rank;
    if (p.vocab_start > cfg->vocab_size)
        p.vocab_start = cfg->vocab_size;
    p.vocab_size = cfg->vocab_size - p.vocab_start;
    if (p.vocab_size > p.vocab_per_rank)
        p.vocab_size = p.vocab_per_rank;
    p.first_stage = p.stage == 0;
    p.last_stage = p.stage == pp - 1;
    *out = p;
    return SS_OK;
}

/* Parses "model.layers.<i>.<rest>"; returns the layer or -1. */
static int32_t shard_layer_of(const char *name, const char **rest)
{
    static const char pre[] = "model.layers.";
    if (strncmp(name, pre, sizeof pre - 1))
        return -1;
    const char *p = name + sizeof pre - 1;
    int32_t layer = 0;
    int digits = 0;
    while (*p >= '0' && *p <= '9' && digits < 9) {
        layer = layer * 10 + (*p - '0');
        p++;
        digits++;
    }
    if (!digits || *p != '.')
        return -1;
    *rest = p + 1;
    return layer;
}

static ss_slice shard_make(ss_slice_kind k, int64_t start, int64_t len)
{
    ss_slice s = {k, start, len};
    return s;
}

ss_slice ss_shard_slice_for(const ss_shard_plan *plan, const ss_model_config *cfg, const char *name)
{
    const ss_slice skip = shard_make(SS_SLICE_SKIP, 0, 0);
    int64_t hd = cfg->head_dim;
    if (!strcmp(name, "model.embed_tokens.weight"))
        return plan->first_stage ? shard_make(SS_SLICE_ROWS, plan->vocab_start, plan->vocab_size) : skip;
    if (!strcmp(name, "lm_head.weight"))
        return plan->last_stage ? shard_make(SS_SLICE_ROWS, plan->vocab_start, plan->vocab_size) : skip;
    if (!strcmp(name, "model.norm.weight"))
        return plan->last_stage ? shard_make(SS_SLICE_FULL, 0, 0) : skip;
    const char *rest = NULL;
    int32_t layer = shard_layer_of(name, &rest);
    if (layer < 0 || layer < plan->layer_start || layer >= plan->layer_end)
        return skip; /* (not a layer's tensor: -1, rest unset) */
    if (!strcmp(rest, "input_layernorm.weight") || !strcmp(rest, "post_attention_layernorm.weight") ||
        !strcmp(rest, "self_attn.q_norm.weight") || !strcmp(rest, "self_attn.k_norm.weight"))
        return shard_make(SS_SLICE_FULL, 0, 0);
    if (!strcmp(rest, "self_attn.q_proj.weight") || !strcmp(rest, "self_attn.q_proj.bias"))
        return shard_make(SS_SLICE_ROWS, plan->q_head_start * hd, plan->q_heads * hd);
    if (!strcmp(rest, "self_attn.k_proj.weight") || !strcmp(rest, "self_attn.k_proj.bias") ||
        !strcmp(rest, "self_attn.v_proj.weight") || !strcmp(rest, "self_attn.v_proj.bias"))
        return shard_make(SS_SLICE_ROWS, plan->kv_head_start * hd, plan->kv_heads * hd);
    if (!strcmp(rest, "self_attn.o_proj.weight"))
        return shard_make(SS_SLICE_COLS, plan->q_head_start * hd, plan->q_heads * hd);
    if (!strcmp(rest, "mlp.gate_proj.weight") || !strcmp(rest, "mlp.up_proj.weight"))
        return shard_make(SS_SLICE_ROWS, plan->inter_start, plan->inter_size);
    if (!strcmp(rest, "mlp.down_proj.weight"))
        return shard_make(SS_SLICE_COLS, plan->inter_start, plan->inter_size);
    return skip;
}
