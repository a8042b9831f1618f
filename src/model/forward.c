/* forward.c — one rank's share of a Llama-family forward pass over a packed batch: embedding
 * (vocabulary-parallel), its pipeline stage's layers (tensor-parallel), and the logits rows. */
#include "model/forward.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "model/step_tiles.h"

struct ss_forward {
    ss_backend *be;
    const ss_model_config *cfg;
    const ss_model_weights *w;
    ss_forward_params p;
    ss_forward_links links;
    int64_t q_dim, kv_dim, qkv_dim; /* this rank's widths in elements */
    size_t esz;                     /* act element size */
    /* activations [max_tokens, …] in act dtype */
    void *residual, *x, *h, *qkv, *attn, *gu, *act;
    void *hrows;                    /* [max_rows, dim] normed rows for the lm_head */
    float *logits_local;            /* [max_rows, vocab_per_rank] f32 */
    float *logits_gather;           /* [tp, max_rows, vocab_per_rank] f32 (tp > 1) */
    float *logits_full;             /* [max_rows, vocab] f32 (tp > 1) */
    float *inv_freq;                /* [head_dim/2] */
    /* greedy reduction across vocabulary shards (tp > 1): per row max, argmax and log-sum-exp */
    float *red_local;               /* device [3, max_rows]: value, index (int32 bits), local logprob */
    float *red_gather;              /* device [tp, 3, max_rows] */
    float *red_host;                /* host [3, max_rows]: an empty shard's results, uploaded */
    int32_t greedy_pending;         /* rows whose shard maxima the last run gathered, not yet combined */
    ss_sample_row *greedy_rows;     /* host [max_rows]: temperature 0 */
    /* step metadata, one device buffer: ids, tok_seq, tok_pos, slots, rows, block_tables, seq_lens */
    int32_t *meta;
    int32_t *meta_host;
    const int32_t *fed; /* device tokens that ids < 0 select (ss_forward_set_fed), or NULL; borrowed */
    int meta_full;      /* SS_META_FULL=1 (benchmark switch): graph steps use the full-size layout too */
    size_t meta_elems;
    void *kv;                       /* one allocation: per layer K then V */
    size_t kv_layer_bytes;          /* bytes of one layer's K (or V) */
    size_t kv_bytes;
    int graphs;                     /* decode steps may be replayed from CUDA graphs */
    int32_t chain_tile;             /* a graph step's longest attention tile (ss_forward_chain_tile) */
    int32_t graph_bucket;           /* ss_forward_graph_pad's bucket (ss_forward_graph_bucket); 0: powers of two */
    int32_t graphs_captured;        /* captures so far (logged at powers of two from 16: many mean replacements) */
    int64_t eager_n, eager_us, eager_max_us; /* the debug log's enqueue times of steps run op by op, per 256 */
    int fuse_rope;                  /* use the backend's rope_kv_store (SS_UNFUSED_ROPE: a benchmark switch) */
    int fuse_mlp;                   /* use the backend's matmul_silu (SS_UNFUSED_MLP: a benchmark switch) */
    ss_decode_layer *dlayers;       /* [layers of this stage] for decode_layers; NULL: not used (SS_PERSIST=0,
                                     * pipeline stages, or a backend without the op) */
    ss_decode_exchange xchg;        /* tp > 1: decode_layers' window into the tp group (xchg.size 0: none,
                                     * and batch-1 steps run op by op) */
};

static ss_status fwd_alloc(ss_forward *f, size_t bytes, void **out, const char *what, ss_err *err)
{
    ss_status st = f->be->iface->alloc(f->be->ctx, bytes ? bytes : 16, out);
    if (st != SS_OK)
        return ss_err_set(err, st, "allocating %zu bytes for %s on %s", bytes, what, f->be->desc);
    return SS_OK;
}

#define FWD_ALLOC(field, bytes, what) SS_CHECK_GOTO(fwd_alloc(f, (bytes), (void **)&f->field, what, err), st, fail)

/* Whether the tensor-parallel groups of pipeline stages get the decode exchange window too, so that their
 * batch-1 steps run the persistent kernel (the default; SS_PERSIST_PP_TP=0 turns it off, equal on every rank).
 * The window's by-content protocol needs no collective between two launches (a rank reaches a layer's slots
 * of launch k + 1 only after its peers' pushes of an earlier layer of that launch, which follow their emptying
 * of launch k), so a stage whose step starts with a receive instead of the embedding's all-reduce keeps it
 * (docs/architecture.md). Written in session 15; first run in session 26 on 4 x H200: goldens and the sampled
 * test pass at tp 2 x pp 2, batch 1 379.6 against 334.1 tok/s op by op (+13.6%). */
static int fwd_stage_windows(void)
{
    const char *v = getenv("SS_PERSIST_PP_TP");
    return !(v && !strcmp(v, "0"));
}

int32_t ss_forward_chain_tile(void)
{
    const char *v = getenv("SS_GRAPH_TILE"); /* benchmark switch: 1 = every token its own tile, as before session 40 */
    char *end = NULL;
    const long t = v && *v ? strtol(v, &end, 10) : SS_FWD_CHAIN_TILE;
    if (v && *v && *end) {
        SS_LOGW("SS_GRAPH_TILE=%s is not a count of tokens: ignored", v);
        return SS_FWD_CHAIN_TILE;
    }
    return t < 1 ? 1 : t >= SS_ATTN_LONG_TILE ? SS_ATTN_LONG_TILE - 1 : (int32_t)t;
}

int64_t ss_forward_graph_pad(int64_t n, int32_t bucket)
{
    int64_t p = 1;
    while (p < n)
        p *= 2;
    if (bucket > 0 && n >= 2 * (int64_t)bucket) {
        const int64_t m = (n + bucket - 1) / bucket * bucket;
        p = m < p ? m : p;
    }
    return p;
}

