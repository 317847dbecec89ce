/* Fake libmsprofiler.so: the aclprof API of CANN, without a device.
 *
 * Test fake for npuprof's aclprof backend. It exports the aclprof entry points with exactly the
 * signatures of the real library (docs/ascend-api.md §2.2) and returns the codes of the
 * call-order/misuse table of §2.8, for either implementation generation:
 *
 *   FAKE_ACL_GEN=mp (default)  MindStudio msprof collector, Dec 2025 ("MP" column of §2.8)
 *   FAKE_ACL_GEN=rt            open-sourced CANN runtime, Aug 2026 ("RT HEAD" column of §2.8)
 *
 * On a successful aclprofStart it creates a PROF_* directory laid out like the real one
 * (msprof-export.md §1.1/§1.2) and on aclprofStop it writes the control files plus one raw data file
 * in a fake format (one device task per line, see write_data_file()) that tests/fake/msprof turns into
 * the msprof export files. Device tasks are produced by the test-only export fake_launch().
 *
 * Device time: a task starts 5 us after its launch (later if its stream is busy), on CLOCK_MONOTONIC_RAW,
 * which msprof maps to CANN's wall clock through host/start_info. When the client tells the fake where its
 * host steps are (test-only fake_acl_step(n) right after the host step n began, fake_acl_step(0) right before
 * it ends), a task launched inside step n starts instead at the middle of that window (never before its
 * launch): the window lies inside the host step whatever the scheduler does, so a task's step no longer
 * depends on how late in the step the launch ran, only on npuprof mapping the clocks within half a step.
 * Each launch inside a marked step is logged as "fake_launch name=<name> stream=<s> task=<id> step=<n>", the
 * tests' record of which host step launched which device task.
 *
 * Environment (read at each call):
 *   FAKE_ACL_GEN              mp | rt                       which §2.8 column to return
 *   FAKE_ACL_OTHER_PROFILER   cmd | subscribe               pretend the msprof CLI / a model subscriber owns profiling
 *   FAKE_ACL_FAIL             func=code[,func=code...]      force a return code, before any other check, state unchanged
 *   FAKE_ACL_LOG              path                          append one line per call (see log_line())
 *   FAKE_ACL_DEVICE_COUNT     n (default 8)                 devices the "driver" reports to aclprofCreateConfig
 *   FAKE_ACL_DEVICE           id                            the active device (rt aclprofStart(NULL) default config)
 *   FAKE_ACL_FEATURES         comma list | unsupported      records returned by aclprofGetSupportedFeatures[V2]
 *   FAKE_ACL_OUTPUT_SYMLINK   dir                           adversarial: at Stop, PROF_.../mindstudio_profiler_output
 *                                                           is made a symlink to dir (stale output that is a link)
 *   FAKE_ACL_FEATURES_LAYOUT  256                           adversarial: records packed at 256 bytes (no vptrs)
 *   FAKE_ACL_FEATURES_COUNT   n                             adversarial: report n records whatever the list holds
 *                             (with either of the two above, the records end at an unmapped guard page)
 *   FAKE_ACL_CLOCK_SKEW_US    signed integer (default 0)    added to CANN's wall clock in start_info/end_info
 *   FAKE_ACL_NO_DATA          1                             write no device data file at aclprofStop
 *   FAKE_ACL_HANG             func=seconds|forever[,...]    that call blocks its caller first, before the global
 *                                                           mutex (fake_hang.h; "forever" ends at fake_acl_release())
 *   PROFILING_MODE            dynamic                       aclprofInit → 200006 (as the real one)
 *
 * Check order inside each function follows the real code (MP collector/dvvp/msprof/engine/src/
 * prof_acl_core.cpp + prof_acl_mgr.cpp; RT profimpl/adapter/src/msprofiler_acl_api.cpp): FAKE_ACL_FAIL,
 * then argument checks, then mode checks (CMD, not inited), then session state. Each rule names the
 * §2.8 row it implements.
 *
 * All state is under one global mutex, as in the real library (§2.8 "All entry points serialise on
 * one global mutex"). The destructor writes "exit state=off|inited|running configs=<n>" to the log when
 * the library is unloaded (process exit, or a dlclose that really unloads it).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------------------------------------
 * Own declarations of the public types (ascend-api.md §2.1, §2.4, §2.5). No CANN header is used.
 * ---------------------------------------------------------------------------------------------- */

typedef int aclError;
typedef void *aclrtStream;

typedef enum aclprofAicoreMetrics {
    ACL_AICORE_ARITHMETIC_UTILIZATION = 0,
    ACL_AICORE_PIPE_UTILIZATION = 1,
    ACL_AICORE_MEMORY_BANDWIDTH = 2,
    ACL_AICORE_L0B_AND_WIDTH = 3,
    ACL_AICORE_RESOURCE_CONFLICT_RATIO = 4,
    ACL_AICORE_MEMORY_UB = 5,
    ACL_AICORE_L2_CACHE = 6,
    ACL_AICORE_PIPE_EXECUTE_UTILIZATION = 7,
    ACL_AICORE_MEMORY_ACCESS = 8,
    ACL_AICORE_NONE = 0xFF
} aclprofAicoreMetrics;

/* Only the bounds matter to the fake; the values in between are §2.5's table. */
typedef enum aclprofConfigType {
    ACL_PROF_ARGS_MIN = 0,
    ACL_PROF_STORAGE_LIMIT = 1,
    ACL_PROF_SYS_HARDWARE_MEM_FREQ = 3,
    ACL_PROF_LLC_MODE = 4,
    ACL_PROF_SYS_IO_FREQ = 5,
    ACL_PROF_SYS_INTERCONNECTION_FREQ = 6,
    ACL_PROF_DVPP_FREQ = 7,
    ACL_PROF_HOST_SYS = 8,
    ACL_PROF_HOST_SYS_USAGE = 9,
    ACL_PROF_HOST_SYS_USAGE_FREQ = 10,
    ACL_PROF_LOW_POWER_FREQ = 11,
    ACL_PROF_SYS_MEM_SERVICEFLOW = 12,
    ACL_PROF_SYS_CPU_FREQ = 13,
    ACL_PROF_OPTYPE = 14,
    ACL_PROF_NTS_METRICS = 15,
    ACL_PROF_PATH = 16,
    ACL_PROF_ARGS_MAX = 17 /* RT value; the MP (old) enum ends at 11 */
} aclprofConfigType;

_Static_assert(sizeof(aclprofAicoreMetrics) == 4, "enums are 4-byte ints (§2.1)");
_Static_assert(sizeof(aclprofConfigType) == 4, "enums are 4-byte ints (§2.1)");

typedef struct aclprofAicoreEvents aclprofAicoreEvents; /* opaque; must be NULL */
typedef struct aclprofConfig aclprofConfig;             /* opaque to callers, defined below */

/* §2.7 error codes */
#define ACL_SUCCESS 0
#define ACL_ERROR_INVALID_PARAM 100000
#define ACL_ERROR_REPEAT_INITIALIZE 100002
#define ACL_ERROR_INVALID_FILE 100003
#define ACL_ERROR_INVALID_PROFILING_CONFIG 100010
#define ACL_ERROR_PROF_ALREADY_RUN 100042
#define ACL_ERROR_PROF_NOT_RUN 100043
#define ACL_ERROR_PROF_API_CONFLICT 148047
#define ACL_ERROR_FEATURE_UNSUPPORTED 200006
#define ACL_ERROR_PROF_MODULES_UNSUPPORTED 200007
#define ACL_ERROR_PROFILING_FAILURE 500005
#define PROFILING_FAILED (-1) /* msproftx functions: collector-internal code (§2.7 "Surprise") */

/* §2.3 dataTypeConfig bits */
#define ACL_PROF_ACL_API 0x0001ULL
#define ACL_PROF_TASK_TIME 0x0002ULL /* = task time L1 */
#define ACL_PROF_AICORE_METRICS 0x0004ULL
#define ACL_PROF_TRAINING_TRACE 0x0040ULL
#define ACL_PROF_MSPROFTX 0x0080ULL
#define ACL_PROF_GE_API_L0 0x0200ULL
#define ACL_PROF_TASK_TIME_L0 0x0800ULL
#define ACL_PROF_TASK_TIME_L2 0x2000ULL
#define ACL_PROF_OP_ATTR 0x4000ULL
#define ACL_PROF_TASK_TIME_L3 0x8000ULL
#define ACL_PROF_GE_API_L1 0x01000000ULL
#define ACL_PROF_API_STATS 0x400000000ULL
#define ACL_PROF_AICORE_SHAPE 0x800000000ULL
#define PROF_AICPU_MODEL 0x4000000000000000ULL /* RT-internal bit, ORed into every RT config */

/* §2.3 accepted-bits masks (bits outside → 200007 at Start/Stop/Warmup) */
#define MP_SWITCH_SUPPORT 0x59FFULL
#define RT_SWITCH_SUPPORT                                                                              \
    (MP_SWITCH_SUPPORT | ACL_PROF_GE_API_L0 | ACL_PROF_GE_API_L1 | ACL_PROF_TASK_TIME_L2 |             \
     ACL_PROF_TASK_TIME_L3 | ACL_PROF_API_STATS | ACL_PROF_AICORE_SHAPE | PROF_AICPU_MODEL)

/* RT default config of aclprofStart(NULL): Platform::GetDefaultDataTypeConfig() =
 * ACL_API | TASK_TIME_L1 | TASK_TIME(L0) | AICORE_METRICS | AICPU_MODEL, metrics PipeUtilization. */
