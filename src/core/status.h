/* status.h — the one status enum of shardserve, its messages, and the error-detail buffer.
 * Every fallible function returns ss_status and reports detail through an ss_err the caller owns. */
#ifndef SS_STATUS_H
#define SS_STATUS_H

#include <stddef.h>

typedef enum ss_status {
    SS_OK = 0,
    SS_ERR_NOMEM,        /* an allocation failed */
    SS_ERR_INVALID_ARG,  /* a caller passed something invalid (flag, request field) */
    SS_ERR_IO,           /* a file or socket operation failed */
    SS_ERR_FORMAT,       /* input data is malformed (file, JSON, header) */
    SS_ERR_UNSUPPORTED,  /* well-formed but not supported (architecture, option) */
    SS_ERR_NOT_FOUND,    /* a named thing does not exist (file, tensor, model) */
    SS_ERR_CUDA,         /* a CUDA / cuBLAS call failed */
    SS_ERR_COMM,         /* a collective or peer connection failed */
    SS_ERR_CAPACITY,     /* a bounded resource is full (queue, KV blocks, context) */
    SS_ERR_CANCELLED,    /* the operation was cancelled */
    SS_ERR_TIMEOUT,      /* a deadline passed */
    SS_ERR_MISMATCH,     /* two sides disagree (version stamp, digest) */
    SS_ERR_INTERNAL,     /* a bug: an invariant did not hold */
    SS_STATUS_COUNT
} ss_status;

/* Static, never NULL. */
const char *ss_status_str(ss_status st);

/* Detail for the last error, owned by the caller (usually on its stack or inside a handle). */
typedef struct ss_err {
    char msg[1024];
} ss_err;

/* Sets err->msg from a printf format (err may be NULL) and returns st, so that
 * `return ss_err_set(err, SS_ERR_FORMAT, "%s: bad", path);` reads naturally. */
ss_status ss_err_set(ss_err *err, ss_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
#ifdef __clang_analyzer__
/* For the static analyzer (scripts/analyze.sh) only: says that the result is st, so that it does not follow error
 * paths as if they succeeded. */
#define ss_err_set(err, st, ...) ((ss_err_set)((err), (st), __VA_ARGS__), (st))
#endif

/* Prefixes err->msg with "prefix: " (e.g. a file name added by an outer layer). */
void ss_err_prefix(ss_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Process exit codes of DESIGN.md §2. */
enum {
    SS_EXIT_OK = 0,
    SS_EXIT_FAILURE = 1,
    SS_EXIT_USAGE = 2,
    SS_EXIT_BAD_INPUT = 3,
    SS_EXIT_PEER_LOST = 4,
    SS_EXIT_OOM = 5,
};
/* Maps a status to the exit code of DESIGN.md §2. */
int ss_status_exit_code(ss_status st);

#define SS_CHECK(call)                      \
    do {                                    \
        ss_status ss_check_st_ = (call);    \
        if (ss_check_st_ != SS_OK)          \
            return ss_check_st_;            \
    } while (0)

#define SS_CHECK_GOTO(call, st, label)      \
    do {                                    \
        (st) = (call);                      \
        if ((st) != SS_OK)                  \
            goto label;                     \
    } while (0)

#endif
