/* gen_checkpoint.c — writes a random bf16 checkpoint with the exact public shapes of a known model
 * (config.json, generation_config.json, Hub-style shards of <= 5 GB + index), fast: xoshiro256**
 * fills 16 MiB blocks on every core, written with pwrite. For prepare/load benchmarks and tests.
 * --fp8: the projections as an fp8 checkpoint (fbgemm_fp8: F8_E4M3 codes, an f32 scale a row), half the bytes. */
#include <errno.h>
#include <math.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/opts.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/status.h"
#include "engine/cache.h"
#include "engine/st_writer.h"

extern char **environ;

typedef struct gen_shape {
    const char *name, *arch, *model_type;
    int32_t hidden, inter, layers, heads, kv_heads, head_dim, vocab, max_pos;
    double rope_theta, rms_eps;
    int llama3_rope; /* rope_scaling llama3: factor, low, high, orig */
    double rope_factor;
    int tied, qkv_bias;
    int32_t bos, eos[3], n_eos;
} gen_shape;

static const gen_shape gen_shapes[] = {
    {"llama-3-8b", "LlamaForCausalLM", "llama", 4096, 14336, 32, 32, 8, 128, 128256, 131072, 5e5, 1e-5, 1, 8.0, 0, 0,
     128000, {128001, 128008, 128009}, 3},
    {"llama-3-70b", "LlamaForCausalLM", "llama", 8192, 28672, 80, 64, 8, 128, 128256, 131072, 5e5, 1e-5, 1, 8.0, 0, 0,
     128000, {128001, 128008, 128009}, 3},
    {"llama-3.2-1b", "LlamaForCausalLM", "llama", 2048, 8192, 16, 32, 8, 64, 128256, 131072, 5e5, 1e-5, 1, 32.0, 1, 0,
     128000, {128001, 128008, 128009}, 3},
    /* multi-head attention (32 kv heads): the persistent batch-1 kernel's smallest group (docs/architecture.md) */
    {"llama-2-7b", "LlamaForCausalLM", "llama", 4096, 11008, 32, 32, 32, 128, 32000, 4096, 1e4, 1e-5, 0, 0, 0, 0, 1,
     {2, 0, 0}, 1},
    {"qwen2.5-7b", "Qwen2ForCausalLM", "qwen2", 3584, 18944, 28, 28, 4, 128, 152064, 32768, 1e6, 1e-6, 0, 0, 0, 1,
     151643, {151645, 151643, 0}, 2},
    {"tiny", "LlamaForCausalLM", "llama", 64, 128, 2, 4, 2, 16, 512, 2048, 5e5, 1e-5, 1, 8.0, 0, 0, 1, {2, 0, 0}, 1},
};

/* One tensor to generate. */
typedef struct gen_tensor {
    char name[96];
    int32_t ndim;
    int64_t shape[2];
    int kind;       /* 0 matrix (uniform ±1/sqrt(in)), 1 norm (1 ± 0.05), 2 bias (±0.02), 3 embedding (±0.02·√3),
                     * 4 an fp8 matrix's row scales (f32, all fval) */
    ss_dtype dtype; /* bf16; --fp8: a matrix's codes e4m3 (uniform over the finite codes), its scales f32 */
    float fval;
    int shard;
    uint64_t offset; /* absolute offset in its shard */
    uint64_t nbytes;
} gen_tensor;

typedef struct gen_chunk {
    size_t tensor;
    uint64_t start, len; /* byte range inside the tensor */
} gen_chunk;

typedef struct gen_ctx {
    gen_tensor *t;
    gen_chunk *chunks;
    size_t n_chunks;
    int *fds;
    uint64_t seed;
    _Atomic size_t next;
    _Atomic int failed;
} gen_ctx;

static uint64_t gen_splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static inline uint64_t gen_rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

/* xoshiro256** step. */
static inline uint64_t gen_next(uint64_t s[4])
{
    uint64_t r = gen_rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = gen_rotl(s[3], 45);
    return r;
}

