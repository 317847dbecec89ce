/* A C client for the spool tests (tests/spool.rs): loads libnpuprof.so with dlopen and runs one scenario.
 * Usage: spool_client LIB SCENARIO [ARGS...]; prints KEY=VALUE lines, exits 0, or prints FAIL and exits 1.
 *
 *   flood_kill9 THREADS ITERS : floods the rings (a tiny NPUPROF_BUFFER_KB drops records), waits for the drain
 *                               to write its periodic counters, then kills itself with SIGKILL
 *   live GOFILE               : starts a profile, records, prints DIR, waits until GOFILE exists, records
 *                               more, stops and flushes (FLUSH=0 on success)
 *   many_names N              : interns N distinct names, then records a small profile that uses two of them
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "npuprof_api.h"

static struct api P;
#include "check.h"


static uint32_t ID_A, ID_B;

static void *flood(void *p) {
    int iters = *(int *)p;
    for (int i = 0; i < iters; i++) {
        P.range_push(ID_A);
        P.mark(ID_B);
        P.range_pop();
    }
    return NULL;
}

static void scenario_flood_kill9(int threads, int iters) {
    ID_A = P.intern("flood_range");
    ID_B = P.intern("flood_mark");
    EXPECT(P.start(), NPUPROF_OK);
    print_dir();
    pthread_t th[64];
    for (int t = 0; t < threads && t < 64; t++) pthread_create(&th[t], NULL, flood, &iters);
    for (int t = 0; t < threads && t < 64; t++) pthread_join(th[t], NULL);
    /* A flush returns once what was recorded before it is spooled with a COUNTERS frame (no sleep). */
    EXPECT(P.flush(), NPUPROF_OK);
    printf("FAILURES=%d\n", failures);
    fflush(stdout);
    kill(getpid(), SIGKILL);
}

static void scenario_live(const char *gofile) {
    ID_A = P.intern("live_range");
    EXPECT(P.start(), NPUPROF_OK);
    for (int i = 0; i < 3; i++) {
        EXPECT(P.step(8), NPUPROF_OK);
        P.range_push(ID_A);
        P.range_pop();
    }
    print_dir();
    printf("PID=%d\n", (int)getpid());
    fflush(stdout);
    struct stat st;
    for (int i = 0; i < 6000 && stat(gofile, &st) != 0; i++) usleep(10 * 1000);
    for (int i = 0; i < 3; i++) {
        EXPECT(P.step(8), NPUPROF_OK);
        P.range_push(ID_A);
        P.range_pop();
    }
    EXPECT(P.stop(), NPUPROF_OK);
    int f = P.flush();
    printf("FLUSH=%d\n", f);
}

static void scenario_many_names(int n) {
    char name[64];
    for (int i = 0; i < n; i++) {
        snprintf(name, sizeof name, "interned_before_the_profile_%08d", i);
        P.intern(name);
    }
    ID_A = P.intern("used_range");
    ID_B = P.intern("used_mark");
    EXPECT(P.start(), NPUPROF_OK);
    for (int i = 0; i < 5; i++) {
        EXPECT(P.step(8), NPUPROF_OK);
        P.range_push(ID_A);
        P.mark(ID_B);
        P.range_pop();
    }
    EXPECT(P.stop(), NPUPROF_OK);
    EXPECT(P.flush(), NPUPROF_OK);
    print_dir();
}

int main(int argc, char **argv) {
    if (argc < 3) {
        printf("FAIL usage: spool_client LIB SCENARIO [ARGS...]\n");
        return 2;
    }
    api_dlopen(&P, argv[1]);
    const char *s = argv[2];
    if (!strcmp(s, "flood_kill9") && argc > 4) scenario_flood_kill9(atoi(argv[3]), atoi(argv[4]));
    else if (!strcmp(s, "live") && argc > 3) scenario_live(argv[3]);
    else if (!strcmp(s, "many_names") && argc > 3) scenario_many_names(atoi(argv[3]));
    else {
        printf("FAIL unknown scenario %s\n", s);
        return 2;
    }
    printf("FAILURES=%d\n", failures);
    return failures ? 1 : 0;
}