#define RT_DEFAULT_BITS                                                                                \
    (ACL_PROF_ACL_API | ACL_PROF_TASK_TIME | ACL_PROF_TASK_TIME_L0 | ACL_PROF_AICORE_METRICS |         \
     PROF_AICPU_MODEL)

#define MAX_DEV_NUM 64      /* MSVP_MAX_DEV_NUM: CreateConfig rejects deviceNums > 64 */
#define MAX_CONFIG_LEN 256  /* SetConfig: configLength <= 256 */
#define MAX_TX_MSG 128      /* msproftx message buffer (stampInfo.message[128]) */
#define MAX_TASKS 1000000   /* fake_launch keeps at most this many tasks per session */
#define MAX_FEATURES 32
#define MAX_STREAMS 4096
#define MAX_RANGES 4096
#define MAX_STEPS 4096      /* host step windows remembered (step n in slot n % MAX_STEPS) */
#define PATH_CAP 4096              /* result path (PATH_MAX) */
#define PROF_CAP (PATH_CAP + 256)  /* <path>/PROF_<index>_<stamp>_<letters> */
#define FILE_CAP (PROF_CAP + 256)  /* files under the PROF directory */

#define API __attribute__((visibility("default")))

/* ------------------------------------------------------------------------------------------------
 * State
 * ---------------------------------------------------------------------------------------------- */

#define CFG_MAGIC 0x43464721u /* "CFG!" */
#define STAMP_MAGIC 0x53544d21u

struct aclprofConfig {
    uint32_t magic;
    int num;       /* cfgN in the log, in creation order */
    int destroyed; /* configs are never freed, so a stale pointer is still recognisable */
    uint32_t n;
    uint32_t devs[MAX_DEV_NUM];
    uint32_t metrics;
    uint64_t bits; /* as stored: RT adds implied bits */
};

struct stamp {
    uint32_t magic;
    int num; /* sN in the log */
    char msg[MAX_TX_MSG];
};

struct task {
    uint64_t tid, launch_ns, start_ns, dur_ns, task_id;
    uint64_t step; /* the host step (fake_acl_step) it was launched in, 0: none */
    uint32_t stream, block_dim;
    char *name, *op_type, *task_type;
};

struct stream_state {
    uint32_t id;
    uint64_t end_ns;
    uint64_t next_task_id;
};

enum mode { MODE_OFF, MODE_API }; /* §2.8: OFF | API_CTRL (CMD/SUBSCRIBE come from FAKE_ACL_OTHER_PROFILER) */

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;

static struct {
    enum mode mode;
    char path[PATH_CAP];      /* absolute result path of the current init */
    char prev_path[PATH_CAP]; /* RT: aclprofStart without Init re-uses the previous path, else "./" */

    /* the running session */
    int running;
    const aclprofConfig *running_ptr; /* as passed to Start (NULL: RT default config) */
    int running_num;                  /* its cfgN, 0 for the RT default config */
    uint64_t running_bits;
    uint32_t running_metrics;
    int running_dev; /* first device of the config, -1 for deviceNums == 0 */
    const aclprofConfig *mp_started_ptr; /* MP profStratCfg_: set at Start, never reset */
    int warmed;

    /* PROF_* directory of the running (or last) session */
    unsigned prof_index; /* 6-digit index, process-wide from 1 */
    char prof_dir[PROF_CAP];

    /* aclprofSetConfig values, reported in sample.json */
    char set_config[ACL_PROF_ARGS_MAX][MAX_CONFIG_LEN + 1];
    int set_config_present[ACL_PROF_ARGS_MAX];

    /* configs and stamps ever created */
    aclprofConfig **cfgs;
    size_t ncfgs, cap_cfgs;
    struct stamp **stamps;
    size_t nstamps, cap_stamps;
    int stamp_counter;
    uint32_t ranges[MAX_RANGES];
    size_t nranges;
    uint32_t next_range;

    /* device tasks of the running session */
    struct task *tasks;
    size_t ntasks, cap_tasks;
    struct stream_state streams[MAX_STREAMS];
    size_t nstreams;

    /* host steps the client told about (fake_acl_step): the step now open (0: none) and each window */
    uint64_t cur_step;
    struct {
        uint64_t step, begin_ns, end_ns; /* end_ns 0: not ended yet */
    } steps[MAX_STEPS];
} S;

static __thread int tx_push_depth; /* msproftx Push/Pop stack depth of this thread */

/* Feature records returned by aclprofGetSupportedFeatures[V2]: CANN's C++ `FeatureRecord`
 * (`char featureName[64]; FeatureInfo info;` with virtual destructors in both, as MindSpore's and torch_npu's
 * copies of the struct also declare), so under the Itanium C++ ABI each starts with a vtable pointer:
 * name at +8, info's fields at +80, 272 bytes per record. The fake fills the vptrs with a recognisable
 * non-pointer so a reader that takes them for names fails visibly. */
struct feature_record {
    uint64_t vptr;
    char featureName[64];
    struct {
        uint64_t vptr;
        char compatibility[16];
        char featureVersion[16];
        char affectedComponent[16];
        char affectedComponentVersion[16];
        char infoLog[128];
    } info;
};
_Static_assert(sizeof(struct feature_record) == 272, "feature record is 272 bytes");
static struct feature_record g_features[MAX_FEATURES];

/* ------------------------------------------------------------------------------------------------
 * Environment helpers
 * ---------------------------------------------------------------------------------------------- */

/* FAKE_ACL_GEN: 1 for the RT column of §2.8, 0 for MP (default, and any other value). */
static int gen_rt(void)
{
    const char *g = getenv("FAKE_ACL_GEN");
    return g != NULL && strcmp(g, "rt") == 0;
}

static int other_profiler(const char *what)
{
    const char *o = getenv("FAKE_ACL_OTHER_PROFILER");
    return o != NULL && strcmp(o, what) == 0;
}

/* FAKE_ACL_FAIL="func=code,func=code": returns 1 and sets *code if `func` is listed. */
static int forced_failure(const char *func, int *code)
{
    const char *f = getenv("FAKE_ACL_FAIL");
    size_t flen = strlen(func);
    while (f != NULL && *f != '\0') {
        const char *end = strchr(f, ',');
        size_t len = end ? (size_t)(end - f) : strlen(f);
        if (len > flen && strncmp(f, func, flen) == 0 && f[flen] == '=') {
            *code = (int)strtol(f + flen + 1, NULL, 10);
            return 1;
        }
        f = end ? end + 1 : NULL;
    }
    return 0;
}

static long long env_ll(const char *name, long long dflt)
{
    const char *v = getenv(name);
    if (v == NULL || *v == '\0') {
        return dflt;
    }
    char *end = NULL;
    long long x = strtoll(v, &end, 10);
    return (end != NULL && *end == '\0') ? x : dflt;
}

static uint32_t device_count(void)
{
    long long n = env_ll("FAKE_ACL_DEVICE_COUNT", 8);
    return n < 0 ? 0 : (uint32_t)n;
}

/* ------------------------------------------------------------------------------------------------
 * Log: one line per call, "<func> <key>=<value> ... -> <ret>", appended with a single write() to a
 * file opened O_APPEND for this line only, so lines of forked / exiting processes are never lost.
 * ---------------------------------------------------------------------------------------------- */

#define FAKE_LOG_ENV "FAKE_ACL_LOG"
#include "fake_log.h"
#define FAKE_HANG_ENV "FAKE_ACL_HANG"
#include "fake_hang.h"

/* Test-only exports for fake_ascendcl.c (its DT_NEEDED), so both fakes share one fault-injection parser and
 * one log writer. `line` has no trailing newline. */
__attribute__((visibility("default"))) int fake_forced_failure(const char *func, int *code)
{
    return forced_failure(func, code);
}

__attribute__((visibility("default"))) void fake_log(const char *line)
{
    log_line("%s", line);
}

/* Copies at most `max` bytes of s (stopping at NUL) into out, with control characters replaced by
 * '?', so a value never breaks the one-line log format. NULL → "null". */
static const char *printable(char *out, size_t outsz, const char *s, size_t max)
{
    if (s == NULL) {
        snprintf(out, outsz, "null");
        return out;
    }
    size_t i = 0;
    for (; i < max && i + 1 < outsz && s[i] != '\0'; i++) {
        unsigned char c = (unsigned char)s[i];
        out[i] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    out[i] = '\0';
    return out;
}

static const char *cfg_name(char *out, size_t outsz, const aclprofConfig *cfg);

/* ------------------------------------------------------------------------------------------------
 * Small utilities
 * ---------------------------------------------------------------------------------------------- */

static uint64_t clock_ns(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static int mkdir_p(const char *path)
{
    char tmp[PATH_CAP];
    size_t len = strlen(path);
    if (len == 0 || len >= sizeof tmp) {
        return -1;
    }
    memcpy(tmp, path, len + 1);
    for (char *p = tmp + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(tmp, 0755) != 0 && errno != EEXIST) {
                return -1;
            }
            *p = '/';
        }
    }
    if (mkdir(tmp, 0755) != 0 && errno != EEXIST) {
        return -1;
    }
    struct stat st;
    return (stat(tmp, &st) == 0 && S_ISDIR(st.st_mode)) ? 0 : -1;
}

