/* cmd_serve.c — `shardserve serve`: placeholder until its issue lands. */
#include <stdio.h>

#include "cli/commands.h"
#include "core/status.h"

int ss_cmd_serve(int argc, char **argv, char **env)
{
    (void)argc;
    (void)argv;
    (void)env;
    fprintf(stderr, "shardserve serve: not implemented yet\n");
    return SS_EXIT_FAILURE;
}
