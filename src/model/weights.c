/* weights.c — finding, checking, slicing and uploading a rank's tensors (one device allocation), with the load's
 * progress (a status line on rank 0's terminal, else log lines). */
#include "model/weights.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/log.h"
#include "core/progress.h"
#include "model/fp8_weights.h"

typedef struct wl_ctx {
    ss_backend *be;
    const ss_model_config *cfg;
    const ss_shard_plan *plan;
    const ss_checkpoint *ck;
    int presliced;
    ss_err *err;
    uint8_t *staging; /* host buffer for column slices */
    size_t staging_cap;
    void *dev_staging; /* fp8 linear weights: the fused bf16 matrix on the device before linear_quantize (allocated at
                        * the first that needs it: an fp8 checkpoint's copied straight in do not) */
    size_t dev_staging_bytes;
} wl_ctx;

/* Expected full (unsliced) shape of a Hugging Face tensor: rows, cols (cols 0 for vectors). */
static void wl_full_shape(const ss_model_config *c, const char *rest, int64_t *rows, int64_t *cols)
{
    int64_t hd = c->head_dim, q = (int64_t)c->n_heads * hd, kv = (int64_t)c->n_kv_heads * hd;
    *cols = c->hidden_size;
    if (!strcmp(rest, "self_attn.q_proj.weight"))
        *rows = q;
    else if (!strcmp(rest, "self_attn.k_proj.weight") || !strcmp(rest, "self_attn.v_proj.weight"))
        *rows = kv;
    else if (!strcmp(rest, "self_attn.o_proj.weight")) {
        *rows = c->hidden_size;
        *cols = q;
    } else if (!strcmp(rest, "mlp.gate_proj.weight") || !strcmp(rest, "mlp.up_proj.weight"))
        *rows = c->intermediate_size;
    else if (!strcmp(rest, "mlp.down_proj.weight")) {
        *rows = c->hidden_size;
        *cols = c->intermediate_size;
    } else if (!strcmp(rest, "self_attn.q_proj.bias")) {
        *rows = q;
        *cols = 0;
    } else if (!strcmp(rest, "self_attn.k_proj.bias") || !strcmp(rest, "self_attn.v_proj.bias")) {
        *rows = kv;
        *cols = 0;
    } else if (!strcmp(rest, "self_attn.q_norm.weight") || !strcmp(rest, "self_attn.k_norm.weight")) {
        *rows = hd;
        *cols = 0;
    } else if (!strcmp(rest, "embed_tokens.weight") || !strcmp(rest, "lm_head.weight")) {
        *rows = c->vocab_size;
    } else { /* norms */
        *rows = c->hidden_size;
        *cols = 0;
    }
}

/* Grows the host staging buffer to at least `need` bytes (for `name`'s message). */
static ss_status wl_staging(wl_ctx *w, size_t need, const char *name)
{
    if (w->staging && need <= w->staging_cap)
        return SS_OK;
    uint8_t *nb = ss_realloc(w->staging, need);
    if (!nb)
        return ss_err_set(w->err, SS_ERR_NOMEM, "out of memory slicing '%s'", name);
    w->staging = nb;
    w->staging_cap = need;
    return SS_OK;
}

/* The part of tensor t this rank holds, slice sl of it: rows [r0, r0 + nr) x columns [c0, c0 + nc) of t as stored (a
 * prepared engine's tensors are that part already). */
static void wl_span(const wl_ctx *w, const ss_st_tensor *t, ss_slice sl, int64_t *r0, int64_t *nr, int64_t *c0,
                    int64_t *nc)
{
    *r0 = 0, *nr = t->shape[0], *c0 = 0, *nc = t->ndim == 2 ? t->shape[1] : 1;
    if (!w->presliced && sl.kind == SS_SLICE_ROWS)
        *r0 = sl.start, *nr = sl.len;
    else if (!w->presliced && sl.kind == SS_SLICE_COLS)
        *c0 = sl.start, *nc = sl.len;
}

/* Rows [r0, r0 + nr) x columns [c0, c0 + nc) of fp8 weight t, dequantised with its scale (fp8_weights.h), into dst
 * in the backend's weight dtype: f32 through the host staging buffer, 4M elements at a time. */
