//! Command-line interface: one file per subcommand; this file parses arguments and dispatches.

mod audit;
mod build;
mod demo;
mod eval;
mod export;
mod merge;
mod predict;
mod train;
mod verify;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Rebuild, verify and audit the COVIDx chest X-ray dataset from its public sources.
#[derive(Debug, Parser)]
#[command(name = "covidx", version, about)]
pub struct Cli {
    /// Only print errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// More log output (-v info, -vv debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build split files, manifest and lock file from a pipeline and a sources directory.
    Build(BuildArgs),
    /// Join the parts of a partitioned build (`build --part K/N`) into one build, byte for
    /// byte the build one machine would write.
    Merge(MergeArgs),
    /// Recompute every hash of a lock file and list what differs (exit 1 if anything does).
    Verify(VerifyArgs),
    /// Write a generated miniature of the upstream layouts and build it (no downloads).
    Demo(DemoArgs),
    /// Export a build's shards for other loaders: COVID-Net's PNG folders, WebDataset tars,
    /// Hugging Face Parquet.
    Export(ExportArgs),
    /// Audit a finished build: label mapping, patient overlap, label-vs-source confounding.
    Audit(AuditArgs),
    /// Train DenseNet-121 on a build's shards (needs the `train` feature: scripts/setup-train.sh).
    Train(TrainArgs),
    /// Metrics of a checkpoint on a split of a build (needs the `train` feature).
    Eval(EvalArgs),
    /// Class probabilities of image files from a checkpoint (needs the `train` feature).
    Predict(PredictArgs),
}

/// Arguments of `covidx eval`.
#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// Checkpoint weights (e.g. BUILD/train/best.safetensors; its .json beside it).
    pub checkpoint: PathBuf,
    /// A finished build with shards.
    pub build: PathBuf,
    /// Split: test or train.
    #[arg(long, default_value = "test")]
    pub split: String,
    /// Batch size (also of the balanced batches).
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// COVID-19 share of the balanced batches (the paper's test accuracy); 0 skips them.
    #[arg(long, default_value_t = 0.3)]
    pub covid_percent: f64,
    /// Seed of the balanced batches.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// cpu, cuda, cuda:N or auto.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Print the evaluation as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `covidx predict`.
