/* A runtime-like C client for the aclprof backend tests (tests/acl.rs): it "launches kernels" through the fake
 * CANN's test-only `fake_launch` while npuprof profiles, and runs a script of commands given as arguments.
 *
 * Usage: acl_client LIB|- CMD...   (LIB: dlopen it RTLD_LOCAL; "-": npuprof comes from LD_PRELOAD)
 *   cann          dlopen libascendcl.so + libmsprofiler.so by bare name now (as a runtime linked to CANN has them);
 *                 with FAKE_ACL_DEVICE=<id> set, then aclrtSetDevice(id) on this (the main) thread, as a runtime
 *                 does at init: the fake's aclrtGetDevice answers per thread, like the real one
 *   mspti         dlopen libmspti.so by bare name now
 *   burst:N       N extra MSPTI kernel launches at once, no sleep (buffer pressure)
 *   start|stop|flush|shutdown    call npuprof_*, print START=<rc> ...
 *   start_thread  npuprof_start on a new thread that never set a device (no CANN context), joined; START=<rc>
 *   steps:N       N scheduler steps: npuprof_step, a "forward" range, 3 launches (AI_CORE, AI_VECTOR_CORE,
 *                 COMMUNICATION), 20 ms; the fake CANN is told where each step begins and ends (fake_acl_step)
 *   setenv:K=V / unsetenv:K      change the environment the fakes read at each call
 *   dir           print DIR=<output dir>
 *   exit          exit(0) at once (no stop)
 *   start_until_ok    npuprof_start again every 10 ms while it returns NPUPROF_ERR_BACKEND (at most 60 s)
 *   wait_hang     wait until a FAKE_ACL_HANG / FAKE_MSPTI_HANG hang has begun (in any thread)
 *   bg_exit_on_hang   a new thread waits as wait_hang does, then calls exit(0); main goes on meanwhile
 *   sleep:MS      sleep MS ms
 *   touch:PATH    create PATH (the release of a `hold@point=PATH` fault)
 *   hwm           print HWM_KB=<VmHWM of this process, from /proc/self/status>
 *   release       end the fakes' FAKE_ACL_HANG / FAKE_MSPTI_HANG hangs (fake_acl_release, fake_mspti_release)
 *   fork          fork(); the child runs "start steps:1 stop flush", prints CHILD_START=, CHILD_DIR=, and exits;
 *                 the parent waits for it
 *   forks:N       N children one after another, each forked while the parent's threads run: the child launches
 *                 MSPTI kernels, completes a buffer (msptiActivityFlushAll), runs start/step/stop and exits.
 *                 Each child is waited for up to 60 s (hang guard: then killed); prints FORKS_OK=, FORKS_HUNG=.
 *                 A churn started before runs around each fork and is paused while the child is waited for
 *   guard:S       alarm(S): a hang anywhere (fork() itself included) ends the process by SIGALRM
 *   churn / churn_stop / late    fake_mspti_churn / _churn_stop / _deliver_late (LATE=<records>)
 *   wait_completed:N   wait until the fake MSPTI's complete calls that returned reach N (FAIL after 120 s)
 *   mspti_flush   msptiActivityFlushAll(1) from the application (prints MSPTI_FLUSH=<rc>)
 *   copies        from now on each step also copies 64 KiB host-to-device (MSPTI: fake_mspti_memcpy; CANN: a
 *                 MEMCPY_ASYNC task), as an inference step copies its inputs
 *   group:COMM:PG:RANK:R0,R1,...  npuprof_set_group(COMM, PG, RANK, {R0, R1, ...}) (found with dlsym in
 *                 either mode), prints GROUP=<rc>
 * Prints LAUNCHED=<n> (launches that reached a fake CANN) at the end, and the fake MSPTI's own counts:
 * MSPTI_KERNELS/_ALL/_DROPPED (records written, dropped) and MSPTI_BUFFERS_<size>=requested,completed,records,bytes.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "npuprof.h"

#pragma weak npuprof_start
#pragma weak npuprof_stop
#pragma weak npuprof_step
#pragma weak npuprof_flush
#pragma weak npuprof_shutdown
#pragma weak npuprof_intern
#pragma weak npuprof_range_push
#pragma weak npuprof_range_pop
#pragma weak npuprof_output_dir

static struct {
    int (*start)(void);
    int (*stop)(void);
    int (*step)(uint64_t);
    int (*flush)(void);
    int (*shutdown)(void);
    uint32_t (*intern)(const char *);
    void (*range_push)(uint32_t);
    void (*range_pop)(void);
    size_t (*output_dir)(char *, size_t);
} P;

typedef void (*launch_fn)(const char *, const char *, const char *, uint32_t, uint64_t);
static launch_fn launch;
/* The fake CANN's test-only step marks (tests/c/fake_msprofiler.c): step n begins (n > 0) / ends (0). */
static void (*acl_step)(uint64_t);
static int launched;
/* `copies`: each step also copies its inputs to the device. */
static int step_copies;
/* The fake libmspti.so's test-only "device" (tests/c/fake_mspti.c). */
static struct {
    void (*launch)(const char *, const char *, uint32_t, uint64_t);
    void (*hccl)(const char *, uint32_t, uint64_t);
    void (*marker)(const char *, int);
    void (*memory)(uint64_t, int);
    void (*memcpy_)(uint64_t);
    uint64_t (*emitted)(int);
    uint64_t (*dropped)(void);
    uint64_t (*misdeeds)(int);
    uint64_t (*buffers)(int, int);
} M;

