//! The `sirm` reader's workbook parsing (calamine over a zip of XML) and the pinned test
//! list parser, on arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(sheet) = covidx::sources::sirm::first_sheet(data.to_vec(), "fuzz.xlsx") {
        for row in sheet.rows() {
            for cell in row {
                let _ = cell.to_string();
            }
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        for columns in [3, 4] {
            let _ = covidx::split::parse_test_list(text, "fuzz.txt", columns);
        }
    }
});