/* Writes a whole small file, then the matching "<name>.done" marker (as CANN does). */
static int write_file_done(const char *dir, const char *name, const char *content)
{
    char p[FILE_CAP];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    if (f == NULL) {
        return -1;
    }
    fputs(content, f);
    if (fclose(f) != 0) {
        return -1;
    }
    snprintf(p, sizeof p, "%s/%s.done", dir, name);
    f = fopen(p, "w");
    if (f == NULL) {
        return -1;
    }
    return fclose(f);
}

/* JSON string body escaping for the few user-provided strings written into sample.json. */
static void json_escape(char *out, size_t outsz, const char *s)
{
    size_t o = 0;
    for (; *s != '\0' && o + 7 < outsz; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c < 0x20) {
            o += (size_t)snprintf(out + o, outsz - o, "\\u%04x", c);
        } else {
            out[o++] = (char)c;
        }
    }
    out[o] = '\0';
}

static char *dup_field(const char *s, const char *dflt)
{
    if (s == NULL || *s == '\0') {
        s = dflt;
    }
    char *d = strdup(s);
    if (d != NULL) {
        for (char *p = d; *p; p++) {
            if (*p == '\t' || *p == '\n' || *p == '\r') {
                *p = ' '; /* the raw data file is tab/newline separated */
            }
        }
    }
    return d;
}

/* ------------------------------------------------------------------------------------------------
 * Config and stamp registries
 * ---------------------------------------------------------------------------------------------- */

/* Returns the config if `p` is one this library created (destroyed or not), else NULL. */
static aclprofConfig *find_cfg(const aclprofConfig *p)
{
    for (size_t i = 0; i < S.ncfgs; i++) {
        if (S.cfgs[i] == p) {
            return S.cfgs[i];
        }
    }
    return NULL;
}

static const char *cfg_name(char *out, size_t outsz, const aclprofConfig *cfg)
{
    if (cfg == NULL) {
        snprintf(out, outsz, "null");
    } else {
        aclprofConfig *c = find_cfg(cfg);
        if (c == NULL) {
            snprintf(out, outsz, "unknown");
        } else {
            snprintf(out, outsz, "cfg%d", c->num);
        }
    }
    return out;
}

static size_t live_configs(void)
{
    size_t n = 0;
    for (size_t i = 0; i < S.ncfgs; i++) {
        n += !S.cfgs[i]->destroyed;
    }
    return n;
}

static struct stamp *find_stamp(const void *p)
{
    for (size_t i = 0; i < S.nstamps; i++) {
        if (S.stamps[i] == p) {
            return S.stamps[i];
        }
    }
    return NULL;
}

static const char *stamp_name(char *out, size_t outsz, const void *p)
{
    struct stamp *s = p ? find_stamp(p) : NULL;
    if (p == NULL) {
        snprintf(out, outsz, "null");
    } else if (s == NULL) {
        snprintf(out, outsz, "unknown");
    } else {
        snprintf(out, outsz, "s%d", s->num);
    }
    return out;
}

/* ------------------------------------------------------------------------------------------------
 * PROF_* directory (msprof-export.md §1.1, §1.2)
 * ---------------------------------------------------------------------------------------------- */

static const char *metrics_name(uint32_t m)
{
    switch (m) {
    case ACL_AICORE_ARITHMETIC_UTILIZATION: return "ArithmeticUtilization";
    case ACL_AICORE_PIPE_UTILIZATION: return "PipeUtilization";
    case ACL_AICORE_MEMORY_BANDWIDTH: return "Memory";
    case ACL_AICORE_L0B_AND_WIDTH: return "MemoryL0";
    case ACL_AICORE_RESOURCE_CONFLICT_RATIO: return "ResourceConflictRatio";
    case ACL_AICORE_MEMORY_UB: return "MemoryUB";
    case ACL_AICORE_L2_CACHE: return "L2Cache";
    case ACL_AICORE_PIPE_EXECUTE_UTILIZATION: return "PipeExecuteUtilization";
    case ACL_AICORE_MEMORY_ACCESS: return "MemoryAccess";
    default: return ""; /* ACL_AICORE_NONE and anything unknown */
    }
}

/* CANN's wall clock: the caller's CLOCK_REALTIME plus FAKE_ACL_CLOCK_SKEW_US, sampled together with
 * CLOCK_MONOTONIC_RAW. Fills `{"<date key>": ..., "<time key>": ..., "clockMonotonicRaw": ...}`. */
static void time_info_json(char *out, size_t outsz, const char *date_key, const char *time_key,
                           struct tm *tm_out, int *ms_out)
{
    /* The tightest of 15 pairs (CLOCK_REALTIME bracketed by two CLOCK_MONOTONIC_RAW reads), as a driver
     * samples it: one pair taken while the thread is preempted (a loaded machine, qemu-user) would skew every
     * device time of the session by that delay. */
    struct timespec rt = {0, 0};
    unsigned long long mono_ns = 0, best = ~0ULL;
    for (int i = 0; i < 15; i++) {
        struct timespec r;
        unsigned long long m0 = clock_ns(CLOCK_MONOTONIC_RAW);
        clock_gettime(CLOCK_REALTIME, &r);
        unsigned long long m1 = clock_ns(CLOCK_MONOTONIC_RAW);
        if (m1 - m0 < best) {
            best = m1 - m0;
            rt = r;
            mono_ns = m0 + (m1 - m0) / 2;
        }
    }
    long long us = (long long)rt.tv_sec * 1000000LL + rt.tv_nsec / 1000 + env_ll("FAKE_ACL_CLOCK_SKEW_US", 0);
    time_t secs = (time_t)(us / 1000000LL);
    long frac = (long)(us % 1000000LL);
    if (frac < 0) {
        frac += 1000000;
        secs -= 1;
    }
    struct tm tm;
    localtime_r(&secs, &tm);
    if (tm_out != NULL) {
        *tm_out = tm;
    }
    if (ms_out != NULL) {
        *ms_out = (int)(frac / 1000);
    }
    char date[64];
    strftime(date, sizeof date, "%Y-%m-%d %H:%M:%S", &tm);
    snprintf(out, outsz, "{\"%s\": \"%s.%06ld\", \"%s\": \"%lld\", \"clockMonotonicRaw\": \"%llu\"}", date_key,
             date, frac, time_key, us, mono_ns);
}

static void random_letters(char *out, size_t n)
{
    unsigned char rnd[64];
    int ok = 0;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ok = read(fd, rnd, n) == (ssize_t)n;
        close(fd);
    }
    unsigned seed = (unsigned)clock_ns(CLOCK_MONOTONIC_RAW) ^ (unsigned)getpid();
    for (size_t i = 0; i < n; i++) {
        unsigned r = ok ? rnd[i] : (unsigned)rand_r(&seed);
        out[i] = (char)('A' + r % 26);
    }
    out[n] = '\0';
}

/* Creates <path>/PROF_<idx>_<YYYYmmddHHMMSSmmm>_<16 letters>/ with host/ and device_<dev>/, and writes
 * host/start_info(.done) and device_<dev>/start_info.<dev>(.done). Returns 0 or -1. */
static int create_prof_dir(void)
{
    char start_info[512];
    struct tm tm;
    int ms;
    time_info_json(start_info, sizeof start_info, "collectionDateBegin", "collectionTimeBegin", &tm, &ms);
    char stamp[32], letters[17];
    strftime(stamp, sizeof stamp, "%Y%m%d%H%M%S", &tm);
    random_letters(letters, 16);
    S.prof_index++;
    snprintf(S.prof_dir, sizeof S.prof_dir, "%s/PROF_%06u_%s%03d_%s", S.path, S.prof_index, stamp, ms, letters);

    char p[FILE_CAP];
    snprintf(p, sizeof p, "%s/host/data", S.prof_dir);
    if (mkdir_p(p) != 0) {
        return -1;
    }
    snprintf(p, sizeof p, "%s/host", S.prof_dir);
    if (write_file_done(p, "start_info", start_info) != 0) {
        return -1;
    }
    if (S.running_dev >= 0) {
        snprintf(p, sizeof p, "%s/device_%d/data", S.prof_dir, S.running_dev);
        if (mkdir_p(p) != 0) {
            return -1;
        }
        snprintf(p, sizeof p, "%s/device_%d", S.prof_dir, S.running_dev);
        char name[64];
        snprintf(name, sizeof name, "start_info.%d", S.running_dev);
        if (write_file_done(p, name, start_info) != 0) {
            return -1;
        }
    }
    return 0;
}

/* Raw device data, fake format, one task per line, tab-separated:
 *   tid  launch_monoraw_ns  start_monoraw_ns  dur_ns  stream  task_id  block_dim  name  op_type  task_type */
static int write_data_file(void)
{
    char p[FILE_CAP];
    snprintf(p, sizeof p, "%s/device_%d/data/fake_task.data.%d.slice_0", S.prof_dir, S.running_dev, S.running_dev);
    FILE *f = fopen(p, "w");
    if (f == NULL) {
        return -1;
    }
    /* Device starts again, in launch order on each stream: at the middle of the launching step's window
     * when the client marked it (see the header), else 5 us after the launch. */
    for (size_t i = 0; i < S.nstreams; i++) {
        S.streams[i].end_ns = 0;
    }
    for (size_t i = 0; i < S.ntasks; i++) {
        struct task *t = &S.tasks[i];
        uint64_t at = t->launch_ns + 5000;
        const size_t w = (size_t)(t->step % MAX_STEPS);
        if (t->step != 0 && S.steps[w].step == t->step && S.steps[w].end_ns > S.steps[w].begin_ns) {
            uint64_t mid = S.steps[w].begin_ns + (S.steps[w].end_ns - S.steps[w].begin_ns) / 2;
            at = mid > at ? mid : at;
        }
        for (size_t k = 0; k < S.nstreams; k++) {
            if (S.streams[k].id == t->stream) {
                at = at > S.streams[k].end_ns ? at : S.streams[k].end_ns;
                S.streams[k].end_ns = at + t->dur_ns;
                break;
            }
        }
        t->start_ns = at;
    }
    for (size_t i = 0; i < S.ntasks; i++) {
        const struct task *t = &S.tasks[i];
        fprintf(f, "%llu\t%llu\t%llu\t%llu\t%u\t%llu\t%u\t%s\t%s\t%s\n", (unsigned long long)t->tid,
                (unsigned long long)t->launch_ns, (unsigned long long)t->start_ns, (unsigned long long)t->dur_ns,
                t->stream, (unsigned long long)t->task_id, t->block_dim, t->name, t->op_type, t->task_type);
    }
    return fclose(f);
}

