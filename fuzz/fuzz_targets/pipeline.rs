//! Pipeline parsing and validation: any TOML text gives a validated pipeline or an error.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(p) = covidx::config::Pipeline::parse(text) {
        let _ = p.resolved_sources();
        let _ = p.groups();
        assert!(p.images.augment.rotation.is_finite());
    }
});
