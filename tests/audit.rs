//! `covidx audit`: planted problems are each found (an unknown finding, a class confounded
//! with its source, a patient in two splits), a clean build has no finding, `--fail-on` sets
//! the exit status, and a directory that is not a build is a clear error.

use std::path::Path;
use std::process::Command;

use covidx::audit::{self, Build};
use covidx::build_dir::BuildDir;
use covidx::builder::{build, BuildOptions};

/// A generic two-source build: `a` holds `rows_a`, `b` holds `rows_b` (`pid,img,finding`).
fn two_sources(dir: &Path, rows_a: &[(&str, &str)], rows_b: &[(&str, &str)]) -> BuildOptions {
    for (name, rows) in [("a", rows_a), ("b", rows_b)] {
        let d = dir.join("sources").join(name);
        std::fs::create_dir_all(d.join("images")).unwrap();
        let mut csv = String::from("pid,img,finding\n");
        for (i, (pid, finding)) in rows.iter().enumerate() {
            let img = format!("{name}{i}.png");
            std::fs::write(d.join("images").join(&img), b"x").unwrap();
            csv.push_str(&format!("{pid},{img},{finding}\n"));
        }
        std::fs::write(d.join("m.csv"), csv).unwrap();
    }
    let source = |name: &str| {
        format!(
            "[[sources]]\nname = \"{name}\"\nkind = \"csv\"\ndir = \"{name}\"\nmetadata = \
             \"m.csv\"\ncolumns = {{ patient = \"pid\", image = \"img\", finding = \"finding\" }}\n"
        )
    };
    let pipeline = format!(
        "name = \"audit-test\"\nseed = 3\nclasses = [\"normal\", \"covid\"]\n[labels]\nparse = \
         \"whole\"\nmap = {{ n = \"normal\", c = \"covid\" }}\n{}{}[split]\nmethod = \
         \"seeded\"\ntest_fraction = 0.3\n",
        source("a"),
        source("b")
    );
    std::fs::write(dir.join("p.toml"), pipeline).unwrap();
    BuildOptions {
        metadata_only: true,
        ..BuildOptions::new(dir.join("p.toml"), dir.join("sources"), dir.join("out"))
    }
}

fn audit_of(opts: &BuildOptions) -> audit::Audit {
    build(opts).unwrap();
    audit::audit(
        &Build::open(&BuildDir::new(&opts.out)).unwrap(),
        &Default::default(),
    )
    .unwrap()
}

