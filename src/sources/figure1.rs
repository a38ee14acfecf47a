//! Figure1 COVID-19 CXR set (`metadata.csv` in ISO-8859-1, no file name column: the image is
//! `images/<patientid>.jpg`, else `.png`; suffixed ids such as `COVID-00003a`/`b` are images of
//! one patient; a blank finding means unlabelled).

use anyhow::Result;

use super::{image_path, read_rows, source_path, ReadContext, RowColumns, Table};
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
    let cols = RowColumns {
        patient: table.column("patientid")?,
        finding: table.column("finding")?,
        view: Some(table.column("view")?),
        modality: table.optional_column("modality"),
        image: None,
        url: None,
    };
    let mut out = Vec::with_capacity(table.rows.len());
    for (mut rec, row) in read_rows(src, &table, &cols).into_iter().zip(&table.rows) {
        rec.subject = subject_of(&rec.patient).to_string();
        if rec.exclusion == Some(Exclusion::MalformedRow) {
            out.push(rec);
            continue;
        }
        let names = ["jpg", "png"].map(|ext| format!("{}.{ext}", rec.patient));
        let mut paths = Vec::with_capacity(2);
        for name in &names {
            paths.push(image_path(
                src,
                &table.file,
                row.line,
                "patientid",
                &format!("images/{name}"),
            )?);
        }
        // The extension is taken from what exists (confined: a symlink out of the source
        // root counts as existing here and is refused when the image is located).
        match (0..2).find(|&i| ctx.root.join(&paths[i]).is_file()) {
            Some(i) => {
                rec.image = names[i].clone();
                rec.path = paths[i].clone();
            }
            None => {
                rec.image = names[0].clone();
                let detail = format!("neither {} nor {} exists", paths[0], paths[1]);
                rec.exclude(Exclusion::MissingImage, detail);
            }
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
