//! Image decoding through `decode_bytes_for`: PNG, JPEG and DICOM by content, with the
//! extension and the size hint chosen by the first byte. Any input must give an image or a
//! `DecodeError`, never a panic, and never an allocation past the decode limits.
#![no_main]

use std::path::Path;

use covidx::imaging::decode::{decode_bytes_for, SizeHint};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, bytes)) = data.split_first() else {
        return;
    };
    let name = ["x.png", "x.jpg", "x.dcm", "x"][mode as usize % 4];
    let hint = (mode & 4 != 0).then_some(SizeHint {
        crop_top: 0.08,
        min_side: 16,
    });
    if let Ok(img) = decode_bytes_for(bytes, Path::new(name), hint) {
        assert_eq!(
            img.as_raw().len(),
            img.width() as usize * img.height() as usize
        );
        assert!(img.width() > 0 && img.height() > 0);
    }
    let _ = covidx::imaging::dicom::dicom_raw_values(bytes);
});
