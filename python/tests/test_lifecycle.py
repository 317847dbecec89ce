"""Issue 14, items 1 and 5: a script that ends right after ``npuprof.stop()`` still gets its whole profile,
and the serving-loop calls never raise into the serving loop."""
import json
import os


def trace(d):
    with open(os.path.join(d, "ASCEND_PROFILER_OUTPUT", "trace_view.json")) as f:
        return json.load(f)


def test_a_script_ending_right_after_stop_keeps_its_profile(run, tmp_path):
    # Enough records that the export is certainly still queued or running when the interpreter exits: the
    # library's exit hook must wait for it.
    out, err = run(r'''
import npuprof
npuprof.start()
npuprof.step(16)
r = npuprof.range("work")
for i in range(60000):
    with r:
        npuprof.mark("tick")
npuprof.stop()
print(npuprof.output_dir())
''')
    d = out.strip()
    assert os.path.isdir(d), err
    t = trace(d)
    assert sum(1 for e in t if e["ph"] == "X" and e["name"] == "work") == 60000, err
    assert sum(1 for e in t if e["ph"] == "i" and e["name"] == "tick") == 60000
    with open(os.path.join(d, "profiler_metadata.json")) as f:
        meta = json.load(f)["npuprof"]
    assert meta["recorded_records"] == 1 + 3 * 60000
    assert meta["dropped_records"]["ring_full"] == 0
    assert "waiting up to" in err


def test_serving_loop_calls_never_raise_when_the_automatic_start_fails(run, tmp_path):
    # The root cannot be created (a regular file is in the way; refused even for root): the automatic start
    # of PROFILER_TOKEN_THRESHOLD fails inside step(), which must not raise, and the failure is logged once.
    blocker = tmp_path / "file"
    blocker.write_text("")
    out, err = run(r'''
import npuprof
for tokens in [1, 64, 64, 64]:
    npuprof.step(tokens)
    with npuprof.range("forward"):
        npuprof.mark("m")
print("ALIVE", npuprof.is_running())
''', env={"VLLM_TORCH_PROFILER_DIR": str(blocker / "prof"), "PROFILER_TOKEN_THRESHOLD": "32",
         "NPUPROF_LOG": "warn"})
    assert out.strip() == "ALIVE False", err
    failures = [l for l in err.splitlines() if "npuprof_step" in l or "cannot create" in l]
    assert len(failures) == 1, err
