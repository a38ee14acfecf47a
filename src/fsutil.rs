//! File-system helpers shared by every stage: path confinement, hashing, atomic writes.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

/// Checks that `rel` is a relative path that stays inside its root: no absolute path, drive
/// prefix, `..` component, backslash separator or NUL byte. Metadata paths are checked with
/// this before anything is opened.
pub fn check_relative(rel: &str) -> Result<()> {
    if rel.is_empty() {
        bail!("empty path");
    }
    if rel.contains('\0') {
        bail!("path {rel:?} holds a NUL byte");
    }
    if rel.contains('\\') {
        bail!("path {rel:?} uses a backslash; only '/'-separated relative paths are allowed");
    }
    for c in Path::new(rel).components() {
        match c {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => bail!("path {rel:?} escapes its root ('..')"),
            Component::RootDir | Component::Prefix(_) => {
                bail!("path {rel:?} is absolute; it must be relative to its source root")
            }
        }
    }
    Ok(())
}

/// Joins a checked relative path onto `root`.
pub fn safe_join(root: &Path, rel: &str) -> Result<PathBuf> {
    check_relative(rel)?;
    Ok(root.join(rel))
}

/// A source root that paths from metadata are resolved against: every path is checked
/// lexically ([`check_relative`]) and on disk, where symlinks (of the file or of any folder on
/// the way) must not lead outside the root. Folders are resolved once and cached, so checking
/// many files in few folders costs one `fstatat` per file, by name in the folder's handle.
#[derive(Debug)]
pub struct Confined {
    root: PathBuf,
    real_root: PathBuf,
    /// Folder (relative, as written in `rel`) -> what it resolves to (see [`Folder`]).
    folders: std::sync::RwLock<rustc_hash::FxHashMap<String, Folder>>,
}

/// A folder of a [`Confined`] root, checked once.
#[derive(Debug)]
struct Folder {
    /// Whether it resolves inside the root; `None` when missing.
    inside: Option<bool>,
    /// A handle on the resolved folder when it is inside, so a file in it is looked up by its
    /// name alone (the kernel walks one path component, not the whole path).
    #[cfg(unix)]
    handle: Option<std::os::fd::OwnedFd>,
}

/// What [`Confined`] found at a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Found {
    Missing,
    File,
    Other,
}

/// What a path is, not following a symlink at its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entry {
    Missing,
    Symlink,
    File,
    Other,
}

impl Entry {
    fn of(path: &Path) -> std::io::Result<Entry> {
        match path.symlink_metadata() {
            Ok(m) if m.file_type().is_symlink() => Ok(Entry::Symlink),
            Ok(m) if m.is_file() => Ok(Entry::File),
            Ok(_) => Ok(Entry::Other),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Entry::Missing),
            Err(e) => Err(e),
        }
    }

    /// `name` (one component) in the folder `dir`, as [`Entry::of`] of its whole path.
    #[cfg(unix)]
    fn in_folder(dir: std::os::fd::BorrowedFd, name: &str) -> Option<std::io::Result<Entry>> {
        use std::os::fd::AsRawFd;
        let name = std::ffi::CString::new(name).ok()?;
        let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: `name` is NUL-terminated, `dir` an open descriptor, `st` written by the call.
        let rc = unsafe {
            libc::fstatat(
                dir.as_raw_fd(),
                name.as_ptr(),
                st.as_mut_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            return Some(if e.kind() == std::io::ErrorKind::NotFound {
                Ok(Entry::Missing)
            } else {
                Err(e)
            });
        }
        // SAFETY: fstatat succeeded, so it filled `st`.
        let mode = unsafe { st.assume_init() }.st_mode & libc::S_IFMT;
        Some(Ok(match mode {
            libc::S_IFLNK => Entry::Symlink,
            libc::S_IFREG => Entry::File,
            _ => Entry::Other,
        }))
    }
}

