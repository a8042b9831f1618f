/* cmd_bench.c — `shardserve bench`: placeholder until its issue lands. */
#include <stdio.h>

#include "cli/commands.h"
#include "core/status.h"

int ss_cmd_bench(int argc, char **argv, char **env)
{
    (void)argc;
    (void)argv;
    (void)env;
    fprintf(stderr, "shardserve bench: not implemented yet\n");
    return SS_EXIT_FAILURE;
}
