//! The engine features the later COVIDx versions need, on generated fixtures (no
//! ../shared/data): the `sirm` and `ricord` readers, URL and drop rules, exclude lists,
//! per-source parse and unmapped rules, output labels, per-class pins, single-image pins,
//! pinned lines that keep their own format, pinned lines of absent sources, and the CPython
//! draw.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use covidx::build_dir::BuildDir;
use covidx::builder::{build, BuildOptions, BuildOutcome};
use covidx::record::Split;

const COHEN: &str = "\
patientid,finding,view,modality,filename,url
1,Pneumonia/Viral/COVID-19,PA,X-ray,c1.png,https://a.org/1
1,No Finding,PA,X-ray,c1b.png,https://a.org/1b
2,Pneumonia/Viral/COVID-19,PA,X-ray,c2.png,https://eurorad.org/case/2
3,Pneumonia/Bacterial/Streptococcus,AP,X-ray,c3.png,https://same.org/img
4,Pneumonia/Viral/COVID-19,L,X-ray,c4.png,https://lateral.org/4
5,todo,PA,X-ray,c5.png,https://a.org/5
";

const RICORD: &str = "\
MIDRC-RICORD-1C-419639-000001-00001-0.png 0 0 10 10
MIDRC-RICORD-1C-419639-000001-00002-0.png 0 0 10 10
MIDRC-RICORD-1C-419639-000002-00003-0.png 0 0 10 10
";

fn touch(p: &Path) {
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, b"x").unwrap();
}

/// Cohen (6 rows), the Radiography Database (5 rows), RICORD (3 images) and a pinned list.
fn sources(root: &Path, cohen: &str, test_list: &str) -> PathBuf {
    let c = root.join("covid-chestxray-dataset");
    fs::create_dir_all(&c).unwrap();
    fs::write(c.join("metadata.csv"), cohen).unwrap();
    for line in cohen.lines().skip(1) {
        touch(&c.join("images").join(line.split(',').nth(4).unwrap()));
    }
    let db = root.join("COVID-19-Radiography-Database");
    fs::create_dir_all(&db).unwrap();
    let book = common::xlsx::workbook(&[
        vec!["FILE NAME", "FORMAT", "SIZE", "URL"],
        vec!["COVID-19(1)", "PNG", "1024*1024", "https://same.org/img"],
        vec!["COVID-19(2)", "PNG", "1024*1024", "https://lateral.org/4"],
        vec!["COVID-19(3)", "PNG", "1024*1024", "https://s.org/3"],
        vec!["COVID-19(4)", "PNG", "1024*1024", "https://s.org/4"],
        vec!["COVID-19(5)", "PNG", "1024*1024", "https://s.org/5"],
    ]);
    fs::write(db.join("COVID-19.metadata.xlsx"), book).unwrap();
    for n in 1..=4 {
        touch(&db.join(format!("COVID-19/COVID-19 ({n}).png")));
    }
    touch(&db.join("COVID-19/COVID-19(5).png"));
    let cn = root.join("COVID-Net");
    fs::create_dir_all(&cn).unwrap();
    fs::write(cn.join("ricord_data_set.txt"), RICORD).unwrap();
    for line in RICORD.lines() {
        touch(&root.join("ricord").join(line.split(' ').next().unwrap()));
    }
    fs::write(cn.join("test.txt"), test_list).unwrap();
    root.to_path_buf()
}

const THREE_CLASS: &str = r#"
name = "fixture"
classes = ["normal", "pneumonia", "COVID-19"]
[labels]
parse = "first-comma"
map = { "COVID-19" = "COVID-19", Streptococcus = "pneumonia" }
[[sources]]
name = "cohen"
kind = "cohen"
parse = "last-path"
views = ["PA", "AP"]
drop = [{ field = "url", contains = ["eurorad.org"], class = "COVID-19" }]
test_patients = { "COVID-19" = ["1"] }
[[sources]]
name = "sirm"
kind = "sirm"
space_as = ""
urls_not_in = { source = "cohen" }
exclude = [{ patient = "COVID-19(3)", why = "discard list" }]
[[sources]]
name = "ricord"
kind = "ricord"
test_single_image = ["COVID-19"]
[split]
pins = "per-class"
pinned_test_list = "COVID-Net/test.txt"
pinned_absent_tags = ["other"]
[output]
columns = 4
"#;

