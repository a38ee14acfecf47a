//! Split stage: pipeline order, de-duplication, pinned test patients and pools, an optional
//! seeded class-stratified draw, and an optional pinned published test list. All decisions are
//! patient-level (a patient's records all go to one side) and checked: no patient is ever in
//! both splits.

use std::collections::BTreeMap;

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use std::path::Path;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use crate::config::{Pipeline, Source, SplitMethod};
use crate::fsutil;
use crate::npy;
use crate::record::{Exclusion, Record, Split};
use crate::sources::InputHashes;

pub mod pyrandom;

/// One line of a pinned published test list.
#[derive(Debug, Clone)]
pub struct PinnedEntry {
    /// 1-based line in the list.
    pub line: usize,
    /// Upstream patient id.
    pub patient: String,
    /// Image file name.
    pub image: String,
    /// Class name.
    pub label: String,
}

/// Pinned facts read from files and the pipeline.
#[derive(Debug, Default)]
pub struct Pins {
    /// Per source (by index): upstream patient id -> pinned class.
    pub test_patients: Vec<HashMap<String, String>>,
    /// The published test list, when configured and present.
    pub test_list: Option<(String, Vec<PinnedEntry>)>,
}

/// Reads pinned test pools and the pinned test list, hashing every file read.
pub fn load_pins(
    root: &Path,
    pipeline: &Pipeline,
    sources: &[Source],
    inputs: &mut InputHashes,
) -> Result<Pins> {
    let mut pins = Pins::default();
    for src in sources {
        let mut map = HashMap::default();
        for (class, ids) in &src.config.test_patients {
            for id in ids {
                map.insert(id.clone(), class.clone());
            }
        }
        for (class, rel) in &src.config.test_pools {
            let path = fsutil::safe_join(root, rel)?;
            let bytes = std::fs::read(&path).with_context(|| {
                format!(
                    "required input {rel} (sources.{}.test_pools.{class:?}) is missing \
                     (expected at {})",
                    src.name,
                    path.display()
                )
            })?;
            inputs.insert(rel.clone(), fsutil::sha256_hex(&bytes));
            let ids = if rel.ends_with(".npy") {
                npy::read_strings(&bytes, rel)?
            } else {
                crate::sources::table::decode(&bytes, crate::config::Encoding::Utf8, rel)?
                    .lines()
                    .map(|l| l.trim().to_string())
                    .filter(|l| !l.is_empty())
                    .collect()
            };
            for id in ids {
                map.entry(id).or_insert_with(|| class.clone());
            }
        }
        pins.test_patients.push(map);
    }
    if let Some(rel) = &pipeline.split.pinned_test_list {
        let path = fsutil::safe_join(root, rel)?;
        match std::fs::read(&path) {
            Ok(bytes) => {
                inputs.insert(rel.clone(), fsutil::sha256_hex(&bytes));
                let text =
                    crate::sources::table::decode(&bytes, crate::config::Encoding::Utf8, rel)?;
                let entries = parse_test_list(&text, rel, pipeline.output.columns)?;
                pins.test_list = Some((rel.clone(), entries));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if pipeline.split.pinned_test_list_required {
                    bail!(
                        "required input {rel} (split.pinned_test_list) is missing (expected at {})",
                        path.display()
                    );
                }
                tracing::warn!("{rel} not found: the whole test pool becomes the test split");
            }
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }
    Ok(pins)
}

/// Parses a COVID-Net split file (`patientid filename label [source]`).
pub fn parse_test_list(text: &str, file: &str, columns: u8) -> Result<Vec<PinnedEntry>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let mut tokens: Vec<&str> = line.split(' ').collect();
        if columns == 4 && tokens.len() >= 4 {
            tokens.pop();
        }
        if tokens.len() < 3 {
            bail!("{file}:{line_no}: expected `patientid filename label`, got {line:?}");
        }
        let label = tokens.pop().unwrap().to_string();
        let patient = tokens.remove(0).to_string();
        out.push(PinnedEntry {
            line: line_no,
            patient,
            image: tokens.join(" "),
            label,
        });
    }
    Ok(out)
}

/// Result of the split stage: record indices in output order.
#[derive(Debug, Default)]
pub struct Assignment {
    /// Training records, in pipeline order.
    pub train: Vec<usize>,
    /// Test records, in pipeline order (or the pinned list's order).
    pub test: Vec<usize>,
}

