//! Adam (Kingma & Ba) over the trainable variables, with its state in the open so that a
//! checkpoint holds it and `--resume` continues the exact sequence (tch's optimizer keeps its
//! state in C++ out of reach). The update is PyTorch's fused Adam (`Adam(fused=True)`, one
//! multi-tensor kernel per step on CUDA and on the CPU, through the shim), weight decay 0:
//! `m = b1 m + (1 - b1) g`, `v = b2 v + (1 - b2) g^2`,
//! `p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)`.
//! With float16 a [`GradScaler`] unscales the gradients inside that kernel and skips steps
//! whose gradients overflowed (they do not count in `t`).

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use tch::{Device, Kind, Tensor};

use super::amp::GradScaler;
use super::ffi::{self, AdamHyper};

/// Adam's hyper-parameters and state.
#[derive(Debug)]
pub struct Adam {
    names: Vec<String>,
    params: Vec<Tensor>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    /// Bias-correction step `t` (float32 scalar on the device; skipped fp16 steps excluded).
    t: Tensor,
    /// float16's loss scale, when training in float16.
    pub scaler: Option<GradScaler>,
    /// Optimizer steps taken (calls to [`Adam::step`]).
    pub step: u64,
    /// Learning rate.
    pub lr: f64,
    /// First-moment decay.
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// Denominator guard.
    pub eps: f64,
}

impl Adam {
    /// Adam over `params` (name, variable), learning rate `lr`, betas (0.9, 0.999), eps 1e-8.
    /// The moments take each variable's layout (e.g. channels-last), so convert the model
    /// first.
    pub fn new(mut params: Vec<(String, Tensor)>, lr: f64) -> Adam {
        params.sort_by(|a, b| a.0.cmp(&b.0));
        let device = params.first().map_or(Device::Cpu, |(_, p)| p.device());
        let zeros = |p: &Tensor| p.zeros_like();
        let (names, params): (Vec<String>, Vec<Tensor>) = params.into_iter().unzip();
        Adam {
            m: params.iter().map(zeros).collect(),
            v: params.iter().map(zeros).collect(),
            names,
            params,
            t: Tensor::zeros([], (Kind::Float, device)),
            scaler: None,
            step: 0,
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }

    /// The trainable variables, in name order.
    pub fn params(&self) -> &[Tensor] {
        &self.params
    }

    /// Drops the gradients (the next backward writes fresh ones).
    pub fn zero_grad(&mut self) -> Result<()> {
        ffi::clear_grads(&self.params)
    }

    /// The loss that backward should run on: scaled for float16.
    pub fn loss_for_backward(&self, loss: &Tensor) -> Tensor {
        match &self.scaler {
            Some(s) => s.scale_loss(loss),
            None => loss.shallow_clone(),
        }
    }

    /// One update from the current gradients (variables without a gradient are left alone).
    pub fn step(&mut self) -> Result<()> {
        self.step += 1;
        let h = AdamHyper {
            lr: self.lr,
            beta1: self.beta1,
            beta2: self.beta2,
            weight_decay: 0.0,
            eps: self.eps,
        };
        tch::no_grad(|| -> Result<()> {
            let _ = self.t.g_add_scalar_(1);
            match &mut self.scaler {
                None => ffi::fused_adam(&self.params, &self.m, &self.v, &self.t, h, None),
                Some(s) => {
                    s.check(&self.params)?;
                    ffi::fused_adam(
                        &self.params,
                        &self.m,
                        &self.v,
                        &self.t,
                        h,
                        Some((&s.scale, &s.found_inf)),
                    )?;
                    let _ = self.t.g_sub_(&s.found_inf);
                    s.update();
                    Ok(())
                }
            }
        })
    }

    /// Writes the moments (`exp_avg.<name>`, `exp_avg_sq.<name>`), `t` (`state.t`) and the
    /// loss scale (`amp.scale`, `amp.growth_tracker`) to `path`.
    pub fn save(&self, path: &Path) -> Result<()> {
        let cpu = |t: &Tensor| t.to_device(Device::Cpu).contiguous();
        let mut named: Vec<(String, Tensor)> = Vec::new();
        for ((name, m), v) in self.names.iter().zip(&self.m).zip(&self.v) {
            named.push((format!("exp_avg.{name}"), cpu(m)));
            named.push((format!("exp_avg_sq.{name}"), cpu(v)));
        }
        named.push(("state.t".into(), cpu(&self.t).view([1])));
        if let Some(s) = &self.scaler {
            named.push(("amp.scale".into(), cpu(&s.scale).view([1])));
            named.push((
                "amp.growth_tracker".into(),
                cpu(&s.growth_tracker).view([1]),
            ));
        }
        let tmp = crate::fsutil::temp_sibling(path);
        Tensor::write_safetensors(&named, &tmp)
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("renaming into {}", path.display()))
    }

    /// Reads the state written by [`Adam::save`] for the same trainable variables, `step`
    /// optimizer steps in.
    pub fn load(&mut self, path: &Path, step: u64) -> Result<()> {
        let file = path.display();
        let mut saved: HashMap<String, Tensor> = Tensor::read_safetensors(path)
            .with_context(|| format!("{file}: not a readable optimizer state"))?
            .into_iter()
            .collect();
        let moments = saved.keys().filter(|k| k.starts_with("exp_avg")).count();
        if moments != 2 * self.params.len() {
            bail!(
                "{file}: holds {moments} moments, this model trains {} variables (another \
                 --trainable?)",
                self.params.len()
            );
        }
        tch::no_grad(|| -> Result<()> {
            for (((name, p), m), v) in self
                .names
                .iter()
                .zip(&self.params)
                .zip(&mut self.m)
                .zip(&mut self.v)
            {
                for (prefix, dst) in [("exp_avg", m), ("exp_avg_sq", v)] {
                    let key = format!("{prefix}.{name}");
                    let t = saved
                        .remove(&key)
                        .with_context(|| format!("{file}: no {key}"))?;
                    if t.size() != p.size() {
                        bail!(
                            "{file}: {key} is {:?}, the variable {:?}",
                            t.size(),
                            p.size()
                        );
                    }
                    // copy_ keeps the moment's layout (channels-last where the variable is).
                    dst.f_copy_(&t)?;
                }
            }
            match saved.remove("state.t") {
                Some(t) => self.t.f_copy_(&t.view([]))?,
                None => {
                    let _ = self.t.fill_(step as f64);
                }
            };
            if let Some(s) = &mut self.scaler {
                match (
                    saved.remove("amp.scale"),
                    saved.remove("amp.growth_tracker"),
                ) {
                    (Some(a), Some(b)) => {
                        s.scale.f_copy_(&a.view([]))?;
                        s.growth_tracker.f_copy_(&b.view([]))?;
                    }
                    _ => tracing::warn!(
                        "{file}: no loss scale (not trained in float16): starting at {}",
                        GradScaler::INIT_SCALE
                    ),
                }
            }
            Ok(())
        })?;
        self.step = step;
        Ok(())
    }
}
