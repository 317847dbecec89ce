/* acl_order: test driver of the fake CANN libraries themselves (tests/c/fake_msprofiler.c, fake_ascendcl.c).
 *
 * Usage: acl_order DIR/libascendcl.so [WORKDIR]
 *   Opens libascendcl.so (argv[1]) and DIR/libmsprofiler.so. The six session functions torch_npu takes
 *   from libascendcl (aclprofInit/Start/Stop/Finalize/CreateConfig/DestroyConfig) are looked up on the
 *   libascendcl handle, which only finds them through its DT_NEEDED libmsprofiler.so (ascend-api.md §1);
 *   the rest on the libmsprofiler handle, as torch_npu's MsProfilerInterface does.
 *   Runs every misuse row of ascend-api.md §2.8 for the generation in FAKE_ACL_GEN (mp | rt), each case
 *   from a fresh state (aclprofFinalize + DestroyConfig of what the case created), plus a happy path in
 *   a forked child that checks the PROF_* directory, the log lines and the exit line of the fake.
 *   WORKDIR (default: a new /tmp/acl_order.XXXXXX, removed at the end unless ACL_ORDER_KEEP is set)
 *   receives one sub-directory per case.
 * Output: "ok <case>" or "FAIL <case>: <step> got X want Y" per case, then
 *   "acl_order: N passed, M failed"; the exit status is non-zero if any case failed.
 *
 * Build: cc -std=gnu11 -Wall -Wextra -o DIR/acl_order tests/c/acl_order.c -ldl
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <ftw.h>
#include <libgen.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

typedef int aclError;
typedef struct aclprofConfig aclprofConfig;

#define ACL_PROF_ACL_API 0x0001ULL
#define ACL_PROF_TASK_TIME 0x0002ULL
#define ACL_PROF_AICORE_METRICS 0x0004ULL
#define ACL_PROF_HCCL_TRACE 0x0020ULL
#define ACL_PROF_MSPROFTX 0x0080ULL
#define ACL_PROF_TASK_TIME_L0 0x0800ULL
#define ACL_PROF_TASK_TIME_L2 0x2000ULL
#define LEVEL0 (ACL_PROF_TASK_TIME_L0 | ACL_PROF_ACL_API)                                      /* 0x801 */
#define LEVEL1 (ACL_PROF_TASK_TIME | ACL_PROF_ACL_API | ACL_PROF_HCCL_TRACE | ACL_PROF_AICORE_METRICS) /* 0x27 */
#define UNKNOWN_BIT 0x10000ULL /* accepted by neither generation */
#define METRICS_PIPE 1
#define METRICS_NONE 0xFF

/* The API under test, resolved with dlsym. */
static struct {
    aclError (*Init)(const char *, size_t);
    aclError (*Finalize)(void);
    aclprofConfig *(*CreateConfig)(uint32_t *, uint32_t, uint32_t, const void *, uint64_t);
    aclError (*DestroyConfig)(const aclprofConfig *);
    aclError (*Start)(const aclprofConfig *);
    aclError (*Stop)(const aclprofConfig *);
    aclError (*SetConfig)(uint32_t, const char *, size_t);
    aclError (*Warmup)(const aclprofConfig *);
    int (*GetFeatures)(size_t *, void **);
    int (*GetFeaturesV2)(size_t *, void **);
    aclError (*RegisterDeviceCallback)(void);
    void *(*CreateStamp)(void);
    void (*DestroyStamp)(void *);
    aclError (*SetStampTraceMessage)(void *, const char *, uint32_t);
    aclError (*Mark)(void *);
    aclError (*MarkEx)(const char *, size_t, void *);
    aclError (*Push)(void *);
    aclError (*Pop)(void);
    aclError (*RangeStart)(void *, uint32_t *);
    aclError (*RangeStop)(uint32_t);
    void (*fake_launch)(const char *, const char *, const char *, uint32_t, uint64_t);
    int (*aclrtGetDevice)(int32_t *);
    int (*aclrtSetDevice)(int32_t);
    int (*aclrtCreateContext)(void **, int32_t);
    int (*aclrtSetCurrentContext)(void *);
} P;

static int RT; /* FAKE_ACL_GEN=rt */
static char WORK[PATH_MAX];

/* Pick the expected value for this generation (§2.8 MP column / RT column). */
#define W(mp, rt) (RT ? (long)(rt) : (long)(mp))

/* ---- per-case bookkeeping ------------------------------------------------------------------------ */

static const char *g_case;
static int g_case_failed, g_passed, g_failed;
static aclprofConfig *g_cfgs[64];
static int g_ncfgs;

static void check(const char *step, long got, long want)
{
    if (got != want) {
        printf("FAIL %s: %s got %ld want %ld\n", g_case, step, got, want);
        g_case_failed = 1;
    }
}

static void check_true(const char *step, int cond)
{
    if (!cond) {
        printf("FAIL %s: %s got false want true\n", g_case, step);
        g_case_failed = 1;
    }
}

