/* Shared timing harness for the C reference parsers: read one workload file, run the parse function in
 * auto-calibrated loops (at least min_time seconds each), print per-repeat ns/call as JSON. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static volatile unsigned long sink; /* defeats dead-code elimination of the field reads */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); exit(2); }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc(n + 1);
    if (fread(buf, 1, n, f) != (size_t)n) { perror("fread"); exit(2); }
    buf[n] = 0;
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static unsigned long slen(const char *s) { return s ? strlen(s) : 0; }

/* parse_once returns 0 on success; full != 0 reads the same fields as the Python adapters. */
static int parse_once(const char *buf, size_t len, int full);
static void lib_init(void);
static const char *LIB_NAME;

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: %s FILE minimal|full [repeats] [min_time]\n", argv[0]); return 2; }
    size_t len;
    char *buf = read_file(argv[1], &len);
    int full = strcmp(argv[2], "full") == 0;
    int repeats = argc > 3 ? atoi(argv[3]) : 7;
    double min_time = argc > 4 ? atof(argv[4]) : 0.2;
    lib_init();
    if (parse_once(buf, len, 1) != 0) {
        printf("{\"lib\": \"%s\", \"ok\": false, \"error\": \"parse failed\"}\n", LIB_NAME);
        return 1;
    }
    long loops = 1;
    for (;;) { /* calibrate like timeit.autorange: 1, 2, 5, 10, 20, 50, ... */
        double t0 = now_s();
        for (long i = 0; i < loops; i++) parse_once(buf, len, full);
        if (now_s() - t0 >= min_time) break;
        long nxt = loops;
        for (long m = 1;; m *= 10) {
            if (m > loops) { nxt = m; break; }
            if (2 * m > loops) { nxt = 2 * m; break; }
            if (5 * m > loops) { nxt = 5 * m; break; }
        }
        loops = nxt;
    }
    printf("{\"lib\": \"%s\", \"ok\": true, \"loops\": %ld, \"times_ns\": [", LIB_NAME, loops);
    for (int r = 0; r < repeats; r++) {
        double t0 = now_s();
        for (long i = 0; i < loops; i++) parse_once(buf, len, full);
        double dt = now_s() - t0;
        printf("%s%.2f", r ? ", " : "", dt * 1e9 / loops);
    }
    printf("], \"sink\": %lu}\n", sink);
    return 0;
}
