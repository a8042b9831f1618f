/* default_model.c — locating the bundled demo model on a fresh clone, an install, or in the image. */
#include "cli/default_model.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/fileio.h"

static int dm_try(char *buf, size_t cap, const char *dir)
{
    char cfg[2 * PATH_MAX + 32];
    snprintf(cfg, sizeof cfg, "%s/config.json", dir);
    if (!ss_path_exists(cfg))
        return 0;
    snprintf(buf, cap, "%s", dir);
    return 1;
}

ss_status ss_default_model_dir(char *buf, size_t cap, ss_err *err)
{
    char cand[2 * PATH_MAX];
#ifdef SS_SOURCE_ROOT
    snprintf(cand, sizeof cand, "%s/models/%s", SS_SOURCE_ROOT, SS_DEFAULT_MODEL_NAME);
    if (dm_try(buf, cap, cand))
        return SS_OK;
#endif
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash)
            *slash = '\0';
        snprintf(cand, sizeof cand, "%s/../share/shardserve/models/%s", exe, SS_DEFAULT_MODEL_NAME);
        if (dm_try(buf, cap, cand))
            return SS_OK;
    }
    snprintf(cand, sizeof cand, "/opt/shardserve/models/%s", SS_DEFAULT_MODEL_NAME);
    if (dm_try(buf, cap, cand))
        return SS_OK;
    return ss_err_set(err, SS_ERR_NOT_FOUND,
                      "no --model given and the bundled model models/%s was not found (pass --model DIR)",
                      SS_DEFAULT_MODEL_NAME);
}
