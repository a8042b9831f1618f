/* bench_tokenizer.c — encode throughput of the tokenizer, one thread, in MB/s.
 * usage: bench_tokenizer MODEL_DIR [TEXT_FILE] [TARGET_MB]
 * Without TEXT_FILE the text is every file of /usr/share/common-licenses concatenated and repeated to TARGET_MB
 * (default 20). Prints MB/s of thread CPU time for one encode call over the whole text and for ~1 KiB
 * documents (add_special on). */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/alloc.h"
#include "tokenizer/tokenizer.h"

/* CPU time of this thread: the figure stays honest on a busy machine. */
static double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Appends a file to *buf; returns 0 on success. */
static int bench_append_file(const char *path, char **buf, size_t *len, size_t *cap)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        while (*len + n + 1 > *cap) {
            *cap = *cap ? *cap * 2 : 1 << 20;
            char *p = realloc(*buf, *cap);
            if (!p) {
                fclose(f);
                return -1;
            }
            *buf = p;
        }
        memcpy(*buf + *len, chunk, n);
        *len += n;
    }
    fclose(f);
    return 0;
}

static int bench_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int bench_licenses(char **buf, size_t *len, size_t *cap)
{
    const char *dir = "/usr/share/common-licenses";
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    char *names[256];
    size_t nn = 0;
    struct dirent *e;
    while ((e = readdir(d)) && nn < 256)
        if (e->d_name[0] != '.')
            names[nn++] = strdup(e->d_name);
    closedir(d);
    qsort(names, nn, sizeof *names, bench_cmp);
    for (size_t i = 0; i < nn; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        bench_append_file(path, buf, len, cap); /* symlinked folders fail to read: skipped */
        free(names[i]);
    }
    return *len ? 0 : -1;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL_DIR [TEXT_FILE] [TARGET_MB]\n", argv[0]);
        return 2;
    }
    double target_mb = argc > 3 ? strtod(argv[3], NULL) : 20.0;
    char *text = NULL;
    size_t len = 0, cap = 0;
    int rc = argc > 2 && strcmp(argv[2], "-") ? bench_append_file(argv[2], &text, &len, &cap)
                                              : bench_licenses(&text, &len, &cap);
    if (rc != 0) {
        fprintf(stderr, "bench_tokenizer: cannot read the text\n");
        return 1;
    }
    size_t base = len;
    while ((double)len < target_mb * 1e6) {
        if (len + base + 1 > cap) {
            cap = (len + base + 1) * 2;
            text = realloc(text, cap);
            if (!text)
                return 1;
        }
        memcpy(text + len, text, base);
        len += base;
    }
    ss_tokenizer *tok;
    ss_err err;
    if (ss_tokenizer_load(argv[1], &tok, &err) != SS_OK) {
        fprintf(stderr, "bench_tokenizer: %s\n", err.msg);
        return 3;
    }
    int32_t *ids;
    size_t n;
    double t0 = bench_now();
    if (ss_tokenizer_encode(tok, text, len, 0, &ids, &n, &err) != SS_OK) {
        fprintf(stderr, "bench_tokenizer: %s\n", err.msg);
        return 1;
    }
    double t1 = bench_now();
    ss_free(ids);
    printf("text: %.1f MB, %zu tokens (%.2f bytes/token)\n", len / 1e6, n, (double)len / (double)n);
    printf("one call:       %.1f MB/s\n", len / 1e6 / (t1 - t0));
    /* ~1 KiB documents cut at line ends */
    size_t docs = 0, total = 0;
    t0 = bench_now();
    for (size_t off = 0; off < len;) {
        size_t end = off + 1024 < len ? off + 1024 : len;
        while (end < len && text[end - 1] != '\n')
            end++;
        if (ss_tokenizer_encode(tok, text + off, end - off, 1, &ids, &n, &err) != SS_OK) {
            fprintf(stderr, "bench_tokenizer: %s\n", err.msg);
            return 1;
        }
        total += n;
        ss_free(ids);
        docs++;
        off = end;
    }
    t1 = bench_now();
    printf("1 KiB docs:     %.1f MB/s (%zu documents, %zu tokens)\n", len / 1e6 / (t1 - t0), docs, total);
    ss_tokenizer_destroy(tok);
    free(text);
    return 0;
}
