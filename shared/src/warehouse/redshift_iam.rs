//! Redshift IAM authentication: temporary database credentials from the Redshift API
//! instead of a stored password.
//!
//! - Provisioned clusters: `GetClusterCredentials` for the URL's user
//!   (<https://docs.aws.amazon.com/redshift/latest/APIReference/API_GetClusterCredentials.html>);
//!   the database user is `IAM:<user>`.
//! - Redshift Serverless: `GetCredentials` for a workgroup
//!   (<https://docs.aws.amazon.com/redshift-serverless/latest/APIReference/API_GetCredentials.html>);
//!   the database user follows from the caller's IAM identity.
//!
//! AWS credentials, region and endpoints come from the environment, as for every AWS SDK
//! client (the Lambda's role; `AWS_REGION`; `AWS_ENDPOINT_URL_REDSHIFT` and
//! `AWS_ENDPOINT_URL_REDSHIFT_SERVERLESS` for VPC endpoints and tests).

use std::time::{Duration, SystemTime};

use super::WarehouseError;
use super::url::RedshiftIam;

/// How long the credentials are asked to last (the APIs take 900–3600 seconds).
const DURATION_SECONDS: i32 = 3600;

/// Temporary database credentials.
pub(crate) struct Credentials {
    pub user: String,
    pub password: String,
    /// When to ask again (a few minutes before they expire).
    pub refresh_at: SystemTime,
}

/// Asks AWS for credentials to `database` as `iam` says.
pub(crate) async fn credentials(
    iam: &RedshiftIam,
    user: &str,
    database: &str,
    target: &str,
) -> Result<Credentials, WarehouseError> {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(region) = iam.region() {
        loader = loader.region(aws_config::Region::new(region.to_owned()));
    }
    let sdk = loader.load().await;
    let fail = |message: String, retryable: bool| WarehouseError::Connect {
        target: target.to_owned(),
        source: message.into(),
        retryable,
    };
    let (user, password, expiration) = match iam {
        RedshiftIam::Cluster { cluster_id, .. } => {
            let out = aws_sdk_redshift::Client::new(&sdk)
                .get_cluster_credentials()
                .cluster_identifier(cluster_id)
                .db_user(user)
                .db_name(database)
                .duration_seconds(DURATION_SECONDS)
                .auto_create(false)
                .send()
                .await
                .map_err(|e| {
                    let retryable = e
                        .raw_response()
                        .is_none_or(|r| r.status().is_server_error());
                    fail(
                        format!(
                            "Redshift GetClusterCredentials for cluster {cluster_id}: {}",
                            aws_sdk_redshift::error::DisplayErrorContext(&e)
                        ),
                        retryable,
                    )
                })?;
            (
                out.db_user,
                out.db_password,
                out.expiration.and_then(|t| SystemTime::try_from(t).ok()),
            )
        }
        RedshiftIam::Serverless { workgroup, .. } => {
            let out = aws_sdk_redshiftserverless::Client::new(&sdk)
                .get_credentials()
                .workgroup_name(workgroup)
                .db_name(database)
                .duration_seconds(DURATION_SECONDS)
                .send()
                .await
                .map_err(|e| {
                    let retryable = e
                        .raw_response()
                        .is_none_or(|r| r.status().is_server_error());
                    fail(
                        format!(
                            "Redshift Serverless GetCredentials for workgroup {workgroup}: {}",
                            aws_sdk_redshiftserverless::error::DisplayErrorContext(&e)
                        ),
                        retryable,
                    )
                })?;
            (
                out.db_user,
                out.db_password,
                out.expiration.and_then(|t| SystemTime::try_from(t).ok()),
            )
        }
    };
    let (Some(user), Some(password)) = (user, password) else {
        return Err(fail(
            "the Redshift API answered without a database user or password".to_owned(),
            false,
        ));
    };
    let expires = expiration
        .unwrap_or_else(|| SystemTime::now() + Duration::from_secs(DURATION_SECONDS as u64));
    Ok(Credentials {
        user,
        password,
        refresh_at: expires - Duration::from_secs(300),
    })
}