#[derive(Debug, clap::Args)]
pub struct PredictArgs {
    /// Checkpoint weights (its .json beside it gives size, crop, classes, normalisation).
    pub checkpoint: PathBuf,
    /// PNG, JPEG or DICOM files.
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// Input side (default: the checkpoint's, else 224).
    #[arg(long)]
    pub size: Option<u32>,
    /// Fraction of rows cropped at the top (default: the checkpoint's, else 0.08).
    #[arg(long)]
    pub crop_top: Option<f32>,
    /// Class names in head order, for a bare safetensors file (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub classes: Option<Vec<String>>,
    /// imagenet or unit (default: the checkpoint's, else imagenet).
    #[arg(long)]
    pub normalize: Option<String>,
    /// cpu, cuda, cuda:N or auto.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// One JSON object per image.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `covidx train`.
#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// A finished build with shards (with --bench --synthetic: none).
    #[arg(required_unless_present = "synthetic")]
    pub build: Option<PathBuf>,
    /// Run directory (metrics, checkpoints); default BUILD/train.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Trainable part: head, all, or a fraction of the 242 layers counted from the output
    /// (0.18, 0.5: the paper's rows).
    #[arg(long, default_value = "head")]
    pub trainable: String,
    /// Epochs.
    #[arg(long, default_value_t = 10)]
    pub epochs: u64,
    /// Batch size.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Adam learning rate.
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Share of COVID-19 samples in each batch (0: no balancing).
    #[arg(long, default_value_t = 0.3)]
    pub covid_percent: f64,
    /// Seed of the initialisation and the batch order.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Input normalisation: imagenet (torchvision, CheXNet) or unit (x/255, COVID-Net).
    #[arg(long, default_value = "imagenet")]
    pub normalize: String,
    /// Initial weights (safetensors, torchvision names; CheXNet checkpoints accepted).
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// Continue the run in --out from its last checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// Stop after this many optimizer steps in all (writes the last checkpoint).
    #[arg(long)]
    pub max_steps: Option<u64>,
    /// Per-class loss weights, comma-separated in class order.
    #[arg(long, value_delimiter = ',')]
    pub class_weights: Option<Vec<f64>>,
    /// cpu, cuda, cuda:N or auto.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Batch-assembling threads.
    #[arg(long, default_value_t = 2)]
    pub loader_threads: usize,
    /// Forward-pass arithmetic: auto (bf16 on CUDA, fp32 on CPU), fp32, bf16, fp16 (with a
    /// dynamic loss scale).
    #[arg(long, default_value = "auto")]
    pub precision: String,
    /// Channels-last (NHWC) convolutions: auto (on for CUDA), on, off.
    #[arg(long, default_value = "auto")]
    pub channels_last: String,
    /// Measure instead of training: steady-state images/s, time per step, time waiting for
    /// data, device memory (nothing is written to BUILD).
    #[arg(long)]
    pub bench: bool,
    /// With --bench: measure the loader alone (shards to batches).
    #[arg(long, requires = "bench")]
    pub loader_only: bool,
    /// With --bench: synthetic shards of random images, written to a temporary folder.
    #[arg(long, requires = "bench")]
    pub synthetic: bool,
    /// With --bench --synthetic: image side.
    #[arg(long, default_value_t = 224)]
    pub size: u32,
    /// With --bench: untimed warm-up steps, then timed steps.
    #[arg(long, default_value_t = 10)]
    pub warmup: usize,
    /// With --bench: timed steps.
    #[arg(long, default_value_t = 50)]
    pub bench_steps: usize,
    /// With --bench: print the measurement as JSON.
    #[arg(long, requires = "bench")]
    pub json: bool,
}

/// Arguments of `covidx audit`.
#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    /// A finished build's output directory.
    pub build: PathBuf,
    /// Report formats to write under BUILD/audit/ (comma-separated: md, json, html).
    #[arg(long, value_delimiter = ',', default_value = "md,json,html")]
    pub format: Vec<String>,
    /// Exit with status 1 when one of these checks finds a problem (comma-separated:
    /// overlap, cross-split-duplicates, cross-source-duplicates, unknown-findings,
    /// source-confounding).
    #[arg(long, value_delimiter = ',')]
    pub fail_on: Vec<String>,
    /// Where the build's images are (default: the folder its build.json records).
    #[arg(long)]
    pub sources: Option<PathBuf>,
    /// Another build to look for duplicates of this build's images in (e.g. NIH
    /// ChestX-ray14, which CheXNet was pretrained on).
    #[arg(long)]
    pub against: Option<PathBuf>,
    /// Audit the metadata only (no image is read).
    #[arg(long)]
    pub metadata_only: bool,
}

/// Arguments of `covidx export`.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// Output format: `png` (COVID-Net's train/ and test/ folders), `webdataset` (tar
    /// shards), `hf` (Parquet shards for Hugging Face `datasets`).
    #[arg(long, value_enum, default_value_t = ExportFormat::Png)]
    pub format: ExportFormat,
    /// A build's output directory (with shards/ and manifest.parquet).
    pub build: PathBuf,
    /// Where to write the export.
    pub dir: PathBuf,
    /// Also export augmented copies (png: named `<stem>.aug<k>.png`; others: `copy` > 0).
    #[arg(long)]
    pub all_copies: bool,
    /// Samples per tar or Parquet file (webdataset, hf).
    #[arg(long, default_value_t = 1000)]
    pub samples_per_shard: usize,
}

