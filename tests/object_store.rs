//! `covidx build --sources s3://... --out s3://...` against a real S3-compatible server,
//! `s3s-fs`, started on loopback (installed by .ci/run; `COVIDX_S3S_FS` names the binary).
//! Checked: the published build is byte-identical to a local build of the same sources; a
//! rerun fetches nothing and resumes; new, changed and deleted source objects are followed;
//! a large object is fetched in ranges and a large shard uploaded in parts; stale objects
//! are removed; the index and the lock are published after every other file.

mod common;

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant, SystemTime};

const BUCKET: &str = "covidx";
const KEY: &str = "covidx-test";
const SECRET: &str = "covidx-test-secret";

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_covidx")
}

/// The s3s-fs binary, or `None` with a SKIPPED line.
fn s3s_fs() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("COVIDX_S3S_FS").map(PathBuf::from),
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/covidx-tools/bin/s3s-fs")),
    ];
    let found = candidates
        .into_iter()
        .flatten()
        .find(|p| p.is_file())
        .or_else(|| {
            Command::new("s3s-fs")
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
                .then(|| PathBuf::from("s3s-fs"))
        });
    if found.is_none() {
        eprintln!(
            "SKIPPED object storage tests: no s3s-fs (cargo install --locked s3s-fs --version \
             0.14.1 --features binary --root ~/.cache/covidx-tools; .ci/run does)"
        );
    }
    found
}

/// A running s3s-fs serving `root` (bucket = a folder of it); killed on drop.
struct Server {
    child: Child,
    endpoint: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(exe: &Path, root: &Path) -> Server {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(exe)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--access-key", KEY, "--secret-key", SECRET])
        .arg(root)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let server = Server {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
    };
    let t0 = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "s3s-fs did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    server
}

/// Runs `covidx build` with the S3 variables; returns stdout, failing on a non-zero exit.
fn build(server: &Server, cache: &Path, pipeline: &Path, sources: &str, out: &str) -> String {
    let o = Command::new(bin())
        .arg("build")
        .arg(pipeline)
        .args(["--sources", sources, "--out", out])
        .env("AWS_ACCESS_KEY_ID", KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("AWS_ENDPOINT", &server.endpoint)
        .env("AWS_ALLOW_HTTP", "true")
        .env("AWS_REGION", "us-east-1")
        .env("COVIDX_CACHE", cache)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "covidx build {sources} -> {out} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    stdout
}

fn line<'a>(stdout: &'a str, start: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| l.starts_with(start))
        .unwrap_or_else(|| panic!("no line starting {start:?} in:\n{stdout}"))
}

fn mtime(p: &Path) -> SystemTime {
    std::fs::metadata(p).unwrap().modified().unwrap()
}

