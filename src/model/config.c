/* config.c — parsing config.json / generation_config.json of Llama-family checkpoints, refusing
 * anything the forward pass does not implement (by name), and the RoPE frequency table. */
#include "model/config.h"

#include <cjson/cJSON.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/fileio.h"
#include "core/json_num.h"
#include "core/log.h"

#define CFG_MAX_BYTES (4u << 20)

static const struct {
    const char *name;
    ss_arch arch;
} cfg_archs[] = {
    {"LlamaForCausalLM", SS_ARCH_LLAMA},
    {"MistralForCausalLM", SS_ARCH_MISTRAL},
    {"Qwen2ForCausalLM", SS_ARCH_QWEN2},
    {"Qwen3ForCausalLM", SS_ARCH_QWEN3},
};

/* Reads an integer field; absent -> def (or an error when required, def < 0 meaning required). */
static ss_status cfg_int(const cJSON *root, const char *key, int64_t def, int64_t lo, int64_t hi, const char *name,
                         int32_t *out, ss_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!v || cJSON_IsNull(v)) {
        if (def == INT64_MIN)
            return ss_err_set(err, SS_ERR_FORMAT, "%s: missing \"%s\"", name, key);
        if (def < lo || def > hi) /* a default derived from other fields (head_dim: hidden_size / heads) */
            return ss_err_set(err, SS_ERR_FORMAT, "%s: \"%s\" is not given and its default %lld is outside %lld..%lld",
                              name, key, (long long)def, (long long)lo, (long long)hi);
        *out = (int32_t)def;
        return SS_OK;
    }
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble))
        return ss_err_set(err, SS_ERR_FORMAT, "%s: \"%s\" must be an integer", name, key);
    if (v->valuedouble < (double)lo || v->valuedouble > (double)hi)
        return ss_err_set(err, SS_ERR_FORMAT, "%s: \"%s\" = %.0f is outside %lld..%lld", name, key, v->valuedouble,
                          (long long)lo, (long long)hi);
    *out = (int32_t)v->valuedouble;
    return SS_OK;
}

static ss_status cfg_num(const cJSON *root, const char *key, double def, const char *name, double *out, ss_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!v || cJSON_IsNull(v)) {
        if (isnan(def))
            return ss_err_set(err, SS_ERR_FORMAT, "%s: missing \"%s\"", name, key);
        *out = def;
        return SS_OK;
    }
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return ss_err_set(err, SS_ERR_FORMAT, "%s: \"%s\" must be a number", name, key);
    *out = v->valuedouble;
    return SS_OK;
}

/* cfg_num for a number the forward pass divides by or raises: within (0, hi] (given or default). A zero or
 * negative rms_norm_eps, rope_theta or low_freq_factor gives NaN or infinity only when the model runs. */
static ss_status cfg_pos(const cJSON *root, const char *key, double def, double hi, const char *name, double *out,
                         ss_err *err)
{
    SS_CHECK(cfg_num(root, key, def, name, out, err));
    if (!(*out > 0) || *out > hi)
        return ss_err_set(err, SS_ERR_FORMAT, "%s: \"%s\" = %g is outside (0, %g]", name, key, *out, hi);
    return SS_OK;
}

static int cfg_bool(const cJSON *root, const char *key, int def)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (cJSON_IsBool(v))
        return cJSON_IsTrue(v);
    return def;
}