static ss_status wl_put_fp8(wl_ctx *w, const ss_st_tensor *t, void *dst, int64_t r0, int64_t nr, int64_t c0, int64_t nc)
{
    ss_fp8_scale sc;
    SS_CHECK(ss_fp8_scale_find(w->ck, t, w->cfg->fp8_block_rows, w->cfg->fp8_block_cols, &sc, w->err));
    if (!nr || !nc)
        return SS_OK;
    int64_t per = ((int64_t)4 << 20) / nc;
    per = per < 1 ? 1 : per;
    SS_CHECK(wl_staging(w, (size_t)(per < nr ? per : nr) * (size_t)nc * sizeof(float), t->name));
    float *f = (float *)w->staging;
    const size_t esz = ss_dtype_size(w->be->weight_dtype);
    for (int64_t b = 0; b < nr; b += per) {
        const int64_t k = nr - b < per ? nr - b : per;
        for (int64_t r = 0; r < k; r++)
            ss_fp8_dequant(t, &sc, (r0 + b + r) * t->shape[1] + c0, nc, f + r * nc);
        SS_CHECK(w->be->iface->upload_weight(w->be->ctx, (uint8_t *)dst + (size_t)(b * nc) * esz, f, SS_DTYPE_F32,
                                             k * nc));
    }
    return SS_OK;
}

/* Finds tensor `name` in the checkpoint and checks its shape against the config (the plan's slice of it when the
 * checkpoint is presliced; `slice_name` decides the slice: it differs from name for tied embeddings). */
static ss_status wl_find(const wl_ctx *w, const char *name, const char *slice_name, const ss_st_tensor **out)
{
    const char *file = NULL;
    const ss_st_tensor *t = ss_checkpoint_find(w->ck, name, &file);
    if (!t)
        return ss_err_set(w->err, SS_ERR_NOT_FOUND, "tensor '%s' is missing from the checkpoint", name);
    const char *rest = name;
    const char *lp = "model.layers.";
    if (!strncmp(name, lp, strlen(lp))) {
        rest = strchr(name + strlen(lp), '.');
        rest = rest ? rest + 1 : name;
    } else if (!strncmp(name, "model.", 6)) {
        rest = name + 6;
    }
    int64_t rows, cols;
    wl_full_shape(w->cfg, rest, &rows, &cols);
    ss_slice sl = ss_shard_slice_for(w->plan, w->cfg, slice_name);
    int64_t er = rows, ec = cols; /* expected shape in the file */
    if (w->presliced) {
        if (sl.kind == SS_SLICE_ROWS)
            er = sl.len;
        else if (sl.kind == SS_SLICE_COLS)
            ec = sl.len;
    }
    int ok = cols ? (t->ndim == 2 && t->shape[0] == er && t->shape[1] == ec) : (t->ndim == 1 && t->shape[0] == er);
    if (!ok) {
        char got[96];
        if (t->ndim == 2)
            snprintf(got, sizeof got, "[%lld,%lld]", (long long)t->shape[0], (long long)t->shape[1]);
        else
            snprintf(got, sizeof got, "%d dims [%lld%s]", t->ndim, t->ndim ? (long long)t->shape[0] : 0LL,
                     t->ndim > 1 ? ",..." : "");
        if (cols)
            return ss_err_set(w->err, SS_ERR_FORMAT, "%s: tensor '%s': shape %s, expected [%lld,%lld]", file, name,
                              got, (long long)er, (long long)ec);
        return ss_err_set(w->err, SS_ERR_FORMAT, "%s: tensor '%s': shape %s, expected [%lld]", file, name, got,
                          (long long)er);
    }
    *out = t;
    return SS_OK;
}

/* Uploads the plan's slice of tensor `name` (shape checked) into dst; `slice_name` decides the
 * slice (differs from name for tied embeddings). Returns elements written via *n_out. */