int32_t ss_forward_graph_bucket(void)
{
    const char *v = getenv("SS_GRAPH_BUCKET");
    if (!v || !*v)
        return SS_GRAPH_BUCKET_DEFAULT;
    char *end = NULL;
    const long b = strtol(v, &end, 10);
    if (*end || (b != 0 && (b < 8 || b > 64 || b % 8 != 0))) {
        SS_LOGW("SS_GRAPH_BUCKET=%s is neither 0 nor a multiple of 8 from 8 to 64: graph steps keep buckets of %d", v,
                SS_GRAPH_BUCKET_DEFAULT);
        return SS_GRAPH_BUCKET_DEFAULT;
    }
    return (int32_t)b;
}

ss_status ss_forward_create(ss_backend *be, const ss_model_config *cfg, const ss_model_weights *w,
                            const ss_forward_params *p, const ss_forward_links *links, ss_forward **out, ss_err *err)
{
    *out = NULL;
    ss_forward *f = ss_calloc(1, sizeof *f);
    if (!f)
        return ss_err_set(err, SS_ERR_NOMEM, "out of memory");
    ss_status st = SS_OK;
    f->be = be;
    f->cfg = cfg;
    f->w = w;
    f->p = *p;
    f->links = *links;
    f->graphs = p->graphs;
    f->chain_tile = ss_forward_chain_tile();
    f->graph_bucket = p->graph_bucket > 0 ? p->graph_bucket : 0;
    f->fuse_rope = getenv("SS_UNFUSED_ROPE") == NULL;
    f->fuse_mlp = getenv("SS_UNFUSED_MLP") == NULL;
    const ss_shard_plan *sp = &w->plan;
    f->esz = ss_dtype_size(be->act_dtype);
    f->q_dim = (int64_t)sp->q_heads * cfg->head_dim;
    f->kv_dim = (int64_t)sp->kv_heads * cfg->head_dim;
    f->qkv_dim = f->q_dim + 2 * f->kv_dim;
    size_t T = (size_t)p->max_tokens, R = (size_t)p->max_rows, dim = (size_t)cfg->hidden_size;
    FWD_ALLOC(residual, T * dim * f->esz, "the residual stream");
    FWD_ALLOC(x, T * dim * f->esz, "activations");
    FWD_ALLOC(h, T * dim * f->esz, "activations");
    FWD_ALLOC(qkv, T * (size_t)f->qkv_dim * f->esz, "q/k/v");
    FWD_ALLOC(attn, T * (size_t)f->q_dim * f->esz, "attention output");
    FWD_ALLOC(gu, T * 2 * (size_t)sp->inter_size * f->esz, "gate/up");
    FWD_ALLOC(act, T * (size_t)sp->inter_size * f->esz, "MLP activations");
    if (sp->last_stage) {
        FWD_ALLOC(hrows, R * dim * f->esz, "logit rows");
        FWD_ALLOC(logits_local, R * (size_t)sp->vocab_per_rank * sizeof(float), "logits");
        if (sp->tp > 1) {
            FWD_ALLOC(logits_gather, (size_t)sp->tp * R * (size_t)sp->vocab_per_rank * sizeof(float), "logits");
            FWD_ALLOC(logits_full, R * (size_t)cfg->vocab_size * sizeof(float), "logits");
            FWD_ALLOC(red_local, 3 * R * sizeof(float), "greedy reduction");
            FWD_ALLOC(red_gather, (size_t)sp->tp * 3 * R * sizeof(float), "greedy reduction");
            f->red_host = ss_malloc(3 * R * sizeof(float));
            f->greedy_rows = ss_calloc(R, sizeof(ss_sample_row));
            if (!f->red_host || !f->greedy_rows) {
                st = ss_err_set(err, SS_ERR_NOMEM, "out of memory");
                goto fail;
            }
        }
    }
    FWD_ALLOC(inv_freq, (size_t)cfg->head_dim / 2 * sizeof(float), "rope table");
    {
        float tab[512];
        ss_config_rope_inv_freq(cfg, tab);
        SS_CHECK_GOTO(be->iface->upload(be->ctx, f->inv_freq, tab, (size_t)cfg->head_dim / 2 * sizeof(float)), st,
                      fail);
    }
    /* layout: ids, tok_seq, tok_pos, slots [T each], q_tiles [2T], rows [R], seq_lens [S], block_tables [S, max_blocks] */
    /* + SS_FWD_GRAPH_MAX_TOKENS: a graph step's compact layout (fwd_layout at its padded size) needs 8 n_pad +
     * n_seqs max_blocks, and its padding may exceed max_seqs by less than that */
    f->meta_elems = 6 * T + R + (size_t)p->max_seqs * ((size_t)p->max_blocks + 1) + SS_FWD_GRAPH_MAX_TOKENS;
    FWD_ALLOC(meta, f->meta_elems * sizeof(int32_t), "step metadata");
    f->meta_host = ss_malloc(f->meta_elems * sizeof(int32_t));
    const char *full = getenv("SS_META_FULL");
    f->meta_full = full && full[0] == '1';
    if (!f->meta_host) {
        st = ss_err_set(err, SS_ERR_NOMEM, "out of memory");
        goto fail;
    }
    int32_t nl = sp->layer_end - sp->layer_start;
    if (be->kv_type == SS_KV_FP8 && cfg->head_dim % 16 != 0) {
        st = ss_err_set(err, SS_ERR_UNSUPPORTED,
                        "--kv-cache-dtype fp8 needs a head_dim that is a multiple of 16 (the model's is %d)",
                        (int)cfg->head_dim);
        goto fail;
    }
    f->kv_layer_bytes =
        (size_t)p->num_blocks * ss_kv_block_bytes(be->kv_type, be->act_dtype, p->block_size, sp->kv_heads, cfg->head_dim);
    f->kv_bytes = f->kv_layer_bytes * 2 * (size_t)nl;
    FWD_ALLOC(kv, f->kv_bytes, "the KV cache");
    /* Batch-1 decode steps go through the backend's decode_layers where it has one: on Hopper one
     * persistent kernel per step (2-4% faster than op by op at short contexts, docs/performance.md,
     * session 10), on the cpu its own ops in sequence (the same arithmetic as op by op, so CI runs this
     * path too). A backend refuses the steps it does not suit (long contexts), which then run op by op.
     * SS_PERSIST=0 turns it off (a benchmark switch). Pipeline stages use it at tp 1 (session 15); at tp > 1
     * only a one-stage group sets up the exchange window it needs (ss_forward_set_links), unless
     * fwd_stage_windows says so. */
    const char *persist = getenv("SS_PERSIST");
    if (be->iface->decode_layers && sp->tp <= SS_DECODE_MAX_TP &&
        (sp->tp == 1 || (sp->first_stage && sp->last_stage) || fwd_stage_windows()) &&
        !(persist && !strcmp(persist, "0"))) {
        f->dlayers = ss_calloc((size_t)nl, sizeof *f->dlayers);
        if (!f->dlayers) {
            st = ss_err_set(err, SS_ERR_NOMEM, "out of memory");
            goto fail;
        }
        for (int32_t li = 0; li < nl; li++) {
            const ss_layer_weights *L = &w->layers[li];
            char *kc = (char *)f->kv + (size_t)li * 2 * f->kv_layer_bytes;
            f->dlayers[li] = (ss_decode_layer){L->attn_norm, L->wqkv, L->bqkv, L->q_norm, L->k_norm, L->wo,
                                               L->mlp_norm,  L->wgu,  L->wdown, kc,        kc + f->kv_layer_bytes};
        }
    }
    *out = f;
    return SS_OK;
fail:
    ss_forward_destroy(f);
    return st;
}

