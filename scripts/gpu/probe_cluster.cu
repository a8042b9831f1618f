// probe_cluster.cu — a device probe (session 24), not part of the build: can the persistent decode kernel's grid
// be thread-block clusters, and what does a flag cost through distributed shared memory against global memory?
//
// Prints, for a kernel shaped like decode_persist (288 threads, one CTA a SM, most of shared memory):
//   - cudaOccupancyMaxActiveClusters for cluster sizes 1..16 (16 non-portable) at grids of 128 and 132 CTAs;
//   - whether a cooperative launch with clusters of 8 and 16 is accepted;
//   - the round trip of a flag between two CTAs: through global memory (release store, acquire poll; CTAs 0 and
//     G/2) and through distributed shared memory (ranks 0 and C-1 of cluster 0), with the bus idle and with every
//     other warp of the grid streaming a large buffer from HBM (the decode kernel's situation).
// Build and run on the device: nvcc -O3 -arch=sm_90a -o probe probe_cluster.cu && ./probe
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define CK(x)                                                                                                      \
    do {                                                                                                           \
        cudaError_t e_ = (x);                                                                                      \
        if (e_ != cudaSuccess) {                                                                                   \
            printf("%s: %s\n", #x, cudaGetErrorString(e_));                                                        \
            return 1;                                                                                              \
        }                                                                                                          \
    } while (0)

struct Args {
    unsigned *ctr;        // [0] grid barrier, [1] stop flag for the loaders
    unsigned *flags;      // global ping-pong flags [2] (128 bytes apart)
    const uint4 *buf;     // the loaders' buffer
    size_t buf_n;         // uint4s in it
    unsigned long long *out; // [0] global round trips ns, [1] dsmem ns, [2] bytes loaded
    int trips, load, csize;
};

__device__ __forceinline__ uint64_t now_ns()
{
    uint64_t t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}

__device__ void grid_sync_once(unsigned *ctr)
{
    __syncthreads();
    if (threadIdx.x == 0) {
        atomicAdd(ctr, 1u);
        const uint64_t t0 = now_ns();
        unsigned v;
        do {
            asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(ctr));
            if (now_ns() - t0 > 2000000000ull)
                __trap(); // not co-resident
        } while (v < gridDim.x);
    }
    __syncthreads();
}

__device__ __forceinline__ unsigned ld_acq_gpu(const unsigned *p)
{
    unsigned v;
    asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
    return v;
}

__device__ __forceinline__ void st_rel_gpu(unsigned *p, unsigned v)
{
    asm volatile("st.release.gpu.global.u32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
}

__device__ __forceinline__ unsigned cluster_rank()
{
    unsigned r;
    asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(r));
    return r;
}