/* rope_scaling (classic) or rope_parameters (newer transformers): type and factors. */
static ss_status cfg_rope(const cJSON *root, const char *name, ss_model_config *c, ss_err *err)
{
    const cJSON *rp = cJSON_GetObjectItemCaseSensitive(root, "rope_parameters");
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(root, "rope_scaling");
    const cJSON *src = cJSON_IsObject(rp) ? rp : rs;
    c->rope_type = SS_ROPE_DEFAULT;
    SS_CHECK(cfg_pos(root, "rope_theta", 10000.0, FLT_MAX, name, &c->rope_theta, err));
    if (!src || cJSON_IsNull(src))
        return SS_OK;
    if (!cJSON_IsObject(src))
        return ss_err_set(err, SS_ERR_FORMAT, "%s: rope_scaling must be an object or null", name);
    if (src == rp) /* the newer form carries rope_theta inside */
        SS_CHECK(cfg_pos(rp, "rope_theta", c->rope_theta, FLT_MAX, name, &c->rope_theta, err));
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(src, "rope_type");
    if (!cJSON_IsString(t))
        t = cJSON_GetObjectItemCaseSensitive(src, "type");
    const char *type = cJSON_IsString(t) ? t->valuestring : "default";
    if (!strcmp(type, "default"))
        return SS_OK;
    if (!strcmp(type, "linear")) {
        c->rope_type = SS_ROPE_LINEAR;
        SS_CHECK(cfg_num(src, "factor", NAN, name, &c->rope_factor, err));
    } else if (!strcmp(type, "llama3")) {
        c->rope_type = SS_ROPE_LLAMA3;
        SS_CHECK(cfg_num(src, "factor", NAN, name, &c->rope_factor, err));
        SS_CHECK(cfg_pos(src, "low_freq_factor", NAN, FLT_MAX, name, &c->rope_low_freq_factor, err));
        SS_CHECK(cfg_num(src, "high_freq_factor", NAN, name, &c->rope_high_freq_factor, err));
        SS_CHECK(cfg_int(src, "original_max_position_embeddings", INT64_MIN, 1, INT32_MAX, name,
                         &c->rope_orig_max_pos, err));
        if (c->rope_high_freq_factor <= c->rope_low_freq_factor)
            return ss_err_set(err, SS_ERR_FORMAT, "%s: rope_scaling high_freq_factor must exceed low_freq_factor", name);
    } else {
        return ss_err_set(err, SS_ERR_UNSUPPORTED, "%s: rope_scaling type \"%s\" is not supported (default, linear, llama3)",
                          name, type);
    }
    if (c->rope_factor <= 0)
        return ss_err_set(err, SS_ERR_FORMAT, "%s: rope_scaling factor must be positive", name);
    return SS_OK;
}

static ss_status cfg_eos(const cJSON *root, const char *name, ss_model_config *c, ss_err *err)
{
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(root, "eos_token_id");
    if (!e || cJSON_IsNull(e))
        return SS_OK;
    if (cJSON_IsNumber(e)) {
        if (!ss_json_i32(e, 0, INT32_MAX, &c->eos_ids[0]))
            return ss_err_set(err, SS_ERR_FORMAT, "%s: eos_token_id %g is not a token id", name, e->valuedouble);
        c->n_eos = 1;
        return SS_OK;
    }
    if (!cJSON_IsArray(e))
        return ss_err_set(err, SS_ERR_FORMAT, "%s: eos_token_id must be an integer or a list", name);
    int n = cJSON_GetArraySize(e);
    if (n > SS_MAX_EOS)
        return ss_err_set(err, SS_ERR_UNSUPPORTED, "%s: %d eos ids (at most %d)", name, n, SS_MAX_EOS);
    c->n_eos = 0;
    for (const cJSON *x = e->child; x; x = x->next) {
        if (!ss_json_i32(x, 0, INT32_MAX, &c->eos_ids[c->n_eos]))
            return ss_err_set(err, SS_ERR_FORMAT, "%s: eos_token_id[%d] is not a token id", name, c->n_eos);
        c->n_eos++;
    }
    return SS_OK;
}

/* bos_token_id: a token id sets *bos; a number that is not one is refused; anything else (absent, null, another
 * type) leaves *bos as it is (as before session 52: only numbers were read). */
static ss_status cfg_bos(const cJSON *root, const char *name, int32_t *bos, ss_err *err)
{
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(root, "bos_token_id");
    if (!cJSON_IsNumber(b))
        return SS_OK;
    if (!ss_json_i32(b, 0, INT32_MAX, bos))
        return ss_err_set(err, SS_ERR_FORMAT, "%s: bos_token_id is not a token id", name);
    return SS_OK;
}

/* A block size pair [rows, cols] (weight_block_size, block_structure): 1 and b set when valid. */
static int cfg_block(const cJSON *v, int32_t b[2])
{
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != 2)
        return 0;
    for (int i = 0; i < 2; i++) {
        const cJSON *x = cJSON_GetArrayItem(v, i);
        if (!cJSON_IsNumber(x) || x->valuedouble < 1 || x->valuedouble > 1 << 20 ||
            x->valuedouble != (double)(int32_t)x->valuedouble)
            return 0;
        b[i] = (int32_t)x->valuedouble;
    }
    return 1;
}

/* quantization_config: fp8 checkpoints (their projection weights F8_E4M3 with scale tensors: fp8_weights.h) are
 * read; every other method (int4/int8 AWQ, GPTQ, bitsandbytes, ...) is refused by name. Activation scales
 * (input_scale, static or dynamic) are not needed: shardserve's fp8 GEMMs scale activations per token. */
