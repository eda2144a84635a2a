//! Where tensors live: the device, chosen at run time.
//!
//! The CPU default is burn's `flex` backend (pure Rust, SIMD, AVX-512 kernels behind run-time
//! detection with `x86-v4`), which measured fastest on these machines. GPU backends are Cargo
//! features (`cuda`, `wgpu`) so a CPU build needs no GPU toolchain; library code never names a
//! backend, only a [`burn::tensor::Device`].

use burn::tensor::Device;

use crate::error::{Error, Result};

/// The device names `--device` and `[run] device` accept.
pub const DEVICES: &str = "cpu, cuda[:N] (feature `cuda`), wgpu (feature `wgpu`)";

/// Parses a device name: `cpu` (the default), `cuda`, `cuda:1`, `wgpu`.
pub fn device(name: &str) -> Result<Device> {
    match name.trim() {
        "" | "cpu" | "flex" => Ok(Device::flex()),
        #[cfg(feature = "cuda")]
        n if n == "cuda" || n.starts_with("cuda:") => {
            let index: usize = n
                .strip_prefix("cuda:")
                .unwrap_or("0")
                .parse()
                .map_err(|_| {
                    Error::invalid(format!(
                        "Device `{n}`: the CUDA index is not a number; write e.g. `cuda:0`"
                    ))
                })?;
            Ok(Device::cuda(index))
        }
        #[cfg(feature = "wgpu")]
        "wgpu" => Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice)),
        other => Err(Error::invalid(format!(
            "Device `{other}` is not available in this build; available: {DEVICES}"
        ))),
    }
}

/// The CPU device.
pub fn cpu() -> Device {
    Device::flex()
}

/// Runs `f` on one of the CPU pool's threads (rayon's global pool), the caller waiting.
///
/// The CPU kernels split their work across that pool. Called from outside it, each of a training
/// step's two hundred-odd parallel passes hands its work to the pool and puts the calling thread
/// to sleep until the pool is done, then wakes it: a round trip through the kernel's scheduler
/// per pass, while the serial work between passes runs on a thread of its own. Called from one
/// of the pool's threads, a pass starts on that thread at once and the thread carries on after
/// it without sleeping.
pub fn on_cpu_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    rayon::join(f, || ()).0
}
