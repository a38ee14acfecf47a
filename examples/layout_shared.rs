//! Lays out ../shared/data as a sources directory for metadata-only builds and benchmarks:
//! `cargo run --release --example layout_shared -- covidx2|covidx3|...|covidx8|nih OUT_DIR`
//! (`covidx3` serves covidx3.toml, `covidx5` covidx5 and 6, `covidx7` 7a and 7b, `covidx8` 8a
//! and 8b); `nih-ROWS` repeats NIH's table to ROWS rows (e.g. `nih-1000000`).

#[path = "../tests/common/shared_layout.rs"]
mod shared_layout;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (which, out) = match &args[..] {
        [_, w, o] => (w.as_str(), std::path::PathBuf::from(o)),
        _ => {
            eprintln!(
                "usage: layout_shared covidx2|covidx3|covidx4|covidx5|covidx7|covidx8|nih|nih-ROWS OUT_DIR"
            );
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
        rows if rows.starts_with("nih-") => {
            let n = rows["nih-".len()..]
                .parse()
                .expect("nih-ROWS, e.g. nih-1000000");
            shared_layout::layout_nih_rows(&data, &out, n)
        }
        "covidx3" => shared_layout::layout_version(&data, &shared_layout::V3, &out),
        "covidx4" => shared_layout::layout_version(&data, &shared_layout::V4, &out),
        "covidx5" | "covidx6" => shared_layout::layout_version(&data, &shared_layout::V5, &out),
        "covidx7" => shared_layout::layout_version(&data, &shared_layout::V7, &out),
        "covidx8" => shared_layout::layout_version(&data, &shared_layout::V8, &out),
        other => {
            eprintln!("unknown layout {other:?}");
            std::process::exit(2);
        }
    };
    println!("{}", out.display());
}
