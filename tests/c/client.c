/* A C client of libnpuprof.so, the way an inference runtime uses it.
 *
 * Built twice by tests/c_api.rs:
 *   -DNPUPROF_TEST_DLOPEN : dlopen(argv[1]) + dlsym, RTLD_LOCAL
 *   (default)             : npuprof_* resolved weakly, library injected with LD_PRELOAD
 * Usage: client LIB SCENARIO [ARGS...]; prints KEY=VALUE lines and exits 0, or prints FAIL and exits 1.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <dirent.h>
#include <sys/wait.h>

#include "npuprof_api.h"

static struct api P;
#include "check.h"

#ifdef NPUPROF_TEST_DLOPEN
static void load(const char *lib) {
    api_dlopen(&P, lib);
    printf("LINK=dlopen\n");
}
#else
/* Weak references: the program runs (and can say so) when the library is not preloaded. */
#pragma weak npuprof_start
#pragma weak npuprof_stop
#pragma weak npuprof_step
#pragma weak npuprof_is_running
#pragma weak npuprof_strerror
#pragma weak npuprof_output_dir
#pragma weak npuprof_last_error
#pragma weak npuprof_intern
#pragma weak npuprof_range_push
#pragma weak npuprof_range_pop
#pragma weak npuprof_mark
#pragma weak npuprof_flush
#pragma weak npuprof_shutdown
#pragma weak npuprof_version
#pragma weak npuprof_set_group
#pragma weak npuprof_start_with
/* The library must really be the preloaded LIB: a failed LD_PRELOAD (weak references left null) or
 * npuprof_start resolved from another file fails the run, never passes it vacuously. */
static void load(const char *lib) {
    if (!npuprof_start) {
        printf("NOT_PRELOADED=1\nFAIL %s is not preloaded (npuprof_start unresolved)\n", lib);
        exit(1);
    }
    Dl_info info;
    char want[4096], got[4096];
    if (!dladdr((void *)npuprof_start, &info) || !info.dli_fname || !realpath(info.dli_fname, got) ||
        !realpath(lib, want) || strcmp(got, want)) {
        printf("NOT_PRELOADED=1\nFAIL npuprof_start comes from %s, not from the preloaded %s\n",
               info.dli_fname ? info.dli_fname : "?", lib);
        exit(1);
    }
    P.start = npuprof_start; P.stop = npuprof_stop; P.step = npuprof_step;
    P.is_running = npuprof_is_running; P.strerror = npuprof_strerror;
    P.output_dir = npuprof_output_dir; P.last_error = npuprof_last_error; P.intern = npuprof_intern;
    P.range_push = npuprof_range_push; P.range_pop = npuprof_range_pop; P.mark = npuprof_mark;
    P.flush = npuprof_flush; P.shutdown = npuprof_shutdown; P.version = npuprof_version;
    P.set_group = npuprof_set_group; P.start_with = npuprof_start_with;
    printf("LINK=preload\n");
}
#endif


/* One "model forward": nested ranges and a mark, like a runtime's layers. */
static uint32_t ID_FWD, ID_ATTN, ID_MLP, ID_MARK, ID_WORK;
static void forward(int layers) {
    P.range_push(ID_FWD);
    for (int l = 0; l < layers; l++) {
        P.range_push(ID_ATTN);
        P.range_pop();
        P.range_push(ID_MLP);
        P.mark(ID_MARK);
        P.range_pop();
    }
    P.range_pop();
}

static void intern_all(void) {
    ID_FWD = P.intern("model_forward");
    ID_ATTN = P.intern("attention");
    ID_MLP = P.intern("mlp");
    ID_MARK = P.intern("kv_cache_swap");
    ID_WORK = P.intern("worker_task");
    CHECK(ID_FWD && ID_ATTN && ID_MLP && ID_MARK && ID_WORK);
    CHECK(ID_FWD != ID_ATTN);
    CHECK(P.intern("model_forward") == ID_FWD);
}

static void print_thread_names(void) {
    char path[512], name[64];
    DIR *d = opendir("/proc/self/task");
    struct dirent *e;
    printf("THREAD_NAMES=");
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
        FILE *f = fopen(path, "r");
        if (f && fgets(name, sizeof name, f)) {
            name[strcspn(name, "\n")] = 0;
            printf("%s;", name);
        }
        if (f) fclose(f);
    }
    if (d) closedir(d);
    printf("\n");
}

