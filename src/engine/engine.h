/* engine.h — prepared engines (DESIGN.md §3): find or build the per-rank split of a checkpoint in the
 * cache (downloading it from the Hub when given an org/name id), verify one, and locate rank files. */
#ifndef SS_ENGINE_H
#define SS_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "core/dtype.h"
#include "core/status.h"
#include "engine/lock.h"
#include "engine/manifest.h"

typedef enum ss_engine_verify_level {
    SS_ENGINE_VERIFY_SIZES = 0, /* manifest parses, every file present with its size (instant) */
    SS_ENGINE_VERIFY_LOAD,      /* and the small files' sha256 match: a load's check (milliseconds; the rank file's
                                 * quick digest is read beside the load, load_check.h) */
    SS_ENGINE_VERIFY_FULL,      /* and every file's sha256 and quick digest match (reads everything) */
} ss_engine_verify_level;

typedef struct ss_engine_params {
    const char *model;       /* Hub id "org/name" or a local checkpoint folder; borrowed */
    const char *revision;    /* Hub branch, tag or commit (default "main") */
    int tp, pp;              /* default 1, 1 */
    ss_dtype dtype;          /* bf16 (default), f16 or f32: weights are converted while writing */
    const char *cache_dir;   /* required: the cache root ($CACHE) */
    const char *hf_endpoint; /* default "https://huggingface.co" */
    const char *hf_token;    /* NULL for anonymous; never logged */
    int download_parallel;   /* files downloaded at once (default 4) */
    int threads;             /* builder threads (0: min(ranks, 4)) */
    ss_engine_verify_level verify; /* check applied to an existing engine before reuse */
    ss_lock_params lock;
    int64_t throttle_bps;    /* test only: cap the builder's write rate */
    int tty;                 /* progress as a status line (else log lines) */
    int quiet;               /* no progress output */
} ss_engine_params;

ss_engine_params ss_engine_default_params(void);

/* Finds or builds the engine for p and gives its folder in *engine_dir (caller frees with ss_free).
 * Safe to run from many processes on one shared cache at once (one builds, the rest wait). */
ss_status ss_engine_prepare(const ss_engine_params *p, char **engine_dir, ss_err *err);

/* What ss_engine_build writes besides the tensors. */
typedef struct ss_engine_build_params {
    const char *src_dir;     /* checkpoint folder */
    const char *out_dir;     /* existing, empty folder */
    const char *source_id;   /* recorded in the manifest */
    const char *source_revision;
    const ss_manifest_file *source_files; /* recorded in the manifest (borrowed) */
    size_t n_source_files;
    int tp, pp;
    ss_dtype dtype;
    int threads;
    int64_t throttle_bps;
    int tty, quiet;
} ss_engine_build_params;

/* Writes rank-XXXXX.safetensors for every rank, the copied config/tokenizer files and manifest.json
 * into out_dir, streaming tensor by tensor; all files fsync'd. No locking, no rename. */
ss_status ss_engine_build(const ss_engine_build_params *bp, ss_err *err);

/* Checks an engine folder; the error names the damaged or missing file. */
ss_status ss_engine_verify(const char *dir, ss_engine_verify_level level, ss_err *err);

/* <dir>/rank-<rank, 5 digits>.safetensors. */
ss_status ss_engine_rank_path(const char *dir, int rank, char *buf, size_t cap, ss_err *err);

#endif
