/* long_logits.c — the logits of the last positions of a long prompt, as a server computes them: the prompt's head
 * prefilled in chunks, its last --tail tokens fed one decode step each (the decode path at that context: CUDA graphs,
 * split attention, the fp8 KV cache when asked), each step's logits written out. For checks against a reference
 * implementation at long contexts (scripts/gpu/long_ref.py compares them with Hugging Face transformers).
 * usage: long_logits --model DIR --prompt N [--tail T] [--chunk C] [--seed S] --ids-out FILE --logits-out FILE
 *        [--device cuda] [--kv-cache-dtype fp8] [--quantization none|fp8] [--tp T --pp P]
 * --ids-out: the prompt's ids as text, comma-separated (the reference reads the same); --logits-out: T rows of
 * vocab_size float32 (little-endian), row i the logits after the prompt's first N - T + i + 1 tokens. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/opts.h"
#include "core/alloc.h"
#include "core/log.h"
#include "runner/replica.h"
#include "tool_replica.h"

extern char **environ;

/* Writes ids[0, n) comma-separated to path; 0 on success. */
static int ll_write_ids(const char *path, const int32_t *ids, int64_t n)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    int bad = 0;
    for (int64_t i = 0; i < n && !bad; i++)
        bad = fprintf(f, i ? ",%d" : "%d", (int)ids[i]) < 0;
    bad |= fprintf(f, "\n") < 0;
    return fclose(f) != 0 || bad ? -1 : 0;
}