struct worker_arg { int iters; volatile int *stop; };
static void *worker(void *p) {
    struct worker_arg *a = p;
    for (int i = 0; i < a->iters; i++) {
        P.range_push(ID_WORK);
        P.mark(ID_MARK);
        P.range_pop();
    }
    return NULL;
}

/* manual STEPS THREADS [ITERS [RELEASE]]: POST /start_profile, STEPS scheduler steps with forwards, THREADS
 * helper threads of ITERS (default 1000) range+mark iterations each, POST /stop_profile. With RELEASE, the
 * file RELEASE is created once the helpers have ended, before the stop (the end of a fault-injection
 * `hold@` the test put on the drain: the helpers certainly recorded while it held). */
static void scenario_manual(int steps, int threads, int iters, const char *release) {
    intern_all();
    EXPECT(P.is_running(), 0);
    EXPECT(P.start(), NPUPROF_OK);
    EXPECT(P.is_running(), 1);
    print_thread_names();
    pthread_t th[64];
    struct worker_arg wa = {iters, NULL};
    for (int t = 0; t < threads && t < 64; t++) pthread_create(&th[t], NULL, worker, &wa);
    for (int s = 0; s < steps; s++) {
        EXPECT(P.step(100 + s), NPUPROF_OK);
        forward(4);
        usleep(2000);
    }
    for (int t = 0; t < threads && t < 64; t++) pthread_join(th[t], NULL);
    if (release) {
        FILE *f = fopen(release, "w");
        CHECK(f != NULL);
        if (f) fclose(f);
    }
    EXPECT(P.stop(), NPUPROF_OK);
    EXPECT(P.is_running(), 0);
    EXPECT(P.flush(), NPUPROF_OK);
    print_dir();
}

/* old T1 T2 ...: one scheduler step per argument with that many tokens; prints the running state after
 * each step so the test can check exactly when the old logic starts and stops. */
static void scenario_old(int argc, char **argv) {
    intern_all();
    for (int i = 0; i < argc; i++) {
        EXPECT(P.step(strtoull(argv[i], NULL, 10)), NPUPROF_OK);
        printf("RUNNING_AFTER_STEP_%d=%d\n", i + 1, P.is_running());
        forward(2);
        usleep(1000);
    }
    if (P.is_running()) EXPECT(P.stop(), NPUPROF_OK);
    EXPECT(P.flush(), NPUPROF_OK);
    print_dir();
}

static void scenario_disabled(void) {
    EXPECT(P.start(), NPUPROF_ERR_DISABLED);
    EXPECT(P.step(1000), NPUPROF_OK);
    EXPECT(P.is_running(), 0);
    uint32_t id = P.intern("x");
    CHECK(id != 0);
    P.range_push(id);
    P.mark(id);
    P.range_pop();
    P.range_pop();
    EXPECT(P.stop(), NPUPROF_ERR_DISABLED);
    EXPECT(P.flush(), NPUPROF_OK);
    EXPECT(P.shutdown(), NPUPROF_OK);
    char buf[8] = "zzzzzzz";
    CHECK(P.output_dir(buf, sizeof buf) == 0);
    CHECK(buf[0] == 0);
    print_dir();
}

/* With a library built with --features fault-injection and NPUPROF_TEST_FAULTS naming every export (one
 * panic each) and the deep points: the first call of each export panics inside the library and comes back
 * as NPUPROF_ERR_INTERNAL (or the documented neutral value); the next call works; profiles made after the
 * deep panics are complete. */
