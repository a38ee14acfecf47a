//! The parallel worker: one shard's records decoded on the rayon pool, each sample streamed to
//! its planned slot of the shard file while another thread hashes the completed prefix.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use anyhow::{bail, Result};

use super::sample::{process_bytes, rank, Draw, Facts};
use crate::config::Pipeline;
use crate::imaging::augment::Params;
use crate::imaging::decode::DecodeError;
use crate::imaging::facts::ImageFacts;
use crate::ingest::SourceRoots;
use crate::progress::Reporter;
use crate::record::{Record, Split};
use crate::shards::{Quarantined, ShardEntry, ShardProgress, ShardStream};

/// One shard to decode and write: a fixed slice of a split's records.
pub struct ShardJob<'a> {
    /// The pipeline (seed, image settings, classes).
    pub pipeline: &'a Pipeline,
    /// Every record (indexed by manifest row).
    pub records: &'a [Record],
    /// Where records' images are read from.
    pub roots: &'a SourceRoots,
    /// Random-draw key of each record.
    pub keys: &'a [String],
    /// The split.
    pub split: Split,
    /// The shard's records, in split order.
    pub chunk: &'a [usize],
    /// Augmented copies per record.
    pub copies: u32,
    /// The shard file to write.
    pub path: &'a Path,
    /// Stop at the first bad image.
    pub strict: bool,
    /// Progress display (one unit per record).
    pub reporter: &'a Reporter,
}

/// Aborts a [`ShardStream`]'s hashing when a worker panics, so its thread can be joined.
struct AbortOnUnwind<'a>(&'a ShardStream);

impl Drop for AbortOnUnwind<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.abort();
        }
    }
}

/// The slot layout of a shard: which (record, copy) goes where.
struct Plan {
    /// (position in the chunk, copy) per slot.
    slots: Vec<(usize, u32)>,
    /// Slot of (position, copy), at `position * (1 + copies) + copy`.
    slot_of: Vec<usize>,
    /// Chunk positions in the order of their first slot.
    work: Vec<usize>,
}

/// Plans the slots: the records' samples in order (training shards: shuffled by a seeded
/// rank), so a sample's bytes and place depend only on the inputs; records are taken in the
/// order of their first slot, which keeps the hashed prefix close behind the workers.
fn plan(job: &ShardJob<'_>) -> Plan {
    let per_record = 1 + job.copies as usize;
    let seed = job.pipeline.seed;
    let mut slots: Vec<(usize, u32)> = (0..job.chunk.len())
        .flat_map(|p| (0..=job.copies).map(move |c| (p, c)))
        .collect();
    if job.split == Split::Train {
        slots.sort_by_cached_key(|&(p, c)| {
            let i = job.chunk[p];
            (rank(seed, &job.keys[i], c), i, c)
        });
    }
    let mut slot_of = vec![0usize; slots.len()];
    for (slot, &(p, c)) in slots.iter().enumerate() {
        slot_of[p * per_record + c as usize] = slot;
    }
    let mut work: Vec<usize> = (0..job.chunk.len()).collect();
    work.sort_by_key(|&p| {
        slot_of[p * per_record..(p + 1) * per_record]
            .iter()
            .min()
            .copied()
    });
    Plan {
        slots,
        slot_of,
        work,
    }
}

/// Reads a record's image through its source root (never following a symlink out of it) and
/// checks it against the sha256 taken at ingest: by the file's stamp when ingest kept one and
/// it is unchanged (the file was not written since), else by hashing the bytes again.
fn read_checked(r: &Record, roots: &SourceRoots) -> Result<Vec<u8>, DecodeError> {
    let (root, rel) = roots
        .of(r)
        .ok_or_else(|| DecodeError::new("missing", "record names no image"))?;
    let (bytes, stamp) = root.read_stamped(rel).map_err(|e| {
        let missing = e
            .chain()
            .filter_map(|c| c.downcast_ref::<std::io::Error>())
            .any(|io| io.kind() == std::io::ErrorKind::NotFound);
        DecodeError::new(
            if missing { "missing" } else { "unreadable" },
            format!("{e:#}"),
        )
    })?;
    let unchanged = r.stamp.is_some() && r.stamp == stamp;
    if let (Some(want), false) = (&r.sha256, unchanged) {
        let got = crate::fsutil::sha256_hex(&bytes);
        if &got != want {
            return Err(DecodeError::new(
                "changed",
                format!("sha256 {got}, but ingest read {want}: the file changed during the build"),
            ));
        }
    }
    Ok(bytes)
}

/// Records that failed to decode (manifest row, why).
type Failures = Vec<(usize, DecodeError)>;

/// What the workers of one shard produced besides the samples.
struct Decoded {
    /// The shard file's SHA-256 (`None` when a slot failed).
    hash: Option<String>,
    /// Records that failed, with why.
    failures: Failures,
    /// Image facts of the records that decoded at full size (manifest row, facts).
    facts: Vec<(usize, ImageFacts)>,
}

