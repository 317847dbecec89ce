#!/usr/bin/env python3
"""A vLLM-style server wired to npuprof, stdlib only: the example of README's "Instrumenting a runtime".

    VLLM_TORCH_PROFILER_DIR=./profiling NPUPROF_LIBRARY=target/release/libnpuprof.so \\
        python3 examples/vllm_server.py --workers 2 --port 8000
    curl -X POST localhost:8000/start_profile ; sleep 2 ; curl -X POST localhost:8000/stop_profile

It has the shape of vLLM's: an HTTP frontend, and one process per tensor-parallel worker, each running a
scheduler loop. The three npuprof calls sit where vLLM-MindSpore, omni-infer and vllm-ascend have them:

* **`POST /start_profile` and `POST /stop_profile`.** The frontend asks every worker to run
  `npuprof.start()` / `npuprof.stop()`. That is the worker's `start_profile` / `stop_profile`, which the
  engine's `profile(is_start)` reaches by collective RPC.
* **`npuprof.step(num_scheduled_tokens)`.** It runs once per scheduler step in each worker, before the
  forward pass. That is `execute_model` with `scheduler_output.total_num_scheduled_tokens`. It drives the
  `PROFILER_TOKEN_THRESHOLD` / `PROFILER_STOP_STEP` logic with no HTTP call.
* **`POST /start_profile` with a JSON body** (optional): `{"num_steps": 10, "delay_steps": 2, "max_seconds":
  30, "at_step": N, "output_dir": "...", "tag": "decode"}`, handed to every worker's `npuprof.start(...)`;
  anything else is HTTP 400.
* **`--ray`**: the workers run as Ray actors (vLLM's Ray executor) on a local cluster, or the one
  `RAY_ADDRESS` names; the npuprof variables reach them through their runtime environment.
* **`POST /generate {"tokens": N}`.** It queues a request whose prefill schedules N tokens at the next step.
  Decode steps schedule one token per running request.

Each worker sets RANK / LOCAL_RANK before importing npuprof, so each writes its own
`<host>_<pid>_<stamp>_ascend_ms` directory, as tensor-parallel workers do. Other routes:
* `GET /status`: per worker, its `pid`, `running` and the last `output_dir`.

With NPUPROF_CONTROL=1, each worker also answers `npuprof trigger start|stop --pid <worker pid>`. That
profiles one worker on demand, with no route and no restart.
* `POST /shutdown`: stops the server.
"""

import argparse
import json
import multiprocessing as mp
import os
import queue
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def worker(rank, world, cmd_q, res_q):
    os.environ["RANK"] = str(rank)
    os.environ["LOCAL_RANK"] = str(rank)
    os.environ.setdefault("NPUPROF_WORKER_NAME", f"worker{rank}")
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
    import npuprof

    pending = []  # prefill token counts of queued requests
    decoding = 0  # requests in decode
    layers = 4
    status = {"rank": rank, "running": False, "output_dir": None}
    res_q.put(("ready", rank, None))
    while True:
        try:
            while True:
                cmd, arg = cmd_q.get_nowait()
                if cmd == "exit":
                    try:
                        npuprof.shutdown()
                    except npuprof.NpuprofError as e:
                        print(f"worker {rank}: {e}", file=sys.stderr)
                    res_q.put(("exit", rank, None))
                    return
                if cmd == "generate":
                    pending.append(int(arg))
                    continue
                try:
                    if cmd == "start_profile":
                        npuprof.start(**(arg or {}))
                    elif cmd == "stop_profile":
                        npuprof.stop()
                        npuprof.flush()
                    out = {"ok": True}
                except npuprof.NpuprofError as e:
                    out = {"ok": False, "status": e.status, "error": str(e)}
                out.update(rank=rank, pid=os.getpid(), running=npuprof.is_running(),
                           output_dir=npuprof.output_dir())
                res_q.put((cmd, rank, out))
        except queue.Empty:
            pass
        # One scheduler step: prefill of a queued request, else decode of the running ones.
        tokens = pending.pop(0) if pending else max(decoding, 1)
        if tokens > 1:
            decoding = min(decoding + 1, 8)
        npuprof.step(tokens)
        with npuprof.range("execute_model"):
            with npuprof.range("model_forward"):
                for _ in range(layers):
                    with npuprof.range("attention"):
                        time.sleep(0.0002)
                    with npuprof.range("mlp"):
                        time.sleep(0.0001)
            npuprof.mark("sample")
        status["running"] = npuprof.is_running()
        time.sleep(0.001)


# The options POST /start_profile takes as a JSON body, handed to every worker's npuprof.start(...).
START_OPTIONS = {"num_steps": int, "delay_steps": int, "max_seconds": int, "at_step": int, "output_dir": str,
                 "tag": str}


def start_options(body):
    """The body of POST /start_profile as npuprof.start's keyword arguments; raises ValueError naming what is
    wrong (answered with HTTP 400, before any worker is asked)."""
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    for k, v in body.items():
        t = START_OPTIONS.get(k)
        if t is None:
            raise ValueError(f"unknown option {k!r} (known: {', '.join(START_OPTIONS)})")
        if v is not None and (not isinstance(v, t) or isinstance(v, bool)):
            raise ValueError(f"{k} must be {t.__name__} or null, not {v!r}")
    return {k: v for k, v in body.items() if v is not None}


