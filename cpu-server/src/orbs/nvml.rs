//! GPU memory of each process, from NVIDIA's management library (NVML),
//! loaded at run time with `dlopen`: no driver → no figures and no error.
//!
//! Only the calls the sampler needs are bound (init, device count and handle,
//! the compute process list, shutdown). The library is found the usual way
//! (`ld.so` search path, `LD_LIBRARY_PATH`), as `libnvidia-ml.so.1`, the name
//! the driver installs. Every call here blocks (NVML talks to the driver), so
//! the sampler makes them on the blocking pool.
//!
//! Unsafe code is allowed here, and only here in the sampler: calling a C
//! library is unsafe by nature; each block says why it holds.
#![allow(unsafe_code)]

use std::collections::HashMap;
use std::ffi::{CStr, c_char, c_int, c_uint, c_void};

/// The soname the NVIDIA driver installs.
pub const LIBRARY: &str = "libnvidia-ml.so.1";

const SUCCESS: c_int = 0;
const ERROR_INSUFFICIENT_SIZE: c_int = 7;
/// NVML's "not available" for a process's memory (e.g. under WDDM).
const VALUE_NOT_AVAILABLE: u64 = u64::MAX;
/// Bounds of one query: devices per host and processes per device.
const MAX_DEVICES: c_uint = 64;
const MAX_PROCESSES: c_uint = 4096;

/// `nvmlProcessInfo_t` of the `_v2` and `_v3` process queries.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct ProcessInfo {
    pid: c_uint,
    used_gpu_memory: u64,
    gpu_instance_id: c_uint,
    compute_instance_id: c_uint,
}

type Device = *mut c_void;
type CountFn = unsafe extern "C" fn(*mut c_uint) -> c_int;
type HandleFn = unsafe extern "C" fn(c_uint, *mut Device) -> c_int;
type ProcessesFn = unsafe extern "C" fn(Device, *mut c_uint, *mut ProcessInfo) -> c_int;
type VoidFn = unsafe extern "C" fn() -> c_int;

/// An initialised NVML; shut down and unloaded on drop.
pub struct Nvml {
    library: *mut c_void,
    count: CountFn,
    handle: HandleFn,
    processes: ProcessesFn,
    shutdown: VoidFn,
}

// SAFETY: NVML is thread-safe (documented by NVIDIA); the handle is only a
// library pointer and function pointers, used by one owner at a time.
unsafe impl Send for Nvml {}

impl Nvml {
    /// Loads and initialises NVML; why not when it cannot (no driver).
    pub fn load() -> Result<Self, String> {
        Self::load_from(LIBRARY)
    }

    fn load_from(soname: &str) -> Result<Self, String> {
        let name = std::ffi::CString::new(soname).map_err(|_| format!("bad library name {soname:?}"))?;
        // SAFETY: a valid C string; the handle is checked before use.
        let library = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        if library.is_null() {
            return Err(last_dl_error(soname));
        }
        match Self::bind(library) {
            Ok(nvml) => Ok(nvml),
            Err(why) => {
                // SAFETY: the handle came from dlopen and nothing of it is kept.
                unsafe { libc::dlclose(library) };
                Err(why)
            }
        }
    }

    fn bind(library: *mut c_void) -> Result<Self, String> {
        // SAFETY: each symbol is cast to the signature NVML's header gives it.
        unsafe {
            let init: VoidFn = std::mem::transmute(symbol(library, c"nvmlInit_v2")?);
            let count: CountFn = std::mem::transmute(symbol(library, c"nvmlDeviceGetCount_v2")?);
            let handle: HandleFn = std::mem::transmute(symbol(library, c"nvmlDeviceGetHandleByIndex_v2")?);
            let processes: ProcessesFn = std::mem::transmute(
                symbol(library, c"nvmlDeviceGetComputeRunningProcesses_v3")
                    .or_else(|_| symbol(library, c"nvmlDeviceGetComputeRunningProcesses_v2"))?,
            );
            let shutdown: VoidFn = std::mem::transmute(symbol(library, c"nvmlShutdown")?);
            let code = init();
            if code != SUCCESS {
                return Err(format!("nvmlInit_v2 failed (NVML error {code})"));
            }
            Ok(Self {
                library,
                count,
                handle,
                processes,
                shutdown,
            })
        }
    }

