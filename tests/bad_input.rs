//! Bad input: every case gets a message naming the file, row and field; recoverable ones become
//! exclusion reasons; paths that would escape a source root are never read.

use std::path::Path;

use covidx::build_dir::BuildDir;
use covidx::builder::{build, BuildOptions};
use covidx::record::Exclusion;
use covidx::record::Split;

const PIPELINE: &str = r#"
name = "bad"
classes = ["normal", "pneumonia", "COVID-19"]
[labels]
parse = "first-comma"
unknown = "UNKNOWN"
map = { "COVID-19" = "COVID-19", Normal = "normal" }
[[sources]]
name = "cohen"
kind = "cohen"
"#;

const HEADER: &str = "patientid,offset,finding,view,modality,folder,filename,notes,\n";

fn setup(dir: &Path, metadata: &[u8], unknown: &str) -> BuildOptions {
    let c = dir.join("sources/covid-chestxray-dataset");
    std::fs::create_dir_all(c.join("images")).unwrap();
    for name in ["a.png", "b.png", "c.png"] {
        std::fs::write(c.join("images").join(name), b"img").unwrap();
    }
    std::fs::write(dir.join("secret.png"), b"secret").unwrap();
    std::fs::write(c.join("metadata.csv"), metadata).unwrap();
    std::fs::write(dir.join("p.toml"), PIPELINE.replace("UNKNOWN", unknown)).unwrap();
    BuildOptions {
        metadata_only: false,
        ..BuildOptions::new(dir.join("p.toml"), dir.join("sources"), dir.join("out"))
    }
}

fn err_of(metadata: &str) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let opts = setup(tmp.path(), metadata.as_bytes(), "exclude");
    let e = build(&opts).unwrap_err();
    assert!(!BuildDir::new(tmp.path().join("out")).lock().exists());
    format!("{e:#}")
}

#[test]
fn escaping_paths_are_errors_naming_file_line_and_field() {
    let msg = err_of(&format!("{HEADER}1,0,COVID-19,PA,X-ray,images,a.png,,\n2,0,COVID-19,PA,X-ray,images,../../secret.png,,\n"));
    assert!(
        msg.contains("covid-chestxray-dataset/metadata.csv:3: field \"folder/filename\""),
        "{msg}"
    );
    assert!(msg.contains("escapes its root"), "{msg}");
    let msg = err_of(&format!("{HEADER}1,0,COVID-19,PA,X-ray,/etc,passwd,,\n"));
    assert!(
        msg.contains("metadata.csv:2") && msg.contains("absolute"),
        "{msg}"
    );
}

#[test]
fn undecodable_text_names_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let mut bytes = HEADER.as_bytes().to_vec();
    bytes.extend_from_slice(b"1,0,COVID-19,PA,X-ray,images,a.png,caf\xE9,\n");
    let e = build(&setup(tmp.path(), &bytes, "exclude")).unwrap_err();
    let msg = format!("{e:#}");
    assert!(
        msg.contains("covid-chestxray-dataset/metadata.csv:2: invalid UTF-8"),
        "{msg}"
    );
    assert!(msg.contains("latin-1"), "{msg}");
}

#[test]
fn missing_column_and_missing_input_are_named() {
    let msg = err_of("patientid,finding,view,modality\n1,COVID-19,PA,X-ray\n");
    assert!(msg.contains("required column \"filename\""), "{msg}");
    let tmp = tempfile::tempdir().unwrap();
    let opts = setup(tmp.path(), HEADER.as_bytes(), "exclude");
    std::fs::remove_file(
        tmp.path()
            .join("sources/covid-chestxray-dataset/metadata.csv"),
    )
    .unwrap();
    let msg = format!("{:#}", build(&opts).unwrap_err());
    assert!(
        msg.contains("required input covid-chestxray-dataset/metadata.csv is missing"),
        "{msg}"
    );
}

