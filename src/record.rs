//! The unified record every source reader produces, and the manifest table built from them.

use std::fmt;

use anyhow::Result;
use polars::prelude::*;

/// Why a candidate record is in no split. Every record that is not in train or test carries
/// exactly one reason, so nothing is dropped silently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Exclusion {
    /// The CSV row lacks a field the reader needs.
    MalformedRow,
    /// The finding is blank (upstream: not yet labelled).
    Unlabelled,
    /// The view is not in the source's `views` filter.
    ViewFiltered,
    /// The modality is not in the source's `modalities` filter.
    ModalityFiltered,
    /// The parsed finding is not in the mapping table.
    UnmappedFinding,
    /// Several findings in one cell map to different classes.
    AmbiguousFinding,
    /// Two upstream files give the same patient conflicting classes (RSNA).
    ConflictingLabels,
    /// The image file the metadata names does not exist.
    MissingImage,
    /// The image exists but could not be read.
    UnreadableImage,
    /// Same patient and image as an earlier record.
    Duplicate,
    /// In the test pool but not in the pinned published test list.
    TestPoolNotPinned,
}

impl Exclusion {
    /// Stable kebab-case code used in the manifest and summary.
    pub fn code(self) -> &'static str {
        match self {
            Exclusion::MalformedRow => "malformed-row",
            Exclusion::Unlabelled => "unlabelled",
            Exclusion::ViewFiltered => "view-filtered",
            Exclusion::ModalityFiltered => "modality-filtered",
            Exclusion::UnmappedFinding => "unmapped-finding",
            Exclusion::AmbiguousFinding => "ambiguous-finding",
            Exclusion::ConflictingLabels => "conflicting-labels",
            Exclusion::MissingImage => "missing-image",
            Exclusion::UnreadableImage => "unreadable-image",
            Exclusion::Duplicate => "duplicate",
            Exclusion::TestPoolNotPinned => "test-pool-not-pinned",
        }
    }
}

impl fmt::Display for Exclusion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// Which split a record ended in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Split {
    /// Training split.
    Train,
    /// Test split.
    Test,
}

impl Split {
    /// `train` or `test`.
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "test",
        }
    }
}

/// One candidate image as read from a source's metadata, carried through every stage.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Record {
    /// Pipeline name of the source.
    pub source: String,
    /// Source tag for 4-column split files (`cohen`, `fig1`, `actmed`, `rsna`, ...).
    pub tag: String,
    /// Metadata file the row came from, relative to `--sources`.
    pub file: String,
    /// 1-based line of the row's start in that file.
    pub line: u64,
    /// Upstream patient id, as written to split files.
    pub patient: String,
    /// Patient key for grouping (e.g. Figure1's `COVID-00003a` and `b` are one patient);
    /// namespaced by source when compared.
    pub subject: String,
    /// Image file name written to split files.
    pub image: String,
    /// Image path relative to `--sources`; empty when the row names no image.
    pub path: String,
    /// Raw finding text.
    pub finding: String,
    /// Finding after the parse rule (several joined by `|`).
    pub parsed: String,
    /// View (PA, AP, ...), empty when unknown.
    pub view: String,
    /// Modality (X-ray, CT), empty when unknown.
    pub modality: String,
    /// Class index, once labelled.
    pub label: Option<usize>,
    /// Exclusion reason, if the record is in no split.
    pub exclusion: Option<Exclusion>,
    /// Human-readable detail for the exclusion or a warning.
    pub detail: String,
    /// In the test pool (pinned patients) before a pinned test list is applied.
    pub test_pool: bool,
    /// Final split.
    pub split: Option<Split>,
    /// SHA-256 of the image file, when it was read.
    pub sha256: Option<String>,
    /// Why the image stage could not use the image (quarantined), if it ran.
    pub image_error: Option<String>,
}

impl Record {
    /// Patient key namespaced by source, used for every patient-level decision.
    pub fn patient_key(&self) -> String {
        format!("{}:{}", self.source, self.subject)
    }

    /// Still a candidate: not excluded by any stage so far.
    pub fn is_candidate(&self) -> bool {
        self.exclusion.is_none()
    }

    /// Marks the record excluded (the first reason wins).
    pub fn exclude(&mut self, why: Exclusion, detail: impl Into<String>) {
        if self.exclusion.is_none() {
            self.exclusion = Some(why);
            self.detail = detail.into();
            self.split = None;
        }
    }

    /// The image name as written to split files: spaces become `_`, since split files are
    /// space-separated.
    pub fn split_image(&self) -> String {
        self.image.replace(' ', "_")
    }

    /// "file:line" for messages.
    pub fn origin(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }
}

/// Builds the manifest DataFrame: one row per candidate record, every column.
pub fn manifest_frame(records: &[Record], classes: &[String]) -> Result<DataFrame> {
    let n = records.len();
    let col = |name: &str, f: &dyn Fn(&Record) -> String| -> Column {
        Column::new(name.into(), records.iter().map(f).collect::<Vec<_>>())
    };
    let opt = |name: &str, f: &dyn Fn(&Record) -> Option<String>| -> Column {
        Column::new(name.into(), records.iter().map(f).collect::<Vec<_>>())
    };
    let columns = vec![
        Column::new("record".into(), (0..n as u64).collect::<Vec<_>>()),
        col("source", &|r| r.source.clone()),
        col("tag", &|r| r.tag.clone()),
        col("file", &|r| r.file.clone()),
        Column::new(
            "line".into(),
            records.iter().map(|r| r.line).collect::<Vec<_>>(),
        ),
        col("patient", &|r| r.patient.clone()),
        col("patient_key", &|r| r.patient_key()),
        col("image", &|r| r.image.clone()),
        col("path", &|r| r.path.clone()),
        col("finding", &|r| r.finding.clone()),
        col("finding_parsed", &|r| r.parsed.clone()),
        col("view", &|r| r.view.clone()),
        col("modality", &|r| r.modality.clone()),
        opt("label", &|r| r.label.map(|l| classes[l].clone())),
        opt("split", &|r| r.split.map(|s| s.name().to_string())),
        Column::new(
            "test_pool".into(),
            records.iter().map(|r| r.test_pool).collect::<Vec<_>>(),
        ),
        opt("exclusion", &|r| r.exclusion.map(|e| e.code().to_string())),
        col("detail", &|r| r.detail.clone()),
        opt("sha256", &|r| r.sha256.clone()),
        opt("image_error", &|r| r.image_error.clone()),
    ];
    Ok(DataFrame::new(n, columns)?)
}

/// Serialises a frame (the manifest, the augmentation table) as Parquet (snappy) into memory.
pub fn parquet_bytes(df: &DataFrame) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    let mut df = df.clone();
    ParquetWriter::new(&mut buf)
        .with_compression(ParquetCompression::Snappy)
        .set_parallel(false)
        .finish(&mut df)?;
    Ok(buf)
}

/// Serialises the manifest as CSV (header, `,`-separated, RFC 4180 quoting) into memory.
pub fn manifest_csv(df: &DataFrame) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    let mut df = df.clone();
    CsvWriter::new(&mut buf)
        .include_header(true)
        .finish(&mut df)?;
    Ok(buf)
}

/// Reads a manifest written by [`parquet_bytes`].
pub fn read_manifest(path: &std::path::Path) -> Result<DataFrame> {
    let f = std::fs::File::open(path)?;
    Ok(ParquetReader::new(f).finish()?)
}