/* At a successful Stop: host/end_info, host/info.json, host/sample.json, device_<id>/info.json.<id> (+ .done
 * each) and the data file. */
static int write_stop_files(void)
{
    int rc = 0;
    char p[FILE_CAP];
    snprintf(p, sizeof p, "%s/host", S.prof_dir);

    char end_info[512];
    time_info_json(end_info, sizeof end_info, "collectionDateEnd", "collectionTimeEnd", NULL, NULL);
    rc |= write_file_done(p, "end_info", end_info);
    const char *link_to = getenv("FAKE_ACL_OUTPUT_SYMLINK");
    if (link_to != NULL) {
        char link[FILE_CAP];
        snprintf(link, sizeof link, "%s/mindstudio_profiler_output", S.prof_dir);
        rc |= symlink(link_to, link);
    }

    /* info.json: profLevel "l0" when only task time L0 is on (msprof-export.md §1.2, §2.1). */
    const char *level = ((S.running_bits & ACL_PROF_TASK_TIME_L0) && !(S.running_bits & ACL_PROF_TASK_TIME)) ? "l0" : "l1";
    char devs[16] = "", devinfo[256] = "";
    if (S.running_dev >= 0) {
        snprintf(devs, sizeof devs, "%d", S.running_dev);
        snprintf(devinfo, sizeof devinfo,
                 "{\"id\": %d, \"ai_core_num\": 24, \"aic_frequency\": \"1800\", \"hwts_frequency\": \"50\"}",
                 S.running_dev);
    }
    char info[1024];
    snprintf(info, sizeof info,
             "{\"pid\": %d, \"devices\": \"%s\", \"platform_version\": \"fake\", \"profLevel\": \"%s\", "
             "\"CPU\": [{\"Id\": 0, \"Name\": \"fake\", \"Frequency\": \"0\", \"Logical_CPU_Count\": 1, \"Type\": \"fake\"}], "
             "\"DeviceInfo\": [%s]}",
             (int)getpid(), devs, level, devinfo);
    rc |= write_file_done(p, "info.json", info);
    /* CANN also writes the device's own device_<id>/info.json.<id> (msprof-export.md §1.2), the file
     * msprof-analyze's advisor reads the AI Core count and frequency from (DeviceInfoParser). */
    if (S.running_dev >= 0) {
        char dp[FILE_CAP], dname[64];
        snprintf(dp, sizeof dp, "%s/device_%d", S.prof_dir, S.running_dev);
        snprintf(dname, sizeof dname, "info.json.%d", S.running_dev);
        rc |= write_file_done(dp, dname, info);
    }

    /* sample.json: PMU metrics only count when ACL_PROF_AICORE_METRICS is on (msprof-export.md §6). */
    const char *metrics = (S.running_bits & ACL_PROF_AICORE_METRICS) ? metrics_name(S.running_metrics) : "";
    char sample[8192], extra[6144] = "";
    size_t o = 0;
    for (int t = 1; t < ACL_PROF_ARGS_MAX; t++) {
        if (S.set_config_present[t] && o + 600 < sizeof extra) {
            char esc[6 * MAX_CONFIG_LEN + 8];
            json_escape(esc, sizeof esc, S.set_config[t]);
            o += (size_t)snprintf(extra + o, sizeof extra - o, "%s\"%d\": \"%s\"", o ? ", " : "", t, esc);
        }
    }
    snprintf(sample, sizeof sample,
             "{\"ai_core_metrics\": \"%s\", \"bits\": \"0x%llx\", \"devices\": \"%s\", \"set_config\": {%s}}", metrics,
             (unsigned long long)S.running_bits, devs, extra);
    rc |= write_file_done(p, "sample.json", sample);

    if (S.running_dev >= 0 && !(getenv("FAKE_ACL_NO_DATA") && strcmp(getenv("FAKE_ACL_NO_DATA"), "1") == 0)) {
        rc |= write_data_file();
    }
    return rc;
}

static void forget_tasks(void)
{
    for (size_t i = 0; i < S.ntasks; i++) {
        free(S.tasks[i].name);
        free(S.tasks[i].op_type);
        free(S.tasks[i].task_type);
    }
    S.ntasks = 0;
    S.nstreams = 0;
}

/* Ends the running session. write: 1 at aclprofStop (files written), 0 at aclprofFinalize without
 * Stop (§2.8 "cancels all device tasks then finalises": nothing more is written). */
static void end_session(int write)
{
    if (write && S.prof_dir[0] != '\0' && write_stop_files() != 0) {
        fprintf(stderr, "fake_msprofiler: could not write the stop files under %s\n", S.prof_dir);
    }
    forget_tasks();
    S.running = 0;
    S.running_ptr = NULL;
    S.running_num = 0;
    S.warmed = 0;
    S.nranges = 0;
}

/* Starts a session for (ptr, bits, metrics, first device). Returns 0 or ACL_ERROR_PROFILING_FAILURE. */
static int begin_session(const aclprofConfig *ptr, int num, uint64_t bits, uint32_t metrics, int dev)
{
    S.running_ptr = ptr;
    S.running_num = num;
    S.running_bits = bits;
    S.running_metrics = metrics;
    S.running_dev = dev;
    forget_tasks();
    if (create_prof_dir() != 0) {
        fprintf(stderr, "fake_msprofiler: could not create the PROF directory under %s\n", S.path);
        return ACL_ERROR_PROFILING_FAILURE;
    }
    S.running = 1;
    return ACL_SUCCESS;
}

/* Sets the result path (creating it, as ProfAclInit does) and moves OFF → API_CTRL. */
static int do_init(const char *path, size_t len)
{
    char raw[PATH_CAP + 8]; /* MP accepts len 4096; such a path cannot be created → 100003 below */
    if (len >= sizeof raw) {
        return ACL_ERROR_INVALID_FILE;
    }
    memcpy(raw, path, len);
    raw[len] = '\0';
    if (mkdir_p(raw) != 0) {
        return ACL_ERROR_INVALID_FILE; /* "cannot create" → 100003 (§2.7) */
    }
    char abs[PATH_MAX];
    if (realpath(raw, abs) == NULL || strlen(abs) >= sizeof S.path) {
        return ACL_ERROR_INVALID_FILE;
    }
    snprintf(S.path, sizeof S.path, "%s", abs);
    snprintf(S.prev_path, sizeof S.prev_path, "%s", abs);
    S.mode = MODE_API;
    return ACL_SUCCESS;
}

/* preCheckProfConfig of both generations (§2.3, §2.8 "bits unsupported / zero"): bits == 0 → 100000,
 * bits outside the accepted set → 200007. Also rejects configs the library did not create / destroyed
 * ones (a use-after-free in the real library; the fake makes it a visible 100000). */
static int precheck_cfg(const aclprofConfig *cfg, int rt)
{
    aclprofConfig *c = find_cfg(cfg);
    if (c == NULL || c->destroyed) {
        return ACL_ERROR_INVALID_PARAM;
    }
    if (c->bits == 0) {
        return ACL_ERROR_INVALID_PARAM;
    }
    if (c->bits & ~(rt ? RT_SWITCH_SUPPORT : MP_SWITCH_SUPPORT)) {
        return ACL_ERROR_PROF_MODULES_UNSUPPORTED;
    }
    return ACL_SUCCESS;
}

static int active_device(void)
{
    long long d = env_ll("FAKE_ACL_DEVICE", 0);
    return d < 0 ? 0 : (int)d;
}

/* ------------------------------------------------------------------------------------------------
 * Session control (§2.2)
 * ---------------------------------------------------------------------------------------------- */

API aclError aclprofInit(const char *profilerResultPath, size_t length)
{
    pthread_mutex_lock(&g_mu);
    int rt = gen_rt(), ret;
    const char *dyn = getenv("PROFILING_MODE");
    if (forced_failure("aclprofInit", &ret)) {
        /* FAKE_ACL_FAIL: forced code, state unchanged */
    } else if (dyn != NULL && strcmp(dyn, "dynamic") == 0) {
        ret = ACL_ERROR_FEATURE_UNSUPPORTED; /* §2.8 "with env PROFILING_MODE=dynamic" (checked first in MP) */
    } else if (profilerResultPath == NULL) {
        ret = ACL_ERROR_INVALID_PARAM; /* §2.8 "aclprofInit(NULL, …)" */
    } else if (rt ? (strlen(profilerResultPath) != length || length == 0 || length > 4095)
                  : (strnlen(profilerResultPath, length) != length || length == 0 || length > 4096)) {
        ret = ACL_ERROR_INVALID_PARAM; /* §2.8 "aclprofInit length": MP 1..4096 strnlen==len, RT 1..4095 strlen==len */
    } else if (other_profiler("cmd")) {
        ret = ACL_ERROR_PROF_ALREADY_RUN; /* §2.8 "while msprof CLI / acl.json / GE option active" */
    } else if (other_profiler("subscribe")) {
        ret = ACL_ERROR_PROF_API_CONFLICT; /* §2.8 "while in subscribe mode" */
    } else if (S.mode == MODE_API) {
        ret = ACL_ERROR_REPEAT_INITIALIZE; /* §2.8 "while already inited" */
    } else {
        ret = do_init(profilerResultPath, length); /* MP: path truncated to len */
    }
    char p[4200];
    log_line("aclprofInit path=%s len=%zu -> %d", printable(p, sizeof p, profilerResultPath, length), length, ret);
    pthread_mutex_unlock(&g_mu);
    return ret;
}

