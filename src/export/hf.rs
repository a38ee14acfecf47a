//! `covidx export --format hf BUILD DIR`: Parquet shards for Hugging Face `datasets`,
//! `DIR/data/<split>-NNNNN-of-MMMMM.parquet` (the Hub's naming, so `load_dataset(DIR)` finds
//! the splits), and a dataset card `DIR/README.md` whose YAML declares the splits and features.
//!
//! Columns: `image` (struct of `bytes`, the sample as PNG, and `path`, `<key>.png`: the
//! storage of `datasets.Image`), `label` (int64, a `ClassLabel` of the build's classes), then
//! the [`SampleMeta`] fields `key`, `record`, `copy`, `source`, `patient`, `split_image`,
//! `path`, `image_sha256`, `view`, `finding`. The features are also in each file's
//! `huggingface` key-value metadata, which `load_dataset("parquet", data_files=...)` reads.
//! Row groups hold 100 rows, as the Hub recommends for images.

use std::path::Path;

use anyhow::Result;
use polars::prelude::*;
use serde_json::json;

use super::{encode_png, Options, Record, SampleMeta, ShardFormat, Source};
use crate::record::Split;
use crate::shards::Dataset;

/// Rows per Parquet row group.
pub const ROW_GROUP: usize = 100;

/// The shard path relative to the export directory: `data/<split>-NNNNN-of-MMMMM.parquet`.
pub fn shard_name(split: Split, k: usize, n: usize) -> String {
    format!("data/{}-{k:05}-of-{n:05}.parquet", split.name())
}

/// True for file names [`shard_name`] gives (without `data/`).
fn is_shard_name(name: &str) -> bool {
    [Split::Train, Split::Test].iter().any(|s| {
        name.strip_prefix(s.name())
            .and_then(|r| r.strip_prefix('-'))
            .and_then(|r| r.strip_suffix(".parquet"))
            .and_then(|r| r.split_once("-of-"))
            .is_some_and(|(k, n)| {
                [k, n]
                    .iter()
                    .all(|x| x.len() >= 5 && x.bytes().all(|b| b.is_ascii_digit()))
            })
    })
}

/// A [`SampleMeta`] string field.
type Getter = fn(&SampleMeta) -> &str;

/// String columns after `copy`, in order, with their [`SampleMeta`] field.
const STRING_COLUMNS: [(&str, Getter); 7] = [
    ("source", |m| &m.source),
    ("patient", |m| &m.patient),
    ("split_image", |m| &m.split_image),
    ("path", |m| &m.path),
    ("image_sha256", |m| &m.image_sha256),
    ("view", |m| &m.view),
    ("finding", |m| &m.finding),
];

/// The `datasets` features of the columns, in column order, as the JSON object that
/// `Features.to_dict()` writes (serde_json's maps sort their keys, so it is written here).
pub fn features(classes: &[String]) -> String {
    let value = |dtype: &str| json!({"dtype": dtype, "_type": "Value"});
    let mut f: Vec<(&str, serde_json::Value)> = vec![
        ("image", json!({"_type": "Image"})),
        ("label", json!({"names": classes, "_type": "ClassLabel"})),
        ("key", value("string")),
        ("record", value("uint64")),
        ("copy", value("uint32")),
    ];
    for (name, _) in STRING_COLUMNS {
        f.push((name, value("string")));
    }
    let fields: Vec<String> = f
        .iter()
        .map(|(name, v)| format!("{}:{v}", json!(name)))
        .collect();
    format!("{{{}}}", fields.join(","))
}

