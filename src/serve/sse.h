/* sse.h — Server-Sent Events framing for streaming responses (text/event-stream). */
#ifndef SS_SSE_H
#define SS_SSE_H

#include <stddef.h>

#include "serve/api_common.h"

/* Appends one event carrying data: every line of data becomes a "data: " line, then a blank line.
 * "data: [DONE]" ends OpenAI streams (ss_sse_done). Errors are sticky in out->failed. */
void ss_sse_event(ss_jbuf *out, const char *data, size_t n);
void ss_sse_done(ss_jbuf *out);

#endif
