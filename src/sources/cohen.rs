//! Cohen's covid-chestxray-dataset (`metadata.csv` + `images/`, `volumes/`).
//!
//! Handles both schemas: the early flat `finding` (`COVID-19, ARDS`) and the later hierarchical
//! one (`Pneumonia/Viral/COVID-19`, with `RT_PCR_positive` and `folder` columns); the header's
//! trailing comma; multi-line quoted notes; rows with unquoted commas (more fields than the
//! header); trailing spaces in file names. The image path is `<folder>/<filename>` (`folder`
//! defaults to `images`).

use anyhow::Result;

use super::{image_path, new_record, source_path, FieldGetter, ReadContext, Table};
use crate::config::Source;
use crate::record::{Exclusion, Record};

/// Reads Cohen's metadata into records.
pub fn read(ctx: &mut ReadContext, src: &Source) -> Result<Vec<Record>> {
    let file = source_path(src, &src.metadata);
    let table = Table::load(ctx.root, &file, src.encoding, b',', ctx.inputs)?;
    let pid = table.column("patientid")?;
    let finding = table.column("finding")?;
    let view = table.column("view")?;
    let filename = table.column("filename")?;
    let modality = table.optional_column("modality");
    let folder = table.optional_column("folder");
    let fields = FieldGetter::new(&table);

    let mut out = Vec::with_capacity(table.rows.len());
    for row in &table.rows {
        let mut rec = new_record(src, &table, row);
        let parsed = (|| -> std::result::Result<(), String> {
            rec.patient = fields.get(row, pid)?.to_string();
            rec.subject = rec.patient.clone();
            rec.finding = fields.get(row, finding)?.to_string();
            rec.view = fields.get(row, view)?.to_string();
            rec.image = fields.get(row, filename)?.to_string();
            if let Some(m) = modality {
                rec.modality = fields.get(row, m)?.to_string();
            }
            Ok(())
        })();
        if let Err(detail) = parsed {
            rec.exclude(Exclusion::MalformedRow, detail);
            out.push(rec);
            continue;
        }
        if rec.image.is_empty() {
            let detail = format!("{}: field \"filename\" is empty", rec.origin());
            rec.exclude(Exclusion::MalformedRow, detail);
            out.push(rec);
            continue;
        }
        let dir = folder
            .and_then(|f| row.get(f))
            .map(str::trim)
            .filter(|f| !f.is_empty())
            .unwrap_or("images");
        rec.path = image_path(
            src,
            &table.file,
            row.line,
            "folder/filename",
            &format!("{dir}/{}", rec.image),
        )?;
        if let Some(note) = fields.ragged_note(row) {
            rec.detail = note;
        }
        if rec.finding.is_empty() {
            rec.exclude(Exclusion::Unlabelled, "blank finding");
        }
        out.push(rec);
    }
    Ok(out)
}
