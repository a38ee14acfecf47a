//! The metadata table reader: decoding (UTF-8 or ISO-8859-1, chosen by the first byte) and CSV
//! parsing with the quote check, then the row reader every one-image-per-row source uses.
#![no_main]

use covidx::config::Encoding;
use covidx::sources::table::{decode, Table};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, bytes)) = data.split_first() else {
        return;
    };
    let encoding = if mode & 1 == 0 {
        Encoding::Utf8
    } else {
        Encoding::Latin1
    };
    let delimiter = [b',', b';', b'\t', b'|'][(mode >> 1) as usize % 4];
    let Ok(text) = decode(bytes, encoding, "fuzz.csv") else {
        return;
    };
    if let Ok(table) = Table::parse(&text, "fuzz.csv", delimiter) {
        for row in &table.rows {
            for i in 0..table.header.len() + 2 {
                let _ = row.get(i);
            }
        }
        let _ = table.column("patientid");
        let _ = table.width();
    }
});
