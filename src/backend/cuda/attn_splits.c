/* attn_splits.c — the key-split, decode-form and prefill-form rules of the CUDA attention (see attn_splits.h): pure
 * arithmetic on the launch's host-known sizes, measured on an H200 (docs/performance.md, sessions 6, 8, 17, 32, 34). */
#include "backend/cuda/attn_splits.h"

#include "backend/backend.h" /* SS_ATTN_LONG_TILE */

#include <stdlib.h>
#include <string.h>

/* The launch's SM count (an H200's / H100's 132 where the device did not say). */
static int64_t sms_of(const ss_cuda_attn_args *a)
{
    return a->sm_count > 0 ? a->sm_count : 132;
}

/* The most splits the workspace holds for this launch's rows. */
static int64_t splits_cap(const ss_cuda_attn_args *a)
{
    const int64_t per_split = a->n * a->heads * (int64_t)(a->head_dim + 2) * (int64_t)sizeof(float);
    int64_t cap = per_split > 0 ? a->workspace_bytes / per_split : 1;
    return cap < SS_ATTN_MAX_SPLITS ? cap : SS_ATTN_MAX_SPLITS;
}

/* H200: batch 32 at context 256 was 3.5% faster unsplit than in two splits with the cluster merge; batch 1
 * at 128 gained from 64-key cluster splits (235 vs 231 tok/s). */
int64_t ss_attn_pick_splits(const ss_cuda_attn_args *a, int64_t base, int64_t cluster_max)
{
    const int64_t target = 2LL * sms_of(a);
    const char *mk = getenv("SS_ATTN_SPLIT_KEYS"); /* benchmark switch: the least keys per split */
    int64_t mk_env = mk ? strtol(mk, NULL, 10) : 0;
    if (mk_env > (1 << 30))
        mk_env = 1 << 30;
    if (base <= 0 || base >= target || !a->workspace)
        return 1;
    int64_t n_splits = 0;
    if (cluster_max > 1) {
        const int64_t min_keys = mk_env > 0 ? mk_env : SS_ATTN_MIN_KEYS_PER_CLUSTER_SPLIT;
        n_splits = target / base;
        const int64_t by_len = (a->max_seq_len + min_keys - 1) / min_keys;
        if (n_splits > by_len)
            n_splits = by_len;
        if (n_splits > cluster_max)
            n_splits = 0; /* a long context: 128-key splits below (the combine kernel merges more) */
    }
    if (n_splits == 0) {
        const int64_t min_keys = mk_env > 0 ? mk_env : SS_ATTN_MIN_KEYS_PER_SPLIT;
        n_splits = (target + base - 1) / base;
        const int64_t by_len = (a->max_seq_len + min_keys - 1) / min_keys;
        if (n_splits > by_len)
            n_splits = by_len;
    }
    const int64_t cap = splits_cap(a);
    if (n_splits > cap)
        n_splits = cap;
    return n_splits < 1 ? 1 : n_splits;
}

int64_t ss_attn_prefill_split_base(const ss_cuda_attn_args *a, int64_t ctas, int64_t n_tiles)
{
    const int64_t target = 2LL * sms_of(a);
    const char *vb = getenv("SS_ATTN_VERIFY_BASE"); /* benchmark switch: tile = as before session 40 */
    const int chunk = a->max_tile_tokens >= SS_ATTN_LONG_TILE || (vb && strcmp(vb, "tile") == 0);
    return ctas < target && n_tiles > 1 && chunk ? ctas / n_tiles : ctas;
}

/* A CTA's own costs (Q load, first-tile latency, its partial result, its share of the merge), counted in 64-key
 * tiles. 4 since session 54 (2 before): fitted on one H200's forced-split sweeps (bench_backend --attn-dense, both
 * caches, batches 48-256 at 512-8,192 keys), the chosen split count's mean loss against the best fell from 0.5 / 1.3%
 * (bf16 / fp8) to 0.2 / 0.2%; it stops splitting batch 256 at a bound of 2,048 (8B steps -2.8 / -5.1%) and batch 128
 * at 4,096 (fp8 -3.9%, bf16 level); batches up to 16 split as before. */
#define FIXED_TILES 4

