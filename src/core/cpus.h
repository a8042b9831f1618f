/* cpus.h — how many host threads the leader's helper work (JSON masks, host-path sampling) may take:
 * half the cores, at most 8, and one below 4 cores, so that the serving threads keep theirs. */
#ifndef SS_CORE_CPUS_H
#define SS_CORE_CPUS_H

/* Half the cores this process may run on (its CPU affinity: a container's cpuset), at most 8; 1 below 4 cores.
 * SS_HELPER_THREADS=N (1..64) overrides it. */
int ss_helper_threads(void);

#endif
