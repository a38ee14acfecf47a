//! Split stage: pipeline order, de-duplication, pinned test patients and pools, an optional
//! seeded class-stratified draw, and an optional pinned published test list. All decisions are
//! patient-level (a patient's records all go to one side) and checked: no patient is ever in
//! both splits.

use std::collections::BTreeMap;

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use std::path::Path;

use anyhow::{bail, Context, Result};
use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::config::{PinScope, Pipeline, Source, SplitMethod};
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
    /// Label as written (an output label of the pipeline).
    pub label: String,
    /// Source tag (the 4th column), when the line has one.
    pub tag: Option<String>,
}

impl PinnedEntry {
    /// Columns of the line: 3, or 4 with a source tag.
    pub fn columns(&self) -> u8 {
        if self.tag.is_some() {
            4
        } else {
            3
        }
    }
}

/// Pinned facts read from files and the pipeline.
#[derive(Debug, Default)]
pub struct Pins {
    /// Per source (by index): upstream patient id -> the classes it is pinned under.
    pub test_patients: Vec<HashMap<String, Vec<String>>>,
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
        let mut map: HashMap<String, Vec<String>> = HashMap::default();
        let mut pin = |id: String, class: &String| {
            let classes = map.entry(id).or_default();
            if !classes.contains(class) {
                classes.push(class.clone());
            }
        };
        for (class, ids) in &src.config.test_patients {
            for id in ids {
                pin(id.clone(), class);
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
                pin(id, class);
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
        let tag = (columns == 4 && tokens.len() >= 4).then(|| tokens.pop().unwrap().to_string());
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
            tag,
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
    /// Lines of the pinned test list left out because they name a source this pipeline does
    /// not read (`split.pinned_absent_tags`): tag -> number of lines.
    pub left_out: BTreeMap<String, usize>,
    /// Patient keys with records in both splits (only possible with `split.pins = "per-class"`).
    pub straddling: Vec<String>,
    /// Each record's patient key ([`Record::patient_key`]), indexed by record; empty for the
    /// records the split did not keep (made once here, reused by the manifest).
    pub keys: Vec<String>,
}

/// Pipeline order of the candidate records: group by group, class by class, source by source,
/// file order inside a source.
pub fn pipeline_order(pipeline: &Pipeline, sources: &[Source], records: &[Record]) -> Vec<usize> {
    // Each record's (source, class) bucket, found in parallel; then one pass in record order
    // fills the buckets, which are read out group by group, class by class, source by source.
    let classes = pipeline.classes.len();
    let index: HashMap<&str, usize> = sources
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i))
        .collect();
    let bucket: Vec<Option<u32>> = records
        .par_iter()
        .map(|r| match r.label {
            Some(class) if r.is_candidate() => {
                Some((index[r.source.as_str()] * classes + class) as u32)
            }
            _ => None,
        })
        .collect();
    let mut buckets: Vec<Vec<usize>> = vec![Vec::new(); sources.len() * classes];
    for (i, b) in bucket.into_iter().enumerate() {
        if let Some(b) = b {
            buckets[b as usize].push(i);
        }
    }
    let mut order = Vec::with_capacity(buckets.iter().map(Vec::len).sum());
    for group in pipeline.groups() {
        for class in 0..classes {
            for &s in &group {
                order.extend_from_slice(&buckets[s * classes + class]);
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
    let t = std::time::Instant::now();
    let lap = |what: &str| tracing::debug!("split, {what}: {:.3?}", t.elapsed());
    let order = pipeline_order(pipeline, sources, records);
    lap("order");

    // 1. Duplicates: same source, patient and image as an earlier record in pipeline order.
    let kept = dedup(records, &order);
    lap("dedup");

    // 2. Pinned test patients and pools: the whole patient, or (`per-class`) the patient's
    //    records of the pinned class.
    let src_index: HashMap<&str, usize> = sources
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i))
        .collect();
    let per_class = pipeline.split.pins == PinScope::PerClass;
    // Patient keys are built once; every patient-level decision below compares them.
    // Indexed by record (empty for records not kept).
    let mut is_kept = vec![false; records.len()];
    for &i in &kept {
        is_kept[i] = true;
    }
    let keys: Vec<String> = records
        .par_iter()
        .zip(is_kept)
        .map(|(r, kept)| if kept { r.patient_key() } else { String::new() })
        .collect();
    lap("keys");
    let pinned = |i: usize| {
        let r = &records[i];
        let classes = pins
            .test_patients
            .get(src_index[r.source.as_str()])
            .and_then(|map| map.get(&r.patient));
        match (classes, r.label) {
            (None, _) => false,
            (Some(_), _) if !per_class => true,
            (Some(cs), Some(l)) => cs.iter().any(|c| c == &pipeline.classes[l]),
            (Some(_), None) => false,
        }
    };
    let any_pins = pins.test_patients.iter().any(|m| !m.is_empty());
    let mut pinned_records: HashSet<usize> = if any_pins {
        let found: Vec<usize> = kept.par_iter().copied().filter(|&i| pinned(i)).collect();
        found.into_iter().collect()
    } else {
        HashSet::default()
    };
    // The kept records of `ids` in `source`: of `class` only when pins are per class.
    let of_patients = |source: &str, class: &str, ids: &HashSet<String>| -> Vec<usize> {
        let class = pipeline.class_index(class);
        kept.iter()
            .copied()
            .filter(|&i| {
                let r = &records[i];
                r.source == source && (!per_class || r.label == class) && ids.contains(&r.patient)
            })
            .collect()
    };
    for src in sources {
        for class in &src.config.test_single_image {
            let ids = single_image_patients(pipeline, records, &order, &src.name, class);
            pinned_records.extend(of_patients(&src.name, class, &ids));
        }
    }
    let draw = pipeline.split.python_draw.as_ref();
    let mut rng = draw.map(|d| pyrandom::PyRandom::seed(d.seed as i128));
    if let (Some(d), Some(rng)) = (draw, rng.as_mut()) {
        for p in &d.pin_patients {
            let ids = draw_patients(pipeline, records, &order, p, rng)?;
            pinned_records.extend(of_patients(&p.source, &p.class, &ids));
        }
    }
    lap("pins");
    let mut test_keys: HashSet<&str> = HashSet::default();
    if !per_class {
        test_keys.extend(pinned_records.iter().map(|&i| keys[i].as_str()));
    }

    // 3. Seeded, class-stratified draw over the remaining patients (whole patients).
    if pipeline.split.method == SplitMethod::Seeded {
        let mut taken = test_keys.clone();
        taken.extend(pinned_records.iter().map(|&i| keys[i].as_str()));
        let drawn = seeded_draw(pipeline, records, &kept, &keys, &taken)?;
        test_keys.extend(drawn);
    }
    lap("draw");

    let mut out = Assignment::default();
    let mut pool = Vec::new();
    let to_pool: Vec<bool> = kept
        .par_iter()
        .map(|&i| pinned_records.contains(&i) || test_keys.contains(keys[i].as_str()))
        .collect();
    for (&i, to_pool) in kept.iter().zip(to_pool) {
        if to_pool {
            records[i].test_pool = true;
            pool.push(i);
        } else {
            records[i].split = Some(Split::Train);
            out.train.push(i);
        }
    }

    // 4. A pinned published test list: test = exactly that list; the rest of the pool is out.
    //    Or the python draw's choice from the pool.
    let selects = draw.is_some_and(|d| !d.keep.is_empty() || !d.sample.is_empty());
    match &pins.test_list {
        None if selects => {
            let (d, rng) = (draw.unwrap(), rng.as_mut().unwrap());
            out.test = select_from_pool(pipeline, records, &pool, d, rng)?;
        }
        None => {
            for &i in &pool {
                records[i].split = Some(Split::Test);
            }
            out.test = pool;
        }
        Some((file, entries)) => {
            let (test, left_out) =
                apply_test_list(pipeline, sources, records, &kept, &pool, file, entries)?;
            out.test = test;
            out.left_out = left_out;
        }
    }

    lap("assigned");
    out.straddling = straddling(records, &keys, &out);
    out.keys = keys;
    lap("straddling");
    if !per_class && !out.straddling.is_empty() {
        bail!(
            "internal error: patient {} is in both train and test",
            out.straddling[0]
        );
    }
    for key in &out.straddling {
        tracing::warn!(
            "patient {key} has records in both train and test (split.pins = \"per-class\")"
        );
    }
    Ok(out)
}

/// The patients of `source` with records of `class` in `order` (pipeline order, duplicates
/// included, as a notebook's list has them), in order of first appearance, each with its
/// number of records.
fn patients_of<'r>(
    pipeline: &Pipeline,
    records: &'r [Record],
    order: &[usize],
    source: &str,
    class: &str,
) -> Vec<(&'r str, usize)> {
    let class = pipeline.class_index(class);
    let mut first: Vec<(&str, usize)> = Vec::new();
    let mut at: HashMap<&str, usize> = HashMap::default();
    for &i in order {
        let r = &records[i];
        if r.source == source && r.label == class {
            let k = *at.entry(r.patient.as_str()).or_insert_with(|| {
                first.push((r.patient.as_str(), 0));
                first.len() - 1
            });
            first[k].1 += 1;
        }
    }
    first
}

