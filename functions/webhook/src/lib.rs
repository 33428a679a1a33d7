//! The webhook intake Lambda: the API Gateway / Function URL event decoding and the
//! environment. The use case itself is [`prdiff_shared::app::intake`].

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine;
use prdiff_shared::config::SecretName;

use prdiff_shared::app::intake::too_large;
pub use prdiff_shared::app::intake::{
    CLOSED_REASON, Deps, HandlerError, Settings, WebhookRequest, WebhookResponse, delivery_claims,
    handle, intake_claim,
};

/// The Lambda's environment, read once by `main.rs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LambdaEnv {
    pub table: String,
    pub poll_queue_url: String,
    pub sync_queue_url: String,
    pub webhook_secret: SecretName,
    pub poll_delay: Option<Duration>,
    /// How long a run may wait for dbt Cloud (`PRDIFF_RUN_DEADLINE_SECONDS`, default 4 h).
    pub run_deadline: Option<Duration>,
}

impl LambdaEnv {
    /// Reads the variables through `var` (`std::env::var` in `main.rs`), reporting every
    /// missing or invalid one together so a deploy is fixed in one go.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let mut problems = Vec::new();
        let mut required = |name: &str| {
            var(name).filter(|v| !v.is_empty()).unwrap_or_else(|| {
                problems.push(format!("{name} is not set"));
                String::new()
            })
        };
        let table = required("PRDIFF_TABLE");
        let poll_queue_url = required("PRDIFF_POLL_QUEUE_URL");
        let sync_queue_url = required("PRDIFF_SYNC_QUEUE_URL");
        let secret = required("PRDIFF_WEBHOOK_SECRET_NAME");
        let webhook_secret = match SecretName::parse(secret) {
            Ok(s) => Some(s),
            Err(e)
                if !problems
                    .iter()
                    .any(|p| p.starts_with("PRDIFF_WEBHOOK_SECRET_NAME")) =>
            {
                problems.push(format!("PRDIFF_WEBHOOK_SECRET_NAME: {e}"));
                None
            }
            Err(_) => None,
        };
        let mut seconds = |name: &str, min: u64| match var(name) {
            None => None,
            Some(v) => match v.trim().parse::<u64>() {
                Ok(s) if s >= min => Some(Duration::from_secs(s)),
                _ => {
                    problems.push(format!("{name} is not a number of seconds ≥ {min}: {v:?}"));
                    None
                }
            },
        };
        let poll_delay = seconds("PRDIFF_POLL_DELAY_SECONDS", 0);
        let run_deadline = seconds("PRDIFF_RUN_DEADLINE_SECONDS", 60);
        match webhook_secret {
            Some(webhook_secret) if problems.is_empty() => Ok(Self {
                table,
                poll_queue_url,
                sync_queue_url,
                webhook_secret,
                poll_delay,
                run_deadline,
            }),
            _ => Err(problems.join("; ")),
        }
    }
}

/// A [`WebhookRequest`] from a Function URL / HTTP API (payload 2.0) event.
pub trait FromHttpV2: Sized {
    /// From a Function URL / HTTP API (payload 2.0) event; base64 bodies are decoded.
    /// A body whose encoded size already exceeds `max_body_bytes` is refused before decoding.
    fn from_http_v2(
        event: aws_lambda_events::apigw::ApiGatewayV2httpRequest,
        max_body_bytes: usize,
    ) -> Result<Self, WebhookResponse>;
}

