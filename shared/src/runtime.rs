//! What every Lambda binary does before its first event: JSON logs. Settings come from
//! [`crate::settings`].

/// JSON log lines on stdout for CloudWatch: `RUST_LOG` filters (default `info`), the
/// current span on each line, no timestamp (Lambda stamps every line).
#[cfg(feature = "logging")]
pub fn init_lambda_logs() {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .without_time()
        .try_init();
}
