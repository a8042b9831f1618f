/* digest.c — SHA-256 over OpenSSL's EVP interface, plus file helpers that stream at disk speed. */
#include "engine/digest.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <string.h>
#include <unistd.h>

#include "core/alloc.h"

struct ss_sha256 {
    EVP_MD_CTX *ctx;
};

ss_status ss_sha256_create(ss_sha256 **out, ss_err *err)
{
    ss_sha256 *h = ss_calloc(1, sizeof *h);
    if (!h)
        return ss_err_set(err, SS_ERR_NOMEM, "sha256: out of memory");
    h->ctx = EVP_MD_CTX_new();
    if (!h->ctx || EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL) != 1) {
        ss_sha256_destroy(h);
        return ss_err_set(err, SS_ERR_NOMEM, "sha256: cannot create a digest context");
    }
    *out = h;
    return SS_OK;
}

void ss_sha256_destroy(ss_sha256 *h)
{
    if (!h)
        return;
    EVP_MD_CTX_free(h->ctx);
    ss_free(h);
}

ss_status ss_sha256_reset(ss_sha256 *h, ss_err *err)
{
    if (EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL) != 1)
        return ss_err_set(err, SS_ERR_INTERNAL, "sha256: reset failed");
    return SS_OK;
}

ss_status ss_sha256_update(ss_sha256 *h, const void *data, size_t len, ss_err *err)
{
    if (len && EVP_DigestUpdate(h->ctx, data, len) != 1)
        return ss_err_set(err, SS_ERR_INTERNAL, "sha256: update failed");
    return SS_OK;
}

ss_status ss_sha256_final_hex(ss_sha256 *h, char hex[SS_SHA256_HEX], ss_err *err)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (EVP_DigestFinal_ex(h->ctx, md, &n) != 1 || n != 32)
        return ss_err_set(err, SS_ERR_INTERNAL, "sha256: final failed");
    static const char digits[] = "0123456789abcdef";
    for (unsigned int i = 0; i < n; i++) {
        hex[2 * i] = digits[md[i] >> 4];
        hex[2 * i + 1] = digits[md[i] & 15];
    }
    hex[64] = '\0';
    return SS_OK;
}

/* The first `limit` bytes of fd from offset 0 (limit < 0: to its end), in blocks of up to 8 MiB handed to fn: the one
 * read loop behind the helpers below. `name` is used in errors. */
static ss_status fd_blocks(int fd, int64_t limit, const char *name,
                           ss_status (*fn)(void *ctx, const void *block, size_t n, ss_err *err), void *ctx, ss_err *err)
{
    const size_t cap = 8u << 20;
    unsigned char *buf = ss_malloc(cap);
    if (!buf)
        return ss_err_set(err, SS_ERR_NOMEM, "%s: out of memory reading", name);
    ss_status st = SS_OK;
    for (int64_t off = 0; st == SS_OK;) {
        size_t want = cap;
        if (limit >= 0 && (int64_t)want > limit - off)
            want = (size_t)(limit - off);
        if (!want)
            break;
        ssize_t r = pread(fd, buf, want, (off_t)off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            st = ss_err_set(err, SS_ERR_IO, "%s: read: %s", name, strerror(errno));
            break;
        }
        if (r == 0) {
            if (limit >= 0)
                st = ss_err_set(err, SS_ERR_IO, "%s: file shorter than %lld bytes", name, (long long)limit);
            break;
        }
        st = fn(ctx, buf, (size_t)r, err);
        off += r;
    }
    ss_free(buf);
    return st;
}

static ss_status sha_block(void *ctx, const void *block, size_t n, ss_err *err)
{
    return ss_sha256_update(ctx, block, n, err);
}

ss_status ss_sha256_fd(ss_sha256 *h, int fd, int64_t limit, const char *name, ss_err *err)
{
    return fd_blocks(fd, limit, name, sha_block, h, err);
}

ss_status ss_file_blocks(const char *path, ss_status (*fn)(void *ctx, const void *block, size_t n, ss_err *err),
                         void *ctx, ss_err *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return ss_err_set(err, errno == ENOENT ? SS_ERR_NOT_FOUND : SS_ERR_IO, "%s: %s", path, strerror(errno));
    (void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    ss_status st = fd_blocks(fd, -1, path, fn, ctx, err);
    close(fd);
    return st;
}

ss_status ss_sha256_file(const char *path, char hex[SS_SHA256_HEX], ss_err *err)
{
    ss_sha256 *h = NULL;
    ss_status st = ss_sha256_create(&h, err);
    if (st == SS_OK)
        st = ss_file_blocks(path, sha_block, h, err);
    if (st == SS_OK)
        st = ss_sha256_final_hex(h, hex, err);
    ss_sha256_destroy(h);
    return st;
}
