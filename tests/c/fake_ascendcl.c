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
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int aclError;

#define ACL_SUCCESS 0
#define ACL_ERROR_INVALID_PARAM 100000
#define ACL_ERROR_RT_CONTEXT_NULL 107002

/* Shared with fake_msprofiler.c, this library's DT_NEEDED (test-only exports): FAKE_ACL_FAIL parsing and
 * the FAKE_ACL_LOG writer (one line per call, newline added). */
extern int fake_forced_failure(const char *func, int *code);
extern void fake_log(const char *line);

__attribute__((visibility("default"))) aclError aclrtGetDevice(int32_t *deviceId)
{
    int ret;
    int have = 0;
    long id = 0;
    const char *env = getenv("FAKE_ACL_DEVICE");
    if (fake_forced_failure("aclrtGetDevice", &ret)) {
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
        snprintf(line, sizeof line, "aclrtGetDevice -> %d dev=%ld", ret, id);
    } else {
        snprintf(line, sizeof line, "aclrtGetDevice -> %d dev=none", ret);
    }
    fake_log(line);
    return ret;
}
