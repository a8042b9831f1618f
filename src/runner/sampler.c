/* sampler.c — a step's token choice from its logits rows: logit edits (bias, penalties, bans) built once per step,
 * then the device path (edit_logits, mask_logits, sample, top_logprobs) or the host path on the helper threads. */
#include "runner/sampler.h"

#include <math.h>
#include <omp.h>
#include <string.h>

#include "backend/sample_host.h"
#include "core/alloc.h"
#include "core/cpus.h"
#include "runner/runner.h"

struct ss_sampler {
    ss_backend *be; /* borrowed */
    int32_t vocab, max_seqs;
    /* the step's logit edits (ss_sampler_prepare): per plan sequence s, edits[edit_off[s] .. edit_off[s + 1]) */
    ss_logit_edit *edits;
    int64_t n_edits, edits_cap;
    int64_t *edit_off; /* [max_seqs + 1] */
    int32_t n_rows, n_top; /* the step's sampling sequences and its longest logprob list (ss_sampler_prepare) */
    int32_t *slot;     /* [vocab] a token's edit while one sequence's are built; -1 otherwise */
    /* device path (last stage): the edits' buffer, JSON mode's mask words then their rows, and the host copy of
     * those */
    ss_logit_edit *dev_edits;
    int64_t dev_edits_cap;
    void *dev_mask;
    uint32_t *host_mask;
    size_t mask_cap;
    /* host path: helper threads and their [vocab] work areas, allocated on its first step */
    int host_threads;
    float *host_work;
};

/* Most edits a step may have on the device (beyond, the host path takes it): 24 bytes each. */
static int64_t sampler_dev_edits_cap(int32_t max_seqs)
{
    const int64_t per_seq = 2048;
    return (int64_t)max_seqs * per_seq > 65536 ? (int64_t)max_seqs * per_seq : 65536;
}

ss_status ss_sampler_create(ss_backend *be, int32_t vocab, int32_t max_seqs, int device, ss_sampler **out,
                            ss_err *err)
{
    *out = NULL;
    ss_sampler *s = ss_calloc(1, sizeof *s);
    if (!s)
        return ss_err_set(err, SS_ERR_NOMEM, "out of memory for the sampler");
    s->be = be;
    s->vocab = vocab;
    s->max_seqs = max_seqs;
    s->edit_off = ss_calloc((size_t)max_seqs + 1, sizeof *s->edit_off);
    s->slot = ss_malloc((size_t)vocab * sizeof *s->slot);
    if (!s->edit_off || !s->slot) {
        ss_sampler_destroy(s);
        return ss_err_set(err, SS_ERR_NOMEM, "out of memory for the sampler");
    }
    for (int32_t t = 0; t < vocab; t++)
        s->slot[t] = -1;
    if (device) {
        const ss_backend_i *B = be->iface;
        s->mask_cap = (size_t)max_seqs * ((size_t)(vocab + 31) / 32 + 1) * sizeof(uint32_t);
        s->host_mask = ss_malloc(s->mask_cap);
        s->dev_edits_cap = sampler_dev_edits_cap(max_seqs);
        ss_status st = s->host_mask ? SS_OK : SS_ERR_NOMEM;
        if (st == SS_OK)
            st = B->alloc(be->ctx, s->mask_cap, &s->dev_mask);
        if (st == SS_OK)
            st = B->alloc(be->ctx, (size_t)s->dev_edits_cap * sizeof(ss_logit_edit), (void **)&s->dev_edits);
        if (st != SS_OK) {
            const size_t cap = s->mask_cap;
            ss_sampler_destroy(s);
            return ss_err_set(err, st, "allocating the sampler's masks (%zu bytes) and logit edits on %s", cap,
                              be->desc);
        }
    }
    *out = s;
    return SS_OK;
}

void ss_sampler_destroy(ss_sampler *s)
{
    if (!s)
        return;
    if (s->dev_mask)
        s->be->iface->free_buf(s->be->ctx, s->dev_mask);
    if (s->dev_edits)
        s->be->iface->free_buf(s->be->ctx, s->dev_edits);
    ss_free(s->host_mask);
    ss_free(s->host_work);
    ss_free(s->edits);
    ss_free(s->edit_off);
    ss_free(s->slot);
    ss_free(s);
}

size_t ss_sampler_out_bytes(int32_t max_rows)
{
    return (size_t)max_rows * (2 + 2 * SS_MAX_TOP_LOGPROBS) * 4;
}

