/* build.c — writing an engine: every rank's slices of every tensor, streamed from the mapped
 * checkpoint into one safetensors file per rank through bounded buffers, with dtype conversion (an fp8
 * checkpoint's weights with a scale for each row kept as codes plus their rows' scales).
 * Threads own disjoint sets of ranks and walk the tensors in file order; each drops the source pages
 * it has read every 32 MiB, so resident memory stays bounded whatever the model size. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/log.h"
#include "engine/cache.h"
#include "engine/digest.h"
#include "engine/engine.h"
#include "core/progress.h"
#include "engine/st_writer.h"
#include "model/config.h"
#include "model/fp8_weights.h"
#include "model/safetensors.h"
#include "model/shard_plan.h"
#include "model/weights.h"

/* One source tensor, in read order. */
typedef struct bld_src {
    const ss_st_tensor *t;
    /* fp8 (F8_E4M3) weights: their scale. With one scale for each row (one for the tensor, one a row, blocks as wide
     * as a row: keep) the engine holds the codes as they are and "<name>_scale" (owned), their rows' f32 scales, so
     * the loader copies them straight in; narrower blocks are written dequantised, in the engine's dtype. */
    ss_fp8_scale sc;
    int keep;
    char *scale_name;
} bld_src;

/* One tensor of one rank file. */
typedef struct bld_item {
    size_t src;      /* index into the source list */
    ss_slice slice;
    ss_dtype dd;     /* written as */
    int scale;       /* 1: the f32 row scales of the source's kept fp8 weight ([rows of the slice, 1]) */
} bld_item;

typedef struct bld_rank {
    ss_shard_plan plan;
    bld_item *items;
    ss_st_entry *entries;
    size_t n;
    char path[SS_CACHE_PATH_MAX];
    int64_t size;
    char digest[SS_SHA256_HEX];
    char quick[SS_QUICK_DIGEST_LEN];
} bld_rank;

typedef struct bld_ctx {
    const ss_engine_build_params *bp;
    const ss_model_config *cfg;
    bld_src *srcs;
    size_t n_srcs;
    bld_rank *ranks;
    int n_ranks, n_threads;
    ss_progress *prog;
    long page;
    _Atomic int failed;
} bld_ctx;

typedef struct bld_thread {
    bld_ctx *c;
    int index;
    pthread_t th;
    ss_status st;
    ss_err err;
} bld_thread;

/* Slice the rank holds of source tensor t, with the tied-embedding mapping (DESIGN.md §4): with tied
 * embeddings the last stage's lm_head is model.embed_tokens.weight sliced like lm_head.weight, kept
 * under its own name so a loader finds it exactly as in the checkpoint. */
static ss_slice bld_slice(const ss_shard_plan *plan, const ss_model_config *cfg, const char *name)
{
    ss_slice s = ss_shard_slice_for(plan, cfg, name);
    if (s.kind == SS_SLICE_SKIP && cfg->tie_embeddings && !strcmp(name, "model.embed_tokens.weight"))
        s = ss_shard_slice_for(plan, cfg, "lm_head.weight");
    return s;
}

