//! Safe wrappers over the trainer's C++ shim (`src/train/shim.cpp`, compiled by `build.rs`):
//! autocast with a chosen device type and dtype, PyTorch's fused Adam and the gradient
//! scaler's non-finite check, none of which tch 0.24 binds.

use std::ffi::{c_char, c_int, CStr};

use anyhow::{bail, Result};
use tch::{Device, Kind, Tensor};

/// `at::Tensor*` (what tch's `C_tensor` pointers are).
type CTensor = *mut std::ffi::c_void;

extern "C" {
    fn covidx_free_error(e: *mut c_char);
    fn covidx_autocast_enter(
        device: c_int,
        scalar_type: c_int,
        was_enabled: *mut c_int,
        was_type: *mut c_int,
    ) -> *mut c_char;
    fn covidx_autocast_exit(device: c_int, was_enabled: c_int, was_type: c_int) -> *mut c_char;
    fn covidx_fused_adam(
        params: *const CTensor,
        m: *const CTensor,
        v: *const CTensor,
        n: usize,
        step: CTensor,
        lr: f64,
        beta1: f64,
        beta2: f64,
        wd: f64,
        eps: f64,
        grad_scale: CTensor,
        found_inf: CTensor,
    ) -> *mut c_char;
    fn covidx_empty_pinned(numel: i64, out: *mut CTensor) -> *mut c_char;
    fn covidx_clear_grads(params: *const CTensor, n: usize) -> *mut c_char;
    fn covidx_amp_check(
        params: *const CTensor,
        n: usize,
        found_inf: CTensor,
        inv_scale: CTensor,
    ) -> *mut c_char;
}

/// Turns the shim's error (null: none) into a Result, freeing the message.
fn check(e: *mut c_char, what: &str) -> Result<()> {
    if e.is_null() {
        return Ok(());
    }
    // SAFETY: a non-null return is a NUL-terminated string from strdup, freed once here.
    let msg = unsafe {
        let m = CStr::from_ptr(e).to_string_lossy().into_owned();
        covidx_free_error(e);
        m
    };
    bail!("{what}: {msg}")
}

fn ptr(t: &Tensor) -> CTensor {
    t.as_ptr() as CTensor
}

fn ptrs(ts: &[Tensor]) -> Vec<CTensor> {
    ts.iter().map(ptr).collect()
}

fn device_code(d: Device) -> c_int {
    if d.is_cuda() {
        1
    } else {
        0
    }
}

/// c10's ScalarType code of a reduced-precision kind.
fn scalar_type(k: Kind) -> Result<c_int> {
    match k {
        Kind::Half => Ok(5),
        Kind::BFloat16 => Ok(15),
        other => bail!("autocast runs in Half or BFloat16, not {other:?}"),
    }
}

/// Runs `f` with autocast on for `device`'s type in `kind` (Half or BFloat16), restoring the
/// previous state afterwards (also when `f` panics).
pub fn autocast<T>(device: Device, kind: Kind, f: impl FnOnce() -> T) -> Result<T> {
    struct Restore {
        device: c_int,
        enabled: c_int,
        kind: c_int,
    }
    impl Drop for Restore {
        fn drop(&mut self) {
            // SAFETY: plain values; the shim restores what enter saved.
            let e = unsafe { covidx_autocast_exit(self.device, self.enabled, self.kind) };
            if let Err(err) = check(e, "leaving autocast") {
                tracing::error!("{err:#}");
            }
        }
    }
    let device = device_code(device);
    let (mut enabled, mut was) = (0, 0);
    // SAFETY: the out-pointers are valid for the call.
    let e = unsafe { covidx_autocast_enter(device, scalar_type(kind)?, &mut enabled, &mut was) };
    check(e, "entering autocast")?;
    let _restore = Restore {
        device,
        enabled,
        kind: was,
    };
    Ok(f())
}

/// Adam's hyper-parameters for [`fused_adam`].
#[derive(Debug, Clone, Copy)]
pub struct AdamHyper {
    /// Learning rate.
    pub lr: f64,
    /// First-moment decay.
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// L2 weight decay.
    pub weight_decay: f64,
    /// Denominator guard.
    pub eps: f64,
}

