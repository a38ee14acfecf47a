//! Source readers: one file per upstream dataset, each turning its native layout into
//! [`Record`]s. Readers never decode images; they only name them (Figure1 also checks which
//! extension exists, as its metadata has no file name).

pub mod actualmed;
pub mod cohen;
pub mod figure1;
pub mod generic;
pub mod ricord;
pub mod rsna;
pub mod sirm;
pub mod table;

use std::path::Path;

use rayon::prelude::*;

use anyhow::{Context, Result};

use crate::config::{Source, SourceKind};
use crate::fsutil;
use crate::record::{Exclusion, Record};
pub use table::{InputHashes, Row, Table};

/// Everything a reader needs besides its own config.
pub struct ReadContext<'a> {
    /// The `--sources` directory.
    pub root: &'a Path,
    /// Hashes of every input file read so far.
    pub inputs: &'a mut InputHashes,
}

/// Reads one source with its reader, then applies its view and modality filters (each pass
/// over the records in parallel: a record's decisions depend on that record alone).
pub fn read(ctx: &mut ReadContext, src: &Source) -> Result<Vec<Record>> {
    let mut records = match src.kind {
        SourceKind::Cohen => cohen::read(ctx, src),
        SourceKind::Figure1 => figure1::read(ctx, src),
        SourceKind::Actualmed => actualmed::read(ctx, src),
        SourceKind::Rsna => rsna::read(ctx, src),
        SourceKind::Csv => generic::read(ctx, src),
        SourceKind::Sirm => sirm::read(ctx, src),
        SourceKind::Ricord => ricord::read(ctx, src),
    }
    .with_context(|| format!("reading source {:?} ({:?})", src.name, src.kind))?;
    if let Some(space) = &src.config.space_as {
        records
            .par_iter_mut()
            .filter(|r| r.image.contains(' '))
            .for_each(|r| r.split_as = Some(r.image.replace(' ', space)));
    }
    exclude_unwritable_names(&mut records);
    apply_filters(src, &mut records);
    apply_exclude_list(src, &mut records);
    Ok(records)
}

/// Excludes the records the source's `exclude` list names (`excluded-by-list`).
pub fn apply_exclude_list(src: &Source, records: &mut [Record]) {
    if src.config.exclude.is_empty() {
        return;
    }
    records
        .par_iter_mut()
        .filter(|r| r.is_candidate())
        .for_each(|r| {
            let hit =
                src.config.exclude.iter().find(|e| {
                    e.patient == r.patient && e.image.as_ref().is_none_or(|i| i == &r.image)
                });
            if let Some(e) = hit {
                let what = match &e.image {
                    Some(i) => format!("patient {} image {i}", e.patient),
                    None => format!("every image of patient {}", e.patient),
                };
                let why = if e.why.is_empty() {
                    String::new()
                } else {
                    format!(": {}", e.why)
                };
                r.exclude(
                    Exclusion::ExcludedByList,
                    format!("{what} is in the source's exclude list{why}"),
                );
            }
        });
}

/// Excludes the records of each source with `urls_not_in` whose URL the other source's records
/// also have (after that source's view and modality filters), or is one of `extra`.
pub fn apply_url_filters(sources: &[Source], records: &mut [Record]) {
    for src in sources {
        let Some(rule) = &src.config.urls_not_in else {
            continue;
        };
        let mut urls: std::collections::HashSet<&str> =
            rule.extra.iter().map(String::as_str).collect();
        // The other source's rows that pass its view and modality filters, whatever else
        // excludes them (the notebook filters the table, then collects its URLs).
        let other = sources.iter().find(|s| s.name == rule.source);
        let passes = |r: &Record| {
            let Some(o) = other else { return false };
            r.exclusion != Some(Exclusion::MalformedRow)
                && o.config.views.as_ref().is_none_or(|v| v.contains(&r.view))
                && o.config
                    .modalities
                    .as_ref()
                    .is_none_or(|m| m.contains(&r.modality))
        };
        urls.extend(
            records
                .iter()
                .filter(|r| r.source == rule.source && passes(r))
                .map(|r| r.url.as_str())
                .filter(|u| !u.is_empty()),
        );
        let hits: Vec<usize> = records
            .iter()
            .enumerate()
            .filter(|(_, r)| {
                r.source == src.name && r.is_candidate() && urls.contains(r.url.as_str())
            })
            .map(|(i, _)| i)
            .collect();
        for i in hits {
            let detail = format!(
                "its URL {:?} is also in source {:?}",
                records[i].url, rule.source
            );
            records[i].exclude(Exclusion::UrlInOtherSource, detail);
        }
    }
}