impl Confined {
    /// The root `root` (it must exist).
    pub fn new(root: &Path) -> Result<Confined> {
        let real_root = root
            .canonicalize()
            .with_context(|| format!("resolving {}", root.display()))?;
        Ok(Confined {
            root: root.to_path_buf(),
            real_root,
            folders: Default::default(),
        })
    }

    fn outside(&self, path: &Path, real: &Path) -> anyhow::Error {
        anyhow::anyhow!(
            "{} resolves to {}, outside its source root {}",
            path.display(),
            real.display(),
            self.real_root.display()
        )
    }

    /// `f` of the folder `folder` (relative), checked on first use.
    fn with_folder<R>(&self, folder: &str, f: impl FnOnce(&Folder) -> R) -> R {
        {
            let folders = self.folders.read().unwrap_or_else(|e| e.into_inner());
            if let Some(known) = folders.get(folder) {
                return f(known);
            }
        }
        let real = self.root.join(folder).canonicalize().ok();
        let inside = real.as_ref().map(|r| r.starts_with(&self.real_root));
        let checked = Folder {
            inside,
            #[cfg(unix)]
            handle: real.filter(|_| inside == Some(true)).and_then(|r| {
                use std::os::unix::fs::OpenOptionsExt;
                std::fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
                    .open(r)
                    .ok()
                    .map(std::os::fd::OwnedFd::from)
            }),
        };
        let mut folders = self.folders.write().unwrap_or_else(|e| e.into_inner());
        f(folders.entry(folder.to_string()).or_insert(checked))
    }

    /// What `rel` is, after checking that it resolves inside the root.
    fn find(&self, rel: &str) -> Result<(PathBuf, Found)> {
        let path = safe_join(&self.root, rel)?;
        let (folder, name) = rel.rsplit_once('/').unwrap_or(("", rel));
        let (inside, entry) = self.with_folder(folder, |f| {
            #[cfg(unix)]
            if let Some(entry) = f
                .handle
                .as_ref()
                .filter(|_| !matches!(name, "" | "." | ".."))
                .and_then(|h| Entry::in_folder(std::os::fd::AsFd::as_fd(h), name))
            {
                return (f.inside, entry);
            }
            (f.inside, Entry::of(&path))
        });
        let entry = entry.with_context(|| format!("reading {}", path.display()))?;
        let kind = |is_file: bool| if is_file { Found::File } else { Found::Other };
        match entry {
            Entry::Missing => return Ok((path, Found::Missing)),
            Entry::Symlink => {
                let real = match path.canonicalize() {
                    Ok(r) => r,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        return Ok((path, Found::Missing))
                    }
                    Err(e) => {
                        return Err(e).with_context(|| format!("resolving {}", path.display()))
                    }
                };
                if !real.starts_with(&self.real_root) {
                    return Err(self.outside(&path, &real));
                }
                let is_file = real.is_file();
                return Ok((path, kind(is_file)));
            }
            Entry::File | Entry::Other => {}
        }
        match inside {
            None => Ok((path, Found::Missing)),
            Some(true) => Ok((path, kind(entry == Entry::File))),
            Some(false) => {
                let real = path.canonicalize().unwrap_or_else(|_| path.clone());
                Err(self.outside(&path, &real))
            }
        }
    }

    /// Whether `rel` is a regular file inside the root (not opened).
    pub fn is_file(&self, rel: &str) -> Result<bool> {
        Ok(self.find(rel)?.1 == Found::File)
    }

    /// Opens `rel` for reading.
    pub fn open(&self, rel: &str) -> Result<File> {
        let (path, found) = self.find(rel)?;
        if found == Found::Missing {
            bail!("opening {}: no such file", path.display());
        }
        File::open(&path).with_context(|| format!("opening {}", path.display()))
    }

    /// Reads `rel` whole.
    pub fn read(&self, rel: &str) -> Result<Vec<u8>> {
        Ok(self.read_stamped(rel)?.0)
    }

    /// Reads `rel` whole, with the file's stamp taken after the read (so it reflects every
    /// write made before or during it; `None` where stamps are not supported).
    pub fn read_stamped(&self, rel: &str) -> Result<(Vec<u8>, Option<FileStamp>)> {
        let mut bytes = Vec::new();
        let mut f = self.open(rel)?;
        let context = || format!("reading {}", self.root.join(rel).display());
        f.read_to_end(&mut bytes).with_context(context)?;
        let stamp = FileStamp::of(&f.metadata().with_context(context)?);
        Ok((bytes, stamp))
    }
}