/// Pipeline order of the candidate records: group by group, class by class, source by source,
/// file order inside a source.
pub fn pipeline_order(pipeline: &Pipeline, sources: &[Source], records: &[Record]) -> Vec<usize> {
    let mut by_source: Vec<Vec<usize>> = vec![Vec::new(); sources.len()];
    let index: HashMap<&str, usize> = sources
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i))
        .collect();
    for (i, r) in records.iter().enumerate() {
        if r.is_candidate() && r.label.is_some() {
            by_source[index[r.source.as_str()]].push(i);
        }
    }
    let mut order = Vec::new();
    for group in pipeline.groups() {
        for class in 0..pipeline.classes.len() {
            for &s in &group {
                order.extend(
                    by_source[s]
                        .iter()
                        .copied()
                        .filter(|&i| records[i].label == Some(class)),
                );
            }
        }
    }
    order
}

fn draw_rank(seed: u64, key: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(seed.to_le_bytes());
    h.update(key.as_bytes());
    h.finalize().into()
}

/// Assigns every labelled candidate to train or test (or excludes it), patient by patient.
pub fn assign(
    pipeline: &Pipeline,
    sources: &[Source],
    records: &mut [Record],
    pins: &Pins,
) -> Result<Assignment> {
    let order = pipeline_order(pipeline, sources, records);

    // 1. Duplicates: same source, patient and image as an earlier record in pipeline order.
    let kept = dedup(records, &order);

    // 2. Pinned test patients and pools (patient-level, whatever the class of the record).
    let src_index: HashMap<&str, usize> = sources
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i))
        .collect();
    // Patient keys are built once; every patient-level decision below compares them.
    let keys: HashMap<usize, String> = kept
        .iter()
        .map(|&i| (i, records[i].patient_key()))
        .collect();
    let mut test_keys: HashSet<&str> = HashSet::default();
    for &i in &kept {
        let r = &records[i];
        if let Some(map) = pins.test_patients.get(src_index[r.source.as_str()]) {
            if map.contains_key(&r.patient) {
                test_keys.insert(&keys[&i]);
            }
        }
    }

    // 3. Seeded, class-stratified draw over the remaining patients.
    if pipeline.split.method == SplitMethod::Seeded {
        let drawn = seeded_draw(pipeline, records, &kept, &keys, &test_keys)?;
        test_keys.extend(drawn);
    }

    let mut out = Assignment::default();
    let mut pool = Vec::new();
    for &i in &kept {
        if test_keys.contains(keys[&i].as_str()) {
            records[i].test_pool = true;
            pool.push(i);
        } else {
            records[i].split = Some(Split::Train);
            out.train.push(i);
        }
    }

    // 4. A pinned published test list: test = exactly that list; the rest of the pool is out.
    match &pins.test_list {
        None => {
            for &i in &pool {
                records[i].split = Some(Split::Test);
            }
            out.test = pool;
        }
        Some((file, entries)) => {
            out.test = apply_test_list(pipeline, records, &kept, &pool, file, entries)?;
        }
    }

    check_disjoint(records, &out)?;
    Ok(out)
}

/// The records of `order` that are not a duplicate (same source, patient and image as an
/// earlier record in that order); duplicates are excluded naming the first.
fn dedup(records: &mut [Record], order: &[usize]) -> Vec<usize> {
    let mut seen: HashMap<(String, String, String), usize> = HashMap::default();
    let mut kept = Vec::with_capacity(order.len());
    for &i in order {
        let r = &records[i];
        let key = (r.source.clone(), r.patient.clone(), r.path.clone());
        if let Some(&first) = seen.get(&key) {
            let detail = format!("same patient and image as {}", records[first].origin());
            records[i].exclude(Exclusion::Duplicate, detail);
        } else {
            seen.insert(key, i);
            kept.push(i);
        }
    }
    kept
}

