//! With the `train` feature: compiles the trainer's small C++ shim over libtorch
//! (`src/train/shim.cpp`: autocast with a chosen dtype, fused Adam, the gradient scaler's
//! check, which tch does not bind) against `$LIBTORCH`'s headers, and records `$LIBTORCH/lib`
//! as the binaries' rpath so `cargo test` and the built binary find libtorch without
//! LD_LIBRARY_PATH. The default build has nothing to do here.
fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    println!("cargo:rerun-if-changed=build.rs");
    // Build scripts see the package's features as cfg.
    #[cfg(feature = "train")]
    shim();
}

#[cfg(feature = "train")]
fn shim() {
    println!("cargo:rerun-if-changed=src/train/shim.cpp");
    let Ok(dir) = std::env::var("LIBTORCH") else {
        panic!(
            "the `train` feature needs LIBTORCH (libtorch 2.11's folder, with include/ and lib/): \
             run `bash scripts/setup-libtorch.sh` and export what it prints"
        );
    };
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into());
    cc::Build::new()
        .cpp(true)
        .std("c++17")
        .file("src/train/shim.cpp")
        .include(format!("{dir}/include"))
        .include(format!("{dir}/include/torch/csrc/api/include"))
        .define("_GLIBCXX_USE_CXX11_ABI", abi.as_str())
        .flag_if_supported("-Wno-unused-parameter")
        .warnings(false)
        .compile("covidx_shim");
    // After the static shim so that the linker keeps the libraries it needs.
    println!("cargo:rustc-link-search=native={dir}/lib");
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}/lib");
}
