/* http_frame.c — a request's framing read strictly from its raw bytes, byte by byte, beside libevent 2.1's parser.
 * Hand-written because libevent has no hook into its chunk reader: it reads a chunk's size with strtoll
 * ("0x24", "+24", " 24" and "24 anything" pass), skips empty lines where a size is due, needs no CRLF after a
 * chunk's data, takes a bare LF for CRLF, and merges trailer fields into the headers. A proxy in front that
 * reads such a body otherwise ends the request elsewhere, and the rest runs here as a request of its own
 * (request smuggling). http_server.c refuses the request as soon as this scanner does. */
#include "serve/http_frame.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "core/alloc.h"

typedef enum {
    F_REQLINE,    /* the request line, up to its LF */
    F_LINE,       /* a header line's first byte (an LF here ends the head) */
    F_NAME,       /* a header's name, up to its colon */
    F_VALUE,      /* the first Content-Length's or Transfer-Encoding's value, up to the LF */
    F_SKIP,       /* the rest of a line that decides nothing, up to the LF */
    F_SIZE0,      /* a chunk-size line's first byte: a hex digit */
    F_SIZE,       /* more hex digits, or the CR */
    F_SIZE_LF,    /* the LF after the size's CR */
    F_DATA,       /* a chunk's data */
    F_DATA_CR,    /* the CRLF after it */
    F_DATA_LF,
    F_TRAILER,    /* after the last chunk: the CR of the empty line that ends the body (no trailer fields) */
    F_TRAILER_LF,
    F_OVER,       /* the framing is read, or refused: later bytes are not this scanner's */
} frame_state;

typedef enum { H_OTHER, H_CL, H_TE } frame_header; /* the header the current line (or continuation) belongs to */

/* The first Content-Length's value as libevent 2.1 reads it: spaces skipped, then digits, then trailing white
 * space. */
typedef enum { CL_LEAD, CL_DIGITS, CL_TRAIL, CL_ODD } frame_cl;

#define FRAME_TARGET_CAP 24 /* the request line's bytes kept: enough to see "METHOD http://host/v2" mostly */
#define FRAME_NAME_CAP 20   /* longer names than "transfer-encoding" match nothing */
#define FRAME_TE_CAP 8      /* longer Transfer-Encoding values than "chunked" (past its blanks) are not it */

struct ss_http_frame {
    frame_state st;
    size_t max_body;
    int status;       /* 0, or the refusal's 400 / 413 */
    int cr_pending;   /* head only: a CR was read; dropped if an LF follows, else a byte of the line */
    int triton;
    char reason[224];
    /* the head */
    char line[FRAME_TARGET_CAP + 1]; /* the request line's first bytes (NUL-terminated) */
    size_t line_len;
    char name[FRAME_NAME_CAP];
    size_t name_len;  /* may exceed FRAME_NAME_CAP: then no match */
    frame_header hdr;
    int n_te, n_cl;
    frame_cl cl;
    int cl_valid;     /* the first Content-Length is a number (cl_value) */
    uint64_t cl_value;
    char te[FRAME_TE_CAP]; /* the first Transfer-Encoding's value, past its leading spaces */
    size_t te_len;    /* may exceed FRAME_TE_CAP: then not "chunked" */
    int te_blanks;    /* spaces and tabs after its last other byte (trimmed by libevent unless more follows) */
    int chunked;      /* it is "chunked", as libevent reads it: the body is chunked */
    /* the chunked body */
    uint64_t size, left, total;
    unsigned chunk;   /* the current chunk's number, from 1 */
};

ss_http_frame *ss_http_frame_create(size_t max_body)
{
    ss_http_frame *f = ss_calloc(1, sizeof *f);
    if (f)
        f->max_body = max_body;
    return f;
}

void ss_http_frame_destroy(ss_http_frame *f)
{
    ss_free(f);
}

int ss_http_frame_status(const ss_http_frame *f)
{
    return f->status;
}

const char *ss_http_frame_reason(const ss_http_frame *f)
{
    return f->reason;
}

int ss_http_frame_triton(const ss_http_frame *f)
{
    return f->triton;
}

__attribute__((format(printf, 3, 4))) static void frame_refuse(ss_http_frame *f, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f->reason, sizeof f->reason, fmt, ap);
    va_end(ap);
    f->status = status;
    f->st = F_OVER;
}

/* A byte as a message names it. */
static const char *frame_byte(char *buf, size_t cap, unsigned char c)
{
    if (c == '\r')
        snprintf(buf, cap, "a CR");
    else if (c == '\n')
        snprintf(buf, cap, "an LF");
    else if (c == ' ')
        snprintf(buf, cap, "a space");
    else if (c > 0x20 && c < 0x7f && c != '\'')
        snprintf(buf, cap, "'%c'", c);
    else
        snprintf(buf, cap, "byte 0x%02x", c);
    return buf;
}

