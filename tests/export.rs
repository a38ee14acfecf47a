//! `covidx export --format webdataset|hf`: shards for PyTorch multi-GPU trainers, read back
//! here (tar members and Parquet columns against the build's own shards) and, where
//! `COVIDX_PYTHON` has them, by the `webdataset` and `datasets` packages themselves
//! (tests/python/check_export.py); byte-identical across reruns and thread counts, stale
//! shards removed, and a build changed after its lock refused.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use covidx::build_dir::BuildDir;
use covidx::export::Record;
use covidx::record::Split;
use covidx::shards::Dataset;
use polars::prelude::*;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_covidx")
}

/// The demo build (two augmented copies per training sample) under `dir/out`.
fn demo(dir: &Path) -> PathBuf {
    common::demo_build(dir);
    dir.join("out")
}

/// `covidx export` with `args`; returns (success, stdout + stderr).
fn export(build: &Path, out: &Path, format: &str, args: &[&str], threads: usize) -> (bool, String) {
    let o = Command::new(bin())
        .args(["export", "--format", format])
        .arg(build)
        .arg(out)
        .args(args)
        .env("RAYON_NUM_THREADS", threads.to_string())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.success(), text)
}

fn export_ok(build: &Path, out: &Path, format: &str, args: &[&str]) -> Record {
    let (ok, text) = export(build, out, format, args, 2);
    assert!(ok, "covidx export --format {format} failed:\n{text}");
    Record::load(&out.join("export.json")).unwrap()
}

/// {split: {(record, copy): (label, pixels)}} of the build, clean samples only unless
/// `all_copies`.
type Samples = BTreeMap<String, BTreeMap<(u64, u8), (usize, Vec<u8>)>>;

fn build_samples(build: &Path, all_copies: bool) -> Samples {
    let dir = BuildDir::new(build);
    let mut out = Samples::new();
    for split in [Split::Train, Split::Test] {
        let data = Dataset::open(&dir, split).unwrap();
        let m = out.entry(split.name().to_string()).or_default();
        for i in 0..data.len() {
            let s = data.sample(i).unwrap();
            if all_copies || s.copy == 0 {
                m.insert((s.record, s.copy), (s.label, s.image.to_vec()));
            }
        }
    }
    out
}

fn png_pixels(bytes: &[u8]) -> Vec<u8> {
    image::load_from_memory(bytes)
        .unwrap()
        .into_luma8()
        .into_raw()
}