/// `source`'s patients with exactly one record of `class` (`test_single_image`).
fn single_image_patients(
    pipeline: &Pipeline,
    records: &[Record],
    order: &[usize],
    source: &str,
    class: &str,
) -> HashSet<String> {
    patients_of(pipeline, records, order, source, class)
        .into_iter()
        .filter(|&(_, n)| n == 1)
        .map(|(p, _)| p.to_string())
        .collect()
}

/// `random.sample` of a [`PatientDraw`]: the source's patients with records of the class (in
/// pipeline order, duplicates included, as a notebook's list has them), in order of first
/// appearance, those with one record only when `single_image`.
fn draw_patients(
    pipeline: &Pipeline,
    records: &[Record],
    order: &[usize],
    p: &crate::config::PatientDraw,
    rng: &mut pyrandom::PyRandom,
) -> Result<HashSet<String>> {
    let population: Vec<&str> = patients_of(pipeline, records, order, &p.source, &p.class)
        .into_iter()
        .filter(|&(_, n)| !p.single_image || n == 1)
        .map(|(id, _)| id)
        .collect();
    let Some(idx) = rng.sample(population.len(), p.count) else {
        bail!(
            "split.python_draw.pin_patients: {} patients of source {:?} and class {:?} asked, \
             {} there",
            p.count,
            p.source,
            p.class,
            population.len()
        );
    };
    Ok(idx.into_iter().map(|i| population[i].to_string()).collect())
}

