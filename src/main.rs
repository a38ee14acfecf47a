//! The `covidx` command; everything lives in the library.

fn main() -> std::process::ExitCode {
    covidx::cli::main()
}
