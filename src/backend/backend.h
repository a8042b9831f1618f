/* backend.h — the device interface the model's forward pass is written against (DESIGN.md §4).
 * A backend is a table of function pointers over device buffers; cpu and cuda fill it. */
#ifndef SS_BACKEND_H
#define SS_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "core/dtype.h"
#include "core/status.h"

/* Version of ss_backend_i. The table only grows at its end; bump on every addition (4: kv_store and
 * rope_kv_store take the block size, which the fp8 cache's layout needs; 5: linear and linear_quantize,
 * for fp8 projection weights; 6: mask_logits, JSON mode's token masks; 7: edit_logits and top_logprobs, so that
 * logit bias, penalties, bans and log-probability lists stay on the device). */
#define SS_BACKEND_IFACE_VERSION 7

/*
 * Conventions for every op below.
 * - Pointers named by a shape comment are device pointers returned by alloc (or inside one).
 * - "act" tensors use the backend's act_dtype (cpu: f32, cuda: bf16); weights use weight_dtype
 *   (cpu: f32, converted from bf16 at upload; cuda: bf16). Index tensors are int32.
 * - Matrices are row-major. A linear layer's weight is stored as Hugging Face does: W[out, in],
 *   so matmul computes y = x · Wᵀ (+ bias).
 * - Ops are asynchronous on the backend's one stream, in issue order; only download() and sync()
 *   wait. Ops never fail on valid arguments; a returned error is a device fault.
 * - Counts are int64_t; dimensions of one row fit in int32.
 * - Weights and the step's index inputs (ids, positions, slots, the arrays of ss_attn_meta) are never
 *   written by an op: callers upload them before the ops of the step. A backend may read them before the
 *   previous op has finished (cuda: before a kernel's wait for its predecessor).
 */

/* Metadata of one forward step for attention, already on the device (the runner uploads it).
 * Tokens of several sequences are packed: token i belongs to sequence tok_seq[i] and sits at
 * position tok_pos[i]; it attends to positions 0..tok_pos[i] of its own sequence, all of which are
 * in the paged cache (kv_store runs first). */
typedef struct ss_attn_meta {
    const int32_t *tok_seq;      /* [n_tokens] sequence index of each token */
    const int32_t *tok_pos;      /* [n_tokens] position of each token in its sequence */
    const int32_t *block_tables; /* [n_seqs, max_blocks] physical block ids per sequence */
    const int32_t *seq_lens;     /* [n_seqs] context length after this step (max position + 1) */
    int32_t n_seqs;
    int32_t max_blocks;          /* row stride of block_tables */
    int32_t max_seq_len;         /* host-known bound >= every seq_len (sizes split-K work; the forward pass
                                  * passes decode steps the power of two above the max) */
    int32_t block_size;          /* tokens per KV block */
    /* Optional (NULL / 0 when the caller does not provide them): the packed tokens as runs of one
     * sequence at consecutive positions, cut into tiles of at most SS_ATTN_TILE_MAX tokens, in
     * token order, covering every token once. q_tiles[2*i] is tile i's first token, q_tiles[2*i+1]
     * its token count; max_tile_tokens is the largest count (host-known). A backend may use them to
     * process a prefill chunk's queries together. Without groups (below) the tiles may end in empty ones (count
     * 0, first token n) that cover nothing, and max_tile_tokens may be the largest count rounded up to a power of
     * two: a step replayed from a graph pads both, so that one graph serves the steps of a token count whose
     * sequences run over a few more or fewer, longer or shorter tiles. */
    const int32_t *q_tiles;
    int32_t n_tiles;
    int32_t max_tile_tokens;
    /* Optional with q_tiles (0 when not given; given only for a step with tiles of both kinds): the tiles are
     * then in token order within two groups, first the n_short_tiles tiles of fewer than SS_ATTN_LONG_TILE tokens
     * (decode tokens: short_tokens tokens in all, the longest max_short_tokens), then the longer ones. A backend
     * may process the groups apart (a prompt chunk's form may cost a decode tile many times its rows). */
    int32_t n_short_tiles, short_tokens, max_short_tokens;
} ss_attn_meta;

