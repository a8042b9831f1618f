/* attn_tiles.c — the check of ss_attn_meta's query tiles against their contract (backend.h): the cpu backend runs it
 * on every attention call, so that the engine's tests catch a step whose tiles a GPU kernel would misread. */
#include "backend/backend.h"

#include "core/alloc.h"

ss_status ss_attn_tiles_check(const ss_attn_meta *m, int64_t n, ss_err *err)
{
    if (!m->q_tiles)
        return m->n_tiles == 0 && m->n_short_tiles == 0
                   ? SS_OK
                   : ss_err_set(err, SS_ERR_INVALID_ARG, "attention tiles: %d tiles without a tile array", m->n_tiles);
    const int32_t nt = m->n_tiles, ns = m->n_short_tiles;
    if (nt < 1 || nt > n || m->max_tile_tokens < 1 || m->max_tile_tokens > SS_ATTN_TILE_MAX || ns < 0 || ns >= nt ||
        (ns == 0) != (m->short_tokens == 0 && m->max_short_tokens == 0))
        return ss_err_set(err, SS_ERR_INVALID_ARG,
                          "attention tiles: %d tiles (%d short, %d tokens, longest %d) of at most %d tokens for "
                          "%lld tokens",
                          nt, ns, m->short_tokens, m->max_short_tokens, m->max_tile_tokens, (long long)n);
    /* every token once (each group in token order, so each group's tiles are increasing and disjoint), runs of one
     * sequence at consecutive positions */
    uint8_t *seen = ss_calloc((size_t)n, 1);
    if (!seen)
        return ss_err_set(err, SS_ERR_NOMEM, "attention tiles: out of memory checking %lld tokens", (long long)n);
    ss_status st = SS_OK;
    int32_t longest = 0, short_tokens = 0, longest_short = 0, empty = 0;
    for (int32_t i = 0; i < nt && st == SS_OK; i++) {
        const int32_t t0 = m->q_tiles[2 * i], len = m->q_tiles[2 * i + 1];
        const int is_short = i < ns;
        const char *bad = NULL;
        if (len == 0 && ns == 0 && i > 0 && t0 == n) { /* padding at the end (a graph step's) */
            empty++;
            continue;
        }
        if (empty)
            bad = "after an empty tile";
        else if (len < 1 || len > m->max_tile_tokens || t0 < 0 || t0 > n - len)
            bad = "outside the step or longer than the longest";
        else if (ns > 0 && is_short != (len < SS_ATTN_LONG_TILE))
            bad = is_short ? "in the short group but long" : "in the long group but short";
        else if (i > 0 && i != ns && t0 < m->q_tiles[2 * i - 2] + m->q_tiles[2 * i - 1])
            bad = "out of token order within its group";
        for (int32_t k = 0; !bad && k < len; k++) {
            const int64_t t = (int64_t)t0 + k;
            if (seen[t])
                bad = "covers a token twice";
            else if (k > 0 && (m->tok_seq[t] != m->tok_seq[t - 1] || m->tok_pos[t] != m->tok_pos[t - 1] + 1))
                bad = "not one sequence at consecutive positions";
            seen[t] = 1;
        }
        if (bad) {
            st = ss_err_set(err, SS_ERR_INVALID_ARG, "attention tile %d (tokens %d..%d) %s", i, t0, t0 + len - 1, bad);
            break;
        }
        longest = len > longest ? len : longest;
        if (is_short && ns > 0) {
            short_tokens += len;
            longest_short = len > longest_short ? len : longest_short;
        }
    }
    for (int64_t t = 0; st == SS_OK && t < n; t++)
        if (!seen[t])
            st = ss_err_set(err, SS_ERR_INVALID_ARG, "attention tiles: token %lld is in no tile", (long long)t);
    int32_t pow2 = 1; /* a graph step's longest, rounded up */
    while (pow2 < longest)
        pow2 *= 2;
    /* without groups the longest may be rounded up to a power of two (a graph step's key); with them it is exact */
    const int longest_ok =
        ns == 0 ? m->max_tile_tokens >= longest && m->max_tile_tokens <= pow2 : m->max_tile_tokens == longest;
    if (st == SS_OK && (!longest_ok || short_tokens != m->short_tokens || longest_short != m->max_short_tokens))
        st = ss_err_set(err, SS_ERR_INVALID_ARG,
                        "attention tiles: counts say longest %d, short tokens %d (longest %d); the tiles %d, %d (%d)",
                        m->max_tile_tokens, m->short_tokens, m->max_short_tokens, longest, short_tokens, longest_short);
    ss_free(seen);
    return st;
}
