/* step_plan.c — step plans and outputs on the wire: one allocation per decoded message, every count
 * checked against the bytes that are really there. */
#include "runner/step_plan.h"

#include <string.h>

#include "core/alloc.h"
#include "core/wire.h"

#define PLAN_MAGIC 0x32505353u /* "SSP2" */
#define OUT_MAGIC 0x314f5353u  /* "SSO1" */

static void plan_put_sp(ss_wbuf *w, const ss_sampling_params *sp)
{
    ss_wbuf_f32(w, sp->temperature);
    ss_wbuf_u32(w, (uint32_t)sp->top_k);
    ss_wbuf_f32(w, sp->top_p);
    ss_wbuf_f32(w, sp->min_p);
    ss_wbuf_f32(w, sp->repetition_penalty);
    ss_wbuf_f32(w, sp->presence_penalty);
    ss_wbuf_f32(w, sp->frequency_penalty);
    ss_wbuf_u64(w, sp->seed);
    ss_wbuf_u32(w, (uint32_t)sp->n_logprobs);
}

static void plan_get_sp(ss_rbuf *r, ss_sampling_params *sp)
{
    sp->temperature = ss_rbuf_f32(r);
    sp->top_k = (int32_t)ss_rbuf_u32(r);
    sp->top_p = ss_rbuf_f32(r);
    sp->min_p = ss_rbuf_f32(r);
    sp->repetition_penalty = ss_rbuf_f32(r);
    sp->presence_penalty = ss_rbuf_f32(r);
    sp->frequency_penalty = ss_rbuf_f32(r);
    sp->seed = ss_rbuf_u64(r);
    sp->n_logprobs = (int32_t)ss_rbuf_u32(r);
}

ss_status ss_step_plan_encode(const ss_step_plan *plan, uint8_t **buf, size_t *len, ss_err *err)
{
    ss_wbuf w = {0};
    ss_wbuf_u32(&w, PLAN_MAGIC);
    ss_wbuf_u64(&w, plan->step_id);
    ss_wbuf_u32(&w, plan->flags);
    ss_wbuf_u32(&w, (uint32_t)plan->n_seqs);
    ss_wbuf_i32s(&w, plan->tokens, plan->n_tokens);
    for (int32_t s = 0; s < plan->n_seqs; s++) {
        const ss_plan_seq *q = &plan->seqs[s];
        ss_wbuf_u64(&w, q->seq_id);
        ss_wbuf_u32(&w, (uint32_t)q->n_tokens);
        ss_wbuf_u32(&w, (uint32_t)q->pos_start);
        ss_wbuf_u32(&w, (uint32_t)q->sample);
        ss_wbuf_u64(&w, q->rng_counter);
        plan_put_sp(&w, &q->sp);
        ss_wbuf_i32s(&w, q->blocks, q->n_blocks);
        ss_wbuf_i32s(&w, q->penalty_tokens, q->n_penalty_tokens);
        ss_wbuf_i32s(&w, q->banned, q->n_banned);
        ss_wbuf_u32(&w, (uint32_t)q->n_bias);
        for (int32_t i = 0; i < q->n_bias; i++) {
            ss_wbuf_u32(&w, (uint32_t)q->bias_ids[i]);
            ss_wbuf_f32(&w, q->bias_vals[i]);
        }
        ss_wbuf_i32s(&w, (const int32_t *)q->allow, q->n_allow);
    }
    if (w.failed) {
        ss_free(w.data);
        return ss_err_set(err, SS_ERR_NOMEM, "out of memory encoding a step plan");
    }
    *buf = w.data;
    *len = w.len;
    return SS_OK;
}

void ss_step_plan_free(ss_step_plan *plan)
{
    if (!plan)
        return;
    ss_free(plan->seqs); /* one block: seqs, then every array */
    memset(plan, 0, sizeof *plan);
}