static void scenario_panic(void) {
    /* Each export once, panicking. */
    EXPECT(P.start(), NPUPROF_ERR_INTERNAL);
    EXPECT(P.start(), NPUPROF_ERR_INTERNAL); /* session.start.locked: inside the control lock */
    EXPECT(P.start(), NPUPROF_OK);           /* the lock was not left poisoned or held */
    CHECK(P.is_running() == 0);              /* npuprof_is_running panicked: 0 */
    CHECK(P.is_running() == 1);
    CHECK(P.intern("x") == 0); /* panicked: 0, "no name" */
    uint32_t a = P.intern("a");
    CHECK(a != 0);
    P.range_push(a); /* panics, nothing recorded */
    P.range_push(a);
    P.range_pop(); /* panics */
    P.range_pop();
    P.mark(a); /* panics */
    P.mark(a);
    EXPECT(P.step(8), NPUPROF_ERR_INTERNAL);
    EXPECT(P.step(8), NPUPROF_OK);
    char buf[4096];
    CHECK(P.output_dir(buf, sizeof buf) == 0); /* panicked: 0 */
    CHECK(P.output_dir(buf, sizeof buf) > 0);
    CHECK(strcmp(P.strerror(NPUPROF_OK), "NPUPROF_ERR_UNKNOWN") == 0); /* panicked: the fallback text */
    CHECK(strcmp(P.strerror(NPUPROF_OK), "NPUPROF_ERR_UNKNOWN") != 0);
    CHECK(strcmp(P.version(), "unknown") == 0);
    CHECK(strcmp(P.version(), "unknown") != 0);
    uint32_t ranks[2] = {0, 1};
    EXPECT(P.set_group("g", "dp", 0, ranks, 2), NPUPROF_ERR_INTERNAL);
    EXPECT(P.set_group("g", "dp", 0, ranks, 2), NPUPROF_OK);
    EXPECT(P.start_with(NULL), NPUPROF_ERR_INTERNAL);
    EXPECT(P.start_with(NULL), NPUPROF_ERR_ALREADY_RUNNING); /* not panicking: the running profile is kept */
    CHECK(P.last_error(buf, sizeof buf) == 0); /* panicked: 0 */
    CHECK(P.last_error(buf, sizeof buf) > 0 && strstr(buf, "npuprof_last_error: internal error (caught): injected fault at npuprof_last_error"));
    EXPECT(P.stop(), NPUPROF_ERR_INTERNAL);
    CHECK(P.is_running() == 1);
    EXPECT(P.stop(), NPUPROF_ERR_INTERNAL); /* session.stop.locked */
    EXPECT(P.stop(), NPUPROF_OK);
    if (P.output_dir(buf, sizeof buf) > 0) printf("DIR1=%s\n", buf);
    EXPECT(P.flush(), NPUPROF_ERR_INTERNAL);
    /* The drain.msg panic hit this profile's start message: the drain abandoned it, and flush says so
     * instead of waiting for it. */
    EXPECT(P.flush(), NPUPROF_ERR_INTERNAL);
    EXPECT(P.shutdown(), NPUPROF_ERR_INTERNAL);
    EXPECT(P.shutdown(), NPUPROF_OK);
    /* The export.run panic: this profile's export fails and flush reports it. */
    EXPECT(P.start(), NPUPROF_OK);
    EXPECT(P.step(4), NPUPROF_OK);
    EXPECT(P.stop(), NPUPROF_OK);
    if (P.output_dir(buf, sizeof buf) > 0) printf("DIR2=%s\n", buf);
    EXPECT(P.flush(), NPUPROF_ERR_INTERNAL);
    /* After every panic: a whole profile, written completely. */
    EXPECT(P.start(), NPUPROF_OK);
    for (int i = 0; i < 3; i++) {
        EXPECT(P.step(16), NPUPROF_OK);
        P.range_push(a);
        P.mark(a);
        P.range_pop();
    }
    EXPECT(P.stop(), NPUPROF_OK);
    EXPECT(P.flush(), NPUPROF_OK);
    print_dir();
}

