/* An "unchanged runtime": a program that knows nothing of npuprof (no symbol, no call) and just runs for
 * argv[1] seconds. tests/control.rs preloads libnpuprof.so into it.
 * With argv[2] = "shutdown" it first looks up npuprof_shutdown and npuprof_flush in the preloaded library
 * (dlsym, still no link-time symbol), calls shutdown and then flush (the "next use"), and says so on stderr. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
int main(int argc, char **argv) {
    int s = argc > 1 ? atoi(argv[1]) : 60;
    if (argc > 2 && !strcmp(argv[2], "shutdown")) {
        int (*shutdown_fn)(void) = (int (*)(void))dlsym(RTLD_DEFAULT, "npuprof_shutdown");
        int (*flush_fn)(void) = (int (*)(void))dlsym(RTLD_DEFAULT, "npuprof_flush");
        if (!shutdown_fn || !flush_fn) {
            fprintf(stderr, "idle: npuprof symbols missing\n");
            return 1;
        }
        int a = shutdown_fn();
        int b = flush_fn();
        fprintf(stderr, "idle: shutdown %d, then flush %d\n", a, b);
    }
    while (s-- > 0) sleep(1);
    return 0;
}
