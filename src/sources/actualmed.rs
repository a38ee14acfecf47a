//! Actualmed COVID-19 CXR set (`metadata.csv` with CRLF line endings, file name column
//! `imagename`, findings `COVID-19`, `No finding` or blank; images under `images/`).

use anyhow::Result;

use super::{image_path, new_record, source_path, FieldGetter, ReadContext, Table};
use crate::config::Source;
use crate::record::{Exclusion, Record};

/// Reads Actualmed's metadata into records.
pub fn read(ctx: &mut ReadContext, src: &Source) -> Result<Vec<Record>> {
    let file = source_path(src, &src.metadata);
    let table = Table::load(ctx.root, &file, src.encoding, b',', ctx.inputs)?;
    let pid = table.column("patientid")?;
    let finding = table.column("finding")?;
    let view = table.column("view")?;
    let imagename = table.column("imagename")?;
    let modality = table.optional_column("modality");
    let fields = FieldGetter::new(&table);

    let mut out = Vec::with_capacity(table.rows.len());
    for row in &table.rows {
        let mut rec = new_record(src, &table, row);
        let parsed = (|| -> std::result::Result<(), String> {
            rec.patient = fields.get(row, pid)?.to_string();
            rec.subject = rec.patient.clone();
            rec.finding = fields.get(row, finding)?.to_string();
            rec.view = fields.get(row, view)?.to_string();
            rec.image = fields.get(row, imagename)?.to_string();
            if let Some(m) = modality {
                rec.modality = fields.get(row, m)?.to_string();
            }
            Ok(())
        })();
        if let Err(detail) = parsed {
            rec.exclude(Exclusion::MalformedRow, detail);
        } else if rec.image.is_empty() {
            let detail = format!("{}: field \"imagename\" is empty", rec.origin());
            rec.exclude(Exclusion::MalformedRow, detail);
        } else {
            rec.path = image_path(
                src,
                &table.file,
                row.line,
                "imagename",
                &format!("images/{}", rec.image),
            )?;
            if rec.finding.is_empty() {
                rec.exclude(Exclusion::Unlabelled, "blank finding");
            }
        }
        out.push(rec);
    }
    Ok(out)
}
