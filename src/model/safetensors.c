/* safetensors.c — mapping safetensors files and validating their headers before any byte is trusted.
 * Also opens sharded checkpoints through model.safetensors.index.json. */
#include "model/safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/json_num.h"
#include "core/fileio.h"

struct ss_st_file {
    char *path;
    const uint8_t *map;     /* whole file (mmap) or caller's buffer */
    size_t map_len;
    int mapped;             /* 1: munmap on close */
    ss_st_tensor *tensors;  /* sorted by data offset during validation, then by name */
    size_t n;
    char *names;            /* all tensor names, NUL-separated */
};

static int st_dtype_parse(const char *s, ss_dtype *out)
{
    if (!strcmp(s, "BF16"))
        *out = SS_DTYPE_BF16;
    else if (!strcmp(s, "F16"))
        *out = SS_DTYPE_F16;
    else if (!strcmp(s, "F32"))
        *out = SS_DTYPE_F32;
    else if (!strcmp(s, "F8_E4M3")) /* an fp8 checkpoint's weights, read with their scales (fp8_weights.h) */
        *out = SS_DTYPE_E4M3;
    else
        return 0;
    return 1;
}

static int st_cmp_offset(const void *a, const void *b)
{
    const ss_st_tensor *x = a, *y = b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static int st_cmp_name(const void *a, const void *b)
{
    const ss_st_tensor *x = a, *y = b;
    return strcmp(x->name, y->name);
}

/* Validates one header entry into t. */
static ss_status st_parse_entry(const cJSON *e, const char *fname, uint64_t data_len, ss_st_tensor *t, ss_err *err)
{
    const char *tn = e->string;
    if (!cJSON_IsObject(e))
        return ss_err_set(err, SS_ERR_FORMAT, "%s: tensor '%s': header entry is not an object", fname, tn);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(dt) || !cJSON_IsArray(shape) || !cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2)
        return ss_err_set(err, SS_ERR_FORMAT, "%s: tensor '%s': needs dtype, shape and data_offsets [begin, end]", fname,
                          tn);
    if (!st_dtype_parse(dt->valuestring, &t->dtype))
        return ss_err_set(err, SS_ERR_UNSUPPORTED, "%s: tensor '%s': dtype %s is not supported (bf16, f16, f32, f8_e4m3)", fname,
                          tn, dt->valuestring);
    int nd = cJSON_GetArraySize(shape);
    if (nd > SS_ST_MAX_DIMS)
        return ss_err_set(err, SS_ERR_UNSUPPORTED, "%s: tensor '%s': %d dimensions (at most %d)", fname, tn, nd,
                          SS_ST_MAX_DIMS);
    t->ndim = nd;
    uint64_t elems = 1;
    for (int i = 0; i < nd; i++) {
        const cJSON *d = cJSON_GetArrayItem(shape, i);
        if (!ss_json_int(d, 0, INT64_C(9000000000000000), &t->shape[i]))
            return ss_err_set(err, SS_ERR_FORMAT, "%s: tensor '%s': shape[%d] is not a non-negative integer", fname, tn,
                              i);
        if (t->shape[i] && elems > UINT64_MAX / (uint64_t)t->shape[i])
            return ss_err_set(err, SS_ERR_FORMAT, "%s: tensor '%s': shape overflows", fname, tn);
        elems *= (uint64_t)t->shape[i];
    }
    double b = cJSON_GetArrayItem(offs, 0)->valuedouble, en = cJSON_GetArrayItem(offs, 1)->valuedouble;
    if (!cJSON_IsNumber(cJSON_GetArrayItem(offs, 0)) || !cJSON_IsNumber(cJSON_GetArrayItem(offs, 1)) || b < 0 ||
        en < b || en > 1.8e19 || b != (double)(uint64_t)b || en != (double)(uint64_t)en)
        return ss_err_set(err, SS_ERR_FORMAT, "%s: tensor '%s': bad data_offsets", fname, tn);
    uint64_t begin = (uint64_t)b, end = (uint64_t)en;
    uint64_t esz = ss_dtype_size(t->dtype);
    if (elems > UINT64_MAX / esz || elems * esz != end - begin)
        return ss_err_set(err, SS_ERR_FORMAT,
                          "%s: tensor '%s': shape needs %llu bytes of %s but data_offsets span %llu bytes", fname, tn,
                          (unsigned long long)(elems * esz), ss_dtype_name(t->dtype),
                          (unsigned long long)(end - begin));
    if (end > data_len)
        return ss_err_set(err, SS_ERR_FORMAT,
                          "%s: tensor '%s': data ends at byte %llu of the data section, which holds only %llu "
                          "(truncated file?)",
                          fname, tn, (unsigned long long)end, (unsigned long long)data_len);
    t->offset = begin;
    t->nbytes = end - begin;
    return SS_OK;
}

