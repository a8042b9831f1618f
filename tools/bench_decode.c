/* bench_decode.c — measures a replica directly (no HTTP): load time, prefill throughput and decode
 * throughput at a given batch, on any device and tp × pp. A benchmark, not a test: prints numbers.
 * usage: bench_decode --model DIR [--device cuda] [--tp T --pp P] [--batch B] [--prompt P] [--gen N] [--json]
 *        [--kv-cache-dtype auto|fp8] [--quantization none|fp8]
 *        [--no-overlap: collect each decode step before submitting the next, as before the scheduler overlapped]
 *        [--drafts K: each decode step verifies K draft tokens a sequence, as speculative decoding's steps do (one
 *         plan entry each, after the sequence's token; none confirmed: the step's cost, not speculation's gain)]
 *        [--verbose: info-level log lines on stderr] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/opts.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/net.h"
#include "runner/replica.h"
#include "tool_replica.h"

extern char **environ;

static int bd_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    const char *model = NULL;
    tool_replica_opts ro = TOOL_REPLICA_DEFAULTS;
    int64_t batch = 1, prompt = 128, gen = 256, chunk = 2048, json = 0, seqlen = 0, no_graphs = 0,
            no_overlap = 0, verbose = 0, drafts = 0;
    ss_opt opts[] = {
        {"model", SS_OPT_STR, &model, "checkpoint or engine folder"},
        TOOL_REPLICA_OPTIONS(ro),
        {"batch", SS_OPT_INT, &batch, "sequences decoded together"},
        {"prompt", SS_OPT_INT, &prompt, "prompt tokens per sequence"},
        {"gen", SS_OPT_INT, &gen, "generated tokens per sequence"},
        {"chunk", SS_OPT_INT, &chunk, "prefill tokens per step"},
        {"max-seq-len", SS_OPT_INT, &seqlen, "context cap (default prompt + gen)"},
        {"json", SS_OPT_BOOL, &json, "print one JSON line"},
        {"no-graphs", SS_OPT_BOOL, &no_graphs, "run decode steps op by op (no CUDA graphs)"},
        {"no-overlap", SS_OPT_BOOL, &no_overlap, "wait for each decode step's tokens before submitting the next"},
        {"verbose", SS_OPT_BOOL, &verbose, "info-level log lines on stderr"},
        {"drafts", SS_OPT_INT, &drafts, "draft tokens each decode step verifies a sequence (speculative decoding)"},
        {NULL, 0, NULL, NULL},
    };
    ss_err e = {{0}};
    ss_replica_params p;
    ss_status st = ss_opts_parse(opts, argc, argv, 1, environ, "bench_decode", &e);
    if (st == SS_OK && model)
        st = tool_replica_params(&ro, model, &p, &e);
    if (st != SS_OK || !model || drafts < 0 || drafts > 64) {
        fprintf(stderr, "bench_decode: %s\n", st != SS_OK ? e.msg : !model ? "--model is required" : "--drafts: 0..64");
        return 2;
    }
    const int64_t per = 1 + drafts, entries = batch * per; /* plan entries of a decode step */
    ss_log_init(verbose ? SS_LOG_INFO : SS_LOG_WARN, "");
    int32_t bs = 16;
    int64_t len = seqlen > 0 ? seqlen : prompt + gen + 1 + drafts;
    int32_t nb = (int32_t)((len + bs - 1) / bs);
    p.max_seq_len = (int32_t)(nb * bs);
    p.num_kv_blocks = (int32_t)(nb * batch);
    p.max_batch_tokens = chunk > entries ? chunk : entries;
    p.max_seqs = (int32_t)entries;
    p.no_graphs = (int)no_graphs;
    double t0 = ss_now_s();
    ss_replica *r = NULL;
    if ((st = ss_replica_create(&p, &r, &e)) != SS_OK) {
        fprintf(stderr, "bench_decode: %s\n", e.msg);
        return 3;
    }
    double t_load = ss_now_s() - t0;
    int32_t V = ss_replica_config(r)->vocab_size;
    ss_plan_seq *q = ss_calloc((size_t)entries, sizeof *q);
    int32_t *blocks = ss_malloc((size_t)batch * nb * sizeof *blocks);
    int32_t *toks = ss_malloc((size_t)(chunk > entries ? chunk : entries) * sizeof *toks);
    uint64_t rng = 12345;
    for (int64_t s = 0; s < batch; s++) {
        q[s].seq_id = (uint64_t)s;
        q[s].blocks = blocks + s * nb;
        q[s].n_blocks = nb;
        q[s].sp = ss_sampling_default();
        for (int32_t b = 0; b < nb; b++)
            q[s].blocks[b] = (int32_t)(s * nb + b);
    }
    /* Prefill sequence 0 once untimed (its time, first-use costs included, is reported as the cold
     * prefill), then every sequence (one at a time, in chunks), timed: the warm prefill rate. */
    double t_pre = 0, t_cold = 0;
    int32_t *last = ss_malloc((size_t)batch * sizeof *last);
    uint64_t step = 0;
    for (int64_t pass = 0; pass < 2; pass++) {
        for (int64_t s = 0; s < (pass == 0 ? 1 : batch); s++) {
            for (int64_t pos = 0; pos < prompt; pos += chunk) {
                int32_t n = (int32_t)(prompt - pos < chunk ? prompt - pos : chunk);
                for (int32_t i = 0; i < n; i++) {
                    rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
                    toks[i] = (int32_t)((rng >> 33) % (uint64_t)V);
                }
                q[s].pos_start = (int32_t)pos;
                q[s].n_tokens = n;
                q[s].sample = pos + n >= prompt;
                ss_step_plan plan = {step++, 0, 1, &q[s], n, toks};
                ss_step_output out;
                double a = ss_now_s();
                if ((st = ss_replica_step(r, &plan, &out, &e)) != SS_OK) {
                    fprintf(stderr, "bench_decode: prefill: %s\n", e.msg);
                    return 1;
                }
                *(pass == 0 ? &t_cold : &t_pre) += ss_now_s() - a;
                if (q[s].sample)
                    last[s] = out.token[0];
                ss_step_output_clear(&out);
            }
        }
    }
    /* Decode all sequences together. With overlap (the scheduler's way), step g+1 is submitted with
     * SS_TOKEN_PREV before step g is collected, so the host's turnaround hides behind the device. */
    double a = ss_now_s(), first_step = 0, prev_t = a;
    double *step_s = ss_malloc((size_t)(gen > 0 ? gen : 1) * sizeof *step_s);
    uint64_t tok_hash = 1469598103934665603ULL; /* FNV-1a over the generated tokens: same in both modes */
    ss_plan_seq *dq = drafts ? ss_calloc((size_t)entries, sizeof *dq) : q; /* with drafts: per entries a sequence */
    for (int64_t s = 0; drafts && s < batch; s++)
        for (int64_t j = 0; j < per; j++)
            dq[s * per + j] = q[s];
    for (int64_t g = 0; g < gen; g++) {
        for (int64_t sub = g == 0 || no_overlap ? g : g + 1; sub <= g + (no_overlap ? 0 : 1) && sub < gen; sub++) {
            for (int64_t s = 0; s < batch; s++)
                for (int64_t j = 0; j < per; j++) { /* the sequence's token, then its drafts (its last token again) */
                    ss_plan_seq *en = &dq[s * per + j];
                    en->pos_start = (int32_t)(prompt + sub + j);
                    en->n_tokens = 1;
                    en->sample = 1;
                    toks[s * per + j] = j == 0 && sub != g ? SS_TOKEN_PREV : last[s];
                }
            ss_step_plan plan = {step++, 0, (int32_t)entries, dq, entries, toks};
            if ((st = ss_replica_submit(r, &plan, &e)) != SS_OK) {
                fprintf(stderr, "bench_decode: decode: %s\n", e.msg);
                return 1;
            }
        }
        ss_step_output out;
        if ((st = ss_replica_collect(r, &out, &e)) != SS_OK || out.n != entries) {
            fprintf(stderr, "bench_decode: decode: %s\n", st != SS_OK ? e.msg : "wrong number of tokens");
            return 1;
        }
        double now = ss_now_s();
        step_s[g] = now - prev_t;
        prev_t = now;
        if (g == 0)
            first_step = step_s[g];
        for (int64_t s = 0; s < batch; s++) { /* the sequence's own sample (its drafts are never confirmed) */
            last[s] = out.token[s * per];
            tok_hash = (tok_hash ^ (uint32_t)last[s]) * 1099511628211ULL;
        }
        ss_step_output_clear(&out);
    }
    double t_dec = ss_now_s() - a;
    double dec_tps = batch * gen / t_dec, pre_tps = batch * prompt / t_pre;
    /* without the first step, which captures the step's graph (a one-time cost a server pays at warm-up) */
    double warm_tps = gen > 1 && t_dec > first_step ? batch * (gen - 1) / (t_dec - first_step) : 0;
    /* the median step leaves out one-off costs (first-use graph captures) */
    qsort(step_s, (size_t)gen, sizeof *step_s, bd_cmp_double);
    double med = gen > 0 ? step_s[gen / 2] : 0;
    ss_free(step_s);
    if (json)
        printf("{\"model\":\"%s\",\"tp\":%lld,\"pp\":%lld,\"batch\":%lld,\"prompt\":%lld,\"gen\":%lld,\"load_s\":%.3f,"
               "\"prefill_tok_s\":%.1f,\"prefill_cold_ms\":%.3f,\"decode_tok_s\":%.2f,\"decode_step_ms\":%.3f,"
               "\"first_step_ms\":%.3f,\"median_step_ms\":%.3f,\"median_tok_s\":%.2f,\"warm_tok_s\":%.2f,\"graphs\":%d,"
               "\"overlap\":%d,\"drafts\":%lld,\"kv\":\"%s\",\"weights\":\"%s\","
               "\"tokens_fnv\":\"%016llx\"}\n",
               model, (long long)ro.tp, (long long)ro.pp, (long long)batch, (long long)prompt, (long long)gen, t_load,
               pre_tps, t_cold * 1e3, dec_tps, t_dec / gen * 1e3, first_step * 1e3, med * 1e3,
               med > 0 ? batch / med : 0, warm_tps, !no_graphs, !no_overlap, (long long)drafts,
               ss_kv_type_name(p.backend.kv_type),
               ss_linear_type_name(ss_replica_linear_type(r)), (unsigned long long)tok_hash);
    else
        printf("tp %lld pp %lld batch %lld: load %.2f s, prefill %.1f tok/s (first, cold: %.1f ms), decode %.2f "
               "tok/s (%.3f ms/step)\n",
               (long long)ro.tp, (long long)ro.pp, (long long)batch, t_load, pre_tps, t_cold * 1e3, dec_tps,
               t_dec / gen * 1e3);
    if (dq != q)
        ss_free(dq);
    ss_free(q);
    ss_free(blocks);
    ss_free(toks);
    ss_free(last);
    ss_replica_destroy(r);
    return 0;
}
