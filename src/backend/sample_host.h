/* sample_host.h — the reference sampling algorithm on host memory (cpu backend, and the runner's
 * slow path for penalties). The cuda sample kernel implements the same definition. */
#ifndef SS_SAMPLE_HOST_H
#define SS_SAMPLE_HOST_H

#include <stdint.h>

#include "backend/backend.h"

/*
 * Definition (shared by every backend):
 *   temperature <= 0: the first index of the maximum.
 *   else p = softmax(logits / T); keep tokens with p >= the k-th largest p (top_k > 0); then with p >= the
 *   smallest threshold whose kept mass reaches top_p of the kept total (top_p < 1); then with p >= min_p * max p
 *   (min_p > 0); draw u * kept mass and walk the vocabulary in index order.
 *   logprob = log_softmax(logits)[token] (temperature 1, no truncation).
 * scratch: vocab floats the caller provides. logprob may be NULL (a pass over the row is then skipped). Returns
 * the token.
 */
int32_t ss_sample_host(const float *logits, int32_t vocab, const ss_sample_row *row, float *scratch, float *logprob);

/* The greedy combine of tp vocabulary shards for row r (the definition of the greedy_combine op; see
 * backend.h for the [tp][3][stride] layout): the winning token into *tok, its log-probability into *logprob.
 * Per shard k: lse_k = max_k - logprob_k; lse = M + log(sum_k exp(lse_k - M)) over finite maxima, M the
 * largest lse_k, in double; logprob = best - lse. */
void ss_greedy_combine_host(const float *gathered, int32_t r, int32_t stride, int32_t tp, int32_t *tok,
                            float *logprob);

/* A row's statistics in chunks, so that threads can share one row: per chunk [begin, end) its maximum, the first
 * index of it (-1 when no value exceeds -inf: NaN and -inf only) and sum(exp(x - max)) (expf, summed in double). */
/* The chunk length at which the host path and the cpu backend's top_logprobs split a row (their lse agree). */
#define SS_ROW_CHUNK 16384
typedef struct ss_row_chunk {
    float mx;
    int32_t idx;
    double z;
} ss_row_chunk;
void ss_row_chunk_host(const float *logits, int32_t begin, int32_t end, ss_row_chunk *out);
/* Merges a row's n chunks (in index order): *arg the first index of the row's maximum (0 when none), *lse its
 * log-sum-exp as max + (float)log(sum), so that x - lse is log_softmax rounded once; -inf when no value exceeds
 * -inf. */
void ss_row_merge_host(const ss_row_chunk *c, int32_t n, int32_t *arg, float *lse);

/* One logit edit (the definition of the edit_logits op; see ss_logit_edit): x's edited value. */
float ss_logit_edit_host(float x, const ss_logit_edit *e);

/* The k largest of x[0..V) (the first index first among equals) into ids and vals, largest first (-1 / -inf where
 * fewer than k values exceed -inf; NaN is never chosen). */
void ss_top_host(const float *x, int32_t V, int32_t k, int32_t *ids, float *vals);
#endif
