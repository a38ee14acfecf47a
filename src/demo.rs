//! A generated miniature of the four upstream layouts, with every real quirk the readers must
//! handle, and small real-format images (PNG 8/16-bit, JPEG, DICOM native and JPEG-baseline).
//! Used by `covidx demo` and as the test fixture on machines without `../shared/data`.

use std::io::Cursor;
use std::path::Path;

use anyhow::{Context, Result};
use dicom_core::value::{PixelFragmentSequence, PrimitiveValue, Value};
use dicom_core::{DataElement, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};
use image::{GrayImage, ImageBuffer, ImageFormat, Luma, RgbImage};

use crate::fsutil::write_atomic;
use crate::npy;

/// The demo pipeline, embedded so `covidx demo` runs from any directory.
pub const PIPELINE: &str = include_str!("../pipelines/demo.toml");

/// Side of the generated images, in pixels.
pub const SIZE: u32 = 96;

/// A synthetic chest-like radiograph: two dark lung fields in a bright body, with per-image
/// variation from `seed` so no two generated images are equal.
pub fn synthetic_xray(seed: u32) -> GrayImage {
    let s = SIZE as f32;
    let shift = (seed % 7) as f32 * 1.5;
    GrayImage::from_fn(SIZE, SIZE, |x, y| {
        let (fx, fy) = (x as f32 / s, y as f32 / s);
        let body = 170.0 - 60.0 * ((fx - 0.5).abs() * 2.0).powi(2);
        let lung = |cx: f32| {
            let d = ((fx - cx) / 0.17).powi(2) + ((fy - 0.52) / 0.3).powi(2);
            if d < 1.0 {
                90.0 * (1.0 - d)
            } else {
                0.0
            }
        };
        let noise = ((x * 31 + y * 17 + seed * 101) % 13) as f32;
        let v = body - lung(0.3 + shift / s) - lung(0.7 - shift / s) + noise + (seed % 5) as f32;
        Luma([v.clamp(0.0, 255.0) as u8])
    })
}

fn png8(seed: u32) -> Result<Vec<u8>> {
    let mut buf = Cursor::new(Vec::new());
    synthetic_xray(seed).write_to(&mut buf, ImageFormat::Png)?;
    Ok(buf.into_inner())
}

fn png16(seed: u32) -> Result<Vec<u8>> {
    let base = synthetic_xray(seed);
    let img: ImageBuffer<Luma<u16>, Vec<u16>> = ImageBuffer::from_fn(SIZE, SIZE, |x, y| {
        Luma([base.get_pixel(x, y)[0] as u16 * 257])
    });
    let mut buf = Cursor::new(Vec::new());
    img.write_to(&mut buf, ImageFormat::Png)?;
    Ok(buf.into_inner())
}

fn jpeg_gray(seed: u32) -> Result<Vec<u8>> {
    let mut buf = Cursor::new(Vec::new());
    synthetic_xray(seed).write_to(&mut buf, ImageFormat::Jpeg)?;
    Ok(buf.into_inner())
}

fn jpeg_rgb(seed: u32) -> Result<Vec<u8>> {
    let base = synthetic_xray(seed);
    let img = RgbImage::from_fn(SIZE, SIZE, |x, y| {
        let v = base.get_pixel(x, y)[0];
        image::Rgb([v, v, v.saturating_add(3)])
    });
    let mut buf = Cursor::new(Vec::new());
    img.write_to(&mut buf, ImageFormat::Jpeg)?;
    Ok(buf.into_inner())
}

/// How a generated DICOM stores its pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DicomEncoding {
    /// Explicit VR little endian, 8-bit native pixels.
    ExplicitLittle,
    /// Implicit VR little endian, 16-bit native pixels (12 bits stored).
    Implicit16,
    /// JPEG baseline (process 1) in an encapsulated pixel sequence, as RSNA ships.
    JpegBaseline,
}

/// A small DICOM file like RSNA's (MONOCHROME2, view position set).
pub fn dicom(seed: u32, patient: &str, view: &str, enc: DicomEncoding) -> Result<Vec<u8>> {
    dicom_of(&synthetic_xray(seed), seed as u64, patient, view, enc, 75)
}

