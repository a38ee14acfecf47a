//! Property test: for arbitrary generated sources, pins and split settings, no patient is ever
//! in both splits, every record is accounted for, and the split is independent of row order
//! for the seeded draw's choice of patients.

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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn no_patient_in_two_splits(
        rows in prop::collection::vec((0u8..30, 0u8..40, 0usize..5, any::<bool>()), 1..120),
        pins in prop::collection::vec(0u8..30, 0..4),
        seeded in any::<bool>(),
        fraction in 0.05f64..0.9,
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let g = tmp.path().join("g");
        std::fs::create_dir_all(g.join("images")).unwrap();
        let mut csv = String::from("pid,img,finding\n");
        for (pid, img, f, exists) in &rows {
            csv.push_str(&format!("{pid},i{img}.png,{}\n", FINDINGS[*f]));
            if *exists {
                std::fs::write(g.join(format!("images/i{img}.png")), b"").unwrap();
            }
        }
        std::fs::write(g.join("m.csv"), csv).unwrap();
        let p = Pipeline::parse(&pipeline(seeded, fraction, &pins)).unwrap();
        let (records, a, _) = plan(&p, tmp.path(), ImageCheck::Exists).unwrap();
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
    }
}