/* A hex digit's value, or -1. */
static int frame_hex(unsigned char c)
{
    static const char digits[] = "0123456789abcdef";
    const char *p = c ? strchr(digits, tolower(c)) : NULL;
    return p ? (int)(p - digits) : -1;
}

/* The request line is over: is its target under /v2 (origin form, or absolute form past the authority)? */
static void frame_target(ss_http_frame *f)
{
    const char *t = strchr(f->line, ' ');
    if (!t)
        return;
    t++;
    if (!strncasecmp(t, "http://", 7) || !strncasecmp(t, "https://", 8)) {
        t = strchr(strstr(t, "//") + 2, '/');
        if (!t)
            return;
    }
    f->triton = !strncmp(t, "/v2", 3);
}

/* The empty line: the head is over, the body's framing decided. A Transfer-Encoding other than "chunked" (libevent
 * then reads no body) is left to the header checks of http_server.c, which refuse it. */
static void frame_head_end(ss_http_frame *f)
{
    if (f->n_te && f->n_cl) {
        frame_refuse(f, 400, "%s", SS_HTTP_MSG_TE_AND_CL);
    } else if (f->chunked) {
        f->st = F_SIZE0;
        f->chunk = 1;
    } else if (f->n_cl && f->cl_valid && f->cl_value > f->max_body) {
        frame_refuse(f, 413, "Content-Length %llu is larger than --max-body-bytes (%zu bytes)",
                     (unsigned long long)f->cl_value, f->max_body);
    } else {
        f->st = F_OVER;
    }
}

/* The first Content-Length's or Transfer-Encoding's value line is over. */
static void frame_value_end(ss_http_frame *f)
{
    if (f->hdr == H_CL) {
        f->cl_valid = f->cl == CL_DIGITS || f->cl == CL_TRAIL;
        return;
    }
    f->chunked = f->te_len == 7 && !strncasecmp(f->te, "chunked", 7);
}

static void frame_te_byte(ss_http_frame *f, unsigned char c)
{
    if (c == ' ' && f->te_len == 0 && f->te_blanks == 0)
        return; /* a leading space (libevent skips spaces, not tabs) */
    if (c == ' ' || c == '\t') {
        f->te_blanks++;
    } else {
        if (f->te_blanks) /* blanks inside the value: not "chunked" */
            f->te_len = FRAME_TE_CAP + 1;
        if (f->te_len < FRAME_TE_CAP)
            f->te[f->te_len] = (char)c;
        f->te_len++;
    }
}

static void frame_cl_byte(ss_http_frame *f, unsigned char c)
{
    if (f->cl == CL_ODD)
        return;
    if (c >= '0' && c <= '9' && (f->cl == CL_LEAD || f->cl == CL_DIGITS)) {
        uint64_t d = (uint64_t)(c - '0');
        f->cl_value = f->cl_value > (UINT64_MAX - d) / 10 ? UINT64_MAX : f->cl_value * 10 + d;
        f->cl = CL_DIGITS;
    } else if (c == ' ' && f->cl == CL_LEAD) {
        /* libevent skips leading spaces (only spaces) */
    } else if ((c == ' ' || c == '\t') && f->cl != CL_LEAD) {
        f->cl = CL_TRAIL;
    } else {
        f->cl = CL_ODD; /* not a plain number: the header checks refuse it */
    }
}

/* One byte of the head, a CR included when it is not the one before an LF. */
static void frame_head_byte(ss_http_frame *f, unsigned char c)
{
    if (c == '\0') {
        /* libevent reads lines as C strings: a NUL cuts a value short, and a line that starts with one ends the
         * head there, so the scanner would read on out of step. No request holds one (RFC 9110 section 5.5). */
        frame_refuse(f, 400, "the request's %s holds a NUL byte (RFC 9110 section 5.5)",
                     f->st == F_REQLINE ? "request line" : "header section");
        return;
    }
    switch (f->st) {
    case F_REQLINE:
        if (c == '\n') {
            frame_target(f);
            f->st = F_LINE;
        } else if (f->line_len < FRAME_TARGET_CAP) {
            f->line[f->line_len++] = (char)c;
        }
        return;
    case F_LINE:
        if (c == '\n') {
            frame_head_end(f);
        } else if (c == ' ' || c == '\t') {
            /* a continuation: libevent appends it to the last header's value ("5 6" is no length, "chunked x"
             * no coding it reads) */
            if (f->hdr == H_CL && f->n_cl == 1) {
                f->cl = CL_ODD;
                f->cl_valid = 0;
            }
            if (f->hdr == H_TE && f->n_te == 1)
                f->chunked = 0;
            f->st = F_SKIP;
        } else {
            f->name_len = 0;
            f->st = F_NAME;
            frame_head_byte(f, c);
        }
        return;
    case F_NAME:
        if (c == '\n') { /* no colon: libevent refuses the head */
            f->hdr = H_OTHER;
            f->st = F_LINE;
        } else if (c == ':') {
            f->hdr = H_OTHER;
            if (f->name_len == 14 && !strncasecmp(f->name, "content-length", 14))
                f->hdr = H_CL;
            else if (f->name_len == 17 && !strncasecmp(f->name, "transfer-encoding", 17))
                f->hdr = H_TE;
            if (f->hdr == H_CL && ++f->n_cl == 1) {
                f->cl = CL_LEAD;
                f->st = F_VALUE;
            } else if (f->hdr == H_TE && ++f->n_te == 1) {
                f->st = F_VALUE;
            } else {
                f->st = F_SKIP;
            }
        } else {
            if (f->name_len < FRAME_NAME_CAP)
                f->name[f->name_len] = (char)c;
            f->name_len++;
        }
        return;
    case F_VALUE:
        if (c == '\n') {
            frame_value_end(f);
            f->st = F_LINE;
        } else if (f->hdr == H_CL) {
            frame_cl_byte(f, c);
        } else {
            frame_te_byte(f, c);
        }
        return;
    case F_SKIP:
        if (c == '\n')
            f->st = F_LINE;
        return;
    default: return;
    }
}