API aclError aclprofFinalize(void)
{
    hang_if("aclprofFinalize");
    pthread_mutex_lock(&g_mu);
    int rt = gen_rt(), ret, cancelled = 0;
    if (forced_failure("aclprofFinalize", &ret)) {
    } else if (other_profiler("cmd")) {
        ret = ACL_ERROR_PROF_ALREADY_RUN; /* §2.8 "any call in CMD mode" */
    } else if (S.mode == MODE_OFF) {
        ret = rt ? ACL_SUCCESS : ACL_ERROR_PROF_NOT_RUN; /* §2.8 "Finalize without Init": MP 100043, RT no-op */
    } else {
        if (S.running) { /* §2.8 "Finalize without Stop": cancels the device tasks, then finalises */
            cancelled = S.running_num ? S.running_num : -1;
            end_session(0);
        }
        S.mode = MODE_OFF;
        S.path[0] = '\0';
        memset(S.set_config_present, 0, sizeof S.set_config_present); /* MP ResetArgsArr() */
        ret = ACL_SUCCESS;
    }
    if (cancelled > 0) {
        log_line("aclprofFinalize running=cfg%d -> %d", cancelled, ret);
    } else if (cancelled < 0) {
        log_line("aclprofFinalize running=default -> %d", ret);
    } else {
        log_line("aclprofFinalize -> %d", ret);
    }
    pthread_mutex_unlock(&g_mu);
    return ret;
}

API aclprofConfig *aclprofCreateConfig(uint32_t *deviceIdList, uint32_t deviceNums, aclprofAicoreMetrics aicoreMetrics,
                                       const aclprofAicoreEvents *aicoreEvents, uint64_t dataTypeConfig)
{
    pthread_mutex_lock(&g_mu);
    int rt = gen_rt(), code;
    aclprofConfig *cfg = NULL;
    int ok = 1;
    uint32_t ndev = device_count();
    if (forced_failure("aclprofCreateConfig", &code)) {
        ok = 0; /* FAKE_ACL_FAIL: any listed value means NULL */
    } else if (deviceNums > 0 && deviceIdList == NULL) {
        ok = 0; /* §2.8 CreateConfig: deviceNums>0 && deviceIdList==NULL */
    } else if (aicoreEvents != NULL) {
        ok = 0; /* aicoreEvents must be NULL */
    } else if (deviceNums > MAX_DEV_NUM) {
        ok = 0; /* deviceNums > 64 */
    } else if (deviceNums > ndev) {
        ok = 0; /* more devices than the driver reports (MP IsValidDevId) */
    } else {
        for (uint32_t i = 0; i < deviceNums && ok; i++) {
            if (deviceIdList[i] >= ndev) {
                ok = 0; /* device id >= device count */
            }
            for (uint32_t j = 0; j < i && ok; j++) {
                if (deviceIdList[j] == deviceIdList[i]) {
                    ok = 0; /* duplicated device id */
                }
            }
        }
        if (ok && deviceNums == 0 && !(dataTypeConfig & ACL_PROF_MSPROFTX)) {
            ok = 0; /* deviceNums==0 is accepted only with ACL_PROF_MSPROFTX */
        }
    }
    uint64_t bits = dataTypeConfig;
    if (ok && rt) {
        /* §2.3: RT CreateConfig rewrites the mask. API_STATS replaces it by ACL_API|API_STATS; otherwise
         * L3 ⇒ +L0+L1+L2, L2 or OP_ATTR ⇒ +L0+L1, L1 ⇒ +L0, any task time ⇒ +TRAINING_TRACE; and
         * PROF_AICPU_MODEL is ORed into every config. */
        if (bits & ACL_PROF_API_STATS) {
            bits = ACL_PROF_ACL_API | ACL_PROF_API_STATS;
        } else {
            if (bits & ACL_PROF_TASK_TIME_L3) {
                bits |= ACL_PROF_TASK_TIME_L0 | ACL_PROF_TASK_TIME | ACL_PROF_TASK_TIME_L2;
            }
            if (bits & (ACL_PROF_TASK_TIME_L2 | ACL_PROF_OP_ATTR)) {
                bits |= ACL_PROF_TASK_TIME_L0 | ACL_PROF_TASK_TIME;
            }
            if (bits & ACL_PROF_TASK_TIME) {
                bits |= ACL_PROF_TASK_TIME_L0;
            }
            if (bits & (ACL_PROF_TASK_TIME_L0 | ACL_PROF_TASK_TIME | ACL_PROF_TASK_TIME_L2 | ACL_PROF_TASK_TIME_L3)) {
                bits |= ACL_PROF_TRAINING_TRACE;
            }
        }
        bits |= PROF_AICPU_MODEL;
    }
    if (ok) {
        cfg = calloc(1, sizeof *cfg);
        if (cfg != NULL && S.ncfgs == S.cap_cfgs) {
            size_t nc = S.cap_cfgs ? S.cap_cfgs * 2 : 16;
            aclprofConfig **n = realloc(S.cfgs, nc * sizeof *n);
            if (n == NULL) {
                free(cfg);
                cfg = NULL;
            } else {
                S.cfgs = n;
                S.cap_cfgs = nc;
            }
        }
        if (cfg != NULL) {
            cfg->magic = CFG_MAGIC;
            cfg->num = (int)S.ncfgs + 1;
            cfg->n = deviceNums;
            if (deviceNums > 0) {
                memcpy(cfg->devs, deviceIdList, deviceNums * sizeof(uint32_t));
            }
            cfg->metrics = (uint32_t)aicoreMetrics;
            cfg->bits = bits;
            S.cfgs[S.ncfgs++] = cfg;
        }
    }

    /* log: devs=<comma list> | null (list NULL) | none (deviceNums 0) | ? (deviceNums > 64, not read) */
    char devs[1024];
    if (deviceIdList == NULL) {
        snprintf(devs, sizeof devs, "null");
    } else if (deviceNums == 0) {
        snprintf(devs, sizeof devs, "none");
    } else if (deviceNums > MAX_DEV_NUM) {
        snprintf(devs, sizeof devs, "?");
    } else {
        size_t o = 0;
        devs[0] = '\0';
        for (uint32_t i = 0; i < deviceNums; i++) {
            o += (size_t)snprintf(devs + o, sizeof devs - o, "%s%u", i ? "," : "", deviceIdList[i]);
        }
    }
    char req[40] = "";
    if (rt) {
        snprintf(req, sizeof req, " req=0x%llx", (unsigned long long)dataTypeConfig);
    }
    char ret[32];
    if (cfg) {
        snprintf(ret, sizeof ret, "cfg%d", cfg->num);
    } else {
        snprintf(ret, sizeof ret, "null");
    }
    log_line("aclprofCreateConfig n=%u devs=%s metrics=%u events=%s bits=0x%llx%s -> %s", deviceNums, devs,
             (unsigned)aicoreMetrics, aicoreEvents ? "set" : "null", (unsigned long long)(cfg ? cfg->bits : bits), req,
             ret);
    pthread_mutex_unlock(&g_mu);
    return cfg;
}

API aclError aclprofDestroyConfig(const aclprofConfig *profilerConfig)
{
    hang_if("aclprofDestroyConfig");
    pthread_mutex_lock(&g_mu);
    int ret;
    char name[32];
    cfg_name(name, sizeof name, profilerConfig);
    aclprofConfig *c = find_cfg(profilerConfig);
    if (forced_failure("aclprofDestroyConfig", &ret)) {
    } else if (profilerConfig == NULL) {
        ret = ACL_ERROR_INVALID_PARAM; /* §2.8 "aclprofDestroyConfig(NULL)" */
    } else if (c == NULL || c->destroyed) {
        ret = ACL_ERROR_INVALID_PARAM; /* fake-only: unknown or double-destroyed config (UB in the real one) */
    } else {
        c->destroyed = 1; /* never freed: a stale pointer stays recognisable */
        ret = ACL_SUCCESS;
    }
    log_line("aclprofDestroyConfig cfg=%s -> %d", name, ret);
    pthread_mutex_unlock(&g_mu);
    return ret;
}