void ss_forward_destroy(ss_forward *f)
{
    if (!f)
        return;
    void *bufs[] = {f->residual, f->x, f->h, f->qkv, f->attn, f->gu, f->act, f->hrows, f->logits_local,
                    f->logits_gather, f->logits_full, f->inv_freq, f->meta, f->kv, f->red_local, f->red_gather};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        if (bufs[i])
            f->be->iface->free_buf(f->be->ctx, bufs[i]);
    ss_free(f->meta_host);
    ss_free(f->red_host);
    ss_free(f->greedy_rows);
    ss_free(f->dlayers);
    ss_free(f);
}

ss_status ss_forward_set_links(ss_forward *f, const ss_forward_links *links, ss_err *err)
{
    f->links = *links;
    ss_comm *tp = links->tp;
    const ss_shard_plan *sp = &f->w->plan;
    /* Called once per forward pass (a second call would leave graphs holding the first window). Every
     * rank of a tensor-parallel group (of one-stage groups only with SS_PERSIST_PP_TP=0) calls window, wanting it or
     * not (SS_PERSIST=0 on one rank, a backend without the op): the call is collective, and one rank that
     * does not want it means none gets it. */
    if (tp->size < 2 || f->xchg.size || !tp->iface->window || ((!sp->first_stage || !sp->last_stage) && !fwd_stage_windows()))
        return SS_OK;
    size_t bytes = ss_decode_exchange_bytes(sp->layer_end - sp->layer_start, f->cfg->hidden_size, tp->size);
    ss_comm_window win;
    ss_status st = tp->iface->window(tp->ctx, bytes, f->dlayers != NULL, &win);
    if (st == SS_ERR_UNSUPPORTED) {
        if (tp->rank == 0)
            SS_LOGI("tp %d: decode steps of one token run layer by layer (no peer window between the ranks, or a rank "
                    "without the persistent kernel)",
                    tp->size);
        return SS_OK;
    }
    if (st != SS_OK)
        return ss_err_set(err, st, "rank %d: the decode exchange window of %zu bytes: %s", sp->rank, bytes,
                          ss_status_str(st));
    f->xchg.rank = win.rank, f->xchg.size = win.size, f->xchg.window_bytes = win.bytes;
    f->xchg.abort_flag = win.abort_flag;
    for (int r = 0; r < win.size; r++)
        f->xchg.window[r] = win.base[r];
    return SS_OK;
}

void ss_forward_set_fed(ss_forward *f, const int32_t *fed)
{
    f->fed = f->be->iface->embed_fed ? fed : NULL;
}

int ss_forward_feeds(const ss_forward *f)
{
    return f->fed != NULL;
}

size_t ss_forward_kv_bytes(const ss_forward *f)
{
    return f->kv_bytes;
}

static void *fwd_off(void *base, int64_t elems, size_t esz)
{
    return (char *)base + (size_t)elems * esz;
}

/* The tensor-parallel sum of x (each rank's partial product), then residual += x and h = rmsnorm(residual)
 * · w — one fused collective where the communicator offers it for this shape, else the two steps. */
static ss_status fwd_reduce_norm(ss_forward *f, int64_t n, const void *w)
{
    const ss_backend_i *B = f->be->iface;
    ss_comm *tp = f->links.tp;
    int32_t dim = f->cfg->hidden_size;
    if (tp->size > 1 && tp->iface->all_reduce_add_rmsnorm) { /* every rank takes the same branch */
        ss_status st = tp->iface->all_reduce_add_rmsnorm(tp->ctx, f->x, f->residual, f->h, w, n, dim, f->cfg->rms_eps,
                                                          f->be->act_dtype);
        if (st != SS_ERR_UNSUPPORTED)
            return st;
    }
    if (tp->size > 1)
        SS_CHECK(tp->iface->all_reduce_sum(tp->ctx, f->x, n * dim, f->be->act_dtype));
    return B->add_rmsnorm(f->be->ctx, f->residual, f->x, f->h, w, n, dim, f->cfg->rms_eps);
}

