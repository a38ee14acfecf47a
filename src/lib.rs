//! covidx: rebuild, verify and audit the COVIDx chest X-ray dataset reproducibly from its
//! public sources.
//!
//! Stages (one module each): [`sources`] readers -> [`ingest`] -> [`label`] -> [`split`] ->
//! outputs ([`record`] manifest, [`summary`], [`lock`]); [`builder`] wires them, [`cli`] exposes
//! them, [`demo`] generates a miniature of the upstream layouts.

pub mod build_dir;
pub mod builder;
pub mod cli;
pub mod config;
pub mod demo;
pub mod fsutil;
pub mod imaging;
pub mod ingest;
pub mod label;
pub mod lock;
pub mod manifest;
pub mod npy;
pub mod outputs;
pub mod progress;
pub mod record;
pub mod shards;
pub mod sources;
pub mod split;
pub mod summary;
