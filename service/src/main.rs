use std::process::ExitCode;

/// jemalloc, configured at build time (`.cargo/config.toml`) to purge freed
/// memory within a second from a background thread: with glibc's malloc,
/// memory used by a burst of connections was never given back
/// (docs/benchmarks.md, "Watch-stream memory").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use clap::Parser;

fn main() -> ExitCode {
    let cli = service::cli::Cli::parse();
    common::runtime::run(
        tokio::runtime::Builder::new_multi_thread(),
        service::cli::run(cli),
    )
}