/* Fills n bf16 values: centre + scale * u, u uniform in [-1, 1) from 16 random bits each. */
static void gen_fill(uint16_t *out, size_t n, uint64_t s[4], float centre, float scale)
{
    size_t i = 0;
    while (i < n) {
        uint64_t r = gen_next(s);
        for (int k = 0; k < 4 && i < n; k++, i++) {
            uint32_t bits = 0x3f800000u | ((uint32_t)(r & 0xffff) << 7);
            float u;
            memcpy(&u, &bits, sizeof u);
            float v = centre + scale * (2.0f * u - 3.0f);
            uint32_t vb;
            memcpy(&vb, &v, sizeof vb);
            out[i] = (uint16_t)(vb >> 16);
            r >>= 16;
        }
    }
}

static void *gen_worker(void *arg)
{
    gen_ctx *c = arg;
    const size_t cap = 16u << 20;
    uint16_t *buf = ss_malloc(cap);
    if (!buf) {
        atomic_store(&c->failed, 1);
        return NULL;
    }
    for (;;) {
        size_t i = atomic_fetch_add(&c->next, 1);
        if (i >= c->n_chunks || atomic_load(&c->failed))
            break;
        const gen_chunk *ch = &c->chunks[i];
        const gen_tensor *t = &c->t[ch->tensor];
        /* Seeded per (tensor, chunk): the output does not depend on the thread count. */
        uint64_t x = c->seed ^ (0x100000001b3ull * (ch->tensor + 1)) ^ (ch->start * 0x9e3779b97f4a7c15ull);
        uint64_t s[4] = {gen_splitmix(&x), gen_splitmix(&x), gen_splitmix(&x), gen_splitmix(&x)};
        float centre = 0, scale = 0.02f;
        if (t->kind == 0)
            scale = (float)(sqrt(3.0) / sqrt((double)(t->ndim == 2 ? t->shape[1] : 1)));
        else if (t->kind == 1)
            centre = 1.0f, scale = 0.05f;
        else if (t->kind == 3)
            scale = 0.035f;
        if (t->dtype == SS_DTYPE_E4M3) { /* random codes; the two NaN codes (0x7f, 0xff) become 0x7e, 0xfe */
            uint8_t *b = (uint8_t *)buf;
            for (uint64_t k = 0; k < ch->len; k += 8) {
                uint64_t r = gen_next(s);
                for (int j = 0; j < 8 && k + (uint64_t)j < ch->len; j++, r >>= 8)
                    b[k + (uint64_t)j] = (uint8_t)((r & 0x7f) == 0x7f ? (r & 0xff) - 1 : r & 0xff);
            }
        } else if (t->kind == 4) {
            float *f = (float *)buf;
            for (uint64_t k = 0; k < ch->len / 4; k++)
                f[k] = t->fval;
        } else {
            gen_fill(buf, (size_t)(ch->len / 2), s, centre, scale);
        }
        const char *p = (const char *)buf;
        uint64_t left = ch->len, off = t->offset + ch->start;
        while (left) {
            ssize_t w = pwrite(c->fds[t->shard], p, (size_t)left, (off_t)off);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0) {
                atomic_store(&c->failed, 1);
                break;
            }
            p += w;
            off += (uint64_t)w;
            left -= (uint64_t)w;
        }
    }
    ss_free(buf);
    return NULL;
}

static int gen_write_text(const char *dir, const char *name, const char *text)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "gen_checkpoint: %s: %s\n", path, strerror(errno));
        return -1;
    }
    fputs(text, f);
    return fclose(f) == 0 ? 0 : -1;
}

static void gen_add(gen_tensor *t, size_t *n, const char *name, int64_t rows, int64_t cols, int kind)
{
    gen_tensor *e = &t[(*n)++];
    snprintf(e->name, sizeof e->name, "%s", name);
    e->ndim = cols ? 2 : 1;
    e->shape[0] = rows;
    e->shape[1] = cols;
    e->kind = kind;
    e->dtype = SS_DTYPE_BF16;
    e->nbytes = (uint64_t)rows * (uint64_t)(cols ? cols : 1) * 2;
}

/* --fp8: the matrix just added becomes e4m3 codes, followed by its "_scale" ([rows, 1] f32): codes up to 448 times
 * the scale span the bf16 matrices' range, ±sqrt(3 / in). */
