//! The zero-copy shard reader: validation of any bytes, then every accessor of every sample.
#![no_main]

use covidx::shards::Shard;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(shard) = Shard::from_bytes("fuzz.safetensors", data) {
        let s2 = shard.size() as usize * shard.size() as usize;
        assert_eq!(shard.images().len(), shard.len() * s2);
        for i in 0..shard.len() {
            assert_eq!(shard.image(i).len(), s2);
            assert!(shard.label(i) < shard.classes().len());
            let _ = (shard.record(i), shard.copy(i));
        }
        // Re-encoding the samples gives a shard that reads back to the same samples.
        let data = shard.to_data();
        let bytes = covidx::shards::encode(&data, shard.split().name(), shard.classes());
        let again = Shard::from_bytes("again", bytes.as_slice()).expect("re-encoded shard reads");
        assert_eq!(again.to_data(), data);
    }
});