/* Checks m's query tiles (host memory) for a step of n tokens against the contract above: every token in one tile,
 * runs of one sequence at consecutive positions, the groups and counts as said, empty tiles only at the end of a step
 * without groups; no tiles (NULL, 0) pass.
 * SS_ERR_INVALID_ARG naming the first bad tile, SS_ERR_NOMEM. */
ss_status ss_attn_tiles_check(const ss_attn_meta *m, int64_t n, ss_err *err);

/* One decoder layer's weights and KV cache, for the decode_layers op. */
typedef struct ss_decode_layer {
    const void *attn_norm, *wqkv, *bqkv, *q_norm, *k_norm, *wo, *mlp_norm, *wgu, *wdown; /* bqkv, q/k_norm may be NULL */
    void *k_cache, *v_cache;
} ss_decode_layer;

#define SS_DECODE_MAX_TP 8

/* The tensor-parallel exchange of a decode_layers op at tp > 1: the o and down projections' partial
 * sums cross the group inside the op, through a window on every rank that every rank maps (comm.h's
 * ss_comm_window). Each window holds, per layer and sum, `size` slots of hidden bf16 values (slot q:
 * rank q's partial); between steps every element is 0xffff ("empty": the op writes each element once,
 * and its reader empties it again). Every rank of the group must make the same decode_layers calls. */
typedef struct ss_decode_exchange {
    int32_t rank, size;                /* this rank in the tp group; size 2 .. SS_DECODE_MAX_TP */
    void *window[SS_DECODE_MAX_TP];    /* rank r's window, as this rank addresses it (borrowed) */
    size_t window_bytes;               /* of each: at least ss_decode_exchange_bytes() */
    const volatile int *abort_flag;    /* device-readable; nonzero: stop waiting for peers (garbage results) */
} ss_decode_exchange;

/* Bytes of one rank's exchange window: every layer's two sums, `size` slots of hidden bf16 each. */
static inline size_t ss_decode_exchange_bytes(int32_t n_layers, int32_t hidden, int32_t size)
{
    return (size_t)n_layers * 2 * (size_t)size * (size_t)hidden * 2;
}

/* A decode step of ONE token through consecutive decoder layers, on one rank of a tensor-parallel group
 * of any size (shapes are the rank's shards; at tp > 1 `tp` says how the partial sums meet). */
typedef struct ss_decode_layers {
    int32_t n_layers;
    const ss_decode_layer *layers;  /* host array of n_layers, read before the op returns */
    int32_t hidden, inter, q_heads, kv_heads, head_dim;
    float eps, attn_scale;
    const float *inv_freq;          /* [head_dim / 2] rope frequencies */
    const ss_attn_meta *meta;       /* the step's metadata: one token of sequence 0, the last of its context */
    const int32_t *slots;           /* [1] the token's cache slot */
    void *residual;                 /* [hidden]: the layers' input in, their output out (the last MLP added) */
    void *qkv, *attn, *act;         /* scratch of the caller's step: [qkv_dim], [q_heads*head_dim], [inter] */
    void *h, *x, *gu;               /* more scratch, for backends that run the ops in sequence: [hidden],
                                     * [hidden], [2*inter] (the cuda kernel does not touch them) */
    const ss_decode_exchange *tp;   /* NULL at tp 1; borrowed, read before the op returns. A backend that
                                     * cannot exchange returns SS_ERR_UNSUPPORTED */
} ss_decode_layers;

/* Element type of the paged KV cache (ss_backend_params.kv_type, fixed for a backend's life). */
typedef enum ss_kv_type {
    SS_KV_ACT = 0, /* act_dtype, as the activations (cpu f32, cuda bf16) */
    SS_KV_FP8,     /* fp8 e4m3 with one f32 scale per (token, kv head) row: about half of bf16's bytes */
} ss_kv_type;

/* Bytes of one block of one layer's K (or V) cache; slot = block * block_size + offset.
 * - SS_KV_ACT: [block_size, kv_heads, head_dim] act_dtype elements.
 * - SS_KV_FP8: [block_size, kv_heads, head_dim] e4m3 bytes (ss_f32_to_e4m3), then the rows' scales as [kv_heads,
 *   block_size] f32 (one kv head's scales of a block side by side), padded to a multiple of 128 bytes, so that
 *   blocks and rows of 128 bytes start on 128-byte lines. A row x is stored as q_i = e4m3(x_i * (448 / a)) and
 *   scale = a / 448, with a = max |x_i| (all zero when a = 0), and read as e4m3(q_i) * scale
 *   (ss_kv_fp8_quant_row). head_dim must be a multiple of 16. */
