"""npuprof for Python: a thin ctypes binding of libnpuprof.so (no compiler needed).

    import npuprof
    npuprof.start()                      # POST /start_profile
    for batch in scheduler:
        npuprof.step(batch.num_scheduled_tokens)
        with npuprof.range("model_forward"):
            model(batch)
    npuprof.stop()                       # POST /stop_profile; files are written in the background
    npuprof.flush()                      # optional: wait until they are complete

Configuration is the environment, as for the C library (``VLLM_TORCH_PROFILER_DIR`` enables it). The
library is found through ``NPUPROF_LIBRARY``, then next to this package (where the wheel of ``pip install
./python`` puts it), then the loader's search path. If it
is not found, importing still works, the control calls (``start``, ``stop``, ``flush``, ...) raise
:class:`NpuprofError` naming where it looked, and the serving-loop calls (``step``, ``range``, ``mark``) do
nothing, so instrumented code keeps running.
"""

import ctypes
import functools
import os
import threading

__all__ = [
    "NpuprofError", "NONE", "start", "stop", "step", "is_running", "output_dir", "range", "mark", "flush",
    "shutdown", "version", "library_path", "set_group",
    "OK", "ERR_DISABLED", "ERR_ALREADY_RUNNING", "ERR_NOT_RUNNING", "ERR_INVALID_ARGUMENT", "ERR_IO",
    "ERR_BACKEND", "ERR_INTERNAL", "ERR_BUSY",
]

OK = 0
ERR_DISABLED = 1
ERR_ALREADY_RUNNING = 2
ERR_NOT_RUNNING = 3
ERR_INVALID_ARGUMENT = 4
ERR_IO = 5
ERR_BACKEND = 6
ERR_INTERNAL = 7
ERR_BUSY = 8


class NpuprofError(RuntimeError):
    """A failed npuprof call: ``status`` is the C status code, ``name`` its symbolic name
    (``NPUPROF_ERR_...``), and the message is the library's own (the same text as its log line)."""

    def __init__(self, status, name, message):
        super().__init__(f"{name}: {message}" if message else name)
        self.status = status
        self.name = name
        self.message = message


NONE = (1 << 64) - 1  # NPUPROF_NONE: no delay / no bound, whatever the environment says


class _StartOptions(ctypes.Structure):
    """``struct npuprof_start_options`` of include/npuprof.h (zero = the environment's value)."""

    _fields_ = [
        ("size", ctypes.c_uint32),
        ("reserved", ctypes.c_uint32),
        ("delay_steps", ctypes.c_uint64),
        ("num_steps", ctypes.c_uint64),
        ("max_seconds", ctypes.c_uint64),
        ("at_step", ctypes.c_uint64),
        ("output_dir", ctypes.c_char_p),
        ("tag", ctypes.c_char_p),
    ]


def _candidates():
    env = os.environ.get("NPUPROF_LIBRARY")
    if env:
        yield env
    here = os.path.dirname(os.path.abspath(__file__))
    yield os.path.join(here, "libnpuprof.so")
    yield "libnpuprof.so"


def _load():
    tried = []
    for path in _candidates():
        try:
            lib = ctypes.CDLL(path)
        except OSError as e:
            tried.append(f"{path}: {e}")
            continue
        lib.npuprof_start.restype = ctypes.c_int
        lib.npuprof_start_with.argtypes = [ctypes.POINTER(_StartOptions)]
        lib.npuprof_start_with.restype = ctypes.c_int
        lib.npuprof_stop.restype = ctypes.c_int
        lib.npuprof_step.argtypes = [ctypes.c_uint64]
        lib.npuprof_step.restype = ctypes.c_int
        lib.npuprof_is_running.restype = ctypes.c_int
        lib.npuprof_strerror.argtypes = [ctypes.c_int]
        lib.npuprof_strerror.restype = ctypes.c_char_p
        lib.npuprof_output_dir.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
        lib.npuprof_output_dir.restype = ctypes.c_size_t
        lib.npuprof_last_error.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
        lib.npuprof_last_error.restype = ctypes.c_size_t
        lib.npuprof_intern.argtypes = [ctypes.c_char_p]
        lib.npuprof_intern.restype = ctypes.c_uint32
        lib.npuprof_range_push.argtypes = [ctypes.c_uint32]
        lib.npuprof_range_push.restype = None
        lib.npuprof_range_pop.restype = None
        lib.npuprof_mark.argtypes = [ctypes.c_uint32]
        lib.npuprof_mark.restype = None
        lib.npuprof_flush.restype = ctypes.c_int
        lib.npuprof_shutdown.restype = ctypes.c_int
        lib.npuprof_version.restype = ctypes.c_char_p
        lib.npuprof_set_group.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_uint32,
                                          ctypes.POINTER(ctypes.c_uint32), ctypes.c_size_t]
        lib.npuprof_set_group.restype = ctypes.c_int
        return lib, path, None
    return None, None, "libnpuprof.so not found (" + "; ".join(tried) + "); set NPUPROF_LIBRARY"


