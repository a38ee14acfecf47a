//! The image stage: shards from the generated miniature, bad images quarantined, --strict,
//! resume after a killed build (byte-identical), real sample images, Python readers, and DICOM
//! pixels against pydicom. Tests needing Python packages print SKIPPED when they are missing
//! (`.ci/run` installs them).

mod common;

use std::path::{Path, PathBuf};

use std::process::Command;

use covidx::build_dir::BuildDir;
use covidx::builder::{build, BuildOptions};
use covidx::record::Split;
use covidx::shards::{Index, Shard};

/// Runs a command to success and returns its stdout; a failure shows its stderr.
fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{:?}: {}",
        cmd,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_covidx")
}

fn demo(dir: &Path) -> covidx::builder::BuildOutcome {
    common::demo_build(dir)
}

#[test]
fn demo_shards_hold_every_record_with_its_copies() {
    let tmp = tempfile::tempdir().unwrap();
    let o = demo(tmp.path());
    let img = o.images.as_ref().expect("demo enables the image stage");
    assert!(img.quarantine.is_empty(), "{:?}", img.quarantine);
    let index = Index::load(&BuildDir::new(tmp.path().join("out")).shard_index()).unwrap();
    assert!(index.complete);
    assert_eq!(index.size, 64);
    let mut seen = std::collections::BTreeMap::new();
    for (split, entries) in &index.splits {
        for e in entries {
            let path = BuildDir::new(tmp.path().join("out"))
                .shard(covidx::shards::index::split_of(split).unwrap(), &e.file);
            assert_eq!(covidx::fsutil::sha256_file(&path).unwrap(), e.sha256);
            let d = Shard::open(&path).unwrap().to_data();
            assert_eq!(d.len(), e.samples);
            for i in 0..d.len() {
                let r = &o.records[d.record[i] as usize];
                assert_eq!(Some(d.labels[i] as usize), r.label);
                assert_eq!(r.split.unwrap().name(), split);
                *seen.entry((split.clone(), d.record[i])).or_insert(0) += 1;
                if split == "test" {
                    assert_eq!(d.copy[i], 0);
                }
            }
        }
    }
    let train: Vec<_> = seen.iter().filter(|((s, _), _)| s == "train").collect();
    assert_eq!(train.len(), o.assignment.train.len());
    assert!(
        train.iter().all(|(_, &n)| n == 3),
        "clean + 2 copies per train record"
    );
    assert_eq!(
        seen.len(),
        o.assignment.train.len() + o.assignment.test.len()
    );
    // Shards, index, quarantine and augment table are in the lock and verify.
    for f in [
        "shards/index.json",
        "shards/train/shard-00000.safetensors",
        "augment.parquet",
        "quarantine.csv",
    ] {
        assert!(o.lock.outputs.contains_key(f), "{f}");
    }
    let (_, mismatches) = covidx::lock::verify(
        &BuildDir::new(tmp.path().join("out")).lock(),
        &tmp.path().join("sources"),
    )
    .unwrap();
    assert!(mismatches.is_empty(), "{mismatches:?}");
    // The augmentation table lists every sample, and `process` regenerates any sample from
    // (seed, record, copy) byte for byte with the listed parameters.
    let aug = covidx::manifest::read_table(
        &BuildDir::new(tmp.path().join("out")).augment(),
        covidx::imaging::stage::tables::AUGMENT_FORMAT,
        covidx::imaging::stage::tables::AUGMENT_VERSION,
    )
    .unwrap();
    assert_eq!(aug.height(), seen.values().sum::<usize>());
    let col = |name: &str| aug.column(name).unwrap().as_materialized_series().clone();
    let (records, copies, angles) = (col("record"), col("copy"), col("angle"));
    let (records, copies, angles) = (
        records.u64().unwrap(),
        copies.u32().unwrap(),
        angles.f32().unwrap(),
    );
    let (pipeline, _) = covidx::config::Pipeline::load(&tmp.path().join("demo.toml")).unwrap();
    let d = Shard::open(
        &BuildDir::new(tmp.path().join("out"))
            .shard(Split::Train, &covidx::build_dir::shard_file(0)),
    )
    .unwrap()
    .to_data();
    let s2 = 64 * 64;
    for k in (0..d.len()).step_by(5) {
        let r = &o.records[d.record[k] as usize];
        let outs = covidx::imaging::stage::process(
            &tmp.path().join("sources").join(&r.path),
            &pipeline.images,
            pipeline.seed,
            &covidx::imaging::stage::record_key(r),
            pipeline.images.copies,
        )
        .unwrap();
        let (c, params, px) = &outs[d.copy[k] as usize];
        assert_eq!(*c, d.copy[k] as u32);
        assert_eq!(px[..], d.images[k * s2..(k + 1) * s2], "sample {k}");
        let row = (0..aug.height())
            .find(|&i| records.get(i) == Some(d.record[k] as u64) && copies.get(i) == Some(*c))
            .expect("sample listed in augment.parquet");
        assert_eq!(angles.get(row), Some(params.angle));
    }
}

