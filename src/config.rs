//! Pipeline definitions: TOML files under `pipelines/` turned into a validated, typed config.
//!
//! Unknown keys are rejected by serde (`deny_unknown_fields`) and every semantic check names the
//! key path it refers to (`sources[1].views`, `labels.map."SARS"`, ...).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

/// A whole pipeline definition.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pipeline {
    /// Short name, written to the lock file and summary.
    pub name: String,
    /// Free text shown in `--help`-like listings.
    #[serde(default)]
    pub description: String,
    /// Seed for every random choice of the build (seeded split).
    #[serde(default)]
    pub seed: u64,
    /// Class names, in the order used for grouping, split files and tensors.
    pub classes: Vec<String>,
    /// How raw findings become classes.
    pub labels: Labels,
    /// The datasets read, in declaration order.
    pub sources: Vec<SourceConfig>,
    /// Train/test assignment.
    #[serde(default)]
    pub split: SplitConfig,
    /// Split-file format.
    #[serde(default)]
    pub output: OutputConfig,
    /// Image stage: decode, crop/resize, augment, shards.
    #[serde(default)]
    pub images: ImagesConfig,
    /// Audit settings: the near-duplicate threshold and what fails a build.
    #[serde(default)]
    pub audit: AuditConfig,
}

/// Audit settings (`[audit]`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Two images are near copies when their pHash differs in at most this many of 64 bits and
    /// their dHash in at most twice as many.
    pub near_bits: u32,
    /// Metadata-level checks whose finding makes `covidx build` fail (after writing the build
    /// and its audit report): `overlap`, `unknown-findings`, `source-confounding`.
    pub fail_on: Vec<String>,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            near_bits: 6,
            fail_on: vec!["overlap".to_string()],
        }
    }
}

/// The checks `[audit] fail_on` may name (those a build can run without decoding images).
pub const BUILD_CHECKS: [&str; 3] = ["overlap", "unknown-findings", "source-confounding"];

impl AuditConfig {
    fn validate(&self) -> Result<()> {
        if self.near_bits > 24 {
            bail!("audit.near_bits: {} (at most 24 of 64)", self.near_bits);
        }
        for c in &self.fail_on {
            if !BUILD_CHECKS.contains(&c.as_str()) {
                bail!(
                    "audit.fail_on: {c:?} is not a check a build runs (they are {})",
                    BUILD_CHECKS.join(", ")
                );
            }
        }
        Ok(())
    }
}

/// Image stage settings (`[images]`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ImagesConfig {
    /// Run the image stage on every build (otherwise only with `covidx build --images`).
    pub enabled: bool,
    /// Output side S (images are S×S).
    pub size: u32,
    /// Fraction of rows dropped at the top before the centre square crop.
    pub crop_top: f32,
    /// Augmented copies per training record (copy 0, the clean image, is always written).
    pub copies: u32,
    /// Target shard size in MiB.
    pub shard_mib: u64,
    /// Augmentation ranges.
    pub augment: crate::imaging::augment::AugmentConfig,
}

impl Default for ImagesConfig {
    fn default() -> Self {
        ImagesConfig {
            enabled: false,
            size: 224,
            crop_top: 0.08,
            copies: 0,
            shard_mib: 256,
            augment: Default::default(),
        }
    }
}

/// Checks that `v` is a finite number in `lo..=hi`, naming `key` otherwise.
fn in_range(key: &str, v: f32, lo: f32, hi: f32) -> Result<()> {
    if !(v.is_finite() && (lo..=hi).contains(&v)) {
        bail!("{key}: {v} (must be a finite number from {lo} to {hi})");
    }
    Ok(())
}

impl ImagesConfig {
    /// Checks every image setting: sizes in bounds and every float finite and in a sane range
    /// (a `nan` or `inf` would otherwise give blank samples).
    fn validate(&self) -> Result<()> {
        if !(8..=4096).contains(&self.size) {
            bail!("images.size: {} (must be 8 to 4096)", self.size);
        }
        if !(self.crop_top.is_finite() && (0.0..0.9).contains(&self.crop_top)) {
            bail!("images.crop_top: {} (must be in [0, 0.9))", self.crop_top);
        }
        if self.copies > 255 {
            bail!("images.copies: {} (at most 255)", self.copies);
        }
        if !(1..=65_536).contains(&self.shard_mib) {
            bail!("images.shard_mib: {} (must be 1 to 65536)", self.shard_mib);
        }
        let a = &self.augment;
        in_range("images.augment.rotation", a.rotation, 0.0, 180.0)?;
        in_range("images.augment.shift_x", a.shift_x, 0.0, 1.0)?;
        in_range("images.augment.shift_y", a.shift_y, 0.0, 1.0)?;
        in_range("images.augment.flip", a.flip, 0.0, 1.0)?;
        in_range(
            "images.augment.intensity_shift",
            a.intensity_shift,
            0.0,
            1.0,
        )?;
        for (key, [lo, hi]) in [
            ("zoom_x", a.zoom_x),
            ("zoom_y", a.zoom_y),
            ("brightness", a.brightness),
        ] {
            let key = format!("images.augment.{key}");
            in_range(&key, lo, 0.01, 100.0)?;
            in_range(&key, hi, 0.01, 100.0)?;
            if lo > hi {
                bail!("{key}: [{lo}, {hi}] must be min <= max");
            }
        }
        Ok(())
    }
}