/* The case's own result directory, WORKDIR/<case>. */
static const char *case_dir(void)
{
    static char d[PATH_MAX + 64];
    snprintf(d, sizeof d, "%s/%s", WORK, g_case);
    return d;
}

static aclError init_case_dir(void)
{
    const char *d = case_dir();
    return P.Init(d, strlen(d));
}

/* CreateConfig, remembered so the case's cleanup destroys it. */
static aclprofConfig *cfg(uint32_t *devs, uint32_t n, uint32_t metrics, const void *events, uint64_t bits)
{
    aclprofConfig *c = P.CreateConfig(devs, n, metrics, events, bits);
    if (c != NULL && g_ncfgs < 64) {
        g_cfgs[g_ncfgs++] = c;
    }
    return c;
}

static uint32_t DEV0[1] = {0};
static aclprofConfig *cfg_dev0(uint64_t bits) { return cfg(DEV0, 1, METRICS_NONE, NULL, bits); }

static void clear_env(void)
{
    unsetenv("FAKE_ACL_OTHER_PROFILER");
    unsetenv("PROFILING_MODE");
    unsetenv("FAKE_ACL_FAIL");
    unsetenv("FAKE_ACL_DEVICE_COUNT");
    unsetenv("FAKE_ACL_FEATURES");
    unsetenv("FAKE_ACL_DEVICE");
    unsetenv("FAKE_ACL_LOG");
}

/* Back to a fresh state with the real API: aclprofFinalize cancels a running session and leaves
 * API mode (its code does not matter here: 100043/0 when already off), then destroy the case's configs. */
static void reset(void)
{
    clear_env();
    P.Finalize();
    for (int i = 0; i < g_ncfgs; i++) {
        P.DestroyConfig(g_cfgs[i]);
    }
    g_ncfgs = 0;
}

static void run_case(const char *name, void (*fn)(void))
{
    g_case = name;
    g_case_failed = 0;
    reset();
    fn();
    reset();
    if (g_case_failed) {
        g_failed++;
    } else {
        g_passed++;
        printf("ok %s\n", name);
    }
    fflush(stdout);
}

/* ---- filesystem helpers -------------------------------------------------------------------------- */

static int count_prof_dirs(const char *dir, char *first, size_t firstsz)
{
    DIR *d = opendir(dir);
    int n = 0;
    if (d == NULL) {
        return 0;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, "PROF_", 5) == 0) {
            if (n == 0 && first != NULL) {
                snprintf(first, firstsz, "%s/%s", dir, e->d_name);
            }
            n++;
        }
    }
    closedir(d);
    return n;
}

static int exists(const char *fmt, const char *a)
{
    char p[PATH_MAX * 2];
    snprintf(p, sizeof p, fmt, a);
    struct stat st;
    return stat(p, &st) == 0;
}

static long count_lines(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return -1;
    }
    long n = 0;
    int c;
    while ((c = fgetc(f)) != EOF) {
        n += c == '\n';
    }
    fclose(f);
    return n;
}

/* ---- §2.8 rows: aclprofInit ---------------------------------------------------------------------- */

static void init_twice(void) /* "aclprofInit while already inited" → 100002 both */
{
    check("first init", init_case_dir(), 0);
    check("second init", init_case_dir(), 100002);
}

static void init_null(void) /* "aclprofInit(NULL, …)" → 100000 both */
{
    check("init(NULL)", P.Init(NULL, 4), 100000);
}

static void init_len_zero(void) /* length must be ≥ 1 */
{
    check("init(path, 0)", P.Init(case_dir(), 0), 100000);
}

static void init_len_shorter(void) /* MP: strnlen(path,len)==len, path truncated; RT: exactly strlen */
{
    char p[PATH_MAX + 80];
    snprintf(p, sizeof p, "%s/dirXYZ", case_dir());
    size_t len = strlen(p) - 3; /* ".../dir" */
    check("init(path, strlen-3)", P.Init(p, len), W(0, 100000));
    if (!RT) {
        check_true("truncated dir created", exists("%s/dir", case_dir()));
        check_true("full dir not created", !exists("%s/dirXYZ", case_dir()));
    }
}

static void init_len_longer(void) /* len > strlen: strnlen/strlen != len → 100000 both */
{
    const char *d = case_dir();
    check("init(path, strlen+1)", P.Init(d, strlen(d) + 1), 100000);
}

static void init_len_max(void) /* MP allows len ≤ 4096, RT len ≤ 4095 */
{
    static char p[4200];
    memset(p, 'a', sizeof p);
    p[0] = '/';
    p[4096] = '\0';
    /* 4096 chars: MP passes the length rule, then cannot create the path → 100003 (§2.7) */
    check("init(4096 chars)", P.Init(p, 4096), W(100003, 100000));
    p[4096] = 'a';
    p[4097] = '\0';
    check("init(4097 chars)", P.Init(p, 4097), 100000);
}

