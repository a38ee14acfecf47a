//! The images of an audited build: the [`ImageFacts`] of every record in a split or the test
//! pool, taken from the image-facts tables the image stage wrote beside its shards, else from
//! the audit's cache (`audit/cache.parquet`, keyed by the file's SHA-256), else decoded from the
//! sources in parallel with the stage's own decoder. An image that cannot be read is listed,
//! never fatal, and takes no part in duplicate detection.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::Result;
use rayon::prelude::*;
use serde::Serialize;

use super::Build;
use crate::build_dir;
use crate::imaging::decode::decode_bytes;
use crate::imaging::facts::{self, ImageFacts};
use crate::ingest::SourceRoots;
use crate::manifest::Row;
use crate::progress::Reporter;
use crate::shards::Index;

/// An image the audit could not use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unreadable {
    /// Manifest row.
    pub record: u64,
    /// Source.
    pub source: String,
    /// Image path relative to `--sources`.
    pub path: String,
    /// `train`, `test` or `test-pool`.
    pub split: String,
    /// Short reason (`missing`, `empty`, `corrupt`, `changed`, `no-sources`, ...).
    pub reason: String,
    /// Detail.
    pub detail: String,
}

/// Where the facts came from, for the report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Provenance {
    /// Records in a split or the test pool (the audit's scope).
    pub in_scope: u64,
    /// Facts read from the image stage's tables.
    pub from_build: u64,
    /// Facts read from the audit's cache.
    pub from_cache: u64,
    /// Images decoded by this audit.
    pub decoded: u64,
    /// Records without usable facts (see the unreadable list).
    pub unreadable: u64,
}

/// Image facts of the build's records.
#[derive(Debug, Clone, Default)]
pub struct Images {
    /// Facts by manifest row.
    pub facts: BTreeMap<u64, ImageFacts>,
    /// Images that could not be used, by record.
    pub unreadable: Vec<Unreadable>,
    /// Where the facts came from.
    pub provenance: Provenance,
}

/// The split name the audit uses for a row: `train`, `test`, `test-pool` (in the test pool
/// but not drawn), or `None` when out of scope.
pub fn scope(r: Row<'_>) -> Option<&'static str> {
    match r.split() {
        Some(s) => Some(s.name()),
        None if r.test_pool() => Some("test-pool"),
        None => None,
    }
}

/// Reads every image-facts table the image stage wrote for the build (none for a
/// metadata-only build).
pub fn from_build(build: &Build) -> Result<BTreeMap<u64, ImageFacts>> {
    let mut out = BTreeMap::new();
    let path = build.dir.shard_index();
    if !path.exists() {
        return Ok(out);
    }
    let index = Index::load(&path)?;
    for split in [crate::record::Split::Train, crate::record::Split::Test] {
        for e in index.entries(split) {
            let p = build.dir.shard(split, &build_dir::facts_of_shard(&e.file));
            out.extend(facts::read_table(&p)?);
        }
    }
    Ok(out)
}

/// Gathers the facts of every record in scope; `sources` is where the images are (the
/// build's recorded `--sources` unless overridden), `None` when unknown.
pub fn gather(build: &Build, sources: Option<&Path>, progress: bool) -> Result<Images> {
    let m = &build.manifest;
    let mut images = Images {
        facts: from_build(build)?,
        ..Images::default()
    };
    let p = &mut images.provenance;
    p.from_build = images.facts.len() as u64;
    let cache_path = build.dir.path(build_dir::AUDIT_CACHE);
    let cache: HashMap<String, ImageFacts> = match facts::read_table(&cache_path) {
        Ok(rows) => rows
            .into_iter()
            .map(|(_, f)| (f.file_sha256.clone(), f))
            .collect(),
        Err(_) => HashMap::new(),
    };
    let mut todo: Vec<Row<'_>> = Vec::new();
    let unusable = |r: Row<'_>, reason: &str, detail: String| Unreadable {
        record: r.record(),
        source: r.source().to_string(),
        path: r.path().to_string(),
        split: scope(r).unwrap_or("").to_string(),
        reason: reason.to_string(),
        detail,
    };
    for r in m.rows().filter(|&r| scope(r).is_some()) {
        p.in_scope += 1;
        if images.facts.contains_key(&r.record()) {
            continue;
        }
        if let Some(e) = r.image_error() {
            // The manifest writes `reason: detail`.
            let (reason, detail) = e.split_once(": ").unwrap_or((e, ""));
            let detail = format!("quarantined by the image stage: {detail}");
            images.unreadable.push(unusable(r, reason, detail));
        } else if r.path().is_empty() {
            let detail = "the row names no image".to_string();
            images.unreadable.push(unusable(r, "missing", detail));
        } else if let Some(f) = r.sha256().and_then(|s| cache.get(s)) {
            images.facts.insert(r.record(), f.clone());
            p.from_cache += 1;
        } else {
            todo.push(r);
        }
    }
    let Some(sources) = sources else {
        for r in todo {
            let detail = "the build records no sources folder; pass --sources".to_string();
            images.unreadable.push(unusable(r, "no-sources", detail));
        }
        return Ok(finish(images));
    };
    let roots = SourceRoots::new(sources, &build.pipeline.resolved_sources());
    let reporter = Reporter::new("audit: decoding", "images", todo.len() as u64, progress);
    let decoded: Vec<(u64, Result<Examined, Why>)> = todo
        .par_iter()
        .map(|&r| {
            let f = examine(r, &roots, &cache);
            reporter.add(1);
            (r.record(), f)
        })
        .collect();
    reporter.finish();
    let mut fresh = Vec::new();
    for ((record, f), &r) in decoded.into_iter().zip(&todo) {
        match f {
            Ok(Examined::Cached(f)) => {
                images.facts.insert(record, f);
                images.provenance.from_cache += 1;
            }
            Ok(Examined::Decoded(f)) => {
                fresh.push(f.clone());
                images.facts.insert(record, f);
                images.provenance.decoded += 1;
            }
            Err((reason, detail)) => images.unreadable.push(unusable(r, &reason, detail)),
        }
    }
    if !fresh.is_empty() {
        write_cache(&cache_path, cache, fresh)?;
    }
    Ok(finish(images))
}

