/* A serving-like loop on several threads calling libnpuprof.so through dlopen, as an inference runtime
 * calls it: thread 0 calls npuprof_step once per step; every thread runs steps of RANGES ranges, each range
 * a fixed amount of CPU work (ITERS iterations of an LCG, the same in every mode).
 *
 *   serving LIB calibrate                      iterations of the work loop per millisecond (one thread)
 *   serving LIB MODE THREADS RANGES ITERS SECONDS
 *   serving LIB ab THREADS RANGES ITERS SECONDS ROUNDS
 *
 * MODE: off (the library is loaded and called; the harness leaves VLLM_TORCH_PROFILER_DIR unset, so every
 * call returns at once), idle (configured, not started), rec (npuprof_start before the loop, npuprof_stop
 * after it, neither timed). After a 300 ms warm-up, the ranges completed in SECONDS are counted; also the
 * process's context switches (getrusage) and the npuprof-drain thread's wake-ups (its voluntary context
 * switches, from /proc/self/task) in that window. Prints one line: RESULT {json}.
 *
 * MODE ab (configured): ROUNDS pairs of SECONDS windows in this one process, idle and recording in turns
 * (the order alternating by round), npuprof_start before each recording window and npuprof_stop +
 * npuprof_flush after it, untimed. Each pair's ratio compares the same threads, placed the same way, a
 * second apart: the process-to-process variation of separate runs (a few percent on this VM) cancels out. */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static int (*p_start)(void);
static int (*p_stop)(void);
static int (*p_flush)(void);
static int (*p_step)(uint64_t);
static uint32_t (*p_intern)(const char *);
static void (*p_push)(uint32_t);
static void (*p_pop)(void);

#define MAX_THREADS 64
#define MAX_RANGES 64
static uint32_t ids[MAX_RANGES];
static int n_ranges;
static uint64_t iters;
static atomic_int go;
static atomic_int stop_flag;
static struct {
    _Alignas(64) atomic_uint_fast64_t done;
} counts[MAX_THREADS];

