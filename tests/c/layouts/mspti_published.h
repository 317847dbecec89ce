/* The MSPTI activity record declarations as PUBLISHED by Huawei, transcribed (field names, types, order and
 * packing only; no comments or code of the original) for tests/layouts.rs:
 *
 *   source:  https://github.com/Ascend/mspti, csrc/include/mspti_activity.h
 *            (snapshot a38916051d9a10467591f05c564f2f80985ee292, 2026-07-23; the file last changed in
 *            eb42c7f5409a06cfd32373e2f0ba30a56c775c2b)
 *   licence: Mulan Permissive Software License v2 (http://license.coscl.org.cn/MulanPSL2),
 *            "Copyright (c) 2025 Huawei Technologies Co., Ltd. This file is part of the MindStudio project."
 *   kind → record: the table `activityKindDataSize` in the same repository's
 *            csrc/activity/activity_manager.cpp (msptiActivityGetNextRecord steps by it).
 *
 * It is written from that header, NOT from src/backend/mspti/records.rs, tests/c/fake_mspti.c or
 * docs/ascend-api.md, so it is a second source for their layouts. Compile
 * tests/c/layouts/mspti_layouts.c with -DMSPTI_REAL_HEADER -I<dir holding mspti_activity.h and
 * mspti_result.h> to use the published file itself instead (NPUPROF_MSPTI_INCLUDE in tests/layouts.rs).
 */
#ifndef NPUPROF_MSPTI_PUBLISHED_H
#define NPUPROF_MSPTI_PUBLISHED_H

#include <stdint.h>

/* GCC branch of the header's PACKED_ALIGNMENT. */
#define PUB_PACKED __attribute__((__packed__)) __attribute__((aligned(8)))

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
} msptiResult; /* mspti_result.h of the same snapshot */

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
    MSPTI_ACTIVITY_KIND_FORCE_INT = 0x7fffffff
} msptiActivityKind;
/* The value enums in full (tests/layouts.rs compares the fake's values with these; the repository's later
 * version 01ce25b9 of the header has the same values and adds MSPTI_ACTIVITY_KIND_OVERHEAD = 13). */
typedef enum {
    MSPTI_ACTIVITY_FLAG_NONE = 0,
    MSPTI_ACTIVITY_FLAG_MARKER_INSTANTANEOUS = 1 << 0,
    MSPTI_ACTIVITY_FLAG_MARKER_START = 1 << 1,
    MSPTI_ACTIVITY_FLAG_MARKER_END = 1 << 2,
    MSPTI_ACTIVITY_FLAG_MARKER_INSTANTANEOUS_WITH_DEVICE = 1 << 3,
    MSPTI_ACTIVITY_FLAG_MARKER_START_WITH_DEVICE = 1 << 4,
    MSPTI_ACTIVITY_FLAG_MARKER_END_WITH_DEVICE = 1 << 5
} msptiActivityFlag;
typedef enum { MSPTI_ACTIVITY_SOURCE_KIND_HOST = 0, MSPTI_ACTIVITY_SOURCE_KIND_DEVICE = 1 } msptiActivitySourceKind;
typedef enum {
    MSPTI_ACTIVITY_MEMORY_OPERATION_TYPE_ALLOCATION = 0,
    MSPTI_ACTIVITY_MEMORY_OPERATION_TYPE_RELEASE = 1
} msptiActivityMemoryOperationType;
typedef enum {
    MSPTI_ACTIVITY_MEMORY_UNKNOWN = 0,
    MSPTI_ACTIVITY_MEMORY_DEVICE = 1,
    MSPTI_ACTIVITY_MEMORY_HOST = 2,
    MSPTI_ACTIVITY_MEMORY_MANAGED = 3
} msptiActivityMemoryKind;
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
typedef enum {
    MSPTI_ACTIVITY_COMMUNICATION_INT8 = 0,
    MSPTI_ACTIVITY_COMMUNICATION_INT16 = 1,
    MSPTI_ACTIVITY_COMMUNICATION_INT32 = 2,
    MSPTI_ACTIVITY_COMMUNICATION_FP16 = 3,
    MSPTI_ACTIVITY_COMMUNICATION_FP32 = 4,
    MSPTI_ACTIVITY_COMMUNICATION_INT64 = 5,
    MSPTI_ACTIVITY_COMMUNICATION_UINT64 = 6,
    MSPTI_ACTIVITY_COMMUNICATION_UINT8 = 7,
    MSPTI_ACTIVITY_COMMUNICATION_UINT16 = 8,
    MSPTI_ACTIVITY_COMMUNICATION_UINT32 = 9,
    MSPTI_ACTIVITY_COMMUNICATION_FP64 = 10,
    MSPTI_ACTIVITY_COMMUNICATION_BFP16 = 11,
    MSPTI_ACTIVITY_COMMUNICATION_INT128 = 12,
    MSPTI_ACTIVITY_COMMUNICATION_HIF8 = 14,
    MSPTI_ACTIVITY_COMMUNICATION_FP8E4M3 = 15,
    MSPTI_ACTIVITY_COMMUNICATION_FP8E5M2 = 16,
    MSPTI_ACTIVITY_COMMUNICATION_FP8E8M0 = 17,
    MSPTI_ACTIVITY_COMMUNICATION_INVALID_TYPE = 0x0000FFFF
} msptiCommunicationDataType;