static void init_dynamic_mode(void) /* env PROFILING_MODE=dynamic → 200006 both */
{
    setenv("PROFILING_MODE", "dynamic", 1);
    check("init", init_case_dir(), 200006);
}

static void init_under_msprof_cmd(void) /* msprof CLI active → 100042 both */
{
    setenv("FAKE_ACL_OTHER_PROFILER", "cmd", 1);
    check("init", init_case_dir(), 100042);
}

static void init_in_subscribe_mode(void) /* subscribe mode → 148047 both */
{
    setenv("FAKE_ACL_OTHER_PROFILER", "subscribe", 1);
    check("init", init_case_dir(), 148047);
}

static void cmd_mode_calls(void) /* "any call in CMD mode": Start/Stop/Finalize → 100042 */
{
    aclprofConfig *c = cfg_dev0(LEVEL0);
    setenv("FAKE_ACL_OTHER_PROFILER", "cmd", 1);
    check("start", P.Start(c), 100042);
    check("stop", P.Stop(c), 100042);
    check("finalize", P.Finalize(), 100042);
}

/* ---- §2.8 rows: aclprofCreateConfig / DestroyConfig ---------------------------------------------- */

static void create_config_invalid(void) /* NULL (no code) for every invalid argument, both generations */
{
    uint32_t two[2] = {0, 0}, many[65] = {0};
    int events = 0;
    for (uint32_t i = 0; i < 65; i++) {
        many[i] = i;
    }
    check_true("deviceNums>0 && list NULL", cfg(NULL, 1, METRICS_NONE, NULL, LEVEL0) == NULL);
    check_true("aicoreEvents != NULL", cfg(DEV0, 1, METRICS_NONE, &events, LEVEL0) == NULL);
    check_true("deviceNums > 64", cfg(many, 65, METRICS_NONE, NULL, LEVEL0) == NULL);
    check_true("duplicated id", cfg(two, 2, METRICS_NONE, NULL, LEVEL0) == NULL);
    uint32_t d8[1] = {8};
    check_true("id >= device count (8)", cfg(d8, 1, METRICS_NONE, NULL, LEVEL0) == NULL);
    setenv("FAKE_ACL_DEVICE_COUNT", "2", 1);
    uint32_t d2[1] = {2}, d1[1] = {1};
    check_true("id >= device count (2)", cfg(d2, 1, METRICS_NONE, NULL, LEVEL0) == NULL);
    check_true("id 1 of 2 is valid", cfg(d1, 1, METRICS_NONE, NULL, LEVEL0) != NULL);
    check_true("deviceNums==0 without MSPROFTX", cfg(NULL, 0, METRICS_NONE, NULL, LEVEL0) == NULL);
    check_true("deviceNums==0 with MSPROFTX", cfg(NULL, 0, METRICS_NONE, NULL, ACL_PROF_MSPROFTX) != NULL);
}

static void destroy_config_null(void) /* "aclprofDestroyConfig(NULL)" → 100000 both */
{
    check("destroy(NULL)", P.DestroyConfig(NULL), 100000);
    aclprofConfig *c = P.CreateConfig(DEV0, 1, METRICS_NONE, NULL, LEVEL0);
    check("destroy", P.DestroyConfig(c), 0);
    check("destroy again (fake: stale config)", P.DestroyConfig(c), 100000);
}

/* ---- §2.8 rows: aclprofStart --------------------------------------------------------------------- */

static void start_null(void) /* MP 100000; RT: default config */
{
    check("init", init_case_dir(), 0);
    check("start(NULL)", P.Start(NULL), W(100000, 0));
    if (RT) {
        check("stop(NULL)", P.Stop(NULL), 0);
        check("PROF dirs", count_prof_dirs(case_dir(), NULL, 0), 1);
    }
}

static void start_without_init(void) /* MP 100043; RT auto-initialises (previous path or ./) and starts */
{
    check("init", init_case_dir(), 0);
    check("finalize", P.Finalize(), 0);
    aclprofConfig *c = cfg_dev0(LEVEL0);
    check("start", P.Start(c), W(100043, 0));
    if (RT) { /* the previous result path is re-used */
        check("PROF dirs in the previous path", count_prof_dirs(case_dir(), NULL, 0), 1);
        check("stop", P.Stop(c), 0);
    }
}

static void start_again_same(void) /* "Start again while running": same config → 0 both */
{
    aclprofConfig *c = cfg_dev0(LEVEL0);
    check("init", init_case_dir(), 0);
    check("start", P.Start(c), 0);
    check("start again", P.Start(c), 0);
    check("stop", P.Stop(c), 0);
    check("one PROF dir", count_prof_dirs(case_dir(), NULL, 0), 1);
}

static void start_again_other_bits(void) /* MP: ignored (0); RT: different bits → 100010 */
{
    aclprofConfig *a = cfg_dev0(LEVEL0), *b = cfg_dev0(LEVEL1), *a2 = cfg_dev0(LEVEL0);
    check("init", init_case_dir(), 0);
    check("start", P.Start(a), 0);
    check("start other bits", P.Start(b), W(0, 100010));
    check("start other config, same bits", P.Start(a2), 0);
    check("stop", P.Stop(a), 0);
}

