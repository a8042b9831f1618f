/* cmd_worker.c — `shardserve worker`: placeholder until its issue lands. */
#include <stdio.h>

#include "cli/commands.h"
#include "core/status.h"

int ss_cmd_worker(int argc, char **argv, char **env)
{
    (void)argc;
    (void)argv;
    (void)env;
    fprintf(stderr, "shardserve worker: not implemented yet\n");
    return SS_EXIT_FAILURE;
}
