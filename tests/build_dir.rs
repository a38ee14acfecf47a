//! A build owns its output directory: outputs of an earlier build that it does not write are
//! removed (never anything else), the lock covers exactly what is there, two builds never share
//! a directory, an output inside the sources is refused, and `export` never pairs a manifest
//! with another build's shards.

mod common;

use std::path::Path;
use std::process::Command;

use covidx::build_dir::BuildDir;
use covidx::builder::{build, BuildOptions};
use covidx::manifest::Manifest;
use covidx::record::Split;
use covidx::shards::Dataset;

fn demo_sources(dir: &Path) -> BuildOptions {
    covidx::demo::write_sources(&dir.join("sources")).unwrap();
    std::fs::write(dir.join("demo.toml"), covidx::demo::PIPELINE).unwrap();
    BuildOptions::new(dir.join("demo.toml"), dir.join("sources"), dir.join("out"))
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_covidx"))
}

/// Files under `dir`, relative, sorted.
fn files(dir: &Path) -> Vec<String> {
    common::tree_bytes(dir)
        .into_iter()
        .map(|(p, _)| p)
        .collect()
}

/// The lock, build.json and the audit report are rewritten by every build: a rebuild into
/// the same directory reports no removed outputs, and the files are all there again.
#[test]
fn a_rebuild_removes_nothing_it_writes_again() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = BuildOptions {
        metadata_only: true,
        ..demo_sources(tmp.path())
    };
    let first = build(&opts).unwrap();
    assert!(first.removed.is_empty(), "{:?}", first.removed);
    let before = files(&opts.out);
    let again = build(&opts).unwrap();
    assert!(again.removed.is_empty(), "{:?}", again.removed);
    assert_eq!(files(&opts.out), before);
    for rel in [
        covidx::build_dir::LOCK,
        covidx::build_dir::BUILD_INFO,
        covidx::build_dir::AUDIT_MD,
        covidx::build_dir::AUDIT_JSON,
    ] {
        assert!(opts.out.join(rel).is_file(), "{rel}");
    }
}

#[test]
fn a_metadata_only_rebuild_removes_the_earlier_builds_image_outputs() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = demo_sources(tmp.path());
    let full = build(&opts).unwrap();
    let out = BuildDir::new(&opts.out);
    assert!(out.shard_index().exists() && out.augment().exists());
    std::fs::write(tmp.path().join("out/notes.txt"), b"mine").unwrap();
    // An audit of the old build describes it: a rebuild removes it.
    std::fs::create_dir_all(out.audit()).unwrap();
    std::fs::write(out.path(covidx::build_dir::AUDIT_MD), b"old report").unwrap();
    let meta = build(&BuildOptions {
        metadata_only: true,
        ..opts.clone()
    })
    .unwrap();
    assert!(
        meta.removed.iter().any(|r| r.ends_with(".safetensors")),
        "{:?}",
        meta.removed
    );
    for gone in [
        out.shard_index(),
        out.shard_progress(),
        out.augment(),
        out.quarantine(),
        out.shards(),
    ] {
        assert!(!gone.exists(), "{} survived", gone.display());
    }
    // The old report is gone; the new build wrote its own metadata-level audit.
    let report = std::fs::read_to_string(out.path(covidx::build_dir::AUDIT_MD)).unwrap();
    assert!(report.starts_with("# covidx audit"), "{report}");
    assert!(
        tmp.path().join("out/notes.txt").exists(),
        "a file not ours was removed"
    );
    // The lock lists exactly the files of ours that are there.
    // (Besides the lock: build.json and the build's audit reports, which name this machine's
    // folders or describe the build and are not reproducible outputs.)
    let mut listed: Vec<String> = meta.lock.outputs.keys().cloned().collect();
    for extra in [
        covidx::build_dir::LOCK,
        covidx::build_dir::BUILD_INFO,
        covidx::build_dir::AUDIT_MD,
        covidx::build_dir::AUDIT_JSON,
    ] {
        listed.push(extra.to_string());
    }
    listed.sort();
    let present: Vec<String> = files(out.root())
        .into_iter()
        .filter(|f| f != "notes.txt")
        .collect();
    assert_eq!(listed, present);
    let (_, mismatches) = covidx::lock::verify(&out.lock(), &opts.sources).unwrap();
    assert!(mismatches.is_empty(), "{mismatches:?}");
    // Export refuses: this build has no shards (it never pairs the new manifest with old ones).
    let export = bin()
        .args(["export", "--format", "png"])
        .arg(out.root())
        .arg(tmp.path().join("png"))
        .output()
        .unwrap();
    assert!(!export.status.success());
    let err = String::from_utf8_lossy(&export.stderr);
    assert!(err.contains("lists no shards/index.json"), "{err}");
    // A full build afterwards gives the same bytes as the first one.
    let again = build(&opts).unwrap();
    assert_eq!(again.lock, full.lock);
}

#[test]
fn a_second_build_into_a_held_directory_fails_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = demo_sources(tmp.path());
    let held = BuildDir::new(&opts.out).lock_exclusive().unwrap();
    let err = format!("{:#}", build(&opts).unwrap_err());
    assert!(err.contains("in use by another covidx build"), "{err}");
    assert!(!BuildDir::new(&opts.out).manifest().exists());
    drop(held);
    build(&opts).unwrap();
}

