/* A scripted C client of npuprof's capture windows (tests/window.rs): dlopen(LIB), then one call per
 * argument, each printing "CALL<i>=<what> <rc> <running>" (and DIR=<dir> after a call that has one).
 *
 *   start | stop | flush | shutdown          the calls of those names
 *   step                                     npuprof_step(100)
 *   steps:K                                  K steps, 1 ms apart, each printed
 *   sleep:MS                                 sleeps MS milliseconds (no step)
 *   with:KEY=V,KEY=V...                      npuprof_start_with; keys delay, steps, secs, at (numbers, or
 *                                            "none" = NPUPROF_NONE), tag, dir (strings), size (the struct's
 *                                            size field), extra (a non-zero byte past this header's struct)
 *   null                                     npuprof_start_with(NULL)
 *   lockstep:K:PERIOD_MS                     K steps, step j at the wall-clock multiple j of PERIOD_MS after
 *                                            the next whole second (processes started together step together)
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "npuprof_api.h"

static struct api P;

static uint64_t num(const char *v) {
    return strcmp(v, "none") ? strtoull(v, NULL, 10) : NPUPROF_NONE;
}

static void print_dir(void) {
    char d[4096];
    if (P.output_dir(d, sizeof d)) printf("DIR=%s\n", d);
}

static int with(char *spec) {
    /* A bigger struct than this header's, as a caller built against a newer header passes. */
    struct {
        struct npuprof_start_options o;
        uint64_t newer;
    } big;
    memset(&big, 0, sizeof big);
    struct npuprof_start_options *o = &big.o;
    o->size = sizeof *o;
    for (char *kv = strtok(spec, ","); kv; kv = strtok(NULL, ",")) {
        char *v = strchr(kv, '=');
        if (!v) continue;
        *v++ = 0;
        if (!strcmp(kv, "delay")) o->delay_steps = num(v);
        else if (!strcmp(kv, "steps")) o->num_steps = num(v);
        else if (!strcmp(kv, "secs")) o->max_seconds = num(v);
        else if (!strcmp(kv, "at")) o->at_step = num(v);
        else if (!strcmp(kv, "tag")) o->tag = v;
        else if (!strcmp(kv, "dir")) o->output_dir = v;
        else if (!strcmp(kv, "size")) o->size = (uint32_t)strtoul(v, NULL, 10);
        else if (!strcmp(kv, "extra")) { o->size = sizeof big; big.newer = strtoull(v, NULL, 10); }
    }
    return P.start_with(o);
}

static void lockstep(int k, int period_ms) {
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    uint64_t base = ((uint64_t)now.tv_sec + 1) * 1000000000ull;
    for (int j = 0; j < k; j++) {
        uint64_t t = base + (uint64_t)j * period_ms * 1000000ull;
        struct timespec ts = {(time_t)(t / 1000000000ull), (long)(t % 1000000000ull)};
        clock_nanosleep(CLOCK_REALTIME, TIMER_ABSTIME, &ts, NULL);
        int rc = P.step(100);
        printf("LOCKSTEP%d=%d %d\n", j + 1, rc, P.is_running());
    }
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: window LIB CALL...\n");
        return 2;
    }
    api_dlopen(&P, argv[1]);
    printf("LINK=dlopen\n");
    for (int i = 2; i < argc; i++) {
        char *a = argv[i];
        int rc = 0;
        if (!strcmp(a, "start")) rc = P.start();
        else if (!strcmp(a, "stop")) rc = P.stop();
        else if (!strcmp(a, "flush")) rc = P.flush();
        else if (!strcmp(a, "shutdown")) rc = P.shutdown();
        else if (!strcmp(a, "step")) rc = P.step(100);
        else if (!strcmp(a, "null")) rc = P.start_with(NULL);
        else if (!strncmp(a, "with:", 5)) rc = with(a + 5);
        else if (!strncmp(a, "sleep:", 6)) usleep((useconds_t)atoi(a + 6) * 1000);
        else if (!strncmp(a, "steps:", 6)) {
            int k = atoi(a + 6);
            for (int j = 0; j < k; j++) {
                rc = P.step(100);
                printf("STEP=%d %d\n", rc, P.is_running());
                usleep(1000);
            }
        } else if (!strncmp(a, "lockstep:", 9)) {
            int k = atoi(a + 9);
            const char *p = strchr(a + 9, ':');
            lockstep(k, p ? atoi(p + 1) : 20);
        } else {
            printf("FAIL unknown call %s\n", a);
            return 2;
        }
        if (rc != 0) {
            char e[1024];
            P.last_error(e, sizeof e);
            printf("ERROR%d=%s\n", i - 1, e);
        }
        printf("CALL%d=%s %d %d\n", i - 1, a, rc, P.is_running());
        print_dir();
        fflush(stdout);
    }
    return 0;
}