/* waves(s) × (FIXED_TILES + tiles per split) */
static int64_t wave_cost(int64_t base, int64_t slots, int64_t tiles, int64_t s)
{
    return (base * s + slots - 1) / slots * (FIXED_TILES + (tiles + s - 1) / s);
}

/* What limits long-context decode attention is the bytes in flight: each CTA holds one or two key tiles, so
 * the cache is read at the rate of the CTAs resident at once, and a partial last wave idles. Clusters are
 * not used (their CTAs must be co-scheduled on one GPC, which left waves partly empty). H200, 8B: batch 8 at
 * 8000 tokens 6 splits 1,208 tok/s against 1,087 before; batch 32: 3 splits 2,396 against 2,010; batch 64
 * at 2048: 3 splits 6,457 against 5,771; batch 1 unchanged. */
int64_t ss_attn_wave_splits(const ss_cuda_attn_args *a, int64_t base)
{
    const int64_t slots = (int64_t)(a->decode_ctas_per_sm > 0 ? a->decode_ctas_per_sm : 2) * sms_of(a);
    int64_t smax = a->max_seq_len / SS_ATTN_MIN_KEYS_PER_SPLIT;
    const int64_t cap = splits_cap(a);
    if (smax > cap)
        smax = cap;
    if (smax <= 1 || base <= 0 || !a->workspace)
        return 1;
    const int64_t tiles = (a->max_seq_len + 63) / 64;
    int64_t best = 1;
    for (int64_t s = 2; s <= smax; s++)
        if (wave_cost(base, slots, tiles, s) < wave_cost(base, slots, tiles, best))
            best = s;
    for (int64_t s = 1; s < best; s++) /* the fewest splits within 3% of the best */
        if (100 * wave_cost(base, slots, tiles, s) <= 103 * wave_cost(base, slots, tiles, best))
            return s;
    return best;
}

int64_t ss_attn_forced_splits(const ss_cuda_attn_args *a)
{
    const char *sw = getenv("SS_ATTN_SPLITS"); /* benchmark switch */
    if (!sw || !a->workspace)
        return 0;
    const int64_t v = strtol(sw, NULL, 10), cap = splits_cap(a);
    return v < 1 ? 0 : v > cap ? (cap > 1 ? cap : 1) : v;
}

/* CTA slots a launch of base × s CTAs holds, n a SM (whole waves), times a CTA's cost in 64-key tiles: what the SMs
 * spend, counting a CTA of a denser form as sharing its SM with more others. */
static int64_t slot_cost(int64_t base, int64_t n, int64_t sms, int64_t tiles, int64_t s)
{
    return (base * s + n * sms - 1) / (n * sms) * n * (FIXED_TILES + (tiles + s - 1) / s);
}

/* Which form of more CTAs a SM, in how many splits (attn_splits.h). A bf16 cache, batch 64 (512 CTAs, the 32-key
 * form's window) at 2,048 / 4,096 / 8,192 keys (one H200, 32/8 heads, bench_backend --attn-dense, session 48): the
 * 32-key form unsplit -8.6 / -2.5 / -3.2% against the 64-key form in the wave rule's 3 splits; but in 8B decode steps
 * -2.2% at 1,024-token prompts (graph bound 2,048) and +4.8% at 4,096 (bound 8,192): so up to a bound of
 * SS_ATTN_LONG_CONTEXT only. An fp8 cache: since session 55 the dense form reads Q's fragments from shared memory
 * (no spills) and runs 10-25% faster than before unsplit; against the 64-key form at its best split count it won
 * wherever slot_cost counted it no dearer (batch 64: 0.67-0.94, -7 to -24%; 128 and 256: 0.89-0.92, -6 to -11%; 192:
 * 1.00, -4 to -8%; batch 32 in 2 splits from 2,048 keys: 0.89-0.96, -4 to -7%) and lost up to 4.5% where it counted
 * it dearer (batch 48 and 96, 1.06-1.33: a partial wave of the denser form). Under a bound of SS_ATTN_LONG_CONTEXT
 * the batches the 64-key form's rule splits (16, 32) ran level in either form: they keep the 64-key form. */
