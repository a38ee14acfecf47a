//! Partitioned builds: parts K/N merged into a build byte-identical to one machine's (N = 1,
//! 3, and more parts than shards), a part that resumes, a merge that refuses what does not
//! fit, and the Slurm array scripts and Kubernetes Indexed Job manifests run as their
//! schedulers would run them.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use covidx::build_dir::BuildDir;
use covidx::builder::{build, build_part, BuildOptions};
use covidx::record::Split;
use covidx::shards::{Index, PartRecord, PartSpec};

const PIPELINE: &str = r#"
name = "parts"
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
[split]
method = "seeded"
test_fraction = 0.2
[images]
enabled = true
size = 128
shard_mib = 1
copies = 1
"#;

/// 140 images of 70 patients (one of them corrupt), a pipeline cutting them into several
/// training shards and a test shard; returns (pipeline, sources).
fn corpus(dir: &Path) -> (PathBuf, PathBuf) {
    let g = dir.join("sources/g/images");
    std::fs::create_dir_all(&g).unwrap();
    let mut csv = String::from("pid,img,f\n");
    for i in 0..140u32 {
        let name = format!("x{i}.png");
        if i == 77 {
            std::fs::write(g.join(&name), b"\x89PNG\r\n\x1a\nnot really").unwrap();
        } else {
            let img = image::imageops::resize(
                &covidx::demo::synthetic_xray(i),
                140,
                150,
                image::imageops::FilterType::Triangle,
            );
            img.save(g.join(&name)).unwrap();
        }
        csv.push_str(&format!(
            "{},{name},{}\n",
            i / 2,
            if i % 3 == 0 { "p" } else { "n" }
        ));
    }
    std::fs::write(dir.join("sources/g/m.csv"), csv).unwrap();
    std::fs::write(dir.join("p.toml"), PIPELINE).unwrap();
    (dir.join("p.toml"), dir.join("sources"))
}

fn opts(pipeline: &Path, sources: &Path, out: &Path) -> BuildOptions {
    BuildOptions::new(pipeline.into(), sources.into(), out.into())
}

fn part(pipeline: &Path, sources: &Path, out: &Path, k: usize, n: usize) -> PartRecord {
    build_part(&BuildOptions {
        part: Some(PartSpec { k, n }),
        ..opts(pipeline, sources, out)
    })
    .unwrap()
    .record
}

fn merge(pipeline: &Path, sources: &Path, out: &Path, parts: &[PathBuf]) -> anyhow::Result<()> {
    build(&BuildOptions {
        merge: parts.to_vec(),
        ..opts(pipeline, sources, out)
    })
    .map(|_| ())
}

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_covidx")
}

/// Total shards of a finished build.
fn shard_count(build: &Path) -> usize {
    let index = Index::load(&BuildDir::new(build).shard_index()).unwrap();
    index.splits.values().map(Vec::len).sum()
}

#[test]
fn merged_parts_equal_one_build_for_one_three_and_more_parts_than_shards() {
    let tmp = tempfile::tempdir().unwrap();
    let (p, s) = corpus(tmp.path());
    let whole = tmp.path().join("whole");
    let one = build(&opts(&p, &s, &whole)).unwrap();
    assert_eq!(one.images.as_ref().unwrap().quarantine.len(), 1);
    let shards = shard_count(&whole);
    let index = Index::load(&BuildDir::new(&whole).shard_index()).unwrap();
    assert!(
        index.entries(Split::Train).len() >= 3 && !index.entries(Split::Test).is_empty(),
        "{shards} shards: {:?}",
        index
            .splits
            .iter()
            .map(|(k, v)| (k, v.len()))
            .collect::<Vec<_>>()
    );
    for n in [1, 3, shards + 2] {
        let dirs: Vec<PathBuf> = (1..=n)
            .map(|k| tmp.path().join(format!("parts{n}/part-{k}")))
            .collect();
        let mut written = 0;
        for (k, d) in dirs.iter().enumerate() {
            let r = part(&p, &s, d, k + 1, n);
            assert!(r.complete);
            assert_eq!(r.planned.values().sum::<usize>(), shards);
            // Round robin over the global shard numbers, training shards first.
            for sh in &r.shards {
                let split = if sh.split == "train" {
                    Split::Train
                } else {
                    Split::Test
                };
                assert!(r.part.owns(r.global(split, sh.number)), "{n}: {sh:?}");
            }
            written += r.shards.len();
            // A part holds its shards and its record, nothing else of a build.
            let files: Vec<String> = common::tree_bytes(d).into_iter().map(|f| f.0).collect();
            assert!(
                files
                    .iter()
                    .all(|f| f == "part.json" || f.starts_with("shards/")),
                "{files:?}"
            );
        }
        assert_eq!(written, shards, "every shard written once with {n} parts");
        let merged = tmp.path().join(format!("merged{n}"));
        merge(&p, &s, &merged, &dirs).unwrap();
        assert_eq!(
            common::tree_bytes(&whole),
            common::tree_bytes(&merged),
            "{n} parts merged differ from one build"
        );
    }
}

