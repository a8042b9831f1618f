/* fileio.h — reading whole small files (JSON configs) with a size cap, and path helpers. */
#ifndef SS_FILEIO_H
#define SS_FILEIO_H

#include <stddef.h>

#include "core/status.h"

/* Reads `path` into a NUL-terminated buffer (*out, caller ss_free's). Files larger than cap bytes
 * are refused with SS_ERR_FORMAT; a missing file is SS_ERR_NOT_FOUND. */
ss_status ss_read_file(const char *path, size_t cap, char **out, size_t *len, ss_err *err);
/* 1 if path exists (any type). */
int ss_path_exists(const char *path);

#endif
