/* runner.c — executing step plans on one rank: plan validation, metadata, the forward pass, and the sampled
 * tokens' way back (sampler.c chooses them: on the device, or on the host for steps that return logits). */
#include "runner/runner.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/alloc.h"
#include "core/fileio.h"
#include "core/log.h"
#include "core/net.h"
#include "engine/engine.h"
#include "engine/load_check.h"
#include "engine/manifest.h"
#include "engine/quick_digest.h"
#include "model/forward.h"
#include "model/safetensors.h"
#include "model/shard_plan.h"
#include "model/weights.h"
#include "runner/sampler.h"

/* A step submitted and not collected yet. */
typedef struct runner_pending {
    int async;          /* the sampled tokens are on their way: download_wait(slot) fills buf */
    int comm_wait;      /* async on NCCL: poll the slot and the communicator (a lost peer must not hang) */
    int64_t started_ms; /* when the step was submitted (the communicator's deadline counts from there) */
    int32_t n;          /* sampled rows of an async step (0 on a rank that only waits for the step) */
    int32_t *buf;       /* [ss_sampler_out_bytes(max_rows)] that step's tokens, log-probabilities, lists (owned) */
    int32_t n_top;      /* the lists' length in buf (0: none) */
    int32_t *row_k;     /* [max_seqs] each row's own list length (owned) */
    ss_step_output out; /* the result of a step that completed inside submit */
} runner_pending;

struct ss_runner {
    ss_runner_params p;
    ss_model_config cfg;
    ss_shard_plan plan;
    ss_backend *be;
    ss_model_weights *w;
    ss_forward *fwd;
    ss_forward_params fp;
    ss_runner_links links;
    /* host scratch for one step */
    int32_t *tok_seq, *tok_pos, *slots, *rows, *block_tables, *seq_lens, *row_of_seq;
    int32_t *bt_width; /* [max_seqs] entries of each block-table row written so far (the rest are zero) */
    ss_sampler *smp;
    int32_t *dev_tok;     /* device [ss_sampler_out_bytes(max_rows)]: sampled tokens, log-probabilities, lists */
    int32_t *ids;         /* [max_tokens] the step's ids as the forward pass takes them (< 0: fed from dev_tok) */
    /* Steps submitted and not collected, oldest at pend_head; entry i uses download slot i. */
    runner_pending pend[SS_DOWNLOAD_SLOTS];
    int32_t pend_head, n_pend;
    /* The last submitted step: its sampling sequences, whether dev_tok holds their tokens (so that
     * SS_TOKEN_PREV is fed on the device), whether every rank of the replica holds them there (tp > 1
     * steps that chose their tokens on the device, without pipeline stages), and their host copy once known. */
    ss_sampled_seqs prev;
    int prev_fed, prev_fed_all, prev_known;
    int64_t comm_checked_ms; /* the last look at the communicator while polling a step */
    int32_t *prev_tokens; /* [max_rows] */
};

float ss_rng_uniform(uint64_t seed, uint64_t counter)
{
    /* splitmix64 of (seed, counter): a counter-based stream, so batching and preemption cannot change
     * which number a given draw gets. */
    uint64_t z = seed + 0x9e3779b97f4a7c15ULL * (counter + 1);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return (float)((z >> 40) * (1.0 / 16777216.0));
}

ss_sampling_params ss_sampling_default(void)
{
    ss_sampling_params s;
    memset(&s, 0, sizeof s);
    s.top_p = 1.0f;
    s.repetition_penalty = 1.0f;
    return s;
}

void ss_step_output_clear(ss_step_output *o)
{
    if (!o)
        return;
    ss_free(o->token);
    ss_free(o->logprob);
    ss_free(o->top_ids);
    ss_free(o->top_logprobs);
    ss_free(o->logits);
    memset(o, 0, sizeof *o);
}