size_t ss_kv_block_bytes(ss_kv_type t, ss_dtype act, int32_t block_size, int32_t kv_heads, int32_t head_dim);
/* In an SS_KV_FP8 cache: the byte offset of row (slot, kv head h), and of its scale. */
size_t ss_kv_fp8_row_offset(int32_t block_size, int32_t kv_heads, int32_t head_dim, size_t slot, int32_t h);
size_t ss_kv_fp8_scale_offset(int32_t block_size, int32_t kv_heads, int32_t head_dim, size_t slot, int32_t h);
/* One row of the fp8 format: q[n] and *scale from x[n] (f32 arithmetic, as the cuda kernels do it). */
void ss_kv_fp8_quant_row(const float *x, int32_t n, uint8_t *q, float *scale);
/* "auto" or "fp8". */
const char *ss_kv_type_name(ss_kv_type t);
/* Parses a --kv-cache-dtype value: auto, fp8 or fp8_e4m3; the error names the value. */
ss_status ss_kv_type_parse(const char *s, ss_kv_type *out, ss_err *err);

/* Format of the decoder layers' projection weights (q/k/v, o, gate/up, down: "linear" weights), fixed for a
 * backend's life (ss_backend_params.linear_type). Embeddings, lm_head and norms always use weight_dtype. */
typedef enum ss_linear_type {
    SS_LINEAR_ACT = 0, /* weight_dtype, as every other weight */
    SS_LINEAR_FP8,     /* fp8 e4m3 with one f32 scale per row: about half of bf16's bytes */
    SS_LINEAR_AUTO,    /* --quantization auto: the runner picks fp8 for an fp8 checkpoint, else SS_LINEAR_ACT (a backend
                        * created with it uses SS_LINEAR_ACT) */
} ss_linear_type;

/* Bytes of one [m, k] linear weight in format t.
 * - SS_LINEAR_ACT: m*k weight_dtype elements.
 * - SS_LINEAR_FP8: m*k e4m3 bytes, row-major, then at ss_linear_fp8_scale_offset the m row scales s_r (f32),
 *   padded to 256 bytes. W[r, i] = e4m3(q_ri) * s_r, with s_r = a_r / 448 and q_ri = e4m3(w_ri * (448 / a_r)),
 *   a_r = max_i |w_ri| (a zero row: codes and scale 0): ss_kv_fp8_quant_row, a row at a time (an fp8 checkpoint's
 *   codes and scales are copied in as they are: model/weights.c, wl_put_fp8_direct). A row's scale does
 *   not depend on the other rows, so fused matrices (q/k/v, gate/up) and a tp rank's column-parallel rows are
 *   quantised exactly as the whole matrix's rows are. */
size_t ss_linear_bytes(ss_linear_type t, ss_dtype weight_dtype, int64_t m, int64_t k);
size_t ss_linear_fp8_scale_offset(int64_t m, int64_t k);
/* "none", "fp8" or "auto". */
const char *ss_linear_type_name(ss_linear_type t);
/* Parses a --quantization value: auto, none or fp8 (fp8_e4m3); the error names the value. */
ss_status ss_linear_type_parse(const char *s, ss_linear_type *out, ss_err *err);

/* Longest query tile of ss_attn_meta.q_tiles. */
#define SS_ATTN_TILE_MAX 64
/* Shortest tile of the long group of ss_attn_meta.q_tiles (n_short_tiles). */
#define SS_ATTN_LONG_TILE 16

/* Per-row sampling parameters for the sample op (host-side array, copied by the op). */
typedef struct ss_sample_row {
    float temperature; /* <= 0: greedy (argmax) */
    int32_t top_k;     /* <= 0: off */
    float top_p;       /* >= 1: off */
    float min_p;       /* <= 0: off */
    float uniform;     /* a uniform random number in [0,1) drawn by the caller for this row */
} ss_sample_row;

