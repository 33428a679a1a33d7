//! Settings from the environment, read once at start-up by every binary.
//!
//! Each binary has its own settings type ([`WebhookSettings`], [`PollerSettings`],
//! [`DiffSettings`], [`SyncSettings`], [`ServeSettings`]) read through one loader
//! ([`FromEnv::from_env`]): every variable is checked, and all the problems (a variable not
//! set, a number out of range) come back together in one [`SettingsError`], each naming
//! its variable. Values are printed only for numbers and addresses, never for anything
//! that may hold a secret. Once read, settings are typed: nothing fails later.
//!
//! [`VARIABLES`] lists every variable, its default and who reads it (the documentation's
//! table is written from it).

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::SecretName;

/// One environment variable: its name, who reads it, its default and what it does.
#[derive(Debug, Clone, Copy)]
pub struct Variable {
    pub name: &'static str,
    pub read_by: &'static str,
    pub default: &'static str,
    pub meaning: &'static str,
}

/// Every variable the Lambdas and `prdiff serve` read.
pub const VARIABLES: &[Variable] = &[
    Variable {
        name: "PRDIFF_TABLE",
        read_by: "webhook, poller, diff, sync",
        default: "required",
        meaning: "DynamoDB table of configurations, runs and metadata",
    },
    Variable {
        name: "PRDIFF_POLL_QUEUE_URL",
        read_by: "webhook, poller",
        default: "required",
        meaning: "SQS poll queue",
    },
    Variable {
        name: "PRDIFF_DIFF_QUEUE_URL",
        read_by: "poller",
        default: "required",
        meaning: "SQS diff queue",
    },
    Variable {
        name: "PRDIFF_SYNC_QUEUE_URL",
        read_by: "webhook",
        default: "required",
        meaning: "SQS sync queue",
    },
    Variable {
        name: "PRDIFF_POLL_DLQ_URL",
        read_by: "sync",
        default: "required",
        meaning: "poll dead-letter queue (runs of its messages are ended)",
    },
    Variable {
        name: "PRDIFF_DIFF_DLQ_URL",
        read_by: "sync",
        default: "required",
        meaning: "diff dead-letter queue",
    },
    Variable {
        name: "PRDIFF_SYNC_DLQ_URL",
        read_by: "sync",
        default: "required",
        meaning: "sync dead-letter queue",
    },
    Variable {
        name: "PRDIFF_WEBHOOK_SECRET_NAME",
        read_by: "webhook (required), serve",
        default: "prdiff/webhook-secret (serve)",
        meaning: "name of the webhook secret (GitHub HMAC key, GitLab token)",
    },
    Variable {
        name: "PRDIFF_TRIGGER_TOKEN_NAME",
        read_by: "webhook, serve",
        default: "prdiff/trigger-token (serve); unset: no trigger (webhook)",
        meaning: "name of the bearer token secret of POST /trigger (on-demand runs)",
    },
    Variable {
        name: "PRDIFF_POLL_DELAY_SECONDS",
        read_by: "webhook, poller, serve",
        default: "60",
        meaning: "first look at dbt Cloud after a push; for the poller Lambda, the shortest wait between two looks",
    },
    Variable {
        name: "PRDIFF_REPOLL_DELAY_SECONDS",
        read_by: "serve",
        default: "30 (at least 1)",
        meaning: "wait before the poller looks again; doubles up to 900 s",
    },
    Variable {
        name: "PRDIFF_RUN_DEADLINE_SECONDS",
        read_by: "webhook, sync, serve",
        default: "14400 (at least 60)",
        meaning: "how long a run may wait for its dbt Cloud run",
    },
    Variable {
        name: "PRDIFF_MODEL_TIMEOUT_SECONDS",
        read_by: "diff, serve",
        default: "840 (at least 1)",
        meaning: "one model's diff; past it a \"timed out\" row",
    },
    Variable {
        name: "PRDIFF_LISTEN",
        read_by: "serve",
        default: "127.0.0.1:8080",
        meaning: "address of POST /webhook and GET /healthz",
    },
    Variable {
        name: "PRDIFF_DB",
        read_by: "serve",
        default: "prdiff.db",
        meaning: "the SQLite file",
    },
    Variable {
        name: "PRDIFF_SECRETS_DIR",
        read_by: "serve",
        default: "<db>.secrets",
        meaning: "secret files; PRDIFF_SECRET_<NAME> variables win",
    },
    Variable {
        name: "PRDIFF_DIFF_WORKERS",
        read_by: "serve",
        default: "2 (at least 1)",
        meaning: "models diffed at the same time",
    },
    Variable {
        name: "PRDIFF_SYNC_TICK_SECONDS",
        read_by: "serve",
        default: "900",
        meaning: "how often sync schedules are checked; 0 turns scheduled syncs off",
    },
    Variable {
        name: "PRDIFF_SHUTDOWN_GRACE_SECONDS",
        read_by: "serve",
        default: "30",
        meaning: "time the work in hand gets after SIGINT/SIGTERM",
    },
    Variable {
        name: "PRDIFF_HEADER_TIMEOUT_SECONDS",
        read_by: "serve",
        default: "10 (at least 1)",
        meaning: "a request's headers must arrive within this",
    },
    Variable {
        name: "PRDIFF_BODY_TIMEOUT_SECONDS",
        read_by: "serve",
        default: "30 (at least 1)",
        meaning: "a request's body must arrive within this (else 408)",
    },
    Variable {
        name: "PRDIFF_MAX_CONNECTIONS",
        read_by: "serve",
        default: "512 (at least 1)",
        meaning: "HTTP connections served at once",
    },
    Variable {
        name: "PRDIFF_LOG_FORMAT",
        read_by: "serve",
        default: "text",
        meaning: "`text` or `json` log lines on stderr",
    },
];