/// The pinned list: a 3-column line, a 4-column line, and a 5-field line of a source the
/// pipeline does not read.
const LIST: &str = "\
1 c1.png COVID-19
COVID 70 COVID(70).png COVID-19 other
419639-000002 MIDRC-RICORD-1C-419639-000002-00003-0.png COVID-19 ricord
";

fn run(pipeline: &str, cohen: &str, list: &str, tmp: &Path) -> anyhow::Result<BuildOutcome> {
    let src = sources(&tmp.join("sources"), cohen, list);
    let file = tmp.join("p.toml");
    fs::write(&file, pipeline).unwrap();
    build(&BuildOptions {
        metadata_only: true,
        ..BuildOptions::new(file, src, tmp.join("out"))
    })
}

fn split(tmp: &Path, s: Split) -> String {
    fs::read_to_string(BuildDir::new(tmp.join("out")).split_file(s)).unwrap()
}

#[test]
fn sirm_ricord_rules_and_a_mixed_format_pinned_list() {
    let tmp = tempfile::tempdir().unwrap();
    let o = run(THREE_CLASS, COHEN, LIST, tmp.path()).unwrap();
    // Pinned lines keep their own column count; the line of the absent source is left out.
    assert_eq!(
        split(tmp.path(), Split::Test),
        "1 c1.png COVID-19\n\
         419639-000002 MIDRC-RICORD-1C-419639-000002-00003-0.png COVID-19 ricord\n"
    );
    assert_eq!(o.assignment.left_out.get("other"), Some(&1));
    // Train: class by class, source by source. Cohen 2 is dropped by the URL rule, sirm 1
    // shares a Cohen URL, sirm 3 is in the exclude list; sirm 2's URL is only on a Cohen row
    // the view filter dropped, so it stays. sirm 4 exists only as `COVID-19 (4).png` and is
    // written without the space; RICORD 000001 has two images, so it is not pinned.
    assert_eq!(
        split(tmp.path(), Split::Train),
        "3 c3.png pneumonia cohen\n\
         COVID-19(2) COVID-19(2).png COVID-19 sirm\n\
         COVID-19(4) COVID-19(4).png COVID-19 sirm\n\
         COVID-19(5) COVID-19(5).png COVID-19 sirm\n\
         419639-000001 MIDRC-RICORD-1C-419639-000001-00001-0.png COVID-19 ricord\n\
         419639-000001 MIDRC-RICORD-1C-419639-000001-00002-0.png COVID-19 ricord\n"
    );
    let s = &o.summary;
    for (reason, n) in [
        ("dropped-by-rule", 1),
        ("url-in-other-source", 1),
        ("excluded-by-list", 1),
        ("view-filtered", 1),
        ("unmapped-finding", 2),
    ] {
        assert_eq!(s.excluded_total(reason), n, "{reason}");
    }
    let sirm4 = o
        .records
        .iter()
        .find(|r| r.patient == "COVID-19(4)")
        .unwrap();
    assert_eq!(sirm4.image, "COVID-19 (4).png");
    assert_eq!(
        sirm4.path,
        "COVID-19-Radiography-Database/COVID-19/COVID-19 (4).png"
    );
    assert_eq!(sirm4.line, 5, "spreadsheet row (the header is row 1)");
    assert_eq!(sirm4.url, "https://s.org/4");
}

#[test]
fn a_pinned_line_of_an_unread_source_fails_without_the_setting() {
    let tmp = tempfile::tempdir().unwrap();
    let pipeline = THREE_CLASS.replace("pinned_absent_tags = [\"other\"]\n", "");
    let err = format!("{:#}", run(&pipeline, COHEN, LIST, tmp.path()).unwrap_err());
    assert!(
        err.contains("COVID-Net/test.txt:2") && err.contains("no source has this patient"),
        "{err}"
    );
}

#[test]
fn a_pinned_line_whose_tag_names_another_source_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let list = LIST.replace("COVID-19 ricord", "COVID-19 sirm");
    let err = format!(
        "{:#}",
        run(THREE_CLASS, COHEN, &list, tmp.path()).unwrap_err()
    );
    assert!(err.contains("no source tagged \"sirm\" has it"), "{err}");
}

