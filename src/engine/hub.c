/* hub.c — Hugging Face Hub client: revision resolution (JSON API) and file downloads with curl multi.
 * Redirects are followed by hand so the Authorization header goes to the Hub's origin only: a CDN on
 * another host never sees the token. Files land as <name>.incomplete, resume with Range, are checked
 * against the LFS sha256 and renamed into place. */
#include "engine/hub.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/json_num.h"
#include "core/log.h"
#include "engine/cache.h"
#include "engine/digest.h"
#include "core/progress.h"

#define HUB_API_MAX (32u << 20)
#define HUB_MAX_REDIRECTS 10
#define HUB_URL_MAX 8192

ss_hub_params ss_hub_default_params(void)
{
    ss_hub_params p;
    memset(&p, 0, sizeof p);
    p.endpoint = "https://huggingface.co";
    p.parallel = 4;
    p.max_retries = 5;
    p.connect_timeout_s = 30;
    p.stall_timeout_s = 60;
    return p;
}

static int hub_id_char(char c)
{
    return isalnum((unsigned char)c) || c == '-' || c == '_' || c == '.';
}

int ss_hub_is_repo_id(const char *s)
{
    const char *slash = strchr(s, '/');
    if (!slash || slash == s || !slash[1] || strlen(s) > 200)
        return 0;
    for (const char *p = s; *p; p++)
        if (p != slash && !hub_id_char(*p))
            return 0;
    if (!strncmp(s, ".", 1) || !strncmp(slash + 1, ".", 1))
        return 0;
    return 1;
}

void ss_hub_mask(char *msg, const char *token)
{
    if (!msg || !token || strlen(token) < 4 || strspn(token, "*") == strlen(token))
        return;
    size_t tl = strlen(token);
    char *p;
    while ((p = strstr(msg, token)))
        memset(p, '*', tl);
}

void ss_hub_repo_destroy(ss_hub_repo *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n_files; i++) {
        ss_free(r->files[i].name);
        ss_free(r->files[i].sha256);
    }
    ss_free(r->files);
    ss_free(r->id);
    ss_free(r->sha);
    ss_free(r);
}

/* Percent-encodes s (keeping '/' when keep_slash) into out. */
static int hub_escape(const char *s, int keep_slash, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        int keep = isalnum(*p) || *p == '-' || *p == '.' || *p == '_' || *p == '~' || (keep_slash && *p == '/');
        if (n + 4 >= cap)
            return -1;
        if (keep) {
            out[n++] = (char)*p;
        } else {
            out[n++] = '%';
            out[n++] = hex[*p >> 4];
            out[n++] = hex[*p & 15];
        }
    }
    out[n] = '\0';
    return 0;
}

/* "scheme://host:port" of a URL, lowercased, default port made explicit. */
static void hub_origin(const char *url, char *out, size_t cap)
{
    const char *p = strstr(url, "://");
    if (!p) {
        snprintf(out, cap, "?");
        return;
    }
    size_t sl = (size_t)(p - url);
    const char *h = p + 3;
    size_t hl = strcspn(h, "/?#");
    const char *at = memchr(h, '@', hl);
    if (at) {
        hl -= (size_t)(at + 1 - h);
        h = at + 1;
    }
    char scheme[16], host[512];
    snprintf(scheme, sizeof scheme, "%.*s", (int)(sl < 15 ? sl : 15), url);
    snprintf(host, sizeof host, "%.*s", (int)(hl < 511 ? hl : 511), h);
    for (char *c = scheme; *c; c++)
        *c = (char)tolower((unsigned char)*c);
    for (char *c = host; *c; c++)
        *c = (char)tolower((unsigned char)*c);
    const char *colon = strrchr(host, ':');
    if (colon && !strchr(colon, ']'))
        snprintf(out, cap, "%s://%s", scheme, host);
    else
        snprintf(out, cap, "%s://%s:%s", scheme, host, !strcmp(scheme, "https") ? "443" : "80");
}

static int hub_same_origin(const char *a, const char *b)
{
    char oa[600], ob[600];
    hub_origin(a, oa, sizeof oa);
    hub_origin(b, ob, sizeof ob);
    return !strcmp(oa, ob);
}

static void hub_endpoint_clean(const char *endpoint, char *out, size_t cap)
{
    snprintf(out, cap, "%s", endpoint && endpoint[0] ? endpoint : "https://huggingface.co");
    size_t n = strlen(out);
    while (n > 0 && out[n - 1] == '/')
        out[--n] = '\0';
}

