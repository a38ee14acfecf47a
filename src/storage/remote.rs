//! The object-store side of [`super`]: listing, mirroring and publishing an S3 prefix.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use futures::stream::{self, StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as Key;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use serde::{Deserialize, Serialize};

use super::check_relative_key;
use crate::build_dir::{LOCK, PART, SHARD_INDEX};

/// The mirrored or staged files, under a cache entry.
pub(super) const TREE: &str = "tree";
/// What the last mirror fetched (key -> size, ETag, modified), beside [`TREE`].
const STATE: &str = "mirror.json";
/// What the last publish uploaded (file -> local size and mtime, the object as listed
/// after it), beside [`TREE`].
const PUBLISHED: &str = "published.json";
/// Objects at least this large are fetched as parallel ranged reads and uploaded in parts
/// of this size.
pub const PART_BYTES: u64 = 8 << 20;
/// Requests in flight at once.
const CONCURRENCY: usize = 8;

/// An S3 prefix and the client for it.
#[derive(Debug)]
pub struct Remote {
    url: String,
    prefix: Key,
    store: Arc<dyn ObjectStore>,
    rt: tokio::runtime::Runtime,
}

/// What one mirror or publish moved.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Transfer {
    /// Objects under the prefix (mirror) or files of the build (publish).
    pub objects: usize,
    /// Objects fetched or uploaded.
    pub moved: usize,
    /// Bytes fetched or uploaded.
    pub bytes: u64,
    /// Files (mirror) or objects (publish) removed as stale.
    pub removed: usize,
    /// Wall time.
    pub seconds: f64,
}

impl std::fmt::Display for Transfer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mb = self.bytes as f64 / 1e6;
        write!(
            f,
            "{} of {} objects, {mb:.1} MB in {:.2} s ({:.1} MB/s), {} stale removed",
            self.moved,
            self.objects,
            self.seconds,
            mb / self.seconds.max(1e-9),
            self.removed
        )
    }
}

/// A file of the last publish: its local size and mtime then, and its object as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Published {
    size: u64,
    mtime_ns: u128,
    object: Seen,
}

impl Seen {
    fn of(meta: &ObjectMeta) -> Seen {
        Seen {
            size: meta.size,
            e_tag: meta.e_tag.clone(),
            modified: meta.last_modified.to_rfc3339(),
        }
    }
}

/// A cache state file, or an empty state when it is missing or unreadable (then everything
/// is fetched or uploaded again).
fn load<T: serde::de::DeserializeOwned + Default>(path: &Path) -> T {
    std::fs::read(path)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

/// Writes a cache state file atomically.
fn save(path: &Path, state: &impl Serialize) -> Result<()> {
    let mut json = serde_json::to_vec_pretty(state)?;
    json.push(b'\n');
    crate::fsutil::write_atomic(path, &json)
}

/// Size and modification time (ns since the epoch) of a local file.
fn stat(path: &Path) -> Result<(u64, u128)> {
    let m = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    let mtime = m
        .modified()?
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    Ok((m.len(), mtime))
}

/// Size, ETag and modification time of a mirrored object: an object is fetched again when
/// any of them changed (some S3-compatible servers list no ETag).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Seen {
    size: u64,
    e_tag: Option<String>,
    modified: String,
}