const BAD_PIPELINE: &str = r#"
name = "bad-images"
classes = ["normal", "pneumonia"]
[labels]
parse = "whole"
map = { n = "normal", p = "pneumonia" }
[[sources]]
name = "g"
kind = "csv"
dir = "g"
metadata = "m.csv"
columns = { patient = "pid", image = "img", finding = "f" }
[images]
enabled = true
size = 32
copies = 1
"#;

fn bad_corpus(dir: &Path) -> BuildOptions {
    let g = dir.join("sources/g/images");
    std::fs::create_dir_all(&g).unwrap();
    let encoded = |seed: u32, format: image::ImageFormat| {
        let mut b = std::io::Cursor::new(Vec::new());
        covidx::demo::synthetic_xray(seed)
            .write_to(&mut b, format)
            .unwrap();
        b.into_inner()
    };
    let good = encoded(1, image::ImageFormat::Png);
    let jpeg = encoded(2, image::ImageFormat::Jpeg);
    std::fs::write(g.join("good.png"), &good).unwrap();
    std::fs::write(g.join("empty.png"), b"").unwrap();
    std::fs::write(g.join("truncated.png"), &good[..good.len() / 2]).unwrap();
    std::fs::write(g.join("jpeg-named.png"), &jpeg).unwrap();
    std::fs::write(g.join("noise.jpg"), b"this is not an image at all").unwrap();
    std::fs::write(g.join("truncated.jpg"), &jpeg[..jpeg.len() / 2]).unwrap();
    std::fs::write(
        dir.join("sources/g/m.csv"),
        "pid,img,f\n1,good.png,n\n2,empty.png,p\n3,truncated.png,n\n4,jpeg-named.png,p\n5,noise.jpg,n\n6,truncated.jpg,p\n",
    )
    .unwrap();
    std::fs::write(dir.join("p.toml"), BAD_PIPELINE).unwrap();
    BuildOptions::new(dir.join("p.toml"), dir.join("sources"), dir.join("out"))
}

#[test]
fn bad_images_are_quarantined_and_the_run_continues() {
    let tmp = tempfile::tempdir().unwrap();
    let o = build(&bad_corpus(tmp.path())).unwrap();
    let q = &o.images.as_ref().unwrap().quarantine;
    let reasons: Vec<(&str, &str)> = q
        .iter()
        .map(|e| (e.path.rsplit('/').next().unwrap(), e.reason.as_str()))
        .collect();
    assert_eq!(
        reasons,
        [
            ("empty.png", "empty"),
            ("truncated.png", "corrupt"),
            ("jpeg-named.png", "wrong-extension"),
            ("noise.jpg", "unknown-format"),
            ("truncated.jpg", "corrupt")
        ]
    );
    let csv = std::fs::read_to_string(BuildDir::new(tmp.path().join("out")).quarantine()).unwrap();
    assert!(
        csv.starts_with("record,path,reason,detail\n") && csv.contains("g/images/empty.png,empty")
    );
    let index = Index::load(&BuildDir::new(tmp.path().join("out")).shard_index()).unwrap();
    assert_eq!(
        index.splits["train"][0].samples, 2,
        "only the good image, clean + 1 copy"
    );
    let manifest =
        std::fs::read_to_string(BuildDir::new(tmp.path().join("out")).manifest_csv()).unwrap();
    assert!(
        manifest.contains("wrong-extension: content is Jpeg"),
        "{manifest}"
    );

    let strict = BuildOptions {
        strict: true,
        ..bad_corpus(tmp.path())
    };
    let err = format!("{:#}", build(&strict).unwrap_err());
    assert!(err.contains("--strict"), "{err}");
    assert!(
        [
            "empty.png: empty",
            "truncated.png: corrupt",
            "jpeg-named.png: wrong-extension",
            "noise.jpg: unknown-format"
        ]
        .iter()
        .any(|m| err.contains(m)),
        "{err}"
    );
    // A fresh strict build fails too (nothing reused).
    let fresh = tempfile::tempdir().unwrap();
    let strict = BuildOptions {
        strict: true,
        ..bad_corpus(fresh.path())
    };
    assert!(build(&strict).is_err());
}

