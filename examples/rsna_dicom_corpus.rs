//! An RSNA-shaped DICOM twin of a benchmark corpus (scripts/bench/images.sh): every image of
//! a corpus written by `../shared/bench/make_corpus.py` (Cohen layout, real chest X-rays) is
//! turned into what the RSNA Pneumonia Detection Challenge ships, the bulk of COVIDx:
//! 1024x1024 (centre square, area-resized), 8 bits stored, MONOCHROME2, JPEG baseline
//! (1.2.840.10008.1.2.4.50) in an encapsulated pixel sequence, modality CR, view PA. The
//! metadata and the peer's `files.txt` are the corpus's own, with the `.dcm` names, so
//! `pipelines/bench.toml` builds it and the labels are make_corpus.py's.
//! `cargo run --release --example rsna_dicom_corpus -- CORPUS OUT [QUALITY=90]`

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use covidx::demo::{dicom_of, DicomEncoding};
use covidx::imaging::{decode, preprocess};
use rayon::prelude::*;

const SIDE: u32 = 1024;
const COHEN: &str = "covid-chestxray-dataset";

/// The RSNA-shaped DICOM of the image at `src`.
fn to_dicom(src: &Path, uid: u64, patient: &str, quality: u8) -> Result<Vec<u8>> {
    let img = decode::decode_file(src, None).map_err(|e| anyhow!("{}: {e}", src.display()))?;
    let square = preprocess::crop_square(img.width(), img.height(), 0.0);
    let mut resizer = fast_image_resize::Resizer::new();
    let px = preprocess::resize_region(&mut resizer, &img, square, SIDE);
    let frame = image::GrayImage::from_raw(SIDE, SIDE, px).expect("SIDE x SIDE pixels");
    dicom_of(
        &frame,
        uid,
        patient,
        "PA",
        DicomEncoding::JpegBaseline,
        quality,
    )
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(corpus), Some(out)) = (args.first(), args.get(1)) else {
        eprintln!("usage: rsna_dicom_corpus CORPUS OUT [QUALITY=90]");
        std::process::exit(2);
    };
    let (corpus, out) = (PathBuf::from(corpus), PathBuf::from(out));
    let quality: u8 = args.get(2).map_or(Ok(90), |s| s.parse())?;
    let (src_images, dst_images) = (
        corpus.join(COHEN).join("images"),
        out.join(COHEN).join("images"),
    );
    std::fs::create_dir_all(&dst_images)?;

    let meta_path = corpus.join(COHEN).join("metadata.csv");
    let mut rdr = csv::Reader::from_path(&meta_path)
        .with_context(|| format!("{} (run make_corpus.py first)", meta_path.display()))?;
    let header = rdr.headers()?.clone();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| anyhow!("{}: no {name} column", meta_path.display()))
    };
    let (file_col, patient_col) = (col("filename")?, col("patientid")?);
    let rows: Vec<csv::StringRecord> = rdr.records().collect::<Result<_, _>>()?;

    // Each row's image as a DICOM named after it; the rows with their new names.
    let renamed: Vec<(String, String)> = rows
        .par_iter()
        .enumerate()
        .map(|(i, row)| {
            let name = &row[file_col];
            let dcm = format!(
                "{}.dcm",
                Path::new(name).file_stem().unwrap().to_string_lossy()
            );
            let bytes = to_dicom(&src_images.join(name), i as u64, &row[patient_col], quality)?;
            covidx::fsutil::write_atomic(&dst_images.join(&dcm), &bytes)?;
            Ok((name.to_string(), dcm))
        })
        .collect::<Result<_>>()?;

    let mut meta = csv::Writer::from_path(out.join(COHEN).join("metadata.csv"))?;
    meta.write_record(&header)?;
    for (row, (_, dcm)) in rows.iter().zip(&renamed) {
        let cells = row
            .iter()
            .enumerate()
            .map(|(c, v)| if c == file_col { dcm.as_str() } else { v });
        meta.write_record(cells)?;
    }
    meta.flush()?;

    // The peer's list: the corpus's own lines (path and class), pointing at the DICOMs.
    let dicoms: std::collections::HashMap<&str, &str> = renamed
        .iter()
        .map(|(name, dcm)| (name.as_str(), dcm.as_str()))
        .collect();
    let list = std::fs::read_to_string(corpus.join("files.txt"))?;
    let dst_abs = std::fs::canonicalize(&dst_images)?;
    let mut files = std::io::BufWriter::new(std::fs::File::create(out.join("files.txt"))?);
    let mut bytes = 0u64;
    for line in list.lines() {
        let (path, class) = line
            .rsplit_once(' ')
            .ok_or_else(|| anyhow!("files.txt: {line:?} is not 'PATH LABEL'"))?;
        let name = Path::new(path).file_name().unwrap().to_string_lossy();
        let dcm = dicoms
            .get(name.as_ref())
            .ok_or_else(|| anyhow!("files.txt names {name}, which metadata.csv does not"))?;
        writeln!(files, "{} {class}", dst_abs.join(dcm).display())?;
        bytes += std::fs::metadata(dst_abs.join(dcm))?.len();
    }
    files.flush()?;
    let n = renamed.len();
    println!(
        "wrote {n} RSNA-shaped DICOMs ({SIDE}x{SIDE}, 8-bit MONOCHROME2, JPEG baseline q{quality}, \
         mean {} KB) under {}",
        bytes / n.max(1) as u64 / 1000,
        out.display()
    );
    Ok(())
}
