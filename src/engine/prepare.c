/* prepare.c — find or build an engine in the cache (DESIGN.md §3): key the source, reuse a valid
 * engine, else elect one builder through the lock, build into a temporary sibling, fsync, rename. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <dirent.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/log.h"
#include "engine/cache.h"
#include "engine/digest.h"
#include "engine/engine.h"
#include "engine/hub.h"
#include "engine/quick_digest.h"
#include "core/progress.h"

ss_engine_params ss_engine_default_params(void)
{
    ss_engine_params p;
    memset(&p, 0, sizeof p);
    p.revision = "main";
    p.tp = 1;
    p.pp = 1;
    p.dtype = SS_DTYPE_BF16;
    p.hf_endpoint = "https://huggingface.co";
    p.download_parallel = 4;
    p.verify = SS_ENGINE_VERIFY_LOAD;
    p.lock = ss_lock_default_params();
    return p;
}

ss_status ss_engine_rank_path(const char *dir, int rank, char *buf, size_t cap, ss_err *err)
{
    if (rank < 0)
        return ss_err_set(err, SS_ERR_INVALID_ARG, "rank %d", rank);
    int n = snprintf(buf, cap, "%s/rank-%05d.safetensors", dir, rank);
    if (n < 0 || (size_t)n >= cap)
        return ss_err_set(err, SS_ERR_INVALID_ARG, "%s: path too long", dir);
    return SS_OK;
}

/* What a mismatch says: what it means, and the way out (prepare reuses an engine only after this check). */
#define ENG_DAMAGED "damaged engine file: the `shardserve prepare` that built the engine rebuilds it"

typedef struct eng_digests {
    ss_sha256 *sha;
    ss_quick_digest *quick; /* NULL: not asked for */
} eng_digests;

static ss_status eng_digests_block(void *ctx, const void *block, size_t n, ss_err *err)
{
    eng_digests *d = ctx;
    SS_CHECK(ss_sha256_update(d->sha, block, n, err));
    return d->quick ? ss_quick_digest_update(d->quick, block, n, err) : SS_OK;
}

/* The sha256 (and, where the manifest has one, the quick digest) of the file at path, in one read. */
static ss_status eng_file_digests(const char *path, char sha[SS_SHA256_HEX], char quick[SS_QUICK_DIGEST_LEN],
                                  ss_err *err)
{
    eng_digests d = {NULL, NULL};
    ss_status st = ss_sha256_create(&d.sha, err);
    if (st == SS_OK && quick)
        st = ss_quick_digest_create(&d.quick, err);
    if (st == SS_OK)
        st = ss_file_blocks(path, eng_digests_block, &d, err);
    if (st == SS_OK)
        st = ss_sha256_final_hex(d.sha, sha, err);
    if (st == SS_OK && quick)
        ss_quick_digest_text(d.quick, quick);
    ss_quick_digest_destroy(d.quick);
    ss_sha256_destroy(d.sha);
    return st;
}

/* One file of the engine against its manifest entry: its size; with `digests`, its sha256 and quick digest. */
static ss_status eng_check_file(const char *dir, const ss_manifest_file *f, int digests, ss_err *err)
{
    char path[SS_CACHE_PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, f->name);
    struct stat sb;
    if (stat(path, &sb) != 0)
        return ss_err_set(err, SS_ERR_NOT_FOUND, "%s: missing from the engine (%s)", path, strerror(errno));
    if ((int64_t)sb.st_size != f->size)
        return ss_err_set(err, SS_ERR_MISMATCH, "%s: %lld bytes, the manifest says %lld (" ENG_DAMAGED ")", path,
                          (long long)sb.st_size, (long long)f->size);
    int sha = digests && f->digest && !strncmp(f->digest, "sha256:", 7);
    if (!sha && !(digests && f->quick_digest))
        return SS_OK;
    char hex[SS_SHA256_HEX], quick[SS_QUICK_DIGEST_LEN];
    SS_CHECK(eng_file_digests(path, hex, f->quick_digest ? quick : NULL, err));
    if (sha && strcmp(hex, f->digest + 7))
        return ss_err_set(err, SS_ERR_MISMATCH, "%s: sha256 %s, the manifest says %s (" ENG_DAMAGED ")", path,
                          hex, f->digest + 7);
    if (f->quick_digest && strcmp(quick, f->quick_digest))
        return ss_err_set(err, SS_ERR_MISMATCH, "%s: %s, the manifest says %s (" ENG_DAMAGED ")", path, quick,
                          f->quick_digest);
    return SS_OK;
}

