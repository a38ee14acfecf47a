//! The readers and the covidx2 pipeline against the real upstream metadata in ../shared/data.
//! Each test prints a SKIPPED line and passes when that folder is absent.

mod common;

use std::collections::BTreeMap;

use common::shared_layout::{layout, layout_nih, Revision, COVIDX2};
use common::{crate_path, shared_or_skip};
use covidx::build_dir::BuildDir;
use covidx::builder::{build, BuildOptions};
use covidx::config::Pipeline;
use covidx::ingest::read_all;
use covidx::record::Split;
use covidx::record::{Exclusion, Record};

fn count<'a>(it: impl Iterator<Item = &'a str>) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for s in it {
        *m.entry(s.to_string()).or_insert(0) += 1;
    }
    m
}

fn read(pipeline_toml: &str, root: &std::path::Path) -> Vec<Record> {
    let p = Pipeline::parse(pipeline_toml).unwrap();
    let mut inputs = Default::default();
    read_all(root, &p.resolved_sources(), &mut inputs).unwrap()
}

const ALL_SOURCES: &str = r#"
name = "all"
classes = ["normal", "pneumonia", "COVID-19"]
[labels]
parse = "auto"
map = { "COVID-19" = "COVID-19" }
[[sources]]
name = "cohen"
kind = "cohen"
[[sources]]
name = "figure1"
kind = "figure1"
[[sources]]
name = "actualmed"
kind = "actualmed"
[[sources]]
name = "rsna"
kind = "rsna"
"#;

#[test]
fn readers_match_the_real_files() {
    let Some(data) = shared_or_skip("readers_match_the_real_files") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let rev = Revision {
        cohen: "undated-6a42423",
        figure1: "2020-05-08-95bb569",
        actualmed: Some("2020-05-05-27240dd"),
        test_list: false,
    };
    // The undated Cohen has no image listing; lay out 584034a's images (names overlap).
    let root = tmp.path();
    layout(
        &data,
        &Revision {
            cohen: "2020-06-22-584034a",
            ..rev
        },
        root,
    );
    std::fs::copy(
        data.join("cohen/metadata-undated-6a42423.csv"),
        root.join("covid-chestxray-dataset/metadata.csv"),
    )
    .unwrap();
    let recs = read(ALL_SOURCES, root);
    let by = |s: &'static str| recs.iter().filter(move |r| r.source == s);

    // Cohen HEAD: 950 rows, hierarchical findings, `folder` column, trailing-space finding.
    assert_eq!(by("cohen").count(), 950);
    let findings = count(by("cohen").map(|r| r.finding.as_str()));
    assert_eq!(findings["Pneumonia/Viral/COVID-19"], 584);
    assert_eq!(findings["todo"], 83);
    assert_eq!(
        findings["Pneumonia/Viral/Herpes"], 3,
        "trimmed trailing space"
    );
    assert_eq!(
        by("cohen").filter(|r| r.path.contains("/volumes/")).count(),
        21
    );
    assert_eq!(
        count(by("cohen").map(|r| r.view.as_str()))["AP Supine"],
        234
    );
    // Five rows have unquoted commas in clinical_notes: kept, with a note.
    assert_eq!(
        by("cohen")
            .filter(|r| r.detail.contains("unquoted commas"))
            .count(),
        5
    );
    assert!(by("cohen").all(|r| r.exclusion != Some(Exclusion::MalformedRow)));

    // Figure1 HEAD: 55 rows of ISO-8859-1; suffixed ids share a subject.
    assert_eq!(by("figure1").count(), 55);
    let f3: Vec<_> = by("figure1")
        .filter(|r| r.patient.starts_with("COVID-00003"))
        .collect();
    assert!(f3.len() >= 2 && f3.iter().all(|r| r.subject == "COVID-00003"));
    assert!(by("figure1").any(|r| r.image.ends_with(".png")));

    // Actualmed: CRLF, `imagename`; COVID-19 58, No finding 127, blank 53.
    let act = count(by("actualmed").map(|r| r.finding.as_str()));
    assert_eq!((act["COVID-19"], act["No finding"], act[""]), (58, 127, 53));
    assert_eq!(
        by("actualmed")
            .filter(|r| r.exclusion == Some(Exclusion::Unlabelled))
            .count(),
        53
    );
    assert!(by("actualmed").all(|r| !r.image.ends_with('\r')));

    // RSNA: one record per patient; class counts of the detailed class file; no conflicts.
    assert_eq!(by("rsna").count(), 26684);
    let rsna = count(by("rsna").map(|r| r.finding.as_str()));
    assert_eq!(rsna["Normal"], 8851);
    assert_eq!(rsna["Lung Opacity"], 6012);
    assert_eq!(rsna["No Lung Opacity / Not Normal"], 11821);
    assert!(by("rsna").all(|r| r.exclusion.is_none()));
}

