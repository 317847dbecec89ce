/* The physical floor of a record call, behind the same dynamic-library boundary as libnpuprof.so (built as
 * a separate -fPIC shared library by the benches, called through dlsym'd function pointers):
 *   floor_empty   an empty extern "C" call
 *   floor_clock   the clock read the record path uses (rdtsc / cntvct_el0 / clock_gettime)
 *   floor_record  the cheapest possible record: clock read + one 16-byte store into a thread-local array
 */
#include <stdint.h>
#include <time.h>

#if defined(__x86_64__)
#include <x86intrin.h>
static inline uint64_t ticks(void) { return __rdtsc(); }
#elif defined(__aarch64__)
static inline uint64_t ticks(void) {
    uint64_t v;
    __asm__ volatile("mrs %0, cntvct_el0" : "=r"(v));
    return v;
}
#else
static inline uint64_t ticks(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
#endif

struct rec { uint64_t ts, meta; };
#define N 4096
static __thread struct rec ring[N] __attribute__((aligned(64)));
static __thread uint32_t head;

void floor_empty(void) { __asm__ volatile("" ::: "memory"); }

uint64_t floor_clock(void) { return ticks(); }

void floor_record(uint32_t id) {
    uint32_t h = head;
    ring[h & (N - 1)] = (struct rec){ticks(), ((uint64_t)1 << 56) | id};
    head = h + 1;
}
