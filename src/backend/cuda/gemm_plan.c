/* gemm_plan.c — the tiling rule of the wgmma decode GEMM (gemm_plan.h): which launches it takes, in how many CTAs,
 * from the device's cluster residency. Host C; the kernel's launcher checks the shapes again. */
#include "backend/cuda/gemm_plan.h"

#include <stdlib.h>
#include <string.h>

/* An integer from the benchmark switch `name`, or def when unset or empty. */
static int env_int(const char *name, int def)
{
    const char *v = getenv(name);
    return v && *v ? (int)strtol(v, NULL, 10) : def;
}

int ss_gemm_wg_pick(const ss_gemm_wg_dev *d, int64_t n, int32_t m, int32_t k, ss_gemm_wg_plan *plan)
{
    const char *sw = getenv("SS_GEMM_WG"); /* 0 = never, auto = the rule, 1 = the rule from one row */
    const int mode = !sw || !*sw ? (SS_GEMM_WG_BY_DEFAULT ? 2 : 0) : !strcmp(sw, "auto") ? 2 : sw[0] == '1' ? 1 : 0;
    if (!d || !d->ok || mode == 0 || n < (mode == 1 ? 1 : SS_GEMM_WG_MIN_ROWS) || n > SS_GEMM_WG_MAX_ROWS || m <= 0 ||
        k <= 0 || k % 64 != 0)
        return 0;
    const int force_bm = env_int("SS_GEMM_WG_BM", 0), force_s = env_int("SS_GEMM_WG_SPLITS", 0);
    const int forced = force_bm || force_s;
    const int64_t steps = k / 64, n_tiles = (n + 127) / 128;
    int64_t best = -1;
    for (int b = 1; b >= 0; b--) { /* 256 first: of equal CTA counts the larger tile wins */
        const int bm = b ? 256 : 128;
        if (m % bm != 0 || (force_bm && force_bm != bm))
            continue;
        for (int s = 1; s <= SS_GEMM_WG_MAX_SPLITS; s++) { /* of equal counts the fewer splits win */
            if (d->resident[b][s] <= 0 || (force_s && force_s != s) || s > steps ||
                (!forced && steps < (int64_t)s * SS_GEMM_WG_MIN_STEPS))
                continue;
            const int64_t ctas = (int64_t)(m / bm) * n_tiles * s;
            const int64_t score = ctas <= d->resident[b][s] ? ctas : 0; /* more than a wave: only when forced */
            if ((score > 0 || forced) && score > best) {
                best = score;
                plan->bm = bm, plan->splits = s;
            }
        }
    }
    return best >= 0;
}