fn resume_corpus(dir: &Path) -> PathBuf {
    let g = dir.join("sources/g/images");
    std::fs::create_dir_all(&g).unwrap();
    let mut csv = String::from("pid,img,f\n");
    for i in 0..140u32 {
        let img = image::imageops::resize(
            &covidx::demo::synthetic_xray(i),
            160,
            200,
            image::imageops::FilterType::Triangle,
        );
        img.save(g.join(format!("x{i}.png"))).unwrap();
        csv.push_str(&format!(
            "{},x{i}.png,{}\n",
            i / 2,
            if i % 3 == 0 { "p" } else { "n" }
        ));
    }
    std::fs::write(dir.join("sources/g/m.csv"), csv).unwrap();
    let p = BAD_PIPELINE.replace("size = 32", "size = 128\nshard_mib = 1");
    std::fs::write(dir.join("p.toml"), p).unwrap();
    dir.join("p.toml")
}

#[test]
fn a_killed_build_resumes_to_identical_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let pipeline = resume_corpus(tmp.path());
    let sources = tmp.path().join("sources");
    let run = |out: &Path, delay: &str| {
        Command::new(bin())
            .args(["-q", "build"])
            .arg(&pipeline)
            .arg("--sources")
            .arg(&sources)
            .arg("--out")
            .arg(out)
            .env("COVIDX_SHARD_DELAY_MS", delay)
            .spawn()
            .unwrap()
    };
    let whole = tmp.path().join("whole");
    assert!(run(&whole, "0").wait().unwrap().success());
    let n_shards = Index::load(&BuildDir::new(&whole).shard_index())
        .unwrap()
        .splits["train"]
        .len();
    assert!(n_shards >= 4, "{n_shards} shards");

    let killed = tmp.path().join("killed");
    let mut child = run(&killed, "400");
    let shard =
        |k: usize| BuildDir::new(&killed).shard(Split::Train, &covidx::build_dir::shard_file(k));
    let start = std::time::Instant::now();
    while !shard(1).exists() && start.elapsed().as_secs() < 60 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        shard(1).exists() && !shard(n_shards - 1).exists(),
        "killed mid-build"
    );
    assert!(!killed.join("covidx.lock.json").exists());
    // What a kill while a shard streams (or while it drops quarantined slots) leaves behind:
    // the resumed build removes it.
    let train = BuildDir::new(&killed).shard_split_dir(Split::Train);
    std::fs::write(
        train.join(".shard-00002.safetensors.tmp-999999"),
        b"partial",
    )
    .unwrap();
    std::fs::write(
        train.join("..shard-00002.safetensors.tmp-999999.tmp-999999"),
        b"partial",
    )
    .unwrap();

    let out = Command::new(bin())
        .args(["build"])
        .arg(&pipeline)
        .arg("--sources")
        .arg(&sources)
        .arg("--out")
        .arg(&killed)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let reused: usize = text
        .split("shards reused from an interrupted run: ")
        .nth(1)
        .and_then(|t| t.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{text}"));
    assert!((1..n_shards).contains(&reused), "{text}");
    assert_eq!(common::tree_bytes(&whole), common::tree_bytes(&killed));
    let left: Vec<_> = std::fs::read_dir(&train)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-"))
        .collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
}

