//! With the `train` feature, records libtorch's folder as the binaries' rpath, so `cargo test`
//! and the built binary find libtorch without LD_LIBRARY_PATH. The default build has nothing
//! to do here.
fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_TRAIN").is_none() {
        return;
    }
    match std::env::var("LIBTORCH") {
        Ok(dir) => println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}/lib"),
        Err(_) => println!(
            "cargo:warning=LIBTORCH is not set: the trainer binary will need LD_LIBRARY_PATH \
             (run scripts/setup-libtorch.sh)"
        ),
    }
}
