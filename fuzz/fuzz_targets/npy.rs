//! The `.npy` reader of pinned test pools (string arrays) and float arrays.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = covidx::npy::read_strings(data, "fuzz.npy");
    let _ = covidx::npy::read_f64(data, "fuzz.npy");
});