static ss_status bld_plan_rank(bld_ctx *c, int rank, ss_err *err)
{
    bld_rank *r = &c->ranks[rank];
    SS_CHECK(ss_shard_plan_make(c->cfg, c->bp->tp, c->bp->pp, rank, &r->plan, err));
    r->items = ss_calloc(c->n_srcs ? 2 * c->n_srcs : 1, sizeof *r->items); /* (a kept fp8 weight adds its scales) */
    r->entries = ss_calloc(c->n_srcs ? 2 * c->n_srcs : 1, sizeof *r->entries);
    if (!r->items || !r->entries)
        return ss_err_set(err, SS_ERR_NOMEM, "out of memory planning rank %d", rank);
    for (size_t i = 0; i < c->n_srcs; i++) {
        const ss_st_tensor *t = c->srcs[i].t;
        ss_slice s = bld_slice(&r->plan, c->cfg, t->name);
        if (s.kind == SS_SLICE_SKIP)
            continue;
        ss_st_entry *e = &r->entries[r->n];
        e->name = t->name;
        e->dtype = c->srcs[i].keep ? SS_DTYPE_E4M3 : c->bp->dtype;
        e->ndim = t->ndim;
        memcpy(e->shape, t->shape, sizeof e->shape);
        if (s.kind == SS_SLICE_ROWS) {
            if (t->ndim < 1 || s.start < 0 || s.len < 0 || s.start + s.len > t->shape[0])
                return ss_err_set(err, SS_ERR_FORMAT, "%s: shape does not fit rows [%" PRId64 ", %" PRId64 ") of rank %d",
                                  t->name, s.start, s.start + s.len, rank);
            e->shape[0] = s.len;
        } else if (s.kind == SS_SLICE_COLS) {
            if (t->ndim != 2 || s.start < 0 || s.len < 0 || s.start + s.len > t->shape[1])
                return ss_err_set(err, SS_ERR_FORMAT, "%s: shape does not fit columns [%" PRId64 ", %" PRId64 ") of rank %d",
                                  t->name, s.start, s.start + s.len, rank);
            e->shape[1] = s.len;
        }
        r->items[r->n].src = i;
        r->items[r->n].slice = s;
        r->items[r->n].dd = e->dtype;
        r->n++;
        if (c->srcs[i].keep) { /* then its rows' scales */
            ss_st_entry *se = &r->entries[r->n];
            se->name = c->srcs[i].scale_name;
            se->dtype = SS_DTYPE_F32;
            se->ndim = 2;
            se->shape[0] = e->shape[0];
            se->shape[1] = 1;
            r->items[r->n] = (bld_item){i, s, SS_DTYPE_F32, 1};
            r->n++;
        }
    }
    if (!r->n)
        return ss_err_set(err, SS_ERR_FORMAT, "%s: rank %d would hold no tensor (is this a supported checkpoint?)",
                          c->bp->src_dir, rank);
    return SS_OK;
}

/* Streams elements [off, off + n) of source s (row-major) into the writer as type dd (fp8 weights dequantised). */
static ss_status bld_emit(ss_st_writer *w, const bld_src *s, int64_t off, ss_dtype dd, int64_t n, ss_err *err)
{
    const ss_dtype sd = s->t->dtype;
    size_t ss = ss_dtype_size(sd), ds = ss_dtype_size(dd);
    const uint8_t *src = (const uint8_t *)s->t->data + (size_t)off * ss;
    float tmp[2048];
    while (n > 0) {
        void *dst = NULL;
        size_t got = 0;
        size_t want = (size_t)n * ds;
        SS_CHECK(ss_st_writer_reserve(w, want, &dst, &got, err));
        size_t k = got / ds;
        if (!k)
            return ss_err_set(err, SS_ERR_INTERNAL, "writer buffer too small");
        if (sd == dd) {
            memcpy(dst, src, k * ss);
        } else {
            for (size_t done = 0; done < k;) {
                size_t m = k - done < 2048 ? k - done : 2048;
                if (sd == SS_DTYPE_E4M3)
                    ss_fp8_dequant(s->t, &s->sc, off + (int64_t)done, (int64_t)m, tmp);
                else
                    ss_convert_to_f32(tmp, src + done * ss, sd, m);
                ss_convert_from_f32((uint8_t *)dst + done * ds, dd, tmp, m);
                done += m;
            }
        }
        SS_CHECK(ss_st_writer_commit(w, k * ds, err));
        src += k * ss;
        off += (int64_t)k;
        n -= (int64_t)k;
    }
    return SS_OK;
}

/* Drops whole pages of [a, e) from this process's mapping (they stay in the page cache, and a
 * later touch maps them again), so resident memory stays bounded on models larger than RAM. */
static void bld_drop(const bld_ctx *c, const uint8_t *a, const uint8_t *e)
{
    uintptr_t pg = (uintptr_t)c->page;
    uintptr_t pa = ((uintptr_t)a + pg - 1) & ~(pg - 1), pe = (uintptr_t)e & ~(pg - 1);
    if (pe > pa)
        (void)madvise((void *)pa, pe - pa, MADV_DONTNEED);
}

#define BLD_BLOCK_BYTES (32u << 20) /* source bytes processed between page drops */