ss_status ss_step_plan_decode(const uint8_t *buf, size_t len, ss_step_plan *plan, ss_err *err)
{
    memset(plan, 0, sizeof *plan);
    ss_rbuf r = {buf, len, 0};
    if (ss_rbuf_u32(&r) != PLAN_MAGIC)
        return ss_err_set(err, SS_ERR_FORMAT, "step plan: bad magic");
    plan->step_id = ss_rbuf_u64(&r);
    plan->flags = ss_rbuf_u32(&r);
    uint32_t n_seqs = ss_rbuf_u32(&r);
    int64_t n_tok = ss_rbuf_peek_count(&r);
    /* Every sequence takes at least 64 bytes on the wire, every int32 four: bounds the allocation. */
    if (r.failed || n_tok < 0 || (uint64_t)n_seqs > len / 64)
        return ss_err_set(err, SS_ERR_FORMAT, "step plan: inconsistent counts");
    size_t total_i32 = len / 4 + 1;
    size_t bytes = (size_t)n_seqs * sizeof(ss_plan_seq) + total_i32 * 4;
    uint8_t *mem = ss_calloc(1, bytes ? bytes : 1);
    if (!mem)
        return ss_err_set(err, SS_ERR_NOMEM, "out of memory decoding a step plan");
    plan->seqs = (ss_plan_seq *)mem;
    int32_t *pool = (int32_t *)(mem + (size_t)n_seqs * sizeof(ss_plan_seq));
    size_t used = 0;
    plan->n_seqs = (int32_t)n_seqs;
    plan->tokens = pool;
    plan->n_tokens = ss_rbuf_i32s(&r, pool, (int64_t)(total_i32 - used));
    used += (size_t)plan->n_tokens;
    for (uint32_t s = 0; s < n_seqs && !r.failed; s++) {
        ss_plan_seq *q = &plan->seqs[s];
        q->seq_id = ss_rbuf_u64(&r);
        q->n_tokens = (int32_t)ss_rbuf_u32(&r);
        q->pos_start = (int32_t)ss_rbuf_u32(&r);
        q->sample = (int32_t)ss_rbuf_u32(&r);
        q->rng_counter = ss_rbuf_u64(&r);
        plan_get_sp(&r, &q->sp);
        q->blocks = pool + used;
        q->n_blocks = (int32_t)ss_rbuf_i32s(&r, q->blocks, (int64_t)(total_i32 - used));
        used += (size_t)q->n_blocks;
        q->penalty_tokens = pool + used;
        q->n_penalty_tokens = (int32_t)ss_rbuf_i32s(&r, q->penalty_tokens, (int64_t)(total_i32 - used));
        used += (size_t)q->n_penalty_tokens;
        q->banned = pool + used;
        q->n_banned = (int32_t)ss_rbuf_i32s(&r, q->banned, (int64_t)(total_i32 - used));
        used += (size_t)q->n_banned;
        /* the bias: a count, then (id, value) pairs of 8 bytes each, which the pool holds as two words */
        uint32_t nb = ss_rbuf_u32(&r);
        if (r.failed || nb > SS_MAX_LOGIT_BIAS || (size_t)nb * 8 > r.left || (size_t)nb * 2 > total_i32 - used) {
            r.failed = 1;
            break;
        }
        q->n_bias = (int32_t)nb;
        q->bias_ids = pool + used;
        q->bias_vals = (float *)(pool + used + nb); /* calloc'd memory: its type is what is stored in it */
        used += (size_t)nb * 2;
        for (uint32_t i = 0; i < nb; i++) {
            q->bias_ids[i] = (int32_t)ss_rbuf_u32(&r);
            q->bias_vals[i] = ss_rbuf_f32(&r);
        }
        q->allow = (uint32_t *)(pool + used);
        q->n_allow = (int32_t)ss_rbuf_i32s(&r, (int32_t *)q->allow, (int64_t)(total_i32 - used));
        used += (size_t)q->n_allow;
        if (!q->n_allow)
            q->allow = NULL;
    }
    if (r.failed || r.left) {
        ss_step_plan_free(plan);
        return ss_err_set(err, SS_ERR_FORMAT, "step plan: truncated or trailing bytes");
    }
    return SS_OK;
}

ss_status ss_step_output_encode(const ss_step_output *o, uint8_t **buf, size_t *len, ss_err *err)
{
    ss_wbuf w = {0};
    ss_wbuf_u32(&w, OUT_MAGIC);
    ss_wbuf_u32(&w, (uint32_t)o->n);
    ss_wbuf_u32(&w, (uint32_t)o->n_top);
    ss_wbuf_u32(&w, (uint32_t)o->vocab);
    ss_wbuf_u64(&w, (uint64_t)o->logits_rows);
    ss_wbuf_put(&w, o->token, (size_t)o->n * 4);
    ss_wbuf_put(&w, o->logprob, (size_t)o->n * 4);
    ss_wbuf_put(&w, o->top_ids, (size_t)o->n * o->n_top * 4);
    ss_wbuf_put(&w, o->top_logprobs, (size_t)o->n * o->n_top * 4);
    ss_wbuf_put(&w, o->logits, (size_t)o->logits_rows * o->vocab * 4);
    if (w.failed) {
        ss_free(w.data);
        return ss_err_set(err, SS_ERR_NOMEM, "out of memory encoding a step output");
    }
    *buf = w.data;
    *len = w.len;
    return SS_OK;
}

