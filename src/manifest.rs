//! The manifest (`manifest.parquet`, `manifest.csv`): one row per candidate record with every
//! decision, written from [`Record`]s and read back into a typed [`Manifest`] (its columns,
//! read through [`Row`] views).
//!
//! Column names, types and order are [`COLUMNS`]; the Parquet file carries
//! `covidx.format = covidx-manifest` and `covidx.version` in its key-value metadata. A reader
//! accepts any file of the same major version: it needs every column of [`COLUMNS`] with its
//! type, and ignores columns it does not know (a later minor version may add some).

use std::path::Path;

use anyhow::{bail, Context, Result};
use compact_str::CompactString;
use polars::prelude::{
    Column, CsvWriter, DataFrame, DataType, KeyValueMetadata, ParquetCompression, ParquetReader,
    ParquetWriter, SerReader, SerWriter, StringChunked,
};
use polars_arrow::array::Utf8ViewArray;
use rayon::prelude::*;

use crate::record::{Record, Split};

/// Format name in the Parquet key-value metadata.
pub const FORMAT: &str = "covidx-manifest";
/// Format version (`major.minor`; a reader accepts any minor of its major).
pub const VERSION: &str = "1.0";

/// Column type of the manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    /// UInt64, never null.
    U64,
    /// UTF-8 string, never null.
    Str,
    /// UTF-8 string or null.
    OptStr,
    /// Boolean, never null.
    Bool,
    /// UInt32, never null (other covidx tables).
    U32,
    /// Float64, never null (other covidx tables).
    F64,
    /// Binary, never null (other covidx tables).
    Binary,
}

/// The manifest's columns, in file order, with their types.
pub const COLUMNS: [(&str, ColumnType); 20] = [
    ("record", ColumnType::U64),
    ("source", ColumnType::Str),
    ("tag", ColumnType::Str),
    ("file", ColumnType::Str),
    ("line", ColumnType::U64),
    ("patient", ColumnType::Str),
    ("patient_key", ColumnType::Str),
    ("image", ColumnType::Str),
    ("path", ColumnType::Str),
    ("finding", ColumnType::Str),
    ("finding_parsed", ColumnType::Str),
    ("view", ColumnType::Str),
    ("modality", ColumnType::Str),
    ("label", ColumnType::OptStr),
    ("split", ColumnType::OptStr),
    ("test_pool", ColumnType::Bool),
    ("exclusion", ColumnType::OptStr),
    ("detail", ColumnType::Str),
    ("sha256", ColumnType::OptStr),
    ("image_error", ColumnType::OptStr),
];

/// Builds the manifest DataFrame: one row per candidate record, every column of [`COLUMNS`].
/// String columns are filled from borrowed `&str`s (no per-record copies), in parallel.
/// `keys` are patient keys already made (indexed by record, as
/// [`crate::split::Assignment::keys`]); a record past their end or with an empty one gets
/// its key made here.
pub fn frame(records: &[Record], keys: &[String], classes: &[String]) -> Result<DataFrame> {
    let n = records.len();
    let strs = |name: &str, f: fn(&Record) -> &str| -> Column {
        Column::new(name.into(), records.iter().map(f).collect::<Vec<_>>())
    };
    let opts = |name: &str, f: &dyn for<'r> Fn(&'r Record) -> Option<&'r str>| -> Column {
        Column::new(name.into(), records.iter().map(f).collect::<Vec<_>>())
    };
    // Built in parallel, one column per task (the string columns copy every value).
    let made: Vec<Option<String>> = records
        .par_iter()
        .enumerate()
        .map(|(i, r)| match keys.get(i) {
            Some(k) if !k.is_empty() => None,
            _ => Some(r.patient_key()),
        })
        .collect();
    let key = |i: usize| made[i].as_deref().unwrap_or_else(|| keys[i].as_str());
    type Build<'a> = Box<dyn Fn() -> Column + Send + Sync + 'a>;
    let builders: Vec<Build<'_>> = vec![
        Box::new(|| Column::new("record".into(), (0..n as u64).collect::<Vec<_>>())),
        Box::new(|| strs("source", |r| &r.source)),
        Box::new(|| strs("tag", |r| &r.tag)),
        Box::new(|| strs("file", |r| &r.file)),
        Box::new(|| {
            Column::new(
                "line".into(),
                records.iter().map(|r| r.line).collect::<Vec<_>>(),
            )
        }),
        Box::new(|| strs("patient", |r| &r.patient)),
        Box::new(|| Column::new("patient_key".into(), (0..n).map(key).collect::<Vec<_>>())),
        Box::new(|| strs("image", |r| &r.image)),
        Box::new(|| strs("path", |r| &r.path)),
        Box::new(|| strs("finding", |r| &r.finding)),
        Box::new(|| strs("finding_parsed", |r| &r.parsed)),
        Box::new(|| strs("view", |r| &r.view)),
        Box::new(|| strs("modality", |r| &r.modality)),
        Box::new(|| {
            let labels: Vec<Option<&str>> = records
                .iter()
                .map(|r| r.label.map(|l| classes[l].as_str()))
                .collect();
            Column::new("label".into(), labels)
        }),
        Box::new(|| opts("split", &|r| r.split.map(|s| s.name()))),
        Box::new(|| {
            Column::new(
                "test_pool".into(),
                records.iter().map(|r| r.test_pool).collect::<Vec<_>>(),
            )
        }),
        Box::new(|| opts("exclusion", &|r| r.exclusion.map(|e| e.code()))),
        Box::new(|| strs("detail", |r| &r.detail)),
        Box::new(|| opts("sha256", &|r| r.sha256.as_deref())),
        Box::new(|| opts("image_error", &|r| r.image_error.as_deref())),
    ];
    let columns: Vec<Column> = builders.par_iter().map(|b| b()).collect();
    Ok(DataFrame::new(n, columns)?)
}

