/* manifest.h — an engine's manifest.json: format version, source (id, revision, file digests), model
 * summary, tp/pp/dtype, per-rank files with sizes and digests, tool version. Parsed strictly. */
#ifndef SS_ENGINE_MANIFEST_H
#define SS_ENGINE_MANIFEST_H

#include <stddef.h>
#include <stdint.h>

#include "core/dtype.h"
#include "core/status.h"

#define SS_MANIFEST_VERSION 1
#define SS_MANIFEST_NAME "manifest.json"
#define SS_MANIFEST_MAX_BYTES (16u << 20)

typedef struct ss_manifest_file {
    char *name;   /* a plain file name inside the engine (or source) folder; owned */
    int64_t size; /* bytes */
    char *digest; /* "sha256:<hex>", "header-sha256:<hex>" or NULL when unknown; owned */
    char *quick_digest; /* rank files: "xxh3-128:<hex>" (quick_digest.h), checked at every load; NULL in engines
                         * built before it (sizes only then); owned */
} ss_manifest_file;

typedef struct ss_manifest_model {
    char arch[64];       /* "LlamaForCausalLM" */
    int32_t vocab_size, hidden_size, intermediate_size, n_layers, n_heads, n_kv_heads, head_dim;
    int tie_embeddings;
} ss_manifest_model;

typedef struct ss_manifest {
    int format_version;        /* SS_MANIFEST_VERSION */
    char *tool_version;        /* SS_VERSION of the builder */
    char *source_id;           /* "org/name" or "local--<dir>" */
    char *source_revision;     /* commit sha, or the local folder digest */
    ss_manifest_file *source_files;
    size_t n_source_files;
    ss_manifest_model model;
    int tp, pp;
    ss_dtype dtype;            /* bf16, f16 or f32 */
    ss_manifest_file *ranks;   /* [tp*pp], index = rank */
    size_t n_ranks;
    ss_manifest_file *extras;  /* config.json, tokenizer files, ... */
    size_t n_extras;
} ss_manifest;

/* "bf16" | "fp16" | "fp32" (also "f16", "f32", "float16", "bfloat16", "float32"). */
ss_status ss_engine_dtype_parse(const char *s, ss_dtype *out, ss_err *err);
/* "bf16" | "fp16" | "fp32" (static). */
const char *ss_engine_dtype_name(ss_dtype t);

/* Parses manifest text; `name` (e.g. the path) prefixes errors. *out is the caller's (destroy). */
ss_status ss_manifest_parse(const char *json, size_t len, const char *name, ss_manifest **out, ss_err *err);
/* Reads <dir>/manifest.json. */
ss_status ss_manifest_load(const char *dir, ss_manifest **out, ss_err *err);
/* Serializes (pretty JSON, caller frees with ss_free). */
ss_status ss_manifest_to_json(const ss_manifest *m, char **out, ss_err *err);
/* Writes <dir>/manifest.json and fsyncs it. */
ss_status ss_manifest_save(const ss_manifest *m, const char *dir, ss_err *err);
void ss_manifest_destroy(ss_manifest *m);

/* Whether a file name is safe inside an engine folder (no '/', not "." or "..", not empty). */
int ss_manifest_name_ok(const char *name);

#endif
