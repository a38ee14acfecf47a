//! RSNA International COVID-19 Open Radiology Database (RICORD) as COVID-Net lists it: its
//! `ricord_data_set.txt` (made by `create_ricord_dataset.ipynb`) names one image per line (the
//! first space-separated field; crop box numbers follow). The patient is dash fields 4 and 5
//! of the name (`MIDRC-RICORD-1C-419639-000025-04760-0.png` -> `419639-000025`); images lie
//! under `image_dir` by file name. Every row carries the source's `finding` (default
//! `COVID-19`).

use anyhow::Result;

use super::{
    fixed_finding, image_path, in_image_dir, read_input, record_at, source_path, ReadContext,
};
use crate::config::Source;
use crate::record::{Exclusion, Record};

/// The patient of a RICORD file name: dash fields 4 and 5 (1-based), or `None` when the name
/// has fewer than five.
pub fn patient_of(name: &str) -> Option<String> {
    let mut parts = name.split('-');
    let (a, b) = (parts.nth(3)?, parts.next()?);
    Some(format!("{a}-{b}"))
}

/// Reads the file list into records.
pub fn read(ctx: &mut ReadContext, src: &Source) -> Result<Vec<Record>> {
    let file = source_path(src, &src.metadata);
    let bytes = read_input(ctx, &file)?;
    let text = super::table::decode(&bytes, src.encoding, &file)?;
    let finding = fixed_finding(src);
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let line_no = i as u64 + 1;
        let mut rec = Record {
            image: name.to_string(),
            finding: finding.to_string(),
            ..record_at(src, &file, line_no)
        };
        match patient_of(name) {
            Some(p) => {
                rec.patient = p.clone();
                rec.subject = p;
                rec.path = image_path(src, &file, line_no, "file name", &in_image_dir(src, name))?;
            }
            None => rec.exclude(
                Exclusion::MalformedRow,
                format!("{file}:{line_no}: {name:?} has fewer than 5 dash-separated fields"),
            ),
        }
        out.push(rec);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::patient_of;

    #[test]
    fn patient_is_dash_fields_four_and_five() {
        assert_eq!(
            patient_of("MIDRC-RICORD-1C-419639-000025-04760-0.png").as_deref(),
            Some("419639-000025")
        );
        assert_eq!(patient_of("MIDRC-RICORD-1C"), None);
    }
}