#[test]
fn recoverable_problems_become_exclusions() {
    let tmp = tempfile::tempdir().unwrap();
    let meta = format!(
        "{HEADER}1,0,COVID-19,PA,X-ray,images,a.png,,\n\
         2,0,COVID-19,PA\n\
         3,0,Influenza,PA,X-ray,images,b.png,,\n\
         4,0,COVID-19,PA,X-ray,images,gone.png,,\n\
         1,0,COVID-19,PA,X-ray,images,a.png,,\n\
         5,0,,PA,X-ray,images,c.png,,\n"
    );
    let o = build(&setup(tmp.path(), meta.as_bytes(), "exclude")).unwrap();
    let why: Vec<_> = o.records.iter().map(|r| (r.line, r.exclusion)).collect();
    assert_eq!(
        why,
        vec![
            (2, None),
            (3, Some(Exclusion::MalformedRow)),
            (4, Some(Exclusion::UnmappedFinding)),
            (5, Some(Exclusion::MissingImage)),
            (6, Some(Exclusion::Duplicate)),
            (7, Some(Exclusion::Unlabelled)),
        ]
    );
    assert!(
        o.records[1]
            .detail
            .contains("metadata.csv:3: row has 4 fields, column \"modality\" (#5) is missing"),
        "{}",
        o.records[1].detail
    );
    assert!(
        o.records[4].detail.contains("metadata.csv:2"),
        "{}",
        o.records[4].detail
    );
    // Every exclusion is in the summary; nothing is dropped.
    let excluded: u64 = o.summary.excluded.values().flat_map(|m| m.values()).sum();
    assert_eq!(
        excluded as usize + o.assignment.train.len() + o.assignment.test.len(),
        o.records.len()
    );
}

#[test]
fn unknown_finding_can_be_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let meta = format!(
        "{HEADER}1,0,COVID-19,PA,X-ray,images,a.png,,\n3,0,Influenza,PA,X-ray,images,b.png,,\n"
    );
    let msg = format!(
        "{:#}",
        build(&setup(tmp.path(), meta.as_bytes(), "error")).unwrap_err()
    );
    assert!(
        msg.contains("metadata.csv:3: field \"finding\": \"Influenza\""),
        "{msg}"
    );
}

#[test]
fn a_missing_pinned_pool_names_the_expected_path() {
    let tmp = tempfile::tempdir().unwrap();
    let meta = format!("{HEADER}1,0,COVID-19,PA,X-ray,images,a.png,,\n");
    let opts = setup(tmp.path(), meta.as_bytes(), "exclude");
    let text = std::fs::read_to_string(&opts.pipeline).unwrap()
        + "test_pools = { normal = \"COVID-Net/pool.npy\" }\n";
    std::fs::write(&opts.pipeline, text).unwrap();
    let msg = format!("{:#}", build(&opts).unwrap_err());
    assert!(msg.contains("required input COVID-Net/pool.npy"), "{msg}");
    assert!(msg.contains("COVID-Net/pool.npy"), "{msg}");
}

#[test]
fn cohen_flat_schema_with_trailing_spaces_and_first_comma_findings() {
    // The early flat schema: `COVID-19, ARDS`, no `folder`/`RT_PCR_positive`, a file name with
    // a trailing space, a quoted multi-line note.
    let tmp = tempfile::tempdir().unwrap();
    let meta = "patientid,offset,sex,age,finding,survival,view,modality,filename,notes,\n\
                1,0,M,50,\"COVID-19, ARDS\",Y,PA,X-ray,a.png ,\"line one\nline two\",\n\
                2,0,F,40,ARDS,,PA,X-ray,b.png,,\n";
    let o = build(&setup(tmp.path(), meta.as_bytes(), "exclude")).unwrap();
    assert_eq!(o.records.len(), 2);
    assert_eq!(o.records[0].image, "a.png");
    assert_eq!(o.records[0].path, "covid-chestxray-dataset/images/a.png");
    assert_eq!(o.records[0].parsed, "COVID-19");
    assert_eq!(o.records[0].label, Some(2));
    assert_eq!(o.records[1].line, 4);
    assert_eq!(o.records[1].exclusion, Some(Exclusion::UnmappedFinding));
}

#[test]
fn an_unterminated_quote_is_an_error_naming_file_and_line() {
    // The csv crate would run the quoted note to the end of the file, and rows 3 and 4 would
    // vanish from a build that exits 0.
    let msg = err_of(&format!(
        "{HEADER}1,0,COVID-19,PA,X-ray,images,a.png,\"never closed,\n\
         2,0,COVID-19,PA,X-ray,images,b.png,,\n\
         3,0,COVID-19,PA,X-ray,images,c.png,,\n"
    ));
    assert!(
        msg.contains("covid-chestxray-dataset/metadata.csv:2: a quoted field"),
        "{msg}"
    );
}

