/* The opt-in "vendor call that blocks" mode of the fake vendor libraries (issue 15, item 5): a call named in
 * the fake's FAKE_HANG_ENV variable blocks its caller for N seconds, or "forever" (until the test-only
 * release export is called), before it does anything else: before it takes any lock of the fake, so only the
 * calling thread is held (what a vendor call waiting on a wedged device does to its caller).
 *
 * Syntax: FAKE_HANG_ENV="func=seconds|forever[,func=...]", e.g. "aclprofFinalize=forever". Unset (the
 * default): no call ever blocks, the fakes behave exactly as without this header. Each fake defines
 * FAKE_HANG_ENV and includes fake_log.h before this; every hang is logged as "hang <func> <value>" when it
 * begins and "hang <func> released" when it ends. */
#ifndef FAKE_HANG_H
#define FAKE_HANG_H
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int g_hang_released;
static int g_hangs_begun;

/* Hangs begun so far (the test-only export of each fake returns this: a client waits for a hang to begin). */
static int hangs_begun(void) { return __atomic_load_n(&g_hangs_begun, __ATOMIC_ACQUIRE); }

/* Ends every hang, now and later (the test-only export of each fake calls this). */
static void hang_release(void) { __atomic_store_n(&g_hang_released, 1, __ATOMIC_RELEASE); }

/* Blocks the caller if FAKE_HANG_ENV names `func`. */
static void hang_if(const char *func)
{
    const char *f = getenv(FAKE_HANG_ENV);
    size_t flen = strlen(func);
    while (f != NULL && *f != '\0') {
        const char *end = strchr(f, ',');
        size_t len = end ? (size_t)(end - f) : strlen(f);
        if (len > flen && strncmp(f, func, flen) == 0 && f[flen] == '=') {
            char v[32];
            snprintf(v, sizeof v, "%.*s", (int)(len - flen - 1), f + flen + 1);
            long long ms = strcmp(v, "forever") == 0 ? -1 : strtoll(v, NULL, 10) * 1000;
            log_line("hang %s %s", func, v);
            __atomic_fetch_add(&g_hangs_begun, 1, __ATOMIC_ACQ_REL);
            for (long long t = 0; (ms < 0 || t < ms) && !__atomic_load_n(&g_hang_released, __ATOMIC_ACQUIRE);
                 t += 10) {
                struct timespec ts = {0, 10 * 1000000L};
                nanosleep(&ts, NULL);
            }
            log_line("hang %s released", func);
            return;
        }
        f = end ? end + 1 : NULL;
    }
}
#endif
