/* quick_digest.h — the cheap whole-file digest of an engine's files (XXH3-128, libxxhash): fast enough to check
 * every rank file at every load, beside the sha256 that `prepare --check` reads. Text form "xxh3-128:<32 hex>". */
#ifndef SS_ENGINE_QUICK_DIGEST_H
#define SS_ENGINE_QUICK_DIGEST_H

#include <stddef.h>

#include "core/status.h"

#define SS_QUICK_DIGEST_PREFIX "xxh3-128:"
#define SS_QUICK_DIGEST_LEN 42 /* the prefix, 32 hex digits and the terminator */

typedef struct ss_quick_digest ss_quick_digest;

/* A fresh hashing state; caller destroys. */
ss_status ss_quick_digest_create(ss_quick_digest **out, ss_err *err);
void ss_quick_digest_destroy(ss_quick_digest *h);
ss_status ss_quick_digest_update(ss_quick_digest *h, const void *data, size_t len, ss_err *err);
/* Writes "xxh3-128:<hex>" of everything fed since create into out (the state may be fed on and read again). */
void ss_quick_digest_text(const ss_quick_digest *h, char out[SS_QUICK_DIGEST_LEN]);
/* Whether s is a well-formed digest text (the prefix and 32 lowercase hex digits). */
int ss_quick_digest_valid(const char *s);

#endif
