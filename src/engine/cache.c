/* cache.c — cache keys and paths, the local-folder digest, and small file-system helpers. */
#include "engine/cache.h"

#include <dirent.h>
#include <stdarg.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "engine/digest.h"

ss_status ss_cache_repo_key(const char *repo_id, char *buf, size_t cap, ss_err *err)
{
    const char *slash = strchr(repo_id, '/');
    if (!slash || slash == repo_id || !slash[1] || strchr(slash + 1, '/'))
        return ss_err_set(err, SS_ERR_INVALID_ARG, "'%s' is not a Hugging Face id of the form org/name", repo_id);
    int n = snprintf(buf, cap, "%.*s--%s", (int)(slash - repo_id), repo_id, slash + 1);
    if (n < 0 || (size_t)n >= cap)
        return ss_err_set(err, SS_ERR_INVALID_ARG, "'%s': id too long", repo_id);
    return SS_OK;
}

ss_status ss_cache_engine_dir(const char *cache, const char *key, const char *rev, int tp, int pp, ss_dtype dt,
                              char *dir, size_t dir_cap, char *lock, size_t lock_cap, ss_err *err)
{
    int n = snprintf(dir, dir_cap, "%s/engines/%s/%s/tp%d-pp%d-%s", cache, key, rev, tp, pp, ss_engine_dtype_name(dt));
    if (n < 0 || (size_t)n >= dir_cap)
        return ss_err_set(err, SS_ERR_INVALID_ARG, "%s: cache path too long", cache);
    if (lock) {
        n = snprintf(lock, lock_cap, "%s.lock", dir);
        if (n < 0 || (size_t)n >= lock_cap)
            return ss_err_set(err, SS_ERR_INVALID_ARG, "%s: cache path too long", cache);
    }
    return SS_OK;
}

static int cache_ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

int ss_cache_wanted_file(const char *name)
{
    if (!name[0] || name[0] == '.' || strchr(name, '/'))
        return 0;
    return cache_ends_with(name, ".safetensors") || cache_ends_with(name, ".json") || !strcmp(name, "tokenizer.model");
}

void ss_cache_files_free(ss_manifest_file *files, size_t n)
{
    for (size_t i = 0; files && i < n; i++) {
        ss_free(files[i].name);
        ss_free(files[i].digest);
    }
    ss_free(files);
}

static int cache_cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Digest of one file: the safetensors header (8 + N bytes) or, for other files, the whole content. */
static ss_status cache_file_digest(const char *path, const char *name, int64_t size, char **digest, ss_err *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return ss_err_set(err, SS_ERR_IO, "%s: %s", path, strerror(errno));
    ss_sha256 *h = NULL;
    ss_status st = ss_sha256_create(&h, err);
    int header = cache_ends_with(name, ".safetensors");
    int64_t limit = -1;
    if (st == SS_OK && header) {
        unsigned char len8[8];
        if (pread(fd, len8, 8, 0) != 8) {
            st = ss_err_set(err, SS_ERR_FORMAT, "%s: too short for a safetensors file", path);
        } else {
            uint64_t hl = 0;
            for (int i = 7; i >= 0; i--)
                hl = (hl << 8) | len8[i];
            if (hl > (uint64_t)size - 8 || hl > (100u << 20))
                st = ss_err_set(err, SS_ERR_FORMAT, "%s: header length %llu does not fit the file", path,
                                (unsigned long long)hl);
            limit = (int64_t)hl + 8;
        }
    }
    if (st == SS_OK)
        st = ss_sha256_fd(h, fd, limit, path, err);
    char hex[SS_SHA256_HEX];
    if (st == SS_OK)
        st = ss_sha256_final_hex(h, hex, err);
    ss_sha256_destroy(h);
    close(fd);
    if (st != SS_OK)
        return st;
    size_t cap = 16 + SS_SHA256_HEX;
    *digest = ss_malloc(cap);
    if (!*digest)
        return ss_err_set(err, SS_ERR_NOMEM, "out of memory");
    snprintf(*digest, cap, "%s%s", header ? "header-sha256:" : "sha256:", hex);
    return SS_OK;
}

ss_status ss_cache_local_digest(const char *dir, char key_hex[33], ss_manifest_file **files, size_t *n, ss_err *err)
{
    *files = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d)
        return ss_err_set(err, errno == ENOENT ? SS_ERR_NOT_FOUND : SS_ERR_IO, "%s: %s", dir, strerror(errno));
    char **names = NULL;
    size_t cnt = 0, cap = 0;
    ss_status st = SS_OK;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!ss_cache_wanted_file(e->d_name))
            continue;
        if (cnt == cap) {
            cap = cap ? cap * 2 : 16;
            char **nn = ss_realloc(names, cap * sizeof *nn);
            if (!nn) {
                st = ss_err_set(err, SS_ERR_NOMEM, "out of memory");
                break;
            }
            names = nn;
        }
        if (!(names[cnt] = ss_strdup(e->d_name))) {
            st = ss_err_set(err, SS_ERR_NOMEM, "out of memory");
            break;
        }
        cnt++;
    }
    closedir(d);
    if (st == SS_OK && cnt)
        qsort(names, cnt, sizeof *names, cache_cmp_names);
    ss_manifest_file *f = st == SS_OK ? ss_calloc(cnt ? cnt : 1, sizeof *f) : NULL;
    if (st == SS_OK && !f)
        st = ss_err_set(err, SS_ERR_NOMEM, "out of memory");
    ss_sha256 *all = NULL;
    if (st == SS_OK)
        st = ss_sha256_create(&all, err);
    size_t done = 0;
    for (size_t i = 0; st == SS_OK && i < cnt; i++) {
        char path[SS_CACHE_PATH_MAX];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        struct stat sb;
        if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode))
            continue;
        f[done].name = names[i];
        names[i] = NULL;
        f[done].size = (int64_t)sb.st_size;
        st = cache_file_digest(path, f[done].name, f[done].size, &f[done].digest, err);
        done++;
        if (st == SS_OK) {
            /* A safetensors file's digest covers its header only (hashing a 70B model's weights would take minutes):
             * its modification time joins the key, so weights rewritten in place (a fine-tune saved over the folder,
             * the header unchanged) make a new engine, never a stale one. A copy that does not keep the times
             * rebuilds once. */
            char when[48] = "";
            if (cache_ends_with(f[done - 1].name, ".safetensors"))
                snprintf(when, sizeof when, " %lld.%09ld", (long long)sb.st_mtim.tv_sec, (long)sb.st_mtim.tv_nsec);
            char line[512];
            int m = snprintf(line, sizeof line, "%s %lld %s%s\n", f[done - 1].name, (long long)f[done - 1].size,
                             f[done - 1].digest, when);
            st = ss_sha256_update(all, line, (size_t)m < sizeof line ? (size_t)m : sizeof line - 1, err);
        }
    }
    char hex[SS_SHA256_HEX];
    if (st == SS_OK)
        st = ss_sha256_final_hex(all, hex, err);
    ss_sha256_destroy(all);
    for (size_t i = 0; i < cnt; i++)
        ss_free(names[i]);
    ss_free(names);
    if (st != SS_OK) {
        ss_cache_files_free(f, done);
        return st;
    }
    memcpy(key_hex, hex, 32);
    key_hex[32] = '\0';
    *files = f;
    *n = done;
    return SS_OK;
}

