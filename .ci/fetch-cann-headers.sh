#!/usr/bin/env bash
# .ci/fetch-cann-headers.sh - fetch the AscendCL profiling headers (acl/acl_prof.h,
# acl/acl_base.h and everything they #include "...") from the torch-npu wheel
# on PyPI, and place them under DEST with the include-root layout preserved
# (DEST/acl/acl_prof.h, DEST/acl/acl_base.h, DEST/acl/error_codes/..., and for
# older wheels DEST/ge/ge_error_codes.h). Compile with: -I DEST
#
# The project's own copy: .ci/run fetches into target/cann-headers with it, and NPUPROF_CANN_INCLUDE points
# the bindings check (run-tests' "bindings" section, build.rs's regenerate-bindings feature) there. Only a
# package registry is used (PyPI, through pip), and the default wheel is pinned by version and sha256.
#
# Usage: .ci/fetch-cann-headers.sh DEST
#
# Environment overrides (all optional):
#   TORCH_NPU_VERSION  wheel version to fetch            (default 2.14.0)
#   WHEEL_PYTHON       --python-version given to pip      (default 3.11)
#   WHEEL_PLATFORM     --platform given to pip            (default manylinux_2_28_x86_64)
#   WHEEL_SHA256       expected sha256 of the wheel; defaults to the verified
#                      value for the default version/python/platform, empty
#                      (no check) otherwise
#   PYTHON             python interpreter that has pip    (default python3)
#   WHEEL_FILE         use this already-downloaded wheel instead of pip
#
# MSPTI (mspti*.h) and mstx (ms_tools_ext.h) headers are NOT on any package
# registry: the tests check npuprof's MSPTI layouts against tests/c/layouts/ instead.
#
# Exit status: 0 on success, non-zero (with a message on stderr) on failure.

set -euo pipefail

die() { echo "fetch-cann-headers: error: $*" >&2; exit 1; }

DEFAULT_VERSION="2.14.0"
DEFAULT_PY="3.11"
DEFAULT_PLAT="manylinux_2_28_x86_64"
# sha256 of torch_npu-2.14.0-cp311-cp311-manylinux_2_28_x86_64.whl (verified 2026)
DEFAULT_SHA256="7736f7d82cf9f16c7dfc4537f7e7c638153da760273a193455e70857f912189e"

