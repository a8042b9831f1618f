/* bench_sse.c — incremental Server-Sent Events parser (see bench_sse.h). Lines end in "\n", "\r\n" or
 * "\r"; a blank line dispatches the event; ':' lines are comments; "id" and "retry" are ignored. */
#include "bench/bench_sse.h"

#include <string.h>

#include "core/alloc.h"

#define SSE_EVENT_NAME_MAX 64

struct ss_sse_parser {
    size_t max; /* max_event_bytes */
    char *line; /* [line_cap] the current, unfinished line; grows up to max + 1 */
    size_t line_len;
    size_t line_cap;
    char *data; /* [data_cap] data lines of the current event, each followed by '\n' */
    size_t data_len;
    size_t data_cap;
    char event[SSE_EVENT_NAME_MAX + 1];
    int saw_cr; /* the last byte was '\r': a '\n' right after it ends nothing */
};

void ss_sse_default_params(ss_sse_params *p)
{
    p->max_event_bytes = (size_t)1 << 20;
}

ss_status ss_sse_parser_create(const ss_sse_params *params, ss_sse_parser **out, ss_err *err)
{
    *out = NULL;
    if (!params || params->max_event_bytes == 0 || params->max_event_bytes > ((size_t)1 << 30))
        return ss_err_set(err, SS_ERR_INVALID_ARG, "sse: max_event_bytes must be in [1, 2^30]");
    ss_sse_parser *p = ss_calloc(1, sizeof *p);
    if (!p)
        return ss_err_set(err, SS_ERR_NOMEM, "sse: out of memory");
    p->max = params->max_event_bytes;
    ss_sse_parser_reset(p);
    *out = p;
    return SS_OK;
}

void ss_sse_parser_destroy(ss_sse_parser *p)
{
    if (!p)
        return;
    ss_free(p->line);
    ss_free(p->data);
    ss_free(p);
}

void ss_sse_parser_reset(ss_sse_parser *p)
{
    p->line_len = 0;
    p->data_len = 0;
    p->event[0] = '\0';
    p->saw_cr = 0;
}

int ss_sse_parser_pending(const ss_sse_parser *p)
{
    return p->line_len > 0 || p->data_len > 0;
}

/* Makes *buf hold at least need bytes (need <= max + 1); buffers start small, so that many idle
 * parsers (one per in-flight request) cost little. */
static ss_status sse_reserve(ss_sse_parser *p, char **buf, size_t *cap, size_t need, ss_err *err)
{
    if (need <= *cap)
        return SS_OK;
    size_t c = *cap ? *cap : 1024;
    while (c < need)
        c *= 2;
    if (c > p->max + 1)
        c = p->max + 1;
    char *b = ss_realloc(*buf, c);
    if (!b)
        return ss_err_set(err, SS_ERR_NOMEM, "sse: out of memory for a %zu-byte event buffer", c);
    *buf = b;
    *cap = c;
    return SS_OK;
}

static ss_status sse_dispatch(ss_sse_parser *p, ss_sse_event_fn fn, void *user)
{
    if (p->data_len == 0) { /* no data lines: nothing to dispatch (per the spec) */
        p->event[0] = '\0';
        return SS_OK;
    }
    size_t len = p->data_len - 1; /* drop the '\n' after the last data line */
    p->data[len] = '\0';
    ss_status st = fn(user, p->event[0] ? p->event : "message", p->data, len);
    p->data_len = 0;
    p->event[0] = '\0';
    return st;
}

/* Handles one complete line (without its terminator). */
static ss_status sse_line(ss_sse_parser *p, ss_sse_event_fn fn, void *user, ss_err *err)
{
    const char *l = p->line;
    size_t n = p->line_len;
    p->line_len = 0;
    if (n == 0)
        return sse_dispatch(p, fn, user);
    if (l[0] == ':')
        return SS_OK;
    const char *colon = memchr(l, ':', n);
    size_t name_len = colon ? (size_t)(colon - l) : n;
    const char *val = colon ? colon + 1 : l + n;
    size_t val_len = (size_t)(l + n - val);
    if (val_len > 0 && val[0] == ' ') {
        val++;
        val_len--;
    }
    if (name_len == 4 && !memcmp(l, "data", 4)) {
        if (p->data_len + val_len + 1 > p->max)
            return ss_err_set(err, SS_ERR_CAPACITY, "sse: event data larger than %zu bytes", p->max);
        ss_status st = sse_reserve(p, &p->data, &p->data_cap, p->data_len + val_len + 2, err);
        if (st != SS_OK)
            return st;
        memcpy(p->data + p->data_len, val, val_len);
        p->data_len += val_len;
        p->data[p->data_len++] = '\n';
    } else if (name_len == 5 && !memcmp(l, "event", 5)) {
        if (val_len > SSE_EVENT_NAME_MAX || memchr(val, '\0', val_len))
            return ss_err_set(err, SS_ERR_FORMAT, "sse: event name longer than %d bytes or holding NUL",
                              SSE_EVENT_NAME_MAX);
        memcpy(p->event, val, val_len);
        p->event[val_len] = '\0';
    }
    /* "id", "retry" and unknown fields are ignored, as the spec says. */
    return SS_OK;
}

ss_status ss_sse_parser_feed(ss_sse_parser *p, const char *buf, size_t n, ss_sse_event_fn fn, void *user, ss_err *err)
{
    size_t i = 0;
    while (i < n) {
        if (p->saw_cr) {
            p->saw_cr = 0;
            if (buf[i] == '\n') { /* second half of "\r\n" */
                i++;
                continue;
            }
        }
        /* Copy up to the next line terminator in one go. */
        size_t j = i;
        while (j < n && buf[j] != '\n' && buf[j] != '\r')
            j++;
        size_t seg = j - i;
        if (p->line_len + seg + p->data_len > p->max)
            return ss_err_set(err, SS_ERR_CAPACITY, "sse: event larger than %zu bytes", p->max);
        ss_status st = sse_reserve(p, &p->line, &p->line_cap, p->line_len + seg + 1, err);
        if (st != SS_OK)
            return st;
        memcpy(p->line + p->line_len, buf + i, seg);
        p->line_len += seg;
        i = j;
        if (i == n)
            break;
        p->saw_cr = (buf[i] == '\r');
        i++;
        st = sse_line(p, fn, user, err);
        if (st != SS_OK)
            return st;
    }
    return SS_OK;
}
