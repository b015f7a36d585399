//! How a concern declares its metrics. A leaf: every concern uses it, it
//! uses none of them.
//!
//! [`metrics!`] turns a struct of metric fields into that struct plus a
//! `register` function that creates each metric and registers it under its
//! exported name, with the field's doc comment as help text, so the text an
//! operator reads and the code that counts live side by side:
//!
//! ```ignore
//! metrics! {
//!     pub struct SweeperMetrics {
//!         /// Projects marked offline by the stale sweeper
//!         pub stale: Counter = "stale_projects",
//!         /// Time to run one sweep
//!         pub duration: Histogram = "sweep_duration_seconds" => latency_histogram(),
//!     }
//! }
//! ```
//!
//! A field without `=> init` starts from its type's `Default`. The struct
//! derives `Clone` (metrics are handles on shared values), so each worker is
//! handed its own concern's metrics and nothing else.

use prometheus_client::metrics::histogram::Histogram;

/// Latency buckets for HTTP and database work, in seconds.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A histogram over [`LATENCY_BUCKETS`].
pub fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// The help text of a metric from its doc comment's lines.
pub fn help(lines: &[&str]) -> String {
    lines
        .iter()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Declares a struct of metrics and its `register` function; see the
/// [module documentation](self).
macro_rules! metrics {
    (
        $(#[$attr:meta])*
        $vis:vis struct $name:ident {
            $(
                $(#[doc = $help:literal])+
                $fvis:vis $field:ident : $ty:ty = $metric:literal $(=> $init:expr)?
            ),* $(,)?
        }
    ) => {
        $(#[$attr])*
        #[derive(Clone)]
        $vis struct $name {
            $( $(#[doc = $help])+ $fvis $field: $ty, )*
        }

        impl $name {
            /// Creates every metric and registers it, its doc comment as help.
            pub fn register(registry: &mut ::prometheus_client::registry::Registry) -> Self {
                $(
                    let $field: $ty = $crate::instrument::metrics!(@init $($init)?);
                    registry.register(
                        $metric,
                        $crate::instrument::help(&[$($help),+]),
                        $field.clone(),
                    );
                )*
                Self { $($field),* }
            }
        }
    };
    (@init) => { ::core::default::Default::default() };
    (@init $init:expr) => { $init };
}
pub(crate) use metrics;

#[cfg(test)]
mod tests {
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::gauge::Gauge;
    use prometheus_client::metrics::histogram::Histogram;
    use prometheus_client::registry::Registry;

    use super::*;

    metrics! {
        struct Sample {
            /// Things counted,
            /// over two lines
            counted: Counter = "sample_counted",
            /// A level
            level: Gauge = "sample_level",
            /// Durations
            took: Histogram = "sample_took_seconds" => latency_histogram(),
        }
    }

    #[test]
    fn each_field_is_registered_under_its_name_with_its_doc_as_help() {
        let mut registry = Registry::default();
        let m = Sample::register(&mut registry);
        m.counted.inc();
        m.level.set(7);
        m.took.observe(0.003);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for needle in [
            "# HELP sample_counted Things counted, over two lines.",
            "sample_counted_total 1",
            "# HELP sample_level A level.",
            "sample_level 7",
            "sample_took_seconds_bucket{le=\"0.005\"} 1",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
    }
}
