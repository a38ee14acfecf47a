//! Training shards: safetensors files (`images` u8 [n,1,S,S], `labels` i64 [n], `record` i64
//! [n], `copy` u8 [n], `__metadata__` with format, version, split, size and class names) and
//! `index.json` listing each shard's samples, class counts and sha256.
//!
//! Shards are encoded here rather than with `safetensors::serialize`, whose `__metadata__` is a
//! `HashMap` (key order varies between runs): the header is written with sorted keys so equal
//! inputs give equal bytes. Reading goes through the safetensors crate, over a memory map.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// Format name written to every shard header and index.
pub const FORMAT: &str = "covidx-shards";
/// Format version.
pub const VERSION: &str = "1";

/// One shard's samples, in order.
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

/// Writes a shard in safetensors format with a deterministic header, streaming the tensors
/// (no copy of the image bytes is made).
pub fn write(
    mut w: impl std::io::Write,
    data: &ShardData,
    split: &str,
    classes: &[String],
) -> std::io::Result<()> {
    let n = data.len();
    let s = data.size as usize;
    assert_eq!(data.images.len(), n * s * s);
    let labels: Vec<u8> = data.labels.iter().flat_map(|v| v.to_le_bytes()).collect();
    let record: Vec<u8> = data.record.iter().flat_map(|v| v.to_le_bytes()).collect();
    // 8-byte tensors first so every tensor stays aligned.
    let tensors: [(&str, &str, Vec<usize>, &[u8]); 4] = [
        ("labels", "I64", vec![n], &labels),
        ("record", "I64", vec![n], &record),
        ("images", "U8", vec![n, 1, s, s], &data.images),
        ("copy", "U8", vec![n], &data.copy),
    ];
    let mut header = serde_json::Map::new();
    let meta: BTreeMap<&str, String> = BTreeMap::from([
        ("classes", serde_json::to_string(classes).unwrap()),
        ("format", FORMAT.to_string()),
        ("size", data.size.to_string()),
        ("split", split.to_string()),
        ("version", VERSION.to_string()),
    ]);
    header.insert("__metadata__".into(), serde_json::to_value(&meta).unwrap());
    let mut offset = 0usize;
    for (name, dtype, shape, bytes) in &tensors {
        header.insert(
            (*name).into(),
            serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + bytes.len()]}),
        );
        offset += bytes.len();
    }
    let mut json = serde_json::to_vec(&header).unwrap();
    while json.len() % 8 != 0 {
        json.push(b' ');
    }
    w.write_all(&(json.len() as u64).to_le_bytes())?;
    w.write_all(&json)?;
    for (_, _, _, bytes) in &tensors {
        w.write_all(bytes)?;
    }
    w.flush()
}

/// Encodes a shard into memory (see [`write`]).
pub fn encode(data: &ShardData, split: &str, classes: &[String]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.images.len() + 1024);
    write(&mut out, data, split, classes).expect("writing to memory");
    out
}

/// Writes a shard to `path` through a temporary file and a rename, hashing while it writes;
/// returns the SHA-256 of the file.
pub fn write_file(
    path: &Path,
    data: &ShardData,
    split: &str,
    classes: &[String],
) -> Result<String> {
    use sha2::Digest;
    struct Hashing<W> {
        inner: W,
        hasher: sha2::Sha256,
    }
    impl<W: std::io::Write> std::io::Write for Hashing<W> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let n = self.inner.write(buf)?;
            self.hasher.update(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            self.inner.flush()
        }
    }
    let tmp = crate::fsutil::temp_sibling(path);
    let result = (|| -> std::io::Result<String> {
        let file = std::fs::File::create(&tmp)?;
        let mut w = Hashing {
            inner: std::io::BufWriter::with_capacity(1 << 20, file),
            hasher: sha2::Sha256::new(),
        };
        write(&mut w, data, split, classes)?;
        w.inner.into_inner().map_err(|e| e.into_error())?;
        std::fs::rename(&tmp, path)?;
        Ok(hex::encode(w.hasher.finalize()))
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        anyhow::anyhow!("writing {}: {e}", path.display())
    })
}