impl Remote {
    /// A client for `s3://bucket[/prefix]`, configured from the `AWS_*` variables.
    pub fn open(url: &str) -> Result<Remote> {
        let rest = url.strip_prefix("s3://").context("not an s3:// URL")?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            bail!("{url}: no bucket (s3://bucket/prefix)");
        }
        let prefix = prefix.trim_end_matches('/');
        if !prefix.is_empty() {
            check_relative_key(prefix).with_context(|| format!("{url}: prefix"))?;
        }
        let store = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .build()
            .with_context(|| format!("{url}: configuring the S3 client from AWS_* variables"))?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("starting the I/O runtime")?;
        Ok(Remote {
            url: format!(
                "s3://{bucket}{}{prefix}",
                if prefix.is_empty() { "" } else { "/" }
            ),
            prefix: Key::from(prefix),
            store: Arc::new(store),
            rt,
        })
    }

    /// The URL, normalized (`s3://bucket/prefix`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A folder name for this prefix in the local cache: the bucket and prefix made safe, and
    /// a hash of the endpoint and URL.
    pub fn cache_key(&self) -> String {
        let endpoint = std::env::var("AWS_ENDPOINT")
            .or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
            .unwrap_or_default();
        let hash = crate::fsutil::sha256_hex(format!("{endpoint}\n{}", self.url).as_bytes());
        let readable: String = self.url["s3://".len()..]
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .take(60)
            .collect();
        format!("{readable}-{}", &hash[..16])
    }

    /// The object key of `rel` under the prefix.
    fn key(&self, rel: &str) -> Key {
        if self.prefix.as_ref().is_empty() {
            Key::from(rel)
        } else {
            Key::from(format!("{}/{rel}", self.prefix.as_ref()))
        }
    }

    /// Every object under the prefix, as (key relative to the prefix, metadata), sorted.
    async fn list(&self) -> Result<Vec<(String, ObjectMeta)>> {
        let prefix = (!self.prefix.as_ref().is_empty()).then_some(&self.prefix);
        let metas: Vec<ObjectMeta> = self
            .store
            .list(prefix)
            .try_collect()
            .await
            .with_context(|| format!("listing {}", self.url))?;
        let mut out = Vec::with_capacity(metas.len());
        for m in metas {
            let rel = m
                .location
                .prefix_match(&self.prefix)
                .map(|parts| parts.map(|p| p.as_ref().to_string()).collect::<Vec<_>>())
                .with_context(|| format!("{}: listed {} outside it", self.url, m.location))?
                .join("/");
            out.push((rel, m));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Mirrors the prefix into `dir/tree` (see the module docs); `dir/mirror.json` records
    /// what was fetched.
    pub fn mirror(&self, dir: &Path) -> Result<Transfer> {
        let started = Instant::now();
        let tree = dir.join(TREE);
        std::fs::create_dir_all(&tree).with_context(|| format!("creating {}", tree.display()))?;
        let state_path = dir.join(STATE);
        let old: BTreeMap<String, Seen> = load(&state_path);
        let listing = self.rt.block_on(self.list())?;
        if listing.is_empty() {
            bail!("{}: no objects under this prefix", self.url);
        }
        let mut seen = BTreeMap::new();
        let mut todo = Vec::new();
        for (rel, meta) in &listing {
            check_relative_key(rel).with_context(|| format!("{}: object {rel:?}", self.url))?;
            let now = Seen::of(meta);
            let local = tree.join(rel);
            let fresh = old.get(rel) == Some(&now)
                && local
                    .symlink_metadata()
                    .is_ok_and(|m| m.is_file() && m.len() == now.size);
            if !fresh {
                todo.push((meta, local));
            }
            seen.insert(rel.clone(), now);
        }
        let removed = remove_unlisted(&tree, &seen)?;
        let moved = todo.len();
        let bytes = self.rt.block_on(
            stream::iter(todo)
                .map(|(meta, local)| self.fetch(meta, local))
                .buffer_unordered(CONCURRENCY)
                .try_fold(0u64, |a, b| async move { Ok(a + b) }),
        )?;
        save(&state_path, &seen)?;
        Ok(Transfer {
            objects: listing.len(),
            moved,
            bytes,
            removed,
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// Fetches one object to `local` through a temp name: large objects as parallel ranged
    /// reads. Returns its size.
    async fn fetch(&self, meta: &ObjectMeta, local: PathBuf) -> Result<u64> {
        let what = || format!("fetching {}/{}", self.url, meta.location);
        let chunks: Vec<bytes::Bytes> = if meta.size >= PART_BYTES {
            let ranges: Vec<Range<u64>> = (0..meta.size)
                .step_by(PART_BYTES as usize)
                .map(|s| s..(s + PART_BYTES).min(meta.size))
                .collect();
            stream::iter(ranges)
                .map(|r| self.store.get_range(&meta.location, r))
                .buffered(CONCURRENCY)
                .try_collect()
                .await
                .with_context(what)?
        } else {
            let got = self.store.get(&meta.location).await.with_context(what)?;
            vec![got.bytes().await.with_context(what)?]
        };
        let size: u64 = chunks.iter().map(|c| c.len() as u64).sum();
        if size != meta.size {
            bail!(
                "{}: {size} bytes, the listing says {} (changed while read?)",
                what(),
                meta.size
            );
        }
        if let Some(parent) = local.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        let tmp = crate::fsutil::temp_sibling(&local);
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            for c in &chunks {
                std::io::Write::write_all(&mut f, c)?;
            }
            f.sync_all()?;
            std::fs::rename(&tmp, &local)
        };
        if let Err(e) = write() {
            let _ = std::fs::remove_file(&tmp);
            return Err(e).with_context(|| format!("writing {}", local.display()));
        }
        Ok(size)
    }

    /// Publishes the finished build (or part) staged in `dir/tree` (see the module docs).
    /// A file whose local size and mtime, and whose object, are as the last publish left
    /// them (`dir/published.json`) is not uploaded again.
    pub fn publish(&self, dir: &Path) -> Result<Transfer> {
        let started = Instant::now();
        let local = dir.join(TREE);
        let files = local_files(&local)?;
        if !files.contains(LOCK) && !files.contains(PART) {
            bail!(
                "{} has no {LOCK} or {PART}: the build did not finish",
                local.display()
            );
        }
        let state_path = dir.join(PUBLISHED);
        let old: BTreeMap<String, Published> = load(&state_path);
        let remote: BTreeMap<String, ObjectMeta> =
            self.rt.block_on(self.list())?.into_iter().collect();
        let mut stats = BTreeMap::new();
        let mut todo = Vec::new();
        for rel in &files {
            let st = stat(&local.join(rel))?;
            let unchanged = old.get(rel).is_some_and(|p| {
                (p.size, p.mtime_ns) == st
                    && remote.get(rel).is_some_and(|m| Seen::of(m) == p.object)
            });
            if !unchanged || [SHARD_INDEX, LOCK, PART].contains(&rel.as_str()) {
                todo.push(rel.as_str());
            }
            stats.insert(rel.clone(), st);
        }
        let last: Vec<&str> = [SHARD_INDEX, LOCK, PART]
            .into_iter()
            .filter(|f| todo.contains(f))
            .collect();
        let first: Vec<&str> = todo.iter().copied().filter(|f| !last.contains(f)).collect();
        let moved = todo.len();
        let bytes = self.rt.block_on(async {
            // Unpublish first: no reader may pair the old lock with new files.
            for rel in [LOCK, PART] {
                match self.store.delete(&self.key(rel)).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => {
                        return Err(e).with_context(|| format!("deleting {}/{rel}", self.url))
                    }
                }
            }
            let mut bytes = stream::iter(first)
                .map(|rel| self.upload(&local, rel))
                .buffer_unordered(CONCURRENCY)
                .try_fold(0u64, |a, b| async move { Ok(a + b) })
                .await?;
            for rel in &last {
                bytes += self.upload(&local, rel).await?;
            }
            Ok::<u64, anyhow::Error>(bytes)
        })?;
        let mut published = BTreeMap::new();
        let removed = self.rt.block_on(async {
            let mut removed = 0;
            for (rel, meta) in self.list().await? {
                if let Some(&(size, mtime_ns)) = stats.get(&rel) {
                    let object = Seen::of(&meta);
                    published.insert(
                        rel,
                        Published {
                            size,
                            mtime_ns,
                            object,
                        },
                    );
                } else {
                    self.store
                        .delete(&meta.location)
                        .await
                        .with_context(|| format!("deleting stale {}/{rel}", self.url))?;
                    removed += 1;
                }
            }
            Ok::<usize, anyhow::Error>(removed)
        })?;
        save(&state_path, &published)?;
        Ok(Transfer {
            objects: files.len(),
            moved,
            bytes,
            removed,
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// Uploads `local/rel` to its key: in parts when large. Returns its size.
    async fn upload(&self, local: &Path, rel: &str) -> Result<u64> {
        let path = local.join(rel);
        let key = self.key(rel);
        let what = || format!("uploading {} to {}/{rel}", path.display(), self.url);
        let size = std::fs::metadata(&path).with_context(what)?.len();
        if size < PART_BYTES {
            let data = std::fs::read(&path).with_context(what)?;
            self.store
                .put(&key, PutPayload::from(data))
                .await
                .with_context(what)?;
            return Ok(size);
        }
        let upload = self.store.put_multipart(&key).await.with_context(what)?;
        let mut w = WriteMultipart::new_with_chunk_size(upload, PART_BYTES as usize);
        let mut f = std::fs::File::open(&path).with_context(what)?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            w.wait_for_capacity(CONCURRENCY).await.with_context(what)?;
            let n = f.read(&mut buf).with_context(what)?;
            if n == 0 {
                break;
            }
            w.write(&buf[..n]);
        }
        w.finish().await.with_context(what)?;
        Ok(size)
    }
}

/// Calls `f` with every entry under `root` that is not a folder (symlinks not followed).
fn walk(root: &Path, mut f: impl FnMut(&Path, &std::fs::Metadata) -> Result<()>) -> Result<()> {
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).with_context(|| format!("listing {}", d.display()))? {
            let p = e?.path();
            let m = p.symlink_metadata()?;
            if m.is_dir() {
                stack.push(p);
            } else {
                f(&p, &m)?;
            }
        }
    }
    Ok(())
}

/// Every file under `root`, relative with `/`, temp files of interrupted writes left out.
fn local_files(root: &Path) -> Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    walk(root, |p, m| {
        let rel = crate::fsutil::rel_string(root, p);
        if m.is_file() && !rel.contains(".tmp-") {
            out.insert(rel);
        }
        Ok(())
    })?;
    Ok(out)
}

/// Removes files under `tree` that are not in `keep` (objects deleted upstream, temps of a
/// killed mirror); returns how many.
fn remove_unlisted(tree: &Path, keep: &BTreeMap<String, Seen>) -> Result<usize> {
    let mut removed = 0;
    walk(tree, |p, _| {
        if !keep.contains_key(&crate::fsutil::rel_string(tree, p)) {
            std::fs::remove_file(p).with_context(|| format!("removing {}", p.display()))?;
            removed += 1;
        }
        Ok(())
    })?;
    Ok(removed)
}
