//! Decoding alone, the floor of the image stage (scripts/bench/images.sh): every image of a
//! `files.txt` list ("path label" lines, paths absolute or relative to the list's folder) is
//! read into memory first, then decoded on all cores exactly as the image stage decodes it
//! (same decoder and the same size hint: the centre square after a `crop_top` of 0.08 must
//! keep `SIZE` pixels, or `2 * SIZE` with augmented copies), ROUNDS times. Prints decoded
//! images/s and the stage's samples/s at that rate (images x (1 + COPIES)), median of the rounds.
//! `cargo run --release --example decode_floor -- FILES_TXT [SIZE=480] [COPIES=2] [ROUNDS=3]`

use std::path::Path;
use std::time::Instant;

use covidx::imaging::decode::{self, SizeHint};
use rayon::prelude::*;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(list) = args.first() else {
        eprintln!("usage: decode_floor FILES_TXT [SIZE=480] [COPIES=2] [ROUNDS=3]");
        std::process::exit(2);
    };
    let arg = |i: usize, default: u32| {
        args.get(i)
            .map_or(default, |s| s.parse().expect("a number"))
    };
    let (size, copies, rounds) = (arg(1, 480), arg(2, 2), arg(3, 3).max(1));
    let list = Path::new(list);
    let dir = list.parent().unwrap_or(Path::new("."));
    let text = std::fs::read_to_string(list).expect("reading the file list");
    let files: Vec<(std::path::PathBuf, Vec<u8>)> = text
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(|f| {
            let path = dir.join(f);
            let bytes = std::fs::read(&path).expect("reading an image");
            (path, bytes)
        })
        .collect();
    let hint = SizeHint {
        crop_top: 0.08,
        min_side: if copies > 0 { 2 * size } else { size },
    };
    let mut rates: Vec<f64> = (0..rounds)
        .map(|_| {
            let t = Instant::now();
            let pixels: u64 = files
                .par_iter()
                .map_init(Vec::new, |out, (path, bytes)| {
                    let (w, h) = decode::decode_into(bytes, path, Some(hint), out)
                        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                    w as u64 * h as u64
                })
                .sum();
            std::hint::black_box(pixels);
            files.len() as f64 / t.elapsed().as_secs_f64()
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    let median = rates[rates.len() / 2];
    println!(
        "decode only: {} images, {median:.1} images/s ({:.1} samples/s at {} samples per image), \
         median of {rounds}, {} threads",
        files.len(),
        median * (1 + copies) as f64,
        1 + copies,
        rayon::current_num_threads()
    );
}
