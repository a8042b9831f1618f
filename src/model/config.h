/* config.h — a checkpoint's config.json and generation_config.json, parsed into one struct.
 * Supports Llama, Mistral, Qwen2 and Qwen3 causal LMs; anything else is refused by name. */
#ifndef SS_MODEL_CONFIG_H
#define SS_MODEL_CONFIG_H

#include <stdint.h>

#include "core/status.h"

typedef enum ss_arch { SS_ARCH_LLAMA = 0, SS_ARCH_MISTRAL, SS_ARCH_QWEN2, SS_ARCH_QWEN3 } ss_arch;
typedef enum ss_rope_type { SS_ROPE_DEFAULT = 0, SS_ROPE_LLAMA3, SS_ROPE_LINEAR } ss_rope_type;

#define SS_MAX_EOS 8

/* The sampling settings of generation_config.json: the defaults of requests that leave them out (as
 * vLLM takes them), each only where its has_ flag is set. `"do_sample": false` means greedy (temperature
 * 0) whatever else the file says, as in transformers. Values out of range are dropped with a warning. */
typedef struct ss_gen_defaults {
    int has_temperature, has_top_p, has_top_k, has_min_p, has_repetition_penalty;
    float temperature, top_p, min_p, repetition_penalty;
    int32_t top_k; /* 0: off */
} ss_gen_defaults;

typedef struct ss_model_config {
    ss_arch arch;
    char arch_name[64];        /* "LlamaForCausalLM" */
    int32_t vocab_size;
    int32_t hidden_size;       /* dim */
    int32_t intermediate_size; /* MLP inner size */
    int32_t n_layers;
    int32_t n_heads;
    int32_t n_kv_heads;
    int32_t head_dim;          /* explicit, or hidden / heads */
    int32_t max_position;      /* max_position_embeddings */
    float rms_eps;
    double rope_theta;
    ss_rope_type rope_type;
    double rope_factor;           /* llama3 / linear */
    double rope_low_freq_factor;  /* llama3 */
    double rope_high_freq_factor; /* llama3 */
    int32_t rope_orig_max_pos;    /* llama3 original_max_position_embeddings */
    int tie_embeddings;
    int attn_bias;  /* q/k/v projections have biases (Qwen2 always; others per attention_bias) */
    int qk_norm;    /* per-head RMSNorm of q and k (Qwen3) */
    int32_t bos_id; /* -1 if none */
    int32_t n_eos;
    int32_t eos_ids[SS_MAX_EOS];
    ss_gen_defaults gen; /* generation_config.json's sampling settings */
    /* quantization_config of an fp8 checkpoint (fp8, fbgemm_fp8, compressed-tensors float8): its weights are
     * F8_E4M3 with scale tensors (model/fp8_weights.h); --quantization auto then serves fp8 projections. */
    int fp8_weights;
    int32_t fp8_block_rows, fp8_block_cols; /* weight_block_size (block-wise scales); 0: none */
} ss_model_config;

/* Parses config.json text (`name` is used in error messages). */
ss_status ss_config_parse(const char *json, size_t len, const char *name, ss_model_config *out, ss_err *err);
/* Reads <dir>/config.json and, if present, <dir>/generation_config.json (its eos ids win). */
ss_status ss_config_load_dir(const char *dir, ss_model_config *out, ss_err *err);
/* Merges generation_config.json text into cfg (eos_token_id int or list, bos_token_id, the sampling
 * settings of ss_gen_defaults). */
ss_status ss_genconfig_parse(const char *json, size_t len, const char *name, ss_model_config *cfg, ss_err *err);

/* Fills inv_freq[head_dim/2] with the rotary inverse frequencies after scaling (llama3, linear). */
void ss_config_rope_inv_freq(const ss_model_config *cfg, float *inv_freq);

#endif