/* One decoder layer: attention block then MLP block. On entry h holds the normed input (the previous
 * layer, or the caller for layer 0, did the norm); on return, with next_norm, residual holds the layer's
 * output and h its norm by next_norm (the next layer's input norm, or the final norm); without, x holds
 * the MLP's output, summed across tp but not yet added to residual. */
static ss_status fwd_layer(ss_forward *f, int32_t li, int64_t n, const ss_attn_meta *meta, const int32_t *pos,
                           const int32_t *slots, const void *next_norm)
{
    const ss_backend_i *B = f->be->iface;
    void *c = f->be->ctx;
    const ss_model_config *cfg = f->cfg;
    const ss_shard_plan *sp = &f->w->plan;
    const ss_layer_weights *L = &f->w->layers[li];
    int32_t dim = cfg->hidden_size, hd = cfg->head_dim;
    ss_comm *tp = f->links.tp;
    SS_CHECK(B->linear(c, f->qkv, f->h, L->wqkv, L->bqkv, n, (int32_t)f->qkv_dim, dim));
    void *q = f->qkv, *k = fwd_off(f->qkv, f->q_dim, f->esz), *v = fwd_off(f->qkv, f->q_dim + f->kv_dim, f->esz);
    if (L->q_norm) {
        SS_CHECK(B->head_rmsnorm(c, q, L->q_norm, n, sp->q_heads, hd, f->qkv_dim, cfg->rms_eps));
        SS_CHECK(B->head_rmsnorm(c, k, L->k_norm, n, sp->kv_heads, hd, f->qkv_dim, cfg->rms_eps));
    }
    char *kc = (char *)f->kv + (size_t)li * 2 * f->kv_layer_bytes, *vc = kc + f->kv_layer_bytes;
    if (B->rope_kv_store && f->fuse_rope) {
        SS_CHECK(B->rope_kv_store(c, f->qkv, pos, f->inv_freq, n, sp->q_heads, sp->kv_heads, hd, f->qkv_dim, kc, vc,
                                  slots, f->p.block_size));
    } else { /* k's heads follow q's in each row: one rope call covers both */
        SS_CHECK(B->rope(c, q, pos, f->inv_freq, n, sp->q_heads + sp->kv_heads, hd, f->qkv_dim));
        SS_CHECK(B->kv_store(c, kc, vc, k, v, slots, n, sp->kv_heads, hd, f->qkv_dim, f->p.block_size));
    }
    SS_CHECK(B->attention(c, f->attn, q, f->qkv_dim, kc, vc, meta, n, sp->q_heads, sp->kv_heads, hd,
                          1.0f / sqrtf((float)hd)));
    SS_CHECK(B->linear(c, f->x, f->attn, L->wo, NULL, n, dim, (int32_t)f->q_dim));
    SS_CHECK(fwd_reduce_norm(f, n, L->mlp_norm));
    ss_status st = SS_ERR_UNSUPPORTED;
    if (B->matmul_silu && f->fuse_mlp)
        st = B->matmul_silu(c, f->act, f->h, L->wgu, n, sp->inter_size, dim);
    if (st == SS_ERR_UNSUPPORTED) {
        SS_CHECK(B->linear(c, f->gu, f->h, L->wgu, NULL, n, 2 * sp->inter_size, dim));
        SS_CHECK(B->silu_mul(c, f->act, f->gu, n, sp->inter_size));
    } else if (st != SS_OK) {
        return st;
    }
    SS_CHECK(B->linear(c, f->x, f->act, L->wdown, NULL, n, dim, sp->inter_size));
    if (next_norm)
        return fwd_reduce_norm(f, n, next_norm);
    if (tp->size > 1)
        SS_CHECK(tp->iface->all_reduce_sum(tp->ctx, f->x, n * dim, f->be->act_dtype));
    return SS_OK;
}

/* Greedy rows with tp > 1: each rank finds its shard's max (argmax op) and log-sum-exp (from the
 * temperature-0 log-probability the sample op returns: lse = max - logprob), then only those three
 * numbers per row cross the tp group, instead of whole rows of the vocabulary. This is the device half
 * (capturable in a graph); ss_forward_greedy_device combines them on every rank. */
static ss_status fwd_greedy_gather(ss_forward *f, int32_t n_rows)
{
    const ss_backend_i *B = f->be->iface;
    void *c = f->be->ctx;
    const ss_shard_plan *sp = &f->w->plan;
    int32_t R = f->p.max_rows;
    float *val = f->red_local, *lp = f->red_local + 2 * (size_t)R;
    int32_t *idx = (int32_t *)(f->red_local + R);
    if (sp->vocab_size > 0) {
        /* logits_local holds rows of vocab_size here (see fwd_logits); the sample op's token output is
         * scratch (red_gather is overwritten by the gather below). */
        SS_CHECK(B->sample(c, (int32_t *)f->red_gather, lp, f->logits_local, n_rows, sp->vocab_size, f->greedy_rows));
        SS_CHECK(B->argmax(c, val, idx, f->logits_local, n_rows, sp->vocab_size, sp->vocab_start));
    } else { /* an empty shard (tiny vocabularies only): it never wins */
        for (int32_t r = 0; r < n_rows; r++) {
            f->red_host[r] = -INFINITY;
            f->red_host[2 * (size_t)R + r] = 0.0f;
            ((int32_t *)f->red_host)[(size_t)R + r] = 0;
        }
        SS_CHECK(B->upload(c, f->red_local, f->red_host, 3 * (size_t)R * sizeof(float)));
    }
    ss_comm *tp = f->links.tp;
    SS_CHECK(tp->iface->all_gather(tp->ctx, f->red_gather, f->red_local, 3 * (int64_t)R, SS_DTYPE_F32));
    f->greedy_pending = n_rows;
    return SS_OK;
}

