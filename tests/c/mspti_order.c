/* mspti_order: test driver of the fake MSPTI library itself (tests/c/fake_mspti.c).
 *
 * Usage: mspti_order DIR/libmspti.so
 *   dlopens argv[1], resolves the 15 MSPTI entry points and the 8 test-only exports, then runs every
 *   case in a forked child, so each case starts from a fresh library state (no subscriber, no kind
 *   enabled, no callbacks, no manager thread — the parent never calls into the library). Each child
 *   exits through exit(), so the fake's destructor writes its exit line. Environment changes made by a
 *   case stay in its child; the fake reads its environment at call time.
 *   Rules checked are those of docs/ascend-api.md §3 (codes §3.1, layouts §3.4, buffer
 *   protocol §3.5, enable/subscribe §3.6, timestamps §3.7) plus the fake's own FAKE_* knobs.
 *   Record layouts are checked by reading raw bytes at the §3.4 offsets (this file declares no record
 *   struct), and buffers are walked with the §3.5 size table.
 * Output: "ok <case>" or "FAIL <case>: <step> got X want Y" per case, then
 *   "mspti_order: N passed, M failed"; the exit status is non-zero if any case failed.
 *
 * Build: cc -std=gnu99 -Wall -Wextra -Werror -O1 -o DIR/mspti_order tests/c/mspti_order.c -ldl -lpthread
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- the API under test (own declarations, §3.3; enums passed as int, all 4 bytes) -------------- */

typedef int msptiResult;
typedef struct msptiSubscriber_st *msptiSubscriberHandle;
typedef struct {
    int callbackSite;
    const char *functionName;
    const void *functionParams;
    const void *functionReturnValue;
    const char *symbolName;
    uint64_t correlationId;
    uint64_t reserved1;
    uint64_t reserved2;
    uint64_t *correlationData;
} msptiCallbackData;
typedef void (*msptiCallbackFunc)(void *userdata, int domain, uint32_t cbid, const msptiCallbackData *cbdata);
typedef void (*RequestFn)(uint8_t **buffer, size_t *size, size_t *maxNumRecords);
typedef void (*CompleteFn)(uint8_t *buffer, size_t size, size_t validSize);
typedef struct msptiActivity msptiActivity;

static struct {
    msptiResult (*Subscribe)(msptiSubscriberHandle *, msptiCallbackFunc, void *);
    msptiResult (*Unsubscribe)(msptiSubscriberHandle);
    msptiResult (*EnableCallback)(uint32_t, msptiSubscriberHandle, int, uint32_t);
    msptiResult (*EnableDomain)(uint32_t, msptiSubscriberHandle, int);
    msptiResult (*RegisterCallbacks)(RequestFn, CompleteFn);
    msptiResult (*Enable)(int);
    msptiResult (*Disable)(int);
    bool (*IsEnabled)(int);
    msptiResult (*EnableMarkerDomain)(const char *);
    msptiResult (*DisableMarkerDomain)(const char *);
    msptiResult (*GetNextRecord)(uint8_t *, size_t, msptiActivity **);
    msptiResult (*FlushAll)(uint32_t);
    msptiResult (*FlushPeriod)(uint32_t);
    msptiResult (*PushExt)(int, uint64_t);
    msptiResult (*PopExt)(int, uint64_t *);
    void (*launch)(const char *, const char *, uint32_t, uint64_t);
    void (*hccl)(const char *, uint32_t, uint64_t);
    void (*memory)(uint64_t, int);
    void (*memcpy_)(uint64_t);
    void (*memset_)(uint64_t);
    void (*marker)(const char *, int);
    uint64_t (*dropped)(void);
    uint64_t (*emitted)(int);
} P;

/* §3.1 */
enum { OK = 0, INVALID = 1, MULTI = 2, MAX_LIMIT = 3, QUEUE_EMPTY = 5, NO_PRELOAD = 6, INNER = 999 };
/* §3.2 */
enum { K_MARKER = 1, K_KERNEL, K_API, K_HCCL, K_MEMORY, K_MEMSET, K_MEMCPY, K_EXT, K_COMM, K_ACL_API, K_NODE_API, K_RT_API };
enum { F_INSTANT = 1, F_START = 2, F_END = 4 };
enum { D_RUNTIME = 1, D_HCCL = 2 };

/* §3.5 size table */
static size_t rec_size(uint32_t kind)
{
    static const size_t t[13] = {0, 56, 56, 48, 56, 64, 56, 56, 24, 72, 48, 48, 48};
    return kind >= 1 && kind <= 12 ? t[kind] : 0;
}

/* ---- raw little helpers ------------------------------------------------------------------------ */

static uint32_t r32(const uint8_t *p, size_t off)
{
    uint32_t v;
    memcpy(&v, p + off, sizeof v);
    return v;
}
static uint64_t r64(const uint8_t *p, size_t off)
{
    uint64_t v;
    memcpy(&v, p + off, sizeof v);
    return v;
}
static double rdbl(const uint8_t *p, size_t off)
{
    double v;
    memcpy(&v, p + off, sizeof v);
    return v;
}
static const char *rstr(const uint8_t *p, size_t off)
{
    const char *v;
    memcpy(&v, p + off, sizeof v);
    return v;
}
static void w32(uint8_t *p, size_t off, uint32_t v) { memcpy(p + off, &v, sizeof v); }

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}
static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000ull + (uint64_t)ts.tv_nsec / 1000000ull;
}
static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}
static pid_t tid(void) { return (pid_t)syscall(SYS_gettid); }

/* ---- per-case bookkeeping ---------------------------------------------------------------------- */

static const char *g_case;
static int g_case_failed;
static char WORK[PATH_MAX];

