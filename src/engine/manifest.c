/* manifest.c — manifest.json to and from C structs (cJSON at the edge, strict field checks). */
#include "engine/manifest.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/fileio.h"
#include "core/json_num.h"
#include "engine/quick_digest.h"

ss_status ss_engine_dtype_parse(const char *s, ss_dtype *out, ss_err *err)
{
    if (!strcmp(s, "bf16") || !strcmp(s, "bfloat16"))
        *out = SS_DTYPE_BF16;
    else if (!strcmp(s, "fp16") || !strcmp(s, "f16") || !strcmp(s, "float16"))
        *out = SS_DTYPE_F16;
    else if (!strcmp(s, "fp32") || !strcmp(s, "f32") || !strcmp(s, "float32"))
        *out = SS_DTYPE_F32;
    else
        return ss_err_set(err, SS_ERR_INVALID_ARG, "dtype '%s': expected bf16, fp16 or fp32", s);
    return SS_OK;
}

const char *ss_engine_dtype_name(ss_dtype t)
{
    switch (t) {
    case SS_DTYPE_BF16: return "bf16";
    case SS_DTYPE_F16: return "fp16";
    case SS_DTYPE_F32: return "fp32";
    default: return "?";
    }
}

int ss_manifest_name_ok(const char *name)
{
    return name && name[0] && !strchr(name, '/') && strcmp(name, ".") && strcmp(name, "..") &&
           strlen(name) < 256;
}

static void man_files_free(ss_manifest_file *f, size_t n)
{
    for (size_t i = 0; f && i < n; i++) {
        ss_free(f[i].name);
        ss_free(f[i].digest);
        ss_free(f[i].quick_digest);
    }
    ss_free(f);
}

void ss_manifest_destroy(ss_manifest *m)
{
    if (!m)
        return;
    ss_free(m->tool_version);
    ss_free(m->source_id);
    ss_free(m->source_revision);
    man_files_free(m->source_files, m->n_source_files);
    man_files_free(m->ranks, m->n_ranks);
    man_files_free(m->extras, m->n_extras);
    ss_free(m);
}

/* ---- parsing ---- */

static ss_status man_str(const cJSON *o, const char *key, const char *name, char **out, int required, ss_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) {
        if (required)
            return ss_err_set(err, SS_ERR_FORMAT, "%s: missing field \"%s\"", name, key);
        *out = NULL;
        return SS_OK;
    }
    if (!cJSON_IsString(v))
        return ss_err_set(err, SS_ERR_FORMAT, "%s: field \"%s\" must be a string", name, key);
    *out = ss_strdup(v->valuestring);
    if (!*out)
        return ss_err_set(err, SS_ERR_NOMEM, "%s: out of memory", name);
    return SS_OK;
}

static ss_status man_int(const cJSON *o, const char *key, const char *name, int64_t lo, int64_t hi, int64_t *out,
                         ss_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v)
        return ss_err_set(err, SS_ERR_FORMAT, "%s: missing field \"%s\"", name, key);
    if (!ss_json_int(v, lo, hi, out))
        return ss_err_set(err, SS_ERR_FORMAT, "%s: field \"%s\" must be an integer in [%lld, %lld]", name, key,
                          (long long)lo, (long long)hi);
    return SS_OK;
}

