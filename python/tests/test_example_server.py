"""examples/vllm_server.py driven over real HTTP on 127.0.0.1, with 2 worker processes, for both seed
logics; every worker's result passes `npuprof check` and msprof-analyze's cluster analysis (when it is
installed, as .ci/run does; mandatory under CI), see resultcheck.py."""
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

from conftest import PYDIR, REPO
from resultcheck import check


def http(port, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else (b"" if method == "POST" else None)
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method)
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read())


class Server:
    def __init__(self, lib, root, env=None, args=()):
        e = {k: v for k, v in os.environ.items() if not k.startswith(("NPUPROF_", "VLLM_", "PROFILER_"))}
        e.update(PYTHONPATH=PYDIR, NPUPROF_LIBRARY=lib, VLLM_TORCH_PROFILER_DIR=str(root), NPUPROF_LOG="warn")
        e.update(env or {})
        self.p = subprocess.Popen(
            [sys.executable, os.path.join(REPO, "examples", "vllm_server.py"), "--workers", "2", "--port", "0",
             *args],
            env=e, stdout=subprocess.PIPE, text=True)
        line = self.p.stdout.readline()
        while line and not line.startswith("LISTENING "):  # Ray prints its own lines first
            line = self.p.stdout.readline()
        assert line.startswith("LISTENING "), line
        self.port = int(line.split()[1])

    def close(self):
        try:
            http(self.port, "POST", "/shutdown")
        finally:
            assert self.p.wait(timeout=120) == 0


def trace(d):
    with open(os.path.join(d, "ASCEND_PROFILER_OUTPUT", "trace_view.json")) as f:
        return json.load(f)


def test_start_and_stop_profile_routes_write_one_result_per_worker(lib, tmp_path):
    s = Server(lib, tmp_path)
    try:
        assert all(not w["running"] for w in http(s.port, "GET", "/status"))
        started = http(s.port, "POST", "/start_profile")
        assert [w["rank"] for w in started] == [0, 1] and all(w["running"] for w in started)
        for _ in range(3):
            http(s.port, "POST", "/generate", {"tokens": 300})
        time.sleep(1.0)
        stopped = http(s.port, "POST", "/stop_profile")
        assert all(w["ok"] and not w["running"] for w in stopped)
        dirs = [w["output_dir"] for w in stopped]
        # A second stop is a clear error, not a crash: HTTP 500 with the library's message per worker.
        try:
            http(s.port, "POST", "/stop_profile")
            raise AssertionError("second stop succeeded")
        except urllib.error.HTTPError as e:
            body = json.loads(e.read())
            assert e.code == 500 and all("NPUPROF_ERR_NOT_RUNNING" in w["error"] for w in body)
    finally:
        s.close()
    assert len(set(dirs)) == 2 and all(d.endswith("_ascend_ms") for d in dirs)
    for rank, d in enumerate(dirs):
        assert os.path.exists(os.path.join(d, f"profiler_info_{rank}.json"))
        t = trace(d)
        steps = [e for e in t if e["ph"] == "X" and e["name"].startswith("ProfilerStep#")]
        fwd = [e for e in t if e["ph"] == "X" and e["name"] == "model_forward"]
        assert len(steps) >= 10 and len(fwd) >= len(steps) - 1
        # The 300-token prefills are in the steps' arguments.
        assert any(e["args"].get("num_scheduled_tokens") == 300 for e in steps)
    out = check(lib, tmp_path)
    assert "2 result(s)" in out
    # The checker's slice count (Perfetto's import rules) is exactly what was recorded: every range and
    # step of both workers, as npuprof's own metadata counts them.
    recorded = 0
    for d in dirs:
        with open(os.path.join(d, "profiler_metadata.json")) as f:
            recorded += json.load(f)["npuprof"]["slices"]
    assert recorded > 0 and f" {recorded} slices" in out, (recorded, out[-400:])


