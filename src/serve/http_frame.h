/* http_frame.h — a second, strict reading of a request's head and framing from its raw bytes, alongside libevent's
 * parser: what libevent 2.1 reads loosely (chunked bodies, trailers) or refuses in HTML (bad heads). */
#ifndef SS_HTTP_FRAME_H
#define SS_HTTP_FRAME_H

#include <stddef.h>

/* One request's head and framing, fed the connection's bytes from the request's first byte on. Refused, at the
 * first byte where the verdict is sure (so no later than libevent 2.1 would refuse, in HTML):
 * - 431: a head (request line, header lines, line ends) longer than max_head (--max-header-bytes);
 * - 400: a request line that is not METHOD SP target SP HTTP/<digit>.<digit> (one space each, blanks after; a
 *   method of token bytes; a target of visible bytes), shorter than 14 bytes, or an empty line where it is due; a
 *   target libevent cannot read: CONNECT's not an authority, another's a colon in its first segment without a
 *   scheme, or an authority that is not [user@]host[:port] (%HH escapes, an IPv6 or IPvFuture literal, a port
 *   up to 65535); 505: a version other than HTTP/1.0 and HTTP/1.1;
 * - 400: a NUL, a CR not before an LF, or another control character but tab in the head (libevent reads lines as C
 *   strings); a header line that starts with white space (obsolete folding) or has no colon; a first
 *   Content-Length that is not decimal digits (spaces before, blanks after); Transfer-Encoding other than one
 *   "chunked" (spaces before, blanks after), or with a Content-Length;
 * - 417: an Expect other than 100-continue (spaces before, blanks after);
 * Lines end in LF, a CR before it dropped, as libevent 2.1 splits them. Then:
 * - with Transfer-Encoding "chunked": the body is read strictly by RFC 9112 section 7.1, and refused 400 at the
 *   first byte libevent would read otherwise or more loosely: a size that is not 1*HEXDIG ending in CRLF ("0x24",
 *   "+24", " 24", "24 x", a bare LF, an empty line), a chunk extension, chunk data not followed by CRLF, or a
 *   trailer field (libevent would merge trailers into the headers); or 413 once the sizes add up to more than
 *   max_body;
 * - otherwise, with a Content-Length above max_body: refused, 413;
 * - otherwise nothing more is read: what follows is libevent's (and the header checks' of http_server.c).
 * The verdict depends only on the bytes, not on how they are split into calls. Once the request is over or
 * refused, further bytes are ignored: a new request needs a new scanner. */
typedef struct ss_http_frame ss_http_frame;

/* The refusal of a request with both framing headers (here and in http_server.c's header checks). */
#define SS_HTTP_MSG_TE_AND_CL                                                                                  \
    "Transfer-Encoding and Content-Length are both given; a request is framed by one of them (RFC 9112 section 6.3)"

/* NULL when out of memory. max_body is the body cap (--max-body-bytes), max_head the head's (--max-header-bytes).
 * Destroy with ss_http_frame_destroy. */
ss_http_frame *ss_http_frame_create(size_t max_body, size_t max_head);
/* NULL is a no-op. */
void ss_http_frame_destroy(ss_http_frame *f);

/* Reads n more bytes (borrowed). Returns 0 while the framing is fine (or no longer read), else the status the
 * request is refused with (400, 413, 417, 431 or 505), the same on every later call. */
int ss_http_frame_feed(ss_http_frame *f, const void *bytes, size_t n);
/* The refusal's status (0: none) and reason, one sentence naming what was wrong ("" when none; owned by f). */
int ss_http_frame_status(const ss_http_frame *f);
const char *ss_http_frame_reason(const ss_http_frame *f);
/* 1 when the request line's target is a path under /v2 (Triton's routes, whose errors have Triton's shape). */
int ss_http_frame_triton(const ss_http_frame *f);

#endif
