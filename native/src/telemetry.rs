//! Logs (JSON on stderr, filtered by `LENS_LOG`) and the Prometheus recorder every `metrics::` call in
//! the process reports to.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// JSON logs on stderr; `LENS_LOG` (e.g. `debug`, `lens=debug,tower_http=info`) sets the filter.
/// An error and its causes, `error: cause: cause`, as logs and error messages quote it (a connect error's
/// cause says why).
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    message
}

pub fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LENS_LOG").unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt().json().with_env_filter(filter).with_writer(std::io::stderr).init();
}

/// How often queued histogram samples are folded into their buckets when nobody scrapes `/metrics`.
const METRICS_UPKEEP: std::time::Duration = std::time::Duration::from_secs(5);

/// The process's metrics, installed as the global recorder on first use (once per process: servers
/// started in one test process share it).
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Suffix("seconds".into()),
                &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0],
            )
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full("lens_caption_seconds".into()),
                    &[0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0],
                )
            })
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full("lens_inference_batch_size".into()),
                    &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0],
                )
            })
            .expect("valid buckets")
            .build_recorder();
        let handle = recorder.handle();
        // Another recorder may be installed already (a test harness): then this one only renders.
        let _ = metrics::set_global_recorder(recorder);
        // A recorder built (not `install`ed) has no upkeep task: every histogram sample stays queued
        // until the next render, so a server nobody scrapes grew by ~50 bytes a request (the soak's
        // search-only run). Drain them on a timer instead.
        let upkeep = handle.clone();
        std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(METRICS_UPKEEP);
                    upkeep.run_upkeep();
                }
            })
            .expect("cannot start the metrics upkeep thread");
        handle
    })
}