/// Serialises a frame as Parquet (snappy, one thread, so the bytes are stable) into memory,
/// with `covidx.format` and `covidx.version` in the file's key-value metadata.
pub fn parquet_bytes(df: &DataFrame, format: &str, version: &str) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    let mut df = df.clone();
    let kv = KeyValueMetadata::from_static(vec![
        ("covidx.format".to_string(), format.to_string()),
        ("covidx.version".to_string(), version.to_string()),
    ]);
    ParquetWriter::new(&mut buf)
        .with_compression(ParquetCompression::Snappy)
        .with_key_value_metadata(Some(kv))
        .set_parallel(false)
        .finish(&mut df)?;
    Ok(buf)
}

/// Serialises the manifest as CSV (header, `,`-separated, `\n`-terminated) into memory, in
/// exactly the bytes polars' `CsvWriter` writes (its default `QuoteStyle::Necessary`): a null
/// is an empty field, an empty string is `""`, and a string holding `,`, `"`, `\n` or `\r` is
/// quoted with its quotes doubled. Written directly from the columns (string, integer and
/// boolean ones), ~3x faster than `CsvWriter`; a frame with another column type goes to
/// `CsvWriter`.
pub fn csv_bytes(df: &DataFrame) -> Result<Vec<u8>> {
    Ok(csv_parts(df)?.concat())
}

/// [`csv_bytes`] in parts whose concatenation is the file (the header, then slices of rows made
/// in parallel), so a large manifest is written without first being joined in memory.
pub fn csv_parts(df: &DataFrame) -> Result<Vec<Vec<u8>>> {
    let written = |d: &DataType| {
        matches!(d, DataType::String | DataType::Boolean)
            || d.is_unsigned_integer()
            || d.is_signed_integer()
    };
    if !df.columns().iter().all(|c| written(c.dtype())) {
        return Ok(vec![csv_bytes_polars(df)?]);
    }
    let mut header = Vec::new();
    for (j, name) in df.get_column_names().iter().enumerate() {
        if j > 0 {
            header.push(b',');
        }
        csv_field(&mut header, name.as_str());
    }
    header.push(b'\n');
    // Rows are written in parallel, in slices of the frame (zero-copy), kept in order.
    const ROWS: usize = 1 << 14;
    let n = df.height();
    let pieces = (0..n.div_ceil(ROWS))
        .into_par_iter()
        .map(|k| csv_rows(&df.slice((k * ROWS) as i64, ROWS.min(n - k * ROWS))));
    std::iter::once(Ok(header))
        .chain(pieces.collect::<Vec<_>>())
        .collect()
}

/// One CSV field as polars' `QuoteStyle::Necessary` writes it.
fn csv_field(buf: &mut Vec<u8>, s: &str) {
    if s.is_empty() {
        buf.extend_from_slice(b"\"\"");
    } else if s.bytes().any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r')) {
        buf.push(b'"');
        for (k, part) in s.split('"').enumerate() {
            if k > 0 {
                buf.extend_from_slice(b"\"\"");
            }
            buf.extend_from_slice(part.as_bytes());
        }
        buf.push(b'"');
    } else {
        buf.extend_from_slice(s.as_bytes());
    }
}