static ss_status runner_open_weights(ss_runner *r, ss_err *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/manifest.json", r->p.model_dir);
    if (!ss_path_exists(path)) { /* a checkpoint folder: every rank slices what it needs */
        ss_checkpoint *ck = NULL;
        SS_CHECK(ss_checkpoint_open(r->p.model_dir, &ck, err));
        ss_status st = ss_weights_load(r->be, &r->cfg, &r->plan, ck, 0, &r->w, err);
        ss_checkpoint_close(ck);
        return st;
    }
    /* a prepared engine: read only this rank's file */
    ss_manifest *m = NULL;
    SS_CHECK(ss_manifest_load(r->p.model_dir, &m, err));
    int mtp = m->tp, mpp = m->pp;
    char quick[SS_QUICK_DIGEST_LEN] = "";
    if ((size_t)r->p.rank < m->n_ranks && m->ranks[r->p.rank].quick_digest)
        snprintf(quick, sizeof quick, "%s", m->ranks[r->p.rank].quick_digest);
    ss_manifest_destroy(m);
    if (mtp != r->p.tp || mpp != r->p.pp)
        return ss_err_set(err, SS_ERR_MISMATCH, "%s: the engine was prepared for tp %d x pp %d, not tp %d x pp %d (leave --tp and --pp "
                          "out to run the engine's own layout)",
                          r->p.model_dir, mtp, mpp, r->p.tp, r->p.pp);
    /* Sizes of every file and the digests of the small ones against the manifest (milliseconds); the rank file's
     * quick digest is read beside the load below; the full sha256 of everything is `prepare --check`'s job. */
    SS_CHECK(ss_engine_verify(r->p.model_dir, SS_ENGINE_VERIFY_LOAD, err));
    snprintf(path, sizeof path, "%s/rank-%05d.safetensors", r->p.model_dir, r->p.rank);
    if (!quick[0])
        SS_LOGW("rank %d: %s has no quick digest (an engine built before the load check): its weights are checked by "
                "size only; `shardserve prepare --check %s` reads them all, and an engine built again has the digests",
                r->p.rank, path, r->p.model_dir);
    ss_checkpoint *ck = NULL;
    ss_status st = ss_checkpoint_open_file(path, &ck, err);
    if (st != SS_OK) {
        /* a header that does not parse is more likely damage than a bad build: the digest tells */
        ss_err e2;
        if (quick[0] && ss_load_check_file(path, quick, &e2) == SS_ERR_MISMATCH) {
            if (err)
                *err = e2;
            return SS_ERR_MISMATCH;
        }
        return st;
    }
    /* the digest over the very bytes the weights load from (the file's mapping, open until the check is over) */
    ss_load_check *chk = NULL;
    size_t len = 0;
    const uint8_t *bytes = ss_st_bytes(ss_checkpoint_file(ck, 0), &len);
    if (quick[0] && (st = ss_load_check_start(bytes, len, path, quick, &chk, err)) != SS_OK) {
        ss_checkpoint_close(ck);
        return st;
    }
    st = ss_weights_load(r->be, &r->cfg, &r->plan, ck, 1, &r->w, err);
    if (chk) {
        /* On a failed load too: damage explains a missing tensor or a bad shape better than the load's own error. */
        ss_err ce;
        ss_status cst = ss_load_check_finish(chk, &ce);
        if (cst != SS_OK && (st == SS_OK || cst == SS_ERR_MISMATCH)) {
            st = cst;
            if (err)
                *err = ce;
        }
    }
    ss_checkpoint_close(ck);
    if (st != SS_OK && r->w) {
        ss_weights_free(r->be, r->w);
        r->w = NULL;
    }
    return st;
}

/* KV blocks when none were asked for: on a GPU, 90% of the memory left after the weights and a reserve
 * for activations and logits; on the cpu, room for 8 sequences of the context or of 8,192 tokens, the fewer. */
static int32_t runner_free_memory_blocks(const ss_runner *r)
{
    size_t free_b = 0, total_b = 0;
    const int32_t cpu_seq_blocks = (8192 + r->fp.block_size - 1) / r->fp.block_size;
    int32_t cpu_default = 8 * (r->fp.max_blocks < cpu_seq_blocks ? r->fp.max_blocks : cpu_seq_blocks);
    if (r->be->iface->mem_info(r->be->ctx, &free_b, &total_b) != SS_OK || !free_b)
        return cpu_default;
    size_t esz = ss_dtype_size(r->be->act_dtype);
    size_t kv_dim = (size_t)r->plan.kv_heads * r->cfg.head_dim;
    size_t layers = (size_t)(r->plan.layer_end - r->plan.layer_start);
    size_t per_block = 2 * layers *
                       ss_kv_block_bytes(r->be->kv_type, r->be->act_dtype, r->fp.block_size, r->plan.kv_heads, r->cfg.head_dim);
    size_t T = (size_t)r->fp.max_tokens, R = (size_t)r->fp.max_rows;
    size_t reserve = ((size_t)2 << 30) +
                     T * esz * (6 * (size_t)r->cfg.hidden_size + 4 * (size_t)r->plan.inter_size + 3 * kv_dim * 4) +
                     R * (size_t)r->cfg.vocab_size * 4 * 3;
    if (free_b <= reserve || !per_block)
        return 64;
    size_t n = (free_b - reserve) / 10 * 9 / per_block;
    if (n > (size_t)INT32_MAX / 2)
        n = (size_t)INT32_MAX / 2;
    SS_LOGI("KV cache: %zu blocks (%.1f GiB of %.1f GiB free)", n, n * (double)per_block / 1073741824.0,
            free_b / 1073741824.0);
    return (int32_t)(n < 64 ? 64 : n);
}

static int32_t runner_default_blocks(const ss_runner *r)
{
    /* SS_KV_BLOCKS_CAP=N (testing: a rank with less free memory than the others) caps this rank's count. */
    const char *cap_env = getenv("SS_KV_BLOCKS_CAP");
    char *end = NULL;
    long cap = cap_env && *cap_env ? strtol(cap_env, &end, 10) : 0;
    if (cap_env && *cap_env && (*end || cap < 1)) {
        SS_LOGW("SS_KV_BLOCKS_CAP=%s is not a positive number of blocks: ignored", cap_env);
        cap = 0;
    }
    int32_t n = runner_free_memory_blocks(r);
    if (cap > 0 && cap < n) {
        SS_LOGW("KV cache: capped at %ld blocks by SS_KV_BLOCKS_CAP", cap);
        n = (int32_t)cap;
    }
    return n;
}

