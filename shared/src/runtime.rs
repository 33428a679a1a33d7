//! What every Lambda binary does before its first event: JSON logs, and settings read from
//! the environment with errors that name the variable.

use std::time::Duration;

/// A setting missing from the environment, or not what it should be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    #[error("environment: {0} is not set")]
    Missing(String),
    #[error("environment: {name} is not a number of seconds: {value:?}")]
    NotSeconds { name: String, value: String },
}

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

/// A variable that must be set and not empty.
pub fn required(name: &str) -> Result<String, EnvError> {
    required_from(name, |n| std::env::var(n).ok())
}

/// A whole number of seconds, when the variable is set.
pub fn seconds(name: &str) -> Result<Option<Duration>, EnvError> {
    seconds_from(name, |n| std::env::var(n).ok())
}

fn required_from(name: &str, get: impl Fn(&str) -> Option<String>) -> Result<String, EnvError> {
    get(name)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| EnvError::Missing(name.to_owned()))
}

fn seconds_from(
    name: &str,
    get: impl Fn(&str) -> Option<String>,
) -> Result<Option<Duration>, EnvError> {
    match get(name).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => v
            .trim()
            .parse::<u64>()
            .map(|s| Some(Duration::from_secs(s)))
            .map_err(|_| EnvError::NotSeconds {
                name: name.to_owned(),
                value: v,
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |n| pairs.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone())
    }

    #[test]
    fn a_missing_or_empty_variable_is_named() {
        let get = env(&[("PRDIFF_TABLE", "t"), ("EMPTY", "")]);
        assert_eq!(required_from("PRDIFF_TABLE", &get), Ok("t".to_owned()));
        for name in ["EMPTY", "ABSENT"] {
            let e = required_from(name, &get).unwrap_err();
            assert_eq!(e.to_string(), format!("environment: {name} is not set"));
        }
    }

    #[test]
    fn seconds_are_whole_numbers_when_set() {
        let get = env(&[("A", "30"), ("B", "1.5"), ("C", "")]);
        assert_eq!(seconds_from("A", &get), Ok(Some(Duration::from_secs(30))));
        assert_eq!(seconds_from("C", &get), Ok(None));
        assert_eq!(seconds_from("D", &get), Ok(None));
        assert_eq!(
            seconds_from("B", &get).unwrap_err().to_string(),
            "environment: B is not a number of seconds: \"1.5\""
        );
    }
}