/// A DICOM file of `img` as RSNA stores its radiographs (CR, MONOCHROME2, 8 bits stored for
/// JPEG baseline and explicit little endian, 12 of 16 for implicit), with SOP instance UID
/// `2.25.<1000000 + uid>`; JPEG frames are encoded at `jpeg_quality` (1-100).
pub fn dicom_of(
    img: &GrayImage,
    uid: u64,
    patient: &str,
    view: &str,
    enc: DicomEncoding,
    jpeg_quality: u8,
) -> Result<Vec<u8>> {
    let (width, height) = img.dimensions();
    let uid = format!("2.25.{}", 1_000_000 + uid);
    let mut obj = InMemDicomObject::new_empty();
    let put = |obj: &mut InMemDicomObject, tag, vr, v: PrimitiveValue| {
        obj.put(DataElement::new(tag, vr, v));
    };
    put(
        &mut obj,
        tags::SOP_CLASS_UID,
        VR::UI,
        uids::COMPUTED_RADIOGRAPHY_IMAGE_STORAGE.into(),
    );
    put(
        &mut obj,
        tags::SOP_INSTANCE_UID,
        VR::UI,
        uid.as_str().into(),
    );
    put(&mut obj, tags::MODALITY, VR::CS, "CR".into());
    put(&mut obj, tags::PATIENT_ID, VR::LO, patient.into());
    put(&mut obj, tags::VIEW_POSITION, VR::CS, view.into());
    put(
        &mut obj,
        tags::SAMPLES_PER_PIXEL,
        VR::US,
        PrimitiveValue::from(1u16),
    );
    put(
        &mut obj,
        tags::PHOTOMETRIC_INTERPRETATION,
        VR::CS,
        "MONOCHROME2".into(),
    );
    put(
        &mut obj,
        tags::ROWS,
        VR::US,
        PrimitiveValue::from(height as u16),
    );
    put(
        &mut obj,
        tags::COLUMNS,
        VR::US,
        PrimitiveValue::from(width as u16),
    );
    put(
        &mut obj,
        tags::PIXEL_REPRESENTATION,
        VR::US,
        PrimitiveValue::from(0u16),
    );
    let (bits, ts) = match enc {
        DicomEncoding::ExplicitLittle => (8u16, uids::EXPLICIT_VR_LITTLE_ENDIAN),
        DicomEncoding::Implicit16 => (16, uids::IMPLICIT_VR_LITTLE_ENDIAN),
        DicomEncoding::JpegBaseline => (8, uids::JPEG_BASELINE8_BIT),
    };
    put(
        &mut obj,
        tags::BITS_ALLOCATED,
        VR::US,
        PrimitiveValue::from(bits),
    );
    put(
        &mut obj,
        tags::BITS_STORED,
        VR::US,
        PrimitiveValue::from(if bits == 16 { 12u16 } else { 8 }),
    );
    put(
        &mut obj,
        tags::HIGH_BIT,
        VR::US,
        PrimitiveValue::from(if bits == 16 { 11u16 } else { 7 }),
    );
    match enc {
        DicomEncoding::ExplicitLittle => {
            put(
                &mut obj,
                tags::PIXEL_DATA,
                VR::OB,
                PrimitiveValue::U8(img.as_raw().clone().into()),
            );
        }
        DicomEncoding::Implicit16 => {
            let px: Vec<u16> = img.as_raw().iter().map(|&v| v as u16 * 16).collect();
            put(
                &mut obj,
                tags::PIXEL_DATA,
                VR::OW,
                PrimitiveValue::U16(px.into()),
            );
        }
        DicomEncoding::JpegBaseline => {
            let mut jpeg = Vec::new();
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, jpeg_quality)
                .encode_image(img)
                .context("encoding the JPEG frame")?;
            let seq = PixelFragmentSequence::new(Vec::<u32>::new(), vec![jpeg]);
            obj.put(DataElement::new(tags::PIXEL_DATA, VR::OB, Value::from(seq)));
        }
    }
    let file = obj
        .with_meta(FileMetaTableBuilder::new().transfer_syntax(ts))
        .context("building DICOM meta")?;
    let mut out = Vec::new();
    file.write_all(&mut out).context("encoding DICOM")?;
    Ok(out)
}

struct Writer<'a> {
    root: &'a Path,
}

impl Writer<'_> {
    fn file(&self, rel: &str, bytes: &[u8]) -> Result<()> {
        write_atomic(&self.root.join(rel), bytes)
    }
}