static void scenario_misuse(void) {
    EXPECT(P.stop(), NPUPROF_ERR_NOT_RUNNING);
    CHECK(P.intern(NULL) == 0);
    CHECK(P.intern("") == 0);
    CHECK(P.output_dir(NULL, 0) == 0);
    for (int s = -5; s < 20; s++) CHECK(P.strerror(s) != NULL && strlen(P.strerror(s)) > 0);
    CHECK(strstr(P.strerror(NPUPROF_ERR_NOT_RUNNING), "NOT_RUNNING") != NULL);
    CHECK(strstr(P.strerror(12345), "UNKNOWN") != NULL);
    CHECK(P.version() != NULL && strchr(P.version(), '.') != NULL);
    EXPECT(P.flush(), NPUPROF_OK); /* nothing pending */
    P.range_pop();                 /* not recording: no-op */

    char err[256];
    CHECK(P.last_error(err, sizeof err) > 0 && strstr(err, "npuprof_stop: no profile is recording"));
    EXPECT(P.start(), NPUPROF_OK);
    EXPECT(P.start(), NPUPROF_ERR_ALREADY_RUNNING);
    /* The message of the last failure, truncated safely, and per thread. */
    size_t elen = P.last_error(err, sizeof err);
    CHECK(elen > 0 && elen == strlen(err) && strstr(err, "npuprof_start: a profile is already recording"));
    char tiny[6];
    memset(tiny, 'Z', sizeof tiny);
    CHECK(P.last_error(tiny, 4) == elen && tiny[3] == 0 && tiny[4] == 'Z');
    CHECK(P.last_error(NULL, 0) == elen);
    uint32_t a = P.intern("a");
    P.range_pop(); /* unbalanced: counted, ignored */
    P.range_push(a);
    P.range_push(0); /* id 0 is allowed: an unnamed range */
    P.range_pop();
    P.range_pop();
    P.range_pop(); /* unbalanced again */
    P.range_push(a); /* left open: closed at stop */
    P.mark(987654); /* an id never interned */
    EXPECT(P.stop(), NPUPROF_OK);
    EXPECT(P.stop(), NPUPROF_ERR_NOT_RUNNING);

    /* output_dir: exact length, truncation without overflow */
    char big[4096], small[8];
    memset(small, 'Z', sizeof small);
    size_t n = P.output_dir(big, sizeof big);
    CHECK(n > 0 && n == strlen(big));
    size_t m = P.output_dir(small, 5);
    CHECK(m == n);
    CHECK(small[4] == 0 && strncmp(small, big, 4) == 0 && small[5] == 'Z');
    CHECK(P.output_dir(NULL, 100) == n);

    EXPECT(P.flush(), NPUPROF_OK);
    print_dir();
    EXPECT(P.shutdown(), NPUPROF_OK);
    EXPECT(P.shutdown(), NPUPROF_OK);
    /* Everything starts again lazily after shutdown. */
    EXPECT(P.start(), NPUPROF_OK);
    P.range_push(a);
    P.range_pop();
    EXPECT(P.stop(), NPUPROF_OK);
    EXPECT(P.flush(), NPUPROF_OK);
    print_dir();
}

/* names: any bytes are accepted and end up escaped in the trace. */
static void scenario_names(void) {
    const char *weird[] = {"quote\"d", "back\\slash", "ctl\x01\t\n", "bad\xff\xfe", "comma,name", "中文"};
    EXPECT(P.start(), NPUPROF_OK);
    for (size_t i = 0; i < sizeof weird / sizeof *weird; i++) {
        uint32_t id = P.intern(weird[i]);
        CHECK(id != 0);
        P.range_push(id);
        P.range_pop();
        P.mark(id);
    }
    EXPECT(P.stop(), NPUPROF_OK);
    EXPECT(P.flush(), NPUPROF_OK);
    print_dir();
}

/* two: two profiles back to back, the second started while the first may still be exporting. */
static void scenario_two(void) {
    intern_all();
    for (int p = 0; p < 2; p++) {
        EXPECT(P.start(), NPUPROF_OK);
        for (int s = 0; s < 3; s++) {
            EXPECT(P.step(10), NPUPROF_OK);
            forward(1);
        }
        EXPECT(P.stop(), NPUPROF_OK);
        print_dir();
    }
    EXPECT(P.flush(), NPUPROF_OK);
}

/* flood THREADS ITERS: more records than NPUPROF_MAX_DISK_MB allows; the profile may end by itself. */
static void scenario_flood(int threads, int iters) {
    intern_all();
    EXPECT(P.start(), NPUPROF_OK);
    pthread_t th[64];
    struct worker_arg wa = {iters, NULL};
    for (int t = 0; t < threads && t < 64; t++) pthread_create(&th[t], NULL, worker, &wa);
    for (int t = 0; t < threads && t < 64; t++) pthread_join(th[t], NULL);
    /* Every record is in a ring now, and they hold far more than the cap: the drain reaches the cap and
     * stops recording by itself. Wait for that, untimed (the 120 s only catch a hang). */
    for (int i = 0; i < 120000 && P.is_running(); i++) usleep(1000);
    int running = P.is_running();
    printf("RUNNING_AT_END=%d\n", running);
    EXPECT(P.stop(), running ? NPUPROF_OK : NPUPROF_ERR_NOT_RUNNING);
    EXPECT(P.flush(), NPUPROF_OK);
    print_dir();
}