API aclError aclprofStart(const aclprofConfig *profilerConfig)
{
    pthread_mutex_lock(&g_mu);
    int rt = gen_rt(), ret;
    char name[32];
    cfg_name(name, sizeof name, profilerConfig);
    aclprofConfig *c = find_cfg(profilerConfig);
    if (forced_failure("aclprofStart", &ret)) {
    } else if (!rt) {
        /* MP: PreCheckProfConfig, then ProfStartPrecheck (CMD → 100042, OFF → 100043), then ProfAclStart. */
        if (profilerConfig == NULL) {
            ret = ACL_ERROR_INVALID_PARAM; /* §2.8 "aclprofStart(NULL)" MP */
        } else if ((ret = precheck_cfg(profilerConfig, 0)) != ACL_SUCCESS) {
            /* §2.8 "bits unsupported / zero" */
        } else if (other_profiler("cmd")) {
            ret = ACL_ERROR_PROF_ALREADY_RUN; /* §2.8 "any call in CMD mode" */
        } else if (S.mode == MODE_OFF) {
            ret = ACL_ERROR_PROF_NOT_RUN; /* §2.8 "aclprofStart without aclprofInit" MP */
        } else if (S.running) {
            ret = ACL_SUCCESS; /* §2.8 "aclprofStart again while running" MP: ignored */
        } else {
            S.mp_started_ptr = profilerConfig;
            ret = begin_session(profilerConfig, c->num, c->bits, c->metrics, c->n ? (int)c->devs[0] : -1);
        }
    } else {
        /* RT: preCheckProfConfig (NULL → default config), auto-init, CMD check, repeat check. */
        uint64_t bits;
        uint32_t metrics;
        int dev;
        if (profilerConfig == NULL) { /* §2.8 "aclprofStart(NULL)" RT: default config, all active devices */
            bits = RT_DEFAULT_BITS;
            metrics = ACL_AICORE_PIPE_UTILIZATION;
            dev = active_device();
            ret = ACL_SUCCESS;
        } else {
            ret = precheck_cfg(profilerConfig, 1); /* §2.8 "bits unsupported / zero" */
            bits = c ? c->bits : 0;
            metrics = c ? c->metrics : 0;
            dev = (c && c->n) ? (int)c->devs[0] : -1;
        }
        if (ret != ACL_SUCCESS) {
        } else if (other_profiler("cmd")) {
            ret = ACL_ERROR_PROF_ALREADY_RUN; /* §2.8 "any call in CMD mode" */
        } else {
            if (S.mode == MODE_OFF) { /* §2.8 "Start without Init" RT: auto-init into the previous path or "./" */
                const char *p = S.prev_path[0] ? S.prev_path : "./";
                ret = do_init(p, strlen(p));
            }
            if (ret != ACL_SUCCESS) {
            } else if (S.running) {
                /* §2.8 "Start again while running" RT: same bits → 0, else 100010 */
                ret = (bits == S.running_bits) ? ACL_SUCCESS : ACL_ERROR_INVALID_PROFILING_CONFIG;
            } else {
                ret = begin_session(profilerConfig, c ? c->num : 0, bits, metrics, dev);
            }
        }
    }
    log_line("aclprofStart cfg=%s -> %d", name, ret);
    pthread_mutex_unlock(&g_mu);
    return ret;
}

API aclError aclprofStop(const aclprofConfig *profilerConfig)
{
    hang_if("aclprofStop");
    pthread_mutex_lock(&g_mu);
    int rt = gen_rt(), ret;
    char name[32];
    cfg_name(name, sizeof name, profilerConfig);
    aclprofConfig *c = find_cfg(profilerConfig);
    if (forced_failure("aclprofStop", &ret)) {
    } else if (!rt) {
        /* MP order: PreCheckProfConfig, ProfStopPrecheck, then ProfAclStop (pointer compare, device started). */
        if (profilerConfig == NULL) {
            ret = ACL_ERROR_INVALID_PARAM; /* §2.8 "aclprofStop(NULL)" MP */
        } else if ((ret = precheck_cfg(profilerConfig, 0)) != ACL_SUCCESS) {
            /* §2.8 "bits unsupported / zero" */
        } else if (other_profiler("cmd")) {
            ret = ACL_ERROR_PROF_ALREADY_RUN; /* §2.8 "any call in CMD mode" */
        } else if (S.mode == MODE_OFF) {
            ret = ACL_ERROR_PROF_NOT_RUN; /* §2.8 "aclprofStop without Init" MP */
        } else if (profilerConfig != S.mp_started_ptr) {
            ret = ACL_ERROR_INVALID_PROFILING_CONFIG; /* §2.8 "Stop with a config other than the one started": pointer compare */
        } else if (!S.running) {
            ret = ACL_ERROR_PROF_NOT_RUN; /* §2.8 "Stop when device not started (e.g. second Stop)" */
        } else {
            end_session(1);
            ret = ACL_SUCCESS;
        }
    } else {
        /* RT order: not inited → 0; NULL → whatever runs; preCheckProfConfig; then ProfConfigStop. */
        if (other_profiler("cmd")) {
            ret = ACL_ERROR_PROF_ALREADY_RUN; /* §2.8 "any call in CMD mode" */
        } else if (S.mode == MODE_OFF) {
            ret = ACL_SUCCESS; /* §2.8 "aclprofStop without Init" RT: no-op */
        } else if (profilerConfig == NULL) {
            if (S.running) { /* §2.8 "aclprofStop(NULL)" RT: stops whatever is running */
                end_session(1);
            }
            ret = ACL_SUCCESS;
        } else if ((ret = precheck_cfg(profilerConfig, 1)) != ACL_SUCCESS) {
            /* §2.8 "bits unsupported / zero" */
        } else if (!S.running) {
            ret = ACL_ERROR_PROF_NOT_RUN; /* §2.8 "Stop when device not started" */
        } else if (c->bits != S.running_bits) {
            ret = ACL_ERROR_INVALID_PROFILING_CONFIG; /* §2.8 "Stop with another config" RT: only if bits differ */
        } else {
            end_session(1);
            ret = ACL_SUCCESS;
        }
    }
    log_line("aclprofStop cfg=%s -> %d", name, ret);
    pthread_mutex_unlock(&g_mu);
    return ret;
}

/* RT value check of aclprofSetConfig (§2.8 "value rejected → 100010, or 100000 for NTS_METRICS"). The
 * accepted formats are not documented (§6); the fake rejects a non-numeric or zero value for the
 * frequency-like types and accepts everything else. */
static int rt_value_ok(int type, const char *v)
{
    switch (type) {
    case ACL_PROF_STORAGE_LIMIT:
        return 1; /* "<n>MB" */
    case ACL_PROF_SYS_HARDWARE_MEM_FREQ:
    case ACL_PROF_SYS_IO_FREQ:
    case ACL_PROF_SYS_INTERCONNECTION_FREQ:
    case ACL_PROF_DVPP_FREQ:
    case ACL_PROF_HOST_SYS_USAGE_FREQ:
    case ACL_PROF_LOW_POWER_FREQ:
    case ACL_PROF_SYS_MEM_SERVICEFLOW:
    case ACL_PROF_SYS_CPU_FREQ: {
        if (*v == '\0') {
            return 0;
        }
        for (const char *p = v; *p; p++) {
            if (*p < '0' || *p > '9') {
                return 0;
            }
        }
        return strtoul(v, NULL, 10) > 0;
    }
    default:
        return 1;
    }
}

API aclError aclprofSetConfig(aclprofConfigType configType, const char *config, size_t configLength)
{
    pthread_mutex_lock(&g_mu);
    int rt = gen_rt(), ret;
    int type = (int)configType;
    int args_max = rt ? 17 : 11; /* §2.5: ACL_PROF_ARGS_MAX is 17 in W214/RT, 11 in the old (MP) enum */
    if (forced_failure("aclprofSetConfig", &ret)) {
    } else if (type <= ACL_PROF_ARGS_MIN || type >= args_max) {
        ret = ACL_ERROR_INVALID_PARAM; /* §2.8 SetConfig args: type in (ARGS_MIN, ARGS_MAX) */
    } else if (config == NULL || configLength > MAX_CONFIG_LEN) {
        ret = ACL_ERROR_INVALID_PARAM; /* config != NULL, configLength <= 256 */
    } else if (rt ? strlen(config) != configLength : strnlen(config, configLength) != configLength) {
        ret = ACL_ERROR_INVALID_PARAM; /* length must match the string: MP strnlen==len, RT strlen==len */
    } else {
        char v[MAX_CONFIG_LEN + 1];
        memcpy(v, config, configLength);
        v[configLength] = '\0';
        if (rt && !rt_value_ok(type, v)) {
            ret = ACL_ERROR_INVALID_PROFILING_CONFIG; /* RT: value rejected */
        } else {
            /* §2.8 "SetConfig before Init": accepted (stored) in both generations */
            memcpy(S.set_config[type], v, configLength + 1);
            S.set_config_present[type] = 1;
            ret = ACL_SUCCESS;
        }
    }
    char v[MAX_CONFIG_LEN + 1];
    log_line("aclprofSetConfig type=%d config=%s len=%zu -> %d", type,
             printable(v, sizeof v, config, configLength < MAX_CONFIG_LEN ? configLength : MAX_CONFIG_LEN),
             configLength, ret);
    pthread_mutex_unlock(&g_mu);
    return ret;
}

/* ------------------------------------------------------------------------------------------------
 * Internal exports torch_npu looks up (§1, §2.2 "not in the public acl_prof.h")
 * ---------------------------------------------------------------------------------------------- */