/// Excludes records whose patient id or image name cannot be written to a split file
/// (`invalid-name`, naming file, line and field): they are never written raw.
pub fn exclude_unwritable_names(records: &mut [Record]) {
    records
        .par_iter_mut()
        .filter(|r| r.is_candidate())
        .for_each(|r| {
            let problem = [
                ("patient id", &r.patient, true),
                ("image name", &r.image, false),
            ]
            .into_iter()
            .find_map(|(field, value, patient)| {
                crate::record::unwritable(value, patient)
                    .map(|why| format!("{}:{}: {field} {value:?} {why}", r.file, r.line))
            });
            if let Some(detail) = problem {
                r.exclude(Exclusion::InvalidName, detail);
            }
        });
}

/// Excludes records whose view or modality is not in the source's filters.
pub fn apply_filters(src: &Source, records: &mut [Record]) {
    records
        .par_iter_mut()
        .filter(|r| r.is_candidate())
        .for_each(|r| {
            if let Some(views) = &src.config.views {
                if !views.iter().any(|v| v == &r.view) {
                    let detail = format!("view {:?} not in {:?}", r.view, views);
                    r.exclude(Exclusion::ViewFiltered, detail);
                    return;
                }
            }
            if let Some(mods) = &src.config.modalities {
                if !mods.iter().any(|m| m == &r.modality) {
                    let detail = format!("modality {:?} not in {:?}", r.modality, mods);
                    r.exclude(Exclusion::ModalityFiltered, detail);
                }
            }
        });
}

/// A new record for `row` of `table` with the source's identity filled in.
pub(crate) fn new_record(src: &Source, table: &Table, row: &Row) -> Record {
    record_at(src, &table.file, row.line)
}

/// A new record of `src` from line (or spreadsheet row) `line` of `file`.
pub(crate) fn record_at(src: &Source, file: &str, line: u64) -> Record {
    Record {
        source: src.name.clone(),
        tag: src.tag.clone(),
        file: file.to_string(),
        line,
        ..Record::default()
    }
}

/// The finding every row of a source without a finding column carries (`sirm`, `ricord`):
/// its `finding`, default `COVID-19`.
pub(crate) fn fixed_finding(src: &Source) -> &str {
    src.config.finding.as_deref().unwrap_or("COVID-19")
}

/// Reads a configured input file (`rel` under `--sources`, symlinks followed) and records its
/// hash; a missing file is an error naming where it was expected.
pub(crate) fn read_input(ctx: &mut ReadContext, rel: &str) -> Result<Vec<u8>> {
    let bytes = read_input_bytes(ctx.root, rel)?;
    ctx.inputs
        .insert(rel.to_string(), fsutil::sha256_hex(&bytes));
    Ok(bytes)
}

/// [`read_input`] without recording the hash: the caller records it.
pub(crate) fn read_input_bytes(root: &Path, rel: &str) -> Result<Vec<u8>> {
    let path = fsutil::safe_join(root, rel)?;
    std::fs::read(&path).with_context(|| {
        format!(
            "required input {rel} is missing or unreadable (expected at {})",
            path.display()
        )
    })
}

