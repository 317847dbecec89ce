/* Fake libmspti.so: the MSPTI activity/callback API of CANN, without a device.
 *
 * Test fake for npuprof's MSPTI backend. It exports the MSPTI entry points with exactly the signatures of
 * the real library (docs/ascend-api.md §3.3), writes activity records with the exact packed
 * layouts of §3.4, runs the buffer protocol and threading of §3.5 (request on the recording thread,
 * retire at >= 80 %, one new completion thread per retired buffer, synchronous FlushAll) and returns the
 * codes of §3.1 for the misuse rules of §3.5/§3.6. Where the reference describes the implementation and
 * the header comment differently, the implementation is what is emulated (GetNextRecord's thread-local
 * cursor, the process-global external-correlation stacks, Pop(NULL) → INVALID_PARAMETER).
 *
 * Device work is emulated by the test-only exports fake_mspti_launch / _hccl / _memory / _memcpy /
 * _memset / _marker, which produce records from the calling thread "as MSPTI does" (§3.5: the request
 * callback runs on whichever thread produces the record). See the section "Test-only exports".
 *
 * Environment (read at each call, so a test may setenv between calls):
 *   LD_PRELOAD                   must contain "libmspti.so" to enable kinds 4..7 and the callback API
 *                                (§3.6, MS HEAD; the real library caches the value at first use)
 *   FAKE_MSPTI_OLD               1: an older library that never returns MSPTI_ERROR_WITHOUT_LD_PRELOAD (6)
 *   FAKE_MSPTI_OTHER_SUBSCRIBER  1: the first msptiSubscribe of the process fails with 2 (torch_npu holds
 *                                the subscription, §3.8); always: every msptiSubscribe fails with 2
 *   FAKE_MSPTI_DEVICE            device id in kernel/HCCL/communication/memory records (default 0)
 *   FAKE_MSPTI_MALFORMED         n > 0: every n-th record written is corrupted, its kind set alternately
 *                                to 77 and to 0 (size unchanged), so a walker meets unknown kinds
 *   FAKE_MSPTI_STALL_MS          ms: each completion thread sleeps that long before calling complete
 *   FAKE_MSPTI_LOG               path: append one line per API call (see log_line()) and an exit line
 *   FAKE_MSPTI_HANG              func=seconds|forever[,...]: that call blocks its caller first (see
 *                                fake_hang.h; "forever" ends at fake_mspti_release()), e.g.
 *                                msptiActivityFlushAll=forever
 *   FAKE_MSPTI_LOG_RECORDS       1: also log successful msptiActivityGetNextRecord calls (default: only
 *                                the non-SUCCESS ones, i.e. one MAX_LIMIT line per walked buffer)
 * Adversarial modes (off by default; a misbehaving library, for npuprof's hardening tests; each misdeed is
 * counted, see fake_mspti_misdeeds()):
 *   FAKE_MSPTI_COMPLETE          twice: every buffer is completed twice; stale: after each delivery the
 *                                buffer delivered before it is completed again (the client took it back)
 *   FAKE_MSPTI_BAD_NAMES         n > 0: every n-th kernel's name is alternately a dangling pointer (an
 *                                inaccessible page) and a string without NUL running into that page
 *   FAKE_MSPTI_BAD_TIMES         n > 0: every n-th kernel alternately starts near UINT64_MAX and lasts 2^62 ns
 *   FAKE_MSPTI_REGISTER_FAIL     1: the first msptiActivityRegisterCallbacks fails with MSPTI_ERROR_INNER
 *   FAKE_MSPTI_ENABLE_FAIL       k: msptiActivityEnable(k) fails with MSPTI_ERROR_INNER
 *   FAKE_MSPTI_FORK_COMPLETE     1: a pthread_atfork prepare handler of the fake (registered at load, so it
 *                                runs after the handlers of a library that registers later) completes the
 *                                current buffer on the forking thread
 *   FAKE_MSPTI_LATE              n > 0: the first msptiActivityFlushAll also fills a buffer with n kernels
 *                                (timestamped then) and keeps it; fake_mspti_deliver_late() completes it
 * Test-only load: fake_mspti_churn() starts 4 threads that launch kernels and calls FlushAll without pause
 * (buffers completed continuously) until fake_mspti_churn_stop(); fake_mspti_churn_pause()/_resume() hold them.
 *
 * Locks (taken in this order, never the other way round):
 *   g_mu      API state: subscriber, callback bitmaps, marker domains
 *   g_ext_mu  external-correlation stacks (never held while recording)
 *   g_misc_mu interned strings, stream timelines, fake device addresses (never held while recording)
 *   g_buf_mu  the current buffer (MSPTI's recursive buf_mtx_); held while calling request, and while
 *             FlushAll delivers the current buffer
 *   g_q_mu    retired-buffer queue, manager thread, completion threads (MSPTI's cv_mtx_)
 *   g_tally_mu the test-only tallies per buffer size (a leaf: nothing is taken or called under it)
 * Activity switches, callbacks, counters are atomics.
 *
 * Build: cc -std=gnu99 -Wall -Wextra -Werror -O1 -shared -fPIC -o DIR/libmspti.so tests/c/fake_mspti.c \
 *        -Wl,-soname,libmspti.so -lpthread
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------------------------------------
 * Own declarations of the public MSPTI types (ascend-api.md §3.1–§3.4). No MSPTI header is used.
 * ---------------------------------------------------------------------------------------------- */

/* §3.1 */
typedef enum {
    MSPTI_SUCCESS = 0,
    MSPTI_ERROR_INVALID_PARAMETER = 1,
    MSPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED = 2,
    MSPTI_ERROR_MAX_LIMIT_REACHED = 3,
    MSPTI_ERROR_DEVICE_OFFLINE = 4,
    MSPTI_ERROR_QUEUE_EMPTY = 5,
    MSPTI_ERROR_WITHOUT_LD_PRELOAD = 6,
    MSPTI_ERROR_INNER = 999,
    MSPTI_ERROR_FORCE_INT = 0x7fffffff
} msptiResult;

/* §3.2 */
typedef enum {
    MSPTI_ACTIVITY_KIND_INVALID = 0,
    MSPTI_ACTIVITY_KIND_MARKER = 1,
    MSPTI_ACTIVITY_KIND_KERNEL = 2,
    MSPTI_ACTIVITY_KIND_API = 3,
    MSPTI_ACTIVITY_KIND_HCCL = 4,
    MSPTI_ACTIVITY_KIND_MEMORY = 5,
    MSPTI_ACTIVITY_KIND_MEMSET = 6,
    MSPTI_ACTIVITY_KIND_MEMCPY = 7,
    MSPTI_ACTIVITY_KIND_EXTERNAL_CORRELATION = 8,
    MSPTI_ACTIVITY_KIND_COMMUNICATION = 9,
    MSPTI_ACTIVITY_KIND_ACL_API = 10,
    MSPTI_ACTIVITY_KIND_NODE_API = 11,
    MSPTI_ACTIVITY_KIND_RUNTIME_API = 12,
    MSPTI_ACTIVITY_KIND_COUNT,
    MSPTI_ACTIVITY_KIND_FORCE_INT = 0x7fffffff
} msptiActivityKind;

typedef enum { MSPTI_ACTIVITY_SOURCE_KIND_HOST = 0, MSPTI_ACTIVITY_SOURCE_KIND_DEVICE = 1 } msptiActivitySourceKind;

typedef enum {
    MSPTI_ACTIVITY_FLAG_NONE = 0,
    MSPTI_ACTIVITY_FLAG_MARKER_INSTANTANEOUS = 1 << 0,
    MSPTI_ACTIVITY_FLAG_MARKER_START = 1 << 1,
    MSPTI_ACTIVITY_FLAG_MARKER_END = 1 << 2,
    MSPTI_ACTIVITY_FLAG_MARKER_INSTANTANEOUS_WITH_DEVICE = 1 << 3,
    MSPTI_ACTIVITY_FLAG_MARKER_START_WITH_DEVICE = 1 << 4,
    MSPTI_ACTIVITY_FLAG_MARKER_END_WITH_DEVICE = 1 << 5
} msptiActivityFlag;

typedef enum { MSPTI_ACTIVITY_MEMORY_OPERATION_TYPE_ALLOCATION = 0, MSPTI_ACTIVITY_MEMORY_OPERATION_TYPE_RELEASE = 1 }
    msptiActivityMemoryOperationType;
typedef enum { MSPTI_ACTIVITY_MEMORY_UNKNOWN = 0, MSPTI_ACTIVITY_MEMORY_DEVICE = 1 } msptiActivityMemoryKind;
typedef enum {
    MSPTI_ACTIVITY_MEMCPY_KIND_UNKNOWN = 0,
    MSPTI_ACTIVITY_MEMCPY_KIND_HTOH = 1,
    MSPTI_ACTIVITY_MEMCPY_KIND_HTOD = 2,
    MSPTI_ACTIVITY_MEMCPY_KIND_DTOH = 3,
    MSPTI_ACTIVITY_MEMCPY_KIND_DTOD = 4,
    MSPTI_ACTIVITY_MEMCPY_KIND_DEFAULT = 5
} msptiActivityMemcpyKind;
typedef enum {
    MSPTI_EXTERNAL_CORRELATION_KIND_INVALID = 0,
    MSPTI_EXTERNAL_CORRELATION_KIND_UNKNOWN = 1,
    MSPTI_EXTERNAL_CORRELATION_KIND_CUSTOM0 = 2,
    MSPTI_EXTERNAL_CORRELATION_KIND_CUSTOM1 = 3,
    MSPTI_EXTERNAL_CORRELATION_KIND_CUSTOM2 = 4,
    MSPTI_EXTERNAL_CORRELATION_KIND_SIZE = 5,
    MSPTI_EXTERNAL_CORRELATION_KIND_FORCE_INT = 0x7fffffff
} msptiExternalCorrelationKind;
typedef enum { MSPTI_ACTIVITY_COMMUNICATION_FP16 = 3, MSPTI_ACTIVITY_COMMUNICATION_INVALID_TYPE = 0xFFFF }
    msptiCommunicationDataType; /* only the values the fake writes */

#define MSPTI_INVALID_STREAM_ID 0xFFFFFFFFu

/* Callback side (§3.2) */
typedef enum {
    MSPTI_CB_DOMAIN_INVALID = 0,
    MSPTI_CB_DOMAIN_RUNTIME = 1,
    MSPTI_CB_DOMAIN_HCCL = 2,
    MSPTI_CB_DOMAIN_SIZE = 3,
    MSPTI_CB_DOMAIN_FORCE_INT = 0x7fffffff
} msptiCallbackDomain;
typedef enum { MSPTI_API_ENTER = 0, MSPTI_API_EXIT = 1, MSPTI_API_CBSITE_FORCE_INT = 0x7fffffff } msptiApiCallbackSite;
typedef uint32_t msptiCallbackId;
#define MSPTI_CBID_RUNTIME_LAUNCH 10u
#define MSPTI_CBID_RUNTIME_MALLOC 15u
#define MSPTI_CBID_RUNTIME_FREE 16u
#define MSPTI_CBID_RUNTIME_MEMCPY 22u
#define MSPTI_CBID_RUNTIME_MEM_SET 27u
#define MSPTI_CBID_RUNTIME_SIZE 37u
#define MSPTI_CBID_HCCL_ALLREDUCE 1u
#define MSPTI_CBID_HCCL_SIZE 13u

/* §3.4 "Not packed: msptiCallbackData (natural layout, 72 bytes)" */
typedef struct {
    msptiApiCallbackSite callbackSite;
    const char *functionName;
    const void *functionParams;
    const void *functionReturnValue;
    const char *symbolName;
    uint64_t correlationId;
    uint64_t reserved1;
    uint64_t reserved2;
    uint64_t *correlationData;
} msptiCallbackData;

/* §3.3 */
typedef struct msptiSubscriber_st *msptiSubscriberHandle;
typedef void (*msptiCallbackFunc)(void *userdata, msptiCallbackDomain domain, msptiCallbackId cbid,
                                  const msptiCallbackData *cbdata);
typedef void (*msptiBuffersCallbackRequestFunc)(uint8_t **buffer, size_t *size, size_t *maxNumRecords);
typedef void (*msptiBuffersCallbackCompleteFunc)(uint8_t *buffer, size_t size, size_t validSize);

/* §3.4: every record struct is PACKED_ALIGNMENT — no padding between fields, size rounded up to 8. */
#define PACKED_ALIGNMENT __attribute__((packed, aligned(8)))

typedef struct PACKED_ALIGNMENT {
    msptiActivityKind kind;
} msptiActivity;