/// RSNA demo patients: (id, detailed class, label rows' Target values, DICOM encoding).
const RSNA: &[(&str, &str, &[u8], DicomEncoding)] = &[
    (
        "0a0f91dc-6015-4342-b809-d19610854a21",
        "Normal",
        &[0],
        DicomEncoding::JpegBaseline,
    ),
    (
        "0a1a6f8d-2c3e-4ac5-9e3f-4b5c6d7e8f90",
        "Normal",
        &[0],
        DicomEncoding::JpegBaseline,
    ),
    (
        "0b2c3d4e-5f60-4718-8293-a4b5c6d7e8f9",
        "Normal",
        &[0],
        DicomEncoding::ExplicitLittle,
    ),
    (
        "0c3d4e5f-6071-4829-93a4-b5c6d7e8f9a0",
        "Normal",
        &[0],
        DicomEncoding::JpegBaseline,
    ),
    (
        "0d4e5f60-7182-493a-a4b5-c6d7e8f9a0b1",
        "Normal",
        &[0],
        DicomEncoding::Implicit16,
    ),
    (
        "1e5f6071-8293-4a4b-b5c6-d7e8f9a0b1c2",
        "Lung Opacity",
        &[1, 1],
        DicomEncoding::JpegBaseline,
    ),
    (
        "1f607182-93a4-4b5c-c6d7-e8f9a0b1c2d3",
        "Lung Opacity",
        &[1],
        DicomEncoding::JpegBaseline,
    ),
    (
        "20718293-a4b5-4c6d-d7e8-f9a0b1c2d3e4",
        "Lung Opacity",
        &[1, 1, 1],
        DicomEncoding::JpegBaseline,
    ),
    (
        "218293a4-b5c6-4d7e-e8f9-a0b1c2d3e4f5",
        "Lung Opacity",
        &[1],
        DicomEncoding::ExplicitLittle,
    ),
    (
        "2293a4b5-c6d7-4e8f-f9a0-b1c2d3e4f5a6",
        "No Lung Opacity / Not Normal",
        &[0],
        DicomEncoding::JpegBaseline,
    ),
    // Conflict: the class file says Normal, the labels file has a box (Target 1).
    (
        "23a4b5c6-d7e8-4f9a-a0b1-c2d3e4f5a6b7",
        "Normal",
        &[1],
        DicomEncoding::JpegBaseline,
    ),
];

/// Writes the miniature sources under `root` (the four upstream layouts plus `COVID-Net/`).
pub fn write_sources(root: &Path) -> Result<()> {
    let w = Writer { root };
    let mut seed = 0u32;
    let mut next = || {
        seed += 1;
        seed
    };
    write_cohen(&w, &mut next)?;
    write_figure1(&w, &mut next)?;
    write_actualmed(&w, &mut next)?;
    write_rsna(&w, &mut next)?;
    write_covidnet(&w)
}