/// How a raw finding string is read before the mapping table is applied.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ParseRule {
    /// Text before the first comma (`COVID-19, ARDS` -> `COVID-19`), COVID-Net's early rule.
    FirstComma,
    /// Last `/`-separated element (`Pneumonia/Viral/COVID-19` -> `COVID-19`), the later rule.
    LastPath,
    /// `last-path` when the text holds a `/`, then `first-comma`: reads both Cohen schemas.
    Auto,
    /// The whole trimmed text.
    Whole,
}

/// What happens to a finding the mapping table does not list.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum UnknownFinding {
    /// The record is excluded with reason `unmapped-finding` (and counted in the summary).
    #[default]
    Exclude,
    /// The build stops with an error naming the file, row and finding.
    Error,
}

/// The label mapping table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Labels {
    /// Parse rule applied to every raw finding.
    pub parse: ParseRule,
    /// What to do with findings not in `map`.
    #[serde(default)]
    pub unknown: UnknownFinding,
    /// Parsed finding -> class. Matching is exact after trimming whitespace.
    pub map: BTreeMap<String, String>,
}

/// Which upstream reader a source uses.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum SourceKind {
    /// ieee8023/covid-chestxray-dataset.
    Cohen,
    /// agchung/Figure1-COVID-chestxray-dataset.
    Figure1,
    /// agchung/Actualmed-COVID-chestxray-dataset.
    Actualmed,
    /// Kaggle RSNA Pneumonia Detection Challenge (stage 2).
    Rsna,
    /// Any CSV whose columns are named in the pipeline (e.g. NIH ChestX-ray14).
    Csv,
    /// Kaggle COVID-19 Radiography Database (COVID-Net's `sirm`): the metadata workbook
    /// (`FILE NAME`, `FORMAT`, `URL`), images under `image_dir`.
    Sirm,
    /// RSNA RICORD through COVID-Net's `ricord_data_set.txt` (one file name per line).
    Ricord,
}

impl SourceKind {
    /// Default directory under `--sources`.
    pub fn default_dir(self) -> Option<&'static str> {
        match self {
            SourceKind::Cohen => Some("covid-chestxray-dataset"),
            SourceKind::Figure1 => Some("Figure1-COVID-chestxray-dataset"),
            SourceKind::Actualmed => Some("Actualmed-COVID-chestxray-dataset"),
            SourceKind::Rsna => Some("rsna-pneumonia-detection-challenge"),
            SourceKind::Sirm => Some("COVID-19-Radiography-Database"),
            SourceKind::Ricord | SourceKind::Csv => None,
        }
    }

    /// Default 4th-column tag in split files (COVID-Net's names).
    pub fn default_tag(self) -> Option<&'static str> {
        match self {
            SourceKind::Cohen => Some("cohen"),
            SourceKind::Figure1 => Some("fig1"),
            SourceKind::Actualmed => Some("actmed"),
            SourceKind::Rsna => Some("rsna"),
            SourceKind::Sirm => Some("sirm"),
            SourceKind::Ricord => Some("ricord"),
            SourceKind::Csv => None,
        }
    }

    /// Default metadata file inside the source directory.
    pub fn default_metadata(self) -> &'static str {
        match self {
            SourceKind::Rsna => "stage_2_train_labels.csv",
            SourceKind::Sirm => "COVID-19.metadata.xlsx",
            SourceKind::Ricord => "COVID-Net/ricord_data_set.txt",
            _ => "metadata.csv",
        }
    }

    /// Default image folder inside the source directory (`csv`: `image_dir`, else `images`).
    pub fn default_image_dir(self) -> &'static str {
        match self {
            SourceKind::Sirm => "COVID-19",
            SourceKind::Ricord => "ricord",
            _ => "images",
        }
    }

    /// Whether the reader takes the finding from its metadata (else from `finding`).
    pub fn has_findings(self) -> bool {
        !matches!(self, SourceKind::Sirm | SourceKind::Ricord)
    }

    /// Default text encoding of the metadata file.
    pub fn default_encoding(self) -> Encoding {
        match self {
            SourceKind::Figure1 => Encoding::Latin1,
            _ => Encoding::Utf8,
        }
    }
}

