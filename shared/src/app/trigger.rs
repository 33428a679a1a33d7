//! The HTTP trigger for CI systems: `POST /trigger` starts an on-demand run of a pull
//! request, as a `/prdiff run` comment does, authenticated by a bearer token.
//!
//! ```text
//! size → trigger enabled? → Authorization: Bearer <token> (constant time) → JSON body
//!      → repository's configurations (or the one named) → per configuration: the PR as
//!        the host shows it → gates (no label gate) → run (no max_models) → pending status
//!      → poll message
//! ```
//!
//! Body: `{"provider": "github", "repository": "owner/name", "pull_request": 12,
//! "models": ["orders"], "config": "analytics"}` (`models` and `config` optional).
//!
//! A missing, malformed or wrong token, and a token secret that does not exist, are all
//! answered with the same 401: the answer does not say whether a token is configured.
//! Nothing is read from the body or written before the token verifies.

use serde::Deserialize;

use super::intake::{Collected, Deps, HandlerError, WebhookRequest, WebhookResponse, too_large};
use crate::config::{Provider, RepoName};
use crate::intake::command;
use crate::run::OnDemand;
use crate::secrets::{ExposeSecret, SecretsError};

/// What a CI system sends.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TriggerBody {
    provider: Provider,
    repository: String,
    pull_request: u64,
    #[serde(default)]
    models: Vec<String>,
    #[serde(default)]
    config: Option<String>,
}

fn unauthorized() -> WebhookResponse {
    WebhookResponse::error(401, "bad or missing bearer token")
}

/// Whether `header` is `Bearer <secret>` (the scheme in any case), compared in constant
/// time.
pub fn verify_bearer(secret: &crate::secrets::SecretString, header: &str) -> bool {
    let Some((scheme, token)) = header.trim().split_once(' ') else {
        return false;
    };
    scheme.eq_ignore_ascii_case("bearer")
        && crate::intake::verify_gitlab_token(secret, token.trim_start())
}

/// Handles one `POST /trigger`.
pub async fn handle(req: &WebhookRequest, deps: &Deps) -> WebhookResponse {
    let span = tracing::info_span!("trigger");
    let resp = tracing::Instrument::instrument(handle_inner(req, deps), span.clone()).await;
    span.in_scope(|| tracing::info!(status = resp.status, "trigger answered"));
    resp
}

async fn handle_inner(req: &WebhookRequest, deps: &Deps) -> WebhookResponse {
    if req.body.len() > deps.settings.max_body_bytes {
        return too_large(deps.settings.max_body_bytes);
    }
    let Some(name) = &deps.settings.trigger_token else {
        return WebhookResponse::error(404, "the trigger is not enabled");
    };
    let secret = match deps.secrets.get(name).await {
        Ok(s) => s,
        Err(SecretsError::NotFound(_)) => {
            tracing::warn!(secret = %name, "trigger token secret does not exist: every trigger is refused");
            return unauthorized();
        }
        Err(e) => {
            tracing::error!(error = %e, "trigger token unavailable");
            return HandlerError::from(e).response();
        }
    };
    if secret.expose_secret().trim().is_empty() {
        tracing::error!(secret = %name, "trigger token is empty: every trigger is refused");
        return unauthorized();
    }
    if !req
        .header("authorization")
        .is_some_and(|h| verify_bearer(&secret, h))
    {
        tracing::warn!("trigger refused: bad or missing bearer token");
        return unauthorized();
    }
    let body: TriggerBody = match serde_json::from_slice(&req.body) {
        Ok(b) => b,
        Err(e) => return WebhookResponse::error(400, format!("body: {e}")),
    };
    let repository = match RepoName::parse(body.repository.as_str()) {
        Ok(r) => r,
        Err(problem) => return WebhookResponse::error(400, format!("repository: {problem}")),
    };
    if body.pull_request == 0 {
        return WebhookResponse::error(400, "pull_request: must be a positive number");
    }
    if let Some(bad) = body.models.iter().find(|m| !command::is_model_name(m)) {
        return WebhookResponse::error(
            400,
            format!(
                "models: {:?} is not a dbt model name (letters, digits and underscores, not starting with a digit)",
                crate::githost::shorten(bad, 40)
            ),
        );
    }
    if body.models.len() > command::MAX_MODELS {
        return WebhookResponse::error(
            400,
            format!("models: at most {} may be named", command::MAX_MODELS),
        );
    }
    let mut models: Vec<String> = Vec::new();
    for m in body.models {
        if !models.contains(&m) {
            models.push(m);
        }
    }
    let configs = match deps
        .configs
        .configs_for_repository(body.provider, &repository)
        .await
    {
        Ok(c) => c,
        Err(e) => return HandlerError::from(e).response(),
    };
    let configs: Vec<_> = configs
        .into_iter()
        .filter(|c| body.config.as_deref().is_none_or(|n| c.name.as_str() == n))
        .collect();
    if configs.is_empty() {
        return WebhookResponse::error(
            404,
            format!(
                "no configuration{} for {}:{repository}",
                body.config
                    .as_deref()
                    .map(|n| format!(" named {:?}", crate::githost::shorten(n, 60)))
                    .unwrap_or_default(),
                body.provider
            ),
        );
    }
    let on_demand = OnDemand {
        by: "trigger".into(),
        models,
    };
    let mut collected = Collected::default();
    for config in &configs {
        let span = tracing::info_span!("config", config = %config.name, pr = body.pull_request, on_demand = "trigger");
        let outcome = async {
            let host = deps.hosts.for_config(config).await?;
            super::intake::on_demand_run(
                deps,
                config,
                &host,
                &repository,
                body.pull_request,
                &on_demand,
            )
            .await
        };
        match tracing::Instrument::instrument(outcome, span).await {
            Ok(o) => collected.push(config, o),
            Err(e) => {
                tracing::error!(error = %e, "trigger failed");
                return e.response();
            }
        }
    }
    collected.response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::SecretString;

    #[test]
    fn bearer_tokens_must_match_exactly() {
        let secret = SecretString::from("tok-123".to_owned());
        assert!(verify_bearer(&secret, "Bearer tok-123"));
        assert!(verify_bearer(&secret, "bearer tok-123"));
        assert!(!verify_bearer(&secret, "Bearer tok-12"));
        assert!(!verify_bearer(&secret, "Bearer tok-1234"));
        assert!(!verify_bearer(&secret, "Basic tok-123"));
        assert!(!verify_bearer(&secret, "tok-123"));
        assert!(!verify_bearer(&secret, "Bearer "));
        assert!(!verify_bearer(&secret, ""));
    }

    #[test]
    fn the_body_is_read_strictly() {
        let ok: TriggerBody = serde_json::from_str(
            r#"{"provider":"github","repository":"o/r","pull_request":3,"models":["orders"],"config":"shop"}"#,
        )
        .unwrap();
        assert_eq!((ok.pull_request, ok.models.len()), (3, 1));
        for bad in [
            r#"{"provider":"github","repository":"o/r"}"#,
            r#"{"provider":"bitbucket","repository":"o/r","pull_request":3}"#,
            r#"{"provider":"github","repository":"o/r","pull_request":-1}"#,
            r#"{"provider":"github","repository":"o/r","pull_request":3,"sql":"x"}"#,
        ] {
            assert!(serde_json::from_str::<TriggerBody>(bad).is_err(), "{bad}");
        }
    }
}