const BINARY: &str = r#"
name = "binary"
classes = ["negative", "normal", "pneumonia", "COVID-19"]
[labels]
parse = "first-comma"
map = { "COVID-19" = "COVID-19", Streptococcus = "pneumonia" }
[[sources]]
name = "cohen"
kind = "cohen"
parse = "last-path"
unmapped = "negative"
views = ["PA", "AP"]
test_patients = { "COVID-19" = ["1"] }
[split]
pins = "per-class"
[output]
columns = 4
labels = { negative = "negative", normal = "negative", pneumonia = "negative", "COVID-19" = "positive" }
[audit]
fail_on = []
"#;

#[test]
fn binary_labels_unmapped_class_and_per_class_pins_that_straddle() {
    let tmp = tempfile::tempdir().unwrap();
    let o = run(BINARY, COHEN, "", tmp.path()).unwrap();
    // Unmapped Cohen findings become negative and are written as `negative`; COVID-19 as
    // `positive`. Patient 1 is pinned as COVID-19 only: its No Finding image stays in train.
    assert_eq!(
        split(tmp.path(), Split::Train),
        "1 c1b.png negative cohen\n\
         5 c5.png negative cohen\n\
         3 c3.png negative cohen\n\
         2 c2.png positive cohen\n"
    );
    assert_eq!(split(tmp.path(), Split::Test), "1 c1.png positive cohen\n");
    assert_eq!(o.assignment.straddling, vec!["cohen:1".to_string()]);
    assert_eq!(
        o.audit.failed(&["overlap".to_string()]),
        vec!["overlap".to_string()]
    );

    // Patient-level pins (the default) move the whole patient: nobody straddles.
    let tmp = tempfile::tempdir().unwrap();
    let o = run(
        &BINARY.replace("pins = \"per-class\"\n", ""),
        COHEN,
        "",
        tmp.path(),
    )
    .unwrap();
    assert!(o.assignment.straddling.is_empty());
    assert_eq!(
        split(tmp.path(), Split::Test),
        "1 c1b.png negative cohen\n1 c1.png positive cohen\n"
    );
}

/// CPython's answer to a script, or `None` (with a SKIPPED line) without python3.
fn python(test: &str, script: &str) -> Option<String> {
    match std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .output()
    {
        Ok(out) if out.status.success() => Some(String::from_utf8(out.stdout).unwrap()),
        _ => {
            eprintln!("SKIPPED {test}: python3 is not available");
            None
        }
    }
}

#[test]
fn python_draw_pins_and_selects_as_cpython_does() {
    // 12 negative patients: 6..=16 with one image each, 17 with two (not single-image).
    let mut cohen = String::from(COHEN);
    for p in 6..=16 {
        cohen.push_str(&format!("{p},todo,PA,X-ray,n{p}.png,u{p}\n"));
    }
    cohen.push_str("17,todo,PA,X-ray,n17a.png,u17a\n17,todo,PA,X-ray,n17b.png,u17b\n");
    let pipeline = BINARY.replace(
        "[output]",
        "[split.python_draw]\nseed = 7\n\
         pin_patients = [{ source = \"cohen\", class = \"negative\", count = 4, single_image = true }]\n\
         keep = [{ class = \"COVID-19\" }]\n\
         sample = [{ class = \"negative\", count = 2 }]\n[output]",
    );
    let tmp = tempfile::tempdir().unwrap();
    run(&pipeline, &cohen, "", tmp.path()).unwrap();
    // The single-image negative patients in order of first appearance: 1 (c1b), 5, 6..=16.
    let population: Vec<String> = ["1", "5"]
        .into_iter()
        .map(String::from)
        .chain((6..=16).map(|p| p.to_string()))
        .collect();
    let images: Vec<String> = population
        .iter()
        .map(|p| match p.as_str() {
            "1" => "c1b.png".to_string(),
            "5" => "c5.png".to_string(),
            p => format!("n{p}.png"),
        })
        .collect();
    let script = format!(
        "import random\nrandom.seed(7)\npop = {population:?}\nimgs = dict(zip(pop, {images:?}))\n\
         pins = set(random.sample(pop, 4))\npool = [p for p in pop if p in pins]\n\
         keep = ['1 c1.png positive cohen']\n\
         drawn = random.sample(pool, 2)\n\
         print(''.join(l + '\\n' for l in keep + [p + ' ' + imgs[p] + ' negative cohen' for p in drawn]), end='')\n"
    );
    let Some(expected) = python("python_draw_pins_and_selects_as_cpython_does", &script) else {
        return;
    };
    assert_eq!(split(tmp.path(), Split::Test), expected);
}
