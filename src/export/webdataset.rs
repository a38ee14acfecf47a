//! `covidx export --format webdataset BUILD DIR`: tar shards `DIR/<split>-NNNNNN.tar` for the
//! `webdataset` package. Each sample is three consecutive members, `<key>.png` (the
//! sample's pixels), `<key>.cls` (the class index as decimal text) and `<key>.json`
//! ([`SampleMeta`]), with `<key>` = `<record>_<copy>`. Headers are ustar with mode 0644,
//! uid/gid 0 and mtime 0, so the same build gives the same bytes. Shards are whole
//! (`wds.split_by_node` / `split_by_worker` hand out shard URLs); `export.json` lists them
//! with their sample counts and sha256.

use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::{Context, Result};

use super::{encode_png, Options, Record, SampleMeta, ShardFormat, Source};
use crate::record::Split;
use crate::shards::Dataset;

/// The shard file name: `<split>-NNNNNN.tar`.
pub fn shard_name(split: Split, k: usize) -> String {
    format!("{}-{k:06}.tar", split.name())
}

/// True for names [`shard_name`] gives.
fn is_shard_name(name: &str) -> bool {
    [Split::Train, Split::Test].iter().any(|s| {
        name.strip_prefix(s.name())
            .and_then(|r| r.strip_prefix('-'))
            .and_then(|r| r.strip_suffix(".tar"))
            .is_some_and(|n| n.len() >= 6 && n.bytes().all(|b| b.is_ascii_digit()))
    })
}

/// Appends one regular-file member with a deterministic header.
fn append(tar: &mut tar::Builder<impl Write>, name: &str, data: &[u8]) -> Result<()> {
    let mut h = tar::Header::new_ustar();
    h.set_path(name)
        .with_context(|| format!("tar member name {name:?}"))?;
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    tar.append(&h, data)?;
    Ok(())
}

/// The WebDataset format of a source.
struct Tar<'a>(&'a Source);

impl ShardFormat for Tar<'_> {
    const KIND: &'static str = "webdataset";

    fn name(&self, split: Split, k: usize, _n: usize) -> String {
        shard_name(split, k)
    }

    fn is_ours(&self, file_name: &str) -> bool {
        is_shard_name(file_name)
    }

    fn write(&self, data: &Dataset, samples: &[usize], path: &Path) -> Result<()> {
        let side = self.0.size();
        let file = std::fs::File::create(path)?;
        let mut tar = tar::Builder::new(BufWriter::new(file));
        for &i in samples {
            let s = data.sample(i)?;
            let meta = SampleMeta::new(self.0, data.split(), &s)?;
            append(
                &mut tar,
                &format!("{}.png", meta.key),
                &encode_png(side, s.image)?,
            )?;
            append(
                &mut tar,
                &format!("{}.cls", meta.key),
                s.label.to_string().as_bytes(),
            )?;
            append(
                &mut tar,
                &format!("{}.json", meta.key),
                &serde_json::to_vec(&meta)?,
            )?;
        }
        let mut w = tar.into_inner()?;
        w.flush()?;
        w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        Ok(())
    }
}

/// Writes the shards and `export.json`.
pub fn export(src: &Source, out: &Path, opts: &Options) -> Result<Record> {
    super::write_sharded(src, out, opts, &Tar(src))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_names_round_trip() {
        assert_eq!(shard_name(Split::Test, 12), "test-000012.tar");
        assert!(is_shard_name(&shard_name(Split::Train, 0)));
        assert!(is_shard_name("train-1234567.tar"));
        for other in [
            "train-00001.tar",
            "val-000001.tar",
            "train-000001.tar.gz",
            "x.tar",
        ] {
            assert!(!is_shard_name(other), "{other}");
        }
    }

    #[test]
    fn members_have_deterministic_headers() {
        let mut a = tar::Builder::new(Vec::new());
        append(&mut a, "0000001_0.cls", b"2").unwrap();
        let bytes = a.into_inner().unwrap();
        let mut r = tar::Archive::new(&bytes[..]);
        let mut e = r.entries().unwrap();
        let m = e.next().unwrap().unwrap();
        assert_eq!(m.path().unwrap().to_str(), Some("0000001_0.cls"));
        assert_eq!(m.header().mtime().unwrap(), 0);
        assert_eq!(m.header().mode().unwrap(), 0o644);
        assert_eq!(m.header().size().unwrap(), 1);
    }
}