static void start_bits_rejected(void) /* bits outside the accepted set → 200007; MP lacks TASK_TIME_L2 */
{
    check("init", init_case_dir(), 0);
    check("start unknown bit", P.Start(cfg_dev0(LEVEL0 | UNKNOWN_BIT)), 200007);
    aclprofConfig *l2 = cfg_dev0(LEVEL1 | ACL_PROF_TASK_TIME_L2);
    check("start TASK_TIME_L2", P.Start(l2), W(200007, 0));
    if (RT) {
        check("stop TASK_TIME_L2", P.Stop(l2), 0);
    }
}

static void start_bits_zero(void) /* bits == 0 → 100000 (MP). RT ORs PROF_AICPU_MODEL into every config
                                     at CreateConfig, so its stored bits are never 0 and Start succeeds. */
{
    aclprofConfig *z = cfg_dev0(0);
    check("init", init_case_dir(), 0);
    check("start", P.Start(z), W(100000, 0));
    check("stop", P.Stop(z), W(100000, 0));
}

/* ---- §2.8 rows: aclprofStop ---------------------------------------------------------------------- */

static void stop_without_init(void) /* MP 100043; RT no-op 0 */
{
    check("stop", P.Stop(cfg_dev0(LEVEL0)), W(100043, 0));
}

static void stop_null(void) /* MP 100000; RT stops whatever runs (0), also when nothing runs */
{
    aclprofConfig *c = cfg_dev0(LEVEL0);
    check("init", init_case_dir(), 0);
    check("stop(NULL) idle", P.Stop(NULL), W(100000, 0));
    check("start", P.Start(c), 0);
    check("stop(NULL) running", P.Stop(NULL), W(100000, 0));
    check("stop(cfg)", P.Stop(c), W(0, 100043)); /* RT: already stopped by Stop(NULL) */
}

static void stop_other_config(void) /* MP: pointer compare → 100010; RT: only if bits differ */
{
    aclprofConfig *a = cfg_dev0(LEVEL0), *same_bits = cfg_dev0(LEVEL0), *other_bits = cfg_dev0(LEVEL1);
    check("init", init_case_dir(), 0);
    check("start", P.Start(a), 0);
    check("stop other bits", P.Stop(other_bits), 100010);
    check("stop other config, same bits", P.Stop(same_bits), W(100010, 0));
    if (!RT) {
        check("stop the started config", P.Stop(a), 0);
    }
}

static void stop_bits_rejected(void) /* Stop checks bits like Start: unsupported → 200007 */
{
    check("init", init_case_dir(), 0);
    check("stop unknown bit", P.Stop(cfg_dev0(LEVEL0 | UNKNOWN_BIT)), 200007);
}

static void stop_twice(void) /* "Stop when device not started (e.g. second Stop)" → 100043 */
{
    aclprofConfig *c = cfg_dev0(LEVEL0);
    check("init", init_case_dir(), 0);
    check("start", P.Start(c), 0);
    check("stop", P.Stop(c), 0);
    check("stop again", P.Stop(c), 100043);
}

static void stop_never_started(void) /* MP compares with the last started config pointer first (100010);
                                        RT: nothing runs → 100043 */
{
    check("init", init_case_dir(), 0);
    check("stop", P.Stop(cfg_dev0(LEVEL0)), W(100010, 100043));
}

/* ---- §2.8 rows: aclprofFinalize ------------------------------------------------------------------ */

static void finalize_without_init(void) /* MP 100043; RT no-op 0 */
{
    check("finalize", P.Finalize(), W(100043, 0));
}

static void finalize_without_stop(void) /* allowed: cancels and finalises (0), then back to OFF */
{
    aclprofConfig *c = cfg_dev0(LEVEL0 | ACL_PROF_MSPROFTX);
    check("init", init_case_dir(), 0);
    check("start", P.Start(c), 0);
    check("finalize", P.Finalize(), 0);
    check("mark after finalize (not running)", P.MarkEx("m", 1, (void *)1), -1);
    check("init again (state is OFF)", init_case_dir(), 0);
    check("stop after re-init (not started)", P.Stop(c), 100043);
}

/* ---- §2.8 rows: aclprofSetConfig ----------------------------------------------------------------- */