static void check(const char *step, unsigned long long got, unsigned long long want)
{
    if (got != want) {
        printf("FAIL %s: %s got %llu want %llu\n", g_case, step, got, want);
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
static void check_str(const char *step, const char *got, const char *want)
{
    if (got == NULL || strcmp(got, want) != 0) {
        printf("FAIL %s: %s got \"%s\" want \"%s\"\n", g_case, step, got ? got : "(null)", want);
        g_case_failed = 1;
    }
}

/* ---- the client's buffer callbacks (§3.5), instrumented ---------------------------------------- */

#define MAX_DELIVERIES 8192
struct delivery {
    uint8_t *copy; /* a copy of the valid bytes (NULL when the buffer was NULL) */
    int null_buffer;
    size_t size, valid;
    pid_t tid;
};
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static struct delivery g_del[MAX_DELIVERIES];
static int g_ndel;
static int g_inflight, g_max_inflight;
static int g_nreq;
static pid_t g_req_tid[64];   /* threads of the first 64 requests */
static size_t g_req_size = 1u << 20;
static int g_req_null_left;      /* the next N requests set *buffer = NULL ... */
static size_t g_req_null_size;   /* ... with this *size */
static long g_complete_sleep_ms; /* complete sleeps this long (a slow consumer) */

static void on_request(uint8_t **buffer, size_t *size, size_t *maxNumRecords)
{
    pthread_mutex_lock(&g_mu);
    if (g_nreq < 64) {
        g_req_tid[g_nreq] = tid();
    }
    g_nreq++;
    int null = g_req_null_left > 0;
    if (null) {
        g_req_null_left--;
    }
    size_t sz = g_req_size;
    size_t nsz = g_req_null_size;
    pthread_mutex_unlock(&g_mu);
    if (null) {
        *buffer = NULL;
        *size = nsz;
    } else {
        *buffer = aligned_alloc(8, (sz + 7) & ~(size_t)7);
        *size = sz;
    }
    *maxNumRecords = 0;
}

static void on_complete(uint8_t *buffer, size_t size, size_t validSize)
{
    pthread_mutex_lock(&g_mu);
    g_inflight++;
    if (g_inflight > g_max_inflight) {
        g_max_inflight = g_inflight;
    }
    long nap = g_complete_sleep_ms;
    pthread_mutex_unlock(&g_mu);
    if (nap > 0) {
        sleep_ms(nap);
    }
    uint8_t *copy = NULL;
    if (buffer != NULL && validSize > 0) {
        copy = malloc(validSize);
        memcpy(copy, buffer, validSize);
    }
    pthread_mutex_lock(&g_mu);
    if (g_ndel < MAX_DELIVERIES) {
        struct delivery *d = &g_del[g_ndel++];
        d->copy = copy;
        d->null_buffer = buffer == NULL;
        d->size = size;
        d->valid = validSize;
        d->tid = tid();
    }
    g_inflight--;
    pthread_mutex_unlock(&g_mu);
    free(buffer);
}

static int deliveries(void)
{
    pthread_mutex_lock(&g_mu);
    int n = g_ndel;
    pthread_mutex_unlock(&g_mu);
    return n;
}
static int inflight(void)
{
    pthread_mutex_lock(&g_mu);
    int n = g_inflight;
    pthread_mutex_unlock(&g_mu);
    return n;
}
static int requests(void)
{
    pthread_mutex_lock(&g_mu);
    int n = g_nreq;
    pthread_mutex_unlock(&g_mu);
    return n;
}

/* Polls until at least n deliveries arrived; returns 1 on success. */
static int wait_deliveries(int n, long timeout_ms)
{
    uint64_t end = mono_ms() + (uint64_t)timeout_ms;
    while (deliveries() < n) {
        if (mono_ms() > end) {
            return 0;
        }
        sleep_ms(1);
    }
    return 1;
}

/* Walks a delivered buffer with the §3.5 size table: stores offsets and kinds, returns the number of
 * records, or -1 if an unknown kind is met or a record overruns validSize. */
static int walk(const uint8_t *buf, size_t valid, size_t *offs, uint32_t *kinds, int max)
{
    int n = 0;
    size_t off = 0;
    while (off < valid) {
        uint32_t k = r32(buf, off);
        size_t sz = rec_size(k);
        if (sz == 0 || off + sz > valid || n >= max) {
            return -1;
        }
        offs[n] = off;
        kinds[n] = k;
        n++;
        off += sz;
    }
    return n;
}

/* Common set-up: subscribe, register the instrumented callbacks. */
static msptiSubscriberHandle setup(void)
{
    msptiSubscriberHandle h = NULL;
    check("setup Subscribe", (unsigned)P.Subscribe(&h, NULL, NULL), OK);
    check("setup RegisterCallbacks", (unsigned)P.RegisterCallbacks(on_request, on_complete), OK);
    return h;
}

static void enable(int kind)
{
    char step[64];
    snprintf(step, sizeof step, "Enable(%d)", kind);
    check(step, (unsigned)P.Enable(kind), OK);
}

/* Threads of this process named `name` (/proc/self/task/<tid>/comm). */
static int count_threads(const char *name)
{
    DIR *d = opendir("/proc/self/task");
    int n = 0;
    if (d == NULL) {
        return -1;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') {
            continue;
        }
        char p[300], comm[64] = "";
        snprintf(p, sizeof p, "/proc/self/task/%s/comm", e->d_name);
        FILE *f = fopen(p, "r");
        if (f) {
            if (fgets(comm, sizeof comm, f)) {
                comm[strcspn(comm, "\n")] = '\0';
            }
            fclose(f);
        }
        n += strcmp(comm, name) == 0;
    }
    closedir(d);
    return n;
}

/* ================================================================================================
 * Cases
 * ============================================================================================== */

/* §3.6 subscribe/unsubscribe codes. */
static void case_subscribe(void)
{
    msptiSubscriberHandle h = NULL, h2 = NULL, h3 = NULL;
    int local;
    check("Subscribe(NULL)", (unsigned)P.Subscribe(NULL, NULL, NULL), INVALID);
    check("Subscribe", (unsigned)P.Subscribe(&h, NULL, NULL), OK);
    check_true("handle non-NULL", h != NULL);
    check("second Subscribe", (unsigned)P.Subscribe(&h2, NULL, NULL), MULTI);
    check_true("second Subscribe leaves *subscriber", h2 == NULL);
    check("Subscribe(NULL) while subscribed", (unsigned)P.Subscribe(NULL, NULL, NULL), INVALID);
    check("Unsubscribe(foreign)", (unsigned)P.Unsubscribe((msptiSubscriberHandle)(void *)&local), INVALID);
    check("Unsubscribe(NULL) subscribed", (unsigned)P.Unsubscribe(NULL), INVALID);
    check("Unsubscribe(h)", (unsigned)P.Unsubscribe(h), OK);
    check("Unsubscribe(h) again (not subscribed)", (unsigned)P.Unsubscribe(h), OK);
    check("Unsubscribe(NULL) not subscribed", (unsigned)P.Unsubscribe(NULL), OK);
    check("re-Subscribe", (unsigned)P.Subscribe(&h3, NULL, NULL), OK);
    check("Unsubscribe(stale h)", (unsigned)P.Unsubscribe(h), h3 == h ? OK : INVALID);
    check("Unsubscribe(h3)", (unsigned)P.Unsubscribe(h3), OK);
}

/* §3.8 / FAKE_MSPTI_OTHER_SUBSCRIBER. */
static void case_other_subscriber(void)
{
    msptiSubscriberHandle h = NULL;
    setenv("FAKE_MSPTI_OTHER_SUBSCRIBER", "1", 1);
    check("first Subscribe (torch_npu holds it)", (unsigned)P.Subscribe(&h, NULL, NULL), MULTI);
    check("second Subscribe", (unsigned)P.Subscribe(&h, NULL, NULL), OK);
    check("Unsubscribe", (unsigned)P.Unsubscribe(h), OK);
    setenv("FAKE_MSPTI_OTHER_SUBSCRIBER", "always", 1);
    check("Subscribe (always)", (unsigned)P.Subscribe(&h, NULL, NULL), MULTI);
    check("Subscribe (always) again", (unsigned)P.Subscribe(&h, NULL, NULL), MULTI);
    unsetenv("FAKE_MSPTI_OTHER_SUBSCRIBER");
    check("Subscribe (released)", (unsigned)P.Subscribe(&h, NULL, NULL), OK);
}

/* §3.5 RegisterCallbacks: NULL → 1; the first success starts the manager thread. */
static void case_register_callbacks(void)
{
    /* counted by name: qemu-user and TSan run helper threads of their own */
    check("no manager before", (unsigned)count_threads("ActivityManager"), 0);
    check("Register(NULL, complete)", (unsigned)P.RegisterCallbacks(NULL, on_complete), INVALID);
    check("Register(request, NULL)", (unsigned)P.RegisterCallbacks(on_request, NULL), INVALID);
    check("Register(NULL, NULL)", (unsigned)P.RegisterCallbacks(NULL, NULL), INVALID);
    check("no manager after failed registers", (unsigned)count_threads("ActivityManager"), 0);
    check("Register", (unsigned)P.RegisterCallbacks(on_request, on_complete), OK);
    sleep_ms(20);
    check("manager thread ActivityManager started", (unsigned)count_threads("ActivityManager"), 1);
    check("Register again (replaces)", (unsigned)P.RegisterCallbacks(on_request, on_complete), OK);
    sleep_ms(20);
    check("no second manager", (unsigned)count_threads("ActivityManager"), 1);
}

/* §3.6 Enable/Disable kind range, IsEnabled. */
static void case_enable_range(void)
{
    unsetenv("LD_PRELOAD");
    const int bad[] = {0, 13, -1, 77, 0x7fffffff};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char step[64];
        snprintf(step, sizeof step, "Enable(%d)", bad[i]);
        check(step, (unsigned)P.Enable(bad[i]), INVALID);
        snprintf(step, sizeof step, "Disable(%d)", bad[i]);
        check(step, (unsigned)P.Disable(bad[i]), INVALID);
        snprintf(step, sizeof step, "IsEnabled(%d)", bad[i]);
        check(step, P.IsEnabled(bad[i]), 0);
    }
    const int good[] = {K_MARKER, K_KERNEL, K_API, K_EXT, K_COMM, K_ACL_API, K_NODE_API, K_RT_API};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        char step[64];
        snprintf(step, sizeof step, "IsEnabled(%d) before", good[i]);
        check(step, P.IsEnabled(good[i]), 0);
        snprintf(step, sizeof step, "Enable(%d) without subscribe", good[i]);
        check(step, (unsigned)P.Enable(good[i]), OK);
        snprintf(step, sizeof step, "IsEnabled(%d)", good[i]);
        check(step, P.IsEnabled(good[i]), 1);
        snprintf(step, sizeof step, "Enable(%d) twice", good[i]);
        check(step, (unsigned)P.Enable(good[i]), OK);
        snprintf(step, sizeof step, "Disable(%d)", good[i]);
        check(step, (unsigned)P.Disable(good[i]), OK);
        snprintf(step, sizeof step, "IsEnabled(%d) after Disable", good[i]);
        check(step, P.IsEnabled(good[i]), 0);
        snprintf(step, sizeof step, "Disable(%d) twice", good[i]);
        check(step, (unsigned)P.Disable(good[i]), OK);
    }
}

