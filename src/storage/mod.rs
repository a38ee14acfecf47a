//! Object storage for `build --sources` and `--out`: `s3://bucket/prefix` through the
//! `object_store` crate, `file:///path` and plain paths on the local disk.
//!
//! Credentials, region and endpoint come from the standard variables (`AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`, `AWS_ENDPOINT` for an
//! S3-compatible server, `AWS_ALLOW_HTTP=true` for one without TLS).
//!
//! A build still reads and writes a local directory, so every guarantee of a local build
//! holds (resume, quarantine, byte-identical outputs, the lock):
//! - remote sources are mirrored into a local cache first ([`Remote::mirror`]): the prefix
//!   is listed, and only objects whose size, ETag or modification time changed since the
//!   last mirror are fetched, large ones as parallel ranged reads; files the listing no
//!   longer has are removed; a key that would leave the prefix is refused;
//! - a remote `--out` is built in a local staging directory in that cache (a rerun resumes
//!   like a local build) and then [published](Output::publish): the remote lock is deleted
//!   first, every file changed since the last publish uploaded (large ones in parts), then
//!   `shards/index.json`, then the lock; objects under the prefix that the build does not
//!   have are deleted last. A reader that finds the lock finds every file it vouches for.
//!
//! The cache is `COVIDX_CACHE`, else `$XDG_CACHE_HOME/covidx`, else `~/.cache/covidx`.

mod remote;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

pub use remote::{Remote, Transfer, PART_BYTES};

/// Where `--sources` or `--out` points.
#[derive(Debug)]
pub enum Location {
    /// A local directory (a plain path or `file://`).
    Local(PathBuf),
    /// An object-store prefix.
    Remote(Remote),
}

impl Location {
    /// Parses a command-line location: `s3://bucket[/prefix]`, `file:///abs/path`, or a path.
    pub fn parse(arg: &Path) -> Result<Location> {
        let Some(text) = arg.to_str() else {
            return Ok(Location::Local(arg.to_path_buf()));
        };
        if let Some(rest) = text.strip_prefix("file://") {
            if !rest.starts_with('/') {
                bail!("{text}: a file:// URL needs an absolute path (file:///dir)");
            }
            return Ok(Location::Local(PathBuf::from(rest)));
        }
        if text.starts_with("s3://") {
            return Ok(Location::Remote(Remote::open(text)?));
        }
        if let Some((scheme, _)) = text.split_once("://") {
            bail!("{text}: unsupported URL scheme {scheme:?} (s3:// and file:// are supported)");
        }
        Ok(Location::Local(arg.to_path_buf()))
    }
}

/// Fails with a clear message when `arg` is an object-store URL: for the options that take
/// local paths only.
pub fn require_local(arg: &Path, what: &str) -> Result<()> {
    if let Some(text) = arg.to_str() {
        if text.contains("://") && !text.starts_with("file://") {
            bail!("{what} {text}: only local paths (and file://) are supported here");
        }
    }
    Ok(())
}

/// The local cache root (see the module docs).
pub fn cache_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("COVIDX_CACHE").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("covidx");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| ".".into());
    PathBuf::from(home).join(".cache/covidx")
}

/// `--sources` as a local directory: itself, or the mirror of a remote prefix (fetched now).
pub fn sources(arg: &Path) -> Result<(PathBuf, Option<Transfer>)> {
    match Location::parse(arg)? {
        Location::Local(p) => Ok((p, None)),
        Location::Remote(r) => {
            let dir = cache_root().join("sources").join(r.cache_key());
            let t = r
                .mirror(&dir)
                .with_context(|| format!("mirroring {} into {}", r.url(), dir.display()))?;
            Ok((dir.join(remote::TREE), Some(t)))
        }
    }
}

/// `--out`: a local directory, or a remote prefix with its local staging directory.
#[derive(Debug)]
pub struct Output {
    /// The directory itself, or the cache entry of a remote prefix (staging in `tree/`).
    local: PathBuf,
    remote: Option<Remote>,
}

impl Output {
    /// Resolves `--out`.
    pub fn open(arg: &Path) -> Result<Output> {
        Ok(match Location::parse(arg)? {
            Location::Local(local) => Output {
                local,
                remote: None,
            },
            Location::Remote(r) => Output {
                local: cache_root().join("out").join(r.cache_key()),
                remote: Some(r),
            },
        })
    }

    /// The directory the build writes.
    pub fn dir(&self) -> PathBuf {
        match self.remote {
            None => self.local.clone(),
            Some(_) => self.local.join(remote::TREE),
        }
    }

    /// The remote prefix, if any.
    pub fn remote(&self) -> Option<&Remote> {
        self.remote.as_ref()
    }

    /// Uploads a finished build (or part) to the remote prefix, the lock last; `None` for a
    /// local `--out`.
    pub fn publish(&self) -> Result<Option<Transfer>> {
        match &self.remote {
            None => Ok(None),
            Some(r) => r
                .publish(&self.local)
                .with_context(|| format!("publishing {} to {}", self.dir().display(), r.url()))
                .map(Some),
        }
    }
}

/// Checks one `/`-separated key relative to a prefix: no empty, `.` or `..` part, no
/// backslash or NUL, so it names a file inside the mirror root.
pub fn check_relative_key(rel: &str) -> Result<()> {
    if rel.is_empty() {
        bail!("empty key");
    }
    for part in rel.split('/') {
        if part.is_empty() || part == "." || part == ".." {
            bail!("key {rel:?} has a part {part:?}: it would leave the prefix");
        }
        if part.contains(['\\', '\0']) {
            bail!("key {rel:?} has a backslash or NUL");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse() {
        assert!(matches!(
            Location::parse(Path::new("data/sources")).unwrap(),
            Location::Local(p) if p == Path::new("data/sources")
        ));
        assert!(matches!(
            Location::parse(Path::new("file:///tmp/x")).unwrap(),
            Location::Local(p) if p == Path::new("/tmp/x")
        ));
        let e = Location::parse(Path::new("file://rel/x")).unwrap_err();
        assert!(e.to_string().contains("absolute"), "{e}");
        let e = Location::parse(Path::new("gs://b/x")).unwrap_err();
        assert!(e.to_string().contains("\"gs\""), "{e}");
        assert!(require_local(Path::new("s3://b/x"), "--out").is_err());
        assert!(require_local(Path::new("file:///x"), "--out").is_ok());
    }

    #[test]
    fn keys_that_leave_the_prefix_are_refused() {
        check_relative_key("cohen/images/a.png").unwrap();
        for bad in [
            "",
            "../x",
            "a/../../x",
            "a//b",
            "./a",
            "a/",
            "a\\..\\b",
            "a\0",
        ] {
            assert!(check_relative_key(bad).is_err(), "{bad:?}");
        }
    }
}
