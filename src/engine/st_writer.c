/* st_writer.c — safetensors files written front to back: header built from declared entries, then
 * data appended through one bounded buffer (optionally hashed on the way, optionally throttled). */
#include "engine/st_writer.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/clock.h"

typedef struct stw_buf {
    char *p;
    size_t len, cap;
    int oom;
} stw_buf;

static void stw_put(stw_buf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (b->len + n + 1 > cap)
            cap *= 2;
        char *p = ss_realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void stw_puts(stw_buf *b, const char *s)
{
    stw_put(b, s, strlen(s));
}

/* JSON string with the escapes RFC 8259 requires. */
static void stw_put_json_str(stw_buf *b, const char *s)
{
    stw_put(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char esc[8];
        if (*p == '"' || *p == '\\') {
            esc[0] = '\\';
            esc[1] = (char)*p;
            stw_put(b, esc, 2);
        } else if (*p < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", *p);
            stw_put(b, esc, 6);
        } else {
            stw_put(b, (const char *)p, 1);
        }
    }
    stw_put(b, "\"", 1);
}

static const char *stw_dtype_tag(ss_dtype t)
{
    switch (t) {
    case SS_DTYPE_F32: return "F32";
    case SS_DTYPE_BF16: return "BF16";
    case SS_DTYPE_F16: return "F16";
    case SS_DTYPE_I32: return "I32";
    case SS_DTYPE_E4M3: return "F8_E4M3";
    default: return NULL;
    }
}

uint64_t ss_st_entry_nbytes(const ss_st_entry *e)
{
    if (e->ndim < 0 || e->ndim > SS_ST_MAX_DIMS || !stw_dtype_tag(e->dtype))
        return 0;
    uint64_t n = ss_dtype_size(e->dtype);
    for (int32_t d = 0; d < e->ndim; d++) {
        if (e->shape[d] < 0)
            return 0;
        uint64_t s = (uint64_t)e->shape[d];
        if (s && n > UINT64_MAX / 4 / s)
            return 0;
        n *= s;
    }
    return n;
}

ss_status ss_st_header_build(const ss_st_entry *entries, size_t n, const ss_st_kv *meta, size_t n_meta,
                             char **out, size_t *out_len, uint64_t *data_bytes, ss_err *err)
{
    stw_buf b = {0};
    stw_put(&b, "        {", 9); /* 8 bytes reserved for the length */
    int first = 1;
    if (n_meta) {
        stw_puts(&b, "\"__metadata__\":{");
        for (size_t i = 0; i < n_meta; i++) {
            if (i)
                stw_put(&b, ",", 1);
            stw_put_json_str(&b, meta[i].key);
            stw_put(&b, ":", 1);
            stw_put_json_str(&b, meta[i].value);
        }
        stw_put(&b, "}", 1);
        first = 0;
    }
    uint64_t off = 0;
    for (size_t i = 0; i < n; i++) {
        const ss_st_entry *e = &entries[i];
        if (!e->name || !e->name[0] || !strncmp(e->name, "__", 2)) {
            ss_free(b.p);
            return ss_err_set(err, SS_ERR_INVALID_ARG, "safetensors writer: tensor %zu has a reserved or empty name", i);
        }
        for (size_t j = 0; j < i; j++)
            if (!strcmp(entries[j].name, e->name)) {
                ss_free(b.p);
                return ss_err_set(err, SS_ERR_INVALID_ARG, "safetensors writer: duplicate tensor %s", e->name);
            }
        uint64_t nb = ss_st_entry_nbytes(e);
        int empty = 0;
        for (int32_t d = 0; d < e->ndim && e->ndim <= SS_ST_MAX_DIMS; d++)
            empty |= e->shape[d] == 0;
        if ((!nb && !empty) || e->ndim < 0 || e->ndim > SS_ST_MAX_DIMS) {
            ss_free(b.p);
            return ss_err_set(err, SS_ERR_INVALID_ARG, "safetensors writer: %s: bad dtype or shape", e->name);
        }
        if (!first)
            stw_put(&b, ",", 1);
        first = 0;
        stw_put_json_str(&b, e->name);
        char tmp[96];
        snprintf(tmp, sizeof tmp, ":{\"dtype\":\"%s\",\"shape\":[", stw_dtype_tag(e->dtype));
        stw_puts(&b, tmp);
        for (int32_t d = 0; d < e->ndim; d++) {
            snprintf(tmp, sizeof tmp, "%s%" PRId64, d ? "," : "", e->shape[d]);
            stw_puts(&b, tmp);
        }
        snprintf(tmp, sizeof tmp, "],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}", off, off + nb);
        stw_puts(&b, tmp);
        off += nb;
    }
    stw_put(&b, "}", 1);
    while (!b.oom && b.len % 8)
        stw_put(&b, " ", 1);
    if (b.oom) {
        ss_free(b.p);
        return ss_err_set(err, SS_ERR_NOMEM, "safetensors writer: out of memory building the header");
    }
    uint64_t hl = b.len - 8;
    for (int i = 0; i < 8; i++)
        b.p[i] = (char)((hl >> (8 * i)) & 0xff);
    *out = b.p;
    *out_len = b.len;
    if (data_bytes)
        *data_bytes = off;
    return SS_OK;
}

struct ss_st_writer {
    char *path;
    int fd;
    ss_st_writer_params params;
    uint64_t *ends;      /* [n] absolute end offset of each tensor's data */
    size_t n, cur;
    uint64_t header_len, total, pos; /* pos: bytes accepted so far (header included) */
    char *buf;
    size_t buf_len;
    ss_sha256 *sha;
    ss_quick_digest *quick; /* beside sha */
    double t0;           /* ss_now_s when writing began */
    uint64_t written;    /* bytes written since t0, for the throttle */
    int finished;
};

ss_st_writer_params ss_st_writer_default_params(void)
{
    ss_st_writer_params p = {8u << 20, 1, 1, 0};
    return p;
}

static ss_status stw_write_all(ss_st_writer *w, const char *p, size_t len, ss_err *err)
{
    if (w->sha)
        SS_CHECK(ss_sha256_update(w->sha, p, len, err));
    if (w->quick)
        SS_CHECK(ss_quick_digest_update(w->quick, p, len, err));
    while (len) {
        ssize_t r = write(w->fd, p, len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return ss_err_set(err, SS_ERR_IO, "%s: write: %s", w->path, strerror(errno));
        p += r;
        len -= (size_t)r;
        w->written += (uint64_t)r;
    }
    if (w->params.throttle_bps > 0) {
        double el = ss_now_s() - w->t0;
        double want = (double)w->written / (double)w->params.throttle_bps;
        if (want > el) {
            double s = want - el;
            struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
            nanosleep(&ts, NULL);
        }
    }
    return SS_OK;
}

static ss_status stw_flush(ss_st_writer *w, ss_err *err)
{
    if (!w->buf_len)
        return SS_OK;
    ss_status st = stw_write_all(w, w->buf, w->buf_len, err);
    w->buf_len = 0;
    return st;
}

ss_status ss_st_writer_create(const char *path, const ss_st_entry *entries, size_t n, const ss_st_kv *meta,
                              size_t n_meta, const ss_st_writer_params *params, ss_st_writer **out, ss_err *err)
{
    char *hdr = NULL;
    size_t hdr_len = 0;
    uint64_t data = 0;
    SS_CHECK(ss_st_header_build(entries, n, meta, n_meta, &hdr, &hdr_len, &data, err));
    ss_status st = SS_OK;
    ss_st_writer *w = ss_calloc(1, sizeof *w);
    if (!w) {
        ss_free(hdr);
        return ss_err_set(err, SS_ERR_NOMEM, "%s: out of memory", path);
    }
    w->fd = -1;
    w->params = params ? *params : ss_st_writer_default_params();
    if (w->params.buffer_bytes < 4096)
        w->params.buffer_bytes = 4096;
    w->path = ss_strdup(path);
    w->ends = ss_calloc(n ? n : 1, sizeof *w->ends);
    w->buf = ss_malloc(w->params.buffer_bytes);
    if (!w->path || !w->ends || !w->buf) {
        st = ss_err_set(err, SS_ERR_NOMEM, "%s: out of memory", path);
        goto fail;
    }
    w->n = n;
    w->header_len = hdr_len;
    uint64_t off = hdr_len;
    for (size_t i = 0; i < n; i++) {
        off += ss_st_entry_nbytes(&entries[i]);
        w->ends[i] = off;
    }
    w->total = off;
    w->pos = hdr_len;
    if (w->params.digest) {
        SS_CHECK_GOTO(ss_sha256_create(&w->sha, err), st, fail);
        SS_CHECK_GOTO(ss_quick_digest_create(&w->quick, err), st, fail);
    }
    w->fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (w->fd < 0) {
        st = ss_err_set(err, SS_ERR_IO, "%s: %s", path, strerror(errno));
        goto fail;
    }
    w->t0 = ss_now_s();
    SS_CHECK_GOTO(stw_write_all(w, hdr, hdr_len, err), st, fail);
    while (w->cur < w->n && w->ends[w->cur] <= w->pos)
        w->cur++;
    ss_free(hdr);
    *out = w;
    return SS_OK;
fail:
    ss_free(hdr);
    ss_st_writer_destroy(w);
    return st;
}

size_t ss_st_writer_current(const ss_st_writer *w)
{
    return w->cur;
}

ss_status ss_st_writer_reserve(ss_st_writer *w, size_t want, void **ptr, size_t *got, ss_err *err)
{
    if (w->finished)
        return ss_err_set(err, SS_ERR_INVALID_ARG, "%s: writer already finished", w->path);
    if (w->buf_len && w->params.buffer_bytes - w->buf_len < want)
        SS_CHECK(stw_flush(w, err));
    *ptr = w->buf + w->buf_len;
    size_t room = w->params.buffer_bytes - w->buf_len;
    *got = want < room ? want : room;
    return SS_OK;
}

ss_status ss_st_writer_commit(ss_st_writer *w, size_t n, ss_err *err)
{
    if (n > w->params.buffer_bytes - w->buf_len)
        return ss_err_set(err, SS_ERR_INTERNAL, "%s: commit beyond the reserved room", w->path);
    if ((uint64_t)n > w->total - w->pos)
        return ss_err_set(err, SS_ERR_INVALID_ARG, "%s: %zu bytes more than the %" PRIu64 " declared", w->path,
                          n, w->total - w->header_len);
    w->buf_len += n;
    w->pos += n;
    while (w->cur < w->n && w->ends[w->cur] <= w->pos)
        w->cur++;
    if (w->buf_len == w->params.buffer_bytes)
        SS_CHECK(stw_flush(w, err));
    return SS_OK;
}

ss_status ss_st_writer_append(ss_st_writer *w, const void *data, size_t len, ss_err *err)
{
    const char *p = data;
    if ((uint64_t)len > w->total - w->pos)
        return ss_err_set(err, SS_ERR_INVALID_ARG, "%s: %zu bytes more than the %" PRIu64 " declared", w->path,
                          len, w->total - w->header_len);
    while (len) {
        void *dst = NULL;
        size_t got = 0;
        SS_CHECK(ss_st_writer_reserve(w, len, &dst, &got, err));
        memcpy(dst, p, got);
        SS_CHECK(ss_st_writer_commit(w, got, err));
        p += got;
        len -= got;
    }
    return SS_OK;
}

ss_status ss_st_writer_finish(ss_st_writer *w, char digest_hex[SS_SHA256_HEX], int64_t *file_size, ss_err *err)
{
    if (w->finished)
        return ss_err_set(err, SS_ERR_INVALID_ARG, "%s: writer already finished", w->path);
    if (w->pos != w->total)
        return ss_err_set(err, SS_ERR_INVALID_ARG, "%s: %" PRIu64 " of %" PRIu64 " data bytes written", w->path,
                          w->pos - w->header_len, w->total - w->header_len);
    SS_CHECK(stw_flush(w, err));
    if (w->params.sync && fsync(w->fd) != 0)
        return ss_err_set(err, SS_ERR_IO, "%s: fsync: %s", w->path, strerror(errno));
    if (close(w->fd) != 0) {
        w->fd = -1;
        return ss_err_set(err, SS_ERR_IO, "%s: close: %s", w->path, strerror(errno));
    }
    w->fd = -1;
    if (digest_hex) {
        if (w->sha)
            SS_CHECK(ss_sha256_final_hex(w->sha, digest_hex, err));
        else
            digest_hex[0] = '\0';
    }
    if (file_size)
        *file_size = (int64_t)w->total;
    w->finished = 1;
    return SS_OK;
}

void ss_st_writer_quick_digest(const ss_st_writer *w, char out[SS_QUICK_DIGEST_LEN])
{
    if (w->finished && w->quick)
        ss_quick_digest_text(w->quick, out);
    else
        out[0] = '\0';
}

void ss_st_writer_destroy(ss_st_writer *w)
{
    if (!w)
        return;
    if (w->fd >= 0)
        close(w->fd);
    if (!w->finished && w->path)
        unlink(w->path);
    ss_sha256_destroy(w->sha);
    ss_quick_digest_destroy(w->quick);
    ss_free(w->buf);
    ss_free(w->ends);
    ss_free(w->path);
    ss_free(w);
}
