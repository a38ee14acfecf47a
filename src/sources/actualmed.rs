//! Actualmed COVID-19 CXR set (`metadata.csv` with CRLF line endings, file name column
//! `imagename`, findings `COVID-19`, `No finding` or blank; images under `images/`).

use anyhow::Result;

use super::{image_path, read_rows, source_path, ReadContext, RowColumns, Table};
use crate::config::Source;
use crate::record::{Exclusion, Record};

/// Reads Actualmed's metadata into records.
pub fn read(ctx: &mut ReadContext, src: &Source) -> Result<Vec<Record>> {
    let file = source_path(src, &src.metadata);
    let table = Table::load(ctx.root, &file, src.encoding, b',', ctx.inputs)?;
    let cols = RowColumns {
        patient: table.column("patientid")?,
        finding: table.column("finding")?,
        view: Some(table.column("view")?),
        modality: table.optional_column("modality"),
        image: Some(table.column("imagename")?),
        url: None,
    };
    let mut out = Vec::with_capacity(table.rows.len());
    for (mut rec, row) in read_rows(src, &table, &cols).into_iter().zip(&table.rows) {
        if rec.exclusion != Some(Exclusion::MalformedRow) {
            let rel = format!("images/{}", rec.image);
            rec.path = image_path(src, &table.file, row.line, "imagename", &rel)?;
        }
        out.push(rec);
    }
    Ok(out)
}