#[test]
fn real_sample_images_decode_and_python_reads_the_shards() {
    let Some(data) =
        common::shared_or_skip("real_sample_images_decode_and_python_reads_the_shards")
    else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let corpus = tmp.path().join("corpus");
    run_ok(
        Command::new("python3")
            .arg(data.join("../bench/make_corpus.py"))
            .arg(&corpus)
            .arg("40"),
    );
    let pipeline = tmp.path().join("p.toml");
    let text = std::fs::read_to_string(common::crate_path("pipelines/bench.toml"))
        .unwrap()
        .replace("size = 480", "size = 96")
        .replace("copies = 2", "copies = 1");
    std::fs::write(&pipeline, text).unwrap();
    let out = tmp.path().join("out");
    let o = build(&BuildOptions::new(pipeline, corpus, out.clone())).unwrap();
    let img = o.images.as_ref().unwrap();
    assert!(img.quarantine.is_empty(), "{:?}", img.quarantine);
    let samples: usize = img.index.splits["train"].iter().map(|e| e.samples).sum();
    assert_eq!(samples, 80);
    // The audit of the 40 real images: facts from the stage, no false near copy among
    // different radiographs (the closest real pair is 12 pHash bits apart, the threshold 6).
    let b = covidx::audit::Build::open(&covidx::build_dir::BuildDir::new(&out)).unwrap();
    let opts = covidx::audit::Options {
        images: true,
        ..Default::default()
    };
    let a = covidx::audit::audit(&b, &opts).unwrap();
    let im = a.images.as_ref().unwrap();
    assert_eq!(im.provenance.from_build, 40, "{:?}", im.provenance);
    assert!(
        im.duplicates.groups.is_empty(),
        "{:#?}",
        im.duplicates.groups
    );
    let t = &a.confounding.by_source;
    eprintln!(
        "40 real images: class x source {:?} over {:?}: {:?}, Cramér's V {:.3}; probe {:?}",
        t.classes, t.columns, t.counts, t.cramers_v, im.probe.results
    );

    let Some(py) = common::python_with(&["numpy", "safetensors"], "python reads the shards") else {
        return;
    };
    let script = r#"
import csv, json, sys, os
from safetensors.numpy import load_file
out = sys.argv[1]
index = json.load(open(os.path.join(out, "shards/index.json")))
labels = {int(r["record"]): r["label"] for r in csv.DictReader(open(os.path.join(out, "manifest.csv")))}
classes = index["classes"]
n = 0
for split, entries in index["splits"].items():
    for e in entries:
        t = load_file(os.path.join(out, "shards", split, e["file"]))
        assert t["images"].shape == (e["samples"], 1, 96, 96) and str(t["images"].dtype) == "uint8"
        assert t["labels"].dtype.name == "int64" and t["record"].dtype.name == "int64"
        for rec, lab in zip(t["record"], t["labels"]):
            assert classes[lab] == labels[int(rec)], (rec, lab)
        counts = [int((t["labels"] == c).sum()) for c in range(len(classes))]
        assert counts == e["class_counts"], (counts, e["class_counts"])
        n += e["samples"]
print(n)
"#;
    let stdout = run_ok(Command::new(py).arg("-c").arg(script).arg(&out));
    assert_eq!(stdout.trim(), "80");
}