static void setconfig_args(void) /* type in (0, ARGS_MAX): MP 11, RT 17; config != NULL; len ≤ 256; len matches */
{
    static char big[300];
    memset(big, '1', 257);
    check("before init (accepted)", P.SetConfig(3, "50", 2), 0);
    check("type 0", P.SetConfig(0, "50", 2), 100000);
    check("type 10", P.SetConfig(10, "50", 2), 0);
    check("type 11", P.SetConfig(11, "50", 2), W(100000, 0));
    check("type 16", P.SetConfig(16, "/tmp", 4), W(100000, 0));
    check("type 17", P.SetConfig(17, "50", 2), 100000);
    check("type -1", P.SetConfig((uint32_t)-1, "50", 2), 100000);
    check("config NULL", P.SetConfig(3, NULL, 2), 100000);
    check("len 257", P.SetConfig(3, big, 257), 100000);
    check("len shorter than string", P.SetConfig(3, "50", 1), W(0, 100000));
    check("len longer than string", P.SetConfig(3, "50", 3), 100000);
    check("value rejected (RT)", P.SetConfig(3, "abc", 3), W(0, 100010));
}

/* ---- §2.8 row: Warmup after Start ---------------------------------------------------------------- */

static void warmup_after_start(void) /* RT 148047; MP has no such check */
{
    aclprofConfig *c = cfg_dev0(LEVEL0);
    check("warmup before init", P.Warmup(c), 100043);
    check("init", init_case_dir(), 0);
    check("warmup", P.Warmup(c), 0);
    check("warmup unknown bit", P.Warmup(cfg_dev0(LEVEL0 | UNKNOWN_BIT)), 200007);
    check("start", P.Start(c), 0);
    check("warmup after start", P.Warmup(c), W(0, 148047));
    check("stop", P.Stop(c), 0);
}

/* ---- fake controls ------------------------------------------------------------------------------- */

static void forced_failures(void) /* FAKE_ACL_FAIL returns the code first and changes no state */
{
    aclprofConfig *c = cfg_dev0(LEVEL0);
    check("init", init_case_dir(), 0);
    setenv("FAKE_ACL_FAIL", "aclprofStart=500005,aclprofStop=100043,aclprofCreateConfig=1", 1);
    check("forced start", P.Start(c), 500005);
    check_true("forced create config", P.CreateConfig(DEV0, 1, METRICS_NONE, NULL, LEVEL0) == NULL);
    check("forced init (not listed)", init_case_dir(), 100002);
    unsetenv("FAKE_ACL_FAIL");
    check("no PROF dir after a forced failure", count_prof_dirs(case_dir(), NULL, 0), 0);
    check("start", P.Start(c), 0);
    setenv("FAKE_ACL_FAIL", "aclprofStop=100043", 1);
    check("forced stop", P.Stop(c), 100043);
    unsetenv("FAKE_ACL_FAIL");
    check("stop (still running)", P.Stop(c), 0);
}

static void supported_features(void) /* §2.2: NULL args / *featuresData != NULL → 100000 */
{
    size_t n = 99;
    void *data = NULL;
    check("V2 default", P.GetFeaturesV2(&n, &data), 0);
    check("V2 default count", (long)n, 0);
    data = NULL;
    setenv("FAKE_ACL_FEATURES", "ATTR,AICORE_SHAPE,MemoryAccess", 1);
    check("V2", P.GetFeaturesV2(&n, &data), 0);
    check("V2 count", (long)n, 3);
    check_true("record 1 name", data != NULL && strcmp((const char *)data + 272 + 8, "AICORE_SHAPE") == 0);
    check("V2 with *data != NULL", P.GetFeaturesV2(&n, &data), 100000);
    data = NULL;
    check("V2 size NULL", P.GetFeaturesV2(NULL, &data), 100000);
    check("V2 data NULL", P.GetFeaturesV2(&n, NULL), 100000);
    check("V1", P.GetFeatures(&n, &data), 0);
    check("V1 count", (long)n, 3);
    data = NULL;
    setenv("FAKE_ACL_FEATURES", "unsupported", 1);
    check("V2 unsupported", P.GetFeaturesV2(&n, &data), 200007);
    check("register device callback", P.RegisterDeviceCallback(), 0);
}

/* ---- msproftx rules (end of §2.8) ---------------------------------------------------------------- */

