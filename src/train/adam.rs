//! Adam (Kingma & Ba) over the trainable variables, with its state in the open so that a
//! checkpoint holds it and `--resume` continues the exact sequence (tch's optimizer keeps its
//! state in C++ out of reach). The update is PyTorch's single-tensor Adam, weight decay 0:
//! `m = b1 m + (1 - b1) g`, `v = b2 v + (1 - b2) g^2`,
//! `p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)`.

use std::path::Path;

use anyhow::{bail, Context, Result};
use tch::Tensor;

/// Adam's hyper-parameters and state.
#[derive(Debug)]
pub struct Adam {
    /// (name, variable) of every trainable variable, in name order.
    params: Vec<(String, Tensor)>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    /// Steps taken.
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
    pub fn new(mut params: Vec<(String, Tensor)>, lr: f64) -> Adam {
        params.sort_by(|a, b| a.0.cmp(&b.0));
        let zeros = |p: &Tensor| p.zeros_like();
        Adam {
            m: params.iter().map(|(_, p)| zeros(p)).collect(),
            v: params.iter().map(|(_, p)| zeros(p)).collect(),
            params,
            step: 0,
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }

    /// Clears the gradients.
    pub fn zero_grad(&mut self) {
        for (_, p) in &mut self.params {
            p.zero_grad();
        }
    }

    /// One update from the current gradients (variables without a gradient are left alone).
    pub fn step(&mut self) {
        self.step += 1;
        let t = self.step as i32;
        let bc1 = 1.0 - self.beta1.powi(t);
        let bc2 = 1.0 - self.beta2.powi(t);
        let step_size = self.lr / bc1;
        tch::no_grad(|| {
            for (((_, p), m), v) in self.params.iter_mut().zip(&mut self.m).zip(&mut self.v) {
                let g = p.grad();
                if !g.defined() {
                    continue;
                }
                let _ = m.g_mul_scalar_(self.beta1);
                let _ = m.g_add_(&(&g * (1.0 - self.beta1)));
                let _ = v.g_mul_scalar_(self.beta2);
                let _ = v.g_add_(&(&g * &g * (1.0 - self.beta2)));
                let denom = v.sqrt() / bc2.sqrt() + self.eps;
                let _ = p.g_sub_(&(&*m * step_size / denom));
            }
        });
    }

    /// Writes the moments (`exp_avg.<name>`, `exp_avg_sq.<name>`) to `path`.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut named: Vec<(String, Tensor)> = Vec::new();
        for (((name, _), m), v) in self.params.iter().zip(&self.m).zip(&self.v) {
            named.push((format!("exp_avg.{name}"), m.to_device(tch::Device::Cpu)));
            named.push((format!("exp_avg_sq.{name}"), v.to_device(tch::Device::Cpu)));
        }
        let tmp = crate::fsutil::temp_sibling(path);
        Tensor::write_safetensors(&named, &tmp)
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("renaming into {}", path.display()))
    }

    /// Reads the moments written by [`Adam::save`] for the same trainable variables.
    pub fn load(&mut self, path: &Path, step: u64) -> Result<()> {
        let file = path.display();
        let mut saved: std::collections::HashMap<String, Tensor> = Tensor::read_safetensors(path)
            .with_context(|| format!("{file}: not a readable optimizer state"))?
            .into_iter()
            .collect();
        if saved.len() != 2 * self.params.len() {
            bail!(
                "{file}: holds {} moments, this model trains {} variables (another --trainable?)",
                saved.len(),
                self.params.len()
            );
        }
        tch::no_grad(|| -> Result<()> {
            for (((name, p), m), v) in self.params.iter().zip(&mut self.m).zip(&mut self.v) {
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
                    dst.f_copy_(&t)?;
                }
            }
            Ok(())
        })?;
        self.step = step;
        Ok(())
    }
}