/// Runs one worker per rayon thread over the shard's records (in [`Plan::work`] order), each
/// sample put into its slot of `stream` while another thread hashes the completed prefix.
/// Returns the shard's hash, the records that failed and the image facts of the others.
fn decode_all(job: &ShardJob<'_>, plan: &Plan, stream: &ShardStream) -> Result<Decoded> {
    let cfg = &job.pipeline.images;
    let per_record = 1 + job.copies as usize;
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let failures: Mutex<Failures> = Default::default();
    let facts: Mutex<Vec<(usize, ImageFacts)>> = Default::default();
    let io_error: Mutex<Option<anyhow::Error>> = Default::default();
    // Benchmarking knob (COVIDX_NO_FACTS): skip the image facts, to measure what they cost.
    let want_facts = std::env::var_os("COVIDX_NO_FACTS").is_none();
    let hash = std::thread::scope(|scope| {
        let hasher = scope.spawn(|| stream.hash());
        let guard = AbortOnUnwind(stream);
        rayon::scope(|rs| {
            for _ in 0..rayon::current_num_threads() {
                rs.spawn(|_| {
                    while !stop.load(Ordering::Relaxed) {
                        let Some(&p) = plan.work.get(next.fetch_add(1, Ordering::Relaxed)) else {
                            break;
                        };
                        let i = job.chunk[p];
                        let r = &job.records[i];
                        let slots = &plan.slot_of[p * per_record..(p + 1) * per_record];
                        let mut emit = |c: u32, _: Params, px: &[u8]| {
                            if let Err(e) = stream.put(slots[c as usize], px) {
                                *io_error.lock().unwrap() = Some(e);
                                stop.store(true, Ordering::Relaxed);
                            }
                        };
                        let path = Path::new(&r.path);
                        let draw = Draw {
                            seed: job.pipeline.seed,
                            key: &job.keys[i],
                            copies: job.copies,
                        };
                        let result = read_checked(r, job.roots).and_then(|b| {
                            // read_checked verified the file against the ingest sha256.
                            let facts = match want_facts {
                                true => Facts::Compute(r.sha256.as_deref()),
                                false => Facts::Skip,
                            };
                            process_bytes(&b, path, cfg, draw, facts, &mut emit)
                        });
                        match result {
                            Ok(Some(f)) => facts.lock().unwrap().push((i, f)),
                            Ok(None) => {}
                            Err(e) => {
                                slots.iter().for_each(|&slot| stream.fail(slot));
                                failures.lock().unwrap().push((i, e));
                                if job.strict {
                                    stop.store(true, Ordering::Relaxed);
                                }
                            }
                        }
                        job.reporter.add(1);
                    }
                });
            }
        });
        drop(guard);
        if stop.load(Ordering::Relaxed) {
            stream.abort();
        }
        hasher.join().expect("shard hasher panicked")
    });
    if let Some(e) = io_error.into_inner().unwrap() {
        return Err(e);
    }
    Ok(Decoded {
        hash: hash?,
        failures: failures.into_inner().unwrap(),
        facts: facts.into_inner().unwrap(),
    })
}

/// Decodes a shard's records and streams every sample to its planned slot (see [`plan`]). A
/// record that fails is quarantined and its slots are dropped when the shard is finished.
pub fn write_shard(job: &ShardJob<'_>) -> Result<ShardProgress> {
    let cfg = &job.pipeline.images;
    let plan = plan(job);
    let label = |p: usize| {
        job.records[job.chunk[p]]
            .label
            .expect("split records are labelled")
    };
    let stream = ShardStream::create(
        job.path,
        cfg.size,
        job.split.name(),
        &job.pipeline.classes,
        plan.slots.iter().map(|&(p, _)| label(p) as i64).collect(),
        plan.slots
            .iter()
            .map(|&(p, _)| job.chunk[p] as i64)
            .collect(),
        plan.slots.iter().map(|&(_, c)| c as u8).collect(),
    )?;
    let Decoded {
        hash,
        mut failures,
        mut facts,
    } = decode_all(job, &plan, &stream)?;
    failures.sort_by_key(|(i, _)| *i);
    if let (true, Some((i, e))) = (job.strict, failures.first()) {
        let r = &job.records[*i];
        bail!("{}: {} ({}); --strict stops here", r.path, e, r.origin());
    }
    let quarantined: Vec<Quarantined> = failures
        .into_iter()
        .map(|(i, e)| {
            let r = &job.records[i];
            tracing::warn!("quarantined {}: {e}", r.path);
            Quarantined {
                record: i,
                path: r.path.clone(),
                reason: e.reason.to_string(),
                detail: e.detail,
            }
        })
        .collect();
    let (sha256, kept) = stream.finish(hash)?;
    // The facts table beside the shard, in record order (its bytes depend only on the inputs).
    facts.sort_by_key(|(i, _)| *i);
    let rows: Vec<(u64, ImageFacts)> = facts.into_iter().map(|(i, f)| (i as u64, f)).collect();
    let table = crate::imaging::facts::table_bytes(&rows)?;
    let name = job
        .path
        .file_name()
        .expect("shard file name")
        .to_string_lossy();
    let facts_path = job
        .path
        .with_file_name(crate::build_dir::facts_of_shard(&name));
    crate::fsutil::write_atomic(&facts_path, &table)?;
    let mut class_counts = vec![0u64; job.pipeline.classes.len()];
    for &slot in &kept {
        class_counts[label(plan.slots[slot].0)] += 1;
    }
    let file = job.path.file_name().expect("shard file name");
    Ok(ShardProgress {
        shard: ShardEntry {
            file: file.to_string_lossy().into_owned(),
            samples: kept.len(),
            class_counts,
            sha256,
        },
        quarantined,
        images_sha256: crate::fsutil::sha256_hex(&table),
    })
}
