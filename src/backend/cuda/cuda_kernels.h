/* cuda_kernels.h — the C boundary of the CUDA kernels (.cu files): one launcher per op.
 * Every launcher enqueues on `stream` (a cudaStream_t) and returns the cudaError_t of the launch as
 * an int (0 = success); backend_cuda.c maps it to ss_status. "bf16" pointers are __nv_bfloat16 on
 * the device. No CUDA header is needed to include this file. */
#ifndef SS_CUDA_KERNELS_H
#define SS_CUDA_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- elementwise.cu ---- */
/* out[i, :] = table[id - row_start, :] when in [0, rows), else zeros, where id = ids[i], or
 * fed[-1 - ids[i]] when ids[i] < 0 and fed != NULL. vec8: dim % 8 == 0 and the pointers are 16-byte
 * aligned (the launcher checks and falls back to scalar otherwise). */
int ss_cuda_embed(void *stream, void *out, const void *table, const int32_t *ids, const int32_t *fed, int64_t n,
                  int32_t dim, int64_t row_start, int64_t rows);
/* out[j, :] = x[idx[j], :]. */
int ss_cuda_gather_rows(void *stream, void *out, const void *x, const int32_t *idx, int64_t m, int32_t dim);
/* out[t, j] = silu(gu[t, j]) * gu[t, inter + j]. */
int ss_cuda_silu_mul(void *stream, void *out, const void *gu, int64_t n, int32_t inter);
/* out[i] = a[i] + b[i] (bf16; out may alias a or b). */
int ss_cuda_add(void *stream, void *out, const void *a, const void *b, int64_t n);
/* out[r, j] += bias[j] over rows x m; out is bf16 (out_f32 == 0) or f32 (out_f32 != 0); bias bf16. */
int ss_cuda_add_bias(void *stream, void *out, int out_f32, const void *bias, int64_t rows, int32_t m);

/* ---- norm.cu ---- */
/* out[r] = x[r] * rsqrt(mean(x[r]^2) + eps) * w; when residual != NULL: residual[r] += x[r] first
 * (rounded to bf16) and the norm is taken of the new residual. out may alias x when residual is NULL. */
int ss_cuda_rmsnorm(void *stream, void *out, void *residual, const void *x, const void *w, int64_t rows,
                    int32_t dim, float eps);
/* Per-head RMSNorm in place over head_dim values at x + t*tok_stride + h*head_dim. */
int ss_cuda_head_rmsnorm(void *stream, void *x, const void *w, int64_t n, int32_t heads, int32_t head_dim,
                         int64_t tok_stride, float eps);

/* ---- rope.cu ---- */
int ss_cuda_rope(void *stream, void *x, const int32_t *pos, const float *inv_freq, int64_t n, int32_t heads,
                 int32_t head_dim, int64_t tok_stride);

/* rope over the q_heads + kv_heads heads of each qkv row, then the rotated k heads and the v heads
 * (which follow them in the row) into slot slots[t] of the paged cache (skipped when negative). */
int ss_cuda_rope_kv_store(void *stream, void *qkv, const int32_t *pos, const float *inv_freq, int64_t n,
                          int32_t q_heads, int32_t kv_heads, int32_t head_dim, int64_t tok_stride, void *k_cache,
                          void *v_cache, const int32_t *slots);

/* ---- kvcache.cu ---- */
/* Token i's k/v rows ([kv_heads*head_dim] at k + i*src_stride) go to slot slots[i] of the paged
 * cache [num_blocks*block_size, kv_heads*head_dim]; a negative slot is skipped (padding). fp8: the cache
 * has the fp8 blocks of backend.h (ss_kv_block_bytes; head_dim a multiple of 16, at most 256). */
int ss_cuda_kv_store(void *stream, void *k_cache, void *v_cache, const void *k, const void *v, const int32_t *slots,
                     int64_t n, int32_t kv_heads, int32_t head_dim, int64_t src_stride, int fp8, int32_t block_size);