/// `name` inside the source's image folder (`image_dir`, else the kind's default), relative to
/// the source directory.
pub(crate) fn in_image_dir(src: &Source, name: &str) -> String {
    let dir = src
        .config
        .image_dir
        .as_deref()
        .unwrap_or(src.kind.default_image_dir())
        .trim_end_matches('/');
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

/// Path of a source-relative file as seen from `--sources`: `dir/rel`.
pub(crate) fn source_path(src: &Source, rel: &str) -> String {
    if src.dir.is_empty() {
        rel.to_string()
    } else {
        format!("{}/{}", src.dir.trim_end_matches('/'), rel)
    }
}

/// Checks a file name taken from metadata and turns it into a path under the source root.
/// A name that would escape the root is a hard error naming file, line and field.
pub(crate) fn image_path(
    src: &Source,
    file: &str,
    line: u64,
    field: &str,
    rel: &str,
) -> Result<String> {
    fsutil::check_relative(rel).with_context(|| {
        format!("{file}:{line}: field {field:?}: refusing to read outside the source root")
    })?;
    Ok(source_path(src, rel))
}

/// Field `idx` of `row`, trimmed, or a detail naming file, line and the missing column when the
/// row is too short.
pub(crate) fn field<'r>(
    table: &Table,
    row: &'r Row,
    idx: usize,
) -> std::result::Result<&'r str, String> {
    row.get(idx).map(str::trim).ok_or_else(|| {
        format!(
            "{}:{}: row has {} fields, column {:?} (#{}) is missing",
            table.file,
            row.line,
            row.len(),
            table.header[idx],
            idx + 1
        )
    })
}

/// Column indices of a table with one image per row (Cohen, Figure1, Actualmed, generic CSV).
pub(crate) struct RowColumns {
    /// Patient id column.
    pub patient: usize,
    /// Raw finding column.
    pub finding: usize,
    /// View column, if the table has one.
    pub view: Option<usize>,
    /// Modality column, if the table has one.
    pub modality: Option<usize>,
    /// Image file name column (Figure1 has none).
    pub image: Option<usize>,
    /// The image's upstream URL column, if the table has one.
    pub url: Option<usize>,
}

/// One record per row with patient, finding, view, modality and image name filled in. A row
/// too short for a required column, or with an empty patient or image field, is excluded as
/// `malformed-row` (naming file, line and column); a blank finding as `unlabelled`; text past
/// the named columns is noted in `detail`. Readers then resolve each record's path. Rows are
/// made in parallel, in file order.
pub(crate) fn read_rows(src: &Source, table: &Table, cols: &RowColumns) -> Vec<Record> {
    let field = |row: &Row, idx: usize| field(table, row, idx).map(str::to_string);
    let optional = |row: &Row, idx: Option<usize>| idx.map(|i| field(row, i)).transpose();
    // Rows are independent: made in parallel, collected in file order.
    table
        .rows
        .par_iter()
        .map(|row| {
            let mut rec = new_record(src, table, row);
            let filled = (|| -> std::result::Result<(), String> {
                rec.patient = field(row, cols.patient)?;
                rec.subject = rec.patient.clone();
                rec.finding = field(row, cols.finding)?;
                rec.view = optional(row, cols.view)?.unwrap_or_default();
                rec.modality = optional(row, cols.modality)?.unwrap_or_default();
                rec.image = optional(row, cols.image)?.unwrap_or_default();
                rec.url = cols
                    .url
                    .and_then(|i| row.get(i))
                    .unwrap_or("")
                    .trim()
                    .to_string();
                for (idx, value) in [(Some(cols.patient), &rec.patient), (cols.image, &rec.image)] {
                    if let (Some(idx), true) = (idx, value.is_empty()) {
                        return Err(format!(
                            "{}:{}: field {:?} is empty",
                            table.file, row.line, table.header[idx]
                        ));
                    }
                }
                Ok(())
            })();
            match filled {
                Err(detail) => rec.exclude(Exclusion::MalformedRow, detail),
                Ok(()) if rec.finding.is_empty() => {
                    rec.exclude(Exclusion::Unlabelled, "blank finding")
                }
                Ok(()) => {}
            }
            if rec.detail.is_empty() {
                if let Some(note) = ragged_note(table, row) {
                    rec.detail = note;
                }
            }
            rec
        })
        .collect()
}

/// A row is ragged when it has text past the last named column (upstream rows with unquoted
/// commas spill into the header's trailing unnamed column or beyond).
fn ragged_note(table: &Table, row: &Row) -> Option<String> {
    let width = table.width();
    let spill = row.iter().skip(width).any(|f| !f.trim().is_empty());
    spill.then(|| {
        format!(
            "row has {} fields with text past the {width} named columns (unquoted commas?); \
             the extra text is ignored",
            row.len()
        )
    })
}
