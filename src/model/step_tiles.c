/* step_tiles.c — a step's attention query tiles (step_tiles.h): the forward pass hands them to the backend's
 * attention, which may read a tile's keys once for all of its tokens. */
#include "model/step_tiles.h"

#include "backend/backend.h"

/* Tokens of the tile that starts at token i: the run of one sequence at consecutive positions from i, at most
 * max_run; a padding token (i >= n) is one. */
static int32_t run_len(const int32_t *seq, const int32_t *pos, int64_t n, int64_t i, int32_t max_run)
{
    int64_t j = i + 1;
    while (j < n && j - i < max_run && seq[j] == seq[j - 1] && pos[j] == pos[j - 1] + 1)
        j++;
    return (int32_t)(j - i);
}

void ss_step_tiles(const int32_t *seq, const int32_t *pos, int64_t n, int64_t n_pad, int32_t max_run, int pad_pow2,
                   int32_t *tiles, ss_step_tiles_info *info)
{
    ss_step_tiles_info o = {0, 0, 0, 0, 0};
    max_run = max_run < 1 ? 1 : max_run > SS_ATTN_TILE_MAX ? SS_ATTN_TILE_MAX : max_run;
    int32_t n_long = 0;
    for (int64_t i = 0; i < n_pad;) {
        const int32_t len = run_len(seq, pos, n, i, max_run);
        n_long += len >= SS_ATTN_LONG_TILE;
        i += len;
    }
    /* with runs of both kinds, two passes: the short ones first (in token order within each) */
    const int split = n_long > 0;
    for (int pass = split ? 0 : 1; pass < 2; pass++)
        for (int64_t i = 0; i < n_pad;) {
            const int32_t len = run_len(seq, pos, n, i, max_run);
            if (!split || (len >= SS_ATTN_LONG_TILE) == pass) {
                tiles[2 * (size_t)o.n_tiles] = (int32_t)i, tiles[2 * (size_t)o.n_tiles + 1] = len, o.n_tiles++;
                o.max_tile_tokens = len > o.max_tile_tokens ? len : o.max_tile_tokens;
                if (split && pass == 0) {
                    o.n_short_tiles++, o.short_tokens += len;
                    o.max_short_tokens = len > o.max_short_tokens ? len : o.max_short_tokens;
                }
            }
            i += len;
        }
    if (o.n_short_tiles == 0 || o.n_short_tiles == o.n_tiles) /* one kind only: no groups */
        o.n_short_tiles = o.short_tokens = o.max_short_tokens = 0;
    if (pad_pow2 && o.n_short_tiles == 0) { /* as ss_attn_meta allows: empty tiles at the end, the longest rounded */
        int64_t want = 1;
        while (want < o.n_tiles)
            want *= 2;
        for (; o.n_tiles < want && o.n_tiles < n_pad; o.n_tiles++)
            tiles[2 * (size_t)o.n_tiles] = (int32_t)n_pad, tiles[2 * (size_t)o.n_tiles + 1] = 0;
        int32_t longest = 1;
        while (longest < o.max_tile_tokens)
            longest *= 2;
        o.max_tile_tokens = longest;
    }
    *info = o;
}