static ss_status wl_put(wl_ctx *w, const char *name, const char *slice_name, void *dst, int64_t *n_out)
{
    const ss_st_tensor *t = NULL;
    SS_CHECK(wl_find(w, name, slice_name, &t));
    ss_slice sl = ss_shard_slice_for(w->plan, w->cfg, slice_name);
    const int64_t rows = t->shape[0], cols = t->ndim == 2 ? t->shape[1] : 0; /* as checked (cols 0: a vector) */
    size_t esz = ss_dtype_size(t->dtype);
    const uint8_t *src = t->data;
    int64_t n;
    if (t->dtype == SS_DTYPE_E4M3) { /* an fp8 checkpoint's weight, dequantised: --quantization none, blocks narrower
                                       * than a row (wl_put_linear copies the others straight in), an fp8 embedding */
        if (!w->presliced && sl.kind == SS_SLICE_SKIP)
            return ss_err_set(w->err, SS_ERR_INTERNAL, "tensor '%s' is not held by rank %d", name, w->plan->rank);
        int64_t r0, nr, c0, nc;
        wl_span(w, t, sl, &r0, &nr, &c0, &nc);
        SS_CHECK(wl_put_fp8(w, t, dst, r0, nr, c0, nc));
        if (n_out)
            *n_out = nr * nc;
        return SS_OK;
    }
    if (w->presliced || sl.kind == SS_SLICE_FULL) {
        n = cols ? rows * cols : rows;
        SS_CHECK(w->be->iface->upload_weight(w->be->ctx, dst, src, t->dtype, n));
    } else if (sl.kind == SS_SLICE_ROWS) {
        int64_t rl = cols ? cols : 1;
        n = sl.len * rl;
        if (n)
            SS_CHECK(w->be->iface->upload_weight(w->be->ctx, dst, src + (size_t)(sl.start * rl) * esz, t->dtype, n));
    } else if (sl.kind == SS_SLICE_COLS) {
        n = rows * sl.len;
        if (n) {
            SS_CHECK(wl_staging(w, (size_t)n * esz, name));
            for (int64_t r = 0; r < rows; r++)
                memcpy(w->staging + (size_t)(r * sl.len) * esz, src + (size_t)(r * cols + sl.start) * esz,
                       (size_t)sl.len * esz);
            SS_CHECK(w->be->iface->upload_weight(w->be->ctx, dst, w->staging, t->dtype, n));
        }
    } else {
        return ss_err_set(w->err, SS_ERR_INTERNAL, "tensor '%s' is not held by rank %d", name, w->plan->rank);
    }
    if (n_out)
        *n_out = n;
    return SS_OK;
}

/* Bump allocator over the arena (256-byte aligned pieces): wl_take in elements of weight_dtype, wl_take_linear an
 * [m, k] projection weight in the backend's linear format. max_linear: the largest linear matrix's elements. */
typedef struct wl_carve {
    uint8_t *base;
    size_t off;
    ss_linear_type lt;
    ss_dtype wdt;
    int64_t max_linear;
} wl_carve;

static void *wl_take_bytes(wl_carve *c, size_t bytes)
{
    if (bytes == 0)
        return NULL;
    void *p = c->base ? c->base + c->off : NULL;
    c->off += (bytes + 255) & ~(size_t)255;
    return p;
}

static void *wl_take(wl_carve *c, int64_t elems)
{
    return wl_take_bytes(c, elems > 0 ? (size_t)elems * ss_dtype_size(c->wdt) : 0);
}

static void *wl_take_linear(wl_carve *c, int64_t m, int64_t k)
{
    if (m * k > c->max_linear)
        c->max_linear = m * k;
    return wl_take_bytes(c, m * k > 0 ? ss_linear_bytes(c->lt, c->wdt, m, k) : 0);
}

/* Lays out all tensors; with base == NULL it only measures. */
static void wl_layout(const ss_model_config *cfg, const ss_shard_plan *p, ss_model_weights *w, wl_carve *c)
{
    int64_t dim = cfg->hidden_size, hd = cfg->head_dim;
    int64_t qkv_rows = (int64_t)(p->q_heads + 2 * p->kv_heads) * hd;
    w->embed = p->first_stage ? wl_take(c, (int64_t)p->vocab_size * dim) : NULL;
    w->final_norm = p->last_stage ? wl_take(c, dim) : NULL;
    w->lm_head = p->last_stage ? wl_take(c, (int64_t)p->vocab_size * dim) : NULL;
    for (int32_t l = 0; l < p->layer_end - p->layer_start; l++) {
        ss_layer_weights *L = &w->layers[l];
        L->attn_norm = wl_take(c, dim);
        L->wqkv = wl_take_linear(c, qkv_rows, dim);
        L->bqkv = cfg->attn_bias ? wl_take(c, qkv_rows) : NULL;
        L->q_norm = cfg->qk_norm ? wl_take(c, hd) : NULL;
        L->k_norm = cfg->qk_norm ? wl_take(c, hd) : NULL;
        L->wo = wl_take_linear(c, dim, p->q_heads * hd);
        L->mlp_norm = wl_take(c, dim);
        L->wgu = wl_take_linear(c, 2 * (int64_t)p->inter_size, dim);
        L->wdown = wl_take_linear(c, dim, p->inter_size);
    }
}

