//! Logging: `tracing` with JSON in production and text in a terminal.

use std::io::IsTerminal;

use serde::Deserialize;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// `error`, `warn`, `info`, `debug`, `trace`, or a full filter such as
    /// `info,service::ingest=debug`. `RUST_LOG` overrides it.
    pub level: String,
    pub format: LogFormat,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            level: "info".into(),
            format: LogFormat::Auto,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// JSON when stdout is not a terminal, text otherwise.
    Auto,
    Json,
    Text,
}

/// The filter for a configured level; `RUST_LOG` is applied by [`init`].
pub fn env_filter(level: &str) -> Result<EnvFilter, String> {
    EnvFilter::builder()
        .parse(level)
        .map_err(|e| format!("not a valid log filter ({e})"))
}

/// Installs the global subscriber writing to `sink`. `RUST_LOG`, when set,
/// wins over the configured level.
pub fn init<W>(settings: &LogSettings, sink: W)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.trim().is_empty() => env_filter(&v),
        _ => env_filter(&settings.level),
    }
    .unwrap_or_else(|_| EnvFilter::new("info"));
    let json = match settings.format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stdout().is_terminal(),
    };
    let registry = tracing_subscriber::registry().with(filter);
    // A second init (tests) is harmless: the first subscriber stays.
    if json {
        let layer = tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_writer(sink);
        let _ = registry.with(layer).try_init();
    } else {
        // Colours only for a person at a terminal, never into a log file.
        let ansi = std::io::stdout().is_terminal() && std::io::stderr().is_terminal();
        let layer = tracing_subscriber::fmt::layer()
            .with_ansi(ansi)
            .with_writer(sink);
        let _ = registry.with(layer).try_init();
    }
}
