/* fileio.h — reading whole small files (JSON configs) with a size cap, and path helpers. */
#ifndef SS_FILEIO_H
#define SS_FILEIO_H

#include <errno.h>
#include <stddef.h>

#include "core/status.h"

/* Reads `path` into a NUL-terminated buffer (*out, caller ss_free's). Files larger than cap bytes
 * are refused with SS_ERR_FORMAT; a missing or unreadable one is SS_ERR_NOT_FOUND (ss_file_error_status). */
ss_status ss_read_file(const char *path, size_t cap, char **out, size_t *len, ss_err *err);
/* The status of a failed open or read of an input file: SS_ERR_NOT_FOUND when the file is missing or cannot be
 * read for a reason of its own (no permission, a folder where a file should be, a path through a file, a loop):
 * the input's fault, exit 3; SS_ERR_IO for the others (EIO, EMFILE, ...). */
static inline ss_status ss_file_error_status(int errnum)
{
    switch (errnum) {
    case ENOENT:
    case EACCES:
    case EPERM:
    case ENOTDIR:
    case EISDIR:
    case ELOOP:
    case ENAMETOOLONG: return SS_ERR_NOT_FOUND;
    default: return SS_ERR_IO; /* (inline: callers, and the analyzer, see it is never SS_OK) */
    }
}
/* 1 if path exists (any type). */
int ss_path_exists(const char *path);

#endif