static void find_launch(void) {
    /* Whatever copy of a fake is loaded (by us or by npuprof): never load a second one here. */
    if (!launch) {
        void *h = dlopen("libmsprofiler.so", RTLD_NOW | RTLD_NOLOAD);
        if (h) *(void **)&launch = dlsym(h, "fake_launch");
        if (h) *(void **)&acl_step = dlsym(h, "fake_acl_step");
    }
    if (!M.launch) {
        void *h = dlopen("libmspti.so", RTLD_NOW | RTLD_NOLOAD);
        if (h) {
            *(void **)&M.launch = dlsym(h, "fake_mspti_launch");
            *(void **)&M.hccl = dlsym(h, "fake_mspti_hccl");
            *(void **)&M.marker = dlsym(h, "fake_mspti_marker");
            *(void **)&M.memory = dlsym(h, "fake_mspti_memory");
            *(void **)&M.memcpy_ = dlsym(h, "fake_mspti_memcpy");
            *(void **)&M.emitted = dlsym(h, "fake_mspti_emitted");
            *(void **)&M.dropped = dlsym(h, "fake_mspti_dropped");
            *(void **)&M.misdeeds = dlsym(h, "fake_mspti_misdeeds");
            *(void **)&M.buffers = dlsym(h, "fake_mspti_buffers");
        }
    }
}

static void print_counts(void) {
    printf("LAUNCHED=%d\n", launched);
    if (M.emitted) {
        printf("MSPTI_KERNELS=%llu\n", (unsigned long long)M.emitted(2));
        printf("MSPTI_ALL=%llu\n", (unsigned long long)M.emitted(0));
        printf("MSPTI_DROPPED=%llu\n", (unsigned long long)M.dropped());
    }
    /* The fake's own account per buffer size: MSPTI_BUFFERS_<size>=requested,delivered,records,bytes. */
    for (int i = 0; M.buffers && i < 8 && M.buffers(i, 0); i++) {
        printf("MSPTI_BUFFERS_%llu=%llu,%llu,%llu,%llu\n", (unsigned long long)M.buffers(i, 1),
               (unsigned long long)M.buffers(i, 2), (unsigned long long)M.buffers(i, 3),
               (unsigned long long)M.buffers(i, 4), (unsigned long long)M.buffers(i, 5));
    }
    if (M.misdeeds) {
        printf("MSPTI_MISDEEDS=%llu,%llu,%llu\n", (unsigned long long)M.misdeeds(0),
               (unsigned long long)M.misdeeds(1), (unsigned long long)M.misdeeds(2));
    }
}

