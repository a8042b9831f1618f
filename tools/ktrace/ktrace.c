/* ktrace.c — a kernel tracer for GPU machines without Nsight Systems: a CUDA injection library
 * (CUDA_INJECTION64_PATH=libss_ktrace.so) that records every kernel's, memcpy's and memset's start/end
 * with CUPTI's activity API — graph replays included — and writes them as CSV to $SS_KTRACE_OUT.<pid>
 * at exit (copies are named memcpy_<kind>_<bytes>, memsets memset_<bytes>).
 * Columns: start_ns,end_ns,device,stream,graph_id,name. scripts/gpu/ktrace_summary.py summarises them.
 * Hand-written because no packaged tool does this on those machines; nothing here runs in the server. */
#include <cupti.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define KT_BUFFER_BYTES (8u << 20)

/* The injection library's only state: the output file (the CUPTI callbacks take no user pointer). */
static FILE *kt_out;

static void CUPTIAPI kt_buffer_requested(uint8_t **buffer, size_t *size, size_t *max_records)
{
    *buffer = aligned_alloc(8, KT_BUFFER_BYTES);
    *size = *buffer ? KT_BUFFER_BYTES : 0;
    *max_records = 0;
}

static void CUPTIAPI kt_buffer_completed(CUcontext ctx, uint32_t stream, uint8_t *buffer, size_t size, size_t valid)
{
    (void)ctx, (void)stream, (void)size;
    CUpti_Activity *rec = NULL;
    while (kt_out && cuptiActivityGetNextRecord(buffer, valid, &rec) == CUPTI_SUCCESS) {
        if (rec->kind == CUPTI_ACTIVITY_KIND_MEMCPY) {
            static const char *kinds[] = {"unknown", "HtoD", "DtoH", "HtoA", "AtoH", "AtoA", "AtoD", "DtoA", "DtoD", "HtoH"};
            const CUpti_ActivityMemcpy6 *m = (const CUpti_ActivityMemcpy6 *)rec;
            fprintf(kt_out, "%llu,%llu,%u,%u,%u,\"memcpy_%s_%llu\"\n", (unsigned long long)m->start,
                    (unsigned long long)m->end, m->deviceId, m->streamId, m->graphId,
                    m->copyKind < sizeof kinds / sizeof kinds[0] ? kinds[m->copyKind] : "other",
                    (unsigned long long)m->bytes);
            continue;
        }
        if (rec->kind == CUPTI_ACTIVITY_KIND_MEMSET) {
            const CUpti_ActivityMemset4 *m = (const CUpti_ActivityMemset4 *)rec;
            fprintf(kt_out, "%llu,%llu,%u,%u,%u,\"memset_%llu\"\n", (unsigned long long)m->start,
                    (unsigned long long)m->end, m->deviceId, m->streamId, m->graphId, (unsigned long long)m->bytes);
            continue;
        }
        if (rec->kind != CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL && rec->kind != CUPTI_ACTIVITY_KIND_KERNEL)
            continue;
        const CUpti_ActivityKernel10 *k = (const CUpti_ActivityKernel10 *)rec;
        fprintf(kt_out, "%llu,%llu,%u,%u,%u,\"%s\"\n", (unsigned long long)k->start, (unsigned long long)k->end,
                k->deviceId, k->streamId, k->graphId, k->name ? k->name : "?");
    }
    free(buffer);
}

static void kt_finish(void)
{
    cuptiActivityFlushAll(1);
    if (kt_out) {
        fclose(kt_out);
        kt_out = NULL;
    }
}

/* Called by the CUDA driver when it loads this library (CUDA_INJECTION64_PATH). */
int InitializeInjection(void);
int InitializeInjection(void)
{
    const char *base = getenv("SS_KTRACE_OUT");
    char path[1024];
    snprintf(path, sizeof path, "%s.%d", base ? base : "/tmp/ktrace", (int)getpid());
    kt_out = fopen(path, "w");
    if (!kt_out) {
        fprintf(stderr, "ktrace: cannot write %s\n", path);
        return 0;
    }
    fprintf(kt_out, "start_ns,end_ns,device,stream,graph_id,name\n");
    if (cuptiActivityRegisterCallbacks(kt_buffer_requested, kt_buffer_completed) != CUPTI_SUCCESS ||
        cuptiActivityEnable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL) != CUPTI_SUCCESS ||
        cuptiActivityEnable(CUPTI_ACTIVITY_KIND_MEMCPY) != CUPTI_SUCCESS ||
        cuptiActivityEnable(CUPTI_ACTIVITY_KIND_MEMSET) != CUPTI_SUCCESS) {
        fprintf(stderr, "ktrace: CUPTI activity API unavailable\n");
        return 0;
    }
    atexit(kt_finish);
    return 1;
}
