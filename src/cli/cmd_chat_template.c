/* cmd_chat_template.c — `shardserve chat-template`: placeholder until its issue lands. */
#include <stdio.h>

#include "cli/commands.h"
#include "core/status.h"

int ss_cmd_chat_template(int argc, char **argv, char **env)
{
    (void)argc;
    (void)argv;
    (void)env;
    fprintf(stderr, "shardserve chat-template: not implemented yet\n");
    return SS_EXIT_FAILURE;
}