/* Common easy-handle options. auth: a prepared "Authorization: Bearer …" list or NULL. */
static struct curl_slist *hub_headers(const ss_hub_params *p, const char *endpoint, const char *url, int64_t range_from)
{
    struct curl_slist *h = NULL, *t;
    char line[256];
    snprintf(line, sizeof line, "User-Agent: shardserve/%s", SS_VERSION);
    if ((t = curl_slist_append(h, line)))
        h = t;
    if (p->token && p->token[0] && hub_same_origin(url, endpoint)) {
        size_t cap = strlen(p->token) + 32;
        char *auth = ss_malloc(cap);
        if (auth) {
            snprintf(auth, cap, "Authorization: Bearer %s", p->token);
            if ((t = curl_slist_append(h, auth)))
                h = t;
            memset(auth, 0, cap);
            ss_free(auth);
        }
    }
    if (range_from > 0) {
        snprintf(line, sizeof line, "Range: bytes=%" PRId64 "-", range_from);
        if ((t = curl_slist_append(h, line)))
            h = t;
    }
    return h;
}

static void hub_easy_common(CURL *e, const ss_hub_params *p, char *errbuf)
{
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT, p->connect_timeout_s > 0 ? p->connect_timeout_s : 30L);
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1024L);
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, p->stall_timeout_s > 0 ? p->stall_timeout_s : 60L);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    errbuf[0] = '\0';
}

/* Response headers worth keeping for error messages. */
typedef struct hub_resp {
    char error_code[64];   /* X-Error-Code (GatedRepo, RepoNotFound, RevisionNotFound, ...) */
    char error_msg[256];   /* X-Error-Message */
    char repo_commit[64];  /* X-Repo-Commit */
} hub_resp;

static void hub_header_value(const char *buf, size_t n, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);
    if (n <= nl + 1 || strncasecmp(buf, name, nl) || buf[nl] != ':')
        return;
    const char *v = buf + nl + 1;
    size_t vl = n - nl - 1;
    while (vl && (*v == ' ' || *v == '\t')) {
        v++;
        vl--;
    }
    while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n' || v[vl - 1] == ' '))
        vl--;
    snprintf(out, cap, "%.*s", (int)(vl < cap - 1 ? vl : cap - 1), v);
}

static size_t hub_on_header(char *buf, size_t size, size_t n, void *ud)
{
    hub_resp *r = ud;
    size_t len = size * n;
    if (len >= 5 && !strncmp(buf, "HTTP/", 5))
        memset(r, 0, sizeof *r);
    hub_header_value(buf, len, "X-Error-Code", r->error_code, sizeof r->error_code);
    hub_header_value(buf, len, "X-Error-Message", r->error_msg, sizeof r->error_msg);
    hub_header_value(buf, len, "X-Repo-Commit", r->repo_commit, sizeof r->repo_commit);
    return len;
}

/* Explains an HTTP error status of the Hub for `what` (the id or a file). */
static ss_status hub_http_error(const ss_hub_params *p, const char *endpoint, const char *id, const char *rev,
                                const char *what, long code, const hub_resp *r, ss_err *err)
{
    char extra[400] = "";
    if (r->error_code[0] || r->error_msg[0])
        snprintf(extra, sizeof extra, " [%s%s%s]", r->error_code, r->error_code[0] && r->error_msg[0] ? ": " : "",
                 r->error_msg);
    ss_status st;
    if (code == 401)
        st = ss_err_set(err, SS_ERR_NOT_FOUND,
                        "%s: the Hub answered 401 Unauthorized%s: the model is gated or private (or does not exist). "
                        "If it is gated, accept the license at %s/%s and set HF_TOKEN (or --hf-token-file)%s",
                        what, extra, endpoint, id, p->token && p->token[0] ? "; the token given was not accepted" : "");
    else if (code == 403)
        st = ss_err_set(err, SS_ERR_NOT_FOUND,
                        "%s: the Hub answered 403 Forbidden%s: this is a gated model and %s; accept the license at "
                        "%s/%s and set HF_TOKEN (or --hf-token-file) to a token of the account that was granted access",
                        what, extra, p->token && p->token[0] ? "the token's account has no access yet" : "no token was given",
                        endpoint, id);
    else if (code == 404)
        st = ss_err_set(err, SS_ERR_NOT_FOUND,
                        "%s: the Hub answered 404 Not Found%s: no model '%s' with revision '%s' at %s (check the id and "
                        "--revision; private models also answer 404 without a token)",
                        what, extra, id, rev, endpoint);
    else
        st = ss_err_set(err, SS_ERR_IO, "%s: the Hub answered HTTP %ld%s", what, code, extra);
    ss_hub_mask(err ? err->msg : NULL, p->token);
    return st;
}

