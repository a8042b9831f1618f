/* decode_layers_ref.c — the decode_layers op as a sequence of a backend's own ops (one decode token,
 * layer after layer); the cpu backend's decode_layers and the consistency tests' reference. */
#include "backend/decode_layers_ref.h"

#include "core/dtype.h"

ss_status ss_decode_layers_by_op(const ss_backend *be, const ss_decode_layers *d)
{
    const ss_backend_i *B = be->iface;
    void *c = be->ctx;
    const size_t a = ss_dtype_size(be->act_dtype);
    const int64_t qd = (int64_t)d->q_heads * d->head_dim, kvd = (int64_t)d->kv_heads * d->head_dim;
    const int64_t row = qd + 2 * kvd;
    void *h = d->h, *x = d->x, *gu = d->gu;
    ss_status st = SS_OK;
    for (int32_t l = 0; l < d->n_layers && st == SS_OK; l++) {
        const ss_decode_layer *L = &d->layers[l];
        char *q = d->qkv, *k = q + qd * (int64_t)a, *v = k + kvd * (int64_t)a;
        st = B->rmsnorm(c, h, d->residual, L->attn_norm, 1, d->hidden, d->eps);
        if (st == SS_OK)
            st = B->linear(c, d->qkv, h, L->wqkv, L->bqkv, 1, (int32_t)row, d->hidden);
        if (st == SS_OK && L->q_norm)
            st = B->head_rmsnorm(c, q, L->q_norm, 1, d->q_heads, d->head_dim, row, d->eps);
        if (st == SS_OK && L->k_norm)
            st = B->head_rmsnorm(c, k, L->k_norm, 1, d->kv_heads, d->head_dim, row, d->eps);
        if (st == SS_OK) /* k's heads follow q's: one rope call covers both */
            st = B->rope(c, q, d->meta->tok_pos, d->inv_freq, 1, d->q_heads + d->kv_heads, d->head_dim, row);
        if (st == SS_OK)
            st = B->kv_store(c, L->k_cache, L->v_cache, k, v, d->slots, 1, d->kv_heads, d->head_dim, row,
                             d->meta->block_size);
        if (st == SS_OK)
            st = B->attention(c, d->attn, q, row, L->k_cache, L->v_cache, d->meta, 1, d->q_heads, d->kv_heads,
                              d->head_dim, d->attn_scale);
        if (st == SS_OK)
            st = B->linear(c, x, d->attn, L->wo, NULL, 1, d->hidden, (int32_t)qd);
        if (st == SS_OK)
            st = B->add_rmsnorm(c, d->residual, x, h, L->mlp_norm, 1, d->hidden, d->eps);
        if (st == SS_OK)
            st = B->linear(c, gu, h, L->wgu, NULL, 1, 2 * d->inter, d->hidden);
        if (st == SS_OK)
            st = B->silu_mul(c, d->act, gu, 1, d->inter);
        if (st == SS_OK)
            st = B->linear(c, x, d->act, L->wdown, NULL, 1, d->hidden, d->inter);
        if (st == SS_OK)
            st = B->add(c, d->residual, d->residual, x, d->hidden);
    }
    return st;
}
