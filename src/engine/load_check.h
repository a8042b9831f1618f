/* load_check.h — checks a rank file against its quick digest on a thread of its own while the weights load from it,
 * so a damaged engine file fails the load without adding to its time (the check reads ahead of the loader). */
#ifndef SS_ENGINE_LOAD_CHECK_H
#define SS_ENGINE_LOAD_CHECK_H

#include "core/status.h"

typedef struct ss_load_check ss_load_check;

/* Starts hashing the file at `path` (both strings are copied); `expected` is its "xxh3-128:<hex>" from the manifest.
 * The caller ends it with ss_load_check_finish or ss_load_check_cancel. */
ss_status ss_load_check_start(const char *path, const char *expected, ss_load_check **out, ss_err *err);
/* Waits for the hash and compares: SS_ERR_MISMATCH names the file and says what to do. Frees chk. */
ss_status ss_load_check_finish(ss_load_check *chk, ss_err *err);
/* Stops the check early (the load failed for another reason) and frees chk. NULL is a no-op. */
void ss_load_check_cancel(ss_load_check *chk);

#endif