/// Cohen's layout (`metadata.csv`, `images/`, `volumes/`).
fn write_cohen(w: &Writer<'_>, next: &mut impl FnMut() -> u32) -> Result<()> {
    // Cohen, later hierarchical schema: trailing comma in the header, multi-line quoted notes,
    // a row with unquoted commas, a trailing space in a file name, a name with spaces and
    // parentheses, views to filter, a CT volume, `todo` and `Herpes ` (trailing space).
    let c = "covid-chestxray-dataset";
    let mut meta = String::from(
        "patientid,offset,sex,age,finding,RT_PCR_positive,survival,view,modality,date,location,folder,filename,doi,url,license,clinical_notes,other_notes,\n",
    );
    let cohen_rows: &[(&str, &str, &str, &str, &str, &str)] = &[
        // patient, finding, view, modality, folder, filename
        (
            "1",
            "Pneumonia/Viral/COVID-19",
            "PA",
            "X-ray",
            "images",
            "covid-1-pa.png",
        ),
        (
            "1",
            "Pneumonia/Viral/COVID-19",
            "AP Supine",
            "X-ray",
            "images",
            "covid-1-day3.jpg",
        ),
        (
            "2",
            "Pneumonia/Viral/COVID-19",
            "AP",
            "X-ray",
            "images",
            "covid 2 (day 1).jpeg",
        ),
        (
            "2",
            "Pneumonia/Viral/COVID-19",
            "L",
            "X-ray",
            "images",
            "covid-2-lateral.jpg",
        ),
        (
            "3",
            "Pneumonia/Viral/COVID-19",
            "Axial",
            "CT",
            "volumes",
            "covid-3.nii.gz",
        ),
        (
            "4",
            "Pneumonia/Viral/COVID-19",
            "AP semi erect",
            "X-ray",
            "images",
            "covid-4.png",
        ),
        (
            "5",
            "Pneumonia/Viral/COVID-19",
            "PA",
            "X-ray",
            "images",
            "covid-5.jpeg",
        ),
        (
            "6",
            "Pneumonia/Viral/SARS",
            "PA",
            "X-ray",
            "images",
            "sars-6.jpeg",
        ),
        (
            "7",
            "Pneumonia/Bacterial/Streptococcus",
            "PA",
            "X-ray",
            "images",
            "strep-7-day0.jpg",
        ),
        (
            "7",
            "Pneumonia/Bacterial/Streptococcus",
            "PA",
            "X-ray",
            "images",
            "strep-7-day1.jpg",
        ),
        (
            "8",
            "Pneumonia/Bacterial/Klebsiella",
            "AP",
            "X-ray",
            "images",
            "kleb-8.png",
        ),
        (
            "9",
            "Pneumonia/Fungal/Pneumocystis",
            "PA",
            "X-ray",
            "images",
            "pcp-9.jpg",
        ),
        ("10", "todo", "PA", "X-ray", "images", "todo-10.jpg"),
        (
            "11",
            "Pneumonia/Viral/Herpes ",
            "PA",
            "X-ray",
            "images",
            "herpes-11.jpg",
        ),
        (
            "12",
            "No Finding",
            "PA",
            "X-ray",
            "images",
            "nofinding-12.jpg",
        ),
        (
            "13",
            "Pneumonia/Viral/COVID-19",
            "PA",
            "X-ray",
            "images",
            "covid-13-missing.jpg",
        ),
        (
            "14",
            "Pneumonia/Bacterial/Legionella",
            "PA",
            "X-ray",
            "images",
            "legionella-14.png ",
        ),
    ];
    for (i, (pid, finding, view, modality, folder, filename)) in cohen_rows.iter().enumerate() {
        let notes = match i {
            0 => "\"Multi-line note:\nground-glass opacities,\nbilateral\"".to_string(),
            6 => "ground glass, bilateral, lower lobes".to_string(), // unquoted commas
            _ => format!("note {i}"),
        };
        let pcr = if finding.ends_with("COVID-19") {
            "Y"
        } else {
            ""
        };
        meta.push_str(&format!(
            "{pid},0,M,60,{finding},{pcr},,{view},{modality},2020,Somewhere,{folder},{filename},,,,{notes},,\n"
        ));
        let name = filename.trim();
        if name.ends_with("missing.jpg") {
            continue;
        }
        let bytes = match (folder, name.rsplit('.').next().unwrap_or("")) {
            (&"volumes", _) => b"not really a NIfTI volume".to_vec(),
            (_, "png") if i % 2 == 0 => png16(next())?,
            (_, "png") => png8(next())?,
            (_, _) if i % 3 == 0 => jpeg_rgb(next())?,
            _ => jpeg_gray(next())?,
        };
        w.file(&format!("{c}/{folder}/{name}"), &bytes)?;
    }
    // A duplicated metadata row (same patient and image).
    meta.push_str("5,0,M,60,Pneumonia/Viral/COVID-19,Y,,PA,X-ray,2020,Somewhere,images,covid-5.jpeg,,,,again,,\n");
    w.file(&format!("{c}/metadata.csv"), meta.as_bytes())?;
    Ok(())
}

/// Figure1's layout.
fn write_figure1(w: &Writer<'_>, next: &mut impl FnMut() -> u32) -> Result<()> {
    // Figure1: ISO-8859-1 text, no file name column (jpg or png), suffixed ids, blank findings,
    // a row whose image is missing.
    let f = "Figure1-COVID-chestxray-dataset";
    let mut meta: Vec<u8> = b"patientid,offset,sex,age,finding,survival,temperature,pO2 saturation,view,modality,artifacts/distortion,notes\n".to_vec();
    let fig_rows: &[(&str, &str, &str, Option<&str>)] = &[
        ("COVID-00001", "COVID-19", "AP erect", Some("jpg")),
        ("COVID-00002", "", "AP erect", Some("jpg")),
        ("COVID-00003a", "COVID-19", "PA", Some("jpg")),
        ("COVID-00003b", "COVID-19", "PA", Some("png")),
        ("COVID-00004", "Pneumonia", "AP", Some("jpg")),
        ("COVID-00005", "COVID-19", "AP", None),
    ];
    for (pid, finding, view, ext) in fig_rows {
        meta.extend_from_slice(
            format!("{pid},,F,50,{finding},,38.5,91,{view},X-ray,,\"Temp 38.5").as_bytes(),
        );
        meta.extend_from_slice(&[0xB0]); // '°' in ISO-8859-1: invalid as UTF-8
        meta.extend_from_slice(b"C, patient caf\xE9 owner\"\n");
        if let Some(ext) = ext {
            let bytes = if *ext == "png" {
                png8(next())?
            } else {
                jpeg_gray(next())?
            };
            w.file(&format!("{f}/images/{pid}.{ext}"), &bytes)?;
        }
    }
    w.file(&format!("{f}/metadata.csv"), &meta)?;
    Ok(())
}