ss_status ss_forward_greedy_device(ss_forward *f, int32_t *out_tok, float *out_logprob, int32_t *n_rows, ss_err *err)
{
    const ss_shard_plan *sp = &f->w->plan;
    *n_rows = f->greedy_pending;
    if (f->greedy_pending <= 0)
        return (*n_rows = 0), SS_OK;
    f->greedy_pending = 0;
    ss_status st = f->be->iface->greedy_combine(f->be->ctx, out_tok, out_logprob, f->red_gather, *n_rows,
                                                f->p.max_rows, sp->tp);
    if (st != SS_OK)
        return ss_err_set(err, st, "rank %d: combining the greedy shards on %s", sp->rank, f->be->desc);
    return SS_OK;
}

/* Final norm, lm_head over the selected rows, and the gather of the vocabulary shards. */
static ss_status fwd_logits(ss_forward *f, int64_t n, int32_t n_rows, const int32_t *rows, int greedy_only,
                            const float **logits)
{
    const ss_backend_i *B = f->be->iface;
    void *c = f->be->ctx;
    const ss_shard_plan *sp = &f->w->plan;
    int32_t dim = f->cfg->hidden_size, V = f->cfg->vocab_size, vpr = sp->vocab_per_rank;
    (void)n; /* h holds the final norm of every token already (the last layer did it) */
    if (n_rows <= 0) {
        *logits = NULL;
        return SS_OK;
    }
    SS_CHECK(B->gather_rows(c, f->hrows, f->h, rows, n_rows, dim));
    if (sp->tp == 1) {
        SS_CHECK(B->matmul(c, f->logits_local, SS_DTYPE_F32, f->hrows, f->w->lm_head, NULL, n_rows, V, dim));
        *logits = f->logits_local;
        return SS_OK;
    }
    if (greedy_only) { /* rows of this shard's own width, reduced without gathering them */
        *logits = NULL;
        if (sp->vocab_size > 0)
            SS_CHECK(B->matmul(c, f->logits_local, SS_DTYPE_F32, f->hrows, f->w->lm_head, NULL, n_rows, sp->vocab_size,
                               dim));
        return fwd_greedy_gather(f, n_rows);
    }
    /* Each rank computes [n_rows, vpr] (its last rows may be short: zero-padded), gathered as
     * [tp][n_rows][vpr], then laid out as [n_rows][V]. */
    if (sp->vocab_size < vpr)
        SS_CHECK(B->zero(c, f->logits_local, (size_t)n_rows * vpr * sizeof(float)));
    if (sp->vocab_size > 0) {
        if (sp->vocab_size == vpr) {
            SS_CHECK(B->matmul(c, f->logits_local, SS_DTYPE_F32, f->hrows, f->w->lm_head, NULL, n_rows, vpr, dim));
        } else { /* short shard: compute into the gather buffer's tail, then copy rows at stride vpr */
            float *tmp = f->logits_full;
            SS_CHECK(B->matmul(c, tmp, SS_DTYPE_F32, f->hrows, f->w->lm_head, NULL, n_rows, sp->vocab_size, dim));
            for (int32_t r = 0; r < n_rows; r++)
                SS_CHECK(B->copy(c, f->logits_local + (size_t)r * vpr, tmp + (size_t)r * sp->vocab_size,
                                 (size_t)sp->vocab_size * sizeof(float)));
        }
    }
    ss_comm *tp = f->links.tp;
    SS_CHECK(tp->iface->all_gather(tp->ctx, f->logits_gather, f->logits_local, (int64_t)n_rows * vpr, SS_DTYPE_F32));
    for (int k = 0; k < sp->tp; k++) {
        int64_t start = (int64_t)k * vpr, len = V - start < vpr ? V - start : vpr;
        if (len <= 0)
            continue;
        for (int32_t r = 0; r < n_rows; r++)
            SS_CHECK(B->copy(c, f->logits_full + (size_t)r * V + start,
                             f->logits_gather + ((size_t)k * n_rows + r) * vpr, (size_t)len * sizeof(float)));
    }
    *logits = f->logits_full;
    return SS_OK;
}


/* Where each array of a step's metadata starts in the meta buffers (int32 offsets): ids, tok_seq, tok_pos,
 * slots [t each], q_tiles [2t], rows [r], seq_lens [s], block_tables [n_seqs, bt_stride]; `total` is
 * what the step uploads. Graph steps use their padded size for t, r and s, and rows of block tables only
 * as wide as their context bound needs, so that a decode step uploads a few KB instead of the ~50 KB of
 * the prefill-sized layout plus 2 KB per sequence (the pointers and the stride a graph bakes in depend
 * only on its padded size and context bound, both part of its key); other steps use the full sizes for t,
 * r and s, and rows as wide as their bound too. */
typedef struct fwd_meta_layout {
    size_t ids, seq, pos, slot, tiles, rows, lens, bt, total;
    int32_t bt_stride; /* entries per block-table row */
} fwd_meta_layout;

static fwd_meta_layout fwd_layout(size_t t, size_t r, size_t s, size_t n_seqs, int32_t bt_stride)
{
    fwd_meta_layout l = {0, t, 2 * t, 3 * t, 4 * t, 6 * t, 6 * t + r, 6 * t + r + s, 0, bt_stride};
    l.total = l.bt + n_seqs * (size_t)bt_stride;
    return l;
}

/* Fills the host metadata of a step of n tokens (padded with inert tokens up to n_pad: id 0, sequence
 * 0 at position 0, no KV slot, a row of its own) in layout l, and its query tiles (ss_step_tiles: runs of at most
 * max_run tokens; graph: the tile count padded to a power of two, at most n_pad) into *tiles_info. */