    /// GPU memory in bytes of every process using a GPU, summed over devices.
    pub fn memory_by_pid(&self) -> Result<HashMap<u32, u64>, String> {
        let mut devices: c_uint = 0;
        // SAFETY: a valid out pointer.
        let code = unsafe { (self.count)(&mut devices) };
        if code != SUCCESS {
            return Err(format!("nvmlDeviceGetCount_v2 failed (NVML error {code})"));
        }
        let mut used = HashMap::new();
        for index in 0..devices.min(MAX_DEVICES) {
            let mut device: Device = std::ptr::null_mut();
            // SAFETY: a valid out pointer.
            if unsafe { (self.handle)(index, &mut device) } != SUCCESS {
                continue; // a device lost or not permitted: the others still count
            }
            for process in self.device_processes(device)? {
                if process.used_gpu_memory != VALUE_NOT_AVAILABLE {
                    *used.entry(process.pid).or_insert(0u64) += process.used_gpu_memory;
                }
            }
        }
        Ok(used)
    }

    /// The compute processes of one device: asks for the count, then the list
    /// (retried once if it grew in between).
    fn device_processes(&self, device: Device) -> Result<Vec<ProcessInfo>, String> {
        let mut wanted: c_uint = 0;
        for _ in 0..2 {
            let mut list = vec![ProcessInfo::default(); wanted as usize];
            let mut count = wanted;
            let buffer = if list.is_empty() {
                std::ptr::null_mut()
            } else {
                list.as_mut_ptr()
            };
            // SAFETY: `count` is the capacity of `buffer` (null when 0), as NVML expects.
            let code = unsafe { (self.processes)(device, &mut count, buffer) };
            match code {
                SUCCESS => {
                    list.truncate(count.min(wanted) as usize);
                    return Ok(list);
                }
                ERROR_INSUFFICIENT_SIZE if count <= MAX_PROCESSES => wanted = count + 8,
                _ => {
                    return Err(format!(
                        "nvmlDeviceGetComputeRunningProcesses failed (NVML error {code})"
                    ));
                }
            }
        }
        Err("the GPU's process list kept growing".into())
    }
}

impl Drop for Nvml {
    fn drop(&mut self) {
        // SAFETY: initialised in `load`; nothing uses the library afterwards.
        unsafe {
            (self.shutdown)();
            libc::dlclose(self.library);
        }
    }
}

/// A symbol of `library`, or why not.
unsafe fn symbol(library: *mut c_void, name: &CStr) -> Result<*mut c_void, String> {
    // SAFETY: the caller's handle is live; `name` is a C string.
    let found = unsafe { libc::dlsym(library, name.as_ptr()) };
    if found.is_null() {
        Err(format!("the library has no {}", name.to_string_lossy()))
    } else {
        Ok(found)
    }
}

fn last_dl_error(soname: &str) -> String {
    // SAFETY: dlerror returns null or a C string valid until the next dl call.
    let text: *const c_char = unsafe { libc::dlerror() };
    if text.is_null() {
        format!("cannot load {soname}")
    } else {
        // SAFETY: non-null, NUL-terminated.
        unsafe { CStr::from_ptr(text) }.to_string_lossy().into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_library_is_an_error_naming_it() {
        let why = Nvml::load_from("libnvidia-ml-absent.so.1")
            .err()
            .expect("no such library");
        assert!(why.contains("libnvidia-ml-absent.so.1"), "{why}");
    }

    #[test]
    fn a_library_without_nvml_is_refused_and_unloaded() {
        let why = Nvml::load_from("libc.so.6").err().expect("libc is not NVML");
        assert_eq!(why, "the library has no nvmlInit_v2");
    }
}