ss_status ss_cache_path(char *buf, size_t cap, ss_err *err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, cap, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= cap)
        return ss_err_set(err, SS_ERR_INVALID_ARG, "path too long: %.200s...", buf);
    return SS_OK;
}

ss_status ss_cache_mkdirs(const char *path, ss_err *err)
{
    char tmp[SS_CACHE_PATH_MAX];
    int n = snprintf(tmp, sizeof tmp, "%s", path);
    if (n < 0 || (size_t)n >= sizeof tmp)
        return ss_err_set(err, SS_ERR_INVALID_ARG, "%s: path too long", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
            return ss_err_set(err, SS_ERR_IO, "%s: mkdir: %s", tmp, strerror(errno));
        *p = '/';
    }
    if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
        return ss_err_set(err, SS_ERR_IO, "%s: mkdir: %s", tmp, strerror(errno));
    return SS_OK;
}

ss_status ss_cache_rmtree(const char *path, ss_err *err)
{
    struct stat sb;
    if (lstat(path, &sb) != 0)
        return errno == ENOENT ? SS_OK : ss_err_set(err, SS_ERR_IO, "%s: %s", path, strerror(errno));
    if (!S_ISDIR(sb.st_mode)) {
        if (unlink(path) != 0 && errno != ENOENT)
            return ss_err_set(err, SS_ERR_IO, "%s: unlink: %s", path, strerror(errno));
        return SS_OK;
    }
    DIR *d = opendir(path);
    if (!d)
        return ss_err_set(err, SS_ERR_IO, "%s: %s", path, strerror(errno));
    ss_status st = SS_OK;
    struct dirent *e;
    while (st == SS_OK && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        char sub[SS_CACHE_PATH_MAX];
        int n = snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
        if (n < 0 || (size_t)n >= sizeof sub)
            st = ss_err_set(err, SS_ERR_IO, "%s: path too long", path);
        else
            st = ss_cache_rmtree(sub, err);
    }
    closedir(d);
    if (st == SS_OK && rmdir(path) != 0 && errno != ENOENT)
        st = ss_err_set(err, SS_ERR_IO, "%s: rmdir: %s", path, strerror(errno));
    return st;
}

ss_status ss_cache_fsync_dir(const char *path, ss_err *err)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return ss_err_set(err, SS_ERR_IO, "%s: %s", path, strerror(errno));
    int r = fsync(fd);
    int e = errno;
    close(fd);
    if (r != 0 && e != EINVAL)
        return ss_err_set(err, SS_ERR_IO, "%s: fsync: %s", path, strerror(e));
    return SS_OK;
}

ss_status ss_cache_copy_file(const char *src, const char *dst, int64_t *size, ss_err *err)
{
    int in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return ss_err_set(err, SS_ERR_IO, "%s: %s", src, strerror(errno));
    int out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out < 0) {
        close(in);
        return ss_err_set(err, SS_ERR_IO, "%s: %s", dst, strerror(errno));
    }
    const size_t cap = 1u << 20;
    char *buf = ss_malloc(cap);
    ss_status st = buf ? SS_OK : ss_err_set(err, SS_ERR_NOMEM, "out of memory");
    int64_t total = 0;
    while (st == SS_OK) {
        ssize_t r = read(in, buf, cap);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            st = ss_err_set(err, SS_ERR_IO, "%s: read: %s", src, strerror(errno));
            break;
        }
        if (r == 0)
            break;
        for (ssize_t off = 0; off < r && st == SS_OK;) {
            ssize_t w = write(out, buf + off, (size_t)(r - off));
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0)
                st = ss_err_set(err, SS_ERR_IO, "%s: write: %s", dst, strerror(errno));
            else
                off += w;
        }
        total += r;
    }
    if (st == SS_OK && fsync(out) != 0)
        st = ss_err_set(err, SS_ERR_IO, "%s: fsync: %s", dst, strerror(errno));
    ss_free(buf);
    close(in);
    if (close(out) != 0 && st == SS_OK)
        st = ss_err_set(err, SS_ERR_IO, "%s: close: %s", dst, strerror(errno));
    if (size)
        *size = total;
    return st;
}