impl FromHttpV2 for WebhookRequest {
    fn from_http_v2(
        event: aws_lambda_events::apigw::ApiGatewayV2httpRequest,
        max_body_bytes: usize,
    ) -> Result<Self, WebhookResponse> {
        let mut headers = HashMap::new();
        for (name, value) in &event.headers {
            if let Ok(v) = value.to_str() {
                headers.insert(name.as_str().to_ascii_lowercase(), v.to_owned());
            }
        }
        let raw = event.body.unwrap_or_default();
        let body = if event.is_base64_encoded {
            if raw.len() / 4 * 3 > max_body_bytes + 3 {
                return Err(too_large(max_body_bytes));
            }
            base64::engine::general_purpose::STANDARD
                .decode(raw.as_bytes())
                .map_err(|_| WebhookResponse::error(400, "body is not valid base64"))?
        } else {
            raw.into_bytes()
        };
        Ok(Self { headers, body })
    }
}

/// A [`WebhookResponse`] as the Lambda runtime answers it.
pub trait IntoHttpV2 {
    fn into_http_v2(self) -> aws_lambda_events::apigw::ApiGatewayV2httpResponse;
}

impl IntoHttpV2 for WebhookResponse {
    /// For the Lambda runtime.
    fn into_http_v2(self) -> aws_lambda_events::apigw::ApiGatewayV2httpResponse {
        let mut resp = aws_lambda_events::apigw::ApiGatewayV2httpResponse::default();
        resp.status_code = i64::from(self.status);
        resp.headers.insert(
            aws_lambda_events::http::header::CONTENT_TYPE,
            aws_lambda_events::http::HeaderValue::from_static("application/json"),
        );
        resp.body = Some(aws_lambda_events::encodings::Body::Text(
            self.body.to_string(),
        ));
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_missing_variable_is_reported_together() {
        let err =
            LambdaEnv::from_vars(|name| (name == "PRDIFF_TABLE").then(|| "prdiff".to_owned()))
                .unwrap_err();
        assert_eq!(
            err,
            "PRDIFF_POLL_QUEUE_URL is not set; PRDIFF_SYNC_QUEUE_URL is not set; \
             PRDIFF_WEBHOOK_SECRET_NAME is not set"
        );
    }

    #[test]
    fn a_complete_environment_is_read() {
        let env = LambdaEnv::from_vars(|name| {
            Some(match name {
                "PRDIFF_POLL_DELAY_SECONDS" => "30".to_owned(),
                "PRDIFF_RUN_DEADLINE_SECONDS" => "7200".to_owned(),
                "PRDIFF_WEBHOOK_SECRET_NAME" => "prdiff/webhook-secret".to_owned(),
                other => format!("value-of-{other}"),
            })
        })
        .unwrap();
        assert_eq!(env.poll_delay, Some(Duration::from_secs(30)));
        assert_eq!(env.run_deadline, Some(Duration::from_secs(7200)));
        assert_eq!(env.webhook_secret.as_str(), "prdiff/webhook-secret");
        assert_eq!(env.table, "value-of-PRDIFF_TABLE");
    }

    #[test]
    fn a_deadline_that_is_not_a_sensible_number_of_seconds_is_named() {
        for bad in ["soon", "0", "-5"] {
            let err = LambdaEnv::from_vars(|name| {
                Some(match name {
                    "PRDIFF_RUN_DEADLINE_SECONDS" => bad.to_owned(),
                    "PRDIFF_POLL_DELAY_SECONDS" => "30".to_owned(),
                    "PRDIFF_WEBHOOK_SECRET_NAME" => "prdiff/webhook-secret".to_owned(),
                    other => format!("value-of-{other}"),
                })
            })
            .unwrap_err();
            assert_eq!(
                err,
                format!("PRDIFF_RUN_DEADLINE_SECONDS is not a number of seconds ≥ 60: {bad:?}")
            );
        }
    }

    #[test]
    fn responses_become_json_http_responses() {
        let resp = WebhookResponse::error(401, "bad or missing signature").into_http_v2();
        assert_eq!(resp.status_code, 401);
        assert_eq!(resp.headers["content-type"], "application/json");
        let Some(aws_lambda_events::encodings::Body::Text(body)) = resp.body else {
            panic!("text body")
        };
        assert_eq!(body, r#"{"error":"bad or missing signature"}"#);
    }
}
