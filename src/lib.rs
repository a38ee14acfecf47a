//! covidx: rebuild, verify and audit the COVIDx chest X-ray dataset reproducibly from its
//! public sources.
//!
//! Stages, one module each: [`sources`] readers -> [`ingest`] -> [`label`] -> [`split`] ->
//! metadata [`outputs`] (the [`manifest`], [`summary`], split files) and, when enabled, the
//! [`imaging`] stage writing [`shards`]; [`lock`] records and verifies every hash.
//! [`builder`] only orchestrates them; [`cli`] exposes them; [`demo`] generates a miniature of
//! the upstream layouts; [`export`] writes a build's shards for other loaders; [`storage`]
//! lets `--sources` and `--out` be `s3://` prefixes.
//!
//! A finished build is read back through one typed layer: [`build_dir::BuildDir`] names every
//! file, [`manifest::Manifest`] reads the manifest, [`shards::Shard`] maps a shard without
//! copying and [`shards::Dataset`] maps a split's global sample numbers to shards. The file
//! formats are specified in `docs/formats.md`. [`progress`] is the progress display the long
//! stages share.

pub mod audit;
pub mod build_dir;
pub mod builder;
pub mod cli;
pub mod config;
pub mod demo;
pub mod export;
pub mod fsutil;
pub mod imaging;
pub mod ingest;
pub mod label;
pub mod lock;
pub mod manifest;
pub mod npy;
pub mod outputs;
pub mod progress;
pub mod record;
pub mod shards;
pub mod sources;
pub mod split;
pub mod storage;
pub mod summary;
pub mod train;

/// Frees `value` on a thread of its own, off the critical path: a build's large tables (a
/// million records hold tens of millions of small allocations) take a tenth of a second or
/// more to free, and a command that exits before that thread finishes leaves the freeing to
/// the operating system.
pub fn drop_in_background<T: Send + 'static>(value: T) {
    // A thread that cannot be spawned drops the closure, and with it `value`, here.
    let _ = std::thread::Builder::new()
        .name("covidx-drop".into())
        .spawn(move || drop(value));
}

/// Runs `f`, logging its wall time at debug level under `what`.
pub(crate) fn timed<R>(what: &str, f: impl FnOnce() -> R) -> R {
    let t = std::time::Instant::now();
    let r = f();
    tracing::debug!("{what}: {:.3?}", t.elapsed());
    r
}
