//! An RSNA-shaped DICOM benchmark corpus from the real sample images (scripts/bench/images.sh):
//! every file is what the RSNA Pneumonia Detection Challenge ships, the bulk of COVIDx:
//! 1024x1024, 8 bits stored, MONOCHROME2, JPEG baseline (1.2.840.10008.1.2.4.50) in an
//! encapsulated pixel sequence, modality CR, view PA. The pixels are the real samples of
//! `../shared/data/samples` (or `COVIDX_SHARED_DATA`), centre-cropped and area-resized to
//! 1024x1024, cycled to N files (each cycle's file gets its own patient and UID).
//!
//! Writes the same layout as `../shared/bench/make_corpus.py` (Cohen layout, so
//! `pipelines/bench.toml` builds it), plus `files.txt` for the Python peer:
//! `cargo run --release --example rsna_dicom_corpus -- OUT [N=400] [QUALITY=90]`

use std::io::Write as _;
use std::path::{Path, PathBuf};

use covidx::demo::{dicom_of, DicomEncoding};
use covidx::imaging::{decode, preprocess};
use rayon::prelude::*;

const SIDE: u32 = 1024;

fn shared_data() -> PathBuf {
    std::env::var_os("COVIDX_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data"))
}

/// (finding for the Cohen metadata, class id for the peer) of a sample's finding.
fn label(finding: &str) -> (&'static str, u8) {
    match finding.split(',').next().unwrap_or("").trim() {
        "COVID-19" => ("COVID-19", 2),
        "" | "No Finding" | "No finding" => ("Normal", 0),
        _ => ("Streptococcus", 1),
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(out) = args.first().map(PathBuf::from) else {
        eprintln!("usage: rsna_dicom_corpus OUT [N=400] [QUALITY=90]");
        std::process::exit(2);
    };
    let n: usize = args.get(1).map_or(Ok(400), |s| s.parse())?;
    let quality: u8 = args.get(2).map_or(Ok(90), |s| s.parse())?;
    let data = shared_data();
    let listing = data.join("samples/samples.csv");
    let mut rdr = csv::Reader::from_path(&listing)
        .map_err(|e| anyhow::anyhow!("{}: {e} (set COVIDX_SHARED_DATA)", listing.display()))?;
    let headers = rdr.headers()?.clone();
    let col = |name: &str| headers.iter().position(|h| h == name);
    let (path_col, finding_col) = (
        col("sample_path").ok_or_else(|| anyhow::anyhow!("samples.csv: no sample_path"))?,
        col("finding").ok_or_else(|| anyhow::anyhow!("samples.csv: no finding"))?,
    );
    let samples: Vec<(PathBuf, String)> = rdr
        .records()
        .map(|r| {
            let r = r?;
            Ok((data.join(&r[path_col]), r[finding_col].to_string()))
        })
        .collect::<anyhow::Result<_>>()?;
    anyhow::ensure!(!samples.is_empty(), "{}: no samples", listing.display());

    // Each real sample once: decoded, centre square, area-resized to 1024x1024.
    let frames: Vec<image::GrayImage> = samples
        .par_iter()
        .map(|(path, _)| {
            let img = decode::decode_file(path, None)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            let square = preprocess::crop_square(img.width(), img.height(), 0.0);
            let mut resizer = fast_image_resize::Resizer::new();
            let px = preprocess::resize_region(&mut resizer, &img, square, SIDE);
            Ok(image::GrayImage::from_raw(SIDE, SIDE, px).expect("SIDE x SIDE pixels"))
        })
        .collect::<anyhow::Result<_>>()?;

    let root = out.join("covid-chestxray-dataset");
    std::fs::create_dir_all(root.join("images"))?;
    let names: Vec<String> = (0..n)
        .into_par_iter()
        .map(|i| {
            let k = i % samples.len();
            let name = format!("{i:05}-rsna.dcm");
            let patient = format!("p{i:05}");
            let bytes = dicom_of(
                &frames[k],
                i as u64,
                &patient,
                "PA",
                DicomEncoding::JpegBaseline,
                quality,
            )?;
            covidx::fsutil::write_atomic(&root.join("images").join(&name), &bytes)?;
            Ok(name)
        })
        .collect::<anyhow::Result<_>>()?;

    let mut meta = csv::Writer::from_path(root.join("metadata.csv"))?;
    meta.write_record([
        "patientid",
        "offset",
        "sex",
        "age",
        "finding",
        "survival",
        "view",
        "modality",
        "date",
        "location",
        "filename",
        "doi",
        "url",
        "license",
        "clinical_notes",
        "other_notes",
    ])?;
    let mut files = std::io::BufWriter::new(std::fs::File::create(out.join("files.txt"))?);
    let images = std::fs::canonicalize(root.join("images"))?;
    let mut bytes = 0u64;
    for (i, name) in names.iter().enumerate() {
        let (finding, class) = label(&samples[i % samples.len()].1);
        let patient = format!("p{i:05}");
        meta.write_record([
            patient.as_str(),
            "",
            "",
            "",
            finding,
            "",
            "PA",
            "X-ray",
            "",
            "",
            name,
            "",
            "",
            "",
            "",
            "",
        ])?;
        writeln!(files, "{} {class}", images.join(name).display())?;
        bytes += std::fs::metadata(images.join(name))?.len();
    }
    meta.flush()?;
    files.flush()?;
    println!(
        "wrote {n} RSNA-shaped DICOMs ({SIDE}x{SIDE}, 8-bit MONOCHROME2, JPEG baseline q{quality}, \
         mean {} KB) under {}",
        bytes / n.max(1) as u64 / 1000,
        out.display()
    );
    Ok(())
}