#[test]
fn names_a_split_file_cannot_carry_are_excluded_never_written_raw() {
    let tmp = tempfile::tempdir().unwrap();
    let c = tmp.path().join("sources/covid-chestxray-dataset/images");
    std::fs::create_dir_all(&c).unwrap();
    for name in ["a\nb.png", "tab\t.png", "sp ace.png"] {
        std::fs::write(c.join(name), b"img").unwrap();
    }
    let meta = format!(
        "{HEADER}1 2,0,COVID-19,PA,X-ray,images,a.png,,\n\
         3,0,COVID-19,PA,X-ray,images,\"a\nb.png\",,\n\
         4,0,COVID-19,PA,X-ray,images,tab\t.png,,\n\
         5,0,COVID-19,PA,X-ray,images,sp ace.png,,\n\
         6,0,COVID-19,PA,X-ray,images,b.png,,\n"
    );
    let opts = setup(tmp.path(), meta.as_bytes(), "exclude");
    let o = build(&opts).unwrap();
    let why: Vec<_> = o.records.iter().map(|r| (r.line, r.exclusion)).collect();
    assert_eq!(
        why,
        vec![
            (2, Some(Exclusion::InvalidName)),
            (3, Some(Exclusion::InvalidName)),
            (5, Some(Exclusion::InvalidName)),
            (6, None),
            (7, None),
        ]
    );
    assert!(
        o.records[0]
            .detail
            .contains("metadata.csv:2: patient id \"1 2\" holds ' '"),
        "{}",
        o.records[0].detail
    );
    assert!(
        o.records[1].detail.contains("image name \"a\\nb.png\""),
        "{}",
        o.records[1].detail
    );
    // Every split line has exactly three fields; the space became `_`.
    let train =
        std::fs::read_to_string(BuildDir::new(tmp.path().join("out")).split_file(Split::Train))
            .unwrap();
    assert_eq!(train, "5 sp_ace.png COVID-19\n6 b.png COVID-19\n");
    assert_eq!(o.summary.excluded_total("invalid-name"), 3);
}

#[test]
fn a_symlink_out_of_the_source_root_is_refused_in_metadata_only_builds_too() {
    let tmp = tempfile::tempdir().unwrap();
    let meta = format!(
        "{HEADER}1,0,COVID-19,PA,X-ray,images,link.png,,\n2,0,COVID-19,PA,X-ray,images,a.png,,\n"
    );
    let opts = setup(tmp.path(), meta.as_bytes(), "exclude");
    let images = tmp.path().join("sources/covid-chestxray-dataset/images");
    std::os::unix::fs::symlink(tmp.path().join("secret.png"), images.join("link.png")).unwrap();
    for metadata_only in [true, false] {
        let o = build(&BuildOptions {
            metadata_only,
            ..opts.clone()
        })
        .unwrap();
        assert_eq!(o.records[0].exclusion, Some(Exclusion::UnreadableImage));
        assert!(
            o.records[0].detail.contains("outside its source root"),
            "{}",
            o.records[0].detail
        );
        assert!(!o.lock.inputs.keys().any(|k| k.contains("link")));
    }
}

#[test]
fn a_source_directory_may_link_to_where_the_dataset_lives() {
    // Configured paths follow symlinks (a common layout); image paths from metadata are
    // confined to the source's resolved directory.
    let tmp = tempfile::tempdir().unwrap();
    let meta = format!(
        "{HEADER}1,0,COVID-19,PA,X-ray,images,a.png,,\n2,0,COVID-19,PA,X-ray,images,out.png,,\n"
    );
    let opts = setup(tmp.path(), meta.as_bytes(), "exclude");
    let real = tmp.path().join("datasets/cohen");
    std::fs::create_dir_all(real.parent().unwrap()).unwrap();
    let linked = opts.sources.join("covid-chestxray-dataset");
    std::fs::rename(&linked, &real).unwrap();
    std::os::unix::fs::symlink(&real, &linked).unwrap();
    std::os::unix::fs::symlink(tmp.path().join("secret.png"), real.join("images/out.png")).unwrap();
    let o = build(&opts).unwrap();
    assert_eq!(o.records[0].exclusion, None);
    assert_eq!(o.records[1].exclusion, Some(Exclusion::UnreadableImage));
    assert!(
        o.records[1].detail.contains("outside its source root"),
        "{}",
        o.records[1].detail
    );
}
