/* load_check.h — checks a rank file against its quick digest: over the very bytes the loader maps, on a thread of its
 * own while the weights load from them, so a damaged engine file fails the load; or at once, over a file by path. */
#ifndef SS_ENGINE_LOAD_CHECK_H
#define SS_ENGINE_LOAD_CHECK_H

#include <stddef.h>

#include "core/status.h"

typedef struct ss_load_check ss_load_check;

/* Starts hashing data[0, len) (borrowed: the file's mapping, which must stay mapped until the check is finished or
 * cancelled); `name` (the file's path, for messages) and `expected` ("xxh3-128:<hex>", from the manifest) are
 * copied. The caller ends it with ss_load_check_finish or ss_load_check_cancel. */
ss_status ss_load_check_start(const void *data, size_t len, const char *name, const char *expected,
                              ss_load_check **out, ss_err *err);
/* Waits for the hash and compares: SS_ERR_MISMATCH names the file and says what to do. Frees chk. */
ss_status ss_load_check_finish(ss_load_check *chk, ss_err *err);
/* Stops the check early and frees chk. NULL is a no-op. */
void ss_load_check_cancel(ss_load_check *chk);

/* The same check at once over the file at path, read whole (for a file the loader could not read: damage, or
 * another fault). SS_OK when it matches, SS_ERR_MISMATCH (the same message) when not, else the read's error. */
ss_status ss_load_check_file(const char *path, const char *expected, ss_err *err);

#endif