static void gen_fp8(gen_tensor *t, size_t *n)
{
    gen_tensor *m = &t[*n - 1];
    m->dtype = SS_DTYPE_E4M3;
    m->nbytes = (uint64_t)m->shape[0] * (uint64_t)m->shape[1];
    char name[96];
    snprintf(name, sizeof name, "%.89s_scale", m->name);
    gen_add(t, n, name, m->shape[0], 1, 4);
    gen_tensor *s = &t[*n - 1];
    s->dtype = SS_DTYPE_F32;
    s->nbytes = (uint64_t)s->shape[0] * 4;
    s->fval = (float)(sqrt(3.0 / (double)m->shape[1]) / 448.0);
}

int main(int argc, char **argv)
{
    const char *shape_name = NULL, *out = NULL;
    int64_t seed = 1, layers = 0, threads = 0, max_shard = 5000000000LL, fp8 = 0;
    const ss_opt opts[] = {
        {"shape", SS_OPT_STR, &shape_name, "llama-3-8b | llama-3-70b | llama-3.2-1b | llama-2-7b | qwen2.5-7b | tiny"},
        {"out", SS_OPT_STR, &out, "output folder (created)"},
        {"seed", SS_OPT_INT, &seed, "random seed (default 1)"},
        {"layers", SS_OPT_INT, &layers, "override the number of layers"},
        {"threads", SS_OPT_INT, &threads, "writer threads (default: all cores)"},
        {"max-shard-bytes", SS_OPT_INT, &max_shard, "shard size cap (default 5 GB, as the Hub)"},
        {"fp8", SS_OPT_BOOL, &fp8, "projections as an fp8 checkpoint (fbgemm_fp8: e4m3, an f32 scale a row)"},
        {NULL, SS_OPT_STR, NULL, NULL},
    };
    ss_err err = {{0}};
    ss_status st = ss_opts_parse(opts, argc, argv, 1, environ, "gen_checkpoint", &err);
    if (st == SS_ERR_CANCELLED)
        return 0;
    if (st != SS_OK || !shape_name || !out) {
        fprintf(stderr, "gen_checkpoint: %s\n", st != SS_OK ? err.msg : "--shape and --out are required");
        return 2;
    }
    const gen_shape *sh = NULL;
    for (size_t i = 0; i < sizeof gen_shapes / sizeof gen_shapes[0]; i++)
        if (!strcmp(gen_shapes[i].name, shape_name))
            sh = &gen_shapes[i];
    if (!sh) {
        fprintf(stderr, "gen_checkpoint: unknown --shape %s\n", shape_name);
        return 2;
    }
    int32_t n_layers = layers > 0 ? (int32_t)layers : sh->layers;
    if (ss_cache_mkdirs(out, &err) != SS_OK) {
        fprintf(stderr, "gen_checkpoint: %s\n", err.msg);
        return 1;
    }
    /* config.json and generation_config.json, in the Hub's classic format. */
    char cfg[4096], rope[512] = "null", eos[64];
    if (sh->llama3_rope)
        snprintf(rope, sizeof rope,
                 "{\"factor\": %.1f, \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, "
                 "\"original_max_position_embeddings\": 8192, \"rope_type\": \"llama3\"}",
                 sh->rope_factor);
    if (sh->n_eos == 1)
        snprintf(eos, sizeof eos, "%d", sh->eos[0]);
    else if (sh->n_eos == 2)
        snprintf(eos, sizeof eos, "[%d, %d]", sh->eos[0], sh->eos[1]);
    else
        snprintf(eos, sizeof eos, "[%d, %d, %d]", sh->eos[0], sh->eos[1], sh->eos[2]);
    snprintf(cfg, sizeof cfg,
             "{\n  \"architectures\": [\"%s\"],\n  \"model_type\": \"%s\",\n  \"hidden_act\": \"silu\",\n"
             "  \"hidden_size\": %d,\n  \"intermediate_size\": %d,\n  \"num_hidden_layers\": %d,\n"
             "  \"num_attention_heads\": %d,\n  \"num_key_value_heads\": %d,\n  \"head_dim\": %d,\n"
             "  \"vocab_size\": %d,\n  \"max_position_embeddings\": %d,\n  \"rms_norm_eps\": %g,\n"
             "  \"rope_theta\": %.1f,\n  \"rope_scaling\": %s,\n  \"tie_word_embeddings\": %s,\n"
             "  \"attention_bias\": %s,\n  \"bos_token_id\": %d,\n  \"eos_token_id\": %s,\n%s"
             "  \"torch_dtype\": \"bfloat16\"\n}\n",
             sh->arch, sh->model_type, sh->hidden, sh->inter, n_layers, sh->heads, sh->kv_heads, sh->head_dim,
             sh->vocab, sh->max_pos, sh->rms_eps, sh->rope_theta, rope, sh->tied ? "true" : "false",
             sh->qkv_bias ? "true" : "false", sh->bos, eos,
             fp8 ? "  \"quantization_config\": {\"quant_method\": \"fbgemm_fp8\"},\n" : "");
    char gen[512];
    snprintf(gen, sizeof gen, "{\n  \"bos_token_id\": %d,\n  \"eos_token_id\": %s,\n  \"do_sample\": false\n}\n", sh->bos,
             eos);
    if (gen_write_text(out, "config.json", cfg) || gen_write_text(out, "generation_config.json", gen))
        return 1;
    /* Tensors in the Hub's order. */
    size_t cap = 4 + (size_t)n_layers * 19, nt = 0;
    gen_tensor *t = ss_calloc(cap, sizeof *t);
    if (!t)
        return 5;
    int64_t h = sh->hidden, qd = (int64_t)sh->heads * sh->head_dim, kvd = (int64_t)sh->kv_heads * sh->head_dim;
    char nm[96];
    gen_add(t, &nt, "model.embed_tokens.weight", sh->vocab, h, 3);
    for (int32_t l = 0; l < n_layers; l++) {
#define GEN_L(suffix, r, c, k)                                         \
    do {                                                               \
        snprintf(nm, sizeof nm, "model.layers.%d.%s", (int)l, suffix); \
        gen_add(t, &nt, nm, r, c, k);                                  \
        if (fp8 && (k) == 0)                                           \
            gen_fp8(t, &nt);                                           \
    } while (0)
        GEN_L("input_layernorm.weight", h, 0, 1);
        GEN_L("self_attn.q_proj.weight", qd, h, 0);
        GEN_L("self_attn.k_proj.weight", kvd, h, 0);
        GEN_L("self_attn.v_proj.weight", kvd, h, 0);
        if (sh->qkv_bias) {
            GEN_L("self_attn.q_proj.bias", qd, 0, 2);
            GEN_L("self_attn.k_proj.bias", kvd, 0, 2);
            GEN_L("self_attn.v_proj.bias", kvd, 0, 2);
        }
        GEN_L("self_attn.o_proj.weight", h, qd, 0);
        GEN_L("post_attention_layernorm.weight", h, 0, 1);
        GEN_L("mlp.gate_proj.weight", sh->inter, h, 0);
        GEN_L("mlp.up_proj.weight", sh->inter, h, 0);
        GEN_L("mlp.down_proj.weight", h, sh->inter, 0);
#undef GEN_L
    }
    gen_add(t, &nt, "model.norm.weight", h, 0, 1);
    if (!sh->tied)
        gen_add(t, &nt, "lm_head.weight", sh->vocab, h, 0);
    /* Shards of at most max_shard bytes of data. */
    int n_shards = 1;
    uint64_t acc = 0, total = 0;
    for (size_t i = 0; i < nt; i++) {
        if (acc && acc + t[i].nbytes > (uint64_t)max_shard) {
            n_shards++;
            acc = 0;
        }
        t[i].shard = n_shards - 1;
        acc += t[i].nbytes;
        total += t[i].nbytes;
    }
    int *fds = ss_calloc((size_t)n_shards, sizeof *fds);
    ss_st_entry *ents = ss_calloc(nt, sizeof *ents);
    char (*names)[64] = ss_calloc((size_t)n_shards, sizeof *names);
    if (!fds || !ents || !names)
        return 5;
    size_t first = 0;
    for (int s = 0; s < n_shards; s++) {
        if (n_shards == 1)
            snprintf(names[s], sizeof names[s], "model.safetensors");
        else
            snprintf(names[s], sizeof names[s], "model-%05d-of-%05d.safetensors", s + 1, n_shards);
        size_t last = first;
        while (last < nt && t[last].shard == s) {
            ss_st_entry *e = &ents[last - first];
            e->name = t[last].name;
            e->dtype = t[last].dtype;
            e->ndim = t[last].ndim;
            e->shape[0] = t[last].shape[0];
            e->shape[1] = t[last].shape[1];
            last++;
        }
        char *hdr = NULL;
        size_t hl = 0;
        uint64_t data = 0;
        ss_st_kv meta[] = {{"format", "pt"}};
        if (ss_st_header_build(ents, last - first, meta, 1, &hdr, &hl, &data, &err) != SS_OK) {
            fprintf(stderr, "gen_checkpoint: %s\n", err.msg);
            return 1;
        }
        uint64_t off = hl;
        for (size_t i = first; i < last; i++) {
            t[i].offset = off;
            off += t[i].nbytes;
        }
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", out, names[s]);
        fds[s] = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fds[s] < 0 || pwrite(fds[s], hdr, hl, 0) != (ssize_t)hl || ftruncate(fds[s], (off_t)off) != 0) {
            fprintf(stderr, "gen_checkpoint: %s: %s\n", path, strerror(errno));
            return 1;
        }
        ss_free(hdr);
        first = last;
    }
    /* Index for sharded checkpoints, as save_pretrained writes it. */
    if (n_shards > 1) {
        size_t icap = 256 + nt * 160;
        char *idx = ss_malloc(icap);
        if (!idx)
            return 5;
        size_t n = (size_t)snprintf(idx, icap, "{\n  \"metadata\": {\"total_size\": %" PRIu64 "},\n  \"weight_map\": {\n",
                                    total);
        for (size_t i = 0; i < nt; i++)
            n += (size_t)snprintf(idx + n, icap - n, "    \"%s\": \"%s\"%s\n", t[i].name, names[t[i].shard],
                                  i + 1 < nt ? "," : "");
        snprintf(idx + n, icap - n, "  }\n}\n");
        if (gen_write_text(out, "model.safetensors.index.json", idx))
            return 1;
        ss_free(idx);
    }
    /* Chunks of up to 16 MiB, generated on all cores. */
    const uint64_t chunk = 16u << 20;
    size_t nc = 0;
    for (size_t i = 0; i < nt; i++)
        nc += (size_t)((t[i].nbytes + chunk - 1) / chunk);
    gen_chunk *chunks = ss_calloc(nc ? nc : 1, sizeof *chunks);
    if (!chunks)
        return 5;
    nc = 0;
    for (size_t i = 0; i < nt; i++)
        for (uint64_t o = 0; o < t[i].nbytes; o += chunk) {
            chunks[nc].tensor = i;
            chunks[nc].start = o;
            chunks[nc].len = t[i].nbytes - o < chunk ? t[i].nbytes - o : chunk;
            nc++;
        }
    gen_ctx c = {.t = t, .chunks = chunks, .n_chunks = nc, .fds = fds, .seed = (uint64_t)seed};
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int nth = threads > 0 ? (int)threads : (int)(cores > 0 ? cores : 1);
    if (nth > 64)
        nth = 64;
    const double t0 = ss_now_s();
    pthread_t th[64];
    int started = 0;
    for (int i = 1; i < nth; i++)
        if (pthread_create(&th[i], NULL, gen_worker, &c) == 0)
            started = i;
        else
            break;
    gen_worker(&c);
    for (int i = 1; i <= started; i++)
        pthread_join(th[i], NULL);
    for (int s = 0; s < n_shards; s++)
        if (fsync(fds[s]) != 0 || close(fds[s]) != 0)
            atomic_store(&c.failed, 1);
    const double el = ss_now_s() - t0;
    if (atomic_load(&c.failed)) {
        fprintf(stderr, "gen_checkpoint: writing failed: %s\n", strerror(errno));
        return 1;
    }
    fprintf(stderr, "gen_checkpoint: %s (%d layers): %zu tensors, %d shard(s), %.3f GB in %.2f s (%.2f GB/s)\n",
            sh->name, n_layers, nt, n_shards, (double)total / 1e9, el, el > 0 ? (double)total / el / 1e9 : 0.0);
    printf("%s\n", out);
    ss_free(chunks);
    ss_free(fds);
    ss_free(ents);
    ss_free(names);
    ss_free(t);
    return 0;
}
