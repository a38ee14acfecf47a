//! Cohen's covid-chestxray-dataset (`metadata.csv` + `images/`, `volumes/`).
//!
//! Handles both schemas: the early flat `finding` (`COVID-19, ARDS`) and the later hierarchical
//! one (`Pneumonia/Viral/COVID-19`, with `RT_PCR_positive` and `folder` columns); the header's
//! trailing comma; multi-line quoted notes; rows with unquoted commas (text past the header);
//! trailing spaces in file names. The image path is `<folder>/<filename>` (`folder` defaults to
//! `images`).

use anyhow::Result;

use super::{image_path, read_rows, source_path, ReadContext, RowColumns, Table};
use crate::config::Source;
use crate::record::{Exclusion, Record};

/// Reads Cohen's metadata into records.
pub fn read(ctx: &mut ReadContext, src: &Source) -> Result<Vec<Record>> {
    let file = source_path(src, &src.metadata);
    let table = Table::load(ctx.root, &file, src.encoding, b',', ctx.inputs)?;
    let cols = RowColumns {
        patient: table.column("patientid")?,
        finding: table.column("finding")?,
        view: Some(table.column("view")?),
        modality: table.optional_column("modality"),
        image: Some(table.column("filename")?),
        url: table.optional_column("url"),
    };
    let folder = table.optional_column("folder");
    let mut out = Vec::with_capacity(table.rows.len());
    for (mut rec, row) in read_rows(src, &table, &cols).into_iter().zip(&table.rows) {
        if rec.exclusion != Some(Exclusion::MalformedRow) {
            let dir = folder
                .and_then(|f| row.get(f))
                .map(str::trim)
                .filter(|f| !f.is_empty())
                .unwrap_or("images");
            let rel = format!("{dir}/{}", rec.image);
            rec.path = image_path(src, &table.file, row.line, "folder/filename", &rel)?;
        }
        out.push(rec);
    }
    Ok(out)
}
