//! The trainer (`covidx train`, cargo feature `train`): DenseNet-121 transfer learning from a
//! build's shards with tch (libtorch). The sampler and the metrics are plain Rust and always
//! built (and tested without libtorch); the model, weights, loader, loop
//! and inference (`covidx eval`, `covidx predict`) need the feature.

pub mod metrics;
pub mod sampler;

#[cfg(feature = "train")]
pub mod adam;
#[cfg(feature = "train")]
pub mod amp;
#[cfg(feature = "train")]
pub mod bench;
#[cfg(feature = "train")]
pub mod ffi;
#[cfg(feature = "train")]
pub mod infer;
#[cfg(feature = "train")]
pub mod loader;
#[cfg(feature = "train")]
pub mod model;
#[cfg(feature = "train")]
pub mod trainer;
#[cfg(feature = "train")]
pub mod weights;
