/* warmup.h — the plan of the server's warm-up on a GPU: how many tokens each of n requests at once generates, so
 * that their decode batch shrinks through every size that has a decode graph of its own, largest first. */
#ifndef SS_SERVE_WARMUP_H
#define SS_SERVE_WARMUP_H

#include <stdint.h>

/* The rows a decode step of n sequences computes as a graph (ss_replica_graph_rows); 0: no graph. */
typedef int32_t (*ss_warm_rows_fn)(const void *ctx, int32_t n);

/* Fills max_tokens[0..n) (the caller's): request i gets 1 token from its prefill and one from each decode step
 * whose batch, a size b <= n that is its own graph's size (rows(ctx, b) == b), exceeds i. Those steps then run at
 * exactly those sizes, largest first, each once. Returns their count (max_tokens[0] - 1; 0 when no size has a
 * graph). */
int32_t ss_warmup_plan(int32_t n, ss_warm_rows_fn rows, const void *ctx, int32_t *max_tokens);

#endif
