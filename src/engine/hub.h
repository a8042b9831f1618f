/* hub.h — downloading checkpoints from the Hugging Face Hub over its HTTP protocol (libcurl):
 * revision -> commit sha, only the files serving needs, parallel transfers, Range resume, LFS sha256
 * checks, the token sent to the Hub host only (never to a redirect target elsewhere, never logged). */
#ifndef SS_ENGINE_HUB_H
#define SS_ENGINE_HUB_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

typedef struct ss_hub_params {
    const char *endpoint;  /* default "https://huggingface.co" (HF_ENDPOINT) */
    const char *token;     /* HF_TOKEN or the token file's content; NULL for anonymous; borrowed */
    int parallel;          /* transfers at once (default 4) */
    int max_retries;       /* resumed attempts per file after an interrupted transfer (default 5) */
    long connect_timeout_s;/* default 30 */
    long stall_timeout_s;  /* a transfer below 1 KiB/s for this long is retried (default 60) */
    int tty, quiet;        /* progress style */
} ss_hub_params;

ss_hub_params ss_hub_default_params(void);

typedef struct ss_hub_file {
    char *name;    /* path in the repository (top level only) */
    int64_t size;  /* -1 if the Hub did not say */
    char *sha256;  /* LFS sha256 (hex) or NULL for plain git files */
} ss_hub_file;

typedef struct ss_hub_repo {
    char *id;          /* "org/name" */
    char *sha;         /* the commit the revision resolved to */
    ss_hub_file *files;/* only the wanted ones */
    size_t n_files;
} ss_hub_repo;

/* Is s shaped like a Hub model id "org/name" ([A-Za-z0-9._-], one slash)? */
int ss_hub_is_repo_id(const char *s);

/* Resolves revision (branch, tag or sha) through GET {endpoint}/api/models/{id}/revision/{rev}?blobs=true
 * and lists the wanted files. When the Hub is unreachable, falls back to the commit recorded in
 * <cache>/hub/<org>--<name>/refs/<rev> by an earlier run (cache may be NULL). 401/403/404 come back
 * as SS_ERR_NOT_FOUND / SS_ERR_UNSUPPORTED with an explanation. Caller destroys *out. */
ss_status ss_hub_resolve(const ss_hub_params *p, const char *repo_id, const char *revision, const char *cache,
                         ss_hub_repo **out, ss_err *err);

/* Downloads every file of repo missing from dest_dir (created if needed): into <file>.incomplete,
 * resumed with Range after an interruption, sha256-checked for LFS files, then renamed. Files already
 * present with the expected size are kept. */
ss_status ss_hub_fetch(const ss_hub_params *p, const ss_hub_repo *repo, const char *dest_dir, ss_err *err);

/* Records <cache>/hub/<key>/refs/<revision> = sha (for offline fallback). Best effort. */
void ss_hub_save_ref(const char *cache, const ss_hub_repo *repo, const char *revision);

void ss_hub_repo_destroy(ss_hub_repo *r);

/* Overwrites every occurrence of token in msg with asterisks (belt and braces for error texts). */
void ss_hub_mask(char *msg, const char *token);

#endif