static void fwd_pack_meta(ss_forward *f, const ss_forward_batch *b, int64_t n_pad, int32_t n_rows_pad,
                          const fwd_meta_layout *l, int32_t max_run, int graph, ss_step_tiles_info *tiles_info)
{
    int32_t *m = f->meta_host;
    int64_t n = b->n_tokens;
    int32_t *ids = m + l->ids, *seq = m + l->seq, *pos = m + l->pos, *slot = m + l->slot, *tiles = m + l->tiles,
            *rows = m + l->rows;
    int32_t *lens = m + l->lens, *bt = m + l->bt;
    memcpy(ids, b->ids, (size_t)n * 4);
    memcpy(seq, b->tok_seq, (size_t)n * 4);
    memcpy(pos, b->tok_pos, (size_t)n * 4);
    memcpy(slot, b->slots, (size_t)n * 4);
    if (b->n_rows)
        memcpy(rows, b->rows, (size_t)b->n_rows * 4);
    for (int64_t i = n; i < n_pad; i++) {
        ids[i] = 0, seq[i] = 0, pos[i] = 0, slot[i] = -1;
    }
    for (int32_t i = b->n_rows; i < n_rows_pad; i++)
        rows[i] = i;
    memcpy(lens, b->seq_lens, (size_t)b->n_seqs * 4);
    if (l->bt_stride == f->p.max_blocks)
        memcpy(bt, b->block_tables, (size_t)b->n_seqs * f->p.max_blocks * 4);
    else /* the first bt_stride blocks of each row: all that positions below the step's context bound use */
        for (int32_t s = 0; s < b->n_seqs; s++)
            memcpy(bt + (size_t)s * l->bt_stride, b->block_tables + (size_t)s * f->p.max_blocks,
                   (size_t)l->bt_stride * 4);
    ss_step_tiles(seq, pos, n, n_pad, max_run, graph, tiles, tiles_info);
}

/* A collective of this step failed: adds the peer it failed on to err's message where the communicator knows it
 * (tcp: the one whose connection closed, or that sent nothing before the deadline), as a replica rank (session 60:
 * "rank 0: layer 2: timed out" named no one). */
static void fwd_blame_peer(const ss_forward *f, ss_err *err)
{
    const ss_shard_plan *sp = &f->w->plan;
    const ss_comm *tp = f->links.tp, *world = f->links.world;
    ss_comm_blame how = SS_COMM_PEER_CLOSED;
    int peer = tp && tp->iface->failed_peer ? tp->iface->failed_peer(tp->ctx, &how) : -1;
    if (peer >= 0)
        peer += sp->stage * sp->tp; /* the tp group is this stage's ranks */
    else if (world && world->iface->failed_peer)
        peer = world->iface->failed_peer(world->ctx, &how);
    if (peer < 0 || !err)
        return;
    char tail[96];
    snprintf(tail, sizeof tail, how == SS_COMM_PEER_SILENT ? " (rank %d sent nothing before the comm timeout)"
                                                           : " (rank %d closed its connection)", peer);
    const size_t len = strlen(err->msg);
    snprintf(err->msg + len, sizeof err->msg - len, "%s", tail);
}

/* Embedding (or activations from the previous stage), this stage's layers, and the logits: every
 * device op of a step, so that a decode step can be captured as a whole. */
static ss_status fwd_body_ops(ss_forward *f, int64_t n, int32_t n_rows, const ss_attn_meta *meta,
                             const fwd_meta_layout *ml, int greedy_only, const float **logits, ss_err *err)
{
    const ss_backend_i *B = f->be->iface;
    void *c = f->be->ctx;
    const ss_shard_plan *sp = &f->w->plan;
    int32_t dim = f->cfg->hidden_size;
    const int32_t *d = f->meta + ml->ids;
    ss_forward_links *L = &f->links;
    ss_status st;
    if (sp->first_stage) {
        st = f->fed ? B->embed_fed(c, f->residual, f->w->embed, d, f->fed, n, dim, sp->vocab_start, sp->vocab_size)
                    : B->embed(c, f->residual, f->w->embed, d, n, dim, sp->vocab_start, sp->vocab_size);
        if (st == SS_OK && L->tp->size > 1)
            st = L->tp->iface->all_reduce_sum(L->tp->ctx, f->residual, n * dim, f->be->act_dtype);
    } else {
        st = L->world->iface->recv(L->world->ctx, f->residual, n * dim, f->be->act_dtype, L->prev_rank);
    }
    if (st != SS_OK)
        return ss_err_set(err, st, "rank %d: %s: %s", sp->rank,
                          sp->first_stage ? "embedding" : "receiving activations", ss_status_str(st));
    const int32_t nl = sp->layer_end - sp->layer_start;
    if (f->dlayers && n == 1 && meta->n_seqs == 1 && (sp->tp == 1 || f->xchg.size)) {
        /* batch 1: every layer in one op where the backend can (at tp > 1 with its window) */
        const ss_model_config *cfg = f->cfg;
        ss_decode_layers dl = {nl, f->dlayers, dim, sp->inter_size, sp->q_heads, sp->kv_heads, cfg->head_dim,
                               cfg->rms_eps, 1.0f / sqrtf((float)cfg->head_dim), f->inv_freq, meta, f->meta + ml->slot,
                               f->residual, f->qkv, f->attn, f->act, f->h, f->x, f->gu,
                               sp->tp > 1 ? &f->xchg : NULL};
        st = B->decode_layers(c, &dl);
        if (st == SS_OK && !sp->last_stage) { /* the residual after this stage's layers, as op by op sends it */
            st = L->world->iface->send(L->world->ctx, f->residual, n * dim, f->be->act_dtype, L->next_rank);
            return st == SS_OK ? SS_OK : ss_err_set(err, st, "rank %d: sending activations to rank %d", sp->rank, L->next_rank);
        }
        if (st == SS_OK)
            st = B->rmsnorm(c, f->h, f->residual, f->w->final_norm, n, dim, f->cfg->rms_eps);
        if (st == SS_OK)
            goto logits;
        if (st != SS_ERR_UNSUPPORTED)
            return ss_err_set(err, st, "rank %d: decode layers: %s", sp->rank, ss_status_str(st));
    }
    st = B->rmsnorm(c, f->h, f->residual, f->w->layers[0].attn_norm, n, dim, f->cfg->rms_eps);
    if (st != SS_OK)
        return ss_err_set(err, st, "rank %d: input norm: %s", sp->rank, ss_status_str(st));
    for (int32_t li = 0; li < nl; li++) {
        /* each layer norms the next one's input; the last stage's last layer applies the final norm */
        const void *next_norm = li + 1 < nl ? f->w->layers[li + 1].attn_norm : sp->last_stage ? f->w->final_norm : NULL;
        st = fwd_layer(f, li, n, meta, f->meta + ml->pos, f->meta + ml->slot, next_norm);
        if (st != SS_OK)
            return ss_err_set(err, st, "rank %d: layer %d: %s", sp->rank, sp->layer_start + li, ss_status_str(st));
    }
    if (!sp->last_stage) {
        st = B->add(c, f->residual, f->residual, f->x, n * dim);
        if (st == SS_OK)
            st = L->world->iface->send(L->world->ctx, f->residual, n * dim, f->be->act_dtype, L->next_rank);
        if (st != SS_OK)
            return ss_err_set(err, st, "rank %d: sending activations to rank %d", sp->rank, L->next_rank);
        return SS_OK;
    }
logits:
    st = fwd_logits(f, n, n_rows, f->meta + ml->rows, greedy_only, logits);
    if (st != SS_OK)
        return ss_err_set(err, st, "rank %d: logits: %s", sp->rank, ss_status_str(st));
    return SS_OK;
}