static void stamps(void)
{
    uint32_t range = 0;
    void *stream = (void *)0x1;
    check_true("create stamp when idle → NULL", P.CreateStamp() == NULL);
    check("mark when idle", P.Mark(NULL), -1);
    check("pop when idle", P.Pop(), -1);
    aclprofConfig *no_tx = cfg_dev0(LEVEL0), *tx = cfg_dev0(LEVEL0 | ACL_PROF_MSPROFTX);
    check("init", init_case_dir(), 0);
    check("start without MSPROFTX", P.Start(no_tx), 0);
    check_true("create stamp without MSPROFTX → NULL", P.CreateStamp() == NULL);
    check("stop", P.Stop(no_tx), 0);
    check("start with MSPROFTX", P.Start(tx), 0);
    void *s = P.CreateStamp();
    check_true("create stamp", s != NULL);
    check("trace message", P.SetStampTraceMessage(s, "hello", 5), 0);
    static char m128[129];
    memset(m128, 'm', 128);
    check("trace message 127", P.SetStampTraceMessage(s, m128, 127), 0);
    check("trace message 128", P.SetStampTraceMessage(s, m128, 128), -1);
    check("mark", P.Mark(s), 0);
    check("mark NULL", P.Mark(NULL), -1);
    check("push", P.Push(s), 0);
    check("push NULL", P.Push(NULL), W(-1, 100000));
    check("pop", P.Pop(), 0);
    check("pop empty", P.Pop(), -1);
    check("range start", P.RangeStart(s, &range), 0);
    check_true("range id set", range != 0);
    check("range start NULL stamp", P.RangeStart(NULL, &range), W(-1, 100000));
    check("range start NULL id", P.RangeStart(s, NULL), W(-1, 100000));
    check("range stop", P.RangeStop(range), 0);
    check("range stop again", P.RangeStop(range), -1);
    check("markex", P.MarkEx("abc", 3, stream), 0);
    check("markex NULL stream", P.MarkEx("abc", 3, NULL), -1);
    check("markex len 0", P.MarkEx("", 0, stream), -1);
    check("markex len < strlen", P.MarkEx("abc", 2, stream), W(0, -1)); /* MP strnlen, RT strlen */
    check("markex len > strlen", P.MarkEx("abc", 4, stream), -1);
    P.DestroyStamp(NULL); /* no-op */
    check("stop", P.Stop(tx), 0);
    check("mark after stop", P.Mark(s), -1);
    P.DestroyStamp(s);
}

static void msproftx_only_session(void) /* deviceNums == 0 with MSPROFTX: host only, no device dir */
{
    aclprofConfig *c = cfg(NULL, 0, METRICS_NONE, NULL, ACL_PROF_MSPROFTX);
    char prof[PATH_MAX + 300];
    check_true("config", c != NULL);
    check("init", init_case_dir(), 0);
    check("start", P.Start(c), 0);
    P.fake_launch("ignored", "N/A", "AI_CORE", 1, 1000); /* no device: no task */
    check("stop", P.Stop(c), 0);
    check("PROF dirs", count_prof_dirs(case_dir(), prof, sizeof prof), 1);
    check_true("host/info.json", exists("%s/host/info.json", prof));
    check_true("no device_0", !exists("%s/device_0", prof));
}

static void one_prof_dir_per_session(void) /* Start/Stop/Start/Stop within one Init: two PROF dirs */
{
    aclprofConfig *c = cfg_dev0(LEVEL0);
    check("init", init_case_dir(), 0);
    check("start 1", P.Start(c), 0);
    check("stop 1", P.Stop(c), 0);
    check("start 2", P.Start(c), 0);
    check("stop 2", P.Stop(c), 0);
    check("PROF dirs", count_prof_dirs(case_dir(), NULL, 0), 2);
}

struct other_thread {
    void *ctx;
    int none, set, got;
    int32_t dev;
};

static void *thread_get_device(void *arg) /* a new thread: no current context until it sets one */
{
    struct other_thread *o = arg;
    o->none = P.aclrtGetDevice(&o->dev);
    o->set = P.aclrtSetCurrentContext(o->ctx);
    o->got = P.aclrtGetDevice(&o->dev);
    return NULL;
}

static void get_device(void) /* fake libascendcl: aclrtGetDevice answers from the calling thread's context */
{
    int32_t dev = -1;
    check("no device set", P.aclrtGetDevice(&dev), 107002);
    check("bad device", P.aclrtSetDevice(99), 107001);
    check("still none", P.aclrtGetDevice(&dev), 107002);
    check("set device", P.aclrtSetDevice(3), 0);
    check("device set", P.aclrtGetDevice(&dev), 0);
    check("device id", dev, 3);
    check("NULL", P.aclrtGetDevice(NULL), 100000);
    void *ctx = NULL;
    check("create context", P.aclrtCreateContext(&ctx, 5), 0);
    check("created is current", P.aclrtGetDevice(&dev), 0);
    check("device of created", dev, 5);
    check("set NULL context", P.aclrtSetCurrentContext(NULL), 100000);
    /* Another thread sees no device although this one set two; it does once it takes the context. */
    struct other_thread o = {ctx, -1, -1, -1, -1};
    pthread_t t;
    check("pthread_create", pthread_create(&t, NULL, thread_get_device, &o), 0);
    pthread_join(t, NULL);
    check("other thread: no context", o.none, 107002);
    check("other thread: set context", o.set, 0);
    check("other thread: its device", o.got, 0);
    check("other thread: device id", o.dev, 5);
    check("back on the device's context", P.aclrtSetDevice(3), 0);
    check("device again", P.aclrtGetDevice(&dev), 0);
    check("device id again", dev, 3);
}

/* ---- happy path, in a forked child so its log ends with the fake's exit line ------------------- */