typedef union PACKED_ALIGNMENT {
    struct {
        uint32_t processId;
        uint32_t threadId;
    } pt;
    struct {
        uint32_t deviceId;
        uint32_t streamId;
    } ds;
} msptiObjectId;

/* §3.4: "gcc even warns that objectId at 28 is unaligned" — that IS the real layout, so the warning is
 * silenced for this one struct. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpacked-not-aligned"
typedef struct PACKED_ALIGNMENT {
    msptiActivityKind kind;
    msptiActivityFlag flag;
    msptiActivitySourceKind sourceKind;
    uint64_t timestamp;
    uint64_t id;
    msptiObjectId objectId;
    const char *name;
    const char *domain;
} msptiActivityMarker;
#pragma GCC diagnostic pop

typedef struct PACKED_ALIGNMENT {
    msptiActivityKind kind;
    uint64_t start;
    uint64_t end;
    struct {
        uint32_t processId;
        uint32_t threadId;
    } pt;
    uint64_t correlationId;
    const char *name;
} msptiActivityApi;

typedef struct PACKED_ALIGNMENT {
    msptiActivityKind kind;
    uint64_t start;
    uint64_t end;
    struct {
        uint32_t deviceId;
        uint32_t streamId;
    } ds;
    uint64_t correlationId;
    const char *type;
    const char *name;
} msptiActivityKernel;

typedef struct PACKED_ALIGNMENT {
    msptiActivityKind kind;
    uint64_t start;
    uint64_t end;
    struct {
        uint32_t deviceId;
        uint32_t streamId;
    } ds;
    double bandWidth;
    const char *name;
    const char *commName;
} msptiActivityHccl;

typedef struct PACKED_ALIGNMENT {
    msptiActivityKind kind;
    msptiActivityMemoryOperationType memoryOperationType;
    msptiActivityMemoryKind memoryKind;
    uint64_t correlationId;
    uint64_t start;
    uint64_t end;
    uint64_t address;
    uint64_t bytes;
    uint32_t processId;
    uint32_t deviceId;
    uint32_t streamId;
} msptiActivityMemory;

typedef struct PACKED_ALIGNMENT {
    msptiActivityKind kind;
    uint32_t value;
    uint64_t bytes;
    uint64_t start;
    uint64_t end;
    uint32_t deviceId;
    uint32_t streamId;
    uint64_t correlationId;
    uint8_t isAsync;
} msptiActivityMemset;

typedef struct PACKED_ALIGNMENT {
    msptiActivityKind kind;
    msptiActivityMemcpyKind copyKind;
    uint64_t bytes;
    uint64_t start;
    uint64_t end;
    uint32_t deviceId;
    uint32_t streamId;
    uint64_t correlationId;
    uint8_t isAsync;
} msptiActivityMemcpy;

typedef struct PACKED_ALIGNMENT {
    msptiActivityKind kind;
    msptiExternalCorrelationKind externalKind;
    uint64_t externalId;
    uint64_t correlationId;
} msptiActivityExternalCorrelation;

typedef struct PACKED_ALIGNMENT {
    msptiActivityKind kind;
    msptiCommunicationDataType dataType;
    uint64_t count;
    struct {
        uint32_t deviceId;
        uint32_t streamId;
    } ds;
    uint64_t start;
    uint64_t end;
    const char *algType;
    const char *name;
    const char *commName;
    uint64_t correlationId;
} msptiActivityCommunication;

/* §3.2: all enums are 4 bytes; §3.4: every size and every offset listed there. */
_Static_assert(sizeof(msptiResult) == 4 && sizeof(msptiActivityKind) == 4 && sizeof(msptiActivityFlag) == 4 &&
                   sizeof(msptiActivitySourceKind) == 4 && sizeof(msptiCallbackDomain) == 4 &&
                   sizeof(msptiExternalCorrelationKind) == 4 && sizeof(msptiCommunicationDataType) == 4,
               "§3.2 enums are 4 bytes");
_Static_assert(sizeof(msptiActivity) == 8, "§3.4 msptiActivity = {kind}, size 8");
_Static_assert(sizeof(msptiObjectId) == 8, "§3.4 msptiObjectId size 8");

_Static_assert(sizeof(msptiActivityMarker) == 56, "§3.4 Marker 56");
_Static_assert(_Alignof(msptiActivityMarker) == 8, "§3.4 struct alignment 8");
_Static_assert(offsetof(msptiActivityMarker, kind) == 0, "Marker.kind @0");
_Static_assert(offsetof(msptiActivityMarker, flag) == 4, "Marker.flag @4");
_Static_assert(offsetof(msptiActivityMarker, sourceKind) == 8, "Marker.sourceKind @8");
_Static_assert(offsetof(msptiActivityMarker, timestamp) == 12, "Marker.timestamp @12");
_Static_assert(offsetof(msptiActivityMarker, id) == 20, "Marker.id @20");
_Static_assert(offsetof(msptiActivityMarker, objectId) == 28, "Marker.objectId @28");
_Static_assert(offsetof(msptiActivityMarker, name) == 36, "Marker.name @36");
_Static_assert(offsetof(msptiActivityMarker, domain) == 44, "Marker.domain @44");

_Static_assert(sizeof(msptiActivityApi) == 48, "§3.4 Api 48");
_Static_assert(offsetof(msptiActivityApi, kind) == 0, "Api.kind @0");
_Static_assert(offsetof(msptiActivityApi, start) == 4, "Api.start @4");
_Static_assert(offsetof(msptiActivityApi, end) == 12, "Api.end @12");
_Static_assert(offsetof(msptiActivityApi, pt.processId) == 20, "Api.pt.processId @20");
_Static_assert(offsetof(msptiActivityApi, pt.threadId) == 24, "Api.pt.threadId @24");
_Static_assert(offsetof(msptiActivityApi, correlationId) == 28, "Api.correlationId @28");
_Static_assert(offsetof(msptiActivityApi, name) == 36, "Api.name @36");

_Static_assert(sizeof(msptiActivityKernel) == 56, "§3.4 Kernel 56");
_Static_assert(offsetof(msptiActivityKernel, kind) == 0, "Kernel.kind @0");
_Static_assert(offsetof(msptiActivityKernel, start) == 4, "Kernel.start @4");
_Static_assert(offsetof(msptiActivityKernel, end) == 12, "Kernel.end @12");
_Static_assert(offsetof(msptiActivityKernel, ds.deviceId) == 20, "Kernel.ds.deviceId @20");
_Static_assert(offsetof(msptiActivityKernel, ds.streamId) == 24, "Kernel.ds.streamId @24");
_Static_assert(offsetof(msptiActivityKernel, correlationId) == 28, "Kernel.correlationId @28");
_Static_assert(offsetof(msptiActivityKernel, type) == 36, "Kernel.type @36");
_Static_assert(offsetof(msptiActivityKernel, name) == 44, "Kernel.name @44");

_Static_assert(sizeof(msptiActivityHccl) == 56, "§3.4 Hccl 56");
_Static_assert(offsetof(msptiActivityHccl, kind) == 0, "Hccl.kind @0");
_Static_assert(offsetof(msptiActivityHccl, start) == 4, "Hccl.start @4");
_Static_assert(offsetof(msptiActivityHccl, end) == 12, "Hccl.end @12");
_Static_assert(offsetof(msptiActivityHccl, ds.deviceId) == 20, "Hccl.ds.deviceId @20");
_Static_assert(offsetof(msptiActivityHccl, ds.streamId) == 24, "Hccl.ds.streamId @24");
_Static_assert(offsetof(msptiActivityHccl, bandWidth) == 28, "Hccl.bandWidth @28");
_Static_assert(offsetof(msptiActivityHccl, name) == 36, "Hccl.name @36");
_Static_assert(offsetof(msptiActivityHccl, commName) == 44, "Hccl.commName @44");

_Static_assert(sizeof(msptiActivityMemory) == 64, "§3.4 Memory 64");
_Static_assert(offsetof(msptiActivityMemory, kind) == 0, "Memory.kind @0");
_Static_assert(offsetof(msptiActivityMemory, memoryOperationType) == 4, "Memory.memoryOperationType @4");
_Static_assert(offsetof(msptiActivityMemory, memoryKind) == 8, "Memory.memoryKind @8");
_Static_assert(offsetof(msptiActivityMemory, correlationId) == 12, "Memory.correlationId @12");
_Static_assert(offsetof(msptiActivityMemory, start) == 20, "Memory.start @20");
_Static_assert(offsetof(msptiActivityMemory, end) == 28, "Memory.end @28");
_Static_assert(offsetof(msptiActivityMemory, address) == 36, "Memory.address @36");
_Static_assert(offsetof(msptiActivityMemory, bytes) == 44, "Memory.bytes @44");
_Static_assert(offsetof(msptiActivityMemory, processId) == 52, "Memory.processId @52");
_Static_assert(offsetof(msptiActivityMemory, deviceId) == 56, "Memory.deviceId @56");
_Static_assert(offsetof(msptiActivityMemory, streamId) == 60, "Memory.streamId @60");

_Static_assert(sizeof(msptiActivityMemset) == 56, "§3.4 Memset 56");
_Static_assert(offsetof(msptiActivityMemset, kind) == 0, "Memset.kind @0");
_Static_assert(offsetof(msptiActivityMemset, value) == 4, "Memset.value @4");
_Static_assert(offsetof(msptiActivityMemset, bytes) == 8, "Memset.bytes @8");
_Static_assert(offsetof(msptiActivityMemset, start) == 16, "Memset.start @16");
_Static_assert(offsetof(msptiActivityMemset, end) == 24, "Memset.end @24");
_Static_assert(offsetof(msptiActivityMemset, deviceId) == 32, "Memset.deviceId @32");
_Static_assert(offsetof(msptiActivityMemset, streamId) == 36, "Memset.streamId @36");
_Static_assert(offsetof(msptiActivityMemset, correlationId) == 40, "Memset.correlationId @40");
_Static_assert(offsetof(msptiActivityMemset, isAsync) == 48, "Memset.isAsync @48");

_Static_assert(sizeof(msptiActivityMemcpy) == 56, "§3.4 Memcpy 56");
_Static_assert(offsetof(msptiActivityMemcpy, kind) == 0, "Memcpy.kind @0");
_Static_assert(offsetof(msptiActivityMemcpy, copyKind) == 4, "Memcpy.copyKind @4");
_Static_assert(offsetof(msptiActivityMemcpy, bytes) == 8, "Memcpy.bytes @8");
_Static_assert(offsetof(msptiActivityMemcpy, start) == 16, "Memcpy.start @16");
_Static_assert(offsetof(msptiActivityMemcpy, end) == 24, "Memcpy.end @24");
_Static_assert(offsetof(msptiActivityMemcpy, deviceId) == 32, "Memcpy.deviceId @32");
_Static_assert(offsetof(msptiActivityMemcpy, streamId) == 36, "Memcpy.streamId @36");
_Static_assert(offsetof(msptiActivityMemcpy, correlationId) == 40, "Memcpy.correlationId @40");
_Static_assert(offsetof(msptiActivityMemcpy, isAsync) == 48, "Memcpy.isAsync @48");

_Static_assert(sizeof(msptiActivityExternalCorrelation) == 24, "§3.4 ExternalCorrelation 24");
_Static_assert(offsetof(msptiActivityExternalCorrelation, kind) == 0, "ExternalCorrelation.kind @0");
_Static_assert(offsetof(msptiActivityExternalCorrelation, externalKind) == 4, "ExternalCorrelation.externalKind @4");
_Static_assert(offsetof(msptiActivityExternalCorrelation, externalId) == 8, "ExternalCorrelation.externalId @8");
_Static_assert(offsetof(msptiActivityExternalCorrelation, correlationId) == 16, "ExternalCorrelation.correlationId @16");

_Static_assert(sizeof(msptiActivityCommunication) == 72, "§3.4 Communication 72");
_Static_assert(offsetof(msptiActivityCommunication, kind) == 0, "Communication.kind @0");
_Static_assert(offsetof(msptiActivityCommunication, dataType) == 4, "Communication.dataType @4");
_Static_assert(offsetof(msptiActivityCommunication, count) == 8, "Communication.count @8");
_Static_assert(offsetof(msptiActivityCommunication, ds.deviceId) == 16, "Communication.ds.deviceId @16");
_Static_assert(offsetof(msptiActivityCommunication, ds.streamId) == 20, "Communication.ds.streamId @20");
_Static_assert(offsetof(msptiActivityCommunication, start) == 24, "Communication.start @24");
_Static_assert(offsetof(msptiActivityCommunication, end) == 32, "Communication.end @32");
_Static_assert(offsetof(msptiActivityCommunication, algType) == 40, "Communication.algType @40");
_Static_assert(offsetof(msptiActivityCommunication, name) == 48, "Communication.name @48");
_Static_assert(offsetof(msptiActivityCommunication, commName) == 56, "Communication.commName @56");
_Static_assert(offsetof(msptiActivityCommunication, correlationId) == 64, "Communication.correlationId @64");

