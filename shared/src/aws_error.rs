//! One classifier for the errors of every AWS SDK call (DynamoDB, SQS, Secrets Manager):
//! which ones a retry may fix, and a message that keeps what the service said.
//!
//! Retryable: throttling (HTTP 429 and the SDK's list of throttling codes), server errors
//! (HTTP 5xx), the SDK's transient codes (request timeouts), timeouts, dispatch failures
//! (connection refused or reset) and unreadable responses. Everything else is permanent:
//! access denied, validation, a missing table, queue or secret, a request that cannot be
//! built. The SDK has already retried a retryable error a few times with backoff before it
//! reaches this classifier; "retryable" here means the work may pass on a later delivery.

use std::error::Error;

use aws_runtime::retries::classifiers::{THROTTLING_ERRORS, TRANSIENT_ERRORS};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

type BoxError = Box<dyn Error + Send + Sync + 'static>;

/// A classified AWS SDK error: `DynamoDB: ResourceNotFoundException: Requested resource
/// not found`, or `SQS: dispatch failure: …` with the transport error as its source.
#[derive(Debug)]
pub struct AwsError {
    /// Whether a later attempt may succeed.
    pub retryable: bool,
    /// The service's error code (`ThrottlingException`, `AccessDeniedException`…), when
    /// the service answered.
    pub code: Option<String>,
    text: String,
    source: Option<BoxError>,
}

impl std::fmt::Display for AwsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl Error for AwsError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn Error + 'static))
    }
}

/// Whether a service's answer is worth trying again: its HTTP status, else its code.
fn service_retryable(status: u16, code: Option<&str>) -> bool {
    status == 429
        || (500..600).contains(&status)
        || code.is_some_and(|c| {
            THROTTLING_ERRORS.contains(&c)
                || TRANSIENT_ERRORS.contains(&c)
                || matches!(
                    c,
                    "InternalServerError"
                        | "InternalServiceError"
                        | "InternalFailure"
                        | "ServiceUnavailable"
                        | "TransactionConflictException"
                )
        })
}

/// Classifies an SDK error of `service` (a name for messages: "DynamoDB", "SQS"…).
pub fn classify<E>(service: &str, e: SdkError<E, HttpResponse>) -> AwsError
where
    E: ProvideErrorMetadata + Error + Send + Sync + 'static,
{
    match e {
        SdkError::ServiceError(se) => {
            let status = se.raw().status().as_u16();
            let err = se.into_err();
            let code = err.code().map(str::to_owned);
            let message = err
                .message()
                .map(str::to_owned)
                .unwrap_or_else(|| err.to_string());
            let text = match &code {
                Some(c) if !message.contains(c.as_str()) => format!("{service}: {c}: {message}"),
                _ => format!("{service}: {message}"),
            };
            AwsError {
                retryable: service_retryable(status, code.as_deref()),
                code,
                text,
                source: None,
            }
        }
        other => {
            let retryable = !matches!(other, SdkError::ConstructionFailure(_));
            let text = format!("{service}: {other}");
            AwsError {
                retryable,
                code: None,
                text,
                source: other.into_source().ok(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::operation::get_item::GetItemError;
    use aws_smithy_runtime_api::client::result::ConnectorError;
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::error::ErrorMetadata;

    fn service(status: u16, code: &str, message: &str) -> SdkError<GetItemError, HttpResponse> {
        let err =
            GetItemError::generic(ErrorMetadata::builder().code(code).message(message).build());
        let raw = HttpResponse::new(StatusCode::try_from(status).unwrap(), SdkBody::empty());
        SdkError::service_error(err, raw)
    }

    #[test]
    fn throttling_and_server_errors_are_retryable() {
        for (status, code) in [
            (400, "ThrottlingException"),
            (400, "ProvisionedThroughputExceededException"),
            (400, "RequestLimitExceeded"),
            (429, "TooManyRequests"),
            (500, "InternalServerError"),
            (503, "ServiceUnavailable"),
            (400, "RequestTimeout"),
        ] {
            let e = classify("DynamoDB", service(status, code, "try later"));
            assert!(e.retryable, "{status} {code}");
            assert_eq!(e.code.as_deref(), Some(code));
        }
    }

    #[test]
    fn access_denied_validation_and_not_found_are_permanent_with_the_service_message() {
        for (code, message) in [
            (
                "AccessDeniedException",
                "User: arn:aws:iam::1:role/x is not authorized",
            ),
            (
                "ValidationException",
                "One or more parameter values were invalid",
            ),
            ("ResourceNotFoundException", "Requested resource not found"),
        ] {
            let e = classify("DynamoDB", service(400, code, message));
            assert!(!e.retryable, "{code}");
            assert_eq!(e.to_string(), format!("DynamoDB: {code}: {message}"));
            assert!(e.source().is_none());
        }
    }

    #[test]
    fn timeouts_and_dispatch_failures_are_retryable_and_keep_their_cause() {
        let timeout: SdkError<GetItemError, HttpResponse> =
            SdkError::timeout_error("operation timed out after 3s");
        let e = classify("SQS", timeout);
        assert!(e.retryable);
        assert_eq!(e.to_string(), "SQS: request has timed out");
        assert_eq!(
            e.source().unwrap().to_string(),
            "operation timed out after 3s"
        );

        let refused =
            std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        let dispatch: SdkError<GetItemError, HttpResponse> =
            SdkError::dispatch_failure(ConnectorError::io(Box::new(refused)));
        let e = classify("Secrets Manager", dispatch);
        assert!(e.retryable);
        assert_eq!(
            crate::error_chain(&e),
            "Secrets Manager: dispatch failure: io error: connection refused"
        );
    }

    #[test]
    fn a_request_that_cannot_be_built_is_permanent() {
        let e: SdkError<GetItemError, HttpResponse> =
            SdkError::construction_failure("missing required field `TableName`");
        let e = classify("DynamoDB", e);
        assert!(!e.retryable);
        assert_eq!(e.to_string(), "DynamoDB: failed to construct request");
    }
}