/* ---- revision resolution ---- */

typedef struct hub_mem {
    char *p;
    size_t len, cap;
    int too_big;
} hub_mem;

static size_t hub_on_mem(char *buf, size_t size, size_t n, void *ud)
{
    hub_mem *m = ud;
    size_t len = size * n;
    if (m->len + len + 1 > HUB_API_MAX) {
        m->too_big = 1;
        return 0;
    }
    if (m->len + len + 1 > m->cap) {
        size_t cap = m->cap ? m->cap : 65536;
        while (cap < m->len + len + 1)
            cap *= 2;
        char *np = ss_realloc(m->p, cap);
        if (!np)
            return 0;
        m->p = np;
        m->cap = cap;
    }
    memcpy(m->p + m->len, buf, len);
    m->len += len;
    m->p[m->len] = '\0';
    return len;
}

static ss_status hub_parse_revision(const char *json, size_t len, const char *what, ss_hub_repo *r, ss_err *err)
{
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root)
        return ss_err_set(err, SS_ERR_FORMAT, "%s: the Hub's answer is not JSON", what);
    ss_status st = SS_OK;
    const cJSON *sha = cJSON_GetObjectItemCaseSensitive(root, "sha");
    const cJSON *sib = cJSON_GetObjectItemCaseSensitive(root, "siblings");
    int sha_ok = cJSON_IsString(sha) && strlen(sha->valuestring) >= 7 && strlen(sha->valuestring) <= 64;
    for (const char *c = sha_ok ? sha->valuestring : ""; *c; c++)
        sha_ok &= isxdigit((unsigned char)*c) != 0;
    if (!sha_ok || !cJSON_IsArray(sib)) {
        st = ss_err_set(err, SS_ERR_FORMAT, "%s: the Hub's answer lacks \"sha\" or \"siblings\"", what);
        goto out;
    }
    if (!(r->sha = ss_strdup(sha->valuestring))) {
        st = ss_err_set(err, SS_ERR_NOMEM, "out of memory");
        goto out;
    }
    size_t cnt = (size_t)cJSON_GetArraySize(sib);
    r->files = ss_calloc(cnt ? cnt : 1, sizeof *r->files);
    if (!r->files) {
        st = ss_err_set(err, SS_ERR_NOMEM, "out of memory");
        goto out;
    }
    int has_st = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, sib) {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(e, "rfilename");
        if (!cJSON_IsString(name) || !ss_cache_wanted_file(name->valuestring))
            continue;
        ss_hub_file *f = &r->files[r->n_files];
        const cJSON *size = cJSON_GetObjectItemCaseSensitive(e, "size");
        const cJSON *lfs = cJSON_GetObjectItemCaseSensitive(e, "lfs");
        const cJSON *lsha = cJSON_IsObject(lfs) ? cJSON_GetObjectItemCaseSensitive(lfs, "sha256") : NULL;
        const cJSON *lsize = cJSON_IsObject(lfs) ? cJSON_GetObjectItemCaseSensitive(lfs, "size") : NULL;
        int64_t bytes = -1; /* unknown: no size, or not a byte count */
        if (!ss_json_int(lsize, 0, INT64_C(1) << 53, &bytes))
            (void)ss_json_int(size, 0, INT64_C(1) << 53, &bytes);
        f->size = bytes;
        if (!(f->name = ss_strdup(name->valuestring))) {
            st = ss_err_set(err, SS_ERR_NOMEM, "out of memory");
            goto out;
        }
        r->n_files++;
        if (cJSON_IsString(lsha)) {
            int ok = strlen(lsha->valuestring) == 64;
            for (const char *c = lsha->valuestring; ok && *c; c++)
                ok = isxdigit((unsigned char)*c) != 0;
            if (!ok) {
                st = ss_err_set(err, SS_ERR_FORMAT, "%s: %s: bad lfs.sha256", what, f->name);
                goto out;
            }
            if (!(f->sha256 = ss_strdup(lsha->valuestring))) {
                st = ss_err_set(err, SS_ERR_NOMEM, "out of memory");
                goto out;
            }
        }
        size_t nl = strlen(f->name);
        has_st |= nl > 12 && !strcmp(f->name + nl - 12, ".safetensors");
    }
    if (!has_st)
        st = ss_err_set(err, SS_ERR_UNSUPPORTED,
                        "%s: the repository has no .safetensors files at its top level (shardserve reads safetensors "
                        "checkpoints)", what);
