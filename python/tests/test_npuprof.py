"""The Python package over the real library: every call, the errors, both trigger logics, and a missing
library. Each test runs its code in a fresh process (the configuration is read once per process)."""
import json
import os


def trace(d):
    with open(os.path.join(d, "ASCEND_PROFILER_OUTPUT", "trace_view.json")) as f:
        return json.load(f)


def names(t, ph="X"):
    return [e["name"] for e in t if e["ph"] == ph]


def test_a_manual_profile_with_ranges_marks_and_steps(run):
    out, _ = run(r'''
import threading, npuprof
assert not npuprof.is_running()
npuprof.start()
assert npuprof.is_running()

@npuprof.range("decorated")
def work(x):
    return x * 2

for i in range(3):
    npuprof.step(100 + i)
    with npuprof.range("model_forward"):
        with npuprof.range("attention"):
            assert work(i) == 2 * i
        npuprof.mark("sampled")
t = threading.Thread(target=lambda: [npuprof.mark(b"bytes\xffname") for _ in range(2)])
t.start(); t.join()
npuprof.stop()
npuprof.flush()
print(npuprof.output_dir())
print(npuprof.version())
''')
    d, version = out.split()
    t = trace(d)
    xs = names(t)
    assert [n for n in xs if n.startswith("ProfilerStep#")] == ["ProfilerStep#1", "ProfilerStep#2", "ProfilerStep#3"]
    assert xs.count("model_forward") == 3 and xs.count("attention") == 3 and xs.count("decorated") == 3
    assert names(t, "i").count("sampled") == 3
    assert names(t, "i").count("bytes\\xffname") == 2
    assert version.count(".") == 2
    # The decorated range nests inside attention on the same thread.
    att = [e for e in t if e.get("name") == "attention"]
    dec = [e for e in t if e.get("name") == "decorated"]
    assert all(a["tid"] == b["tid"] for a, b in zip(att, dec))


def test_errors_carry_the_status_and_the_librarys_message(run):
    out, _ = run(r'''
import npuprof
try:
    npuprof.stop()
except npuprof.NpuprofError as e:
    print("STOP", e.status, e.name, "|", e.message)
npuprof.start()
try:
    npuprof.start()
except npuprof.NpuprofError as e:
    print("START", e.status, e.name, "|", e.message)
npuprof.stop()
npuprof.flush()
''')
    lines = dict(l.split(" ", 1) for l in out.strip().splitlines())
    assert lines["STOP"].startswith("3 NPUPROF_ERR_NOT_RUNNING | npuprof_stop: no profile is recording")
    assert lines["START"].startswith("2 NPUPROF_ERR_ALREADY_RUNNING | npuprof_start: a profile is already")


def test_set_group_writes_parallel_group_info_and_refuses_bad_groups(run):
    out, _ = run(r'''
import npuprof
npuprof.set_group("10.0.0.1%eth0_60000_0_1", "dp", 1, [0, 3])
npuprof.set_group(b"tp-comm", "tp", 0, [0])
try:
    npuprof.set_group("bad", "dp", 2, [0, 1])
except npuprof.NpuprofError as e:
    print("BAD", e.status, e.name)
npuprof.start()
npuprof.stop()
npuprof.flush()
print("DIR", npuprof.output_dir())
''')
    lines = dict(l.split(" ", 1) for l in out.strip().splitlines())
    assert lines["BAD"] == "4 NPUPROF_ERR_INVALID_ARGUMENT"
    with open(os.path.join(lines["DIR"], "profiler_metadata.json")) as f:
        info = json.load(f)["parallel_group_info"]
    assert info == {
        "10.0.0.1%eth0_60000_0_1": {"group_name": "dp", "group_rank": 1, "global_ranks": [0, 3]},
        "tp-comm": {"group_name": "tp", "group_rank": 0, "global_ranks": [0]},
    }


def test_disabled_without_a_profiler_dir(run):
    out, _ = run(r'''
import npuprof
npuprof.step(5)          # a no-op, not an error
with npuprof.range("x"):
    npuprof.mark("y")
try:
    npuprof.start()
except npuprof.NpuprofError as e:
    print(e.status, e.name, "|", e.message)
''', env={"VLLM_TORCH_PROFILER_DIR": None})
    assert out.startswith("1 NPUPROF_ERR_DISABLED | npuprof_start: profiling is disabled")


def test_token_threshold_and_stop_step(run):
    out, _ = run(r'''
import npuprof
for tokens in [3, 5, 40, 8, 8, 8, 8, 8, 8]:
    npuprof.step(tokens)
    with npuprof.range("forward"):
        pass
npuprof.flush()
print(npuprof.output_dir(), npuprof.is_running())
''', env={"PROFILER_TOKEN_THRESHOLD": "32", "PROFILER_STOP_STEP": "3"})
    d, running = out.split()
    assert running == "False"
    steps = [n for n in names(trace(d)) if n.startswith("ProfilerStep#")]
    assert steps == ["ProfilerStep#1", "ProfilerStep#2", "ProfilerStep#3"]


def test_a_missing_library_raises_on_control_calls_and_leaves_recording_calls_harmless(run, tmp_path):
    out, _ = run(r'''
import npuprof
assert npuprof.library_path() is None
with npuprof.range("x"):
    npuprof.mark("y")
npuprof.step(1000)       # the serving loop never breaks on a missing library
@npuprof.range("f")
def f():
    return 7
assert f() == 7 and not npuprof.is_running()
try:
    npuprof.start()
except npuprof.NpuprofError as e:
    print(e.name, "|", e.message)
''', env={"NPUPROF_LIBRARY": str(tmp_path / "nope.so"), "LD_LIBRARY_PATH": str(tmp_path)}, library=False)
    assert out.startswith("NPUPROF_ERR_LIBRARY | libnpuprof.so not found (")
    assert "nope.so" in out and "set NPUPROF_LIBRARY" in out