/// The `ARROW:schema` value of a shard: the frame's Arrow schema with plain `string` and
/// `binary` types (what `datasets` features map to) and the `huggingface` features as schema
/// metadata. pyarrow, and so `datasets`, reads a file's schema metadata from `ARROW:schema`
/// alone when the file has one, and polars always writes one, so it is written here.
fn arrow_schema_key(df: &DataFrame, hf: &str) -> String {
    use base64::Engine;
    use polars_arrow::datatypes::{ArrowDataType as D, Field, Metadata};
    use polars_arrow::io::ipc::write::{default_ipc_fields, schema_to_bytes};
    fn plain(dtype: D) -> D {
        match dtype {
            D::Utf8View | D::LargeUtf8 => D::Utf8,
            D::BinaryView | D::LargeBinary => D::Binary,
            D::Struct(fields) => D::Struct(
                fields
                    .into_iter()
                    .map(|f| Field {
                        dtype: plain(f.dtype),
                        ..f
                    })
                    .collect(),
            ),
            d => d,
        }
    }
    let schema: ArrowSchema = df
        .schema()
        .to_arrow(CompatLevel::newest())
        .iter_values()
        .map(|f| {
            let f = Field {
                dtype: plain(f.dtype.clone()),
                ..f.clone()
            };
            (f.name.clone(), f)
        })
        .collect();
    let metadata: Metadata = [("huggingface".into(), hf.into())].into_iter().collect();
    let message = schema_to_bytes(
        &schema,
        &default_ipc_fields(schema.iter_values()),
        Some(&metadata),
    );
    // The legacy IPC framing Arrow uses in Parquet: continuation marker, length, message.
    let mut framed = Vec::with_capacity(message.len() + 8);
    framed.extend_from_slice(&[0xff; 4]);
    framed.extend_from_slice(&(message.len() as u32).to_le_bytes());
    framed.extend_from_slice(&message);
    base64::engine::general_purpose::STANDARD.encode(framed)
}

/// The frame of one shard.
fn frame(src: &Source, data: &Dataset, samples: &[usize]) -> Result<DataFrame> {
    let side = src.size();
    let mut pngs = Vec::with_capacity(samples.len());
    let mut metas = Vec::with_capacity(samples.len());
    for &i in samples {
        let s = data.sample(i)?;
        pngs.push(encode_png(side, s.image)?);
        metas.push(SampleMeta::new(src, data.split(), &s)?);
    }
    let n = samples.len();
    let bytes = Series::new(
        "bytes".into(),
        pngs.iter().map(|p| p.as_slice()).collect::<Vec<_>>(),
    );
    let paths = Series::new(
        "path".into(),
        metas
            .iter()
            .map(|m| format!("{}.png", m.key))
            .collect::<Vec<_>>(),
    );
    let image = StructChunked::from_series("image".into(), n, [bytes, paths].iter())?;
    let mut columns = vec![
        image.into_series().into_column(),
        Column::new(
            "label".into(),
            metas.iter().map(|m| m.label as i64).collect::<Vec<_>>(),
        ),
        Column::new(
            "key".into(),
            metas.iter().map(|m| m.key.as_str()).collect::<Vec<_>>(),
        ),
        Column::new(
            "record".into(),
            metas.iter().map(|m| m.record).collect::<Vec<_>>(),
        ),
        Column::new(
            "copy".into(),
            metas.iter().map(|m| u32::from(m.copy)).collect::<Vec<_>>(),
        ),
    ];
    for (name, get) in STRING_COLUMNS {
        columns.push(Column::new(
            name.into(),
            metas.iter().map(get).collect::<Vec<_>>(),
        ));
    }
    Ok(DataFrame::new(n, columns)?)
}

