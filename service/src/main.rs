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
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(service::cli::run(cli))
}