static ss_status man_files(const cJSON *o, const char *key, const char *name, ss_manifest_file **out, size_t *n,
                           ss_err *err)
{
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, key);
    *out = NULL;
    *n = 0;
    if (!a)
        return ss_err_set(err, SS_ERR_FORMAT, "%s: missing field \"%s\"", name, key);
    if (!cJSON_IsArray(a))
        return ss_err_set(err, SS_ERR_FORMAT, "%s: field \"%s\" must be an array", name, key);
    size_t cnt = (size_t)cJSON_GetArraySize(a);
    if (cnt > 1u << 20)
        return ss_err_set(err, SS_ERR_FORMAT, "%s: \"%s\" has too many entries", name, key);
    ss_manifest_file *f = ss_calloc(cnt ? cnt : 1, sizeof *f);
    if (!f)
        return ss_err_set(err, SS_ERR_NOMEM, "%s: out of memory", name);
    *out = f;
    size_t i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, a) {
        char where[320];
        snprintf(where, sizeof where, "%s: %s[%zu]", name, key, i);
        if (!cJSON_IsObject(e))
            return ss_err_set(err, SS_ERR_FORMAT, "%s must be an object", where);
        *n = i + 1;
        SS_CHECK(man_str(e, "name", where, &f[i].name, 1, err));
        if (!ss_manifest_name_ok(f[i].name))
            return ss_err_set(err, SS_ERR_FORMAT, "%s: bad file name \"%s\"", where, f[i].name);
        int64_t sz = 0;
        SS_CHECK(man_int(e, "size", where, 0, (int64_t)1 << 53, &sz, err));
        f[i].size = sz;
        SS_CHECK(man_str(e, "digest", where, &f[i].digest, 0, err));
        SS_CHECK(man_str(e, "quick_digest", where, &f[i].quick_digest, 0, err));
        if (f[i].quick_digest && !ss_quick_digest_valid(f[i].quick_digest))
            return ss_err_set(err, SS_ERR_FORMAT, "%s: field \"quick_digest\" must be \"%s\" and 32 lowercase hex digits", where,
                              SS_QUICK_DIGEST_PREFIX);
        i++;
    }
    return SS_OK;
}

static ss_status man_from_json(const cJSON *root, const char *name, ss_manifest *m, ss_err *err)
{
    if (!cJSON_IsObject(root))
        return ss_err_set(err, SS_ERR_FORMAT, "%s: not a JSON object", name);
    int64_t v = 0;
    const cJSON *fv = cJSON_GetObjectItemCaseSensitive(root, "format_version");
    if (!fv)
        return ss_err_set(err, SS_ERR_FORMAT, "%s: missing field \"format_version\"", name);
    if (!cJSON_IsNumber(fv) || fv->valuedouble != SS_MANIFEST_VERSION)
        return ss_err_set(err, SS_ERR_UNSUPPORTED, "%s: format_version %g, this shardserve reads version %d", name,
                          cJSON_IsNumber(fv) ? fv->valuedouble : -1.0, SS_MANIFEST_VERSION);
    m->format_version = SS_MANIFEST_VERSION;
    SS_CHECK(man_str(root, "tool_version", name, &m->tool_version, 1, err));
    const cJSON *src = cJSON_GetObjectItemCaseSensitive(root, "source");
    if (!cJSON_IsObject(src))
        return ss_err_set(err, SS_ERR_FORMAT, "%s: missing object \"source\"", name);
    SS_CHECK(man_str(src, "id", name, &m->source_id, 1, err));
    SS_CHECK(man_str(src, "revision", name, &m->source_revision, 1, err));
    SS_CHECK(man_files(src, "files", name, &m->source_files, &m->n_source_files, err));
    const cJSON *mod = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (!cJSON_IsObject(mod))
        return ss_err_set(err, SS_ERR_FORMAT, "%s: missing object \"model\"", name);
    char *arch = NULL;
    SS_CHECK(man_str(mod, "architecture", name, &arch, 1, err));
    snprintf(m->model.arch, sizeof m->model.arch, "%s", arch);
    ss_free(arch);
    static const char *const keys[] = {"vocab_size", "hidden_size", "intermediate_size", "num_layers",
                                       "num_heads",  "num_kv_heads", "head_dim"};
    int32_t *dst[] = {&m->model.vocab_size, &m->model.hidden_size, &m->model.intermediate_size, &m->model.n_layers,
                      &m->model.n_heads,    &m->model.n_kv_heads,  &m->model.head_dim};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        SS_CHECK(man_int(mod, keys[i], name, 1, INT32_MAX, &v, err));
        *dst[i] = (int32_t)v;
    }
    const cJSON *tie = cJSON_GetObjectItemCaseSensitive(mod, "tie_embeddings");
    if (!cJSON_IsBool(tie))
        return ss_err_set(err, SS_ERR_FORMAT, "%s: field \"tie_embeddings\" must be true or false", name);
    m->model.tie_embeddings = cJSON_IsTrue(tie);
    SS_CHECK(man_int(root, "tp", name, 1, 4096, &v, err));
    m->tp = (int)v;
    SS_CHECK(man_int(root, "pp", name, 1, 4096, &v, err));
    m->pp = (int)v;
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(root, "dtype");
    if (!cJSON_IsString(dt))
        return ss_err_set(err, SS_ERR_FORMAT, "%s: field \"dtype\" must be a string", name);
    ss_status st = ss_engine_dtype_parse(dt->valuestring, &m->dtype, err);
    if (st != SS_OK) {
        ss_err_prefix(err, "%s", name);
        return SS_ERR_FORMAT;
    }
    SS_CHECK(man_files(root, "ranks", name, &m->ranks, &m->n_ranks, err));
    if (m->n_ranks != (size_t)m->tp * (size_t)m->pp)
        return ss_err_set(err, SS_ERR_FORMAT, "%s: %zu rank files for tp %d x pp %d", name, m->n_ranks, m->tp, m->pp);
    size_t n_quick = 0; /* a builder writes one for every rank file, or (before them) none */
    for (size_t i = 0; i < m->n_ranks; i++)
        n_quick += m->ranks[i].quick_digest != NULL;
    if (n_quick && n_quick != m->n_ranks)
        return ss_err_set(err, SS_ERR_FORMAT, "%s: \"quick_digest\" is given for %zu of the %zu rank files (every one "
                          "or none)", name, n_quick, m->n_ranks);
    SS_CHECK(man_files(root, "files", name, &m->extras, &m->n_extras, err));
    return SS_OK;
}

