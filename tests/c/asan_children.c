/* Compiled into every C program (not the fake libraries: see build_c) of `run-tests`' sanitizer section (tests/common, build_c).
 * The library under test is ASan-instrumented there, so a process that preloads it needs the ASan runtime
 * first in LD_PRELOAD, and the programs a client starts without ASan inherit both: the `sh` of system(), the
 * fake `msprof` (a Python interpreter behind a shell shim). LeakSanitizer would report the shell's and the
 * interpreter's own allocations at their exit, which are not ours to fix. So this process keeps the leak
 * check it was started with (ASan read its options before any constructor runs), and only its children get
 * detect_leaks=0. */
#include <stdio.h>
#include <stdlib.h>

__attribute__((constructor)) static void children_without_leak_check(void) {
    const char *o = getenv("ASAN_OPTIONS");
    char buf[2048];
    int n = snprintf(buf, sizeof buf, "%s%sdetect_leaks=0", o ? o : "", o && *o ? ":" : "");
    if (n > 0 && (size_t)n < sizeof buf) setenv("ASAN_OPTIONS", buf, 1);
}