/* One edit of one logit for the edit_logits op (bias, penalties and bans of one token of one row, combined):
 * l = x[row * vocab + token]; ban: l = -inf; else l = l + add, then when rep != 1 l = l > 0 ? l / rep : l * rep,
 * then l = l - sub. Each rounded to float as written (ss_logit_edit_host is the definition). */
typedef struct ss_logit_edit {
    int32_t row;
    int32_t token;
    float add; /* the logit bias (0: none) */
    float rep; /* the repetition penalty (1: none) */
    float sub; /* frequency penalty * count + presence penalty (0: none) */
    int32_t ban;
} ss_logit_edit;

typedef struct ss_backend_i {
    uint32_t version;
    const char *name;

    /* ---- memory ---- */
    /* Allocates `bytes` of device memory (zeroed is not promised). Caller frees with free_buf. */
    ss_status (*alloc)(void *ctx, size_t bytes, void **out);
    void (*free_buf)(void *ctx, void *ptr);
    /* Host -> device copy of `bytes`; the host buffer may be reused when the call returns. */
    ss_status (*upload)(void *ctx, void *dst, const void *src, size_t bytes);
    /* Device -> host; waits for all prior work. */
    ss_status (*download)(void *ctx, void *dst, const void *src, size_t bytes);
    /* Device -> device copy, and fill with zero bytes (async). */
    ss_status (*copy)(void *ctx, void *dst, const void *src, size_t bytes);
    ss_status (*zero)(void *ctx, void *dst, size_t bytes);
    /* Uploads n elements of a host tensor of type src_type into weight_dtype (converting). */
    ss_status (*upload_weight)(void *ctx, void *dst, const void *src, ss_dtype src_type, int64_t n);
    /* Waits until all issued work is done. */
    ss_status (*sync)(void *ctx);

    /* ---- ops ---- */
    /* out[n, dim] = table[ids[i] - row_start] when 0 <= ids[i]-row_start < rows, else 0
     * (vocabulary-parallel embedding: the tp ranks' partial results are summed by all-reduce). */
    ss_status (*embed)(void *ctx, void *out, const void *table, const int32_t *ids, int64_t n, int32_t dim,
                       int64_t row_start, int64_t rows);
    /* out[r] = x[r] / rms(x[r]) * w, rows of `dim` (act in, act out; w weight). */
    ss_status (*rmsnorm)(void *ctx, void *out, const void *x, const void *w, int64_t rows, int32_t dim, float eps);
    /* residual[r] += add[r]; out[r] = rmsnorm(residual[r]) * w. */
    ss_status (*add_rmsnorm)(void *ctx, void *residual, const void *add, void *out, const void *w, int64_t rows,
                             int32_t dim, float eps);
    /* out[n, m] = x[n, k] · W[m, k]ᵀ (+ bias[m] if bias != NULL). out_type is act_dtype or F32
     * (logits are produced in F32). */
    ss_status (*matmul)(void *ctx, void *out, ss_dtype out_type, const void *x, const void *W, const void *bias,
                        int64_t n, int32_t m, int32_t k);
    /* Per-head RMSNorm in place (Qwen3 q_norm/k_norm): for each token t and head h, the head_dim
     * values at x + t*tok_stride + h*head_dim are normalised and scaled by w[head_dim]. */
    ss_status (*head_rmsnorm)(void *ctx, void *x, const void *w, int64_t n, int32_t heads, int32_t head_dim,
                              int64_t tok_stride, float eps);
    /* Rotary embedding in place, rotate-half convention (Hugging Face Llama): for token t and head h
     * at x + t*tok_stride + h*head_dim, pairs (i, i + head_dim/2) rotate by angle pos[t]*inv_freq[i].
     * inv_freq: [head_dim/2] f32 on the device. */
    ss_status (*rope)(void *ctx, void *x, const int32_t *pos, const float *inv_freq, int64_t n, int32_t heads,
                      int32_t head_dim, int64_t tok_stride);
    /* Writes k and v of n tokens into the paged cache: token i goes to slot slots[i]
     * (= block * block_size + offset; a negative slot is skipped: a padding token). Source rows at
     * k + i*src_stride, [kv_heads, head_dim] each.
     * Cache layout per layer: num_blocks blocks of ss_kv_block_bytes (the backend's kv_type). */
    ss_status (*kv_store)(void *ctx, void *k_cache, void *v_cache, const void *k, const void *v,
                          const int32_t *slots, int64_t n, int32_t kv_heads, int32_t head_dim, int64_t src_stride,
                          int32_t block_size);
    /* Causal attention over the paged cache (see ss_attn_meta). q rows at q + i*q_stride hold
     * [heads, head_dim]; out is [n, heads*head_dim] contiguous. Query head h reads kv head
     * h / (heads / kv_heads) (GQA/MQA). Softmax scale is `scale`. */
    ss_status (*attention)(void *ctx, void *out, const void *q, int64_t q_stride, const void *k_cache,
                           const void *v_cache, const ss_attn_meta *meta, int64_t n, int32_t heads, int32_t kv_heads,
                           int32_t head_dim, float scale);
    /* out[n, inter] = silu(gu[n, :inter]) * gu[n, inter:] where gu is [n, 2*inter]. */
    ss_status (*silu_mul)(void *ctx, void *out, const void *gu, int64_t n, int32_t inter);
    /* out[i] = a[i] + b[i] over n act elements (out may alias a). */
    ss_status (*add)(void *ctx, void *out, const void *a, const void *b, int64_t n);
    /* out[j, :] = x[idx[j], :] for j < m; rows of `dim` act elements. idx on the device. */
    ss_status (*gather_rows)(void *ctx, void *out, const void *x, const int32_t *idx, int64_t m, int32_t dim);
    /* Per row of f32 logits [n, vocab]: the max value and its first index (+ index_offset). */
    ss_status (*argmax)(void *ctx, float *out_val, int32_t *out_idx, const float *logits, int64_t n, int32_t vocab,
                        int32_t index_offset);
    /* Samples one token per row of f32 logits [n, vocab] with rows[r]'s parameters; writes the token
     * and its log-probability under the unmodified distribution (log_softmax of the raw logits).
     * out_tok, out_logprob: device buffers of n. rows: host array of n, read before return. */
    ss_status (*sample)(void *ctx, int32_t *out_tok, float *out_logprob, const float *logits, int64_t n,
                        int32_t vocab, const ss_sample_row *rows);

    /* ---- optional (defaults provided by ss_backend_fill_defaults) ---- */
    /* Fused rope + kv_store over rows of [q heads | k heads | v heads] (NULL: callers run rope over the
     * q_heads + kv_heads heads, then kv_store; the result must be identical): rotates q and k in place,
     * then writes the rotated k and the v of token i into slot slots[i] (skipped when negative). */
    ss_status (*rope_kv_store)(void *ctx, void *qkv, const int32_t *pos, const float *inv_freq, int64_t n,
                               int32_t q_heads, int32_t kv_heads, int32_t head_dim, int64_t tok_stride,
                               void *k_cache, void *v_cache, const int32_t *slots, int32_t block_size);
    /* The MLP's first half in one op: out[n, inter] = silu(x · Wgᵀ) * (x · Wuᵀ) in act_dtype, where Wgu
     * is [2*inter, k] (gate rows, then up rows, as matmul + silu_mul take it). May differ from that pair
     * by the rounding of the [n, 2*inter] intermediate it never stores. NULL, or SS_ERR_UNSUPPORTED
     * returned with nothing enqueued and no error recorded: callers run matmul + silu_mul. */
    ss_status (*matmul_silu)(void *ctx, void *out, const void *x, const void *Wgu, int64_t n, int32_t inter,
                             int32_t k);
    /* All of d's layers for one decode token in one op (what rmsnorm, matmul, rope_kv_store, attention,
     * add_rmsnorm, matmul_silu and matmul would do, layer after layer, ending with residual += the last
     * MLP's output; results within the bf16 rounding of that sequence). NULL, or SS_ERR_UNSUPPORTED
     * returned with nothing enqueued and no error recorded: callers run the layers op by op. */
    ss_status (*decode_layers)(void *ctx, const ss_decode_layers *d);
    /* The native stream (cudaStream_t) for comm backends that enqueue on it; NULL on cpu. */
    void *(*native_stream)(void *ctx);
    /* CUDA-graph capture of a step keyed by `key`: begin/end record, launch replays.
     * The default returns SS_ERR_UNSUPPORTED from begin and launch (callers then run eagerly). */
    ss_status (*graph_begin)(void *ctx, uint64_t key);
    ss_status (*graph_end)(void *ctx, uint64_t key);
    ss_status (*graph_launch)(void *ctx, uint64_t key);
    /* Free device memory in bytes (for sizing the KV cache); default: SS_ERR_UNSUPPORTED. */
    ss_status (*mem_info)(void *ctx, size_t *free_bytes, size_t *total_bytes);
    /* Releases the context; called by ss_backend_destroy. */
    void (*destroy)(void *ctx);

    /* ---- version 2: overlapping a step with the host's work on the previous one ---- */
    /* embed, where ids[i] < 0 selects the token fed[-1 - ids[i]] instead: fed is a device buffer that
     * earlier ops of the stream wrote (the previous step's sampled tokens), read after they finished.
     * NULL: not supported (callers resolve such ids on the host). */
    ss_status (*embed_fed)(void *ctx, void *out, const void *table, const int32_t *ids, const int32_t *fed, int64_t n,
                           int32_t dim, int64_t row_start, int64_t rows);
    /* Device -> host without waiting: the copy of `bytes` (at most SS_DOWNLOAD_ASYNC_MAX) from src is
     * enqueued into slot `slot` (0 or 1); download_wait(slot) waits for it and writes the bytes to dst
     * (host, valid until then). A slot holds one copy at a time. The copy may run beside the ops issued
     * after it (cuda: on a stream of its own): the sample op waits for copies in flight before it writes,
     * any other op must not write src before download_wait. A backend without a stream of its own (cpu)
     * may copy at once and make download_wait a no-op. */
    ss_status (*download_async)(void *ctx, void *dst, const void *src, size_t bytes, int slot);
    ss_status (*download_wait)(void *ctx, int slot);

    /* ---- version 3: tensor-parallel steps whose tokens stay on every rank's device ---- */
    /* The greedy token of each of n rows from the tp vocabulary shards' results, gathered as
     * [tp][3][stride] f32: per shard and row its max logit, the index of that max (int32 bits, already
     * offset to the whole vocabulary) and the log-probability of that max within the shard. The winner is
     * the strictly greatest max (ties keep the lower shard, i.e. the first index); out_logprob is its
     * log_softmax over the whole vocabulary (0 for a +inf logit, -inf when no shard has a finite max).
     * Math as ss_greedy_combine_host. out_tok, out_logprob: device [n]. Required. */
    ss_status (*greedy_combine)(void *ctx, int32_t *out_tok, float *out_logprob, const float *gathered, int32_t n,
                                int32_t stride, int32_t tp);
    /* Whether download_wait(slot) would return at once (the copy and everything enqueued before it are
     * done), without waiting. Default: always ready (backends whose download_async copies at once). */
    ss_status (*download_ready)(void *ctx, int slot, int *ready);

    /* ---- version 5: projection weights in the backend's linear format (ss_backend.linear_type) ---- */
    /* out[n, m] = x[n, k] . W[m, k]^T (+ bias[m] if bias != NULL) in act_dtype, W in the linear format (ss_linear_bytes).
     * Required. An fp8 backend may round x to fp8 for large n (cuda: with one scale per row of x, so a row's result
     * does not depend on the other rows); results are then within fp8's error of x . W^T. */
    ss_status (*linear)(void *ctx, void *out, const void *x, const void *W, const void *bias, int64_t n, int32_t m,
                        int32_t k);
    /* Writes dst (ss_linear_bytes(linear_type, ...) bytes) from src [m, k] in weight_dtype (a device buffer, e.g. filled
     * by upload_weight); src may be written again by later ops and uploads (ordered after this one). Required. */
    ss_status (*linear_quantize)(void *ctx, void *dst, const void *src, int64_t m, int32_t k);

    /* ---- version 6: JSON mode's masks on the device ---- */
    /* In place: for j < n, token t of logits row rows[j] (f32 rows of vocab) becomes -inf where bit t % 32 of
     * words[j * ((vocab + 31) / 32) + t / 32] is 0; other logits are left as they are. rows, words: device.
     * Required. */
    ss_status (*mask_logits)(void *ctx, float *logits, int32_t vocab, int64_t n, const int32_t *rows,
                             const uint32_t *words);

    /* ---- version 7: the rest of the sampler's requests on the device ---- */
    /* In place: the n edits (device array; at most one per logit) of f32 logits rows of vocab, as ss_logit_edit
     * says, to the bit. Required. */
    ss_status (*edit_logits)(void *ctx, float *logits, int32_t vocab, int64_t n, const ss_logit_edit *edits);
    /* Per row r < n of f32 logits [n, vocab]: lse = its log-sum-exp (as ss_row_merge_host: expf of x - max summed
     * in double, within rounding); out_ids[r * k ..] the k largest logits' indices (the first index first among
     * equals; -1 where fewer than k logits exceed -inf) and out_vals their x - lse (-inf for -1); tok_logprob[r] =
     * x[tok[r]] - lse, the same subtraction (a token in the list shows the same value). 1 <= k <= 32.
     * out_ids, out_vals [n, k], tok_logprob, tok [n]: device. Required. */
    ss_status (*top_logprobs)(void *ctx, int32_t *out_ids, float *out_vals, float *tok_logprob, const int32_t *tok,
                              const float *logits, int64_t n, int32_t vocab, int32_t k);
} ss_backend_i;

