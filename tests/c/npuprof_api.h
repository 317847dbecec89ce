/* The npuprof C API as a table of function pointers, filled by dlopen + dlsym: shared by the test clients
 * (tests/c/client.c in its dlopen mode, tests/c/storm.c). */
#ifndef NPUPROF_API_H
#define NPUPROF_API_H
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

#include "npuprof.h"

struct api {
    int (*start)(void);
    int (*stop)(void);
    int (*step)(uint64_t);
    int (*is_running)(void);
    const char *(*strerror)(int);
    size_t (*output_dir)(char *, size_t);
    size_t (*last_error)(char *, size_t);
    uint32_t (*intern)(const char *);
    void (*range_push)(uint32_t);
    void (*range_pop)(void);
    void (*mark)(uint32_t);
    int (*flush)(void);
    int (*shutdown)(void);
    const char *(*version)(void);
    int (*set_group)(const char *, const char *, uint32_t, const uint32_t *, size_t);
    int (*start_with)(const struct npuprof_start_options *);
};

/* Loads `lib` (RTLD_LOCAL, as a runtime's plugin loader would) into `p`; prints FAIL and exits on error. */
static inline void api_dlopen(struct api *p, const char *lib) {
    void *h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        printf("FAIL dlopen: %s\n", dlerror());
        exit(1);
    }
#define SYM(f) *(void **)(&p->f) = dlsym(h, "npuprof_" #f); if (!p->f) { printf("FAIL dlsym npuprof_%s\n", #f); exit(1); }
    SYM(start) SYM(stop) SYM(step) SYM(is_running) SYM(strerror) SYM(output_dir) SYM(last_error) SYM(intern)
    SYM(range_push) SYM(range_pop) SYM(mark) SYM(flush) SYM(shutdown) SYM(version) SYM(set_group)
    SYM(start_with)
#undef SYM
}
#endif