API aclError aclprofWarmup(const aclprofConfig *profilerConfig)
{
    pthread_mutex_lock(&g_mu);
    int rt = gen_rt(), ret;
    char name[32];
    cfg_name(name, sizeof name, profilerConfig);
    if (forced_failure("aclprofWarmup", &ret)) {
    } else if (profilerConfig == NULL) {
        ret = ACL_ERROR_INVALID_PARAM; /* preCheckProfConfig (both) */
    } else if ((ret = precheck_cfg(profilerConfig, rt)) != ACL_SUCCESS) {
        /* §2.3 "bits outside … (and aclprofWarmup) return 200007" */
    } else if (other_profiler("cmd")) {
        ret = ACL_ERROR_PROF_ALREADY_RUN; /* ProfStartPrecheck: CMD */
    } else if (S.mode == MODE_OFF) {
        ret = ACL_ERROR_PROF_NOT_RUN; /* ProfStartPrecheck: not inited (no auto-init in Warmup) */
    } else if (S.running) {
        ret = rt ? ACL_ERROR_PROF_API_CONFLICT : ACL_SUCCESS; /* §2.8 "Warmup after Start": RT 148047; MP ignores */
    } else {
        S.warmed = 1;
        ret = ACL_SUCCESS;
    }
    log_line("aclprofWarmup cfg=%s -> %d", name, ret);
    pthread_mutex_unlock(&g_mu);
    return ret;
}

/* Shared body of aclprofGetSupportedFeatures[V2] (§2.2: featuresSize/featuresData non-NULL and
 * *featuresData NULL on entry, else 100000; on success a library-owned array of 272-byte records). */
static int get_features(const char *func, size_t *featuresSize, void **featuresData)
{
    pthread_mutex_lock(&g_mu);
    int ret;
    size_t n = 0;
    const char *env = getenv("FAKE_ACL_FEATURES");
    if (forced_failure(func, &ret)) {
    } else if (featuresSize == NULL || featuresData == NULL || *featuresData != NULL) {
        ret = ACL_ERROR_INVALID_PARAM;
    } else if (env != NULL && strcmp(env, "unsupported") == 0) {
        ret = ACL_ERROR_PROF_MODULES_UNSUPPORTED;
    } else {
        memset(g_features, 0, sizeof g_features);
        const char *f = env ? env : "";
        while (*f != '\0' && n < MAX_FEATURES) {
            const char *end = strchr(f, ',');
            size_t len = end ? (size_t)(end - f) : strlen(f);
            if (len > 0) {
                struct feature_record *r = &g_features[n++];
                r->vptr = r->info.vptr = 0x5656565656565656ull; /* 'VVVVVVVV' */
                snprintf(r->featureName, sizeof r->featureName, "%.*s", (int)len, f);
                snprintf(r->info.compatibility, sizeof r->info.compatibility, "1");
                snprintf(r->info.featureVersion, sizeof r->info.featureVersion, "1");
                snprintf(r->info.affectedComponent, sizeof r->info.affectedComponent, "all");
                snprintf(r->info.affectedComponentVersion, sizeof r->info.affectedComponentVersion, "all");
                snprintf(r->info.infoLog, sizeof r->info.infoLog, "fake feature");
            }
            f = end ? end + 1 : f + len;
        }
        *featuresSize = n; /* the NUMBER of records */
        *featuresData = g_features;
        ret = ACL_SUCCESS;
        const char *layout = getenv("FAKE_ACL_FEATURES_LAYOUT");
        const char *count = getenv("FAKE_ACL_FEATURES_COUNT");
        if ((layout && strcmp(layout, "256") == 0) || count) {
            /* Adversarial: the records (at 272 or 256 bytes) end exactly at a PROT_NONE page, so a reader
             * that trusts a larger count, or a 272-byte stride over 256-byte records, faults. Leaked. */
            size_t stride = (layout && strcmp(layout, "256") == 0) ? 256 : 272;
            size_t bytes = n * stride, page = 4096, pages = (bytes + page - 1) / page;
            char *map = mmap(NULL, (pages + 1) * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                             -1, 0);
            if (map != MAP_FAILED) {
                mprotect(map + pages * page, page, PROT_NONE);
                char *base = map + pages * page - bytes;
                for (size_t i = 0; i < n; i++) {
                    if (stride == 272) {
                        memcpy(base + i * 272, &g_features[i], 272);
                    } else { /* the fields alone: name, then info without its vptr */
                        memcpy(base + i * 256, g_features[i].featureName, 64);
                        memcpy(base + i * 256 + 64, g_features[i].info.compatibility, 192);
                    }
                }
                *featuresData = base;
            }
            if (count) {
                *featuresSize = (size_t)strtoull(count, NULL, 10);
            }
        }
    }
    if (ret == ACL_SUCCESS) {
        log_line("%s -> %d n=%zu", func, ret, n);
    } else {
        log_line("%s -> %d", func, ret);
    }
    pthread_mutex_unlock(&g_mu);
    return ret;
}

API int aclprofGetSupportedFeatures(size_t *featuresSize, void **featuresData)
{
    return get_features("aclprofGetSupportedFeatures", featuresSize, featuresData);
}

API int aclprofGetSupportedFeaturesV2(size_t *featuresSize, void **featuresData)
{
    return get_features("aclprofGetSupportedFeaturesV2", featuresSize, featuresData);
}

API aclError aclprofRegisterDeviceCallback(void)
{
    pthread_mutex_lock(&g_mu);
    int ret;
    if (!forced_failure("aclprofRegisterDeviceCallback", &ret)) {
        ret = ACL_SUCCESS;
    }
    log_line("aclprofRegisterDeviceCallback -> %d", ret);
    pthread_mutex_unlock(&g_mu);
    return ret;
}

/* ------------------------------------------------------------------------------------------------
 * msproftx stamps (§2.8 "msproftx rules"): only while a session with ACL_PROF_MSPROFTX runs; every
 * call returns -1 otherwise.
 * ---------------------------------------------------------------------------------------------- */

static int tx_active(void)
{
    return S.running && (S.running_bits & ACL_PROF_MSPROFTX);
}

API void *aclprofCreateStamp(void)
{
    pthread_mutex_lock(&g_mu);
    int code;
    struct stamp *s = NULL;
    if (!forced_failure("aclprofCreateStamp", &code) && tx_active()) { /* NULL unless MSPROFTX runs */
        s = calloc(1, sizeof *s);
        if (s != NULL && S.nstamps == S.cap_stamps) {
            size_t nc = S.cap_stamps ? S.cap_stamps * 2 : 16;
            struct stamp **n = realloc(S.stamps, nc * sizeof *n);
            if (n == NULL) {
                free(s);
                s = NULL;
            } else {
                S.stamps = n;
                S.cap_stamps = nc;
            }
        }
        if (s != NULL) {
            s->magic = STAMP_MAGIC;
            s->num = ++S.stamp_counter;
            S.stamps[S.nstamps++] = s;
        }
    }
    if (s != NULL) {
        log_line("aclprofCreateStamp -> s%d", s->num);
    } else {
        log_line("aclprofCreateStamp -> null");
    }
    pthread_mutex_unlock(&g_mu);
    return s;
}

API void aclprofDestroyStamp(void *stamp)
{
    pthread_mutex_lock(&g_mu);
    char name[32];
    stamp_name(name, sizeof name, stamp);
    if (stamp != NULL) { /* aclprofDestroyStamp(NULL) is a no-op */
        for (size_t i = 0; i < S.nstamps; i++) {
            if (S.stamps[i] == stamp) {
                free(S.stamps[i]);
                S.stamps[i] = S.stamps[--S.nstamps];
                break;
            }
        }
    }
    log_line("aclprofDestroyStamp stamp=%s -> void", name);
    pthread_mutex_unlock(&g_mu);
}

/* NULL stamp: MP returns -1 (msprof_tx_manager.cpp); RT returns 100000 for Push/RangeStart (§2.7). A
 * pointer this library did not hand out (or already destroyed) is -1 in both (fake-only). */
static int stamp_arg_error(const void *stamp, int rt_null_is_param)
{
    if (stamp == NULL) {
        return (gen_rt() && rt_null_is_param) ? ACL_ERROR_INVALID_PARAM : PROFILING_FAILED;
    }
    return find_stamp(stamp) ? ACL_SUCCESS : PROFILING_FAILED;
}

API aclError aclprofSetStampTraceMessage(void *stamp, const char *msg, uint32_t msgLen)
{
    pthread_mutex_lock(&g_mu);
    int ret;
    char name[32], m[MAX_TX_MSG + 1];
    stamp_name(name, sizeof name, stamp);
    if (forced_failure("aclprofSetStampTraceMessage", &ret)) {
    } else if (!tx_active()) {
        ret = PROFILING_FAILED;
    } else if ((ret = stamp_arg_error(stamp, 0)) != ACL_SUCCESS) {
    } else if (msg == NULL || msgLen >= MAX_TX_MSG) {
        ret = PROFILING_FAILED; /* RT: msgLen < 128; MP: memcpy_s into message[128] with room for the NUL */
    } else {
        struct stamp *s = find_stamp(stamp);
        memcpy(s->msg, msg, msgLen);
        s->msg[msgLen] = '\0';
        ret = ACL_SUCCESS;
    }
    log_line("aclprofSetStampTraceMessage stamp=%s len=%u msg=%s -> %d", name, msgLen,
             printable(m, sizeof m, msg, msgLen < MAX_TX_MSG ? msgLen : MAX_TX_MSG), ret);
    pthread_mutex_unlock(&g_mu);
    return ret;
}

API aclError aclprofMark(void *stamp)
{
    pthread_mutex_lock(&g_mu);
    int ret;
    char name[32];
    stamp_name(name, sizeof name, stamp);
    if (forced_failure("aclprofMark", &ret)) {
    } else if (!tx_active()) {
        ret = PROFILING_FAILED;
    } else {
        ret = stamp_arg_error(stamp, 0);
    }
    log_line("aclprofMark stamp=%s -> %d", name, ret);
    pthread_mutex_unlock(&g_mu);
    return ret;
}

