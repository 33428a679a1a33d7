//! The secret store port: dbt Cloud keys, git host tokens, App keys, warehouse passwords
//! and the webhook secret. Values are [`SecretString`]s: they do not print in `Debug`, and
//! no error here carries a value, only the secret's name.
//!
//! Adapters: `aws.rs` (Secrets Manager, cached for a warm Lambda's life within a TTL) and
//! `local.rs` (memory, environment variables and a directory of files, for `prdiff serve`
//! and tests).

#[cfg(feature = "aws")]
pub mod aws;
pub mod local;

use async_trait::async_trait;
pub use secrecy::{ExposeSecret, SecretString};

use crate::config::SecretName;

/// Why a secret could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("secret {0} does not exist")]
    NotFound(SecretName),
    #[error("secret {0} is not text")]
    NotText(SecretName),
    #[error("secret store failed for {name}")]
    Backend {
        name: SecretName,
        retryable: bool,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl SecretsError {
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            SecretsError::Backend {
                retryable: true,
                ..
            }
        )
    }
}

/// Reads and writes secrets by name.
#[async_trait]
pub trait Secrets: Send + Sync {
    async fn get(&self, name: &SecretName) -> Result<SecretString, SecretsError>;
    /// Creates the secret or stores a new value for it.
    async fn put(&self, name: &SecretName, value: SecretString) -> Result<(), SecretsError>;
}
