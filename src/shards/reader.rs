//! The zero-copy shard reader: a shard file memory-mapped, its header validated once, and
//! every sample's pixels, label, record and copy read in O(1) without copying.

use std::ops::Range;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use safetensors::{Dtype, SafeTensors};

use super::format::{ShardData, FORMAT, VERSION};
use crate::record::Split;

/// A validated shard over any byte storage: a memory map ([`Shard::open`]) or owned bytes
/// ([`Shard::from_bytes`]).
pub struct Shard<B = memmap2::Mmap> {
    name: PathBuf,
    bytes: B,
    n: usize,
    size: u32,
    split: Split,
    classes: Vec<String>,
    labels: Range<usize>,
    record: Range<usize>,
    images: Range<usize>,
    copy: Range<usize>,
}

impl<B> std::fmt::Debug for Shard<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shard")
            .field("name", &self.name)
            .field("samples", &self.n)
            .field("size", &self.size)
            .field("split", &self.split)
            .finish()
    }
}

impl Shard {
    /// Memory-maps the shard at `path` and validates it (see [`Shard::from_bytes`]).
    pub fn open(path: &Path) -> Result<Shard> {
        let file =
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        // SAFETY: the map is read-only. covidx never modifies a shard in place (it writes a
        // temporary file and renames it), so the mapped bytes do not change under us unless
        // another program truncates or rewrites the file, which the sha256 check of
        // [`crate::shards::Dataset`] would then report.
        let map = unsafe { memmap2::Mmap::map(&file) }
            .with_context(|| format!("mapping {}", path.display()))?;
        Shard::validate(path, map)
    }
}

impl<B: AsRef<[u8]>> Shard<B> {
    /// Validates a whole shard held in `bytes` (`name` is used in errors): the safetensors
    /// framing (header length, JSON, contiguous offsets covering the file exactly), covidx
    /// metadata of this format version, the four tensors with their dtypes and shapes, labels
    /// inside the class list and records non-negative.
    pub fn from_bytes(name: impl Into<PathBuf>, bytes: B) -> Result<Shard<B>> {
        Shard::validate(&name.into(), bytes)
    }

    fn validate(name: &Path, bytes: B) -> Result<Shard<B>> {
        let file = name.display();
        let (header_len, meta) = SafeTensors::read_metadata(bytes.as_ref())
            .map_err(|e| anyhow::anyhow!("{file}: not a valid safetensors file: {e}"))?;
        let data_start = 8 + header_len;
        let (split, classes, size) = covidx_metadata(&meta, &file.to_string())?;
        if meta.tensors().len() != 4 {
            bail!(
                "{file}: holds {} tensors; a shard has exactly labels, record, images, copy",
                meta.tensors().len()
            );
        }
        let tensor = |name: &str, dtype: Dtype| -> Result<(Vec<usize>, Range<usize>)> {
            let t = meta
                .info(name)
                .with_context(|| format!("{file}: no tensor {name:?}"))?;
            if t.dtype != dtype {
                bail!(
                    "{file}: tensor {name:?} is {:?}, expected {dtype:?}",
                    t.dtype
                );
            }
            let (a, b) = t.data_offsets;
            Ok((t.shape.clone(), data_start + a..data_start + b))
        };
        let (shape, images) = tensor("images", Dtype::U8)?;
        let [n, 1, s, s2] = shape[..] else {
            bail!("{file}: images shape {shape:?} is not [n,1,S,S]");
        };
        if s != s2 || s != size as usize {
            bail!("{file}: images are {s}x{s2}, the metadata says size {size}");
        }
        let mut ranges = Vec::new();
        for (name, dtype) in [
            ("labels", Dtype::I64),
            ("record", Dtype::I64),
            ("copy", Dtype::U8),
        ] {
            let (shape, range) = tensor(name, dtype)?;
            if shape != [n] {
                bail!("{file}: tensor {name:?} has shape {shape:?}, expected [{n}]");
            }
            ranges.push(range);
        }
        let [labels, record, copy] = <[Range<usize>; 3]>::try_from(ranges).expect("three");
        let shard = Shard {
            name: name.to_path_buf(),
            bytes,
            n,
            size,
            split,
            classes,
            labels,
            record,
            images,
            copy,
        };
        for i in 0..n {
            let (l, r) = (
                shard.i64_at(&shard.labels, i),
                shard.i64_at(&shard.record, i),
            );
            if l < 0 || l as usize >= shard.classes.len() {
                bail!(
                    "{file}: sample {i} has label {l}, outside the {} classes",
                    shard.classes.len()
                );
            }
            if r < 0 {
                bail!("{file}: sample {i} has record {r}");
            }
        }
        Ok(shard)
    }

