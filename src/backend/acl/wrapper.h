/* Input of bindgen for the aclprof bindings (src/backend/acl/bindings.rs). */
#include "acl/acl_prof.h"

/* Exported by libmsprofiler.so but declared only in CANN's internal toolchain/prof_acl_api.h
   (docs/ascend-api.md §2.2); torch_npu looks them up by name. */
aclError aclprofWarmup(const aclprofConfig *profilerConfig);
int aclprofGetSupportedFeatures(size_t *featuresSize, void **featuresData);
int aclprofGetSupportedFeaturesV2(size_t *featuresSize, void **featuresData);
aclError aclprofRegisterDeviceCallback(void);

/* From acl/acl_rt.h (not part of the profiling headers): the device bound to the calling thread. */
aclError aclrtGetDevice(int32_t *deviceId);