/* One byte of a chunked body (the data's bytes are skipped in bulk by ss_http_frame_feed). */
static void frame_body_byte(ss_http_frame *f, unsigned char c)
{
    char b[16];
    int h = frame_hex(c);
    switch (f->st) {
    case F_SIZE0:
        if (h < 0) {
            frame_refuse(f, 400,
                         "chunk %u of the chunked body: its size line starts with %s; a size is hex digits ending in "
                         "CRLF (RFC 9112 section 7.1)",
                         f->chunk, frame_byte(b, sizeof b, c));
            return;
        }
        f->size = (uint64_t)h;
        f->st = F_SIZE;
        return;
    case F_SIZE:
        if (h >= 0) {
            /* saturates: past the cap the size only has to stay above it */
            f->size = f->size > ((uint64_t)1 << 59) ? f->size : f->size * 16 + (uint64_t)h;
        } else if (c == '\r') {
            f->st = F_SIZE_LF;
        } else if (c == ';') {
            frame_refuse(f, 400, "chunk %u of the chunked body has a chunk extension (';'); extensions are not "
                         "accepted", f->chunk);
        } else {
            frame_refuse(f, 400,
                         "chunk %u of the chunked body: %s after its size's hex digits, where CRLF must follow "
                         "(RFC 9112 section 7.1)",
                         f->chunk, frame_byte(b, sizeof b, c));
        }
        return;
    case F_SIZE_LF:
        if (c != '\n') {
            frame_refuse(f, 400, "chunk %u of the chunked body: its size line's CR is followed by %s, not an LF",
                         f->chunk, frame_byte(b, sizeof b, c));
        } else if (f->size > f->max_body - f->total) {
            frame_refuse(f, 413, "the chunked body is larger than --max-body-bytes (%zu bytes)", f->max_body);
        } else if (f->size == 0) {
            f->st = F_TRAILER;
        } else {
            f->total += f->size;
            f->left = f->size;
            f->st = F_DATA;
        }
        return;
    case F_DATA_CR:
    case F_DATA_LF:
        if (c != (f->st == F_DATA_CR ? '\r' : '\n')) {
            frame_refuse(f, 400,
                         "chunk %u of the chunked body: its %llu bytes of data are followed by %s, not CRLF "
                         "(RFC 9112 section 7.1)",
                         f->chunk, (unsigned long long)f->size, frame_byte(b, sizeof b, c));
        } else if (f->st == F_DATA_CR) {
            f->st = F_DATA_LF;
        } else {
            f->chunk++;
            f->st = F_SIZE0;
        }
        return;
    case F_TRAILER:
    case F_TRAILER_LF:
        if (c != (f->st == F_TRAILER ? '\r' : '\n'))
            frame_refuse(f, 400,
                         "the chunked body's last chunk is followed by %s, not the CRLF that ends it: trailer fields "
                         "are not accepted",
                         frame_byte(b, sizeof b, c));
        else
            f->st = f->st == F_TRAILER ? F_TRAILER_LF : F_OVER;
        return;
    default: return;
    }
}

int ss_http_frame_feed(ss_http_frame *f, const void *bytes, size_t n)
{
    const unsigned char *p = bytes;
    for (size_t i = 0; i < n && f->st != F_OVER; i++) {
        if (f->st == F_DATA) {
            size_t take = n - i < f->left ? n - i : (size_t)f->left;
            f->left -= take;
            i += take - 1;
            if (f->left == 0)
                f->st = F_DATA_CR;
            continue;
        }
        if (f->st >= F_SIZE0) {
            frame_body_byte(f, p[i]);
            continue;
        }
        if (f->cr_pending) {
            f->cr_pending = 0;
            if (p[i] != '\n')
                frame_head_byte(f, '\r'); /* a CR inside the line: one of its bytes */
        }
        if (p[i] == '\r')
            f->cr_pending = 1;
        else
            frame_head_byte(f, p[i]);
    }
    return f->status;
}