_lib, _path, _load_error = _load()


def library_path():
    """The path of the loaded library, or None."""
    return _path


def _api():
    if _lib is None:
        raise NpuprofError(ERR_INTERNAL, "NPUPROF_ERR_LIBRARY", _load_error)
    return _lib


def _string_out(fn):
    n = fn(None, 0)
    if n == 0:
        return ""
    buf = ctypes.create_string_buffer(n + 1)
    fn(buf, n + 1)
    return os.fsdecode(buf.value)


def _check(status):
    if status != OK:
        lib = _api()
        name = (lib.npuprof_strerror(status) or b"NPUPROF_ERR_UNKNOWN").decode("utf-8", "replace")
        raise NpuprofError(status, name.split(":")[0], _string_out(lib.npuprof_last_error))


def _bound(name, v):
    """A window bound as the C struct takes it: None -> 0 (the environment's), 0 -> NONE, n -> n."""
    if v is None:
        return 0
    if isinstance(v, bool) or not isinstance(v, int) or v < 0 or v >= NONE:
        raise NpuprofError(ERR_INVALID_ARGUMENT, "NPUPROF_ERR_INVALID_ARGUMENT",
                           f"{name} must be a non-negative integer or None, not {v!r}")
    return NONE if v == 0 else v


def start(num_steps=None, delay_steps=None, max_seconds=None, output_dir=None, tag=None, at_step=None):
    """Begins a profile (POST /start_profile). Every option left at None takes the environment's value
    (NPUPROF_MAX_STEPS, NPUPROF_DELAY_STEPS, NPUPROF_MAX_SECONDS, VLLM_TORCH_PROFILER_DIR); 0 for a bound
    means "none". ``num_steps``: recorded steps after which the profile stops itself; ``delay_steps``: steps
    skipped before recording (the profile then starts at a later ``step()``); ``max_seconds``: wall time
    after which it stops itself, even with no step; ``output_dir``: the results root for this profile;
    ``tag``: the first part of its directory name (letters, digits, ``.``, ``_``, ``-``); ``at_step``: start
    at that step of the process's count (aligns ranks). Raises NpuprofError (e.g. ERR_ALREADY_RUNNING,
    ERR_DISABLED, ERR_INVALID_ARGUMENT, ERR_IO)."""
    if all(v is None for v in (num_steps, delay_steps, max_seconds, output_dir, tag, at_step)):
        _check(_api().npuprof_start())
        return
    o = _StartOptions()
    o.size = ctypes.sizeof(_StartOptions)
    o.delay_steps = _bound("delay_steps", delay_steps)
    o.num_steps = _bound("num_steps", num_steps)
    o.max_seconds = _bound("max_seconds", max_seconds)
    if at_step is not None:
        if isinstance(at_step, bool) or not isinstance(at_step, int) or not 0 < at_step < NONE:
            raise NpuprofError(ERR_INVALID_ARGUMENT, "NPUPROF_ERR_INVALID_ARGUMENT",
                               f"at_step must be a positive integer or None, not {at_step!r}")
        o.at_step = at_step
    o.output_dir = os.fsencode(output_dir) if output_dir is not None else None
    o.tag = str(tag).encode("utf-8", "surrogateescape") if tag is not None else None
    _check(_api().npuprof_start_with(ctypes.byref(o)))


