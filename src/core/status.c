/* status.c — messages for ss_status and the helpers that fill an ss_err. */
#include "core/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *ss_status_str(ss_status st)
{
    switch (st) {
    case SS_OK: return "ok";
    case SS_ERR_NOMEM: return "out of memory";
    case SS_ERR_INVALID_ARG: return "invalid argument";
    case SS_ERR_IO: return "I/O error";
    case SS_ERR_FORMAT: return "malformed input";
    case SS_ERR_UNSUPPORTED: return "unsupported";
    case SS_ERR_NOT_FOUND: return "not found";
    case SS_ERR_CUDA: return "CUDA error";
    case SS_ERR_COMM: return "communication error";
    case SS_ERR_CAPACITY: return "capacity exceeded";
    case SS_ERR_CANCELLED: return "cancelled";
    case SS_ERR_TIMEOUT: return "timed out";
    case SS_ERR_MISMATCH: return "mismatch";
    case SS_ERR_INTERNAL: return "internal error";
    case SS_STATUS_COUNT: break;
    }
    return "unknown status";
}

ss_status (ss_err_set)(ss_err *err, ss_status st, const char *fmt, ...) /* (parenthesised: status.h's analyzer macro) */
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return st;
}

void ss_err_prefix(ss_err *err, const char *fmt, ...)
{
    if (!err)
        return;
    char prefix[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    char old[sizeof err->msg];
    memcpy(old, err->msg, sizeof old);
    size_t pl = strlen(prefix);
    if (pl > sizeof err->msg - 3)
        pl = sizeof err->msg - 3;
    memcpy(err->msg, prefix, pl);
    memcpy(err->msg + pl, ": ", 2);
    size_t rest = sizeof err->msg - pl - 3;
    size_t ol = strnlen(old, rest);
    memcpy(err->msg + pl + 2, old, ol);
    err->msg[pl + 2 + ol] = '\0';
}

int ss_status_exit_code(ss_status st)
{
    switch (st) {
    case SS_OK: return SS_EXIT_OK;
    case SS_ERR_INVALID_ARG: return SS_EXIT_USAGE;
    case SS_ERR_FORMAT:
    case SS_ERR_UNSUPPORTED:
    case SS_ERR_NOT_FOUND:
    case SS_ERR_MISMATCH: return SS_EXIT_BAD_INPUT;
    case SS_ERR_COMM:
    case SS_ERR_TIMEOUT: return SS_EXIT_PEER_LOST;
    case SS_ERR_NOMEM:
    case SS_ERR_CAPACITY: return SS_EXIT_OOM;
    default: return SS_EXIT_FAILURE;
    }
}
