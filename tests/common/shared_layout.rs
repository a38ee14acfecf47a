//! Lays out the real upstream metadata from `../shared/data` as a `--sources` directory, with
//! empty placeholder images named from the upstream listings (for metadata-only builds).
//! Shared by the integration tests and `examples/layout_shared.rs` (benchmarks).
#![allow(dead_code)]

use std::collections::HashSet;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

/// `COVIDX_SHARED_DATA`, else `../shared/data` next to the crate; `None` when absent.
pub fn shared_data() -> Option<PathBuf> {
    let dir = std::env::var_os("COVIDX_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data"));
    dir.join("rsna/stage_2_train_labels.csv")
        .is_file()
        .then_some(dir)
}

/// Which upstream revisions to lay out.
pub struct Revision {
    pub cohen: &'static str,
    pub figure1: &'static str,
    pub actualmed: Option<&'static str>,
    pub test_list: bool,
}

/// The inputs of COVIDx2 (Cohen 3499d8b, Figure1 b6ce1fe), with the published test list.
pub const COVIDX2: Revision = Revision {
    cohen: "2020-04-06-3499d8b",
    figure1: "2020-04-07-b6ce1fe",
    actualmed: None,
    test_list: true,
};

fn placeholders(listing: &Path, dir: &Path) {
    let text = fs::read_to_string(listing).unwrap();
    for line in text.lines() {
        let rel = line.split('\t').nth(1).unwrap();
        let p = dir.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, b"").unwrap();
    }
}

/// Writes the layout under `root` and returns it.
pub fn layout(data: &Path, rev: &Revision, root: &Path) -> PathBuf {
    let cohen = root.join("covid-chestxray-dataset");
    fs::create_dir_all(&cohen).unwrap();
    fs::copy(
        data.join(format!("cohen/metadata-{}.csv", rev.cohen)),
        cohen.join("metadata.csv"),
    )
    .unwrap();
    let commit = rev.cohen.rsplit('-').next().unwrap();
    placeholders(
        &data.join(format!("listings/cohen-{commit}-images.tsv")),
        &cohen,
    );

    let fig = root.join("Figure1-COVID-chestxray-dataset");
    fs::create_dir_all(&fig).unwrap();
    fs::copy(
        data.join(format!("figure1/metadata-{}.csv", rev.figure1)),
        fig.join("metadata.csv"),
    )
    .unwrap();
    let commit = rev.figure1.rsplit('-').next().unwrap();
    placeholders(
        &data.join(format!("listings/figure1-{commit}-images.tsv")),
        &fig,
    );

    if let Some(a) = rev.actualmed {
        let act = root.join("Actualmed-COVID-chestxray-dataset");
        fs::create_dir_all(&act).unwrap();
        fs::copy(
            data.join(format!("actualmed/metadata-{a}.csv")),
            act.join("metadata.csv"),
        )
        .unwrap();
        let commit = a.rsplit('-').next().unwrap();
        placeholders(
            &data.join(format!("listings/actualmed-{commit}-images.tsv")),
            &act,
        );
    }

    let rsna = root.join("rsna-pneumonia-detection-challenge");
    let images = rsna.join("stage_2_train_images");
    fs::create_dir_all(&images).unwrap();
    for f in [
        "stage_2_train_labels.csv",
        "stage_2_detailed_class_info.csv",
    ] {
        fs::copy(data.join("rsna").join(f), rsna.join(f)).unwrap();
    }
    let mut labels = String::new();
    fs::File::open(rsna.join("stage_2_train_labels.csv"))
        .unwrap()
        .read_to_string(&mut labels)
        .unwrap();
    let mut seen = HashSet::new();
    for line in labels.lines().skip(1) {
        let pid = line.split(',').next().unwrap();
        if seen.insert(pid) {
            fs::write(images.join(format!("{pid}.dcm")), b"").unwrap();
        }
    }

    let cn = root.join("COVID-Net");
    fs::create_dir_all(&cn).unwrap();
    for class in ["normal", "pneumonia"] {
        fs::copy(
            data.join(format!(
                "covidnet/rsna_test_patients_{class}-2020-03-28-c4da4b0.npy"
            )),
            cn.join(format!("rsna_test_patients_{class}.npy")),
        )
        .unwrap();
    }
    if rev.test_list {
        fs::copy(
            data.join("covidnet/test_COVIDx2.txt"),
            cn.join("test_COVIDx2.txt"),
        )
        .unwrap();
    }
    root.to_path_buf()
}

/// Lays out NIH ChestX-ray14 (`Data_Entry_2017_v2020.csv`, decompressed) with placeholders.
pub fn layout_nih(data: &Path, root: &Path) -> PathBuf {
    let nih = root.join("nih");
    let images = nih.join("images");
    fs::create_dir_all(&images).unwrap();
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "gzip -dc '{}' > '{}'",
            data.join("nih/Data_Entry_2017_v2020.csv.gz").display(),
            nih.join("Data_Entry_2017_v2020.csv").display()
        ))
        .status()
        .unwrap();
    assert!(status.success(), "gunzip failed");
    let text = fs::read_to_string(nih.join("Data_Entry_2017_v2020.csv")).unwrap();
    for line in text.lines().skip(1) {
        fs::write(images.join(line.split(',').next().unwrap()), b"").unwrap();
    }
    root.to_path_buf()
}