/// Runs tests/python/check_export.py when `COVIDX_PYTHON` has the loader; returns its
/// per-split sample counts.
fn python_check(
    kind: &str,
    module: &str,
    export: &Path,
    build: &Path,
) -> Option<BTreeMap<String, usize>> {
    let py = common::python_with(
        &["numpy", "safetensors", module],
        &format!("{kind} export read by the {module} package"),
    )?;
    let o = Command::new(py)
        .arg(common::crate_path("tests/python/check_export.py"))
        .arg(kind)
        .arg(export)
        .arg(build)
        .env("HF_HUB_OFFLINE", "1")
        .env("HF_DATASETS_OFFLINE", "1")
        .env("HF_HOME", export.parent().unwrap().join("hf-home"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "check_export.py {kind} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let line: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(line["ok"], true);
    // The script compared labels and pixels itself; the counts come back.
    Some(serde_json::from_value(line["splits"].clone()).unwrap())
}

fn counts(s: &Samples) -> BTreeMap<String, usize> {
    s.iter().map(|(k, v)| (k.clone(), v.len())).collect()
}

#[test]
fn webdataset_shards_hold_every_sample_once_with_its_label_pixels_and_metadata() {
    let t = tempfile::tempdir().unwrap();
    let build = demo(t.path());
    let out = t.path().join("wds");
    let record = export_ok(
        &build,
        &out,
        "webdataset",
        &["--all-copies", "--samples-per-shard", "4"],
    );
    let want = build_samples(&build, true);
    assert!(
        want["train"].keys().any(|k| k.1 > 0),
        "the demo has augmented copies"
    );
    assert_eq!(record.kind, "webdataset");
    assert!(record.all_copies);
    assert_eq!(record.classes, ["normal", "pneumonia", "COVID-19"]);

    let mut got = Samples::new();
    for (split, files) in &record.splits {
        assert!(files.len() > 1, "{split}: several shards at 4 samples each");
        for (k, f) in files.iter().enumerate() {
            assert_eq!(f.file, format!("{split}-{k:06}.tar"));
            let bytes = std::fs::read(out.join(&f.file)).unwrap();
            assert_eq!(bytes.len() as u64, f.bytes);
            assert_eq!(covidx::fsutil::sha256_hex(&bytes), f.sha256, "{}", f.file);
            let mut tar = tar::Archive::new(&bytes[..]);
            let mut members: Vec<(String, Vec<u8>)> = Vec::new();
            for e in tar.entries().unwrap() {
                let mut e = e.unwrap();
                assert_eq!(e.header().mtime().unwrap(), 0);
                assert_eq!(e.header().uid().unwrap(), 0);
                let name = e.path().unwrap().display().to_string();
                let mut data = Vec::new();
                std::io::Read::read_to_end(&mut e, &mut data).unwrap();
                members.push((name, data));
            }
            assert_eq!(members.len(), 3 * f.samples, "{}", f.file);
            for m in members.chunks(3) {
                let key = m[0].0.strip_suffix(".png").unwrap();
                assert_eq!(m[1].0, format!("{key}.cls"));
                assert_eq!(m[2].0, format!("{key}.json"));
                let label: usize = std::str::from_utf8(&m[1].1).unwrap().parse().unwrap();
                let meta: serde_json::Value = serde_json::from_slice(&m[2].1).unwrap();
                let rc = (
                    meta["record"].as_u64().unwrap(),
                    meta["copy"].as_u64().unwrap() as u8,
                );
                assert_eq!(key, format!("{:07}_{}", rc.0, rc.1));
                assert_eq!(meta["label"], label);
                assert_eq!(meta["class"], record.classes[label].as_str());
                assert_eq!(meta["split"], split.as_str());
                assert!(meta["patient"].as_str().unwrap().contains(':'), "{meta}");
                let prev = got
                    .entry(split.clone())
                    .or_default()
                    .insert(rc, (label, png_pixels(&m[0].1)));
                assert!(prev.is_none(), "{key} twice");
            }
        }
    }
    assert_eq!(got, want, "labels and pixels equal the build's shards");

    if let Some(py) = python_check("webdataset", "webdataset", &out, &build) {
        assert_eq!(py, counts(&want));
    }
}

#[test]
fn hf_parquet_shards_hold_every_clean_sample_with_a_classlabel_and_load_with_datasets() {
    let t = tempfile::tempdir().unwrap();
    let build = demo(t.path());
    let out = t.path().join("hf");
    let record = export_ok(&build, &out, "hf", &["--samples-per-shard", "5"]);
    let want = build_samples(&build, false);
    assert!(!record.all_copies);

    let mut got = Samples::new();
    for (split, files) in &record.splits {
        let n = files.len();
        for (k, f) in files.iter().enumerate() {
            assert_eq!(f.file, format!("data/{split}-{k:05}-of-{n:05}.parquet"));
            let file = std::fs::File::open(out.join(&f.file)).unwrap();
            let df = ParquetReader::new(file).finish().unwrap();
            let names: Vec<&str> = df.get_column_names().iter().map(|s| s.as_str()).collect();
            assert_eq!(
                names,
                [
                    "image",
                    "label",
                    "key",
                    "record",
                    "copy",
                    "source",
                    "patient",
                    "split_image",
                    "path",
                    "image_sha256",
                    "view",
                    "finding"
                ]
            );
            assert_eq!(df.height(), f.samples);
            let image = df.column("image").unwrap().struct_().unwrap().clone();
            let bytes = image.field_by_name("bytes").unwrap();
            let bytes = bytes.binary().unwrap();
            let label = df.column("label").unwrap().i64().unwrap();
            let rec = df.column("record").unwrap().u64().unwrap();
            let copy = df.column("copy").unwrap().u32().unwrap();
            for i in 0..df.height() {
                let rc = (rec.get(i).unwrap(), copy.get(i).unwrap() as u8);
                let prev = got.entry(split.clone()).or_default().insert(
                    rc,
                    (
                        label.get(i).unwrap() as usize,
                        png_pixels(bytes.get(i).unwrap()),
                    ),
                );
                assert!(prev.is_none());
            }
        }
    }
    assert_eq!(
        got, want,
        "labels and pixels equal the build's clean samples"
    );
    let card = std::fs::read_to_string(out.join("README.md")).unwrap();
    assert!(card.starts_with("---\nconfigs:\n"), "{card}");
    assert!(
        card.contains("class_label:") && card.contains("'2': 'COVID-19'"),
        "{card}"
    );
    assert!(card.contains(&record.build_lock_sha256));

    if let Some(py) = python_check("hf", "datasets", &out, &build) {
        assert_eq!(py, counts(&want));
    }
}

#[test]
fn exports_are_byte_identical_for_any_thread_count_and_a_rerun_removes_stale_shards() {
    let t = tempfile::tempdir().unwrap();
    let build = demo(t.path());
    for format in ["webdataset", "hf"] {
        let a = t.path().join(format!("{format}-a"));
        let b = t.path().join(format!("{format}-b"));
        let args = ["--all-copies", "--samples-per-shard", "3"];
        let (ok, text) = export(&build, &a, format, &args, 1);
        assert!(ok, "{text}");
        // Into b: first a finer export, a temp file a killed run left, and a file of the user.
        let (ok, text) = export(
            &build,
            &b,
            format,
            &["--all-copies", "--samples-per-shard", "1"],
            3,
        );
        assert!(ok, "{text}");
        let first = Record::load(&b.join("export.json")).unwrap();
        let temp = if format == "hf" {
            "data/.train-00099-of-00100.parquet.tmp-1234"
        } else {
            ".train-000099.tar.tmp-1234"
        };
        std::fs::write(b.join(temp), b"half").unwrap();
        std::fs::write(b.join("notes.txt"), b"mine").unwrap();
        let (ok, text) = export(&build, &b, format, &args, 3);
        assert!(ok, "{text}");
        assert!(
            first.splits["train"].len()
                > Record::load(&b.join("export.json")).unwrap().splits["train"].len()
        );
        assert_eq!(std::fs::read(b.join("notes.txt")).unwrap(), b"mine");
        std::fs::remove_file(b.join("notes.txt")).unwrap();
        let names = |d: &Path| -> Vec<String> {
            let mut v: Vec<String> = walk(d);
            v.sort();
            v
        };
        assert_eq!(
            names(&a),
            names(&b),
            "{format}: stale shards and temps removed"
        );
        assert_eq!(
            common::tree_bytes(&a),
            common::tree_bytes(&b),
            "{format}: 1 and 3 threads, fresh and rerun, give the same bytes"
        );
    }
}

/// Every file under `d`, relative, temp files included.
fn walk(d: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![d.to_path_buf()];
    while let Some(x) = stack.pop() {
        for e in std::fs::read_dir(&x).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(d).unwrap().display().to_string());
            }
        }
    }
    out
}

#[test]
fn export_refuses_a_build_changed_after_its_lock_and_writes_nothing() {
    let t = tempfile::tempdir().unwrap();
    let build = demo(t.path());
    let (ok, text) = export(
        &build,
        &t.path().join("x"),
        "webdataset",
        &["--samples-per-shard", "0"],
        1,
    );
    assert!(!ok && text.contains("--samples-per-shard"), "{text}");
    let manifest = BuildDir::new(&build).manifest();
    let mut bytes = std::fs::read(&manifest).unwrap();
    bytes.push(0);
    std::fs::write(&manifest, bytes).unwrap();
    for format in ["webdataset", "hf", "png"] {
        let out = t.path().join(format);
        let (ok, text) = export(&build, &out, format, &[], 2);
        assert!(!ok, "{format}: exported a changed build");
        assert!(
            text.contains("manifest.parquet") && text.contains("covidx verify"),
            "{format}: {text}"
        );
        assert!(!out.exists(), "{format}: wrote {:?}", walk(&out));
    }
}