/* Largest download_async copy; slots of download_async. */
#define SS_DOWNLOAD_ASYNC_MAX ((size_t)64 << 10)
#define SS_DOWNLOAD_SLOTS 2

/* A backend instance: one per rank (one device, one stream). */
typedef struct ss_backend {
    const ss_backend_i *iface; /* points at table below */
    ss_backend_i table;        /* this instance's op table: the backend's, with the defaults filled in */
    void *ctx;
    ss_dtype act_dtype;
    ss_dtype weight_dtype;
    ss_kv_type kv_type; /* of every KV cache its ops read and write */
    ss_linear_type linear_type; /* of the weights its linear op reads */
    int device_index; /* GPU ordinal; -1 on cpu */
    char desc[128];   /* human-readable: "cpu (2 threads)", "cuda:0 NVIDIA H100 80GB HBM3" */
} ss_backend;

typedef enum ss_device_kind { SS_DEVICE_AUTO = 0, SS_DEVICE_CPU, SS_DEVICE_CUDA } ss_device_kind;

typedef struct ss_backend_params {
    ss_device_kind device;
    int device_index; /* GPU ordinal for cuda (local rank); ignored on cpu */
    int n_threads;    /* cpu threads; 0 = all cores */
    ss_kv_type kv_type;
    ss_linear_type linear_type;
} ss_backend_params;