/// Text encoding of a metadata file.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
pub enum Encoding {
    /// UTF-8 (a BOM is skipped); invalid bytes are an error naming file, line and byte.
    #[serde(rename = "utf-8")]
    Utf8,
    /// ISO-8859-1: every byte is the code point of the same value.
    #[serde(rename = "latin-1", alias = "iso-8859-1")]
    Latin1,
}

/// Column names of a generic CSV source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Columns {
    /// Patient id column.
    pub patient: String,
    /// Image file name column (relative to `image_dir`).
    pub image: String,
    /// Raw finding column.
    pub finding: String,
    /// View column, if any.
    pub view: Option<String>,
    /// Modality column, if any.
    pub modality: Option<String>,
}

/// One source as the pipeline file declares it (before defaults).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Name used in the manifest and to refer to the source in `split.order`.
    pub name: String,
    /// Which reader parses it.
    pub kind: SourceKind,
    /// Directory under `--sources` (default per kind).
    pub dir: Option<String>,
    /// Metadata file inside `dir` (default per kind; required for `csv`).
    pub metadata: Option<String>,
    /// Text encoding (default per kind).
    pub encoding: Option<Encoding>,
    /// Source tag for 4-column split files (default per kind; the name for `csv`).
    pub tag: Option<String>,
    /// Keep only these views (exact match after trimming); absent = keep all.
    pub views: Option<Vec<String>>,
    /// Keep only these modalities; absent = keep all.
    pub modalities: Option<Vec<String>>,
    /// Patients pinned to the test pool, listed per class (upstream ids).
    #[serde(default)]
    pub test_patients: BTreeMap<String, Vec<String>>,
    /// Classes whose patients with exactly one record of that class in this source are pinned
    /// to the test pool (COVIDx8 pins RICORD's single-image patients).
    #[serde(default)]
    pub test_single_image: Vec<String>,
    /// Files (under `--sources`) listing patients pinned to the test pool, per class
    /// (`.npy` of strings, or text with one id per line).
    #[serde(default)]
    pub test_pools: BTreeMap<String, String>,
    /// `csv` kind: column names.
    pub columns: Option<Columns>,
    /// `csv` kind: directory of the images inside `dir` (default `images`).
    pub image_dir: Option<String>,
    /// `csv` kind: separator between several findings in one cell (e.g. `|`).
    pub finding_separator: Option<String>,
    /// `csv` kind: field delimiter (default `,`).
    pub delimiter: Option<char>,
    /// `rsna` kind: extension of the image name written to split files (default `png`, as
    /// COVID-Net converts the DICOMs).
    pub output_ext: Option<String>,
    /// Parse rule for this source's findings (default `labels.parse`): COVID-Net's later
    /// notebooks read Cohen's hierarchical findings by `last-path`, the others by `first-comma`.
    pub parse: Option<ParseRule>,
    /// Class given to this source's findings that `labels.map` does not list (default: the
    /// `labels.unknown` rule). The binary lists make unmapped Cohen findings `negative`.
    pub unmapped: Option<String>,
    /// `sirm` and `ricord` kinds: the finding every row carries (default `COVID-19`); it goes
    /// through `labels.map` like any other.
    pub finding: Option<String>,
    /// What a space in an image name becomes in split files (default `_`; `sirm` writes
    /// `COVID-19 (69).png` as `COVID-19(69).png`, so `""`).
    pub space_as: Option<String>,
    /// Records to leave out by hand (a published list's hand edit), as data.
    #[serde(default)]
    pub exclude: Vec<ExcludeEntry>,
    /// Rows dropped when a field contains one of some substrings, optionally only when the
    /// finding maps to a given class (COVIDx8 drops Cohen COVID-19 rows from three sites).
    #[serde(default)]
    pub drop: Vec<DropRule>,
    /// Rows whose `url` equals a `url` of another source's rows (after that source's view and
    /// modality filters) are left out: the same image published twice.
    pub urls_not_in: Option<UrlsNotIn>,
}

/// One hand-edit exclusion: every image of `patient`, or only `image`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExcludeEntry {
    /// Upstream patient id.
    pub patient: String,
    /// Image file name (as the metadata names it); absent = every image of the patient.
    pub image: Option<String>,
    /// Why, shown in the manifest's `detail`.
    #[serde(default)]
    pub why: String,
}

