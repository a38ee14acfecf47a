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
}

impl SourceKind {
    /// Default directory under `--sources`.
    pub fn default_dir(self) -> Option<&'static str> {
        match self {
            SourceKind::Cohen => Some("covid-chestxray-dataset"),
            SourceKind::Figure1 => Some("Figure1-COVID-chestxray-dataset"),
            SourceKind::Actualmed => Some("Actualmed-COVID-chestxray-dataset"),
            SourceKind::Rsna => Some("rsna-pneumonia-detection-challenge"),
            SourceKind::Csv => None,
        }
    }

    /// Default 4th-column tag in split files (COVID-Net's names).
    pub fn default_tag(self) -> Option<&'static str> {
        match self {
            SourceKind::Cohen => Some("cohen"),
            SourceKind::Figure1 => Some("fig1"),
            SourceKind::Actualmed => Some("actmed"),
            SourceKind::Rsna => Some("rsna"),
            SourceKind::Csv => None,
        }
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
}

fn default_columns() -> u8 {
    3
}

impl Default for OutputConfig {
    fn default() -> Self {
        OutputConfig { columns: 3 }
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
            for (field, set) in [
                ("columns", s.columns.is_some()),
                ("image_dir", s.image_dir.is_some()),
                ("finding_separator", s.finding_separator.is_some()),
                ("delimiter", s.delimiter.is_some()),
            ] {
                if set {
                    bail!("{key}.{field}: only allowed for kind = \"csv\"");
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
                metadata: s.metadata.clone().unwrap_or_else(|| match s.kind {
                    SourceKind::Rsna => "stage_2_train_labels.csv".to_string(),
                    _ => "metadata.csv".to_string(),
                }),
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