ss_status ss_runner_create(const ss_runner_params *p, const ss_runner_links *links, ss_runner **out, ss_err *err)
{
    *out = NULL;
    ss_runner *r = ss_calloc(1, sizeof *r);
    if (!r)
        return ss_err_set(err, SS_ERR_NOMEM, "out of memory");
    r->p = *p;
    r->links = *links;
    ss_status st;
    SS_CHECK_GOTO(ss_config_load_dir(p->model_dir, &r->cfg, err), st, fail);
    SS_CHECK_GOTO(ss_shard_plan_make(&r->cfg, p->tp, p->pp, p->rank, &r->plan, err), st, fail);
    /* --quantization auto: fp8 when the config declares fp8 weights, unless this rank's device or shapes cannot take
     * fp8 projections (compute capability below 8.9; input widths not multiples of 16): then the weights' dtype,
     * with a warning. (Ranks resolve it alike unless their GPUs differ; nothing between ranks depends on it.) */
    if (r->p.backend.linear_type == SS_LINEAR_AUTO) {
        int fp8 = r->cfg.fp8_weights;
        if (fp8 && !ss_weights_fp8_widths_ok(&r->cfg, &r->plan)) {
            SS_LOGW("rank %d: %s declares fp8 weights, but this rank's projection widths are not multiples of 16 "
                    "(intermediate slice %d): dequantised to the weights' dtype instead", p->rank, p->model_dir,
                    r->plan.inter_size);
            fp8 = 0;
        } else if (fp8 && !ss_backend_fp8_linear_ok(&r->p.backend)) {
            SS_LOGW("rank %d: %s declares fp8 weights, but this device cannot run fp8 projections (compute capability "
                    "below 8.9): dequantised to the weights' dtype instead", p->rank, p->model_dir);
            fp8 = 0;
        } else if (fp8 && p->rank == 0) {
            SS_LOGI("%s declares fp8 weights (quantization_config): its projections are fp8 on the device "
                    "(--quantization none: the weights' dtype)", p->model_dir);
        }
        r->p.backend.linear_type = fp8 ? SS_LINEAR_FP8 : SS_LINEAR_ACT;
    }
    SS_CHECK_GOTO(ss_backend_create(&r->p.backend, &r->be, err), st, fail);
    SS_CHECK_GOTO(runner_open_weights(r, err), st, fail);
    int32_t bs = p->block_size > 0 ? p->block_size : 16;
    /* The context: the model's own unless asked for less, and never more than the KV cache holds (one
     * sequence alone must fit it; on the cpu the default cache is sized for 8,192-token sequences). */
    int32_t msl = p->max_seq_len > 0 ? p->max_seq_len : r->cfg.max_position;
    if (msl > r->cfg.max_position) {
        if (p->rank == 0)
            SS_LOGW("max_seq_len %d is beyond the model's %d positions: capped at %d", msl, r->cfg.max_position,
                    r->cfg.max_position);
        msl = r->cfg.max_position;
    }
    r->fp.block_size = bs;
    r->fp.max_blocks = (msl + bs - 1) / bs;
    r->fp.max_tokens = p->max_batch_tokens > 0 ? p->max_batch_tokens : 2048;
    r->fp.max_seqs = p->max_seqs > 0 ? p->max_seqs : 256;
    r->fp.max_rows = r->fp.max_seqs > 256 ? r->fp.max_seqs : 256;
    r->fp.graphs = !p->no_graphs;
    r->fp.graph_bucket = p->graph_bucket;
    r->fp.num_blocks = p->num_kv_blocks > 0 ? p->num_kv_blocks : runner_default_blocks(r);
    r->p.num_kv_blocks = r->fp.num_blocks;
    if ((int64_t)r->fp.num_blocks * bs < msl) {
        if (p->rank == 0 && p->max_seq_len > 0)
            SS_LOGW("max_seq_len %d is beyond the KV cache's %d blocks of %d tokens: capped at %d", msl,
                    r->fp.num_blocks, bs, r->fp.num_blocks * bs);
        else if (p->rank == 0)
            SS_LOGI("context: %d tokens (the KV cache's %d blocks; the model has %d positions)", r->fp.num_blocks * bs,
                    r->fp.num_blocks, r->cfg.max_position);
        msl = r->fp.num_blocks * bs;
        r->fp.max_blocks = r->fp.num_blocks;
    }
    r->p.max_seq_len = msl;
    ss_forward_links fl = {links->tp, links->world, r->plan.first_stage ? -1 : p->rank - p->tp,
                           r->plan.last_stage ? -1 : p->rank + p->tp};
    SS_CHECK_GOTO(ss_forward_create(r->be, &r->cfg, r->w, &r->fp, &fl, &r->fwd, err), st, fail);
    size_t T = (size_t)r->fp.max_tokens, R = (size_t)r->fp.max_rows, S = (size_t)r->fp.max_seqs;
    r->tok_seq = ss_malloc(T * 4);
    r->tok_pos = ss_malloc(T * 4);
    r->slots = ss_malloc(T * 4);
    r->rows = ss_malloc(R * 4);
    r->row_of_seq = ss_malloc(S * 4);
    r->block_tables = ss_calloc(S * (size_t)r->fp.max_blocks, 4);
    r->seq_lens = ss_malloc(S * 4);
    r->bt_width = ss_calloc(S, 4);
    r->ids = ss_malloc(T * 4);
    r->prev_tokens = ss_malloc(R * 4);
    int pend_ok = 1;
    for (int i = 0; i < SS_DOWNLOAD_SLOTS; i++)
        pend_ok = (r->pend[i].buf = ss_malloc(ss_sampler_out_bytes((int32_t)R))) != NULL &&
                  (r->pend[i].row_k = ss_malloc(S * 4)) != NULL && pend_ok;
    if (!r->tok_seq || !r->tok_pos || !r->slots || !r->rows || !r->row_of_seq || !r->block_tables || !r->bt_width || !r->seq_lens ||
        !r->ids || !r->prev_tokens || !pend_ok) {
        st = ss_err_set(err, SS_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if (r->plan.last_stage) {
        /* sampled tokens then their log-probabilities, read back with one copy (every rank of the last
         * stage: tp > 1 greedy steps leave the tokens on each of them) */
        SS_CHECK_GOTO(r->be->iface->alloc(r->be->ctx, ss_sampler_out_bytes((int32_t)R), (void **)&r->dev_tok), st,
                      fail);
        ss_forward_set_fed(r->fwd, r->dev_tok); /* SS_TOKEN_PREV reads the previous step's samples there */
    }
    SS_CHECK_GOTO(ss_sampler_create(r->be, r->cfg.vocab_size, (int32_t)S, r->plan.last_stage, &r->smp, err), st, fail);
    SS_LOGI("rank %d (stage %d, tp rank %d, node-local device %d) on %s: layers %d..%d, %.1f MiB weights (%s "
            "projections), %.1f MiB KV cache (%s, %d blocks of %d)",
            p->rank, r->plan.stage, r->plan.tp_rank, r->be->device_index, r->be->desc, r->plan.layer_start, r->plan.layer_end - 1,
            r->w->bytes / 1048576.0,
            r->be->linear_type == SS_LINEAR_FP8 ? "fp8" : ss_dtype_name(r->be->weight_dtype),
            ss_forward_kv_bytes(r->fwd) / 1048576.0,
            r->be->kv_type == SS_KV_FP8 ? "fp8" : ss_dtype_name(r->be->act_dtype), r->fp.num_blocks, bs);
    *out = r;
    return SS_OK;
fail:
    ss_runner_destroy(r);
    return st;
}

void ss_runner_destroy(ss_runner *r)
{
    if (!r)
        return;
    ss_forward_destroy(r->fwd);
    ss_sampler_destroy(r->smp);
    if (r->be) {
        ss_weights_free(r->be, r->w);
        if (r->dev_tok)
            r->be->iface->free_buf(r->be->ctx, r->dev_tok);
        ss_backend_destroy(r->be);
    }
    ss_free(r->tok_seq);
    ss_free(r->tok_pos);
    ss_free(r->slots);
    ss_free(r->rows);
    ss_free(r->row_of_seq);
    ss_free(r->block_tables);
    ss_free(r->seq_lens);
    ss_free(r->bt_width);
    ss_free(r->ids);
    ss_free(r->prev_tokens);
    for (int i = 0; i < SS_DOWNLOAD_SLOTS; i++) {
        ss_free(r->pend[i].buf);
        ss_free(r->pend[i].row_k);
        ss_step_output_clear(&r->pend[i].out);
    }
    ss_sampled_seqs_free(&r->prev);
    ss_free(r);
}

ss_status ss_runner_set_links(ss_runner *r, const ss_runner_links *links, ss_err *err)
{
    r->links = *links;
    ss_forward_links fl = {links->tp, links->world, r->plan.first_stage ? -1 : r->p.rank - r->p.tp,
                           r->plan.last_stage ? -1 : r->p.rank + r->p.tp};
    return ss_forward_set_links(r->fwd, &fl, err);
}

ss_backend *ss_runner_backend(const ss_runner *r)
{
    return r->be;
}

const ss_model_config *ss_runner_config(const ss_runner *r)
{
    return &r->cfg;
}

int32_t ss_runner_num_kv_blocks(const ss_runner *r)
{
    return r->fp.num_blocks;
}

int32_t ss_runner_block_size(const ss_runner *r)
{
    return r->fp.block_size;
}

int32_t ss_runner_max_seq_len(const ss_runner *r)
{
    return r->p.max_seq_len;
}

ss_linear_type ss_runner_linear_type(const ss_runner *r)
{
    return r->be->linear_type;
}

int64_t ss_runner_max_batch_tokens(const ss_runner *r)
{
    return r->fp.max_tokens;
}

int32_t ss_runner_max_seqs(const ss_runner *r)
{
    return r->fp.max_seqs;
}

int ss_runner_is_output_rank(const ss_runner *r)
{
    return r->plan.last_stage && r->plan.tp_rank == 0;
}

const char *ss_runner_device_desc(const ss_runner *r)
{
    return r->be->desc;
}

static ss_status runner_validate(const ss_runner *r, const ss_step_plan *plan, ss_err *err)
{
    if (plan->n_seqs < 1 || plan->n_seqs > r->fp.max_seqs)
        return ss_err_set(err, SS_ERR_INVALID_ARG, "step plan: %d sequences (1..%d)", plan->n_seqs, r->fp.max_seqs);
    if (plan->n_tokens < 1 || plan->n_tokens > r->fp.max_tokens)
        return ss_err_set(err, SS_ERR_INVALID_ARG, "step plan: %lld tokens (1..%lld)", (long long)plan->n_tokens,
                          (long long)r->fp.max_tokens);
    int64_t total = 0;
    for (int32_t s = 0; s < plan->n_seqs; s++) {
        const ss_plan_seq *q = &plan->seqs[s];
        int64_t end = (int64_t)q->pos_start + q->n_tokens;
        if (q->n_tokens < 1 || q->pos_start < 0 || end > r->p.max_seq_len)
            return ss_err_set(err, SS_ERR_INVALID_ARG, "step plan: sequence %llu: positions %d..%lld outside 0..%d",
                              (unsigned long long)q->seq_id, q->pos_start, (long long)end - 1, r->p.max_seq_len - 1);
        if (q->n_blocks > r->fp.max_blocks || (int64_t)q->n_blocks * r->fp.block_size < end)
            return ss_err_set(err, SS_ERR_INVALID_ARG, "step plan: sequence %llu: %d blocks do not cover %lld positions",
                              (unsigned long long)q->seq_id, q->n_blocks, (long long)end);
        for (int32_t b = 0; b < q->n_blocks; b++)
            if (q->blocks[b] < 0 || q->blocks[b] >= r->fp.num_blocks)
                return ss_err_set(err, SS_ERR_INVALID_ARG, "step plan: sequence %llu: block id %d outside 0..%d",
                                  (unsigned long long)q->seq_id, q->blocks[b], r->fp.num_blocks - 1);
        if (q->sp.n_logprobs < 0 || q->sp.n_logprobs > SS_MAX_TOP_LOGPROBS)
            return ss_err_set(err, SS_ERR_INVALID_ARG, "step plan: n_logprobs %d outside 0..%d", q->sp.n_logprobs,
                              SS_MAX_TOP_LOGPROBS);
        if (q->n_allow != 0 && (q->n_allow != (r->cfg.vocab_size + 31) / 32 || !q->allow))
            return ss_err_set(err, SS_ERR_INVALID_ARG,
                              "step plan: sequence %llu: a JSON-mode mask of %d words for a vocabulary of %d",
                              (unsigned long long)q->seq_id, q->n_allow, r->cfg.vocab_size);
        total += q->n_tokens;
    }
    if (total != plan->n_tokens)
        return ss_err_set(err, SS_ERR_INVALID_ARG, "step plan: sequences hold %lld tokens, plan says %lld",
                          (long long)total, (long long)plan->n_tokens);
    if ((plan->flags & SS_PLAN_ALL_LOGITS) && plan->n_tokens > r->fp.max_rows)
        return ss_err_set(err, SS_ERR_INVALID_ARG, "step plan: all logits of %lld tokens exceed %d rows",
                          (long long)plan->n_tokens, r->fp.max_rows);
    for (int64_t i = 0; i < plan->n_tokens; i++)
        if (plan->tokens[i] != SS_TOKEN_PREV && (plan->tokens[i] < 0 || plan->tokens[i] >= r->cfg.vocab_size))
            return ss_err_set(err, SS_ERR_INVALID_ARG, "step plan: token id %d outside the vocabulary 0..%d",
                              plan->tokens[i], r->cfg.vocab_size - 1);
    return SS_OK;
}

/* One look at an async step's slot: *ready once its copy landed. A step on NCCL also has the communicator
 * checked (stopped, failed, or past its deadline: the error). */
static ss_status runner_poll(ss_runner *r, const runner_pending *pd, int slot, int *ready, ss_err *err)
{
    ss_status st = r->be->iface->download_ready(r->be->ctx, slot, ready);
    if (st != SS_OK)
        return ss_err_set(err, st, "waiting for a step on %s", r->be->desc);
#ifdef SS_HAVE_CUDA
    const int64_t now = ss_now_ms();
    if (!*ready && pd->comm_wait && now != r->comm_checked_ms) { /* at most once a millisecond */
        r->comm_checked_ms = now;
        return ss_comm_nccl_check(r->links.tp->size > 1 ? r->links.tp : r->links.world, pd->started_ms, err);
    }
#else
    (void)pd;
#endif
    return SS_OK;
}

/* Waits for an async step on NCCL: spins on its slot (a decode step's end is on the critical path) for up
 * to 50 ms, looking at the communicator every ~1 ms, then polls every 100 us. */
static ss_status runner_wait_comm(ss_runner *r, const runner_pending *pd, int slot, ss_err *err)
{
    const int64_t t0 = ss_now_ms();
    for (;;) {
        int ready = 0;
        SS_CHECK(runner_poll(r, pd, slot, &ready, err));
        if (ready)
            break;
        if (ss_now_ms() - t0 > 50)
            nanosleep(&(struct timespec){0, 100000}, NULL);
    }
#ifdef SS_HAVE_CUDA
    /* Done, but a stopped communicator means the step's exchanges may have read garbage: not a result.
     * (No deadline here: the step did finish.) */
    return ss_comm_nccl_check(r->links.tp->size > 1 ? r->links.tp : r->links.world, -1, err);
#else
    return SS_OK;
#endif
}

/* Makes the tokens of an async pending step known on the host: waits for its copy, then turns it into
 * a step output. */
static ss_status runner_settle(ss_runner *r, runner_pending *pd, int slot, ss_err *err)
{
    if (!pd->async)
        return SS_OK;
    if (pd->comm_wait)
        SS_CHECK(runner_wait_comm(r, pd, slot, err));
    ss_status st = r->be->iface->download_wait(r->be->ctx, slot);
    if (st != SS_OK)
        return ss_err_set(err, st, "reading the sampled tokens back from %s", r->be->desc);
    pd->async = 0;
    SS_CHECK(ss_sampler_unpack(pd->buf, pd->n, pd->n_top, pd->row_k, &pd->out, err));
    pd->out.vocab = r->cfg.vocab_size;
    return SS_OK;
}

/* Keeps the host copy of the last submitted step's tokens, from its output o. */
static void runner_know_prev(ss_runner *r, const ss_step_output *o)
{
    if (r->prev_known || o->n != r->prev.n || !o->token)
        return;
    memcpy(r->prev_tokens, o->token, (size_t)o->n * 4);
    r->prev_known = 1;
}

/* The forward pass's id of plan token tok of sequence q (SS_TOKEN_PREV resolved; see ss_runner_submit).
 * hint: the row to try first, advanced past the row found. */
static ss_status runner_token_id(ss_runner *r, const ss_plan_seq *q, int32_t tok, int32_t *hint, int32_t *id,
                                 ss_err *err)
{
    if (tok != SS_TOKEN_PREV) {
        *id = tok;
        return SS_OK;
    }
    int32_t row = ss_sampled_seqs_find(&r->prev, q->seq_id, *hint);
    *hint = row + 1; /* plans keep their sequences' order: the next one is most likely the next row */
    if (row < 0)
        return ss_err_set(err, SS_ERR_INVALID_ARG,
                          "step plan: sequence %llu asks for its token of the previous step, where it did not sample",
                          (unsigned long long)q->seq_id);
    if (r->prev_fed) {
        *id = -1 - row;
        return SS_OK;
    }
    if (!r->prev_known && r->n_pend == 0)
        return ss_err_set(err, SS_ERR_INVALID_ARG, "step plan: sequence %llu: the previous step's tokens are not on rank %d",
                          (unsigned long long)q->seq_id, r->p.rank);
    if (!r->prev_known) { /* the backend cannot feed: wait for the previous step's tokens */
        int32_t last = (r->pend_head + r->n_pend - 1) % SS_DOWNLOAD_SLOTS;
        SS_CHECK(runner_settle(r, &r->pend[last], last, err));
        runner_know_prev(r, &r->pend[last].out);
        if (!r->prev_known) /* a rank that does not sample gets no tokens back: never feed stale ones */
            return ss_err_set(err, SS_ERR_INTERNAL, "step plan: sequence %llu: the previous step's tokens are not on rank %d",
                              (unsigned long long)q->seq_id, r->p.rank);
    }
    *id = r->prev_tokens[row];
    return SS_OK;
}

/* Runs the plan up to its sampled tokens, into pending entry pd (slot). *recorded: set once r->prev
 * describes this step (a failure after that leaves nothing to feed from). */
static ss_status runner_run(ss_runner *r, const ss_step_plan *plan, runner_pending *pd, int slot, int *recorded,
                            ss_err *err)
{
    ss_step_output *out = &pd->out;
    SS_CHECK(runner_validate(r, plan, err));
    int all = (plan->flags & SS_PLAN_ALL_LOGITS) != 0;
    int32_t mb = r->fp.max_blocks, bs = r->fp.block_size, max_len = 0, n_rows = 0, hint = 0;
    int64_t t = 0;
    int32_t fs = -1; /* the forward pass's sequence: a run of entries that continue each other is one (drafts) */
    for (int32_t s = 0; s < plan->n_seqs; s++) {
        const ss_plan_seq *q = &plan->seqs[s];
        if (s == 0 || !ss_plan_seq_continues(&plan->seqs[s - 1], q))
            fs++;
        int32_t *row = r->block_tables + (size_t)fs * mb; /* a 128k context's row is 32 KB: touch what changes */
        memcpy(row, q->blocks, (size_t)q->n_blocks * 4);
        if (r->bt_width[fs] > q->n_blocks)
            memset(row + q->n_blocks, 0, (size_t)(r->bt_width[fs] - q->n_blocks) * 4);
        r->bt_width[fs] = q->n_blocks;
        r->seq_lens[fs] = q->pos_start + q->n_tokens;
        max_len = r->seq_lens[fs] > max_len ? r->seq_lens[fs] : max_len;
        for (int32_t i = 0; i < q->n_tokens; i++, t++) {
            int32_t pos = q->pos_start + i;
            if (plan->tokens[t] == SS_TOKEN_PREV)
                SS_CHECK(runner_token_id(r, q, SS_TOKEN_PREV, &hint, &r->ids[t], err));
            else
                r->ids[t] = plan->tokens[t];
            r->tok_seq[t] = fs;
            r->tok_pos[t] = pos;
            r->slots[t] = q->blocks[pos / bs] * bs + pos % bs;
            if (all)
                r->rows[n_rows++] = (int32_t)t;
        }
        r->row_of_seq[s] = all ? (int32_t)(t - 1) : n_rows;
        if (!all && q->sample)
            r->rows[n_rows++] = (int32_t)(t - 1);
    }
    /* From here on the plan's tokens are this step's: record its sampling sequences. */
    *recorded = 1;
    r->prev.n = 0;
    r->prev_fed = r->prev_fed_all = r->prev_known = 0;
    SS_CHECK(ss_sampled_seqs_record(&r->prev, plan, err));
    /* Greedy sampling without logprob lists, penalties, bans or logits: tp ranks reduce their
     * vocabulary shards instead of gathering whole rows. */
    int greedy_only = !all && !(plan->flags & SS_PLAN_LAST_LOGITS);
    for (int32_t s = 0; s < plan->n_seqs && greedy_only; s++)
        if (plan->seqs[s].sample && ss_sampler_needs_row(&plan->seqs[s]))
            greedy_only = 0;
    ss_forward_batch b = {plan->n_tokens, r->ids, r->tok_seq, r->tok_pos, r->slots, fs + 1,
                          r->block_tables, r->seq_lens, max_len, n_rows, r->rows, greedy_only};
    const float *logits = NULL;
    SS_CHECK(ss_forward_run(r->fwd, &b, &logits, err));
    const ss_backend_i *B = r->be->iface;
    /* Tokens chosen on the device and read back without waiting: the host may plan and submit the next
     * step while this one runs, and the next step's SS_TOKEN_PREV is fed where they are. With tp > 1 and
     * one stage every rank chooses them: greedy steps combine the vocabulary shards' results on each rank;
     * sampled steps run the same sampler over the same gathered logits with the same counter-based draws,
     * so each rank gets the same tokens. The output rank copies them back; the others only mark the step's
     * end. On NCCL, collect waits for that with the communicator's deadline. */
    const int out_rank = ss_runner_is_output_rank(r);
    int32_t n_dev = 0;
    if (r->dev_tok)
        SS_CHECK(ss_forward_greedy_device(r->fwd, r->dev_tok, (float *)(r->dev_tok + r->prev.n), &n_dev, err));
    if (n_dev > 0 && n_dev != r->prev.n)
        return ss_err_set(err, SS_ERR_INTERNAL, "rank %d: %d greedy rows for %d sampling sequences", r->p.rank, n_dev,
                          r->prev.n);
    int device = 0;
    size_t bytes = (size_t)n_dev * 8;
    pd->n_top = 0;
    if (!n_dev && logits && (out_rank || (r->plan.tp > 1 && r->p.pp == 1))) /* this rank samples: edits, path */
        SS_CHECK(ss_sampler_prepare(r->smp, plan, r->row_of_seq, &device, err));
    if (device && r->dev_tok && r->prev.n > 0) {
        SS_CHECK(ss_sampler_device(r->smp, plan, (float *)logits, r->dev_tok, out_rank, &bytes, &pd->n_top, err));
        ss_sampler_row_lists(plan, pd->row_k);
        n_dev = r->prev.n;
    }
    if (n_dev > 0) {
        ss_status st = B->download_async(r->be->ctx, pd->buf, r->dev_tok, out_rank ? bytes : 0, slot);
        if (st != SS_OK)
            return ss_err_set(err, st, "reading the sampled tokens back from %s", r->be->desc);
        pd->async = 1;
        pd->comm_wait = r->links.nccl;
        pd->started_ms = ss_now_ms();
        pd->n = out_rank ? n_dev : 0;
        r->prev_fed = ss_forward_feeds(r->fwd);
        r->prev_fed_all = r->prev_fed && r->p.pp == 1;
        return SS_OK;
    }
#ifdef SS_HAVE_CUDA
    /* NCCL only enqueues: wait for the step with a deadline so that a lost peer becomes an error. */
    if (r->links.nccl)
        SS_CHECK(ss_comm_nccl_wait(r->links.tp->size > 1 ? r->links.tp : r->links.world, 0, err));
#endif
    if (!ss_runner_is_output_rank(r))
        return SS_OK;
    if (logits) /* the device chooses every other step's tokens (above) */
        SS_CHECK(ss_sampler_host(r->smp, plan, r->row_of_seq, logits, n_rows, out, err));
    runner_know_prev(r, out);
    return SS_OK;
}

ss_status ss_runner_check_plan(ss_runner *r, const ss_step_plan *plan, ss_err *err)
{
    SS_CHECK(runner_validate(r, plan, err));
    int64_t t = 0;
    int32_t hint = 0;
    for (int32_t s = 0; s < plan->n_seqs; s++)
        for (int32_t i = 0; i < plan->seqs[s].n_tokens; i++, t++) {
            if (plan->tokens[t] != SS_TOKEN_PREV)
                continue;
            int32_t row = ss_sampled_seqs_find(&r->prev, plan->seqs[s].seq_id, hint);
            if (row < 0)
                return ss_err_set(err, SS_ERR_INVALID_ARG,
                                  "step plan: sequence %llu asks for its token of the previous step, where it did not sample",
                                  (unsigned long long)plan->seqs[s].seq_id);
            hint = row + 1;
        }
    return SS_OK;
}

int ss_runner_prev_fed_everywhere(const ss_runner *r)
{
    return r->prev_fed_all;
}

ss_status ss_runner_resolve_prev(ss_runner *r, const ss_step_plan *plan, int32_t *tokens, ss_err *err)
{
    int64_t t = 0;
    int32_t hint = 0;
    const int fed = r->prev_fed;
    r->prev_fed = 0; /* host ids, waiting for the previous step's tokens where needed */
    ss_status st = SS_OK;
    for (int32_t s = 0; s < plan->n_seqs && st == SS_OK; s++)
        for (int32_t i = 0; i < plan->seqs[s].n_tokens && st == SS_OK; i++, t++)
            st = runner_token_id(r, &plan->seqs[s], plan->tokens[t], &hint, &tokens[t], err);
    r->prev_fed = fed;
    return st;
}

ss_status ss_runner_ready(ss_runner *r, int *ready, ss_err *err)
{
    *ready = 1;
    if (r->n_pend == 0)
        return SS_OK;
    const runner_pending *pd = &r->pend[r->pend_head];
    if (!pd->async)
        return SS_OK;
    return runner_poll(r, pd, r->pend_head, ready, err);
}

ss_status ss_runner_submit(ss_runner *r, const ss_step_plan *plan, ss_err *err)
{
    if (r->n_pend == SS_DOWNLOAD_SLOTS)
        return ss_err_set(err, SS_ERR_INVALID_ARG, "step plan: %d steps are pending already (collect one first)",
                          r->n_pend);
    int slot = (r->pend_head + r->n_pend) % SS_DOWNLOAD_SLOTS;
    runner_pending *pd = &r->pend[slot];
    ss_step_output_clear(&pd->out);
    pd->async = pd->comm_wait = 0;
    pd->n = 0;
    int recorded = 0;
    ss_status st = runner_run(r, plan, pd, slot, &recorded, err);
    if (st != SS_OK) {
        ss_step_output_clear(&pd->out);
        pd->async = 0;
        if (recorded) { /* nothing may be fed from a step that failed; a refused plan changes nothing */
            r->prev.n = 0;
            r->prev_fed = r->prev_fed_all = r->prev_known = 0;
        }
        return st;
    }
    r->n_pend++;
    return SS_OK;
}

ss_status ss_runner_collect(ss_runner *r, ss_step_output *out, ss_err *err)
{
    memset(out, 0, sizeof *out);
    if (r->n_pend == 0)
        return ss_err_set(err, SS_ERR_INVALID_ARG, "no step is pending");
    int slot = r->pend_head;
    runner_pending *pd = &r->pend[slot];
    ss_status st = runner_settle(r, pd, slot, err);
    r->pend_head = (r->pend_head + 1) % SS_DOWNLOAD_SLOTS;
    r->n_pend--;
    if (st != SS_OK)
        return st;
    if (r->n_pend == 0) /* it was the last step submitted */
        runner_know_prev(r, &pd->out);
    *out = pd->out; /* ownership moves to the caller */
    memset(&pd->out, 0, sizeof pd->out);
    return SS_OK;
}

int ss_runner_pending(const ss_runner *r)
{
    return r->n_pend;
}

int ss_runner_async(const ss_runner *r)
{
    return r->be->iface->native_stream(r->be->ctx) != NULL;
}

ss_status ss_runner_step(ss_runner *r, const ss_step_plan *plan, ss_step_output *out, ss_err *err)
{
    memset(out, 0, sizeof *out);
    SS_CHECK(ss_runner_submit(r, plan, err));
    return ss_runner_collect(r, out, err);
}
