/* bench_sse.h — an incremental Server-Sent Events parser (the WHATWG event-stream grammar): bytes go in
 * as they arrive, split anywhere (even inside a "\r\n"), and each complete event comes out once. */
#ifndef SS_BENCH_SSE_H
#define SS_BENCH_SSE_H

#include <stddef.h>

#include "core/status.h"

typedef struct ss_sse_parser ss_sse_parser;

/* Called once per dispatched event. event: the `event:` field ("message" when absent); data: the
 * `data:` lines joined by '\n', NUL-terminated, len bytes (may hold NULs). Both are borrowed until the
 * callback returns. A status other than SS_OK stops ss_sse_parser_feed, which returns it. */
typedef ss_status (*ss_sse_event_fn)(void *user, const char *event, const char *data, size_t len);

typedef struct ss_sse_params {
    size_t max_event_bytes; /* cap on one event's buffered bytes (line + data); > 0 */
} ss_sse_params;

void ss_sse_default_params(ss_sse_params *p); /* max_event_bytes = 1 MiB */

/* *out is owned by the caller, released with ss_sse_parser_destroy. */
ss_status ss_sse_parser_create(const ss_sse_params *params, ss_sse_parser **out, ss_err *err);
void ss_sse_parser_destroy(ss_sse_parser *p);

/* Feeds n bytes. Calls fn for every event completed by them, in order. Returns SS_ERR_CAPACITY (err
 * says so) when an event outgrows max_event_bytes, or the first non-OK status fn returned; after an
 * error the parser must be reset before reuse. */
ss_status ss_sse_parser_feed(ss_sse_parser *p, const char *buf, size_t n, ss_sse_event_fn fn, void *user, ss_err *err);

/* 1 when bytes of an unfinished line or event are buffered (a stream that ends here was cut short). */
int ss_sse_parser_pending(const ss_sse_parser *p);

/* Forgets buffered bytes, to parse a new stream. */
void ss_sse_parser_reset(ss_sse_parser *p);

#endif
