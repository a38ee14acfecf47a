//! Generic CSV source: any table whose columns the pipeline names (`columns.patient`,
//! `columns.image`, `columns.finding`, optional `view`/`modality`), images under `image_dir`.
//! Several findings in one cell (NIH ChestX-ray14's `Pneumonia|Infiltration`) are split on
//! `finding_separator` by the label stage.

use anyhow::{Context, Result};

use super::{image_path, new_record, source_path, FieldGetter, ReadContext, Table};
use crate::config::Source;
use crate::record::{Exclusion, Record};

/// Reads a generic CSV source into records.
pub fn read(ctx: &mut ReadContext, src: &Source) -> Result<Vec<Record>> {
    let cols = src
        .config
        .columns
        .as_ref()
        .context("columns are required for kind = \"csv\"")?;
    let delimiter = src.config.delimiter.unwrap_or(',');
    if !delimiter.is_ascii() {
        anyhow::bail!("delimiter {delimiter:?} is not a single ASCII character");
    }
    let file = source_path(src, &src.metadata);
    let table = Table::load(ctx.root, &file, src.encoding, delimiter as u8, ctx.inputs)?;
    let pid = table.column(&cols.patient)?;
    let image = table.column(&cols.image)?;
    let finding = table.column(&cols.finding)?;
    let view = cols.view.as_deref().map(|c| table.column(c)).transpose()?;
    let modality = cols
        .modality
        .as_deref()
        .map(|c| table.column(c))
        .transpose()?;
    let image_dir = src.config.image_dir.as_deref().unwrap_or("images");
    let fields = FieldGetter::new(&table);

    let mut out = Vec::with_capacity(table.rows.len());
    for row in &table.rows {
        let mut rec = new_record(src, &table, row);
        let parsed = (|| -> std::result::Result<(), String> {
            rec.patient = fields.get(row, pid)?.to_string();
            rec.subject = rec.patient.clone();
            rec.image = fields.get(row, image)?.to_string();
            rec.finding = fields.get(row, finding)?.to_string();
            if let Some(v) = view {
                rec.view = fields.get(row, v)?.to_string();
            }
            if let Some(m) = modality {
                rec.modality = fields.get(row, m)?.to_string();
            }
            Ok(())
        })();
        if let Err(detail) = parsed {
            rec.exclude(Exclusion::MalformedRow, detail);
        } else if rec.image.is_empty() || rec.patient.is_empty() {
            let detail = format!("{}: patient or image field is empty", rec.origin());
            rec.exclude(Exclusion::MalformedRow, detail);
        } else {
            let rel = if image_dir.is_empty() {
                rec.image.clone()
            } else {
                format!("{}/{}", image_dir.trim_end_matches('/'), rec.image)
            };
            rec.path = image_path(src, &table.file, row.line, &cols.image, &rel)?;
            if rec.finding.is_empty() {
                rec.exclude(Exclusion::Unlabelled, "blank finding");
            }
        }
        out.push(rec);
    }
    Ok(out)
}
