//! The warehouse port: run one SQL statement, read its rows as text.
//!
//! Every query the diff engine sends returns only integers and text (it casts everything
//! else in SQL), so drivers stay small: a row is a list of optional strings. Drivers run
//! exactly one statement per call (prepared statements). Filters from a PR's yaml are
//! checked before they get here ([`crate::sql::filter`]); as a second line, PostgreSQL
//! runs every statement in its own read-only transaction with its own timeout and rolls
//! it back, and cancels it on the server when the client stops waiting.

use std::time::Duration;

use async_trait::async_trait;

use crate::sql::{Dialect, Relation};

#[cfg(feature = "bigquery")]
pub mod bigquery;
#[cfg(feature = "databricks")]
pub mod databricks;
#[cfg(feature = "postgres")]
pub mod postgres;
mod privileges;
#[cfg(feature = "redshift-iam")]
mod redshift_iam;
mod secret;
#[cfg(feature = "snowflake")]
pub mod snowflake;
pub mod source;
#[cfg(feature = "sqlite")]
pub mod sqlite;
#[cfg(feature = "postgres")]
mod tls;
mod url;

pub use privileges::{
    PrivilegeScope, PrivilegeWarning, privilege_warnings, privilege_warnings_as,
    privileges_checked, privileges_ok_text,
};
pub use secret::Password;

pub use url::{
    BIGQUERY_ENDPOINT, BigQueryUrl, DatabricksAuth, DatabricksTarget, RedshiftIam, SnowflakeAuth,
    SnowflakeTarget, SslMode, Tls, WarehouseUrl, WarehouseUrlError, is_loopback_host,
    snowflake_default_host,
};

/// The longest error text a driver passes on (in characters): errors reach logs, stored
/// results and PR comments (the model's details section shows it whole).
pub const MAX_ERROR_TEXT: usize = 1000;

/// `text` cut to [`MAX_ERROR_TEXT`] characters.
pub(crate) fn error_text(text: &str) -> String {
    if text.chars().count() <= MAX_ERROR_TEXT {
        text.to_owned()
    } else {
        let mut out: String = text.chars().take(MAX_ERROR_TEXT).collect();
        out.push_str(" …");
        out
    }
}

/// One result row: each column's value as text, `None` for NULL.
pub type Row = Vec<Option<String>>;

/// Why a warehouse call failed.
#[derive(Debug, thiserror::Error)]
pub enum WarehouseError {
    #[error("cannot connect to the warehouse at {target}: {source}")]
    Connect {
        target: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
        /// Whether trying again could succeed (unreachable or busy: yes; refused
        /// credentials, an unknown database, a failed TLS handshake: no).
        retryable: bool,
    },
    /// The warehouse refused the SQL as written (syntax, unknown column in a filter, no
    /// permission): an input problem, not worth retrying.
    #[error("the warehouse rejected the query: {message}")]
    Rejected { message: String },
    /// The warehouse refused the credentials or a privilege (PostgreSQL classes 28 and
    /// 42501, Snowflake's authentication and authorization codes): permanent until an
    /// operator changes the grant or the secret.
    #[error("the warehouse refused access: {message}")]
    Denied { message: String },
    #[error("the query ran longer than the statement timeout ({0:?}) and was cancelled")]
    Timeout(Duration),
    #[error("warehouse error: {message}")]
    Other { message: String },
    #[error("this build of prdiff has no driver for {0} (enable the cargo feature)")]
    NoDriver(&'static str),
}

impl WarehouseError {
    /// Whether trying the same call again could succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            WarehouseError::Connect {
                retryable: true,
                ..
            } | WarehouseError::Other { .. }
        )
    }
}

/// A connection (or small pool) to one warehouse.
#[async_trait]
pub trait Warehouse: Send + Sync {
    /// The SQL dialect this warehouse speaks.
    fn dialect(&self) -> &'static dyn Dialect;

    /// Runs one statement and returns all its rows. Callers only send queries whose result
    /// is small (aggregates, catalog rows, a bounded number of sample rows).
    async fn query(&self, sql: &str) -> Result<Vec<Row>, WarehouseError>;

    /// Runs a statement that is off the diff's critical path, beside a longer one (the
    /// per-side counts beside the join): the driver keeps it from taking more of the
    /// warehouse's processors than its own connection, so the long statement keeps the
    /// rest (PostgreSQL: no parallel workers for it). By default, as [`Warehouse::query`].
    async fn query_beside(&self, sql: &str) -> Result<Vec<Row>, WarehouseError> {
        self.query(sql).await
    }

    /// The columns of `rel` in table order, one row each: its name, and its type as the
    /// dialect's catalog query spells it ([`Dialect::columns_query`], which
    /// [`Dialect::parse_type`] reads). No rows: the relation does not exist or none of its
    /// columns is visible. By default, the dialect's catalog query; a driver that can learn
    /// the same faster (Snowflake: from a statement's result metadata; BigQuery: from
    /// `tables.get`) overrides it.
    async fn columns(&self, rel: &Relation) -> Result<Vec<Row>, WarehouseError> {
        self.query(&self.dialect().columns_query(rel)).await
    }

