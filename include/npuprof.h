/*
 * npuprof.h — C interface of libnpuprof.so, an in-process profiling shim for Ascend NPU inference runtimes.
 *
 * Load the library with LD_PRELOAD or dlopen. Every function is thread-safe, callable from any thread, in any
 * order, without any prior initialisation call. Configuration comes from the environment, read once on the
 * first call (VLLM_TORCH_PROFILER_DIR, PROFILER_TOKEN_THRESHOLD, PROFILER_STOP_STEP, the four
 * VLLM_TORCH_PROFILER_* booleans and the NPUPROF_* variables; see docs/configuration.md).
 *
 * No function ever aborts or unwinds into the caller: failures are status codes plus one log line on stderr
 * prefixed "[npuprof]".
 *
 * Signals: no npuprof function is async-signal-safe (they may log, allocate or take locks), so do not call
 * them from a signal handler. A SIGTERM/SIGINT handler should only set a flag (a volatile sig_atomic_t);
 * the main loop checks it and calls npuprof_stop() or npuprof_shutdown() from normal code, then exits.
 * As a safety net, a control call (npuprof_start, npuprof_stop, npuprof_step when it starts or stops a
 * profile, npuprof_flush, npuprof_shutdown) made by a handler that interrupted another control call on the
 * same thread returns NPUPROF_ERR_BUSY at once instead of deadlocking, and the interrupted call completes.
 *
 * Exit: a profile still recording when the process calls exit() (or returns from main) is stopped and
 * written; exit() also waits for profiles stopped just before it whose files are still being written. The
 * wait is bounded by NPUPROF_FLUSH_TIMEOUT_S, at most 60 s, and logged in one line; a device library whose
 * stop blocks gets half of it, then the profile is written with its host data. _exit() and fatal
 * signals skip it: `npuprof recover` finishes such a profile from its spool.
 */
#ifndef NPUPROF_H
#define NPUPROF_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Status codes returned by the int-returning functions. The values are fixed. */
enum npuprof_status {
    NPUPROF_OK = 0,                   /* success */
    NPUPROF_ERR_DISABLED = 1,         /* profiling not enabled: VLLM_TORCH_PROFILER_DIR unset or empty */
    NPUPROF_ERR_ALREADY_RUNNING = 2,  /* npuprof_start while a profile is recording */
    NPUPROF_ERR_NOT_RUNNING = 3,      /* npuprof_stop while no profile is recording */
    NPUPROF_ERR_INVALID_ARGUMENT = 4, /* an argument is invalid */
    NPUPROF_ERR_IO = 5,               /* a file or directory could not be created or written */
    NPUPROF_ERR_BACKEND = 6,          /* the device profiling backend failed */
    NPUPROF_ERR_INTERNAL = 7,         /* a caught panic or broken invariant; the host is unaffected */
    NPUPROF_ERR_BUSY = 8              /* a control call re-entered on a thread already inside one (e.g. from a
                                         signal handler that interrupted npuprof_start): refused at once */
};

/* Begins a profile now (the runtime's POST /start_profile): creates a new
 * {VLLM_TORCH_PROFILER_DIR}/{worker}_{YYYYmmddHHMMSSmmm}_ascend_ms directory and starts recording.
 * If the previous profile's device stop is still running, waits for it, at most until
 * NPUPROF_VENDOR_TIMEOUT_S after that stop; if it has not returned by then, fails with NPUPROF_ERR_BACKEND
 * (the device library is never called while a stop of npuprof's own is stuck inside it).
 * Returns NPUPROF_OK, NPUPROF_ERR_DISABLED, NPUPROF_ERR_ALREADY_RUNNING, NPUPROF_ERR_IO or
 * NPUPROF_ERR_BACKEND. */
int npuprof_start(void);

/* The options of one start (npuprof_start_with). Zero means "the environment's value" in every field, so
 *     struct npuprof_start_options o = { sizeof o };  o.num_steps = 10;
 * changes only what you set. NPUPROF_NONE asks for no delay / no limit whatever the environment says.
 * The struct begins with its own size: a library newer than your header reads the fields you know of and
 * takes the environment's value for the rest; a library older than your header accepts a larger struct when
 * the fields it does not know are all zero, and refuses it with NPUPROF_ERR_INVALID_ARGUMENT otherwise. */
#define NPUPROF_NONE UINT64_MAX
struct npuprof_start_options {
    uint32_t size;          /* sizeof(struct npuprof_start_options); 8 .. 4096 */
    uint32_t reserved;      /* 0 */
    uint64_t delay_steps;   /* steps to skip before recording (default NPUPROF_DELAY_STEPS) */
    uint64_t num_steps;     /* recorded steps after which the profile stops itself (NPUPROF_MAX_STEPS) */
    uint64_t max_seconds;   /* seconds of recording after which it stops itself (NPUPROF_MAX_SECONDS) */
    uint64_t at_step;       /* start at this step of the process's count of npuprof_step calls (counted from
                               the first npuprof call with NPUPROF_CONTROL=1, else only while a start waits);
                               a count already past it starts now. Not with a delay. 0: start now */
    const char *output_dir; /* the results root for this profile (default VLLM_TORCH_PROFILER_DIR) */
    const char *tag;        /* 1..64 of [A-Za-z0-9._-], first part of the directory name:
                               {tag}_{worker}_{stamp}_ascend_ms (SGLang's profile_prefix); NULL: none */
};