/* 1 when q's penalties change anything. */
static int sampler_penalized(const ss_plan_seq *q)
{
    return q->n_penalty_tokens > 0 &&
           (q->sp.repetition_penalty != 1.0f || q->sp.presence_penalty != 0.0f || q->sp.frequency_penalty != 0.0f);
}

int ss_sampler_needs_row(const ss_plan_seq *q)
{
    return q->sp.temperature > 0 || q->n_allow > 0 || q->n_banned > 0 || q->n_bias > 0 || q->sp.n_logprobs > 0 ||
           sampler_penalized(q);
}

/* The index of token t's edit in the sequence being built (created as "no change" on row). */
static int32_t sampler_edit(ss_sampler *s, int32_t row, int32_t t)
{
    if (s->slot[t] < 0) {
        s->edits[s->n_edits] = (ss_logit_edit){row, t, 0.0f, 1.0f, 0.0f, 0};
        s->slot[t] = (int32_t)s->n_edits++; /* ss_sampler_prepare keeps a step's edits under INT32_MAX */
    }
    return s->slot[t];
}

/* q's edits on logits row `row`, one per token touched: its bias, its penalty (counted over the penalty tokens, each
 * distinct token once) and its ban, in that order (a ban stays a ban). The edits array holds room for them. */
static void sampler_seq_edits(ss_sampler *s, const ss_plan_seq *q, int32_t row)
{
    const int32_t V = s->vocab;
    const int64_t first = s->n_edits;
    for (int32_t i = 0; i < q->n_bias; i++)
        if (q->bias_ids[i] >= 0 && q->bias_ids[i] < V)
            s->edits[sampler_edit(s, row, q->bias_ids[i])].add += q->bias_vals[i];
    if (sampler_penalized(q)) {
        /* counted into sub first; then the count becomes the penalty */
        for (int32_t i = 0; i < q->n_penalty_tokens; i++)
            if (q->penalty_tokens[i] >= 0 && q->penalty_tokens[i] < V)
                s->edits[sampler_edit(s, row, q->penalty_tokens[i])].sub += 1.0f;
        const float rp = q->sp.repetition_penalty;
        for (int64_t e = first; e < s->n_edits; e++)
            if (s->edits[e].sub > 0.0f) {
                s->edits[e].rep = rp > 0 && rp != 1.0f ? rp : 1.0f;
                s->edits[e].sub = q->sp.frequency_penalty * s->edits[e].sub + q->sp.presence_penalty;
            }
    }
    for (int32_t i = 0; i < q->n_banned; i++)
        if (q->banned[i] >= 0 && q->banned[i] < V)
            s->edits[sampler_edit(s, row, q->banned[i])].ban = 1;
    for (int64_t e = first; e < s->n_edits; e++)
        s->slot[s->edits[e].token] = -1;
}

ss_status ss_sampler_prepare(ss_sampler *s, const ss_step_plan *plan, const int32_t *row_of_seq, int *device,
                             ss_err *err)
{
    *device = 0;
    if (plan->n_seqs > s->max_seqs)
        return ss_err_set(err, SS_ERR_INTERNAL, "sampler: %d sequences for %d", plan->n_seqs, s->max_seqs);
    int64_t need = 0;
    int32_t n = 0, k = 0;
    for (int32_t i = 0; i < plan->n_seqs; i++) {
        const ss_plan_seq *q = &plan->seqs[i];
        if (!q->sample)
            continue;
        n++;
        k = q->sp.n_logprobs > k ? q->sp.n_logprobs : k;
        const int64_t most = (int64_t)q->n_bias + q->n_banned + (sampler_penalized(q) ? q->n_penalty_tokens : 0);
        need += most < s->vocab ? most : s->vocab; /* one edit per distinct token at most */
    }
    if (need >= INT32_MAX)
        return ss_err_set(err, SS_ERR_INVALID_ARG, "step plan: %lld logit edits (bias, penalties, bans) in one step",
                          (long long)need);
    if (need > s->edits_cap) {
        ss_logit_edit *e = ss_realloc(s->edits, (size_t)need * sizeof *e);
        if (!e)
            return ss_err_set(err, SS_ERR_NOMEM, "out of memory for %lld logit edits", (long long)need);
        s->edits = e;
        s->edits_cap = need;
    }
    s->n_edits = 0;
    for (int32_t i = 0; i < plan->n_seqs; i++) {
        s->edit_off[i] = s->n_edits;
        if (plan->seqs[i].sample)
            sampler_seq_edits(s, &plan->seqs[i], row_of_seq[i]);
    }
    s->edit_off[plan->n_seqs] = s->n_edits;
    s->n_rows = n;
    s->n_top = k;
    const size_t bytes = (size_t)n * 8 + (size_t)n * k * 8;
    *device = s->dev_edits && !(plan->flags & (SS_PLAN_ALL_LOGITS | SS_PLAN_LAST_LOGITS)) &&
              bytes <= SS_DOWNLOAD_ASYNC_MAX && s->n_edits <= s->dev_edits_cap;
    return SS_OK;
}

