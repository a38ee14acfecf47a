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

/// Placeholders for every `folder/filename` of Cohen's metadata (6a42423 has no listing; its
/// names are unique).
fn cohen_placeholders_from_metadata(cohen: &Path) {
    let mut rdr = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(cohen.join("metadata.csv"))
        .unwrap();
    let header = rdr.headers().unwrap().clone();
    let col = |n: &str| header.iter().position(|h| h == n).unwrap();
    let (folder, filename) = (col("folder"), col("filename"));
    for row in rdr.records() {
        let row = row.unwrap();
        let rel = format!("{}/{}", row[folder].trim(), row[filename].trim());
        let p = cohen.join(rel);
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
    let listing = data.join(format!("listings/cohen-{commit}-images.tsv"));
    if listing.is_file() {
        placeholders(&listing, &cohen);
    } else {
        cohen_placeholders_from_metadata(&cohen);
    }

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

/// NIH ChestX-ray14 scaled to `rows` rows for benchmarks: the real table repeated (copy `k`
/// of a row gets patient `Patient ID + k * 100000` and image `k<NN>_<Image Index>`), cut at
/// `rows`, with an empty file per image, laid out as [`layout_nih`] does.
pub fn layout_nih_rows(data: &Path, root: &Path, rows: usize) -> PathBuf {
    use std::io::Write as _;
    let nih = root.join("nih");
    let images = nih.join("images");
    fs::create_dir_all(&images).unwrap();
    let gz = data.join("nih/Data_Entry_2017_v2020.csv.gz");
    let out = std::process::Command::new("gzip")
        .arg("-dc")
        .arg(&gz)
        .output()
        .unwrap();
    assert!(out.status.success(), "gunzip {} failed", gz.display());
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    let body: Vec<&str> = lines.collect();
    let patient_col = header.split(',').position(|h| h == "Patient ID").unwrap();
    let csv = fs::File::create(nih.join("Data_Entry_2017_v2020.csv")).unwrap();
    let mut csv = std::io::BufWriter::new(csv);
    writeln!(csv, "{header}").unwrap();
    for i in 0..rows {
        let (k, line) = (i / body.len(), body[i % body.len()]);
        let mut cells: Vec<String> = line.split(',').map(str::to_string).collect();
        cells[0] = format!("k{k:02}_{}", cells[0]);
        let patient: u64 = cells[patient_col].parse().unwrap();
        cells[patient_col] = (patient + k as u64 * 100_000).to_string();
        fs::write(images.join(&cells[0]), b"").unwrap();
        writeln!(csv, "{}", cells.join(",")).unwrap();
    }
    csv.flush().unwrap();
    root.to_path_buf()
}

/// The inputs of one COVIDx version, as `../shared/data/README.md` names them.
pub struct Version {
    /// Cohen `metadata-<rev>.csv`; images from `listings/cohen-<commit>-images.tsv`, or, when
    /// there is none (6a42423), from the metadata's own `folder`/`filename`.
    pub cohen: &'static str,
    /// Figure1 `metadata-<rev>.csv`.
    pub figure1: &'static str,
    /// Actualmed `metadata-<rev>.csv`.
    pub actualmed: &'static str,
    /// Lay out the Radiography Database version 1 (workbook, images `COVID-19 (N).png`).
    pub sirm: bool,
    /// Lay out RICORD (COVID-Net's `ricord_data_set.txt`, images under `ricord/`).
    pub ricord: bool,
    /// Date-commit of the RSNA test pools (`rsna_test_patients_*-<pools>.npy`).
    pub pools: &'static str,
    /// Pinned lists: (file under `covidnet/`, name under `COVID-Net/`).
    pub tests: &'static [(&'static str, &'static str)],
}

/// COVIDx3 (0134049 / a888987).
pub const V3: Version = Version {
    cohen: "2020-04-24-a0ecac5",
    figure1: "2020-04-18-bd4093a",
    actualmed: "2020-05-05-27240dd",
    sirm: true,
    ricord: false,
    pools: "2020-03-28-c4da4b0",
    tests: &[("test_COVIDx3-0134049.txt", "test_COVIDx3.txt")],
};

/// COVIDx4 (2168765).
pub const V4: Version = Version {
    cohen: "2020-06-22-584034a",
    figure1: "2020-05-08-95bb569",
    ..V3
};

/// COVIDx5 and 6 (a8d1cbc, 9215162); 7 adds the 7A list.
pub const V5: Version = Version {
    cohen: "undated-6a42423",
    ..V4
};

/// COVIDx7A / 7B (ef59553), without the Radiography Database version 3.
pub const V7: Version = Version {
    sirm: false,
    tests: &[("test_COVIDx7A-eeb0973.txt", "test_COVIDx7A.txt")],
    ..V5
};

/// COVIDx8A / 8B (3c5eefd), without the Radiography Database version 3. The RSNA pools are
/// c4da4b0's: 6458e1b's (100 / 100, a subset) give the test's RSNA lines but would put 1,274
/// more RSNA patients in train than the published list has (manifests/covidx8.md).
pub const V8: Version = Version {
    sirm: false,
    ricord: true,
    tests: &[
        ("test_COVIDx8A-3780b36.txt", "test_COVIDx8A.txt"),
        ("test_COVIDx8B-3780b36.txt", "test_COVIDx8B.txt"),
    ],
    ..V5
};

fn touch(p: &Path) {
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, b"").unwrap();
}

/// Writes the layout of `v` under `root` (placeholder images) and returns it.
pub fn layout_version(data: &Path, v: &Version, root: &Path) -> PathBuf {
    layout(
        data,
        &Revision {
            cohen: v.cohen,
            figure1: v.figure1,
            actualmed: Some(v.actualmed),
            test_list: false,
        },
        root,
    );
    let cn = root.join("COVID-Net");
    for class in ["normal", "pneumonia"] {
        fs::copy(
            data.join(format!(
                "covidnet/rsna_test_patients_{class}-{}.npy",
                v.pools
            )),
            cn.join(format!("rsna_test_patients_{class}.npy")),
        )
        .unwrap();
    }
    for (from, to) in v.tests {
        fs::copy(data.join("covidnet").join(from), cn.join(to)).unwrap();
    }
    if v.sirm {
        let db = root.join("COVID-19-Radiography-Database");
        fs::create_dir_all(db.join("COVID-19")).unwrap();
        fs::copy(
            data.join("sirm/COVID-19.metadata-2020-03-28-v1.xlsx"),
            db.join("COVID-19.metadata.xlsx"),
        )
        .unwrap();
        for n in 1..=219 {
            touch(&db.join(format!("COVID-19/COVID-19 ({n}).png")));
        }
    }
    if v.ricord {
        let list = data.join("covidnet/ricord_data_set-2021-02-24-a795ea5.txt");
        fs::copy(&list, cn.join("ricord_data_set.txt")).unwrap();
        for line in fs::read_to_string(&list).unwrap().lines() {
            if let Some(name) = line.split_whitespace().next() {
                touch(&root.join("ricord").join(name));
            }
        }
    }
    root.to_path_buf()
}