/// The test split a python draw chooses from the pool: the `keep` records in pool order, then
/// each `sample` over the pool's not yet chosen records of its class. Everything else in the
/// pool is excluded as `test-pool-not-drawn`.
fn select_from_pool(
    pipeline: &Pipeline,
    records: &mut [Record],
    pool: &[usize],
    d: &crate::config::PythonDraw,
    rng: &mut pyrandom::PyRandom,
) -> Result<Vec<usize>> {
    let matches = |r: &Record, m: &crate::config::RecordMatch| {
        r.label == pipeline.class_index(&m.class)
            && m.source.as_ref().is_none_or(|s| s == &r.source)
    };
    let mut chosen: Vec<usize> = pool
        .iter()
        .copied()
        .filter(|&i| d.keep.iter().any(|m| matches(&records[i], m)))
        .collect();
    let mut taken: HashSet<usize> = chosen.iter().copied().collect();
    for s in &d.sample {
        let class = pipeline.class_index(&s.class);
        let cands: Vec<usize> = pool
            .iter()
            .copied()
            .filter(|i| !taken.contains(i) && records[*i].label == class)
            .collect();
        let Some(idx) = rng.sample(cands.len(), s.count) else {
            bail!(
                "split.python_draw.sample: {} records of class {:?} asked, the test pool has {}",
                s.count,
                s.class,
                cands.len()
            );
        };
        for k in idx {
            taken.insert(cands[k]);
            chosen.push(cands[k]);
        }
    }
    close_pool(
        records,
        pool,
        &taken,
        Exclusion::TestPoolNotDrawn,
        "in the test pool, not chosen by split.python_draw",
    );
    Ok(chosen)
}

/// The records of `order` that are not a duplicate (same source, patient and image as an
/// earlier record in that order); duplicates are excluded naming the first.
fn dedup(records: &mut [Record], order: &[usize]) -> Vec<usize> {
    use std::hash::BuildHasher;
    dedup_hashed(records, order, |k| rustc_hash::FxBuildHasher.hash_one(k))
}

/// A key of [`dedup`]: source, patient, image path.
type DedupKey<'r> = (&'r str, &'r str, &'r str);