#[test]
fn s3_sources_and_out_give_the_local_build_and_follow_changes() {
    let Some(exe) = s3s_fs() else { return };
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("s3");
    let bucket = root.join(BUCKET);
    let sources = bucket.join("in");
    covidx::demo::write_sources(&sources).unwrap();
    // A large object (fetched in ranged reads) beside the layouts.
    let big: Vec<u8> = (0..20u32 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    std::fs::create_dir_all(sources.join("extra")).unwrap();
    std::fs::write(sources.join("extra/big.bin"), &big).unwrap();
    // 512 px shards: the training shard (~15 MB) is uploaded in parts.
    let pipeline = t.path().join("demo.toml");
    let text = covidx::demo::PIPELINE
        .replacen("size = 64\n", "size = 512\n", 1)
        .replacen("shard_mib = 1\n", "shard_mib = 64\n", 1);
    assert_ne!(text, covidx::demo::PIPELINE);
    std::fs::write(&pipeline, text).unwrap();
    let server = start(&exe, &root);
    let cache = t.path().join("cache");
    let (src_url, out_url) = (
        format!("s3://{BUCKET}/in"),
        format!("s3://{BUCKET}/out/build"),
    );
    let objects = common::tree_bytes(&sources).len();

    let first = build(&server, &cache, &pipeline, &src_url, &out_url);
    assert!(
        line(&first, "sources s3://").contains(&format!("fetched {objects} of {objects} objects")),
        "{first}"
    );
    assert!(
        line(&first, "published to s3://").contains("0 stale removed"),
        "{first}"
    );

    // The same bytes as a build from the sources on the local disk (build.json names the
    // sources folder, so it differs by design).
    let local = t.path().join("local");
    let o = Command::new(bin())
        .arg("-q")
        .arg("build")
        .arg(&pipeline)
        .arg("--sources")
        .arg(&sources)
        .arg("--out")
        .arg(&local)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let published = bucket.join("out/build");
    let without_info = |d: &Path| {
        let mut v = common::tree_bytes(d);
        v.retain(|(name, _)| name != "build.json");
        v
    };
    let remote_files = without_info(&published);
    assert!(remote_files
        .iter()
        .any(|(n, b)| n == "shards/train/shard-00000.safetensors"
            && b.len() as u64 > covidx::storage::PART_BYTES));
    assert!(
        remote_files == without_info(&local),
        "published build differs from the local one"
    );
    let mirrored = cache.join("sources");
    let mirror_tree = std::fs::read_dir(&mirrored)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
        .join("tree");
    assert_eq!(
        std::fs::read(mirror_tree.join("extra/big.bin")).unwrap(),
        big
    );

    // Index and lock after everything else.
    let lock = published.join("covidx.lock.json");
    let index = published.join("shards/index.json");
    for (name, _) in &remote_files {
        if name != "covidx.lock.json" && name != "shards/index.json" {
            assert!(
                mtime(&index) >= mtime(&published.join(name)),
                "{name} after the index"
            );
        }
    }
    assert!(mtime(&lock) >= mtime(&index));

    // A rerun fetches nothing, resumes every shard, uploads no shard again.
    let second = build(&server, &cache, &pipeline, &src_url, &out_url);
    assert!(
        line(&second, "sources s3://").contains(&format!("fetched 0 of {objects}")),
        "{second}"
    );
    assert!(
        second.contains("shards reused from an interrupted run: 2, written: 0"),
        "{second}"
    );
    let shard = published.join("shards/train/shard-00000.safetensors");
    let before = mtime(&shard);

    // A new object is fetched, a deleted one removed from the mirror; a stale object under
    // --out is deleted.
    std::fs::write(sources.join("extra/new.txt"), b"new").unwrap();
    std::fs::remove_file(sources.join("extra/big.bin")).unwrap();
    std::fs::write(
        published.join("shards/train/shard-00099.safetensors"),
        b"old",
    )
    .unwrap();
    let third = build(&server, &cache, &pipeline, &src_url, &out_url);
    assert!(
        line(&third, "sources s3://").contains(&format!("fetched 1 of {objects} objects")),
        "{third}"
    );
    assert!(
        line(&third, "sources s3://").contains("1 stale removed"),
        "{third}"
    );
    assert!(!mirror_tree.join("extra/big.bin").exists());
    assert!(
        line(&third, "published to s3://").contains("1 stale removed"),
        "{third}"
    );
    assert!(!published
        .join("shards/train/shard-00099.safetensors")
        .exists());
    assert_eq!(
        mtime(&shard),
        before,
        "an unchanged shard was uploaded again"
    );
    assert!(without_info(&published) == remote_files);
}

#[test]
fn bad_object_store_locations_fail_clearly() {
    let t = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let o = Command::new(bin())
            .args(args)
            .env("COVIDX_CACHE", t.path())
            .output()
            .unwrap();
        assert!(!o.status.success(), "{args:?} succeeded");
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    let pipeline = common::crate_path("pipelines/covidx2.toml");
    let p = pipeline.to_str().unwrap();
    let e = run(&["build", p, "--sources", "gs://bucket/x"]);
    assert!(e.contains("unsupported URL scheme \"gs\""), "{e}");
    let e = run(&["build", p, "--sources", "s3:///x"]);
    assert!(e.contains("no bucket"), "{e}");
    let e = run(&["build", p, "--sources", "s3://b/a/../../x"]);
    assert!(e.contains("leave the prefix"), "{e}");
    let e = run(&["merge", "s3://b/merged", "part-1"]);
    assert!(e.contains("only local paths"), "{e}");
}