/// The CSV lines of every row of `df` (string, boolean and integer columns), no header.
fn csv_rows(df: &DataFrame) -> Result<Vec<u8>> {
    enum Cells<'a> {
        Str(Vec<Option<&'a str>>),
        UInt(Vec<Option<u64>>),
        Int(Vec<Option<i64>>),
        Bool(Vec<Option<bool>>),
    }
    let mut cells = Vec::with_capacity(df.width());
    for c in df.columns() {
        let s = c.as_materialized_series();
        cells.push(match s.dtype() {
            DataType::String => Cells::Str(s.str()?.iter().collect()),
            DataType::Boolean => Cells::Bool(s.bool()?.iter().collect()),
            d if d.is_unsigned_integer() => {
                Cells::UInt(s.cast(&DataType::UInt64)?.u64()?.iter().collect())
            }
            _ => Cells::Int(s.cast(&DataType::Int64)?.i64()?.iter().collect()),
        });
    }
    let mut buf = Vec::with_capacity(df.height() * df.width() * 12);
    let mut num = itoa::Buffer::new();
    for i in 0..df.height() {
        for (j, col) in cells.iter().enumerate() {
            if j > 0 {
                buf.push(b',');
            }
            match col {
                Cells::Str(v) => {
                    if let Some(s) = v[i] {
                        csv_field(&mut buf, s)
                    }
                }
                Cells::UInt(v) => {
                    if let Some(x) = v[i] {
                        buf.extend_from_slice(num.format(x).as_bytes())
                    }
                }
                Cells::Int(v) => {
                    if let Some(x) = v[i] {
                        buf.extend_from_slice(num.format(x).as_bytes())
                    }
                }
                Cells::Bool(v) => match v[i] {
                    Some(true) => buf.extend_from_slice(b"true"),
                    Some(false) => buf.extend_from_slice(b"false"),
                    None => {}
                },
            }
        }
        buf.push(b'\n');
    }
    Ok(buf)
}

/// [`csv_bytes`] through polars' `CsvWriter` (the reference it matches, and the writer of
/// column types it does not handle).
pub fn csv_bytes_polars(df: &DataFrame) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    let mut df = df.clone();
    CsvWriter::new(&mut buf)
        .include_header(true)
        .finish(&mut df)?;
    Ok(buf)
}

/// Reads a covidx Parquet table (manifest or augmentation table), checking that its key-value
/// metadata names `format` with the same major version. Errors name the file.
pub fn read_table(path: &Path, format: &str, version: &str) -> Result<DataFrame> {
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut reader = ParquetReader::new(f);
    let meta = reader
        .get_metadata()
        .with_context(|| format!("{}: not a Parquet file", path.display()))?;
    let kv = meta.key_value_metadata().clone().unwrap_or_default();
    let get = |key: &str| -> Option<String> {
        kv.iter()
            .find(|e| e.key == key)
            .and_then(|e| e.value.clone())
    };
    match (get("covidx.format"), get("covidx.version")) {
        (Some(f), Some(v)) if f == format => {
            let major = |s: &str| s.split('.').next().unwrap_or("").to_string();
            if major(&v) != major(version) {
                bail!(
                    "{}: {format} version {v} is not readable by this covidx (it reads \
                     version {}.x); rebuild with this version",
                    path.display(),
                    major(version)
                );
            }
        }
        (Some(f), _) => bail!(
            "{}: holds a {f:?} table, expected {format:?}",
            path.display()
        ),
        (None, _) => bail!(
            "{}: no covidx.format in its metadata: not a {format} table written by covidx \
             (or written before format versions were recorded; rebuild it)",
            path.display()
        ),
    }
    reader
        .finish()
        .with_context(|| format!("reading {}", path.display()))
}

/// One manifest row as owned values (what [`Manifest::from_rows`] takes and [`Row::owned`]
/// gives). Text fields are [`CompactString`]s (`&str` through `Deref`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ManifestRow {
    /// Row number (the `record` of shards and the augmentation table).
    pub record: u64,
    /// Pipeline name of the source.
    pub source: CompactString,
    /// Source tag of 4-column split files.
    pub tag: CompactString,
    /// Metadata file of the row, relative to `--sources`.
    pub file: CompactString,
    /// 1-based line in that file.
    pub line: u64,
    /// Upstream patient id.
    pub patient: CompactString,
    /// Patient key used for every patient-level decision (`source:subject`).
    pub patient_key: CompactString,
    /// Image name as upstream gives it.
    pub image: CompactString,
    /// Image path relative to `--sources` (empty when the row names none).
    pub path: CompactString,
    /// Raw finding.
    pub finding: CompactString,
    /// Finding after the parse rule.
    pub finding_parsed: CompactString,
    /// View.
    pub view: CompactString,
    /// Modality.
    pub modality: CompactString,
    /// Class name, when labelled.
    pub label: Option<CompactString>,
    /// Split, when in one.
    pub split: Option<Split>,
    /// In the test pool.
    pub test_pool: bool,
    /// Exclusion code, when excluded.
    pub exclusion: Option<CompactString>,
    /// Detail of the exclusion or a note.
    pub detail: CompactString,
    /// SHA-256 of the image file, when it was read.
    pub sha256: Option<CompactString>,
    /// Why the image stage quarantined the image.
    pub image_error: Option<CompactString>,
}