class Server:
    """The workers as processes of this host (multiprocessing), as vLLM's multiprocessing executor."""

    def __init__(self, workers):
        ctx = mp.get_context("spawn")
        self.res_q = ctx.Queue()
        self.cmd_qs = [ctx.Queue() for _ in range(workers)]
        self.procs = [
            ctx.Process(target=worker, args=(r, workers, self.cmd_qs[r], self.res_q), daemon=True)
            for r in range(workers)
        ]
        for p in self.procs:
            p.start()
        self.lock = threading.Lock()
        self.replies = {}
        for _ in self.procs:
            kind, rank, _ = self.res_q.get(timeout=60)
            assert kind == "ready"

    def ask(self, cmd, arg=None, timeout=120):
        """Sends cmd to every worker (as vLLM's collective RPC does) and gathers their answers."""
        with self.lock:
            for q in self.cmd_qs:
                q.put((cmd, arg))
            if cmd == "generate":
                return [{"rank": r, "ok": True} for r in range(len(self.procs))]
            got = {}
            deadline = time.time() + timeout
            while len(got) < len(self.procs):
                kind, rank, out = self.res_q.get(timeout=max(0.1, deadline - time.time()))
                if kind == cmd:
                    got[rank] = out
            return [got[r] for r in sorted(got)]

    def close(self):
        for q in self.cmd_qs:
            q.put(("exit", None))
        for p in self.procs:
            p.join(timeout=60)


# The variables a worker reads, handed to Ray actors through their runtime environment: a Ray worker process
# is started by the cluster's raylet, not by this process, and on another node it would not see our
# environment at all (omni-infer's old logic "cannot retrieve profiles" in Ray mode).
FORWARDED = ("VLLM_", "PROFILER_", "NPUPROF_", "ASCEND_", "PYTHONPATH", "LD_LIBRARY_PATH")


class RayWorker:
    """One worker as a Ray actor, as vLLM's Ray executor runs them: the scheduler loop on a thread of the
    actor's process, the RPCs (ask) on another (a threaded actor)."""

    def __init__(self, rank, world):
        self.cmd_q, self.res_q = queue.Queue(), queue.Queue()
        threading.Thread(target=worker, args=(rank, world, self.cmd_q, self.res_q), daemon=True).start()
        kind, _, _ = self.res_q.get(timeout=60)
        assert kind == "ready"

    def ask(self, cmd, arg=None, timeout=120):
        self.cmd_q.put((cmd, arg))
        if cmd == "generate":
            return {"ok": True}
        deadline = time.time() + timeout
        while True:
            kind, rank, out = self.res_q.get(timeout=max(0.1, deadline - time.time()))
            if kind == cmd:
                return out

    def pid(self):
        return os.getpid()


class RayServer:
    """The workers as Ray actors (`--ray`): a local Ray cluster with as many CPUs as workers and no dashboard,
    or the cluster RAY_ADDRESS names."""

    def __init__(self, workers):
        import ray

        self.ray = ray
        if not ray.is_initialized():
            ray.init(num_cpus=workers if "RAY_ADDRESS" not in os.environ else None,
                     include_dashboard=False, log_to_driver=True)
        env = {k: v for k, v in os.environ.items() if k.startswith(FORWARDED)}
        actor = ray.remote(num_cpus=0, max_concurrency=4)(RayWorker)
        self.actors = [actor.options(runtime_env={"env_vars": env}).remote(r, workers) for r in range(workers)]
        self.lock = threading.Lock()
        self.pids = ray.get([a.pid.remote() for a in self.actors], timeout=300)

    def ask(self, cmd, arg=None, timeout=120):
        with self.lock:
            res = self.ray.get([a.ask.remote(cmd, arg, timeout) for a in self.actors], timeout=timeout + 30)
        if cmd == "generate":
            return [{"rank": r, "ok": True} for r in range(len(self.actors))]
        return res

    def close(self):
        try:
            self.ray.get([a.ask.remote("exit") for a in self.actors], timeout=120)
        finally:
            self.ray.shutdown()


def handler(server, stop_event):
    class H(BaseHTTPRequestHandler):
        def reply(self, code, body):
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, fmt, *args):
            pass

        def do_GET(self):
            if self.path == "/status":
                self.reply(200, server.ask("status"))
            else:
                self.reply(404, {"error": "not found"})

        def do_POST(self):
            n = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(n) or b"{}")
            if self.path == "/start_profile":
                try:
                    opts = start_options(body)
                except ValueError as e:
                    self.reply(400, {"error": str(e)})
                    return
                res = server.ask("start_profile", opts)
                self.reply(200 if all(r["ok"] for r in res) else 500, res)
            elif self.path == "/stop_profile":
                res = server.ask("stop_profile")
                self.reply(200 if all(r["ok"] for r in res) else 500, res)
            elif self.path == "/generate":
                self.reply(200, server.ask("generate", int(body.get("tokens", 16))))
            elif self.path == "/shutdown":
                self.reply(200, {"ok": True})
                stop_event.set()
            else:
                self.reply(404, {"error": "not found"})

    return H


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000, help="0: any free port (printed)")
    ap.add_argument("--ray", action="store_true", help="run the workers as Ray actors (pip install ray)")
    a = ap.parse_args()
    server = RayServer(a.workers) if a.ray else Server(a.workers)
    stop = threading.Event()
    httpd = ThreadingHTTPServer((a.host, a.port), handler(server, stop))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    print(f"LISTENING {httpd.server_address[1]}", flush=True)
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    httpd.shutdown()
    server.close()


if __name__ == "__main__":
    main()
