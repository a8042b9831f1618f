/* cmd_generate.c — `shardserve generate`: placeholder until its issue lands. */
#include <stdio.h>

#include "cli/commands.h"
#include "core/status.h"

int ss_cmd_generate(int argc, char **argv, char **env)
{
    (void)argc;
    (void)argv;
    (void)env;
    fprintf(stderr, "shardserve generate: not implemented yet\n");
    return SS_EXIT_FAILURE;
}
