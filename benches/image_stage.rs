//! Per-stage timings of the image stage on real chest X-rays (a JPEG and an RGB PNG of
//! ../shared/data/samples when present, else generated 1024² images): decode, crop+resize,
//! one augmented warp, and writing a shard (streamed to disk and hashed).
//! `cargo bench --bench image_stage`.

use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion};

use covidx::imaging::augment::{self, AugmentConfig};
use covidx::imaging::decode::decode_bytes;
use covidx::imaging::preprocess::{crop_square, resize_region};
use covidx::shards::ShardStream;

fn input(sample: &str, format: image::ImageFormat) -> (PathBuf, Vec<u8>) {
    let dir = std::env::var_os("COVIDX_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data"));
    let real = dir.join("samples").join(sample);
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
    let img = image::DynamicImage::ImageLuma8(img).to_rgb8();
    img.write_to(&mut buf, format).unwrap();
    let ext = format.extensions_str()[0];
    (PathBuf::from(format!("generated.{ext}")), buf.into_inner())
}

fn bench(c: &mut Criterion) {
    let (png_path, png) = input(
        "actualmed/CR.1.2.840.113564.1722810170.20200321123520296900.1003000225002.png",
        image::ImageFormat::Png,
    );
    let png_img = decode_bytes(&png, &png_path).unwrap();
    c.bench_function(
        &format!("decode PNG {}x{}", png_img.width(), png_img.height()),
        |b| b.iter(|| decode_bytes(&png, &png_path).unwrap()),
    );
    let (path, bytes) = input(
        "cohen/covid-19-pneumonia-15-PA.jpg",
        image::ImageFormat::Jpeg,
    );
    let img = decode_bytes(&bytes, &path).unwrap();
    let s = 480;
    let sq = crop_square(img.width(), img.height(), 0.08);
    let mut resizer = fast_image_resize::Resizer::new();
    let level_side = sq.side.min(2 * s);
    let level = resize_region(&mut resizer, &img, sq, level_side);
    let cfg = AugmentConfig::default();
    let p = augment::sample(&cfg, 0, "bench", 1);
    let name = format!("{}x{}", img.width(), img.height());

    c.bench_function(&format!("decode JPEG {name}"), |b| {
        b.iter(|| decode_bytes(&bytes, &path).unwrap())
    });
    c.bench_function("crop+resize to 480", |b| {
        b.iter(|| resize_region(&mut resizer, &img, sq, s))
    });
    c.bench_function("warp 480 (one augmented copy)", |b| {
        b.iter(|| augment::warp(&level, level_side, s, &p, cfg.fill, cfg.fill_value))
    });
    let classes = vec![
        "normal".to_string(),
        "pneumonia".to_string(),
        "COVID-19".to_string(),
    ];
    let sample = vec![7u8; (s * s) as usize];
    let dir = tempfile::tempdir().unwrap();
    let shard = dir.path().join("shard.safetensors");
    c.bench_function("stream + hash + rename a 64-sample 480px shard", |b| {
        b.iter(|| {
            let stream = ShardStream::create(
                &shard,
                s,
                "train",
                &classes,
                vec![1; 64],
                (0..64).collect(),
                vec![0; 64],
            )
            .unwrap();
            let hash = std::thread::scope(|scope| {
                let hasher = scope.spawn(|| stream.hash());
                for slot in (0..64).rev() {
                    stream.put(slot, &sample).unwrap();
                }
                hasher.join().unwrap().unwrap()
            });
            stream.finish(hash).unwrap()
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = bench
}
criterion_main!(benches);