out:
    cJSON_Delete(root);
    return st;
}

/* Offline fallback: the commit an earlier run recorded and the files present in its folder. */
static ss_status hub_offline(const char *cache, const char *id, const char *rev, ss_hub_repo *r, ss_err *err)
{
    char key[300], path[SS_CACHE_PATH_MAX], sha[128] = "";
    SS_CHECK(ss_cache_repo_key(id, key, sizeof key, err));
    snprintf(path, sizeof path, "%s/hub/%s/refs/%s", cache, key, rev);
    FILE *f = strchr(rev, '/') ? NULL : fopen(path, "r");
    if (!f)
        return SS_ERR_NOT_FOUND;
    size_t n = fread(sha, 1, sizeof sha - 1, f);
    fclose(f);
    sha[n] = '\0';
    sha[strcspn(sha, "\r\n ")] = '\0';
    char dir[SS_CACHE_PATH_MAX];
    snprintf(dir, sizeof dir, "%s/hub/%s/%s", cache, key, sha);
    char hex[33];
    ss_manifest_file *files = NULL;
    size_t nf = 0;
    if (!sha[0] || ss_cache_local_digest(dir, hex, &files, &nf, err) != SS_OK || !nf)
        return SS_ERR_NOT_FOUND;
    r->sha = ss_strdup(sha);
    r->files = ss_calloc(nf, sizeof *r->files);
    if (!r->sha || !r->files) {
        ss_cache_files_free(files, nf);
        return ss_err_set(err, SS_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < nf; i++) {
        r->files[i].name = files[i].name;
        files[i].name = NULL;
        r->files[i].size = files[i].size;
    }
    r->n_files = nf;
    ss_cache_files_free(files, nf);
    return SS_OK;
}

void ss_hub_save_ref(const char *cache, const ss_hub_repo *repo, const char *revision)
{
    char key[300], dir[SS_CACHE_PATH_MAX], path[SS_CACHE_PATH_MAX], tmp[SS_CACHE_PATH_MAX];
    ss_err ign;
    if (!cache || strchr(revision, '/') || ss_cache_repo_key(repo->id, key, sizeof key, &ign) != SS_OK)
        return;
    snprintf(dir, sizeof dir, "%s/hub/%s/refs", cache, key);
    if (ss_cache_mkdirs(dir, &ign) != SS_OK)
        return;
    if (ss_cache_path(path, sizeof path, &ign, "%s/%s", dir, revision) != SS_OK ||
        ss_cache_path(tmp, sizeof tmp, &ign, "%s/.%s.%ld", dir, revision, (long)getpid()) != SS_OK)
        return;
    FILE *f = fopen(tmp, "w");
    if (!f)
        return;
    fprintf(f, "%s", repo->sha);
    if (fclose(f) == 0)
        (void)rename(tmp, path);
    else
        unlink(tmp);
}

ss_status ss_hub_resolve(const ss_hub_params *p, const char *repo_id, const char *revision, const char *cache,
                         ss_hub_repo **out, ss_err *err)
{
    *out = NULL;
    if (!ss_hub_is_repo_id(repo_id))
        return ss_err_set(err, SS_ERR_INVALID_ARG, "'%s' is not a Hugging Face model id (org/name)", repo_id);
    char endpoint[1024], rev_esc[512], url[HUB_URL_MAX], errbuf[CURL_ERROR_SIZE];
    hub_endpoint_clean(p->endpoint, endpoint, sizeof endpoint);
    if (hub_escape(revision, 0, rev_esc, sizeof rev_esc) != 0)
        return ss_err_set(err, SS_ERR_INVALID_ARG, "--revision: too long");
    snprintf(url, sizeof url, "%s/api/models/%s/revision/%s?blobs=true", endpoint, repo_id, rev_esc);
    ss_hub_repo *r = ss_calloc(1, sizeof *r);
    if (!r || !(r->id = ss_strdup(repo_id))) {
        ss_hub_repo_destroy(r);
        return ss_err_set(err, SS_ERR_NOMEM, "out of memory");
    }
    CURL *e = curl_easy_init();
    if (!e) {
        ss_hub_repo_destroy(r);
        return ss_err_set(err, SS_ERR_NOMEM, "curl: cannot create a handle");
    }
    hub_mem mem = {0};
    hub_resp resp;
    memset(&resp, 0, sizeof resp);
    ss_status st = SS_OK;
    long code = 0;
    char what[512];
    snprintf(what, sizeof what, "%s (revision %s)", repo_id, revision);
    for (int hop = 0;; hop++) {
        struct curl_slist *h = hub_headers(p, endpoint, url, 0);
        curl_easy_reset(e);
        hub_easy_common(e, p, errbuf);
        curl_easy_setopt(e, CURLOPT_URL, url);
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, hub_on_mem);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, &mem);
        curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, hub_on_header);
        curl_easy_setopt(e, CURLOPT_HEADERDATA, &resp);
        curl_easy_setopt(e, CURLOPT_TIMEOUT, 120L);
        mem.len = 0;
        CURLcode rc = curl_easy_perform(e);
        curl_slist_free_all(h);
        if (rc != CURLE_OK) {
            if (mem.too_big) {
                st = ss_err_set(err, SS_ERR_FORMAT, "%s: the Hub's answer exceeds %u bytes", what, HUB_API_MAX);
            } else if (cache && hub_offline(cache, repo_id, revision, r, err) == SS_OK) {
                SS_LOGW("%s: Hub unreachable (%s); using the cached commit %s", what, errbuf[0] ? errbuf : curl_easy_strerror(rc),
                        r->sha);
                st = SS_OK;
                goto out;
            } else {
                st = ss_err_set(err, SS_ERR_IO, "%s: cannot reach the Hub at %s: %s (set HF_ENDPOINT for a mirror)", what,
                                endpoint, errbuf[0] ? errbuf : curl_easy_strerror(rc));
            }
            goto out;
        }
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
        if (code >= 300 && code < 400) {
            char *loc = NULL;
            curl_easy_getinfo(e, CURLINFO_REDIRECT_URL, &loc);
            if (!loc || hop >= HUB_MAX_REDIRECTS) {
                st = ss_err_set(err, SS_ERR_IO, "%s: too many or bad redirects", what);
                goto out;
            }
            snprintf(url, sizeof url, "%s", loc);
            continue;
        }
        break;
    }
    if (code != 200) {
        st = hub_http_error(p, endpoint, repo_id, revision, what, code, &resp, err);
        goto out;
    }
    st = hub_parse_revision(mem.p ? mem.p : "", mem.len, what, r, err);