/* ---- attention.cu ---- */
typedef struct ss_cuda_attn_args {
    void *out;            /* [n, heads*head_dim] bf16 */
    const void *q;        /* row i at q + i*q_stride elements: [heads, head_dim] bf16 */
    int64_t q_stride;
    const void *k_cache;  /* [num_blocks, block_size, kv_heads, head_dim] bf16, or fp8 blocks (kv_fp8) */
    const void *v_cache;
    const int32_t *tok_seq, *tok_pos, *block_tables, *seq_lens;
    int32_t max_blocks, block_size, max_seq_len;
    int64_t n;
    int32_t heads, kv_heads, head_dim;
    float scale;
    /* split-K workspace (device, f32); the launcher bounds the split count by its size. */
    void *workspace;
    int64_t workspace_bytes;
    int32_t sm_count;
    /* Optional query tiles (ss_attn_meta.q_tiles; NULL / 0 when absent): runs of one sequence at
     * consecutive positions, at most 64 tokens each. With them the launcher may use the tensor-core
     * kernel (attn_tiled.cu); the choice depends only on these host-known counts and the shapes. */
    const int32_t *q_tiles; /* [n_tiles, 2] first token, token count (device) */
    int32_t n_tiles;
    int32_t max_tile_tokens;
    int32_t n_short_tiles, short_tokens, max_short_tokens; /* ss_attn_meta's (0: the tiles are not grouped) */
    /* 1: decode tiles may merge their key splits in a thread block cluster (ss_cuda_attn_cluster_ok). */
    int32_t cluster_ok;
    /* CTAs of the tensor-core decode kernel one SM holds, 64- and 32-key forms (ss_cuda_attn_decode_ctas_per_sm;
     * 0: unknown, and then the 32-key form is never picked). */
    int32_t decode_ctas_per_sm, decode_short_ctas_per_sm;
    /* CTAs of the prefill form of two m-tiles a warp one SM holds (ss_cuda_attn_prefill_mt2_ctas_per_sm; below 2:
     * ss_attn_prefill_mt2 never takes it). */
    int32_t prefill_mt2_ctas_per_sm;
    /* 1: the device runs the wgmma prefill form for this launch's head size and cache (ss_cuda_attn_prefill_wg_ok);
     * 0: ss_attn_prefill_wg never takes it. */
    int32_t prefill_wg_ok;
    /* 1: the caches hold the fp8 blocks of backend.h (ss_kv_block_bytes; head_dim a multiple of 16). */
    int32_t kv_fp8;
    /* 1: the device runs the decode form of a CTA per sequence (attn_decode_seq.cu) for this head size and cache, up
     * to 8 kv heads (ss_cuda_attn_seq_ok); 0: ss_attn_seq_form never takes it. */
    int32_t seq_ok;
} ss_cuda_attn_args;
/* head_dim must be a multiple of 8 and at most 256, heads a multiple of kv_heads
 * (the launcher returns cudaErrorInvalidValue otherwise). Benchmark switches, environment variables read
 * by this launcher at each call: SS_ATTN_FORCE=old|tiled overrides the kernel choice (tiled still needs
 * q_tiles and head_dim 64 or 128); SS_ATTN_LONG=0 keeps long-context decode on the short-context split
 * rule; SS_ATTN_SPLIT_KEYS=N sets the least keys per split of that rule (attn_splits.h); SS_ATTN_ORDER=
 * heads_inner|heads_outer forces the tensor-core kernel's grid order (attn_tiled.cuh); SS_ATTN_SHORT=0|1 never /
 * always takes its decode form of more CTAs a SM (bf16: 32-key tiles; fp8: the register-capped 64-key tiles);
 * SS_ATTN_SPLITS=N gives decode tiles N key splits, merged by the combine kernel (attn_splits.h); SS_ATTN_GROUPS=0
 * keeps a step's grouped tiles (n_short_tiles) in one launch;
 * SS_ATTN_SEQ=0|1 never / always (where it runs) takes the decode form of a CTA per sequence (attn_splits.h). */
int ss_cuda_attention(void *stream, const ss_cuda_attn_args *a);
/* Whether this device runs the cluster-merged decode attention for head_dim (64 or 128): sm_90+, a full
 * cluster fits, and SS_ATTN_CLUSTER is not "0" (a benchmark switch). A runtime query: ask once. */
int ss_cuda_attn_cluster_ok(int head_dim);
/* How many CTAs of the tensor-core decode attention one SM of this device holds for head_dim (64 or 128;
 * 0 otherwise or when the query fails), in its 64-key form or (short_tiles = 1) its form of more CTAs a SM, for a
 * bf16 cache (32-key tiles) or (fp8 = 1) an fp8 one (64-key tiles held to fewer registers; heads of 128 only, 0
 * at 64). A runtime query: ask once. */