#[test]
fn dicom_pixels_match_pydicom() {
    let Some(py) = common::python_with(&["pydicom", "numpy", "PIL"], "dicom_pixels_match_pydicom")
    else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    // pydicom's bundled test files: uncompressed, RLE and JPEG baseline.
    let script = r#"
import sys, os, numpy as np, pydicom
from pydicom.data import get_testdata_file
out = sys.argv[1]
names = ["CT_small.dcm", "MR_small.dcm", "MR_small_RLE.dcm", "SC_rgb_jpeg_dcmtk.dcm",
         "JPEG-lossy.dcm", "OBXXXX1A.dcm", "SC_rgb_rle.dcm"]
for name in names:
    try:
        path = get_testdata_file(name, download=False)
    except TypeError:
        path = get_testdata_file(name)
    if not path:
        continue
    ds = pydicom.dcmread(path)
    try:
        a = ds.pixel_array
    except Exception as e:
        print("skip", name, e, file=sys.stderr)
        continue
    if ds.get("NumberOfFrames", 1) > 1:
        a = a[0]
    a = np.ascontiguousarray(a, dtype=np.float64)
    np.save(os.path.join(out, name + ".npy"), a)
    print(name, ds.file_meta.TransferSyntaxUID, path)
"#;
    let listing = run_ok(Command::new(py).arg("-c").arg(script).arg(tmp.path()));
    let mut checked = Vec::new();
    for line in listing.lines() {
        let mut it = line.splitn(3, ' ');
        let (name, ts, path) = (it.next().unwrap(), it.next().unwrap(), it.next().unwrap());
        let npy = std::fs::read(tmp.path().join(format!("{name}.npy"))).unwrap();
        let want = covidx::npy::read_f64(&npy, name).unwrap();
        let bytes = std::fs::read(path).unwrap();
        let (w, h, got) = covidx::imaging::dicom::dicom_raw_values(&bytes)
            .unwrap_or_else(|e| panic!("{name} ({ts}): {e}"));
        assert_eq!(got.len(), want.len(), "{name}: {w}x{h}");
        let lossy = ts == "1.2.840.10008.1.2.4.50" || ts == "1.2.840.10008.1.2.4.51";
        let (mut worst, mut sum) = (0f64, 0f64);
        for (a, b) in got.iter().zip(&want) {
            worst = worst.max((a - b).abs());
            sum += (a - b).abs();
        }
        let mean = sum / got.len() as f64;
        if lossy {
            assert!(
                worst <= 8.0 && mean < 1.0,
                "{name}: worst {worst}, mean {mean}"
            );
        } else {
            assert_eq!(worst, 0.0, "{name} ({ts})");
        }
        // And the 8-bit decode path accepts it.
        covidx::imaging::decode::decode_bytes(&bytes, Path::new("x.dcm")).unwrap();
        checked.push((name.to_string(), ts.to_string()));
    }
    eprintln!("checked against pydicom: {checked:?}");
    assert!(
        checked.iter().any(|(_, ts)| ts == "1.2.840.10008.1.2.5"),
        "an RLE file"
    );
    assert!(
        checked.iter().any(|(_, ts)| ts == "1.2.840.10008.1.2.4.50"),
        "a JPEG baseline file"
    );
    assert!(
        checked
            .iter()
            .any(|(_, ts)| ts.starts_with("1.2.840.10008.1.2.1") || ts == "1.2.840.10008.1.2"),
        "an uncompressed file"
    );
}

#[test]
fn demo_dicoms_decode_in_every_encoding() {
    for enc in [
        covidx::demo::DicomEncoding::ExplicitLittle,
        covidx::demo::DicomEncoding::Implicit16,
        covidx::demo::DicomEncoding::JpegBaseline,
    ] {
        let bytes = covidx::demo::dicom(3, "p", "PA", enc).unwrap();
        let img = covidx::imaging::decode::decode_bytes(&bytes, Path::new("p.dcm")).unwrap();
        assert_eq!(img.dimensions(), (covidx::demo::SIZE, covidx::demo::SIZE));
        let reference = covidx::demo::synthetic_xray(3);
        let diff: f64 = img
            .pixels()
            .zip(reference.pixels())
            .map(|(a, b)| (a[0] as f64 - b[0] as f64).abs())
            .sum::<f64>()
            / (img.width() * img.height()) as f64;
        // Min-max normalisation stretches the range; the picture must still be the same.
        assert!(diff < 40.0, "{enc:?}: mean difference {diff}");
    }
}

/// The bad corpus planned (its images hashed at ingest), after `settle`: the build options,
/// pipeline, records, assignment and the record of `good.png`.
fn planned_bad_corpus(
    dir: &Path,
    settle: std::time::Duration,
) -> (
    BuildOptions,
    covidx::config::Pipeline,
    Vec<covidx::record::Record>,
    covidx::split::Assignment,
    usize,
) {
    let opts = bad_corpus(dir);
    std::thread::sleep(settle);
    let (pipeline, _) = covidx::config::Pipeline::load(&opts.pipeline).unwrap();
    let (records, assignment, _) =
        covidx::builder::plan(&pipeline, &opts.sources, covidx::ingest::ImageCheck::Hash).unwrap();
    let good = records
        .iter()
        .position(|r| r.path.ends_with("good.png"))
        .unwrap();
    (opts, pipeline, records, assignment, good)
}