API aclError aclprofMarkEx(const char *msg, size_t msgLen, aclrtStream stream)
{
    pthread_mutex_lock(&g_mu);
    int ret;
    char m[MAX_TX_MSG + 1];
    if (forced_failure("aclprofMarkEx", &ret)) {
    } else if (!tx_active()) {
        ret = PROFILING_FAILED;
    } else if (msg == NULL || stream == NULL) {
        ret = PROFILING_FAILED; /* needs a non-NULL stream */
    } else if ((gen_rt() ? strlen(msg) : strnlen(msg, msgLen)) != msgLen) {
        ret = PROFILING_FAILED; /* length equal to the string length (RT strlen, MP strnlen) */
    } else if (msgLen < 1 || msgLen > MAX_TX_MSG - 1) {
        ret = PROFILING_FAILED; /* ≥ 1 (and ≤ 127: MP MarkEx message buffer) */
    } else {
        ret = ACL_SUCCESS;
    }
    log_line("aclprofMarkEx len=%zu stream=%s msg=%s -> %d", msgLen, stream ? "set" : "null",
             printable(m, sizeof m, msg, msgLen < MAX_TX_MSG ? msgLen : MAX_TX_MSG), ret);
    pthread_mutex_unlock(&g_mu);
    return ret;
}

API aclError aclprofPush(void *stamp)
{
    pthread_mutex_lock(&g_mu);
    int ret;
    char name[32];
    stamp_name(name, sizeof name, stamp);
    if (forced_failure("aclprofPush", &ret)) {
    } else if (!tx_active()) {
        ret = PROFILING_FAILED;
    } else if ((ret = stamp_arg_error(stamp, 1)) == ACL_SUCCESS) {
        tx_push_depth++;
    }
    log_line("aclprofPush stamp=%s -> %d", name, ret);
    pthread_mutex_unlock(&g_mu);
    return ret;
}

API aclError aclprofPop(void)
{
    pthread_mutex_lock(&g_mu);
    int ret;
    if (forced_failure("aclprofPop", &ret)) {
    } else if (!tx_active() || tx_push_depth == 0) {
        ret = PROFILING_FAILED; /* not running, or nothing pushed on this thread */
    } else {
        tx_push_depth--;
        ret = ACL_SUCCESS;
    }
    log_line("aclprofPop -> %d", ret);
    pthread_mutex_unlock(&g_mu);
    return ret;
}

API aclError aclprofRangeStart(void *stamp, uint32_t *rangeId)
{
    pthread_mutex_lock(&g_mu);
    int ret;
    char name[32];
    stamp_name(name, sizeof name, stamp);
    uint32_t id = 0;
    if (forced_failure("aclprofRangeStart", &ret)) {
    } else if (!tx_active()) {
        ret = PROFILING_FAILED;
    } else if ((ret = stamp_arg_error(stamp, 1)) != ACL_SUCCESS) {
    } else if (rangeId == NULL) {
        ret = gen_rt() ? ACL_ERROR_INVALID_PARAM : PROFILING_FAILED;
    } else if (S.nranges >= MAX_RANGES) {
        ret = PROFILING_FAILED;
    } else {
        id = ++S.next_range;
        S.ranges[S.nranges++] = id;
        *rangeId = id;
        ret = ACL_SUCCESS;
    }
    if (ret == ACL_SUCCESS) {
        log_line("aclprofRangeStart stamp=%s -> %d range=%u", name, ret, id);
    } else {
        log_line("aclprofRangeStart stamp=%s -> %d", name, ret);
    }
    pthread_mutex_unlock(&g_mu);
    return ret;
}

API aclError aclprofRangeStop(uint32_t rangeId)
{
    pthread_mutex_lock(&g_mu);
    int ret = PROFILING_FAILED;
    if (forced_failure("aclprofRangeStop", &ret)) {
    } else if (tx_active()) {
        for (size_t i = 0; i < S.nranges; i++) {
            if (S.ranges[i] == rangeId) {
                S.ranges[i] = S.ranges[--S.nranges];
                ret = ACL_SUCCESS;
                break;
            }
        }
    }
    log_line("aclprofRangeStop range=%u -> %d", rangeId, ret);
    pthread_mutex_unlock(&g_mu);
    return ret;
}

/* ------------------------------------------------------------------------------------------------
 * Test-only export: one device task launched by the calling host thread. Not a CANN symbol.
 * ---------------------------------------------------------------------------------------------- */

static int is_ai_core(const char *task_type)
{
    return strcmp(task_type, "AI_CORE") == 0 || strcmp(task_type, "AI_VECTOR_CORE") == 0 ||
           strcmp(task_type, "MIX_AIC") == 0 || strcmp(task_type, "MIX_AIV") == 0;
}

/* Ends every FAKE_ACL_HANG hang, now and later. */
API int fake_acl_release(void)
{
    hang_release();
    return 0;
}

/* FAKE_ACL_HANG hangs begun so far. */
API int fake_acl_hangs(void) { return hangs_begun(); }

/* The client's host step n began just before this call (n > 0), or the open step ends just after it (n == 0). */
API void fake_acl_step(uint64_t n)
{
    uint64_t now = clock_ns(CLOCK_MONOTONIC_RAW);
    pthread_mutex_lock(&g_mu);
    if (n != 0) {
        const size_t w = (size_t)(n % MAX_STEPS);
        S.steps[w].step = n;
        S.steps[w].begin_ns = now;
        S.steps[w].end_ns = 0;
    } else if (S.cur_step != 0) {
        S.steps[S.cur_step % MAX_STEPS].end_ns = now;
    }
    S.cur_step = n;
    pthread_mutex_unlock(&g_mu);
}

API void fake_launch(const char *name, const char *op_type, const char *task_type, uint32_t stream_id, uint64_t dur_ns)
{
    uint64_t launch = clock_ns(CLOCK_MONOTONIC_RAW);
    uint64_t tid = (uint64_t)syscall(SYS_gettid);
    pthread_mutex_lock(&g_mu);
    if (!S.running || S.running_dev < 0 || S.ntasks >= MAX_TASKS) {
        pthread_mutex_unlock(&g_mu); /* ignored when no session with a device runs */
        return;
    }
    struct stream_state *st = NULL;
    for (size_t i = 0; i < S.nstreams; i++) {
        if (S.streams[i].id == stream_id) {
            st = &S.streams[i];
            break;
        }
    }
    if (st == NULL) {
        if (S.nstreams >= MAX_STREAMS) {
            pthread_mutex_unlock(&g_mu);
            return;
        }
        st = &S.streams[S.nstreams++];
        st->id = stream_id;
        st->end_ns = 0;
        st->next_task_id = 0;
    }
    if (S.ntasks == S.cap_tasks) {
        size_t nc = S.cap_tasks ? S.cap_tasks * 2 : 1024;
        if (nc > MAX_TASKS) {
            nc = MAX_TASKS;
        }
        struct task *n = realloc(S.tasks, nc * sizeof *n);
        if (n == NULL) {
            pthread_mutex_unlock(&g_mu);
            return;
        }
        S.tasks = n;
        S.cap_tasks = nc;
    }
    struct task *t = &S.tasks[S.ntasks];
    t->tid = tid;
    t->launch_ns = launch;
    t->start_ns = launch + 5000 > st->end_ns ? launch + 5000 : st->end_ns; /* in order on its stream */
    t->dur_ns = dur_ns;
    t->stream = stream_id;
    t->task_id = st->next_task_id++;
    t->name = dup_field(name, "unknown");
    t->op_type = dup_field(op_type, "N/A");
    t->task_type = dup_field(task_type, "AI_CORE");
    if (t->name == NULL || t->op_type == NULL || t->task_type == NULL) {
        free(t->name);
        free(t->op_type);
        free(t->task_type);
        pthread_mutex_unlock(&g_mu);
        return;
    }
    t->block_dim = is_ai_core(t->task_type) ? 8 : 0;
    t->step = S.cur_step;
    st->end_ns = t->start_ns + dur_ns;
    S.ntasks++;
    if (t->step != 0) {
        log_line("fake_launch name=%s stream=%u task=%llu step=%llu", t->name, stream_id,
                 (unsigned long long)t->task_id, (unsigned long long)t->step);
    }
    pthread_mutex_unlock(&g_mu);
}

/* ------------------------------------------------------------------------------------------------
 * Process hooks
 * ---------------------------------------------------------------------------------------------- */

/* fork: hold the lock across fork so the child never inherits it locked by a thread it does not have. */
static void atfork_prepare(void) { pthread_mutex_lock(&g_mu); }
static void atfork_parent(void) { pthread_mutex_unlock(&g_mu); }
static void atfork_child(void) { pthread_mutex_unlock(&g_mu); }

__attribute__((constructor)) static void fake_msprofiler_init(void)
{
    pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

/* At exit: "exit state=off|inited|running configs=<not destroyed>" so tests can prove CANN was never
 * left half-started. trylock: a thread may still hold the lock while the process exits. */
__attribute__((destructor)) static void fake_msprofiler_exit(void)
{
    int locked = pthread_mutex_trylock(&g_mu) == 0;
    const char *state = S.running ? "running" : (S.mode == MODE_API ? "inited" : "off");
    log_line("exit state=%s configs=%zu", state, live_configs());
    if (locked) {
        pthread_mutex_unlock(&g_mu);
    }
}