int ss_cuda_attn_decode_ctas_per_sm(int head_dim, int short_tiles, int fp8);
/* How many CTAs of the tensor-core prefill attention's form of two m-tiles a warp one SM of this device holds for
 * head_dim (64 or 128; 0 otherwise, when the query fails, or where its ~102 KB of shared memory do not fit a block,
 * as on Ada GPUs), for a bf16 cache or (fp8 = 1) an fp8 one. A runtime query: ask once. */
int ss_cuda_attn_prefill_mt2_ctas_per_sm(int head_dim, int fp8);
/* 1 when the current device runs the prefill form on Hopper's warpgroup MMA (attn_wgmma.cu) for head_dim and a bf16
 * (fp8 = 0) or fp8 cache: sm_90 exactly, heads of 128, a bf16 cache; 0 otherwise. A runtime query: ask once. */
int ss_cuda_attn_prefill_wg_ok(int head_dim, int fp8);
/* 1 when the current device runs the decode form of a CTA per sequence (attn_decode_seq.cu) for head_dim (64 or 128)
 * and a bf16 (fp8 = 0) or fp8 (1) cache with up to 8 kv heads; 0 otherwise. A runtime query: ask once. */
int ss_cuda_attn_seq_ok(int head_dim, int fp8);

/* ---- decode_persist.cu ---- */
/* Most decoder layers one persistent decode launch takes (its kernel parameters hold every layer's pointers:
 * ~8.5 KB at 96, which CUDA 12.1+ allows; Llama-3-70B has 80). */
#define SS_CUDA_PERSIST_MAX_LAYERS 96
typedef struct ss_cuda_persist_layer {
    const void *attn_norm, *wqkv, *bqkv, *q_norm, *k_norm, *wo, *mlp_norm, *wgu, *wdown; /* bqkv, q/k_norm: NULL if none */
    void *k_cache, *v_cache; /* this layer's paged cache: [blocks * block_size, kv_heads, head_dim] bf16, or (kv_fp8)
                              * the fp8 blocks of kv_fp8.cuh */
} ss_cuda_persist_layer;
#define SS_CUDA_PERSIST_MAX_TP 8
typedef struct ss_cuda_persist_args {
    int32_t n_layers;
    const ss_cuda_persist_layer *layers; /* host array of n_layers, read before return */
    int32_t hidden, inter, q_heads, kv_heads, head_dim;
    float eps, scale;
    const float *inv_freq;                /* [head_dim / 2] */
    const int32_t *pos, *slots;           /* [1]: the token's position (seq_lens[0] - 1) and cache slot */
    const int32_t *block_table, *seq_lens; /* the sequence's block ids; [1] its length after this step */
    int32_t block_size, max_seq_len;      /* max_seq_len: a host bound on seq_lens[0] (sizes shared memory) */
    void *residual;                       /* [hidden] bf16: the embedding in, the last layer's output out */
    void *qkv, *attn, *act;               /* scratch: [qkv_dim], [q_heads * head_dim], [inter] bf16 */
    void *workspace;                      /* device scratch (counters, split partials) */
    size_t workspace_bytes;
    int32_t tp_rank, tp_size;             /* tp_size > 1: o and down sum across the group through the windows */
    void *tp_window[SS_CUDA_PERSIST_MAX_TP]; /* [tp_size]: rank r's exchange window here (backend.h's ss_decode_exchange) */
    size_t tp_window_bytes;
    const volatile int *tp_abort;         /* nonzero: stop waiting for peers */
    int32_t fp8;                          /* 1: wqkv, wo, wgu, wdown are backend.h's fp8 linear format */
    int32_t kv_fp8;                       /* 1: the caches are fp8 blocks (backend.h's SS_KV_FP8; head_dim % 16 == 0) */
    int64_t call;                         /* the backend's count of these launches (SS_PERSIST_TRACE picks one) */
    const char *why;                      /* out: why the launcher returned -1 (a static string) */
} ss_cuda_persist_args;
/* One decode token (batch 1) through n_layers Llama-family layers in one persistent kernel (sm_90+):
 * rmsnorm, q/k/v (+ bias, + Qwen3 q/k norms), rope, the cache store, attention, o, residual, rmsnorm,
 * SwiGLU MLP, residual. Returns -1, with nothing enqueued, where it does not apply (device, shapes,
 * alignment, workspace; a->why says which): callers run the layers op by op. */
