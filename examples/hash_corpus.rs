//! Perceptual hashing alone, for the audit benchmark (scripts/bench/audit.sh): decodes every
//! image of a `files.txt` list ("path label" lines, paths relative to the list's folder) with
//! covidx's decoder and computes its dHash and pHash, in parallel on all cores: the same work
//! as the Python imagehash peer. Prints the number of images and the wrapping sum of their hashes.
//! `cargo run --release --example hash_corpus -- CORPUS/files.txt`

use std::path::Path;

use covidx::imaging::{decode, phash};
use rayon::prelude::*;

fn main() {
    let Some(list) = std::env::args().nth(1) else {
        eprintln!("usage: hash_corpus FILES_TXT");
        std::process::exit(2);
    };
    let list = Path::new(&list);
    let dir = list.parent().unwrap_or(Path::new("."));
    let text = std::fs::read_to_string(list).expect("reading the file list");
    let files: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|f| !f.ends_with(".dcm"))
        .collect();
    let mix = files
        .par_iter()
        .map_init(Vec::new, |pixels, f| {
            // One pixel buffer per thread, reused across images.
            let path = dir.join(f);
            let bytes = std::fs::read(&path).expect("reading an image");
            let (w, h) = decode::decode_into(&bytes, &path, None, pixels).expect("decoding");
            let (d, p) = phash::hashes(pixels, w as usize, h as usize);
            d ^ p.rotate_left(1)
        })
        .reduce(|| 0, u64::wrapping_add);
    println!("{} images, hash mix {mix:016x}", files.len());
}
