/* engine_layout.c — what `serve` and `generate` take from a prepared engine when the user leaves it out:
 * the tensor/pipeline layout it was prepared for, and a model name for the APIs. */
#include "cli/engine_layout.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "core/fileio.h"
#include "engine/manifest.h"

ss_status ss_cli_engine_layout(const char *dir, int engine, int64_t *tp, int64_t *pp, char *name, size_t name_cap,
                               ss_err *err)
{
    if (name && name_cap)
        name[0] = '\0';
    int mtp = 1, mpp = 1;
    char path[4096];
    if (dir && (size_t)snprintf(path, sizeof path, "%s/manifest.json", dir) < sizeof path && ss_path_exists(path)) {
        ss_manifest *m = NULL;
        SS_CHECK(ss_manifest_load(dir, &m, err));
        mtp = m->tp, mpp = m->pp;
        /* "org/Name" from the Hub: "Name", as serve names a Hub id it prepares itself; "local--<folder>" for a
         * local checkpoint: the folder's name lowercased, as serve names a checkpoint folder */
        const char *id = m->source_id ? m->source_id : "";
        int local = !strncmp(id, "local--", 7);
        if (local)
            id += 7;
        const char *slash = strrchr(id, '/');
        id = slash ? slash + 1 : id;
        if (name && name_cap) {
            snprintf(name, name_cap, "%s", id);
            for (char *p = name; local && *p; p++)
                *p = (char)tolower((unsigned char)*p);
        }
        ss_manifest_destroy(m);
    } else if (engine && dir) {
        return ss_err_set(err, SS_ERR_NOT_FOUND,
                          "--engine %s: no manifest.json, so no prepared engine (a checkpoint folder goes to --model)",
                          dir);
    }
    if (*tp == SS_CLI_UNSET)
        *tp = mtp;
    if (*pp == SS_CLI_UNSET)
        *pp = mpp;
    return SS_OK;
}
