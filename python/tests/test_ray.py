"""npuprof under real Ray (the `ray` package from PyPI, installed by .ci/run): examples/vllm_server.py --ray
runs its two workers as Ray actors on a local cluster (2 CPUs, no dashboard), as vLLM's Ray executor does.
The old logic through the actors' runtime environment, the new logic through actor method calls (vLLM's
collective RPC), `npuprof trigger --all` on the actors, and msprof-analyze's cluster analysis of their
results."""
import json
import os
import subprocess
import time

import pytest

from resultcheck import check
from test_example_server import Server, http, trace

try:
    import ray  # noqa: F401
    HAVE_RAY = True
except ImportError:
    HAVE_RAY = False

pytestmark = pytest.mark.skipif(not HAVE_RAY and not os.environ.get("CI"), reason="ray not installed (.ci/run)")

# A Ray cluster started by the server: no dashboard, no usage report, no network beyond 127.0.0.1.
RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_DISABLE_DOCKER_CPU_WARNING": "1"}


def steps(d):
    return [e["name"] for e in trace(d) if e["ph"] == "X" and e["name"].startswith("ProfilerStep#")]


def meta(d):
    with open(os.path.join(d, "profiler_metadata.json")) as f:
        return json.load(f)["npuprof"]


def wait_idle_with_results(s, timeout=120):
    deadline = time.time() + timeout
    while True:
        st = http(s.port, "GET", "/status")
        if all(w["output_dir"] and not w["running"] for w in st):
            return st
        assert time.time() < deadline, st
        time.sleep(0.2)


def test_old_logic_in_ray_actors_records_exactly_n_steps(lib, tmp_path):
    env = dict(RAY_ENV, PROFILER_TOKEN_THRESHOLD="256", PROFILER_STOP_STEP="4")
    s = Server(lib, tmp_path, env, args=["--ray"])
    try:
        pids = {w["pid"] for w in http(s.port, "GET", "/status")}
        assert os.getpid() not in pids and len(pids) == 2  # two actor processes
        time.sleep(0.3)  # 1-token decode steps: below the threshold
        assert all(w["output_dir"] is None for w in http(s.port, "GET", "/status"))
        http(s.port, "POST", "/generate", {"tokens": 512})
        st = wait_idle_with_results(s)
    finally:
        s.close()
    for w in st:
        assert steps(w["output_dir"]) == [f"ProfilerStep#{k}" for k in range(1, 5)]
        assert meta(w["output_dir"])["started_by"] == "PROFILER_TOKEN_THRESHOLD"
    check(lib, tmp_path)


def test_new_logic_through_actor_calls(lib, tmp_path):
    s = Server(lib, tmp_path, RAY_ENV, args=["--ray"])
    try:
        started = http(s.port, "POST", "/start_profile", {"num_steps": 6, "tag": "ray"})
        assert [w["rank"] for w in started] == [0, 1] and all(w["ok"] for w in started), started
        st = wait_idle_with_results(s)
        # And a start/stop pair, as vLLM's /start_profile and /stop_profile, into another root (a cluster
        # analysis takes one result per rank).
        other = str(tmp_path.parent / f"{tmp_path.name}-second")
        assert all(w["ok"] for w in http(s.port, "POST", "/start_profile", {"output_dir": other}))
        time.sleep(0.5)
        stopped = http(s.port, "POST", "/stop_profile")
        assert all(w["ok"] and not w["running"] for w in stopped)
    finally:
        s.close()
    for w in st:
        assert os.path.basename(w["output_dir"]).startswith(f"ray_worker{w['rank']}_")
        assert len(steps(w["output_dir"])) == 6
    for w in stopped:
        assert w["output_dir"].startswith(other) and len(steps(w["output_dir"])) >= 1
    check(lib, tmp_path)
    check(lib, other)


def test_trigger_all_reaches_every_ray_actor(lib, tmp_path):
    cli = os.environ.get("NPUPROF_CLI") or os.path.join(os.path.dirname(lib), "npuprof")
    s = Server(lib, tmp_path, dict(RAY_ENV, NPUPROF_CONTROL="1"), args=["--ray"])
    try:
        pids = sorted(w["pid"] for w in http(s.port, "GET", "/status"))
        deadline = time.time() + 60
        ctl = tmp_path / ".control"
        while len([n for n in os.listdir(ctl) if n.endswith(".reg")] if ctl.exists() else []) < 2:
            assert time.time() < deadline
            time.sleep(0.1)
        p = subprocess.run([cli, "trigger", "start", "--all", "--steps", "5", "--lead", "3", "--dir", str(tmp_path),
                            "--timeout", "60"], capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stdout + p.stderr
        answered = sorted(int(l.split()[2]) for l in p.stdout.splitlines() if l.startswith("started: pid "))
        assert answered == pids, p.stdout
        st = wait_idle_with_results(s)
    finally:
        s.close()
    firsts = {meta(w["output_dir"])["window"]["first_step"] for w in st}
    # Both actors started at the same step of their own counts.
    assert len(firsts) == 1, firsts
    for w in st:
        assert len(steps(w["output_dir"])) == 5
    check(lib, tmp_path)