int64_t ss_attn_dense_splits(const ss_cuda_attn_args *a, int64_t base, int64_t splits, int splits_forced)
{
    const char *sw = getenv("SS_ATTN_SHORT"); /* benchmark switch: 0 = never, 1 = always, at `splits` */
    if (sw)
        return sw[0] == '1' ? splits : 0;
    if (base <= 0 || splits < 1)
        return 0;
    if (!a->kv_fp8) {
        if (ss_attn_short_tiles(a, base * splits))
            return splits;
        return !splits_forced && splits > 1 && a->max_seq_len <= SS_ATTN_LONG_CONTEXT && ss_attn_short_tiles(a, base)
                   ? 1
                   : 0;
    }
    if (splits_forced || a->decode_ctas_per_sm <= 0 || a->decode_short_ctas_per_sm <= 0)
        return 0;
    int64_t smax = 1; /* the dense form's own splits: the wave rule's range */
    if (a->max_seq_len >= SS_ATTN_LONG_CONTEXT && a->workspace) {
        const int64_t cap = splits_cap(a);
        smax = a->max_seq_len / SS_ATTN_MIN_KEYS_PER_SPLIT;
        smax = smax > cap ? cap : smax < 1 ? 1 : smax;
    } else if (splits > 1) {
        return 0;
    }
    const int64_t sms = sms_of(a), tiles = (a->max_seq_len + 63) / 64, n = a->decode_short_ctas_per_sm;
    int64_t best = 1;
    for (int64_t s = 2; s <= smax; s++)
        if (slot_cost(base, n, sms, tiles, s) < slot_cost(base, n, sms, tiles, best))
            best = s;
    return slot_cost(base, n, sms, tiles, best) <= slot_cost(base, a->decode_ctas_per_sm, sms, tiles, splits) ? best : 0;
}

/* The 32-key form's smaller CTAs (5 a SM on an H200 against 3) pay when they remove a partial second wave.
 * H200, batch 64 (512 CTAs): 14.5 against 20.1 us at context 128, 70.6 against 90.1 at 1,024. With more
 * CTAs than one such wave, it won 4-5% at contexts up to 160 but lost 6-8% from 512 on, and batch-128 decode
 * steps at ~160 did not gain (session 17). */
int ss_attn_short_tiles(const ss_cuda_attn_args *a, int64_t ctas)
{
    const char *sw = getenv("SS_ATTN_SHORT"); /* benchmark switch: 0 = never, 1 = every decode launch */
    if (sw)
        return sw[0] == '1';
    const int64_t sms = sms_of(a);
    return a->decode_ctas_per_sm > 0 && a->decode_short_ctas_per_sm > 0 && ctas > a->decode_ctas_per_sm * sms &&
           ctas <= a->decode_short_ctas_per_sm * sms;
}

int ss_attn_prefill_mt2(const ss_cuda_attn_args *a)
{
    const char *sw = getenv("SS_ATTN_PREFILL"); /* benchmark switch: mt2 = always, wm8 = never */
    if (a->prefill_mt2_ctas_per_sm < 1) /* it cannot launch here (an Ada GPU's shared memory), or unknown */
        return 0;
    if (sw && (strcmp(sw, "mt2") == 0 || strcmp(sw, "wm8") == 0))
        return sw[0] == 'm';
    /* an fp8 cache from a lower bound (one H200, a 2,048-token chunk from position 0: 154 against 221 us; whole 8B
     * prompts of 2,048 / 3,000 tokens +2.4% / +5.1%, of 256 -2.5%: session 38) */
    return a->max_seq_len >= (a->kv_fp8 ? SS_ATTN_MT2_CONTEXT_FP8 : SS_ATTN_MT2_CONTEXT) && a->prefill_mt2_ctas_per_sm >= 2;
}

/* H200, 8B, a 2,048-token chunk: 335-350 TFLOP/s at contexts of 8k to 128k against 260 for the form of two m-tiles,
 * 275 against 231 from position 0 (session 34). Its warpgroups compute all 64 rows of theirs, where the other forms
 * skip the warps whose rows are padding: a decode tile (4 real rows of 128) costs it 32 times its work. */
