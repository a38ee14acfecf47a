//! RSNA Pneumonia Detection Challenge, stage 2: `stage_2_train_labels.csv` (one row per box,
//! several per patient, `Target` 0/1) and `stage_2_detailed_class_info.csv` (`Normal`,
//! `Lung Opacity`, `No Lung Opacity / Not Normal`), images `stage_2_train_images/<id>.dcm`.
//!
//! One record per patient, in order of first appearance in the class file (the two files are
//! row-aligned upstream). The record's finding is the detailed class; a patient only in the
//! labels file gets its `Target` (`0`/`1`). Contradictions between or within the files become a
//! `conflicting-labels` exclusion naming both files, lines and fields.

use rustc_hash::FxHashMap as HashMap;

use anyhow::Result;

use rayon::prelude::*;

use super::{field as row_field, image_path, source_path, InputHashes, ReadContext, Table};
use crate::config::Source;
use crate::record::{Exclusion, Record};

/// Name of the detailed class file inside the source directory.
pub const CLASS_FILE: &str = "stage_2_detailed_class_info.csv";
/// Directory of the DICOM images inside the source directory.
pub const IMAGE_DIR: &str = "stage_2_train_images";

struct Patient<'t> {
    class: Option<(&'t str, u64)>,
    target: Option<(&'t str, u64)>,
    conflict: Option<String>,
    line: u64,
    file: &'t str,
}

/// The patients of both files in order of first appearance, and the rows too short to read
/// (fields borrowed from the tables: 60k rows upstream, no copy per row).
struct Patients<'t> {
    order: Vec<&'t str>,
    by_id: HashMap<&'t str, Patient<'t>>,
    malformed: Vec<(String, u64, String)>,
}

/// Collects every patient's class (class file) and `Target` (labels file), noting the first
/// contradiction within a file.
fn collect<'t>(classes: &'t Table, labels: &'t Table) -> Result<Patients<'t>> {
    // Sized for one patient per class row (upstream: 26,684 patients in 30,227 rows), so the
    // map is never rehashed while it fills.
    let n = classes.rows.len().max(labels.rows.len());
    let mut p = Patients {
        order: Vec::with_capacity(n),
        by_id: HashMap::with_capacity_and_hasher(n, Default::default()),
        malformed: Vec::new(),
    };
    for (table, field, is_class) in [(classes, "class", true), (labels, "Target", false)] {
        let pid_col = table.column("patientId")?;
        let val_col = table.column(field)?;
        for row in &table.rows {
            let (pid, value) = match (
                row_field(table, row, pid_col),
                row_field(table, row, val_col),
            ) {
                (Ok(p), Ok(v)) if !p.is_empty() => (p, v),
                (Err(d), _) | (_, Err(d)) => {
                    p.malformed.push((table.file.clone(), row.line, d));
                    continue;
                }
                _ => {
                    let d = format!("{}:{}: field \"patientId\" is empty", table.file, row.line);
                    p.malformed.push((table.file.clone(), row.line, d));
                    continue;
                }
            };
            let entry = p.by_id.entry(pid).or_insert_with(|| {
                p.order.push(pid);
                Patient {
                    class: None,
                    target: None,
                    conflict: None,
                    line: row.line,
                    file: &table.file,
                }
            });
            let slot = if is_class {
                &mut entry.class
            } else {
                &mut entry.target
            };
            match slot {
                None => *slot = Some((value, row.line)),
                Some((prev, prev_line)) if *prev != value && entry.conflict.is_none() => {
                    entry.conflict = Some(format!(
                        "{}: field {field:?} is {prev:?} on line {prev_line} but {value:?} on line {}",
                        table.file, row.line
                    ));
                }
                Some(_) => {}
            }
        }
    }
    Ok(p)
}

/// Reads the two RSNA CSVs into one record per patient. The two files are parsed side by
/// side, and the records (one per patient, ~27k upstream) made in parallel, in order.
pub fn read(ctx: &mut ReadContext, src: &Source) -> Result<Vec<Record>> {
    let labels_file = source_path(src, &src.metadata);
    let class_file = source_path(src, CLASS_FILE);
    let (mut class_inputs, mut label_inputs) = (InputHashes::new(), InputHashes::new());
    let root = ctx.root;
    let (classes, labels) = rayon::join(
        || Table::load(root, &class_file, src.encoding, b',', &mut class_inputs),
        || Table::load(root, &labels_file, src.encoding, b',', &mut label_inputs),
    );
    let (classes, labels) = (classes?, labels?);
    ctx.inputs.extend(class_inputs);
    ctx.inputs.extend(label_inputs);
    let patients = collect(&classes, &labels)?;
    let mut out = patients
        .order
        .par_iter()
        .map(|pid| record_of(src, pid, &patients.by_id[pid], (&class_file, &labels_file)))
        .collect::<Result<Vec<Record>>>()?;
    out.reserve(patients.malformed.len());
    for (file, line, detail) in patients.malformed {
        let mut rec = Record {
            source: src.name.clone(),
            tag: src.tag.clone(),
            file,
            line,
            ..Record::default()
        };
        rec.exclude(Exclusion::MalformedRow, detail);
        out.push(rec);
    }
    Ok(out)
}

/// The record of one patient: finding from the class file (else `Target`), excluded as
/// `conflicting-labels` when the files or rows disagree.
fn record_of(
    src: &Source,
    pid: &str,
    p: &Patient<'_>,
    (class_file, labels_file): (&str, &str),
) -> Result<Record> {
    let ext = src.config.output_ext.as_deref().unwrap_or("png");
    let image_rel = format!("{IMAGE_DIR}/{pid}.dcm");
    let mut rec = Record {
        source: src.name.clone(),
        tag: src.tag.clone(),
        file: p.file.to_string(),
        line: p.line,
        subject: pid.to_string(),
        image: format!("{pid}.{ext}"),
        path: image_path(src, p.file, p.line, "patientId", &image_rel)?,
        patient: pid.to_string(),
        ..Record::default()
    };
    rec.finding = match (&p.class, &p.target) {
        (Some((c, _)), _) => c.to_string(),
        (None, Some((t, _))) => t.to_string(),
        (None, None) => String::new(),
    };
    let consistent = match (&p.class, &p.target) {
        (Some((c, cl)), Some((t, tl))) => {
            let opacity = *c == "Lung Opacity";
            let positive = *t == "1";
            (opacity == positive).then_some(()).ok_or_else(|| {
                format!(
                    "{class_file}:{cl} field \"class\" is {c:?} but {labels_file}:{tl} \
                     field \"Target\" is {t:?}"
                )
            })
        }
        _ => Ok(()),
    };
    if let Some(c) = &p.conflict {
        rec.exclude(Exclusion::ConflictingLabels, c.clone());
    } else if let Err(c) = consistent {
        rec.exclude(Exclusion::ConflictingLabels, c);
    } else if p.class.is_none() {
        rec.detail = format!("not in {class_file}; finding is the Target value");
    }
    Ok(rec)
}
