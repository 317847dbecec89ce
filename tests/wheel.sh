#!/usr/bin/env bash
# run-tests' "wheel" section: the Python wheel as a user gets it.
#  1. `pip wheel ./python` (build isolation: the build requirements come from PyPI, as for a user) makes
#     npuprof-<crate version>-py3-none-manylinux_2_N_x86_64.whl holding npuprof/libnpuprof.so and the
#     `npuprof` script, and `auditwheel show` finds it consistent with its own tag.
#  2. Installed into a fresh virtual environment, it profiles from Python with no NPUPROF_LIBRARY, no
#     PYTHONPATH and no target/ on any path (run from a temporary directory), and that environment's
#     `npuprof check` passes the result; NPUPROF_LIBRARY still overrides the bundled library.
#  3. The aarch64 wheel cross-builds here: both its ELF files are aarch64, auditwheel accepts it, and its
#     library passes the C tests (tests/c_api.rs, tests/window.rs) under qemu.
# Prints one "test result:" line per check group, as run-tests counts them.
set -uo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
PY=$repo/.venv/bin/python
pass=0
fail=0
ok() { echo "ok: $1"; pass=$((pass + 1)); }
bad() { echo "FAILED: $1" >&2; fail=$((fail + 1)); }
check() { # what, command...
  local what=$1
  shift
  if "$@"; then ok "$what"; else bad "$what"; fi
}
version=$(sed -n '/^\[package\]/,/^\[/s/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The ELF machine (e_machine) of a file: 62 x86_64, 183 aarch64.
machine() { "$PY" -c 'import struct,sys; d=open(sys.argv[1],"rb").read(20); print(struct.unpack_from("<H",d,18)[0] if d[:4]==b"\x7fELF" else -1)' "$1"; }

# `auditwheel show` names the tag the wheel's files allow; it must be the wheel's own.
audit() { # wheel
  local out tag
  out=$("$repo/.venv/bin/auditwheel" show "$1" 2>&1) || { echo "$out"; return 1; }
  tag=$(basename "$1" .whl | sed 's/.*-py3-none-//')
  echo "$out"
  # No `producer | grep -q` under pipefail: grep -q exits at its first match and the producer may then die
  # of SIGPIPE, failing the pipeline (the CI failure of stop 26: a BrokenPipeError in `members`).
  local flat
  flat=$(tr -d '\n' <<<"$out")
  grep -q "consistent with.*\"${tag}\"" <<<"$flat" || grep -q "consistent with.*${tag}" <<<"$flat"
}

build() { # out dir, extra env...
  local out=$1
  shift
  env "$@" "$PY" -m pip wheel -q --disable-pip-version-check -w "$out" "$repo/python"
}

# ---- 1. the x86_64 wheel ----
if build "$tmp/x86"; then ok "pip wheel ./python"; else bad "pip wheel ./python"; fi
whl=$(ls "$tmp"/x86/npuprof-*.whl 2>/dev/null | head -1)
check "named npuprof-$version-py3-none-manylinux_2_N_x86_64.whl ($(basename "${whl:-none}"))" \
  bash -c "[[ \"$(basename "${whl:-none}")\" =~ ^npuprof-${version//./\\.}-py3-none-manylinux_2_[0-9]+_x86_64\\.whl$ ]]"
check "auditwheel show: consistent with its tag" audit "$whl"
# The wheel's member names (Python's zipfile: no unzip needed).
members() { "$PY" -c 'import sys, zipfile; print("\n".join(zipfile.ZipFile(sys.argv[1]).namelist()))' "$1"; }
holds() {
  local m
  m=$(members "$whl") || return 1
  grep -qx "npuprof/libnpuprof.so" <<<"$m" && grep -qx "npuprof-$version.data/scripts/npuprof" <<<"$m"
}
check "holds npuprof/libnpuprof.so and the npuprof script" holds

# ---- 2. installed in a fresh environment, used from elsewhere ----
python3 -m venv "$tmp/venv" && "$tmp/venv/bin/pip" install -q --disable-pip-version-check --no-index "$whl"
check "pip install of the wheel into a fresh venv" test -x "$tmp/venv/bin/npuprof"
clean=(env -i "PATH=$tmp/venv/bin:/usr/bin:/bin" "HOME=$tmp" "VLLM_TORCH_PROFILER_DIR=$tmp/prof" NPUPROF_LOG=warn)
mkdir -p "$tmp/elsewhere"
out=$(cd "$tmp/elsewhere" && "${clean[@]}" python - <<'EOF'
import importlib.metadata, os, sys
import npuprof
lib = npuprof.library_path()
assert lib and lib.startswith(sys.prefix), (lib, sys.prefix)
assert npuprof.version() == importlib.metadata.version("npuprof"), (npuprof.version(), importlib.metadata.version("npuprof"))
npuprof.start(num_steps=3)
for i in range(4):
    npuprof.step(100)
    with npuprof.range("forward"):
        pass
npuprof.flush()
print("LIB", lib)
print("VERSION", npuprof.version())
print("DIR", npuprof.output_dir())
EOF
)
echo "$out"
profiled() { grep -q "^DIR $tmp/prof/" <<<"$out" && ! grep -q "$repo/target" <<<"$out"; }
check "a profile from Python with no NPUPROF_LIBRARY, from the venv's own library" profiled
check "npuprof.version() is the crate's $version" grep -qx "VERSION $version" <<<"$out"
checked() {
  local r
  r=$(cd "$tmp/elsewhere" && "${clean[@]}" npuprof check "$tmp/prof") || return 1
  grep -q "CHECK PASS" <<<"$(tail -1 <<<"$r")"
}
check "the venv's npuprof check passes the result" checked
which_cli() { [ "$(cd "$tmp/elsewhere" && "${clean[@]}" sh -c 'command -v npuprof')" = "$tmp/venv/bin/npuprof" ]; }
check "the venv's npuprof is the wheel's (not target/)" which_cli
# README's command itself, into another fresh environment (the wheel's build is cached by now).
python3 -m venv "$tmp/venv2" && "$tmp/venv2/bin/pip" install -q --disable-pip-version-check "$repo/python"
help_ok() {
  local h
  h=$(cd "$tmp/elsewhere" && env -i "PATH=$tmp/venv2/bin:/usr/bin:/bin" npuprof --help) || return 1
  grep -q "npuprof trigger" <<<"$h"
}
check "pip install ./python: npuprof on PATH" help_ok
other=$repo/target/debug/libnpuprof.so
cargo build --quiet --lib
out=$(cd "$tmp/elsewhere" && "${clean[@]}" "NPUPROF_LIBRARY=$other" python -c 'import npuprof; print(npuprof.library_path())')
check "NPUPROF_LIBRARY still overrides the bundled library" test "$out" = "$other"

# ---- 3. the aarch64 wheel, cross-built ----
if build "$tmp/arm" CARGO_BUILD_TARGET=aarch64-unknown-linux-gnu; then ok "aarch64 wheel builds"; else bad "aarch64 wheel builds"; fi
awhl=$(ls "$tmp"/arm/npuprof-*.whl 2>/dev/null | head -1)
check "named npuprof-$version-py3-none-manylinux_2_N_aarch64.whl ($(basename "${awhl:-none}"))" \
  bash -c "[[ \"$(basename "${awhl:-none}")\" =~ ^npuprof-${version//./\\.}-py3-none-manylinux_2_[0-9]+_aarch64\\.whl$ ]]"
check "auditwheel show (aarch64): consistent with its tag" audit "$awhl"
mkdir -p "$tmp/arm/x" && "$PY" -m zipfile -e "$awhl" "$tmp/arm/x"
check "its library is an aarch64 ELF file" test "$(machine "$tmp/arm/x/npuprof/libnpuprof.so")" = 183
check "its npuprof is an aarch64 ELF file" test "$(machine "$tmp/arm/x/npuprof-$version.data/scripts/npuprof")" = 183
echo "test result: $([ "$fail" -eq 0 ] && echo ok || echo FAILED). $pass passed; $fail failed (wheel checks)"

# The existing C tests against the aarch64 wheel's library, under qemu-user (as run-tests' aarch64 section).
QEMU_LD_PREFIX=/usr/aarch64-linux-gnu NPUPROF_QEMU_USER=1 NPUPROF_TEST_LIB="$tmp/arm/x/npuprof/libnpuprof.so" \
  cargo test --target aarch64-unknown-linux-gnu --test c_api --test window
rc=$?
[ "$fail" -eq 0 ] && [ "$rc" -eq 0 ]