__global__ void __launch_bounds__(288, 1) probe(Args a)
{
    extern __shared__ __align__(128) unsigned char smem[];
    volatile unsigned *myflag = reinterpret_cast<unsigned *>(smem);
    if (threadIdx.x == 0)
        *myflag = 0;
    if (a.csize > 1)
        asm volatile("barrier.cluster.arrive.release.aligned; barrier.cluster.wait.acquire.aligned;" ::: "memory");
    grid_sync_once(a.ctr);
    const unsigned G = gridDim.x, rank = a.csize > 1 ? cluster_rank() : 0;
    const bool gA = blockIdx.x == 0 && threadIdx.x == 0, gB = blockIdx.x == G / 2 && threadIdx.x == 0;
    const bool dA = a.csize > 1 && blockIdx.x == 0 && threadIdx.x == 32, dB = a.csize > 1 && blockIdx.x == (unsigned)a.csize - 1 && threadIdx.x == 32;
    if (gA || gB) { // global ping-pong: A sets flags[0] = i, B answers flags[32] = i
        const uint64_t t0 = now_ns();
        for (int i = 1; i <= a.trips; i++) {
            if (gA) {
                st_rel_gpu(a.flags, (unsigned)i);
                while (ld_acq_gpu(a.flags + 32) != (unsigned)i)
                    if (now_ns() - t0 > 2000000000ull) __trap();
            } else {
                while (ld_acq_gpu(a.flags) != (unsigned)i)
                    if (now_ns() - t0 > 2000000000ull) __trap();
                st_rel_gpu(a.flags + 32, (unsigned)i);
            }
        }
        if (gA)
            a.out[0] = now_ns() - t0;
    }
    if (dA || dB) { // DSMEM ping-pong between ranks 0 and C-1: each stores into the other's flag
        const unsigned peer = dA ? (unsigned)a.csize - 1 : 0;
        unsigned remote;
        asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(remote) : "r"((unsigned)__cvta_generic_to_shared((void *)myflag)), "r"(peer));
        const uint64_t t0 = now_ns();
        for (int i = 1; i <= a.trips; i++) {
            if (dA)
                asm volatile("st.release.cluster.shared::cluster.u32 [%0], %1;" ::"r"(remote), "r"((unsigned)i) : "memory");
            unsigned v;
            do {
                asm volatile("ld.acquire.cluster.shared::cta.u32 %0, [%1];" : "=r"(v) : "r"((unsigned)__cvta_generic_to_shared((void *)myflag)) : "memory");
                if (now_ns() - t0 > 2000000000ull) __trap();
            } while (v != (unsigned)i);
            if (dB)
                asm volatile("st.release.cluster.shared::cluster.u32 [%0], %1;" ::"r"(remote), "r"((unsigned)i) : "memory");
        }
        if (dA)
            a.out[1] = now_ns() - t0;
    }
    if (gA || dA) { // done: stop the loaders (after both ping-pongs of CTA 0)
        __threadfence();
        if (gA) atomicAdd(a.ctr + 1, 1u);
        if (dA) atomicAdd(a.ctr + 1, 1u);
    }
    const bool pinger = gA || gB || dA || dB;
    const int want = a.csize > 1 ? 2 : 1;
    if (!pinger && a.load && threadIdx.x != 0 && threadIdx.x != 32) { // stream the buffer until told to stop
        const size_t nthreads = (size_t)G * 288, tid = (size_t)blockIdx.x * 288 + threadIdx.x;
        size_t i = tid;
        unsigned long long n = 0;
        uint4 acc = make_uint4(0, 0, 0, 0);
        for (int it = 0;; it++) {
            if ((it & 15) == 0 && ld_acq_gpu(a.ctr + 1) >= (unsigned)want)
                break;
#pragma unroll
            for (int u = 0; u < 4; u++) {
                const uint4 v = __ldcs(a.buf + i);
                acc.x ^= v.x, acc.y ^= v.y;
                i += nthreads;
                if (i >= a.buf_n)
                    i -= a.buf_n;
                n += 16;
            }
        }
        if (acc.x == 0x12345678u && acc.y == 0x9abcdef0u)
            a.out[3] = 1; // keep the loads
        atomicAdd(a.out + 2, n);
    }
    if (a.csize > 1) // no CTA leaves while a peer may still write its shared memory
        asm volatile("barrier.cluster.arrive.release.aligned; barrier.cluster.wait.acquire.aligned;" ::: "memory");
}

static int run(int grid, int csize, int coop, int load, int trips, size_t smem, Args a, unsigned long long *h)
{
    cudaLaunchAttribute attr[2];
    int na = 0;
    if (coop) {
        attr[na].id = cudaLaunchAttributeCooperative;
        attr[na].val.cooperative = 1;
        na++;
    }
    if (csize > 1) {
        attr[na].id = cudaLaunchAttributeClusterDimension;
        attr[na].val.clusterDim.x = csize, attr[na].val.clusterDim.y = 1, attr[na].val.clusterDim.z = 1;
        na++;
    }
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3(grid), cfg.blockDim = dim3(288), cfg.dynamicSmemBytes = smem, cfg.attrs = attr, cfg.numAttrs = na;
    CK(cudaMemset(a.ctr, 0, 64));
    CK(cudaMemset(a.flags, 0, 256));
    CK(cudaMemset(a.out, 0, 64));
    a.csize = csize, a.load = load, a.trips = trips;
    cudaError_t e = cudaLaunchKernelEx(&cfg, probe, a);
    if (e != cudaSuccess) {
        printf("launch grid %d cluster %d coop %d: %s\n", grid, csize, coop, cudaGetErrorString(e));
        (void)cudaGetLastError();
        return 1;
    }
    e = cudaDeviceSynchronize();
    if (e != cudaSuccess) {
        printf("run grid %d cluster %d coop %d: %s\n", grid, csize, coop, cudaGetErrorString(e));
        return 2;
    }
    CK(cudaMemcpy(h, a.out, 32, cudaMemcpyDeviceToHost));
    return 0;
}

