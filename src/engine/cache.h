/* cache.h — the engine cache layout of DESIGN.md §3: keys for Hub and local sources, engine and lock
 * paths, the digest of a local checkpoint folder, and the file-system helpers the builder needs. */
#ifndef SS_ENGINE_CACHE_H
#define SS_ENGINE_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "core/dtype.h"
#include "core/status.h"
#include "engine/manifest.h"

#define SS_CACHE_PATH_MAX 4096

/* "org/name" -> "org--name" (the Hub cache's folder convention). */
ss_status ss_cache_repo_key(const char *repo_id, char *buf, size_t cap, ss_err *err);

/* $cache/engines/<key>/<rev>/tp<T>-pp<P>-<dtype> and the lock file beside it (…/tp<T>-pp<P>-<dtype>.lock). */
ss_status ss_cache_engine_dir(const char *cache, const char *key, const char *rev, int tp, int pp, ss_dtype dt,
                              char *dir, size_t dir_cap, char *lock, size_t lock_cap, ss_err *err);

/* Is this a file a checkpoint needs: *.safetensors, *.json, tokenizer.model (top level only)? */
int ss_cache_wanted_file(const char *name);

/* Digest of a local checkpoint folder: its wanted files' names and sizes, the safetensors headers and
 * the full contents of the small files. *files and *n get one entry per file ("header-sha256:" digests
 * for safetensors, "sha256:" for the others; caller frees with ss_cache_files_free). key_hex gets the
 * first 32 hex digits of the digest over all of them. */
ss_status ss_cache_local_digest(const char *dir, char key_hex[33], ss_manifest_file **files, size_t *n, ss_err *err);
void ss_cache_files_free(ss_manifest_file *files, size_t n);

/* snprintf into a path buffer; SS_ERR_INVALID_ARG when it does not fit. */
ss_status ss_cache_path(char *buf, size_t cap, ss_err *err, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* mkdir -p (mode 0755). */
ss_status ss_cache_mkdirs(const char *path, ss_err *err);
/* Removes a folder tree we created (plain files and folders only; does not follow links). */
ss_status ss_cache_rmtree(const char *path, ss_err *err);
/* fsyncs a folder (after creating or renaming entries in it). */
ss_status ss_cache_fsync_dir(const char *path, ss_err *err);
/* Copies src to dst (created/truncated) and fsyncs it; *size gets the bytes copied. */
ss_status ss_cache_copy_file(const char *src, const char *dst, int64_t *size, ss_err *err);

#endif
