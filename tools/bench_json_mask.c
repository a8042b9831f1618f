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

/* 64 outputs at different points of the sample (as the sequences of one step): their masks one after another,
 * then on `threads` threads at once as the scheduler makes them (masks_make), in wall time. */
static int bench_batch(const ss_guide_vocab *v, int threads, int reps)
{
    enum { N = 64 };
    const size_t words = (size_t)ss_guide_vocab_words(v), len = ss_guide_vocab_scratch_len(v);
    ss_json_state *st = ss_malloc(N * sizeof *st), *scratch = ss_malloc((size_t)threads * len * sizeof *scratch);
    uint32_t *masks = ss_malloc(N * words * sizeof *masks);
    if (!st || !scratch || !masks)
        return 1;
    for (int i = 0; i < N; i++) {
        ss_json_init(&st[i], anyo());
        ss_json_push_bytes(anyo(), &st[i], (const uint8_t *)sample, (size_t)i * (sizeof sample - 2) / N);
    }
    double wall[2];
    for (int par = 0; par < 2; par++) {
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        for (int r = 0; r < reps; r++) {
            int t = par ? threads : 1;
#pragma omp parallel for num_threads(t) schedule(dynamic, 1) if (t > 1)
            for (int i = 0; i < N; i++)
                ss_guide_vocab_mask_into(v, anyo(), &st[i], masks + (size_t)i * words,
                                         scratch + (size_t)omp_get_thread_num() * len);
        }
        clock_gettime(CLOCK_MONOTONIC, &b);
        wall[par] = ((double)(b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) * 1e-9) / reps;
    }
    printf("64 outputs' masks (one step): %.2f ms on one thread, %.2f ms on %d threads\n", wall[0] * 1e3,
           wall[1] * 1e3, threads);
    ss_free(st);
    ss_free(scratch);
    ss_free(masks);
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