/* §3.6 LD_PRELOAD rule for kinds 4..7 (HEAD), and FAKE_MSPTI_OLD. */
static void case_ld_preload(void)
{
    for (int k = K_HCCL; k <= K_MEMCPY; k++) {
        char step[96];
        unsetenv("LD_PRELOAD");
        snprintf(step, sizeof step, "Enable(%d) LD_PRELOAD unset", k);
        check(step, (unsigned)P.Enable(k), NO_PRELOAD);
        snprintf(step, sizeof step, "IsEnabled(%d) after 6", k);
        check(step, P.IsEnabled(k), 0);
        setenv("LD_PRELOAD", "/opt/x/libfoo.so", 1);
        snprintf(step, sizeof step, "Enable(%d) LD_PRELOAD without libmspti", k);
        check(step, (unsigned)P.Enable(k), NO_PRELOAD);
        setenv("LD_PRELOAD", "/usr/lib/libfoo.so:/opt/cann/lib64/libmspti.so", 1);
        snprintf(step, sizeof step, "Enable(%d) LD_PRELOAD with libmspti.so", k);
        check(step, (unsigned)P.Enable(k), OK);
        snprintf(step, sizeof step, "IsEnabled(%d)", k);
        check(step, P.IsEnabled(k), 1);
        unsetenv("LD_PRELOAD");
        snprintf(step, sizeof step, "Disable(%d) LD_PRELOAD unset", k);
        check(step, (unsigned)P.Disable(k), OK);
        setenv("FAKE_MSPTI_OLD", "1", 1);
        snprintf(step, sizeof step, "Enable(%d) old library", k);
        check(step, (unsigned)P.Enable(k), OK);
        check(step, (unsigned)P.Disable(k), OK);
        unsetenv("FAKE_MSPTI_OLD");
    }
    unsetenv("LD_PRELOAD");
    check("Enable(KERNEL) needs no LD_PRELOAD", (unsigned)P.Enable(K_KERNEL), OK);
}

/* §3.6 Enable before Subscribe → SUCCESS, but records only while subscribed; Unsubscribe keeps kinds. */
static void case_enable_before_subscribe(void)
{
    msptiSubscriberHandle h = NULL;
    check("Register", (unsigned)P.RegisterCallbacks(on_request, on_complete), OK);
    check("Enable(KERNEL) before Subscribe", (unsigned)P.Enable(K_KERNEL), OK);
    P.launch("k0", "KERNEL_AICORE", 1, 1000);
    check("no record while unsubscribed", P.emitted(0), 0);
    check("not a drop either", P.dropped(), 0);
    check("no request while unsubscribed", (unsigned)requests(), 0);
    check("Subscribe", (unsigned)P.Subscribe(&h, NULL, NULL), OK);
    P.launch("k1", "KERNEL_AICORE", 1, 1000);
    check("kernel record once subscribed", P.emitted(K_KERNEL), 1);
    check("Unsubscribe", (unsigned)P.Unsubscribe(h), OK);
    check("kind stays enabled after Unsubscribe", P.IsEnabled(K_KERNEL), 1);
    P.launch("k2", "KERNEL_AICORE", 1, 1000);
    check("no record after Unsubscribe", P.emitted(K_KERNEL), 1);
    check("FlushAll after Unsubscribe", (unsigned)P.FlushAll(1), OK);
    check("one delivery", (unsigned)deliveries(), 1);
    if (deliveries() == 1) {
        check("validSize", g_del[0].valid, 56);
        check_str("kernel name", rstr(g_del[0].copy, 44), "k1");
    }
}

/* §3.6 "records produced before RegisterCallbacks have no buffer and are dropped". */
static void case_no_callbacks(void)
{
    msptiSubscriberHandle h = NULL;
    check("Subscribe", (unsigned)P.Subscribe(&h, NULL, NULL), OK);
    enable(K_API);
    P.launch("k", "KERNEL_AICORE", 0, 100);
    P.launch("k", "KERNEL_AICORE", 0, 100);
    check("dropped without callbacks", P.dropped(), 2);
    check("emitted without callbacks", P.emitted(0), 0);
    check("Register", (unsigned)P.RegisterCallbacks(on_request, on_complete), OK);
    P.launch("k", "KERNEL_AICORE", 0, 100);
    check("emitted after Register", P.emitted(K_API), 1);
    check("FlushAll", (unsigned)P.FlushAll(0), OK);
    check("deliveries (no phantom buffer)", (unsigned)deliveries(), 1);
    if (deliveries() == 1) {
        check("validSize", g_del[0].valid, 48);
    }
}

/* §3.4 API (48) and KERNEL (56) layouts, §3.7 realtime ns, correlation, stream order. */
static void case_layout_launch(void)
{
    setenv("FAKE_MSPTI_DEVICE", "3", 1);
    setup();
    enable(K_API);
    enable(K_KERNEL);
    uint64_t before = now_ns();
    P.launch("matmul_kernel", "KERNEL_AIVEC", 7, 5000);
    uint64_t after = now_ns();
    P.launch("add_kernel", "KERNEL_AICORE", 7, 1000000);
    P.launch("mul_kernel", "KERNEL_AICORE", 7, 1000);
    enable(K_ACL_API);
    P.launch("k4", NULL, 8, 10);
    check("FlushAll", (unsigned)P.FlushAll(1), OK);
    check("deliveries", (unsigned)deliveries(), 1);
    if (deliveries() != 1) {
        return;
    }
    const struct delivery *d = &g_del[0];
    check("size as requested", d->size, 1u << 20);
    check("validSize = 3*(48+56) + 48+48+56", d->valid, 3 * 104 + 152);
    check("FlushAll delivers on the calling thread", (unsigned)d->tid, (unsigned)tid());
    size_t offs[32];
    uint32_t kinds[32];
    int n = walk(d->copy, d->valid, offs, kinds, 32);
    check("records", (unsigned)n, 9);
    if (n != 9) {
        return;
    }
    const uint8_t *a = d->copy + 0, *k = d->copy + 48;
    /* API @0: kind u32 @0 · start @4 · end @12 · pid @20 · tid @24 · correlationId @28 · name @36 */
    check("api.kind @0", r32(a, 0), K_API);
    check_true("api.start @4 is CLOCK_REALTIME now", r64(a, 4) >= before && r64(a, 4) <= after);
    check("api.end @12 = start + 2000", r64(a, 12), r64(a, 4) + 2000);
    check("api.pid @20", r32(a, 20), (unsigned)getpid());
    check("api.tid @24", r32(a, 24), (unsigned)tid());
    check_true("api.correlationId @28 >= 1", r64(a, 28) >= 1);
    check_str("api.name @36", rstr(a, 36), "LaunchKernel");
    check("api pad @44", r32(a, 44), 0);
    /* KERNEL @48: kind @0 · start @4 · end @12 · deviceId @20 · streamId @24 · corr @28 · type @36 · name @44 */
    check("kernel.kind @0", r32(k, 0), K_KERNEL);
    check_true("kernel.start @4 >= api.end + 3000", r64(k, 4) >= r64(a, 12) + 3000);
    check("kernel.end @12 = start + dur", r64(k, 12), r64(k, 4) + 5000);
    check("kernel.deviceId @20 (FAKE_MSPTI_DEVICE)", r32(k, 20), 3);
    check("kernel.streamId @24", r32(k, 24), 7);
    check("kernel.correlationId @28 = api's", r64(k, 28), r64(a, 28));
    check_str("kernel.type @36", rstr(k, 36), "KERNEL_AIVEC");
    check_str("kernel.name @44", rstr(k, 44), "matmul_kernel");
    /* in order on stream 7 */
    const uint8_t *k2 = d->copy + offs[3], *k3 = d->copy + offs[5];
    check("second kernel", r32(k2, 0), K_KERNEL);
    check_true("kernel 2 starts after kernel 1 ends", r64(k2, 4) >= r64(k, 12));
    check_true("kernel 3 starts after kernel 2 ends (1 ms)", r64(k3, 4) >= r64(k2, 12));
    check("correlation ids increase", r64(k3, 28), r64(k2, 28) + 1);
    /* API + ACL_API + KERNEL for the 4th launch */
    check("4th launch: API kind 3", kinds[6], K_API);
    check("4th launch: ACL_API kind field 10", kinds[7], K_ACL_API);
    check("4th launch: KERNEL", kinds[8], K_KERNEL);
    check("ACL_API record size 48", offs[8] - offs[7], 48);
    check("ACL_API correlation = API's", r64(d->copy + offs[7], 28), r64(d->copy + offs[6], 28));
    check_str("default kernel type", rstr(d->copy + offs[8], 36), "KERNEL_AICORE");
    check("kernel stream 8", r32(d->copy + offs[8], 24), 8);
    for (int i = 0; i < n; i++) {
        check("record offset multiple of 8", offs[i] % 8, 0);
    }
    /* GetNextRecord agrees with the raw walk */
    msptiActivity *r = NULL;
    for (int i = 0; i < n; i++) {
        check("GetNextRecord", (unsigned)P.GetNextRecord(d->copy, d->valid, &r), OK);
        check("GetNextRecord pointer", (unsigned long long)(uintptr_t)r, (unsigned long long)(uintptr_t)(d->copy + offs[i]));
    }
    check("GetNextRecord end", (unsigned)P.GetNextRecord(d->copy, d->valid, &r), MAX_LIMIT);
    check("emitted(API)", P.emitted(K_API), 4);
    check("emitted(KERNEL)", P.emitted(K_KERNEL), 4);
    check("emitted(ACL_API)", P.emitted(K_ACL_API), 1);
    check("emitted(all)", P.emitted(0), 9);
    check("dropped", P.dropped(), 0);
}

