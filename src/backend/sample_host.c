/* sample_host.c — reference sampling: temperature, top-k, top-p, min-p, inverse CDF in index order. */
#include "backend/sample_host.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int sample_cmp_desc(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

int32_t ss_sample_host(const float *logits, int32_t vocab, const ss_sample_row *row, float *scratch, float *logprob)
{
    float mx = -INFINITY;
    int32_t arg = 0;
    for (int32_t i = 0; i < vocab; i++)
        if (logits[i] > mx) {
            mx = logits[i];
            arg = i;
        }
    double lse = 0;
    if (logprob) { /* callers that know the row's log-sum-exp already pass NULL and skip this pass */
        double se = 0;
        for (int32_t i = 0; i < vocab; i++)
            se += exp((double)logits[i] - mx);
        lse = mx + log(se);
    }
    int32_t tok = arg;
    if (row->temperature > 0) {
        float *p = scratch;
        double tot = 0;
        for (int32_t i = 0; i < vocab; i++) {
            p[i] = expf((logits[i] - mx) / row->temperature);
            tot += p[i];
        }
        for (int32_t i = 0; i < vocab; i++)
            p[i] = (float)(p[i] / tot);
        float thr = 0.0f;
        if ((row->top_k > 0 && row->top_k < vocab) || row->top_p < 1.0f) {
            float *sorted = malloc((size_t)vocab * sizeof *sorted);
            if (sorted) {
                memcpy(sorted, p, (size_t)vocab * sizeof *sorted);
                qsort(sorted, (size_t)vocab, sizeof *sorted, sample_cmp_desc);
                int32_t kept = vocab;
                if (row->top_k > 0 && row->top_k < vocab) {
                    thr = sorted[row->top_k - 1];
                    while (kept > 0 && sorted[kept - 1] < thr)
                        kept--;
                }
                if (row->top_p < 1.0f) {
                    double mass = 0;
                    for (int32_t i = 0; i < kept; i++)
                        mass += sorted[i];
                    double acc = 0;
                    for (int32_t i = 0; i < kept; i++) {
                        acc += sorted[i];
                        if (acc >= row->top_p * mass) {
                            thr = sorted[i] > thr ? sorted[i] : thr;
                            break;
                        }
                    }
                }
                free(sorted);
            }
        }
        if (row->min_p > 0) {
            float pm = 0;
            for (int32_t i = 0; i < vocab; i++)
                pm = p[i] > pm ? p[i] : pm;
            float t2 = row->min_p * pm;
            thr = t2 > thr ? t2 : thr;
        }
        double mass = 0;
        for (int32_t i = 0; i < vocab; i++)
            if (p[i] >= thr)
                mass += p[i];
        double target = (double)row->uniform * mass, acc = 0;
        tok = -1;
        for (int32_t i = 0; i < vocab; i++) {
            if (p[i] < thr)
                continue;
            acc += p[i];
            tok = i;
            if (acc > target)
                break;
        }
        if (tok < 0)
            tok = arg;
    }
    if (logprob)
        *logprob = (float)(logits[tok] - lse);
    return tok;
}

void ss_row_chunk_host(const float *logits, int32_t begin, int32_t end, ss_row_chunk *out)
{
    float mx = -INFINITY;
    int32_t idx = -1;
    for (int32_t i = begin; i < end; i++)
        if (logits[i] > mx) {
            mx = logits[i];
            idx = i;
        }
    /* expf, summed in double: 1.6x faster than exp in double per logit (this pass is most of the host sampling
     * path's time); each term is within an ulp of float, the sum as exact as the float logprobs it makes */
    double z = 0;
    if (idx >= 0)
        for (int32_t i = begin; i < end; i++)
            z += (double)expf(logits[i] - mx);
    out->mx = mx;
    out->idx = idx;
    out->z = z;
}

void ss_row_merge_host(const ss_row_chunk *c, int32_t n, int32_t *arg, float *lse)
{
    float mx = -INFINITY;
    int32_t idx = -1;
    for (int32_t k = 0; k < n; k++)
        if (c[k].idx >= 0 && c[k].mx > mx) { /* strictly greater: the first chunk's index wins a tie */
            mx = c[k].mx;
            idx = c[k].idx;
        }
    double z = 0;
    for (int32_t k = 0; k < n; k++)
        if (c[k].idx >= 0)
            z += c[k].z * exp((double)c[k].mx - mx);
    *arg = idx >= 0 ? idx : 0;
    *lse = idx >= 0 ? mx + (float)log(z) : -INFINITY;
}

void ss_greedy_combine_host(const float *gathered, int32_t r, int32_t stride, int32_t tp, int32_t *tok,
                            float *logprob)
{
    float best = -INFINITY, lse_max = -INFINITY;
    int32_t t = 0;
    for (int32_t k = 0; k < tp; k++) {
        const float *blk = gathered + (size_t)k * 3 * stride;
        float v = blk[r];
        if (v > best) { /* strictly greater: ties keep the lower shard, i.e. the first index */
            best = v;
            memcpy(&t, blk + stride + r, 4);
        }
        float lse = v - blk[2 * (size_t)stride + r];
        if (isfinite(v) && lse > lse_max)
            lse_max = lse;
    }
    double sum = 0;
    for (int32_t k = 0; k < tp; k++) {
        const float *blk = gathered + (size_t)k * 3 * stride;
        if (isfinite(blk[r]))
            sum += exp((double)(blk[r] - blk[2 * (size_t)stride + r]) - lse_max);
    }
    *tok = t;
    /* degenerate rows (a +inf logit, or no finite shard maximum) get 0 or -inf, never NaN, which would
     * poison the caller's sums */
    *logprob = best == INFINITY ? 0.0f : lse_max == -INFINITY ? -INFINITY : (float)(best - (lse_max + log(sum)));
}

float ss_logit_edit_host(float x, const ss_logit_edit *e)
{
    if (e->ban)
        return -INFINITY;
    float l = x + e->add;
    if (e->rep != 1.0f)
        l = l > 0 ? l / e->rep : l * e->rep;
    return l - e->sub;
}

void ss_top_host(const float *x, int32_t V, int32_t k, int32_t *ids, float *vals)
{
    for (int32_t j = 0; j < k; j++) {
        ids[j] = -1;
        vals[j] = -INFINITY;
    }
    for (int32_t i = 0; i < V; i++) {
        if (k == 0 || !(x[i] > vals[k - 1]))
            continue;
        int32_t j = k - 1;
        while (j > 0 && x[i] > vals[j - 1]) {
            vals[j] = vals[j - 1];
            ids[j] = ids[j - 1];
            j--;
        }
        vals[j] = x[i];
        ids[j] = i;
    }
}