int ss_cuda_decode_persist(void *stream, ss_cuda_persist_args *a);

/* ---- gemv.cu ---- */
/* Largest n handled by the skinny-GEMM kernel (one pass over W for all n rows of x; the tensor-core family takes
 * them as one or two tiles of 8, the SIMT family up to 8). */
#define SS_CUDA_GEMV_MAX_N 16
/* fp8 weights: the tensor-core form also takes 17..32 rows, as four tiles of 8 (linear only, not the SwiGLU form; the
 * backend sends it none by default: SS_FP8_GEMV_WIDE_ELEMS and SS_FP8_GEMV_MAX, backend_cuda.c). */
#define SS_CUDA_GEMV_FP8_MAX_N 32
/* The largest bf16 matrix (m x k elements: Llama-3-8B's fused gate/up) whose n of 9..SS_CUDA_GEMV_MAX_N rows the
 * backend sends to the GEMV's two-tile form by default; larger ones take cuBLASLt past 8 rows (backend_cuda.c says why;
 * fp8 weights take the GEMV on every matrix). */
#define SS_CUDA_GEMV2_MAX_ELEMS (28672LL * 4096)
/* Whether ss_cuda_gemv can take these arguments (n <= max, k % 8 == 0, 16-byte aligned x and W). */
int ss_cuda_gemv_supported(const void *x, const void *W, int64_t n, int32_t k);
/* out[n, m] = x[n, k] . W[m, k]^T (+ bias[m]); out bf16 (out_f32 == 0) or f32. fp32 accumulation, fixed
 * summation order (deterministic). On sm_90+ the PDL variants launch with programmatic stream
 * serialization and read W before waiting for the previous kernel: W (and only W) must not be written
 * by a kernel on this stream (weights are; x, bias and out are read/written only after the wait). */
int ss_cuda_gemv(void *stream, void *out, int out_f32, const void *x, const void *W, const void *bias, int64_t n,
                 int32_t m, int32_t k);
/* The MLP's SwiGLU on the GEMV: out[n, inter] = silu(x . Wg^T) * (x . Wu^T), bf16 out, where W is
 * [2*inter, k] (gate rows, then up rows); both products stay f32 until the end. Returns -1 with nothing
 * enqueued where it does not apply (what ss_cuda_gemv takes, and a tensor-core GEMV variant), else a
 * cudaError_t. */
int ss_cuda_gemv_silu(void *stream, void *out, const void *x, const void *W, int64_t n, int32_t inter, int32_t k);
/* The same two over fp8 weights (backend.h's linear format: e4m3 rows, a scale a row, scale[m] on the device),
 * W8A16 on tensor cores (x rounded to f16 for the mma, saturating at +-65504): out[t, i] = (x[t] . e4m3(W[i])) *
 * scale[i] (+ bias), and the SwiGLU form (scale [2*inter]; n <= SS_CUDA_GEMV_MAX_N, else -1). supported: 1 <= n <=
 * SS_CUDA_GEMV_FP8_MAX_N, k % 16 == 0, x and W 16-byte aligned. */
int ss_cuda_gemv_fp8_supported(const void *x, const void *W, int64_t n, int32_t k);
int ss_cuda_gemv_fp8(void *stream, void *out, const void *x, const void *W, const float *scale, const void *bias,
                     int64_t n, int32_t m, int32_t k);
int ss_cuda_gemv_silu_fp8(void *stream, void *out, const void *x, const void *W, const float *scale, int64_t n,
                          int32_t inter, int32_t k);
/* Kernel variants, for benchmarks and tests only (not part of the backend interface). The variant is a
 * process-wide knob: initially SS_GEMV_VARIANT (a name or an index; unset or unknown: variant 0, the
 * default), then whatever ss_cuda_gemv_set_variant chose; it applies to launches made (or captured) after
 * it is set. Names are static strings; NULL for an index out of range. set returns 0 or
 * cudaErrorInvalidValue. */
int ss_cuda_gemv_variant_count(void);
const char *ss_cuda_gemv_variant_name(int variant);
int ss_cuda_gemv_variant(void);
int ss_cuda_gemv_set_variant(int variant);

