/* http_frame.h — a second, strict reading of a request's framing from its raw bytes, alongside libevent's parser:
 * chunk-size lines, the CRLFs of chunked bodies, trailers and body sizes that libevent 2.1 reads loosely. */
#ifndef SS_HTTP_FRAME_H
#define SS_HTTP_FRAME_H

#include <stddef.h>

/* One request's framing, fed the connection's bytes from the request's first byte on. It reads the request line
 * and headers as libevent 2.1 splits them (lines end in LF, a CR before it dropped; a line that starts with a
 * space or tab continues the previous header), then:
 * - with a NUL byte anywhere in the head: refused, 400 (libevent reads its lines as C strings);
 * - with a Transfer-Encoding header (any value) and a Content-Length: refused, 400;
 * - with a first Transfer-Encoding of "chunked" (what libevent reads as chunked; it reads no body for another
 *   coding, which the header checks of http_server.c refuse): the body is read strictly by RFC 9112 section 7.1,
 *   and refused 400 at the first byte libevent would read otherwise or more loosely: a size that is not 1*HEXDIG
 *   ending in CRLF ("0x24", "+24", " 24", "24 x", a bare LF, an empty line), a chunk extension, chunk data not
 *   followed by CRLF, or a trailer field (libevent would merge trailers into the headers); or 413 once the sizes
 *   add up to more than max_body;
 * - otherwise, with a first Content-Length of decimal digits above max_body: refused, 413;
 * - otherwise nothing more is read: what follows is libevent's (and the header checks' of http_server.c).
 * The verdict depends only on the bytes, not on how they are split into calls. Once the request is over or
 * refused, further bytes are ignored: a new request needs a new scanner. */
typedef struct ss_http_frame ss_http_frame;

/* The refusal of a request with both framing headers (here and in http_server.c's header checks). */
#define SS_HTTP_MSG_TE_AND_CL                                                                                  \
    "Transfer-Encoding and Content-Length are both given; a request is framed by one of them (RFC 9112 section 6.3)"

/* NULL when out of memory. max_body is the body cap (--max-body-bytes). Destroy with ss_http_frame_destroy. */
ss_http_frame *ss_http_frame_create(size_t max_body);
/* NULL is a no-op. */
void ss_http_frame_destroy(ss_http_frame *f);

/* Reads n more bytes (borrowed). Returns 0 while the framing is fine (or no longer read), else the status the
 * request is refused with (400 or 413), the same on every later call. */
int ss_http_frame_feed(ss_http_frame *f, const void *bytes, size_t n);
/* The refusal's status (0: none) and reason, one sentence naming what was wrong ("" when none; owned by f). */
int ss_http_frame_status(const ss_http_frame *f);
const char *ss_http_frame_reason(const ss_http_frame *f);
/* 1 when the request line's target is a path under /v2 (Triton's routes, whose errors have Triton's shape). */
int ss_http_frame_triton(const ss_http_frame *f);

#endif