/// One step of PyTorch's fused Adam (`torch.optim.Adam(fused=True)`, CPU and CUDA kernels)
/// over the variables in `params` that have a gradient, moments `m` and `v` alike in shape
/// and layout; `step` (a float scalar tensor on the device) is the step count this update
/// uses for bias correction. With `scaler` (`grad_scale`, `found_inf`) gradients are
/// unscaled in the kernel and the step is skipped when `found_inf` is 1.
pub fn fused_adam(
    params: &[Tensor],
    m: &[Tensor],
    v: &[Tensor],
    step: &Tensor,
    h: AdamHyper,
    scaler: Option<(&Tensor, &Tensor)>,
) -> Result<()> {
    assert!(params.len() == m.len() && m.len() == v.len());
    let (p, mp, vp) = (ptrs(params), ptrs(m), ptrs(v));
    let (scale, inf) = match scaler {
        Some((s, f)) => (ptr(s), ptr(f)),
        None => (std::ptr::null_mut(), std::ptr::null_mut()),
    };
    // SAFETY: every pointer is a live tensor borrowed for the call (or null where allowed).
    let e = unsafe {
        covidx_fused_adam(
            p.as_ptr(),
            mp.as_ptr(),
            vp.as_ptr(),
            p.len(),
            ptr(step),
            h.lr,
            h.beta1,
            h.beta2,
            h.weight_decay,
            h.eps,
            scale,
            inf,
        )
    };
    check(e, "fused Adam")
}

/// Sets `found_inf` (a float scalar tensor) to 1 when a gradient of `params` holds an inf or
/// NaN, after multiplying the gradients by `inv_scale`.
pub fn amp_check(params: &[Tensor], found_inf: &Tensor, inv_scale: &Tensor) -> Result<()> {
    let p = ptrs(params);
    // SAFETY: live tensors borrowed for the call.
    let e = unsafe { covidx_amp_check(p.as_ptr(), p.len(), ptr(found_inf), ptr(inv_scale)) };
    check(e, "checking gradients for inf/NaN")
}

/// Drops the gradients of `params` (PyTorch's `zero_grad(set_to_none=True)`).
pub fn clear_grads(params: &[Tensor]) -> Result<()> {
    let p = ptrs(params);
    // SAFETY: live tensors borrowed for the call.
    let e = unsafe { covidx_clear_grads(p.as_ptr(), p.len()) };
    check(e, "clearing gradients")
}

/// A new u8 tensor of `numel` elements in pinned host memory (libtorch's caching host
/// allocator: blocks are reused once the copies reading them finish). Needs CUDA.
pub fn empty_pinned(numel: i64) -> Result<Tensor> {
    let mut out: CTensor = std::ptr::null_mut();
    // SAFETY: `out` is valid for the call; on success it holds a `new at::Tensor`, which
    // tch's Tensor owns and deletes.
    let e = unsafe { covidx_empty_pinned(numel, &mut out) };
    check(e, "allocating pinned host memory")?;
    // SAFETY: a fresh at::Tensor* from the shim, owned by nobody else.
    Ok(unsafe { Tensor::from_ptr(out as *mut _) })
}

/// Bytes in use on the current CUDA device (total minus free, `cudaMemGetInfo`: libtorch's
/// cache, the context and every other process), or None when the CUDA runtime is not found.
pub fn device_memory_used() -> Option<u64> {
    type MemGetInfo = unsafe extern "C" fn(*mut usize, *mut usize) -> c_int;
    let name = c"cudaMemGetInfo";
    // SAFETY: dlsym/dlopen with valid C strings; a found symbol has cudaMemGetInfo's C
    // signature (cudaError_t (size_t*, size_t*)).
    unsafe {
        let mut sym = libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr());
        for lib in [c"libcudart.so.13", c"libcudart.so.12", c"libcudart.so"] {
            if !sym.is_null() {
                break;
            }
            let h = libc::dlopen(lib.as_ptr(), libc::RTLD_NOW | libc::RTLD_NOLOAD);
            if !h.is_null() {
                sym = libc::dlsym(h, name.as_ptr());
            }
        }
        if sym.is_null() {
            return None;
        }
        let f: MemGetInfo = std::mem::transmute(sym);
        let (mut free, mut total) = (0usize, 0usize);
        (f(&mut free, &mut total) == 0).then(|| (total - free) as u64)
    }
}
