/* cmd_tokenize.c — `shardserve tokenize`: placeholder until its issue lands. */
#include <stdio.h>

#include "cli/commands.h"
#include "core/status.h"

int ss_cmd_tokenize(int argc, char **argv, char **env)
{
    (void)argc;
    (void)argv;
    (void)env;
    fprintf(stderr, "shardserve tokenize: not implemented yet\n");
    return SS_EXIT_FAILURE;
}