ss_status ss_manifest_parse(const char *json, size_t len, const char *name, ss_manifest **out, ss_err *err)
{
    if (len > SS_MANIFEST_MAX_BYTES)
        return ss_err_set(err, SS_ERR_FORMAT, "%s: larger than %u bytes", name, SS_MANIFEST_MAX_BYTES);
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root)
        return ss_err_set(err, SS_ERR_FORMAT, "%s: not valid JSON", name);
    ss_manifest *m = ss_calloc(1, sizeof *m);
    ss_status st = m ? man_from_json(root, name, m, err) : ss_err_set(err, SS_ERR_NOMEM, "%s: out of memory", name);
    cJSON_Delete(root);
    if (st != SS_OK) {
        ss_manifest_destroy(m);
        return st;
    }
    *out = m;
    return SS_OK;
}

ss_status ss_manifest_load(const char *dir, ss_manifest **out, ss_err *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, SS_MANIFEST_NAME);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return ss_err_set(err, ss_file_error_status(errno), "%s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || sb.st_size > (off_t)SS_MANIFEST_MAX_BYTES) {
        close(fd);
        return ss_err_set(err, SS_ERR_FORMAT, "%s: unreadable or larger than %u bytes", path, SS_MANIFEST_MAX_BYTES);
    }
    size_t len = (size_t)sb.st_size;
    char *buf = ss_malloc(len + 1);
    if (!buf) {
        close(fd);
        return ss_err_set(err, SS_ERR_NOMEM, "%s: out of memory", path);
    }
    size_t got = 0;
    while (got < len) {
        ssize_t r = read(fd, buf + got, len - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    ss_status st = got == len ? ss_manifest_parse(buf, len, path, out, err)
                              : ss_err_set(err, SS_ERR_IO, "%s: short read", path);
    ss_free(buf);
    return st;
}

/* ---- writing ---- */

static cJSON *man_files_json(const ss_manifest_file *f, size_t n)
{
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; a && i < n; i++) {
        cJSON *e = cJSON_CreateObject();
        if (!e || !cJSON_AddItemToArray(a, e) || !cJSON_AddStringToObject(e, "name", f[i].name) ||
            !cJSON_AddNumberToObject(e, "size", (double)f[i].size) ||
            (f[i].digest && !cJSON_AddStringToObject(e, "digest", f[i].digest)) ||
            (f[i].quick_digest && !cJSON_AddStringToObject(e, "quick_digest", f[i].quick_digest))) {
            cJSON_Delete(a);
            return NULL;
        }
    }
    return a;
}