#[test]
fn two_concurrent_cli_builds_never_both_write() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = demo_sources(tmp.path());
    let start = || {
        bin()
            .args(["-q", "build"])
            .arg(&opts.pipeline)
            .arg("--sources")
            .arg(&opts.sources)
            .arg("--out")
            .arg(&opts.out)
            .env("COVIDX_SHARD_DELAY_MS", "300")
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let first = start();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let second = start().wait_with_output().unwrap();
    let first = first.wait_with_output().unwrap();
    let ok = [first.status.success(), second.status.success()];
    assert!(ok.contains(&true) && ok.contains(&false), "{ok:?}");
    let loser = if ok[0] { &second } else { &first };
    let err = String::from_utf8_lossy(&loser.stderr);
    assert!(err.contains("in use by another covidx build"), "{err}");
    let (_, mismatches) =
        covidx::lock::verify(&BuildDir::new(&opts.out).lock(), &opts.sources).unwrap();
    assert!(mismatches.is_empty(), "{mismatches:?}");
}

#[test]
fn an_output_inside_the_sources_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = demo_sources(tmp.path());
    for out in [
        opts.sources.clone(),
        opts.sources.join("out/deeper"),
        opts.sources.join("./rsna/../x"),
    ] {
        let err = format!(
            "{:#}",
            build(&BuildOptions {
                out: out.clone(),
                ..opts.clone()
            })
            .unwrap_err()
        );
        assert!(
            err.contains("a build never writes into its inputs"),
            "{}: {err}",
            out.display()
        );
    }
    assert!(!opts.sources.join("out").exists());
}

#[test]
fn export_writes_split_file_names_and_refuses_collisions() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = demo_sources(tmp.path());
    let o = build(&opts).unwrap();
    let png = tmp.path().join("png");
    let run = |extra: &[&str]| {
        bin()
            .args(["-q", "export", "--format", "png"])
            .args(extra)
            .arg(&opts.out)
            .arg(&png)
            .output()
            .unwrap()
    };
    let out = run(&["--all-copies"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = BuildDir::new(&opts.out);
    let manifest = Manifest::read(&dir.manifest()).unwrap();
    for split in [Split::Train, Split::Test] {
        // Every line of the split file has its image under exactly that name, with the
        // sample's pixels.
        let lines = std::fs::read_to_string(dir.split_file(split)).unwrap();
        let data = Dataset::open(&dir, split).unwrap();
        for line in lines.lines() {
            let name = line.split(' ').nth(1).unwrap();
            let path = png.join(split.name()).join(name);
            // PNG content under the split file's name (which may end in .jpeg).
            let bytes = std::fs::read(&path).unwrap();
            let img = image::load_from_memory_with_format(&bytes, image::ImageFormat::Png)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let i = (0..data.len())
                .find(|&i| {
                    let s = data.sample(i).unwrap();
                    s.copy == 0 && manifest.row(s.record as usize).split_image() == name
                })
                .unwrap();
            assert_eq!(
                img.to_luma8().as_raw(),
                data.sample(i).unwrap().image,
                "{name}"
            );
        }
        let exported = std::fs::read_dir(png.join(split.name())).unwrap().count();
        let copies = if split == Split::Train {
            1 + o.pipeline.images.copies as usize
        } else {
            1
        };
        assert_eq!(exported, lines.lines().count() * copies);
    }
    // Two records that the split file gives the same name ("x y.png" is written "x_y.png")
    // are an error naming both, not a silent overwrite.
    let tmp2 = tempfile::tempdir().unwrap();
    let g = tmp2.path().join("sources/g");
    std::fs::create_dir_all(g.join("images")).unwrap();
    for (i, name) in ["x y.png", "x_y.png"].iter().enumerate() {
        let mut b = std::io::Cursor::new(Vec::new());
        covidx::demo::synthetic_xray(i as u32)
            .write_to(&mut b, image::ImageFormat::Png)
            .unwrap();
        std::fs::write(g.join("images").join(name), b.into_inner()).unwrap();
    }
    std::fs::write(g.join("m.csv"), "pid,img,f\n1,x y.png,n\n2,x_y.png,n\n").unwrap();
    let pipeline = r#"
name = "clash"
classes = ["normal"]
[labels]
parse = "whole"
map = { n = "normal" }
[[sources]]
name = "g"
kind = "csv"
dir = "g"
metadata = "m.csv"
columns = { patient = "pid", image = "img", finding = "f" }
[images]
enabled = true
size = 16
"#;
    std::fs::write(tmp2.path().join("p.toml"), pipeline).unwrap();
    let opts2 = BuildOptions::new(
        tmp2.path().join("p.toml"),
        tmp2.path().join("sources"),
        tmp2.path().join("out"),
    );
    build(&opts2).unwrap();
    let out = bin()
        .args(["-q", "export"])
        .arg(&opts2.out)
        .arg(tmp2.path().join("png"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("both named \"x_y.png\""), "{err}");
    assert!(
        err.contains("g/m.csv:2") && err.contains("g/m.csv:3"),
        "{err}"
    );
}
