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

#define FRAME_TARGET_CAP 1024 /* the target's bytes kept: its scheme and authority (a longer authority is refused) */
#define FRAME_NAME_CAP 20     /* longer names than "transfer-encoding" match nothing */
#define FRAME_VALUE_CAP 24    /* a value's bytes kept, for the checks and messages */

/* A header's value as libevent 2.1 reads it: leading spaces (not tabs) skipped, trailing spaces and tabs trimmed. */
typedef struct frame_value {
    char buf[FRAME_VALUE_CAP + 1];
    size_t len;   /* all bytes past the leading spaces (may exceed FRAME_VALUE_CAP) */
    size_t trail; /* of them, the spaces and tabs at the end */
} frame_value;

struct ss_http_frame {
    frame_state st;
    size_t max_body, max_head;
    size_t head_bytes; /* of the head so far, line ends included */
    int status;       /* 0, or the refusal's status */
    int cr_pending;   /* head only: a CR was read; dropped if an LF follows, else a byte of the line */
    int triton;
    char reason[224];
    /* the request line */
    int rl_part;      /* the part being read: 0 method, 1 target, 2 version, 3 blanks after the version */
    size_t rl_len[3]; /* their lengths so far */
    size_t rl_bytes;  /* the line's, its end excluded */
    char method[8];   /* the method's first bytes */
    char target[FRAME_TARGET_CAP + 1]; /* the target's first bytes (NUL-terminated) */
    char version[10]; /* the version's first bytes (NUL-terminated) */
    /* the header lines */
    char name[FRAME_NAME_CAP];
    size_t name_len;  /* may exceed FRAME_NAME_CAP: then no match */
    frame_header hdr;
    int n_te, n_cl;
    frame_cl cl;
    int cl_valid;     /* the first Content-Length is a number (cl_value) */
    uint64_t cl_value;
    frame_value cl_raw, te_raw, expect; /* the first Content-Length's and Transfer-Encoding's, this Expect's */
    int chunked;      /* the one Transfer-Encoding is "chunked": the body is chunked */
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

static void frame_set_triton(ss_http_frame *f);

__attribute__((format(printf, 3, 4))) static void frame_refuse(ss_http_frame *f, int status, const char *fmt, ...)
{
    if (f->st == F_REQLINE) /* the error's shape is the route's: what the target has shown so far decides */
        frame_set_triton(f);
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

static void frame_value_byte(frame_value *v, unsigned char c)
{
    if (v->len == 0 && c == ' ')
        return;
    if (v->len < FRAME_VALUE_CAP)
        v->buf[v->len] = (char)c;
    v->len++;
    v->trail = c == ' ' || c == '\t' ? v->trail + 1 : 0;
}

/* Whether the value, trimmed, is `word` (ASCII case ignored). */
static int frame_value_is(const frame_value *v, const char *word)
{
    size_t n = v->len - v->trail, wl = strlen(word);
    return n == wl && n <= FRAME_VALUE_CAP && !strncasecmp(v->buf, word, n);
}

static const char *frame_value_quote(char *buf, size_t cap, const frame_value *v)
{
    size_t n = v->len - v->trail;
    return frame_quote(buf, cap, v->buf, n < FRAME_VALUE_CAP ? n : FRAME_VALUE_CAP);
}

/* Whether a[0, n) holds only the characters of `set`, letters, digits and %HH escapes. */
static int frame_uri_chars(const char *a, size_t n, const char *set)
{
    for (size_t i = 0; i < n; i++) {
        if (a[i] == '%') {
            if (i + 2 >= n || !isxdigit((unsigned char)a[i + 1]) || !isxdigit((unsigned char)a[i + 2]))
                return 0;
            i += 2;
        } else if (!isalnum((unsigned char)a[i]) && !strchr(set, a[i])) {
            return 0;
        }
    }
    return 1;
}

/* Whether a[0, n) is an authority libevent 2.1 reads as one (RFC 3986 section 3.2): [userinfo "@"] host [":" port],
 * the host a registered name, a bracketed IPv6 address or IPvFuture, the port digits worth at most 65535. */
static int frame_authority_ok(const char *a, size_t n)
{
    const char *at = memrchr(a, '@', n);
    if (at) {
        if (!frame_uri_chars(a, (size_t)(at - a), "-._~!$&'()*+,;=:"))
            return 0;
        n -= (size_t)(at + 1 - a);
        a = at + 1;
    }
    size_t host = 0;
    if (n && a[0] == '[') {
        const char *close = memchr(a, ']', n);
        if (!close)
            return 0;
        const char *in = a + 1;
        size_t il = (size_t)(close - in);
        char ip[64];
        struct in6_addr addr;
        if (il > 1 && (in[0] == 'v' || in[0] == 'V')) { /* IPvFuture: "v" 1*HEXDIG "." 1*( unreserved / sub-delims / ":" ) */
            size_t h = 1;
            while (h < il && isxdigit((unsigned char)in[h]))
                h++;
            if (h == 1 || h + 1 >= il || in[h] != '.' || !frame_uri_chars(in + h + 1, il - h - 1, "-._~!$&'()*+,;=:") ||
                memchr(in + h + 1, '%', il - h - 1))
                return 0;
        } else {
            if (il >= sizeof ip)
                return 0;
            memcpy(ip, in, il);
            ip[il] = '\0';
            if (inet_pton(AF_INET6, ip, &addr) != 1)
                return 0;
        }
        host = (size_t)(close - a + 1);
    } else {
        while (host < n && a[host] != ':')
            host++;
        if (!frame_uri_chars(a, host, "-._~!$&'()*+,;="))
            return 0;
    }
    if (host == n)
        return 1;
    if (a[host] != ':')
        return 0;
    unsigned long port = 0;
    for (size_t i = host + 1; i < n; i++) {
        if (a[i] < '0' || a[i] > '9')
            return 0;
        port = port > 65535 ? port : port * 10 + (unsigned long)(a[i] - '0');
    }
    return port <= 65535;
}

/* The target's parts: *scheme_len (0: none) and, after "//", the authority [*auth, *auth + *auth_len) (*auth NULL:
 * none); returns the rest (the path on). Reads what the target buffer holds. */
static const char *frame_target_parts(const ss_http_frame *f, size_t *scheme_len, const char **auth, size_t *auth_len)
{
    const char *t = f->target, *rest = t;
    size_t first = strcspn(t, ":/?#"); /* the first segment */
    *scheme_len = 0;
    *auth = NULL;
    *auth_len = 0;
    if (t[first] == ':') {
        *scheme_len = first;
        rest = t + first + 1;
    }
    if (!strncmp(rest, "//", 2)) {
        *auth = rest + 2;
        *auth_len = strcspn(*auth, "/?#");
        rest = *auth + *auth_len;
    }
    return rest;
}

/* Whether the target (so far) is under /v2: Triton's routes, whose errors have Triton's shape. */
static void frame_set_triton(ss_http_frame *f)
{
    if (f->rl_part < 1)
        return;
    size_t sl, al;
    const char *auth;
    /* (CONNECT's target is a path when it starts with '/': http_server.c gives it back to the routes) */
    const char *rest = f->rl_len[0] == 7 && !memcmp(f->method, "CONNECT", 7) ? f->target
                                                                              : frame_target_parts(f, &sl, &auth, &al);
    f->triton = !strncmp(rest, "/v2", 3);
}

/* The request line is over: its parts by RFC 9112 section 3 (what libevent 2.1 refuses in HTML, and a little more),
 * the version 1.0 or 1.1, and a target libevent can read. */
static void frame_reqline_end(ss_http_frame *f)
{
    char q[72];
    frame_set_triton(f);
    if (f->rl_bytes == 0) {
        frame_refuse(f, 400, "an empty line where the request line is due (RFC 9112 section 2.2)");
        return;
    }
    if (f->rl_part < 2 || f->rl_len[2] == 0) {
        frame_refuse(f, 400, "the request line is not METHOD SP target SP HTTP-version (RFC 9112 section 3)");
        return;
    }
    if (f->rl_bytes < 14) { /* (libevent 2.1 refuses a line shorter than "GET / HTTP/1.1") */
        frame_refuse(f, 400, "the request line is shorter than 14 bytes, which the HTTP layer does not read");
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
    /* the target, as libevent reads it: CONNECT's an authority; the others a path, "*", or an absolute URI */
    const size_t tl = f->rl_len[1];
    const int whole = tl <= FRAME_TARGET_CAP;
    if (f->rl_len[0] == 7 && !memcmp(f->method, "CONNECT", 7)) { /* (libevent reads up to a '/', '?' or '#') */
        size_t an = strcspn(f->target, "/?#");
        if ((an == tl && !whole) || !frame_authority_ok(f->target, an))
            frame_refuse(f, 400, "CONNECT's target '%s' is not [user@]host[:port] (RFC 9112 section 3.2.3)",
                         frame_quote(q, sizeof q, f->target, an));
        return;
    }
    size_t sl, al;
    const char *auth;
    const char *rest = frame_target_parts(f, &sl, &auth, &al);
    if (f->target[0] == '/' && !auth)
        return; /* a path (origin form) */
    if (rest == f->target && !whole && !strpbrk(f->target, "/?#")) {
        frame_refuse(f, 400, "the request target's first %d bytes hold no '/', '?' or '#' (a target of %zu bytes)",
                     FRAME_TARGET_CAP, tl);
        return;
    }
    if (sl || f->target[sl] == ':') { /* a scheme: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) */
        const char *t = f->target;
        int ok = sl && isalpha((unsigned char)t[0]);
        for (size_t i = 1; ok && i < sl; i++)
            ok = isalnum((unsigned char)t[i]) || t[i] == '+' || t[i] == '-' || t[i] == '.';
        if (!ok) {
            frame_refuse(f, 400, "the request target '%s' has a colon in its first segment but no scheme before it "
                         "(RFC 3986 section 3.1)", frame_quote(q, sizeof q, t, sl + 1));
            return;
        }
    }
    if (auth && ((auth + al == f->target + strlen(f->target) && !whole) || !frame_authority_ok(auth, al)))
        frame_refuse(f, 400, "the request target's authority '%s' is not [user@]host[:port] (RFC 3986 section 3.2)",
                     frame_quote(q, sizeof q, auth, al));
}

/* One byte of the request line (not its end): method SP target SP version, one space each, blanks after. */
static void frame_reqline_byte(ss_http_frame *f, unsigned char c)
{
    char b[16];
    static const char *const part[] = {"method", "target", "version", "version"};
    f->rl_bytes++;
    if (f->rl_part == 3 || (f->rl_part == 2 && f->rl_len[2] > 0 && (c == ' ' || c == '\t'))) {
        /* (blanks after the version: libevent reads past them) */
        if (c != ' ' && c != '\t')
            frame_refuse(f, 400, "the request line's version is followed by %s (RFC 9112 section 3)",
                         frame_byte(b, sizeof b, c));
        f->rl_part = 3;
        return;
    }
    size_t *len = &f->rl_len[f->rl_part];
    if (c == ' ' && *len > 0 && f->rl_part < 2) {
        f->rl_part++;
        return;
    }
    /* a target is visible ASCII; bytes above 0x7f pass as libevent takes them (a client's raw UTF-8) */
    int ok = f->rl_part == 0 ? frame_tchar(c) : f->rl_part == 1 ? c > 0x20 && c != 0x7f : c > 0x20 && c < 0x7f;
    if (!ok) {
        frame_refuse(f, 400, "the request line's %s holds %s (RFC 9112 section 3)", part[f->rl_part],
                     frame_byte(b, sizeof b, c));
        return;
    }
    if (f->rl_part == 0 && *len < sizeof f->method)
        f->method[*len] = (char)c;
    if (f->rl_part == 1 && *len < FRAME_TARGET_CAP)
        f->target[*len] = (char)c;
    if (f->rl_part == 2 && *len < sizeof f->version - 1)
        f->version[*len] = (char)c;
    (*len)++;
}

/* The empty line: the head is over, the body's framing decided. Transfer-Encoding is refused unless it is one
 * "chunked": libevent 2.1 reads the others each its own way (Debian's patched 2.1.12 reads "gzip, chunked" as chunked,
 * loosely, and answers "chunked, gzip" in HTML), and the header checks of http_server.c refuse them anyway. */
static void frame_head_end(ss_http_frame *f)
{
    char q[72];
    if (f->n_cl && !f->cl_valid) /* (libevent refuses some in HTML, passes others to the header checks) */
        frame_refuse(f, 400, "Content-Length '%s' is not a number of bytes (decimal digits only)",
                     frame_value_quote(q, sizeof q, &f->cl_raw));
    else if (f->n_te && f->n_cl)
        frame_refuse(f, 400, "%s", SS_HTTP_MSG_TE_AND_CL);
    else if (f->n_te > 1)
        frame_refuse(f, 400, "Transfer-Encoding is given %d times; only one 'chunked' is supported", f->n_te);
    else if (f->n_te && !f->chunked)
        frame_refuse(f, 400, "Transfer-Encoding '%s' is not supported; only 'chunked' is",
                     frame_value_quote(q, sizeof q, &f->te_raw));
    else if (f->chunked) {
        f->st = F_SIZE0;
        f->chunk = 1;
    } else if (f->n_cl && f->cl_value > f->max_body)
        frame_refuse(f, 413, "Content-Length %llu is larger than --max-body-bytes (%zu bytes)",
                     (unsigned long long)f->cl_value, f->max_body);
    else
        f->st = F_OVER;
}

/* A Content-Length's, Transfer-Encoding's or Expect's value line is over. */
static void frame_value_end(ss_http_frame *f)
{
    char q[72];
    if (f->hdr == H_CL)
        f->cl_valid = f->cl == CL_DIGITS || f->cl == CL_TRAIL;
    else if (f->hdr == H_TE)
        f->chunked = frame_value_is(&f->te_raw, "chunked");
    else if (!frame_value_is(&f->expect, "100-continue")) /* (libevent answers others in HTML) */
        frame_refuse(f, 417, "Expect '%s' is not supported (only 100-continue is; RFC 9110 section 10.1.1)",
                     frame_value_quote(q, sizeof q, &f->expect));
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
        f->cl = CL_ODD; /* not a plain number */
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
            if (f->hdr == H_CL && ++f->n_cl == 1) {
                f->cl = CL_LEAD;
                f->st = F_VALUE;
            } else if ((f->hdr == H_TE && ++f->n_te == 1) || f->hdr == H_EXPECT) {
                if (f->hdr == H_EXPECT)
                    memset(&f->expect, 0, sizeof f->expect);
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
        if (f->hdr == H_CL) {
            frame_value_byte(&f->cl_raw, c);
            frame_cl_byte(f, c);
        } else {
            frame_value_byte(f->hdr == H_TE ? &f->te_raw : &f->expect, c);
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