    fn i64_at(&self, range: &Range<usize>, i: usize) -> i64 {
        let at = range.start + 8 * i;
        let b: [u8; 8] = self.bytes.as_ref()[at..at + 8].try_into().expect("8 bytes");
        i64::from_le_bytes(b)
    }

    /// The file (or name) the shard was read from.
    pub fn name(&self) -> &Path {
        &self.name
    }

    /// The whole file's bytes.
    pub fn bytes(&self) -> &[u8] {
        self.bytes.as_ref()
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.n
    }

    /// True when the shard holds no sample.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Image side S.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// The split the shard belongs to.
    pub fn split(&self) -> Split {
        self.split
    }

    /// Class names (labels index into them).
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    /// Pixels of sample `i` (`S*S` bytes, row-major). Panics when `i >= len()`.
    pub fn image(&self, i: usize) -> &[u8] {
        assert!(i < self.n, "sample {i} of a {}-sample shard", self.n);
        let s2 = self.size as usize * self.size as usize;
        let at = self.images.start + i * s2;
        &self.bytes.as_ref()[at..at + s2]
    }

    /// Pixels of every sample (`n*S*S` bytes), for bulk copies.
    pub fn images(&self) -> &[u8] {
        &self.bytes.as_ref()[self.images.clone()]
    }

    /// Class index of sample `i` (checked at open to be inside [`Shard::classes`]).
    pub fn label(&self, i: usize) -> usize {
        assert!(i < self.n, "sample {i} of a {}-sample shard", self.n);
        self.i64_at(&self.labels, i) as usize
    }

    /// Manifest record of sample `i`.
    pub fn record(&self, i: usize) -> u64 {
        assert!(i < self.n, "sample {i} of a {}-sample shard", self.n);
        self.i64_at(&self.record, i) as u64
    }

    /// Copy index of sample `i` (0 = clean).
    pub fn copy(&self, i: usize) -> u8 {
        assert!(i < self.n, "sample {i} of a {}-sample shard", self.n);
        self.bytes.as_ref()[self.copy.start + i]
    }

    /// An owned copy of every tensor.
    pub fn to_data(&self) -> ShardData {
        ShardData {
            size: self.size,
            images: self.images().to_vec(),
            labels: (0..self.n).map(|i| self.label(i) as i64).collect(),
            record: (0..self.n).map(|i| self.record(i) as i64).collect(),
            copy: self.bytes.as_ref()[self.copy.clone()].to_vec(),
        }
    }
}

