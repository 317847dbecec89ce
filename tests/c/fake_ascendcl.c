/* Fake libascendcl.so: the runtime-side library torch_npu dlopens for aclprof*.
 *
 * It does NOT define any aclprof* function: it is linked against the fake libmsprofiler.so, which
 * becomes its DT_NEEDED, so dlsym(handle_of_libascendcl, "aclprofStart") finds the definition in the
 * dependency. That emulates a libascendcl that only depends on libmsprofiler (ascend-api.md §1:
 * "a dlsym on a library handle also searches that library's dependencies").
 *
 * The device functions follow the real runtime's per-thread rule: a thread has a current context only
 * once it called aclrtSetDevice (the device's default context) or aclrtSetCurrentContext (a context made
 * by aclrtCreateContext, on any thread), and aclrtGetDevice answers from the calling thread's current
 * context alone (the runtime's ApiImpl::GetDevice reads the thread-local current context and returns
 * ACL_ERROR_RT_CONTEXT_NULL, 107002 in acl/error_codes/rt_error_codes.h, when there is none):
 *   aclrtSetDevice(id)              0 <= id < FAKE_ACL_DEVICE_COUNT (default 8) → the calling thread's device
 *                                   is id, returns 0; else 107001 (ACL_ERROR_RT_INVALID_DEVICEID)
 *   aclrtCreateContext(&ctx, id)    a context of device id, made current on the calling thread (as the real one)
 *   aclrtSetCurrentContext(ctx)     ctx becomes the calling thread's current context (NULL/unknown → 100000)
 *   aclrtGetDevice(&id)             the current context's device, 0; no context on this thread → 107002;
 *                                   deviceId == NULL → 100000 (ACL_ERROR_INVALID_PARAM)
 * Contexts are never freed (a stale pointer stays recognisable). FAKE_ACL_FAIL=<func>=<code> forces a code;
 * FAKE_ACL_LOG gets one line per call:
 *   "aclrtGetDevice -> <ret> dev=<id>"   (dev=none when no id was stored)
 *   "aclrtSetDevice dev=<id> -> <ret>", "aclrtCreateContext dev=<id> -> <ret>",
 *   "aclrtSetCurrentContext dev=<id>|unknown|null -> <ret>"
 *
 * Build: cc -std=gnu11 -Wall -Wextra -shared -fPIC -o DIR/libascendcl.so tests/c/fake_ascendcl.c \
 *          -Wl,-soname,libascendcl.so -LDIR -lmsprofiler -Wl,-rpath,'$ORIGIN'
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int aclError;
typedef void *aclrtContext;

#define ACL_SUCCESS 0
#define ACL_ERROR_INVALID_PARAM 100000
#define ACL_ERROR_RT_INVALID_DEVICEID 107001
#define ACL_ERROR_RT_CONTEXT_NULL 107002

#define CTX_MAGIC 0x43545821u /* "CTX!" */

struct fake_ctx {
    uint32_t magic;
    int32_t dev;
};

/* Shared with fake_msprofiler.c, this library's DT_NEEDED (test-only exports): FAKE_ACL_FAIL parsing and
 * the FAKE_ACL_LOG writer (one line per call, newline added). */
extern int fake_forced_failure(const char *func, int *code);
extern void fake_log(const char *line);

/* The calling thread's current context (NULL: none, as on every new thread). */
static __thread const struct fake_ctx *tl_ctx;

/* Default contexts (one per device, made by aclrtSetDevice) and created ones, never freed. */
static pthread_mutex_t g_ctx_mu = PTHREAD_MUTEX_INITIALIZER;
#define MAX_CTX 1024
static struct fake_ctx *g_ctx[MAX_CTX];
static size_t g_nctx;
static struct fake_ctx g_default[64];

static int device_ok(int32_t id)
{
    const char *n = getenv("FAKE_ACL_DEVICE_COUNT");
    long count = (n != NULL && *n != '\0') ? strtol(n, NULL, 10) : 8;
    return id >= 0 && id < count && id < 64;
}

