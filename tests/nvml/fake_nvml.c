/* A stand-in for NVIDIA's libnvidia-ml.so.1, for the tests of cpu-server's
 * NVML path on machines without the driver. It has the calls cpu-server
 * binds, with NVML's signatures and return codes, and one device whose
 * compute processes are the lines "PID BYTES" of the file named by
 * $FAKE_NVML_PROCESSES (read at each query). Built by tests/gpu_memory.rs:
 *   cc -shared -fPIC -o DIR/libnvidia-ml.so.1 tests/nvml/fake_nvml.c
 */
#include <stdio.h>
#include <stdlib.h>

#define NVML_SUCCESS 0
#define NVML_ERROR_UNINITIALIZED 1
#define NVML_ERROR_INVALID_ARGUMENT 2
#define NVML_ERROR_INSUFFICIENT_SIZE 7
#define MAX_FAKE 64

typedef struct {
    unsigned int pid;
    unsigned long long usedGpuMemory;
    unsigned int gpuInstanceId;
    unsigned int computeInstanceId;
} nvmlProcessInfo_t;

static int initialised;
static int device;

int nvmlInit_v2(void) { initialised = 1; return NVML_SUCCESS; }
int nvmlShutdown(void) { initialised = 0; return NVML_SUCCESS; }

int nvmlDeviceGetCount_v2(unsigned int *count) {
    if (!initialised) return NVML_ERROR_UNINITIALIZED;
    if (!count) return NVML_ERROR_INVALID_ARGUMENT;
    *count = 1;
    return NVML_SUCCESS;
}

int nvmlDeviceGetHandleByIndex_v2(unsigned int index, void **handle) {
    if (!initialised) return NVML_ERROR_UNINITIALIZED;
    if (index != 0 || !handle) return NVML_ERROR_INVALID_ARGUMENT;
    *handle = &device;
    return NVML_SUCCESS;
}

int nvmlDeviceGetComputeRunningProcesses_v3(void *handle, unsigned int *count, nvmlProcessInfo_t *infos) {
    if (!initialised) return NVML_ERROR_UNINITIALIZED;
    if (handle != &device || !count) return NVML_ERROR_INVALID_ARGUMENT;
    nvmlProcessInfo_t found[MAX_FAKE];
    unsigned int n = 0;
    const char *path = getenv("FAKE_NVML_PROCESSES");
    FILE *file = path ? fopen(path, "r") : NULL;
    if (file) {
        while (n < MAX_FAKE && fscanf(file, "%u %llu", &found[n].pid, &found[n].usedGpuMemory) == 2) {
            found[n].gpuInstanceId = 0xFFFFFFFFu;
            found[n].computeInstanceId = 0xFFFFFFFFu;
            n++;
        }
        fclose(file);
    }
    if (*count < n || (n > 0 && !infos)) {
        *count = n;
        return NVML_ERROR_INSUFFICIENT_SIZE;
    }
    for (unsigned int i = 0; i < n; i++) infos[i] = found[i];
    *count = n;
    return NVML_SUCCESS;
}
