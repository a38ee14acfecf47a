//! Per-stage timings of the image stage on a real chest X-ray (the first sample of
//! ../shared/data/samples when present, else a generated 1024² image): decode, crop+resize,
//! one augmented warp, and shard encoding. `cargo bench --bench image_stage`.

use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion};

use covidx::imaging::augment::{self, AugmentConfig};
use covidx::imaging::decode::decode_bytes;
use covidx::imaging::preprocess::{crop_square, resize_region};
use covidx::shards::{encode, ShardData};

fn input() -> (PathBuf, Vec<u8>) {
    let dir = std::env::var_os("COVIDX_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data"));
    let real = dir.join("samples/cohen/covid-19-pneumonia-15-PA.jpg");
    if let Ok(bytes) = std::fs::read(&real) {
        return (real, bytes);
    }
    let img = image::imageops::resize(
        &covidx::demo::synthetic_xray(1),
        1024,
        1024,
        image::imageops::FilterType::Triangle,
    );
    let mut buf = std::io::Cursor::new(Vec::new());
    img.write_to(&mut buf, image::ImageFormat::Jpeg).unwrap();
    (PathBuf::from("generated.jpg"), buf.into_inner())
}

fn bench(c: &mut Criterion) {
    let (path, bytes) = input();
    let img = decode_bytes(&bytes, &path).unwrap();
    let s = 480;
    let sq = crop_square(img.width(), img.height(), 0.08);
    let mut resizer = fast_image_resize::Resizer::new();
    let level_side = sq.side.min(2 * s);
    let level = resize_region(&mut resizer, &img, sq, level_side);
    let cfg = AugmentConfig::default();
    let p = augment::sample(&cfg, 0, "bench", 1);
    let name = format!("{}x{}", img.width(), img.height());

    c.bench_function(&format!("decode {name}"), |b| {
        b.iter(|| decode_bytes(&bytes, &path).unwrap())
    });
    c.bench_function("crop+resize to 480", |b| {
        b.iter(|| resize_region(&mut resizer, &img, sq, s))
    });
    c.bench_function("warp 480 (one augmented copy)", |b| {
        b.iter(|| augment::warp(&level, level_side, s, &p, cfg.fill, cfg.fill_value))
    });
    let data = ShardData {
        size: s,
        images: vec![7u8; 64 * (s * s) as usize],
        labels: vec![1; 64],
        record: (0..64).collect(),
        copy: vec![0; 64],
    };
    let classes = vec![
        "normal".to_string(),
        "pneumonia".to_string(),
        "COVID-19".to_string(),
    ];
    c.bench_function("encode + sha256 a 64-sample 480px shard", |b| {
        b.iter(|| covidx::fsutil::sha256_hex(&encode(&data, "train", &classes)))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = bench
}
criterion_main!(benches);
