//! Generic CSV source: any table whose columns the pipeline names (`columns.patient`,
//! `columns.image`, `columns.finding`, optional `view`/`modality`), images under `image_dir`.
//! Several findings in one cell (NIH ChestX-ray14's `Pneumonia|Infiltration`) are split on
//! `finding_separator` by the label stage.

use anyhow::{Context, Result};
use rayon::prelude::*;

use super::{image_path, read_rows, source_path, ReadContext, RowColumns, Table};
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
    let columns = RowColumns {
        patient: table.column(&cols.patient)?,
        finding: table.column(&cols.finding)?,
        view: cols.view.as_deref().map(|c| table.column(c)).transpose()?,
        modality: cols
            .modality
            .as_deref()
            .map(|c| table.column(c))
            .transpose()?,
        image: Some(table.column(&cols.image)?),
        url: None,
    };
    let image_dir = src.config.image_dir.as_deref().unwrap_or("images");
    let mut records = crate::timed(&format!("{file}: records made"), || {
        read_rows(src, &table, &columns)
    });
    // Paths resolved in place, in parallel; the first refused one in file order is the error.
    let refused = records
        .par_iter_mut()
        .zip(&table.rows)
        .filter(|(rec, _)| rec.exclusion != Some(Exclusion::MalformedRow))
        .map(|(rec, row)| -> Result<()> {
            let rel = if image_dir.is_empty() {
                rec.image.clone()
            } else {
                format!("{}/{}", image_dir.trim_end_matches('/'), rec.image)
            };
            rec.path = image_path(src, &table.file, row.line, &cols.image, &rel)?;
            Ok(())
        })
        .filter_map(Result::err)
        .find_first(|_| true);
    if let Some(e) = refused {
        return Err(e);
    }
    crate::drop_in_background(table);
    Ok(records)
}