/* Enqueues JSON mode's masks of plan's sampling sequences over their rows of logits. The words and row indices go
 * up in one upload, into buffers sized for max_seqs rows at create. */
static ss_status sampler_masks(ss_sampler *s, const ss_step_plan *plan, float *logits, ss_err *err)
{
    const ss_backend_i *B = s->be->iface;
    const int32_t V = s->vocab, W = (V + 31) / 32;
    int32_t n = 0;
    for (int32_t i = 0; i < plan->n_seqs; i++)
        n += plan->seqs[i].sample && plan->seqs[i].n_allow > 0;
    if (n == 0)
        return SS_OK;
    const size_t bytes = (size_t)n * ((size_t)W + 1) * sizeof(uint32_t);
    if (bytes > s->mask_cap) /* sized for max_seqs: a plan that passed validation fits */
        return ss_err_set(err, SS_ERR_INTERNAL, "%d JSON mode masks do not fit their %zu bytes", n, s->mask_cap);
    uint32_t *words = s->host_mask;
    int32_t *rows = (int32_t *)(words + (size_t)n * W);
    for (int32_t i = 0, j = 0, k = 0; i < plan->n_seqs; i++) {
        const ss_plan_seq *q = &plan->seqs[i];
        if (!q->sample)
            continue;
        if (q->n_allow > 0) {
            memcpy(words + (size_t)j * W, q->allow, (size_t)W * sizeof(uint32_t)); /* validated: W words */
            rows[j++] = k;
        }
        k++;
    }
    ss_status st = B->upload(s->be->ctx, s->dev_mask, s->host_mask, bytes);
    if (st == SS_OK)
        st = B->mask_logits(s->be->ctx, logits, V, n, (const int32_t *)((uint32_t *)s->dev_mask + (size_t)n * W),
                            s->dev_mask);
    if (st != SS_OK)
        return ss_err_set(err, st, "applying %d JSON mode masks on %s", n, s->be->desc);
    return SS_OK;
}

/* The sample op's parameters for a sequence, with this draw's uniform number. */
static ss_sample_row sampler_row(const ss_plan_seq *q)
{
    ss_sample_row sr = {q->sp.temperature, q->sp.top_k, q->sp.top_p, q->sp.min_p,
                        ss_rng_uniform(q->sp.seed, q->rng_counter)};
    return sr;
}

ss_status ss_sampler_device(ss_sampler *s, const ss_step_plan *plan, float *logits, int32_t *out, int lists,
                            size_t *bytes, int32_t *k, ss_err *err)
{
    const ss_backend_i *B = s->be->iface;
    const int32_t V = s->vocab, n = s->n_rows;
    *bytes = 0;
    *k = lists ? s->n_top : 0;
    ss_status st = SS_OK;
    if (s->n_edits > 0) {
        st = B->upload(s->be->ctx, s->dev_edits, s->edits, (size_t)s->n_edits * sizeof *s->edits);
        if (st == SS_OK)
            st = B->edit_logits(s->be->ctx, logits, V, s->n_edits, s->dev_edits);
        if (st != SS_OK)
            return ss_err_set(err, st, "applying %lld logit edits (bias, penalties, bans) on %s",
                              (long long)s->n_edits, s->be->desc);
    }
    SS_CHECK(sampler_masks(s, plan, logits, err));
    ss_sample_row srows[512];
    ss_sample_row *sr = n <= 512 ? srows : ss_malloc((size_t)n * sizeof *sr);
    if (!sr)
        return ss_err_set(err, SS_ERR_NOMEM, "out of memory");
    for (int32_t i = 0, j = 0; i < plan->n_seqs; i++)
        if (plan->seqs[i].sample)
            sr[j++] = sampler_row(&plan->seqs[i]);
    st = B->sample(s->be->ctx, out, (float *)(out + n), logits, n, V, sr);
    if (sr != srows)
        ss_free(sr);
    if (st == SS_OK && *k > 0)
        st = B->top_logprobs(s->be->ctx, out + 2 * n, (float *)(out + 2 * n + (size_t)n * *k), (float *)(out + n), out,
                             logits, n, V, *k);
    if (st != SS_OK)
        return ss_err_set(err, st, "sampling %d rows on %s", n, s->be->desc);
    *bytes = (size_t)n * 8 + (size_t)n * *k * 8;
    return SS_OK;
}

