/* opts.h — command-line flags with environment twins (--tp <-> SHARDSERVE_TP), parsed from a table.
 * Precedence: flag, then environment, then the default already in the destination. */
#ifndef SS_CLI_OPTS_H
#define SS_CLI_OPTS_H

#include <stdint.h>

#include "core/status.h"

typedef enum ss_opt_type { SS_OPT_STR, SS_OPT_INT, SS_OPT_FLOAT, SS_OPT_BOOL } ss_opt_type;

typedef struct ss_opt {
    const char *name;  /* "tp" for --tp; the env twin is SHARDSERVE_TP ('-' becomes '_') */
    ss_opt_type type;
    void *dest;        /* const char ** | int64_t * | double * | int * (bool) */
    const char *help;
} ss_opt;

/* Parses argv[first..argc) against opts (terminated by a {NULL} entry). Positional arguments are
 * refused. env: the environment (envp-style array, NULL-terminated) so tests can pass their own;
 * strings stored into dest point into argv/env (borrowed for the process lifetime).
 * On a bad flag returns SS_ERR_INVALID_ARG with err naming it. "--help" returns SS_ERR_CANCELLED
 * after printing usage to stdout. */
ss_status ss_opts_parse(const ss_opt *opts, int argc, char **argv, int first, char **env, const char *cmd,
                        ss_err *err);
/* Value of `key` in an envp-style array (NULL-terminated), or NULL. Borrowed from env. */
const char *ss_env_get(char **env, const char *key);

/* A command's parse, for messages about its values afterwards (all borrowed from the command). */
typedef struct ss_opts_src {
    const ss_opt *opts;
    int argc;
    char **argv;
    int first;
    char **env;
} ss_opts_src;

/* For each option that err's message names ("--port must be ...") and that came from its environment twin, not from
 * a flag, appends where the value came from: " (from the environment: SHARDSERVE_PORT=99999)". */
void ss_opts_explain(const ss_opts_src *src, ss_err *err);

/* Prints "--name (SHARDSERVE_NAME)  help" lines. */
void ss_opts_usage(const ss_opt *opts, const char *cmd, const char *synopsis);

#endif