/// A record field a [`DropRule`] can test.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum RecordField {
    /// The image's upstream URL (Cohen `url`, sirm `URL`).
    Url,
    /// Upstream patient id.
    Patient,
    /// Image file name.
    Image,
    /// Raw finding.
    Finding,
    /// View.
    View,
    /// Modality.
    Modality,
}

/// Drops the rows whose `field` contains any of `contains` (and, with `class`, whose finding
/// maps to that class).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DropRule {
    /// The field tested.
    pub field: RecordField,
    /// Substrings; one is enough.
    pub contains: Vec<String>,
    /// Only rows whose finding maps to this class.
    pub class: Option<String>,
}

/// Leave out rows whose URL another source also has.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UrlsNotIn {
    /// The other source (by name).
    pub source: String,
    /// URLs treated as if that source had them too.
    #[serde(default)]
    pub extra: Vec<String>,
}

/// Train/test assignment rules.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SplitConfig {
    /// `pinned`: pinned patients go to test, all others to train. `seeded`: additionally a
    /// seeded, class-stratified patient-level draw moves patients to test.
    #[serde(default)]
    pub method: SplitMethod,
    /// Processing groups, each a list of source names: groups are emitted in order, and inside
    /// a group records go class by class (class order), then source by source, then file order.
    /// Default: one group with every source in declaration order.
    pub order: Option<Vec<Vec<String>>>,
    /// `seeded`: fraction of each class's patients drawn for test.
    pub test_fraction: Option<f64>,
    /// `seeded`: number of patients per class drawn for test.
    pub test_count: Option<BTreeMap<String, usize>>,
    /// A published test list (`patientid filename label [source]`) under `--sources`: when
    /// present, the test split is exactly this list, in its order.
    pub pinned_test_list: Option<String>,
    /// When false (default) a missing `pinned_test_list` file is allowed and the whole test pool
    /// becomes the test split; when true it is an error.
    #[serde(default)]
    pub pinned_test_list_required: bool,
    /// Source tags of the pinned list (its 4th column) that name a source this pipeline does
    /// not read (COVIDx7's `sirm`, whose version is not to be had): those lines are reported
    /// with their count and left out, instead of failing the build.
    #[serde(default)]
    pub pinned_absent_tags: Vec<String>,
    /// Whether a pin moves the whole patient (`patient`, the default: no patient is ever in
    /// both splits) or only the patient's records of the pinned class (`per-class`, as
    /// COVID-Net's notebooks did; a patient with records of another class can then straddle
    /// the split, which the build reports and the audit's overlap check finds).
    #[serde(default)]
    pub pins: PinScope,
    /// Draws with CPython's `random` (MT19937 seeded as `random.seed(seed)`), reproducing a
    /// notebook's `random.sample` calls exactly, in the order given.
    pub python_draw: Option<PythonDraw>,
}

/// CPython-exact draws: first `pin_patients` (before the test pool is formed), then, when
/// `keep` or `sample` is set, the test split is chosen from the pool: its records matching
/// `keep` (pool order), then each `sample` in turn. Pool records not chosen are excluded
/// (`test-pool-not-drawn`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PythonDraw {
    /// The integer given to `random.seed`.
    pub seed: i64,
    /// `random.sample` over a source's patients of a class, pinning the drawn ones to test.
    #[serde(default)]
    pub pin_patients: Vec<PatientDraw>,
    /// Pool records that go to test as they are.
    #[serde(default)]
    pub keep: Vec<RecordMatch>,
    /// `random.sample` over the pool's records of a class.
    #[serde(default)]
    pub sample: Vec<RecordDraw>,
}

/// `random.sample(patients, count)` where `patients` are `source`'s patients with records of
/// `class`, in order of first appearance (with `single_image`, only those with exactly one).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PatientDraw {
    /// Source name.
    pub source: String,
    /// Class name.
    pub class: String,
    /// Patients drawn.
    pub count: usize,
    /// Only patients with exactly one record of that class.
    #[serde(default)]
    pub single_image: bool,
}

/// Records of a class, optionally of one source.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RecordMatch {
    /// Source name; absent = any.
    pub source: Option<String>,
    /// Class name.
    pub class: String,
}

/// `random.sample(records, count)` over the pool's records of `class`, in pool order.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RecordDraw {
    /// Class name.
    pub class: String,
    /// Records drawn.
    pub count: usize,
}

/// What a test pin applies to.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum PinScope {
    /// Every record of a pinned patient.
    #[default]
    Patient,
    /// The pinned patient's records of the class it is pinned under.
    PerClass,
}

