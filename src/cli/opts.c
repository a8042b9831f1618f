/* opts.c — the flag/env-twin parser behind every subcommand. */
#include "cli/opts.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void opt_env_name(const char *name, char *buf, size_t cap)
{
    size_t n = (size_t)snprintf(buf, cap, "SHARDSERVE_");
    for (const char *p = name; *p && n + 1 < cap; p++)
        buf[n++] = (*p == '-') ? '_' : (char)((*p >= 'a' && *p <= 'z') ? *p - 32 : *p);
    buf[n] = '\0';
}

const char *ss_env_get(char **env, const char *key)
{
    size_t kl = strlen(key);
    for (char **e = env; e && *e; e++)
        if (strncmp(*e, key, kl) == 0 && (*e)[kl] == '=')
            return *e + kl + 1;
    return NULL;
}

static ss_status opt_set(const ss_opt *o, const char *val, const char *origin, ss_err *err)
{
    char *end = NULL;
    switch (o->type) {
    case SS_OPT_STR: *(const char **)o->dest = val; return SS_OK;
    case SS_OPT_INT: {
        errno = 0;
        long long v = strtoll(val, &end, 10);
        if (errno || end == val || *end)
            return ss_err_set(err, SS_ERR_INVALID_ARG, "%s: expected an integer, got '%s'", origin, val);
        *(int64_t *)o->dest = v;
        return SS_OK;
    }
    case SS_OPT_FLOAT: {
        errno = 0;
        double v = strtod(val, &end);
        if (errno || end == val || *end || !isfinite(v)) /* (strtod reads "nan" and "inf": no flag means them) */
            return ss_err_set(err, SS_ERR_INVALID_ARG, "%s: expected a finite number, got '%s'", origin, val);
        *(double *)o->dest = v;
        return SS_OK;
    }
    case SS_OPT_BOOL:
        if (!strcmp(val, "1") || !strcmp(val, "true") || !strcmp(val, "yes") || !strcmp(val, "on")) {
            *(int *)o->dest = 1;
        } else if (!strcmp(val, "0") || !strcmp(val, "false") || !strcmp(val, "no") || !strcmp(val, "off")) {
            *(int *)o->dest = 0;
        } else {
            return ss_err_set(err, SS_ERR_INVALID_ARG, "%s: expected true/false, got '%s'", origin, val);
        }
        return SS_OK;
    }
    return SS_ERR_INTERNAL;
}

/* The option named name[0, nl), or NULL. */
static const ss_opt *opt_find(const ss_opt *opts, const char *name, size_t nl)
{
    for (const ss_opt *p = opts; p->name; p++)
        if (strlen(p->name) == nl && !strncmp(p->name, name, nl))
            return p;
    return NULL;
}

ss_status ss_opts_parse(const ss_opt *opts, int argc, char **argv, int first, char **env, const char *cmd,
                        ss_err *err)
{
    /* --help before anything is read, so that it lists the built-in defaults; a flag's value ("--prompt -h")
     * is skipped, not taken for a request for help. */
    for (int i = first; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            ss_opts_usage(opts, cmd, NULL);
            return SS_ERR_CANCELLED;
        }
        const ss_opt *o = strncmp(a, "--", 2) || strchr(a, '=') ? NULL : opt_find(opts, a + 2, strlen(a + 2));
        if (o && o->type != SS_OPT_BOOL)
            i++;
    }
    /* Flags first; then the environment, for the options no flag gave: a flag wins over its twin, also over a twin
     * whose value is bad (helper-80: SHARDSERVE_MAX_TOKENS=abc failed a command that passed --max-tokens 2). */
    unsigned char given[256] = {0};
    for (int i = first; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0)
            return ss_err_set(err, SS_ERR_INVALID_ARG, "unexpected argument '%s' (flags start with --; see shardserve %s --help)", a, cmd);
        const char *name = a + 2;
        const char *eq = strchr(name, '=');
        size_t nl = eq ? (size_t)(eq - name) : strlen(name);
        const ss_opt *o = opt_find(opts, name, nl);
        if (!o)
            return ss_err_set(err, SS_ERR_INVALID_ARG, "unknown flag '--%.*s' (see shardserve %s --help)", (int)nl, name, cmd);
        const char *val;
        if (eq) {
            val = eq + 1;
        } else if (o->type == SS_OPT_BOOL) {
            val = "true";
        } else {
            if (i + 1 >= argc)
                return ss_err_set(err, SS_ERR_INVALID_ARG, "flag '--%s' needs a value", o->name);
            val = argv[++i];
        }
        char origin[96];
        snprintf(origin, sizeof origin, "--%s", o->name);
        ss_status st = opt_set(o, val, origin, err);
        if (st != SS_OK)
            return st;
        if ((size_t)(o - opts) < sizeof given)
            given[o - opts] = 1;
    }
    for (const ss_opt *o = opts; o->name; o++) {
        char key[96];
        opt_env_name(o->name, key, sizeof key);
        const char *v = (size_t)(o - opts) < sizeof given && given[o - opts] ? NULL : ss_env_get(env, key);
        if (v && *v) {
            ss_status st = opt_set(o, v, key, err);
            if (st != SS_OK)
                return st;
        }
    }
    return SS_OK;
}