/// The covidx `__metadata__` of a shard: format and version checked; split, classes, size.
fn covidx_metadata(
    meta: &safetensors::tensor::Metadata,
    file: &str,
) -> Result<(Split, Vec<String>, u32)> {
    let m = meta
        .metadata()
        .as_ref()
        .with_context(|| format!("{file}: no __metadata__: not a covidx shard"))?;
    let key = |k: &str| {
        m.get(k)
            .map(String::as_str)
            .with_context(|| format!("{file}: __metadata__ has no {k:?}: not a covidx shard"))
    };
    if key("format")? != FORMAT {
        bail!("{file}: format {:?} is not {FORMAT:?}", key("format")?);
    }
    if key("version")? != VERSION {
        bail!(
            "{file}: shard format version {:?}; this covidx reads version {VERSION:?} \
             (rebuild the shards with this version)",
            key("version")?
        );
    }
    let split = match key("split")? {
        "train" => Split::Train,
        "test" => Split::Test,
        other => bail!("{file}: split {other:?} is not train or test"),
    };
    let classes: Vec<String> = serde_json::from_str(key("classes")?)
        .with_context(|| format!("{file}: __metadata__.classes is not a JSON list"))?;
    let size: u32 = key("size")?
        .parse()
        .with_context(|| format!("{file}: __metadata__.size is not a number"))?;
    Ok((split, classes, size))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shards::encode;

    fn sample() -> (ShardData, Vec<String>) {
        let data = ShardData {
            size: 3,
            images: (0..18).collect(),
            labels: vec![1, 0],
            record: vec![17, 4],
            copy: vec![0, 1],
        };
        (data, vec!["normal".to_string(), "COVID-19".to_string()])
    }

    #[test]
    fn encoded_shards_read_back_zero_copy_and_safetensors_accepts_them() {
        let (data, classes) = sample();
        let bytes = encode(&data, "train", &classes);
        assert_eq!(bytes, encode(&data, "train", &classes));
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        let m = meta.metadata().as_ref().unwrap();
        assert_eq!(m["split"], "train");
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.safetensors");
        std::fs::write(&p, &bytes).unwrap();
        let shard = Shard::open(&p).unwrap();
        assert_eq!(shard.len(), 2);
        assert_eq!(shard.split(), Split::Train);
        assert_eq!(shard.classes(), classes);
        assert_eq!(shard.image(1), &(9..18).collect::<Vec<u8>>()[..]);
        assert_eq!((shard.label(0), shard.record(0), shard.copy(1)), (1, 17, 1));
        assert_eq!(shard.to_data(), data);
        // The image slice points into the map: no copy.
        let base = shard.bytes().as_ptr() as usize;
        let img = shard.image(0).as_ptr() as usize;
        assert!(img > base && img < base + shard.bytes().len());
    }

    #[test]
    fn damaged_shards_are_errors_naming_the_file() {
        let (data, classes) = sample();
        let good = encode(&data, "train", &classes);
        let expect = |bytes: Vec<u8>, what: &str| {
            let err = format!(
                "{:#}",
                Shard::from_bytes("s.safetensors", bytes).unwrap_err()
            );
            assert!(err.starts_with("s.safetensors: "), "{err}");
            assert!(err.contains(what), "{what}: {err}");
        };
        expect(good[..good.len() - 1].to_vec(), "not a valid safetensors");
        expect(vec![], "not a valid safetensors");
        expect(
            encode(
                &ShardData {
                    labels: vec![1, 2],
                    ..data.clone()
                },
                "train",
                &classes,
            ),
            "label 2, outside the 2 classes",
        );
        expect(
            encode(
                &ShardData {
                    record: vec![-1, 2],
                    ..data.clone()
                },
                "train",
                &classes,
            ),
            "record -1",
        );
        expect(encode(&data, "valid", &classes), "split \"valid\"");
        let swap = |from: &str, to: &str| {
            let mut b = good.clone();
            let at = b
                .windows(from.len())
                .position(|w| w == from.as_bytes())
                .unwrap();
            b[at..at + from.len()].copy_from_slice(to.as_bytes());
            b
        };
        expect(
            swap("\"version\":\"1\"", "\"version\":\"2\""),
            "version \"2\"",
        );
        expect(
            swap("\"dtype\":\"I64\"", "\"dtype\":\"U64\""),
            "is U64, expected I64",
        );
        expect(
            swap("covidx-shards", "covidx-shardz"),
            "is not \"covidx-shards\"",
        );
    }
}
