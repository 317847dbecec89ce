/* A C client for the process-lifecycle tests (tests/lifecycle.rs): exit right after stop, a signal handler
 * re-entering the library, ring memory at shutdown, and the accounting of a trace cut at its disk budget.
 * Loads the library with dlopen (RTLD_LOCAL, as a runtime's plugin loader would).
 * Usage: lifecycle LIB SCENARIO [ARGS...]; prints KEY=VALUE lines; prints FAIL and exits 1 on a failed check.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "npuprof_api.h"

static struct api P;
#include "check.h"


/* stop_exit N: N ranges with a mark each, two steps, stop, and exit() at once: the exit hook must wait for
 * the export that is still queued or running. */
static void scenario_stop_exit(long n) {
    uint32_t work = P.intern("work"), m = P.intern("tick");
    EXPECT(P.start(), NPUPROF_OK);
    for (int s = 0; s < 2; s++) {
        EXPECT(P.step(8), NPUPROF_OK);
        for (long i = 0; i < n; i++) {
            P.range_push(work);
            P.mark(m);
            P.range_pop();
        }
    }
    EXPECT(P.stop(), NPUPROF_OK);
    print_dir();
    printf("FAILURES=%d\n", failures);
    fflush(stdout);
    exit(failures ? 1 : 0);
}

/* sig_reenter: a SIGUSR1 handler calls npuprof_shutdown. The library (built with fault injection) raises
 * SIGUSR1 on this thread while npuprof_start and then npuprof_stop hold the control lock: the re-entered
 * call must return NPUPROF_ERR_BUSY at once instead of deadlocking, and the interrupted call completes. */
static volatile sig_atomic_t handler_calls, handler_rc = -1;
static void on_usr1(int sig) {
    (void)sig;
    handler_rc = P.shutdown();
    handler_calls++;
}
static void scenario_sig_reenter(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
    uint32_t work = P.intern("work");
    EXPECT(P.start(), NPUPROF_OK);
    printf("START_HANDLER_CALLS=%d\n", (int)handler_calls);
    printf("START_HANDLER_RC=%d\n", (int)handler_rc);
    EXPECT(handler_rc, NPUPROF_ERR_BUSY);
    EXPECT(P.is_running(), 1);
    EXPECT(P.step(4), NPUPROF_OK);
    P.range_push(work);
    P.range_pop();
    handler_rc = -1;
    EXPECT(P.stop(), NPUPROF_OK);
    printf("STOP_HANDLER_CALLS=%d\n", (int)handler_calls);
    printf("STOP_HANDLER_RC=%d\n", (int)handler_rc);
    EXPECT(handler_rc, NPUPROF_ERR_BUSY);
    EXPECT(P.flush(), NPUPROF_OK);
    print_dir();
    /* Outside the handler, shutdown works as documented. */
    EXPECT(P.shutdown(), NPUPROF_OK);
}

/* ---- ring memory --------------------------------------------------------------------------------------- */

static long rss_kb(void) {
    long size = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return -1;
    if (fscanf(f, "%ld %ld", &size, &resident) != 2) resident = -1;
    fclose(f);
    return resident < 0 ? -1 : resident * (sysconf(_SC_PAGESIZE) / 1024);
}

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int phase;   /* the main thread advances it; the workers record once per phase */
static int arrived; /* workers done with the current phase */
static uint32_t ID_WORK;

static void wait_phase(int p) {
    pthread_mutex_lock(&mu);
    while (phase < p) pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
}
static void arrive(void) {
    pthread_mutex_lock(&mu);
    arrived++;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
}
static void set_phase(int p, int workers) {
    pthread_mutex_lock(&mu);
    arrived = 0;
    phase = p;
    pthread_cond_broadcast(&cv);
    while (arrived < workers) pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
}
/* Records in phase 1 (first records: the rings are allocated), waits alive through the shutdown, records
 * again in phase 2 (a new profile after shutdown), then exits in phase 3. */
static void *ring_worker(void *arg) {
    (void)arg;
    wait_phase(1);
    P.range_push(ID_WORK);
    P.range_pop();
    arrive();
    wait_phase(2);
    P.range_push(ID_WORK);
    P.range_pop();
    arrive();
    wait_phase(3);
    return NULL;
}

/* rings THREADS: THREADS live threads get big rings (NPUPROF_BUFFER_KB); after stop + shutdown their
 * memory is returned (resident set before/after printed), and the same threads record into a new profile. */
static void scenario_rings(int threads) {
    pthread_t th[16];
    if (threads > 16) threads = 16;
    ID_WORK = P.intern("worker_task");
    for (int t = 0; t < threads; t++) pthread_create(&th[t], NULL, ring_worker, NULL);
    EXPECT(P.start(), NPUPROF_OK);
    set_phase(1, threads);
    EXPECT(P.stop(), NPUPROF_OK);
    EXPECT(P.flush(), NPUPROF_OK);
    print_dir();
    printf("RSS_BEFORE_SHUTDOWN_KB=%ld\n", rss_kb());
    EXPECT(P.shutdown(), NPUPROF_OK);
    printf("RSS_AFTER_SHUTDOWN_KB=%ld\n", rss_kb());
    EXPECT(P.start(), NPUPROF_OK);
    set_phase(2, threads);
    EXPECT(P.stop(), NPUPROF_OK);
    EXPECT(P.flush(), NPUPROF_OK);
    print_dir();
    set_phase(3, 0);
    for (int t = 0; t < threads; t++) pthread_join(th[t], NULL);
}

/* cut N STEPS: STEPS steps of N iterations (range push, mark, pop) on the main thread; prints the number of
 * records issued, counted here independently of the library. */
