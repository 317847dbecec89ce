"""Validating the results a test wrote, with what the repository itself has (as tests/common/check.rs does
for the Rust tests): the project's own `npuprof check`, msprof-analyze's cluster analysis from .venv
(tests/consumers.py, shared with the Rust tests; mandatory under CI: .ci/run installs it), and
../shared/tools/check_profile.py as an extra check only where it exists (a lone clone has none)."""
import os
import subprocess
import sys

from conftest import REPO

sys.path.insert(0, os.path.join(REPO, "tests"))
import consumers  # noqa: E402  (tests/consumers.py: the one place the tests ask msprof-analyze)

TIMEOUT = 600  # far more than a check needs; reached only by a real hang


def _cli(lib):
    return os.environ.get("NPUPROF_CLI") or os.path.join(os.path.dirname(lib), "npuprof")


def check(lib, root):
    """`npuprof check ROOT`, the cluster analysis, and the extra checker where it exists; returns npuprof
    check's report (last line `CHECK PASS: N result(s), ranks [...], S slices / F flows`) and the cluster's."""
    p = subprocess.run([_cli(lib), "check", str(root)], capture_output=True, text=True, timeout=TIMEOUT)
    out = p.stdout + p.stderr
    assert p.returncode == 0 and "CHECK PASS" in out, out
    ma = consumers.default_msprof_analyze()
    if os.path.exists(ma):
        try:
            out += consumers.cluster(str(root), ma) + "\n"
        except consumers.Failed as e:
            raise AssertionError(str(e)) from None
    else:
        assert not os.environ.get("CI"), "CI must install msprof-analyze (.ci/run)"
    extra = os.path.join(REPO, "..", "shared", "tools", "check_profile.py")
    if os.path.exists(extra):
        p = subprocess.run([sys.executable, extra, str(root), "--no-cluster"], capture_output=True, text=True,
                           timeout=TIMEOUT)
        assert p.returncode == 0 and "CHECK PASS" in p.stdout, p.stdout + p.stderr
    return out