ss_backend_params ss_backend_default_params(void);

/* Creates a backend (auto: cuda if built and a GPU is present, else cpu). *out is owned by the
 * caller and released with ss_backend_destroy. */
ss_status ss_backend_create(const ss_backend_params *params, ss_backend **out, ss_err *err);
void ss_backend_destroy(ss_backend *be);

/* Whether this build has the CUDA backend and a GPU is visible. */
int ss_backend_cuda_available(void);
/* Whether a backend made with params could hold fp8 projections (SS_LINEAR_FP8): always on the cpu; on cuda a
 * device of compute capability 8.9 or newer (cuBLASLt's e4m3 GEMM). 0 when the device cannot be queried. */
int ss_backend_fp8_linear_ok(const ss_backend_params *params);

/* Fills optional slots left NULL with their defaults (used by backend implementations). */
void ss_backend_fill_defaults(ss_backend_i *iface);

/* Implementations (each returns its own static table after filling defaults). */
ss_status ss_backend_cpu_create(const ss_backend_params *params, ss_backend **out, ss_err *err);
#ifdef SS_HAVE_CUDA
ss_status ss_backend_cuda_create(const ss_backend_params *params, ss_backend **out, ss_err *err);
int ss_backend_cuda_device_count(void);
int ss_backend_cuda_fp8_ok(int device_index);
/* Whether the library the cuda backend loads at run time (cuBLASLt, lt_api.h) loads with every function it calls;
 * no GPU needed. err says what is missing. */
ss_status ss_backend_cuda_libs_check(ss_err *err);
#endif

#endif