/* The f32 scales of rows [r0, r1) of kept fp8 weight s. */
static ss_status bld_row_scales(bld_ctx *c, ss_st_writer *w, const bld_src *s, int64_t r0, int64_t r1, ss_err *err)
{
    float buf[1024];
    for (int64_t r = r0; r < r1;) {
        int k = 0;
        for (; k < 1024 && r < r1; k++, r++)
            buf[k] = ss_fp8_scale_at(&s->sc, r, 0);
        SS_CHECK(ss_st_writer_append(w, buf, (size_t)k * sizeof(float), err));
        ss_progress_add(c->prog, (int64_t)k * (int64_t)sizeof(float));
    }
    return SS_OK;
}

static ss_status bld_tensor(bld_ctx *c, ss_st_writer *w, const bld_item *it, ss_err *err)
{
    const ss_st_tensor *t = c->srcs[it->src].t;
    if (it->scale)
        return bld_row_scales(c, w, &c->srcs[it->src], it->slice.kind == SS_SLICE_ROWS ? it->slice.start : 0,
                              it->slice.kind == SS_SLICE_ROWS ? it->slice.start + it->slice.len : t->shape[0], err);
    const uint8_t *base = t->data;
    size_t es = ss_dtype_size(t->dtype);
    ss_dtype dd = it->dd;
    int64_t rows = t->ndim ? t->shape[0] : 1, row = 1;
    for (int32_t d = 1; d < t->ndim; d++)
        row *= t->shape[d];
    int64_t r0 = 0, r1 = rows, col0 = 0, ncols = row;
    if (it->slice.kind == SS_SLICE_ROWS) {
        r0 = it->slice.start;
        r1 = it->slice.start + it->slice.len;
    } else if (it->slice.kind == SS_SLICE_COLS) {
        col0 = it->slice.start;
        ncols = it->slice.len;
    }
    if (t->ndim == 1 && it->slice.kind == SS_SLICE_FULL) { /* a vector: blocks of elements */
        row = 1;
        ncols = 1;
    }
    int64_t per_block = (int64_t)BLD_BLOCK_BYTES / (row * (int64_t)es);
    if (per_block < 1)
        per_block = 1;
    for (int64_t b = r0; b < r1; b += per_block) {
        int64_t be = b + per_block < r1 ? b + per_block : r1;
        if (ncols == row) { /* whole rows: one contiguous run */
            SS_CHECK(bld_emit(w, &c->srcs[it->src], b * row, dd, (be - b) * row, err));
        } else {
            for (int64_t r = b; r < be; r++)
                SS_CHECK(bld_emit(w, &c->srcs[it->src], r * row + col0, dd, ncols, err));
        }
        ss_progress_add(c->prog, (be - b) * ncols * (int64_t)ss_dtype_size(dd));
        bld_drop(c, base + (size_t)(b * row) * es, base + (size_t)(be * row) * es);
    }
    return SS_OK;
}

