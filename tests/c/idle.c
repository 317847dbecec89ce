/* An "unchanged runtime": a program that knows nothing of npuprof (no symbol, no call) and just runs for
 * argv[1] seconds. tests/control.rs preloads libnpuprof.so into it. */
#include <stdlib.h>
#include <unistd.h>
int main(int argc, char **argv) {
    int s = argc > 1 ? atoi(argv[1]) : 60;
    while (s-- > 0) sleep(1);
    return 0;
}
