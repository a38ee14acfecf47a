//! The batch loader: samples read in place from the memory-mapped shards (the zero-copy
//! [`Dataset`]), assembled into u8 batches by background threads ahead of the step, and
//! handed over in order through a bounded ring of reused buffers; the step moves a batch to
//! the device (pinned and non-blocking on CUDA) where scaling and normalisation happen.

use std::collections::BTreeMap;
use std::sync::mpsc;

use anyhow::{Context, Result};
use tch::{Device, Kind, Tensor};

use crate::shards::Dataset;

/// One assembled batch.
#[derive(Debug)]
pub struct Batch {
    /// Position in the epoch.
    pub index: usize,
    /// `n * S * S` pixels.
    pub pixels: Vec<u8>,
    /// Class per sample.
    pub labels: Vec<i64>,
    /// Manifest record per sample.
    pub records: Vec<u64>,
}

impl Batch {
    /// Samples in the batch.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True for an empty batch.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The images `[n, 1, S, S]` (u8) and labels on `device`: on CUDA through pinned memory
    /// and a non-blocking copy.
    pub fn to_device(&self, side: i64, device: Device) -> (Tensor, Tensor) {
        let n = self.len() as i64;
        let x = Tensor::from_slice(&self.pixels).view([n, 1, side, side]);
        let y = Tensor::from_slice(&self.labels);
        if !device.is_cuda() {
            return (x, y);
        }
        let x = x
            .pin_memory(device)
            .to_device_(device, Kind::Uint8, true, false);
        let y = y
            .pin_memory(device)
            .to_device_(device, Kind::Int64, true, false);
        (x, y)
    }
}

/// The clean samples (copy 0) of `ds`, the ones evaluation scores.
pub fn clean_samples(ds: &Dataset) -> Result<Vec<usize>> {
    let mut out = Vec::new();
    for i in 0..ds.len() {
        if ds.sample(i)?.copy == 0 {
            out.push(i);
        }
    }
    Ok(out)
}

/// Checks every shard of `ds` against the index (sha256) before any step: a changed shard is
/// an error naming it.
pub fn verify_all(ds: &Dataset) -> Result<()> {
    for k in 0..ds.shard_count() {
        ds.shard(k).with_context(|| {
            format!("checking the {} shards before training", ds.split().name())
        })?;
    }
    Ok(())
}

/// Assembles `batches` (sample indices of `ds`) on `threads` background threads, at most
/// `ahead` batches ahead of the consumer, and calls `step` with each in order. Buffers are
/// recycled through the ring. Stops early when `step` returns `Ok(false)`.
pub fn for_each_batch(
    ds: &Dataset,
    batches: &[Vec<usize>],
    threads: usize,
    ahead: usize,
    mut step: impl FnMut(&Batch) -> Result<bool>,
) -> Result<()> {
    let threads = threads.max(1);
    let (full_tx, full_rx) = mpsc::sync_channel::<Result<Batch>>(ahead.max(1));
    let (free_tx, free_rx) = mpsc::channel::<Batch>();
    let free_rx = std::sync::Mutex::new(free_rx);
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| -> Result<()> {
        for t in 0..threads {
            let full_tx = full_tx.clone();
            let (free_rx, stop) = (&free_rx, &stop);
            scope.spawn(move || {
                for (index, batch) in batches.iter().enumerate().skip(t).step_by(threads) {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        return;
                    }
                    let recycled = free_rx.lock().unwrap().try_recv().ok();
                    let mut b = recycled.unwrap_or(Batch {
                        index,
                        pixels: Vec::new(),
                        labels: Vec::new(),
                        records: Vec::new(),
                    });
                    b.index = index;
                    b.pixels.clear();
                    b.labels.clear();
                    b.records.clear();
                    let filled = batch.iter().try_for_each(|&i| -> Result<()> {
                        let s = ds.sample(i)?;
                        b.pixels.extend_from_slice(s.image);
                        b.labels.push(s.label as i64);
                        b.records.push(s.record);
                        Ok(())
                    });
                    if full_tx.send(filled.map(|_| b)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(full_tx);
        // Batches arrive out of order from several threads: hand them over in order.
        let mut waiting: BTreeMap<usize, Batch> = BTreeMap::new();
        let mut next = 0;
        let result = (|| -> Result<()> {
            while next < batches.len() {
                let b = match waiting.remove(&next) {
                    Some(b) => b,
                    None => {
                        let got = full_rx.recv().context("the batch loader stopped")??;
                        if got.index != next {
                            waiting.insert(got.index, got);
                            continue;
                        }
                        got
                    }
                };
                next += 1;
                let go_on = step(&b)?;
                let _ = free_tx.send(b);
                if !go_on {
                    break;
                }
            }
            Ok(())
        })();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        // Unblock producers waiting on a full ring.
        while full_rx.try_recv().is_ok() {}
        drop(full_rx);
        result
    })
}