[[ $# -eq 1 ]] || die "usage: $0 DEST   (see header of this script for env overrides)"
DEST=$1
VERSION=${TORCH_NPU_VERSION:-$DEFAULT_VERSION}
PYVER=${WHEEL_PYTHON:-$DEFAULT_PY}
PLAT=${WHEEL_PLATFORM:-$DEFAULT_PLAT}
PY=${PYTHON:-python3}
if [[ -z ${WHEEL_SHA256+x} ]]; then
    if [[ $VERSION == "$DEFAULT_VERSION" && $PYVER == "$DEFAULT_PY" && $PLAT == "$DEFAULT_PLAT" && -z ${WHEEL_FILE:-} ]]; then
        WHEEL_SHA256=$DEFAULT_SHA256
    else
        WHEEL_SHA256=""
    fi
fi

command -v "$PY" >/dev/null 2>&1 || die "python interpreter '$PY' not found (set PYTHON=...)"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/fetch-cann-headers.XXXXXX") || die "mktemp failed"
trap 'rm -rf "$WORK"' EXIT

# ---------------------------------------------------------------- download
if [[ -n ${WHEEL_FILE:-} ]]; then
    [[ -f $WHEEL_FILE ]] || die "WHEEL_FILE '$WHEEL_FILE' does not exist"
    WHL=$WHEEL_FILE
else
    "$PY" -m pip --version >/dev/null 2>&1 || die "'$PY -m pip' is not available"
    echo "fetch-cann-headers: downloading torch-npu==$VERSION (python $PYVER, $PLAT) ..." >&2
    if ! "$PY" -m pip download --no-deps --only-binary=:all: \
            --python-version "$PYVER" --platform "$PLAT" \
            -d "$WORK/whl" "torch-npu==$VERSION" >"$WORK/pip.log" 2>&1; then
        tail -n 20 "$WORK/pip.log" >&2
        die "pip download of torch-npu==$VERSION failed (network? version/platform exists?)"
    fi
    shopt -s nullglob
    wheels=("$WORK"/whl/torch_npu-*.whl)
    shopt -u nullglob
    [[ ${#wheels[@]} -eq 1 ]] || die "expected exactly one torch_npu wheel, found ${#wheels[@]}"
    WHL=${wheels[0]}
fi

if [[ -n $WHEEL_SHA256 ]]; then
    got=$("$PY" -c 'import hashlib,sys;print(hashlib.sha256(open(sys.argv[1],"rb").read()).hexdigest())' "$WHL")
    [[ $got == "$WHEEL_SHA256" ]] || die "sha256 mismatch for $(basename "$WHL"): got $got, expected $WHEEL_SHA256"
fi

# --------------------------------------------------------- locate + extract
# A small python helper does the zip work (pip implies python is present) and
# resolves #include "..." recursively. Quoted includes are looked up relative
# to the including file first, then relative to the include root; <...>
# includes are ignored (system headers).
mkdir -p "$DEST" || die "cannot create DEST '$DEST'"
"$PY" - "$WHL" "$DEST" <<'PYEOF' || die "header extraction failed (see message above)"
import os, posixpath, re, sys, zipfile

whl, dest = sys.argv[1], sys.argv[2]
zf = zipfile.ZipFile(whl)
names = set(zf.namelist())
roots = ["torch_npu/include/", "torch_npu/include/third_party/acl/inc/"]
root = next((r for r in roots if r + "acl/acl_prof.h" in names), None)
if root is None:
    sys.exit("no acl/acl_prof.h in %s (looked under %s)" % (os.path.basename(whl), ", ".join(roots)))

inc_re = re.compile(r'^\s*#\s*include\s*"([^"]+)"', re.M)
todo, done, missing = ["acl/acl_prof.h", "acl/acl_base.h"], [], []
while todo:
    rel = todo.pop(0)
    if rel in done:
        continue
    member = root + rel
    if member not in names:
        missing.append(rel)
        continue
    data = zf.read(member)
    out = os.path.join(dest, *rel.split("/"))
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "wb") as f:
        f.write(data)
    done.append(rel)
    for inc in inc_re.findall(data.decode("utf-8", "replace")):
        cands = [posixpath.normpath(posixpath.join(posixpath.dirname(rel), inc)),
                 posixpath.normpath(inc)]
        hit = next((c for c in cands if not c.startswith("..") and root + c in names), None)
        if hit is None:
            missing.append("%s (included from %s)" % (inc, rel))
        elif hit not in done:
            todo.append(hit)

print("fetch-cann-headers: wheel %s, include root %s" % (os.path.basename(whl), root))
for rel in done:
    print("  extracted %s" % os.path.join(dest, *rel.split("/")))
if missing:
    sys.exit("unresolved includes: " + "; ".join(missing))
PYEOF

# ------------------------------------------------------------- sanity check
for h in acl/acl_prof.h acl/acl_base.h; do
    [[ -s $DEST/$h ]] || die "$DEST/$h missing after extraction"
done
grep -q 'aclprofInit' "$DEST/acl/acl_prof.h" || die "$DEST/acl/acl_prof.h does not declare aclprofInit"
if command -v cc >/dev/null 2>&1; then
    printf '#include "acl/acl_prof.h"\nint main(void){return ACL_SUCCESS;}\n' \
        | cc -fsyntax-only -x c -I "$DEST" - 2>"$WORK/cc.log" \
        || { cat "$WORK/cc.log" >&2; die "extracted headers do not compile with 'cc -I $DEST'"; }
    echo "fetch-cann-headers: syntax check OK (cc -I $DEST, #include \"acl/acl_prof.h\")"
fi
echo "fetch-cann-headers: done ($(basename "$WHL"))"
