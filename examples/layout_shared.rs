//! Lays out ../shared/data as a sources directory for metadata-only builds and benchmarks:
//! `cargo run --release --example layout_shared -- covidx2|nih OUT_DIR`.

#[path = "../tests/common/shared_layout.rs"]
mod shared_layout;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (which, out) = match &args[..] {
        [_, w, o] => (w.as_str(), std::path::PathBuf::from(o)),
        _ => {
            eprintln!("usage: layout_shared covidx2|nih OUT_DIR");
            std::process::exit(2);
        }
    };
    let Some(data) = shared_layout::shared_data() else {
        eprintln!("../shared/data not found (set COVIDX_SHARED_DATA)");
        std::process::exit(2);
    };
    match which {
        "covidx2" => shared_layout::layout(&data, &shared_layout::COVIDX2, &out),
        "nih" => shared_layout::layout_nih(&data, &out),
        other => {
            eprintln!("unknown layout {other:?}");
            std::process::exit(2);
        }
    };
    println!("{}", out.display());
}