#ifdef NPUPROF_TEST_DLOPEN
/* dlclose while recording, then again after a clean stop: no crash, no hang at exit (-z nodelete keeps the
 * code mapped for the background threads). */
static void scenario_dlclose(const char *lib) {
    intern_all();
    EXPECT(P.start(), NPUPROF_OK);
    forward(2);
    void *h = dlopen(lib, RTLD_NOW | RTLD_NOLOAD);
    CHECK(h != NULL);
    dlclose(h); /* our extra reference */
    dlclose(h); /* the one load() took: the library would be unloaded without NODELETE */
    forward(2); /* still mapped */
    EXPECT(P.stop(), NPUPROF_OK);
    EXPECT(P.flush(), NPUPROF_OK);
    print_dir();
    CHECK(dlopen(lib, RTLD_NOW | RTLD_NOLOAD) != NULL);
}

/* dlclose while idle (threads started by an earlier profile, none running now), then use it again. */
static void scenario_dlclose_idle(const char *lib) {
    intern_all();
    EXPECT(P.start(), NPUPROF_OK);
    forward(1);
    EXPECT(P.stop(), NPUPROF_OK);
    EXPECT(P.flush(), NPUPROF_OK);
    void *h = dlopen(lib, RTLD_NOW | RTLD_NOLOAD);
    CHECK(h != NULL);
    dlclose(h);
    dlclose(h);
    EXPECT(P.start(), NPUPROF_OK);
    forward(2);
    EXPECT(P.stop(), NPUPROF_OK);
    EXPECT(P.flush(), NPUPROF_OK);
    print_dir();
}
#endif

/* vanish: the worker directory disappears while recording; the export fails, flush reports
 * NPUPROF_ERR_IO, and the next profile works. */
static void scenario_vanish(void) {
    intern_all();
    EXPECT(P.start(), NPUPROF_OK);
    forward(2);
    char dir[4096], cmd[4200];
    CHECK(P.output_dir(dir, sizeof dir) > 0);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
    forward(2);
    EXPECT(P.stop(), NPUPROF_OK);
    EXPECT(P.flush(), NPUPROF_ERR_IO);
    EXPECT(P.flush(), NPUPROF_OK); /* reported once */
    EXPECT(P.start(), NPUPROF_OK);
    forward(1);
    EXPECT(P.stop(), NPUPROF_OK);
    EXPECT(P.flush(), NPUPROF_OK);
    print_dir();
}

/* The forked child of the fork scenarios: starts clean (not recording, nothing to stop), makes its own
 * profile in its own directory, prints CHILD_DIR= and CHILD_BAD=, and exits. `threaded`: forked from a
 * worker thread (the child also interns and marks a name; the main-thread variant checks an idle flush). */
static void fork_child(int threaded) {
    int bad = 0;
    bad |= P.is_running() != 0;
    bad |= P.stop() != NPUPROF_ERR_NOT_RUNNING;
    if (!threaded) bad |= P.flush() != NPUPROF_OK;
    bad |= P.start() != NPUPROF_OK;
    forward(3);
    if (threaded) P.mark(P.intern("child-name"));
    bad |= P.stop() != NPUPROF_OK;
    bad |= P.flush() != NPUPROF_OK;
    char buf[4096];
    if (P.output_dir(buf, sizeof buf) > 0) printf("CHILD_DIR=%s\n", buf);
    printf("CHILD_BAD=%d\n", bad);
    fflush(stdout);
    _exit(bad ? 3 : 0);
}

/* fork: the recording parent forks; the child starts clean (not recording), makes its own profile in its
 * own directory and flushes promptly; the parent's profile goes on and is complete. */
static void scenario_fork(void) {
    intern_all();
    EXPECT(P.start(), NPUPROF_OK);
    forward(2);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) fork_child(0);
    CHECK(pid > 0);
    forward(2);
    int st = 0;
    CHECK(waitpid(pid, &st, 0) == pid);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    EXPECT(P.is_running(), 1);
    EXPECT(P.stop(), NPUPROF_OK);
    EXPECT(P.flush(), NPUPROF_OK);
    print_dir();
}