/// The text columns of a manifest, in the order [`Manifest`] keeps them (the first
/// [`REQUIRED_TEXT`] never null).
const TEXT: [&str; 16] = [
    "source",
    "tag",
    "file",
    "patient",
    "patient_key",
    "image",
    "path",
    "finding",
    "finding_parsed",
    "view",
    "modality",
    "detail",
    "label",
    "exclusion",
    "sha256",
    "image_error",
];
/// How many of [`TEXT`] are never null.
const REQUIRED_TEXT: usize = 12;

/// A manifest, held as its columns: the text columns are the Arrow arrays of the frame it
/// was read from (shared, never copied per row), so reading a manifest of any size costs one
/// pass of checks. Rows are [`Row`] views.
#[derive(Clone)]
pub struct Manifest {
    line: Vec<u64>,
    test_pool: Vec<bool>,
    split: Vec<Option<Split>>,
    /// One single-chunk array per name of [`TEXT`].
    text: Vec<Utf8ViewArray>,
}

impl Manifest {
    /// Reads and checks `manifest.parquet`: format and version, every column with its type,
    /// records numbered 0..n, split values `train`/`test`. Errors name the file and column.
    pub fn read(path: &Path) -> Result<Manifest> {
        let df = read_table(path, FORMAT, VERSION)?;
        Manifest::from_frame(&df, &path.display().to_string())
    }

    /// The manifest of a frame (`file` names it in errors). The checks run in row order (the
    /// first fault is the error); the text columns are shared with the frame, not copied.
    pub fn from_frame(df: &DataFrame, file: &str) -> Result<Manifest> {
        let f = Columns::new(df, file);
        let record = f.u64s("record")?;
        if let Some(i) = (0..record.len()).find(|&i| record[i] != i as u64) {
            bail!(
                "{file}: column \"record\" is {} on row {i}; records must be numbered 0..n",
                record[i]
            );
        }
        let line = f.u64s("line")?;
        let test_pool = f.bools("test_pool")?;
        let split = f
            .str_chunked("split", ColumnType::OptStr)?
            .iter()
            .enumerate()
            .map(|(i, v)| split_value(v, file, i))
            .collect::<Result<Vec<_>>>()?;
        let text = TEXT
            .iter()
            .enumerate()
            .map(|(k, name)| {
                let want = if k < REQUIRED_TEXT {
                    ColumnType::Str
                } else {
                    ColumnType::OptStr
                };
                let c = f.str_chunked(name, want)?.rechunk();
                let a = c.downcast_iter().next().cloned();
                Ok(a.unwrap_or_else(|| Utf8ViewArray::from_slice_values::<&str, [&str; 0]>([])))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Manifest {
            line,
            test_pool,
            split,
            text,
        })
    }

    /// The manifest of `rows`, numbered in order (their `record` fields are not read).
    pub fn from_rows(rows: &[ManifestRow]) -> Manifest {
        let required = |get: fn(&ManifestRow) -> &str| {
            Utf8ViewArray::from_slice_values(rows.iter().map(get).collect::<Vec<_>>())
        };
        let optional = |get: fn(&ManifestRow) -> Option<&str>| {
            Utf8ViewArray::from_slice(rows.iter().map(get).collect::<Vec<_>>())
        };
        Manifest {
            line: rows.iter().map(|r| r.line).collect(),
            test_pool: rows.iter().map(|r| r.test_pool).collect(),
            split: rows.iter().map(|r| r.split).collect(),
            text: vec![
                required(|r| &r.source),
                required(|r| &r.tag),
                required(|r| &r.file),
                required(|r| &r.patient),
                required(|r| &r.patient_key),
                required(|r| &r.image),
                required(|r| &r.path),
                required(|r| &r.finding),
                required(|r| &r.finding_parsed),
                required(|r| &r.view),
                required(|r| &r.modality),
                required(|r| &r.detail),
                optional(|r| r.label.as_deref()),
                optional(|r| r.exclusion.as_deref()),
                optional(|r| r.sha256.as_deref()),
                optional(|r| r.image_error.as_deref()),
            ],
        }
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.line.len()
    }

    /// True when the manifest has no row.
    pub fn is_empty(&self) -> bool {
        self.line.is_empty()
    }

    /// The row of manifest record `record` (as shards and the augmentation table name it).
    pub fn get(&self, record: u64) -> Option<Row<'_>> {
        let i = usize::try_from(record).ok().filter(|&i| i < self.len())?;
        Some(Row { m: self, i })
    }