/* Uploads the tensors model.layers.<layer>.<suffixes[i]> one after another into dst (a fused matrix
 * or bias: q, k, v rows, or gate, up rows). */
static ss_status wl_put_fused(wl_ctx *w, int32_t layer, const char *const *suffixes, int n, void *dst)
{
    size_t esz = ss_dtype_size(w->be->weight_dtype);
    uint8_t *p = dst;
    for (int i = 0; i < n; i++) {
        char name[160];
        int64_t got = 0;
        snprintf(name, sizeof name, "model.layers.%d.%s", layer, suffixes[i]);
        SS_CHECK(wl_put(w, name, name, p, &got));
        p += (size_t)got * esz;
    }
    return SS_OK;
}

/* A projection weight [m, k] of an fp8 checkpoint whose parts all have one scale for each row (one for the tensor, one
 * a row, or blocks as wide as the row): their codes and scales copied as they are into the fp8 linear format
 * (backend.h: m*k codes, then m f32 scales), so the device holds exactly the checkpoint's weights. Returns
 * SS_ERR_UNSUPPORTED (nothing written) when a part is not such a tensor (not fp8, narrower blocks, or not the shape
 * the config gives): the caller then dequantises and quantises again, or wl_put names what is wrong. */
static ss_status wl_put_fp8_direct(wl_ctx *w, int32_t layer, const char *const *suffixes, int n, void *dst, int64_t m,
                                   int64_t k)
{
    const ss_st_tensor *ts[4];
    ss_fp8_scale sc[4];
    ss_slice sl[4];
    for (int i = 0; i < n; i++) {
        char name[160];
        snprintf(name, sizeof name, "model.layers.%d.%s", layer, suffixes[i]);
        ts[i] = ss_checkpoint_find(w->ck, name, NULL);
        if (!ts[i] || ts[i]->dtype != SS_DTYPE_E4M3 || ts[i]->ndim != 2)
            return SS_ERR_UNSUPPORTED; /* (wl_put then names what is wrong) */
        int64_t er, ec; /* the shape the config (and a prepared engine's slice) gives */
        wl_full_shape(w->cfg, suffixes[i], &er, &ec);
        sl[i] = ss_shard_slice_for(w->plan, w->cfg, name);
        if (w->presliced && sl[i].kind == SS_SLICE_ROWS)
            er = sl[i].len;
        else if (w->presliced && sl[i].kind == SS_SLICE_COLS)
            ec = sl[i].len;
        if (ts[i]->shape[0] != er || ts[i]->shape[1] != ec)
            return SS_ERR_UNSUPPORTED;
        SS_CHECK(ss_fp8_scale_find(w->ck, ts[i], w->cfg->fp8_block_rows, w->cfg->fp8_block_cols, &sc[i], w->err));
        if (sc[i].grid_cols != 1) /* blocks narrower than a row: a row has several scales */
            return SS_ERR_UNSUPPORTED;
    }
    const size_t soff = ss_linear_fp8_scale_offset(m, k);
    int64_t row = 0; /* of the fused matrix */
    for (int i = 0; i < n; i++) {
        const ss_st_tensor *t = ts[i];
        int64_t r0, nr, c0, nc;
        wl_span(w, t, sl[i], &r0, &nr, &c0, &nc);
        if (nc != k || row + nr > m || r0 + nr > t->shape[0] || c0 + nc > t->shape[1])
            return ss_err_set(w->err, SS_ERR_FORMAT, "tensor '%s' [%lld,%lld]: rank %d's slice does not fit its [%lld, "
                              "%lld] projection", t->name, (long long)t->shape[0], (long long)t->shape[1], w->plan->rank,
                              (long long)m, (long long)k);
        SS_CHECK(wl_staging(w, (size_t)(nr > 0 ? nr : 1) * (size_t)(nc > 4 ? nc : 4), t->name)); /* codes, then scales */
        const uint8_t *codes = t->data;
        if (nc == t->shape[1]) { /* whole rows: one run */
            if (nr)
                SS_CHECK(w->be->iface->upload(w->be->ctx, (uint8_t *)dst + (size_t)(row * k), codes + (size_t)(r0 * nc),
                                              (size_t)(nr * nc)));
        } else {
            for (int64_t r = 0; r < nr; r++)
                memcpy(w->staging + (size_t)(r * nc), codes + (size_t)((r0 + r) * t->shape[1] + c0), (size_t)nc);
            if (nr)
                SS_CHECK(w->be->iface->upload(w->be->ctx, (uint8_t *)dst + (size_t)(row * k), w->staging,
                                              (size_t)(nr * nc)));
        }
        float *f = (float *)w->staging; /* the rows' scales */
        for (int64_t r = 0; r < nr; r++)
            f[r] = ss_fp8_scale_at(&sc[i], r0 + r, 0);
        if (nr)
            SS_CHECK(w->be->iface->upload(w->be->ctx, (uint8_t *)dst + soff + (size_t)row * sizeof(float), f,
                                          (size_t)nr * sizeof(float)));
        row += nr;
    }
    if (row != m)
        return ss_err_set(w->err, SS_ERR_INTERNAL, "layer %d's %s: %lld of %lld rows", layer, suffixes[0],
                          (long long)row, (long long)m);
    return SS_OK;
}

