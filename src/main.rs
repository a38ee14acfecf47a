//! The `covidx` command; everything lives in the library.

/// The metadata stages allocate many small strings; mimalloc halves their cost.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    // Transparent huge pages make every fresh allocator arena fault in (and zero) 2 MiB at a
    // time; for a short-lived tool that is most of a metadata build's run time.
    // SAFETY: prctl with PR_SET_THP_DISABLE only changes this process's paging policy.
    #[cfg(target_os = "linux")]
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
    covidx::cli::main()
}
