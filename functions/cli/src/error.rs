//! The one error type of every subcommand, and its exit code.
//!
//! | exit code | meaning |
//! |---|---|
//! | 0 | the command did its job (a diff that found differences is still success) |
//! | 1 | the run failed: warehouse, network, AWS, or an internal failure |
//! | 2 | usage or input: a bad URL or argument, an unknown relation or id, an unreadable file, an invalid configuration |
//!
//! The message holds the error and its causes on one line, each cause once.

use std::fmt;

/// Exit codes shared by every subcommand.
pub mod exit {
    pub const OK: u8 = 0;
    pub const FAILURE: u8 = 1;
    pub const USAGE: u8 = 2;
}

/// Why a subcommand failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CliError {
    /// Usage or input error (exit 2).
    Usage(String),
    /// The run failed (exit 1).
    Failed(String),
}

/// What every subcommand returns.
pub type CliResult = Result<(), CliError>;

impl CliError {
    /// A usage or input error.
    pub fn usage(message: impl Into<String>) -> Self {
        Self::Usage(message.into())
    }

    /// A failed run, from an error and its causes.
    pub fn failed(e: &(dyn std::error::Error + 'static)) -> Self {
        Self::Failed(prdiff_shared::error_chain(e))
    }

    /// Adds context in front of the message (`cannot open x.db: …`).
    pub fn context(self, what: impl fmt::Display) -> Self {
        match self {
            Self::Usage(m) => Self::Usage(format!("{what}: {m}")),
            Self::Failed(m) => Self::Failed(format!("{what}: {m}")),
        }
    }

    /// The process exit code.
    pub fn code(&self) -> u8 {
        match self {
            Self::Usage(_) => exit::USAGE,
            Self::Failed(_) => exit::FAILURE,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Self::Usage(m) | Self::Failed(m) => m,
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

/// An `anyhow` error and its causes on one line, each cause once: a cause whose text the
/// line already holds (an error that prints its source, then the source itself) is left out.
pub fn error_text(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.is_empty() {
            line = text;
        } else if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
    }
    line
}

/// Prints a subcommand's error as `prdiff <command>: <message>` and returns its exit code.
pub fn finish(command: &str, result: CliResult) -> u8 {
    match result {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("prdiff {command}: {e}");
            e.code()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Wrapper(std::io::Error);
    impl fmt::Display for Wrapper {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "error connecting to server: {}", self.0)
        }
    }
    impl std::error::Error for Wrapper {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn usage_errors_exit_2_and_failures_exit_1() {
        assert_eq!(CliError::usage("bad --pk").code(), 2);
        let io = std::io::Error::other("connection refused");
        assert_eq!(CliError::failed(&io).code(), 1);
        assert_eq!(finish("x", Ok(())), 0);
        assert_eq!(finish("x", Err(CliError::usage("nope"))), 2);
    }

    #[test]
    fn a_cause_the_message_already_carries_is_said_once() {
        let e = Wrapper(std::io::Error::other("Connection refused (os error 111)"));
        let failed = CliError::failed(&e).context("cannot open warehouse");
        assert_eq!(
            failed.message(),
            "cannot open warehouse: error connecting to server: Connection refused (os error 111)"
        );
        let any = anyhow::Error::new(Wrapper(std::io::Error::other("refused")));
        assert_eq!(error_text(&any), "error connecting to server: refused");
    }
}
