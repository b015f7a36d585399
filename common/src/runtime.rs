//! Starting a binary's async runtime.

use std::future::Future;
use std::process::ExitCode;

/// Builds the runtime `builder` describes, with every driver (I/O, time)
/// enabled, and runs `main` on it to its end. When the runtime cannot be
/// built, says so on stderr and fails.
pub fn run<F>(mut builder: tokio::runtime::Builder, main: F) -> ExitCode
where
    F: Future<Output = ExitCode>,
{
    match builder.enable_all().build() {
        Ok(runtime) => runtime.block_on(main),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}