fn covidx2_build(with_list: bool) -> Option<(covidx::builder::BuildOutcome, tempfile::TempDir)> {
    let data = shared_or_skip("covidx2")?;
    let tmp = tempfile::tempdir().unwrap();
    let sources = layout(
        &data,
        &Revision {
            test_list: with_list,
            ..COVIDX2
        },
        &tmp.path().join("sources"),
    );
    let outcome = build(&BuildOptions {
        metadata_only: true,
        ..BuildOptions::new(
            crate_path("pipelines/covidx2.toml"),
            sources,
            tmp.path().join("out"),
        )
    })
    .unwrap();
    Some((outcome, tmp))
}

#[test]
fn covidx2_reproduces_the_paper_counts_and_published_test_list() {
    let Some((o, tmp)) = covidx2_build(true) else {
        return;
    };
    let s = &o.summary;
    let cell = |split: &str, class: &str| {
        let c = s.get(split, class);
        (c.images, c.patients)
    };
    assert_eq!(cell("train", "normal"), (7966, 7966));
    assert_eq!(cell("train", "pneumonia"), (5451, 5440));
    assert_eq!(cell("train", "COVID-19"), (152, 107));
    assert_eq!(s.totals["train"].images, 13569);
    assert_eq!(s.totals["train"].patients, 13513);
    assert_eq!(cell("pool", "normal").0, 885);
    assert_eq!(cell("pool", "pneumonia").0, 594);
    assert_eq!(cell("pool", "COVID-19").0, 31);
    assert_eq!(s.totals["test"].images, 231);
    assert_eq!(s.totals["test"].patients, 212);
    assert_eq!(s.excluded_total("test-pool-not-pinned"), 1510 - 231);

    // The test split is byte for byte the published list.
    let data = common::shared_layout::shared_data().unwrap();
    let published = std::fs::read(data.join("covidnet/test_COVIDx2.txt")).unwrap();
    let ours =
        std::fs::read(BuildDir::new(tmp.path().join("out")).split_file(Split::Test)).unwrap();
    assert_eq!(ours, published);

    // Train is in the published order: Cohen+Figure1 by class (normal, pneumonia, COVID-19),
    // then RSNA normal, then RSNA pneumonia.
    let train =
        std::fs::read_to_string(BuildDir::new(tmp.path().join("out")).split_file(Split::Train))
            .unwrap();
    let lines: Vec<&str> = train.lines().collect();
    assert_eq!(lines.len(), 13569);
    let first_rsna = lines
        .iter()
        .position(|l| l.ends_with(".png normal"))
        .unwrap();
    assert!(lines[..first_rsna].iter().all(|l| !l.ends_with(" normal")));
    let labels: Vec<&str> = lines
        .iter()
        .map(|l| l.rsplit(' ').next().unwrap())
        .collect();
    let cohen_fig = &labels[..first_rsna];
    assert!(cohen_fig
        .windows(2)
        .all(|w| !(w[0] == "COVID-19" && w[1] == "pneumonia")));
    assert!(labels[first_rsna..]
        .windows(2)
        .all(|w| !(w[0] == "pneumonia" && w[1] == "normal")));
}