/* A projection weight [m, k] from its tensors (fused as wl_put_fused does), in the backend's linear format: fp8
 * goes through the device staging buffer and linear_quantize (a scale a row, so fusing changes nothing); an fp8
 * checkpoint's weights with one scale for each row are copied as they are (wl_put_fp8_direct). */
static ss_status wl_put_linear(wl_ctx *w, int32_t layer, const char *const *suffixes, int n, void *dst, int64_t m,
                               int64_t k)
{
    if (w->be->linear_type == SS_LINEAR_ACT)
        return wl_put_fused(w, layer, suffixes, n, dst);
    if (w->be->linear_type == SS_LINEAR_FP8) { /* (also F8_E4M3 tensors whose config does not say so) */
        const ss_status st = wl_put_fp8_direct(w, layer, suffixes, n, dst, m, k);
        if (st != SS_ERR_UNSUPPORTED)
            return st;
    }
    if (!w->dev_staging) {
        const ss_status st = w->be->iface->alloc(w->be->ctx, w->dev_staging_bytes, &w->dev_staging);
        if (st != SS_OK)
            return ss_err_set(w->err, st, "allocating %.2f GiB of staging for rank %d's %s weights on %s",
                              w->dev_staging_bytes / 1073741824.0, w->plan->rank, ss_linear_type_name(w->be->linear_type),
                              w->be->desc);
    }
    SS_CHECK(wl_put_fused(w, layer, suffixes, n, w->dev_staging));
    ss_status st = w->be->iface->linear_quantize(w->be->ctx, dst, w->dev_staging, m, (int32_t)k);
    if (st != SS_OK)
        return ss_err_set(w->err, st, "quantising layer %d's %s [%lld, %lld] to %s", layer, suffixes[0],
                          (long long)m, (long long)k, ss_linear_type_name(w->be->linear_type));
    return SS_OK;
}

/* A layer's tensors (model.layers.<i>.<suffix>), by the part of the layer they make. */
static const char *const qkv_w[] = {"self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight"};
static const char *const qkv_b[] = {"self_attn.q_proj.bias", "self_attn.k_proj.bias", "self_attn.v_proj.bias"};
static const char *const gate_up[] = {"mlp.gate_proj.weight", "mlp.up_proj.weight"};
static const char *const attn_norm[] = {"input_layernorm.weight"}, *const mlp_norm[] = {"post_attention_layernorm.weight"};
static const char *const q_norm[] = {"self_attn.q_norm.weight"}, *const k_norm[] = {"self_attn.k_norm.weight"};
static const char *const o_proj[] = {"self_attn.o_proj.weight"}, *const down[] = {"mlp.down_proj.weight"};

