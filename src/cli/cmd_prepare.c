/* cmd_prepare.c — `shardserve prepare`: placeholder until its issue lands. */
#include <stdio.h>

#include "cli/commands.h"
#include "core/status.h"

int ss_cmd_prepare(int argc, char **argv, char **env)
{
    (void)argc;
    (void)argv;
    (void)env;
    fprintf(stderr, "shardserve prepare: not implemented yet\n");
    return SS_EXIT_FAILURE;
}