#[test]
fn covidx2_without_the_published_list_keeps_the_whole_pool() {
    let Some((o, _tmp)) = covidx2_build(false) else {
        return;
    };
    let s = &o.summary;
    assert_eq!(s.totals["train"].images, 13569);
    assert_eq!(
        [
            s.get("test", "normal").images,
            s.get("test", "pneumonia").images,
            s.get("test", "COVID-19").images
        ],
        [885, 594, 31]
    );
    assert_eq!(s.excluded_total("test-pool-not-pinned"), 0);
}

#[test]
fn a_wrong_pinned_entry_is_an_error_naming_the_line() {
    let Some(data) = shared_or_skip("a_wrong_pinned_entry_is_an_error_naming_the_line") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let sources = layout(&data, &COVIDX2, &tmp.path().join("sources"));
    let list = sources.join("COVID-Net/test_COVIDx2.txt");
    let text = std::fs::read_to_string(&list).unwrap();
    // Relabel the first line and append a train patient.
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines[0] = lines[0].replace(" normal", " pneumonia");
    let train = covidx2_build(false).unwrap().0;
    let t = &train.records[train.assignment.train[0]];
    let label = ["normal", "pneumonia", "COVID-19"][t.label.unwrap()];
    lines.push(format!("{} {} {label}", t.patient, t.image));
    std::fs::write(&list, lines.join("\n") + "\n").unwrap();
    let err = build(&BuildOptions {
        metadata_only: true,
        ..BuildOptions::new(
            crate_path("pipelines/covidx2.toml"),
            sources,
            tmp.path().join("out"),
        )
    })
    .unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("COVID-Net/test_COVIDx2.txt:1:"), "{msg}");
    assert!(msg.contains("the sources label it \"normal\""), "{msg}");
    assert!(
        msg.contains(":232:") && msg.contains("is in the train split"),
        "{msg}"
    );
}

#[test]
fn nih_seeded_split_is_patient_level_and_stratified() {
    let Some(data) = shared_or_skip("nih_seeded_split_is_patient_level_and_stratified") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let sources = layout_nih(&data, &tmp.path().join("sources"));
    let o = build(&BuildOptions {
        metadata_only: true,
        ..BuildOptions::new(
            crate_path("pipelines/nih-pneumonia.toml"),
            sources,
            tmp.path().join("out"),
        )
    })
    .unwrap();
    assert_eq!(o.records.len(), 112_120);
    let s = &o.summary;
    for class in ["normal", "pneumonia"] {
        let test = s.get("test", class).patients as f64;
        let all = test + s.get("train", class).patients as f64;
        assert!((test / all - 0.1).abs() < 0.01, "{class}: {test}/{all}");
    }
    // Multi-finding cells: `Pneumonia|Infiltration` is pneumonia.
    assert!(o
        .records
        .iter()
        .any(|r| r.finding.contains("Pneumonia|") && r.label == Some(1)));
}

#[test]
fn the_covidx2_audit_shows_covid_separated_by_its_sources() {
    let Some((_, tmp)) = covidx2_build(true) else {
        return;
    };
    let build = covidx::audit::Build::open(&BuildDir::new(tmp.path().join("out"))).unwrap();
    let a = covidx::audit::audit(&build, &Default::default()).unwrap();
    let t = &a.confounding.by_source;
    assert_eq!(t.columns, ["cohen", "figure1", "rsna"]);
    // Train 7966 / 5451 / 152 plus the published test list's 100 / 100 / 31.
    assert_eq!(
        t.counts,
        [vec![0, 0, 8066], vec![32, 0, 5519], vec![180, 3, 0]]
    );
    assert!((t.cramers_v - 0.652).abs() < 0.001, "{}", t.cramers_v);
    let covid = &a.confounding.per_class[2];
    assert_eq!(covid.sources, ["cohen", "figure1"]);
    assert_eq!(covid.sensitivity, 1.0);
    assert!(a.findings.iter().any(|f| f.check == "source-confounding"));
    assert!(a.overlap.across_splits.is_empty());
}