    /// The row at `i`; panics past the end.
    pub fn row(&self, i: usize) -> Row<'_> {
        assert!(i < self.len(), "row {i} of a {}-row manifest", self.len());
        Row { m: self, i }
    }

    /// Every row, in record order.
    pub fn rows(&self) -> impl ExactSizeIterator<Item = Row<'_>> + DoubleEndedIterator + Clone {
        (0..self.len()).map(move |i| Row { m: self, i })
    }

    /// Every row, in record order, as a parallel iterator.
    pub fn par_rows(&self) -> impl IndexedParallelIterator<Item = Row<'_>> {
        (0..self.len())
            .into_par_iter()
            .map(move |i| Row { m: self, i })
    }
}

impl PartialEq for Manifest {
    fn eq(&self, other: &Manifest) -> bool {
        self.line == other.line
            && self.test_pool == other.test_pool
            && self.split == other.split
            && self
                .text
                .iter()
                .zip(&other.text)
                .all(|(a, b)| a.iter().eq(b.iter()))
    }
}

impl Eq for Manifest {}

impl std::fmt::Debug for Manifest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.rows()).finish()
    }
}

/// One row of a [`Manifest`]: a view whose accessors read the columns (copied freely).
#[derive(Clone, Copy)]
pub struct Row<'a> {
    m: &'a Manifest,
    i: usize,
}

macro_rules! text_fields {
    ($($(#[$doc:meta])* $name:ident = $k:expr;)*) => {$(
        $(#[$doc])*
        pub fn $name(self) -> &'a str {
            // SAFETY: `i < len` (rows are only made in range) and every column has `len` values.
            unsafe { self.m.text[$k].value_unchecked(self.i) }
        }
    )*};
}

macro_rules! opt_text_fields {
    ($($(#[$doc:meta])* $name:ident = $k:expr;)*) => {$(
        $(#[$doc])*
        pub fn $name(self) -> Option<&'a str> {
            self.m.text[$k].get(self.i)
        }
    )*};
}

impl<'a> Row<'a> {
    /// Row number (the `record` of shards and the augmentation table).
    pub fn record(self) -> u64 {
        self.i as u64
    }
    /// 1-based line in the row's metadata file.
    pub fn line(self) -> u64 {
        self.m.line[self.i]
    }
    /// Split, when in one.
    pub fn split(self) -> Option<Split> {
        self.m.split[self.i]
    }
    /// In the test pool.
    pub fn test_pool(self) -> bool {
        self.m.test_pool[self.i]
    }
    text_fields! {
        /// Pipeline name of the source.
        source = 0;
        /// Source tag of 4-column split files.
        tag = 1;
        /// Metadata file of the row, relative to `--sources`.
        file = 2;
        /// Upstream patient id.
        patient = 3;
        /// Patient key used for every patient-level decision (`source:subject`).
        patient_key = 4;
        /// Image name as upstream gives it.
        image = 5;
        /// Image path relative to `--sources` (empty when the row names none).
        path = 6;
        /// Raw finding.
        finding = 7;
        /// Finding after the parse rule.
        finding_parsed = 8;
        /// View.
        view = 9;
        /// Modality.
        modality = 10;
        /// Detail of the exclusion or a note.
        detail = 11;
    }
    opt_text_fields! {
        /// Class name, when labelled.
        label = 12;
        /// Exclusion code, when excluded.
        exclusion = 13;
        /// SHA-256 of the image file, when it was read.
        sha256 = 14;
        /// Why the image stage quarantined the image.
        image_error = 15;
    }

    /// The image name as split files write it (see [`Record::split_image`]).
    pub fn split_image(self) -> String {
        crate::record::split_name(self.image())
    }

    /// The row as owned values.
    pub fn owned(self) -> ManifestRow {
        ManifestRow {
            record: self.record(),
            source: self.source().into(),
            tag: self.tag().into(),
            file: self.file().into(),
            line: self.line(),
            patient: self.patient().into(),
            patient_key: self.patient_key().into(),
            image: self.image().into(),
            path: self.path().into(),
            finding: self.finding().into(),
            finding_parsed: self.finding_parsed().into(),
            view: self.view().into(),
            modality: self.modality().into(),
            label: self.label().map(Into::into),
            split: self.split(),
            test_pool: self.test_pool(),
            exclusion: self.exclusion().map(Into::into),
            detail: self.detail().into(),
            sha256: self.sha256().map(Into::into),
            image_error: self.image_error().map(Into::into),
        }
    }
}

impl std::fmt::Debug for Row<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.owned().fmt(f)
    }
}