_Static_assert(sizeof(msptiCallbackData) == 72, "§3.4 msptiCallbackData natural layout, 72 bytes");
_Static_assert(offsetof(msptiCallbackData, functionName) == 8, "msptiCallbackData.functionName @8");
_Static_assert(offsetof(msptiCallbackData, correlationId) == 40, "msptiCallbackData.correlationId @40");
_Static_assert(offsetof(msptiCallbackData, correlationData) == 64, "msptiCallbackData.correlationData @64");

#define API __attribute__((visibility("default")))

/* ------------------------------------------------------------------------------------------------
 * Constants
 * ---------------------------------------------------------------------------------------------- */

#define KIND_MIN 1
#define KIND_MAX 12             /* §3.6: Enable/Disable accept kinds 1..12 */
#define DEFAULT_FLUSH_MS 60000u /* §3.5: default manager wait (MS config.h) */
#define MAX_NAME 255            /* marker-domain name limit (§4.1, MSPTI: 255 bytes) */
#define EXT_KINDS 5             /* msptiExternalCorrelationKind: valid 1..4 */
#define EXT_DEPTH 1024          /* per-kind stack depth of the fake */
#define MAX_STREAMS 4096
#define MAX_ALLOCS 4096
#define MAX_DOMAINS 64
#define INTERN_BUCKETS 1024
#define SUB_MAGIC 0x53554221u /* "SUB!" */
#define CORRUPT_KIND 77u      /* FAKE_MSPTI_MALFORMED */

/* §3.5 "Size table used to step": 1→56, 2→56, 3→48, 4→56, 5→64, 6→56, 7→56, 8→24, 9→72, 10/11/12→48. */
static const size_t k_record_size[KIND_MAX + 1] = {
    0,
    sizeof(msptiActivityMarker),
    sizeof(msptiActivityKernel),
    sizeof(msptiActivityApi),
    sizeof(msptiActivityHccl),
    sizeof(msptiActivityMemory),
    sizeof(msptiActivityMemset),
    sizeof(msptiActivityMemcpy),
    sizeof(msptiActivityExternalCorrelation),
    sizeof(msptiActivityCommunication),
    sizeof(msptiActivityApi),
    sizeof(msptiActivityApi),
    sizeof(msptiActivityApi),
};

/* ------------------------------------------------------------------------------------------------
 * State
 * ---------------------------------------------------------------------------------------------- */

/* A subscriber handle. Never freed, so a stale handle stays recognisable ("h<num>" in the log). */
struct msptiSubscriber_st {
    uint32_t magic;
    int num;
    msptiCallbackFunc callback;
    void *userdata;
};

/* One activity buffer handed out by the client's request callback (MSPTI's ActivityBuffer). `buf` may
 * be NULL: §3.5 "Setting *buffer=NULL makes MSPTI drop records" — the object still exists and is
 * retired/delivered like any other, so complete may be called with buffer NULL (as the real one does). */
struct abuf {
    uint8_t *buf;
    size_t size;
    size_t valid;
    size_t max_records; /* as returned by request; §3.5: not enforced */
    size_t records;     /* records written into it (corrupted ones included) */
    struct abuf *next;  /* retired queue */
};

/* One completion thread (§3.5: a newly spawned thread per retired buffer). */
struct worker {
    pthread_t thread;
    struct abuf *ab;
    int done; /* atomic: set by the worker after complete returned */
    struct worker *next;
};

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t g_ext_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t g_misc_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t g_buf_mu; /* recursive, set up in the constructor */
static pthread_mutex_t g_q_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t g_tally_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_q_cv; /* CLOCK_MONOTONIC, set up in the constructor */

/* under g_mu */
static struct msptiSubscriber_st *g_sub; /* current subscriber, NULL when not subscribed */
static int g_sub_counter;
static struct msptiSubscriber_st *g_handles[256]; /* the first 256 handles made, for log names */
static size_t g_nhandles;
static int g_subscribe_calls; /* FAKE_MSPTI_OTHER_SUBSCRIBER=1 fails only the first one */
static uint64_t g_cbid_map[MSPTI_CB_DOMAIN_SIZE];
static char *g_disabled_domains[MAX_DOMAINS];
static size_t g_ndisabled_domains;

/* atomics */
static int g_subscribed;                           /* mirror of g_sub != NULL for the recording path */
static uint32_t g_enabled;                         /* bit k = kind k enabled (§3.6) */
static msptiBuffersCallbackRequestFunc g_request;  /* §3.5 registered callbacks */
static msptiBuffersCallbackCompleteFunc g_complete;
static uint64_t g_dropped;
static uint64_t g_emitted[KIND_MAX + 1]; /* [0] = every record written, corrupted ones included */
static uint64_t g_written_seq;           /* FAKE_MSPTI_MALFORMED counter */
static uint64_t g_corrupted;
static uint64_t g_correlation; /* last correlationId handed out (first is 1) */
static uint64_t g_marker_id;
static uint64_t g_pending; /* buffers handed out by request and not yet returned through complete */

/* under g_buf_mu */
static struct abuf *g_cur;

/* under g_q_mu */
static struct abuf *g_retired_head, *g_retired_tail;
static int g_buf_full;           /* MSPTI's buf_full_: a buffer was retired, wake the manager */
static int g_manager_running;    /* the manager thread exists in this process */
static int g_manager_stop;       /* destructor asks the manager to exit */
static int g_period_changed;     /* FlushPeriod wakes the manager to re-arm its timer */
static uint32_t g_flush_ms = DEFAULT_FLUSH_MS;
static pthread_t g_manager;
static struct worker *g_workers; /* completion threads not yet joined */

/* under g_ext_mu: §3.6 "one process-global stack per kind (mutex-protected)" */
static uint64_t g_ext_stack[EXT_KINDS][EXT_DEPTH];
static size_t g_ext_depth[EXT_KINDS];

/* under g_misc_mu */
struct interned {
    char *s;
    struct interned *next;
};
static struct interned *g_intern[INTERN_BUCKETS];
struct stream_end {
    uint32_t device, stream;
    uint64_t end_ns;
};
static struct stream_end g_streams[MAX_STREAMS];
static size_t g_nstreams;
struct alloc {
    uint64_t address, bytes;
};
static struct alloc g_allocs[MAX_ALLOCS];
static size_t g_nallocs;
static uint64_t g_next_address = 0x124000000000ull;

/* Marker START ids of this thread, popped by the matching END (§3.4: "id is the mark/range id shared by
 * start/end"). */
#define MARKER_DEPTH 256
static __thread uint64_t t_marker_ids[MARKER_DEPTH];
static __thread size_t t_marker_depth;

/* ------------------------------------------------------------------------------------------------
 * Small helpers
 * ---------------------------------------------------------------------------------------------- */

static long long env_ll(const char *name, long long dflt)
{
    const char *v = getenv(name);
    if (v == NULL || *v == '\0') {
        return dflt;
    }
    char *end = NULL;
    long long x = strtoll(v, &end, 10);
    return (end != NULL && *end == '\0') ? x : dflt;
}

static int env_is(const char *name, const char *value)
{
    const char *v = getenv(name);
    return v != NULL && strcmp(v, value) == 0;
}

/* §3.6: "Enabling HCCL, MEMORY, MEMSET or MEMCPY returns MSPTI_ERROR_WITHOUT_LD_PRELOAD unless env
 * LD_PRELOAD contains libmspti.so (HEAD only)". FAKE_MSPTI_OLD=1: an older library without the rule.
 * Read at every call (the real library reads it once and caches it). */
static int ld_preload_missing(void)
{
    if (env_is("FAKE_MSPTI_OLD", "1")) {
        return 0;
    }
    const char *ld = getenv("LD_PRELOAD");
    return ld == NULL || strstr(ld, "libmspti.so") == NULL;
}

/* §3.7: every record time is nanoseconds on the CLOCK_REALTIME scale. */
static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint32_t gettid_u32(void) { return (uint32_t)syscall(SYS_gettid); }

static uint32_t device_id(void) { return (uint32_t)env_ll("FAKE_MSPTI_DEVICE", 0); }

static int kind_valid(int kind) { return kind >= KIND_MIN && kind <= KIND_MAX; }

static int kind_enabled(int kind)
{
    return kind_valid(kind) && (__atomic_load_n(&g_enabled, __ATOMIC_ACQUIRE) & (1u << kind)) != 0;
}