/* §3.4 HCCL 56, COMMUNICATION 72, MEMORY 64, MEMSET 56, MEMCPY 56, MARKER 56, EXTERNAL_CORRELATION 24. */
static void case_layout_others(void)
{
    setenv("LD_PRELOAD", "libmspti.so", 1);
    setenv("FAKE_MSPTI_DEVICE", "5", 1);
    setup();
    const int kinds_on[] = {K_MARKER, K_API, K_HCCL, K_MEMORY, K_MEMSET, K_MEMCPY, K_EXT, K_COMM};
    for (size_t i = 0; i < sizeof kinds_on / sizeof kinds_on[0]; i++) {
        enable(kinds_on[i]);
    }
    uint64_t before = now_ns();
    P.hccl("allreduce_1", 4, 20000);                        /* HCCL, COMM */
    P.memory(4096, 0);                                       /* MEMORY alloc */
    P.memory(4096, 1);                                       /* MEMORY release */
    P.memcpy_(1u << 20);                                     /* MEMCPY */
    P.memset_(100);                                          /* MEMSET */
    P.marker("step", F_START);                               /* MARKER start */
    P.marker("ignored", F_END);                              /* MARKER end */
    P.marker("tick", F_INSTANT);                             /* MARKER instant */
    check("Push(CUSTOM0, 4242)", (unsigned)P.PushExt(2, 4242), OK);
    P.launch("k", "KERNEL_AICORE", 0, 10);                   /* EXT, API */
    uint64_t after = now_ns();
    check("FlushAll", (unsigned)P.FlushAll(1), OK);
    check("deliveries", (unsigned)deliveries(), 1);
    if (deliveries() != 1) {
        return;
    }
    const struct delivery *d = &g_del[0];
    size_t offs[32];
    uint32_t kinds[32];
    int n = walk(d->copy, d->valid, offs, kinds, 32);
    const uint32_t want_kinds[] = {K_HCCL, K_COMM, K_MEMORY, K_MEMORY, K_MEMCPY, K_MEMSET, K_MARKER, K_MARKER, K_MARKER, K_EXT, K_API};
    check("records", (unsigned)n, 11);
    check("validSize", d->valid, 56 + 72 + 64 + 64 + 56 + 56 + 3 * 56 + 24 + 48);
    if (n != 11) {
        return;
    }
    for (int i = 0; i < n; i++) {
        char step[64];
        snprintf(step, sizeof step, "record %d kind", i);
        check(step, kinds[i], want_kinds[i]);
    }
    const uint8_t *h = d->copy + offs[0], *c = d->copy + offs[1];
    /* HCCL: kind @0 · start @4 · end @12 · deviceId @20 · streamId @24 · bandWidth @28 · name @36 · commName @44 */
    check_true("hccl.start @4 realtime", r64(h, 4) >= before && r64(h, 4) <= after + 1000000);
    check("hccl.end @12", r64(h, 12), r64(h, 4) + 20000);
    check("hccl.deviceId @20", r32(h, 20), 5);
    check("hccl.streamId @24", r32(h, 24), 4);
    check_true("hccl.bandWidth @28 = 12.5", rdbl(h, 28) == 12.5);
    check_str("hccl.name @36", rstr(h, 36), "allreduce_1");
    check_str("hccl.commName @44", rstr(h, 44), "group0");
    /* COMM: kind @0 · dataType @4 · count @8 · deviceId @16 · streamId @20 · start @24 · end @32 · algType @40
     * · name @48 · commName @56 · correlationId @64 */
    check("comm.dataType @4 (FP16)", r32(c, 4), 3);
    check("comm.count @8", r64(c, 8), 1024);
    check("comm.deviceId @16", r32(c, 16), 5);
    check("comm.streamId @20", r32(c, 20), 4);
    check("comm.start @24 = hccl start", r64(c, 24), r64(h, 4));
    check("comm.end @32 = hccl end", r64(c, 32), r64(h, 12));
    check_str("comm.algType @40", rstr(c, 40), "RING");
    check_str("comm.name @48", rstr(c, 48), "allreduce_1");
    check_str("comm.commName @56", rstr(c, 56), "group0");
    check_true("comm.correlationId @64 >= 1", r64(c, 64) >= 1);
    /* MEMORY: kind @0 · opType @4 · memoryKind @8 · corr @12 · start @20 · end @28 · address @36 · bytes @44 ·
     * processId @52 · deviceId @56 · streamId @60 */
    const uint8_t *ma = d->copy + offs[2], *mr = d->copy + offs[3];
    check("memory.opType @4 alloc", r32(ma, 4), 0);
    check("memory.opType @4 release", r32(mr, 4), 1);
    check("memory.memoryKind @8 DEVICE", r32(ma, 8), 1);
    check("memory.correlationId @12 increases", r64(mr, 12), r64(ma, 12) + 1);
    check_true("memory.start @20 realtime", r64(ma, 20) >= before && r64(ma, 20) <= after);
    check("memory.end @28", r64(ma, 28), r64(ma, 20) + 1000);
    check_true("memory.address @36 non-zero", r64(ma, 36) != 0);
    check("memory.address @36 release = alloc", r64(mr, 36), r64(ma, 36));
    check("memory.bytes @44", r64(ma, 44), 4096);
    check("memory.processId @52", r32(ma, 52), (unsigned)getpid());
    check("memory.deviceId @56", r32(ma, 56), 5);
    check("memory.streamId @60", r32(ma, 60), 0xFFFFFFFFu);
    /* MEMCPY / MEMSET: kind @0 · copyKind|value @4 · bytes @8 · start @16 · end @24 · deviceId @32 · streamId @36
     * · corr @40 · isAsync @48 */
    const uint8_t *mc = d->copy + offs[4], *ms = d->copy + offs[5];
    check("memcpy.copyKind @4 HTOD", r32(mc, 4), 2);
    check("memcpy.bytes @8", r64(mc, 8), 1u << 20);
    check_true("memcpy.start @16 realtime", r64(mc, 16) >= before && r64(mc, 16) <= after);
    check("memcpy.end @24", r64(mc, 24), r64(mc, 16) + (1u << 20) / 20);
    check("memcpy.deviceId @32", r32(mc, 32), 5);
    check("memcpy.streamId @36", r32(mc, 36), 0);
    check("memcpy.correlationId @40", r64(mc, 40), r64(mr, 12) + 1);
    check("memcpy.isAsync @48", mc[48], 0);
    check("memset.value @4", r32(ms, 4), 0);
    check("memset.bytes @8", r64(ms, 8), 100);
    check("memset.end @24 (>= 1 us)", r64(ms, 24), r64(ms, 16) + 1000);
    check("memset.deviceId @32", r32(ms, 32), 5);
    check("memset.correlationId @40", r64(ms, 40), r64(mc, 40) + 1);
    check("memset.isAsync @48", ms[48], 0);
    /* MARKER: kind @0 · flag @4 · sourceKind @8 · timestamp @12 · id @20 · objectId.pt @28/@32 · name @36 ·
     * domain @44 */
    const uint8_t *m1 = d->copy + offs[6], *m2 = d->copy + offs[7], *m3 = d->copy + offs[8];
    check("marker.flag @4 START", r32(m1, 4), F_START);
    check("marker.sourceKind @8 HOST", r32(m1, 8), 0);
    check_true("marker.timestamp @12 realtime", r64(m1, 12) >= before && r64(m1, 12) <= after);
    check_true("marker.id @20 >= 1", r64(m1, 20) >= 1);
    check("marker.objectId.pt.processId @28", r32(m1, 28), (unsigned)getpid());
    check("marker.objectId.pt.threadId @32", r32(m1, 32), (unsigned)tid());
    check_str("marker.name @36", rstr(m1, 36), "step");
    check_str("marker.domain @44", rstr(m1, 44), "default");
    check("end marker.flag", r32(m2, 4), F_END);
    check("end marker.id = start id", r64(m2, 20), r64(m1, 20));
    check_str("end marker.name is empty", rstr(m2, 36), "");
    check_str("end marker.domain is empty", rstr(m2, 44), "");
    check("instant marker.flag", r32(m3, 4), F_INSTANT);
    check_true("instant marker new id", r64(m3, 20) != r64(m1, 20));
    check_str("instant marker.domain", rstr(m3, 44), "default");
    /* EXTERNAL_CORRELATION: kind @0 · externalKind @4 · externalId @8 · correlationId @16; precedes the API */
    const uint8_t *e = d->copy + offs[9], *a = d->copy + offs[10];
    check("ext.externalKind @4", r32(e, 4), 2);
    check("ext.externalId @8", r64(e, 8), 4242);
    check("ext.correlationId @16 = api corr", r64(e, 16), r64(a, 28));
    check("ext record size", offs[10] - offs[9], 24);
}