static ss_status wl_layer(wl_ctx *w, int32_t layer, ss_layer_weights *L)
{
    const int64_t dim = w->cfg->hidden_size, hd = w->cfg->head_dim;
    const int64_t qd = (int64_t)w->plan->q_heads * hd, qkv_rows = qd + 2 * (int64_t)w->plan->kv_heads * hd;
    const int64_t inter = w->plan->inter_size;
    SS_CHECK(wl_put_fused(w, layer, attn_norm, 1, L->attn_norm));
    SS_CHECK(wl_put_fused(w, layer, mlp_norm, 1, L->mlp_norm));
    SS_CHECK(wl_put_linear(w, layer, qkv_w, 3, L->wqkv, qkv_rows, dim));
    if (L->bqkv)
        SS_CHECK(wl_put_fused(w, layer, qkv_b, 3, L->bqkv));
    if (L->q_norm) {
        SS_CHECK(wl_put_fused(w, layer, q_norm, 1, L->q_norm));
        SS_CHECK(wl_put_fused(w, layer, k_norm, 1, L->k_norm));
    }
    SS_CHECK(wl_put_linear(w, layer, o_proj, 1, L->wo, dim, qd));
    SS_CHECK(wl_put_linear(w, layer, gate_up, 2, L->wgu, 2 * inter, dim));
    return wl_put_linear(w, layer, down, 1, L->wdown, dim, inter);
}

ss_status ss_weights_load(ss_backend *be, const ss_model_config *cfg, const ss_shard_plan *plan,
                          const ss_checkpoint *ck, int presliced, ss_model_weights **out, ss_err *err)
{
    *out = NULL;
    ss_model_weights *w = ss_calloc(1, sizeof *w);
    int32_t nl = plan->layer_end - plan->layer_start;
    if (!w || !(w->layers = ss_calloc((size_t)(nl > 0 ? nl : 1), sizeof *w->layers))) {
        if (w)
            ss_free(w);
        return ss_err_set(err, SS_ERR_NOMEM, "out of memory");
    }
    w->plan = *plan;
    const int64_t q_width = (int64_t)plan->q_heads * cfg->head_dim;
    if (be->linear_type == SS_LINEAR_FP8 && !ss_weights_fp8_widths_ok(cfg, plan)) {
        ss_free(w->layers);
        ss_free(w);
        return ss_err_set(err, SS_ERR_UNSUPPORTED,
                          "--quantization fp8 needs projection widths that are multiples of 16 (hidden %d, rank %d's "
                          "intermediate %d and attention %lld)",
                          (int)cfg->hidden_size, plan->rank, (int)plan->inter_size, (long long)q_width);
    }
    wl_carve c = {NULL, 0, be->linear_type, be->weight_dtype, 0};
    wl_layout(cfg, plan, w, &c);
    w->bytes = c.off;
    ss_status st = be->iface->alloc(be->ctx, w->bytes, &w->arena);
    if (st != SS_OK) {
        st = ss_err_set(err, st, "allocating %.2f GiB for rank %d's weights on %s", w->bytes / 1073741824.0,
                        plan->rank, be->desc);
        ss_free(w->layers);
        ss_free(w);
        return st;
    }
    c.base = w->arena;
    c.off = 0;
    wl_layout(cfg, plan, w, &c);
    wl_ctx x = {be, cfg, plan, ck, presliced, err, NULL, 0, NULL, (size_t)c.max_linear * ss_dtype_size(be->weight_dtype)};
    /* Progress in the arena's bytes: the tensors before the layers, then a layer's (every layer's are the same). A
     * status line on rank 0's terminal (the other ranks share it: they log every few seconds instead). */
    const size_t pre = nl > 0 ? (size_t)((uint8_t *)w->layers[0].attn_norm - (uint8_t *)w->arena) : w->bytes;
    const size_t per_layer = nl > 0 ? (w->bytes - pre) / (size_t)nl : 0;
    char phase[64];
    snprintf(phase, sizeof phase, "rank %d: loading %d layers", plan->rank, (int)nl);
    ss_progress *prog = NULL;
    const int quiet = ss_log_level_get() > SS_LOG_INFO;
    if (ss_progress_create(phase, (int64_t)w->bytes, plan->rank == 0 && !quiet && isatty(STDERR_FILENO), quiet, &prog,
                           err) != SS_OK) {
        ss_weights_free(be, w);
        return SS_ERR_NOMEM;
    }
    if (w->embed)
        SS_CHECK_GOTO(wl_put(&x, "model.embed_tokens.weight", "model.embed_tokens.weight", w->embed, NULL), st, fail);
    if (w->final_norm)
        SS_CHECK_GOTO(wl_put(&x, "model.norm.weight", "model.norm.weight", w->final_norm, NULL), st, fail);
    if (w->lm_head) {
        const char *src = "lm_head.weight";
        if (cfg->tie_embeddings && !ss_checkpoint_find(ck, src, NULL))
            src = "model.embed_tokens.weight";
        SS_CHECK_GOTO(wl_put(&x, src, "lm_head.weight", w->lm_head, NULL), st, fail);
    }
    ss_progress_add(prog, (int64_t)pre);
    for (int32_t l = 0; l < nl; l++) {
        SS_CHECK_GOTO(wl_layer(&x, plan->layer_start + l, &w->layers[l]), st, fail);
        ss_progress_add(prog, (int64_t)per_layer);
    }
    SS_CHECK_GOTO(be->iface->sync(be->ctx), st, fail);
    if (ss_progress_elapsed(prog) >= 0.25) /* (a small model's load says nothing more than the runner's line) */
        ss_progress_finish(prog);
    ss_progress_destroy(prog);
    ss_free(x.staging);
    if (x.dev_staging)
        be->iface->free_buf(be->ctx, x.dev_staging);
    *out = w;
    return SS_OK;
fail:
    ss_progress_destroy(prog);
    ss_free(x.staging);
    if (x.dev_staging) {
        (void)be->iface->sync(be->ctx);
        be->iface->free_buf(be->ctx, x.dev_staging);
    }
    ss_weights_free(be, w);
    return st;
}

