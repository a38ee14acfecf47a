//! Property test: for arbitrary generated sources, pins and split settings, no patient is ever
//! in both splits, every record is accounted for, and shuffling the rows changes no patient's
//! split (the seeded draw depends on (seed, patient) only).

use std::collections::HashSet;

use covidx::builder::plan;
use covidx::config::Pipeline;
use covidx::ingest::ImageCheck;
use proptest::prelude::*;

const FINDINGS: [&str; 5] = [
    "No Finding",
    "Pneumonia",
    "Pneumonia|Edema",
    "Edema",
    "No Finding|Pneumonia",
];

fn pipeline(seeded: bool, fraction: f64, pins: &[u8]) -> String {
    let pins: Vec<String> = pins.iter().map(|p| format!("\"{p}\"")).collect();
    let split = if seeded {
        format!("method = \"seeded\"\ntest_fraction = {fraction}")
    } else {
        "method = \"pinned\"".to_string()
    };
    format!(
        r#"
name = "prop"
seed = 7
classes = ["normal", "pneumonia"]
[labels]
parse = "whole"
map = {{ "No Finding" = "normal", Pneumonia = "pneumonia" }}
[[sources]]
name = "g"
kind = "csv"
dir = "g"
metadata = "m.csv"
finding_separator = "|"
columns = {{ patient = "pid", image = "img", finding = "finding" }}
test_patients = {{ pneumonia = [{}] }}
[split]
{split}
"#,
        pins.join(", ")
    )
}

type Row = (u8, u8, usize, bool);

/// Writes the rows as a generic source under `root/g` and plans the build.
fn plan_rows(
    root: &std::path::Path,
    rows: &[Row],
    p: &Pipeline,
) -> (Vec<covidx::record::Record>, covidx::split::Assignment) {
    let g = root.join("g");
    std::fs::create_dir_all(g.join("images")).unwrap();
    let mut csv = String::from("pid,img,finding\n");
    for (pid, img, f, exists) in rows {
        csv.push_str(&format!("{pid},i{img}.png,{}\n", FINDINGS[*f]));
        if *exists {
            std::fs::write(g.join(format!("images/i{img}.png")), b"").unwrap();
        }
    }
    std::fs::write(g.join("m.csv"), csv).unwrap();
    let (records, a, _) = plan(p, root, ImageCheck::Exists).unwrap();
    (records, a)
}

/// The patients of each split.
fn patients(
    records: &[covidx::record::Record],
    a: &covidx::split::Assignment,
) -> (HashSet<String>, HashSet<String>) {
    let keys = |idx: &[usize]| idx.iter().map(|&i| records[i].patient_key()).collect();
    (keys(&a.train), keys(&a.test))
}

/// `rows` in the order of a seeded Fisher-Yates shuffle.
fn shuffled(rows: &[Row], mut seed: u64) -> Vec<Row> {
    let mut out = rows.to_vec();
    for i in (1..out.len()).rev() {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        out.swap(i, (seed >> 33) as usize % (i + 1));
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn no_patient_in_two_splits(
        rows in prop::collection::vec((0u8..30, 0u8..40, 0usize..5, any::<bool>()), 1..120),
        pins in prop::collection::vec(0u8..30, 0..4),
        seeded in any::<bool>(),
        fraction in 0.05f64..0.9,
        order in any::<u64>(),
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let p = Pipeline::parse(&pipeline(seeded, fraction, &pins)).unwrap();
        let (records, a) = plan_rows(tmp.path(), &rows, &p);
        let train: HashSet<String> = a.train.iter().map(|&i| records[i].patient_key()).collect();
        let test: HashSet<String> = a.test.iter().map(|&i| records[i].patient_key()).collect();
        prop_assert!(train.is_disjoint(&test));
        for pin in &pins {
            let key = format!("g:{}", pin);
            prop_assert!(!train.contains(&key));
        }
        // Every record is in exactly one split or carries an exclusion reason.
        let in_split = a.train.len() + a.test.len();
        let excluded = records.iter().filter(|r| r.exclusion.is_some()).count();
        prop_assert_eq!(in_split + excluded, records.len());

        // Row order does not change which patients go where. (Rows repeating a (patient,
        // image) pair are dropped first: which of them is the kept duplicate depends on order
        // by design, and so could its finding.)
        let mut seen = HashSet::new();
        let unique: Vec<Row> = rows.iter().copied().filter(|r| seen.insert((r.0, r.1))).collect();
        let a_dir = tmp.path().join("a");
        let b_dir = tmp.path().join("b");
        let (ra, aa) = plan_rows(&a_dir, &unique, &p);
        let (rb, ab) = plan_rows(&b_dir, &shuffled(&unique, order), &p);
        prop_assert_eq!(patients(&ra, &aa), patients(&rb, &ab));
        prop_assert_eq!(aa.train.len() + aa.test.len(), ab.train.len() + ab.test.len());
    }
}

/// A large seeded split (many patients with several records of mixed classes, pins, missing
/// images) planned on 1 and on 4 threads: the same records, decisions and splits, since every
/// parallel step of the split is a pure function of its input.
#[test]
fn a_large_split_is_the_same_on_any_number_of_threads() {
    let tmp = tempfile::tempdir().unwrap();
    let g = tmp.path().join("g");
    std::fs::create_dir_all(g.join("images")).unwrap();
    let mut csv = String::from("pid,img,finding\n");
    let mut seed = 11u64;
    for i in 0..12_000usize {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let r = (seed >> 33) as usize;
        // 3,000 patients of 4 records each, spread over the file (3, 17 and 200 pinned); one
        // image in 97 missing.
        let patient = i % 3_000;
        csv.push_str(&format!(
            "{patient},i{i}.png,{}\n",
            FINDINGS[r % FINDINGS.len()]
        ));
        if !r.is_multiple_of(97) {
            std::fs::write(g.join(format!("images/i{i}.png")), b"").unwrap();
        }
    }
    std::fs::write(g.join("m.csv"), csv).unwrap();
    let p = Pipeline::parse(&pipeline(true, 0.2, &[3, 17, 200])).unwrap();
    let on = |threads: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| plan(&p, tmp.path(), ImageCheck::Exists).unwrap())
    };
    let (one, a1, _) = on(1);
    let (four, a4, _) = on(4);
    assert!(
        a1.train.len() > 5_000 && a1.test.len() > 1_000,
        "{} {}",
        a1.train.len(),
        a1.test.len()
    );
    let pinned = one
        .iter()
        .filter(|r| r.patient == "17" && r.test_pool)
        .count();
    assert!(
        pinned > 0,
        "the pinned patient's pneumonia records are in the test pool"
    );
    assert_eq!(one, four);
    assert_eq!((a1.train, a1.test), (a4.train, a4.test));
}
