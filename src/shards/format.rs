//! The shard file format: a safetensors file with four tensors and covidx metadata.
//!
//! Tensors, in file order: `labels` i64 [n], `record` i64 [n] (8-byte tensors first, so they
//! stay aligned), `images` u8 [n,1,S,S], `copy` u8 [n]. `__metadata__` holds `classes` (a JSON
//! list of the class names), `format` (`covidx-shards`), `size` (S), `split` and `version`.
//! The JSON header is written here, key by key in sorted order, and padded with spaces to a
//! multiple of 8 bytes, so equal inputs give equal bytes whatever any JSON library's settings
//! (see docs/formats.md).

/// Format name written to every shard header and index.
pub const FORMAT: &str = "covidx-shards";
/// Format version; a reader accepts exactly this version.
pub const VERSION: &str = "1";

/// One shard's samples, owned (for writing whole shards and for tests; reading goes through
/// the zero-copy [`crate::shards::Shard`]).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ShardData {
    /// Image side S.
    pub size: u32,
    /// `n * S * S` bytes.
    pub images: Vec<u8>,
    /// Class index per sample.
    pub labels: Vec<i64>,
    /// Manifest row per sample.
    pub record: Vec<i64>,
    /// Copy index per sample (0 = clean).
    pub copy: Vec<u8>,
}

impl ShardData {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when the shard holds no sample.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// A JSON string literal.
fn json_str(s: &str) -> String {
    serde_json::to_string(s).expect("a string serialises")
}

/// A tensor's header entry: keys in sorted order (`data_offsets`, `dtype`, `shape`).
fn tensor_entry(out: &mut String, name: &str, dtype: &str, shape: &[usize], at: usize, len: usize) {
    use std::fmt::Write;
    let shape: Vec<String> = shape.iter().map(usize::to_string).collect();
    write!(
        out,
        ",{}:{{\"data_offsets\":[{at},{}],\"dtype\":{},\"shape\":[{}]}}",
        json_str(name),
        at + len,
        json_str(dtype),
        shape.join(",")
    )
    .expect("writing to a String");
}

/// The safetensors header of a shard of `n` samples of `s`×`s`: the u64 length prefix and
/// the JSON, padded with spaces to a multiple of 8 bytes.
pub fn header(n: usize, s: usize, split: &str, classes: &[String]) -> Vec<u8> {
    let classes = serde_json::to_string(classes).expect("class names serialise");
    // Offsets in file order; entries in sorted key order.
    let (labels, record, images) = (0, 8 * n, 16 * n);
    let copy = images + n * s * s;
    let mut json = format!(
        "{{\"__metadata__\":{{\"classes\":{},\"format\":{},\"size\":{},\"split\":{},\"version\":{}}}",
        json_str(&classes),
        json_str(FORMAT),
        json_str(&s.to_string()),
        json_str(split),
        json_str(VERSION)
    );
    tensor_entry(&mut json, "copy", "U8", &[n], copy, n);
    tensor_entry(&mut json, "images", "U8", &[n, 1, s, s], images, n * s * s);
    tensor_entry(&mut json, "labels", "I64", &[n], labels, 8 * n);
    tensor_entry(&mut json, "record", "I64", &[n], record, 8 * n);
    json.push('}');
    let mut json = json.into_bytes();
    while json.len() % 8 != 0 {
        json.push(b' ');
    }
    let mut out = (json.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&json);
    out
}

/// Everything of a shard before its images: header, `labels`, `record`.
pub fn head(size: u32, labels: &[i64], record: &[i64], split: &str, classes: &[String]) -> Vec<u8> {
    let mut out = header(labels.len(), size as usize, split, classes);
    out.extend(labels.iter().flat_map(|v| v.to_le_bytes()));
    out.extend(record.iter().flat_map(|v| v.to_le_bytes()));
    out
}

/// Writes a whole shard (no copy of the image bytes is made).
pub fn write(
    mut w: impl std::io::Write,
    data: &ShardData,
    split: &str,
    classes: &[String],
) -> std::io::Result<()> {
    let n = data.len();
    let s = data.size as usize;
    assert_eq!(data.images.len(), n * s * s);
    w.write_all(&head(data.size, &data.labels, &data.record, split, classes))?;
    w.write_all(&data.images)?;
    w.write_all(&data.copy)?;
    w.flush()
}

/// Encodes a shard into memory (see [`write`]).
pub fn encode(data: &ShardData, split: &str, classes: &[String]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.images.len() + 1024);
    write(&mut out, data, split, classes).expect("writing to memory");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_bytes_are_fixed() {
        // The exact bytes shards have had since format version 1 (sorted keys, space padding).
        let classes = vec!["normal".to_string(), "COVID-19".to_string()];
        let h = header(2, 3, "train", &classes);
        let json = std::str::from_utf8(&h[8..]).unwrap();
        assert_eq!(
            json.trim_end(),
            r#"{"__metadata__":{"classes":"[\"normal\",\"COVID-19\"]","format":"covidx-shards","size":"3","split":"train","version":"1"},"copy":{"data_offsets":[50,52],"dtype":"U8","shape":[2]},"images":{"data_offsets":[32,50],"dtype":"U8","shape":[2,1,3,3]},"labels":{"data_offsets":[0,16],"dtype":"I64","shape":[2]},"record":{"data_offsets":[16,32],"dtype":"I64","shape":[2]}}"#
        );
        assert_eq!(h.len() % 8, 0);
        assert_eq!(
            u64::from_le_bytes(h[..8].try_into().unwrap()) as usize,
            h.len() - 8
        );
    }
}
