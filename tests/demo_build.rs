//! End-to-end tests on the generated miniature (no ../shared needed): every reader quirk, the
//! exclusion reasons, split order, verify, and byte-identical outputs across thread counts.

mod common;

use std::path::Path;
use std::process::Command;

use common::tree_bytes;
use covidx::build_dir::BuildDir;
use covidx::builder::{build, BuildOptions};
use covidx::record::Exclusion;
use covidx::record::Split;

fn demo_build(dir: &Path, metadata_only: bool) -> covidx::builder::BuildOutcome {
    let sources = dir.join("sources");
    covidx::demo::write_sources(&sources).unwrap();
    let pipeline = dir.join("demo.toml");
    std::fs::write(&pipeline, covidx::demo::PIPELINE).unwrap();
    build(&BuildOptions {
        metadata_only,
        ..BuildOptions::new(pipeline, sources, dir.join("out"))
    })
    .unwrap()
}

#[test]
fn demo_build_handles_every_quirk() {
    let tmp = tempfile::tempdir().unwrap();
    let o = demo_build(tmp.path(), false);
    let find = |src: &str, image: &str| {
        o.records
            .iter()
            .find(|r| r.source == src && r.image.starts_with(image))
            .unwrap_or_else(|| panic!("{src} {image}"))
    };
    // Cohen: multi-line note (next row starts on line 5), trailing space trimmed, spaces kept.
    assert_eq!(find("cohen", "covid-1-day3").line, 5);
    assert_eq!(
        find("cohen", "legionella-14.png").image,
        "legionella-14.png"
    );
    assert_eq!(find("cohen", "legionella-14").label, Some(1));
    assert!(find("cohen", "covid-5").detail.contains("unquoted commas"));
    assert_eq!(
        find("cohen", "covid-2-lateral").exclusion,
        Some(Exclusion::ViewFiltered)
    );
    assert_eq!(
        find("cohen", "covid-3.nii").exclusion,
        Some(Exclusion::ViewFiltered)
    );
    assert_eq!(find("cohen", "herpes-11").parsed, "Herpes");
    assert_eq!(
        find("cohen", "herpes-11").exclusion,
        Some(Exclusion::UnmappedFinding)
    );
    assert_eq!(
        find("cohen", "todo-10").exclusion,
        Some(Exclusion::UnmappedFinding)
    );
    assert_eq!(
        find("cohen", "covid-13-missing").exclusion,
        Some(Exclusion::MissingImage)
    );
    let dups: Vec<_> = o
        .records
        .iter()
        .filter(|r| r.exclusion == Some(Exclusion::Duplicate))
        .collect();
    assert_eq!(dups.len(), 1);
    assert!(dups[0]
        .detail
        .contains("covid-chestxray-dataset/metadata.csv:"));
    // Figure1: Latin-1 decoded, jpg/png resolution, suffixed ids, blank finding, no image.
    assert_eq!(find("figure1", "COVID-00003b").image, "COVID-00003b.png");
    assert_eq!(
        find("figure1", "COVID-00003b").patient_key(),
        "figure1:COVID-00003"
    );
    assert_eq!(
        find("figure1", "COVID-00002").exclusion,
        Some(Exclusion::Unlabelled)
    );
    assert_eq!(
        find("figure1", "COVID-00005").exclusion,
        Some(Exclusion::MissingImage)
    );
    // Actualmed: CRLF handled, blank finding unlabelled.
    assert_eq!(
        find("actualmed", "CR.1.2.840.113564.1003").exclusion,
        Some(Exclusion::Unlabelled)
    );
    // RSNA: multi-row patients collapse; conflicting classes are named.
    assert_eq!(o.records.iter().filter(|r| r.source == "rsna").count(), 11);
    let conflict = find("rsna", "23a4b5c6");
    assert_eq!(conflict.exclusion, Some(Exclusion::ConflictingLabels));
    assert!(
        conflict.detail.contains("\"Normal\"") && conflict.detail.contains("Target"),
        "{}",
        conflict.detail
    );
    // Every included image was read and hashed.
    for &i in o.assignment.train.iter().chain(&o.assignment.test) {
        assert_eq!(o.records[i].sha256.as_ref().map(|h| h.len()), Some(64));
    }

    let s = &o.summary;
    let imgs = |split: &str| ["normal", "pneumonia", "COVID-19"].map(|c| s.get(split, c).images);
    assert_eq!(imgs("train"), [6, 5, 8]);
    assert_eq!(imgs("test"), [1, 4, 2]);
    assert_eq!(imgs("pool"), [2, 4, 2]);
    assert_eq!(s.excluded_total("test-pool-not-pinned"), 1);
    assert_eq!(s.excluded_total("view-filtered"), 2);

    let out = tmp.path().join("out");
    let train = std::fs::read_to_string(BuildDir::new(&out).split_file(Split::Train)).unwrap();
    let tags: Vec<&str> = train
        .lines()
        .map(|l| l.rsplit(' ').next().unwrap())
        .collect();
    assert_eq!(
        tags,
        [
            "actmed", "actmed", "actmed", "cohen", "cohen", "cohen", "cohen", "cohen", "cohen",
            "cohen", "fig1", "fig1", "fig1", "actmed", "rsna", "rsna", "rsna", "rsna", "rsna"
        ]
    );
    let test = std::fs::read_to_string(BuildDir::new(&out).split_file(Split::Test)).unwrap();
    let pinned =
        std::fs::read_to_string(tmp.path().join("sources/COVID-Net/test_demo.txt")).unwrap();
    assert_eq!(
        test, pinned,
        "the test split is the pinned list, line for line"
    );
    assert!(test.contains("2 covid_2_(day_1).jpeg COVID-19 cohen\n"));

    // The manifest has one row per candidate record and reads back.
    let m = covidx::manifest::Manifest::read(&BuildDir::new(&out).manifest()).unwrap();
    assert_eq!(m.len(), o.records.len());
    for (row, r) in m.rows().zip(&o.records) {
        assert_eq!(
            (row.path(), row.patient(), row.split()),
            (r.path.as_str(), r.patient.as_str(), r.split)
        );
        assert_eq!(row.label(), r.label.map(|l| o.pipeline.classes[l].as_str()));
    }
    let csv = std::fs::read_to_string(BuildDir::new(&out).manifest_csv()).unwrap();
    assert!(csv.starts_with("record,source,tag,file,line,patient,patient_key,image,path,finding"));
}