/// What identifies one version of a file without reading it: device, inode, size, and the
/// modification and status-change times (ns). Writing a file changes its ctime, which no
/// program can set back, so a file whose stamp is unchanged has not been written since, with
/// one exception: file times come from a clock that ticks every few milliseconds, and a write
/// in the same tick as the first stamp leaves it unchanged. A stamp taken long enough after the
/// file's last change ([`FileStamp::settled`]) has no such tick left; git trusts its index the
/// same way ("racily clean" entries are re-read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl FileStamp {
    /// How long after a file's last change its stamp can vouch for it (many clock ticks).
    pub const SETTLE: std::time::Duration = std::time::Duration::from_secs(2);

    /// The stamp of a file's metadata (`None` off Unix).
    pub fn of(meta: &std::fs::Metadata) -> Option<FileStamp> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            let ns = |s: i64, n: i64| s as i128 * 1_000_000_000 + n as i128;
            Some(FileStamp {
                dev: meta.dev(),
                ino: meta.ino(),
                len: meta.len(),
                mtime_ns: ns(meta.mtime(), meta.mtime_nsec()),
                ctime_ns: ns(meta.ctime(), meta.ctime_nsec()),
            })
        }
        #[cfg(not(unix))]
        {
            let _ = meta;
            None
        }
    }

    /// True when the file last changed at least [`FileStamp::SETTLE`] before `taken` (the
    /// time, on the system clock, just before this stamp was read): a later write then always
    /// changes the stamp.
    pub fn settled(&self, taken: std::time::SystemTime) -> bool {
        let taken = match taken.duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => d.as_nanos() as i128,
            Err(_) => return false,
        };
        let last = self.mtime_ns.max(self.ctime_ns);
        taken - last >= Self::SETTLE.as_nanos() as i128
    }
}

/// Lower-case hex SHA-256 of a byte slice.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Lower-case hex SHA-256 of the concatenation of `parts`.
pub fn sha256_hex_parts(parts: &[impl AsRef<[u8]>]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_ref());
    }
    hex::encode(hasher.finalize())
}

/// Lower-case hex SHA-256 of everything a reader yields.
pub fn sha256_reader(mut r: impl Read) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Lower-case hex SHA-256 of a file.
pub fn sha256_file(path: &Path) -> Result<String> {
    let f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    sha256_reader(f).with_context(|| format!("reading {}", path.display()))
}

/// Writes `bytes` to `path` through a temporary sibling and a rename, so a killed run never
/// leaves a half-written file under the final name.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_parts(path, &[bytes])
}

/// [`write_atomic`] of the concatenation of `parts`, without joining them in memory.
pub fn write_atomic_parts(path: &Path, parts: &[impl AsRef<[u8]>]) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let tmp = temp_sibling(path);
    let result = (|| -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        for part in parts {
            f.write_all(part.as_ref())?;
        }
        // No fsync: the rename is what makes a killed run leave nothing half-written; a power
        // loss is caught by the hashes (verify, resume) instead of paid for on every file.
        replace(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("writing {}", path.display()));
    }
    Ok(())
}

/// Files at least this large that a write replaces are moved aside and deleted in the
/// background (see [`replace`]).
const ASIDE_MIN: u64 = 1 << 20;

/// Replaced files moved aside and the threads deleting them (see [`finish_deletions`]).
static DELETIONS: std::sync::Mutex<Vec<(PathBuf, std::thread::JoinHandle<()>)>> =
    std::sync::Mutex::new(Vec::new());