/* §3.5 GetNextRecord: thread-local cursor, record argument ignored, MAX_LIMIT resets, INNER does not. */
struct cursor_arg {
    uint8_t *buf;
    size_t valid;
    msptiActivity *got;
    int ret;
};
static void *cursor_thread(void *p)
{
    struct cursor_arg *a = p;
    a->ret = P.GetNextRecord(a->buf, a->valid, &a->got);
    return NULL;
}

static void case_get_next_record(void)
{
    /* one record of every kind 1..12, walked by the §3.5 table */
    static uint8_t all[1024] __attribute__((aligned(8)));
    size_t off = 0, offs[13];
    for (uint32_t k = 1; k <= 12; k++) {
        offs[k] = off;
        w32(all, off, k);
        off += rec_size(k);
    }
    size_t valid = off;
    check("table total", valid, 56 + 56 + 48 + 56 + 64 + 56 + 56 + 24 + 72 + 48 * 3);
    msptiActivity *r = (msptiActivity *)(void *)(all + offs[12]); /* a "previous record" the library ignores */
    for (uint32_t k = 1; k <= 12; k++) {
        char step[64];
        snprintf(step, sizeof step, "kind %u", k);
        check(step, (unsigned)P.GetNextRecord(all, valid, &r), OK);
        snprintf(step, sizeof step, "kind %u at offset %zu", k, offs[k]);
        check(step, (unsigned long long)((uint8_t *)r - all), offs[k]);
        if (k == 3) {
            r = (msptiActivity *)(void *)all; /* rewinding the argument does not rewind the cursor */
        }
    }
    check("end of buffer", (unsigned)P.GetNextRecord(all, valid, &r), MAX_LIMIT);
    check("after MAX_LIMIT the cursor is 0", (unsigned)P.GetNextRecord(all, valid, &r), OK);
    check("... first record", (unsigned long long)((uint8_t *)r - all), 0);

    /* buffer NULL → 1, cursor untouched */
    check("buffer NULL", (unsigned)P.GetNextRecord(NULL, valid, &r), INVALID);
    check("next after NULL", (unsigned)P.GetNextRecord(all, valid, &r), OK);
    check("... second record", (unsigned long long)((uint8_t *)r - all), offs[2]);
    check("record NULL", (unsigned)P.GetNextRecord(all, valid, NULL), INVALID);

    /* another thread has its own cursor */
    struct cursor_arg ca = {all, valid, NULL, -1};
    pthread_t t;
    pthread_create(&t, NULL, cursor_thread, &ca);
    pthread_join(t, NULL);
    check("other thread", (unsigned)ca.ret, OK);
    check("other thread starts at 0", (unsigned long long)((uint8_t *)ca.got - all), 0);
    /* this thread's cursor is at offs[3] = 112: a different buffer continues from there (one cursor per
     * thread, not per buffer). mixed = [KERNEL @0][KERNEL @56][API @112][API @160], 208 bytes. */
    static uint8_t mixed[208] __attribute__((aligned(8)));
    w32(mixed, 0, K_KERNEL);
    w32(mixed, 56, K_KERNEL);
    w32(mixed, 112, K_API);
    w32(mixed, 160, K_API);
    check("interleaved buffer", (unsigned)P.GetNextRecord(mixed, sizeof mixed, &r), OK);
    check("interleaved buffer continues at the old cursor", (unsigned long long)((uint8_t *)r - mixed), offs[3]);
    check("interleaved buffer next", (unsigned)P.GetNextRecord(mixed, sizeof mixed, &r), OK);
    check("... at 160", (unsigned long long)((uint8_t *)r - mixed), 160);
    check("... until validSize", (unsigned)P.GetNextRecord(mixed, sizeof mixed, &r), MAX_LIMIT);
    static uint8_t apis[3 * 48] __attribute__((aligned(8)));
    for (int i = 0; i < 3; i++) {
        w32(apis, (size_t)i * 48, K_API);
    }

    /* unknown kind: INNER, cursor neither moved nor reset */
    static uint8_t bad[3 * 48] __attribute__((aligned(8)));
    w32(bad, 0, K_API);
    w32(bad, 48, 77);
    w32(bad, 96, K_API);
    check("bad[0]", (unsigned)P.GetNextRecord(bad, sizeof bad, &r), OK);
    check("unknown kind 77", (unsigned)P.GetNextRecord(bad, sizeof bad, &r), INNER);
    check("unknown kind 77 again (cursor not moved)", (unsigned)P.GetNextRecord(bad, sizeof bad, &r), INNER);
    check("next buffer starts mid-stream (cursor not reset)", (unsigned)P.GetNextRecord(apis, sizeof apis, &r), OK);
    check("... at offset 48", (unsigned long long)((uint8_t *)r - apis), 48);
    check("apis[96]", (unsigned)P.GetNextRecord(apis, sizeof apis, &r), OK);
    check("apis end", (unsigned)P.GetNextRecord(apis, sizeof apis, &r), MAX_LIMIT);
    w32(bad, 0, 0);
    check("kind 0", (unsigned)P.GetNextRecord(bad, sizeof bad, &r), INNER);
    check("kind 0 at end resets", (unsigned)P.GetNextRecord(bad, 0, &r), MAX_LIMIT);

    /* a record extending past validSize */
    check("record past validSize", (unsigned)P.GetNextRecord(apis, 40, &r), INNER);
    check("same buffer, full validSize", (unsigned)P.GetNextRecord(apis, 48, &r), OK);
    check("validSize reached", (unsigned)P.GetNextRecord(apis, 48, &r), MAX_LIMIT);
    check("validSize 0", (unsigned)P.GetNextRecord(apis, 0, &r), MAX_LIMIT);
}

/* §3.5: retire at >= 80 %, request on the recording thread, complete on a new thread per buffer, overlapping. */
static void case_completion_threads(void)
{
    g_req_size = 1000;
    g_complete_sleep_ms = 150;
    setup();
    enable(K_API);
    enable(K_KERNEL);
    for (int i = 0; i < 40; i++) {
        P.launch("k", "KERNEL_AICORE", 0, 10); /* 104 bytes each: 8 per buffer (832 >= 800 → retired) */
    }
    check("requests", (unsigned)requests(), 5);
    for (int i = 0; i < 5; i++) {
        check("request on the recording thread", (unsigned)g_req_tid[i], (unsigned)tid());
    }
    check_true("4 retired buffers delivered without FlushAll", wait_deliveries(4, 5000));
    sleep_ms(50);
    pthread_mutex_lock(&g_mu);
    int n = g_ndel, maxin = g_max_inflight;
    pthread_mutex_unlock(&g_mu);
    check("exactly the retired ones", (unsigned)n, 4);
    check_true("completions overlap (a thread per buffer)", maxin >= 2);
    for (int i = 0; i < n && i < 4; i++) {
        check("retired validSize (first >= 80 %)", g_del[i].valid, 832);
        check("size", g_del[i].size, 1000);
        check_true("complete not on the recording thread", g_del[i].tid != tid());
        for (int j = 0; j < i; j++) {
            check_true("distinct completion threads", g_del[i].tid != g_del[j].tid);
        }
    }
    check("FlushAll", (unsigned)P.FlushAll(1), OK);
    check("partial buffer delivered by FlushAll", (unsigned)deliveries(), 5);
    if (deliveries() == 5) {
        check("partial validSize", g_del[4].valid, 832);
        check("partial on the calling thread", (unsigned)g_del[4].tid, (unsigned)tid());
    }
    size_t offs[64];
    uint32_t kinds[64];
    int total = 0;
    for (int i = 0; i < deliveries(); i++) {
        int c = walk(g_del[i].copy, g_del[i].valid, offs, kinds, 64);
        check_true("buffer walks cleanly", c >= 0);
        total += c > 0 ? c : 0;
    }
    check("records delivered = emitted", (unsigned)total, P.emitted(0));
    check("emitted", P.emitted(0), 80);
    check("dropped", P.dropped(), 0);
}