/// How the remaining patients are split.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum SplitMethod {
    /// Only pinned patients go to test.
    #[default]
    Pinned,
    /// A seeded patient-level draw, stratified by class, adds test patients.
    Seeded,
}

/// Split file format.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputConfig {
    /// 3 (`patientid filename label`) or 4 (adds the source tag).
    #[serde(default = "default_columns")]
    pub columns: u8,
    /// Label written for each class (default: the class name). The binary lists group by
    /// `negative`, `normal`, `pneumonia`, `COVID-19` and write `negative` or `positive`.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

fn default_columns() -> u8 {
    3
}

impl Default for OutputConfig {
    fn default() -> Self {
        OutputConfig {
            columns: 3,
            labels: BTreeMap::new(),
        }
    }
}

/// A source with every default applied.
#[derive(Debug, Clone)]
pub struct Source {
    /// Pipeline name of the source.
    pub name: String,
    /// Reader.
    pub kind: SourceKind,
    /// Directory relative to `--sources`.
    pub dir: String,
    /// Metadata file relative to `dir` (RSNA: the labels file).
    pub metadata: String,
    /// Encoding of the metadata file.
    pub encoding: Encoding,
    /// 4th-column tag.
    pub tag: String,
    /// The declared config, for reader-specific options.
    pub config: SourceConfig,
}

impl Pipeline {
    /// Reads and validates a pipeline file.
    pub fn load(path: &Path) -> Result<(Pipeline, Vec<u8>)> {
        let bytes =
            std::fs::read(path).with_context(|| format!("reading pipeline {}", path.display()))?;
        let text = std::str::from_utf8(&bytes)
            .with_context(|| format!("pipeline {} is not UTF-8", path.display()))?;
        let pipeline = Pipeline::parse(text)
            .with_context(|| format!("invalid pipeline {}", path.display()))?;
        Ok((pipeline, bytes))
    }

    /// Parses and validates pipeline TOML text.
    pub fn parse(text: &str) -> Result<Pipeline> {
        let pipeline: Pipeline = toml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
        pipeline.validate()?;
        Ok(pipeline)
    }

    /// Index of a class name.
    pub fn class_index(&self, class: &str) -> Option<usize> {
        self.classes.iter().position(|c| c == class)
    }

    /// The label written to split files for class index `class` (`output.labels`, else the
    /// class name).
    pub fn output_label(&self, class: usize) -> &str {
        let name = &self.classes[class];
        self.output
            .labels
            .get(name)
            .map(String::as_str)
            .unwrap_or(name)
    }

    fn check_class(&self, key: &str, class: &str) -> Result<()> {
        if self.class_index(class).is_none() {
            bail!(
                "{key}: unknown class {class:?} (classes are {:?})",
                self.classes
            );
        }
        Ok(())
    }

    fn validate(&self) -> Result<()> {
        self.validate_classes()?;
        let names = self.validate_sources()?;
        self.validate_split(&names)?;
        self.images.validate()?;
        self.audit.validate()?;
        if !(self.output.columns == 3 || self.output.columns == 4) {
            bail!("output.columns: {} (must be 3 or 4)", self.output.columns);
        }
        for (class, label) in &self.output.labels {
            self.check_class(&format!("output.labels.{class:?}"), class)?;
            if label.is_empty()
                || label.contains(char::is_whitespace)
                || label.contains(char::is_control)
            {
                bail!("output.labels.{class:?}: {label:?} is empty or holds whitespace");
            }
        }
        Ok(())
    }

    fn validate_classes(&self) -> Result<()> {
        if self.classes.is_empty() {
            bail!("classes: at least one class is required");
        }
        let mut seen = BTreeSet::new();
        for c in &self.classes {
            if c.trim().is_empty()
                || c.contains(char::is_whitespace)
                || c.contains(char::is_control)
            {
                bail!(
                    "classes: {c:?} is empty or holds whitespace (split files are space-separated)"
                );
            }
            if !seen.insert(c) {
                bail!("classes: {c:?} is listed twice");
            }
        }
        for (finding, class) in &self.labels.map {
            self.check_class(&format!("labels.map.{finding:?}"), class)?;
        }
        Ok(())
    }

    /// Checks every source; returns the source names.
    fn validate_sources(&self) -> Result<BTreeSet<&str>> {
        if self.sources.is_empty() {
            bail!("sources: at least one source is required");
        }
        let mut names = BTreeSet::new();
        for (i, s) in self.sources.iter().enumerate() {
            let key = format!("sources[{i}]");
            if !names.insert(s.name.as_str()) {
                bail!("{key}.name: source name {:?} is used twice", s.name);
            }
            self.validate_source(&key, s)?;
        }
        Ok(names)
    }