out:
    curl_easy_cleanup(e);
    ss_free(mem.p);
    if (st != SS_OK) {
        ss_hub_repo_destroy(r);
        ss_hub_mask(err ? err->msg : NULL, p->token);
        return st;
    }
    *out = r;
    return SS_OK;
}

/* ---- downloads ---- */

typedef struct hub_job {
    const ss_hub_file *f;
    char path[SS_CACHE_PATH_MAX];
    char tmp[SS_CACHE_PATH_MAX];
    char start_url[HUB_URL_MAX];
    char url[HUB_URL_MAX];
    int fd;
    ss_sha256 *sha;
    int64_t have;       /* bytes in the .incomplete file (all hashed) */
    int attempts, redirects;
    int body_checked;   /* the current response's first body bytes were seen */
    long code;
    CURL *easy;
    struct curl_slist *hdrs;
    hub_resp resp;
    char errbuf[CURL_ERROR_SIZE];
    ss_status wst;      /* an error raised inside the write callback */
    ss_err werr;
    ss_progress *prog;
    int active, done;
} hub_job;

static size_t hub_on_body(char *buf, size_t size, size_t n, void *ud)
{
    hub_job *j = ud;
    size_t len = size * n;
    if (!j->body_checked) {
        j->body_checked = 1;
        curl_easy_getinfo(j->easy, CURLINFO_RESPONSE_CODE, &j->code);
        if (j->code == 200 && j->have > 0) { /* the server ignored Range: start over */
            SS_LOGW("%s: the server ignored the Range request; downloading from the start", j->f->name);
            if (ftruncate(j->fd, 0) != 0 || lseek(j->fd, 0, SEEK_SET) != 0 ||
                ss_sha256_reset(j->sha, &j->werr) != SS_OK) {
                j->wst = ss_err_set(&j->werr, SS_ERR_IO, "%s: cannot restart: %s", j->tmp, strerror(errno));
                return 0;
            }
            j->have = 0;
        }
    }
    if (j->code != 200 && j->code != 206)
        return len; /* an error or redirect body: ignored */
    if (j->f->size >= 0 && j->have + (int64_t)len > j->f->size) {
        j->wst = ss_err_set(&j->werr, SS_ERR_MISMATCH, "%s: the server sent more than the %" PRId64 " bytes announced",
                            j->f->name, j->f->size);
        return 0;
    }
    for (size_t off = 0; off < len;) {
        ssize_t w = write(j->fd, buf + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            j->wst = ss_err_set(&j->werr, SS_ERR_IO, "%s: write: %s", j->tmp, strerror(errno));
            return 0;
        }
        off += (size_t)w;
    }
    if (ss_sha256_update(j->sha, buf, len, &j->werr) != SS_OK) {
        j->wst = SS_ERR_INTERNAL;
        return 0;
    }
    j->have += (int64_t)len;
    ss_progress_add(j->prog, (int64_t)len);
    return len;
}