/* §3.5 FlushAll: synchronous on the caller, delivers the partial buffer, joins running completions. */
static void case_flush_all(void)
{
    check("FlushAll with nothing registered", (unsigned)P.FlushAll(0), OK);
    setup();
    enable(K_API);
    P.launch("k", NULL, 0, 10);
    P.launch("k", NULL, 0, 10);
    P.launch("k", NULL, 0, 10);
    sleep_ms(100);
    check("partial buffer not delivered by the manager", (unsigned)deliveries(), 0);
    check("FlushAll", (unsigned)P.FlushAll(0), OK);
    check("delivered synchronously", (unsigned)deliveries(), 1);
    if (deliveries() == 1) {
        check("on the calling thread", (unsigned)g_del[0].tid, (unsigned)tid());
        check("validSize", g_del[0].valid, 144);
    }
    check("FlushAll again", (unsigned)P.FlushAll(0), OK);
    check("no buffer left to deliver", (unsigned)deliveries(), 1);
    P.launch("k", NULL, 0, 10);
    check("a new buffer is requested", (unsigned)requests(), 2);
    check("FlushAll", (unsigned)P.FlushAll(0), OK);
    check("second delivery", (unsigned)deliveries(), 2);
    if (deliveries() == 2) {
        check("validSize", g_del[1].valid, 48);
    }

    /* joins a completion still running */
    g_req_size = 1000;
    g_complete_sleep_ms = 300;
    for (int i = 0; i < 18; i++) {
        P.launch("k", NULL, 0, 10); /* 17 × 48 = 816 >= 800: the 18th retires the first buffer */
    }
    uint64_t end = mono_ms() + 3000;
    while (inflight() == 0 && mono_ms() < end) {
        sleep_ms(1);
    }
    check("a completion is running", (unsigned)inflight(), 1);
    check("FlushAll", (unsigned)P.FlushAll(0), OK);
    check("FlushAll joined it", (unsigned)inflight(), 0);
    check("both delivered", (unsigned)deliveries(), 4);
    if (deliveries() == 4) {
        check("retired validSize", g_del[2].valid, 816);
        check_true("retired one on another thread", g_del[2].tid != tid());
        check("partial validSize", g_del[3].valid, 48);
    }
}

/* §3.5 FlushPeriod: returns 0, never delivers the partial buffer. */
static void case_flush_period(void)
{
    setup();
    enable(K_API);
    check("FlushPeriod(0)", (unsigned)P.FlushPeriod(0), OK);
    check("FlushPeriod(20)", (unsigned)P.FlushPeriod(20), OK);
    P.launch("k", NULL, 0, 10);
    sleep_ms(200);
    check("periodic flush leaves the partial buffer", (unsigned)deliveries(), 0);
    g_req_size = 1000;
    check("FlushAll", (unsigned)P.FlushAll(0), OK);
    check("FlushAll delivers it", (unsigned)deliveries(), 1);
    for (int i = 0; i < 18; i++) {
        P.launch("k", NULL, 0, 10);
    }
    check_true("retired buffer delivered with a period set", wait_deliveries(2, 3000));
    check("FlushPeriod(0) again", (unsigned)P.FlushPeriod(0), OK);
    check("FlushAll", (unsigned)P.FlushAll(0), OK);
}

/* §3.5 request returning *buffer NULL: records dropped and counted; the NULL buffer is still delivered. */
static void case_drop_null_buffer(void)
{
    setup();
    enable(K_API);
    g_req_null_left = 2; /* *buffer NULL, *size 0: each following record retires it and asks again */
    g_req_null_size = 0;
    P.launch("k", NULL, 0, 10);
    P.launch("k", NULL, 0, 10);
    P.launch("k", NULL, 0, 10);
    check("dropped", P.dropped(), 2);
    check("emitted", P.emitted(0), 1);
    check("requests", (unsigned)requests(), 3);
    check("FlushAll", (unsigned)P.FlushAll(0), OK);
    check("deliveries", (unsigned)deliveries(), 3);
    int nulls = 0, real = 0;
    for (int i = 0; i < deliveries(); i++) {
        if (g_del[i].null_buffer) {
            nulls++;
            check("NULL buffer validSize", g_del[i].valid, 0);
        } else {
            real++;
            check("real buffer validSize", g_del[i].valid, 48);
        }
    }
    check("NULL buffers delivered to complete", (unsigned)nulls, 2);
    check("real buffers", (unsigned)real, 1);

    /* *buffer NULL with a non-zero size is never >= 80 % full: everything dropped until FlushAll */
    g_req_null_left = 1;
    g_req_null_size = 1u << 20;
    P.launch("k", NULL, 0, 10);
    P.launch("k", NULL, 0, 10);
    P.launch("k", NULL, 0, 10);
    check("dropped", P.dropped(), 5);
    check("one request for them", (unsigned)requests(), 4);
    check("FlushAll", (unsigned)P.FlushAll(0), OK);
    check("deliveries", (unsigned)deliveries(), 4);
    if (deliveries() == 4) {
        check_true("NULL buffer", g_del[3].null_buffer);
        check("its size", g_del[3].size, 1u << 20);
        check("on the calling thread", (unsigned)g_del[3].tid, (unsigned)tid());
    }
    P.launch("k", NULL, 0, 10);
    check("recording resumes", P.emitted(0), 2);
}

/* §3.5 a record that does not fit is dropped (not split, no new buffer for it). */
static void case_drop_no_fit(void)
{
    g_req_size = 100;
    setup();
    enable(K_KERNEL);
    P.launch("k", NULL, 0, 10); /* 56 fits */
    P.launch("k", NULL, 0, 10); /* 56 < 80 % of 100: no retirement, 44 bytes left → dropped */
    P.launch("k", NULL, 0, 10);
    check("emitted", P.emitted(0), 1);
    check("dropped", P.dropped(), 2);
    check("requests", (unsigned)requests(), 1);
    check("FlushAll", (unsigned)P.FlushAll(0), OK);
    check("deliveries", (unsigned)deliveries(), 1);
    if (deliveries() == 1) {
        check("validSize", g_del[0].valid, 56);
    }
}

/* §3.6 external correlation stacks. */
static void *push_thread(void *p)
{
    (void)p;
    P.PushExt(3, 33);
    return NULL;
}

static void case_external_correlation(void)
{
    uint64_t x = 0;
    check("Pop(lastId NULL)", (unsigned)P.PopExt(1, NULL), INVALID);
    check("Pop(empty)", (unsigned)P.PopExt(1, &x), QUEUE_EMPTY);
    check("Push(kind 0)", (unsigned)P.PushExt(0, 1), INVALID);
    check("Push(kind 5)", (unsigned)P.PushExt(5, 1), INVALID);
    check("Pop(kind 0)", (unsigned)P.PopExt(0, &x), INVALID);
    check("Pop(kind 5)", (unsigned)P.PopExt(5, &x), INVALID);
    check("Push(1,10)", (unsigned)P.PushExt(1, 10), OK);
    check("Push(1,11)", (unsigned)P.PushExt(1, 11), OK);
    check("Push(4,40)", (unsigned)P.PushExt(4, 40), OK);
    check("Pop(lastId NULL) non-empty", (unsigned)P.PopExt(1, NULL), INVALID);
    check("Pop(1)", (unsigned)P.PopExt(1, &x), OK);
    check("LIFO", x, 11);
    check("Pop(1)", (unsigned)P.PopExt(1, &x), OK);
    check("LIFO", x, 10);
    check("Pop(1) empty", (unsigned)P.PopExt(1, &x), QUEUE_EMPTY);
    check("Pop(4)", (unsigned)P.PopExt(4, &x), OK);
    check("per-kind stack", x, 40);
    pthread_t t;
    pthread_create(&t, NULL, push_thread, NULL);
    pthread_join(t, NULL);
    check("Pop(3) of another thread's push (process-global)", (unsigned)P.PopExt(3, &x), OK);
    check("value", x, 33);

    /* EXTERNAL_CORRELATION records for every non-empty stack, before the API record */
    setup();
    enable(K_API);
    enable(K_EXT);
    P.launch("k", NULL, 0, 10); /* no stack: API only */
    P.PushExt(1, 100);
    P.PushExt(3, 300);
    P.launch("k", NULL, 0, 10); /* EXT(1), EXT(3), API */
    P.FlushAll(0);
    if (deliveries() != 1) {
        check("deliveries", (unsigned)deliveries(), 1);
        return;
    }
    size_t offs[8];
    uint32_t kinds[8];
    int n = walk(g_del[0].copy, g_del[0].valid, offs, kinds, 8);
    check("records", (unsigned)n, 4);
    if (n == 4) {
        const uint8_t *b = g_del[0].copy;
        check("kinds", kinds[0] * 1000 + kinds[1] * 100 + kinds[2] * 10 + kinds[3], K_API * 1000 + K_EXT * 110 + K_API);
        check("ext[0].externalKind", r32(b + offs[1], 4), 1);
        check("ext[0].externalId", r64(b + offs[1], 8), 100);
        check("ext[1].externalKind", r32(b + offs[2], 4), 3);
        check("ext[1].externalId", r64(b + offs[2], 8), 300);
        check("ext correlation = api", r64(b + offs[2], 16), r64(b + offs[3], 28));
    }
}

/* §3.6 EnableCallback / EnableDomain, and the subscriber callback. */
static int g_cb_calls;
static char g_cb_log[512];
static void on_callback(void *userdata, int domain, uint32_t cbid, const msptiCallbackData *cbdata)
{
    g_cb_calls++;
    size_t l = strlen(g_cb_log);
    snprintf(g_cb_log + l, sizeof g_cb_log - l, "%s%d/%u/%d/%s/%s", l ? " " : "", domain, cbid, cbdata->callbackSite,
             cbdata->functionName, (const char *)userdata);
}