int ss_attn_prefill_wg(const ss_cuda_attn_args *a)
{
    const char *sw = getenv("SS_ATTN_PREFILL"); /* benchmark switch: wg = always, mt2 and wm8 = never */
    if (!a->prefill_wg_ok || a->kv_heads <= 0 || a->n_tiles <= 0)
        return 0;
    if (sw && (strcmp(sw, "wg") == 0 || strcmp(sw, "mt2") == 0 || strcmp(sw, "wm8") == 0))
        return sw[0] == 'w' && sw[1] == 'g';
    /* the rows computed, counted as if every tile were as long as the longest (an upper bound: a shorter tile's
     * blocks past its rows exit at once), so the rule errs towards the other forms */
    const int64_t group = a->heads / a->kv_heads;
    const int64_t blocks = (a->max_tile_tokens * group + SS_ATTN_WG_ROWS - 1) / SS_ATTN_WG_ROWS; /* per tile */
    return 2 * a->n * group >= a->n_tiles * blocks * SS_ATTN_WG_ROWS;
}

int ss_attn_seq_form(const ss_cuda_attn_args *a)
{
    const char *sw = getenv("SS_ATTN_SEQ"); /* benchmark switch: 0 = never, 1 = wherever it runs */
    if (!a->seq_ok || !a->q_tiles || a->max_tile_tokens != 1 || a->n_short_tiles > 0 || a->kv_heads <= 0 ||
        a->kv_heads > 8 || a->heads % a->kv_heads != 0 || a->heads / a->kv_heads > 16 ||
        (a->head_dim != 64 && a->head_dim != 128))
        return 0;
    if (sw)
        return sw[0] == '1';
    const int64_t sms = sms_of(a);
    /* the crossover, 8B at 128-token prompts (sessions 43-44): one H200 at batch 64 / 72 / 80 / 96 +3.4 / +0.1 /
     * -0.7 / -1.7% a step, one H100 at 64 / 80 / 96 +0.9 / -1.1 / -1.8%; so from 9/16 of a token per SM (75 of 132).
     * An fp8 cache (session 49, one H200, 8B steps): at a bound of 256 batch 64 / 72 / 80 / 96 / 128 / 160 / 200 /
     * 256 +0.4 / -2.7 / -2.8 / -3.4 / -4.0 / -2.7 / -2.0 / -3.9%: the same threshold. Its stages of 32 keys keep it ahead at longer bounds where the
     * batch fills its graph bucket (batch 128 at 512 / 1,024 / 2,048 / 4,096 / 8,192 -4.4 / -4.8 / -6.0 / -3.8 /
     * -6.2%), but a graph step's n is that power-of-two bucket, and a batch that leaves much of the last wave of
     * CTAs empty loses there: 160 at 512 / 2,048 +3.3 / +17.2%, 200 at 2,048 / 4,096 +4.5 / +6.8%, 72 at 2,048
     * +4.5%. With graph steps padded to multiples of 32 (session 50: n within 32 of the batch; now 8) the same
     * holds at a bound of 2,048: batch 72 / 96 / 128 / 160 / 200 / 256 +4.2 / +2.9 / -6.4 / +9.7 / +1.7 / -4.8%; at
     * 512 batch 72 / 160 / 200 +0.4 / +4.1 / -0.7% (bf16 at 512: 96 / 160 / 200 +2.2 / +12.3 / +5.8%). It wins only
     * where the batch fills whole waves of CTAs, which a bucket's real batch may not, so both caches stop at the same
     * bound. */
    return a->n * 16 >= sms * SS_ATTN_SEQ_SIXTEENTHS_PER_SM && a->max_seq_len <= SS_ATTN_SEQ_CONTEXT;
}

int ss_attn_seq_head_parts(const ss_cuda_attn_args *a)
{
    const char *sw = getenv("SS_ATTN_SEQ_PARTS"); /* benchmark switch: 1 or 2 (where the kv heads divide) */
    const int64_t sms = sms_of(a);
    /* one H200, 8B, a step at 128-token prompts (session 44): two parts against one at batch 72 / 96 / 128 -1.2 /
     * -1.2 / -0.9% (fewer tokens than SMs: a CTA each leaves SMs idle), at 256 even */
    const int want = sw && (sw[0] == '1' || sw[0] == '2') ? sw[0] - '0' : a->n < sms ? 2 : 1;
    return a->kv_heads > 0 && a->kv_heads % want == 0 ? want : 1;
}
