/* digest.h — streaming SHA-256 (OpenSSL libcrypto EVP) for engine files and Hub downloads.
 * One ss_sha256 per stream; not thread-safe per object, independent objects are. */
#ifndef SS_ENGINE_DIGEST_H
#define SS_ENGINE_DIGEST_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

#define SS_SHA256_HEX 65 /* 64 hex digits and the terminator */

typedef struct ss_sha256 ss_sha256;

/* Creates a fresh hashing state; caller destroys. */
ss_status ss_sha256_create(ss_sha256 **out, ss_err *err);
void ss_sha256_destroy(ss_sha256 *h);
/* Restarts the stream (drops what was fed so far). */
ss_status ss_sha256_reset(ss_sha256 *h, ss_err *err);
ss_status ss_sha256_update(ss_sha256 *h, const void *data, size_t len, ss_err *err);
/* Writes the lowercase hex digest of everything fed since create/reset into hex[SS_SHA256_HEX]. */
ss_status ss_sha256_final_hex(ss_sha256 *h, char hex[SS_SHA256_HEX], ss_err *err);

/* Hashes the first `limit` bytes of an open fd from offset 0 (limit < 0: the whole file) into h
 * (which is not reset first). Streams through a bounded buffer. `name` is used in errors. */
ss_status ss_sha256_fd(ss_sha256 *h, int fd, int64_t limit, const char *name, ss_err *err);
/* Reads the file at `path` front to back in blocks of up to 8 MiB, handing each to fn (which may fail the read);
 * `path` names the file in errors. For a digest or two over one read of a large file. */
ss_status ss_file_blocks(const char *path, ss_status (*fn)(void *ctx, const void *block, size_t n, ss_err *err),
                         void *ctx, ss_err *err);
/* Whole-file digest of `path` as hex. */
ss_status ss_sha256_file(const char *path, char hex[SS_SHA256_HEX], ss_err *err);

#endif