/* ---- linear_fp8.cu ---- */
/* Per row r of x [rows, k] bf16 (k % 16 == 0, x and q 16-byte aligned): q[r, i] = e4m3(x[r, i] * 448 / a_r),
 * scale[r] = a_r / 448, a_r = max_i |x[r, i]|: the fp8 linear format's arithmetic (backend.h, ss_linear_bytes),
 * for weights and, a token a row, for activations. */
int ss_cuda_fp8_quantize_rows(void *stream, void *q, float *scale, const void *x, int64_t rows, int32_t k);
/* out[t, i] *= x_scale[t] * w_scale[i] over bf16 out [n, m]: an unscaled e4m3 GEMM's product scaled (where
 * cuBLASLt cannot apply the scales itself). */
int ss_cuda_fp8_scale_out(void *stream, void *out, const float *x_scale, const float *w_scale, int64_t n, int32_t m);
/* out[t, j] = silu(gu[t, j] * x_scale[t] * w_scale[j]) * (gu[t, inter + j] * x_scale[t] * w_scale[inter + j]): the
 * SwiGLU of an unscaled e4m3 GEMM's product gu [n, 2 * inter] (inter % 8 == 0, out and gu 16-byte aligned). */
int ss_cuda_fp8_silu_scaled(void *stream, void *out, const void *gu, const float *x_scale, const float *w_scale,
                            int64_t n, int32_t inter);

/* ---- sample.cu ---- */
/* Per row of f32 logits [n, vocab]: max value and first index of it (+ index_offset). */
int ss_cuda_argmax(void *stream, float *out_val, int32_t *out_idx, const float *logits, int64_t n, int32_t vocab,
                   int32_t index_offset);

typedef struct ss_cuda_sample_row {
    float temperature; /* <= 0: greedy */
    int32_t top_k;     /* <= 0 or >= vocab: off */
    float top_p;       /* >= 1: off */
    float min_p;       /* <= 0: off */
    float uniform;     /* in [0, 1) */
} ss_cuda_sample_row;
/* Samples one token per row; rows is a HOST array of n, passed to the kernels by value (so the
 * launch is capturable in a CUDA graph, which then replays these parameters). Also writes the
 * chosen token's log-probability under log_softmax of the raw logits. */
int ss_cuda_sample(void *stream, int32_t *out_tok, float *out_logprob, const float *logits, int64_t n, int32_t vocab,
                   const ss_cuda_sample_row *rows, void *workspace);
/* JSON mode's masks (the mask_logits op of backend.h): rows [n] and words [n, (vocab + 31) / 32] on the device. */
int ss_cuda_mask_logits(void *stream, float *logits, int32_t vocab, int64_t n, const int32_t *rows,
                        const uint32_t *words);
/* The greedy token and its log-probability per row from tp vocabulary shards gathered as [tp][3][stride]
 * f32 (the greedy_combine op of backend.h). */
int ss_cuda_greedy_combine(void *stream, int32_t *out_tok, float *out_logprob, const float *gathered, int32_t n,
                           int32_t stride, int32_t tp);
/* One logit edit: the layout of ss_logit_edit (backend.h), which backend_cuda.c asserts. */
typedef struct ss_cuda_logit_edit {
    int32_t row, token;
    float add, rep, sub;
    int32_t ban;
} ss_cuda_logit_edit;
/* The edit_logits op of backend.h: edits [n] on the device. */
int ss_cuda_edit_logits(void *stream, float *logits, int32_t vocab, int64_t n, const ss_cuda_logit_edit *edits);
/* Device scratch ss_cuda_sample may use (workspace: that many bytes, or NULL to scan each row in one block). */
size_t ss_cuda_sample_workspace_bytes(void);

/* ---- top_logprobs.cu ---- */
/* The top_logprobs op of backend.h (1 <= k <= 32), with workspace_bytes of device scratch: at least
 * ss_cuda_top_logprobs_row_bytes(k) (rows are done that many at a time). */
int ss_cuda_top_logprobs(void *stream, int32_t *out_ids, float *out_vals, float *tok_logprob, const int32_t *tok,
                         const float *logits, int64_t n, int32_t vocab, int32_t k, void *workspace,
                         size_t workspace_bytes);
size_t ss_cuda_top_logprobs_row_bytes(int32_t k);

#ifdef __cplusplus
}
#endif

#endif
