/* Proof that the sanitizer build of the C tests is really instrumented (tests/reliability.rs):
 *   asan_canary asan N   copies N bytes into an 8-byte heap block (N = 9: AddressSanitizer must report)
 *   asan_canary ubsan N  computes INT_MAX - 1 + N (N = 2: UndefinedBehaviorSanitizer must report)
 * N comes from the command line, so the compiler can neither see the fault nor remove it. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
int main(int argc, char **argv) {
    if (argc < 3) return 2;
    int n = atoi(argv[2]);
    if (!strcmp(argv[1], "asan")) {
        char src[64] = {0};
        char *p = malloc(8);
        memcpy(p, src, (size_t)n & 63);
        int r = p[0];
        free(p);
        return r;
    }
    int x = INT_MAX - 1;
    x += n;
    return x == 0;
}
