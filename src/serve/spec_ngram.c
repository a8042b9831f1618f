/* spec_ngram.c — draft tokens for speculative decoding by prompt lookup (spec_ngram.h): a backward scan for the
 * latest earlier occurrence of the sequence's last tokens, longest n-gram first. */
#include "serve/spec_ngram.h"

#include <string.h>

int32_t ss_spec_ngram_propose(const int32_t *toks, int32_t n, int32_t k, int32_t *out)
{
    if (k <= 0)
        return 0;
    for (int32_t m = SS_SPEC_NGRAM_MAX; m >= SS_SPEC_NGRAM_MIN; m--) {
        if (n <= m)
            continue;
        const int32_t *tail = toks + n - m;
        /* latest first: recent text predicts the next tokens best (a loop, a list, a quoted passage) */
        for (int32_t i = n - m - 1; i >= 0; i--) {
            if (toks[i + m - 1] != tail[m - 1] || memcmp(toks + i, tail, (size_t)m * sizeof *toks) != 0)
                continue;
            /* the text after the match, and past the end the same text again: a loop of d tokens goes on */
            const int32_t d = n - (i + m);
            for (int32_t t = 0; t < k; t++)
                out[t] = t < d ? toks[i + m + t] : out[t - d];
            return k;
        }
    }
    return 0;
}