fn finish(mut images: Images) -> Images {
    images.unreadable.sort_by_key(|u| u.record);
    images.provenance.unreadable = images.unreadable.len() as u64;
    images
}

/// Why an image could not be used: (reason, detail).
type Why = (String, String);

/// Facts of one image, from the cache (by its file's SHA-256) or decoded now.
enum Examined {
    Cached(ImageFacts),
    Decoded(ImageFacts),
}

/// Reads one record's image, checks it against the manifest's SHA-256, and takes its facts
/// from the cache or decodes it.
fn examine(
    r: Row<'_>,
    roots: &SourceRoots,
    cache: &HashMap<String, ImageFacts>,
) -> Result<Examined, Why> {
    let (root, rel) = roots.of_path(r.source(), r.path()).ok_or_else(|| {
        (
            "missing".to_string(),
            "the source's folder is not under --sources".to_string(),
        )
    })?;
    let bytes = root
        .read(rel)
        .map_err(|e| ("unreadable".to_string(), format!("{e:#}")))?;
    let sha = crate::fsutil::sha256_hex(&bytes);
    if let Some(want) = r.sha256() {
        if sha != want {
            return Err((
                "changed".to_string(),
                format!("sha256 {sha}, the build read {want}"),
            ));
        }
    }
    if let Some(f) = cache.get(&sha) {
        return Ok(Examined::Cached(f.clone()));
    }
    let img = decode_bytes(&bytes, Path::new(r.path()))
        .map_err(|e| (e.reason.to_string(), e.detail.clone()))?;
    Ok(Examined::Decoded(facts::of_decoded(
        &bytes,
        Some(sha),
        &img,
    )))
}

/// Adds freshly decoded facts to the cache (one row per file hash, in hash order).
fn write_cache(
    path: &Path,
    mut cache: HashMap<String, ImageFacts>,
    fresh: Vec<ImageFacts>,
) -> Result<()> {
    for f in fresh {
        cache.insert(f.file_sha256.clone(), f);
    }
    let mut rows: Vec<(u64, ImageFacts)> = cache.into_values().map(|f| (0, f)).collect();
    rows.sort_by(|a, b| a.1.file_sha256.cmp(&b.1.file_sha256));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    crate::fsutil::write_atomic(path, &facts::table_bytes(&rows)?)
}