/* fork from a worker thread while three other threads record and intern names (locks may be held at the
 * moment of the fork): the child starts clean and makes its own profile, the parent's is complete. */
static volatile int fork_stop;
static void *fork_recorder(void *arg) {
    char name[64];
    for (long i = 0; !fork_stop; i++) {
        forward(2);
        snprintf(name, sizeof name, "dyn-%ld-%ld", (long)(uintptr_t)arg, i % 50);
        P.mark(P.intern(name));
        usleep(200);
    }
    return NULL;
}
static void *fork_from_thread(void *arg) {
    (void)arg;
    usleep(50 * 1000);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) fork_child(1);
    int st = 0;
    CHECK(pid > 0 && waitpid(pid, &st, 0) == pid);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    return NULL;
}
static void scenario_fork_threads(void) {
    intern_all();
    EXPECT(P.start(), NPUPROF_OK);
    pthread_t r[3], f;
    for (int i = 0; i < 3; i++) pthread_create(&r[i], NULL, fork_recorder, (void *)(uintptr_t)i);
    pthread_create(&f, NULL, fork_from_thread, NULL);
    pthread_join(f, NULL);
    fork_stop = 1;
    for (int i = 0; i < 3; i++) pthread_join(r[i], NULL);
    EXPECT(P.is_running(), 1);
    EXPECT(P.stop(), NPUPROF_OK);
    EXPECT(P.flush(), NPUPROF_OK);
    print_dir();
}

/* exit: return from main while recording, without stop (must not hang or crash). */
static void scenario_exit_running(void) {
    intern_all();
    EXPECT(P.start(), NPUPROF_OK);
    forward(3);
    print_dir();
}

/* exit() called from another thread while recording (not a return from main). */
static void *exit_from_thread(void *arg) {
    (void)arg;
    forward(2);
    exit(0);
}
static void scenario_exit_call(void) {
    intern_all();
    EXPECT(P.start(), NPUPROF_OK);
    forward(3);
    print_dir();
    fflush(stdout);
    pthread_t t;
    pthread_create(&t, NULL, exit_from_thread, NULL);
    pthread_join(t, NULL);
    printf("FAIL exit() returned\n");
}

/* Recording, then SIGKILL: no exit handler runs. Steps and ranges are recorded first, then moved to the
 * spool by a handshake (no sleep), and the process kills itself. The handshake is a flush: the drain spools
 * every record made before it (and the counters) before the flush is answered. */
static void scenario_kill9(int steps) {
    intern_all();
    EXPECT(P.start(), NPUPROF_OK);
    for (int i = 0; i < steps; i++) {
        EXPECT(P.step(64), NPUPROF_OK);
        forward(3);
    }
    EXPECT(P.flush(), NPUPROF_OK);
    EXPECT(P.is_running(), 1);
    print_dir();
    fflush(stdout);
    kill(getpid(), SIGKILL);
}

/* A full disk. With "rlimit", RLIMIT_FSIZE stands in for it (SIGXFSZ ignored, writes fail with EFBIG).
 * A small profile A first; then B records until the spool cannot grow: recording stops by itself (no
 * retrying forever) and flush reports NPUPROF_ERR_IO; then the process goes on, and A is intact. */
