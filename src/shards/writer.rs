//! The streaming shard writer: every sample written from any thread, in any order, straight
//! to its planned place in a temporary file, hashed as the completed prefix grows, and renamed
//! into place when the shard is finished.

use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};

use anyhow::{bail, Context, Result};

use super::format::head;

const EMPTY: u8 = 0;
const FILLED: u8 = 1;
const FAILED: u8 = 2;

/// A shard written sample by sample, from any thread and in any order, straight to its final
/// place in a temporary file, so no shard is ever assembled in memory.
///
/// The layout is planned for every sample (labels, record, copy per slot); [`put`] writes a
/// slot's pixels, [`fail`] marks a slot that will never come (its image was quarantined).
/// [`hash`] (on its own thread) follows the filled prefix of the file and hashes it as it
/// completes, so a shard's SHA-256 is ready as soon as its last sample lands. [`finish`]
/// renames the file into place; when slots failed, it first rewrites the file without them
/// (the bytes are those [`super::write`] gives for the surviving samples, in planned order).
///
/// [`put`]: ShardStream::put
/// [`fail`]: ShardStream::fail
/// [`hash`]: ShardStream::hash
/// [`finish`]: ShardStream::finish
pub struct ShardStream {
    path: PathBuf,
    tmp: PathBuf,
    file: std::fs::File,
    size: u32,
    split: String,
    classes: Vec<String>,
    labels: Vec<i64>,
    record: Vec<i64>,
    copy: Vec<u8>,
    /// Everything before the images (header, labels, record), as written.
    head: Vec<u8>,
    /// Per-slot state and an abort flag, with a condition variable for [`ShardStream::hash`].
    state: Mutex<(Vec<u8>, bool)>,
    changed: Condvar,
    finished: bool,
}

impl ShardStream {
    /// Creates the temporary file of a shard at `path` with the planned per-slot `labels`,
    /// `record` and `copy`, writing everything but the images.
    pub fn create(
        path: &Path,
        size: u32,
        split: &str,
        classes: &[String],
        labels: Vec<i64>,
        record: Vec<i64>,
        copy: Vec<u8>,
    ) -> Result<ShardStream> {
        use std::os::unix::fs::FileExt;
        let n = labels.len();
        assert!(record.len() == n && copy.len() == n);
        let tmp = crate::fsutil::temp_sibling(path);
        let head = head(size, &labels, &record, split, classes);
        let file = std::fs::File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .with_context(|| format!("creating {}", tmp.display()))?;
        let images = (n * size as usize * size as usize) as u64;
        file.write_all_at(&head, 0)
            .and_then(|()| file.write_all_at(&copy, head.len() as u64 + images))
            .with_context(|| format!("writing {}", tmp.display()))?;
        Ok(ShardStream {
            path: path.to_path_buf(),
            tmp,
            file,
            size,
            split: split.to_string(),
            classes: classes.to_vec(),
            labels,
            record,
            copy,
            head,
            state: Mutex::new((vec![EMPTY; n], false)),
            changed: Condvar::new(),
            finished: false,
        })
    }

    fn sample_bytes(&self) -> usize {
        self.size as usize * self.size as usize
    }

    fn offset(&self, slot: usize) -> u64 {
        (self.head.len() + slot * self.sample_bytes()) as u64
    }

    fn mark(&self, slot: usize, state: u8) {
        let mut s = self.state.lock().unwrap();
        debug_assert_eq!(s.0[slot], EMPTY, "slot {slot} given twice");
        s.0[slot] = state;
        self.changed.notify_all();
    }

    /// Writes the pixels (`S*S` bytes) of planned slot `slot`.
    pub fn put(&self, slot: usize, pixels: &[u8]) -> Result<()> {
        use std::os::unix::fs::FileExt;
        assert_eq!(pixels.len(), self.sample_bytes());
        self.file
            .write_all_at(pixels, self.offset(slot))
            .with_context(|| format!("writing {}", self.tmp.display()))?;
        self.mark(slot, FILLED);
        Ok(())
    }

    /// Marks planned slot `slot` as never coming.
    pub fn fail(&self, slot: usize) {
        self.mark(slot, FAILED);
    }

    /// Stops [`ShardStream::hash`] early (the shard will not be finished as planned).
    pub fn abort(&self) {
        self.state.lock().unwrap().1 = true;
        self.changed.notify_all();
    }

    /// Hashes the file in order as slots are filled; `None` when a slot failed or the stream
    /// was aborted (then [`ShardStream::finish`] rewrites and hashes the file itself).
    pub fn hash(&self) -> Result<Option<String>> {
        use sha2::Digest;
        use std::os::unix::fs::FileExt;
        let mut hasher = sha2::Sha256::new();
        hasher.update(&self.head);
        let mut buf = vec![0u8; self.sample_bytes()];
        for slot in 0..self.labels.len() {
            {
                let mut s = self.state.lock().unwrap();
                while s.0[slot] == EMPTY && !s.1 {
                    s = self.changed.wait(s).unwrap();
                }
                if s.0[slot] != FILLED {
                    return Ok(None);
                }
            }
            self.file
                .read_exact_at(&mut buf, self.offset(slot))
                .with_context(|| format!("reading back {}", self.tmp.display()))?;
            hasher.update(&buf);
        }
        hasher.update(&self.copy);
        Ok(Some(hex::encode(hasher.finalize())))
    }

