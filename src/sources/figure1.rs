//! Figure1 COVID-19 CXR set (`metadata.csv` in ISO-8859-1, no file name column: the image is
//! `images/<patientid>.jpg`, else `.png`; suffixed ids such as `COVID-00003a`/`b` are images of
//! one patient; a blank finding means unlabelled).

use anyhow::Result;

use super::{image_path, new_record, source_path, FieldGetter, ReadContext, Table};
use crate::config::Source;
use crate::record::{Exclusion, Record};

/// The patient an id belongs to: `COVID-00003a` -> `COVID-00003` (suffix letters after digits).
pub fn subject_of(patient: &str) -> &str {
    let stem = patient.trim_end_matches(|c: char| c.is_ascii_lowercase());
    if stem.len() < patient.len() && stem.ends_with(|c: char| c.is_ascii_digit()) {
        stem
    } else {
        patient
    }
}

/// Reads Figure1's metadata into records, resolving each image's extension on disk.
pub fn read(ctx: &mut ReadContext, src: &Source) -> Result<Vec<Record>> {
    let file = source_path(src, &src.metadata);
    let table = Table::load(ctx.root, &file, src.encoding, b',', ctx.inputs)?;
    let pid = table.column("patientid")?;
    let finding = table.column("finding")?;
    let view = table.column("view")?;
    let modality = table.optional_column("modality");
    let fields = FieldGetter::new(&table);

    let mut out = Vec::with_capacity(table.rows.len());
    for row in &table.rows {
        let mut rec = new_record(src, &table, row);
        let parsed = (|| -> std::result::Result<(), String> {
            rec.patient = fields.get(row, pid)?.to_string();
            rec.finding = fields.get(row, finding)?.to_string();
            rec.view = fields.get(row, view)?.to_string();
            if let Some(m) = modality {
                rec.modality = fields.get(row, m)?.to_string();
            }
            Ok(())
        })();
        rec.subject = subject_of(&rec.patient).to_string();
        if let Err(detail) = parsed {
            rec.exclude(Exclusion::MalformedRow, detail);
            out.push(rec);
            continue;
        }
        if rec.patient.is_empty() {
            let detail = format!("{}: field \"patientid\" is empty", rec.origin());
            rec.exclude(Exclusion::MalformedRow, detail);
            out.push(rec);
            continue;
        }
        let candidates = ["jpg", "png"].map(|ext| format!("{}.{ext}", rec.patient));
        let mut found = None;
        for name in &candidates {
            let path = image_path(
                src,
                &table.file,
                row.line,
                "patientid",
                &format!("images/{name}"),
            )?;
            if ctx.root.join(&path).is_file() {
                found = Some((name.clone(), path));
                break;
            }
        }
        match found {
            Some((name, path)) => {
                rec.image = name;
                rec.path = path;
            }
            None => {
                rec.image = candidates[0].clone();
                let detail = format!(
                    "neither {} nor {} exists",
                    source_path(src, &format!("images/{}", candidates[0])),
                    source_path(src, &format!("images/{}", candidates[1]))
                );
                rec.exclude(Exclusion::MissingImage, detail);
            }
        }
        if rec.finding.is_empty() {
            rec.exclusion = None;
            rec.exclude(Exclusion::Unlabelled, "blank finding");
        }
        out.push(rec);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::subject_of;

    #[test]
    fn suffixed_ids_share_a_subject() {
        assert_eq!(subject_of("COVID-00003a"), "COVID-00003");
        assert_eq!(subject_of("COVID-00003b"), "COVID-00003");
        assert_eq!(subject_of("COVID-00001"), "COVID-00001");
        assert_eq!(subject_of("abc"), "abc");
    }
}
