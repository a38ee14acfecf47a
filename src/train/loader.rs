//! The batch loader: samples read in place from the memory-mapped shards (the zero-copy
//! [`Dataset`]) by background threads, each batch assembled straight into a u8 tensor (in
//! pinned host memory when the device is CUDA, from libtorch's caching host allocator, which
//! reuses a block only once the copy reading it has finished), at most `ahead` batches ahead
//! of the step and handed over in order; the step copies it to the device non-blocking,
//! where scaling and normalisation happen.

use std::collections::BTreeMap;
use std::sync::mpsc;

use anyhow::{Context, Result};
use tch::{Device, Kind, Tensor};

use super::ffi;
use crate::shards::Dataset;

/// One assembled batch.
#[derive(Debug)]
pub struct Batch {
    /// Position in the epoch.
    pub index: usize,
    /// The images, u8 `[n, 1, S, S]` on the host (pinned for a CUDA device).
    pub images: Tensor,
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

    /// The images `[n, 1, S, S]` (u8) and labels on `device`: on CUDA a non-blocking copy
    /// from the pinned batch.
    pub fn to_device(&self, device: Device) -> (Tensor, Tensor) {
        let y = Tensor::from_slice(&self.labels);
        if !device.is_cuda() {
            return (self.images.shallow_clone(), y);
        }
        let x = self.images.to_device_(device, Kind::Uint8, true, false);
        let y = y
            .pin_memory(device)
            .to_device_(device, Kind::Int64, true, false);
        (x, y)
    }
}

/// Assembles batch `index` (sample indices `batch` of `ds`, images `side`^2) into a tensor.
fn assemble(
    ds: &Dataset,
    index: usize,
    batch: &[usize],
    side: usize,
    pinned: bool,
) -> Result<Batch> {
    let numel = (batch.len() * side * side) as i64;
    let mut images = if pinned {
        ffi::empty_pinned(numel)?
    } else {
        Tensor::empty([numel], (Kind::Uint8, Device::Cpu))
    };
    let (mut labels, mut records) = (Vec::with_capacity(batch.len()), Vec::new());
    {
        // SAFETY: a fresh contiguous u8 tensor of `numel` bytes that only this thread sees.
        let dst =
            unsafe { std::slice::from_raw_parts_mut(images.data_ptr() as *mut u8, numel as usize) };
        for (chunk, &i) in dst.chunks_exact_mut(side * side).zip(batch) {
            let s = ds.sample(i)?;
            chunk.copy_from_slice(s.image);
            labels.push(s.label as i64);
            records.push(s.record);
        }
    }
    images = images.view([batch.len() as i64, 1, side as i64, side as i64]);
    Ok(Batch {
        index,
        images,
        labels,
        records,
    })
}

/// The class of each of `samples` (indices of `ds`).
pub fn labels(ds: &Dataset, samples: impl IntoIterator<Item = usize>) -> Result<Vec<usize>> {
    samples
        .into_iter()
        .map(|i| ds.sample(i).map(|s| s.label))
        .collect()
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
/// `ahead` batches ahead of the consumer, for `device` (pinned host memory for CUDA), and
/// calls `step` with each in order. Stops early when `step` returns `Ok(false)`.
pub fn for_each_batch(
    ds: &Dataset,
    batches: &[Vec<usize>],
    (threads, ahead): (usize, usize),
    device: Device,
    mut step: impl FnMut(&Batch) -> Result<bool>,
) -> Result<()> {
    let threads = threads.max(1);
    let side = ds.index().size as usize;
    let pinned = device.is_cuda();
    let (full_tx, full_rx) = mpsc::sync_channel::<Result<Batch>>(ahead.max(1));
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| -> Result<()> {
        for t in 0..threads {
            let full_tx = full_tx.clone();
            let stop = &stop;
            scope.spawn(move || {
                for (index, batch) in batches.iter().enumerate().skip(t).step_by(threads) {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        return;
                    }
                    if full_tx
                        .send(assemble(ds, index, batch, side, pinned))
                        .is_err()
                    {
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
                if !step(&b)? {
                    break;
                }
            }
            Ok(())
        })();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        // Unblock producers waiting on a full channel.
        while full_rx.try_recv().is_ok() {}
        drop(full_rx);
        result
    })
}
