/* A fake of the Ascend driver's libascend_hal.so: only halGetDeviceInfo, with the signature and enum values of
 * the driver header (ascend_hal.h: drvError_t halGetDeviceInfo(uint32_t devId, int32_t moduleType,
 * int32_t infoType, int64_t *value); DEV_MODULE_TYPE AICORE=4, VECTOR_CORE=7; INFO_TYPE_CORE_NUM=3,
 * INFO_TYPE_FREQUE=4; DRV_ERROR_NONE=0, DRV_ERROR_NOT_SUPPORT=0xfffe), as CANN's profiler calls it for
 * info.json (ai_core_num, aiv_num, aic_frequency in MHz).
 *
 * The values are the fake device's: 24 AI Cores, 48 vector cores, 1800 MHz (the fake CANN's info.json says
 * the same). FAKE_HAL_NO_FREQ=1: the frequency is not supported (as on a device whose driver has none). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define API __attribute__((visibility("default")))

enum { MODULE_TYPE_AICORE = 4, MODULE_TYPE_VECTOR_CORE = 7 };
enum { INFO_TYPE_CORE_NUM = 3, INFO_TYPE_FREQUE = 4 };
enum { DRV_ERROR_NONE = 0, DRV_ERROR_INVALID_VALUE = 3, DRV_ERROR_NOT_SUPPORT = 0xfffe };

API int halGetDeviceInfo(uint32_t devId, int32_t moduleType, int32_t infoType, int64_t *value)
{
    (void)devId;
    if (value == NULL) {
        return DRV_ERROR_INVALID_VALUE;
    }
    const char *no_freq = getenv("FAKE_HAL_NO_FREQ");
    if (moduleType == MODULE_TYPE_AICORE && infoType == INFO_TYPE_CORE_NUM) {
        *value = 24;
    } else if (moduleType == MODULE_TYPE_VECTOR_CORE && infoType == INFO_TYPE_CORE_NUM) {
        *value = 48;
    } else if (moduleType == MODULE_TYPE_AICORE && infoType == INFO_TYPE_FREQUE &&
               !(no_freq != NULL && strcmp(no_freq, "1") == 0)) {
        *value = 1800;
    } else {
        return DRV_ERROR_NOT_SUPPORT;
    }
    return DRV_ERROR_NONE;
}
