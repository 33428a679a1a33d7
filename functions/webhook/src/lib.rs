//! The webhook intake Lambda: the API Gateway / Function URL event decoding (the
//! environment is read by [`prdiff_shared::settings`]). The use case itself is [`prdiff_shared::app::intake`].

use std::collections::HashMap;

use base64::Engine;

use prdiff_shared::app::intake::too_large;
pub use prdiff_shared::app::intake::{
    CLOSED_REASON, Deps, HandlerError, Settings, WebhookRequest, WebhookResponse, delivery_claims,
    handle, intake_claim,
};
pub use prdiff_shared::app::trigger::handle as trigger;

/// Whether a Function URL request is for the HTTP trigger (`POST /trigger`); every other
/// path is a webhook delivery.
pub fn is_trigger_path(raw_path: Option<&str>) -> bool {
    raw_path.is_some_and(|p| p.trim_end_matches('/') == "/trigger")
}

/// The answer to a request for the trigger's path by another method than `POST`: 405,
/// before the token or the body is looked at.
pub fn trigger_method_refused(method: &str) -> Option<WebhookResponse> {
    (!method.eq_ignore_ascii_case("POST"))
        .then(|| WebhookResponse::error(405, "POST /trigger starts an on-demand run"))
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
    fn only_the_trigger_path_goes_to_the_trigger() {
        assert!(is_trigger_path(Some("/trigger")));
        assert!(is_trigger_path(Some("/trigger/")));
        for p in [
            None,
            Some("/"),
            Some("/webhook"),
            Some("/triggers"),
            Some("/x/trigger"),
        ] {
            assert!(!is_trigger_path(p), "{p:?}");
        }
    }

    #[test]
    fn the_trigger_answers_post_only() {
        assert!(trigger_method_refused("POST").is_none());
        assert!(trigger_method_refused("post").is_none());
        for m in ["GET", "PUT", "DELETE", "HEAD"] {
            assert_eq!(
                trigger_method_refused(m).map(|r| r.status),
                Some(405),
                "{m}"
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
