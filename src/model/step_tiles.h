/* step_tiles.h — a step's attention query tiles (ss_attn_meta.q_tiles) from its tokens' sequences and positions:
 * runs of one sequence at consecutive positions, cut to a longest tile, grouped by kind, padded for graph steps. */
#ifndef SS_STEP_TILES_H
#define SS_STEP_TILES_H

#include <stdint.h>

/* What ss_step_tiles made: ss_attn_meta's counts. */
typedef struct ss_step_tiles_info {
    int32_t n_tiles;         /* tiles written, empty padding ones included */
    int32_t max_tile_tokens; /* the longest tile */
    int32_t n_short_tiles, short_tokens, max_short_tokens; /* the groups (all 0: one kind only) */
} ss_step_tiles_info;

/* Writes the query tiles of a step of n_pad tokens into tiles ([2 * n_pad], caller's): tokens 0..n-1 as seq / pos
 * give them, each run of one sequence at consecutive positions cut into tiles of at most max_run tokens
 * (1..SS_ATTN_TILE_MAX); tokens n..n_pad-1 (padding) a tile each. With runs of both kinds (shorter than
 * SS_ATTN_LONG_TILE and not) the short ones come first, as ss_attn_meta's groups say. pad_pow2 (a graph step; n_pad its
 * bucket, ss_forward_graph_pad): when there are no groups, the tile count is rounded up to a power of two (at most
 * n_pad) with empty tiles, and the longest tile's count (info's) to a power of two. */
void ss_step_tiles(const int32_t *seq, const int32_t *pos, int64_t n, int64_t n_pad, int32_t max_run, int pad_pow2,
                   int32_t *tiles, ss_step_tiles_info *info);

#endif
