//! `covidx predict CHECKPOINT IMAGE...`: class probabilities of raw PNG/JPEG/DICOM files after
//! the build's own preprocessing (decode, crop, resize), one line or JSON object per image.

use std::process::ExitCode;

use anyhow::Result;

use super::PredictArgs;

/// Runs `covidx predict`.
#[cfg(feature = "train")]
pub fn run(a: &PredictArgs, _quiet: bool) -> Result<ExitCode> {
    use crate::train::model::Normalize;
    use crate::train::{infer, trainer};

    let device = trainer::device(&a.device)?;
    let normalize = a.normalize.as_deref().map(Normalize::parse).transpose()?;
    let ckpt = infer::open(&a.checkpoint, a.classes.clone(), normalize, device)?;
    let size = a
        .size
        .or(ckpt.state.as_ref().map(|s| s.size))
        .unwrap_or(224);
    let crop_top = a
        .crop_top
        .or(ckpt.state.as_ref().map(|s| s.crop_top as f32))
        .unwrap_or(0.08);
    for p in infer::predict(&ckpt, &a.images, size, crop_top)? {
        if a.json {
            println!("{}", serde_json::to_string(&p)?);
        } else {
            let probs: Vec<String> = p
                .probabilities
                .iter()
                .map(|(c, v)| format!("{c} {v:.4}"))
                .collect();
            println!("{}\t{}\t{}", p.image, p.class, probs.join("  "));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `covidx predict`.
#[cfg(not(feature = "train"))]
pub fn run(_: &PredictArgs, _: bool) -> Result<ExitCode> {
    super::train::without_feature()
}