ss_status ss_step_output_decode(const uint8_t *buf, size_t len, ss_step_output *o, ss_err *err)
{
    memset(o, 0, sizeof *o);
    ss_rbuf r = {buf, len, 0};
    if (ss_rbuf_u32(&r) != OUT_MAGIC)
        return ss_err_set(err, SS_ERR_FORMAT, "step output: bad magic");
    uint32_t n = ss_rbuf_u32(&r), n_top = ss_rbuf_u32(&r), vocab = ss_rbuf_u32(&r);
    uint64_t rows = ss_rbuf_u64(&r);
    uint64_t need = (uint64_t)n * 8 + (uint64_t)n * n_top * 8;
    if (r.failed || n > (1u << 20) || n_top > 64 || vocab > (1u << 24) || rows > (1u << 20) || need > r.left ||
        rows * vocab * 4 != r.left - need)
        return ss_err_set(err, SS_ERR_FORMAT, "step output: inconsistent sizes");
    o->n = (int32_t)n;
    o->n_top = (int32_t)n_top;
    o->vocab = (int32_t)vocab;
    o->logits_rows = (int64_t)rows;
    o->token = ss_malloc((size_t)n * 4 + 4);
    o->logprob = ss_malloc((size_t)n * 4 + 4);
    if (n_top) {
        o->top_ids = ss_malloc((size_t)n * n_top * 4 + 4);
        o->top_logprobs = ss_malloc((size_t)n * n_top * 4 + 4);
    }
    if (rows)
        o->logits = ss_malloc((size_t)(rows * vocab * 4));
    if (!o->token || !o->logprob || (n_top && (!o->top_ids || !o->top_logprobs)) || (rows && !o->logits)) {
        ss_step_output_clear(o);
        return ss_err_set(err, SS_ERR_NOMEM, "out of memory decoding a step output");
    }
    ss_rbuf_get(&r, o->token, (size_t)n * 4);
    ss_rbuf_get(&r, o->logprob, (size_t)n * 4);
    if (n_top) {
        ss_rbuf_get(&r, o->top_ids, (size_t)n * n_top * 4);
        ss_rbuf_get(&r, o->top_logprobs, (size_t)n * n_top * 4);
    }
    if (rows)
        ss_rbuf_get(&r, o->logits, (size_t)(rows * vocab * 4));
    return SS_OK;
}

ss_status ss_sampled_seqs_record(ss_sampled_seqs *s, const ss_step_plan *plan, ss_err *err)
{
    s->n = 0;
    for (int32_t i = 0; i < plan->n_seqs; i++) {
        if (!plan->seqs[i].sample)
            continue;
        if (s->n == s->cap) {
            int32_t cap = s->cap ? 2 * s->cap : 64;
            uint64_t *ids = ss_realloc(s->seq_ids, (size_t)cap * sizeof *ids);
            if (!ids)
                return ss_err_set(err, SS_ERR_NOMEM, "out of memory recording a step's sequences");
            s->seq_ids = ids;
            s->cap = cap;
        }
        s->seq_ids[s->n++] = plan->seqs[i].seq_id;
    }
    return SS_OK;
}

int ss_plan_seq_continues(const ss_plan_seq *prev, const ss_plan_seq *q)
{
    return prev->seq_id == q->seq_id && (int64_t)q->pos_start == (int64_t)prev->pos_start + prev->n_tokens &&
           prev->n_blocks <= q->n_blocks &&
           (prev->blocks == q->blocks || prev->n_blocks == 0 ||
            memcmp(prev->blocks, q->blocks, (size_t)prev->n_blocks * sizeof(int32_t)) == 0);
}

int32_t ss_sampled_seqs_find(const ss_sampled_seqs *s, uint64_t seq_id, int32_t hint)
{
    if (hint >= 0 && hint < s->n && s->seq_ids[hint] == seq_id)
        return hint;
    for (int32_t i = 0; i < s->n; i++)
        if (s->seq_ids[i] == seq_id)
            return i;
    return -1;
}

void ss_sampled_seqs_free(ss_sampled_seqs *s)
{
    ss_free(s->seq_ids);
    memset(s, 0, sizeof *s);
}
