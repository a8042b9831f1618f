/* spec_ngram.h — draft tokens for speculative decoding by prompt lookup: the tokens that followed the latest earlier
 * occurrence of a sequence's last few tokens (in its prompt or its output) are proposed as its next ones. */
#ifndef SS_SPEC_NGRAM_H
#define SS_SPEC_NGRAM_H

#include <stdint.h>

/* The n-gram lengths tried, longest first: a longer match predicts better, a shorter one more often. */
#define SS_SPEC_NGRAM_MAX 4
#define SS_SPEC_NGRAM_MIN 2

/* Proposes k draft tokens to follow toks[0..n) into out[0..k) and returns k, or 0 when nothing matches. For
 * m = SS_SPEC_NGRAM_MAX down to SS_SPEC_NGRAM_MIN it looks for the latest i < n - m with toks[i..i+m) equal to the
 * last m tokens; the first length that matches gives out = toks[i+m .. n), then that stretch again and again (the
 * match says the text repeats with period n - m - i: a loop goes on). Reads toks and writes out only (borrowed). */
int32_t ss_spec_ngram_propose(const int32_t *toks, int32_t n, int32_t k, int32_t *out);

#endif