static int happy_path_child(const char *log)
{
    const char *d = case_dir();
    int bad = 0;
#define HP(step, got, want)                                                                            \
    do {                                                                                               \
        long g_ = (long)(got), w_ = (long)(want);                                                      \
        if (g_ != w_) {                                                                                \
            printf("FAIL %s: %s got %ld want %ld\n", g_case, step, g_, w_);                            \
            bad = 1;                                                                                   \
        }                                                                                              \
    } while (0)
    setenv("FAKE_ACL_LOG", log, 1);
    HP("init", P.Init(d, strlen(d)), 0);
    aclprofConfig *c = P.CreateConfig(DEV0, 1, METRICS_PIPE, NULL, LEVEL1);
    HP("create config", c != NULL, 1);
    HP("set config", P.SetConfig(3, "50", 2), 0);
    HP("start", P.Start(c), 0);
    P.fake_launch("MatMul_1", "MatMul", "AI_CORE", 1, 20000);
    P.fake_launch("Add_2", "Add", "AI_VECTOR_CORE", 1, 5000);
    P.fake_launch("hcom_allReduce_3", "N/A", "COMMUNICATION", 2, 30000);
    HP("stop", P.Stop(c), 0);
    HP("destroy config", P.DestroyConfig(c), 0);
    HP("finalize", P.Finalize(), 0);
    P.fake_launch("after", "Add", "AI_CORE", 1, 1000); /* not running: ignored */

    char prof[PATH_MAX + 300], data[PATH_MAX * 2];
    HP("PROF dirs", count_prof_dirs(d, prof, sizeof prof), 1);
    const char *base = strrchr(prof, '/') + 1;
    /* PROF_<6 digits>_<17 digits>_<16 letters> */
    HP("PROF name length", (long)strlen(base), 5 + 6 + 1 + 17 + 1 + 16);
    static const char *files[] = {"%s/host/start_info",      "%s/host/start_info.done", "%s/host/end_info",
                                  "%s/host/end_info.done",   "%s/host/info.json",       "%s/host/info.json.done",
                                  "%s/host/sample.json",     "%s/host/sample.json.done", "%s/device_0/start_info.0",
                                  "%s/device_0/info.json.0", "%s/device_0/info.json.0.done", "%s/device_0/data"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        if (!exists(files[i], prof)) {
            printf("FAIL %s: missing %s\n", g_case, files[i] + 3);
            bad = 1;
        }
    }
    snprintf(data, sizeof data, "%s/device_0/data/fake_task.data.0.slice_0", prof);
    HP("data file lines", count_lines(data), 3);
    fflush(stdout);
    return bad;
#undef HP
}

static int read_file(const char *path, char *buf, size_t sz)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return -1;
    }
    size_t n = fread(buf, 1, sz - 1, f);
    buf[n] = '\0';
    fclose(f);
    return 0;
}

static void happy_path(void)
{
    char log[PATH_MAX + 64];
    snprintf(log, sizeof log, "%s/happy_path.log", WORK);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        exit(happy_path_child(log)); /* exit(): runs the fake's destructor (exit line) */
    }
    int status = 0;
    waitpid(pid, &status, 0);
    check("child exit status", WIFEXITED(status) ? WEXITSTATUS(status) : 128, 0);

    /* Exact log lines (the happy path is the first case, so its config is cfg1). */
    const char *d = case_dir();
    char want[8192], got[8192];
    snprintf(want, sizeof want,
             "aclprofInit path=%s len=%zu -> 0\n"
             "aclprofCreateConfig n=1 devs=0 metrics=1 events=null %s -> cfg1\n"
             "aclprofSetConfig type=3 config=50 len=2 -> 0\n"
             "aclprofStart cfg=cfg1 -> 0\n"
             "aclprofStop cfg=cfg1 -> 0\n"
             "aclprofDestroyConfig cfg=cfg1 -> 0\n"
             "aclprofFinalize -> 0\n"
             "exit state=off configs=0\n",
             d, strlen(d), RT ? "bits=0x4000000000000867 req=0x27" : "bits=0x27");
    check("read log", read_file(log, got, sizeof got), 0);
    if (strcmp(want, got) != 0) {
        printf("FAIL %s: log differs\n--- want\n%s--- got\n%s---\n", g_case, want, got);
        g_case_failed = 1;
    }
}

/* ---- main ---------------------------------------------------------------------------------------- */