static void sleep_ms(long long ms)
{
    if (ms <= 0) {
        return;
    }
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* ------------------------------------------------------------------------------------------------
 * Log: one line per API call, "<func> <key>=<value> ... -> <ret>[ <result>=<value>...]", appended with a
 * single write() to a file opened O_APPEND for this line only, so lines of forked / exiting processes and
 * of concurrent threads are never lost or interleaved.
 * ---------------------------------------------------------------------------------------------- */

#define FAKE_LOG_ENV "FAKE_MSPTI_LOG"
#include "fake_log.h"
#define FAKE_HANG_ENV "FAKE_MSPTI_HANG"
#include "fake_hang.h"

/* A user string for the log: "null", or at most MAX_NAME bytes with spaces and control bytes as '?'. */
static const char *printable(char *out, size_t outsz, const char *s)
{
    if (s == NULL) {
        snprintf(out, outsz, "null");
        return out;
    }
    size_t i = 0;
    for (; s[i] != '\0' && i + 1 < outsz && i < MAX_NAME; i++) {
        unsigned char c = (unsigned char)s[i];
        out[i] = (c <= 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    out[i] = '\0';
    return out;
}

/* "h<num>" for a handle this library made (current or stale), "null", or "unknown". Under g_mu. */
static const char *handle_name(char *out, size_t outsz, msptiSubscriberHandle h)
{
    snprintf(out, outsz, h == NULL ? "null" : "unknown");
    /* Only pointers this library made are dereferenced (they are never freed). */
    for (size_t i = 0; h != NULL && i < g_nhandles; i++) {
        if (g_handles[i] == h) {
            snprintf(out, outsz, "h%d", h->num);
        }
    }
    return out;
}

/* ------------------------------------------------------------------------------------------------
 * Interned strings: record strings stay valid until process exit (§3.4 "Strings are owned by MSPTI").
 * ---------------------------------------------------------------------------------------------- */

static const char *intern(const char *s, const char *dflt)
{
    if (s == NULL) {
        s = dflt;
    }
    uint32_t h = 2166136261u; /* FNV-1a */
    for (const char *p = s; *p; p++) {
        h = (h ^ (unsigned char)*p) * 16777619u;
    }
    pthread_mutex_lock(&g_misc_mu);
    struct interned *e = g_intern[h % INTERN_BUCKETS];
    for (; e != NULL; e = e->next) {
        if (strcmp(e->s, s) == 0) {
            break;
        }
    }
    if (e == NULL) {
        e = malloc(sizeof *e);
        if (e != NULL) {
            e->s = strdup(s);
            if (e->s == NULL) {
                free(e);
                e = NULL;
            } else {
                e->next = g_intern[h % INTERN_BUCKETS];
                g_intern[h % INTERN_BUCKETS] = e;
            }
        }
    }
    pthread_mutex_unlock(&g_misc_mu);
    return e != NULL ? e->s : dflt; /* dflt is always a string literal */
}

/* In-order execution on one (device, stream): returns max(earliest, previous end) and records the new
 * end = start + dur. */
static uint64_t stream_schedule(uint32_t device, uint32_t stream, uint64_t earliest, uint64_t dur)
{
    pthread_mutex_lock(&g_misc_mu);
    struct stream_end *st = NULL;
    for (size_t i = 0; i < g_nstreams; i++) {
        if (g_streams[i].device == device && g_streams[i].stream == stream) {
            st = &g_streams[i];
            break;
        }
    }
    if (st == NULL && g_nstreams < MAX_STREAMS) {
        st = &g_streams[g_nstreams++];
        st->device = device;
        st->stream = stream;
        st->end_ns = 0;
    }
    uint64_t start = earliest;
    if (st != NULL) {
        if (st->end_ns > start) {
            start = st->end_ns;
        }
        st->end_ns = start + dur;
    }
    pthread_mutex_unlock(&g_misc_mu);
    return start;
}

/* ------------------------------------------------------------------------------------------------
 * Buffer manager (§3.5, MS activity_manager.cpp)
 * ---------------------------------------------------------------------------------------------- */

/* Calls complete for one buffer and frees the fake's bookkeeping object (never the client's memory).
 * §3.5 "After complete returns MSPTI no longer touches the buffer". With no complete callback the real
 * UnInit logs and returns: the buffer is then simply forgotten. */
static void misbehave_after_complete(msptiBuffersCallbackCompleteFunc complete, struct abuf *ab);

/* The fake's own account of the buffer protocol, per buffer size that request returned (the client's pool
 * buffers and its overflow buffer differ in size), for fake_mspti_buffers(): requests, buffers handed to
 * complete (each once: the adversarial repeats are misdeeds; tallied when complete has returned), the
 * records and valid bytes in them. */
#define TALLY_SLOTS 8
static struct tally {
    int used;
    size_t size;
    uint64_t requested, delivered, records, bytes;
} g_tally[TALLY_SLOTS];

/* Adds to the tally of buffers of `size` (sizes beyond the first TALLY_SLOTS go to the last slot's). */
static void tally(size_t size, uint64_t requested, uint64_t delivered, uint64_t records, uint64_t bytes)
{
    pthread_mutex_lock(&g_tally_mu);
    struct tally *t = &g_tally[TALLY_SLOTS - 1];
    for (int i = 0; i < TALLY_SLOTS; i++) {
        if (!g_tally[i].used || g_tally[i].size == size) {
            t = &g_tally[i];
            break;
        }
    }
    t->used = 1;
    t->size = size;
    t->requested += requested;
    t->delivered += delivered;
    t->records += records;
    t->bytes += bytes;
    pthread_mutex_unlock(&g_tally_mu);
}

static void deliver(struct abuf *ab)
{
    msptiBuffersCallbackCompleteFunc complete = __atomic_load_n(&g_complete, __ATOMIC_ACQUIRE);
    if (complete != NULL) {
        complete(ab->buf, ab->size, ab->valid);
        tally(ab->size, 0, 1, ab->records, ab->valid);
        misbehave_after_complete(complete, ab);
    }
    __atomic_fetch_sub(&g_pending, 1, __ATOMIC_ACQ_REL);
    free(ab);
}

/* §3.5 "Retired (>= 80 %) buffers are delivered via complete on a newly spawned thread per buffer".
 * FAKE_MSPTI_STALL_MS: the slow consumer path — sleep before each asynchronous delivery. */
static void *completion_main(void *arg)
{
    struct worker *w = arg;
    sleep_ms(env_ll("FAKE_MSPTI_STALL_MS", 0));
    deliver(w->ab);
    w->ab = NULL;
    __atomic_store_n(&w->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

/* Joins the completion threads that have finished. Under g_q_mu (workers never take it). */
static void reap_workers_locked(void)
{
    struct worker **pp = &g_workers;
    while (*pp != NULL) {
        struct worker *w = *pp;
        if (__atomic_load_n(&w->done, __ATOMIC_ACQUIRE)) {
            pthread_join(w->thread, NULL);
            *pp = w->next;
            free(w);
        } else {
            pp = &w->next;
        }
    }
}

/* Manager thread (MSPTI's ActivityManager::Run): waits for a retired buffer, the flush period, or a
 * FlushPeriod change, then hands every queued retired buffer to a new completion thread. §3.5
 * "msptiActivityFlushPeriod(ms): the manager thread wakes every ms and delivers only retired (full)
 * buffers" — the current partial buffer is never touched here. */
static void *manager_main(void *arg)
{
    (void)arg;
    pthread_setname_np(pthread_self(), "ActivityManager");
    pthread_mutex_lock(&g_q_mu);
    while (!g_manager_stop) {
        struct timespec deadline;
        clock_gettime(CLOCK_MONOTONIC, &deadline);
        uint32_t ms = g_flush_ms;
        deadline.tv_sec += (time_t)(ms / 1000);
        deadline.tv_nsec += (long)(ms % 1000) * 1000000L;
        if (deadline.tv_nsec >= 1000000000L) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000L;
        }
        g_period_changed = 0;
        while (!g_buf_full && !g_manager_stop && !g_period_changed) {
            if (pthread_cond_timedwait(&g_q_cv, &g_q_mu, &deadline) == ETIMEDOUT) {
                break;
            }
        }
        if (g_manager_stop) {
            break;
        }
        reap_workers_locked();
        /* Take the whole queue: buffers retired meanwhile start a new queue and set g_buf_full again. */
        struct abuf *list = g_retired_head;
        g_retired_head = g_retired_tail = NULL;
        g_buf_full = 0;
        while (list != NULL) {
            struct abuf *ab = list;
            list = ab->next;
            ab->next = NULL;
            struct worker *w = calloc(1, sizeof *w);
            if (w != NULL) {
                w->ab = ab;
                if (pthread_create(&w->thread, NULL, completion_main, w) == 0) {
                    w->next = g_workers;
                    g_workers = w;
                    continue;
                }
                free(w);
            }
            /* no thread: deliver on the manager thread rather than lose the buffer */
            pthread_mutex_unlock(&g_q_mu);
            sleep_ms(env_ll("FAKE_MSPTI_STALL_MS", 0));
            deliver(ab);
            pthread_mutex_lock(&g_q_mu);
        }
    }
    pthread_mutex_unlock(&g_q_mu);
    return NULL;
}

/* §3.5 "The first successful call [of RegisterCallbacks] starts the manager thread." Also used after
 * fork: the child has no manager thread, so the first retirement in the child starts one (the real
 * library would have none in the child; the fake is kinder). Under g_q_mu. */
static void ensure_manager_locked(void)
{
    if (!g_manager_running && !g_manager_stop) {
        if (pthread_create(&g_manager, NULL, manager_main, NULL) == 0) {
            g_manager_running = 1;
        }
    }
}

/* Moves the current buffer to the retired queue and wakes the manager. Under g_buf_mu. */
static void retire_current(void)
{
    struct abuf *ab = g_cur;
    g_cur = NULL;
    pthread_mutex_lock(&g_q_mu);
    ab->next = NULL;
    if (g_retired_tail != NULL) {
        g_retired_tail->next = ab;
    } else {
        g_retired_head = ab;
    }
    g_retired_tail = ab;
    g_buf_full = 1;
    ensure_manager_locked();
    pthread_cond_signal(&g_q_cv);
    pthread_mutex_unlock(&g_q_mu);
}

/* Asks the client for a buffer (§3.5: on the recording thread, with the buffer mutex held). Under
 * g_buf_mu. Returns the new current buffer, or NULL if the fake itself is out of memory. */
static struct abuf *request_buffer(msptiBuffersCallbackRequestFunc request)
{
    struct abuf *ab = calloc(1, sizeof *ab);
    if (ab == NULL) {
        return NULL;
    }
    /* §3.5: *buffer NULL → every record into this buffer is dropped; the object is kept and delivered */
    request(&ab->buf, &ab->size, &ab->max_records);
    tally(ab->size, 1, 0, 0, 0);
    __atomic_fetch_add(&g_pending, 1, __ATOMIC_ACQ_REL);
    g_cur = ab;
    return ab;
}

/* FAKE_MSPTI_MALFORMED: corrupts every n-th record written (alternately kind 77 and kind 0). */
static int maybe_corrupt(uint8_t *rec)
{
    long long n = env_ll("FAKE_MSPTI_MALFORMED", 0);
    uint64_t seq = __atomic_add_fetch(&g_written_seq, 1, __ATOMIC_ACQ_REL);
    if (n <= 0 || seq % (uint64_t)n != 0) {
        return 0;
    }
    uint64_t c = __atomic_fetch_add(&g_corrupted, 1, __ATOMIC_ACQ_REL);
    uint32_t bad = (c % 2 == 0) ? CORRUPT_KIND : 0u;
    memcpy(rec, &bad, sizeof bad);
    return 1;
}

/* Appends one record "as MSPTI does" (MS ActivityManager::Record), on the calling thread.
 * Rules: records are produced only while subscribed (§3.6: Subscribe starts the device channels and the
 * host parsers) and while the kind is enabled; with no callbacks registered there is no buffer, so the
 * record is dropped and counted (§3.6 "records produced before RegisterCallbacks have no buffer and are
 * dropped"). §3.5: request a buffer when there is none; if the current one is already >= 80 % full,
 * retire it first and request a fresh one; a record that does not fit the remaining space is dropped
 * (not split, no new buffer for it); a NULL buffer drops the record. */
static void emit(const void *rec, size_t size)
{
    uint32_t kind;
    memcpy(&kind, rec, sizeof kind);
    if (!__atomic_load_n(&g_subscribed, __ATOMIC_ACQUIRE) || !kind_enabled((int)kind)) {
        return;
    }
    pthread_mutex_lock(&g_buf_mu);
    msptiBuffersCallbackRequestFunc request = __atomic_load_n(&g_request, __ATOMIC_ACQUIRE);
    int written = 0;
    if (request != NULL) {
        if (g_cur == NULL) {
            request_buffer(request);
        } else if ((double)g_cur->valid >= 0.8 * (double)g_cur->size) {
            retire_current();
            request_buffer(request);
        }
        struct abuf *ab = g_cur;
        if (ab != NULL && ab->buf != NULL && ab->valid <= ab->size && size <= ab->size - ab->valid) {
            uint8_t *dst = ab->buf + ab->valid;
            memcpy(dst, rec, size);
            ab->valid += size;
            ab->records++;
            if (!maybe_corrupt(dst)) {
                __atomic_fetch_add(&g_emitted[kind], 1, __ATOMIC_ACQ_REL);
            }
            __atomic_fetch_add(&g_emitted[0], 1, __ATOMIC_ACQ_REL);
            written = 1;
        }
    }
    if (!written) {
        __atomic_fetch_add(&g_dropped, 1, __ATOMIC_ACQ_REL);
    }
    pthread_mutex_unlock(&g_buf_mu);
}

/* Invokes the subscriber's callback if (domain, cbid) is enabled. §3.6 "Callback invocation fills only
 * callbackSite and functionName of msptiCallbackData; the other fields are uninitialised" — the fake
 * fills them with 0xA5 bytes so a client that reads them sees garbage. */
static void run_callback(msptiCallbackDomain domain, msptiCallbackId cbid, msptiApiCallbackSite site, const char *func)
{
    pthread_mutex_lock(&g_mu);
    struct msptiSubscriber_st *s = g_sub;
    int on = s != NULL && s->callback != NULL && (g_cbid_map[domain] >> cbid & 1u);
    msptiCallbackFunc cb = on ? s->callback : NULL;
    void *ud = on ? s->userdata : NULL;
    pthread_mutex_unlock(&g_mu);
    if (cb == NULL) {
        return;
    }
    msptiCallbackData data;
    memset(&data, 0xA5, sizeof data);
    data.callbackSite = site;
    data.functionName = func;
    cb(ud, domain, cbid, &data);
}

/* ------------------------------------------------------------------------------------------------
 * Callback API (§3.3 mspti_callback.h, §3.6)
 * ---------------------------------------------------------------------------------------------- */

API msptiResult msptiSubscribe(msptiSubscriberHandle *subscriber, msptiCallbackFunc callback, void *userdata)
{
    pthread_mutex_lock(&g_mu);
    msptiResult ret;
    int first = g_subscribe_calls++ == 0;
    if (subscriber == NULL) {
        ret = MSPTI_ERROR_INVALID_PARAMETER; /* §3.6 "subscriber==NULL → INVALID_PARAMETER" (checked first) */
    } else if (g_sub != NULL) {
        ret = MSPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED; /* §3.6 "a second subscriber" */
    } else if (env_is("FAKE_MSPTI_OTHER_SUBSCRIBER", "always") ||
               (first && env_is("FAKE_MSPTI_OTHER_SUBSCRIBER", "1"))) {
        ret = MSPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED; /* §3.8: torch_npu holds the one subscription */
    } else {
        struct msptiSubscriber_st *s = calloc(1, sizeof *s);
        if (s == NULL) {
            ret = MSPTI_ERROR_INNER;
        } else {
            s->magic = SUB_MAGIC;
            s->num = ++g_sub_counter;
            s->callback = callback; /* §3.6 "cb may be NULL" */
            s->userdata = userdata;
            memset(g_cbid_map, 0, sizeof g_cbid_map); /* MS CallbackManager::Init clears every bitmap */
            if (g_nhandles < sizeof g_handles / sizeof g_handles[0]) {
                g_handles[g_nhandles++] = s;
            }
            g_sub = s;
            __atomic_store_n(&g_subscribed, 1, __ATOMIC_RELEASE);
            *subscriber = s;
            ret = MSPTI_SUCCESS;
        }
    }
    if (ret == MSPTI_SUCCESS) {
        log_line("msptiSubscribe subscriber=set callback=%s -> %d handle=h%d", callback ? "set" : "null", ret,
                 g_sub->num);
    } else {
        log_line("msptiSubscribe subscriber=%s callback=%s -> %d", subscriber ? "set" : "null",
                 callback ? "set" : "null", ret);
    }
    pthread_mutex_unlock(&g_mu);
    return ret;
}

/* §3.6 "msptiUnsubscribe(h): not subscribed → SUCCESS; wrong handle → INVALID_PARAMETER. It does not
 * flush." Enabled activity kinds stay enabled (MS UnInit does not touch the activity switches); records
 * stop because the subscription is gone. */
API msptiResult msptiUnsubscribe(msptiSubscriberHandle subscriber)
{
    pthread_mutex_lock(&g_mu);
    msptiResult ret;
    char hn[32];
    handle_name(hn, sizeof hn, subscriber);
    if (g_sub == NULL) {
        ret = MSPTI_SUCCESS;
    } else if (subscriber != g_sub) {
        ret = MSPTI_ERROR_INVALID_PARAMETER;
    } else {
        g_sub = NULL;
        memset(g_cbid_map, 0, sizeof g_cbid_map);
        __atomic_store_n(&g_subscribed, 0, __ATOMIC_RELEASE);
        ret = MSPTI_SUCCESS;
    }
    log_line("msptiUnsubscribe handle=%s -> %d", hn, ret);
    pthread_mutex_unlock(&g_mu);
    return ret;
}

/* §3.6 callback PreCheck: LD_PRELOAD first (→ 6 on HEAD), then not subscribed → SUCCESS (no-op), then
 * handle mismatch → INVALID_PARAMETER. Under g_mu. Returns -1 to continue. */
static int callback_precheck(msptiSubscriberHandle subscriber)
{
    if (ld_preload_missing()) {
        return MSPTI_ERROR_WITHOUT_LD_PRELOAD;
    }
    if (g_sub == NULL) {
        return MSPTI_SUCCESS;
    }
    if (subscriber != g_sub) {
        return MSPTI_ERROR_INVALID_PARAMETER;
    }
    return -1;
}

static int cb_domain_valid(msptiCallbackDomain d) { return d > MSPTI_CB_DOMAIN_INVALID && d < MSPTI_CB_DOMAIN_SIZE; }

API msptiResult msptiEnableCallback(uint32_t enable, msptiSubscriberHandle subscriber, msptiCallbackDomain domain,
                                    msptiCallbackId cbid)
{
    pthread_mutex_lock(&g_mu);
    char hn[32];
    handle_name(hn, sizeof hn, subscriber);
    int ret = callback_precheck(subscriber);
    if (ret < 0) {
        if (!cb_domain_valid(domain)) {
            ret = MSPTI_ERROR_INVALID_PARAMETER; /* §3.6 "invalid domain → INVALID_PARAMETER" */
        } else if (cbid >= 64) {
            ret = MSPTI_ERROR_INVALID_PARAMETER; /* §3.6 "cbid must be < 64" (one 64-bit map per domain) */
        } else {
            if (enable) {
                g_cbid_map[domain] |= 1ull << cbid;
            } else {
                g_cbid_map[domain] &= ~(1ull << cbid);
            }
            ret = MSPTI_SUCCESS;
        }
    }
    log_line("msptiEnableCallback enable=%u handle=%s domain=%d cbid=%u -> %d", enable, hn, (int)domain, cbid, ret);
    pthread_mutex_unlock(&g_mu);
    return (msptiResult)ret;
}

API msptiResult msptiEnableDomain(uint32_t enable, msptiSubscriberHandle subscriber, msptiCallbackDomain domain)
{
    pthread_mutex_lock(&g_mu);
    char hn[32];
    handle_name(hn, sizeof hn, subscriber);
    int ret = callback_precheck(subscriber);
    if (ret < 0) {
        if (!cb_domain_valid(domain)) {
            ret = MSPTI_ERROR_INVALID_PARAMETER;
        } else {
            /* every cbid 1..SIZE-1 of the domain (MS CallbackManager::EnableDomain) */
            uint32_t count = domain == MSPTI_CB_DOMAIN_RUNTIME ? MSPTI_CBID_RUNTIME_SIZE : MSPTI_CBID_HCCL_SIZE;
            uint64_t bits = ((1ull << count) - 1) & ~1ull;
            if (enable) {
                g_cbid_map[domain] |= bits;
            } else {
                g_cbid_map[domain] &= ~bits;
            }
            ret = MSPTI_SUCCESS;
        }
    }
    log_line("msptiEnableDomain enable=%u handle=%s domain=%d -> %d", enable, hn, (int)domain, ret);
    pthread_mutex_unlock(&g_mu);
    return (msptiResult)ret;
}

/* ------------------------------------------------------------------------------------------------
 * Activity API (§3.3 mspti_activity.h, §3.5, §3.6)
 * ---------------------------------------------------------------------------------------------- */

/* §3.5 "RegisterCallbacks(NULL, …) or (…, NULL) → INVALID_PARAMETER; calling it again replaces the
 * callbacks. The first successful call starts the manager thread." Not tied to the subscription. */
API msptiResult msptiActivityRegisterCallbacks(msptiBuffersCallbackRequestFunc funcBufferRequested,
                                               msptiBuffersCallbackCompleteFunc funcBufferCompleted)
{
    msptiResult ret;
    static int calls;
    int first = __atomic_fetch_add(&calls, 1, __ATOMIC_ACQ_REL) == 0;
    if (funcBufferRequested == NULL || funcBufferCompleted == NULL) {
        ret = MSPTI_ERROR_INVALID_PARAMETER;
    } else if (first && env_is("FAKE_MSPTI_REGISTER_FAIL", "1")) {
        ret = MSPTI_ERROR_INNER; /* adversarial: nothing registered */
    } else {
        __atomic_store_n(&g_request, funcBufferRequested, __ATOMIC_RELEASE);
        __atomic_store_n(&g_complete, funcBufferCompleted, __ATOMIC_RELEASE);
        pthread_mutex_lock(&g_q_mu);
        ensure_manager_locked();
        pthread_mutex_unlock(&g_q_mu);
        ret = MSPTI_SUCCESS;
    }
    log_line("msptiActivityRegisterCallbacks request=%s complete=%s -> %d", funcBufferRequested ? "set" : "null",
             funcBufferCompleted ? "set" : "null", ret);
    return ret;
}

/* §3.6 "kind not in {1..12} → INVALID_PARAMETER. Enabling HCCL, MEMORY, MEMSET or MEMCPY returns
 * MSPTI_ERROR_WITHOUT_LD_PRELOAD unless LD_PRELOAD contains libmspti.so (HEAD only)."
 * Enable before Subscribe: HEAD checks neither the subscription nor registered callbacks, so this
 * returns SUCCESS and sets the switch; records appear only once subscribed (see emit()). */
API msptiResult msptiActivityEnable(msptiActivityKind kind)
{
    msptiResult ret;
    int k = (int)kind;
    if (!kind_valid(k)) {
        ret = MSPTI_ERROR_INVALID_PARAMETER;
    } else if (env_ll("FAKE_MSPTI_ENABLE_FAIL", 0) == k) {
        ret = MSPTI_ERROR_INNER; /* adversarial: switch left off */
    } else if ((k == MSPTI_ACTIVITY_KIND_HCCL || k == MSPTI_ACTIVITY_KIND_MEMORY || k == MSPTI_ACTIVITY_KIND_MEMSET ||
                k == MSPTI_ACTIVITY_KIND_MEMCPY) &&
               ld_preload_missing()) {
        ret = MSPTI_ERROR_WITHOUT_LD_PRELOAD; /* switch left off */
    } else {
        __atomic_fetch_or(&g_enabled, 1u << k, __ATOMIC_ACQ_REL);
        ret = MSPTI_SUCCESS;
    }
    log_line("msptiActivityEnable kind=%d -> %d", k, ret);
    return ret;
}

/* §3.6: same kind range; no LD_PRELOAD rule on Disable. ("Disable of MARKER/KERNEL/HCCL/COMMUNICATION
 * flushes device data for that kind first": the fake produces device records synchronously, so there is
 * nothing left to flush.) */
API msptiResult msptiActivityDisable(msptiActivityKind kind)
{
    msptiResult ret;
    int k = (int)kind;
    if (!kind_valid(k)) {
        ret = MSPTI_ERROR_INVALID_PARAMETER;
    } else {
        __atomic_fetch_and(&g_enabled, ~(1u << k), __ATOMIC_ACQ_REL);
        ret = MSPTI_SUCCESS;
    }
    log_line("msptiActivityDisable kind=%d -> %d", k, ret);
    return ret;
}

/* §3.3 (added 2026-05): the switch state; false for kinds outside 1..12 (the real one indexes its switch
 * array unchecked). */
API bool msptiActivityIsEnabled(msptiActivityKind kind)
{
    bool on = kind_enabled((int)kind);
    log_line("msptiActivityIsEnabled kind=%d -> %d", (int)kind, on ? 1 : 0);
    return on;
}

/* §3.6 "msptiActivityEnable/DisableMarkerDomain(name): NULL/invalid name → INVALID_PARAMETER; all domains
 * enabled by default." Invalid = NULL, empty, or longer than 255 bytes (MSPTI's IsMsgValid; the exact
 * rule is not in the reference). */
static msptiResult set_marker_domain(const char *func, const char *name, int enable)
{
    pthread_mutex_lock(&g_mu);
    msptiResult ret = MSPTI_SUCCESS;
    char pn[MAX_NAME + 1];
    printable(pn, sizeof pn, name);
    if (name == NULL || name[0] == '\0' || strnlen(name, MAX_NAME + 1) > MAX_NAME) {
        ret = MSPTI_ERROR_INVALID_PARAMETER;
    } else {
        size_t i = 0;
        while (i < g_ndisabled_domains && strcmp(g_disabled_domains[i], name) != 0) {
            i++;
        }
        if (enable && i < g_ndisabled_domains) {
            free(g_disabled_domains[i]);
            g_disabled_domains[i] = g_disabled_domains[--g_ndisabled_domains];
        } else if (!enable && i == g_ndisabled_domains) {
            char *d = g_ndisabled_domains < MAX_DOMAINS ? strdup(name) : NULL;
            if (d == NULL) {
                ret = MSPTI_ERROR_INNER;
            } else {
                g_disabled_domains[g_ndisabled_domains++] = d;
            }
        }
    }
    log_line("%s name=%s -> %d", func, pn, ret);
    pthread_mutex_unlock(&g_mu);
    return ret;
}

API msptiResult msptiActivityEnableMarkerDomain(const char *name)
{
    return set_marker_domain("msptiActivityEnableMarkerDomain", name, 1);
}

API msptiResult msptiActivityDisableMarkerDomain(const char *name)
{
    return set_marker_domain("msptiActivityDisableMarkerDomain", name, 0);
}

/* §3.5 GetNextRecord, the implementation's behaviour (not the header's):
 *   - the cursor is a `static thread_local size_t` offset; the `record` argument is output only;
 *   - buffer NULL → INVALID_PARAMETER (cursor untouched);
 *   - cursor at (or past) validBufferSizeBytes → MAX_LIMIT_REACHED and the cursor resets to 0;
 *   - unknown kind at the cursor → MSPTI_ERROR_INNER, cursor neither moved nor reset;
 *   - step by the §3.5 size table.
 * Fake additions: a record (or its kind field) that would extend past validBufferSizeBytes → INNER
 * without moving (the real one would read past the valid bytes); record NULL → INVALID_PARAMETER (the
 * real one would crash writing through it). */
API msptiResult msptiActivityGetNextRecord(uint8_t *buffer, size_t validBufferSizeBytes, msptiActivity **record)
{
    static __thread size_t pos = 0;
    msptiResult ret;
    size_t at = pos;
    uint32_t kind = 0;
    if (buffer == NULL) {
        ret = MSPTI_ERROR_INVALID_PARAMETER;
    } else if (pos >= validBufferSizeBytes) {
        pos = 0;
        ret = MSPTI_ERROR_MAX_LIMIT_REACHED;
    } else if (record == NULL) {
        ret = MSPTI_ERROR_INVALID_PARAMETER;
    } else if (validBufferSizeBytes - pos < sizeof kind) {
        ret = MSPTI_ERROR_INNER;
    } else {
        memcpy(&kind, buffer + pos, sizeof kind);
        size_t size = kind_valid((int)kind) ? k_record_size[kind] : 0;
        if (size == 0 || size > validBufferSizeBytes - pos) {
            ret = MSPTI_ERROR_INNER;
        } else {
            *record = (msptiActivity *)(void *)(buffer + pos);
            pos += size;
            ret = MSPTI_SUCCESS;
        }
    }
    if (ret != MSPTI_SUCCESS || env_is("FAKE_MSPTI_LOG_RECORDS", "1")) {
        log_line("msptiActivityGetNextRecord buffer=%s valid=%zu -> %d offset=%zu kind=%u", buffer ? "set" : "null",
                 validBufferSizeBytes, ret, at, kind);
    }
    return ret;
}

/* §3.5 "msptiActivityFlushAll(flag) (flag ignored) delivers all queued retired buffers and the current
 * partially-filled one by calling complete synchronously on the calling thread (it also joins completion
 * threads that are still running), then returns MSPTI_SUCCESS." Same order as MS FlushAll: queued
 * buffers, then the joins, then the current buffer (delivered with the buffer mutex held, so recording
 * threads wait meanwhile). The current buffer is delivered even when it holds no record. */
static void make_late_buffer(void);

API msptiResult msptiActivityFlushAll(uint32_t flag)
{
    hang_if("msptiActivityFlushAll");
    make_late_buffer();
    size_t delivered = 0;
    pthread_mutex_lock(&g_q_mu);
    struct abuf *queued = g_retired_head;
    g_retired_head = g_retired_tail = NULL;
    pthread_mutex_unlock(&g_q_mu);
    while (queued != NULL) {
        struct abuf *next = queued->next;
        deliver(queued);
        delivered++;
        queued = next;
    }

    /* Join every completion thread spawned so far. The list is taken out under g_q_mu and joined without
     * it (workers never take g_q_mu, but a client's complete callback might call into the library). */
    pthread_mutex_lock(&g_q_mu);
    struct worker *workers = g_workers;
    g_workers = NULL;
    pthread_mutex_unlock(&g_q_mu);
    while (workers != NULL) {
        struct worker *next = workers->next;
        if (pthread_equal(workers->thread, pthread_self())) {
            /* FlushAll from inside complete on a completion thread: it cannot join itself (the real
             * library's std::thread::join would throw); hand it back to the manager for reaping. */
            pthread_mutex_lock(&g_q_mu);
            workers->next = g_workers;
            g_workers = workers;
            pthread_mutex_unlock(&g_q_mu);
        } else {
            pthread_join(workers->thread, NULL);
            free(workers);
        }
        workers = next;
    }

    pthread_mutex_lock(&g_buf_mu);
    if (g_cur != NULL) {
        struct abuf *cur = g_cur;
        g_cur = NULL;
        deliver(cur);
        delivered++;
    }
    pthread_mutex_unlock(&g_buf_mu);
    log_line("msptiActivityFlushAll flag=%u -> %d delivered=%zu", flag, MSPTI_SUCCESS, delivered);
    return MSPTI_SUCCESS;
}

/* §3.5 "msptiActivityFlushPeriod(ms): the manager thread wakes every ms and delivers only retired (full)
 * buffers; 0 disables (default wait 60000 ms)". */
API msptiResult msptiActivityFlushPeriod(uint32_t time)
{
    pthread_mutex_lock(&g_q_mu);
    g_flush_ms = time == 0 ? DEFAULT_FLUSH_MS : time;
    g_period_changed = 1;
    pthread_cond_signal(&g_q_cv);
    pthread_mutex_unlock(&g_q_mu);
    log_line("msptiActivityFlushPeriod time=%u -> %d", time, MSPTI_SUCCESS);
    return MSPTI_SUCCESS;
}

/* §3.6 "Push/Pop use one process-global stack per kind (mutex-protected), not a per-thread stack as the
 * header says". Kinds outside 1..4 (INVALID, SIZE, anything else) → INVALID_PARAMETER — a rule of this
 * fake, stricter than MS (whose Push accepts any kind value). A full fake stack (1024) → INNER. */
API msptiResult msptiActivityPushExternalCorrelationId(msptiExternalCorrelationKind kind, uint64_t id)
{
    msptiResult ret;
    int k = (int)kind;
    pthread_mutex_lock(&g_ext_mu);
    if (k < MSPTI_EXTERNAL_CORRELATION_KIND_UNKNOWN || k >= MSPTI_EXTERNAL_CORRELATION_KIND_SIZE) {
        ret = MSPTI_ERROR_INVALID_PARAMETER;
    } else if (g_ext_depth[k] >= EXT_DEPTH) {
        ret = MSPTI_ERROR_INNER;
    } else {
        g_ext_stack[k][g_ext_depth[k]++] = id;
        ret = MSPTI_SUCCESS;
    }
    pthread_mutex_unlock(&g_ext_mu);
    log_line("msptiActivityPushExternalCorrelationId kind=%d id=%llu -> %d", k, (unsigned long long)id, ret);
    return ret;
}

/* §3.6 "Pop with lastId==NULL → INVALID_PARAMETER (header says NULL allowed); empty →
 * MSPTI_ERROR_QUEUE_EMPTY". */
API msptiResult msptiActivityPopExternalCorrelationId(msptiExternalCorrelationKind kind, uint64_t *lastId)
{
    msptiResult ret;
    int k = (int)kind;
    uint64_t id = 0;
    pthread_mutex_lock(&g_ext_mu);
    if (lastId == NULL) {
        ret = MSPTI_ERROR_INVALID_PARAMETER;
    } else if (k < MSPTI_EXTERNAL_CORRELATION_KIND_UNKNOWN || k >= MSPTI_EXTERNAL_CORRELATION_KIND_SIZE) {
        ret = MSPTI_ERROR_INVALID_PARAMETER;
    } else if (g_ext_depth[k] == 0) {
        ret = MSPTI_ERROR_QUEUE_EMPTY;
    } else {
        id = g_ext_stack[k][--g_ext_depth[k]];
        *lastId = id;
        ret = MSPTI_SUCCESS;
    }
    pthread_mutex_unlock(&g_ext_mu);
    if (ret == MSPTI_SUCCESS) {
        log_line("msptiActivityPopExternalCorrelationId kind=%d lastId=set -> %d id=%llu", k, ret,
                 (unsigned long long)id);
    } else {
        log_line("msptiActivityPopExternalCorrelationId kind=%d lastId=%s -> %d", k, lastId ? "set" : "null", ret);
    }
    return ret;
}

/* ------------------------------------------------------------------------------------------------
 * Adversarial modes (see the header comment). Never active unless their variable is set.
 * ---------------------------------------------------------------------------------------------- */

/* Misdeeds done: [0] extra completions, [1] bad name pointers, [2] bad times. */
static uint64_t g_misdeeds[3];
static pthread_mutex_t g_stale_mu = PTHREAD_MUTEX_INITIALIZER;
static struct abuf g_stale; /* the buffer delivered last (pointer and sizes only) */

/* FAKE_MSPTI_COMPLETE=twice|stale, after a buffer's real completion. */
static void misbehave_after_complete(msptiBuffersCallbackCompleteFunc complete, struct abuf *ab)
{
    if (env_is("FAKE_MSPTI_COMPLETE", "twice")) {
        __atomic_fetch_add(&g_misdeeds[0], 1, __ATOMIC_ACQ_REL);
        complete(ab->buf, ab->size, ab->valid);
    } else if (env_is("FAKE_MSPTI_COMPLETE", "stale") && ab->buf != NULL) {
        pthread_mutex_lock(&g_stale_mu);
        struct abuf prev = g_stale;
        g_stale.buf = ab->buf;
        g_stale.size = ab->size;
        g_stale.valid = ab->valid;
        pthread_mutex_unlock(&g_stale_mu);
        if (prev.buf != NULL && prev.buf != ab->buf) {
            __atomic_fetch_add(&g_misdeeds[0], 1, __ATOMIC_ACQ_REL);
            complete(prev.buf, prev.size, prev.valid);
        }
    }
}

/* Two pages: the first readable and full of 'A', the second inaccessible (g_bad_page points at it). */
static char *g_bad_page;

static void bad_name_pages_init(void)
{
    long pg = sysconf(_SC_PAGESIZE);
    char *p = mmap(NULL, 2 * (size_t)pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        return;
    }
    memset(p, 'A', (size_t)pg);
    if (mprotect(p + pg, (size_t)pg, PROT_NONE) == 0) {
        g_bad_page = p + pg;
    }
}

static char *bad_name_pages(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, bad_name_pages_init);
    return g_bad_page;
}

/* FAKE_MSPTI_BAD_NAMES / FAKE_MSPTI_BAD_TIMES on one kernel record. */
static void misbehave_in_kernel(msptiActivityKernel *k)
{
    static uint64_t seq_names, seq_times;
    long long n = env_ll("FAKE_MSPTI_BAD_NAMES", 0);
    if (n > 0 && __atomic_add_fetch(&seq_names, 1, __ATOMIC_ACQ_REL) % (uint64_t)n == 0) {
        char *bad = bad_name_pages();
        if (bad != NULL) {
            uint64_t c = __atomic_fetch_add(&g_misdeeds[1], 1, __ATOMIC_ACQ_REL);
            k->name = c % 2 == 0 ? bad : bad - 100; /* dangling / 100 bytes without NUL, then a fault */
        }
    }
    n = env_ll("FAKE_MSPTI_BAD_TIMES", 0);
    if (n > 0 && __atomic_add_fetch(&seq_times, 1, __ATOMIC_ACQ_REL) % (uint64_t)n == 0) {
        uint64_t c = __atomic_fetch_add(&g_misdeeds[2], 1, __ATOMIC_ACQ_REL);
        if (c % 2 == 0) {
            k->start = UINT64_MAX - 1000;
            k->end = UINT64_MAX - 10;
        } else {
            k->end = k->start + (1ull << 62);
        }
    }
}

/* Misdeeds done by the adversarial modes: 0 extra completions, 1 bad name pointers, 2 bad times. */
API uint64_t fake_mspti_misdeeds(int what)
{
    return what >= 0 && what < 3 ? __atomic_load_n(&g_misdeeds[what], __ATOMIC_ACQUIRE) : 0;
}

/* ------------------------------------------------------------------------------------------------
 * Test-only exports (not MSPTI symbols). Each emulates one host/device event on the calling thread.
 * ---------------------------------------------------------------------------------------------- */

/* EXTERNAL_CORRELATION records for an API record with `corr` (MS ExternalCorrelationReporter: one record
 * per kind whose stack is non-empty, carrying the top of the stack; docs: "API Activity Records generated
 * in this region are each preceded by an EXTERNAL_CORRELATION record"). Kinds in ascending order. */
static void emit_external_correlations(uint64_t corr)
{
    if (!kind_enabled(MSPTI_ACTIVITY_KIND_EXTERNAL_CORRELATION)) {
        return;
    }
    uint64_t top[EXT_KINDS];
    int has[EXT_KINDS];
    pthread_mutex_lock(&g_ext_mu);
    for (int k = 1; k < EXT_KINDS; k++) {
        has[k] = g_ext_depth[k] > 0;
        top[k] = has[k] ? g_ext_stack[k][g_ext_depth[k] - 1] : 0;
    }
    pthread_mutex_unlock(&g_ext_mu);
    for (int k = 1; k < EXT_KINDS; k++) {
        if (has[k]) {
            msptiActivityExternalCorrelation r;
            memset(&r, 0, sizeof r);
            r.kind = MSPTI_ACTIVITY_KIND_EXTERNAL_CORRELATION;
            r.externalKind = (msptiExternalCorrelationKind)k;
            r.externalId = top[k];
            r.correlationId = corr;
            emit(&r, sizeof r);
        }
    }
}

/* One kernel launch by the calling thread. Correlation id: a new one per call (process-wide counter
 * from 1). Records, in this order, each only if its kind is enabled:
 *   EXTERNAL_CORRELATION per non-empty external stack (kind 8) → correlationId = this launch's;
 *   API (kind 3 and/or ACL_API 10, one record per enabled kind, kind field as enabled): name
 *     "LaunchKernel", start = now (or, in a burst, the end of this thread's previous API record: one
 *     thread's calls never overlap), end = start + 2000 ns, pid, tid, correlationId;
 *   KERNEL (kind 2): deviceId FAKE_MSPTI_DEVICE, stream_id, start = max(now + 5000 (the API's end outside
 *     a burst, + 3000), previous end on that (device, stream)), end = start + dur_ns, same correlationId,
 *     interned type and name.
 * The subscriber callback RUNTIME/LAUNCH ("aclrtLaunchKernel") runs before (ENTER) and after (EXIT). */
API void fake_mspti_launch(const char *name, const char *type, uint32_t stream_id, uint64_t dur_ns)
{
    run_callback(MSPTI_CB_DOMAIN_RUNTIME, MSPTI_CBID_RUNTIME_LAUNCH, MSPTI_API_ENTER, "aclrtLaunchKernel");
    uint64_t corr = __atomic_add_fetch(&g_correlation, 1, __ATOMIC_ACQ_REL);
    uint64_t t0 = now_ns();
    uint64_t api_end = t0 + 2000; /* nominal: the kernel is scheduled from it, burst or not */
    /* This thread's previous API record ended at t_api_end: a real thread's API calls follow each other, so
     * a burst of launches closer than 2000 ns apart is stamped back to back instead of overlapping (the
     * kernels' timeline, and so the benchmarks' device data, is as before). */
    static __thread uint64_t t_api_end;
    uint64_t api_start = t0 < t_api_end ? t_api_end : t0;
    uint32_t dev = device_id();

    emit_external_correlations(corr);

    const int api_kinds[2] = {MSPTI_ACTIVITY_KIND_API, MSPTI_ACTIVITY_KIND_ACL_API};
    for (int i = 0; i < 2; i++) {
        if (kind_enabled(api_kinds[i])) {
            msptiActivityApi a;
            memset(&a, 0, sizeof a);
            a.kind = (msptiActivityKind)api_kinds[i];
            a.start = api_start;
            a.end = api_start + 2000;
            t_api_end = a.end;
            a.pt.processId = (uint32_t)getpid();
            a.pt.threadId = gettid_u32();
            a.correlationId = corr;
            a.name = "LaunchKernel";
            emit(&a, sizeof a);
        }
    }

    /* The stream timeline advances whenever a kernel is launched, recorded or not (it is the device). */
    uint64_t start = stream_schedule(dev, stream_id, api_end + 3000, dur_ns);
    if (kind_enabled(MSPTI_ACTIVITY_KIND_KERNEL)) {
        msptiActivityKernel k;
        memset(&k, 0, sizeof k);
        k.kind = MSPTI_ACTIVITY_KIND_KERNEL;
        k.start = start;
        k.end = start + dur_ns;
        k.ds.deviceId = dev;
        k.ds.streamId = stream_id;
        k.correlationId = corr;
        k.type = intern(type, "KERNEL_AICORE");
        k.name = intern(name, "unknown");
        misbehave_in_kernel(&k);
        emit(&k, sizeof k);
    }
    run_callback(MSPTI_CB_DOMAIN_RUNTIME, MSPTI_CBID_RUNTIME_LAUNCH, MSPTI_API_EXIT, "aclrtLaunchKernel");
}

/* One collective on (FAKE_MSPTI_DEVICE, stream_id): start = max(now + 5000, previous end on the stream),
 * end = start + dur_ns. HCCL record (kind 4): bandWidth 12.5 GB/s, name, commName "group0".
 * COMMUNICATION record (kind 9): same times, dataType FP16, count 1024, algType "RING", name, commName
 * "group0", a new correlationId. Subscriber callback HCCL/ALLREDUCE ("HcclAllReduce") ENTER/EXIT. */
API void fake_mspti_hccl(const char *name, uint32_t stream_id, uint64_t dur_ns)
{
    run_callback(MSPTI_CB_DOMAIN_HCCL, MSPTI_CBID_HCCL_ALLREDUCE, MSPTI_API_ENTER, "HcclAllReduce");
    uint64_t corr = __atomic_add_fetch(&g_correlation, 1, __ATOMIC_ACQ_REL);
    uint32_t dev = device_id();
    uint64_t t0 = now_ns();
    uint64_t start = stream_schedule(dev, stream_id, t0 + 5000, dur_ns);
    const char *n = intern(name, "hcom_allReduce_");
    if (kind_enabled(MSPTI_ACTIVITY_KIND_HCCL)) {
        msptiActivityHccl h;
        memset(&h, 0, sizeof h);
        h.kind = MSPTI_ACTIVITY_KIND_HCCL;
        h.start = start;
        h.end = start + dur_ns;
        h.ds.deviceId = dev;
        h.ds.streamId = stream_id;
        h.bandWidth = 12.5;
        h.name = n;
        h.commName = "group0";
        emit(&h, sizeof h);
    }
    if (kind_enabled(MSPTI_ACTIVITY_KIND_COMMUNICATION)) {
        msptiActivityCommunication c;
        memset(&c, 0, sizeof c);
        c.kind = MSPTI_ACTIVITY_KIND_COMMUNICATION;
        c.dataType = MSPTI_ACTIVITY_COMMUNICATION_FP16;
        c.count = 1024;
        c.ds.deviceId = dev;
        c.ds.streamId = stream_id;
        c.start = start;
        c.end = start + dur_ns;
        c.algType = "RING";
        c.name = n;
        c.commName = "group0";
        c.correlationId = corr;
        emit(&c, sizeof c);
    }
    if (kind_enabled(MSPTI_ACTIVITY_KIND_NODE_API)) {
        /* MSPTI's CommunicationCalculator gives the communication record the correlation id of the
         * collective's node launch: its NODE_API record, named after the op, from this call's entry to its
         * return (so a marker after the call never falls inside it). */
        msptiActivityApi a;
        memset(&a, 0, sizeof a);
        a.kind = MSPTI_ACTIVITY_KIND_NODE_API;
        a.start = t0;
        a.end = now_ns();
        if (a.end <= t0) a.end = t0 + 1;
        a.pt.processId = (uint32_t)getpid();
        a.pt.threadId = gettid_u32();
        a.correlationId = corr;
        a.name = n;
        emit(&a, sizeof a);
    }
    run_callback(MSPTI_CB_DOMAIN_HCCL, MSPTI_CBID_HCCL_ALLREDUCE, MSPTI_API_EXIT, "HcclAllReduce");
}

/* A device allocation (release == 0) or release (release != 0) of `bytes`. MEMORY record (kind 5):
 * memoryOperationType ALLOCATION/RELEASE, memoryKind DEVICE, new correlationId, start = now,
 * end = now + 1000, address (allocations get fresh 2 MiB-aligned fake addresses; a release reports the
 * address of the most recent live allocation of the same size, else 0), processId, deviceId
 * FAKE_MSPTI_DEVICE, streamId MSPTI_INVALID_STREAM_ID. Callback RUNTIME/MALLOC or FREE. */
API void fake_mspti_memory(uint64_t bytes, int release)
{
    msptiCallbackId cbid = release ? MSPTI_CBID_RUNTIME_FREE : MSPTI_CBID_RUNTIME_MALLOC;
    const char *func = release ? "aclrtFree" : "aclrtMalloc";
    run_callback(MSPTI_CB_DOMAIN_RUNTIME, cbid, MSPTI_API_ENTER, func);
    uint64_t corr = __atomic_add_fetch(&g_correlation, 1, __ATOMIC_ACQ_REL);
    uint64_t address = 0;
    pthread_mutex_lock(&g_misc_mu);
    if (!release) {
        address = g_next_address;
        g_next_address += ((bytes + 0x1fffffull) & ~0x1fffffull) + 0x200000ull;
        if (g_nallocs < MAX_ALLOCS) {
            g_allocs[g_nallocs].address = address;
            g_allocs[g_nallocs].bytes = bytes;
            g_nallocs++;
        }
    } else {
        for (size_t i = g_nallocs; i-- > 0;) {
            if (g_allocs[i].bytes == bytes) {
                address = g_allocs[i].address;
                g_allocs[i] = g_allocs[--g_nallocs];
                break;
            }
        }
    }
    pthread_mutex_unlock(&g_misc_mu);
    if (kind_enabled(MSPTI_ACTIVITY_KIND_MEMORY)) {
        uint64_t t0 = now_ns();
        msptiActivityMemory m;
        memset(&m, 0, sizeof m);
        m.kind = MSPTI_ACTIVITY_KIND_MEMORY;
        m.memoryOperationType =
            release ? MSPTI_ACTIVITY_MEMORY_OPERATION_TYPE_RELEASE : MSPTI_ACTIVITY_MEMORY_OPERATION_TYPE_ALLOCATION;
        m.memoryKind = MSPTI_ACTIVITY_MEMORY_DEVICE;
        m.correlationId = corr;
        m.start = t0;
        m.end = t0 + 1000;
        m.address = address;
        m.bytes = bytes;
        m.processId = (uint32_t)getpid();
        m.deviceId = device_id();
        m.streamId = MSPTI_INVALID_STREAM_ID;
        emit(&m, sizeof m);
    }
    run_callback(MSPTI_CB_DOMAIN_RUNTIME, cbid, MSPTI_API_EXIT, func);
}

/* Duration of a copy/fill of `bytes` at 20 bytes/ns, at least 1 µs. */
static uint64_t transfer_ns(uint64_t bytes)
{
    uint64_t d = bytes / 20;
    return d < 1000 ? 1000 : d;
}

/* A synchronous host-to-device copy. MEMCPY record (kind 7): copyKind HTOD, bytes, start = now,
 * end = start + max(1000, bytes/20), deviceId FAKE_MSPTI_DEVICE, streamId 0, new correlationId,
 * isAsync 0. Callback RUNTIME/MEMCPY ("aclrtMemcpy"). */
API void fake_mspti_memcpy(uint64_t bytes)
{
    run_callback(MSPTI_CB_DOMAIN_RUNTIME, MSPTI_CBID_RUNTIME_MEMCPY, MSPTI_API_ENTER, "aclrtMemcpy");
    uint64_t corr = __atomic_add_fetch(&g_correlation, 1, __ATOMIC_ACQ_REL);
    if (kind_enabled(MSPTI_ACTIVITY_KIND_MEMCPY)) {
        uint64_t t0 = now_ns();
        msptiActivityMemcpy m;
        memset(&m, 0, sizeof m);
        m.kind = MSPTI_ACTIVITY_KIND_MEMCPY;
        m.copyKind = MSPTI_ACTIVITY_MEMCPY_KIND_HTOD;
        m.bytes = bytes;
        m.start = t0;
        m.end = t0 + transfer_ns(bytes);
        m.deviceId = device_id();
        m.streamId = 0;
        m.correlationId = corr;
        m.isAsync = 0;
        emit(&m, sizeof m);
    }
    run_callback(MSPTI_CB_DOMAIN_RUNTIME, MSPTI_CBID_RUNTIME_MEMCPY, MSPTI_API_EXIT, "aclrtMemcpy");
}

/* A synchronous device memset. MEMSET record (kind 6): value 0, bytes, times as for memcpy, deviceId
 * FAKE_MSPTI_DEVICE, streamId 0, new correlationId, isAsync 0. Callback RUNTIME/MEM_SET ("aclrtMemSet"). */
API void fake_mspti_memset(uint64_t bytes)
{
    run_callback(MSPTI_CB_DOMAIN_RUNTIME, MSPTI_CBID_RUNTIME_MEM_SET, MSPTI_API_ENTER, "aclrtMemSet");
    uint64_t corr = __atomic_add_fetch(&g_correlation, 1, __ATOMIC_ACQ_REL);
    if (kind_enabled(MSPTI_ACTIVITY_KIND_MEMSET)) {
        uint64_t t0 = now_ns();
        msptiActivityMemset m;
        memset(&m, 0, sizeof m);
        m.kind = MSPTI_ACTIVITY_KIND_MEMSET;
        m.value = 0;
        m.bytes = bytes;
        m.start = t0;
        m.end = t0 + transfer_ns(bytes);
        m.deviceId = device_id();
        m.streamId = 0;
        m.correlationId = corr;
        m.isAsync = 0;
        emit(&m, sizeof m);
    }
    run_callback(MSPTI_CB_DOMAIN_RUNTIME, MSPTI_CBID_RUNTIME_MEM_SET, MSPTI_API_EXIT, "aclrtMemSet");
}

/* A host mstx marker in the default domain (as MSPTI records mstxMarkA / mstxRangeStartA / mstxRangeEnd
 * with a NULL stream). MARKER record (kind 1): flag as given, sourceKind HOST, timestamp now, objectId.pt
 * = {pid, tid}. id: INSTANTANEOUS (and any other flag) → a new id (process-wide counter from 1); START →
 * a new id, remembered on this thread; END → the id of this thread's most recent unmatched START (a new
 * id if there is none). §3.4: "End markers carry name="" and domain=""", the others the given name
 * (interned) and domain "default". Nothing is recorded while the domain "default" is disabled by
 * msptiActivityDisableMarkerDomain. */
API void fake_mspti_marker(const char *name, int flag)
{
    if (!kind_enabled(MSPTI_ACTIVITY_KIND_MARKER)) {
        return;
    }
    pthread_mutex_lock(&g_mu);
    int disabled = 0;
    for (size_t i = 0; i < g_ndisabled_domains; i++) {
        disabled |= strcmp(g_disabled_domains[i], "default") == 0;
    }
    pthread_mutex_unlock(&g_mu);
    if (disabled) {
        return;
    }
    uint64_t id;
    if (flag == MSPTI_ACTIVITY_FLAG_MARKER_END && t_marker_depth > 0) {
        id = t_marker_ids[--t_marker_depth];
    } else {
        id = __atomic_add_fetch(&g_marker_id, 1, __ATOMIC_ACQ_REL);
        if (flag == MSPTI_ACTIVITY_FLAG_MARKER_START && t_marker_depth < MARKER_DEPTH) {
            t_marker_ids[t_marker_depth++] = id;
        }
    }
    msptiActivityMarker m;
    memset(&m, 0, sizeof m);
    m.kind = MSPTI_ACTIVITY_KIND_MARKER;
    m.flag = (msptiActivityFlag)flag;
    m.sourceKind = MSPTI_ACTIVITY_SOURCE_KIND_HOST;
    m.timestamp = now_ns();
    m.id = id;
    m.objectId.pt.processId = (uint32_t)getpid();
    m.objectId.pt.threadId = gettid_u32();
    if (flag == MSPTI_ACTIVITY_FLAG_MARKER_END) {
        m.name = "";
        m.domain = "";
    } else {
        m.name = intern(name, "");
        m.domain = "default";
    }
    emit(&m, sizeof m);
}

/* Ends every FAKE_MSPTI_HANG hang, now and later. */
API int fake_mspti_release(void)
{
    hang_release();
    return 0;
}

/* FAKE_MSPTI_HANG hangs begun so far. */
API int fake_mspti_hangs(void) { return hangs_begun(); }

/* Records the fake dropped: no buffer (no callbacks registered, request returned *buffer NULL) or the
 * record did not fit the current buffer. */
API uint64_t fake_mspti_dropped(void) { return __atomic_load_n(&g_dropped, __ATOMIC_ACQUIRE); }

/* The tally of buffers of one size (see tally()): slot 0..7 in order of first use; what 0 → 1 if the slot
 * is used, 1 → the size, 2 → requests that returned it, 3 → buffers of it handed to complete, 4 → records in
 * them, 5 → their valid bytes. Other values → 0. */
API uint64_t fake_mspti_buffers(int slot, int what)
{
    if (slot < 0 || slot >= TALLY_SLOTS) {
        return 0;
    }
    pthread_mutex_lock(&g_tally_mu);
    struct tally t = g_tally[slot];
    pthread_mutex_unlock(&g_tally_mu);
    uint64_t v[6] = {(uint64_t)t.used, t.size, t.requested, t.delivered, t.records, t.bytes};
    return what >= 0 && what < 6 ? v[what] : 0;
}

/* Records written into a buffer: kind 1..12 → intact records of that kind; kind 0 → every record
 * written, including the ones FAKE_MSPTI_MALFORMED corrupted (those count under no kind 1..12). Other
 * values → 0. */
API uint64_t fake_mspti_emitted(int kind)
{
    if (kind < 0 || kind > KIND_MAX) {
        return 0;
    }
    return __atomic_load_n(&g_emitted[kind], __ATOMIC_ACQUIRE);
}

/* FAKE_MSPTI_FORK_COMPLETE=1: completes the current buffer in a fork prepare handler (a vendor fork handler
 * that flushes). Runs on the forking thread while the handlers registered after the fake's hold their locks. */
static uint64_t g_fork_completions;

static void fork_complete_prepare(void)
{
    if (!env_is("FAKE_MSPTI_FORK_COMPLETE", "1")) {
        return;
    }
    pthread_mutex_lock(&g_buf_mu);
    struct abuf *cur = g_cur;
    g_cur = NULL;
    pthread_mutex_unlock(&g_buf_mu);
    if (cur != NULL) {
        __atomic_fetch_add(&g_fork_completions, 1, __ATOMIC_ACQ_REL);
        deliver(cur);
    }
}

/* Buffers completed by fork_complete_prepare so far. */
API int fake_mspti_fork_completions(void) { return (int)__atomic_load_n(&g_fork_completions, __ATOMIC_ACQUIRE); }

/* FAKE_MSPTI_LATE: the held buffer (filled at the first FlushAll, completed by fake_mspti_deliver_late). */
static struct abuf *g_late;
static int g_late_made;

static void make_late_buffer(void)
{
    long long n = env_ll("FAKE_MSPTI_LATE", 0);
    msptiBuffersCallbackRequestFunc request = __atomic_load_n(&g_request, __ATOMIC_ACQUIRE);
    if (n <= 0 || request == NULL || __atomic_exchange_n(&g_late_made, 1, __ATOMIC_ACQ_REL)) {
        return;
    }
    struct abuf *ab = calloc(1, sizeof *ab);
    if (ab == NULL) {
        return;
    }
    request(&ab->buf, &ab->size, &ab->max_records);
    tally(ab->size, 1, 0, 0, 0);
    __atomic_fetch_add(&g_pending, 1, __ATOMIC_ACQ_REL);
    uint64_t t = now_ns();
    for (long long i = 0; i < n && ab->buf != NULL && ab->valid + sizeof(msptiActivityKernel) <= ab->size; i++) {
        msptiActivityKernel k;
        memset(&k, 0, sizeof k);
        k.kind = MSPTI_ACTIVITY_KIND_KERNEL;
        k.start = t + (uint64_t)i;
        k.end = k.start + 1;
        k.ds.deviceId = device_id();
        k.ds.streamId = 9;
        k.correlationId = __atomic_add_fetch(&g_correlation, 1, __ATOMIC_ACQ_REL);
        k.type = "KERNEL_AICORE";
        k.name = "LateKernel";
        memcpy(ab->buf + ab->valid, &k, sizeof k);
        ab->valid += sizeof k;
        ab->records++;
    }
    __atomic_store_n(&g_late, ab, __ATOMIC_RELEASE);
}

/* Completes the FAKE_MSPTI_LATE buffer on the calling thread; returns its records (0: none held). */
API int fake_mspti_deliver_late(void)
{
    struct abuf *ab = __atomic_exchange_n(&g_late, NULL, __ATOMIC_ACQ_REL);
    if (ab == NULL) {
        return 0;
    }
    int n = (int)(ab->valid / sizeof(msptiActivityKernel));
    deliver(ab);
    return n;
}

/* fake_mspti_churn: a thread completing buffers continuously. */
#define CHURN_THREADS 4
static pthread_t g_churn[CHURN_THREADS];
static int g_churn_on, g_churn_stop, g_churn_paused;

static void *churn_main(void *arg)
{
    (void)arg;
    while (!__atomic_load_n(&g_churn_stop, __ATOMIC_ACQUIRE)) {
        if (__atomic_load_n(&g_churn_paused, __ATOMIC_ACQUIRE)) {
            sleep_ms(1);
            continue;
        }
        /* Few records per buffer: many completions, little data. */
        for (int i = 0; i < 4; i++) {
            fake_mspti_launch("Churn", "AI_CORE", 6, 1000);
        }
        msptiActivityFlushAll(0);
    }
    return NULL;
}

API int fake_mspti_churn(void)
{
    if (g_churn_on == 0) {
        __atomic_store_n(&g_churn_stop, 0, __ATOMIC_RELEASE);
        while (g_churn_on < CHURN_THREADS && pthread_create(&g_churn[g_churn_on], NULL, churn_main, NULL) == 0) {
            g_churn_on++;
        }
    }
    return 0;
}

/* Pauses / resumes the churn threads (no records while paused). */
API int fake_mspti_churn_pause(void)
{
    __atomic_store_n(&g_churn_paused, 1, __ATOMIC_RELEASE);
    return 0;
}

API int fake_mspti_churn_resume(void)
{
    __atomic_store_n(&g_churn_paused, 0, __ATOMIC_RELEASE);
    return 0;
}

API int fake_mspti_churn_stop(void)
{
    __atomic_store_n(&g_churn_stop, 1, __ATOMIC_RELEASE);
    for (; g_churn_on > 0; g_churn_on--) {
        pthread_join(g_churn[g_churn_on - 1], NULL);
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------------
 * Process hooks
 * ---------------------------------------------------------------------------------------------- */

static void init_sync_objects(void)
{
    pthread_mutexattr_t ma;
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_RECURSIVE); /* MSPTI's buf_mtx_ is a recursive_mutex */
    pthread_mutex_init(&g_buf_mu, &ma);
    pthread_mutexattr_destroy(&ma);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&g_q_cv, &ca);
    pthread_condattr_destroy(&ca);
}

/* fork: hold the plain mutexes across fork so the child never inherits one locked by a thread it does
 * not have; the child unlocks them. The recursive g_buf_mu is not held across fork (glibc refuses to
 * unlock a recursive mutex in the child — EPERM, its owner tid changed — and re-initialising a mutex the
 * forking thread holds confuses ThreadSanitizer): the child re-initialises it, since no thread of the
 * child can own it. A record another parent thread was copying at that moment is harmless: `valid` only
 * advances after the copy. The condition variable is re-initialised too (its waiter, the manager, does
 * not exist in the child). The child forgets the threads it does not have: the manager is restarted on
 * the next RegisterCallbacks or retirement; completion threads in flight are lost with their buffers. */
static void atfork_prepare(void)
{
    pthread_mutex_lock(&g_mu);
    pthread_mutex_lock(&g_ext_mu);
    pthread_mutex_lock(&g_misc_mu);
    pthread_mutex_lock(&g_q_mu);
}

static void atfork_parent(void)
{
    pthread_mutex_unlock(&g_q_mu);
    pthread_mutex_unlock(&g_misc_mu);
    pthread_mutex_unlock(&g_ext_mu);
    pthread_mutex_unlock(&g_mu);
}

static void atfork_child(void)
{
    init_sync_objects(); /* g_buf_mu and g_q_cv */
    pthread_mutex_unlock(&g_q_mu);
    pthread_mutex_unlock(&g_misc_mu);
    pthread_mutex_unlock(&g_ext_mu);
    pthread_mutex_unlock(&g_mu);
    for (struct worker *w = g_workers; w != NULL; w = w->next) {
        __atomic_fetch_sub(&g_pending, 1, __ATOMIC_ACQ_REL); /* that buffer is gone with its thread */
    }
    g_workers = NULL; /* their memory is leaked on purpose: the threads do not exist here */
    g_manager_running = 0;
}

__attribute__((constructor)) static void fake_mspti_init(void)
{
    init_sync_objects();
    pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
    /* Registered last, so its prepare runs first among the fake's (before g_q_mu etc. are held). */
    pthread_atfork(fork_complete_prepare, NULL, NULL);
}

/* At unload (process exit, or a dlclose that really unloads): "exit subscribed=<0|1> enabled=0x<mask>
 * pending_buffers=<n>", mask bit k = kind k enabled, n = buffers handed out by request that never came
 * back through complete (queued, current, or in a completion thread still running). Then stops the
 * manager and waits (bounded, 2 s in all) for it and for completion threads, as MSPTI's destructor joins
 * them — the code they run must stay mapped. */
__attribute__((destructor)) static void fake_mspti_exit(void)
{
    log_line("exit subscribed=%d enabled=0x%x pending_buffers=%llu", __atomic_load_n(&g_subscribed, __ATOMIC_ACQUIRE),
             __atomic_load_n(&g_enabled, __ATOMIC_ACQUIRE),
             (unsigned long long)__atomic_load_n(&g_pending, __ATOMIC_ACQUIRE));
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 2;
    if (pthread_mutex_timedlock(&g_q_mu, &deadline) != 0) {
        return;
    }
    int running = g_manager_running;
    g_manager_stop = 1;
    pthread_cond_signal(&g_q_cv);
    struct worker *workers = g_workers;
    g_workers = NULL;
    pthread_mutex_unlock(&g_q_mu);
    if (running && pthread_timedjoin_np(g_manager, NULL, &deadline) == 0) {
        g_manager_running = 0;
    }
    for (struct worker *w = workers; w != NULL; w = w->next) {
        if (pthread_timedjoin_np(w->thread, NULL, &deadline) != 0) {
            break;
        }
    }
}