#[test]
fn metadata_only_reads_no_image() {
    let tmp = tempfile::tempdir().unwrap();
    let o = demo_build(tmp.path(), true);
    assert!(o.records.iter().all(|r| r.sha256.is_none()));
    assert!(o
        .lock
        .inputs
        .keys()
        .all(|k| k.ends_with(".csv") || k.contains("COVID-Net/")));
    assert_eq!(o.lock.mode, "metadata-only");
}

fn run_cli(args: &[&str], threads: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_covidx"))
        .args(args)
        .env("RAYON_NUM_THREADS", threads)
        .env("POLARS_MAX_THREADS", threads)
        .output()
        .unwrap()
}

#[test]
fn outputs_are_byte_identical_for_1_and_4_threads_and_verify_catches_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let mut trees = Vec::new();
    for threads in ["1", "4"] {
        let dir = tmp.path().join(format!("t{threads}"));
        let out = run_cli(&["demo", "--dir", dir.to_str().unwrap()], threads);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("all hashes match"), "{stdout}");
        // build.json names this run's folders; everything else must be equal.
        let info = std::fs::read_to_string(dir.join("out").join(covidx::build_dir::BUILD_INFO));
        assert!(info.unwrap().contains(&format!("t{threads}")));
        let tree = tree_bytes(&dir.join("out"));
        trees.push(
            tree.into_iter()
                .filter(|(p, _)| p != covidx::build_dir::BUILD_INFO)
                .collect::<Vec<_>>(),
        );
    }
    // Split files, manifests, summary, pipeline, lock, quarantine, augment table, index, shards.
    assert!(trees[0].len() >= 12, "{}", trees[0].len());
    assert!(trees[0].iter().any(|(p, _)| p.ends_with(".safetensors")));
    assert_eq!(trees[0], trees[1]);

    let dir = tmp.path().join("t1");
    let lock = BuildDir::new(dir.join("out")).lock();
    let sources = dir.join("sources");
    let verify = || {
        run_cli(
            &[
                "verify",
                lock.to_str().unwrap(),
                "--sources",
                sources.to_str().unwrap(),
            ],
            "2",
        )
    };
    assert_eq!(verify().status.code(), Some(0));
    // Change one input image and delete one output: both are reported, exit 1.
    let img = sources.join("covid-chestxray-dataset/images/covid-4.png");
    let mut bytes = std::fs::read(&img).unwrap();
    bytes[40] ^= 0xFF;
    std::fs::write(&img, bytes).unwrap();
    std::fs::remove_file(BuildDir::new(dir.join("out")).manifest_csv()).unwrap();
    let out = verify();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("DIFFERS input covid-chestxray-dataset/images/covid-4.png: sha256"),
        "{text}"
    );
    assert!(
        text.contains("DIFFERS output manifest.csv: missing"),
        "{text}"
    );
    assert!(text.contains("2 of"), "{text}");
}

#[test]
fn rerun_over_an_old_output_replaces_it_atomically() {
    let tmp = tempfile::tempdir().unwrap();
    demo_build(tmp.path(), false);
    let before = tree_bytes(&tmp.path().join("out"));
    // Leftover temp files from a killed run do not matter; a rerun gives the same bytes.
    std::fs::write(tmp.path().join("out/.manifest.csv.tmp-999"), b"partial").unwrap();
    std::fs::write(
        BuildDir::new(tmp.path().join("out")).split_file(Split::Train),
        b"garbage",
    )
    .unwrap();
    demo_build(tmp.path(), false);
    let after = tree_bytes(&tmp.path().join("out"));
    assert_eq!(before, after);
}