int main()
{
    int dev = 0, sms = 0, smem_max = 0;
    CK(cudaGetDevice(&dev));
    CK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
    CK(cudaDeviceGetAttribute(&smem_max, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, dev));
    printf("device %s, %d SMs, %d bytes of shared memory a block (opt-in), L2 %d MB\n", prop.name, sms, smem_max,
           prop.l2CacheSize >> 20);
    const size_t smem = (size_t)smem_max - 2048;
    CK(cudaFuncSetAttribute(probe, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    CK(cudaFuncSetAttribute(probe, cudaFuncAttributeNonPortableClusterSizeAllowed, 1));
    for (int grid : {128, 132}) {
        printf("grid %d, max active clusters:", grid);
        for (int c : {1, 2, 4, 8, 12, 16}) {
            if (grid % c) {
                printf("  c%d -", c);
                continue;
            }
            cudaLaunchAttribute at;
            at.id = cudaLaunchAttributeClusterDimension;
            at.val.clusterDim.x = c, at.val.clusterDim.y = 1, at.val.clusterDim.z = 1;
            cudaLaunchConfig_t cfg = {};
            cfg.gridDim = dim3(grid), cfg.blockDim = dim3(288), cfg.dynamicSmemBytes = smem, cfg.attrs = &at, cfg.numAttrs = 1;
            int n = -1;
            cudaError_t e = cudaOccupancyMaxActiveClusters(&n, probe, &cfg);
            if (e != cudaSuccess) {
                printf("  c%d err(%s)", c, cudaGetErrorString(e));
                (void)cudaGetLastError();
            } else
                printf("  c%d %d (%d CTAs)", c, n, n * c);
        }
        printf("\n");
    }
    Args a = {};
    const size_t buf_bytes = (size_t)8 << 30;
    CK(cudaMalloc(&a.ctr, 64));
    CK(cudaMalloc(&a.flags, 256));
    CK(cudaMalloc(&a.out, 64));
    void *buf;
    CK(cudaMalloc(&buf, buf_bytes));
    CK(cudaMemset(buf, 1, buf_bytes));
    a.buf = (const uint4 *)buf, a.buf_n = buf_bytes / 16;
    unsigned long long h[4];
    const int trips = 2000;
    struct { int grid, c, coop; } cases[] = {{132, 1, 1}, {128, 1, 1}, {132, 2, 1}, {132, 4, 1}, {128, 8, 1}, {128, 16, 1}, {128, 8, 0}, {128, 16, 0}};
    // (the non-cooperative cluster launches last: one whose CTAs are not all resident traps, ending the context)
    for (auto &k : cases)
        for (int load = 0; load <= 1; load++) {
            cudaEvent_t t0, t1;
            cudaEventCreate(&t0), cudaEventCreate(&t1);
            cudaEventRecord(t0);
            const int r = run(k.grid, k.c, k.coop, load, trips, smem, a, h);
            cudaEventRecord(t1);
            cudaEventSynchronize(t1);
            float ms = 0;
            cudaEventElapsedTime(&ms, t0, t1);
            if (r == 2)
                return 1; // the context is gone after a trap
            if (r)
                break;
            printf("grid %3d cluster %2d coop %d load %d: global RTT %.0f ns, dsmem RTT %s%.0f ns; loaders %.2f TB/s over %.2f ms\n",
                   k.grid, k.c, k.coop, load, (double)h[0] / trips, k.c > 1 ? "" : "(none) ", k.c > 1 ? (double)h[1] / trips : 0.0,
                   load ? (double)h[2] / (ms * 1e-3) / 1e12 : 0.0, ms);
        }
    return 0;
}
