/* warmup.c — the warm-up's request plan: request i decodes while the batch, stepping down through the graph sizes,
 * exceeds i, so that each graph of the first context bound is captured once before the server says ready. */
#include "serve/warmup.h"

int32_t ss_warmup_plan(int32_t n, ss_warm_rows_fn rows, const void *ctx, int32_t *max_tokens)
{
    int32_t sizes_above = 0; /* graph sizes b with i < b <= n, for i from n - 1 down */
    for (int32_t i = n - 1; i >= 0; i--) {
        if (rows(ctx, i + 1) == i + 1)
            sizes_above++;
        max_tokens[i] = 1 + sizes_above;
    }
    return n > 0 ? max_tokens[0] - 1 : 0;
}