static void case_enable_callback(void)
{
    msptiSubscriberHandle h = NULL;
    int local;
    msptiSubscriberHandle bogus = (msptiSubscriberHandle)(void *)&local;
    unsetenv("LD_PRELOAD");
    check("EnableCallback LD_PRELOAD unset (checked first)", (unsigned)P.EnableCallback(1, NULL, 99, 999), NO_PRELOAD);
    check("EnableDomain LD_PRELOAD unset", (unsigned)P.EnableDomain(1, NULL, 99), NO_PRELOAD);
    setenv("LD_PRELOAD", "/x/libmspti.so", 1);
    check("EnableCallback not subscribed → no-op", (unsigned)P.EnableCallback(1, bogus, 99, 999), OK);
    check("EnableDomain not subscribed → no-op", (unsigned)P.EnableDomain(1, bogus, 99), OK);
    check("Subscribe", (unsigned)P.Subscribe(&h, on_callback, "ud"), OK);
    check("EnableCallback wrong handle", (unsigned)P.EnableCallback(1, bogus, D_RUNTIME, 10), INVALID);
    check("EnableCallback NULL handle", (unsigned)P.EnableCallback(1, NULL, D_RUNTIME, 10), INVALID);
    check("EnableCallback domain 0", (unsigned)P.EnableCallback(1, h, 0, 10), INVALID);
    check("EnableCallback domain 3", (unsigned)P.EnableCallback(1, h, 3, 10), INVALID);
    check("EnableCallback cbid 64", (unsigned)P.EnableCallback(1, h, D_RUNTIME, 64), INVALID);
    check("EnableCallback cbid 63", (unsigned)P.EnableCallback(1, h, D_RUNTIME, 63), OK);
    check("EnableCallback LAUNCH", (unsigned)P.EnableCallback(1, h, D_RUNTIME, 10), OK);
    P.launch("k", NULL, 0, 10);
    check("callback ENTER+EXIT", (unsigned)g_cb_calls, 2);
    check_str("callback data", g_cb_log, "1/10/0/aclrtLaunchKernel/ud 1/10/1/aclrtLaunchKernel/ud");
    check("disable LAUNCH", (unsigned)P.EnableCallback(0, h, D_RUNTIME, 10), OK);
    P.launch("k", NULL, 0, 10);
    check("no callback after disable", (unsigned)g_cb_calls, 2);
    check("EnableDomain HCCL", (unsigned)P.EnableDomain(1, h, D_HCCL), OK);
    P.hccl("ar", 0, 10);
    check("HCCL callbacks", (unsigned)g_cb_calls, 4);
    check("EnableDomain 0", (unsigned)P.EnableDomain(1, h, 0), INVALID);
    check("EnableDomain 3", (unsigned)P.EnableDomain(1, h, 3), INVALID);
    check("EnableDomain wrong handle", (unsigned)P.EnableDomain(1, bogus, D_HCCL), INVALID);
    check("EnableDomain RUNTIME", (unsigned)P.EnableDomain(1, h, D_RUNTIME), OK);
    P.memcpy_(10);
    check("RUNTIME MEMCPY callbacks", (unsigned)g_cb_calls, 6);
    check("disable RUNTIME domain", (unsigned)P.EnableDomain(0, h, D_RUNTIME), OK);
    P.memcpy_(10);
    check("none after domain disable", (unsigned)g_cb_calls, 6);
    unsetenv("LD_PRELOAD");
    setenv("FAKE_MSPTI_OLD", "1", 1);
    check("old library: no LD_PRELOAD rule", (unsigned)P.EnableCallback(1, h, D_RUNTIME, 10), OK);
    check("Unsubscribe", (unsigned)P.Unsubscribe(h), OK);
    check("Subscribe again clears the maps", (unsigned)P.Subscribe(&h, on_callback, "ud"), OK);
    P.launch("k", NULL, 0, 10);
    check("no callback after re-subscribe", (unsigned)g_cb_calls, 6);
}

/* §3.6 marker domains. */
static void case_marker_domain(void)
{
    setup();
    enable(K_MARKER);
    check("EnableMarkerDomain(NULL)", (unsigned)P.EnableMarkerDomain(NULL), INVALID);
    check("DisableMarkerDomain(NULL)", (unsigned)P.DisableMarkerDomain(NULL), INVALID);
    check("DisableMarkerDomain(\"\")", (unsigned)P.DisableMarkerDomain(""), INVALID);
    check("EnableMarkerDomain(other)", (unsigned)P.EnableMarkerDomain("other"), OK);
    P.marker("a", F_INSTANT);
    check("default domain enabled by default", P.emitted(K_MARKER), 1);
    check("DisableMarkerDomain(default)", (unsigned)P.DisableMarkerDomain("default"), OK);
    P.marker("b", F_INSTANT);
    check("no marker in a disabled domain", P.emitted(K_MARKER), 1);
    check("EnableMarkerDomain(default)", (unsigned)P.EnableMarkerDomain("default"), OK);
    P.marker("c", F_INSTANT);
    check("markers again", P.emitted(K_MARKER), 2);
    check("dropped", P.dropped(), 0);
}

/* FAKE_MSPTI_MALFORMED: every n-th record gets kind 77, then 0, alternately. */
static void case_malformed(void)
{
    setenv("FAKE_MSPTI_MALFORMED", "3", 1);
    setup();
    enable(K_API);
    for (int i = 0; i < 6; i++) {
        P.launch("k", NULL, 0, 10);
    }
    check("FlushAll", (unsigned)P.FlushAll(0), OK);
    check("deliveries", (unsigned)deliveries(), 1);
    if (deliveries() != 1) {
        return;
    }
    const uint8_t *b = g_del[0].copy;
    check("validSize", g_del[0].valid, 6 * 48);
    const uint32_t want[6] = {K_API, K_API, 77, K_API, K_API, 0};
    for (int i = 0; i < 6; i++) {
        char step[32];
        snprintf(step, sizeof step, "kind of record %d", i);
        check(step, r32(b, (size_t)i * 48), want[i]);
    }
    check("emitted(API) counts intact records", P.emitted(K_API), 4);
    check("emitted(0) counts all", P.emitted(0), 6);
    msptiActivity *r;
    check("walk 0", (unsigned)P.GetNextRecord(g_del[0].copy, g_del[0].valid, &r), OK);
    check("walk 1", (unsigned)P.GetNextRecord(g_del[0].copy, g_del[0].valid, &r), OK);
    check("walk 2 (kind 77)", (unsigned)P.GetNextRecord(g_del[0].copy, g_del[0].valid, &r), INNER);
}

/* FAKE_MSPTI_STALL_MS: completion threads wait before calling complete. */
static void case_stall(void)
{
    setenv("FAKE_MSPTI_STALL_MS", "300", 1);
    g_req_size = 1000;
    setup();
    enable(K_API);
    uint64_t t0 = mono_ms();
    for (int i = 0; i < 18; i++) {
        P.launch("k", NULL, 0, 10);
    }
    sleep_ms(100);
    check("not yet delivered", (unsigned)deliveries(), 0);
    check_true("delivered later", wait_deliveries(1, 3000));
    check_true("after the stall", mono_ms() - t0 >= 250);
    check("FlushAll", (unsigned)P.FlushAll(0), OK);
    check("FlushAll (not stalled) delivers the partial one", (unsigned)deliveries(), 2);
}

/* Many recording threads, small buffers: nothing lost, every buffer walks cleanly. */
static void *record_thread(void *p)
{
    (void)p;
    for (int i = 0; i < 2000; i++) {
        P.launch("k", "KERNEL_AICORE", (uint32_t)(i % 4), 100);
    }
    return NULL;
}

static void case_concurrent(void)
{
    g_req_size = 64 * 1024;
    setup();
    enable(K_API);
    enable(K_KERNEL);
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        pthread_create(&t[i], NULL, record_thread, NULL);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
    }
    check("FlushAll", (unsigned)P.FlushAll(0), OK);
    check("every requested buffer came back", (unsigned)deliveries(), (unsigned)requests());
    static size_t offs[2048];
    static uint32_t kinds[2048];
    unsigned long long total = 0, api = 0, kern = 0;
    for (int i = 0; i < deliveries(); i++) {
        int c = walk(g_del[i].copy, g_del[i].valid, offs, kinds, 2048);
        check_true("buffer walks cleanly", c >= 0);
        for (int j = 0; j < c; j++) {
            api += kinds[j] == K_API;
            kern += kinds[j] == K_KERNEL;
        }
        total += c > 0 ? (unsigned)c : 0;
    }
    check("records", total, 16000);
    check("api", api, 8000);
    check("kernel", kern, 8000);
    check("emitted", P.emitted(0), 16000);
    check("dropped", P.dropped(), 0);
}

/* FAKE_MSPTI_LOG: exact lines; the exit line is checked by the parent after the child exits. */
static char g_log_path[PATH_MAX + 32];

