/* log.c — the log sink: one line per call, written atomically to stderr.
 * Configuration is written once by ss_log_init before any thread starts, then read-only. */
#include "core/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *const log_names[] = {"debug", "info", "warn", "error"};

static struct {
    ss_log_level level;
    char role[64];
} log_cfg = {SS_LOG_INFO, ""};

void ss_log_init(ss_log_level level, const char *role)
{
    log_cfg.level = level;
    snprintf(log_cfg.role, sizeof log_cfg.role, "%s", role ? role : "");
}

ss_log_level ss_log_level_get(void)
{
    return log_cfg.level;
}

int ss_log_level_parse(const char *name, ss_log_level *out)
{
    for (int i = 0; name && i < (int)(sizeof log_names / sizeof log_names[0]); i++)
        if (!strcmp(name, log_names[i])) {
            *out = (ss_log_level)i;
            return 0;
        }
    return -1;
}

const char *ss_log_level_name(ss_log_level level)
{
    return level >= SS_LOG_DEBUG && level < SS_LOG_OFF ? log_names[level] : "error";
}

void ss_log(ss_log_level level, const char *fmt, ...)
{
    if (level < log_cfg.level || level >= SS_LOG_OFF)
        return;
    char line[2048];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s%s%s ", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
                     log_names[level], log_cfg.role[0] ? " " : "", log_cfg.role);
    if (n < 0 || (size_t)n >= sizeof line)
        n = 0;
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof line - 2)
        len = sizeof line - 2;
    line[len++] = '\n';
    /* One write per line keeps lines of concurrent ranks/threads whole. */
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}
