"""The npuprof wheel: the ctypes package, libnpuprof.so next to it, and the `npuprof` command line on PATH.

Built by setuptools-rust (see pyproject.toml for why): the crate one directory up is built twice, as its
cdylib (installed as npuprof/libnpuprof.so, which `import npuprof` loads without NPUPROF_LIBRARY) and as its
`npuprof` binary (installed as a script). The version is the crate's. The wheel is tagged
`py3-none-manylinux_2_<N>_<arch>`: the library is loaded by ctypes, so one wheel serves every Python 3, and
`N` is the newest glibc symbol version the two ELF files need, read from them after the build (so the tag
is what the files really require, and `auditwheel show` agrees). The build fails, naming the library, if
either file needs a shared library outside the manylinux policy (libc, libm, libpthread, libdl, librt,
libgcc_s, the dynamic loader).

Cross-building for an Ascend server: `CARGO_BUILD_TARGET=aarch64-unknown-linux-gnu` with an aarch64 linker
(`CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc`); see docs/wheel.md.
"""

import os
import re
import struct

from setuptools import setup
from setuptools_rust import Binding, RustBin, RustExtension
from setuptools_rust.build import build_rust

try:
    from setuptools.command.bdist_wheel import bdist_wheel
except ImportError:  # setuptools < 70.1
    from wheel.bdist_wheel import bdist_wheel

HERE = os.path.dirname(os.path.abspath(__file__))
CRATE = os.path.join(HERE, "..", "Cargo.toml")

# What a manylinux policy lets a wheel's ELF files link (auditwheel's lists, without the libraries we never use).
ALLOWED = {"libc.so.6", "libm.so.6", "libpthread.so.0", "libdl.so.2", "librt.so.1", "libgcc_s.so.1",
           "ld-linux-x86-64.so.2", "ld-linux-aarch64.so.1"}
ARCH = {62: "x86_64", 183: "aarch64"}  # ELF e_machine
BUILT = []  # the ELF files the build installed
# The release profile without debug info (stripped by cargo, for any target: setuptools-rust's own strip runs
# the host's `strip`, which cannot read an aarch64 file and is skipped silently), in a target directory of
# its own so that the wheel's profile never invalidates the tests' builds.
ENV = {
    **os.environ,  # setuptools-rust uses this mapping instead of the environment, not on top of it
    "CARGO_PROFILE_RELEASE_DEBUG": "0",
    "CARGO_PROFILE_RELEASE_STRIP": "debuginfo",
    "CARGO_TARGET_DIR": os.environ.get("NPUPROF_WHEEL_TARGET_DIR") or os.path.join(HERE, "..", "target", "wheel"),
}


def crate_version():
    with open(CRATE, encoding="utf-8") as f:
        text = f.read()
    m = re.search(r'^\[package\][^\[]*?^version\s*=\s*"([^"]+)"', text, re.M | re.S)
    if not m:
        raise SystemExit(f"no [package] version in {CRATE}")
    return m.group(1)


def elf_needs(path):
    """(arch, NEEDED libraries, the newest GLIBC_2.N minor) of a 64-bit little-endian ELF file."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise SystemExit(f"{path}: not a 64-bit little-endian ELF file")
    machine = struct.unpack_from("<H", data, 18)[0]
    shoff, = struct.unpack_from("<Q", data, 40)
    shentsize, shnum = struct.unpack_from("<HH", data, 58)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]

    def cstr(sec, off):
        start = sections[sec][4] + off
        return data[start:data.index(b"\0", start)].decode()

    needed, glibc = set(), 17
    for name, typ, _, _, off, size, link, info, _, entsize in sections:
        if typ == 6:  # SHT_DYNAMIC: DT_NEEDED entries name the libraries
            for i in range(0, size, 16):
                tag, val = struct.unpack_from("<qQ", data, off + i)
                if tag == 1:
                    needed.add(cstr(link, val))
        elif typ == 0x6FFFFFFE:  # SHT_GNU_verneed: the symbol versions needed, per library
            pos = off
            for _ in range(info):
                _, cnt, _, aux, nxt = struct.unpack_from("<HHIII", data, pos)
                apos = pos + aux
                for _ in range(cnt):
                    _, _, _, vname, anext = struct.unpack_from("<IHHII", data, apos)
                    m = re.fullmatch(r"GLIBC_2\.(\d+)(?:\.\d+)?", cstr(link, vname))
                    if m:
                        glibc = max(glibc, int(m.group(1)))
                    apos += anext
                pos += nxt
    return ARCH.get(machine), needed, glibc


class BuildRust(build_rust):
    """Installs the cdylib as npuprof/libnpuprof.so (the name the package loads), and remembers both files."""

    def get_dylib_ext_path(self, ext, target_fname):
        path = super().get_dylib_ext_path(ext, target_fname)
        if ext.binding == Binding.NoBinding:
            path = os.path.join(os.path.dirname(path), "libnpuprof.so")
        return path

    def install_extension(self, ext, dylib_paths, build_artifact_dir):
        super().install_extension(ext, dylib_paths, build_artifact_dir)
        for d in dylib_paths:
            BUILT.append(d.path)


class BdistWheel(bdist_wheel):
    """Tags the wheel py3-none-manylinux_2_<N>_<arch> from what its ELF files need."""

    def finalize_options(self):
        super().finalize_options()
        self.root_is_pure = False

    def get_tag(self):
        if not BUILT:
            return super().get_tag()
        archs, newest = set(), 17
        for path in BUILT:
            arch, needed, glibc = elf_needs(path)
            outside = sorted(needed - ALLOWED)
            if outside:
                raise SystemExit(f"{path} links {', '.join(outside)}: not allowed in a manylinux wheel")
            if arch is None:
                raise SystemExit(f"{path}: not an x86_64 or aarch64 ELF file")
            archs.add(arch)
            newest = max(newest, glibc)
        if len(archs) != 1:
            raise SystemExit(f"the wheel's ELF files are for different machines: {sorted(archs)}")
        return "py3", "none", f"manylinux_2_{newest}_{archs.pop()}"


setup(
    version=crate_version(),
    rust_extensions=[
        RustExtension("npuprof.libnpuprof", path=CRATE, binding=Binding.NoBinding, env=ENV),
        RustBin("npuprof", path=CRATE, env=ENV),
    ],
    cmdclass={"build_rust": BuildRust, "bdist_wheel": BdistWheel},
    zip_safe=False,
)