ss_status ss_weights_check(const ss_model_config *cfg, const ss_shard_plan *plan, const ss_checkpoint *ck,
                           int presliced, ss_err *err)
{
    wl_ctx x = {NULL, cfg, plan, ck, presliced, err, NULL, 0, NULL, 0};
    const ss_st_tensor *t;
    if (plan->first_stage)
        SS_CHECK(wl_find(&x, "model.embed_tokens.weight", "model.embed_tokens.weight", &t));
    if (plan->last_stage) {
        SS_CHECK(wl_find(&x, "model.norm.weight", "model.norm.weight", &t));
        const char *src = "lm_head.weight"; /* as ss_weights_load picks it */
        if (cfg->tie_embeddings && !ss_checkpoint_find(ck, src, NULL))
            src = "model.embed_tokens.weight";
        SS_CHECK(wl_find(&x, src, "lm_head.weight", &t));
    }
    const struct {
        const char *const *names;
        int n, on;
    } parts[] = {{attn_norm, 1, 1},     {mlp_norm, 1, 1},          {qkv_w, 3, 1}, {qkv_b, 3, cfg->attn_bias},
                 {q_norm, 1, cfg->qk_norm}, {k_norm, 1, cfg->qk_norm}, {o_proj, 1, 1}, {gate_up, 2, 1},
                 {down, 1, 1}};
    for (int32_t l = plan->layer_start; l < plan->layer_end; l++)
        for (size_t p = 0; p < sizeof parts / sizeof parts[0]; p++)
            for (int i = 0; i < parts[p].n && parts[p].on; i++) {
                char name[160];
                snprintf(name, sizeof name, "model.layers.%d.%s", (int)l, parts[p].names[i]);
                SS_CHECK(wl_find(&x, name, name, &t));
            }
    return SS_OK;
}

int ss_weights_fp8_widths_ok(const ss_model_config *cfg, const ss_shard_plan *plan)
{
    return cfg->hidden_size % 16 == 0 && plan->inter_size % 16 == 0 && (int64_t)plan->q_heads * cfg->head_dim % 16 == 0;
}

void ss_weights_free(ss_backend *be, ss_model_weights *w)
{
    if (!w)
        return;
    if (w->arena)
        be->iface->free_buf(be->ctx, w->arena);
    ss_free(w->layers);
    ss_free(w);
}