#[test]
fn a_rerun_part_resumes_and_a_changed_shard_is_redone_or_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (p, s) = corpus(tmp.path());
    let d = tmp.path().join("part-1");
    let spec = BuildOptions {
        part: Some(PartSpec { k: 1, n: 2 }),
        ..opts(&p, &s, &d)
    };
    let first = build_part(&spec).unwrap();
    let own = first.record.shards.len();
    assert!(own >= 2 && first.written == own && first.reused == 0);
    let again = build_part(&spec).unwrap();
    assert_eq!((again.reused, again.written), (own, 0));
    assert_eq!(again.record, first.record);

    // A damaged shard is redone; the others are kept.
    let sh = &first.record.shards[1];
    let split = if sh.split == "train" {
        Split::Train
    } else {
        Split::Test
    };
    let file = BuildDir::new(&d).shard(split, &sh.progress.shard.file);
    let good = std::fs::read(&file).unwrap();
    std::fs::write(&file, &good[..good.len() / 2]).unwrap();
    let redone = build_part(&spec).unwrap();
    assert_eq!((redone.reused, redone.written), (own - 1, 1));
    assert_eq!(std::fs::read(&file).unwrap(), good);

    // A part rerun with another part number forgets the old shards and removes those that
    // are not its own.
    let other = build_part(&BuildOptions {
        part: Some(PartSpec { k: 2, n: 2 }),
        ..opts(&p, &s, &d)
    })
    .unwrap();
    assert_eq!(other.reused, 0);
    assert!(!other.removed.is_empty());
    assert!(!file.exists() || other.record.shard(split, sh.number).is_some());

    // A shard changed after its part finished is refused by the merge, by name.
    let d1 = tmp.path().join("p1");
    let r1 = part(&p, &s, &d1, 1, 2);
    let sh = &r1.shards[0];
    let file = BuildDir::new(&d1).shard(Split::Train, &sh.progress.shard.file);
    let mut bytes = std::fs::read(&file).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&file, bytes).unwrap();
    let e = format!(
        "{:#}",
        merge(&p, &s, &tmp.path().join("m"), &[d1.clone(), d.clone()]).unwrap_err()
    );
    assert!(
        e.contains(&file.display().to_string()) && e.contains("changed after the part wrote it"),
        "{e}"
    );
    assert!(!BuildDir::new(tmp.path().join("m")).lock().exists());
}