static ss_status cfg_quant(const cJSON *root, const char *name, ss_model_config *c, ss_err *err)
{
    const cJSON *q = cJSON_GetObjectItemCaseSensitive(root, "quantization_config");
    if (!q || cJSON_IsNull(q))
        return SS_OK;
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(q, "quant_method");
    if (!cJSON_IsObject(q) || !cJSON_IsString(m))
        return ss_err_set(err, SS_ERR_FORMAT, "%s: quantization_config needs a \"quant_method\"", name);
    const char *method = m->valuestring;
    if (!strcmp(method, "fp8") || !strcmp(method, "fbgemm_fp8")) {
        const cJSON *bs = cJSON_GetObjectItemCaseSensitive(q, "weight_block_size");
        int32_t b[2] = {0, 0};
        if (bs && !cJSON_IsNull(bs) && !cfg_block(bs, b))
            return ss_err_set(err, SS_ERR_FORMAT, "%s: quantization_config.weight_block_size is not [rows, cols]", name);
        c->fp8_weights = 1, c->fp8_block_rows = b[0], c->fp8_block_cols = b[1];
        return SS_OK;
    }
    if (!strcmp(method, "compressed-tensors")) {
        /* Every group must hold 8-bit float weights a tensor, a channel or a block at a time; no group (a scheme of
         * KV-cache scales only) leaves the weights as they are. */
        const cJSON *groups = cJSON_GetObjectItemCaseSensitive(q, "config_groups");
        for (const cJSON *g = cJSON_IsObject(groups) ? groups->child : NULL; g; g = g->next) {
            const cJSON *w = cJSON_GetObjectItemCaseSensitive(g, "weights");
            const cJSON *bits = cJSON_GetObjectItemCaseSensitive(w, "num_bits");
            const cJSON *type = cJSON_GetObjectItemCaseSensitive(w, "type");
            const cJSON *strat = cJSON_GetObjectItemCaseSensitive(w, "strategy");
            if (!cJSON_IsObject(w))
                return ss_err_set(err, SS_ERR_UNSUPPORTED, "%s: compressed-tensors group '%s' has no weights scheme: only "
                                  "8-bit float (fp8) weights are supported", name, g->string);
            if (!cJSON_IsNumber(bits) || bits->valuedouble != 8 || !cJSON_IsString(type) ||
                strcmp(type->valuestring, "float"))
                return ss_err_set(err, SS_ERR_UNSUPPORTED,
                                  "%s: compressed-tensors group '%s' quantizes weights to %s %g bits: only 8-bit float "
                                  "(fp8) weights are supported",
                                  name, g->string, cJSON_IsString(type) ? type->valuestring : "?",
                                  cJSON_IsNumber(bits) ? bits->valuedouble : 0.0);
            if (cJSON_IsString(strat) && strcmp(strat->valuestring, "tensor") && strcmp(strat->valuestring, "channel") &&
                strcmp(strat->valuestring, "block"))
                return ss_err_set(err, SS_ERR_UNSUPPORTED, "%s: compressed-tensors group '%s': fp8 weights with strategy "
                                  "\"%s\" are not supported (tensor, channel, block)", name, g->string,
                                  strat->valuestring);
            int32_t b[2];
            if (cfg_block(cJSON_GetObjectItemCaseSensitive(w, "block_structure"), b))
                c->fp8_block_rows = b[0], c->fp8_block_cols = b[1];
            c->fp8_weights = 1;
        }
        return SS_OK;
    }
    return ss_err_set(err, SS_ERR_UNSUPPORTED,
                      "%s: quantization_config.quant_method \"%s\" is not supported (fp8 checkpoints are: fp8, "
                      "fbgemm_fp8, compressed-tensors with 8-bit float weights)",
                      name, method);
}

