/* http_frame.c — a request's head and framing read strictly from its raw bytes, byte by byte, beside libevent 2.1's
 * parser. Hand-written because libevent has no hook into its chunk reader: it reads a chunk's size with strtoll
 * ("0x24", "+24", " 24" and "24 anything" pass), skips empty lines where a size is due, needs no CRLF after a
 * chunk's data, takes a bare LF for CRLF, and merges trailer fields into the headers. A proxy in front that
 * reads such a body otherwise ends the request elsewhere, and the rest runs here as a request of its own
 * (request smuggling). Nor has libevent 2.1 a hook for its own refusals of a head (a bad request line, a line
 * without a colon, a head over its size cap, an Expect it does not know), which it answers with an HTML page: this
 * scanner refuses every such head first, by RFC 9112's grammar, so that the answer is JSON in the API's shape.
 * http_server.c refuses the request as soon as this scanner does. */
#include "serve/http_frame.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "core/alloc.h"

typedef enum {
    F_REQLINE,    /* the request line, up to its LF (method SP target SP version) */
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

typedef enum { H_OTHER, H_CL, H_TE, H_EXPECT } frame_header; /* the header the current line belongs to */

/* The first Content-Length's value as libevent 2.1 reads it: spaces skipped, then digits, then trailing white
 * space. */
typedef enum { CL_LEAD, CL_DIGITS, CL_TRAIL, CL_ODD } frame_cl;

#define FRAME_TARGET_CAP 300 /* the target's bytes kept: its scheme and authority (a longer authority is refused) */
#define FRAME_NAME_CAP 20    /* longer names than "transfer-encoding" match nothing */
#define FRAME_TE_CAP 8       /* longer Transfer-Encoding values than "chunked" (past its blanks) are not it */
#define FRAME_VALUE_CAP 24   /* the first Content-Length's and each Expect's value kept, for the check and messages */

struct ss_http_frame {
    frame_state st;
    size_t max_body, max_head;
    size_t head_bytes; /* of the head so far, line ends included */
    int status;       /* 0, or the refusal's status */
    int cr_pending;   /* head only: a CR was read; dropped if an LF follows, else a byte of the line */
    int triton;
    char reason[224];
    /* the head */
    int rl_part;      /* the request line's part being read: 0 method, 1 target, 2 version */
    size_t rl_len[3]; /* their lengths so far */
    char target[FRAME_TARGET_CAP + 1]; /* the target's first bytes (NUL-terminated) */
    char version[10]; /* the version's first bytes (NUL-terminated) */
    char name[FRAME_NAME_CAP];
    size_t name_len;  /* may exceed FRAME_NAME_CAP: then no match */
    frame_header hdr;
    int n_te, n_cl;
    frame_cl cl;
    int cl_valid;     /* the first Content-Length is a number (cl_value) */
    char value[FRAME_VALUE_CAP + 1]; /* the first Content-Length's or an Expect's value, past its leading blanks */
    size_t value_len; /* may exceed FRAME_VALUE_CAP */
    uint64_t cl_value;
    char te[FRAME_TE_CAP]; /* the first Transfer-Encoding's value, past its leading spaces */
    size_t te_len;    /* may exceed FRAME_TE_CAP: then not "chunked" */
    int te_blanks;    /* spaces and tabs after its last other byte (trimmed by libevent unless more follows) */
    int chunked;      /* it is "chunked", as libevent reads it: the body is chunked */
    /* the chunked body */
    uint64_t size, left, total;
    unsigned chunk;   /* the current chunk's number, from 1 */
};

ss_http_frame *ss_http_frame_create(size_t max_body, size_t max_head)
{
    ss_http_frame *f = ss_calloc(1, sizeof *f);
    if (f) {
        f->max_body = max_body;
        f->max_head = max_head;
    }
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

/* A byte of RFC 9110's token (a method, a header's name). */
static int frame_tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* s[0, n) with the bytes a message should not carry as they are replaced by '?' (at most 64 of them). */
static const char *frame_quote(char *buf, size_t cap, const char *s, size_t n)
{
    size_t i = 0;
    for (; i < n && i + 1 < cap && i < 64; i++)
        buf[i] = s[i] >= 0x20 && s[i] < 0x7f && s[i] != '\'' ? s[i] : '?';
    buf[i] = '\0';
    return buf;
}

/* Whether a[0, n) is an authority libevent 2.1 reads as one (RFC 3986 section 3.2, no percent-encoding in the
 * host): [userinfo "@"] host [":" port], host a registered name or a bracketed IPv6 address, port at most 65535. */
static int frame_authority_ok(const char *a, size_t n)
{
    const char *at = memrchr(a, '@', n);
    if (at) {
        for (const char *p = a; p < at; p++)
            if (!(isalnum((unsigned char)*p) || strchr("-._~!$&'()*+,;=:%", *p)))
                return 0;
        n -= (size_t)(at + 1 - a);
        a = at + 1;
    }
    size_t host = 0;
    if (n && a[0] == '[') {
        const char *close = memchr(a, ']', n);
        char ip[64];
        struct in6_addr addr;
        if (!close || (size_t)(close - a - 1) >= sizeof ip)
            return 0;
        memcpy(ip, a + 1, (size_t)(close - a - 1));
        ip[close - a - 1] = '\0';
        if (inet_pton(AF_INET6, ip, &addr) != 1)
            return 0;
        host = (size_t)(close - a + 1);
    } else {
        while (host < n && (isalnum((unsigned char)a[host]) || strchr("-._~!$&'()*+,;=", a[host])))
            host++;
    }
    if (host == n)
        return 1;
    if (a[host] != ':' || n - host - 1 > 5)
        return 0;
    unsigned port = 0;
    for (size_t i = host + 1; i < n; i++) {
        if (a[i] < '0' || a[i] > '9')
            return 0;
        port = port * 10 + (unsigned)(a[i] - '0');
    }
    return port <= 65535;
}

/* The request line is over: its parts by RFC 9112 section 3, the version 1.0 or 1.1, an authority that libevent
 * can read (it refuses the others with an HTML page); and whether the target is under /v2 (Triton's routes, whose
 * errors have Triton's shape: decided first, for this line's own refusal too). */
static void frame_reqline_end(ss_http_frame *f)
{
    char q[72];
    /* the target: origin form ("/path"), "*", or with a scheme and an authority (absolute form) */
    const char *t = f->target, *rest = t, *auth = NULL;
    size_t sl = strspn(t, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-.");
    if (sl && isalpha((unsigned char)t[0]) && t[sl] == ':')
        rest = t + sl + 1;
    size_t an = 0;
    if (!strncmp(rest, "//", 2)) {
        auth = rest + 2;
        an = strcspn(auth, "/?#");
        rest = auth + an;
    }
    f->triton = !strncmp(rest, "/v2", 3);
    if (f->rl_part == 0 && f->rl_len[0] == 0) {
        frame_refuse(f, 400, "an empty line where the request line is due (RFC 9112 section 2.2)");
        return;
    }
    if (f->rl_part < 2 || f->rl_len[2] == 0) {
        frame_refuse(f, 400, "the request line is not METHOD SP target SP HTTP-version (RFC 9112 section 3)");
        return;
    }
    const char *v = f->version;
    if (f->rl_len[2] != 8 || strncmp(v, "HTTP/", 5) || !isdigit((unsigned char)v[5]) || v[6] != '.' ||
        !isdigit((unsigned char)v[7])) {
        frame_refuse(f, 400, "the request line's version '%s' is not HTTP/<digit>.<digit> (RFC 9112 section 2.3)",
                     frame_quote(q, sizeof q, v, strlen(v)));
        return;
    }
    if (strcmp(v, "HTTP/1.1") && strcmp(v, "HTTP/1.0")) {
        frame_refuse(f, 505, "%s is not supported: this server speaks HTTP/1.1 (and HTTP/1.0)", v);
        return;
    }
    if (auth && ((auth + an == t + strlen(t) && f->rl_len[1] > FRAME_TARGET_CAP) || !frame_authority_ok(auth, an)))
        frame_refuse(f, 400, "the request target's authority '%s' is not [user@]host[:port] (RFC 3986 section 3.2)",
                     frame_quote(q, sizeof q, auth, an));
}

/* One byte of the request line (not its LF): method SP target SP version, one space each. */
static void frame_reqline_byte(ss_http_frame *f, unsigned char c)
{
    char b[16];
    static const char *const part[] = {"method", "target", "version"};
    size_t *len = &f->rl_len[f->rl_part];
    if (c == ' ' && *len > 0 && f->rl_part < 2) {
        f->rl_part++;
        return;
    }
    int ok = f->rl_part == 0 ? frame_tchar(c) : c > 0x20 && c < 0x7f; /* (a target is ASCII: RFC 3986) */
    if (!ok) {
        frame_refuse(f, 400, "the request line's %s holds %s (RFC 9112 section 3)", part[f->rl_part],
                     frame_byte(b, sizeof b, c));
        return;
    }
    if (f->rl_part == 1 && *len < FRAME_TARGET_CAP)
        f->target[*len] = (char)c;
    if (f->rl_part == 2 && *len < sizeof f->version - 1)
        f->version[*len] = (char)c;
    (*len)++;
}

/* The empty line: the head is over, the body's framing decided. A Transfer-Encoding other than "chunked" (libevent
 * then reads no body) is left to the header checks of http_server.c, which refuse it. */
static void frame_head_end(ss_http_frame *f)
{
    char q[72];
    if (f->n_cl && !f->cl_valid) { /* (libevent refuses some in HTML, passes others to the header checks) */
        frame_refuse(f, 400, "Content-Length '%s' is not a number of bytes (decimal digits only)",
                     frame_quote(q, sizeof q, f->value, f->value_len < FRAME_VALUE_CAP ? f->value_len : FRAME_VALUE_CAP));
    } else if (f->n_te && f->n_cl) {
        frame_refuse(f, 400, "%s", SS_HTTP_MSG_TE_AND_CL);
    } else if (f->chunked) {
        f->st = F_SIZE0;
        f->chunk = 1;
    } else if (f->n_cl && f->cl_value > f->max_body) {
        frame_refuse(f, 413, "Content-Length %llu is larger than --max-body-bytes (%zu bytes)",
                     (unsigned long long)f->cl_value, f->max_body);
    } else {
        f->st = F_OVER;
    }
}

/* A Content-Length's, Transfer-Encoding's or Expect's value line is over. */
static void frame_value_end(ss_http_frame *f)
{
    if (f->hdr == H_CL) {
        f->cl_valid = f->cl == CL_DIGITS || f->cl == CL_TRAIL;
        return;
    }
    if (f->hdr == H_EXPECT) {
        size_t n = f->value_len < FRAME_VALUE_CAP ? f->value_len : FRAME_VALUE_CAP;
        while (n && (f->value[n - 1] == ' ' || f->value[n - 1] == '\t'))
            n--;
        char q[72];
        if (f->value_len > FRAME_VALUE_CAP || n != 12 || strncasecmp(f->value, "100-continue", 12))
            frame_refuse(f, 417, "Expect '%s' is not supported (only 100-continue is; RFC 9110 section 10.1.1)",
                         frame_quote(q, sizeof q, f->value, n));
        return;
    }
    f->chunked = f->te_len == 7 && !strncasecmp(f->te, "chunked", 7);
}

/* Keeps a value's bytes past its leading blanks (for the checks and messages). */
static void frame_value_keep(ss_http_frame *f, unsigned char c)
{
    if (f->value_len == 0 && (c == ' ' || c == '\t') && f->hdr == H_EXPECT)
        return;
    if (f->value_len == 0 && c == ' ' && f->hdr == H_CL)
        return; /* (libevent skips leading spaces, not tabs) */
    if (f->value_len < FRAME_VALUE_CAP)
        f->value[f->value_len] = (char)c;
    f->value_len++;
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
    char b[16], q[72];
    const char *where = f->st == F_REQLINE ? "request line" : "header section";
    if (c == '\0') {
        /* libevent reads lines as C strings: a NUL cuts a value short, and a line that starts with one ends the
         * head there, so the scanner would read on out of step. No request holds one (RFC 9110 section 5.5). */
        frame_refuse(f, 400, "the request's %s holds a NUL byte (RFC 9110 section 5.5)", where);
        return;
    }
    if (c == '\r') { /* (libevent refuses a CR inside a line) */
        frame_refuse(f, 400, "the request's %s holds a CR that does not end a line (RFC 9112 section 2.2)", where);
        return;
    }
    if ((c < 0x20 && c != '\t' && c != '\n') || c == 0x7f) {
        frame_refuse(f, 400, "the request's %s holds %s, a control character (RFC 9110 section 5.5)", where,
                     frame_byte(b, sizeof b, c));
        return;
    }
    switch (f->st) {
    case F_REQLINE:
        if (c == '\n') {
            frame_reqline_end(f);
            if (f->st == F_REQLINE)
                f->st = F_LINE;
        } else {
            frame_reqline_byte(f, c);
        }
        return;
    case F_LINE:
        if (c == '\n') {
            frame_head_end(f);
        } else if (c == ' ' || c == '\t') {
            /* libevent appends such a line to the last header's value, or refuses it as the first: a proxy may
             * read it otherwise ("Content-Length: 5" then " 6") */
            frame_refuse(f, 400, "a header line starts with white space: obsolete line folding is not accepted "
                         "(RFC 9112 section 5.2)");
        } else {
            f->name_len = 0;
            f->st = F_NAME;
            frame_head_byte(f, c);
        }
        return;
    case F_NAME:
        if (c == '\n') { /* (libevent refuses a line without a colon) */
            frame_refuse(f, 400, "header line '%s' has no colon (RFC 9112 section 5)",
                         frame_quote(q, sizeof q, f->name, f->name_len < FRAME_NAME_CAP ? f->name_len : FRAME_NAME_CAP));
        } else if (c == ':') {
            f->hdr = H_OTHER;
            if (f->name_len == 14 && !strncasecmp(f->name, "content-length", 14))
                f->hdr = H_CL;
            else if (f->name_len == 17 && !strncasecmp(f->name, "transfer-encoding", 17))
                f->hdr = H_TE;
            else if (f->name_len == 6 && !strncasecmp(f->name, "expect", 6))
                f->hdr = H_EXPECT;
            f->value_len = 0;
            if (f->hdr == H_CL && ++f->n_cl == 1) {
                f->cl = CL_LEAD;
                f->st = F_VALUE;
            } else if ((f->hdr == H_TE && ++f->n_te == 1) || f->hdr == H_EXPECT) {
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
            if (f->st == F_VALUE)
                f->st = F_LINE;
            return;
        }
        if (f->hdr != H_TE)
            frame_value_keep(f, c);
        if (f->hdr == H_CL)
            frame_cl_byte(f, c);
        else if (f->hdr == H_TE)
            frame_te_byte(f, c);
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
        if (++f->head_bytes > f->max_head) { /* (at or before libevent's own count passes the same cap) */
            frame_refuse(f, 431, "the request's head (request line and header fields) is larger than "
                         "--max-header-bytes (%zu bytes)", f->max_head);
            break;
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
