//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod shared_layout;
pub mod xlsx;

use std::path::{Path, PathBuf};

/// Path of a file in the crate (pipelines, ...).
pub fn crate_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// Real data, or a clear SKIPPED line and `None`.
pub fn shared_or_skip(test: &str) -> Option<PathBuf> {
    let d = shared_layout::shared_data();
    if d.is_none() {
        eprintln!(
            "SKIPPED {test}: ../shared/data not found (set COVIDX_SHARED_DATA to run it on the \
             real upstream metadata)"
        );
    }
    d
}

/// Every file under `dir` (relative name, bytes), sorted; temporary files are left out.
pub fn tree_bytes(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let name = p.strip_prefix(dir).unwrap().display().to_string();
            if p.is_dir() {
                stack.push(p);
            } else if !name.contains(".tmp-") {
                out.push((name, std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// `COVIDX_PYTHON` (set by .ci/run), else python3, if it imports `modules`.
pub fn python_with(modules: &[&str], test: &str) -> Option<String> {
    let py = std::env::var("COVIDX_PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = std::process::Command::new(&py)
        .arg("-c")
        .arg(format!("import {}", modules.join(", ")))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        eprintln!(
            "SKIPPED {test}: {py} lacks {modules:?} (run scripts/setup-python.sh and set \
             COVIDX_PYTHON=.venv-test/bin/python)"
        );
    }
    ok.then_some(py)
}

/// The demo's sources and pipeline under `dir` (`sources/`, `demo.toml`), built into
/// `dir/out`.
pub fn demo_build(dir: &Path) -> covidx::builder::BuildOutcome {
    let sources = dir.join("sources");
    covidx::demo::write_sources(&sources).unwrap();
    std::fs::write(dir.join("demo.toml"), covidx::demo::PIPELINE).unwrap();
    covidx::builder::build(&covidx::builder::BuildOptions::new(
        dir.join("demo.toml"),
        sources,
        dir.join("out"),
    ))
    .unwrap()
}
