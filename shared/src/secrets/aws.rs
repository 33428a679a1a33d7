//! Secrets Manager, with a per-process cache.
//!
//! A warm Lambda serves many deliveries; reading the webhook secret and the tokens from
//! Secrets Manager each time would add a network round trip (and cost) per request. Values
//! are kept for `ttl` so a rotated secret is picked up within that bound.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::config::http::HttpResponse;
use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};
use secrecy::{ExposeSecret, SecretString};

use super::{Secrets, SecretsError};
use crate::config::SecretName;

/// Secrets Manager with a TTL-bounded cache.
pub struct SecretsManager {
    client: Client,
    ttl: Duration,
    cache: Mutex<HashMap<SecretName, (SecretString, Instant)>>,
}

fn backend<E>(name: &SecretName, e: SdkError<E, HttpResponse>) -> SecretsError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let e = crate::aws_error::classify("Secrets Manager", e);
    SecretsError::Backend {
        name: name.clone(),
        retryable: e.retryable,
        source: Box::new(e),
    }
}

impl SecretsManager {
    /// `ttl` bounds how stale a cached value may be (5 minutes is a good default).
    pub fn new(client: Client, ttl: Duration) -> Self {
        Self {
            client,
            ttl,
            cache: Mutex::default(),
        }
    }

    fn cached(&self, name: &SecretName) -> Option<SecretString> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(name)
            .filter(|(_, at)| at.elapsed() < self.ttl)
            .map(|(v, _)| v.clone())
    }

    fn remember(&self, name: &SecretName, value: &SecretString) {
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.clone(), (value.clone(), Instant::now()));
    }
}

#[async_trait]
impl Secrets for SecretsManager {
    async fn get(&self, name: &SecretName) -> Result<SecretString, SecretsError> {
        if let Some(v) = self.cached(name) {
            return Ok(v);
        }
        let out = self
            .client
            .get_secret_value()
            .secret_id(name.as_str())
            .send()
            .await
            .map_err(|e| {
                if e.as_service_error()
                    .is_some_and(|se| se.is_resource_not_found_exception())
                {
                    SecretsError::NotFound(name.clone())
                } else {
                    backend(name, e)
                }
            })?;
        let value = SecretString::from(
            out.secret_string
                .ok_or_else(|| SecretsError::NotText(name.clone()))?,
        );
        self.remember(name, &value);
        tracing::debug!(secret = %name, "secret read from Secrets Manager");
        Ok(value)
    }

    async fn put(&self, name: &SecretName, value: SecretString) -> Result<(), SecretsError> {
        let created = self
            .client
            .create_secret()
            .name(name.as_str())
            .secret_string(value.expose_secret())
            .send()
            .await;
        match created {
            Ok(_) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_resource_exists_exception()) =>
            {
                self.client
                    .put_secret_value()
                    .secret_id(name.as_str())
                    .secret_string(value.expose_secret())
                    .send()
                    .await
                    .map_err(|e| backend(name, e))?;
            }
            Err(e) => return Err(backend(name, e)),
        }
        self.remember(name, &value);
        Ok(())
    }
}