static uint64_t work(uint64_t n, uint64_t x) {
    for (uint64_t i = 0; i < n; i++) x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    return x;
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static volatile uint64_t sink[MAX_THREADS * 8];

static void *loop(void *arg) {
    int t = (int)(intptr_t)arg;
    uint64_t x = (uint64_t)t + 1, step = 0;
    while (!atomic_load_explicit(&go, memory_order_acquire)) {
    }
    while (!atomic_load_explicit(&stop_flag, memory_order_relaxed)) {
        if (t == 0) p_step(++step % 7 == 0 ? 512 : 8);
        for (int r = 0; r < n_ranges; r++) {
            p_push(ids[r]);
            x = work(iters, x);
            p_pop();
        }
        atomic_fetch_add_explicit(&counts[t].done, (uint64_t)n_ranges, memory_order_relaxed);
    }
    sink[t * 8] = x;
    return NULL;
}

/* The npuprof-drain thread: its voluntary context switches (each a wake-up; crossbeam may spin or yield
 * briefly before it sleeps, so they are a lower bound), its involuntary ones, and its CPU time in ns (from
 * schedstat). All -1 when there is no such thread. */
struct drain { long wake, preempt; long long cpu_ns; };

static struct drain drain_now(void) {
    struct drain r = {-1, -1, -1};
    DIR *d = opendir("/proc/self/task");
    if (!d) return r;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char p[300], comm[64] = {0};
        snprintf(p, sizeof p, "/proc/self/task/%s/comm", e->d_name);
        FILE *f = fopen(p, "r");
        if (!f) continue;
        if (!fgets(comm, sizeof comm, f)) comm[0] = 0;
        fclose(f);
        if (strncmp(comm, "npuprof-drain", 13)) continue;
        snprintf(p, sizeof p, "/proc/self/task/%s/status", e->d_name);
        f = fopen(p, "r");
        if (f) {
            char line[256];
            while (fgets(line, sizeof line, f)) {
                sscanf(line, "voluntary_ctxt_switches: %ld", &r.wake);
                sscanf(line, "nonvoluntary_ctxt_switches: %ld", &r.preempt);
            }
            fclose(f);
        }
        snprintf(p, sizeof p, "/proc/self/task/%s/schedstat", e->d_name);
        f = fopen(p, "r");
        if (f) {
            if (fscanf(f, "%lld", &r.cpu_ns) != 1) r.cpu_ns = -1;
            fclose(f);
        }
    }
    closedir(d);
    return r;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static uint64_t total(int threads);

/* One window of `seconds`: ranges per second, and the drain's wake-ups and CPU over it (into *d). */
static double window(int threads, double seconds, double *wake, double *cpu_ms) {
    struct drain d0 = drain_now();
    uint64_t c0 = total(threads);
    double t0 = now_s();
    struct timespec win = {(time_t)seconds, (long)((seconds - (time_t)seconds) * 1e9)};
    nanosleep(&win, NULL);
    uint64_t c1 = total(threads);
    double t1 = now_s();
    struct drain d1 = drain_now();
    double dt = t1 - t0;
    *wake = d0.wake >= 0 && d1.wake >= 0 ? (d1.wake - d0.wake) / dt : -1;
    *cpu_ms = d0.cpu_ns >= 0 && d1.cpu_ns >= 0 ? (d1.cpu_ns - d0.cpu_ns) / dt / 1e6 : -1;
    return (c1 - c0) / dt;
}

static int run_ab(int threads, double seconds, int rounds) {
    double ratio[64], wake[64], cpu[64], idle_rate[64];
    if (rounds < 1 || rounds > 64) return 2;
    struct timespec settle = {0, 50 * 1000 * 1000};
    for (int r = 0; r < rounds; r++) {
        double w, c, idle = 0, rec = 0;
        for (int k = 0; k < 2; k++) {
            int recording = (k == 0) == (r % 2 == 1);
            if (recording) {
                if (p_start() != 0) {
                    fprintf(stderr, "npuprof_start failed\n");
                    return 1;
                }
                nanosleep(&settle, NULL);
                rec = window(threads, seconds, &wake[r], &cpu[r]);
                p_stop();
                p_flush();
                nanosleep(&settle, NULL);
            } else {
                idle = window(threads, seconds, &w, &c);
            }
        }
        ratio[r] = rec / idle;
        idle_rate[r] = idle;
    }
    printf("RESULT {\"mode\": \"ab\", \"threads\": %d, \"rounds\": %d, \"ratios\": [", threads, rounds);
    for (int r = 0; r < rounds; r++) printf("%s%.5f", r ? ", " : "", ratio[r]);
    qsort(ratio, rounds, sizeof ratio[0], cmp_double);
    qsort(wake, rounds, sizeof wake[0], cmp_double);
    qsort(cpu, rounds, sizeof cpu[0], cmp_double);
    qsort(idle_rate, rounds, sizeof idle_rate[0], cmp_double);
    printf("], \"rec_over_idle\": %.5f, \"idle_ranges_per_s\": %.1f, \"drain_wakeups_per_s\": %.1f, "
           "\"drain_cpu_ms_per_s\": %.3f}\n",
           ratio[rounds / 2], idle_rate[rounds / 2], wake[rounds / 2], cpu[rounds / 2]);
    return 0;
}

static uint64_t total(int threads) {
    uint64_t s = 0;
    for (int t = 0; t < threads; t++) s += atomic_load_explicit(&counts[t].done, memory_order_relaxed);
    return s;
}

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        fprintf(stderr, "dlopen: %s\n", dlerror());
        return 1;
    }
    *(void **)&p_start = dlsym(h, "npuprof_start");
    *(void **)&p_stop = dlsym(h, "npuprof_stop");
    *(void **)&p_flush = dlsym(h, "npuprof_flush");
    *(void **)&p_step = dlsym(h, "npuprof_step");
    *(void **)&p_intern = dlsym(h, "npuprof_intern");
    *(void **)&p_push = dlsym(h, "npuprof_range_push");
    *(void **)&p_pop = dlsym(h, "npuprof_range_pop");
    if (!strcmp(argv[2], "calibrate")) {
        uint64_t n = 50 * 1000 * 1000;
        double t0 = now_s();
        sink[0] = work(n, 1);
        printf("RESULT {\"iters_per_ms\": %.1f}\n", n / ((now_s() - t0) * 1e3));
        return 0;
    }
    if (argc < 7) return 2;
    const char *mode = argv[2];
    int ab = !strcmp(mode, "ab");
    if (ab && argc < 8) return 2;
    int threads = atoi(argv[3]);
    n_ranges = atoi(argv[4]);
    iters = strtoull(argv[5], NULL, 10);
    double seconds = atof(argv[6]);
    if (threads < 1 || threads > MAX_THREADS || n_ranges < 1 || n_ranges > MAX_RANGES) return 2;
    for (int r = 0; r < n_ranges; r++) {
        char name[32];
        snprintf(name, sizeof name, "layer_%d", r);
        ids[r] = p_intern(name);
    }
    int rec = !strcmp(mode, "rec");
    if (rec && p_start() != 0) {
        fprintf(stderr, "npuprof_start failed\n");
        return 1;
    }
    pthread_t th[MAX_THREADS];
    for (int t = 0; t < threads; t++) pthread_create(&th[t], NULL, loop, (void *)(intptr_t)t);
    atomic_store_explicit(&go, 1, memory_order_release);
    struct timespec warm = {0, 300 * 1000 * 1000};
    nanosleep(&warm, NULL);
    if (ab) {
        int rc = run_ab(threads, seconds, atoi(argv[7]));
        atomic_store_explicit(&stop_flag, 1, memory_order_relaxed);
        for (int t = 0; t < threads; t++) pthread_join(th[t], NULL);
        return rc;
    }
    struct rusage r0, r1;
    getrusage(RUSAGE_SELF, &r0);
    double t0 = now_s(), wake, cpu_ms;
    double rate = window(threads, seconds, &wake, &cpu_ms);
    double dt = now_s() - t0;
    getrusage(RUSAGE_SELF, &r1);
    atomic_store_explicit(&stop_flag, 1, memory_order_relaxed);
    for (int t = 0; t < threads; t++) pthread_join(th[t], NULL);
    if (rec) {
        p_stop();
        p_flush();
    }
    printf("RESULT {\"mode\": \"%s\", \"threads\": %d, \"ranges_per_s\": %.1f, \"seconds\": %.3f, "
           "\"involuntary_switches_per_s\": %.1f, \"voluntary_switches_per_s\": %.1f, "
           "\"drain_wakeups_per_s\": %.1f, \"drain_cpu_ms_per_s\": %.3f}\n",
           mode, threads, rate, dt, (r1.ru_nivcsw - r0.ru_nivcsw) / dt, (r1.ru_nvcsw - r0.ru_nvcsw) / dt, wake,
           cpu_ms);
    return 0;
}