static void case_log(void)
{
    unsetenv("LD_PRELOAD");
    setenv("FAKE_MSPTI_LOG", g_log_path, 1);
    msptiSubscriberHandle h = NULL;
    int local;
    uint64_t x;
    msptiActivity *r;
    P.Subscribe(NULL, NULL, NULL);
    P.Subscribe(&h, NULL, NULL);
    P.RegisterCallbacks(on_request, on_complete);
    P.Enable(K_KERNEL);
    P.Enable(99);
    P.Enable(K_HCCL);
    P.IsEnabled(K_KERNEL);
    P.launch("k", NULL, 0, 10);
    P.FlushAll(1);
    if (deliveries() == 1) {
        P.GetNextRecord(g_del[0].copy, g_del[0].valid, &r); /* SUCCESS: not logged by default */
        P.GetNextRecord(g_del[0].copy, g_del[0].valid, &r);
    }
    P.PushExt(2, 7);
    P.PopExt(2, &x);
    P.PopExt(2, &x);
    P.Unsubscribe((msptiSubscriberHandle)(void *)&local);
    P.EnableCallback(1, h, D_RUNTIME, 10);
    P.DisableMarkerDomain("my domain");
    P.FlushPeriod(0);
    P.launch("k", NULL, 0, 10); /* left in the current buffer: pending at exit */
}

static void post_log(void)
{
    static const char *want[] = {
        "msptiSubscribe subscriber=null callback=null -> 1",
        "msptiSubscribe subscriber=set callback=null -> 0 handle=h1",
        "msptiActivityRegisterCallbacks request=set complete=set -> 0",
        "msptiActivityEnable kind=2 -> 0",
        "msptiActivityEnable kind=99 -> 1",
        "msptiActivityEnable kind=4 -> 6",
        "msptiActivityIsEnabled kind=2 -> 1",
        "msptiActivityFlushAll flag=1 -> 0 delivered=1",
        "msptiActivityGetNextRecord buffer=set valid=56 -> 3 offset=56 kind=0",
        "msptiActivityPushExternalCorrelationId kind=2 id=7 -> 0",
        "msptiActivityPopExternalCorrelationId kind=2 lastId=set -> 0 id=7",
        "msptiActivityPopExternalCorrelationId kind=2 lastId=set -> 5",
        "msptiUnsubscribe handle=unknown -> 1",
        "msptiEnableCallback enable=1 handle=h1 domain=1 cbid=10 -> 6",
        "msptiActivityDisableMarkerDomain name=my?domain -> 0",
        "msptiActivityFlushPeriod time=0 -> 0",
        "exit subscribed=1 enabled=0x4 pending_buffers=1",
    };
    FILE *f = fopen(g_log_path, "r");
    if (f == NULL) {
        printf("FAIL %s: log file %s missing\n", g_case, g_log_path);
        g_case_failed = 1;
        return;
    }
    char line[1024];
    size_t i = 0, nwant = sizeof want / sizeof want[0];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        char step[32];
        snprintf(step, sizeof step, "log line %zu", i + 1);
        check_str(step, line, i < nwant ? want[i] : "(no more lines)");
        i++;
    }
    fclose(f);
    check("log lines", i, nwant);
}

/* ================================================================================================
 * Runner: every case in a forked child (fresh library state), with a time limit.
 * ============================================================================================== */

static int g_passed, g_failed;

static void run_case(const char *name, void (*fn)(void), void (*post)(void))
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
        printf("FAIL %s: fork: %s\n", name, strerror(errno));
        g_failed++;
        return;
    }
    if (pid == 0) {
        g_case = name;
        g_case_failed = 0;
        alarm(60);
        fn();
        fflush(stdout);
        exit(g_case_failed ? 1 : 0); /* exit(): the fake's destructor writes its exit line */
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    g_case = name;
    g_case_failed = 0;
    if (WIFSIGNALED(status)) {
        printf("FAIL %s: child killed by signal %d%s\n", name, WTERMSIG(status),
               WTERMSIG(status) == SIGALRM ? " (timeout)" : "");
        g_case_failed = 1;
    } else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        g_case_failed = 1; /* the child printed its FAIL lines */
    }
    if (post && !g_case_failed) {
        post();
    }
    if (g_case_failed) {
        g_failed++;
    } else {
        printf("ok %s\n", name);
        g_passed++;
    }
    fflush(stdout);
}

#define SYM(field, name)                                                                                   \
    do {                                                                                                   \
        *(void **)(&P.field) = dlsym(lib, name);                                                           \
        if (P.field == NULL) {                                                                             \
            printf("FAIL exports: %s missing\n", name);                                                    \
            missing++;                                                                                     \
        }                                                                                                  \
    } while (0)

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 2) {
        fprintf(stderr, "usage: %s DIR/libmspti.so\n", argv[0]);
        return 2;
    }
    /* The driver's own environment must not decide cases. */
    const char *vars[] = {"LD_PRELOAD", "FAKE_MSPTI_OLD", "FAKE_MSPTI_OTHER_SUBSCRIBER", "FAKE_MSPTI_DEVICE",
                          "FAKE_MSPTI_MALFORMED", "FAKE_MSPTI_STALL_MS", "FAKE_MSPTI_LOG", "FAKE_MSPTI_LOG_RECORDS"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        unsetenv(vars[i]);
    }
    void *lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (lib == NULL) {
        printf("FAIL dlopen: %s\nmspti_order: 0 passed, 1 failed\n", dlerror());
        return 1;
    }
    int missing = 0;
    SYM(Subscribe, "msptiSubscribe");
    SYM(Unsubscribe, "msptiUnsubscribe");
    SYM(EnableCallback, "msptiEnableCallback");
    SYM(EnableDomain, "msptiEnableDomain");
    SYM(RegisterCallbacks, "msptiActivityRegisterCallbacks");
    SYM(Enable, "msptiActivityEnable");
    SYM(Disable, "msptiActivityDisable");
    SYM(IsEnabled, "msptiActivityIsEnabled");
    SYM(EnableMarkerDomain, "msptiActivityEnableMarkerDomain");
    SYM(DisableMarkerDomain, "msptiActivityDisableMarkerDomain");
    SYM(GetNextRecord, "msptiActivityGetNextRecord");
    SYM(FlushAll, "msptiActivityFlushAll");
    SYM(FlushPeriod, "msptiActivityFlushPeriod");
    SYM(PushExt, "msptiActivityPushExternalCorrelationId");
    SYM(PopExt, "msptiActivityPopExternalCorrelationId");
    SYM(launch, "fake_mspti_launch");
    SYM(hccl, "fake_mspti_hccl");
    SYM(memory, "fake_mspti_memory");
    SYM(memcpy_, "fake_mspti_memcpy");
    SYM(memset_, "fake_mspti_memset");
    SYM(marker, "fake_mspti_marker");
    SYM(dropped, "fake_mspti_dropped");
    SYM(emitted, "fake_mspti_emitted");
    /* §3.3: there is no msptiActivityEnableDomain and no msptiGetResultString */
    if (dlsym(lib, "msptiActivityEnableDomain") != NULL || dlsym(lib, "msptiGetResultString") != NULL) {
        printf("FAIL exports: a symbol the real library does not have\n");
        missing++;
    }
    if (missing) {
        printf("mspti_order: 0 passed, %d failed\n", missing);
        return 1;
    }
    printf("ok exports\n");
    g_passed++;

    snprintf(WORK, sizeof WORK, "/tmp/mspti_order.XXXXXX");
    if (mkdtemp(WORK) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(g_log_path, sizeof g_log_path, "%s/fake.log", WORK);

    run_case("subscribe", case_subscribe, NULL);
    run_case("other_subscriber", case_other_subscriber, NULL);
    run_case("register_callbacks", case_register_callbacks, NULL);
    run_case("enable_range", case_enable_range, NULL);
    run_case("ld_preload", case_ld_preload, NULL);
    run_case("enable_before_subscribe", case_enable_before_subscribe, NULL);
    run_case("no_callbacks", case_no_callbacks, NULL);
    run_case("layout_launch", case_layout_launch, NULL);
    run_case("layout_others", case_layout_others, NULL);
    run_case("get_next_record", case_get_next_record, NULL);
    run_case("completion_threads", case_completion_threads, NULL);
    run_case("flush_all", case_flush_all, NULL);
    run_case("flush_period", case_flush_period, NULL);
    run_case("drop_null_buffer", case_drop_null_buffer, NULL);
    run_case("drop_no_fit", case_drop_no_fit, NULL);
    run_case("external_correlation", case_external_correlation, NULL);
    run_case("enable_callback", case_enable_callback, NULL);
    run_case("marker_domain", case_marker_domain, NULL);
    run_case("malformed", case_malformed, NULL);
    run_case("stall", case_stall, NULL);
    run_case("concurrent", case_concurrent, NULL);
    run_case("log", case_log, post_log);

    unlink(g_log_path);
    rmdir(WORK);
    printf("mspti_order: %d passed, %d failed\n", g_passed, g_failed);
    return g_failed ? 1 : 0;
}
