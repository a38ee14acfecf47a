//! The image stage's tables: `quarantine.csv` (bad images) and `augment.parquet` (one row per
//! written sample with its split, shard and augmentation parameters).

use anyhow::Result;
use polars::prelude::*;

use super::sample::Sample;
use crate::imaging::augment::Params;
use crate::record::Split;
use crate::shards::Quarantined;

/// Format name in `augment.parquet`'s key-value metadata.
pub const AUGMENT_FORMAT: &str = "covidx-augment";
/// Version of `augment.parquet` (`major.minor`, as the manifest's).
pub const AUGMENT_VERSION: &str = "1.0";

/// A written sample: its split, shard file and parameters.
#[derive(Debug, Clone)]
pub struct SampleRow {
    /// Split of the shard.
    pub split: Split,
    /// Shard file name.
    pub shard: String,
    /// The sample.
    pub sample: Sample,
}

/// `quarantine.csv`: record, path, reason, detail.
pub fn quarantine_csv(q: &[Quarantined]) -> Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(["record", "path", "reason", "detail"])?;
    for e in q {
        w.write_record([
            e.record.to_string(),
            e.path.clone(),
            e.reason.clone(),
            e.detail.clone(),
        ])?;
    }
    Ok(w.into_inner()?)
}

/// `augment.parquet`'s frame: record, copy, split, shard, angle, tx, ty, zx, zy, flip, gain,
/// shift, so any sample can be regenerated with [`super::process`].
pub fn augment_frame(rows: &[SampleRow]) -> Result<DataFrame> {
    let f32s = |name: &str, f: fn(&Params) -> f32| {
        Column::new(
            name.into(),
            rows.iter().map(|r| f(&r.sample.params)).collect::<Vec<_>>(),
        )
    };
    let columns = vec![
        Column::new(
            "record".into(),
            rows.iter()
                .map(|r| r.sample.record as u64)
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "copy".into(),
            rows.iter().map(|r| r.sample.copy).collect::<Vec<_>>(),
        ),
        Column::new(
            "split".into(),
            rows.iter().map(|r| r.split.name()).collect::<Vec<_>>(),
        ),
        Column::new(
            "shard".into(),
            rows.iter().map(|r| r.shard.as_str()).collect::<Vec<_>>(),
        ),
        f32s("angle", |p| p.angle),
        f32s("tx", |p| p.tx),
        f32s("ty", |p| p.ty),
        f32s("zx", |p| p.zx),
        f32s("zy", |p| p.zy),
        Column::new(
            "flip".into(),
            rows.iter()
                .map(|r| r.sample.params.flip)
                .collect::<Vec<_>>(),
        ),
        f32s("gain", |p| p.gain),
        f32s("shift", |p| p.shift),
    ];
    Ok(DataFrame::new(rows.len(), columns)?)
}

/// `augment.parquet`'s bytes.
pub fn augment_parquet(rows: &[SampleRow]) -> Result<Vec<u8>> {
    crate::manifest::parquet_bytes(&augment_frame(rows)?, AUGMENT_FORMAT, AUGMENT_VERSION)
}