static void *bld_thread_main(void *arg)
{
    bld_thread *th = arg;
    bld_ctx *c = th->c;
    const ss_engine_build_params *bp = c->bp;
    ss_st_writer_params wp = ss_st_writer_default_params();
    wp.throttle_bps = bp->throttle_bps;
    /* This thread's ranks: index, index + n_threads, ... */
    int mine = 0;
    for (int r = th->index; r < c->n_ranks; r += c->n_threads)
        mine++;
    ss_st_writer **ws = ss_calloc((size_t)(mine ? mine : 1), sizeof *ws);
    size_t *next = ss_calloc((size_t)(mine ? mine : 1), sizeof *next);
    ss_status st = (ws && next) ? SS_OK : ss_err_set(&th->err, SS_ERR_NOMEM, "out of memory");
    for (int k = 0; st == SS_OK && k < mine; k++) {
        bld_rank *r = &c->ranks[th->index + k * c->n_threads];
        char tp[16], pp[16], rk[16], stg[16], ls[16], le[16];
        snprintf(tp, sizeof tp, "%d", bp->tp);
        snprintf(pp, sizeof pp, "%d", bp->pp);
        snprintf(rk, sizeof rk, "%d", r->plan.rank);
        snprintf(stg, sizeof stg, "%d", r->plan.stage);
        snprintf(ls, sizeof ls, "%d", (int)r->plan.layer_start);
        snprintf(le, sizeof le, "%d", (int)r->plan.layer_end);
        ss_st_kv meta[] = {{"format", "pt"},         {"shardserve_engine", "1"}, {"tp", tp},
                           {"pp", pp},               {"rank", rk},               {"stage", stg},
                           {"layer_start", ls},      {"layer_end", le},          {"dtype", ss_engine_dtype_name(bp->dtype)}};
        st = ss_st_writer_create(r->path, r->entries, r->n, meta, sizeof meta / sizeof meta[0], &wp, &ws[k], &th->err);
    }
    /* Walk the sources in read order; each rank writes its items in the same order. */
    for (size_t i = 0; i < c->n_srcs; i++) {
        for (int k = 0; st == SS_OK && k < mine; k++) {
            bld_rank *r = &c->ranks[th->index + k * c->n_threads];
            while (st == SS_OK && next[k] < r->n && r->items[next[k]].src == i) { /* (a kept fp8 weight: 2 items) */
                st = bld_tensor(c, ws[k], &r->items[next[k]], &th->err);
                next[k]++;
            }
        }
        if (st == SS_OK && atomic_load(&c->failed))
            st = ss_err_set(&th->err, SS_ERR_CANCELLED, "cancelled");
    }
    for (int k = 0; st == SS_OK && k < mine; k++) {
        bld_rank *r = &c->ranks[th->index + k * c->n_threads];
        st = ss_st_writer_finish(ws[k], r->digest, &r->size, &th->err);
        ss_st_writer_quick_digest(ws[k], r->quick);
    }
    for (int k = 0; ws && k < mine; k++)
        ss_st_writer_destroy(ws[k]);
    ss_free(ws);
    ss_free(next);
    if (st != SS_OK)
        atomic_store(&c->failed, 1);
    th->st = st;
    return NULL;
}

static const char *const bld_extra_names[] = {"config.json",           "generation_config.json", "tokenizer.json",
                                              "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model"};