    fn validate_source(&self, key: &str, s: &SourceConfig) -> Result<()> {
        if let Some(class) = &s.unmapped {
            self.check_class(&format!("{key}.unmapped"), class)?;
        }
        if s.finding.is_some() && s.kind.has_findings() {
            bail!("{key}.finding: only allowed for kinds \"sirm\" and \"ricord\" (the others read it)");
        }
        if let Some(sp) = &s.space_as {
            if sp.contains(char::is_whitespace) || sp.contains(char::is_control) || sp.contains('/')
            {
                bail!("{key}.space_as: {sp:?} would not give a writable name");
            }
        }
        for (j, e) in s.exclude.iter().enumerate() {
            if e.patient.trim().is_empty() {
                bail!("{key}.exclude[{j}].patient: empty");
            }
        }
        for (j, d) in s.drop.iter().enumerate() {
            if d.contains.is_empty() || d.contains.iter().any(String::is_empty) {
                bail!("{key}.drop[{j}].contains: list at least one non-empty substring");
            }
            if let Some(class) = &d.class {
                self.check_class(&format!("{key}.drop[{j}].class"), class)?;
            }
        }
        if let Some(u) = &s.urls_not_in {
            if u.source == s.name || !self.sources.iter().any(|o| o.name == u.source) {
                bail!(
                    "{key}.urls_not_in.source: {:?} is not another source of this pipeline",
                    u.source
                );
            }
        }
        if s.kind == SourceKind::Csv {
            if s.columns.is_none() {
                bail!("{key}.columns: required for kind = \"csv\"");
            }
            if s.dir.is_none() {
                bail!("{key}.dir: required for kind = \"csv\"");
            }
            if s.metadata.is_none() {
                bail!("{key}.metadata: required for kind = \"csv\"");
            }
        } else {
            let own_dir = matches!(s.kind, SourceKind::Sirm | SourceKind::Ricord);
            for (field, set) in [
                ("columns", s.columns.is_some()),
                ("image_dir", s.image_dir.is_some() && !own_dir),
                ("finding_separator", s.finding_separator.is_some()),
                ("delimiter", s.delimiter.is_some()),
            ] {
                if set {
                    bail!("{key}.{field}: only allowed for kind = \"csv\" (image_dir also for sirm, ricord)");
                }
            }
        }
        if let Some(d) = s.delimiter {
            if !d.is_ascii() || d == '"' || d == '\n' || d == '\r' {
                bail!("{key}.delimiter: {d:?} must be one ASCII character other than a quote or line break");
            }
        }
        if s.output_ext.is_some() && s.kind != SourceKind::Rsna {
            bail!("{key}.output_ext: only allowed for kind = \"rsna\"");
        }
        for (field, rel) in [
            ("dir", &s.dir),
            ("metadata", &s.metadata),
            ("image_dir", &s.image_dir),
        ] {
            if let Some(rel) = rel.as_ref().filter(|r| !r.is_empty()) {
                crate::fsutil::check_relative(rel).with_context(|| format!("{key}.{field}"))?;
            }
        }
        if let Some(ext) = &s.output_ext {
            if ext.is_empty()
                || ext.contains(|c: char| c == '/' || c.is_whitespace() || c.is_control())
            {
                bail!("{key}.output_ext: {ext:?} is not a file extension");
            }
        }
        if let Some(tag) = &s.tag {
            if tag.is_empty() || tag.contains(char::is_whitespace) || tag.contains(char::is_control)
            {
                bail!("{key}.tag: {tag:?} is empty or holds whitespace");
            }
        }
        for class in s.test_patients.keys() {
            self.check_class(&format!("{key}.test_patients"), class)?;
        }
        for class in &s.test_single_image {
            self.check_class(&format!("{key}.test_single_image"), class)?;
        }
        for (class, path) in &s.test_pools {
            self.check_class(&format!("{key}.test_pools"), class)?;
            crate::fsutil::check_relative(path)
                .with_context(|| format!("{key}.test_pools.{class:?}"))?;
        }
        Ok(())
    }