static ss_status hub_job_open(hub_job *j, ss_err *err)
{
    j->fd = open(j->tmp, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (j->fd < 0)
        return ss_err_set(err, SS_ERR_IO, "%s: %s", j->tmp, strerror(errno));
    struct stat sb;
    if (fstat(j->fd, &sb) != 0)
        return ss_err_set(err, SS_ERR_IO, "%s: %s", j->tmp, strerror(errno));
    j->have = (int64_t)sb.st_size;
    if (j->f->size >= 0 && j->have > j->f->size) {
        if (ftruncate(j->fd, 0) != 0)
            return ss_err_set(err, SS_ERR_IO, "%s: %s", j->tmp, strerror(errno));
        j->have = 0;
    }
    SS_CHECK(ss_sha256_create(&j->sha, err));
    if (j->have > 0) {
        SS_LOGI("%s: resuming a partial download at %" PRId64 " bytes", j->f->name, j->have);
        SS_CHECK(ss_sha256_fd(j->sha, j->fd, j->have, j->tmp, err));
    }
    if (lseek(j->fd, (off_t)j->have, SEEK_SET) < 0)
        return ss_err_set(err, SS_ERR_IO, "%s: %s", j->tmp, strerror(errno));
    return SS_OK;
}

/* (Re)arms the job's easy handle for j->url, with the token only for the Hub's own origin. */
static ss_status hub_job_arm(const ss_hub_params *p, const char *endpoint, CURLM *m, hub_job *j, ss_err *err)
{
    if (j->active)
        curl_multi_remove_handle(m, j->easy);
    j->active = 0;
    curl_slist_free_all(j->hdrs);
    j->hdrs = hub_headers(p, endpoint, j->url, j->have);
    curl_easy_reset(j->easy);
    hub_easy_common(j->easy, p, j->errbuf);
    curl_easy_setopt(j->easy, CURLOPT_URL, j->url);
    curl_easy_setopt(j->easy, CURLOPT_HTTPHEADER, j->hdrs);
    curl_easy_setopt(j->easy, CURLOPT_WRITEFUNCTION, hub_on_body);
    curl_easy_setopt(j->easy, CURLOPT_WRITEDATA, j);
    curl_easy_setopt(j->easy, CURLOPT_HEADERFUNCTION, hub_on_header);
    curl_easy_setopt(j->easy, CURLOPT_HEADERDATA, &j->resp);
    curl_easy_setopt(j->easy, CURLOPT_PRIVATE, j);
    j->body_checked = 0;
    j->code = 0;
    if (curl_multi_add_handle(m, j->easy) != CURLM_OK)
        return ss_err_set(err, SS_ERR_IO, "curl: cannot start the transfer of %s", j->f->name);
    j->active = 1;
    return SS_OK;
}

/* The transfer finished complete: check size and sha256, fsync, rename into place. */
static ss_status hub_job_finish(hub_job *j, ss_err *err)
{
    if (j->sha && j->f->sha256) {
        char hex[SS_SHA256_HEX];
        SS_CHECK(ss_sha256_final_hex(j->sha, hex, err));
        if (strcmp(hex, j->f->sha256)) {
            close(j->fd);
            j->fd = -1;
            unlink(j->tmp);
            return ss_err_set(err, SS_ERR_MISMATCH,
                              "%s: sha256 %s does not match the Hub's %s (corrupted download, deleted; run again)",
                              j->f->name, hex, j->f->sha256);
        }
    }
    if (fsync(j->fd) != 0)
        return ss_err_set(err, SS_ERR_IO, "%s: fsync: %s", j->tmp, strerror(errno));
    close(j->fd);
    j->fd = -1;
    if (rename(j->tmp, j->path) != 0)
        return ss_err_set(err, SS_ERR_IO, "%s: rename: %s", j->path, strerror(errno));
    j->done = 1;
    return SS_OK;
}

static int hub_transient(CURLcode rc)
{
    return rc == CURLE_PARTIAL_FILE || rc == CURLE_RECV_ERROR || rc == CURLE_SEND_ERROR ||
           rc == CURLE_OPERATION_TIMEDOUT || rc == CURLE_GOT_NOTHING || rc == CURLE_COULDNT_CONNECT ||
           rc == CURLE_HTTP2 || rc == CURLE_HTTP2_STREAM || rc == CURLE_SSL_CONNECT_ERROR;
}

/* One finished transfer: decide between done, redirect, resume and failure. */
static ss_status hub_job_done(const ss_hub_params *p, const char *endpoint, const ss_hub_repo *repo, CURLM *m,
                              hub_job *j, CURLcode rc, ss_err *err)
{
    if (j->wst != SS_OK) {
        if (err)
            *err = j->werr;
        return j->wst;
    }
    long code = 0;
    curl_easy_getinfo(j->easy, CURLINFO_RESPONSE_CODE, &code);
    int retry = 0;
    char why[CURL_ERROR_SIZE + 64];
    if (rc != CURLE_OK) {
        if (!hub_transient(rc))
            return ss_err_set(err, SS_ERR_IO, "%s: download failed: %s", j->f->name,
                              j->errbuf[0] ? j->errbuf : curl_easy_strerror(rc));
        snprintf(why, sizeof why, "%s", j->errbuf[0] ? j->errbuf : curl_easy_strerror(rc));
        retry = 1;
    } else if (code >= 300 && code < 400) {
        char *loc = NULL;
        curl_easy_getinfo(j->easy, CURLINFO_REDIRECT_URL, &loc);
        if (!loc || ++j->redirects > HUB_MAX_REDIRECTS)
            return ss_err_set(err, SS_ERR_IO, "%s: too many or bad redirects", j->f->name);
        snprintf(j->url, sizeof j->url, "%s", loc);
        return hub_job_arm(p, endpoint, m, j, err);
    } else if (code == 200 || code == 206) {
        if (j->f->size < 0 || j->have == j->f->size)
            return hub_job_finish(j, err);
        snprintf(why, sizeof why, "connection closed at %" PRId64 " of %" PRId64 " bytes", j->have, j->f->size);
        retry = 1;
    } else if (code == 416 && j->f->size >= 0 && j->have == j->f->size) {
        return hub_job_finish(j, err);
    } else if (code == 429 || code >= 500) {
        snprintf(why, sizeof why, "HTTP %ld", code);
        retry = 1;
    } else {
        char what[600];
        snprintf(what, sizeof what, "%s/%s", repo->id, j->f->name);
        return hub_http_error(p, endpoint, repo->id, repo->sha, what, code, &j->resp, err);
    }
    if (retry) {
        if (++j->attempts > (p->max_retries > 0 ? p->max_retries : 5))
            return ss_err_set(err, SS_ERR_IO, "%s: download failed after %d attempts: %s (partial file kept; run again to resume)",
                              j->f->name, j->attempts, why);
        SS_LOGW("%s: transfer interrupted (%s); resuming at byte %" PRId64 " (attempt %d)", j->f->name, why, j->have,
                j->attempts + 1);
        struct timespec ts = {0, 200000000L * (j->attempts < 5 ? j->attempts : 5)};
        nanosleep(&ts, NULL);
        snprintf(j->url, sizeof j->url, "%s", j->start_url);
        j->redirects = 0;
        return hub_job_arm(p, endpoint, m, j, err);
    }
    return SS_OK;
}

static void hub_job_cleanup(CURLM *m, hub_job *j)
{
    if (j->active)
        curl_multi_remove_handle(m, j->easy);
    j->active = 0;
    if (j->easy)
        curl_easy_cleanup(j->easy);
    j->easy = NULL;
    curl_slist_free_all(j->hdrs);
    j->hdrs = NULL;
    ss_sha256_destroy(j->sha);
    j->sha = NULL;
    if (j->fd >= 0)
        close(j->fd);
    j->fd = -1;
}

ss_status ss_hub_fetch(const ss_hub_params *p, const ss_hub_repo *repo, const char *dest_dir, ss_err *err)
{
    SS_CHECK(ss_cache_mkdirs(dest_dir, err));
    char endpoint[1024];
    hub_endpoint_clean(p->endpoint, endpoint, sizeof endpoint);
    hub_job *jobs = ss_calloc(repo->n_files ? repo->n_files : 1, sizeof *jobs);
    if (!jobs)
        return ss_err_set(err, SS_ERR_NOMEM, "out of memory");
    size_t nj = 0;
    int64_t total = 0;
    for (size_t i = 0; i < repo->n_files; i++) {
        const ss_hub_file *f = &repo->files[i];
        hub_job *j = &jobs[nj];
        j->fd = -1;
        j->f = f;
        snprintf(j->path, sizeof j->path, "%s/%s", dest_dir, f->name);
        struct stat sb;
        if (stat(j->path, &sb) == 0 && (f->size < 0 || (int64_t)sb.st_size == f->size))
            continue; /* verified when it was downloaded, renamed into place only then */
        if (ss_cache_path(j->tmp, sizeof j->tmp, err, "%s.incomplete", j->path) != SS_OK) {
            ss_free(jobs);
            return SS_ERR_INVALID_ARG;
        }
        char name_esc[1024], sha_esc[256];
        if (hub_escape(f->name, 0, name_esc, sizeof name_esc) || hub_escape(repo->sha, 0, sha_esc, sizeof sha_esc)) {
            ss_free(jobs);
            return ss_err_set(err, SS_ERR_INVALID_ARG, "%s: name too long", f->name);
        }
        snprintf(j->start_url, sizeof j->start_url, "%s/%s/resolve/%s/%s", endpoint, repo->id, sha_esc, name_esc);
        snprintf(j->url, sizeof j->url, "%s", j->start_url);
        total += f->size > 0 ? f->size : 0;
        nj++;
    }
    if (!nj) {
        ss_free(jobs);
        return SS_OK;
    }
    char phase[300];
    snprintf(phase, sizeof phase, "download %s", repo->id);
    ss_progress *prog = NULL;
    CURLM *m = curl_multi_init();
    ss_status st = m ? SS_OK : ss_err_set(err, SS_ERR_NOMEM, "curl: cannot create a multi handle");
    if (st == SS_OK)
        st = ss_progress_create(phase, total, p->tty, p->quiet, &prog, err);
    size_t next = 0, running_jobs = 0, finished = 0;
    int parallel = p->parallel > 0 ? p->parallel : 4;
    while (st == SS_OK && finished < nj) {
        while (st == SS_OK && next < nj && running_jobs < (size_t)parallel) {
            hub_job *j = &jobs[next++];
            j->prog = prog;
            st = hub_job_open(j, err);
            if (st == SS_OK && j->f->size >= 0 && j->have == j->f->size && j->f->size > 0) {
                st = hub_job_finish(j, err); /* a previous run got every byte but died before the rename */
                finished++;
                continue;
            }
            ss_progress_add(prog, j->have);
            if (st == SS_OK && !(j->easy = curl_easy_init()))
                st = ss_err_set(err, SS_ERR_NOMEM, "curl: cannot create a handle");
            if (st == SS_OK)
                st = hub_job_arm(p, endpoint, m, j, err);
            running_jobs++;
        }
        if (st != SS_OK)
            break;
        int still = 0;
        if (curl_multi_perform(m, &still) != CURLM_OK) {
            st = ss_err_set(err, SS_ERR_IO, "curl: multi transfer failed");
            break;
        }
        CURLMsg *msg;
        int left = 0;
        while (st == SS_OK && (msg = curl_multi_info_read(m, &left))) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            hub_job *j = NULL;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&j);
            CURLcode rc = msg->data.result;
            st = hub_job_done(p, endpoint, repo, m, j, rc, err);
            if (st == SS_OK && j->done) {
                finished++;
                running_jobs--;
                hub_job_cleanup(m, j);
            }
        }
        if (st == SS_OK && finished < nj)
            curl_multi_poll(m, NULL, 0, 500, NULL);
    }
    for (size_t i = 0; i < nj; i++)
        hub_job_cleanup(m, &jobs[i]);
    if (st == SS_OK && prog)
        ss_progress_finish(prog);
    ss_progress_destroy(prog);
    if (m)
        curl_multi_cleanup(m);
    ss_free(jobs);
    if (st != SS_OK)
        ss_hub_mask(err ? err->msg : NULL, p->token);
    return st;
}
