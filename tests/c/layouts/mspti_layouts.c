/* Prints the layout of MSPTI's published activity records, as the C compiler lays them out, for
 * tests/layouts.rs to compare with src/backend/mspti/records.rs:
 *   size <record> <sizeof>
 *   field <record> <member> <offsetof> <sizeof member>
 *   kind <n> <record>          (the record msptiActivityGetNextRecord steps by for kind n)
 *   const <name> <value>       (msptiActivityKind and msptiResult members)
 * Declarations: tests/c/layouts/mspti_published.h (a transcription of the published header), or with
 * -DMSPTI_REAL_HEADER the published mspti_activity.h itself (-I its directory).
 */
#include <stddef.h>
#include <stdio.h>

#ifdef MSPTI_REAL_HEADER
#include "mspti_activity.h"
#define SOURCE "published mspti_activity.h"
#else
#include "mspti_published.h"
#define SOURCE "transcription tests/c/layouts/mspti_published.h"
#endif

#define SIZE(T) printf("size %s %zu\n", #T, sizeof(T))
#define FIELD(T, m) printf("field %s %s %zu %zu\n", #T, #m, offsetof(T, m), sizeof(((T *)0)->m))

int main(void)
{
    printf("source %s\n", SOURCE);

    SIZE(msptiActivityMarker);
    FIELD(msptiActivityMarker, kind);
    FIELD(msptiActivityMarker, flag);
    FIELD(msptiActivityMarker, sourceKind);
    FIELD(msptiActivityMarker, timestamp);
    FIELD(msptiActivityMarker, id);
    FIELD(msptiActivityMarker, objectId);
    FIELD(msptiActivityMarker, name);
    FIELD(msptiActivityMarker, domain);

    SIZE(msptiActivityApi);
    FIELD(msptiActivityApi, kind);
    FIELD(msptiActivityApi, start);
    FIELD(msptiActivityApi, end);
    FIELD(msptiActivityApi, pt.processId);
    FIELD(msptiActivityApi, pt.threadId);
    FIELD(msptiActivityApi, correlationId);
    FIELD(msptiActivityApi, name);

    SIZE(msptiActivityKernel);
    FIELD(msptiActivityKernel, kind);
    FIELD(msptiActivityKernel, start);
    FIELD(msptiActivityKernel, end);
    FIELD(msptiActivityKernel, ds.deviceId);
    FIELD(msptiActivityKernel, ds.streamId);
    FIELD(msptiActivityKernel, correlationId);
    FIELD(msptiActivityKernel, type);
    FIELD(msptiActivityKernel, name);

    SIZE(msptiActivityHccl);
    FIELD(msptiActivityHccl, kind);
    FIELD(msptiActivityHccl, start);
    FIELD(msptiActivityHccl, end);
    FIELD(msptiActivityHccl, ds.deviceId);
    FIELD(msptiActivityHccl, ds.streamId);
    FIELD(msptiActivityHccl, bandWidth);
    FIELD(msptiActivityHccl, name);
    FIELD(msptiActivityHccl, commName);

    SIZE(msptiActivityMemory);
    FIELD(msptiActivityMemory, kind);
    FIELD(msptiActivityMemory, memoryOperationType);
    FIELD(msptiActivityMemory, memoryKind);
    FIELD(msptiActivityMemory, correlationId);
    FIELD(msptiActivityMemory, start);
    FIELD(msptiActivityMemory, end);
    FIELD(msptiActivityMemory, address);
    FIELD(msptiActivityMemory, bytes);
    FIELD(msptiActivityMemory, processId);
    FIELD(msptiActivityMemory, deviceId);
    FIELD(msptiActivityMemory, streamId);

    SIZE(msptiActivityMemset);
    FIELD(msptiActivityMemset, kind);
    FIELD(msptiActivityMemset, value);
    FIELD(msptiActivityMemset, bytes);
    FIELD(msptiActivityMemset, start);
    FIELD(msptiActivityMemset, end);
    FIELD(msptiActivityMemset, deviceId);
    FIELD(msptiActivityMemset, streamId);
    FIELD(msptiActivityMemset, correlationId);
    FIELD(msptiActivityMemset, isAsync);

    SIZE(msptiActivityMemcpy);
    FIELD(msptiActivityMemcpy, kind);
    FIELD(msptiActivityMemcpy, copyKind);
    FIELD(msptiActivityMemcpy, bytes);
    FIELD(msptiActivityMemcpy, start);
    FIELD(msptiActivityMemcpy, end);
    FIELD(msptiActivityMemcpy, deviceId);
    FIELD(msptiActivityMemcpy, streamId);
    FIELD(msptiActivityMemcpy, correlationId);
    FIELD(msptiActivityMemcpy, isAsync);

    SIZE(msptiActivityExternalCorrelation);
    FIELD(msptiActivityExternalCorrelation, kind);
    FIELD(msptiActivityExternalCorrelation, externalKind);
    FIELD(msptiActivityExternalCorrelation, externalId);
    FIELD(msptiActivityExternalCorrelation, correlationId);

    SIZE(msptiActivityCommunication);
    FIELD(msptiActivityCommunication, kind);
    FIELD(msptiActivityCommunication, dataType);
    FIELD(msptiActivityCommunication, count);
    FIELD(msptiActivityCommunication, ds.deviceId);
    FIELD(msptiActivityCommunication, ds.streamId);
    FIELD(msptiActivityCommunication, start);
    FIELD(msptiActivityCommunication, end);
    FIELD(msptiActivityCommunication, algType);
    FIELD(msptiActivityCommunication, name);
    FIELD(msptiActivityCommunication, commName);
    FIELD(msptiActivityCommunication, correlationId);

    /* activity_manager.cpp, activityKindDataSize */
#define KIND(k, T) printf("kind %d %s\n", (int)(k), #T)
    KIND(MSPTI_ACTIVITY_KIND_MARKER, msptiActivityMarker);
    KIND(MSPTI_ACTIVITY_KIND_KERNEL, msptiActivityKernel);
    KIND(MSPTI_ACTIVITY_KIND_API, msptiActivityApi);
    KIND(MSPTI_ACTIVITY_KIND_HCCL, msptiActivityHccl);
    KIND(MSPTI_ACTIVITY_KIND_MEMORY, msptiActivityMemory);
    KIND(MSPTI_ACTIVITY_KIND_MEMSET, msptiActivityMemset);
    KIND(MSPTI_ACTIVITY_KIND_MEMCPY, msptiActivityMemcpy);
    KIND(MSPTI_ACTIVITY_KIND_EXTERNAL_CORRELATION, msptiActivityExternalCorrelation);
    KIND(MSPTI_ACTIVITY_KIND_COMMUNICATION, msptiActivityCommunication);
    KIND(MSPTI_ACTIVITY_KIND_ACL_API, msptiActivityApi);
    KIND(MSPTI_ACTIVITY_KIND_NODE_API, msptiActivityApi);
    KIND(MSPTI_ACTIVITY_KIND_RUNTIME_API, msptiActivityApi);

#define CONST(c) printf("const %s %lld\n", #c, (long long)(c))
    CONST(MSPTI_ACTIVITY_KIND_MARKER);
    CONST(MSPTI_ACTIVITY_KIND_KERNEL);
    CONST(MSPTI_ACTIVITY_KIND_API);
    CONST(MSPTI_ACTIVITY_KIND_HCCL);
    CONST(MSPTI_ACTIVITY_KIND_MEMORY);
    CONST(MSPTI_ACTIVITY_KIND_MEMSET);
    CONST(MSPTI_ACTIVITY_KIND_MEMCPY);
    CONST(MSPTI_ACTIVITY_KIND_EXTERNAL_CORRELATION);
    CONST(MSPTI_ACTIVITY_KIND_COMMUNICATION);
    CONST(MSPTI_ACTIVITY_KIND_ACL_API);
    CONST(MSPTI_ACTIVITY_KIND_NODE_API);
    CONST(MSPTI_ACTIVITY_KIND_RUNTIME_API);
    CONST(MSPTI_SUCCESS);
    CONST(MSPTI_ERROR_INVALID_PARAMETER);
    CONST(MSPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED);
    CONST(MSPTI_ERROR_MAX_LIMIT_REACHED);
    CONST(MSPTI_ERROR_DEVICE_OFFLINE);
    CONST(MSPTI_ERROR_QUEUE_EMPTY);
    CONST(MSPTI_ERROR_WITHOUT_LD_PRELOAD);
    CONST(MSPTI_ERROR_INNER);
    return 0;
}
