//! Training shards, by concern: the file [`format`] (safetensors with covidx metadata), the
//! streaming [`writer`], the zero-copy [`reader`], the [`index`] and resume state, the
//! [`part`] record of a partitioned build, and the [`dataset`] view that maps a global sample
//! number to its shard and slot. The formats are specified in docs/formats.md.

pub mod dataset;
pub mod format;
pub mod index;
pub mod part;
pub mod reader;
pub mod writer;

pub use dataset::{Dataset, SampleRef, Verify};
pub use format::{encode, write, ShardData, FORMAT, VERSION};
pub use index::{Index, Progress, Quarantined, ShardEntry, ShardProgress};
pub use part::{PartRecord, PartShard, PartSpec};
pub use reader::Shard;
pub use writer::ShardStream;