static void scenario_cut(long n, int steps) {
    uint32_t work = P.intern("worker_task"), m = P.intern("tick");
    long issued = 0;
    EXPECT(P.start(), NPUPROF_OK);
    for (int s = 0; s < steps; s++) {
        EXPECT(P.step(8), NPUPROF_OK);
        issued++;
        for (long i = 0; i < n; i++) {
            P.range_push(work);
            P.mark(m);
            P.range_pop();
            issued += 3;
        }
        usleep(20 * 1000); /* let the drain keep up (untimed: only the ring size matters) */
    }
    EXPECT(P.stop(), NPUPROF_OK);
    EXPECT(P.flush(), NPUPROF_OK);
    printf("ISSUED=%ld\n", issued);
    print_dir();
}

/* start_stop: one empty profile (no record, so no ring is allocated). */
static void scenario_start_stop(void) {
    EXPECT(P.start(), NPUPROF_OK);
    EXPECT(P.stop(), NPUPROF_OK);
    EXPECT(P.flush(), NPUPROF_OK);
    print_dir();
}

/* profiles_exit N: N start/stop pairs (each registers the exit hook again), then exit() at once. */
static void scenario_profiles_exit(int n) {
    for (int i = 0; i < n; i++) {
        EXPECT(P.start(), NPUPROF_OK);
        EXPECT(P.step(8), NPUPROF_OK);
        EXPECT(P.stop(), NPUPROF_OK);
    }
    printf("FAILURES=%d\n", failures);
    fflush(stdout);
    exit(failures ? 1 : 0);
}

/* flushed_exit: one profile, stop, flush (whatever it answers), then exit(): every stop has been handled. */
static void scenario_flushed_exit(void) {
    EXPECT(P.start(), NPUPROF_OK);
    EXPECT(P.step(8), NPUPROF_OK);
    EXPECT(P.stop(), NPUPROF_OK);
    printf("FLUSH=%d\n", P.flush());
    printf("FAILURES=%d\n", failures);
    fflush(stdout);
    exit(failures ? 1 : 0);
}

/* flush_timeout RELEASE: one profile whose export the library (fault injection `hold@export.run=RELEASE`)
 * holds until the file RELEASE exists. npuprof_flush and npuprof_shutdown must return while it is held
 * (bounded by NPUPROF_FLUSH_TIMEOUT_S); then the release is created and flush is retried until the export
 * has ended: nothing is lost. Prints FLUSH_HELD, SHUTDOWN_HELD, WRITTEN_WHILE_HELD, RETRIES and
 * FLUSH_AFTER. */
static void scenario_flush_timeout(const char *release) {
    uint32_t work = P.intern("work");
    EXPECT(P.start(), NPUPROF_OK);
    for (int s = 0; s < 3; s++) {
        EXPECT(P.step(8), NPUPROF_OK);
        for (int i = 0; i < 100; i++) {
            P.range_push(work);
            P.range_pop();
        }
    }
    EXPECT(P.stop(), NPUPROF_OK);
    print_dir();
    printf("FLUSH_HELD=%d\n", P.flush());
    printf("SHUTDOWN_HELD=%d\n", P.shutdown());
    /* The export has not run yet: both calls returned while it was held, not after the hold gave up. */
    char dir[4096], trace[4200];
    size_t n = P.output_dir(dir, sizeof dir);
    snprintf(trace, sizeof trace, "%.*s/ASCEND_PROFILER_OUTPUT/trace_view.json", (int)n, dir);
    printf("WRITTEN_WHILE_HELD=%d\n", access(trace, F_OK) == 0);
    fflush(stdout);
    FILE *f = fopen(release, "w");
    CHECK(f != NULL);
    if (f) fclose(f);
    /* Each retry is bounded by the timeout too; the export may take longer than one under load. */
    int rc = NPUPROF_ERR_IO, retries = 0;
    while (rc == NPUPROF_ERR_IO && retries < 1000) {
        rc = P.flush();
        if (rc == NPUPROF_ERR_IO) retries++;
    }
    printf("RETRIES=%d\n", retries);
    printf("FLUSH_AFTER=%d\n", rc);
}

/* shutdown_exit: one profile, npuprof_shutdown, then exit(): nothing is left to finish. */
static void scenario_shutdown_exit(void) {
    EXPECT(P.start(), NPUPROF_OK);
    EXPECT(P.stop(), NPUPROF_OK);
    EXPECT(P.shutdown(), NPUPROF_OK);
    printf("FAILURES=%d\n", failures);
    fflush(stdout);
    exit(failures ? 1 : 0);
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: lifecycle LIB SCENARIO [ARGS]\n");
        return 2;
    }
    api_dlopen(&P, argv[1]);
    const char *s = argv[2];
    if (!strcmp(s, "stop_exit")) scenario_stop_exit(argc > 3 ? atol(argv[3]) : 1000);
    else if (!strcmp(s, "sig_reenter")) scenario_sig_reenter();
    else if (!strcmp(s, "rings")) scenario_rings(argc > 3 ? atoi(argv[3]) : 4);
    else if (!strcmp(s, "cut")) scenario_cut(atol(argv[3]), atoi(argv[4]));
    else if (!strcmp(s, "start_stop")) scenario_start_stop();
    else if (!strcmp(s, "profiles_exit")) scenario_profiles_exit(atoi(argv[3]));
    else if (!strcmp(s, "shutdown_exit")) scenario_shutdown_exit();
    else if (!strcmp(s, "flushed_exit")) scenario_flushed_exit();
    else if (!strcmp(s, "flush_timeout")) scenario_flush_timeout(argv[3]);
    else {
        printf("FAIL unknown scenario %s\n", s);
        return 2;
    }
    printf("FAILURES=%d\n", failures);
    return failures ? 1 : 0;
}
