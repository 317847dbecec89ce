/* What every test client shares: CHECK and EXPECT print a FAIL line (the Rust side looks for them) and count
 * the failure; print_dir prints the current worker directory as DIR=... . The including file declares
 * `static struct api P;` (npuprof_api.h) before including this. */
#ifndef NPUPROF_CHECK_H
#define NPUPROF_CHECK_H
#include <stdio.h>

static int failures;

#define CHECK(cond)                                                              \
    do {                                                                         \
        if (!(cond)) {                                                           \
            printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);               \
            failures++;                                                          \
        }                                                                        \
    } while (0)
#define EXPECT(call, want)                                                       \
    do {                                                                         \
        int got_ = (call);                                                       \
        if (got_ != (want)) {                                                    \
            printf("FAIL %s:%d: %s = %d (%s), want %d\n", __FILE__, __LINE__,    \
                   #call, got_, P.strerror(got_), (int)(want));                  \
            failures++;                                                          \
        }                                                                        \
    } while (0)

/* Flushed at once: some tests read it while the client still runs. */
static inline void print_dir(void) {
    char buf[4096];
    size_t n = P.output_dir(buf, sizeof buf);
    printf("DIR=%s\n", n ? buf : "");
    fflush(stdout);
}
#endif