/// Every problem found in the environment, one per variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsError(pub Vec<String>);

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "environment: {}", self.0.join("; "))
    }
}

impl std::error::Error for SettingsError {}

/// Reads variables through a lookup function and collects the problems.
pub struct Env<'a> {
    get: &'a dyn Fn(&str) -> Option<String>,
    problems: Vec<String>,
}

impl Env<'_> {
    /// The variable's value; an empty value counts as not set.
    fn value(&self, name: &str) -> Option<String> {
        (self.get)(name).filter(|v| !v.trim().is_empty())
    }

    /// An optional secret name: `None` when not set (a problem when set but invalid).
    pub fn optional_secret_name(&mut self, name: &str) -> Option<SecretName> {
        let raw = self.value(name)?;
        match SecretName::parse(raw) {
            Ok(s) => Some(s),
            Err(e) => {
                self.problems.push(format!("{name}: {e}"));
                None
            }
        }
    }

    /// A variable that must be set.
    pub fn required(&mut self, name: &str) -> String {
        self.value(name).unwrap_or_else(|| {
            self.problems.push(format!("{name} is not set"));
            String::new()
        })
    }

    /// A whole number, at least `min`, `default` when not set.
    pub fn number<T>(&mut self, name: &str, default: T, min: T) -> T
    where
        T: std::str::FromStr + PartialOrd + fmt::Display + Copy,
    {
        match self.value(name) {
            None => default,
            Some(v) => match v.trim().parse::<T>() {
                Ok(n) if n >= min => n,
                _ => {
                    self.problems
                        .push(format!("{name} is not a whole number ≥ {min}: {v:?}"));
                    default
                }
            },
        }
    }

    /// A whole number of seconds, at least `min`, `default` when not set.
    pub fn seconds(&mut self, name: &str, default: u64, min: u64) -> Duration {
        match self.value(name) {
            None => Duration::from_secs(default),
            Some(v) => match v.trim().parse::<u64>() {
                Ok(s) if s >= min => Duration::from_secs(s),
                _ => {
                    self.problems
                        .push(format!("{name} is not a number of seconds ≥ {min}: {v:?}"));
                    Duration::from_secs(default)
                }
            },
        }
    }

    /// A secret's name (not its value): required when `default` is `None`.
    pub fn secret_name(&mut self, name: &str, default: Option<&str>) -> Option<SecretName> {
        let raw = match (self.value(name), default) {
            (Some(v), _) => v,
            (None, Some(d)) => d.to_owned(),
            (None, None) => {
                self.problems.push(format!("{name} is not set"));
                return None;
            }
        };
        match SecretName::parse(raw) {
            Ok(s) => Some(s),
            Err(e) => {
                self.problems.push(format!("{name}: {e}"));
                None
            }
        }
    }

    /// A value parsed by `T::from_str`; the value is shown in the problem (use only for
    /// values that are not secret, e.g. addresses).
    pub fn parsed<T: std::str::FromStr>(&mut self, name: &str, default: T) -> T {
        match self.value(name) {
            None => default,
            Some(v) => v.trim().parse::<T>().unwrap_or_else(|_| {
                self.problems.push(format!("{name} is not valid: {v:?}"));
                default
            }),
        }
    }

    /// An optional path.
    pub fn path(&self, name: &str) -> Option<PathBuf> {
        self.value(name).map(PathBuf::from)
    }
}

