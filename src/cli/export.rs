//! `covidx export --format png BUILD DIR`: COVID-Net's folder layout written from a build's
//! shards: `DIR/train/` and `DIR/test/`, one PNG per clean sample under exactly the name its
//! split file gives (COVID-Net's loaders open `DIR/<split>/<name>` and read the content, so a
//! Cohen image listed as `x.jpeg` is PNG data under that name), and with `--all-copies`
//! `<name>.aug<k>.png` for augmented copies.

use std::collections::HashMap;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};

use super::ExportArgs;
use crate::build_dir::BuildDir;
use crate::lock::Lock;
use crate::manifest::Manifest;
use crate::record::Split;
use crate::shards::{Dataset, Verify};

/// Checks that the build's manifest and shard index are the ones its lock vouches for, so a
/// manifest is never paired with shards of another build.
pub(crate) fn check_consistent(dir: &BuildDir) -> Result<()> {
    let lock_path = dir.lock();
    let lock = Lock::read(&lock_path).with_context(|| {
        format!(
            "{} has no lock file: the build did not finish (rerun it)",
            dir.root().display()
        )
    })?;
    for rel in [crate::build_dir::MANIFEST, crate::build_dir::SHARD_INDEX] {
        let path = dir.path(rel);
        let Some(want) = lock.outputs.get(rel) else {
            bail!(
                "{}: the build's lock lists no {rel} (a metadata-only build has no shards; \
                 build with images first)",
                lock_path.display()
            );
        };
        let got = crate::fsutil::sha256_file(&path)?;
        if &got != want {
            bail!(
                "{}: sha256 {got}, the lock says {want}: the build directory was changed \
                 after the build (run covidx verify)",
                path.display()
            );
        }
    }
    Ok(())
}

/// The file name of a sample in the export.
fn export_name(split_name: &str, copy: u8) -> String {
    if copy == 0 {
        split_name.to_string()
    } else {
        format!("{split_name}.aug{copy}.png")
    }
}

/// Exports every clean sample (and augmented copies with `--all-copies`) as PNG.
pub fn run(args: &ExportArgs, quiet: bool) -> Result<ExitCode> {
    if args.format != "png" {
        bail!("--format {:?}: only png is supported", args.format);
    }
    let dir = BuildDir::new(&args.build);
    check_consistent(&dir)?;
    let manifest = Manifest::read(&dir.manifest())?;
    let mut written = 0usize;
    for split in [Split::Train, Split::Test] {
        // The lock vouched for the index; the shards' hashes are checked against it below.
        let data = Dataset::open(&dir, split)?.with_verify(Verify::Sha256);
        let folder = args.dir.join(split.name());
        std::fs::create_dir_all(&folder)
            .with_context(|| format!("creating {}", folder.display()))?;
        let mut taken: HashMap<String, u64> = HashMap::new();
        for i in 0..data.len() {
            let s = data.sample(i)?;
            if s.copy > 0 && !args.all_copies {
                continue;
            }
            let row = manifest.get(s.record).with_context(|| {
                format!(
                    "{}: record {} is not in the manifest",
                    dir.manifest().display(),
                    s.record
                )
            })?;
            let name = export_name(&row.split_image(), s.copy);
            if let Some(prev) = taken.insert(name.clone(), s.record) {
                if prev != s.record {
                    let other = &manifest.rows[prev as usize];
                    bail!(
                        "{split}: records {prev} ({}:{}) and {} ({}:{}) are both named {name:?} \
                         in the split file; COVID-Net's layout cannot hold both",
                        other.file,
                        other.line,
                        s.record,
                        row.file,
                        row.line,
                        split = split.name()
                    );
                }
            }
            let side = data.index().size;
            let img = image::GrayImage::from_raw(side, side, s.image.to_vec())
                .expect("a shard sample holds S*S pixels");
            let mut buf = std::io::Cursor::new(Vec::new());
            img.write_to(&mut buf, image::ImageFormat::Png)?;
            crate::fsutil::write_atomic(&folder.join(&name), &buf.into_inner())?;
            written += 1;
        }
    }
    if !quiet {
        println!("exported {written} PNGs to {}", args.dir.display());
    }
    Ok(ExitCode::SUCCESS)
}
