/* cpus.c — how many host threads the leader's helper work (JSON masks, host-path sampling) may take:
 * half the cores this process may use, at most 8, and one below 4 cores. */
#include "core/cpus.h"

#include <sched.h>
#include <stdlib.h>
#include <unistd.h>

int ss_helper_threads(void)
{
    const char *env = getenv("SS_HELPER_THREADS"); /* a tuning and test switch: 1..64 */
    if (env && *env) {
        char *end = NULL;
        const long n = strtol(env, &end, 10);
        if (*end == '\0' && n >= 1 && n <= 64)
            return (int)n;
    }
    /* the cores this process may run on (a container's cpuset, taskset), not all the machine's */
    cpu_set_t set;
    const long cores = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : sysconf(_SC_NPROCESSORS_ONLN);
    return cores < 4 ? 1 : cores / 2 < 8 ? (int)(cores / 2) : 8;
}