/// Settings read from environment variables, all problems reported together.
pub trait FromEnv: Sized {
    /// Reads every variable through `env`; a problem is recorded there and a placeholder
    /// returned (the caller then discards the value).
    fn read(env: &mut Env<'_>) -> Option<Self>;

    /// Reads the settings through `get` (tests pass a map; `serve` puts its flags first).
    fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let mut env = Env {
            get: &get,
            problems: Vec::new(),
        };
        let value = Self::read(&mut env);
        match value {
            Some(v) if env.problems.is_empty() => Ok(v),
            _ => Err(SettingsError(env.problems)),
        }
    }

    /// Reads the settings from the process environment.
    fn from_env() -> Result<Self, SettingsError> {
        Self::from_vars(|name| std::env::var(name).ok())
    }
}

/// The webhook Lambda's settings.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    pub table: String,
    pub poll_queue_url: String,
    pub sync_queue_url: String,
    pub webhook_secret: SecretName,
    /// `None`: `POST /trigger` is off.
    pub trigger_token: Option<SecretName>,
    pub poll_delay: Duration,
    pub run_deadline: Duration,
}

impl FromEnv for WebhookSettings {
    fn read(env: &mut Env<'_>) -> Option<Self> {
        let table = env.required("PRDIFF_TABLE");
        let poll_queue_url = env.required("PRDIFF_POLL_QUEUE_URL");
        let sync_queue_url = env.required("PRDIFF_SYNC_QUEUE_URL");
        let webhook_secret = env.secret_name("PRDIFF_WEBHOOK_SECRET_NAME", None);
        let trigger_token = env.optional_secret_name("PRDIFF_TRIGGER_TOKEN_NAME");
        let poll_delay = env.seconds("PRDIFF_POLL_DELAY_SECONDS", 60, 0);
        let run_deadline = env.seconds("PRDIFF_RUN_DEADLINE_SECONDS", 4 * 3600, 60);
        Some(Self {
            table,
            poll_queue_url,
            sync_queue_url,
            webhook_secret: webhook_secret?,
            trigger_token,
            poll_delay,
            run_deadline,
        })
    }
}

/// The poller Lambda's settings.
#[derive(Debug, Clone)]
pub struct PollerSettings {
    pub table: String,
    pub poll_queue_url: String,
    pub diff_queue_url: String,
    /// The shortest wait between two looks at dbt Cloud.
    pub poll_delay: Duration,
}

impl FromEnv for PollerSettings {
    fn read(env: &mut Env<'_>) -> Option<Self> {
        Some(Self {
            table: env.required("PRDIFF_TABLE"),
            poll_queue_url: env.required("PRDIFF_POLL_QUEUE_URL"),
            diff_queue_url: env.required("PRDIFF_DIFF_QUEUE_URL"),
            poll_delay: env.seconds("PRDIFF_POLL_DELAY_SECONDS", 60, 1),
        })
    }
}

/// The diff runner Lambda's settings.
#[derive(Debug, Clone)]
pub struct DiffSettings {
    pub table: String,
    pub model_timeout: Duration,
}

impl FromEnv for DiffSettings {
    fn read(env: &mut Env<'_>) -> Option<Self> {
        Some(Self {
            table: env.required("PRDIFF_TABLE"),
            model_timeout: env.seconds("PRDIFF_MODEL_TIMEOUT_SECONDS", 840, 1),
        })
    }
}

/// The sync Lambda's settings.
#[derive(Debug, Clone)]
pub struct SyncSettings {
    pub table: String,
    /// The poll, diff and sync dead-letter queues, by name.
    pub dead_letter_queues: Vec<(&'static str, String)>,
    pub run_deadline: Duration,
}

impl FromEnv for SyncSettings {
    fn read(env: &mut Env<'_>) -> Option<Self> {
        let table = env.required("PRDIFF_TABLE");
        let dead_letter_queues = [
            ("poll", "PRDIFF_POLL_DLQ_URL"),
            ("diff", "PRDIFF_DIFF_DLQ_URL"),
            ("sync", "PRDIFF_SYNC_DLQ_URL"),
        ]
        .into_iter()
        .map(|(name, var)| (name, env.required(var)))
        .collect();
        Some(Self {
            table,
            dead_letter_queues,
            run_deadline: env.seconds("PRDIFF_RUN_DEADLINE_SECONDS", 4 * 3600, 60),
        })
    }
}

/// How `prdiff serve` writes its log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            _ => Err(()),
        }
    }
}