/// Actualmed's layout.
fn write_actualmed(w: &Writer<'_>, next: &mut impl FnMut() -> u32) -> Result<()> {
    // Actualmed: CRLF line endings, `imagename` column, COVID-19 / No finding / blank.
    let a = "Actualmed-COVID-chestxray-dataset";
    let mut meta = String::from(
        "patientid,offset,sex,age,finding,survival,temperature,pO2 saturation,view,modality,imagename,artifacts/distortion,notes\r\n",
    );
    let act_rows: &[(&str, &str, &str)] = &[
        ("ANON1", "COVID-19", "PA"),
        ("ANON2", "No finding", "PA"),
        ("ANON2", "No finding", "AP"),
        ("ANON3", "", "PA"),
        ("ANON4", "COVID-19", "AP"),
        ("ANON5", "No finding", "PA"),
    ];
    for (i, (pid, finding, view)) in act_rows.iter().enumerate() {
        let name = format!(
            "CR.1.2.840.113564.{}.2020032{i}.1003000225002.png",
            1000 + i
        );
        meta.push_str(&format!(
            "{pid},,,,{finding},,,,{view},X-ray,{name},,\"Inconclusive, date taken (YYYYMMDD): 2020032{i}\"\r\n"
        ));
        w.file(&format!("{a}/images/{name}"), &png8(next())?)?;
    }
    w.file(&format!("{a}/metadata.csv"), meta.as_bytes())?;
    Ok(())
}

/// RSNA's layout (two CSVs, DICOM images).
fn write_rsna(w: &Writer<'_>, next: &mut impl FnMut() -> u32) -> Result<()> {
    // RSNA: several label rows per patient, detailed class info, DICOM images.
    let r = "rsna-pneumonia-detection-challenge";
    let mut labels = String::from("patientId,x,y,width,height,Target\n");
    let mut classes = String::from("patientId,class\n");
    for (i, (pid, class, targets, enc)) in RSNA.iter().enumerate() {
        for (k, t) in targets.iter().enumerate() {
            if *t == 1 {
                labels.push_str(&format!(
                    "{pid},{}.0,{}.0,200.0,300.0,1\n",
                    100 + k * 300,
                    150
                ));
            } else {
                labels.push_str(&format!("{pid},,,,,0\n"));
            }
            classes.push_str(&format!("{pid},{class}\n"));
        }
        let view = if i % 2 == 0 { "PA" } else { "AP" };
        w.file(
            &format!("{r}/stage_2_train_images/{pid}.dcm"),
            &dicom(next(), pid, view, *enc)?,
        )?;
    }
    w.file(&format!("{r}/stage_2_train_labels.csv"), labels.as_bytes())?;
    w.file(
        &format!("{r}/stage_2_detailed_class_info.csv"),
        classes.as_bytes(),
    )?;
    Ok(())
}

/// COVID-Net's pinned pools and test list.
fn write_covidnet(w: &Writer<'_>) -> Result<()> {
    // COVID-Net: RSNA test pools (numpy <U36, like the published ones) and a pinned test list
    // in the 4-column format of COVID-Net's later lists (each line keeps its own format).
    let pool = |ids: &[usize]| {
        ids.iter()
            .map(|&i| RSNA[i].0.to_string())
            .collect::<Vec<_>>()
    };
    w.file(
        "COVID-Net/rsna_test_patients_normal.npy",
        &npy::write_strings(&pool(&[0, 3])),
    )?;
    w.file(
        "COVID-Net/rsna_test_patients_pneumonia.npy",
        &npy::write_strings(&pool(&[5, 7])),
    )?;
    let test_list = format!(
        "{n0} {n0}.png normal rsna\n{p0} {p0}.png pneumonia rsna\n{p1} {p1}.png pneumonia rsna\n\
         7 strep-7-day0.jpg pneumonia cohen\n7 strep-7-day1.jpg pneumonia cohen\n\
         2 covid_2_(day_1).jpeg COVID-19 cohen\nANON4 {anon4} COVID-19 actmed\n",
        n0 = RSNA[0].0,
        p0 = RSNA[5].0,
        p1 = RSNA[7].0,
        anon4 = "CR.1.2.840.113564.1004.20200324.1003000225002.png",
    );
    w.file("COVID-Net/test_demo.txt", test_list.as_bytes())?;
    Ok(())
}
