/* stop.c — stop-string matcher: one KMP automaton per stop string, advanced byte by byte over the
 * streamed text, so a stop string is found the moment its last byte arrives, whatever the token split.
 * The bytes that could still begin a stop string (the longest automaton state) are held back. */
#include "serve/stop.h"

#include <string.h>

#include "core/alloc.h"

typedef struct stop_str {
    char *s;
    int32_t len;
    int32_t *fail; /* [len] KMP failure function */
    int32_t state; /* length of the longest prefix of s that is a suffix of the text so far */
} stop_str;

struct ss_stop {
    stop_str *stops;
    int32_t n;
    char *buf; /* held text, then the text released by the last call */
    size_t len, cap;
    size_t drop; /* bytes at the front of buf released by the last call, dropped on the next */
    int stopped;
};

void ss_stop_destroy(ss_stop *m)
{
    if (!m)
        return;
    for (int32_t i = 0; i < m->n; i++) {
        ss_free(m->stops[i].s);
        ss_free(m->stops[i].fail);
    }
    ss_free(m->stops);
    ss_free(m->buf);
    ss_free(m);
}

ss_status ss_stop_create(const char *const *stops, int32_t n, ss_stop **out, ss_err *err)
{
    *out = NULL;
    if (n < 0 || (n > 0 && !stops))
        return ss_err_set(err, SS_ERR_INVALID_ARG, "stop strings: bad count %d", (int)n);
    ss_stop *m = ss_calloc(1, sizeof(*m));
    if (!m)
        return ss_err_set(err, SS_ERR_NOMEM, "stop strings: out of memory");
    if (n > 0 && !(m->stops = ss_calloc((size_t)n, sizeof(stop_str)))) {
        ss_stop_destroy(m);
        return ss_err_set(err, SS_ERR_NOMEM, "stop strings: out of memory");
    }
    for (int32_t i = 0; i < n; i++) {
        size_t len = stops[i] ? strlen(stops[i]) : 0;
        if (len == 0 || len > SS_STOP_MAX_LEN) {
            ss_stop_destroy(m);
            return ss_err_set(err, SS_ERR_INVALID_ARG, "stop string %d: length %zu, expected 1..%d bytes", (int)i, len,
                              SS_STOP_MAX_LEN);
        }
        stop_str *st = &m->stops[m->n++];
        st->s = ss_strndup(stops[i], len);
        st->fail = ss_malloc(len * sizeof(int32_t));
        if (!st->s || !st->fail) {
            ss_stop_destroy(m);
            return ss_err_set(err, SS_ERR_NOMEM, "stop strings: out of memory");
        }
        st->len = (int32_t)len;
        st->fail[0] = 0;
        for (int32_t q = 1, k = 0; q < st->len; q++) {
            while (k > 0 && st->s[q] != st->s[k])
                k = st->fail[k - 1];
            if (st->s[q] == st->s[k])
                k++;
            st->fail[q] = k;
        }
    }
    *out = m;
    return SS_OK;
}

/* Advances the automaton by one byte; returns 1 when the whole string has just been seen. */
static int stop_step(stop_str *st, char c)
{
    int32_t k = st->state;
    if (k == st->len)
        k = st->fail[k - 1];
    while (k > 0 && st->s[k] != c)
        k = st->fail[k - 1];
    if (st->s[k] == c)
        k++;
    st->state = k;
    return k == st->len;
}

static void stop_drop_released(ss_stop *m)
{
    if (m->drop > 0) {
        memmove(m->buf, m->buf + m->drop, m->len - m->drop);
        m->len -= m->drop;
        m->drop = 0;
    }
}

ss_status ss_stop_feed(ss_stop *m, const char *text, size_t len, int match, const char **out, size_t *out_len,
                       int *stopped, int32_t *which, ss_err *err)
{
    *out = m->buf;
    *out_len = 0;
    *which = -1;
    *stopped = m->stopped;
    stop_drop_released(m);
    if (m->stopped)
        return SS_OK;
    if (m->len + len > m->cap) {
        size_t cap = m->cap ? m->cap : 64;
        while (cap < m->len + len)
            cap *= 2;
        char *b = ss_realloc(m->buf, cap);
        if (!b)
            return ss_err_set(err, SS_ERR_NOMEM, "stop strings: out of memory for %zu bytes of text", cap);
        m->buf = b;
        m->cap = cap;
    }
    size_t scan_from = m->len;
    if (len > 0)
        memcpy(m->buf + m->len, text, len);
    m->len += len;
    *out = m->buf;
    if (!match || m->n == 0) {
        for (int32_t j = 0; j < m->n; j++)
            m->stops[j].state = 0;
        *out_len = m->drop = m->len;
        return SS_OK;
    }
    for (size_t i = scan_from; i < m->len; i++) {
        int32_t hit = -1;
        for (int32_t j = 0; j < m->n; j++)
            if (stop_step(&m->stops[j], m->buf[i]) && (hit < 0 || m->stops[j].len > m->stops[hit].len))
                hit = j; /* ties at the same end: the longest string, i.e. the earliest cut */
        if (hit >= 0) {
            m->stopped = 1;
            *stopped = 1;
            *which = hit;
            *out_len = i + 1 - (size_t)m->stops[hit].len; /* held bytes always cover the whole match */
            m->drop = m->len;
            return SS_OK;
        }
    }
    size_t hold = 0;
    for (int32_t j = 0; j < m->n; j++)
        if ((size_t)m->stops[j].state > hold)
            hold = (size_t)m->stops[j].state;
    *out_len = m->drop = m->len - hold;
    return SS_OK;
}

void ss_stop_flush(ss_stop *m, const char **out, size_t *out_len)
{
    stop_drop_released(m);
    *out = m->buf;
    *out_len = m->stopped ? 0 : m->len;
    m->drop = m->len;
    for (int32_t j = 0; j < m->n; j++)
        m->stops[j].state = 0;
}