ss_status ss_engine_verify(const char *dir, ss_engine_verify_level level, ss_err *err)
{
    ss_manifest *m = NULL;
    SS_CHECK(ss_manifest_load(dir, &m, err));
    ss_status st = SS_OK;
    for (size_t i = 0; st == SS_OK && i < m->n_ranks; i++) {
        char want[64];
        snprintf(want, sizeof want, "rank-%05zu.safetensors", i);
        if (strcmp(m->ranks[i].name, want))
            st = ss_err_set(err, SS_ERR_FORMAT, "%s/%s: rank %zu is named %s", dir, SS_MANIFEST_NAME, i, m->ranks[i].name);
        else
            st = eng_check_file(dir, &m->ranks[i], level == SS_ENGINE_VERIFY_FULL, err);
    }
    /* (engines before session 63 have no digest for these; a load reads them whole anyway: config and tokenizer) */
    for (size_t i = 0; st == SS_OK && i < m->n_extras; i++)
        st = eng_check_file(dir, &m->extras[i], level != SS_ENGINE_VERIFY_SIZES, err);
    ss_manifest_destroy(m);
    return st;
}

typedef struct eng_wait {
    const char *dir;
} eng_wait;

static int eng_ready(void *ctx)
{
    const eng_wait *w = ctx;
    ss_err e;
    return ss_engine_verify(w->dir, SS_ENGINE_VERIFY_SIZES, &e) == SS_OK;
}

/* Removes leftovers of builders that died (".<leaf>.tmp.*", ".<leaf>.old.*") — called under the lock. */
static void eng_clean_leftovers(const char *parent, const char *leaf)
{
    DIR *d = opendir(parent);
    if (!d)
        return;
    char pre_tmp[300], pre_old[300];
    snprintf(pre_tmp, sizeof pre_tmp, ".%s.tmp.", leaf);
    snprintf(pre_old, sizeof pre_old, ".%s.old.", leaf);
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, pre_tmp, strlen(pre_tmp)) && strncmp(e->d_name, pre_old, strlen(pre_old)))
            continue;
        char path[SS_CACHE_PATH_MAX];
        ss_err ign;
        if (ss_cache_path(path, sizeof path, &ign, "%s/%s", parent, e->d_name) != SS_OK)
            continue;
        SS_LOGI("removing the leftover of an interrupted build: %s", path);
        (void)ss_cache_rmtree(path, &ign);
    }
    closedir(d);
}

typedef struct eng_source {
    char key[300];         /* org--name or local--<dir> */
    char id[300];          /* org/name or local--<dir> */
    char rev[128];
    char src_dir[SS_CACHE_PATH_MAX];
    ss_manifest_file *files;
    size_t n_files;
    ss_hub_repo *repo;     /* Hub sources only */
} eng_source;

static void eng_source_free(eng_source *s)
{
    ss_cache_files_free(s->files, s->n_files);
    ss_hub_repo_destroy(s->repo);
}