def test_token_threshold_starts_and_stop_step_ends_a_profile_per_worker(lib, tmp_path):
    s = Server(lib, tmp_path, {"PROFILER_TOKEN_THRESHOLD": "256", "PROFILER_STOP_STEP": "5"})
    try:
        time.sleep(0.3)  # decode steps of 1 token: below the threshold, nothing starts
        assert all(w["output_dir"] is None for w in http(s.port, "GET", "/status"))
        http(s.port, "POST", "/generate", {"tokens": 512})
        deadline = time.time() + 60
        while True:
            st = http(s.port, "GET", "/status")
            if all(w["output_dir"] and not w["running"] for w in st):
                break
            assert time.time() < deadline, st
            time.sleep(0.1)
        # Once per process: later large requests do not start another profile.
        http(s.port, "POST", "/generate", {"tokens": 1024})
        time.sleep(0.3)
        assert all(not w["running"] for w in http(s.port, "GET", "/status"))
    finally:
        s.close()
    dirs = [w["output_dir"] for w in st]
    for d in dirs:
        names = [e["name"] for e in trace(d) if e["ph"] == "X" and e["name"].startswith("ProfilerStep#")]
        assert names == [f"ProfilerStep#{k}" for k in range(1, 6)], names
    check(lib, tmp_path)


def test_one_worker_profiled_on_demand_with_npuprof_trigger(lib, tmp_path):
    """NPUPROF_CONTROL=1: `npuprof trigger start|stop --pid` profiles one worker of a running server, with no
    HTTP route and no restart; the other worker is untouched."""
    cli = os.environ.get("NPUPROF_CLI") or os.path.join(os.path.dirname(lib), "npuprof")
    s = Server(lib, tmp_path, {"NPUPROF_CONTROL": "1"})
    try:
        st = http(s.port, "GET", "/status")
        pid = str(st[1]["pid"])
        args = ["--pid", pid, "--dir", str(tmp_path)]
        p = subprocess.run([cli, "trigger", "start", *args], capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        d = p.stdout.strip().removeprefix("started: ")
        http(s.port, "POST", "/generate", {"tokens": 128})
        time.sleep(0.5)
        st = http(s.port, "GET", "/status")
        assert [w["running"] for w in st] == [False, True]
        p = subprocess.run([cli, "trigger", "stop", *args], capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        deadline = time.time() + 60
        while not os.path.exists(os.path.join(d, "profiler_metadata.json")):
            assert time.time() < deadline
            time.sleep(0.1)
        assert [w["output_dir"] for w in http(s.port, "GET", "/status")][0] is None
    finally:
        s.close()
    assert os.path.basename(d).startswith("worker1_")
    p = subprocess.run([cli, "check", d], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout
    p = subprocess.run([cli, "summary", d], capture_output=True, text=True)
    assert p.returncode == 0 and "model_forward" in p.stdout, p.stdout


def test_start_profile_takes_window_options_for_every_worker(lib, tmp_path):
    """POST /start_profile with a JSON body: the options reach every worker's npuprof.start(...); a bad body
    is HTTP 400 before any worker is asked."""
    s = Server(lib, tmp_path)
    try:
        for bad in ({"num_steps": "5"}, {"steps": 5}, [1]):
            try:
                http(s.port, "POST", "/start_profile", bad)
                raise AssertionError(f"accepted {bad}")
            except urllib.error.HTTPError as e:
                assert e.code == 400, bad
        assert all(not w["running"] for w in http(s.port, "GET", "/status"))
        started = http(s.port, "POST", "/start_profile", {"num_steps": 4, "tag": "decode", "max_seconds": 60})
        assert all(w["ok"] for w in started), started
        dirs = [w["output_dir"] for w in started]
        deadline = time.time() + 60
        while any(w["running"] for w in http(s.port, "GET", "/status")):
            assert time.time() < deadline
            time.sleep(0.1)
    finally:
        s.close()
    for d in dirs:
        assert os.path.basename(d).startswith("decode_worker")
        names = [e["name"] for e in trace(d) if e["ph"] == "X" and e["name"].startswith("ProfilerStep#")]
        assert names == [f"ProfilerStep#{k}" for k in range(1, 5)]
    check(lib, tmp_path)
