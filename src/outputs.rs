//! The metadata stages' outputs: split files, the manifest (Parquet + CSV), the summary and
//! the copy of the pipeline, each written atomically and hashed for the lock.

use std::collections::BTreeMap;

use anyhow::Result;
use rayon::prelude::*;

use crate::build_dir::{self, BuildDir};
use crate::config::Pipeline;
use crate::fsutil;
use crate::manifest::{self, Manifest};
use crate::record::{Record, Split};
use crate::split::Assignment;
use crate::summary::{self, Summary};
use crate::timed;

/// Appends the COVID-Net split-file line of a record to `out` (`patientid filename label`, or
/// a 4th `source` column): the class's output label, and the record's own column count when a
/// pinned line gave it one.
pub fn push_split_line(out: &mut String, r: &Record, pipeline: &Pipeline) {
    let label = pipeline.output_label(r.label.expect("split records are labelled"));
    out.push_str(&r.patient);
    out.push(' ');
    r.push_split_image(out);
    out.push(' ');
    out.push_str(label);
    if r.columns.unwrap_or(pipeline.output.columns) == 4 {
        out.push(' ');
        out.push_str(&r.tag);
    }
    out.push('\n');
}

/// What [`write`] produced.
#[derive(Debug)]
pub struct Written {
    /// Counts per class and split, and exclusions.
    pub summary: Summary,
    /// Every file written (relative to the build directory) and its SHA-256.
    pub outputs: BTreeMap<String, String>,
    /// The manifest written, typed.
    pub manifest: Manifest,
}

/// Writes the split files, manifest, summary and pipeline copy into `dir`.
pub fn write(
    dir: &BuildDir,
    pipeline: &Pipeline,
    pipeline_bytes: &[u8],
    records: &[Record],
    assignment: &Assignment,
) -> Result<Written> {
    let classes = &pipeline.classes;
    let t = std::time::Instant::now();
    let frame = manifest::frame(records, &assignment.keys, classes)?;
    tracing::info!("manifest frame: {:.3?}", t.elapsed());
    let t = std::time::Instant::now();
    // A split file in parts of 16k lines, made in parallel.
    let lines = |idx: &[usize]| -> Vec<Vec<u8>> {
        idx.par_chunks(1 << 14)
            .map(|part| {
                let mut text = String::with_capacity(part.len() * 48);
                for &i in part {
                    push_split_line(&mut text, &records[i], pipeline);
                }
                text.into_bytes()
            })
            .collect()
    };
    // Each file is written (atomically) and hashed as soon as it is encoded, so writes overlap
    // the encoding of the rest; the file's parts are returned for a background drop. The
    // Parquet and CSV encodings of the manifest are the costly ones, made side by side with
    // the summary, the split files and the typed manifest (for the audit that ends the build,
    // from the same frame rather than the Parquet read back).
    type Put = Result<(String, String, Vec<Vec<u8>>)>;
    let put = |rel: &str, parts: Vec<Vec<u8>>| -> Put {
        let (written, hash) = rayon::join(
            || fsutil::write_atomic_parts(&dir.path(rel), &parts),
            || fsutil::sha256_hex_parts(&parts),
        );
        written?;
        Ok((rel.to_string(), hash, parts))
    };
    let parquet = || {
        timed("outputs, parquet", || {
            manifest::parquet_bytes(&frame, manifest::FORMAT, manifest::VERSION)
        })
        .and_then(|bytes| put(build_dir::MANIFEST, vec![bytes]))
    };
    let summary = || {
        timed("outputs, summary", || summary::summarize(&frame, classes)).and_then(|s| {
            let text = summary::render(&s).into_bytes();
            Ok((s, put(build_dir::SUMMARY, vec![text])?))
        })
    };
    let csv = || {
        timed("outputs, csv", || manifest::csv_parts(&frame))
            .and_then(|parts| put(build_dir::MANIFEST_CSV, parts))
    };
    // The split files and the copy of the pipeline.
    let small = || {
        let files = timed("outputs, split files", || {
            [
                (build_dir::split_rel(Split::Train), lines(&assignment.train)),
                (build_dir::split_rel(Split::Test), lines(&assignment.test)),
                (build_dir::PIPELINE, vec![pipeline_bytes.to_vec()]),
            ]
        });
        files
            .into_par_iter()
            .map(|(rel, parts)| put(rel, parts))
            .collect::<Vec<Put>>()
    };
    let typed = || {
        timed("outputs, typed manifest", || {
            Manifest::from_frame(&frame, build_dir::MANIFEST)
        })
    };
    // Five independent tasks joined as equals (the Parquet encoding, on one thread, is the
    // longest): work stealing spreads the other four over the cores meanwhile.
    let (parquet, (summary, (csv, (small, typed)))) = rayon::join(parquet, || {
        rayon::join(summary, || rayon::join(csv, || rayon::join(small, typed)))
    });
    let (summary, summary_file) = summary?;
    let mut outputs = BTreeMap::new();
    let mut encoded = Vec::new();
    for put in [parquet, Ok(summary_file), csv].into_iter().chain(small) {
        let (rel, hash, parts) = put?;
        outputs.insert(rel, hash);
        encoded.push(parts);
    }
    crate::drop_in_background((frame, encoded));
    tracing::info!("outputs written: {:.3?}", t.elapsed());
    Ok(Written {
        summary,
        outputs,
        manifest: typed?,
    })
}