#[test]
fn a_merge_refuses_parts_that_do_not_make_one_build() {
    let tmp = tempfile::tempdir().unwrap();
    let (p, s) = corpus(tmp.path());
    let dirs: Vec<PathBuf> = (1..=3)
        .map(|k| tmp.path().join(format!("part-{k}")))
        .collect();
    for (k, d) in dirs.iter().enumerate() {
        part(&p, &s, d, k + 1, 3);
    }
    let out = tmp.path().join("out");
    let err = |parts: &[PathBuf]| format!("{:#}", merge(&p, &s, &out, parts).unwrap_err());

    let e = err(&dirs[..2]);
    assert!(e.contains("parts 3/3 are missing"), "{e}");
    let e = err(&[dirs[0].clone(), dirs[1].clone(), dirs[1].clone()]);
    assert!(e.contains("part 2/3 is given twice"), "{e}");
    let e = err(&[dirs[0].clone(), tmp.path().join("sources")]);
    assert!(e.contains("is not a finished part"), "{e}");
    let e = format!(
        "{:#}",
        merge(&p, &s, &dirs[0], &dirs).expect_err("merging into a part")
    );
    assert!(e.contains("is one of the parts being merged"), "{e}");

    // Parts of another part count.
    let odd = tmp.path().join("odd");
    part(&p, &s, &odd, 2, 2);
    let e = err(&[dirs[0].clone(), odd.clone(), dirs[2].clone()]);
    assert!(e.contains("one part count"), "{e}");

    // A part that is not finished (killed, or still running).
    let rec = BuildDir::new(&dirs[1]).part_record();
    let text = std::fs::read_to_string(&rec).unwrap();
    std::fs::write(
        &rec,
        text.replace("\"complete\": true", "\"complete\": false"),
    )
    .unwrap();
    let e = err(&dirs);
    assert!(
        e.contains("part 2/3") && e.contains("is not finished"),
        "{e}"
    );
    std::fs::write(&rec, &text).unwrap();

    // A part whose record lost a shard.
    let r: PartRecord = PartRecord::load(&rec).unwrap();
    let mut lost = r.clone();
    let gone = lost.shards.pop().unwrap();
    std::fs::write(&rec, lost.to_bytes()).unwrap();
    let e = err(&dirs);
    assert!(
        e.contains(&format!("{} shard {} is missing", gone.split, gone.number)),
        "{e}"
    );
    std::fs::write(&rec, &text).unwrap();

    // Parts built from another pipeline (here: another seed) than the merge's.
    let p2 = tmp.path().join("p2.toml");
    std::fs::write(&p2, PIPELINE.replace("[labels]", "seed = 7\n[labels]")).unwrap();
    let e = format!("{:#}", merge(&p2, &s, &out, &dirs).unwrap_err());
    assert!(e.contains("was built from other inputs"), "{e}");
    assert!(!BuildDir::new(&out).lock().exists());

    // Intact, they merge.
    merge(&p, &s, &out, &dirs).unwrap();
    assert!(BuildDir::new(&out).lock().exists());
}

