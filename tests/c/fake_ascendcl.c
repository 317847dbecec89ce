/* Fake libascendcl.so: the runtime-side library torch_npu dlopens for aclprof*.
 *
 * It does NOT define any aclprof* function: it is linked against the fake libmsprofiler.so, which
 * becomes its DT_NEEDED, so dlsym(handle_of_libascendcl, "aclprofStart") finds the definition in the
 * dependency. That emulates a libascendcl that only depends on libmsprofiler (ascend-api.md §1:
 * "a dlsym on a library handle also searches that library's dependencies").
 *
 * It defines aclrtGetDevice, so a shim can ask which device the calling thread uses:
 *   FAKE_ACL_DEVICE=<int>   → *deviceId = that value, returns 0
 *   unset / not an integer  → returns 107002 (ACL_ERROR_RT_CONTEXT_NULL: no device set on this thread)
 *   deviceId == NULL        → returns 100000 (ACL_ERROR_INVALID_PARAM)
 * FAKE_ACL_FAIL=aclrtGetDevice=<code> forces a code; FAKE_ACL_LOG gets one line per call:
 *   "aclrtGetDevice -> <ret> dev=<id>"   (dev=none when no id was stored)
 *
 * Build: cc -std=gnu11 -Wall -Wextra -shared -fPIC -o DIR/libascendcl.so tests/c/fake_ascendcl.c \
 *          -Wl,-soname,libascendcl.so -LDIR -lmsprofiler -Wl,-rpath,'$ORIGIN'
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef int aclError;

#define ACL_SUCCESS 0
#define ACL_ERROR_INVALID_PARAM 100000
#define ACL_ERROR_RT_CONTEXT_NULL 107002

/* Referenced so the linker keeps libmsprofiler.so as DT_NEEDED even where it links --as-needed. The
 * test-only fake_launch is used (not an aclprof symbol): tests build libmsprofiler variants with aclprof*
 * symbols renamed away, and this reference must still resolve. */
extern void fake_launch(const char *name, const char *op_type, const char *task_type, uint32_t stream_id,
                        uint64_t dur_ns);
__attribute__((used)) static void (*const keep_msprofiler_needed)(const char *, const char *, const char *,
                                                                   uint32_t, uint64_t) = fake_launch;

/* Same rules as fake_msprofiler.c: FAKE_ACL_FAIL="func=code,...". */
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

/* One line, one write(), file opened O_APPEND just for it (lines of forked processes never lost). */
static void log_line(const char *line)
{
    const char *path = getenv("FAKE_ACL_LOG");
    if (path == NULL || *path == '\0') {
        return;
    }
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        return;
    }
    ssize_t w = write(fd, line, strlen(line));
    (void)w;
    close(fd);
}

__attribute__((visibility("default"))) aclError aclrtGetDevice(int32_t *deviceId)
{
    int ret;
    int have = 0;
    long id = 0;
    const char *env = getenv("FAKE_ACL_DEVICE");
    if (forced_failure("aclrtGetDevice", &ret)) {
    } else if (deviceId == NULL) {
        ret = ACL_ERROR_INVALID_PARAM;
    } else {
        char *end = NULL;
        if (env != NULL && *env != '\0') {
            id = strtol(env, &end, 10);
        }
        if (end != NULL && *end == '\0' && id >= INT32_MIN && id <= INT32_MAX) {
            *deviceId = (int32_t)id;
            have = 1;
            ret = ACL_SUCCESS;
        } else {
            ret = ACL_ERROR_RT_CONTEXT_NULL; /* no device set on this thread */
        }
    }
    char line[96];
    if (have) {
        snprintf(line, sizeof line, "aclrtGetDevice -> %d dev=%ld\n", ret, id);
    } else {
        snprintf(line, sizeof line, "aclrtGetDevice -> %d dev=none\n", ret);
    }
    log_line(line);
    return ret;
}