fn cli(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_covidx"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn a_clean_build_has_no_finding() {
    // Both sources hold both classes in the same proportion, with their own patient ids.
    let ids = |prefix: &str| -> Vec<(String, &'static str)> {
        (0..20)
            .map(|i| (format!("{prefix}{i}"), if i % 2 == 0 { "n" } else { "c" }))
            .collect()
    };
    let (a_ids, b_ids) = (ids("p"), ids("q"));
    fn as_rows<'a>(v: &'a [(String, &'static str)]) -> Vec<(&'a str, &'static str)> {
        v.iter().map(|(p, f)| (p.as_str(), *f)).collect()
    }
    let tmp = tempfile::tempdir().unwrap();
    let a = audit_of(&two_sources(tmp.path(), &as_rows(&a_ids), &as_rows(&b_ids)));
    assert!(a.findings.is_empty(), "{:?}", a.findings);
    assert!(a.confounding.by_source.cramers_v < 0.05);
    assert!(a.labels.unknown.is_empty());
}

#[test]
fn planted_problems_are_each_found() {
    // Source b holds every covid image; one finding is unknown.
    let a_rows: Vec<(String, &str)> = (0..20).map(|i| (format!("a{i}"), "n")).collect();
    let b_rows: Vec<(String, &str)> = (0..10).map(|i| (format!("b{i}"), "c")).collect();
    let mut a_rows: Vec<(&str, &str)> = a_rows.iter().map(|(p, f)| (p.as_str(), *f)).collect();
    a_rows.push(("a99", "influenza"));
    let b_rows: Vec<(&str, &str)> = b_rows.iter().map(|(p, f)| (p.as_str(), *f)).collect();
    let tmp = tempfile::tempdir().unwrap();
    let opts = two_sources(tmp.path(), &a_rows, &b_rows);
    let a = audit_of(&opts);
    let checks: Vec<&str> = a.findings.iter().map(|f| f.check).collect();
    assert!(checks.contains(&"unknown-findings"), "{checks:?}");
    assert!(checks.contains(&"source-confounding"), "{checks:?}");
    assert_eq!(a.labels.unknown.len(), 1);
    assert_eq!(a.labels.unknown[0].parsed, "influenza");
    assert!((a.confounding.by_source.cramers_v - 1.0).abs() < 1e-9);
    assert_eq!(a.confounding.source_accuracy, 1.0);
    let covid = &a.confounding.per_class[1];
    assert_eq!((covid.sensitivity, covid.specificity), (1.0, 1.0));

    // A patient in both splits (a tampered manifest): an error, and --fail-on overlap fails.
    let dir = BuildDir::new(&opts.out);
    let m = covidx::manifest::Manifest::read(&dir.manifest()).unwrap();
    let mut rows: Vec<covidx::manifest::ManifestRow> =
        m.rows().map(covidx::manifest::Row::owned).collect();
    let train = rows
        .iter()
        .position(|r| r.split == Some(covidx::record::Split::Train))
        .unwrap();
    let test = rows
        .iter()
        .position(|r| r.split == Some(covidx::record::Split::Test))
        .unwrap();
    rows[test].patient_key = rows[train].patient_key.clone();
    write_manifest(&dir, &rows);
    let out = cli(&[
        "-q",
        "audit",
        dir.root().to_str().unwrap(),
        "--fail-on",
        "overlap",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("audit failed: overlap"));
    let report = std::fs::read_to_string(dir.path(covidx::build_dir::AUDIT_JSON)).unwrap();
    let json: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(json["version"], "1.1");
    assert_eq!(
        json["overlap"]["across_splits"].as_array().unwrap().len(),
        1
    );
    let md = std::fs::read_to_string(dir.path(covidx::build_dir::AUDIT_MD)).unwrap();
    assert!(
        md.contains("Patients in more than one split: **1**"),
        "{md}"
    );
    // Without --fail-on the audit reports and exits 0.
    assert_eq!(
        cli(&["-q", "audit", dir.root().to_str().unwrap()])
            .status
            .code(),
        Some(0)
    );
}

/// Rewrites a build's manifest from typed rows (for tampering tests).
fn write_manifest(dir: &BuildDir, rows: &[covidx::manifest::ManifestRow]) {
    use covidx::record::Record;
    // Rebuild records carrying exactly the fields the audit reads.
    let classes = ["normal".to_string(), "covid".to_string()];
    let records: Vec<Record> = rows
        .iter()
        .map(|r| {
            let (source, subject) = r.patient_key.split_once(':').unwrap();
            Record {
                source: source.to_string(),
                subject: subject.to_string(),
                patient: r.patient.to_string(),
                image: r.image.to_string(),
                path: r.path.to_string(),
                finding: r.finding.to_string(),
                parsed: r.finding_parsed.to_string(),
                label: r
                    .label
                    .as_ref()
                    .map(|l| classes.iter().position(|c| c == l).unwrap()),
                split: r.split,
                ..Record::default()
            }
        })
        .collect();
    let frame = covidx::manifest::frame(&records, &[], &classes).unwrap();
    let bytes = covidx::manifest::parquet_bytes(
        &frame,
        covidx::manifest::FORMAT,
        covidx::manifest::VERSION,
    )
    .unwrap();
    std::fs::write(dir.manifest(), bytes).unwrap();
}

#[test]
fn a_directory_that_is_not_a_build_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let out = cli(&["audit", tmp.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is not a finished covidx build"), "{err}");
    assert!(err.contains("covidx.lock.json"), "{err}");
    let out = cli(&[
        "audit",
        tmp.path().to_str().unwrap(),
        "--fail-on",
        "nonsense",
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("the checks are"));
}
