//! `covidx export --format png BUILD DIR`: COVID-Net's folder layout written from a build's
//! shards: `DIR/train/` and `DIR/test/`, one PNG per clean sample under exactly the name its
//! split file gives (COVID-Net's loaders open `DIR/<split>/<name>` and read the content, so a
//! Cohen image listed as `x.jpeg` is PNG data under that name), and with `--all-copies`
//! `<name>.aug<k>.png` for augmented copies.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context, Result};

use super::{encode_png, selected, Options, Source};

/// The file name of a sample in the export.
fn export_name(split_name: &str, copy: u8) -> String {
    if copy == 0 {
        split_name.to_string()
    } else {
        format!("{split_name}.aug{copy}.png")
    }
}

/// Exports every clean sample (and augmented copies with `all_copies`) as PNG; returns the
/// number of files written. Two records that the split file gives the same name are refused.
pub fn export(src: &Source, out: &Path, opts: &Options) -> Result<usize> {
    let mut written = 0usize;
    for data in &src.splits {
        let split = data.split();
        let folder = out.join(split.name());
        std::fs::create_dir_all(&folder)
            .with_context(|| format!("creating {}", folder.display()))?;
        let mut taken: HashMap<String, u64> = HashMap::new();
        for i in selected(data, opts)? {
            let s = data.sample(i)?;
            let row = src.row(s.record)?;
            let name = export_name(&row.split_image(), s.copy);
            if let Some(prev) = taken.insert(name.clone(), s.record) {
                if prev != s.record {
                    let other = src.row(prev)?;
                    bail!(
                        "{split}: records {prev} ({}:{}) and {} ({}:{}) are both named {name:?} \
                         in the split file; COVID-Net's layout cannot hold both",
                        other.file(),
                        other.line(),
                        s.record,
                        row.file(),
                        row.line(),
                        split = split.name()
                    );
                }
            }
            let png = encode_png(src.size(), s.image)?;
            crate::fsutil::write_atomic(&folder.join(&name), &png)?;
            written += 1;
        }
    }
    Ok(written)
}