/* npuprof_start with options; NULL is npuprof_start(). With a delay or an at_step the profile starts at that
 * npuprof_step call (which becomes ProfilerStep#1) and npuprof_is_running() is 0 until then; npuprof_stop
 * cancels a start that still waits. Whichever bound comes first (num_steps, max_seconds, PROFILER_STOP_STEP
 * for the old logic's profile) ends the profile; profiler_metadata.json's stop_reason names it. The time
 * bound is kept by npuprof's background thread, so it holds when no step comes. Returns what npuprof_start
 * returns, or NPUPROF_ERR_INVALID_ARGUMENT (a bad size, tag or value; see npuprof_last_error). */
int npuprof_start_with(const struct npuprof_start_options *options);

/* Ends the running profile (the runtime's POST /stop_profile). Returns at once, whatever the device library
 * does: its stop runs on a background thread, and the result files are written by another (see
 * npuprof_flush). A device stop that has not returned within NPUPROF_VENDOR_TIMEOUT_S (default 60) is
 * abandoned: the profile is written with its host data and profiler_metadata.json names the call. Returns NPUPROF_OK, NPUPROF_ERR_DISABLED or
 * NPUPROF_ERR_NOT_RUNNING. */
int npuprof_stop(void);

/* Call once at the beginning of every scheduler step. While recording, marks the boundary between steps
 * (ProfilerStep#N). With PROFILER_TOKEN_THRESHOLD set (the old logic), the first step with
 * num_scheduled_tokens >= threshold starts a profile (that step is ProfilerStep#1) and the profile stops by
 * itself when the step after PROFILER_STOP_STEP recorded steps begins. When disabled or idle this is a
 * no-op of a few nanoseconds returning NPUPROF_OK. */
int npuprof_step(uint64_t num_scheduled_tokens);

/* 1 while a profile is being recorded, else 0. */
int npuprof_is_running(void);

/* A static, NUL-terminated description of a status code; never NULL, also for unknown values. */
const char *npuprof_strerror(int status);

/* Writes the current or most recent worker directory into buf as a NUL-terminated path, truncated to fit
 * len bytes (never writes past len; buf may be NULL to query). Returns the length of the full path without
 * the NUL, or 0 if no profile was started yet. */
size_t npuprof_output_dir(char *buf, size_t len);

/* Writes the message of the calling thread's last failed npuprof call (the same text as its log line, e.g.
 * "a profile is already recording into <dir>") into buf, NUL-terminated and truncated to fit len bytes.
 * Returns the full length without the NUL, or 0 if no call of this thread has failed. For bindings (the
 * Python package raises it with the status). */
size_t npuprof_last_error(char *buf, size_t len);

/* Interns an annotation name; returns a non-zero id to pass to the calls below, or 0 for NULL or "".
 * Names may be any bytes: non-UTF-8 bytes are written as \xNN, never rejected. Intern each name once and
 * keep the id: this call takes a lock, the annotation calls do not. */
uint32_t npuprof_intern(const char *name);

/* Tells npuprof of a communication group, so results name it as torch_npu's do (profiler_metadata.json's
 * parallel_group_info, read by msprof-analyze's cluster analysis and compare): comm_name is the HCCL
 * communicator's name (torch_npu: the process group's get_hccl_comm_name(rank); it is how the device
 * records name the group), group_name the framework's ("dp", "tp", "pp", "default_group", ...),
 * group_rank this process's rank in the group, global_ranks its n_ranks global ranks (in group order).
 * Call it once per group after creating it; a second call with the same comm_name replaces the first.
 * Takes a lock (not for the hot path). At most 1024 groups of at most 65536 ranks, names of at most 1024
 * bytes. Returns NPUPROF_OK or NPUPROF_ERR_INVALID_ARGUMENT (see npuprof_last_error). Optional: without it
 * the communication files still work, with each rank's global rank as its rank in the group. */
int npuprof_set_group(const char *comm_name, const char *group_name, uint32_t group_rank,
                      const uint32_t *global_ranks, size_t n_ranks);

/* Host annotations on the calling thread: the hot path. No lock, no system call, no allocation (after the
 * first record of a thread); when the thread's buffer is full the event is dropped and counted. No-ops
 * when not recording. An unbalanced pop is counted and ignored; ranges still open at stop are closed at the
 * stop time. Not async-signal-safe: do not call them from a signal handler. */
void npuprof_range_push(uint32_t name_id);
void npuprof_range_pop(void);
void npuprof_mark(uint32_t name_id);

/* Blocks until every stopped profile's files are completely written (at most NPUPROF_FLUSH_TIMEOUT_S,
 * by default long enough for the device steps: NPUPROF_VENDOR_TIMEOUT_S + NPUPROF_MSPROF_TIMEOUT_S + 60 s).
 * The host result is written first; a device backend's data is added after it (profiler_metadata.json says
 * "device_data": "pending" until then), so a flush that gives up still leaves the host result. While a
 * profile records, a flush that returns NPUPROF_OK has put what the calling thread recorded before it in
 * the profile's spool (except records counted as dropped: a full ring, the disk cap), with current drop
 * counts, so `npuprof recover` keeps it if the process is then killed.
 * Returns NPUPROF_OK, or the error of an export that failed since the last flush (NPUPROF_ERR_IO, ...). */
int npuprof_flush(void);

/* Stops the running profile if any, flushes, and ends the background threads. Later calls start things
 * again lazily. Call it from the runtime's shutdown path (not from a signal handler: see the top of this
 * file). Also returns the memory of the per-thread record buffers to the system (they come back on the next
 * profile's first record of each thread). Returns NPUPROF_OK, NPUPROF_ERR_BUSY, or the error of a failed
 * export. */
int npuprof_shutdown(void);

/* The library version, "MAJOR.MINOR.PATCH". */
const char *npuprof_version(void);

#ifdef __cplusplus
}
#endif

#endif /* NPUPROF_H */
