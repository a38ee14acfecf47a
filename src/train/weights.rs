//! Weights as safetensors with torchvision's names, both ways: [`save`] writes what
//! `torchvision.models.densenet121(num_classes=k).load_state_dict(safetensors.torch.load_file(f))`
//! accepts, [`load`] reads torchvision's exports and CheXNet checkpoints, and checks every key
//! itself (tch's `VarStore::load` ignores unexpected keys and broadcasts shapes).
//!
//! Accepted names: torchvision's; with a `module.` prefix (DataParallel) and/or a
//! `densenet121.` prefix (CheXNet's wrapper); the old `norm.1`/`conv.2`-style names of dense
//! layers, remapped as torchvision's own loader does. A head of another class count (CheXNet's
//! 14 classes, `classifier.0.*` in its wrapper) is dropped and the random head kept.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{bail, Context, Result};
use tch::{nn, Kind, Tensor};

/// What [`load`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Loaded {
    /// Variables loaded.
    pub loaded: usize,
    /// Keys renamed (`old -> new`), e.g. CheXNet's.
    pub renamed: usize,
    /// Why the file's head was dropped, when it was.
    pub head_dropped: Option<String>,
    /// `num_batches_tracked` values read (per batch norm).
    pub batches_tracked: BTreeMap<String, i64>,
}

/// The torchvision name of a key of another convention (see the module documentation).
pub fn canonical(key: &str) -> String {
    let mut k = key;
    for prefix in ["module.", "densenet121.", "model."] {
        if let Some(rest) = k.strip_prefix(prefix) {
            k = rest;
        }
    }
    // CheXNet's head: Sequential(Linear, Sigmoid) -> classifier.0.
    let k = k.replace("classifier.0.", "classifier.");
    // Old dense-layer names: `...denselayerN.norm.1.weight` -> `...denselayerN.norm1.weight`.
    if k.contains(".denselayer") {
        for part in ["norm", "relu", "conv"] {
            for n in ["1", "2"] {
                let old = format!(".{part}.{n}.");
                if k.contains(&old) {
                    return k.replace(&old, &format!(".{part}{n}."));
                }
            }
        }
    }
    k
}

/// Loads `path` into the variables of `vs` (a [`super::model::DenseNet121`]'s), checking
/// every key: a missing variable, an unexpected key or a wrongly shaped tensor is an error
/// naming them all, except a head of another class count, which is dropped.
pub fn load(vs: &nn::VarStore, path: &Path) -> Result<Loaded> {
    let file = path.display();
    let tensors = Tensor::read_safetensors(path)
        .with_context(|| format!("{file}: not a readable safetensors file"))?;
    let vars = vs.variables();
    let mut out = Loaded::default();
    let mut by_name: BTreeMap<String, Tensor> = BTreeMap::new();
    let mut unexpected = Vec::new();
    for (key, t) in tensors {
        let name = canonical(&key);
        if name != key {
            out.renamed += 1;
        }
        if let Some(norm) = name.strip_suffix(".num_batches_tracked") {
            out.batches_tracked
                .insert(norm.to_string(), t.int64_value(&[]));
            continue;
        }
        if !vars.contains_key(&name) {
            unexpected.push(key);
            continue;
        }
        if by_name.insert(name.clone(), t).is_some() {
            bail!("{file}: two keys map to {name:?}");
        }
    }
    // A head of another shape (another class count) is dropped as a whole.
    let head = ["classifier.weight", "classifier.bias"];
    if let (Some(w), Some(ours)) = (by_name.get(head[0]), vars.get(head[0])) {
        if w.size() != ours.size() {
            out.head_dropped = Some(format!(
                "the file's head has {} classes, this model {}: the head keeps its random initialisation",
                w.size()[0],
                ours.size()[0]
            ));
            for h in head {
                by_name.remove(h);
            }
        }
    }
    let mut wrong = Vec::new();
    for (name, t) in &by_name {
        let ours = &vars[name];
        if t.size() != ours.size() {
            wrong.push(format!(
                "{name}: file {:?}, model {:?}",
                t.size(),
                ours.size()
            ));
        }
    }
    let skipped: BTreeSet<&str> = match out.head_dropped {
        Some(_) => head.into_iter().collect(),
        None => BTreeSet::new(),
    };
    let mut missing: Vec<&String> = vars
        .keys()
        .filter(|k| !by_name.contains_key(*k) && !skipped.contains(k.as_str()))
        .collect();
    missing.sort();
    unexpected.sort();
    if !missing.is_empty() || !unexpected.is_empty() || !wrong.is_empty() {
        let list = |v: Vec<String>| match v.len() {
            0 => "none".to_string(),
            n if n > 8 => format!("{n}: {} ...", v[..8].join(", ")),
            _ => v.join(", "),
        };
        bail!(
            "{file}: not a DenseNet-121 for this model: missing {}; unexpected {}; wrong shape {}",
            list(missing.into_iter().cloned().collect()),
            list(unexpected),
            list(wrong)
        );
    }
    tch::no_grad(|| -> Result<()> {
        for (name, t) in &by_name {
            let mut ours = vars[name].shallow_clone();
            ours.f_copy_(&t.to_kind(ours.kind()))
                .with_context(|| format!("{file}: copying {name}"))?;
        }
        Ok(())
    })?;
    out.loaded = by_name.len();
    Ok(out)
}

/// Writes the variables of `vs` to `path` (safetensors, torchvision's names, f32), with
/// `num_batches_tracked` of every batch norm in `norms` (int64 scalars, as torchvision keeps
/// them), through a temporary file renamed into place.
pub fn save(vs: &nn::VarStore, norms: &BTreeMap<String, i64>, path: &Path) -> Result<()> {
    let mut named: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .map(|(k, v)| {
            (
                k,
                v.detach()
                    .to_kind(Kind::Float)
                    .to_device(tch::Device::Cpu)
                    .contiguous(),
            )
        })
        .collect();
    for (norm, &n) in norms {
        named.push((format!("{norm}.num_batches_tracked"), Tensor::from(n)));
    }
    named.sort_by(|a, b| a.0.cmp(&b.0));
    let tmp = crate::fsutil::temp_sibling(path);
    Tensor::write_safetensors(&named, &tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming into {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_conventions_map_to_torchvision_names() {
        for (from, to) in [
            ("features.conv0.weight", "features.conv0.weight"),
            (
                "module.densenet121.features.denseblock1.denselayer1.norm.1.weight",
                "features.denseblock1.denselayer1.norm1.weight",
            ),
            (
                "module.densenet121.features.denseblock2.denselayer3.conv.2.weight",
                "features.denseblock2.denselayer3.conv2.weight",
            ),
            ("densenet121.classifier.0.bias", "classifier.bias"),
            (
                "features.transition1.norm.running_var",
                "features.transition1.norm.running_var",
            ),
        ] {
            assert_eq!(canonical(from), to);
        }
    }
}
