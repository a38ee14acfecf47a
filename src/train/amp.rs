//! Mixed precision: the forward pass (and the loss) under autocast in bfloat16 or float16,
//! weights, gradients and Adam's moments in float32; float16 with a dynamic loss scale as
//! `torch.amp.GradScaler` (start 2^16, halve on an inf/NaN gradient and skip that step,
//! double after 2000 clean steps).

use anyhow::{bail, Result};
use tch::{Device, Kind, Tensor};

use super::ffi;

/// Arithmetic of the forward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// float32 throughout.
    Fp32,
    /// Autocast to bfloat16 (no loss scale needed: float32's exponent range).
    Bf16,
    /// Autocast to float16 with a dynamic loss scale.
    Fp16,
}

impl Precision {
    /// Parses `--precision`: `fp32`, `bf16`, `fp16`, or `auto` (bf16 on CUDA, fp32 on CPU).
    pub fn parse(s: &str, device: Device) -> Result<Precision> {
        Ok(match s {
            "fp32" => Precision::Fp32,
            "bf16" => Precision::Bf16,
            "fp16" => Precision::Fp16,
            "auto" if device.is_cuda() => Precision::Bf16,
            "auto" => Precision::Fp32,
            _ => bail!("--precision {s:?}: auto, fp32, bf16 or fp16"),
        })
    }

    /// The flag's spelling.
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Bf16 => "bf16",
            Precision::Fp16 => "fp16",
        }
    }

    /// Runs `f` (a forward pass) in this precision on `device`.
    pub fn run<T>(self, device: Device, f: impl FnOnce() -> T) -> Result<T> {
        match self {
            Precision::Fp32 => Ok(f()),
            Precision::Bf16 => ffi::autocast(device, Kind::BFloat16, f),
            Precision::Fp16 => ffi::autocast(device, Kind::Half, f),
        }
    }
}

/// Parses `--channels-last`: `on`, `off`, or `auto` (on for CUDA, where cuDNN's NHWC
/// kernels are faster; off on the CPU).
pub fn channels_last(s: &str, device: Device) -> Result<bool> {
    match s {
        "on" => Ok(true),
        "off" => Ok(false),
        "auto" => Ok(device.is_cuda()),
        _ => bail!("--channels-last {s:?}: auto, on or off"),
    }
}

/// float16's dynamic loss scale, on the device (no host synchronisation per step).
#[derive(Debug)]
pub struct GradScaler {
    /// Current scale (float32 scalar).
    pub scale: Tensor,
    /// Clean steps since the last change (int32 scalar).
    pub growth_tracker: Tensor,
    /// 1 when the last checked gradients held an inf or NaN (float32 scalar).
    pub found_inf: Tensor,
    one: Tensor,
}

impl GradScaler {
    /// Initial scale, as torch.amp.GradScaler.
    pub const INIT_SCALE: f64 = 65536.0;
    /// Clean steps before the scale doubles.
    pub const GROWTH_INTERVAL: i64 = 2000;

    /// A scaler at its initial scale on `device`.
    pub fn new(device: Device) -> GradScaler {
        GradScaler {
            scale: Tensor::full([], Self::INIT_SCALE, (Kind::Float, device)),
            growth_tracker: Tensor::zeros([], (Kind::Int, device)),
            found_inf: Tensor::zeros([], (Kind::Float, device)),
            one: Tensor::ones([], (Kind::Float, device)),
        }
    }

    /// The loss times the scale (what backward runs on).
    pub fn scale_loss(&self, loss: &Tensor) -> Tensor {
        loss.to_kind(Kind::Float) * &self.scale
    }

    /// Sets `found_inf` from the (still scaled) gradients of `params`.
    pub fn check(&mut self, params: &[Tensor]) -> Result<()> {
        let _ = self.found_inf.zero_();
        ffi::amp_check(params, &self.found_inf, &self.one)
    }

    /// Halves the scale after an inf/NaN, doubles it after enough clean steps.
    pub fn update(&mut self) {
        let _ = self.scale.internal_amp_update_scale_(
            &self.growth_tracker,
            &self.found_inf,
            2.0,
            0.5,
            Self::GROWTH_INTERVAL,
        );
    }
}