void ss_sampler_row_lists(const ss_step_plan *plan, int32_t *row_k)
{
    for (int32_t i = 0, j = 0; i < plan->n_seqs; i++)
        if (plan->seqs[i].sample)
            row_k[j++] = plan->seqs[i].sp.n_logprobs;
}

ss_status ss_sampler_unpack(const int32_t *buf, int32_t n, int32_t k, const int32_t *row_k, ss_step_output *o,
                            ss_err *err)
{
    ss_step_output_clear(o);
    o->n = n;
    o->n_top = k;
    o->token = ss_malloc((size_t)(n ? n : 1) * 4);
    o->logprob = ss_malloc((size_t)(n ? n : 1) * 4);
    if (k > 0) {
        o->top_ids = ss_malloc((size_t)n * k * 4);
        o->top_logprobs = ss_malloc((size_t)n * k * 4);
    }
    if (!o->token || !o->logprob || (k > 0 && (!o->top_ids || !o->top_logprobs))) {
        ss_step_output_clear(o);
        return ss_err_set(err, SS_ERR_NOMEM, "out of memory");
    }
    memcpy(o->token, buf, (size_t)n * 4);
    memcpy(o->logprob, buf + n, (size_t)n * 4);
    const int32_t *ids = buf + 2 * n;
    const float *vals = (const float *)(buf + 2 * n + (size_t)n * k);
    for (int64_t i = 0; i < (int64_t)n * k; i++) {
        const int keep = (int32_t)(i % k) < row_k[i / k]; /* a shorter list's tail: as the host path leaves it */
        o->top_ids[i] = keep ? ids[i] : -1;
        o->top_logprobs[i] = keep ? vals[i] : -INFINITY;
    }
    return SS_OK;
}

/* The step's edits of plan sequence i and JSON mode's mask on one host row of logits. */
static void sampler_edit_row(const ss_sampler *s, const ss_plan_seq *q, int32_t i, float *row)
{
    for (int64_t e = s->edit_off[i]; e < s->edit_off[i + 1]; e++)
        row[s->edits[e].token] = ss_logit_edit_host(row[s->edits[e].token], &s->edits[e]);
    if (q->n_allow > 0) /* validated: (V + 31) / 32 words */
        for (int32_t t = 0; t < s->vocab; t++)
            if (!((q->allow[t >> 5] >> (t & 31)) & 1u))
                row[t] = -INFINITY;
}

