// The feature record of aclprofGetSupportedFeatures[V2] as the frameworks that read it declare it, built by
// a C++ compiler, for tests/layouts.rs: the bytes of a real array of these objects (vtable pointers
// included) must decode with src/backend/acl/features.rs's 272-byte layout.
//
// The declarations below transcribe the data members and virtual destructors (nothing else) of:
//   torch_npu: https://github.com/Ascend/pytorch, torch_npu/csrc/profiler/feature_mgr.h (commit
//              2331cfa6802fe8751a2ef00e30e81db390e7f6d0; BSD 3-Clause licence), structs FeatureInfo and
//              FeatureRecord; FeatureMgr::FormatFeatureList casts the list to FeatureRecord*.
//   MindSpore: FeatureMgr in its Ascend profiler plugin (feature_mgr.h, namespace
//              mindspore::profiler::ascend, "Copyright 2025 Huawei Technologies Co., Ltd", Apache-2.0):
//              the same two structs, member for member.
// No CANN header declares the record (the acl_prof.h of the torch-npu wheel declares neither it nor the
// function), so these two framework copies are the only published sources; they agree.
//
// Usage: feature_record OUT   writes 4 records to OUT and prints
//   size <sizeof FeatureRecord>
//   offset <member> <offset>   (measured on an object: offsetof is not defined for polymorphic classes)
#include <cstddef>
#include <cstdio>
#include <cstring>

struct FeatureInfo {
    char compatibility[16] = "\0";
    char featureVersion[16] = "\0";
    char affectedComponent[16] = "\0";
    char affectedComponentVersion[16] = "\0";
    char infoLog[128] = "\0";
    FeatureInfo() = default;
    virtual ~FeatureInfo() {}
};

struct FeatureRecord {
    char featureName[64] = "\0";
    FeatureInfo info;
    FeatureRecord() = default;
    virtual ~FeatureRecord() {}
};

static void put(char *dst, size_t cap, const char *s)
{
    std::snprintf(dst, cap, "%s", s);
}

static void offset(const FeatureRecord &r, const char *what, const void *p)
{
    std::printf("offset %s %td\n", what, static_cast<const char *>(p) - reinterpret_cast<const char *>(&r));
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        return 2;
    }
    static FeatureRecord recs[4];
    const char *names[4] = {"ATTR", "MemoryAccess", "AICORE_SHAPE", "TaskTime_V2"};
    for (int i = 0; i < 4; i++) {
        put(recs[i].featureName, sizeof recs[i].featureName, names[i]);
        put(recs[i].info.compatibility, sizeof recs[i].info.compatibility, "1");
        put(recs[i].info.featureVersion, sizeof recs[i].info.featureVersion, "1");
        put(recs[i].info.affectedComponent, sizeof recs[i].info.affectedComponent, "all");
        put(recs[i].info.affectedComponentVersion, sizeof recs[i].info.affectedComponentVersion, "all");
        put(recs[i].info.infoLog, sizeof recs[i].info.infoLog, "feature built by feature_record.cpp");
    }
    const FeatureRecord &r = recs[0];
    std::printf("size %zu\n", sizeof(FeatureRecord));
    offset(r, "featureName", r.featureName);
    offset(r, "info", &r.info);
    offset(r, "info.compatibility", r.info.compatibility);
    offset(r, "info.featureVersion", r.info.featureVersion);
    offset(r, "info.affectedComponent", r.info.affectedComponent);
    offset(r, "info.affectedComponentVersion", r.info.affectedComponentVersion);
    offset(r, "info.infoLog", r.info.infoLog);
    std::FILE *f = std::fopen(argv[1], "wb");
    if (f == nullptr || std::fwrite(static_cast<const void *>(recs), sizeof recs, 1, f) != 1 ||
        std::fclose(f) != 0) {
        std::printf("FAIL write %s\n", argv[1]);
        return 1;
    }
    return 0;
}