/* Whether the message names --<name> as a whole flag (not as the start of a longer one, "--tp" in "--tp-size"). */
static int opt_named_in(const char *msg, const char *name)
{
    size_t nl = strlen(name);
    for (const char *p = strstr(msg, "--"); p; p = strstr(p + 2, "--")) {
        char c = p[2 + nl];
        if (!strncmp(p + 2, name, nl) && !((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_'))
            return 1;
    }
    return 0;
}

void ss_opts_explain(const ss_opts_src *src, ss_err *err)
{
    unsigned char given[256] = {0}; /* flags on the command line, read as ss_opts_parse reads them */
    for (int i = src->first; i < src->argc; i++) {
        const char *a = src->argv[i];
        if (strncmp(a, "--", 2))
            continue;
        const char *eq = strchr(a + 2, '=');
        const ss_opt *o = opt_find(src->opts, a + 2, eq ? (size_t)(eq - a - 2) : strlen(a + 2));
        if (!o)
            continue;
        if ((size_t)(o - src->opts) < sizeof given)
            given[o - src->opts] = 1;
        if (!eq && o->type != SS_OPT_BOOL)
            i++;
    }
    for (const ss_opt *o = src->opts; o->name; o++) {
        char key[96];
        opt_env_name(o->name, key, sizeof key);
        const char *v = ss_env_get(src->env, key);
        if (!v || !*v || ((size_t)(o - src->opts) < sizeof given && given[o - src->opts]) ||
            !opt_named_in(err->msg, o->name))
            continue;
        size_t n = strlen(err->msg);
        snprintf(err->msg + n, sizeof err->msg - n, " (from the environment: %s=%.60s%s)", key, v,
                 strlen(v) > 60 ? "..." : "");
    }
}

void ss_opts_usage(const ss_opt *opts, const char *cmd, const char *synopsis)
{
    printf("usage: shardserve %s %s\n\nflags (each also read from its environment twin; a flag without a value is "
           "on/off):\n",
           cmd, synopsis ? synopsis : "[flags]");
    for (const ss_opt *o = opts; o->name; o++) {
        char key[96], flag[64], def[96] = "";
        opt_env_name(o->name, key, sizeof key);
        static const char *const meta[] = {[SS_OPT_STR] = " TEXT", [SS_OPT_INT] = " N", [SS_OPT_FLOAT] = " X",
                                           [SS_OPT_BOOL] = ""};
        snprintf(flag, sizeof flag, "--%s%s", o->name, meta[o->type]);
        /* the value in place before any flag is read: the default, unless the help text states it */
        if (!o->help || !strstr(o->help, "default")) {
            if (o->type == SS_OPT_INT)
                snprintf(def, sizeof def, " [default: %lld]", (long long)*(const int64_t *)o->dest);
            else if (o->type == SS_OPT_FLOAT)
                snprintf(def, sizeof def, " [default: %g]", *(const double *)o->dest);
            else if (o->type == SS_OPT_STR && *(const char *const *)o->dest && **(const char *const *)o->dest)
                snprintf(def, sizeof def, " [default: %.60s]", *(const char *const *)o->dest);
        }
        printf("  %-28s %-28s %s%s\n", flag, key, o->help ? o->help : "", def);
    }
}