    fn validate_split(&self, names: &BTreeSet<&str>) -> Result<()> {
        let split = &self.split;
        if let Some(order) = &split.order {
            let mut listed = BTreeSet::new();
            for (g, group) in order.iter().enumerate() {
                for name in group {
                    if !names.contains(name.as_str()) {
                        bail!("split.order[{g}]: no source is named {name:?}");
                    }
                    if !listed.insert(name.as_str()) {
                        bail!("split.order[{g}]: source {name:?} is listed twice");
                    }
                }
            }
            if let Some(missing) = names.iter().find(|n| !listed.contains(*n)) {
                bail!("split.order: source {missing:?} is not listed");
            }
        }
        match split.method {
            SplitMethod::Pinned => {
                if split.test_fraction.is_some() || split.test_count.is_some() {
                    bail!("split: test_fraction/test_count need method = \"seeded\"");
                }
            }
            SplitMethod::Seeded => match (split.test_fraction, &split.test_count) {
                (Some(f), None) => {
                    if !(f > 0.0 && f < 1.0) {
                        bail!("split.test_fraction: {f} is not between 0 and 1");
                    }
                }
                (None, Some(counts)) => {
                    for class in counts.keys() {
                        self.check_class("split.test_count", class)?;
                    }
                }
                _ => bail!(
                    "split: method = \"seeded\" needs exactly one of test_fraction, test_count"
                ),
            },
        }
        if let Some(p) = &split.pinned_test_list {
            crate::fsutil::check_relative(p).context("split.pinned_test_list")?;
        }
        if let Some(d) = &split.python_draw {
            let source = |key: &str, name: &str| -> Result<()> {
                if !names.contains(name) {
                    bail!("{key}: no source is named {name:?}");
                }
                Ok(())
            };
            for (i, p) in d.pin_patients.iter().enumerate() {
                let key = format!("split.python_draw.pin_patients[{i}]");
                source(&format!("{key}.source"), &p.source)?;
                self.check_class(&format!("{key}.class"), &p.class)?;
            }
            for (i, k) in d.keep.iter().enumerate() {
                let key = format!("split.python_draw.keep[{i}]");
                if let Some(s) = &k.source {
                    source(&format!("{key}.source"), s)?;
                }
                self.check_class(&format!("{key}.class"), &k.class)?;
            }
            for (i, k) in d.sample.iter().enumerate() {
                self.check_class(&format!("split.python_draw.sample[{i}].class"), &k.class)?;
            }
            let selects = !d.keep.is_empty() || !d.sample.is_empty();
            if selects && split.pinned_test_list.is_some() {
                bail!("split: python_draw.keep/sample choose the test split; a pinned_test_list would too (set one)");
            }
        }
        let resolved = self.resolved_sources();
        for tag in &split.pinned_absent_tags {
            if let Some(s) = resolved.iter().find(|s| &s.tag == tag) {
                bail!("split.pinned_absent_tags: {tag:?} is the tag of source {:?}, which this pipeline reads", s.name);
            }
        }
        Ok(())
    }

    /// Sources with defaults applied, in declaration order.
    pub fn resolved_sources(&self) -> Vec<Source> {
        self.sources
            .iter()
            .map(|s| Source {
                name: s.name.clone(),
                kind: s.kind,
                dir: s
                    .dir
                    .clone()
                    .or_else(|| s.kind.default_dir().map(str::to_string))
                    .unwrap_or_default(),
                metadata: s
                    .metadata
                    .clone()
                    .unwrap_or_else(|| s.kind.default_metadata().to_string()),
                encoding: s.encoding.unwrap_or(s.kind.default_encoding()),
                tag: s
                    .tag
                    .clone()
                    .or_else(|| s.kind.default_tag().map(str::to_string))
                    .unwrap_or_else(|| s.name.clone()),
                config: s.clone(),
            })
            .collect()
    }