/// Reads a shard (memory-mapped) back into [`ShardData`], checking names, dtypes and shapes.
pub fn read(path: &Path) -> Result<ShardData> {
    use safetensors::{Dtype, SafeTensors};
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    // SAFETY: the map is read-only and dropped before returning; shards are never modified in
    // place (they are written to a temporary name and renamed).
    let map = unsafe { memmap2::Mmap::map(&file) }
        .with_context(|| format!("mapping {}", path.display()))?;
    let st = SafeTensors::deserialize(&map)
        .map_err(|e| anyhow::anyhow!("{}: not a safetensors file: {e}", path.display()))?;
    let get = |name: &str, dtype: Dtype| -> Result<(Vec<usize>, Vec<u8>)> {
        let t = st
            .tensor(name)
            .map_err(|e| anyhow::anyhow!("{}: tensor {name:?}: {e}", path.display()))?;
        if t.dtype() != dtype {
            bail!(
                "{}: tensor {name:?} is {:?}, expected {dtype:?}",
                path.display(),
                t.dtype()
            );
        }
        Ok((t.shape().to_vec(), t.data().to_vec()))
    };
    let (shape, images) = get("images", Dtype::U8)?;
    let [n, 1, s, s2] = shape[..] else {
        bail!(
            "{}: images shape {shape:?} is not [n,1,S,S]",
            path.display()
        );
    };
    if s != s2 {
        bail!("{}: images are not square ({s}x{s2})", path.display());
    }
    let i64s = |b: Vec<u8>| -> Vec<i64> {
        b.chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
            .collect()
    };
    let labels = i64s(get("labels", Dtype::I64)?.1);
    let record = i64s(get("record", Dtype::I64)?.1);
    let copy = get("copy", Dtype::U8)?.1;
    if labels.len() != n || record.len() != n || copy.len() != n {
        bail!("{}: tensors disagree on the sample count", path.display());
    }
    Ok(ShardData {
        size: s as u32,
        images,
        labels,
        record,
        copy,
    })
}

/// One shard in the index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardEntry {
    /// File name relative to `shards/<split>/`.
    pub file: String,
    /// Number of samples.
    pub samples: usize,
    /// Samples per class, in class order.
    pub class_counts: Vec<u64>,
    /// SHA-256 of the file.
    pub sha256: String,
}

/// `shards/index.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Index {
    /// Always [`FORMAT`].
    pub format: String,
    /// Always [`VERSION`].
    pub version: String,
    /// Hash of everything that determines the shards' bytes (inputs, pipeline, options);
    /// a resumed build keeps shards only when it matches.
    pub params: String,
    /// Image side.
    pub size: u32,
    /// Class names.
    pub classes: Vec<String>,
    /// False while a build is still writing shards.
    pub complete: bool,
    /// Shards per split (`train`, `test`), in order.
    pub splits: BTreeMap<String, Vec<ShardEntry>>,
}

impl Index {
    /// Reads an index; `None` when absent or unreadable (a fresh build starts over).
    pub fn read(path: &Path) -> Option<Index> {
        let bytes = std::fs::read(path).ok()?;
        let index: Index = serde_json::from_slice(&bytes).ok()?;
        (index.format == FORMAT && index.version == VERSION).then_some(index)
    }

    /// Stable bytes (sorted keys, trailing newline).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut s = serde_json::to_string_pretty(self).expect("index serialises");
        s.push('\n');
        s.into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_then_read_round_trips_and_safetensors_accepts_it() {
        let data = ShardData {
            size: 3,
            images: (0..18).collect(),
            labels: vec![2, 0],
            record: vec![17, 4],
            copy: vec![0, 1],
        };
        let classes = vec!["normal".to_string(), "COVID-19".to_string()];
        let bytes = encode(&data, "train", &classes);
        assert_eq!(bytes, encode(&data, "train", &classes));
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        let m = meta.metadata().as_ref().unwrap();
        assert_eq!(m["split"], "train");
        assert_eq!(m["classes"], "[\"normal\",\"COVID-19\"]");
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.safetensors");
        std::fs::write(&p, &bytes).unwrap();
        assert_eq!(read(&p).unwrap(), data);
    }
}