/// A split column value.
fn split_value(v: Option<&str>, file: &str, row: usize) -> Result<Option<Split>> {
    match v {
        None => Ok(None),
        Some("train") => Ok(Some(Split::Train)),
        Some("test") => Ok(Some(Split::Test)),
        Some(other) => {
            bail!("{file}: column \"split\" is {other:?} on row {row} (train, test or null)")
        }
    }
}

/// Typed, checked access to the columns of a covidx table (manifest, image facts): every
/// accessor checks the column's presence, type and nulls, and errors name the file and column.
pub struct Columns<'a> {
    df: &'a DataFrame,
    file: &'a str,
}

impl<'a> Columns<'a> {
    /// Columns of `df`, read from `file` (named in errors).
    pub fn new(df: &'a DataFrame, file: &'a str) -> Columns<'a> {
        Columns { df, file }
    }

    /// Number of rows.
    pub fn height(&self) -> usize {
        self.df.height()
    }

    fn column(&self, name: &str, want: ColumnType) -> Result<&'a Column> {
        let file = self.file;
        let c = self
            .df
            .column(name)
            .map_err(|_| anyhow::anyhow!("{file}: column {name:?} is missing"))?;
        let ok = match want {
            ColumnType::U64 => c.dtype() == &DataType::UInt64,
            ColumnType::U32 => c.dtype() == &DataType::UInt32,
            ColumnType::F64 => c.dtype() == &DataType::Float64,
            ColumnType::Str | ColumnType::OptStr => c.dtype() == &DataType::String,
            ColumnType::Bool => c.dtype() == &DataType::Boolean,
            ColumnType::Binary => c.dtype() == &DataType::Binary,
        };
        if !ok {
            bail!(
                "{file}: column {name:?} is {}, expected {want:?}",
                c.dtype()
            );
        }
        if want != ColumnType::OptStr && c.null_count() > 0 {
            bail!("{file}: column {name:?} has {} null values", c.null_count());
        }
        Ok(c)
    }

    fn wrong(&self, name: &str, e: impl std::fmt::Display) -> anyhow::Error {
        anyhow::anyhow!("{}: column {name:?}: {e}", self.file)
    }

    /// A string column, checked as `want` ([`ColumnType::Str`] or [`ColumnType::OptStr`]).
    fn str_chunked(&self, name: &str, want: ColumnType) -> Result<&'a StringChunked> {
        let c = self.column(name, want)?;
        c.str().map_err(|e| self.wrong(name, e))
    }

    /// A string column that may hold nulls.
    pub fn opt_strings(&self, name: &str) -> Result<Vec<Option<String>>> {
        let c = self.column(name, ColumnType::OptStr)?;
        let s = c.str().map_err(|e| self.wrong(name, e))?;
        Ok(s.iter().map(|v| v.map(str::to_string)).collect())
    }

    /// A string column without nulls.
    pub fn strings(&self, name: &str) -> Result<Vec<String>> {
        let c = self.column(name, ColumnType::Str)?;
        let s = c.str().map_err(|e| self.wrong(name, e))?;
        Ok(s.iter()
            .map(|v| v.unwrap_or_default().to_string())
            .collect())
    }

    /// A UInt64 column.
    pub fn u64s(&self, name: &str) -> Result<Vec<u64>> {
        let c = self.column(name, ColumnType::U64)?;
        let s = c.u64().map_err(|e| self.wrong(name, e))?;
        Ok(s.iter().map(Option::unwrap_or_default).collect())
    }

    /// A UInt32 column.
    pub fn u32s(&self, name: &str) -> Result<Vec<u32>> {
        let c = self.column(name, ColumnType::U32)?;
        let s = c.u32().map_err(|e| self.wrong(name, e))?;
        Ok(s.iter().map(Option::unwrap_or_default).collect())
    }

    /// A Float64 column.
    pub fn f64s(&self, name: &str) -> Result<Vec<f64>> {
        let c = self.column(name, ColumnType::F64)?;
        let s = c.f64().map_err(|e| self.wrong(name, e))?;
        Ok(s.iter().map(Option::unwrap_or_default).collect())
    }

    /// A Boolean column.
    pub fn bools(&self, name: &str) -> Result<Vec<bool>> {
        let c = self.column(name, ColumnType::Bool)?;
        let s = c.bool().map_err(|e| self.wrong(name, e))?;
        Ok(s.iter().map(Option::unwrap_or_default).collect())
    }

    /// A Binary column.
    pub fn binaries(&self, name: &str) -> Result<Vec<Vec<u8>>> {
        let c = self.column(name, ColumnType::Binary)?;
        let s = c.binary().map_err(|e| self.wrong(name, e))?;
        Ok(s.iter().map(|v| v.unwrap_or_default().to_vec()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_rows_are_the_same_from_one_chunk_or_many_and_none_from_no_rows() {
        let classes = ["normal".to_string(), "COVID-19".to_string()];
        let records: Vec<Record> = (0..9000)
            .map(|i| Record {
                source: ["cohen", "rsna"][i % 2].to_string(),
                subject: format!("p{}", i / 3),
                patient: format!("p{}", i / 3),
                image: format!("img {i}.png"),
                path: format!("images/a-long-enough-folder-name/img {i}.png"),
                label: (i % 5 != 0).then_some(i % 2),
                split: [Some(Split::Train), Some(Split::Test), None][i % 3],
                sha256: (i % 4 == 0).then(|| format!("{i:064x}")),
                ..Record::default()
            })
            .collect();
        // Keys given for some records (every third empty, the last 100 past the end) are used;
        // the rest are made: both give the same column.
        let keys: Vec<String> = records[..records.len() - 100]
            .iter()
            .enumerate()
            .map(|(i, r)| {
                if i % 3 == 0 {
                    String::new()
                } else {
                    r.patient_key()
                }
            })
            .collect();
        let df = frame(&records, &keys, &classes).unwrap();
        assert!(df.equals_missing(&frame(&records, &[], &classes).unwrap()));
        let whole = Manifest::from_frame(&df, "m").unwrap();
        let mut chunked = df.slice(0, 4097);
        chunked.vstack_mut(&df.slice(4097, 3000)).unwrap();
        chunked.vstack_mut(&df.slice(7097, 2000)).unwrap();
        assert!(
            chunked
                .column("path")
                .unwrap()
                .as_materialized_series()
                .n_chunks()
                > 1
        );
        assert_eq!(Manifest::from_frame(&chunked, "m").unwrap(), whole);
        for (row, r) in whole.rows().zip(&records) {
            assert_eq!(row.path(), r.path);
            assert_eq!(row.patient_key(), r.patient_key());
            assert_eq!(row.label(), r.label.map(|l| classes[l].as_str()));
            assert_eq!(row.sha256(), r.sha256.as_deref());
        }
        let empty = frame(&[], &[], &classes).unwrap();
        assert!(Manifest::from_frame(&empty, "m").unwrap().is_empty());
    }

    #[test]
    fn csv_bytes_equal_polars_csv_writer_bytes() {
        let strs = [
            Some("plain"),
            Some(""),
            None,
            Some("a,b"),
            Some("say \"hi\""),
            Some("\"lead"),
            Some("two\nlines"),
            Some("cr\r"),
            Some("ünïcödé, \"both\""),
            Some(" spaced "),
        ];
        // Over two slices of rows (the rows are written in slices of 2^14).
        let n = 2 * (1 << 14) + 7;
        let df = DataFrame::new(
            n,
            vec![
                Column::new(
                    "s".into(),
                    (0..n).map(|i| strs[i % strs.len()]).collect::<Vec<_>>(),
                ),
                Column::new(
                    "u".into(),
                    (0..n as u64).map(|i| i * 1_000_003).collect::<Vec<_>>(),
                ),
                Column::new(
                    "i".into(),
                    (0..n as i64).map(|i| (i - 4) * 77).collect::<Vec<_>>(),
                ),
                Column::new(
                    "o".into(),
                    (0..n)
                        .map(|i| (i % 3 != 0).then_some(i as u32))
                        .collect::<Vec<_>>(),
                ),
                Column::new(
                    "b".into(),
                    (0..n)
                        .map(|i| [Some(true), Some(false), None][i % 3])
                        .collect::<Vec<_>>(),
                ),
                Column::new("needs, quotes".into(), vec![Some("x"); n]),
            ],
        )
        .unwrap();
        let ours = csv_bytes(&df).unwrap();
        assert_eq!(
            String::from_utf8(ours).unwrap(),
            String::from_utf8(csv_bytes_polars(&df).unwrap()).unwrap()
        );
        // A column type it does not write itself goes to polars.
        let f = DataFrame::new(2, vec![Column::new("f".into(), vec![0.1f64, 2.5])]).unwrap();
        assert_eq!(csv_bytes(&f).unwrap(), csv_bytes_polars(&f).unwrap());
    }
    use crate::record::Exclusion;

    fn records() -> Vec<Record> {
        let mut a = Record {
            source: "c".into(),
            tag: "cohen".into(),
            file: "c/metadata.csv".into(),
            line: 2,
            patient: "7".into(),
            subject: "7".into(),
            image: "a b.png".into(),
            path: "c/images/a b.png".into(),
            finding: "COVID-19".into(),
            parsed: "COVID-19".into(),
            label: Some(1),
            split: Some(Split::Test),
            test_pool: true,
            sha256: Some("ab".repeat(32)),
            ..Record::default()
        };
        let mut b = a.clone();
        b.line = 3;
        b.split = None;
        b.label = None;
        b.exclude(Exclusion::Unlabelled, "blank finding");
        a.image_error = Some("corrupt: x".into());
        vec![a, b]
    }

    #[test]
    fn written_manifest_reads_back_typed() {
        let classes = vec!["normal".to_string(), "COVID-19".to_string()];
        let recs = records();
        let df = frame(&recs, &[], &classes).unwrap();
        let names: Vec<&str> = df.get_column_names().iter().map(|s| s.as_str()).collect();
        assert_eq!(names, COLUMNS.map(|(n, _)| n));
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("manifest.parquet");
        std::fs::write(&p, parquet_bytes(&df, FORMAT, VERSION).unwrap()).unwrap();
        let m = Manifest::read(&p).unwrap();
        assert_eq!(m.len(), 2);
        let r = m.row(0);
        assert_eq!(r.label(), Some("COVID-19"));
        assert_eq!(r.split(), Some(Split::Test));
        assert_eq!(r.patient_key(), "c:7");
        assert_eq!(r.split_image(), "a_b.png");
        assert_eq!(r.image_error(), Some("corrupt: x"));
        assert_eq!(m.row(1).exclusion(), Some("unlabelled"));
        assert_eq!(m.row(1).split(), None);
        assert_eq!(m.get(2).map(Row::record), None);
        // The owned rows give the same manifest back.
        let owned: Vec<ManifestRow> = m.rows().map(Row::owned).collect();
        assert_eq!(owned[1].line, 3);
        assert_eq!(Manifest::from_rows(&owned), m);
    }

    #[test]
    fn bad_manifests_name_file_and_column() {
        let classes = vec!["normal".to_string(), "COVID-19".to_string()];
        let df = frame(&records(), &[], &classes).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.parquet");
        let write = |df: &DataFrame, format: &str, version: &str| {
            std::fs::write(&p, parquet_bytes(df, format, version).unwrap()).unwrap();
            format!("{:#}", Manifest::read(&p).unwrap_err())
        };
        let err = write(&df.drop("patient_key").unwrap(), FORMAT, VERSION);
        assert!(
            err.contains("m.parquet: column \"patient_key\" is missing"),
            "{err}"
        );
        let mut retyped = df.clone();
        retyped
            .with_column(Column::new("line".into(), ["x", "y"]))
            .unwrap();
        let err = write(&retyped, FORMAT, VERSION);
        assert!(err.contains("column \"line\" is str"), "{err}");
        let err = write(&df, FORMAT, "2.0");
        assert!(err.contains("version 2.0 is not readable"), "{err}");
        let err = write(&df, "covidx-augment", "1.0");
        assert!(err.contains("expected \"covidx-manifest\""), "{err}");
        std::fs::write(&p, b"not parquet").unwrap();
        let err = format!("{:#}", Manifest::read(&p).unwrap_err());
        assert!(err.contains("m.parquet"), "{err}");
        // A later minor version with an extra column still reads.
        let mut extra = df.clone();
        extra
            .with_column(Column::new("new_column".into(), [1u32, 2]))
            .unwrap();
        std::fs::write(&p, parquet_bytes(&extra, FORMAT, "1.7").unwrap()).unwrap();
        assert_eq!(Manifest::read(&p).unwrap().len(), 2);
    }
}
