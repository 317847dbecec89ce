"""Capture windows from Python: npuprof.start(num_steps=..., delay_steps=..., max_seconds=..., output_dir=...,
tag=..., at_step=...) over the real library, and the NPUPROF_* bounds of the environment."""
import json
import os


def trace(d):
    with open(os.path.join(d, "ASCEND_PROFILER_OUTPUT", "trace_view.json")) as f:
        return json.load(f)


def meta(d):
    with open(os.path.join(d, "profiler_metadata.json")) as f:
        return json.load(f)["npuprof"]


def steps(d):
    return [e["name"] for e in trace(d) if e["ph"] == "X" and e["name"].startswith("ProfilerStep#")]


def test_num_steps_delay_tag_and_output_dir(run, tmp_path):
    other = tmp_path / "other"
    out, _ = run(rf'''
import npuprof
npuprof.start(num_steps=3, delay_steps=2, tag="prefill-32k", output_dir={str(other)!r})
seen = []
for i in range(8):
    npuprof.step(10)
    seen.append(int(npuprof.is_running()))
npuprof.flush()
print("".join(map(str, seen)), npuprof.output_dir())
''')
    pattern, d = out.split()
    # Two steps skipped, three recorded, then stopped by itself.
    assert pattern == "00111000"
    assert d.startswith(str(other)) and os.path.basename(d).startswith("prefill-32k_")
    assert steps(d) == ["ProfilerStep#1", "ProfilerStep#2", "ProfilerStep#3"]
    m = meta(d)
    assert m["stop_reason"].startswith("max steps")
    assert m["window"] == {"delay_steps": 2, "max_steps": 3, "max_seconds": 0, "first_step": 3,
                           "tag": "prefill-32k"}


def test_max_seconds_stops_without_a_step_and_zero_lifts_the_environments_bound(run):
    out, _ = run(r'''
import time, npuprof
npuprof.start(max_seconds=1)
npuprof.step(1)
time.sleep(2.5)
print(int(npuprof.is_running()))
npuprof.flush()
first = npuprof.output_dir()
npuprof.start(num_steps=0)  # NPUPROF_MAX_STEPS=2 in the environment, lifted for this start
for i in range(4):
    npuprof.step(1)
print(int(npuprof.is_running()))
npuprof.stop(); npuprof.flush()
print(first, npuprof.output_dir())
''', env={"NPUPROF_MAX_STEPS": "2"})
    a, b, dirs = out.split("\n", 2)
    first, second = dirs.split()
    assert (a, b) == ("0", "1")
    assert meta(first)["stop_reason"].startswith("max seconds")
    assert len(steps(second)) == 4


def test_bad_options_raise_invalid_argument_and_start_nothing(run):
    out, _ = run(r'''
import npuprof
for kw in ({"tag": "a/b"}, {"num_steps": -1}, {"max_seconds": 10**9}, {"delay_steps": 1, "at_step": 3},
           {"num_steps": "5"}, {"at_step": 0}):
    try:
        npuprof.start(**kw)
        print("STARTED", kw)
    except npuprof.NpuprofError as e:
        print(e.name, e.status == npuprof.ERR_INVALID_ARGUMENT)
print(npuprof.is_running(), npuprof.output_dir())
''')
    lines = out.strip().splitlines()
    assert lines[:-1] == ["NPUPROF_ERR_INVALID_ARGUMENT True"] * 6, out
    assert lines[-1] == "False None"


def test_at_step_waits_for_the_step_and_stop_cancels_it(run):
    out, _ = run(r'''
import npuprof
npuprof.start(at_step=3, num_steps=1)
seen = []
for i in range(5):
    npuprof.step(1)
    seen.append(int(npuprof.is_running()))
npuprof.start(delay_steps=50)
npuprof.stop()          # cancels the waiting start
try:
    npuprof.stop()
except npuprof.NpuprofError as e:
    print(e.name)
npuprof.flush()
print("".join(map(str, seen)))
''')
    err, pattern = out.split()
    assert err == "NPUPROF_ERR_NOT_RUNNING"
    assert pattern == "00100"