ss_status ss_st_parse(const uint8_t *buf, size_t len, const char *name, ss_st_file **out, ss_err *err)
{
    *out = NULL;
    if (len < 8)
        return ss_err_set(err, SS_ERR_FORMAT, "%s: file of %zu bytes is too short for a safetensors header", name, len);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = (hlen << 8) | buf[i];
    if (hlen > SS_ST_MAX_HEADER)
        return ss_err_set(err, SS_ERR_FORMAT, "%s: header length %llu exceeds the %u-byte cap", name,
                          (unsigned long long)hlen, SS_ST_MAX_HEADER);
    if (hlen > len - 8)
        return ss_err_set(err, SS_ERR_FORMAT, "%s: header length %llu runs past the end of the %zu-byte file", name,
                          (unsigned long long)hlen, len);
    cJSON *root = cJSON_ParseWithLength((const char *)buf + 8, (size_t)hlen);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return ss_err_set(err, SS_ERR_FORMAT, "%s: header is not a JSON object", name);
    }
    ss_status st = SS_OK;
    ss_st_file *f = ss_calloc(1, sizeof *f);
    size_t count = 0, names_len = 0;
    for (cJSON *e = root->child; e; e = e->next) {
        if (strcmp(e->string, "__metadata__")) {
            count++;
            names_len += strlen(e->string) + 1;
        }
    }
    if (!f || !(f->path = ss_strdup(name)) || !(f->tensors = ss_calloc(count ? count : 1, sizeof *f->tensors)) ||
        !(f->names = ss_malloc(names_len ? names_len : 1))) {
        st = ss_err_set(err, SS_ERR_NOMEM, "%s: out of memory reading the header", name);
        goto fail;
    }
    uint64_t data_len = len - 8 - hlen;
    size_t i = 0, np = 0;
    for (cJSON *e = root->child; e; e = e->next) {
        if (!strcmp(e->string, "__metadata__"))
            continue;
        ss_st_tensor *t = &f->tensors[i++];
        size_t nl = strlen(e->string) + 1;
        memcpy(f->names + np, e->string, nl);
        t->name = f->names + np;
        np += nl;
        SS_CHECK_GOTO(st_parse_entry(e, name, data_len, t, err), st, fail);
    }
    f->n = count;
    /* No two tensors may share bytes: in offset order, each non-empty tensor starts at or after the end of the
     * non-empty one before it (an empty tensor between two must not hide their overlap). */
    qsort(f->tensors, f->n, sizeof *f->tensors, st_cmp_offset);
    const ss_st_tensor *prev = NULL;
    for (size_t k = 0; k < f->n; k++) {
        const ss_st_tensor *b = &f->tensors[k];
        if (!b->nbytes)
            continue;
        if (prev && b->offset < prev->offset + prev->nbytes) {
            st = ss_err_set(err, SS_ERR_FORMAT, "%s: tensors '%s' and '%s' overlap", name, prev->name, b->name);
            goto fail;
        }
        prev = b;
    }
    for (size_t k = 0; k < f->n; k++) {
        f->tensors[k].data = buf + 8 + hlen + f->tensors[k].offset;
        f->tensors[k].offset += 8 + hlen;
    }
    qsort(f->tensors, f->n, sizeof *f->tensors, st_cmp_name);
    for (size_t k = 1; k < f->n; k++)
        if (!strcmp(f->tensors[k - 1].name, f->tensors[k].name)) {
            st = ss_err_set(err, SS_ERR_FORMAT, "%s: tensor '%s' appears twice", name, f->tensors[k].name);
            goto fail;
        }
    f->map = buf;
    f->map_len = len;
    cJSON_Delete(root);
    *out = f;
    return SS_OK;
fail:
    cJSON_Delete(root);
    if (st == SS_OK)
        st = SS_ERR_NOMEM;
    ss_st_close(f);
    return st;
}

ss_status ss_st_open(const char *path, ss_st_file **out, ss_err *err)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return ss_err_set(err, ss_file_error_status(errno), "%s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return ss_err_set(err, SS_ERR_IO, "%s: %s", path, strerror(e));
    }
    size_t len = (size_t)sb.st_size;
    if (len < 8) {
        close(fd);
        return ss_err_set(err, SS_ERR_FORMAT, "%s: file of %zu bytes is too short for a safetensors header", path,
                          len);
    }
    void *map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (map == MAP_FAILED)
        return ss_err_set(err, SS_ERR_IO, "%s: mmap: %s", path, strerror(e));
    /* Weights are read front to back once: ask for large readahead instead of 4 KiB page faults
     * (what slow network volumes punish). */
    madvise(map, len, MADV_SEQUENTIAL);
    ss_status st = ss_st_parse(map, len, path, out, err);
    if (st != SS_OK) {
        munmap(map, len);
        return st;
    }
    (*out)->mapped = 1;
    return SS_OK;
}

void ss_st_close(ss_st_file *f)
{
    if (!f)
        return;
    if (f->mapped && f->map)
        munmap((void *)f->map, f->map_len);
    ss_free(f->tensors);
    ss_free(f->names);
    ss_free(f->path);
    ss_free(f);
}

const uint8_t *ss_st_bytes(const ss_st_file *f, size_t *len)
{
    *len = f->map_len;
    return f->map;
}

