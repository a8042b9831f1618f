/* main.c — the shardserve binary: dispatches to a subcommand (DESIGN.md §2). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "core/status.h"

extern char **environ;

typedef struct {
    const char *name;
    int (*fn)(int, char **, char **);
    const char *help;
} main_cmd;

static const main_cmd main_cmds[] = {
    {"serve", ss_cmd_serve, "serve a model over HTTP (Triton v2 + OpenAI APIs)"},
    {"generate", ss_cmd_generate, "one-shot generation from a prompt or token ids"},
    {"prepare", ss_cmd_prepare, "build the per-rank engine of a checkpoint in the cache"},
    {"bench", ss_cmd_bench, "load generator against an OpenAI-compatible server"},
    {"tokenize", ss_cmd_tokenize, "text on stdin -> token ids (or --decode: ids -> text)"},
    {"chat-template", ss_cmd_chat_template, "messages JSON on stdin -> rendered chat prompt"},
    {"worker", ss_cmd_worker, "(internal) a non-leader rank of a replica"},
};

static void main_usage(FILE *f)
{
    fprintf(f, "usage: shardserve <command> [flags]   (shardserve <command> --help for its flags)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof main_cmds / sizeof main_cmds[0]; i++)
        fprintf(f, "  %-14s %s\n", main_cmds[i].name, main_cmds[i].help);
}

int main(int argc, char **argv)
{
    /* OpenMP threads of the cpu backend wait passively between regions: spinning starves OpenBLAS's
     * own threads and the other ranks on small machines. Read once by libgomp at start-up; a value
     * the user set wins. */
    setenv("OMP_WAIT_POLICY", "PASSIVE", 0);
    if (argc < 2) {
        main_usage(stderr);
        return SS_EXIT_USAGE;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        main_usage(stdout);
        return SS_EXIT_OK;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("shardserve %s\n", SS_VERSION);
        return SS_EXIT_OK;
    }
    for (size_t i = 0; i < sizeof main_cmds / sizeof main_cmds[0]; i++)
        if (!strcmp(argv[1], main_cmds[i].name))
            return main_cmds[i].fn(argc, argv, environ);
    fprintf(stderr, "shardserve: unknown command '%s'\n", argv[1]);
    main_usage(stderr);
    return SS_EXIT_USAGE;
}