int main(int argc, char **argv)
{
    const char *model = NULL, *ids_out = NULL, *logits_out = NULL;
    tool_replica_opts ro = TOOL_REPLICA_DEFAULTS;
    int64_t prompt = 0, tail = 8, chunk = 2048, seed = 1, verbose = 0;
    ss_opt opts[] = {
        {"model", SS_OPT_STR, &model, "checkpoint or engine folder"},
        TOOL_REPLICA_OPTIONS(ro),
        {"prompt", SS_OPT_INT, &prompt, "prompt tokens (random ids)"},
        {"tail", SS_OPT_INT, &tail, "last prompt tokens fed as decode steps, each step's logits written"},
        {"chunk", SS_OPT_INT, &chunk, "prefill tokens a step"},
        {"seed", SS_OPT_INT, &seed, "seed of the prompt's ids"},
        {"ids-out", SS_OPT_STR, &ids_out, "FILE: the prompt's ids, comma-separated"},
        {"logits-out", SS_OPT_STR, &logits_out, "FILE: tail rows of vocab_size float32"},
        {"verbose", SS_OPT_BOOL, &verbose, "info-level log lines on stderr"},
        {NULL, 0, NULL, NULL},
    };
    ss_err e = {{0}};
    ss_replica_params p;
    ss_status st = ss_opts_parse(opts, argc, argv, 1, environ, "long_logits", &e);
    if (st == SS_OK && (!model || !ids_out || !logits_out))
        st = ss_err_set(&e, SS_ERR_INVALID_ARG, "--model, --ids-out and --logits-out are required");
    if (st == SS_OK && (tail < 1 || prompt <= tail || chunk < 1 || chunk > (1 << 20) || prompt > (1 << 24)))
        st = ss_err_set(&e, SS_ERR_INVALID_ARG, "need 1 <= --tail < --prompt <= 16M and 1 <= --chunk <= 1M");
    if (st == SS_OK)
        st = tool_replica_params(&ro, model, &p, &e);
    if (st != SS_OK) {
        fprintf(stderr, "long_logits: %s\n", e.msg);
        return 2;
    }
    ss_log_init(verbose ? SS_LOG_INFO : SS_LOG_WARN, "");
    const int32_t bs = 16, nb = (int32_t)((prompt + bs - 1) / bs);
    p.block_size = bs;
    p.max_seq_len = nb * bs;
    p.num_kv_blocks = nb;
    p.max_batch_tokens = (int32_t)chunk;
    p.max_seqs = 1;
    ss_replica *r = NULL;
    if ((st = ss_replica_create(&p, &r, &e)) != SS_OK) {
        fprintf(stderr, "long_logits: %s\n", e.msg);
        return 3;
    }
    const int32_t V = ss_replica_config(r)->vocab_size;
    int32_t *ids = ss_malloc((size_t)prompt * sizeof *ids), *blocks = ss_malloc((size_t)nb * sizeof *blocks);
    float *rows = ss_malloc((size_t)tail * (size_t)V * sizeof *rows);
    if (!ids || !blocks || !rows) {
        fprintf(stderr, "long_logits: out of memory\n");
        return 3;
    }
    uint64_t rng = (uint64_t)seed * 0x9e3779b97f4a7c15ULL + 1;
    const int32_t lo = V > 4000 ? 1000 : V / 8; /* ids in [lo, V - lo): ordinary tokens, no special ones */
    for (int64_t i = 0; i < prompt; i++) {
        rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
        ids[i] = lo + (int32_t)((rng >> 33) % (uint64_t)(V - 2 * lo));
    }
    for (int32_t b = 0; b < nb; b++)
        blocks[b] = b;
    ss_plan_seq q;
    memset(&q, 0, sizeof q);
    q.blocks = blocks;
    q.n_blocks = nb;
    q.sp = ss_sampling_default();
    const int64_t head = prompt - tail;
    uint64_t step = 0;
    for (int64_t pos = 0; pos < prompt && st == SS_OK; step++) {
        const int64_t n = pos < head ? (head - pos < chunk ? head - pos : chunk) : 1; /* the tail: one a step */
        q.pos_start = (int32_t)pos;
        q.n_tokens = (int32_t)n;
        q.sample = pos + n > head;
        ss_step_plan plan = {step, q.sample ? SS_PLAN_LAST_LOGITS : 0, 1, &q, (int32_t)n, ids + pos};
        ss_step_output out;
        if ((st = ss_replica_step(r, &plan, &out, &e)) != SS_OK)
            break;
        if (q.sample) {
            if (!out.logits || out.vocab != V) {
                st = ss_err_set(&e, SS_ERR_INTERNAL, "step at position %lld returned no logits", (long long)pos);
            } else {
                memcpy(rows + (size_t)(pos + n - 1 - head) * (size_t)V, out.logits, (size_t)V * sizeof *rows);
            }
        }
        ss_step_output_clear(&out);
        pos += n;
        if (verbose && step % 16 == 0)
            SS_LOGI("long_logits: %lld / %lld tokens", (long long)pos, (long long)prompt);
    }
    if (st != SS_OK) {
        fprintf(stderr, "long_logits: %s\n", e.msg);
        return 1;
    }
    int rc = 0;
    if (ll_write_ids(ids_out, ids, prompt) != 0) {
        fprintf(stderr, "long_logits: could not write %s: %s\n", ids_out, strerror(errno));
        rc = 1;
    }
    FILE *f = fopen(logits_out, "wb");
    int bad = !f || fwrite(rows, sizeof *rows * (size_t)V, (size_t)tail, f) != (size_t)tail;
    bad |= f && fclose(f) != 0;
    if (bad) {
        fprintf(stderr, "long_logits: could not write %s: %s\n", logits_out, strerror(errno));
        rc = 1;
    }
    if (!rc) /* (model: a folder name, printed as given) */
        printf("{\"model\":\"%s\",\"prompt\":%lld,\"tail\":%lld,\"vocab\":%d,\"kv\":\"%s\",\"weights\":\"%s\"}\n",
               model, (long long)prompt, (long long)tail, V, ss_kv_type_name(p.backend.kv_type),
               ss_linear_type_name(ss_replica_linear_type(r)));
    ss_free(ids);
    ss_free(blocks);
    ss_free(rows);
    ss_replica_destroy(r);
    return rc;
}