def stop():
    """Ends the running profile; its files are written in the background (see flush)."""
    _check(_api().npuprof_stop())


def step(num_scheduled_tokens=0):
    """One scheduler step with this many scheduled tokens (drives PROFILER_TOKEN_THRESHOLD /
    PROFILER_STOP_STEP; a few nanoseconds when not recording). Called in the serving loop, it never raises,
    like range() and mark(): without the library it does nothing; when the automatic start it triggers
    fails (e.g. an unwritable VLLM_TORCH_PROFILER_DIR) the library logs that once and serving goes on (the
    status is returned, ``OK`` == 0, for callers that want it)."""
    if _lib is None:
        return OK
    try:
        n = min(max(0, int(num_scheduled_tokens)), (1 << 64) - 1)
    except (TypeError, ValueError, OverflowError):
        _warn_once("step", f"npuprof.step: not a token count: {num_scheduled_tokens!r}; counted as 0")
        n = 0
    return _lib.npuprof_step(n)


_warned = set()


def _warn_once(key, msg):
    if key not in _warned:
        _warned.add(key)
        try:
            os.write(2, f"[npuprof] WARN  {msg}\n".encode("utf-8", "replace"))
        except OSError:
            pass


def is_running():
    return _lib is not None and _lib.npuprof_is_running() == 1


def output_dir():
    """The current or most recent worker directory (``*_ascend_ms``), or None."""
    return _string_out(_api().npuprof_output_dir) or None


def flush():
    """Waits until every stopped profile is completely written; raises if an export failed."""
    _check(_api().npuprof_flush())


def shutdown():
    """Stops if running, flushes, and ends the background threads (they start again on the next start)."""
    _check(_api().npuprof_shutdown())


def set_group(comm_name, group_name, group_rank, global_ranks):
    """Tells npuprof of a communication group (written as profiler_metadata.json's parallel_group_info, as
    torch_npu does): the HCCL communicator's name (torch_npu: ``pg._get_backend(torch.device("npu"))
    .get_hccl_comm_name(rank)``), the framework's name for the group ("dp", "tp", ...), this process's rank
    in it and its global ranks. Raises NpuprofError (ERR_INVALID_ARGUMENT) on a bad group."""
    ranks = [int(r) for r in global_ranks]
    arr = (ctypes.c_uint32 * len(ranks))(*ranks)
    enc = lambda s: s if isinstance(s, bytes) else str(s).encode("utf-8", "surrogateescape")
    _check(_api().npuprof_set_group(enc(comm_name), enc(group_name), int(group_rank), arr, len(ranks)))


def version():
    return _api().npuprof_version().decode()


_ids = {}
_ids_lock = threading.Lock()


def _intern(name):
    i = _ids.get(name)
    if i is None:
        b = name if isinstance(name, bytes) else str(name).encode("utf-8", "surrogateescape")
        i = _lib.npuprof_intern(b.replace(b"\0", b"\\0")) if _lib is not None else 0
        with _ids_lock:
            _ids[name] = i
    return i


def mark(name):
    """An instant event on the calling thread (no-op unless recording)."""
    if _lib is not None:
        _lib.npuprof_mark(_intern(name))


class range:  # noqa: A001 (the documented name)
    """A named range on the calling thread, as a context manager or a decorator:

        with npuprof.range("attention"): ...

        @npuprof.range("sample")
        def sample(...): ...
    """

    __slots__ = ("_id",)

    def __init__(self, name):
        self._id = _intern(name)

    def __enter__(self):
        if _lib is not None:
            _lib.npuprof_range_push(self._id)
        return self

    def __exit__(self, *exc):
        if _lib is not None:
            _lib.npuprof_range_pop()
        return False

    def __call__(self, fn):
        rid = self._id

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            if _lib is None:
                return fn(*args, **kwargs)
            _lib.npuprof_range_push(rid)
            try:
                return fn(*args, **kwargs)
            finally:
                _lib.npuprof_range_pop()

        return wrapper