/// Whether `path` is a replaced file this process moved aside and is deleting (a build's
/// clean-up leaves it to that deletion).
pub fn being_deleted(path: &Path) -> bool {
    DELETIONS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .any(|(p, _)| p == path)
}

/// Renames the written temporary `tmp` to `path`. A large file already at `path` is first
/// renamed aside (to `tmp`'s name with `-old`, which a later build cleans up like any
/// temporary of ours if this run is killed) and deleted on a thread of its own: renaming over
/// an existing file costs ext4 a flush of the new file's blocks and the freeing of the old
/// one's inside the rename (0.08-0.12 s for a 200 MB manifest), where a rename to a free name
/// costs nothing. If the second rename fails, the old file is put back.
fn replace(tmp: &Path, path: &Path) -> std::io::Result<()> {
    let large = path
        .symlink_metadata()
        .is_ok_and(|m| m.is_file() && m.len() >= ASIDE_MIN);
    if !large {
        return std::fs::rename(tmp, path);
    }
    let mut old = tmp.as_os_str().to_owned();
    old.push("-old");
    let old = PathBuf::from(old);
    if std::fs::rename(path, &old).is_err() {
        return std::fs::rename(tmp, path);
    }
    if let Err(e) = std::fs::rename(tmp, path) {
        let _ = std::fs::rename(&old, path);
        return Err(e);
    }
    // Registered before the thread starts, so no listing sees the file unclaimed; finished
    // deletions are dropped from the list here (a library caller may never wait for them).
    let mut deletions = DELETIONS.lock().unwrap_or_else(|e| e.into_inner());
    deletions.retain(|(_, h)| !h.is_finished());
    let aside = old.clone();
    let spawned = std::thread::Builder::new()
        .name("covidx-delete".into())
        .spawn(move || {
            let _ = std::fs::remove_file(&aside);
        });
    match spawned {
        Ok(handle) => deletions.push((old, handle)),
        Err(_) => {
            let _ = std::fs::remove_file(&old);
        }
    }
    Ok(())
}

/// Waits for the deletions of replaced files that writes started in the background (a
/// command calls this before it exits, so no moved-aside file outlives it).
pub fn finish_deletions() {
    let pending = std::mem::take(&mut *DELETIONS.lock().unwrap_or_else(|e| e.into_inner()));
    for (_, handle) in pending {
        let _ = handle.join();
    }
}