static void *sym(void *h, const char *name)
{
    void *p = dlsym(h, name);
    if (p == NULL) {
        fprintf(stderr, "acl_order: missing symbol %s: %s\n", name, dlerror());
        exit(2);
    }
    return p;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: acl_order DIR/libascendcl.so [WORKDIR]\n");
        return 2;
    }
    const char *gen = getenv("FAKE_ACL_GEN");
    RT = gen != NULL && strcmp(gen, "rt") == 0;

    char libdir[PATH_MAX], msprofiler[PATH_MAX + 32];
    snprintf(libdir, sizeof libdir, "%s", argv[1]);
    snprintf(msprofiler, sizeof msprofiler, "%s/libmsprofiler.so", dirname(libdir));
    void *acl = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (acl == NULL) {
        fprintf(stderr, "acl_order: %s\n", dlerror());
        return 2;
    }
    void *msp = dlopen(msprofiler, RTLD_LAZY | RTLD_GLOBAL);
    if (msp == NULL) {
        fprintf(stderr, "acl_order: %s\n", dlerror());
        return 2;
    }
    /* the session functions through libascendcl (found in its DT_NEEDED libmsprofiler) */
    *(void **)&P.Init = sym(acl, "aclprofInit");
    *(void **)&P.Finalize = sym(acl, "aclprofFinalize");
    *(void **)&P.CreateConfig = sym(acl, "aclprofCreateConfig");
    *(void **)&P.DestroyConfig = sym(acl, "aclprofDestroyConfig");
    *(void **)&P.Start = sym(acl, "aclprofStart");
    *(void **)&P.Stop = sym(acl, "aclprofStop");
    *(void **)&P.aclrtGetDevice = sym(acl, "aclrtGetDevice");
    *(void **)&P.aclrtSetDevice = sym(acl, "aclrtSetDevice");
    *(void **)&P.aclrtCreateContext = sym(acl, "aclrtCreateContext");
    *(void **)&P.aclrtSetCurrentContext = sym(acl, "aclrtSetCurrentContext");
    /* the rest through libmsprofiler */
    *(void **)&P.SetConfig = sym(msp, "aclprofSetConfig");
    *(void **)&P.Warmup = sym(msp, "aclprofWarmup");
    *(void **)&P.GetFeatures = sym(msp, "aclprofGetSupportedFeatures");
    *(void **)&P.GetFeaturesV2 = sym(msp, "aclprofGetSupportedFeaturesV2");
    *(void **)&P.RegisterDeviceCallback = sym(msp, "aclprofRegisterDeviceCallback");
    *(void **)&P.CreateStamp = sym(msp, "aclprofCreateStamp");
    *(void **)&P.DestroyStamp = sym(msp, "aclprofDestroyStamp");
    *(void **)&P.SetStampTraceMessage = sym(msp, "aclprofSetStampTraceMessage");
    *(void **)&P.Mark = sym(msp, "aclprofMark");
    *(void **)&P.MarkEx = sym(msp, "aclprofMarkEx");
    *(void **)&P.Push = sym(msp, "aclprofPush");
    *(void **)&P.Pop = sym(msp, "aclprofPop");
    *(void **)&P.RangeStart = sym(msp, "aclprofRangeStart");
    *(void **)&P.RangeStop = sym(msp, "aclprofRangeStop");
    *(void **)&P.fake_launch = sym(msp, "fake_launch");
    if (dlsym(acl, "aclprofSetConfig") != (void *)P.SetConfig) {
        fprintf(stderr, "acl_order: libascendcl does not resolve to the libmsprofiler definitions\n");
        return 2;
    }

    int own_work = argc < 3;
    if (own_work) {
        char tmpl[] = "/tmp/acl_order.XXXXXX";
        if (mkdtemp(tmpl) == NULL) {
            perror("mkdtemp");
            return 2;
        }
        snprintf(WORK, sizeof WORK, "%s", tmpl);
    } else {
        if (mkdir(argv[2], 0755) != 0 && errno != EEXIST) {
            perror(argv[2]);
            return 2;
        }
        if (realpath(argv[2], WORK) == NULL) {
            perror(argv[2]);
            return 2;
        }
    }
    printf("# acl_order: generation %s, workdir %s\n", RT ? "rt" : "mp", WORK);

#define CASE(fn) run_case(#fn, fn)
    CASE(happy_path); /* first: its config is cfg1 in the log */
    CASE(init_twice);
    CASE(init_null);
    CASE(init_len_zero);
    CASE(init_len_shorter);
    CASE(init_len_longer);
    CASE(init_len_max);
    CASE(init_dynamic_mode);
    CASE(init_under_msprof_cmd);
    CASE(init_in_subscribe_mode);
    CASE(cmd_mode_calls);
    CASE(create_config_invalid);
    CASE(destroy_config_null);
    CASE(start_null);
    CASE(start_without_init);
    CASE(start_again_same);
    CASE(start_again_other_bits);
    CASE(start_bits_rejected);
    CASE(start_bits_zero);
    CASE(stop_without_init);
    CASE(stop_null);
    CASE(stop_other_config);
    CASE(stop_bits_rejected);
    CASE(stop_twice);
    CASE(stop_never_started);
    CASE(finalize_without_init);
    CASE(finalize_without_stop);
    CASE(setconfig_args);
    CASE(warmup_after_start);
    CASE(forced_failures);
    CASE(supported_features);
    CASE(stamps);
    CASE(msproftx_only_session);
    CASE(one_prof_dir_per_session);
    CASE(get_device);
#undef CASE

    if (own_work && getenv("ACL_ORDER_KEEP") == NULL) {
        nftw(WORK, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    }
    printf("acl_order: %d passed, %d failed\n", g_passed, g_failed);
    return g_failed ? 1 : 0;
}