/// A folder with `covidx` in it, for scripts that call it by name.
fn covidx_on_path(dir: &Path) -> String {
    let bin_dir = dir.join("bin");
    std::fs::create_dir_all(&bin_dir).unwrap();
    std::os::unix::fs::symlink(bin(), bin_dir.join("covidx")).unwrap();
    format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

fn wait_ok(children: Vec<(String, std::process::Child)>) {
    for (what, c) in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{what}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn slurm_array_tasks_run_in_parallel_and_merge_into_one_build() {
    let tmp = tempfile::tempdir().unwrap();
    let (p, s) = corpus(tmp.path());
    let whole = tmp.path().join("whole");
    build(&opts(&p, &s, &whole)).unwrap();
    let work = tmp.path().join("work");
    let script = common::crate_path("scripts/cluster/slurm-part.sh");
    // As Slurm runs `sbatch --array=0-2`: every task at once, ids from 0.
    let task = |id: u32| {
        let mut c = Command::new("bash");
        c.arg(&script)
            .arg(&p)
            .arg(&s)
            .arg(&work)
            .env("COVIDX", bin())
            .env("SLURM_JOB_ID", format!("{}", 4242 + id))
            .env("SLURM_ARRAY_JOB_ID", "4242")
            .env("SLURM_ARRAY_TASK_ID", id.to_string())
            .env("SLURM_ARRAY_TASK_MIN", "0")
            .env("SLURM_ARRAY_TASK_MAX", "2")
            .env("SLURM_ARRAY_TASK_COUNT", "3")
            .env("SLURM_CPUS_PER_TASK", "1")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        c
    };
    wait_ok(
        (0..3)
            .map(|id| (format!("task {id}"), task(id).spawn().unwrap()))
            .collect(),
    );
    for k in 1..=3 {
        let r =
            PartRecord::load(&BuildDir::new(work.join(format!("parts/part-{k}"))).part_record())
                .unwrap();
        assert_eq!(r.part, PartSpec { k, n: 3 });
    }
    // A task id outside the array (a step or a gap) is refused.
    let out = task(5).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not one of 3 contiguous tasks"));

    let out = Command::new("bash")
        .arg(common::crate_path("scripts/cluster/slurm-merge.sh"))
        .arg(&work)
        .env("COVIDX", bin())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("shards taken from the parts"));
    assert_eq!(
        common::tree_bytes(&whole),
        common::tree_bytes(&work.join("build"))
    );
}

#[test]
fn slurm_submit_runs_the_merge_only_after_every_part() {
    let tmp = tempfile::tempdir().unwrap();
    // sbatch itself is not here: a stand-in records how it is called and answers as
    // `sbatch --parsable` does (job id; cluster name).
    let bin_dir = tmp.path().join("bin");
    std::fs::create_dir_all(&bin_dir).unwrap();
    let log = tmp.path().join("sbatch.log");
    std::fs::write(
        bin_dir.join("sbatch"),
        format!(
            "#!/bin/sh\nn=$(wc -l < {log} 2>/dev/null || echo 0)\necho \"$*\" >> {log}\necho \"$((900 + n));cluster\"\n",
            log = log.display()
        ),
    )
    .unwrap();
    Command::new("chmod")
        .arg("+x")
        .arg(bin_dir.join("sbatch"))
        .status()
        .unwrap();
    std::fs::write(tmp.path().join("p.toml"), PIPELINE).unwrap();
    std::fs::create_dir_all(tmp.path().join("src")).unwrap();
    let out = Command::new("bash")
        .arg(common::crate_path("scripts/cluster/slurm-submit.sh"))
        .arg("4")
        .arg(tmp.path().join("p.toml"))
        .arg(tmp.path().join("src"))
        .arg(tmp.path().join("work"))
        .arg("--partition=cpu")
        .env(
            "PATH",
            format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap()),
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let calls = std::fs::read_to_string(&log).unwrap();
    let calls: Vec<&str> = calls.lines().collect();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert!(
        calls[0].starts_with("--parsable --array=1-4 --partition=cpu ")
            && calls[0].contains("slurm-part.sh"),
        "{}",
        calls[0]
    );
    assert!(
        calls[1].starts_with("--parsable --dependency=afterok:900 --partition=cpu ")
            && calls[1].contains("slurm-merge.sh"),
        "{}",
        calls[1]
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("merge: job 901"));
}

/// The manifest at `rel` as JSON, parsed by PyYAML.
fn yaml(py: &str, rel: &str) -> serde_json::Value {
    let out = Command::new(py)
        .arg("-c")
        .arg("import sys, json, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))")
        .arg(common::crate_path(rel))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn env_of(container: &serde_json::Value, name: &str) -> Option<String> {
    container["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)
        .and_then(|e| e["value"].as_str().map(str::to_string))
}

#[test]
fn kubernetes_indexed_job_manifests_parse_and_their_commands_build_and_merge() {
    let py = std::env::var("COVIDX_PYTHON").unwrap_or_else(|_| "python3".into());
    let has_yaml = Command::new(&py)
        .args(["-c", "import yaml"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_yaml {
        eprintln!(
            "SKIPPED kubernetes manifests: {py} lacks PyYAML (scripts/setup-python.sh installs it)"
        );
        return;
    }
    let parts = yaml(&py, "scripts/cluster/k8s-parts.yaml");
    let merge_job = yaml(&py, "scripts/cluster/k8s-merge.yaml");
    for job in [&parts, &merge_job] {
        assert_eq!(job["apiVersion"], "batch/v1");
        assert_eq!(job["kind"], "Job");
        assert_eq!(job["spec"]["template"]["spec"]["restartPolicy"], "Never");
    }
    let spec = &parts["spec"];
    assert_eq!(spec["completionMode"], "Indexed");
    let completions = spec["completions"].as_u64().unwrap();
    assert!(spec["parallelism"].as_u64().unwrap() <= completions);
    let container = &spec["template"]["spec"]["containers"][0];
    assert_eq!(
        env_of(container, "PARTS").as_deref(),
        Some(completions.to_string().as_str()),
        "PARTS must equal completions"
    );
    let script = container["args"][0].as_str().unwrap().to_string();
    assert!(script.contains("JOB_COMPLETION_INDEX") && script.contains("--part"));
    assert_eq!(container["command"][0], "/bin/sh");
    // Both jobs mount the same work volume.
    let claim = |job: &serde_json::Value| {
        job["spec"]["template"]["spec"]["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == "work")
            .map(|v| v["persistentVolumeClaim"]["claimName"].clone())
    };
    assert_eq!(claim(&parts), claim(&merge_job));
    let merge_container = &merge_job["spec"]["template"]["spec"]["containers"][0];
    let merge_script = merge_container["args"][0].as_str().unwrap().to_string();

    // Run the pods' commands as the Job controller would, with 3 completions here.
    let tmp = tempfile::tempdir().unwrap();
    let (p, s) = corpus(tmp.path());
    let whole = tmp.path().join("whole");
    build(&opts(&p, &s, &whole)).unwrap();
    let work = tmp.path().join("work");
    let path = covidx_on_path(tmp.path());
    let pod = |index: Option<u32>, script: &str| {
        let mut c = Command::new("/bin/sh");
        c.arg("-c")
            .arg(script)
            .env("PATH", &path)
            .env("PARTS", "3")
            .env("PIPELINE", &p)
            .env("SOURCES", &s)
            .env("WORK", &work)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        if let Some(i) = index {
            c.env("JOB_COMPLETION_INDEX", i.to_string());
        }
        c
    };
    wait_ok(
        (0..3)
            .map(|i| (format!("pod {i}"), pod(Some(i), &script).spawn().unwrap()))
            .collect(),
    );
    let out = pod(Some(3), &script).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "index beyond PARTS is refused");
    wait_ok(vec![(
        "merge pod".into(),
        pod(None, &merge_script).spawn().unwrap(),
    )]);
    assert_eq!(
        common::tree_bytes(&whole),
        common::tree_bytes(&work.join("build"))
    );
}

#[test]
fn the_cli_runs_parts_and_merges_them() {
    let tmp = tempfile::tempdir().unwrap();
    let (p, s) = corpus(tmp.path());
    let run = |args: &[&str]| {
        let mut c = Command::new(bin());
        c.args(args);
        c.output().unwrap()
    };
    let (ps, ss) = (p.to_str().unwrap(), s.to_str().unwrap());
    let d1 = tmp.path().join("a");
    let d2 = tmp.path().join("b");
    for (k, d) in [("1/2", &d1), ("2/2", &d2)] {
        let out = run(&[
            "build",
            ps,
            "--sources",
            ss,
            "--out",
            d.to_str().unwrap(),
            "--part",
            k,
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(&format!("part {k}:")) && text.contains("covidx merge"),
            "{text}"
        );
    }
    let out = run(&["build", ps, "--part", "3/2"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("part 3 of 2 does not exist"));
    let out = run(&["build", ps, "--part", "1/2", "--metadata-only"]);
    assert!(!out.status.success());

    // `build --merge` and `covidx merge` (pipeline and sources from the parts) agree.
    let m1 = tmp.path().join("m1");
    let m2 = tmp.path().join("m2");
    let out = run(&[
        "build",
        ps,
        "--sources",
        ss,
        "--out",
        m1.to_str().unwrap(),
        "--merge",
        d1.to_str().unwrap(),
        d2.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&[
        "merge",
        m2.to_str().unwrap(),
        d2.to_str().unwrap(),
        d1.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(common::tree_bytes(&m1), common::tree_bytes(&m2));
    let out = run(&[
        "verify",
        BuildDir::new(&m2).lock().to_str().unwrap(),
        "--sources",
        ss,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
