import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PYDIR = os.path.join(REPO, "python")


@pytest.fixture(scope="session")
def lib():
    """libnpuprof.so: $NPUPROF_LIBRARY, else a fresh `cargo build --lib` (debug)."""
    p = os.environ.get("NPUPROF_LIBRARY")
    if p:
        return p
    subprocess.run(["cargo", "build", "--lib", "--quiet"], cwd=REPO, check=True)
    return os.path.join(REPO, "target", "debug", "libnpuprof.so")


@pytest.fixture
def run(lib, tmp_path):
    """Runs a Python snippet in a fresh process (npuprof reads its environment once per process) with the
    package importable, the library given and results under tmp_path; returns (stdout, stderr)."""

    def go(code, env=None, library=True, check=True):
        e = {k: v for k, v in os.environ.items() if not k.startswith(("NPUPROF_", "VLLM_", "PROFILER_"))}
        e["PYTHONPATH"] = PYDIR
        e["NPUPROF_LOG"] = "warn"
        if library:
            e["NPUPROF_LIBRARY"] = lib
        e["VLLM_TORCH_PROFILER_DIR"] = str(tmp_path / "prof")
        e.update(env or {})
        e = {k: v for k, v in e.items() if v is not None}
        p = subprocess.run([sys.executable, "-c", code], env=e, capture_output=True, text=True, timeout=120)
        if check and p.returncode != 0:
            raise AssertionError(f"exit {p.returncode}\n--- stdout\n{p.stdout}\n--- stderr\n{p.stderr}")
        return p.stdout, p.stderr

    return go