static ss_status fwd_body(ss_forward *f, int64_t n, int32_t n_rows, const ss_attn_meta *meta,
                          const fwd_meta_layout *ml, int greedy_only, const float **logits, ss_err *err)
{
    const ss_status st = fwd_body_ops(f, n, n_rows, meta, ml, greedy_only, logits, err);
    if (st == SS_ERR_COMM || st == SS_ERR_TIMEOUT)
        fwd_blame_peer(f, err);
    return st;
}

/* Replays (capturing first when needed) the graph of a padded decode step. Returns
 * SS_ERR_UNSUPPORTED, with nothing enqueued, when the backend has no graphs. Collectives (tp > 1) are
 * captured with the rest: every rank makes the same calls in the same order whether it captures or
 * replays (ranks do agree on which steps are graphs: see ss_forward_run). */
static ss_status fwd_graph_step(ss_forward *f, uint64_t key, int64_t n, const ss_attn_meta *meta,
                                const fwd_meta_layout *ml, int greedy_only, const float **logits, ss_err *err)
{
    const ss_backend_i *B = f->be->iface;
    void *c = f->be->ctx;
    ss_status st = B->graph_launch(c, key);
    if (st != SS_OK && st != SS_ERR_NOT_FOUND)
        return st == SS_ERR_UNSUPPORTED ? st : ss_err_set(err, st, "replaying a decode graph on %s", f->be->desc);
    if (st == SS_ERR_NOT_FOUND) {
        if (++f->graphs_captured >= 16 && (f->graphs_captured & (f->graphs_captured - 1)) == 0)
            SS_LOGI("forward: %d decode graphs captured so far (the latest: %lld tokens, %d tiles of up to %d)",
                    f->graphs_captured, (long long)n, meta->n_tiles, meta->max_tile_tokens);
        const int64_t t0 = ss_now_us();
        st = B->graph_begin(c, key);
        if (st != SS_OK)
            return st == SS_ERR_UNSUPPORTED ? st : ss_err_set(err, st, "capturing a decode graph on %s", f->be->desc);
        ss_status body = fwd_body(f, n, (int32_t)n, meta, ml, greedy_only, logits, err);
        const int64_t t1 = ss_now_us();
        st = B->graph_end(c, key); /* always closes the capture, also after a failed op */
        if (body != SS_OK)
            return body;
        if (st != SS_OK)
            return ss_err_set(err, st, "capturing a decode graph of %lld tokens on %s", (long long)n, f->be->desc);
        SS_LOGD("forward: decode graph of %lld tokens (bound %d) captured: recording %.2f ms, instantiating %.2f ms",
                (long long)n, meta->max_seq_len, (double)(t1 - t0) / 1e3, (double)(ss_now_us() - t1) / 1e3);
        st = B->graph_launch(c, key);
        if (st != SS_OK)
            return ss_err_set(err, st, "replaying a decode graph on %s", f->be->desc);
    }
    /* where fwd_logits leaves a step's result (see there) */
    if (f->w->plan.tp == 1)
        *logits = f->logits_local;
    else if (greedy_only)
        f->greedy_pending = (int32_t)n, *logits = NULL;
    else
        *logits = f->logits_full;
    return SS_OK;
}