ss_status ss_engine_build(const ss_engine_build_params *bp, ss_err *err)
{
    ss_model_config cfg;
    SS_CHECK(ss_config_load_dir(bp->src_dir, &cfg, err));
    SS_CHECK(ss_shard_check(&cfg, bp->tp, bp->pp, err));
    ss_checkpoint *ck = NULL;
    SS_CHECK(ss_checkpoint_open(bp->src_dir, &ck, err));
    ss_status st = SS_OK;
    bld_ctx c;
    memset(&c, 0, sizeof c);
    c.bp = bp;
    c.cfg = &cfg;
    c.page = sysconf(_SC_PAGESIZE) > 0 ? sysconf(_SC_PAGESIZE) : 4096;
    c.n_ranks = bp->tp * bp->pp;
    ss_manifest man;
    memset(&man, 0, sizeof man);
    bld_thread *ths = NULL;
    size_t total_src = 0;
    for (size_t f = 0; f < ss_checkpoint_file_count(ck); f++)
        total_src += ss_st_count(ss_checkpoint_file(ck, f));
    c.srcs = ss_calloc(total_src ? total_src : 1, sizeof *c.srcs);
    c.ranks = ss_calloc((size_t)c.n_ranks, sizeof *c.ranks);
    man.ranks = ss_calloc((size_t)c.n_ranks, sizeof *man.ranks);
    man.extras = ss_calloc(sizeof bld_extra_names / sizeof bld_extra_names[0], sizeof *man.extras);
    if (!c.srcs || !c.ranks || !man.ranks || !man.extras) {
        st = ss_err_set(err, SS_ERR_NOMEM, "out of memory");
        goto out;
    }
    /* Sources in file order, each file's tensors by offset (the order their bytes lie on disk). */
    for (size_t f = 0; f < ss_checkpoint_file_count(ck); f++) {
        const ss_st_file *sf = ss_checkpoint_file(ck, f);
        size_t first = c.n_srcs;
        for (size_t i = 0; i < ss_st_count(sf); i++)
            c.srcs[c.n_srcs++].t = ss_st_at(sf, i);
        for (size_t i = first + 1; i < c.n_srcs; i++) /* insertion sort by offset: headers are near-sorted */
            for (size_t j = i; j > first && c.srcs[j - 1].t->offset > c.srcs[j].t->offset; j--) {
                const ss_st_tensor *tmp = c.srcs[j].t;
                c.srcs[j].t = c.srcs[j - 1].t;
                c.srcs[j - 1].t = tmp;
            }
    }
    for (size_t i = 0; i < c.n_srcs; i++) { /* fp8 weights: each needs its scale (found before anything is written) */
        if (c.srcs[i].t->dtype != SS_DTYPE_E4M3)
            continue;
        SS_CHECK_GOTO(ss_fp8_scale_find(ck, c.srcs[i].t, cfg.fp8_block_rows, cfg.fp8_block_cols, &c.srcs[i].sc, err),
                      st, out);
        if (c.srcs[i].sc.grid_cols == 1) {
            const size_t n = strlen(c.srcs[i].t->name) + sizeof "_scale";
            if (!(c.srcs[i].scale_name = ss_malloc(n))) {
                st = ss_err_set(err, SS_ERR_NOMEM, "out of memory");
                goto out;
            }
            snprintf(c.srcs[i].scale_name, n, "%s_scale", c.srcs[i].t->name);
            c.srcs[i].keep = 1;
        }
    }
    int64_t total_out = 0;
    for (int r = 0; r < c.n_ranks; r++) {
        SS_CHECK_GOTO(bld_plan_rank(&c, r, err), st, out);
        /* every tensor the rank's load takes, of the config's shape: an engine never holds what the checkpoint
         * loaded directly would refuse (a wrong size was cut to the config's, a missing tensor went unnoticed) */
        SS_CHECK_GOTO(ss_weights_check(&cfg, &c.ranks[r].plan, ck, 0, err), st, out);
        SS_CHECK_GOTO(ss_engine_rank_path(bp->out_dir, r, c.ranks[r].path, sizeof c.ranks[r].path, err), st, out);
        for (size_t i = 0; i < c.ranks[r].n; i++)
            total_out += (int64_t)ss_st_entry_nbytes(&c.ranks[r].entries[i]);
    }
    c.n_threads = bp->threads > 0 ? bp->threads : (c.n_ranks < 4 ? c.n_ranks : 4);
    if (c.n_threads > c.n_ranks)
        c.n_threads = c.n_ranks;
    SS_CHECK_GOTO(ss_progress_create("build", total_out, bp->tty, bp->quiet, &c.prog, err), st, out);
    if (c.n_threads < 1) {
        st = ss_err_set(err, SS_ERR_INTERNAL, "engine build: no ranks to write");
        goto out;
    }
    ths = ss_calloc((size_t)c.n_threads, sizeof *ths);
    if (!ths) {
        st = ss_err_set(err, SS_ERR_NOMEM, "out of memory");
        goto out;
    }
    int started = 0;
    for (int t = 0; t < c.n_threads; t++) {
        ths[t].c = &c;
        ths[t].index = t;
        if (t == 0)
            continue; /* thread 0's share runs on this thread */
        if (pthread_create(&ths[t].th, NULL, bld_thread_main, &ths[t]) != 0) {
            atomic_store(&c.failed, 1);
            st = ss_err_set(err, SS_ERR_NOMEM, "cannot start builder thread %d", t);
            break;
        }
        started = t;
    }
    if (st == SS_OK)
        bld_thread_main(&ths[0]);
    for (int t = 1; t <= started; t++)
        pthread_join(ths[t].th, NULL);
    for (int t = 0; st == SS_OK && t < c.n_threads; t++)
        if (ths[t].st != SS_OK && ths[t].st != SS_ERR_CANCELLED) {
            st = ths[t].st;
            if (err)
                *err = ths[t].err;
        }
    for (int t = 0; st == SS_OK && t < c.n_threads; t++)
        if (ths[t].st != SS_OK) {
            st = ths[t].st;
            if (err)
                *err = ths[t].err;
        }
    if (st != SS_OK)
        goto out;
    ss_progress_finish(c.prog);
    /* Config and tokenizer files ride along so the engine folder is self-sufficient. */
    for (size_t i = 0; i < sizeof bld_extra_names / sizeof bld_extra_names[0]; i++) {
        char src[SS_CACHE_PATH_MAX], dst[SS_CACHE_PATH_MAX];
        snprintf(src, sizeof src, "%s/%s", bp->src_dir, bld_extra_names[i]);
        snprintf(dst, sizeof dst, "%s/%s", bp->out_dir, bld_extra_names[i]);
        if (access(src, R_OK) != 0)
            continue;
        ss_manifest_file *e = &man.extras[man.n_extras];
        SS_CHECK_GOTO(ss_cache_copy_file(src, dst, &e->size, err), st, out);
        e->name = (char *)bld_extra_names[i];
        man.n_extras++;
        /* digested as the rank files are: a config or tokenizer edited in the engine is caught by the full check */
        char hex[SS_SHA256_HEX];
        SS_CHECK_GOTO(ss_sha256_file(dst, hex, err), st, out);
        if (!(e->digest = ss_malloc(8 + SS_SHA256_HEX))) {
            st = ss_err_set(err, SS_ERR_NOMEM, "out of memory");
            goto out;
        }
        snprintf(e->digest, 8 + SS_SHA256_HEX, "sha256:%s", hex);
    }
    man.format_version = SS_MANIFEST_VERSION;
    man.tool_version = (char *)SS_VERSION;
    man.source_id = (char *)bp->source_id;
    man.source_revision = (char *)bp->source_revision;
    man.source_files = (ss_manifest_file *)bp->source_files;
    man.n_source_files = bp->n_source_files;
    snprintf(man.model.arch, sizeof man.model.arch, "%s", cfg.arch_name);
    man.model.vocab_size = cfg.vocab_size;
    man.model.hidden_size = cfg.hidden_size;
    man.model.intermediate_size = cfg.intermediate_size;
    man.model.n_layers = cfg.n_layers;
    man.model.n_heads = cfg.n_heads;
    man.model.n_kv_heads = cfg.n_kv_heads;
    man.model.head_dim = cfg.head_dim;
    man.model.tie_embeddings = cfg.tie_embeddings;
    man.tp = bp->tp;
    man.pp = bp->pp;
    man.dtype = bp->dtype;
    man.n_ranks = (size_t)c.n_ranks;
    for (int r = 0; r < c.n_ranks; r++) {
        const char *slash = strrchr(c.ranks[r].path, '/');
        man.ranks[r].name = (char *)(slash ? slash + 1 : c.ranks[r].path);
        man.ranks[r].size = c.ranks[r].size;
        man.ranks[r].digest = ss_malloc(8 + SS_SHA256_HEX);
        if (!man.ranks[r].digest) {
            st = ss_err_set(err, SS_ERR_NOMEM, "out of memory");
            goto out;
        }
        snprintf(man.ranks[r].digest, 8 + SS_SHA256_HEX, "sha256:%s", c.ranks[r].digest);
        man.ranks[r].quick_digest = c.ranks[r].quick; /* (borrowed: not freed below) */
    }
    SS_CHECK_GOTO(ss_manifest_save(&man, bp->out_dir, err), st, out);
    st = ss_cache_fsync_dir(bp->out_dir, err);
out:
    for (int r = 0; man.ranks && r < c.n_ranks; r++)
        ss_free(man.ranks[r].digest);
    ss_free(man.ranks);
    for (size_t i = 0; man.extras && i < man.n_extras; i++)
        ss_free(man.extras[i].digest);
    ss_free(man.extras);
    for (int r = 0; c.ranks && r < c.n_ranks; r++) {
        ss_free(c.ranks[r].items);
        ss_free(c.ranks[r].entries);
    }
    ss_free(c.ranks);
    ss_free(ths);
    for (size_t i = 0; c.srcs && i < c.n_srcs; i++)
        ss_free(c.srcs[i].scale_name);
    ss_free(c.srcs);
    ss_progress_destroy(c.prog);
    ss_checkpoint_close(ck);
    return st;
}