/// The image stage alone over `records`, into `out`.
fn run_stage(
    opts: &BuildOptions,
    pipeline: &covidx::config::Pipeline,
    records: &[covidx::record::Record],
    assignment: &covidx::split::Assignment,
    out: &Path,
) -> covidx::imaging::stage::StageOutcome {
    use covidx::imaging::stage::{self, StageInput, StageOptions};
    let dir = covidx::build_dir::BuildDir::new(out);
    let input = StageInput {
        pipeline,
        sources_dir: &opts.sources,
        records,
        assignment,
        dir: &dir,
        params: "test",
    };
    stage::run(&input, StageOptions::default()).unwrap()
}

#[test]
fn an_image_that_changed_since_ingest_is_quarantined_as_changed() {
    let tmp = tempfile::tempdir().unwrap();
    let (opts, pipeline, mut records, assignment, good) =
        planned_bad_corpus(tmp.path(), std::time::Duration::ZERO);
    records[good].sha256 = Some("0".repeat(64));
    let outcome = run_stage(&opts, &pipeline, &records, &assignment, &opts.out);
    let q = outcome
        .quarantine
        .iter()
        .find(|q| q.record == good)
        .unwrap();
    assert_eq!(q.reason, "changed");
    assert!(q.detail.contains("but ingest read 0000"), "{}", q.detail);
}

#[test]
fn a_settled_image_is_vouched_for_by_its_stamp_and_a_rewritten_one_is_hashed_again() {
    let tmp = tempfile::tempdir().unwrap();
    // Only files last changed FileStamp::SETTLE before ingest keep a stamp.
    let settle = covidx::fsutil::FileStamp::SETTLE + std::time::Duration::from_millis(100);
    let (opts, pipeline, mut records, assignment, good) = planned_bad_corpus(tmp.path(), settle);
    assert!(
        records[good].stamp.is_some(),
        "a settled file keeps its stamp"
    );
    // A wrong ingest hash under an unchanged stamp: the stamp vouches, the file is not hashed
    // again (which is what the stamp saves).
    records[good].sha256 = Some("0".repeat(64));
    let first = run_stage(
        &opts,
        &pipeline,
        &records,
        &assignment,
        &tmp.path().join("a"),
    );
    assert!(first.quarantine.iter().all(|q| q.record != good));
    // The same bytes written again: a new stamp, so the file is hashed and the (wrong) ingest
    // hash is caught.
    let path = opts.sources.join(&records[good].path);
    std::fs::write(&path, std::fs::read(&path).unwrap()).unwrap();
    let second = run_stage(
        &opts,
        &pipeline,
        &records,
        &assignment,
        &tmp.path().join("b"),
    );
    let q = second
        .quarantine
        .iter()
        .find(|q| q.record == good)
        .expect("re-hashed");
    assert_eq!(q.reason, "changed");
}

#[test]
fn a_resume_state_written_with_other_parameters_is_not_trusted() {
    let tmp = tempfile::tempdir().unwrap();
    let first = demo(tmp.path());
    let n = first.images.as_ref().unwrap().written;
    let dir = covidx::build_dir::BuildDir::new(tmp.path().join("out"));
    let before = common::tree_bytes(dir.root());
    // Same shards on disk, but the resume state says other inputs wrote them.
    let mut progress = covidx::shards::Progress::load(&dir.shard_progress()).unwrap();
    progress.params = "other inputs".into();
    std::fs::write(dir.shard_progress(), progress.to_bytes()).unwrap();
    let opts = BuildOptions::new(
        tmp.path().join("demo.toml"),
        tmp.path().join("sources"),
        dir.root().to_path_buf(),
    );
    let again = build(&opts).unwrap();
    let img = again.images.as_ref().unwrap();
    assert_eq!((img.reused, img.written), (0, n));
    assert_eq!(common::tree_bytes(dir.root()), before);
    // With its own parameters, every shard is kept.
    let third = build(&opts).unwrap();
    assert_eq!(third.images.as_ref().unwrap().reused, n);
}
