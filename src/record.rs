//! The unified record every source reader produces, and the manifest table built from them.

use std::fmt;

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
    /// The patient id or image name cannot be written to a space-separated split file
    /// (whitespace in a patient id, a line break or control character in either).
    InvalidName,
    /// Listed in the source's `exclude` (a published list's hand edit).
    ExcludedByList,
    /// A `drop` rule of the source matched the row.
    DroppedByRule,
    /// The same URL is in another source (`urls_not_in`): the same image published twice.
    UrlInOtherSource,
    /// In the test pool, not chosen by the pipeline's `python_draw`.
    TestPoolNotDrawn,
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
            Exclusion::InvalidName => "invalid-name",
            Exclusion::ExcludedByList => "excluded-by-list",
            Exclusion::DroppedByRule => "dropped-by-rule",
            Exclusion::UrlInOtherSource => "url-in-other-source",
            Exclusion::TestPoolNotDrawn => "test-pool-not-drawn",
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
    /// Image file name as the metadata names it.
    pub image: String,
    /// The name written to split files when the source's `space_as` rule changes it.
    pub split_as: Option<String>,
    /// The image's upstream URL (Cohen `url`, sirm `URL`), empty when the source has none.
    pub url: String,
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
    /// Columns of this record's split-file line when it differs from `output.columns` (a
    /// pinned test line keeps its own format: COVIDx3's list mixes 3 and 4 columns).
    pub columns: Option<u8>,
    /// SHA-256 of the image file, when it was read.
    pub sha256: Option<String>,
    /// The image file's stamp when `sha256` was taken, if it can vouch for the same bytes later
    /// (see [`crate::fsutil::FileStamp`]); not part of the manifest.
    pub stamp: Option<crate::fsutil::FileStamp>,
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

    /// The image name as written to split files (the source's `space_as` rule, else
    /// [`split_name`]).
    pub fn split_image(&self) -> String {
        let mut name = String::new();
        self.push_split_image(&mut name);
        name
    }

    /// Appends [`Record::split_image`] to `out`.
    pub fn push_split_image(&self, out: &mut String) {
        match &self.split_as {
            Some(name) => out.push_str(name),
            None => push_split_name(out, &self.image),
        }
    }

    /// "file:line" for messages.
    pub fn origin(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }
}

/// An image name as written to split files: spaces become `_`, since split files are
/// space-separated (names with other whitespace or control characters never reach a split:
/// they are excluded as [`Exclusion::InvalidName`]).
pub fn split_name(image: &str) -> String {
    let mut name = String::with_capacity(image.len());
    push_split_name(&mut name, image);
    name
}

/// Appends [`split_name`] of `image` to `out` (one rule for both).
fn push_split_name(out: &mut String, image: &str) {
    let mut pieces = image.split(' ');
    out.push_str(pieces.next().unwrap_or_default());
    for piece in pieces {
        out.push('_');
        out.push_str(piece);
    }
}

/// Why `value` cannot be written into a split file as the given column, if it cannot: a
/// patient id must hold no whitespace, an image name no whitespace but spaces (which become
/// `_`), and neither a control character.
pub fn unwritable(value: &str, patient: bool) -> Option<String> {
    // Printable ASCII (and, in an image name, the space) is always writable: checked a byte
    // at a time, which vectorises, before the per-character rule.
    let first = if patient { b'!' } else { b' ' };
    if value.bytes().all(|b| (first..=b'~').contains(&b)) {
        return None;
    }
    let bad = value
        .chars()
        .find(|&c| c.is_control() || (c.is_whitespace() && (patient || c != ' ')))?;
    Some(format!(
        "holds {bad:?}, which a space-separated split file cannot carry"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unwritable_names_are_found_past_the_ascii_shortcut() {
        for (value, patient, bad) in [
            ("p1", true, None),
            ("p 1", true, Some(' ')),
            ("a b.png", false, None),
            ("a\tb.png", false, Some('\t')),
            ("a\u{85}b", false, Some('\u{85}')),
            ("a\u{3000}b", false, Some('\u{3000}')),
            ("ünï-code", true, None),
            ("x\u{7f}", true, Some('\u{7f}')),
            ("", true, None),
        ] {
            let got = unwritable(value, patient);
            assert_eq!(got.is_some(), bad.is_some(), "{value:?}: {got:?}");
            if let (Some(msg), Some(c)) = (got, bad) {
                assert!(msg.contains(&format!("{c:?}")), "{msg}");
            }
        }
    }

    #[test]
    fn appended_split_names_equal_the_replaced_ones() {
        for name in [
            "",
            " ",
            "a.png",
            "a b.png",
            "  two  spaces ",
            "x y z",
            "ünï code.jpg",
        ] {
            let mut out = String::from("p ");
            push_split_name(&mut out, name);
            assert_eq!(out, format!("p {}", name.replace(' ', "_")), "{name:?}");
            assert_eq!(split_name(name), name.replace(' ', "_"));
        }
    }
}