ss_status ss_sampler_host(ss_sampler *s, const ss_step_plan *plan, const int32_t *row_of_seq, const float *logits,
                          int32_t n_rows, ss_step_output *out, ss_err *err)
{
    const ss_backend_i *B = s->be->iface;
    const int32_t V = s->vocab, n = s->n_rows, n_top = s->n_top;
    int want_logits = (plan->flags & (SS_PLAN_ALL_LOGITS | SS_PLAN_LAST_LOGITS)) != 0;
    out->n = n;
    out->vocab = V;
    out->n_top = n_top;
    out->token = ss_malloc((size_t)(n ? n : 1) * 4);
    out->logprob = ss_malloc((size_t)(n ? n : 1) * 4);
    if (n_top) {
        out->top_ids = ss_malloc((size_t)n * n_top * 4);
        out->top_logprobs = ss_malloc((size_t)n * n_top * 4);
    }
    if (!out->token || !out->logprob || (n_top && (!out->top_ids || !out->top_logprobs)))
        return ss_err_set(err, SS_ERR_NOMEM, "out of memory");
    size_t bytes = (size_t)n_rows * V * sizeof(float);
    float *hl = ss_malloc(bytes ? bytes : 4);
    if (!hl)
        return ss_err_set(err, SS_ERR_NOMEM, "out of memory for %d logits rows", n_rows);
    ss_status st = B->download(s->be->ctx, hl, logits, bytes);
    if (st != SS_OK) {
        ss_free(hl);
        return ss_err_set(err, st, "downloading logits from %s", s->be->desc);
    }
    if (want_logits) { /* raw logits go back before any edit touches them */
        out->logits = ss_malloc(bytes ? bytes : 4);
        if (!out->logits) {
            ss_free(hl);
            return ss_err_set(err, SS_ERR_NOMEM, "out of memory");
        }
        memcpy(out->logits, hl, bytes);
        out->logits_rows = n_rows;
    }
    if (!s->host_work) {
        s->host_threads = ss_helper_threads();
        s->host_work = ss_malloc((size_t)s->host_threads * (size_t)V * sizeof(float));
        if (!s->host_work) {
            ss_free(hl);
            return ss_err_set(err, SS_ERR_NOMEM, "out of memory for the host sampling path");
        }
    }
    /* The work is shared among the helper threads in three rounds, each row's results independent of how:
     * rows (edits, mask); chunks of rows (maximum and sum of exponentials: one row, at batch 1, still spreads over
     * the threads); rows again (the token, its log-probability, the top list). */
    const int32_t n_chunks = (V + SS_ROW_CHUNK - 1) / SS_ROW_CHUNK;
    int32_t *seq_of = ss_calloc((size_t)(n ? n : 1), sizeof *seq_of); /* the k-th sampling sequence */
    ss_row_chunk *chunk = ss_malloc((size_t)(n ? n : 1) * n_chunks * sizeof *chunk);
    if (!seq_of || !chunk) {
        ss_free(seq_of);
        ss_free(chunk);
        ss_free(hl);
        return ss_err_set(err, SS_ERR_NOMEM, "out of memory");
    }
    for (int32_t i = 0, k = 0; i < plan->n_seqs; i++)
        if (plan->seqs[i].sample)
            seq_of[k++] = i;
    const int threads = s->host_threads;
#pragma omp parallel num_threads(threads) if (threads > 1 && (int64_t)n * V >= SS_ROW_CHUNK)
    {
        float *scratch = s->host_work + (size_t)omp_get_thread_num() * (size_t)V;
#pragma omp for schedule(dynamic, 1)
        for (int32_t k = 0; k < n; k++)
            sampler_edit_row(s, &plan->seqs[seq_of[k]], seq_of[k], hl + (size_t)row_of_seq[seq_of[k]] * V);
#pragma omp for schedule(dynamic, 1)
        for (int64_t t = 0; t < (int64_t)n * n_chunks; t++) {
            const int32_t k = (int32_t)(t / n_chunks), c = (int32_t)(t % n_chunks);
            const int32_t end = (c + 1) * SS_ROW_CHUNK < V ? (c + 1) * SS_ROW_CHUNK : V;
            ss_row_chunk_host(hl + (size_t)row_of_seq[seq_of[k]] * V, c * SS_ROW_CHUNK, end, &chunk[t]);
        }
#pragma omp for schedule(dynamic, 1)
        for (int32_t k = 0; k < n; k++) {
            const ss_plan_seq *q = &plan->seqs[seq_of[k]];
            const float *row = hl + (size_t)row_of_seq[seq_of[k]] * V;
            int32_t arg = 0;
            float lse = 0;
            ss_row_merge_host(chunk + (size_t)k * n_chunks, n_chunks, &arg, &lse);
            ss_sample_row sr = sampler_row(q);
            out->token[k] = sr.temperature > 0 ? ss_sample_host(row, V, &sr, scratch, NULL) : arg;
            /* the token's log-probability and its top list from the same log-sum-exp: they agree to the bit */
            out->logprob[k] = row[out->token[k]] - lse;
            if (n_top) {
                int32_t *ids = out->top_ids + (size_t)k * n_top;
                float *vals = out->top_logprobs + (size_t)k * n_top;
                ss_top_host(row, V, q->sp.n_logprobs, ids, vals); /* by logit: the log-probabilities' order */
                for (int32_t j = 0; j < n_top; j++) {
                    if (j < q->sp.n_logprobs && ids[j] >= 0) {
                        vals[j] = row[ids[j]] - lse;
                    } else {
                        ids[j] = -1;
                        vals[j] = -INFINITY;
                    }
                }
            }
        }
    }
    ss_free(chunk);
    ss_free(seq_of);
    ss_free(hl);
    return SS_OK;
}