/// [`dedup`] with the keys hashed by `hash`.
fn dedup_hashed(
    records: &mut [Record],
    order: &[usize],
    hash: impl Fn(DedupKey) -> u64 + Sync,
) -> Vec<usize> {
    use std::collections::hash_map::Entry;
    let key = |i: usize| {
        let r = &records[i];
        (r.source.as_str(), r.patient.as_str(), r.path.as_str())
    };
    // The keys are hashed in parallel; the scan in pipeline order then looks up hashes only,
    // and compares keys where a hash is seen again (a duplicate, or rarely two keys with one
    // hash: the later one is then looked up by its key in `exact`).
    let hashes: Vec<u64> = order.par_iter().map(|&i| hash(key(i))).collect();
    let mut first: HashMap<u64, usize> =
        HashMap::with_capacity_and_hasher(order.len(), Default::default());
    let mut exact: HashMap<DedupKey, usize> = HashMap::default();
    let mut kept = Vec::with_capacity(order.len());
    let mut duplicates = Vec::new();
    for (&i, &h) in order.iter().zip(&hashes) {
        match first.entry(h) {
            Entry::Vacant(v) => {
                v.insert(i);
                kept.push(i);
            }
            Entry::Occupied(o) if key(*o.get()) == key(i) => duplicates.push((i, *o.get())),
            Entry::Occupied(_) => match exact.entry(key(i)) {
                Entry::Occupied(e) => duplicates.push((i, *e.get())),
                Entry::Vacant(v) => {
                    v.insert(i);
                    kept.push(i);
                }
            },
        }
    }
    drop((first, exact));
    // (The keys borrow the records: they are marked once the scan is done.)
    for (i, first) in duplicates {
        let detail = format!("same patient and image as {}", records[first].origin());
        records[i].exclude(Exclusion::Duplicate, detail);
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
    keys: &'k [String],
    pinned: &HashSet<&str>,
) -> Result<Vec<&'k str>> {
    // Each class's patients are sorted by (rank, key) below, so the map's order is irrelevant.
    // A patient's stratum is the highest class of its records: per-thread maps of parts of
    // `kept`, merged (max is order-free, so the parts and their order do not matter).
    let part = kept
        .len()
        .div_ceil(4 * rayon::current_num_threads())
        .max(4096);
    let stratum: HashMap<&str, usize> = kept
        .par_chunks(part)
        .map(|chunk| {
            let mut map: HashMap<&str, usize> = HashMap::default();
            for &i in chunk {
                let key = keys[i].as_str();
                if pinned.contains(key) {
                    continue;
                }
                let label = records[i].label.expect("candidates are labelled");
                let e = map.entry(key).or_insert(label);
                *e = (*e).max(label);
            }
            map
        })
        .reduce(HashMap::default, |a, b| {
            let (mut big, small) = if a.len() >= b.len() { (a, b) } else { (b, a) };
            for (key, label) in small {
                let e = big.entry(key).or_insert(label);
                *e = (*e).max(label);
            }
            big
        });
    let ranked: Vec<(&str, usize, [u8; 32])> = stratum
        .into_par_iter()
        .map(|(key, class)| (key, class, draw_rank(pipeline.seed, key)))
        .collect();
    let mut per_class: Vec<Vec<(&str, [u8; 32])>> = vec![Vec::new(); pipeline.classes.len()];
    for (key, class, rank) in ranked {
        per_class[class].push((key, rank));
    }
    let mut drawn = Vec::new();
    for (class, mut patients) in per_class.into_iter().enumerate() {
        // (Keys are unique, so the order is total and an unstable sort gives the same.)
        patients.par_sort_unstable_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(b.0)));
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

