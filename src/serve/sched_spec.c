/* sched_spec.c — speculative decoding's arithmetic for the scheduler (sched_spec.h): room for drafts in a step and
 * the bound long contexts put on them, a sequence's drafts after its tokens, their confirmed prefix, drafting's pauses. */
#include "serve/sched_spec.h"

#include <math.h>

#include "core/alloc.h"
#include "serve/spec_ngram.h"

double ss_spec_keys(const ss_model_config *cfg)
{
    const double hd = cfg->head_dim, h = cfg->hidden_size;
    const double layer = h * (cfg->n_heads + 2.0 * cfg->n_kv_heads) * hd + cfg->n_heads * hd * h +
                         3.0 * h * (double)cfg->intermediate_size;
    const double weights = cfg->n_layers * layer + (double)cfg->vocab_size * h; /* the lm_head is read too */
    const double kv_per_key = 2.0 * cfg->n_layers * cfg->n_kv_heads * hd;
    /* at least 64 Mi elements (~45 us of bf16 reads at 3 TB/s): a small model's steps are bound by launches, not reads */
    const double budget = 0.25 * weights > 64.0 * 1024 * 1024 ? 0.25 * weights : 64.0 * 1024 * 1024;
    return kv_per_key > 0 ? budget / kv_per_key : 0.0;
}

double ss_spec_draft_keys(int32_t n, int32_t n_ctx, int32_t tile)
{
    return (double)(n / (tile > 1 ? tile : 1)) * n_ctx;
}

int32_t ss_spec_keys_room(int32_t k, double keys_left, int32_t n_ctx, int32_t tile)
{
    tile = tile > 1 ? tile : 1;
    const double reads = n_ctx > 0 ? floor(keys_left / n_ctx) : HUGE_VAL; /* whole reads left */
    if (k > 0 && reads < (double)(k / tile))
        k = (int32_t)((reads + 1) * tile - 1); /* the most drafts that add `reads` reads */
    return k > 0 ? k : 0;
}

int32_t ss_spec_room(int32_t spec_tokens, int32_t spec_max_running, int32_t n_running, int32_t max_entries,
                     int32_t max_step_tokens)
{
    if (spec_tokens <= 0 || n_running < 1 || n_running > spec_max_running)
        return 0;
    int32_t k = spec_tokens, by_entries = (max_entries - n_running) / n_running;
    int32_t by_tokens = (max_step_tokens - n_running) / n_running;
    k = by_entries < k ? by_entries : k;
    k = by_tokens < k ? by_tokens : k;
    return k > 0 ? k : 0;
}

int32_t ss_spec_propose(int32_t **tokens, int32_t *cap, int32_t n, int32_t k)
{
    if (k <= 0)
        return 0;
    if (*cap < n + k) {
        int32_t c = n + k > 2 * *cap ? n + k : 2 * *cap;
        int32_t *t = ss_realloc(*tokens, (size_t)c * sizeof(int32_t));
        if (!t)
            return 0;
        *tokens = t;
        *cap = c;
    }
    return ss_spec_ngram_propose(*tokens, n, k, *tokens + n);
}

int32_t ss_spec_confirmed(const int32_t *sampled, const int32_t *drafts, int32_t n)
{
    int32_t a = 0;
    while (a < n && sampled[a] == drafts[a])
        a++;
    return a;
}

int ss_spec_pace_draft(ss_spec_pace *p)
{
    if (p->pause > 0) {
        p->pause--;
        return 0;
    }
    return 1;
}

void ss_spec_pace_after(ss_spec_pace *p, int32_t confirmed)
{
    if (confirmed > 0) {
        p->misses = 0;
        return;
    }
    p->misses++;
    int32_t pause = 1;
    for (int32_t i = 1; i < p->misses && pause < SS_SPEC_PAUSE_MAX; i++)
        pause *= 2;
    p->pause = pause < SS_SPEC_PAUSE_MAX ? pause : SS_SPEC_PAUSE_MAX;
}

void ss_spec_pace_guess(ss_spec_pace *p, int32_t tok)
{
    p->guess1 = tok + 1;
}

void ss_spec_pace_token(ss_spec_pace *p, int32_t tok)
{
    if (p->guess1 > 0 && p->guess1 == tok + 1)
        p->misses = p->pause = 0;
    p->guess1 = 0;
}

void ss_spec_pace_len(ss_spec_pace *p, int32_t drafted, int32_t confirmed, int32_t k_max)
{
    if (drafted <= 0)
        return;
    const int32_t len = p->len > 0 && p->len < k_max ? p->len : k_max;
    const int32_t next = confirmed >= drafted ? 2 * len : confirmed + 1;
    p->len = next < k_max ? next : k_max;
}
