//! `covidx export --format png BUILD DIR`: COVID-Net's folder layout (`train/`, `test/` PNGs
//! named as in the split files) written from a build's shards.

use std::process::ExitCode;

use anyhow::{bail, Context, Result};

use super::ExportArgs;
use crate::record::read_manifest;
use crate::shards::{self, Index};

/// Exports every clean sample (and augmented copies with `--all-copies`) as PNG.
pub fn run(args: &ExportArgs, quiet: bool) -> Result<ExitCode> {
    if args.format != "png" {
        bail!("--format {:?}: only png is supported", args.format);
    }
    let index_path = args.build.join("shards/index.json");
    let index = Index::read(&index_path).with_context(|| {
        format!(
            "{} is missing or not a covidx shard index",
            index_path.display()
        )
    })?;
    if !index.complete {
        bail!(
            "{}: the build that wrote it did not finish; rerun it first",
            index_path.display()
        );
    }
    let manifest = read_manifest(&args.build.join("manifest.parquet"))?;
    let images: Vec<String> = manifest
        .column("image")?
        .str()?
        .iter()
        .map(|s| s.unwrap_or("").replace(' ', "_"))
        .collect();
    let mut written = 0usize;
    for (split, entries) in &index.splits {
        let dir = args.dir.join(split);
        std::fs::create_dir_all(&dir)?;
        for e in entries {
            let data = shards::read(&args.build.join(format!("shards/{split}/{}", e.file)))?;
            let side = data.size as usize;
            for i in 0..data.len() {
                let copy = data.copy[i];
                if copy > 0 && !args.all_copies {
                    continue;
                }
                let name = images
                    .get(data.record[i] as usize)
                    .with_context(|| format!("record {} not in the manifest", data.record[i]))?;
                let stem = std::path::Path::new(name)
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| name.clone());
                let file = if copy == 0 {
                    format!("{stem}.png")
                } else {
                    format!("{stem}.aug{copy}.png")
                };
                let px = data.images[i * side * side..(i + 1) * side * side].to_vec();
                let img = image::GrayImage::from_raw(data.size, data.size, px).unwrap();
                let mut buf = std::io::Cursor::new(Vec::new());
                img.write_to(&mut buf, image::ImageFormat::Png)?;
                crate::fsutil::write_atomic(&dir.join(file), &buf.into_inner())?;
                written += 1;
            }
        }
    }
    if !quiet {
        println!("exported {written} PNGs to {}", args.dir.display());
    }
    Ok(ExitCode::SUCCESS)
}
