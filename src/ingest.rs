//! Ingest stage: every source read into records, then every labelled record's image located
//! (metadata-only: the file must exist) or read and hashed (full build).

use std::path::Path;

use anyhow::Result;
use rayon::prelude::*;

use crate::config::Source;
use crate::fsutil;
use crate::record::{Exclusion, Record};
use crate::sources::{self, InputHashes, ReadContext};

/// Reads every source, in parallel, and returns their records in declaration order (the
/// first failing source's error, in that order, if any fails).
pub fn read_all(root: &Path, sources: &[Source], inputs: &mut InputHashes) -> Result<Vec<Record>> {
    let read: Vec<Result<(Vec<Record>, InputHashes)>> = sources
        .par_iter()
        .map(|src| {
            let mut own = InputHashes::new();
            let mut ctx = ReadContext {
                root,
                inputs: &mut own,
            };
            Ok((sources::read(&mut ctx, src)?, own))
        })
        .collect();
    let mut records = Vec::new();
    for result in read {
        let (recs, hashes) = result?;
        // A source's records are moved only when another source's come first.
        if records.is_empty() {
            records = recs;
        } else {
            records.extend(recs);
        }
        inputs.extend(hashes);
    }
    sources::apply_url_filters(sources, &mut records);
    Ok(records)
}

/// Each source's root under `--sources`, confined (see [`fsutil::Confined`]): where a record's
/// image path is resolved, by ingest and by the image stage alike.
pub struct SourceRoots {
    roots: std::collections::HashMap<String, (String, Option<fsutil::Confined>)>,
}

impl SourceRoots {
    /// The roots of `sources` under `root` (a source whose folder is missing has none).
    pub fn new(root: &Path, sources: &[Source]) -> SourceRoots {
        let roots = sources
            .iter()
            .map(|s| {
                let confined = fsutil::Confined::new(&root.join(&s.dir)).ok();
                (s.name.clone(), (s.dir.clone(), confined))
            })
            .collect();
        SourceRoots { roots }
    }

    /// The confined root of `r`'s source and `r.path` inside it; `None` when the source's
    /// folder does not exist or the record names no image in it.
    pub fn of<'r>(&self, r: &'r Record) -> Option<(&fsutil::Confined, &'r str)> {
        self.of_path(&r.source, &r.path)
    }

    /// The confined root of source `source` and `path` (relative to `--sources`) inside it.
    pub fn of_path<'r>(&self, source: &str, path: &'r str) -> Option<(&fsutil::Confined, &'r str)> {
        let (dir, confined) = self.roots.get(source)?;
        let rel = if dir.is_empty() {
            path
        } else {
            path.strip_prefix(dir.trim_end_matches('/'))?
                .strip_prefix('/')?
        };
        Some((confined.as_ref()?, rel)).filter(|(_, rel)| !rel.is_empty())
    }
}

/// Outcome of locating one image: its hash when read, or why it is excluded.
type Located =
    std::result::Result<Option<(String, Option<fsutil::FileStamp>)>, (Exclusion, String)>;

/// How images are treated by a build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageCheck {
    /// The file must exist; it is not opened.
    Exists,
    /// The file is read (confined to its source root) and hashed.
    Hash,
}

/// The SHA-256 of an open file, and its stamp when the stamp can vouch for those bytes later
/// (unchanged while they were read, and settled: see [`fsutil::FileStamp`]), so that the image
/// stage can skip hashing the file a second time.
fn hash_stamped(f: &std::fs::File) -> Result<(String, Option<fsutil::FileStamp>)> {
    let taken = std::time::SystemTime::now();
    let before = fsutil::FileStamp::of(&f.metadata()?);
    let hash = fsutil::sha256_reader(f)?;
    let after = fsutil::FileStamp::of(&f.metadata()?);
    let stamp = before.filter(|b| after == Some(*b) && b.settled(taken));
    Ok((hash, stamp))
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
    let roots = SourceRoots::new(root, sources);
    let results: Vec<(usize, Located)> = records
        .par_iter()
        .enumerate()
        .filter(|(_, r)| r.is_candidate() && r.label.is_some())
        .map(|(i, r)| {
            let missing = || {
                Err((
                    Exclusion::MissingImage,
                    format!("{} does not exist", r.path),
                ))
            };
            let unreadable = |e: anyhow::Error| (Exclusion::UnreadableImage, format!("{e:#}"));
            // Both modes refuse a file that resolves outside its source root.
            let Some((confined, rel)) = roots.of(r) else {
                return (i, missing());
            };
            let res = match confined.is_file(rel) {
                Err(e) => Err(unreadable(e)),
                Ok(false) => missing(),
                Ok(true) if check == ImageCheck::Exists => Ok(None),
                Ok(true) => confined
                    .open(rel)
                    .and_then(|f| hash_stamped(&f))
                    .map(Some)
                    .map_err(unreadable),
            };
            (i, res)
        })
        .collect();
    for (i, res) in results {
        match res {
            Ok(Some((hash, stamp))) => {
                inputs.insert(records[i].path.clone(), hash.clone());
                records[i].sha256 = Some(hash);
                records[i].stamp = stamp;
            }
            Ok(None) => {}
            Err((why, detail)) => {
                tracing::debug!("{}: {detail}", records[i].origin());
                records[i].exclude(why, detail);
            }
        }
    }
}
