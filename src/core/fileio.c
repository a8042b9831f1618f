/* fileio.c — whole-file reads with a cap, for configs and other small inputs. */
#include "core/fileio.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/alloc.h"

ss_status ss_read_file(const char *path, size_t cap, char **out, size_t *len, ss_err *err)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return ss_err_set(err, ss_file_error_status(errno), "%s: %s", path, strerror(errno));
    char *buf = NULL;
    size_t n = 0, capb = 0;
    ss_status st = SS_OK;
    for (;;) {
        if (n + 65536 + 1 > capb) {
            capb = capb ? capb * 2 : 131072;
            char *nb = ss_realloc(buf, capb);
            if (!nb) {
                st = ss_err_set(err, SS_ERR_NOMEM, "%s: out of memory", path);
                break;
            }
            buf = nb;
        }
        size_t r = fread(buf + n, 1, 65536, fp);
        n += r;
        if (n > cap) {
            st = ss_err_set(err, SS_ERR_FORMAT, "%s: larger than the %zu-byte cap", path, cap);
            break;
        }
        if (r < 65536) {
            if (ferror(fp)) /* (a folder opens, and reads fail with EISDIR) */
                st = ss_err_set(err, ss_file_error_status(errno), "%s: %s", path, strerror(errno));
            break;
        }
    }
    fclose(fp);
    if (st != SS_OK) {
        ss_free(buf);
        return st;
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return SS_OK;
}

int ss_path_exists(const char *path)
{
    return access(path, F_OK) == 0;
}