/// Formats of `covidx export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// COVID-Net's folder layout, one PNG per sample under its split-file name.
    Png,
    /// WebDataset tar shards: `<key>.png`, `<key>.cls`, `<key>.json`.
    Webdataset,
    /// Parquet shards with an `image` column and a `ClassLabel` `label`.
    Hf,
}

/// Arguments of `covidx build`.
#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    /// Pipeline file (e.g. pipelines/covidx2.toml).
    pub pipeline: PathBuf,
    /// Directory holding the upstream layouts, or `s3://bucket/prefix` (mirrored into the
    /// local cache first) or `file:///dir`.
    #[arg(long, default_value = "data/sources")]
    pub sources: PathBuf,
    /// Output directory, or `s3://bucket/prefix` (built in a local staging directory, then
    /// uploaded with the lock last) or `file:///dir`.
    #[arg(long, default_value = "data/out")]
    pub out: PathBuf,
    /// Check that image files exist, without reading them (skips the image stage).
    #[arg(long)]
    pub metadata_only: bool,
    /// Run the image stage (decode, resize, augment, shards) even if the pipeline does not.
    #[arg(long)]
    pub images: bool,
    /// Fail on the first bad image instead of quarantining it.
    #[arg(long)]
    pub strict: bool,
    /// Write only part K of N of the image stage (K from 1; shard g goes to part g % N + 1)
    /// and its part.json into --out; `covidx merge` joins the parts.
    #[arg(long, value_name = "K/N", conflicts_with_all = ["metadata_only", "merge"])]
    pub part: Option<crate::shards::PartSpec>,
    /// Build from these part directories: each shard is taken from its part, checked, not
    /// decoded (the same as `covidx merge`).
    #[arg(long, value_name = "PART", num_args = 1.., conflicts_with = "metadata_only")]
    pub merge: Vec<PathBuf>,
}

/// Arguments of `covidx merge`.
#[derive(Debug, clap::Args)]
pub struct MergeArgs {
    /// Output directory of the merged build.
    pub out: PathBuf,
    /// The part directories (`covidx build --part K/N --out PART`), all N of them.
    #[arg(required = true)]
    pub parts: Vec<PathBuf>,
    /// Pipeline file (default: the one the parts record).
    #[arg(long)]
    pub pipeline: Option<PathBuf>,
    /// Directory holding the upstream layouts (default: the one the parts record).
    #[arg(long)]
    pub sources: Option<PathBuf>,
    /// Fail if any part quarantined an image.
    #[arg(long)]
    pub strict: bool,
}

/// Arguments of `covidx verify`.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The lock file of a build (OUT/covidx.lock.json).
    pub lock: PathBuf,
    /// Directory holding the upstream layouts the build read.
    #[arg(long, default_value = "data/sources")]
    pub sources: PathBuf,
}

/// Arguments of `covidx demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Where the miniature sources and the build go.
    #[arg(long, default_value = "data/demo")]
    pub dir: PathBuf,
    /// Then train DenseNet-121 on the demo shards for a few epochs on the CPU and print the
    /// metrics (needs the `train` feature).
    #[arg(long)]
    pub train: bool,
}

/// Entry point used by `main.rs`.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = if cli.quiet {
        "error"
    } else {
        ["warn", "info", "debug"][cli.verbose.min(2) as usize]
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("COVIDX_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .init();
    let result = match &cli.command {
        Command::Build(a) => build::run(a, cli.quiet),
        Command::Merge(a) => merge::run(a, cli.quiet),
        Command::Verify(a) => verify::run(a, cli.quiet),
        Command::Demo(a) => demo::run(a, cli.quiet),
        Command::Export(a) => export::run(a, cli.quiet),
        Command::Audit(a) => audit::run(a, cli.quiet),
        Command::Train(a) => train::run(a, cli.quiet),
        Command::Eval(a) => eval::run(a, cli.quiet),
        Command::Predict(a) => predict::run(a, cli.quiet),
    };
    crate::fsutil::finish_deletions();
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