/// The dataset card: YAML front matter with the splits' files and the features, then a
/// short description naming the build and each split's sample count. (The card's
/// `dataset_info.splits` would need `num_bytes` of the data in Arrow form, which the Hub
/// computes; the counts and file sizes are in `export.json`.)
pub fn card(record: &Record) -> String {
    let quote = |s: &str| format!("'{}'", s.replace('\'', "''"));
    let mut y = String::from("---\nconfigs:\n- config_name: default\n  data_files:\n");
    for split in record.splits.keys() {
        y += &format!("  - split: {split}\n    path: data/{split}-*\n");
    }
    y += "dataset_info:\n  features:\n  - name: image\n    dtype: image\n";
    y += "  - name: label\n    dtype:\n      class_label:\n        names:\n";
    for (i, c) in record.classes.iter().enumerate() {
        y += &format!("          '{i}': {}\n", quote(c));
    }
    for (name, dtype) in [("key", "string"), ("record", "uint64"), ("copy", "uint32")]
        .into_iter()
        .chain(STRING_COLUMNS.iter().map(|(n, _)| (*n, "string")))
    {
        y += &format!("  - name: {name}\n    dtype: {dtype}\n");
    }
    y += "---\n\n";
    y += &format!(
        "# COVIDx build export\n\nWritten by `covidx export --format hf` from the build whose \
         lock file has sha256 `{}`: {} px grey chest X-rays, classes {}, {}; samples: {}.\n\n\
         `export.json` lists every file with its sha256. Load with\n\
         `datasets.load_dataset(\"parquet\", data_dir=\"<this folder>/data\")` or\n\
         `datasets.load_dataset(\"<this folder>\")`.\n",
        record.build_lock_sha256,
        record.size,
        record.classes.join(", "),
        if record.all_copies {
            "clean samples and augmented copies (column `copy` > 0)"
        } else {
            "clean samples only"
        },
        record
            .splits
            .iter()
            .map(|(split, files)| format!(
                "{split} {}",
                files.iter().map(|f| f.samples).sum::<usize>()
            ))
            .collect::<Vec<_>>()
            .join(", "),
    );
    y
}

/// The Parquet format of a source, with the `huggingface` metadata of its classes.
struct Parquet<'a> {
    src: &'a Source,
    hf: String,
}

impl ShardFormat for Parquet<'_> {
    const KIND: &'static str = "hf";

    fn name(&self, split: Split, k: usize, n: usize) -> String {
        shard_name(split, k, n)
    }

    fn is_ours(&self, file_name: &str) -> bool {
        is_shard_name(file_name)
    }

    fn write(&self, data: &Dataset, samples: &[usize], path: &Path) -> Result<()> {
        let mut df = frame(self.src, data, samples)?;
        let kv = KeyValueMetadata::from_static(vec![
            ("ARROW:schema".to_string(), arrow_schema_key(&df, &self.hf)),
            ("huggingface".to_string(), self.hf.clone()),
            ("covidx.format".to_string(), super::FORMAT.to_string()),
            ("covidx.version".to_string(), super::VERSION.to_string()),
        ]);
        let file = std::fs::File::create(path)?;
        ParquetWriter::new(&file)
            .with_compression(ParquetCompression::Snappy)
            .with_row_group_size(Some(ROW_GROUP))
            .with_key_value_metadata(Some(kv))
            .set_parallel(false)
            .finish(&mut df)
            .map_err(anyhow::Error::from)?;
        file.sync_all()?;
        Ok(())
    }
}

/// Writes the shards, `README.md` and `export.json`.
pub fn export(src: &Source, out: &Path, opts: &Options) -> Result<Record> {
    let format = Parquet {
        src,
        hf: format!("{{\"info\":{{\"features\":{}}}}}", features(src.classes())),
    };
    let record = super::write_sharded(src, out, opts, &format)?;
    crate::fsutil::write_atomic(&out.join("README.md"), card(&record).as_bytes())?;
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_names_round_trip() {
        let name = shard_name(Split::Train, 3, 12);
        assert_eq!(name, "data/train-00003-of-00012.parquet");
        assert!(is_shard_name(name.strip_prefix("data/").unwrap()));
        for other in [
            "train-3-of-12.parquet",
            "val-00000-of-00001.parquet",
            "README.md",
        ] {
            assert!(!is_shard_name(other), "{other}");
        }
    }

    #[test]
    fn features_name_every_column_in_order() {
        let text = features(&["normal".into(), "COVID-19".into()]);
        let f: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(f.as_object().unwrap().len(), 5 + STRING_COLUMNS.len());
        assert_eq!(f["label"]["names"][1], "COVID-19");
        assert_eq!(f["record"]["dtype"], "uint64");
        let at = |name: &str| text.find(&format!("\"{name}\":")).unwrap();
        let order = [
            "image", "label", "key", "record", "copy", "source", "finding",
        ];
        assert!(order.windows(2).all(|w| at(w[0]) < at(w[1])), "{text}");
    }
}
