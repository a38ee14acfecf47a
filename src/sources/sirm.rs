//! Kaggle COVID-19 Radiography Database, the source COVID-Net tags `sirm`: the metadata
//! workbook (`COVID-19.metadata.xlsx`, first sheet, columns `FILE NAME`, `FORMAT`, `URL`) and
//! the images under `COVID-19/`. The image is `FILE NAME` + `.` + lower-case `FORMAT`, or, when
//! that file does not exist, the same name with a space before the first `(` (version 1's
//! sheet says `COVID-19(69)`, its files are `COVID-19 (69).png`). The patient is `FILE NAME`.
//! Every row carries the source's `finding` (default `COVID-19`).

use std::io::Cursor;

use anyhow::{bail, Context, Result};
use calamine::{Data, Range, Reader, Xlsx};

use super::{
    fixed_finding, image_path, in_image_dir, read_input, record_at, source_path, ReadContext,
};
use crate::config::Source;
use crate::record::{Exclusion, Record};

/// The cell as calamine displays it, trimmed (empty for a missing cell).
fn text(cell: Option<&Data>) -> String {
    cell.map(|c| c.to_string().trim().to_string())
        .unwrap_or_default()
}

/// The first sheet of an `.xlsx` workbook; errors name the file.
pub fn first_sheet(bytes: Vec<u8>, file: &str) -> Result<Range<Data>> {
    let mut book: Xlsx<_> = Xlsx::new(Cursor::new(bytes))
        .map_err(|e| anyhow::anyhow!("{file}: not a readable .xlsx workbook: {e}"))?;
    let sheet = book
        .worksheet_range_at(0)
        .with_context(|| format!("{file}: the workbook has no sheet"))?
        .map_err(|e| anyhow::anyhow!("{file}: reading its first sheet: {e}"))?;
    Ok(sheet)
}

/// The name on disk when `primary` does not exist: a space before the first `(`.
pub fn fallback_name(primary: &str) -> Option<String> {
    let (stem, rest) = primary.split_once('(')?;
    Some(format!("{stem} ({rest}"))
}

/// Reads the workbook into records, one per row, resolving each image name on disk.
pub fn read(ctx: &mut ReadContext, src: &Source) -> Result<Vec<Record>> {
    let file = source_path(src, &src.metadata);
    let sheet = first_sheet(read_input(ctx, &file)?, &file)?;
    let first_row = sheet.start().map(|(r, _)| r as u64).unwrap_or(0);
    let mut rows = sheet.rows();
    let header: Vec<String> = rows
        .next()
        .with_context(|| format!("{file}: the first sheet is empty"))?
        .iter()
        .map(|c| text(Some(c)))
        .collect();
    let column = |name: &str| {
        header.iter().position(|h| h == name).with_context(|| {
            format!("{file}: required column {name:?} not found; header has {header:?}")
        })
    };
    let (name_col, format_col, url_col) = (column("FILE NAME")?, column("FORMAT")?, column("URL")?);
    let finding = fixed_finding(src);
    let mut out = Vec::new();
    for (i, row) in rows.enumerate() {
        // Spreadsheet row numbers are 1-based and the header is the first row.
        let line = first_row + i as u64 + 2;
        if row.iter().all(|c| matches!(c, Data::Empty)) {
            continue;
        }
        let mut rec = Record {
            patient: text(row.get(name_col)),
            finding: finding.to_string(),
            url: text(row.get(url_col)),
            ..record_at(src, &file, line)
        };
        rec.subject = rec.patient.clone();
        let format = text(row.get(format_col)).to_lowercase();
        if rec.patient.is_empty() || format.is_empty() {
            let field = if rec.patient.is_empty() {
                "FILE NAME"
            } else {
                "FORMAT"
            };
            rec.exclude(
                Exclusion::MalformedRow,
                format!("{file}:{line}: field {field:?} is empty"),
            );
            out.push(rec);
            continue;
        }
        let primary = format!("{}.{format}", rec.patient);
        let primary_path = image_path(src, &file, line, "FILE NAME", &in_image_dir(src, &primary))?;
        rec.image = primary;
        rec.path = primary_path;
        if !ctx.root.join(&rec.path).is_file() {
            if let Some(alt) = fallback_name(&rec.image) {
                let alt_path = image_path(src, &file, line, "FILE NAME", &in_image_dir(src, &alt))?;
                if ctx.root.join(&alt_path).is_file() {
                    rec.image = alt;
                    rec.path = alt_path;
                }
            }
        }
        out.push(rec);
    }
    if out.is_empty() {
        bail!("{file}: the first sheet has a header and no rows");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::fallback_name;

    #[test]
    fn fallback_puts_a_space_before_the_first_parenthesis() {
        assert_eq!(
            fallback_name("COVID-19(69).png").as_deref(),
            Some("COVID-19 (69).png")
        );
        assert_eq!(fallback_name("COVID 1.png"), None);
    }
}