const char *ss_st_path(const ss_st_file *f)
{
    return f->path;
}

size_t ss_st_count(const ss_st_file *f)
{
    return f->n;
}

const ss_st_tensor *ss_st_at(const ss_st_file *f, size_t i)
{
    return i < f->n ? &f->tensors[i] : NULL;
}

const ss_st_tensor *ss_st_find(const ss_st_file *f, const char *name)
{
    ss_st_tensor key;
    key.name = name;
    return bsearch(&key, f->tensors, f->n, sizeof key, st_cmp_name);
}

/* ---- checkpoints ---- */

struct ss_checkpoint {
    ss_st_file **files;
    size_t n_files;
};

void ss_checkpoint_close(ss_checkpoint *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n_files; i++)
        ss_st_close(c->files[i]);
    ss_free(c->files);
    ss_free(c);
}

static ss_status ckpt_add(ss_checkpoint *c, const char *path, ss_err *err)
{
    ss_st_file **nf = ss_realloc(c->files, (c->n_files + 1) * sizeof *nf);
    if (!nf)
        return ss_err_set(err, SS_ERR_NOMEM, "out of memory");
    c->files = nf;
    SS_CHECK(ss_st_open(path, &c->files[c->n_files], err));
    c->n_files++;
    return SS_OK;
}

static ss_status ckpt_open_index(ss_checkpoint *c, const char *dir, const char *index_path, ss_err *err)
{
    char *text = NULL;
    size_t len = 0;
    SS_CHECK(ss_read_file(index_path, 64u << 20, &text, &len, err));
    cJSON *root = cJSON_ParseWithLength(text, len);
    ss_free(text);
    ss_status st = SS_OK;
    const cJSON *map = root ? cJSON_GetObjectItemCaseSensitive(root, "weight_map") : NULL;
    if (!cJSON_IsObject(map)) {
        st = ss_err_set(err, SS_ERR_FORMAT, "%s: not JSON with a \"weight_map\" object", index_path);
        goto out;
    }
    /* Open each distinct file once, in index order of first appearance. */
    for (const cJSON *e = map->child; e; e = e->next) {
        if (!cJSON_IsString(e) || strchr(e->valuestring, '/') || e->valuestring[0] == '.') {
            st = ss_err_set(err, SS_ERR_FORMAT, "%s: tensor '%s' names an invalid file", index_path, e->string);
            goto out;
        }
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, e->valuestring);
        int seen = 0;
        for (size_t i = 0; i < c->n_files && !seen; i++)
            seen = !strcmp(ss_st_path(c->files[i]), path);
        if (!seen)
            SS_CHECK_GOTO(ckpt_add(c, path, err), st, out);
        const char *fp = NULL;
        if (!ss_checkpoint_find(c, e->string, &fp) || strcmp(fp, path)) {
            st = ss_err_set(err, SS_ERR_FORMAT, "%s: tensor '%s' is not in %s as the index says", index_path, e->string,
                            e->valuestring);
            goto out;
        }
    }
out:
    cJSON_Delete(root);
    return st;
}

ss_status ss_checkpoint_open(const char *dir, ss_checkpoint **out, ss_err *err)
{
    *out = NULL;
    ss_checkpoint *c = ss_calloc(1, sizeof *c);
    if (!c)
        return ss_err_set(err, SS_ERR_NOMEM, "out of memory");
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    ss_status st;
    if (access(path, F_OK) == 0) {
        st = ckpt_open_index(c, dir, path, err);
    } else {
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        st = ckpt_add(c, path, err);
        if (st == SS_ERR_NOT_FOUND)
            st = ss_err_set(err, SS_ERR_NOT_FOUND,
                            "%s: no model.safetensors or model.safetensors.index.json (is it a checkpoint folder?)",
                            dir);
    }
    if (st != SS_OK) {
        ss_checkpoint_close(c);
        return st;
    }
    *out = c;
    return SS_OK;
}

ss_status ss_checkpoint_open_file(const char *path, ss_checkpoint **out, ss_err *err)
{
    *out = NULL;
    ss_checkpoint *c = ss_calloc(1, sizeof *c);
    if (!c)
        return ss_err_set(err, SS_ERR_NOMEM, "out of memory");
    ss_status st = ckpt_add(c, path, err);
    if (st != SS_OK) {
        ss_checkpoint_close(c);
        return st;
    }
    *out = c;
    return SS_OK;
}

const ss_st_tensor *ss_checkpoint_find(const ss_checkpoint *c, const char *name, const char **file_path)
{
    for (size_t i = 0; i < c->n_files; i++) {
        const ss_st_tensor *t = ss_st_find(c->files[i], name);
        if (t) {
            if (file_path)
                *file_path = ss_st_path(c->files[i]);
            return t;
        }
    }
    return NULL;
}

size_t ss_checkpoint_file_count(const ss_checkpoint *c)
{
    return c->n_files;
}

const ss_st_file *ss_checkpoint_file(const ss_checkpoint *c, size_t i)
{
    return i < c->n_files ? c->files[i] : NULL;
}
