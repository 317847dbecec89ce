"""The example server's worker loop (examples/vllm_server.py) as a benchmark: each scheduler step calls
npuprof.step, then execute_model > model_forward > LAYERS x (attention, mlp) ranges and a `sample` mark,
with a fixed amount of Python CPU work in each layer range instead of the example's sleeps, so throughput
measures what profiling costs.

    python3 benches/serving.py calibrate
    python3 benches/serving.py MODE LAYERS ITERS SECONDS
    python3 benches/serving.py ab LAYERS ITERS SECONDS ROUNDS

MODE: off (VLLM_TORCH_PROFILER_DIR unset by the harness: every call returns at once), idle (configured, not
started), rec (npuprof.start before the loop, stop after it, neither timed). After a 300 ms warm-up the
ranges completed in SECONDS are counted, with the npuprof-drain thread's wake-ups and CPU time. Prints one
line: RESULT {json}. The library is $NPUPROF_LIBRARY.

MODE ab (configured): ROUNDS pairs of SECONDS windows in this one process, idle and recording in turns (the
order alternating by round); npuprof.start before a recording window, npuprof.stop and flush after it,
untimed. Each pair's ratio compares the same process a second apart.
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import npuprof  # noqa: E402


def work(n, x):
    for _ in range(n):
        x = (x * 1103515245 + 12345) & 0xFFFFFFFF
    return x


def drain():
    """(voluntary switches, CPU ns) of the npuprof-drain thread, or None."""
    for t in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{t}/comm") as f:
                if not f.read().startswith("npuprof-drain"):
                    continue
            with open(f"/proc/self/task/{t}/status") as f:
                wake = next(int(l.split()[1]) for l in f if l.startswith("voluntary_ctxt_switches"))
            with open(f"/proc/self/task/{t}/schedstat") as f:
                cpu = int(f.read().split()[0])
            return wake, cpu
        except (OSError, StopIteration, ValueError):
            continue
    return None


def one_step(step, layers, iters, x):
    npuprof.step(512 if step % 7 == 0 else 8)
    with npuprof.range("execute_model"):
        with npuprof.range("model_forward"):
            for _ in range(layers):
                with npuprof.range("attention"):
                    x = work(iters, x)
                with npuprof.range("mlp"):
                    x = work(iters, x)
        npuprof.mark("sample")
    return x


def window(layers, iters, seconds, step, x):
    """Steps for `seconds`: (ranges per second, drain wake-ups per second, drain CPU ms per second)."""
    d0, done, t0 = drain(), 0, time.perf_counter()
    while True:
        step += 1
        x = one_step(step, layers, iters, x)
        done += 2 + 2 * layers
        now = time.perf_counter()
        if now - t0 >= seconds:
            break
    dt, d1 = now - t0, drain()
    wake = (d1[0] - d0[0]) / dt if d0 and d1 else -1
    cpu = (d1[1] - d0[1]) / dt / 1e6 if d0 and d1 else -1
    return done / dt, wake, cpu, step, x


def ab(layers, iters, seconds, rounds):
    step, x = 0, 1
    warm_end = time.perf_counter() + 0.3
    while time.perf_counter() < warm_end:
        step += 1
        x = one_step(step, layers, iters, x)
    ratios, wakes, cpus, idles = [], [], [], []
    for r in range(rounds):
        rates = {}
        for recording in ((False, True) if r % 2 == 0 else (True, False)):
            if recording:
                npuprof.start()
                time.sleep(0.05)
            rate, wake, cpu, step, x = window(layers, iters, seconds, step, x)
            if recording:
                npuprof.stop()
                npuprof.flush()
                time.sleep(0.05)
                wakes.append(wake)
                cpus.append(cpu)
            rates[recording] = rate
        ratios.append(rates[True] / rates[False])
        idles.append(rates[False])
    med = lambda v: sorted(v)[len(v) // 2]
    print("RESULT " + json.dumps({"mode": "ab", "threads": 1, "rounds": rounds, "ratios": ratios,
                                  "rec_over_idle": med(ratios), "idle_ranges_per_s": med(idles),
                                  "drain_wakeups_per_s": med(wakes), "drain_cpu_ms_per_s": med(cpus)}))
    return 0


def main(argv):
    if argv[:1] == ["calibrate"]:
        n = 2_000_000
        t0 = time.perf_counter()
        work(n, 1)
        print("RESULT " + json.dumps({"iters_per_ms": n / ((time.perf_counter() - t0) * 1e3)}))
        return 0
    mode, layers, iters, seconds = argv[0], int(argv[1]), int(argv[2]), float(argv[3])
    if mode == "ab":
        return ab(layers, iters, seconds, int(argv[4]))
    if mode == "rec":
        npuprof.start()
    step, x = 0, 1
    warm_end = time.perf_counter() + 0.3
    while time.perf_counter() < warm_end:
        step += 1
        x = one_step(step, layers, iters, x)
    rate, wake, cpu, step, x = window(layers, iters, seconds, step, x)
    if mode == "rec":
        npuprof.stop()
        npuprof.flush()
    out = {"mode": mode, "threads": 1, "ranges_per_s": rate, "seconds": seconds,
           "drain_wakeups_per_s": wake, "drain_cpu_ms_per_s": cpu}
    print("RESULT " + json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