ss_status ss_config_parse(const char *json, size_t len, const char *name, ss_model_config *out, ss_err *err)
{
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return ss_err_set(err, SS_ERR_FORMAT, "%s: not a JSON object", name);
    }
    ss_model_config c;
    memset(&c, 0, sizeof c);
    ss_status st = SS_OK;
    const cJSON *archs = cJSON_GetObjectItemCaseSensitive(root, "architectures");
    const cJSON *a0 = cJSON_IsArray(archs) ? cJSON_GetArrayItem(archs, 0) : NULL;
    if (!cJSON_IsString(a0)) {
        st = ss_err_set(err, SS_ERR_FORMAT, "%s: missing \"architectures\" list", name);
        goto out;
    }
    int found = 0;
    for (size_t i = 0; i < sizeof cfg_archs / sizeof cfg_archs[0]; i++)
        if (!strcmp(a0->valuestring, cfg_archs[i].name)) {
            c.arch = cfg_archs[i].arch;
            found = 1;
        }
    if (!found) {
        st = ss_err_set(err, SS_ERR_UNSUPPORTED,
                        "%s: architecture \"%s\" is not supported (LlamaForCausalLM, MistralForCausalLM, "
                        "Qwen2ForCausalLM, Qwen3ForCausalLM)",
                        name, a0->valuestring);
        goto out;
    }
    snprintf(c.arch_name, sizeof c.arch_name, "%s", a0->valuestring);
    SS_CHECK_GOTO(cfg_int(root, "vocab_size", INT64_MIN, 1, 1 << 24, name, &c.vocab_size, err), st, out);
    SS_CHECK_GOTO(cfg_int(root, "hidden_size", INT64_MIN, 1, 1 << 17, name, &c.hidden_size, err), st, out);
    SS_CHECK_GOTO(cfg_int(root, "intermediate_size", INT64_MIN, 1, 1 << 20, name, &c.intermediate_size, err), st, out);
    SS_CHECK_GOTO(cfg_int(root, "num_hidden_layers", INT64_MIN, 1, 4096, name, &c.n_layers, err), st, out);
    SS_CHECK_GOTO(cfg_int(root, "num_attention_heads", INT64_MIN, 1, 4096, name, &c.n_heads, err), st, out);
    SS_CHECK_GOTO(cfg_int(root, "num_key_value_heads", c.n_heads, 1, 4096, name, &c.n_kv_heads, err), st, out);
    SS_CHECK_GOTO(cfg_int(root, "head_dim", c.hidden_size / c.n_heads, 2, 1024, name, &c.head_dim, err), st, out);
    SS_CHECK_GOTO(cfg_int(root, "max_position_embeddings", 4096, 1, INT32_MAX, name, &c.max_position, err), st, out);
    double eps;
    SS_CHECK_GOTO(cfg_pos(root, "rms_norm_eps", 1e-6, 1.0, name, &eps, err), st, out);
    c.rms_eps = (float)eps;
    if (c.n_heads % c.n_kv_heads) {
        st = ss_err_set(err, SS_ERR_FORMAT, "%s: num_attention_heads %d is not a multiple of num_key_value_heads %d",
                        name, c.n_heads, c.n_kv_heads);
        goto out;
    }
    if (c.head_dim % 2) {
        st = ss_err_set(err, SS_ERR_UNSUPPORTED, "%s: head_dim %d is odd (RoPE needs pairs)", name, c.head_dim);
        goto out;
    }
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(root, "hidden_act");
    if (cJSON_IsString(act) && strcmp(act->valuestring, "silu")) {
        st = ss_err_set(err, SS_ERR_UNSUPPORTED, "%s: hidden_act \"%s\" is not supported (silu)", name, act->valuestring);
        goto out;
    }
    if (cfg_bool(root, "mlp_bias", 0)) {
        st = ss_err_set(err, SS_ERR_UNSUPPORTED, "%s: mlp_bias true is not supported", name);
        goto out;
    }
    if (cfg_bool(root, "use_sliding_window", 0)) {
        st = ss_err_set(err, SS_ERR_UNSUPPORTED, "%s: use_sliding_window true is not supported", name);
        goto out;
    }
    const cJSON *sw = cJSON_GetObjectItemCaseSensitive(root, "sliding_window");
    if (c.arch == SS_ARCH_MISTRAL && cJSON_IsNumber(sw) && sw->valuedouble >= 1 && sw->valuedouble < c.max_position) {
        /* Attention with a window equals full attention up to the window: cap the context there. */
        SS_LOGW("%s: sliding_window %d: context capped at %d tokens", name, (int)sw->valuedouble, (int)sw->valuedouble);
        c.max_position = (int32_t)sw->valuedouble;
    }
    SS_CHECK_GOTO(cfg_rope(root, name, &c, err), st, out);
    c.tie_embeddings = cfg_bool(root, "tie_word_embeddings", 0);
    c.attn_bias = c.arch == SS_ARCH_QWEN2 ? 1 : cfg_bool(root, "attention_bias", 0);
    c.qk_norm = c.arch == SS_ARCH_QWEN3;
    c.bos_id = -1;
    SS_CHECK_GOTO(cfg_bos(root, name, &c.bos_id, err), st, out);
    SS_CHECK_GOTO(cfg_eos(root, name, &c, err), st, out);
    SS_CHECK_GOTO(cfg_quant(root, name, &c, err), st, out);
    *out = c;
out:
    cJSON_Delete(root);
    return st;
}

/* One number of generation_config.json within [lo, hi] (lo_open: lo itself excluded). 1 and *out set
 * when present and in range; 0 when absent; 0 with a warning naming the file when out of range. */