/* Calls the test-only export `fn` (suffix of fake_acl_ / fake_mspti_) of each fake that is loaded; returns
 * the sum of what they return. */
static int call_fakes(const char *fn) {
    const char *libs[] = {"libmsprofiler.so", "libmspti.so"};
    const char *prefix[] = {"fake_acl_", "fake_mspti_"};
    int sum = 0;
    for (int k = 0; k < 2; k++) {
        char name[64];
        snprintf(name, sizeof name, "%s%s", prefix[k], fn);
        void *h = dlopen(libs[k], RTLD_NOW | RTLD_NOLOAD);
        int (*f)(void) = NULL;
        if (h) *(void **)&f = dlsym(h, name);
        if (f) sum += f();
    }
    return sum;
}

static void *start_on_thread(void *rc) {
    *(int *)rc = P.start();
    return NULL;
}

static void wait_hang(void) {
    while (call_fakes("hangs") == 0) usleep(1000);
}

static void *exit_on_hang(void *unused) {
    (void)unused;
    wait_hang();
    print_counts();
    exit(0);
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IONBF, 0);
    if (argc < 2) return 2;
    if (strcmp(argv[1], "-")) {
        void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
        if (!h) {
            printf("FAIL dlopen %s\n", dlerror());
            return 1;
        }
#define SYM(f) *(void **)(&P.f) = dlsym(h, "npuprof_" #f)
        SYM(start); SYM(stop); SYM(step); SYM(flush); SYM(shutdown); SYM(intern); SYM(range_push);
        SYM(range_pop); SYM(output_dir);
#undef SYM
    } else {
        if (!npuprof_start) {
            printf("FAIL not preloaded\n");
            return 1;
        }
        P.start = npuprof_start; P.stop = npuprof_stop; P.step = npuprof_step; P.flush = npuprof_flush;
        P.shutdown = npuprof_shutdown; P.intern = npuprof_intern; P.range_push = npuprof_range_push;
        P.range_pop = npuprof_range_pop; P.output_dir = npuprof_output_dir;
    }
    uint32_t fwd = P.intern("model_forward");
    uint64_t step_no = 0;
    for (int i = 2; i < argc; i++) {
        const char *c = argv[i];
        if (!strcmp(c, "cann")) {
            void *a = dlopen("libascendcl.so", RTLD_NOW | RTLD_GLOBAL);
            void *m = dlopen("libmsprofiler.so", RTLD_NOW | RTLD_GLOBAL);
            printf("CANN=%s\n", a && m ? "loaded" : "missing");
            const char *dev = getenv("FAKE_ACL_DEVICE");
            int (*set_device)(int32_t) = NULL;
            if (a) *(void **)&set_device = dlsym(a, "aclrtSetDevice");
            if (dev && *dev && set_device) printf("SETDEVICE=%d\n", set_device((int32_t)atoi(dev)));
        } else if (!strcmp(c, "copies")) {
            step_copies = 1;
        } else if (!strcmp(c, "mspti")) {
            void *m = dlopen("libmspti.so", RTLD_NOW | RTLD_GLOBAL);
            printf("MSPTI=%s\n", m ? "loaded" : "missing");
        } else if (!strncmp(c, "burst:", 6)) {
            find_launch();
            int n = atoi(c + 6);
            for (int k = 0; k < n && M.launch; k++) M.launch("Burst", "KERNEL_AICORE", 5, 1000);
            launched += M.launch ? n : 0;
        } else if (!strcmp(c, "hwm")) {
            FILE *st = fopen("/proc/self/status", "r");
            char l[256];
            long kb = -1;
            while (st && fgets(l, sizeof l, st))
                if (!strncmp(l, "VmHWM:", 6)) kb = atol(l + 6);
            if (st) fclose(st);
            printf("HWM_KB=%ld\n", kb);
        } else if (!strcmp(c, "start")) {
            printf("START=%d\n", P.start());
        } else if (!strcmp(c, "start_thread")) {
            pthread_t t;
            int rc = -1;
            if (pthread_create(&t, NULL, start_on_thread, &rc)) printf("FAIL pthread_create\n");
            else pthread_join(t, NULL);
            printf("START=%d\n", rc);
        } else if (!strcmp(c, "stop")) {
            printf("STOP=%d\n", P.stop());
        } else if (!strncmp(c, "wait_completed:", 15)) {
            /* Until the fake's complete calls that returned reach n (all buffer sizes); 120 s only on a hang. */
            find_launch();
            uint64_t n = strtoull(c + 15, NULL, 10), done = 0;
            for (int t = 0; M.buffers && t < 120000; t++) {
                done = 0;
                for (int i = 0; i < 8 && M.buffers(i, 0); i++) done += M.buffers(i, 3);
                if (done >= n) break;
                usleep(1000);
            }
            printf("%s completed=%llu\n", done >= n ? "WAITED" : "FAIL wait_completed", (unsigned long long)done);
            if (done < n) return 1;
        } else if (!strcmp(c, "mspti_flush")) {
            /* msptiActivityFlushAll(1) from the application, as torch_npu's flush does. */
            void *h = dlopen("libmspti.so", RTLD_NOW | RTLD_NOLOAD);
            int (*f)(uint32_t) = NULL;
            if (h) *(void **)&f = dlsym(h, "msptiActivityFlushAll");
            printf("MSPTI_FLUSH=%d\n", f ? f(1) : -1);
        } else if (!strcmp(c, "flush")) {
            printf("FLUSH=%d\n", P.flush());
        } else if (!strcmp(c, "shutdown")) {
            printf("SHUTDOWN=%d\n", P.shutdown());
        } else if (!strncmp(c, "steps:", 6)) {
            int n = atoi(c + 6);
            for (int s = 0; s < n; s++) {
                find_launch();
                step_no++;
                int rc = P.step(64 + step_no);
                if (rc) printf("FAIL step rc=%d\n", rc);
                P.range_push(fwd);
                /* The fake CANN stamps this step's device tasks at the middle of [this mark, the end mark]
                 * (both inside the host step, whatever the scheduler does), so their step does not depend on
                 * when in the step the launch ran. The MSPTI fake stamps kernels at their launch: launching
                 * 10 ms inside the step keeps them clear of its start by far more than the clock anchor's
                 * error. */
                if (acl_step) acl_step(step_no);
                usleep(10000);
                if (launch) {
                    /* A copy of the step's inputs: the device task of aclrtMemcpyAsync. */
                    if (step_copies) {
                        launch("MEMCPY_ASYNC", "N/A", "MEMCPY_ASYNC", 2, 2000);
                        launched++;
                    }
                    launch("MatMul_1", "MatMul", "AI_CORE", 2, 40000);
                    launch("Add_2", "Add", "AI_VECTOR_CORE", 3, 10000);
                    launch("hcom_allReduce__1_1", "hcom_allReduce", "COMMUNICATION", 4, 30000);
                    launched += 3;
                }
                if (M.launch) {
                    M.marker("forward", 1);
                    M.marker("layer", 2);
                    /* The fake's API records last 2 us: space the launches so one thread's calls do not
                     * overlap (as real calls never do). */
                    M.launch("MatMul_1", "KERNEL_AICORE", 2, 40000);
                    usleep(5);
                    M.launch("Add_2", "KERNEL_AIVEC", 3, 10000);
                    usleep(5);
                    if (M.hccl) M.hccl("hcom_allReduce__1_1", 4, 30000);
                    if (M.memory) M.memory(1 << 20, 0);
                    if (step_copies && M.memcpy_) M.memcpy_(1 << 16);
                    M.marker("layer", 4);
                    launched += 2;
                }
                usleep(10000);
                if (acl_step) acl_step(0);
                P.range_pop();
            }
        } else if (!strncmp(c, "kernel:", 7)) {
            /* One MSPTI kernel named as given (type KERNEL_AICORE, stream 6, 20 us). */
            find_launch();
            if (M.launch) {
                M.launch(c + 7, "KERNEL_AICORE", 6, 20000);
                launched++;
            }
        } else if (!strncmp(c, "mem:", 4)) {
            /* mem:<bytes>:<0 allocate | 1 release> through the MSPTI fake (aclrtMalloc / aclrtFree). */
            find_launch();
            char *colon = strchr(c + 4, ':');
            if (M.memory && colon) M.memory(strtoull(c + 4, NULL, 10), atoi(colon + 1));
        } else if (!strncmp(c, "group:", 6)) {
            char buf[512];
            snprintf(buf, sizeof buf, "%s", c + 6);
            char *comm = buf, *pg = strchr(comm, ':'), *rank = pg ? strchr(pg + 1, ':') : NULL;
            char *list = rank ? strchr(rank + 1, ':') : NULL;
            int (*set_group)(const char *, const char *, uint32_t, const uint32_t *, size_t) = NULL;
            *(void **)&set_group = dlsym(RTLD_DEFAULT, "npuprof_set_group");
            if (!list || !set_group) {
                printf("GROUP=-1\n");
                continue;
            }
            *pg++ = 0;
            *rank++ = 0;
            *list++ = 0;
            uint32_t ranks[64];
            size_t n = 0;
            for (char *t = strtok(list, ","); t && n < 64; t = strtok(NULL, ",")) ranks[n++] = (uint32_t)atoi(t);
            printf("GROUP=%d\n", set_group(comm, pg, (uint32_t)atoi(rank), ranks, n));
        } else if (!strncmp(c, "setenv:", 7)) {
            char kv[512];
            snprintf(kv, sizeof kv, "%s", c + 7);
            char *eq = strchr(kv, '=');
            if (eq) {
                *eq = 0;
                setenv(kv, eq + 1, 1);
            }
        } else if (!strncmp(c, "unsetenv:", 9)) {
            unsetenv(c + 9);
        } else if (!strcmp(c, "dir")) {
            char buf[4096];
            size_t n = P.output_dir(buf, sizeof buf);
            printf("DIR=%s\n", n ? buf : "");
        } else if (!strcmp(c, "fork")) {
            pid_t pid = fork();
            if (pid == 0) {
                printf("CHILD_START=%d\n", P.start());
                P.step(1);
                printf("CHILD_STOP=%d\n", P.stop());
                printf("CHILD_FLUSH=%d\n", P.flush());
                char buf[4096];
                size_t n = P.output_dir(buf, sizeof buf);
                printf("CHILD_DIR=%s\n", n ? buf : "");
                exit(0);
            }
            int st = 0;
            waitpid(pid, &st, 0);
            printf("CHILD_EXIT=%d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
        } else if (!strncmp(c, "forks:", 6)) {
            int n = atoi(c + 6), ok = 0, hung = 0;
            for (int k = 0; k < n && !hung; k++) {
                /* The fake's churn (if started) runs around each fork and is paused while the child is
                 * waited for (a hung child would otherwise let the parent's spool grow for a minute). */
                call_fakes("churn_resume");
                usleep(3000);
                pid_t pid = fork();
                if (pid > 0) call_fakes("churn_pause");
                if (pid == 0) {
                    find_launch();
                    for (int j = 0; j < 4 && M.launch; j++) M.launch("ChildKernel", "KERNEL_AICORE", 7, 1000);
                    void *h = dlopen("libmspti.so", RTLD_NOW | RTLD_NOLOAD);
                    unsigned (*flush_all)(unsigned) = NULL;
                    if (h) *(void **)&flush_all = dlsym(h, "msptiActivityFlushAll");
                    if (flush_all) flush_all(1);
                    P.start();
                    P.step(1);
                    P.stop();
                    P.flush();
                    _exit(0);
                }
                if (pid < 0) {
                    printf("FAIL fork\n");
                    break;
                }
                int st = 0;
                pid_t r = 0;
                for (int w = 0; w < 60000 && (r = waitpid(pid, &st, WNOHANG)) == 0; w++) usleep(1000);
                if (r == 0) {
                    kill(pid, SIGKILL);
                    waitpid(pid, &st, 0);
                    hung++;
                } else if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
                    ok++;
                }
            }
            call_fakes("churn_resume");
            printf("FORKS_OK=%d\nFORKS_HUNG=%d\n", ok, hung);
            printf("FORK_COMPLETIONS=%d\n", call_fakes("fork_completions"));
        } else if (!strncmp(c, "guard:", 6)) {
            alarm((unsigned)atoi(c + 6));
        } else if (!strcmp(c, "churn")) {
            call_fakes("churn");
        } else if (!strcmp(c, "churn_stop")) {
            call_fakes("churn_stop");
        } else if (!strcmp(c, "late")) {
            printf("LATE=%d\n", call_fakes("deliver_late"));
        } else if (!strcmp(c, "start_until_ok")) {
            int rc = P.start();
            for (int k = 0; rc == 6 && k < 6000; k++) {
                usleep(10000);
                rc = P.start();
            }
            printf("START=%d\n", rc);
        } else if (!strcmp(c, "wait_hang")) {
            wait_hang();
        } else if (!strcmp(c, "bg_exit_on_hang")) {
            pthread_t t;
            if (pthread_create(&t, NULL, exit_on_hang, NULL)) printf("FAIL pthread_create\n");
        } else if (!strncmp(c, "sleep:", 6)) {
            usleep((useconds_t)atoi(c + 6) * 1000);
        } else if (!strncmp(c, "touch:", 6)) {
            /* Creates the file (a `hold@point=FILE` fault's release). */
            int fd = open(c + 6, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
            printf("TOUCH=%d\n", fd >= 0 ? 0 : errno);
            if (fd >= 0) close(fd);
        } else if (!strncmp(c, "wait_file:", 10)) {
            /* Until the file exists (a fake tool has started), at most 120 s. */
            for (int k = 0; k < 12000 && access(c + 10, F_OK) != 0; k++) usleep(10000);
        } else if (!strncmp(c, "wait_size:", 10)) {
            /* wait_size:REL:BYTES: until REL (in the output directory) has BYTES bytes or more, at most 120 s. */
            char rel[1024];
            snprintf(rel, sizeof rel, "%s", c + 10);
            char *colon = strrchr(rel, ':');
            long long want = 1;
            if (colon) {
                *colon = 0;
                want = atoll(colon + 1);
            }
            char dir[4096], path[6144];
            size_t n = P.output_dir(dir, sizeof dir);
            snprintf(path, sizeof path, "%s/%s", n ? dir : ".", rel);
            struct stat st;
            for (int k = 0; k < 12000 && (stat(path, &st) != 0 || st.st_size < want); k++) usleep(10000);
        } else if (!strcmp(c, "kill")) {
            kill(getpid(), SIGKILL);
        } else if (!strcmp(c, "release")) {
            call_fakes("release");
        } else if (!strcmp(c, "exit")) {
            print_counts();
            exit(0);
        } else {
            printf("FAIL unknown command %s\n", c);
            return 2;
        }
    }
    print_counts();
    return 0;
}