static ss_status eng_source_resolve(const ss_engine_params *p, const ss_hub_params *hp, eng_source *s, ss_err *err)
{
    struct stat sb;
    if (stat(p->model, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        char rp[SS_CACHE_PATH_MAX];
        if (!realpath(p->model, rp))
            return ss_err_set(err, SS_ERR_IO, "%s: %s", p->model, strerror(errno));
        const char *base = strrchr(rp, '/');
        base = base && base[1] ? base + 1 : "root";
        snprintf(s->key, sizeof s->key, "local--%s", base);
        snprintf(s->id, sizeof s->id, "local--%s", base);
        snprintf(s->src_dir, sizeof s->src_dir, "%s", rp);
        char hex[33];
        SS_CHECK(ss_cache_local_digest(rp, hex, &s->files, &s->n_files, err));
        snprintf(s->rev, sizeof s->rev, "%s", hex);
        return SS_OK;
    }
    if (!ss_hub_is_repo_id(p->model))
        return ss_err_set(err, SS_ERR_NOT_FOUND, "--model %s: not a checkpoint folder and not a Hugging Face id (org/name)",
                          p->model);
    SS_CHECK(ss_hub_resolve(hp, p->model, p->revision ? p->revision : "main", p->cache_dir, &s->repo, err));
    SS_CHECK(ss_cache_repo_key(p->model, s->key, sizeof s->key, err));
    snprintf(s->id, sizeof s->id, "%s", p->model);
    snprintf(s->rev, sizeof s->rev, "%s", s->repo->sha);
    snprintf(s->src_dir, sizeof s->src_dir, "%s/hub/%s/%s", p->cache_dir, s->key, s->repo->sha);
    s->files = ss_calloc(s->repo->n_files ? s->repo->n_files : 1, sizeof *s->files);
    if (!s->files)
        return ss_err_set(err, SS_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < s->repo->n_files; i++) {
        const ss_hub_file *f = &s->repo->files[i];
        s->files[i].name = ss_strdup(f->name);
        s->files[i].size = f->size < 0 ? 0 : f->size;
        s->n_files = i + 1;
        if (!s->files[i].name)
            return ss_err_set(err, SS_ERR_NOMEM, "out of memory");
        if (f->sha256) {
            size_t cap = 8 + strlen(f->sha256) + 1;
            if (!(s->files[i].digest = ss_malloc(cap)))
                return ss_err_set(err, SS_ERR_NOMEM, "out of memory");
            snprintf(s->files[i].digest, cap, "sha256:%s", f->sha256);
        }
    }
    return SS_OK;
}

/* Under the engine lock: download (Hub), build into a temp sibling, publish by rename. */
static ss_status eng_build_locked(const ss_engine_params *p, const ss_hub_params *hp, eng_source *s,
                                  const char *dir, ss_err *err)
{
    char parent[SS_CACHE_PATH_MAX], leaf[256];
    snprintf(parent, sizeof parent, "%s", dir);
    char *slash = strrchr(parent, '/');
    snprintf(leaf, sizeof leaf, "%s", slash + 1);
    *slash = '\0';
    eng_clean_leftovers(parent, leaf);
    if (s->repo) {
        char hub_lock[SS_CACHE_PATH_MAX];
        SS_CHECK(ss_cache_path(hub_lock, sizeof hub_lock, err, "%s.lock", s->src_dir));
        char hub_parent[SS_CACHE_PATH_MAX];
        snprintf(hub_parent, sizeof hub_parent, "%s", s->src_dir);
        *strrchr(hub_parent, '/') = '\0';
        SS_CHECK(ss_cache_mkdirs(hub_parent, err));
        ss_lock *hl = NULL;
        SS_CHECK(ss_lock_acquire(hub_lock, &p->lock, NULL, NULL, &hl, err));
        ss_status st = ss_hub_fetch(hp, s->repo, s->src_dir, err);
        ss_lock_release(hl);
        SS_CHECK(st);
        ss_hub_save_ref(p->cache_dir, s->repo, p->revision ? p->revision : "main");
    }
    char tmp[SS_CACHE_PATH_MAX], old[SS_CACHE_PATH_MAX];
    SS_CHECK(ss_cache_path(tmp, sizeof tmp, err, "%s/.%s.tmp.%ld", parent, leaf, (long)getpid()));
    SS_CHECK(ss_cache_path(old, sizeof old, err, "%s/.%s.old.%ld", parent, leaf, (long)getpid()));
    (void)ss_cache_rmtree(tmp, err);
    if (mkdir(tmp, 0755) != 0)
        return ss_err_set(err, SS_ERR_IO, "%s: mkdir: %s", tmp, strerror(errno));
    SS_LOGI("building engine %s (tp %d, pp %d, %s) from %s", dir, p->tp, p->pp, ss_engine_dtype_name(p->dtype),
            s->src_dir);
    ss_engine_build_params bp = {s->src_dir, tmp,  s->id,          s->rev,          s->files, s->n_files,
                                 p->tp,      p->pp, p->dtype,      p->threads,      p->throttle_bps,
                                 p->tty,     p->quiet};
    ss_status st = ss_engine_build(&bp, err);
    if (st != SS_OK) {
        ss_err ign;
        (void)ss_cache_rmtree(tmp, &ign);
        return st;
    }
    /* A damaged engine in the way is moved aside first; then the new one appears in one rename. */
    if (access(dir, F_OK) == 0 && rename(dir, old) != 0) {
        st = ss_err_set(err, SS_ERR_IO, "%s: cannot move the old engine aside: %s", dir, strerror(errno));
    } else if (rename(tmp, dir) != 0) {
        st = ss_err_set(err, SS_ERR_IO, "%s: cannot publish the engine: %s", dir, strerror(errno));
    }
    ss_err ign;
    if (st != SS_OK)
        (void)ss_cache_rmtree(tmp, &ign);
    (void)ss_cache_rmtree(old, &ign);
    if (st == SS_OK)
        st = ss_cache_fsync_dir(parent, err);
    return st;
}

ss_status ss_engine_prepare(const ss_engine_params *p, char **engine_dir, ss_err *err)
{
    *engine_dir = NULL;
    if (!p->model || !p->model[0])
        return ss_err_set(err, SS_ERR_INVALID_ARG, "--model: required (a Hugging Face id or a checkpoint folder)");
    if (!p->cache_dir || !p->cache_dir[0])
        return ss_err_set(err, SS_ERR_INVALID_ARG, "--cache: required");
    if (p->tp < 1 || p->pp < 1)
        return ss_err_set(err, SS_ERR_INVALID_ARG, "--tp %d / --pp %d: must be >= 1", p->tp, p->pp);
    /* An absolute cache root: the printed engine folder must not depend on the working directory. */
    char cache_abs[SS_CACHE_PATH_MAX];
    SS_CHECK(ss_cache_mkdirs(p->cache_dir, err));
    if (!realpath(p->cache_dir, cache_abs))
        return ss_err_set(err, SS_ERR_IO, "--cache %s: %s", p->cache_dir, strerror(errno));
    ss_engine_params pc = *p;
    pc.cache_dir = cache_abs;
    p = &pc;
    ss_hub_params hp = ss_hub_default_params();
    if (p->hf_endpoint)
        hp.endpoint = p->hf_endpoint;
    hp.token = p->hf_token;
    if (p->download_parallel > 0)
        hp.parallel = p->download_parallel;
    hp.tty = p->tty;
    hp.quiet = p->quiet;
    eng_source s;
    memset(&s, 0, sizeof s);
    ss_lock *lk = NULL;
    char dir[SS_CACHE_PATH_MAX], lock[SS_CACHE_PATH_MAX];
    ss_status st = eng_source_resolve(p, &hp, &s, err);
    if (st == SS_OK)
        st = ss_cache_engine_dir(p->cache_dir, s.key, s.rev, p->tp, p->pp, p->dtype, dir, sizeof dir, lock, sizeof lock,
                                 err);
    if (st != SS_OK)
        goto out;
    ss_err verr;
    if (ss_engine_verify(dir, p->verify, &verr) == SS_OK) {
        SS_LOGI("engine ready (reused): %s", dir);
        goto done;
    }
    if (access(dir, F_OK) == 0)
        SS_LOGW("existing engine rejected, it will be rebuilt: %s", verr.msg);
    char parent[SS_CACHE_PATH_MAX];
    snprintf(parent, sizeof parent, "%s", dir);
    *strrchr(parent, '/') = '\0';
    SS_CHECK_GOTO(ss_cache_mkdirs(parent, err), st, out);
    eng_wait w = {dir};
    SS_CHECK_GOTO(ss_lock_acquire(lock, &p->lock, eng_ready, &w, &lk, err), st, out);
    if (!lk && ss_engine_verify(dir, p->verify, &verr) != SS_OK) {
        /* Ready by its sizes (eng_ready: a full check at every poll would read the whole engine each time), not by
         * the full check: the damaged engine is still there while the lock's holder rebuilds it. Wait for the lock
         * itself, then check again, or build. */
        SS_CHECK_GOTO(ss_lock_acquire(lock, &p->lock, NULL, NULL, &lk, err), st, out);
    }
    if (!lk || ss_engine_verify(dir, p->verify, &verr) == SS_OK) {
        /* Someone else built it while we waited: check it like any reused engine. */
        SS_CHECK_GOTO(ss_engine_verify(dir, p->verify, err), st, out);
        SS_LOGI("engine ready (built by another process): %s", dir);
        goto done;
    }
    SS_CHECK_GOTO(eng_build_locked(p, &hp, &s, dir, err), st, out);
    SS_LOGI("engine ready (built): %s", dir);
done:
    *engine_dir = ss_strdup(dir);
    if (!*engine_dir)
        st = ss_err_set(err, SS_ERR_NOMEM, "out of memory");
out:
    ss_lock_release(lk);
    eng_source_free(&s);
    if (st != SS_OK && err && p->hf_token)
        ss_hub_mask(err->msg, p->hf_token);
    return st;
}