/// Selects the pinned list's records from the test pool, in the list's order; each keeps its
/// line's column count. Lines tagged with a `split.pinned_absent_tags` tag that no source of
/// the pipeline has are left out and counted. Any other line that does not match a pool
/// record is an error (all are listed).
fn apply_test_list(
    pipeline: &Pipeline,
    sources: &[Source],
    records: &mut [Record],
    kept: &[usize],
    pool: &[usize],
    file: &str,
    entries: &[PinnedEntry],
) -> Result<(Vec<usize>, BTreeMap<String, usize>)> {
    let mut by_name: HashMap<(String, String), Vec<usize>> = HashMap::default();
    for (i, r) in records.iter().enumerate() {
        by_name
            .entry((r.patient.clone(), r.split_image()))
            .or_default()
            .push(i);
    }
    let kept: HashSet<usize> = kept.iter().copied().collect();
    let read_tags: HashSet<&str> = sources.iter().map(|s| s.tag.as_str()).collect();
    let absent = &pipeline.split.pinned_absent_tags;
    let mut left_out: BTreeMap<String, usize> = BTreeMap::new();
    let mut chosen = Vec::with_capacity(entries.len());
    let mut taken = HashSet::default();
    let mut problems = Vec::new();
    for e in entries {
        if let Some(tag) = e.tag.as_deref() {
            if absent.iter().any(|t| t == tag) && !read_tags.contains(tag) {
                *left_out.entry(tag.to_string()).or_default() += 1;
                continue;
            }
        }
        let at = format!("{file}:{}: `{} {} {}`", e.line, e.patient, e.image, e.label);
        let Some(cands) = by_name.get(&(e.patient.clone(), e.image.clone())) else {
            problems.push(format!("{at}: no source has this patient and image"));
            continue;
        };
        let tagged = |i: &&usize| e.tag.as_ref().is_none_or(|t| t == &records[**i].tag);
        let Some(&i) = cands.iter().filter(tagged).find(|i| kept.contains(i)) else {
            let r = &records[cands[0]];
            problems.push(match &e.tag {
                Some(t) if !cands.iter().any(|i| &records[*i].tag == t) => {
                    format!("{at}: no source tagged {t:?} has it ({} does)", r.origin())
                }
                _ => format!(
                    "{at}: {} excludes it ({}: {})",
                    r.origin(),
                    r.exclusion.map(|e| e.code()).unwrap_or("?"),
                    r.detail
                ),
            });
            continue;
        };
        let r = &records[i];
        let label = r.label.map(|l| pipeline.output_label(l)).unwrap_or("");
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
            if e.columns() != pipeline.output.columns {
                records[i].columns = Some(e.columns());
            }
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
    for (tag, n) in &left_out {
        tracing::warn!(
            "{file}: {n} pinned lines of source {tag:?} left out: the pipeline does not read it \
             (split.pinned_absent_tags)"
        );
    }
    close_pool(
        records,
        pool,
        &taken,
        Exclusion::TestPoolNotPinned,
        &format!("in the test pool, not in the pinned test list {file}"),
    );
    Ok((chosen, left_out))
}

/// Puts the pool records of `taken` in test and excludes the rest with `why`.
fn close_pool(
    records: &mut [Record],
    pool: &[usize],
    taken: &HashSet<usize>,
    why: Exclusion,
    detail: &str,
) {
    for &i in pool {
        if taken.contains(&i) {
            records[i].split = Some(Split::Test);
        } else {
            records[i].exclude(why, detail);
        }
    }
}

/// Patient keys with records in both train and test, sorted; `keys` are those [`assign`]
/// built (indexed by record, empty where it built none).
fn straddling(records: &[Record], keys: &[String], a: &Assignment) -> Vec<String> {
    let key = |i: usize| match keys[i].as_str() {
        "" => std::borrow::Cow::Owned(records[i].patient_key()),
        k => std::borrow::Cow::Borrowed(k),
    };
    // The (smaller) test side is a set; the train side is looked up in it in parallel.
    let test: HashSet<_> = a.test.iter().map(|&i| key(i)).collect();
    let mut both: Vec<String> = a
        .train
        .par_iter()
        .map(|&i| key(i))
        .filter(|k| test.contains(k))
        .map(std::borrow::Cow::into_owned)
        .collect();
    both.sort();
    both.dedup();
    both
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records with many duplicate (source, patient, path) keys.
    fn records(n: usize) -> Vec<Record> {
        (0..n)
            .map(|i| Record {
                source: ["a", "b"][i % 2].to_string(),
                patient: format!("p{}", i % 37),
                path: format!("img/{}.png", i % 11),
                file: "m.csv".to_string(),
                line: i as u64 + 2,
                ..Record::default()
            })
            .collect()
    }

    #[test]
    fn dedup_keeps_the_first_of_each_key_even_when_every_hash_collides() {
        let n = 2000;
        let order: Vec<usize> = (0..n).rev().collect();
        // Reference: the first record of each key in `order`.
        let mut reference = Vec::new();
        let mut seen = std::collections::BTreeMap::new();
        let base = records(n);
        for &i in &order {
            let r = &base[i];
            seen.entry((r.source.clone(), r.patient.clone(), r.path.clone()))
                .or_insert_with(|| {
                    reference.push(i);
                    i
                });
        }
        assert!(reference.len() < n / 2, "{}", reference.len());
        let mut fx = records(n);
        let kept = dedup(&mut fx, &order);
        assert_eq!(kept, reference);
        for hash in [|_: DedupKey| 0u64, |k: DedupKey| k.2.len() as u64] {
            let mut collided = records(n);
            assert_eq!(dedup_hashed(&mut collided, &order, hash), reference);
            assert_eq!(collided, fx);
        }
        let dup = fx.iter().find(|r| r.exclusion.is_some()).unwrap();
        assert_eq!(dup.exclusion, Some(Exclusion::Duplicate));
        assert!(
            dup.detail.starts_with("same patient and image as m.csv:"),
            "{}",
            dup.detail
        );
    }
}
