//! Ingest stage: every source read into records, then every labelled record's image located
//! (metadata-only: the file must exist) or read and hashed (full build).

use std::path::Path;

use anyhow::Result;
use rayon::prelude::*;

use crate::config::Source;
use crate::fsutil;
use crate::record::{Exclusion, Record};
use crate::sources::{self, InputHashes, ReadContext};

/// Reads every source, in declaration order.
pub fn read_all(root: &Path, sources: &[Source], inputs: &mut InputHashes) -> Result<Vec<Record>> {
    let mut records = Vec::new();
    let mut ctx = ReadContext { root, inputs };
    for src in sources {
        records.extend(sources::read(&mut ctx, src)?);
    }
    Ok(records)
}

/// Outcome of locating one image: its hash when read, or why it is excluded.
type Located = std::result::Result<Option<String>, (Exclusion, String)>;

/// How images are treated by a build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageCheck {
    /// The file must exist; it is not opened.
    Exists,
    /// The file is read (confined to its source root) and hashed.
    Hash,
}

/// Checks (or hashes) the image of every labelled candidate in parallel; a missing or unreadable
/// file becomes an exclusion. Hashes go to the records and to `inputs`.
pub fn locate(
    root: &Path,
    sources: &[Source],
    records: &mut [Record],
    check: ImageCheck,
    inputs: &mut InputHashes,
) {
    let dirs: std::collections::HashMap<&str, (std::path::PathBuf, Option<fsutil::Confined>)> =
        sources
            .iter()
            .map(|s| {
                let dir = root.join(&s.dir);
                let confined = fsutil::Confined::new(&dir).ok();
                (s.name.as_str(), (dir, confined))
            })
            .collect();
    let results: Vec<(usize, Located)> = records
        .par_iter()
        .enumerate()
        .filter(|(_, r)| r.is_candidate() && r.label.is_some())
        .map(|(i, r)| {
            let (dir, confined) = &dirs[r.source.as_str()];
            let rel = fsutil::rel_string(dir, &root.join(&r.path));
            let missing = || {
                Err((
                    Exclusion::MissingImage,
                    format!("{} does not exist", r.path),
                ))
            };
            let unreadable = |e: anyhow::Error| (Exclusion::UnreadableImage, format!("{e:#}"));
            // Both modes refuse a file that resolves outside its source root.
            let Some(confined) = confined else {
                return (i, missing());
            };
            let res = match confined.is_file(&rel) {
                Err(e) => Err(unreadable(e)),
                Ok(false) => missing(),
                Ok(true) if check == ImageCheck::Exists => Ok(None),
                Ok(true) => confined
                    .open(&rel)
                    .and_then(|f| Ok(fsutil::sha256_reader(f)?))
                    .map(Some)
                    .map_err(unreadable),
            };
            (i, res)
        })
        .collect();
    for (i, res) in results {
        match res {
            Ok(Some(hash)) => {
                inputs.insert(records[i].path.clone(), hash.clone());
                records[i].sha256 = Some(hash);
            }
            Ok(None) => {}
            Err((why, detail)) => {
                tracing::debug!("{}: {detail}", records[i].origin());
                records[i].exclude(why, detail);
            }
        }
    }
}