ss_status ss_forward_run(ss_forward *f, const ss_forward_batch *b, const float **logits, ss_err *err)
{
    const ss_backend_i *B = f->be->iface;
    void *c = f->be->ctx;
    const ss_shard_plan *sp = &f->w->plan;
    int64_t n = b->n_tokens, T = f->p.max_tokens;
    *logits = NULL;
    f->greedy_pending = 0;
    if (n < 1 || n > T || b->n_seqs < 1 || b->n_seqs > f->p.max_seqs || b->n_rows < 0 || b->n_rows > f->p.max_rows)
        return ss_err_set(err, SS_ERR_INVALID_ARG, "step of %lld tokens, %d sequences, %d rows exceeds the sizes %lld/%d/%d",
                          (long long)n, b->n_seqs, b->n_rows, (long long)T, f->p.max_seqs, f->p.max_rows);
    /* A decode step (every token a logits row; one per sequence, or a run of a sequence's tokens at consecutive
     * positions: a speculating sequence's token and its drafts) of a replica without pipeline stages is padded to its
     * bucket (ss_forward_graph_pad) and replayed from a graph; anything else runs op by op. The choice must be
     * the same on every rank of the tensor-parallel group (a graph step's collectives carry the padded count), so it
     * depends only on the plan and on settings the leader hands out. (An empty vocabulary shard fills its reduction
     * from the host: if any rank's shard is empty, no rank uses graphs.) */
    int64_t n_pad = ss_forward_graph_pad(n, f->graph_bucket);
    int decode = n <= SS_FWD_GRAPH_MAX_TOKENS && b->n_rows == n && b->tok_seq[0] == 0 &&
                 b->tok_seq[n - 1] == b->n_seqs - 1; /* the shape a graph replays */
    for (int64_t i = 0, run = 1; decode && i < n; i++) {
        const int same = i > 0 && b->tok_seq[i] == b->tok_seq[i - 1];
        run = same ? run + 1 : 1;
        decode = b->rows[i] == i && (i == 0 || same ? i == 0 || b->tok_pos[i] == b->tok_pos[i - 1] + 1
                                                    : b->tok_seq[i] == b->tok_seq[i - 1] + 1) &&
                 run <= SS_ATTN_TILE_MAX;
    }
    const int graph = decode && f->graphs && sp->first_stage && sp->last_stage &&
                      (int64_t)sp->vocab_per_rank * (sp->tp - 1) < f->cfg->vocab_size && n_pad <= T &&
                      n_pad <= f->p.max_rows;
    if (!graph)
        n_pad = n;
    int32_t msl = b->max_seq_len, bound = 256;
    while (bound < b->max_seq_len)
        bound *= 2;
    /* The context bound only sizes the attention's key splits; a graph's is a power of two, which keeps graphs few.
     * A step of that shape run op by op (graphs off, pipeline stages) takes the same bound, so the same splits: its
     * rows then equal a replayed step's bit for bit. With the true maximum an eager batch-12 step of the golden model
     * ran unsplit where its graph (bound 256) split the keys in two, and the merge's last bits grew through the KV
     * cache into a near-tie token flip at step 27 (session 56-57). (The persistent batch-1 kernel then sizes its
     * per-item K/V preload by the bound too, as in graphs: with graphs off it declines about twice as early.) */
    if (decode)
        msl = bound;
    /* Block-table rows as wide as the power-of-two bound (whole 64-key tiles stay within a row), not as
     * the context cap: at a 128k-token cap a full row is 32 KB a sequence. */
    int32_t bs = f->p.block_size, stride = (bound + bs - 1) / bs;
    if (stride > f->p.max_blocks)
        stride = f->p.max_blocks;
    fwd_meta_layout ml = graph && !f->meta_full
                             ? fwd_layout((size_t)n_pad, (size_t)n_pad, (size_t)n_pad, (size_t)b->n_seqs, stride)
                             : fwd_layout((size_t)T, (size_t)f->p.max_rows, (size_t)f->p.max_seqs, (size_t)b->n_seqs,
                                          graph ? f->p.max_blocks : stride);
    /* a graph step's runs in tiles of at most chain_tile tokens: no long tiles, so no groups, and few shapes */
    ss_step_tiles_info ti;
    fwd_pack_meta(f, b, n_pad, graph ? (int32_t)n_pad : b->n_rows, &ml, graph ? f->chain_tile : SS_ATTN_TILE_MAX,
                  graph, &ti);
    ss_status st = B->upload(c, f->meta, f->meta_host, ml.total * 4);
    if (st != SS_OK)
        return ss_err_set(err, st, "uploading step metadata to %s", f->be->desc);
    const int32_t *d = f->meta;
    ss_attn_meta meta = {.tok_seq = d + ml.seq,
                         .tok_pos = d + ml.pos,
                         .block_tables = d + ml.bt,
                         .seq_lens = d + ml.lens,
                         .n_seqs = b->n_seqs,
                         .max_blocks = ml.bt_stride,
                         .max_seq_len = msl,
                         .block_size = f->p.block_size,
                         .q_tiles = d + ml.tiles,
                         .n_tiles = ti.n_tiles,
                         .max_tile_tokens = ti.max_tile_tokens,
                         .n_short_tiles = ti.n_short_tiles,
                         .short_tokens = ti.short_tokens,
                         .max_short_tokens = ti.max_short_tokens};
    if (graph) {
        int greedy = b->greedy_only && sp->tp > 1; /* the only flag that changes the captured ops */
        /* what the captured launches are sized by: the context bound, the flag, the padded token and tile counts
         * (<= 256: 9 bits each) and the longest tile (< SS_ATTN_LONG_TILE) */
        uint64_t key = ((uint64_t)msl << 32) | ((uint64_t)greedy << 31) | ((uint64_t)ti.max_tile_tokens << 18) |
                       ((uint64_t)ti.n_tiles << 9) | (uint64_t)n_pad;
        st = fwd_graph_step(f, key, n_pad, &meta, &ml, greedy, logits, err);
        if (st == SS_OK && f->greedy_pending)
            f->greedy_pending = b->n_rows; /* the padding rows are not results */
        if (st != SS_ERR_UNSUPPORTED)
            return st;
        f->graphs = 0; /* this backend has none: run op by op from now on (the metadata packed anew) */
        return ss_forward_run(f, b, logits, err);
    }
    const int64_t t0 = ss_now_us();
    st = fwd_body(f, n, b->n_rows, &meta, &ml, b->greedy_only, logits, err);
    const int64_t us = ss_now_us() - t0;
    f->eager_us += us;
    f->eager_max_us = us > f->eager_max_us ? us : f->eager_max_us;
    if (++f->eager_n == 256) {
        SS_LOGD("forward: 256 steps op by op, enqueued in %.2f ms on average, at most %.2f", f->eager_us / 256e3,
                f->eager_max_us / 1e3);
        f->eager_n = f->eager_us = f->eager_max_us = 0;
    }
    return st;
}