    /// Renames the shard into place once every slot is filled or failed, and returns its
    /// SHA-256 and the slots it holds. `hash` is what [`ShardStream::hash`] returned.
    pub fn finish(mut self, hash: Option<String>) -> Result<(String, Vec<usize>)> {
        use std::os::unix::fs::FileExt;
        let states = std::mem::take(&mut self.state.lock().unwrap().0);
        if let Some(slot) = states.iter().position(|&s| s == EMPTY) {
            bail!("{}: sample {slot} was never written", self.path.display());
        }
        let kept: Vec<usize> = (0..states.len()).filter(|&i| states[i] == FILLED).collect();
        let sha256 = match hash {
            Some(h) if kept.len() == states.len() => h,
            _ => {
                // Rewrite without the failed slots, hashing as it goes.
                let compact = crate::fsutil::temp_sibling(&self.tmp);
                let labels: Vec<i64> = kept.iter().map(|&i| self.labels[i]).collect();
                let record: Vec<i64> = kept.iter().map(|&i| self.record[i]).collect();
                let copy: Vec<u8> = kept.iter().map(|&i| self.copy[i]).collect();
                let result = (|| -> std::io::Result<String> {
                    let mut w = Hashing::new(std::io::BufWriter::with_capacity(
                        1 << 20,
                        std::fs::File::create(&compact)?,
                    ));
                    use std::io::Write;
                    w.write_all(&head(
                        self.size,
                        &labels,
                        &record,
                        &self.split,
                        &self.classes,
                    ))?;
                    let mut buf = vec![0u8; self.sample_bytes()];
                    for &slot in &kept {
                        self.file.read_exact_at(&mut buf, self.offset(slot))?;
                        w.write_all(&buf)?;
                    }
                    w.write_all(&copy)?;
                    let sha = w.finish()?;
                    std::fs::rename(&compact, &self.tmp)?;
                    Ok(sha)
                })();
                result.map_err(|e| {
                    let _ = std::fs::remove_file(&compact);
                    anyhow::anyhow!("rewriting {}: {e}", self.tmp.display())
                })?
            }
        };
        std::fs::rename(&self.tmp, &self.path)
            .with_context(|| format!("renaming {}", self.tmp.display()))?;
        self.finished = true;
        Ok((sha256, kept))
    }
}

impl Drop for ShardStream {
    fn drop(&mut self) {
        if !self.finished {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// A writer that hashes what it writes.
struct Hashing<W> {
    inner: W,
    hasher: sha2::Sha256,
}

impl<W: std::io::Write> Hashing<W> {
    fn new(inner: W) -> Self {
        use sha2::Digest;
        Hashing {
            inner,
            hasher: sha2::Sha256::new(),
        }
    }

    /// Flushes and returns the hex SHA-256 of everything written.
    fn finish(mut self) -> std::io::Result<String> {
        use sha2::Digest;
        self.inner.flush()?;
        Ok(hex::encode(self.hasher.finalize()))
    }
}

impl<W: std::io::Write> std::io::Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        use sha2::Digest;
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shards::{encode, ShardData};

    fn stream_in_shuffled_order(failed: &[usize]) {
        use sha2::Digest;
        let (n, size) = (23usize, 5u32);
        let s2 = (size * size) as usize;
        let labels: Vec<i64> = (0..n as i64).map(|i| i % 3).collect();
        let record: Vec<i64> = (0..n as i64).map(|i| 100 + i).collect();
        let copy: Vec<u8> = (0..n as u8).map(|i| i % 2).collect();
        let pixels = |slot: usize| vec![slot as u8 * 7 + 1; s2];
        let classes = vec!["a".to_string(), "b".to_string(), "c".to_string()];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.safetensors");
        let stream = ShardStream::create(
            &path,
            size,
            "train",
            &classes,
            labels.clone(),
            record.clone(),
            copy.clone(),
        )
        .unwrap();
        // Slots arrive from two threads, out of order.
        let order: Vec<usize> = (0..n).map(|i| (i * 7 + 3) % n).collect();
        let hash = std::thread::scope(|scope| {
            let hasher = scope.spawn(|| stream.hash());
            for half in order.chunks(n / 2 + 1) {
                let stream = &stream;
                scope.spawn(move || {
                    for &slot in half {
                        if failed.contains(&slot) {
                            stream.fail(slot);
                        } else {
                            stream.put(slot, &pixels(slot)).unwrap();
                        }
                    }
                });
            }
            hasher.join().unwrap().unwrap()
        });
        assert_eq!(hash.is_some(), failed.is_empty());
        let (sha, kept) = stream.finish(hash).unwrap();
        let expected: Vec<usize> = (0..n).filter(|i| !failed.contains(i)).collect();
        assert_eq!(kept, expected);
        let data = ShardData {
            size,
            images: kept.iter().flat_map(|&i| pixels(i)).collect(),
            labels: kept.iter().map(|&i| labels[i]).collect(),
            record: kept.iter().map(|&i| record[i]).collect(),
            copy: kept.iter().map(|&i| copy[i]).collect(),
        };
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes, encode(&data, "train", &classes));
        assert_eq!(sha, hex::encode(sha2::Sha256::digest(&bytes)));
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "no temporary file is left behind");
    }

    #[test]
    fn a_streamed_shard_equals_the_encoded_one_and_is_hashed_on_the_fly() {
        stream_in_shuffled_order(&[]);
    }

    #[test]
    fn a_streamed_shard_with_failed_slots_is_rewritten_without_them() {
        stream_in_shuffled_order(&[0, 9, 22]);
    }

    #[test]
    fn an_abandoned_stream_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.safetensors");
        let stream =
            ShardStream::create(&path, 2, "test", &[], vec![0, 0], vec![0, 1], vec![0, 0]).unwrap();
        stream.put(1, &[9; 4]).unwrap();
        stream.abort();
        assert_eq!(stream.hash().unwrap(), None);
        drop(stream);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