    /// How many statements this warehouse can usefully run at once for one diff.
    fn parallelism(&self) -> usize {
        1
    }

    /// The bytes `sql` would read, estimated without running or billing it (BigQuery's
    /// dry run). `None`: this warehouse has no such estimate (the default).
    async fn estimate_bytes(&self, _sql: &str) -> Option<Result<u64, WarehouseError>> {
        None
    }

    /// The most bytes one statement may bill (BigQuery's `maximumBytesBilled` from the data
    /// source), if the data source sets a limit.
    fn bytes_limit(&self) -> Option<u64> {
        None
    }

    /// The write and administrative rights of the identity this driver connects as, read
    /// through the warehouse's own API rather than SQL (BigQuery's IAM). `None`: the driver
    /// has no such API ([`privilege_warnings`] reads the SQL catalog, or checks nothing).
    async fn api_privilege_warnings(
        &self,
        _scope: &PrivilegeScope,
    ) -> Option<Result<Vec<PrivilegeWarning>, WarehouseError>> {
        None
    }
}

/// Options every driver honours.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    pub statement_timeout: Duration,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            statement_timeout: Duration::from_secs(600),
        }
    }
}

/// The data source kinds this build can diff (its cargo features).
pub const DRIVERS: &[&str] = &[
    #[cfg(feature = "databricks")]
    "databricks",
    #[cfg(feature = "postgres")]
    "postgres",
    #[cfg(feature = "postgres")]
    "redshift",
    #[cfg(feature = "snowflake")]
    "snowflake",
    #[cfg(feature = "sqlite")]
    "sqlite",
    #[cfg(feature = "bigquery")]
    "bigquery",
];

/// Whether this build has a driver for data sources of `kind` (`postgres`, `snowflake`, …).
pub fn has_driver(kind: &str) -> bool {
    DRIVERS.contains(&kind)
}

/// Opens a warehouse from a URL (`postgres://…`, `redshift://…`, `sqlite:PATH`,
/// `snowflake://…`, `bigquery://…`).
pub async fn connect(
    url: &WarehouseUrl,
    options: &ConnectOptions,
) -> Result<Box<dyn Warehouse>, WarehouseError> {
    match url {
        #[cfg(feature = "postgres")]
        WarehouseUrl::Postgres { .. } => Ok(Box::new(
            postgres::PostgresWarehouse::connect(url, options).await?,
        )),
        #[cfg(feature = "sqlite")]
        WarehouseUrl::Sqlite { .. } => Ok(Box::new(sqlite::SqliteWarehouse::open(url, options)?)),
        #[cfg(feature = "bigquery")]
        // Boxed: its future (token source discovery, the first query) is deep, and every
        // caller's async state machine would otherwise embed it.
        WarehouseUrl::BigQuery(bq) => Ok(Box::new(
            Box::pin(bigquery::BigQueryWarehouse::connect(bq, options)).await?,
        )),
        #[cfg(feature = "snowflake")]
        // Boxed: the login's future is large, and callers nest `connect` deeply.
        WarehouseUrl::Snowflake(target) => Ok(Box::new(
            Box::pin(snowflake::SnowflakeWarehouse::connect(target, options)).await?,
        )),
        #[cfg(feature = "databricks")]
        WarehouseUrl::Databricks(target) => Ok(Box::new(
            databricks::DatabricksWarehouse::connect(target, options).await?,
        )),
        #[allow(unreachable_patterns)]
        _ => Err(WarehouseError::NoDriver(url.kind())),
    }
}

/// The HTTP client of a warehouse reached over a REST API with polled statements
/// (Snowflake, Databricks): a bounded connect, and idle connections dropped after 4 s —
/// shorter than common servers' keep-alive (uvicorn, the stand-ins: 5 s), so an idle
/// session's next request rarely meets a connection closed under it. `shown` is the
/// warehouse as named in messages.
#[cfg(any(feature = "snowflake", feature = "databricks"))]
pub(crate) fn session_http_client(shown: &str) -> Result<reqwest::Client, WarehouseError> {
    reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(15))
        .pool_idle_timeout(std::time::Duration::from_secs(4))
        .user_agent(concat!("prdiff/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| WarehouseError::Connect {
            target: shown.to_owned(),
            source: error_text(&crate::error_chain(&e)).into(),
            retryable: false,
        })
}

#[cfg(test)]
mod tests {
    #[test]
    fn error_texts_are_capped() {
        assert_eq!(super::error_text("short"), "short");
        let long = super::error_text(&"é".repeat(2 * super::MAX_ERROR_TEXT));
        assert_eq!(long.chars().count(), super::MAX_ERROR_TEXT + 2);
        assert!(long.ends_with(" …"));
    }
}
