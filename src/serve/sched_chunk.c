/* sched_chunk.c — prompt chunks beside decoding streams: how many tokens a chunk deep in a long context may take
 * in a step so that its attention, counted in tokens, still fits the step's budget (the scheduler's choose_work). */
#include "serve/sched_chunk.h"

#include <math.h>

/* A prompt chunk deep in a long context costs far more than its tokens: each of them attends to every key
 * before it (at 120k tokens, a 512-token chunk of an 8B model takes ~130 ms against ~14 ms at the start).
 * With p.prefill_attn_budget, while sequences decode in the same step, a chunk is cut so that its tokens plus
 * its attention, counted in tokens (c (pos + c/2) / chunk_keys), fit the budget left: the decoding streams'
 * token gaps then stay those of a step of max_step_tokens short tokens, and the long prompt takes more,
 * smaller steps (at least SCHED_MIN_CHUNK tokens, so that it advances). Alone in a step, or without the
 * setting, a chunk takes the whole budget. At most `left` tokens; sets *cost to what the chunk charges.
 * Measured (session 33, one H200, 8B, 8 streams beside a 120k-token prompt, budget 512): the streams got 4x
 * the tokens during its prefill (token gap p99 141 -> 54 ms, max 300 -> 155 ms), the prompt's TTFT grew
 * 20.4 -> 34.4 s; hence a setting, off by default. */
#define SCHED_MIN_CHUNK 16

int32_t ss_chunk_cost(double keys, int decoding, int64_t pos, int32_t n, int32_t budget)
{
    if (!decoding || keys <= 0.0)
        return n;
    double charged = n * (1.0 + ((double)pos + n / 2.0) / keys);
    return charged >= budget ? budget : (int32_t)ceil(charged);
}

int32_t ss_chunk_fit(double keys, int decoding, int64_t pos, int32_t left, int32_t budget, int32_t *cost)
{
    int32_t want = left < budget ? left : budget;
    *cost = want;
    if (!decoding || keys <= 0.0 || want <= SCHED_MIN_CHUNK)
        return want;
    const double k = keys, a = 1.0 + (double)pos / k;
    /* the largest c with c (1 + (pos + c/2) / k) <= budget, the root of c^2 / (2k) + a c - budget (in the form
     * that does not cancel when k is large) */
    double c = 2.0 * budget / (a + sqrt(a * a + 2.0 * budget / k));
    int32_t n = !(c >= SCHED_MIN_CHUNK) ? SCHED_MIN_CHUNK : c > want ? want : (int32_t)c;
    *cost = ss_chunk_cost(keys, decoding, pos, n, budget); /* the minimum chunk takes what is left */
    return n;
}