/// The patients the seeded draw moves to test: per class stratum (a patient's highest class),
/// the first `test_count` or `test_fraction` of the patients not already in the test pool,
/// ranked by a hash of (seed, patient), so the draw does not depend on row order.
fn seeded_draw<'k>(
    pipeline: &Pipeline,
    records: &[Record],
    kept: &[usize],
    keys: &'k HashMap<usize, String>,
    pinned: &HashSet<&str>,
) -> Result<Vec<&'k str>> {
    let mut stratum: BTreeMap<&str, usize> = BTreeMap::new();
    for &i in kept {
        let key = keys[&i].as_str();
        if pinned.contains(key) {
            continue;
        }
        let label = records[i].label.expect("candidates are labelled");
        let e = stratum.entry(key).or_insert(label);
        *e = (*e).max(label);
    }
    let mut per_class: Vec<Vec<(&str, [u8; 32])>> = vec![Vec::new(); pipeline.classes.len()];
    for (key, &class) in &stratum {
        per_class[class].push((key, draw_rank(pipeline.seed, key)));
    }
    let mut drawn = Vec::new();
    for (class, mut patients) in per_class.into_iter().enumerate() {
        patients.sort_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(b.0)));
        let n = match (&pipeline.split.test_count, pipeline.split.test_fraction) {
            (Some(counts), _) => counts.get(&pipeline.classes[class]).copied().unwrap_or(0),
            (None, Some(f)) => (f * patients.len() as f64).round() as usize,
            (None, None) => 0,
        };
        if n > patients.len() {
            bail!(
                "split.test_count.{:?} = {n}, but only {} patients of that class are left",
                pipeline.classes[class],
                patients.len()
            );
        }
        drawn.extend(patients[..n].iter().map(|(k, _)| *k));
    }
    Ok(drawn)
}

fn apply_test_list(
    pipeline: &Pipeline,
    records: &mut [Record],
    kept: &[usize],
    pool: &[usize],
    file: &str,
    entries: &[PinnedEntry],
) -> Result<Vec<usize>> {
    let mut by_name: HashMap<(String, String), Vec<usize>> = HashMap::default();
    for (i, r) in records.iter().enumerate() {
        by_name
            .entry((r.patient.clone(), r.split_image()))
            .or_default()
            .push(i);
    }
    let kept: HashSet<usize> = kept.iter().copied().collect();
    let mut chosen = Vec::with_capacity(entries.len());
    let mut taken = HashSet::default();
    let mut problems = Vec::new();
    for e in entries {
        let at = format!("{file}:{}: `{} {} {}`", e.line, e.patient, e.image, e.label);
        let Some(cands) = by_name.get(&(e.patient.clone(), e.image.clone())) else {
            problems.push(format!("{at}: no source has this patient and image"));
            continue;
        };
        let Some(&i) = cands.iter().find(|i| kept.contains(i)) else {
            let r = &records[cands[0]];
            problems.push(format!(
                "{at}: {} excludes it ({}: {})",
                r.origin(),
                r.exclusion.map(|e| e.code()).unwrap_or("?"),
                r.detail
            ));
            continue;
        };
        let r = &records[i];
        let label = r.label.map(|l| pipeline.classes[l].as_str()).unwrap_or("");
        if label != e.label {
            problems.push(format!(
                "{at}: the sources label it {label:?} ({})",
                r.origin()
            ));
        } else if !r.test_pool {
            problems.push(format!(
                "{at}: patient {} is in the train split ({})",
                r.patient,
                r.origin()
            ));
        } else if !taken.insert(i) {
            problems.push(format!("{at}: listed twice"));
        } else {
            chosen.push(i);
        }
    }
    if !problems.is_empty() {
        let n = problems.len();
        problems.truncate(20);
        bail!(
            "the pinned test list does not match the sources ({n} problems):\n  {}",
            problems.join("\n  ")
        );
    }
    for &i in pool {
        if taken.contains(&i) {
            records[i].split = Some(Split::Test);
        } else {
            records[i].exclude(
                Exclusion::TestPoolNotPinned,
                format!("in the test pool, not in the pinned test list {file}"),
            );
        }
    }
    Ok(chosen)
}

/// Fails when any patient key has records in both splits (an internal invariant).
pub fn check_disjoint(records: &[Record], a: &Assignment) -> Result<()> {
    let train: HashSet<String> = a.train.iter().map(|&i| records[i].patient_key()).collect();
    if let Some(&i) = a
        .test
        .iter()
        .find(|&&i| train.contains(&records[i].patient_key()))
    {
        bail!(
            "internal error: patient {} is in both train and test ({})",
            records[i].patient_key(),
            records[i].origin()
        );
    }
    Ok(())
}