    /// Processing groups as source indices.
    pub fn groups(&self) -> Vec<Vec<usize>> {
        match &self.split.order {
            Some(order) => order
                .iter()
                .map(|g| {
                    g.iter()
                        .map(|n| self.sources.iter().position(|s| &s.name == n).unwrap())
                        .collect()
                })
                .collect(),
            None => vec![(0..self.sources.len()).collect()],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
name = "t"
classes = ["normal", "pneumonia"]
[labels]
parse = "whole"
map = { Normal = "normal" }
[[sources]]
name = "c"
kind = "cohen"
"#;

    #[test]
    fn minimal_pipeline_loads_with_defaults() {
        let p = Pipeline::parse(MINIMAL).unwrap();
        let s = &p.resolved_sources()[0];
        assert_eq!(s.dir, "covid-chestxray-dataset");
        assert_eq!(s.tag, "cohen");
        assert_eq!(p.output.columns, 3);
        assert_eq!(p.groups(), vec![vec![0]]);
    }

    #[test]
    fn unknown_key_is_an_error_naming_it() {
        let text = MINIMAL.replace("kind = \"cohen\"", "kind = \"cohen\"\nviewz = [\"PA\"]");
        let err = format!("{:#}", Pipeline::parse(&text).unwrap_err());
        assert!(err.contains("viewz"), "{err}");
    }

    #[test]
    fn mapping_to_unknown_class_names_the_key() {
        let text = MINIMAL.replace("Normal = \"normal\"", "SARS = \"covid\"");
        let err = format!("{:#}", Pipeline::parse(&text).unwrap_err());
        assert!(err.contains("labels.map.\"SARS\""), "{err}");
    }

    #[test]
    fn bad_values_name_their_path() {
        for (from, to, key) in [
            (
                "[labels]",
                "[output]\ncolumns = 5\n[labels]",
                "output.columns",
            ),
            (
                "kind = \"cohen\"",
                "kind = \"cohen\"\ndir = \"../x\"",
                "sources[0].dir",
            ),
            (
                "kind = \"cohen\"",
                "kind = \"cohen\"\ntest_patients = { covid = [\"1\"] }",
                "sources[0].test_patients",
            ),
            (
                "[labels]",
                "[split]\nmethod = \"seeded\"\n[labels]",
                "split",
            ),
            (
                "[labels]",
                "[split]\norder = [[\"x\"]]\n[labels]",
                "split.order[0]",
            ),
            (
                "kind = \"cohen\"",
                "kind = \"cohen\"\nunmapped = \"covid\"",
                "sources[0].unmapped",
            ),
            (
                "kind = \"cohen\"",
                "kind = \"cohen\"\nfinding = \"COVID-19\"",
                "sources[0].finding",
            ),
            (
                "kind = \"cohen\"",
                "kind = \"cohen\"\ndrop = [{ field = \"url\", contains = [] }]",
                "sources[0].drop[0].contains",
            ),
            (
                "kind = \"cohen\"",
                "kind = \"cohen\"\ndrop = [{ field = \"url\", contains = [\"x\"], class = \"y\" }]",
                "sources[0].drop[0].class",
            ),
            (
                "kind = \"cohen\"",
                "kind = \"cohen\"\nurls_not_in = { source = \"c\" }",
                "sources[0].urls_not_in.source",
            ),
            (
                "kind = \"cohen\"",
                "kind = \"cohen\"\ntest_single_image = [\"covid\"]",
                "sources[0].test_single_image",
            ),
            (
                "[labels]",
                "[output]\nlabels = { covid = \"positive\" }\n[labels]",
                "output.labels.\"covid\"",
            ),
            (
                "[labels]",
                "[split]\npinned_absent_tags = [\"cohen\"]\n[labels]",
                "split.pinned_absent_tags",
            ),
            (
                "[labels]",
                "[split.python_draw]\nseed = 0\npin_patients = [{ source = \"x\", class = \"normal\", count = 1 }]\n[labels]",
                "split.python_draw.pin_patients[0].source",
            ),
            (
                "[labels]",
                "[split]\npinned_test_list = \"t.txt\"\n[split.python_draw]\nseed = 0\nsample = [{ class = \"normal\", count = 1 }]\n[labels]",
                "python_draw.keep/sample",
            ),
        ] {
            let err = format!(
                "{:#}",
                Pipeline::parse(&MINIMAL.replace(from, to)).unwrap_err()
            );
            assert!(err.contains(key), "{key}: {err}");
        }
    }

    #[test]
    fn non_finite_and_out_of_range_image_settings_are_errors() {
        for (setting, key) in [
            ("rotation = nan", "images.augment.rotation"),
            ("rotation = inf", "images.augment.rotation"),
            ("rotation = 720.0", "images.augment.rotation"),
            ("shift_x = -inf", "images.augment.shift_x"),
            ("flip = nan", "images.augment.flip"),
            ("zoom_x = [0.9, inf]", "images.augment.zoom_x"),
            ("zoom_y = [nan, 1.0]", "images.augment.zoom_y"),
            ("brightness = [1.2, 0.8]", "images.augment.brightness"),
            ("intensity_shift = nan", "images.augment.intensity_shift"),
        ] {
            let text = format!("{MINIMAL}\n[images.augment]\n{setting}\n");
            let err = format!("{:#}", Pipeline::parse(&text).unwrap_err());
            assert!(err.contains(key), "{setting}: {err}");
        }
        for (setting, key) in [
            ("crop_top = nan", "images.crop_top"),
            ("shard_mib = 18446744073709551615", "images.shard_mib"),
        ] {
            let text = format!("{MINIMAL}\n[images]\n{setting}\n");
            let err = format!("{:#}", Pipeline::parse(&text).unwrap_err());
            assert!(err.contains(key), "{setting}: {err}");
        }
        let text = format!("{MINIMAL}\n[images.augment]\nrotation = 15.0\nzoom_x = [0.8, 1.2]\n");
        Pipeline::parse(&text).unwrap();
    }
}
