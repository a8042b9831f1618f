/* bench_json_mask.c — JSON mode's cost on the scheduler thread: reading a tokenizer's vocabulary once, then one
 * token mask per generated token, timed at every prefix of a sample object, free and under a schema (against
 * checking each token alone).
 * usage: bench_json_mask MODEL_DIR [REPEATS] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <omp.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "serve/guide_vocab.h"
#include "serve/json_guide.h"
#include "tokenizer/tokenizer.h"

/* JSON mode without a schema: any object. */
static const ss_json_schema *anyo(void)
{
    return ss_json_schema_any_object();
}

/* A pretty-printed object with strings, escapes, numbers, literals, nesting and multi-byte text. */
static const char sample[] =
    "{\n  \"name\": \"Ren\xc3\xa9\\u00e9 \\\"Ray\\\"\",\n  \"age\": 42,\n  \"height_m\": 1.83e0,\n"
    "  \"tags\": [\"cat\", \"\xe7\x8c\xab\", null, true],\n  \"home\": {\"city\": \"Paris\", "
    "\"zip\": \"75001\"}\n}";

/* A schema the sample follows (what a structured-outputs client would send for it). */
static const char sample_schema[] =
    "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\"},\"age\":{\"type\":\"integer\"},"
    "\"height_m\":{\"type\":\"number\"},\"tags\":{\"type\":\"array\",\"items\":{\"type\":[\"string\",\"null\","
    "\"boolean\"]}},\"home\":{\"$ref\":\"#/$defs/Home\"}},\"required\":[\"name\",\"age\",\"height_m\",\"tags\","
    "\"home\"],\"$defs\":{\"Home\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"},"
    "\"zip\":{\"type\":\"string\"}},\"required\":[\"city\",\"zip\"]}}}";

static double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Times the masks at every prefix of the sample under sc, and checking each token alone at every 16th. */
static int bench_sample(ss_guide_vocab *v, const ss_json_schema *sc, const char *what, int reps, uint32_t *mask)
{
    double sum[2] = {0, 0}, worst[2] = {0, 0}, brute = 0, t0;
    int n[2] = {0, 0};
    const int32_t V = ss_guide_vocab_words(v) * 32;
    ss_json_state s;
    ss_json_init(&s, sc);
    for (size_t i = 0; i < sizeof sample - 1; i++) {
        int in_str = ss_json_in_string(&s);
        t0 = bench_now();
        for (int r = 0; r < reps; r++)
            ss_guide_vocab_mask(v, sc, &s, mask);
        double dt = (bench_now() - t0) / reps;
        sum[in_str] += dt;
        n[in_str]++;
        worst[in_str] = dt > worst[in_str] ? dt : worst[in_str];
        if (i % 16 == 0) { /* the plain way, each token's bytes from the state alone, at a few prefixes */
            t0 = bench_now();
            for (int32_t t = 0; t < V; t++) {
                size_t len = 0;
                const uint8_t *b = ss_guide_vocab_bytes(v, t, &len);
                ss_json_state c = s;
                if (b)
                    ss_json_push_bytes(sc, &c, b, len);
            }
            brute += bench_now() - t0;
        }
        if (!ss_json_push(sc, &s, (uint8_t)sample[i])) {
            fprintf(stderr, "the sample is refused at byte %zu under %s\n", i, what);
            return 1;
        }
    }
    int nb = (int)((sizeof sample - 2) / 16 + 1);
    printf("%s:\n", what);
    printf("  mask outside strings: mean %.3f ms, max %.3f ms (%d states)\n", sum[0] / n[0] * 1e3, worst[0] * 1e3,
           n[0]);
    printf("  mask inside strings:  mean %.3f ms, max %.3f ms (%d states)\n", sum[1] / n[1] * 1e3, worst[1] * 1e3,
           n[1]);
    printf("  each token alone:     mean %.3f ms (%d states)\n", brute / nb * 1e3, nb);
    return 0;
}

/* 64 outputs at different points of the sample (as the guided sequences of one step): their masks remade by
 * ss_guide_batch (the scheduler's masks_make) on one thread, then on `threads`, in wall time. */
static int bench_batch(ss_guide_vocab *v, int threads, int reps)
{
    enum { N = 64 };
    ss_guide g[N];
    ss_guide *gp[N];
    ss_err err;
    for (int i = 0; i < N; i++) {
        memset(&g[i], 0, sizeof g[i]);
        gp[i] = &g[i];
        if (ss_guide_start(&g[i], v, anyo(), &err) != SS_OK)
            return 1;
        ss_json_push_bytes(anyo(), &g[i].st, (const uint8_t *)sample, (size_t)i * (sizeof sample - 2) / N);
    }
    double wall[2];
    for (int par = 0; par < 2; par++) {
        ss_guide_batch *b = NULL;
        if (ss_guide_batch_create(v, par ? threads : 1, N, &b, &err) != SS_OK)
            return 1;
        const double t0 = ss_now_s();
        for (int r = 0; r < reps; r++)
            if (ss_guide_batch_remask(b, v, gp, N) != 0)
                return 1;
        wall[par] = (ss_now_s() - t0) / reps;
        ss_guide_batch_destroy(b);
    }
    printf("64 outputs' masks (one step): %.2f ms on one thread, %.2f ms on %d threads\n", wall[0] * 1e3,
           wall[1] * 1e3, threads);
    for (int i = 0; i < N; i++)
        ss_guide_clear(&g[i]);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL_DIR [REPEATS]\n", argv[0]);
        return 2;
    }
    int reps = argc > 2 ? atoi(argv[2]) : 20;
    if (reps < 1)
        reps = 1;
    ss_tokenizer *tok = NULL;
    ss_err err = {{0}};
    if (ss_tokenizer_load(argv[1], &tok, &err) != SS_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    int32_t V = ss_tokenizer_vocab_size(tok);
    double t0 = bench_now();
    ss_guide_vocab *v = NULL;
    if (ss_guide_vocab_create(tok, V, &v, &err) != SS_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    printf("vocabulary: %d tokens read in %.1f ms\n", V, (bench_now() - t0) * 1e3);
    uint32_t *mask = ss_malloc((size_t)ss_guide_vocab_words(v) * sizeof *mask);
    if (!mask)
        return 1;
    cJSON *sj = cJSON_Parse(sample_schema);
    ss_json_schema *sc = NULL;
    if (!sj || ss_json_schema_compile(sj, &sc, &err) != SS_OK) {
        fprintf(stderr, "sample schema: %s\n", err.msg);
        return 1;
    }
    cJSON_Delete(sj);
    int rc = bench_sample(v, anyo(), "any object", reps, mask) || bench_sample(v, sc, "the sample's schema", reps, mask) ||
             bench_batch(v, omp_get_num_procs() < 8 ? omp_get_num_procs() : 8, reps);
    ss_json_schema_destroy(sc);
    ss_free(mask);
    ss_guide_vocab_destroy(v);
    ss_tokenizer_destroy(tok);
    return rc;
}