/// `prdiff serve`'s settings (its flags are looked up first, under the variables' names).
#[derive(Debug, Clone)]
pub struct ServeSettings {
    pub listen: SocketAddr,
    pub db: PathBuf,
    pub secrets_dir: Option<PathBuf>,
    pub webhook_secret: SecretName,
    pub trigger_token: SecretName,
    pub diff_workers: usize,
    pub poll_delay: Duration,
    pub repoll_delay: Duration,
    pub run_deadline: Duration,
    pub model_timeout: Duration,
    /// `None`: scheduled syncs are off.
    pub sync_tick: Option<Duration>,
    pub shutdown_grace: Duration,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub max_connections: usize,
    pub log_format: LogFormat,
}

impl FromEnv for ServeSettings {
    fn read(env: &mut Env<'_>) -> Option<Self> {
        let listen = env.parsed("PRDIFF_LISTEN", SocketAddr::from(([127, 0, 0, 1], 8080)));
        let db = env.path("PRDIFF_DB").unwrap_or_else(|| "prdiff.db".into());
        let secrets_dir = env.path("PRDIFF_SECRETS_DIR");
        let webhook_secret =
            env.secret_name("PRDIFF_WEBHOOK_SECRET_NAME", Some("prdiff/webhook-secret"));
        let trigger_token = env.secret_name(
            "PRDIFF_TRIGGER_TOKEN_NAME",
            Some(crate::app::intake::DEFAULT_TRIGGER_TOKEN),
        );
        let diff_workers = env.number("PRDIFF_DIFF_WORKERS", 2usize, 1);
        let poll_delay = env.seconds("PRDIFF_POLL_DELAY_SECONDS", 60, 0);
        let repoll_delay = env.seconds("PRDIFF_REPOLL_DELAY_SECONDS", 30, 1);
        let run_deadline = env.seconds("PRDIFF_RUN_DEADLINE_SECONDS", 4 * 3600, 60);
        let model_timeout = env.seconds("PRDIFF_MODEL_TIMEOUT_SECONDS", 840, 1);
        let sync_tick = env.seconds("PRDIFF_SYNC_TICK_SECONDS", 900, 0);
        let shutdown_grace = env.seconds("PRDIFF_SHUTDOWN_GRACE_SECONDS", 30, 0);
        let header_timeout = env.seconds("PRDIFF_HEADER_TIMEOUT_SECONDS", 10, 1);
        let body_timeout = env.seconds("PRDIFF_BODY_TIMEOUT_SECONDS", 30, 1);
        let max_connections = env.number("PRDIFF_MAX_CONNECTIONS", 512usize, 1);
        let log_format = env.parsed("PRDIFF_LOG_FORMAT", LogFormat::Text);
        Some(Self {
            listen,
            db,
            secrets_dir,
            webhook_secret: webhook_secret?,
            trigger_token: trigger_token?,
            diff_workers,
            poll_delay,
            repoll_delay,
            run_deadline,
            model_timeout,
            sync_tick: (!sync_tick.is_zero()).then_some(sync_tick),
            shutdown_grace,
            header_timeout,
            body_timeout,
            max_connections,
            log_format,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn every_missing_variable_is_named_together() {
        let err = WebhookSettings::from_vars(vars(&[("PRDIFF_TABLE", "prdiff")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "environment: PRDIFF_POLL_QUEUE_URL is not set; PRDIFF_SYNC_QUEUE_URL is not set; \
             PRDIFF_WEBHOOK_SECRET_NAME is not set"
        );
    }

    #[test]
    fn missing_and_malformed_variables_are_reported_in_one_error() {
        let err = SyncSettings::from_vars(vars(&[
            ("PRDIFF_POLL_DLQ_URL", "https://sqs/poll-dlq"),
            ("PRDIFF_SYNC_DLQ_URL", ""),
            ("PRDIFF_RUN_DEADLINE_SECONDS", "soon"),
        ]))
        .unwrap_err();
        assert_eq!(
            err.0,
            vec![
                "PRDIFF_TABLE is not set",
                "PRDIFF_DIFF_DLQ_URL is not set",
                "PRDIFF_SYNC_DLQ_URL is not set",
                "PRDIFF_RUN_DEADLINE_SECONDS is not a number of seconds ≥ 60: \"soon\"",
            ]
        );
    }

    #[test]
    fn a_complete_webhook_environment_is_read() {
        let s = WebhookSettings::from_vars(vars(&[
            ("PRDIFF_TABLE", "prdiff"),
            ("PRDIFF_POLL_QUEUE_URL", "https://sqs/poll"),
            ("PRDIFF_SYNC_QUEUE_URL", "https://sqs/sync"),
            ("PRDIFF_WEBHOOK_SECRET_NAME", "prdiff/webhook-secret"),
            ("PRDIFF_POLL_DELAY_SECONDS", "30"),
            ("PRDIFF_RUN_DEADLINE_SECONDS", "7200"),
        ]))
        .unwrap();
        assert_eq!(s.table, "prdiff");
        assert_eq!(s.poll_delay, Duration::from_secs(30));
        assert_eq!(s.run_deadline, Duration::from_secs(7200));
        assert_eq!(s.webhook_secret.as_str(), "prdiff/webhook-secret");
    }

    #[test]
    fn a_deadline_that_is_not_a_sensible_number_of_seconds_is_named() {
        for bad in ["soon", "0", "-5", "59"] {
            let err = DiffSettings::from_vars(vars(&[
                ("PRDIFF_TABLE", "t"),
                ("PRDIFF_MODEL_TIMEOUT_SECONDS", bad),
            ]));
            let ok = bad == "59";
            assert_eq!(err.is_ok(), ok, "{bad}");
            let err = SyncSettings::from_vars(vars(&[
                ("PRDIFF_TABLE", "t"),
                ("PRDIFF_POLL_DLQ_URL", "a"),
                ("PRDIFF_DIFF_DLQ_URL", "b"),
                ("PRDIFF_SYNC_DLQ_URL", "c"),
                ("PRDIFF_RUN_DEADLINE_SECONDS", bad),
            ]))
            .unwrap_err();
            assert_eq!(
                err.0,
                vec![format!(
                    "PRDIFF_RUN_DEADLINE_SECONDS is not a number of seconds ≥ 60: {bad:?}"
                )]
            );
        }
    }

    #[test]
    fn serve_has_defaults_for_everything() {
        let s = ServeSettings::from_vars(vars(&[])).unwrap();
        assert_eq!(s.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(s.db, PathBuf::from("prdiff.db"));
        assert_eq!(s.webhook_secret.as_str(), "prdiff/webhook-secret");
        assert_eq!(s.sync_tick, Some(Duration::from_secs(900)));
        assert_eq!(s.log_format, LogFormat::Text);
        let off = ServeSettings::from_vars(vars(&[("PRDIFF_SYNC_TICK_SECONDS", "0")])).unwrap();
        assert_eq!(off.sync_tick, None);
    }

    #[test]
    fn serve_reports_every_bad_value_together() {
        let err = ServeSettings::from_vars(vars(&[
            ("PRDIFF_LISTEN", "not-an-address"),
            ("PRDIFF_MODEL_TIMEOUT_SECONDS", "0"),
            ("PRDIFF_MAX_CONNECTIONS", "0"),
            ("PRDIFF_LOG_FORMAT", "xml"),
        ]))
        .unwrap_err();
        assert_eq!(
            err.0,
            vec![
                "PRDIFF_LISTEN is not valid: \"not-an-address\"",
                "PRDIFF_MODEL_TIMEOUT_SECONDS is not a number of seconds ≥ 1: \"0\"",
                "PRDIFF_MAX_CONNECTIONS is not a whole number ≥ 1: \"0\"",
                "PRDIFF_LOG_FORMAT is not valid: \"xml\"",
            ]
        );
    }

    #[test]
    fn a_bad_secret_name_is_reported_without_other_values() {
        let err = ServeSettings::from_vars(vars(&[
            ("PRDIFF_WEBHOOK_SECRET_NAME", "has spaces in it"),
            ("PRDIFF_SECRET_PRDIFF_WEBHOOK_SECRET", "s3cr3t-value"),
        ]))
        .unwrap_err();
        assert_eq!(err.0.len(), 1);
        assert!(
            err.0[0].starts_with("PRDIFF_WEBHOOK_SECRET_NAME: "),
            "{err}"
        );
        assert!(!err.to_string().contains("s3cr3t-value"));
    }

    #[test]
    fn every_variable_read_is_listed() {
        let seen = std::cell::RefCell::new(Vec::<String>::new());
        let record = |name: &str| -> Option<String> {
            seen.borrow_mut().push(name.to_owned());
            None
        };
        let _ = WebhookSettings::from_vars(record);
        let _ = PollerSettings::from_vars(record);
        let _ = DiffSettings::from_vars(record);
        let _ = SyncSettings::from_vars(record);
        let _ = ServeSettings::from_vars(record);
        let seen = seen.into_inner();
        for name in &seen {
            assert!(
                VARIABLES.iter().any(|v| v.name == name),
                "{name} is not listed"
            );
        }
        for v in VARIABLES {
            assert!(seen.iter().any(|n| n == v.name), "{} is never read", v.name);
        }
    }
}
