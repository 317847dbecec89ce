/* The concurrency storm: THREADS threads issue random sequences of every exported call (start, stop, step
 * with random tokens, unbalanced push/pop, marks, intern of random bytes, output_dir, strerror, flush,
 * shutdown) through a dlopen'ed libnpuprof.so.
 *
 * Usage: storm LIB THREADS SEQUENCES SEED
 * Prints KEY=VALUE lines: calls issued, marks issued, "certain" marks (made while a profile was running
 * before and after the call and no start/stop/shutdown ran meanwhile: each must be in the output or counted
 * as dropped), and FAIL lines for any unexpected return code. Exits 0 unless something failed.
 * A mark whose "before" half of that condition holds is a candidate and is named "storm-candidate" (the
 * others "storm-mark"), so the test can compare the certain marks with the candidates found in the traces
 * instead of with every mark found (CANDIDATES >= CERTAIN; a candidate that was not certain may be in the
 * output or not). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "npuprof_api.h"

static struct api P;

static atomic_ulong entered, exited; /* start/stop/shutdown calls begun and finished */
static atomic_ulong calls, marks, candidates, certain, failures;
static int sequences_per_thread;
static unsigned seed0;
static uint32_t MARK, CANDIDATE;

static void fail(const char *what, int rc) {
    atomic_fetch_add(&failures, 1);
    printf("FAIL %s returned %d (%s)\n", what, rc, P.strerror(rc));
}

static uint64_t next(uint64_t *s) { /* splitmix64 */
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static int control(int (*f)(void)) {
    atomic_fetch_add(&entered, 1);
    int rc = f();
    atomic_fetch_add(&exited, 1);
    return rc;
}

static void *worker(void *arg) {
    uint64_t s = seed0 * 1000003ull + (uintptr_t)arg;
    uint32_t ids[8] = {0};
    char name[80];
    for (int i = 0; i < 8; i++) {
        snprintf(name, sizeof name, "storm-range-%d", i);
        ids[i] = P.intern(name);
    }
    for (int q = 0; q < sequences_per_thread; q++) {
        int len = 1 + (int)(next(&s) % 8);
        for (int k = 0; k < len; k++) {
            uint64_t r = next(&s);
            int op = (int)(r % 1000), rc;
            atomic_fetch_add(&calls, 1);
            if (op < 4) { /* rare: a profile begins */
                rc = control(P.start);
                if (rc != NPUPROF_OK && rc != NPUPROF_ERR_ALREADY_RUNNING) fail("npuprof_start", rc);
            } else if (op < 8) {
                rc = control(P.stop);
                if (rc != NPUPROF_OK && rc != NPUPROF_ERR_NOT_RUNNING) fail("npuprof_stop", rc);
            } else if (op < 9) {
                rc = control(P.shutdown);
                if (rc != NPUPROF_OK) fail("npuprof_shutdown", rc);
            } else if (op < 11) {
                rc = P.flush();
                if (rc != NPUPROF_OK) fail("npuprof_flush", rc);
            } else if (op < 100) {
                rc = P.step((r >> 16) % 100000);
                if (rc != NPUPROF_OK) fail("npuprof_step", rc);
            } else if (op < 400) {
                P.range_push(ids[(r >> 16) % 8]);
            } else if (op < 700) {
                P.range_pop(); /* often unbalanced */
            } else if (op < 900) {
                unsigned long e1 = atomic_load(&entered), x1 = atomic_load(&exited);
                int run1 = P.is_running();
                int candidate = run1 == 1 && e1 == x1;
                P.mark(candidate ? CANDIDATE : MARK);
                int run2 = P.is_running();
                unsigned long e2 = atomic_load(&entered), x2 = atomic_load(&exited);
                atomic_fetch_add(&marks, 1);
                if (candidate) atomic_fetch_add(&candidates, 1);
                if (candidate && run2 == 1 && e2 == e1 && x2 == x1) atomic_fetch_add(&certain, 1);
            } else if (op < 960) {
                /* intern random bytes: any byte but NUL, including invalid UTF-8, quotes, control chars */
                int n = 1 + (int)((r >> 16) % 60);
                for (int j = 0; j < n; j++) name[j] = (char)(1 + next(&s) % 255);
                name[n] = 0;
                uint32_t id = P.intern(name);
                if (id == 0) fail("npuprof_intern (non-empty name)", 0);
                if ((r >> 40) % 2) P.mark(id);
            } else if (op < 980) {
                char buf[64];
                size_t cap = (r >> 16) % 65;
                size_t n = P.output_dir((r >> 24) % 4 ? buf : NULL, (r >> 24) % 4 ? cap : 0);
                (void)n;
            } else {
                const char *m = P.strerror((int)((r >> 16) % 40) - 20);
                if (!m || !*m) fail("npuprof_strerror", 0);
                if (P.is_running() < 0) fail("npuprof_is_running", -1);
            }
        }
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: storm LIB THREADS SEQUENCES SEED\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    api_dlopen(&P, argv[1]);
    int threads = atoi(argv[2]);
    int total = atoi(argv[3]);
    seed0 = (unsigned)strtoul(argv[4], NULL, 10);
    sequences_per_thread = (total + threads - 1) / threads;
    MARK = P.intern("storm-mark");
    CANDIDATE = P.intern("storm-candidate");
    pthread_t t[64];
    if (threads > 64) threads = 64;
    for (int i = 0; i < threads; i++) pthread_create(&t[i], NULL, worker, (void *)(uintptr_t)i);
    for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
    int rc = P.stop();
    if (rc != NPUPROF_OK && rc != NPUPROF_ERR_NOT_RUNNING) fail("final npuprof_stop", rc);
    rc = P.flush();
    if (rc != NPUPROF_OK) fail("final npuprof_flush", rc);
    rc = P.shutdown();
    if (rc != NPUPROF_OK) fail("final npuprof_shutdown", rc);
    printf("SEQUENCES=%d\nCALLS=%lu\nMARKS=%lu\nCANDIDATES=%lu\nCERTAIN=%lu\nFAILURES=%lu\n",
           sequences_per_thread * threads, atomic_load(&calls), atomic_load(&marks), atomic_load(&candidates),
           atomic_load(&certain), atomic_load(&failures));
    return atomic_load(&failures) ? 1 : 0;
}