static int known_ctx(const void *p)
{
    int found = 0;
    pthread_mutex_lock(&g_ctx_mu);
    for (size_t i = 0; i < g_nctx && !found; i++) {
        found = g_ctx[i] == p;
    }
    pthread_mutex_unlock(&g_ctx_mu);
    for (size_t i = 0; i < 64 && !found; i++) {
        found = &g_default[i] == p;
    }
    return found;
}

__attribute__((visibility("default"))) aclError aclrtSetDevice(int32_t deviceId)
{
    int ret;
    if (fake_forced_failure("aclrtSetDevice", &ret)) {
    } else if (!device_ok(deviceId)) {
        ret = ACL_ERROR_RT_INVALID_DEVICEID;
    } else {
        g_default[deviceId].magic = CTX_MAGIC;
        g_default[deviceId].dev = deviceId;
        tl_ctx = &g_default[deviceId];
        ret = ACL_SUCCESS;
    }
    char line[96];
    snprintf(line, sizeof line, "aclrtSetDevice dev=%d -> %d", (int)deviceId, ret);
    fake_log(line);
    return ret;
}

__attribute__((visibility("default"))) aclError aclrtCreateContext(aclrtContext *context, int32_t deviceId)
{
    int ret;
    struct fake_ctx *c = NULL;
    if (fake_forced_failure("aclrtCreateContext", &ret)) {
    } else if (context == NULL) {
        ret = ACL_ERROR_INVALID_PARAM;
    } else if (!device_ok(deviceId)) {
        ret = ACL_ERROR_RT_INVALID_DEVICEID;
    } else if ((c = calloc(1, sizeof *c)) == NULL) {
        ret = ACL_ERROR_INVALID_PARAM;
    } else {
        c->magic = CTX_MAGIC;
        c->dev = deviceId;
        pthread_mutex_lock(&g_ctx_mu);
        if (g_nctx < MAX_CTX) {
            g_ctx[g_nctx++] = c;
            ret = ACL_SUCCESS;
        } else {
            ret = ACL_ERROR_INVALID_PARAM;
        }
        pthread_mutex_unlock(&g_ctx_mu);
        if (ret == ACL_SUCCESS) {
            *context = c;
            tl_ctx = c; /* the new context becomes the calling thread's current one */
        } else {
            free(c);
        }
    }
    char line[96];
    snprintf(line, sizeof line, "aclrtCreateContext dev=%d -> %d", (int)deviceId, ret);
    fake_log(line);
    return ret;
}

__attribute__((visibility("default"))) aclError aclrtSetCurrentContext(aclrtContext context)
{
    int ret;
    const struct fake_ctx *c = context;
    if (fake_forced_failure("aclrtSetCurrentContext", &ret)) {
    } else if (c == NULL || !known_ctx(c)) {
        ret = ACL_ERROR_INVALID_PARAM;
    } else {
        tl_ctx = c;
        ret = ACL_SUCCESS;
    }
    char line[96];
    if (c != NULL && known_ctx(c)) {
        snprintf(line, sizeof line, "aclrtSetCurrentContext dev=%d -> %d", (int)c->dev, ret);
    } else {
        snprintf(line, sizeof line, "aclrtSetCurrentContext dev=%s -> %d", c ? "unknown" : "null", ret);
    }
    fake_log(line);
    return ret;
}

__attribute__((visibility("default"))) aclError aclrtGetDevice(int32_t *deviceId)
{
    int ret;
    int have = 0;
    int32_t id = 0;
    if (fake_forced_failure("aclrtGetDevice", &ret)) {
    } else if (deviceId == NULL) {
        ret = ACL_ERROR_INVALID_PARAM;
    } else if (tl_ctx == NULL) {
        ret = ACL_ERROR_RT_CONTEXT_NULL; /* no context on this thread, whatever other threads set */
    } else {
        id = tl_ctx->dev;
        *deviceId = id;
        have = 1;
        ret = ACL_SUCCESS;
    }
    char line[96];
    if (have) {
        snprintf(line, sizeof line, "aclrtGetDevice -> %d dev=%d", ret, (int)id);
    } else {
        snprintf(line, sizeof line, "aclrtGetDevice -> %d dev=none", ret);
    }
    fake_log(line);
    return ret;
}