/// The temporary name used while `path` is being written.
pub fn temp_sibling(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// `path` relative to `base` with '/' separators, for lock files and messages.
pub fn rel_string(base: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(base).unwrap_or(path);
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn a_stamp_changes_with_any_write_and_settles_with_time() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"abc").unwrap();
        let stamp = |p: &Path| FileStamp::of(&std::fs::metadata(p).unwrap()).unwrap();
        let first = stamp(&p);
        let now = std::time::SystemTime::now();
        assert!(
            !first.settled(now),
            "a file written just now is not settled"
        );
        let later = now + FileStamp::SETTLE + std::time::Duration::from_millis(1);
        assert!(first.settled(later));
        assert_eq!(stamp(&p), first, "reading metadata changes nothing");
        // The same size, the old modification time put back: the change time still moves. (The
        // pause only puts the rewrite in a later tick of the file clock.)
        let mtime = std::fs::metadata(&p).unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(30));
        std::fs::write(&p, b"xyz").unwrap();
        File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        assert_ne!(stamp(&p), first);
        // Read back with its stamp: the same as the metadata's.
        let root = Confined::new(dir.path()).unwrap();
        let (bytes, s) = root.read_stamped("f").unwrap();
        assert_eq!((bytes.as_slice(), s), (&b"xyz"[..], Some(stamp(&p))));
    }

    #[test]
    fn escaping_paths_are_refused() {
        for bad in [
            "../x.png",
            "images/../../x",
            "/etc/passwd",
            "a\\..\\b",
            "",
            "a\0b",
        ] {
            assert!(check_relative(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["x.png", "images/a b (1).jpg", "./images/x.jpeg", "a..b.png"] {
            check_relative(good).unwrap();
        }
    }

    #[test]
    fn symlink_out_of_root_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        std::fs::write(dir.path().join("secret"), b"x").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret"), root.join("link.png")).unwrap();
        let c = Confined::new(&root).unwrap();
        let err = c.open("link.png").unwrap_err();
        assert!(format!("{err:#}").contains("outside its source root"));
        let err = c.is_file("link.png").unwrap_err();
        assert!(format!("{err:#}").contains("outside its source root"));
        std::fs::write(root.join("in.png"), b"x").unwrap();
        std::os::unix::fs::symlink(root.join("in.png"), root.join("inner.png")).unwrap();
        assert!(c.is_file("inner.png").unwrap());
        assert!(!c.is_file("absent.png").unwrap());
        // A symlinked folder on the way out of the root is refused too.
        std::fs::create_dir(dir.path().join("outside")).unwrap();
        std::fs::write(dir.path().join("outside/x.png"), b"x").unwrap();
        std::os::unix::fs::symlink(dir.path().join("outside"), root.join("sub")).unwrap();
        let err = c.read("sub/x.png").unwrap_err();
        assert!(
            format!("{err:#}").contains("outside its source root"),
            "{err:#}"
        );
    }

    #[test]
    fn files_in_folders_are_found_by_name_in_the_folder_handle() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("images/deeper")).unwrap();
        std::fs::write(root.join("images/a.png"), b"a").unwrap();
        std::fs::write(dir.path().join("secret.png"), b"s").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret.png"), root.join("images/out.png"))
            .unwrap();
        std::os::unix::fs::symlink(root.join("images/a.png"), root.join("images/in.png")).unwrap();
        std::os::unix::fs::symlink(root.join("images"), root.join("alias")).unwrap();
        let c = Confined::new(&root).unwrap();
        // Twice each: the first lookup checks and caches the folder, the second uses its handle.
        for _ in 0..2 {
            assert!(c.is_file("images/a.png").unwrap());
            assert!(c.is_file("images/in.png").unwrap());
            assert!(c.is_file("alias/a.png").unwrap());
            assert!(c.is_file("./images/a.png").unwrap());
            assert!(!c.is_file("images/deeper").unwrap());
            assert!(!c.is_file("images/missing.png").unwrap());
            assert!(!c.is_file("nofolder/a.png").unwrap());
            let err = c.is_file("images/out.png").unwrap_err();
            assert!(
                format!("{err:#}").contains("outside its source root"),
                "{err:#}"
            );
            assert_eq!(c.read("alias/in.png").unwrap(), b"a");
            let err = c.open("images/missing.png").unwrap_err();
            assert!(format!("{err:#}").contains("no such file"), "{err:#}");
        }
        // A file created after its folder was cached is found through the handle.
        std::fs::write(root.join("images/late.png"), b"l").unwrap();
        assert!(c.is_file("images/late.png").unwrap());
    }

    #[test]
    fn replacing_a_large_file_leaves_only_the_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("manifest.csv");
        let big = vec![7u8; ASIDE_MIN as usize + 1];
        write_atomic(&p, &big).unwrap();
        // The large file is moved aside and deleted in the background; small ones are renamed
        // over.
        for bytes in [&b"new"[..], &big[..1000], &big[..]] {
            write_atomic(&p, bytes).unwrap();
            assert_eq!(std::fs::read(&p).unwrap(), bytes);
        }
        finish_deletions();
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["manifest.csv"]);
    }

    #[test]
    fn atomic_write_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/out.txt");
        write_atomic(&p, b"hello").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"hello");
        assert_eq!(std::fs::read_dir(p.parent().unwrap()).unwrap().count(), 1);
        assert_eq!(
            sha256_file(&p).unwrap(),
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
    }
}