static void scenario_diskfull(const char *mode) {
    intern_all();
    if (!strcmp(mode, "rlimit")) {
        signal(SIGXFSZ, SIG_IGN);
        struct rlimit rl = {2 << 20, 2 << 20};
        CHECK(setrlimit(RLIMIT_FSIZE, &rl) == 0);
    }
    EXPECT(P.start(), NPUPROF_OK);
    for (int i = 0; i < 3; i++) {
        EXPECT(P.step(8), NPUPROF_OK);
        forward(3);
    }
    EXPECT(P.stop(), NPUPROF_OK);
    EXPECT(P.flush(), NPUPROF_OK);
    char buf[4096];
    if (P.output_dir(buf, sizeof buf) > 0) printf("DIRA=%s\n", buf);
    EXPECT(P.start(), NPUPROF_OK);
    if (P.output_dir(buf, sizeof buf) > 0) printf("DIRB=%s\n", buf);
    long pairs = 0;
    /* At most ~20 M pairs (320 MB of records): far more than the disk holds. */
    for (int round = 0; round < 2000 && P.is_running() == 1; round++) {
        for (int i = 0; i < 10000; i++) {
            P.range_push(ID_WORK);
            P.range_pop();
        }
        pairs += 10000;
        usleep(2000); /* let the drain write (untimed) */
    }
    printf("PAIRS=%ld\n", pairs);
    printf("STOPPED_ITSELF=%d\n", P.is_running() == 0);
    int rc = P.stop();
    printf("STOPB=%d\n", rc);
    printf("FLUSHB=%d\n", P.flush());
    rc = P.start();
    printf("STARTC=%d\n", rc);
    if (rc == NPUPROF_OK) {
        EXPECT(P.step(8), NPUPROF_OK);
        P.stop();
        printf("FLUSHC=%d\n", P.flush());
    }
    printf("ALIVE=1\n");
}

/* A read-only or unusable output root: start fails with NPUPROF_ERR_IO, nothing else changes. */
static void scenario_readonly(void) {
    intern_all();
    EXPECT(P.start(), NPUPROF_ERR_IO);
    CHECK(P.is_running() == 0);
    EXPECT(P.step(8), NPUPROF_OK);
    forward(1); /* not recording: no-ops */
    EXPECT(P.stop(), NPUPROF_ERR_NOT_RUNNING);
    EXPECT(P.start(), NPUPROF_ERR_IO); /* again: the same clear error, no state left behind */
    EXPECT(P.flush(), NPUPROF_OK);
    printf("ALIVE=1\n");
}

static int count_threads(void) {
    int n = 0;
    DIR *d = opendir("/proc/self/task");
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.') n++;
    if (d) closedir(d);
    return n;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: client LIB SCENARIO [ARGS]\n");
        return 2;
    }
    printf("THREADS_BEFORE_LOAD=%d\n", count_threads());
    load(argv[1]);
    printf("THREADS_AFTER_LOAD=%d\n", count_threads());
    const char *s = argv[2];
    if (!strcmp(s, "loadonly")) {
        /* Loading must not start threads or touch the environment's directories; the first call may. */
        CHECK(P.version() != NULL);
        printf("THREADS_AFTER_VERSION=%d\n", count_threads());
        return failures ? 1 : 0;
    }
    if (!strcmp(s, "manual"))
        scenario_manual(argc > 3 ? atoi(argv[3]) : 5, argc > 4 ? atoi(argv[4]) : 2, argc > 5 ? atoi(argv[5]) : 1000,
                        argc > 6 ? argv[6] : NULL);
    else if (!strcmp(s, "old")) scenario_old(argc - 3, argv + 3);
    else if (!strcmp(s, "disabled")) scenario_disabled();
    else if (!strcmp(s, "misuse")) scenario_misuse();
    else if (!strcmp(s, "panic")) scenario_panic();
    else if (!strcmp(s, "diskfull")) scenario_diskfull(argv[3]);
    else if (!strcmp(s, "readonly")) scenario_readonly();
    else if (!strcmp(s, "exit_call")) scenario_exit_call();
    else if (!strcmp(s, "kill9")) scenario_kill9(atoi(argv[3]));
    else if (!strcmp(s, "names")) scenario_names();
    else if (!strcmp(s, "two")) scenario_two();
    else if (!strcmp(s, "exit_running")) scenario_exit_running();
    else if (!strcmp(s, "vanish")) scenario_vanish();
    else if (!strcmp(s, "fork")) scenario_fork();
    else if (!strcmp(s, "fork_threads")) scenario_fork_threads();
    else if (!strcmp(s, "flood")) scenario_flood(atoi(argv[3]), atoi(argv[4]));
#ifdef NPUPROF_TEST_DLOPEN
    else if (!strcmp(s, "dlclose")) scenario_dlclose(argv[1]);
    else if (!strcmp(s, "dlclose_idle")) scenario_dlclose_idle(argv[1]);
#endif
    else {
        printf("FAIL unknown scenario %s\n", s);
        return 2;
    }
    printf("FAILURES=%d\n", failures);
    return failures ? 1 : 0;
}