ss_status ss_manifest_to_json(const ss_manifest *m, char **out, ss_err *err)
{
    cJSON *root = cJSON_CreateObject(), *src = NULL, *mod = NULL, *a = NULL;
    int ok = root && cJSON_AddNumberToObject(root, "format_version", SS_MANIFEST_VERSION) &&
             cJSON_AddStringToObject(root, "format", "shardserve-engine") &&
             cJSON_AddStringToObject(root, "tool_version", m->tool_version ? m->tool_version : SS_VERSION) &&
             (src = cJSON_AddObjectToObject(root, "source")) &&
             cJSON_AddStringToObject(src, "id", m->source_id) &&
             cJSON_AddStringToObject(src, "revision", m->source_revision) &&
             (a = man_files_json(m->source_files, m->n_source_files)) && cJSON_AddItemToObject(src, "files", a);
    if (!ok && a && !cJSON_GetObjectItemCaseSensitive(src, "files"))
        cJSON_Delete(a);
    a = NULL;
    ok = ok && (mod = cJSON_AddObjectToObject(root, "model")) &&
         cJSON_AddStringToObject(mod, "architecture", m->model.arch) &&
         cJSON_AddNumberToObject(mod, "vocab_size", m->model.vocab_size) &&
         cJSON_AddNumberToObject(mod, "hidden_size", m->model.hidden_size) &&
         cJSON_AddNumberToObject(mod, "intermediate_size", m->model.intermediate_size) &&
         cJSON_AddNumberToObject(mod, "num_layers", m->model.n_layers) &&
         cJSON_AddNumberToObject(mod, "num_heads", m->model.n_heads) &&
         cJSON_AddNumberToObject(mod, "num_kv_heads", m->model.n_kv_heads) &&
         cJSON_AddNumberToObject(mod, "head_dim", m->model.head_dim) &&
         cJSON_AddBoolToObject(mod, "tie_embeddings", m->model.tie_embeddings) &&
         cJSON_AddNumberToObject(root, "tp", m->tp) && cJSON_AddNumberToObject(root, "pp", m->pp) &&
         cJSON_AddStringToObject(root, "dtype", ss_engine_dtype_name(m->dtype));
    if (ok) {
        a = man_files_json(m->ranks, m->n_ranks);
        ok = a && cJSON_AddItemToObject(root, "ranks", a);
        if (!ok)
            cJSON_Delete(a);
    }
    if (ok) {
        a = man_files_json(m->extras, m->n_extras);
        ok = a && cJSON_AddItemToObject(root, "files", a);
        if (!ok)
            cJSON_Delete(a);
    }
    char *text = ok ? cJSON_Print(root) : NULL;
    cJSON_Delete(root);
    if (!text)
        return ss_err_set(err, SS_ERR_NOMEM, "manifest: out of memory");
    *out = ss_strdup(text);
    cJSON_free(text);
    if (!*out)
        return ss_err_set(err, SS_ERR_NOMEM, "manifest: out of memory");
    return SS_OK;
}

ss_status ss_manifest_save(const ss_manifest *m, const char *dir, ss_err *err)
{
    char *text = NULL;
    SS_CHECK(ss_manifest_to_json(m, &text, err));
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, SS_MANIFEST_NAME);
    ss_status st = SS_OK;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        st = ss_err_set(err, SS_ERR_IO, "%s: %s", path, strerror(errno));
    } else {
        size_t len = strlen(text), off = 0;
        while (off < len) {
            ssize_t w = write(fd, text + off, len - off);
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0) {
                st = ss_err_set(err, SS_ERR_IO, "%s: write: %s", path, strerror(errno));
                break;
            }
            off += (size_t)w;
        }
        if (st == SS_OK && (write(fd, "\n", 1) != 1 || fsync(fd) != 0))
            st = ss_err_set(err, SS_ERR_IO, "%s: write: %s", path, strerror(errno));
        close(fd);
    }
    ss_free(text);
    return st;
}