typedef union PUB_PACKED {
    struct { uint32_t processId; uint32_t threadId; } pt;
    struct { uint32_t deviceId; uint32_t streamId; } ds;
} msptiObjectId;

typedef struct PUB_PACKED {
    msptiActivityKind kind;
    msptiActivityFlag flag;
    msptiActivitySourceKind sourceKind;
    uint64_t timestamp;
    uint64_t id;
    msptiObjectId objectId;
    const char *name;
    const char *domain;
} msptiActivityMarker;

typedef struct PUB_PACKED {
    msptiActivityKind kind;
    uint64_t start;
    uint64_t end;
    struct { uint32_t processId; uint32_t threadId; } pt;
    uint64_t correlationId;
    const char *name;
} msptiActivityApi;

typedef struct PUB_PACKED {
    msptiActivityKind kind;
    uint64_t start;
    uint64_t end;
    struct { uint32_t deviceId; uint32_t streamId; } ds;
    uint64_t correlationId;
    const char *type;
    const char *name;
} msptiActivityKernel;

typedef struct PUB_PACKED {
    msptiActivityKind kind;
    uint64_t start;
    uint64_t end;
    struct { uint32_t deviceId; uint32_t streamId; } ds;
    double bandWidth;
    const char *name;
    const char *commName;
} msptiActivityHccl;

typedef struct PUB_PACKED {
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

typedef struct PUB_PACKED {
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

typedef struct PUB_PACKED {
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

typedef struct PUB_PACKED {
    msptiActivityKind kind;
    msptiExternalCorrelationKind externalKind;
    uint64_t externalId;
    uint64_t correlationId;
} msptiActivityExternalCorrelation;

typedef struct PUB_PACKED {
    msptiActivityKind kind;
    msptiCommunicationDataType dataType;
    uint64_t count;
    struct { uint32_t deviceId; uint32_t streamId; } ds;
    uint64_t start;
    uint64_t end;
    const char *algType;
    const char *name;
    const char *commName;
    uint64_t correlationId;
} msptiActivityCommunication;

/* The callback side's values, for tests/layouts.rs's comparison with the fake: mspti_callback.h and
 * mspti_cbid.h of the same project (the enumerators the fake uses; the enums hold more). */
#define MSPTI_INVALID_STREAM_ID 0xFFFFFFFFu
typedef enum {
    MSPTI_CB_DOMAIN_INVALID = 0,
    MSPTI_CB_DOMAIN_RUNTIME = 1,
    MSPTI_CB_DOMAIN_HCCL = 2,
    MSPTI_CB_DOMAIN_SIZE = 3,
    MSPTI_CB_DOMAIN_FORCE_INT = 0x7fffffff
} msptiCallbackDomain;
typedef enum { MSPTI_API_ENTER = 0, MSPTI_API_EXIT = 1, MSPTI_API_CBSITE_FORCE_INT = 0x7fffffff } msptiApiCallbackSite;
typedef enum {
    MSPTI_CBID_RUNTIME_LAUNCH = 10,
    MSPTI_CBID_RUNTIME_MALLOC = 15,
    MSPTI_CBID_RUNTIME_FREE = 16,
    MSPTI_CBID_RUNTIME_MEMCPY = 22,
    MSPTI_CBID_RUNTIME_MEM_SET = 27,
    MSPTI_CBID_RUNTIME_SIZE = 37
} msptiCallbackIdRuntime;
typedef enum { MSPTI_CBID_HCCL_ALLREDUCE = 1, MSPTI_CBID_HCCL_SIZE = 13 } msptiCallbackIdHccl;

#endif
