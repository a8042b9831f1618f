/* stop.h — stop-string matcher over streamed text: releases text as soon as it cannot be the start of a
 * stop string, holds back a possible partial match, and cuts exactly before the first stop string found
 * (which is never released). One per request; not thread-safe. */
#ifndef SS_STOP_H
#define SS_STOP_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

#define SS_STOP_MAX_LEN 1024 /* bytes per stop string */

typedef struct ss_stop ss_stop;

/* Copies the n non-empty stop strings (caller keeps its own). n = 0 gives a matcher that releases
 * everything at once. SS_ERR_INVALID_ARG for an empty or over-long string. Caller destroys. */
ss_status ss_stop_create(const char *const *stops, int32_t n, ss_stop **out, ss_err *err);
void ss_stop_destroy(ss_stop *m);

/* Appends text[0..len) and sets *out and *out_len to the text that is now safe to release (borrowed: valid
 * until the next call on m). With match = 0 stop strings are not looked for and everything is released.
 * *stopped = 1 when a stop string was found: *out ends right before it and later feeds release nothing.
 * *which is the index of the stop string found (or -1). */
ss_status ss_stop_feed(ss_stop *m, const char *text, size_t len, int match, const char **out, size_t *out_len,
                       int *stopped, int32_t *which, ss_err *err);

/* Releases whatever is still held (at the end of a generation that did not stop on a string). */
void ss_stop_flush(ss_stop *m, const char **out, size_t *out_len);

#endif
