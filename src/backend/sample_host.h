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
 * scratch: vocab floats the caller provides. Returns the token.
 */
int32_t ss_sample_host(const float *logits, int32_t vocab, const ss_sample_row *row, float *scratch, float *logprob);

/* log_softmax of one row into out (may alias nothing). */
void ss_log_softmax_host(const float *logits, int32_t vocab, float *out);

#endif