static int gen_number(const cJSON *root, const char *key, double lo, int lo_open, double hi, const char *name,
                      double *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!v || cJSON_IsNull(v))
        return 0;
    if (!cJSON_IsNumber(v) || !(lo_open ? v->valuedouble > lo : v->valuedouble >= lo) || v->valuedouble > hi) {
        SS_LOGW("%s: '%s' is not a number in %s%g, %g]: ignored (requests without it use the server's default)",
                name, key, lo_open ? "(" : "[", lo, hi);
        return 0;
    }
    *out = v->valuedouble;
    return 1;
}

/* The sampling settings (see ss_gen_defaults), with the ranges the OpenAI routes accept. */
static ss_gen_defaults gen_defaults(const cJSON *root, const char *name)
{
    ss_gen_defaults g;
    memset(&g, 0, sizeof g);
    double d;
    if ((g.has_temperature = gen_number(root, "temperature", 0, 0, 100, name, &d)))
        g.temperature = (float)d;
    if ((g.has_top_p = gen_number(root, "top_p", 0, 1, 1, name, &d)))
        g.top_p = (float)d;
    if ((g.has_top_k = gen_number(root, "top_k", 0, 0, 1 << 30, name, &d)) && d != floor(d)) {
        SS_LOGW("%s: 'top_k' %g is not an integer: ignored (requests without it use the server's default)", name, d);
        g.has_top_k = 0;
    }
    if (g.has_top_k)
        g.top_k = (int32_t)d;
    if ((g.has_min_p = gen_number(root, "min_p", 0, 0, 1, name, &d)))
        g.min_p = (float)d;
    if ((g.has_repetition_penalty = gen_number(root, "repetition_penalty", 0, 1, 10, name, &d)))
        g.repetition_penalty = (float)d;
    const cJSON *sample = cJSON_GetObjectItemCaseSensitive(root, "do_sample");
    if (cJSON_IsFalse(sample))
        g.has_temperature = 1, g.temperature = 0.0f;
    return g;
}

ss_status ss_genconfig_parse(const char *json, size_t len, const char *name, ss_model_config *cfg, ss_err *err)
{
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return ss_err_set(err, SS_ERR_FORMAT, "%s: not a JSON object", name);
    }
    ss_model_config c = *cfg;
    ss_status st = cfg_eos(root, name, &c, err);
    if (st == SS_OK)
        st = cfg_bos(root, name, &c.bos_id, err);
    c.gen = gen_defaults(root, name);
    if (st == SS_OK)
        *cfg = c;
    cJSON_Delete(root);
    return st;
}

ss_status ss_config_load_dir(const char *dir, ss_model_config *out, ss_err *err)
{
    char path[4096];
    char *text = NULL;
    size_t len = 0;
    snprintf(path, sizeof path, "%s/config.json", dir);
    SS_CHECK(ss_read_file(path, CFG_MAX_BYTES, &text, &len, err));
    ss_status st = ss_config_parse(text, len, path, out, err);
    ss_free(text);
    SS_CHECK(st);
    snprintf(path, sizeof path, "%s/generation_config.json", dir);
    if (!ss_path_exists(path))
        return SS_OK;
    SS_CHECK(ss_read_file(path, CFG_MAX_BYTES, &text, &len, err));
    st = ss_genconfig_parse(text, len, path, out, err);
    ss_free(text);
    return st;
}

void ss_config_rope_inv_freq(const ss_model_config *cfg, float *inv_freq)
{
    int half = cfg->head_dim / 2;
    for (int i = 0; i < half; i++) {
        /* As the reference computes it: in float32, base ** (2i / dim). */
        float expo = (float)(2 * i) / (float)cfg->head_dim;
        float f = 1.0f / powf((float)cfg->rope_theta, expo);
        if (cfg->rope_type == SS_ROPE_LINEAR) {
            f = f / (float)cfg->rope_factor;
        } else if (cfg->rope_type == SS_ROPE_LLAMA3) {
            const float pi = 3.14159265358979323846f;
            float factor = (float)cfg->rope_factor, lo = (float)cfg->rope_low_freq_factor,
                  hi = (float)cfg->rope_high_freq_factor, old = (float)cfg->rope_orig_max_pos;
            float low_wavelen = old / lo, high_wavelen = old / hi;
            float wavelen = 2.0f * pi / f;
            if (wavelen > low_wavelen) {
                f = f / factor;
            } else if (wavelen >= high_wavelen) {
                float smooth = (old / wavelen - lo) / (hi - lo);
                f = (1.0f - smooth) * f / factor + smooth * f;
            }
        }
        inv_freq[i] = f;
    }
}
