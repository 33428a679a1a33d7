//! Warehouse URLs as operators write them.

use std::fmt;
use std::path::PathBuf;

use super::secret::Password;

/// How a PostgreSQL connection uses TLS: libpq's `sslmode` values, with libpq's meaning
/// (<https://www.postgresql.org/docs/current/libpq-ssl.html#LIBPQ-SSL-PROTECTION>).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Plain TCP only.
    Disable,
    /// TLS when the server offers it, else plain; the certificate is not checked (unless
    /// `sslrootcert` is given: then as `verify-ca`).
    Prefer,
    /// TLS only; the certificate is not checked (unless `sslrootcert` is given: then as
    /// `verify-ca`).
    Require,
    /// TLS only; the certificate must chain to a trusted root.
    VerifyCa,
    /// TLS only; the certificate must chain to a trusted root and name the host.
    VerifyFull,
}

impl SslMode {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// TLS settings of a PostgreSQL or Redshift connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    pub mode: SslMode,
    /// PEM file of the certificate authorities to trust (`sslrootcert`); without it, the
    /// system's roots.
    pub root_cert: Option<PathBuf>,
}

/// Redshift IAM authentication: temporary credentials from the Redshift API instead of a
/// stored password (`iam=cluster` or `iam=serverless` in the URL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedshiftIam {
    /// A provisioned cluster: `GetClusterCredentials` for the URL's user.
    Cluster {
        cluster_id: String,
        region: Option<String>,
    },
    /// A Redshift Serverless workgroup: `GetCredentials`.
    Serverless {
        workgroup: String,
        region: Option<String>,
    },
}

impl RedshiftIam {
    /// From the `iam` setting (`cluster` | `serverless`), with the cluster id or workgroup
    /// and region taken from the endpoint's host name when not given
    /// (`<cluster>.<id>.<region>.redshift.amazonaws.com`,
    /// `<workgroup>.<account>.<region>.redshift-serverless.amazonaws.com`).
    pub fn from_settings(
        mode: &str,
        name: Option<&str>,
        region: Option<&str>,
        host: &str,
    ) -> Result<Self, String> {
        let labels: Vec<&str> = host.split('.').collect();
        let from_host = |suffix: &str| {
            (labels.len() == 6 && labels[3..].join(".") == suffix)
                .then(|| (labels[0].to_owned(), labels[2].to_owned()))
        };
        let (what, suffix) = match mode {
            "cluster" => ("cluster_id", "redshift.amazonaws.com"),
            "serverless" => ("workgroup", "redshift-serverless.amazonaws.com"),
            other => {
                return Err(format!("iam `{other}` is not one of cluster, serverless"));
            }
        };
        let derived = from_host(suffix);
        let name = name
            .map(str::to_owned)
            .or_else(|| derived.as_ref().map(|(n, _)| n.clone()))
            .ok_or_else(|| format!("iam={mode} needs {what}= (the host name does not say it)"))?;
        let region = region
            .map(str::to_owned)
            .or_else(|| derived.map(|(_, r)| r));
        Ok(match mode {
            "cluster" => RedshiftIam::Cluster {
                cluster_id: name,
                region,
            },
            _ => RedshiftIam::Serverless {
                workgroup: name,
                region,
            },
        })
    }

    pub fn region(&self) -> Option<&str> {
        match self {
            RedshiftIam::Cluster { region, .. } | RedshiftIam::Serverless { region, .. } => {
                region.as_deref()
            }
        }
    }
}

/// A parsed warehouse URL. `Display` never shows the password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WarehouseUrl {
    /// `postgres://user[:password]@host[:port]/db[?options=…&sslmode=…&sslrootcert=…]`, or
    /// `redshift://…` (Redshift's dialect, port 5439 and `sslmode=verify-full` by default).
    Postgres {
        user: String,
        password: Option<Password>,
        host: String,
        port: u16,
        database: String,
        /// Server options (`-c work_mem=256MB`), from the `options` query parameter.
        options: Option<String>,
        tls: Tls,
        /// Amazon Redshift (its SQL dialect, no PostgreSQL-only settings).
        redshift: bool,
        /// Redshift only: temporary credentials from IAM instead of the password.
        iam: Option<RedshiftIam>,
    },
    /// `bigquery://PROJECT[?location=…&dataset=…&endpoint=…&maximum_bytes_billed=…]`:
    /// Google BigQuery through its REST API (v2). Relations are `DATASET.TABLE` or
    /// `PROJECT.DATASET.TABLE`.
    BigQuery(BigQueryUrl),
    /// `sqlite:PATH[?attach=NAME=PATH&…]`: each attached database is a schema.
    Sqlite {
        path: PathBuf,
        attach: Vec<(String, PathBuf)>,
    },
    /// `snowflake://USER[:PASSWORD]@ACCOUNT/DATABASE?warehouse=…&role=…&schema=…&private_key_path=…&host=…&port=…&protocol=https|http`
    Snowflake(SnowflakeTarget),
    /// `databricks://HOST[:PORT]/WAREHOUSE_ID?catalog=…&schema=…&client_id=…&protocol=https|http`;
    /// the token or OAuth client secret comes from the environment or the secret store.
    Databricks(DatabricksTarget),
}

/// A Databricks SQL warehouse and how prdiff authenticates to it. `Debug` never shows the
/// token or the client secret (both are [`Password`]s).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabricksTarget {
    /// The workspace host (`dbc-1234abcd-5678.cloud.databricks.com`).
    pub host: String,
    pub port: u16,
    /// `https` (the default) or `http` (loopback stand-ins only).
    pub protocol: String,
    pub warehouse_id: String,
    /// The default catalog and schema of every statement (as `USE CATALOG` / `USE SCHEMA`).
    pub catalog: Option<String>,
    pub schema: Option<String>,
    pub auth: DatabricksAuth,
}

/// How prdiff authenticates to Databricks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabricksAuth {
    /// A personal access token (or any bearer token), sent as `Authorization: Bearer`.
    Token(Password),
    /// OAuth machine-to-machine: a service principal's client id and secret, exchanged at
    /// the workspace's `/oidc/v1/token` for short-lived access tokens.
    OAuthM2m {
        client_id: String,
        client_secret: Password,
    },
}

impl DatabricksTarget {
    /// `protocol://host:port`, the base of every REST call.
    pub fn base_url(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!("{}://{host}:{}", self.protocol, self.port)
    }

    /// The warehouse id from a path: the id itself, or a `/sql/1.0/warehouses/ID` HTTP path
    /// as dbt-databricks' profiles write it.
    pub fn warehouse_id_from_path(path: &str) -> Option<String> {
        let path = path.trim_matches('/');
        let id = path
            .strip_prefix("sql/1.0/warehouses/")
            .or_else(|| path.strip_prefix("sql/1.0/endpoints/"))
            .unwrap_or(path);
        (!id.is_empty() && !id.contains('/')).then(|| id.to_owned())
    }
}

/// Whether a host is this machine (where `protocol=http` is allowed).
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Where and as whom prdiff logs in to Snowflake. `Debug` never shows the password or
/// the private key (both are [`Password`]s).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnowflakeTarget {
    /// The account identifier (`myorg-myaccount`, `xy12345.eu-west-1`), as written.
    pub account: String,
    pub user: String,
    pub auth: SnowflakeAuth,
    pub database: String,
    pub warehouse: Option<String>,
    pub role: Option<String>,
    pub schema: Option<String>,
    /// `<account>.snowflakecomputing.com` unless given.
    pub host: String,
    pub port: u16,
    /// `https` (the default) or `http` (stand-ins only).
    pub protocol: String,
}

/// How prdiff authenticates to Snowflake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnowflakeAuth {
    Password(Password),
    /// Key-pair authentication with an unencrypted PEM private key read from this file.
    PrivateKeyPath(PathBuf),
    /// Key-pair authentication with this PEM private key (from a secret store).
    PrivateKeyPem(Password),
}

impl SnowflakeTarget {
    /// `protocol://host:port`, the base of every REST call.
    pub fn base_url(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!("{}://{host}:{}", self.protocol, self.port)
    }
}

/// The default Snowflake host of an account identifier.
pub fn snowflake_default_host(account: &str) -> String {
    format!("{}.snowflakecomputing.com", account.to_ascii_lowercase())
}

/// The settings of a BigQuery connection. `Debug` never shows the service-account key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BigQueryUrl {
    /// The project the query jobs run (and are billed) in.
    pub project: String,
    /// Where the jobs run (`US`, `EU`, `europe-west1`, …); BigQuery's default without it.
    pub location: Option<String>,
    /// The dataset unqualified table names resolve in.
    pub dataset: Option<String>,
    /// The API's base URL (`https://bigquery.googleapis.com` without it). A loopback
    /// `http://` endpoint (an emulator) is called without authentication; any other
    /// endpoint must be `https://`.
    pub endpoint: Option<String>,
    /// The cost guard: a query that would bill more bytes fails without running
    /// (`maximumBytesBilled`).
    pub maximum_bytes_billed: Option<u64>,
    /// A service-account key (its JSON), from the secret store; without it, Application
    /// Default Credentials (`GOOGLE_APPLICATION_CREDENTIALS`, gcloud's, the metadata
    /// server).
    pub credentials: Option<Password>,
}

/// The BigQuery API's public endpoint.
pub const BIGQUERY_ENDPOINT: &str = "https://bigquery.googleapis.com";

impl BigQueryUrl {
    /// The API's base URL, without a trailing slash.
    pub fn endpoint(&self) -> &str {
        self.endpoint
            .as_deref()
            .unwrap_or(BIGQUERY_ENDPOINT)
            .trim_end_matches('/')
    }

    /// Whether the endpoint is a loopback address (an emulator): then no token is fetched.
    pub fn is_loopback(&self) -> bool {
        let Some(e) = &self.endpoint else {
            return false;
        };
        let Ok(u) = ::url::Url::parse(e) else {
            return false;
        };
        match u.host() {
            Some(::url::Host::Ipv4(a)) => a.is_loopback(),
            Some(::url::Host::Ipv6(a)) => a.is_loopback(),
            Some(::url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
            None => false,
        }
    }

    /// Checks the endpoint: `https://`, or `http://` on a loopback address only (a token
    /// never travels in clear text).
    pub fn check_endpoint(&self) -> Result<(), String> {
        let Some(e) = &self.endpoint else {
            return Ok(());
        };
        let u = ::url::Url::parse(e).map_err(|err| format!("endpoint `{e}`: {err}"))?;
        match u.scheme() {
            "https" => Ok(()),
            "http" if self.is_loopback() => Ok(()),
            "http" => Err(format!(
                "endpoint `{e}` is plain http on a non-loopback address (https:// only)"
            )),
            other => Err(format!("endpoint `{e}`: scheme `{other}` (https:// only)")),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WarehouseUrlError {
    #[error(
        "warehouse URL `{0}` has an unsupported scheme (expected postgres://…, redshift://…, bigquery://… or sqlite:PATH)"
    )]
    Scheme(String),
    #[error("warehouse URL `{url}` is malformed: {reason}")]
    Malformed { url: String, reason: String },
}

impl WarehouseUrl {
    /// Parses a URL. For PostgreSQL without a password in the URL, `pg_password` (the
    /// caller passes `PGPASSWORD`) is used.
    pub fn parse(input: &str, pg_password: Option<String>) -> Result<Self, WarehouseUrlError> {
        let input = input.trim();
        if let Some(rest) = input.strip_prefix("sqlite:") {
            return parse_sqlite(input, rest.strip_prefix("//").unwrap_or(rest));
        }
        let parsed = ::url::Url::parse(input).map_err(|e| {
            if input.contains("://") {
                malformed(&redact(input), &e.to_string())
            } else {
                WarehouseUrlError::Scheme(redact(input))
            }
        })?;
        match parsed.scheme() {
            scheme @ ("postgres" | "postgresql" | "redshift") => {
                parse_postgres(&parsed, &redact(input), pg_password, scheme == "redshift")
            }
            "bigquery" => parse_bigquery(&parsed, input).map(WarehouseUrl::BigQuery),
            "snowflake" => parse_snowflake(&parsed, &redact(input)).map(WarehouseUrl::Snowflake),
            "databricks" => parse_databricks(&parsed, &redact(input), &|k| std::env::var(k).ok())
                .map(WarehouseUrl::Databricks),
            _ => Err(WarehouseUrlError::Scheme(redact(input))),
        }
    }

    /// The SQL dialect of the warehouse this URL names (known before connecting, e.g. to
    /// resolve relation names the way the warehouse will).
    pub fn dialect(&self) -> &'static dyn crate::sql::Dialect {
        match self {
            WarehouseUrl::Postgres { redshift: true, .. } => &crate::sql::Redshift,
            WarehouseUrl::Postgres { .. } => &crate::sql::Postgres,
            WarehouseUrl::Sqlite { .. } => &crate::sql::Sqlite,
            WarehouseUrl::Snowflake(_) => &crate::sql::Snowflake,
            WarehouseUrl::BigQuery(_) => &crate::sql::BigQuery,
            WarehouseUrl::Databricks(_) => &crate::sql::Databricks,
        }
    }

    /// `postgres`, `redshift`, `sqlite`, `snowflake` or `bigquery`.
    pub fn kind(&self) -> &'static str {
        match self {
            WarehouseUrl::Postgres { redshift: true, .. } => "redshift",
            WarehouseUrl::Postgres { .. } => "postgres",
            WarehouseUrl::BigQuery(_) => "bigquery",
            WarehouseUrl::Sqlite { .. } => "sqlite",
            WarehouseUrl::Snowflake(_) => "snowflake",
            WarehouseUrl::Databricks(_) => "databricks",
        }
    }
}

/// `sqlite:PATH?attach=NAME=PATH&…` (`rest`: what follows `sqlite:` and an optional `//`).
fn parse_sqlite(input: &str, rest: &str) -> Result<WarehouseUrl, WarehouseUrlError> {
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    if path.is_empty() {
        return Err(malformed(input, "the SQLite path is empty"));
    }
    let mut attach = Vec::new();
    for pair in query.unwrap_or("").split('&').filter(|s| !s.is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| malformed(input, "query parameters are KEY=VALUE"))?;
        if k != "attach" {
            return Err(malformed(
                input,
                &format!("unknown parameter `{k}` (only `attach=NAME=PATH`)"),
            ));
        }
        let v = decode(v);
        let (name, p) = v
            .split_once('=')
            .or_else(|| v.split_once(':'))
            .ok_or_else(|| malformed(input, "attach takes NAME=PATH"))?;
        if name.is_empty() || p.is_empty() {
            return Err(malformed(input, "attach takes NAME=PATH"));
        }
        attach.push((name.to_owned(), PathBuf::from(p)));
    }
    Ok(WarehouseUrl::Sqlite {
        path: PathBuf::from(decode(path)),
        attach,
    })
}

/// `postgres://`, `postgresql://` and `redshift://` URLs (`shown`: the URL redacted).
fn parse_postgres(
    parsed: &::url::Url,
    shown: &str,
    pg_password: Option<String>,
    redshift: bool,
) -> Result<WarehouseUrl, WarehouseUrlError> {
    let host = parsed
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| malformed(shown, "no host"))?;
    let user = decode(parsed.username());
    if user.is_empty() {
        return Err(malformed(shown, "no user (postgres://USER@host/db)"));
    }
    let database = decode(parsed.path().trim_start_matches('/'));
    if database.is_empty() {
        return Err(malformed(
            shown,
            "no database name (postgres://user@host/DB)",
        ));
    }
    let password = parsed
        .password()
        .map(|p| Password::new(decode(p)))
        .or(pg_password.map(Password::new));
    let params = postgres_params(parsed, shown, redshift)?;
    let iam = match params.iam_mode {
        Some(mode) => Some(
            RedshiftIam::from_settings(
                &mode,
                params.iam_name.as_deref(),
                params.region.as_deref(),
                host,
            )
            .map_err(|e| malformed(shown, &e))?,
        ),
        None => None,
    };
    Ok(WarehouseUrl::Postgres {
        user,
        password,
        host: host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned(),
        port: parsed.port().unwrap_or(if redshift { 5439 } else { 5432 }),
        database,
        options: params.options,
        tls: params.tls,
        redshift,
        iam,
    })
}

/// The query parameters of a PostgreSQL or Redshift URL.
struct PostgresParams {
    options: Option<String>,
    tls: Tls,
    iam_mode: Option<String>,
    iam_name: Option<String>,
    region: Option<String>,
}

fn postgres_params(
    parsed: &::url::Url,
    shown: &str,
    redshift: bool,
) -> Result<PostgresParams, WarehouseUrlError> {
    let mut p = PostgresParams {
        options: None,
        tls: Tls {
            mode: if redshift {
                SslMode::VerifyFull
            } else {
                SslMode::Prefer
            },
            root_cert: None,
        },
        iam_mode: None,
        iam_name: None,
        region: None,
    };
    for (k, v) in parsed.query_pairs() {
        match &*k {
            "options" => p.options = Some(v.into_owned()),
            "sslmode" => {
                p.tls.mode = SslMode::parse(&v).ok_or_else(|| {
                    malformed(
                        shown,
                        &format!(
                            "sslmode `{v}` is not one of disable, prefer, require, verify-ca, verify-full"
                        ),
                    )
                })?;
            }
            "sslrootcert" if !v.is_empty() => {
                p.tls.root_cert = Some(PathBuf::from(v.into_owned()));
            }
            "iam" | "cluster_id" | "workgroup" | "region" if !redshift => {
                return Err(malformed(
                    shown,
                    &format!("`{k}` is for redshift:// URLs only"),
                ));
            }
            "iam" => p.iam_mode = Some(v.into_owned()),
            "cluster_id" | "workgroup" => p.iam_name = Some(v.into_owned()),
            "region" => p.region = Some(v.into_owned()),
            other => {
                return Err(malformed(
                    shown,
                    &format!("unsupported parameter `{other}`"),
                ));
            }
        }
    }
    Ok(p)
}

/// `bigquery://PROJECT?dataset=…&location=…&endpoint=…&maximum_bytes_billed=…`.
fn parse_bigquery(parsed: &::url::Url, input: &str) -> Result<BigQueryUrl, WarehouseUrlError> {
    let project = decode(parsed.host_str().unwrap_or(""));
    if project.is_empty() {
        return Err(malformed(input, "no project (bigquery://PROJECT)"));
    }
    if !matches!(parsed.path(), "" | "/") {
        return Err(malformed(
            input,
            "the project is the host part; settings go in ?dataset=…&location=…",
        ));
    }
    let mut bq = BigQueryUrl {
        project,
        location: None,
        dataset: None,
        endpoint: None,
        maximum_bytes_billed: None,
        credentials: None,
    };
    for (k, v) in parsed.query_pairs() {
        let v = v.into_owned();
        match &*k {
            "location" => bq.location = Some(v),
            "dataset" => bq.dataset = Some(v),
            "endpoint" => bq.endpoint = Some(v),
            "maximum_bytes_billed" => {
                bq.maximum_bytes_billed = Some(v.parse().map_err(|_| {
                    malformed(
                        input,
                        &format!("maximum_bytes_billed `{v}` is not a number of bytes"),
                    )
                })?);
            }
            other => {
                return Err(malformed(
                    input,
                    &format!(
                        "unsupported parameter `{other}` (location, dataset, endpoint, maximum_bytes_billed)"
                    ),
                ));
            }
        }
    }
    bq.check_endpoint().map_err(|e| malformed(input, &e))?;
    Ok(bq)
}

fn parse_snowflake(parsed: &::url::Url, shown: &str) -> Result<SnowflakeTarget, WarehouseUrlError> {
    let account = parsed
        .host_str()
        .map(decode)
        .filter(|h| !h.is_empty())
        .ok_or_else(|| malformed(shown, "no account (snowflake://USER@ACCOUNT/DATABASE)"))?;
    if parsed.port().is_some() {
        return Err(malformed(
            shown,
            "the account takes no port (use the `port` parameter)",
        ));
    }
    let user = decode(parsed.username());
    if user.is_empty() {
        return Err(malformed(
            shown,
            "no user (snowflake://USER@ACCOUNT/DATABASE)",
        ));
    }
    let database = decode(parsed.path().trim_start_matches('/'));
    if database.is_empty() || database.contains('/') {
        return Err(malformed(
            shown,
            "the path is one database name (snowflake://USER@ACCOUNT/DATABASE)",
        ));
    }
    let (mut warehouse, mut role, mut schema, mut key_path, mut host, mut port, mut protocol) =
        (None, None, None, None, None, None, None);
    for (k, v) in parsed.query_pairs() {
        let v = v.into_owned();
        if v.is_empty() {
            return Err(malformed(shown, &format!("parameter `{k}` is empty")));
        }
        match &*k {
            "warehouse" => warehouse = Some(v),
            "role" => role = Some(v),
            "schema" => schema = Some(v),
            "private_key_path" => key_path = Some(PathBuf::from(v)),
            "host" => host = Some(v),
            "port" => {
                port = Some(
                    v.parse::<u16>()
                        .map_err(|_| malformed(shown, "`port` is not a port number"))?,
                )
            }
            "protocol" if v == "https" || v == "http" => protocol = Some(v),
            "protocol" => return Err(malformed(shown, "`protocol` is https or http")),
            other => {
                return Err(malformed(
                    shown,
                    &format!(
                        "unsupported parameter `{other}` (warehouse, role, schema, private_key_path, host, port, protocol)"
                    ),
                ));
            }
        }
    }
    let auth = snowflake_auth(parsed, key_path, shown)?;
    let protocol = protocol.unwrap_or_else(|| "https".to_owned());
    Ok(SnowflakeTarget {
        host: host.unwrap_or_else(|| snowflake_default_host(&account)),
        port: port.unwrap_or(if protocol == "http" { 80 } else { 443 }),
        protocol,
        account,
        user,
        auth,
        database,
        warehouse,
        role,
        schema,
    })
}

/// A `databricks://` URL. Credentials never come from the URL: the token from
/// `DATABRICKS_TOKEN`, or OAuth M2M from `DATABRICKS_CLIENT_ID` (or the `client_id`
/// parameter) and `DATABRICKS_CLIENT_SECRET` (the Databricks SDKs' variables).
fn parse_databricks(
    parsed: &::url::Url,
    shown: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<DatabricksTarget, WarehouseUrlError> {
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(malformed(
            shown,
            "credentials do not go in a databricks:// URL (set DATABRICKS_TOKEN, or DATABRICKS_CLIENT_ID and DATABRICKS_CLIENT_SECRET)",
        ));
    }
    let host = parsed
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| malformed(shown, "no host (databricks://HOST/WAREHOUSE_ID)"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let warehouse_id = DatabricksTarget::warehouse_id_from_path(parsed.path())
        .map(|id| decode(&id))
        .ok_or_else(|| {
            malformed(
                shown,
                "the path is the SQL warehouse id (databricks://HOST/WAREHOUSE_ID)",
            )
        })?;
    let (mut catalog, mut schema, mut client_id, mut protocol) = (None, None, None, None);
    for (k, v) in parsed.query_pairs() {
        let v = v.into_owned();
        if v.is_empty() {
            return Err(malformed(shown, &format!("parameter `{k}` is empty")));
        }
        match &*k {
            "catalog" => catalog = Some(v),
            "schema" => schema = Some(v),
            "client_id" => client_id = Some(v),
            "protocol" if v == "https" || v == "http" => protocol = Some(v),
            "protocol" => return Err(malformed(shown, "`protocol` is https or http")),
            other => {
                return Err(malformed(
                    shown,
                    &format!(
                        "unsupported parameter `{other}` (catalog, schema, client_id, protocol)"
                    ),
                ));
            }
        }
    }
    let protocol = protocol.unwrap_or_else(|| "https".to_owned());
    if protocol == "http" && !is_loopback_host(&host) {
        return Err(malformed(
            shown,
            "protocol=http is for a stand-in on this machine only (the token would cross the network in clear)",
        ));
    }
    let auth = databricks_auth(client_id, env, shown)?;
    Ok(DatabricksTarget {
        port: parsed
            .port()
            .unwrap_or(if protocol == "http" { 80 } else { 443 }),
        protocol,
        host,
        warehouse_id,
        catalog,
        schema,
        auth,
    })
}

/// A password in the URL or a private key file, not both.
fn snowflake_auth(
    parsed: &::url::Url,
    key_path: Option<PathBuf>,
    shown: &str,
) -> Result<SnowflakeAuth, WarehouseUrlError> {
    Ok(match (parsed.password(), key_path) {
        (Some(_), Some(_)) => {
            return Err(malformed(
                shown,
                "give a password or a private_key_path, not both",
            ));
        }
        (Some(p), None) => SnowflakeAuth::Password(Password::new(decode(p))),
        (None, Some(path)) => SnowflakeAuth::PrivateKeyPath(path),
        (None, None) => {
            return Err(malformed(
                shown,
                "no password and no private_key_path (snowflake://USER:PASSWORD@… or ?private_key_path=…)",
            ));
        }
    })
}

/// A client id (URL or environment) means OAuth M2M with the secret from the environment;
/// otherwise a token from the environment.
fn databricks_auth(
    client_id: Option<String>,
    env: &dyn Fn(&str) -> Option<String>,
    shown: &str,
) -> Result<DatabricksAuth, WarehouseUrlError> {
    let env = |k: &str| env(k).filter(|v| !v.trim().is_empty());
    let auth = match (
        client_id.or_else(|| env("DATABRICKS_CLIENT_ID")),
        env("DATABRICKS_TOKEN"),
    ) {
        (Some(client_id), _) => DatabricksAuth::OAuthM2m {
            client_secret: Password::new(env("DATABRICKS_CLIENT_SECRET").ok_or_else(|| {
                malformed(
                    shown,
                    "OAuth M2M (a client id) needs DATABRICKS_CLIENT_SECRET in the environment",
                )
            })?),
            client_id,
        },
        (None, Some(token)) => DatabricksAuth::Token(Password::new(token)),
        (None, None) => {
            return Err(malformed(
                shown,
                "no credentials: set DATABRICKS_TOKEN, or DATABRICKS_CLIENT_ID and DATABRICKS_CLIENT_SECRET",
            ));
        }
    };
    Ok(auth)
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

fn malformed(url: &str, reason: &str) -> WarehouseUrlError {
    WarehouseUrlError::Malformed {
        url: url.to_owned(),
        reason: reason.to_owned(),
    }
}

/// The URL with any password replaced, for messages.
pub fn redact(input: &str) -> String {
    let parts = input.split_once("://").and_then(|(scheme, rest)| {
        let (userinfo, host) = rest.split_once('@')?;
        let (user, _) = userinfo.split_once(':')?;
        Some((scheme, user, host))
    });
    match parts {
        Some((scheme, user, host)) => format!("{scheme}://{user}:[redacted]@{host}"),
        None => input.to_owned(),
    }
}

impl fmt::Display for WarehouseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WarehouseUrl::Postgres {
                user,
                host,
                port,
                database,
                tls,
                redshift,
                ..
            } => {
                let scheme = if *redshift { "redshift" } else { "postgres" };
                write!(
                    f,
                    "{scheme}://{user}@{host}:{port}/{database}?sslmode={}",
                    tls.mode.as_str()
                )
            }
            WarehouseUrl::BigQuery(bq) => {
                write!(f, "bigquery://{}", bq.project)?;
                let mut sep = '?';
                for (k, v) in [
                    ("location", bq.location.clone()),
                    ("dataset", bq.dataset.clone()),
                    ("endpoint", bq.endpoint.clone()),
                    (
                        "maximum_bytes_billed",
                        bq.maximum_bytes_billed.map(|n| n.to_string()),
                    ),
                ] {
                    if let Some(v) = v {
                        write!(f, "{sep}{k}={v}")?;
                        sep = '&';
                    }
                }
                Ok(())
            }
            WarehouseUrl::Sqlite { path, .. } => write!(f, "sqlite:{}", path.display()),
            WarehouseUrl::Snowflake(t) => {
                write!(f, "snowflake://{}@{}/{}", t.user, t.account, t.database)?;
                let mut sep = '?';
                for (k, v) in [
                    ("warehouse", &t.warehouse),
                    ("role", &t.role),
                    ("schema", &t.schema),
                ] {
                    if let Some(v) = v {
                        write!(f, "{sep}{k}={v}")?;
                        sep = '&';
                    }
                }
                if t.host != snowflake_default_host(&t.account) {
                    write!(f, "{sep}host={}&port={}", t.host, t.port)?;
                }
                Ok(())
            }
            WarehouseUrl::Databricks(t) => {
                write!(f, "databricks://{}/{}", t.host, t.warehouse_id)?;
                let mut sep = '?';
                for (k, v) in [("catalog", &t.catalog), ("schema", &t.schema)] {
                    if let Some(v) = v {
                        write!(f, "{sep}{k}={v}")?;
                        sep = '&';
                    }
                }
                if let DatabricksAuth::OAuthM2m { client_id, .. } = &t.auth {
                    write!(f, "{sep}client_id={client_id}")?;
                    sep = '&';
                }
                if t.protocol != "https" || t.port != 443 {
                    write!(f, "{sep}protocol={}&port={}", t.protocol, t.port)?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_urls_parse_and_never_show_the_password() {
        let u =
            WarehouseUrl::parse("postgres://me:s3cr%40t@db.example:6543/analytics", None).unwrap();
        match &u {
            WarehouseUrl::Postgres {
                user,
                password,
                host,
                port,
                database,
                ..
            } => {
                assert_eq!(user, "me");
                assert_eq!(password.as_ref().unwrap().expose(), "s3cr@t");
                assert_eq!(
                    (host.as_str(), *port, database.as_str()),
                    ("db.example", 6543, "analytics")
                );
            }
            _ => panic!("not postgres"),
        }
        assert!(!u.to_string().contains("s3cr"));
        assert!(!format!("{u:?}").contains("s3cr"));
    }

    #[test]
    fn sslmode_and_sslrootcert_take_libpq_values() {
        let tls = |u: &str| match WarehouseUrl::parse(u, None).unwrap() {
            WarehouseUrl::Postgres { tls, port, .. } => (tls, port),
            _ => panic!("not postgres"),
        };
        assert_eq!(tls("postgres://u@h/db").0.mode, SslMode::Prefer);
        for mode in ["disable", "prefer", "require", "verify-ca", "verify-full"] {
            let (t, _) = tls(&format!("postgres://u@h/db?sslmode={mode}"));
            assert_eq!(t.mode.as_str(), mode);
        }
        let (t, _) = tls("postgres://u@h/db?sslmode=verify-full&sslrootcert=/etc/ca.pem");
        assert_eq!(
            t.root_cert.as_deref(),
            Some(std::path::Path::new("/etc/ca.pem"))
        );
        let e = WarehouseUrl::parse("postgres://u:pw@h/db?sslmode=allow-ish", None).unwrap_err();
        assert!(e.to_string().contains("sslmode `allow-ish`"), "{e}");
        assert!(!e.to_string().contains("pw@"));
        // Redshift: TLS verified by default, its own port, its own kind.
        let (t, port) = tls("redshift://u@cluster.abc.us-east-1.redshift.amazonaws.com/dev");
        assert_eq!((t.mode, port), (SslMode::VerifyFull, 5439));
        let u = WarehouseUrl::parse("redshift://u@h/dev", None).unwrap();
        assert_eq!(u.kind(), "redshift");
        assert!(matches!(u, WarehouseUrl::Postgres { iam: None, .. }));
        assert_eq!(u.to_string(), "redshift://u@h:5439/dev?sslmode=verify-full");
    }

    #[test]
    fn redshift_iam_takes_its_cluster_or_workgroup_from_the_url_or_the_host() {
        let iam = |u: &str| match WarehouseUrl::parse(u, None) {
            Ok(WarehouseUrl::Postgres { iam, .. }) => Ok(iam),
            Ok(_) => panic!("not postgres"),
            Err(e) => Err(e.to_string()),
        };
        assert_eq!(
            iam(
                "redshift://prdiff@analytics.c1x2y3.eu-west-1.redshift.amazonaws.com/dev?iam=cluster"
            ),
            Ok(Some(RedshiftIam::Cluster {
                cluster_id: "analytics".into(),
                region: Some("eu-west-1".into())
            }))
        );
        assert_eq!(
            iam(
                "redshift://prdiff@wg.123456789012.us-east-1.redshift-serverless.amazonaws.com/dev?iam=serverless"
            ),
            Ok(Some(RedshiftIam::Serverless {
                workgroup: "wg".into(),
                region: Some("us-east-1".into())
            }))
        );
        assert_eq!(
            iam("redshift://prdiff@localhost/dev?iam=cluster&cluster_id=c1&region=us-west-2"),
            Ok(Some(RedshiftIam::Cluster {
                cluster_id: "c1".into(),
                region: Some("us-west-2".into())
            }))
        );
        assert!(
            iam("redshift://prdiff@localhost/dev?iam=cluster")
                .unwrap_err()
                .contains("cluster_id=")
        );
        assert!(
            iam("redshift://prdiff@localhost/dev?iam=token")
                .unwrap_err()
                .contains("iam `token`")
        );
        assert!(
            iam("postgres://prdiff@localhost/dev?iam=cluster")
                .unwrap_err()
                .contains("redshift:// URLs only")
        );
    }

    #[test]
    fn bigquery_urls_take_project_settings_and_never_show_the_key() {
        let u = WarehouseUrl::parse(
            "bigquery://my-proj?location=EU&dataset=analytics&maximum_bytes_billed=1000000000",
            None,
        )
        .unwrap();
        let WarehouseUrl::BigQuery(mut bq) = u.clone() else {
            panic!("not bigquery")
        };
        assert_eq!(bq.project, "my-proj");
        assert_eq!(bq.location.as_deref(), Some("EU"));
        assert_eq!(bq.dataset.as_deref(), Some("analytics"));
        assert_eq!(bq.maximum_bytes_billed, Some(1_000_000_000));
        assert_eq!(bq.endpoint(), BIGQUERY_ENDPOINT);
        assert!(!bq.is_loopback());
        assert_eq!(u.kind(), "bigquery");
        assert_eq!(
            u.to_string(),
            "bigquery://my-proj?location=EU&dataset=analytics&maximum_bytes_billed=1000000000"
        );
        bq.credentials = Some(Password::new(r#"{"private_key":"-----BEGIN PRIVATE"}"#));
        let with_key = WarehouseUrl::BigQuery(bq);
        assert!(!format!("{with_key:?}").contains("PRIVATE"));
        assert!(!with_key.to_string().contains("PRIVATE"));

        // An emulator on a loopback address: plain http, no token.
        for ep in [
            "http://127.0.0.1:9050",
            "http://localhost:9050/",
            "http://[::1]:9050",
        ] {
            let u = WarehouseUrl::parse(&format!("bigquery://p?endpoint={ep}"), None).unwrap();
            let WarehouseUrl::BigQuery(bq) = u else {
                panic!("not bigquery")
            };
            assert!(bq.is_loopback(), "{ep}");
            assert!(!bq.endpoint().ends_with('/'));
        }
        let e = WarehouseUrl::parse("bigquery://p?endpoint=http://bq.example:80", None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("non-loopback"), "{e}");
        let WarehouseUrl::BigQuery(bq) =
            WarehouseUrl::parse("bigquery://p?endpoint=https://127.0.0.2.nip.io", None).unwrap()
        else {
            panic!("not bigquery")
        };
        assert!(
            !bq.is_loopback(),
            "a name that merely contains 127.0.0.x is not loopback"
        );
        for (bad, why) in [
            ("bigquery://", "no project"),
            ("bigquery://p/ds", "settings go in"),
            (
                "bigquery://p?maximum_bytes_billed=1GB",
                "maximum_bytes_billed `1GB`",
            ),
            (
                "bigquery://p?keyfile=/x.json",
                "unsupported parameter `keyfile`",
            ),
        ] {
            let e = WarehouseUrl::parse(bad, None).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn pgpassword_fills_a_missing_password() {
        let u = WarehouseUrl::parse("postgresql://me@localhost/db", Some("pw".into())).unwrap();
        assert!(
            matches!(u, WarehouseUrl::Postgres { password: Some(p), port: 5432, .. } if p.expose() == "pw")
        );
    }

    #[test]
    fn sqlite_urls_take_a_path_and_attached_schemas() {
        let u = WarehouseUrl::parse(
            "sqlite:/tmp/w.db?attach=prod=/tmp/p.db&attach=pr=/tmp/q.db",
            None,
        )
        .unwrap();
        assert_eq!(
            u,
            WarehouseUrl::Sqlite {
                path: "/tmp/w.db".into(),
                attach: vec![
                    ("prod".into(), "/tmp/p.db".into()),
                    ("pr".into(), "/tmp/q.db".into())
                ]
            }
        );
    }

    #[test]
    fn snowflake_urls_parse_with_defaults_and_never_show_secrets() {
        let u = WarehouseUrl::parse(
            "snowflake://prdiff_ci:pa%3Ass@myorg-acme/ANALYTICS?warehouse=CI_WH&role=PRDIFF_READER&schema=PUBLIC",
            None,
        )
        .unwrap();
        let WarehouseUrl::Snowflake(t) = &u else {
            panic!("not snowflake: {u:?}")
        };
        assert_eq!(
            (t.account.as_str(), t.user.as_str(), t.database.as_str()),
            ("myorg-acme", "prdiff_ci", "ANALYTICS")
        );
        assert_eq!(t.auth, SnowflakeAuth::Password(Password::new("pa:ss")));
        assert_eq!(t.warehouse.as_deref(), Some("CI_WH"));
        assert_eq!(t.role.as_deref(), Some("PRDIFF_READER"));
        assert_eq!(t.schema.as_deref(), Some("PUBLIC"));
        assert_eq!(
            t.base_url(),
            "https://myorg-acme.snowflakecomputing.com:443"
        );
        assert_eq!(u.kind(), "snowflake");
        for shown in [u.to_string(), format!("{u:?}")] {
            assert!(
                !shown.contains("pa:ss") && !shown.contains("pa%3Ass"),
                "{shown}"
            );
        }
        assert_eq!(
            u.to_string(),
            "snowflake://prdiff_ci@myorg-acme/ANALYTICS?warehouse=CI_WH&role=PRDIFF_READER&schema=PUBLIC"
        );

        let u = WarehouseUrl::parse(
            "snowflake://ci@acme/DB?private_key_path=/run/keys/ci.p8&host=127.0.0.1&port=8123&protocol=http",
            None,
        )
        .unwrap();
        let WarehouseUrl::Snowflake(t) = &u else {
            panic!("not snowflake")
        };
        assert_eq!(
            t.auth,
            SnowflakeAuth::PrivateKeyPath("/run/keys/ci.p8".into())
        );
        assert_eq!(t.base_url(), "http://127.0.0.1:8123");
        assert!(u.to_string().contains("host=127.0.0.1&port=8123"), "{u}");
    }

    #[test]
    fn bad_snowflake_urls_say_what_is_missing_without_the_password() {
        for (url, why) in [
            ("snowflake://u:topsecret@acme", "database"),
            (
                "snowflake://u@acme/DB",
                "no password and no private_key_path",
            ),
            ("snowflake://:topsecret@acme/DB", "no user"),
            (
                "snowflake://u:topsecret@acme/DB?private_key_path=/k",
                "not both",
            ),
            (
                "snowflake://u:topsecret@acme/DB?protocol=ftp",
                "https or http",
            ),
            ("snowflake://u:topsecret@acme/DB?port=x", "port"),
            (
                "snowflake://u:topsecret@acme/DB?authenticator=oauth",
                "unsupported parameter",
            ),
        ] {
            let e = WarehouseUrl::parse(url, None).unwrap_err().to_string();
            assert!(e.contains(why), "{url}: {e}");
            assert!(!e.contains("topsecret"), "{e}");
        }
    }

    fn databricks(url: &str, env: &[(&str, &str)]) -> Result<DatabricksTarget, String> {
        let parsed = ::url::Url::parse(url).unwrap();
        let env = |k: &str| {
            env.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        };
        parse_databricks(&parsed, &redact(url), &env).map_err(|e| e.to_string())
    }

    #[test]
    fn databricks_urls_take_the_warehouse_and_credentials_from_the_environment() {
        let t = databricks(
            "databricks://dbc-1234.cloud.databricks.com/abc123def?catalog=main&schema=analytics",
            &[("DATABRICKS_TOKEN", "dapi-secret")],
        )
        .unwrap();
        assert_eq!(t.warehouse_id, "abc123def");
        assert_eq!(t.base_url(), "https://dbc-1234.cloud.databricks.com:443");
        assert_eq!(
            (t.catalog.as_deref(), t.schema.as_deref()),
            (Some("main"), Some("analytics"))
        );
        assert_eq!(t.auth, DatabricksAuth::Token(Password::new("dapi-secret")));
        let u = WarehouseUrl::Databricks(t);
        assert_eq!(u.kind(), "databricks");
        assert_eq!(u.dialect().name(), "databricks");
        for shown in [u.to_string(), format!("{u:?}")] {
            assert!(!shown.contains("dapi-secret"), "{shown}");
        }
        assert_eq!(
            u.to_string(),
            "databricks://dbc-1234.cloud.databricks.com/abc123def?catalog=main&schema=analytics"
        );

        // dbt-databricks' http_path works as the path; a client id means OAuth M2M.
        let t = databricks(
            "databricks://127.0.0.1:8123/sql/1.0/warehouses/wh1?protocol=http&client_id=sp-1",
            &[
                ("DATABRICKS_CLIENT_SECRET", "oauth-secret"),
                ("DATABRICKS_TOKEN", "ignored"),
            ],
        )
        .unwrap();
        assert_eq!(t.warehouse_id, "wh1");
        assert_eq!(t.base_url(), "http://127.0.0.1:8123");
        assert_eq!(
            t.auth,
            DatabricksAuth::OAuthM2m {
                client_id: "sp-1".into(),
                client_secret: Password::new("oauth-secret")
            }
        );
        let shown = WarehouseUrl::Databricks(t).to_string();
        assert!(!shown.contains("oauth-secret"), "{shown}");
        assert!(shown.contains("client_id=sp-1"), "{shown}");
    }

    #[test]
    fn bad_databricks_urls_say_what_is_missing_without_secrets() {
        let token = [("DATABRICKS_TOKEN", "dapi-secret")];
        for (url, env, why) in [
            ("databricks://h.example/", &token[..], "warehouse id"),
            ("databricks://h.example/a/b", &token[..], "warehouse id"),
            ("databricks://h.example/wh", &[][..], "no credentials"),
            (
                "databricks://token:dapi-secret@h.example/wh",
                &token[..],
                "credentials do not go in",
            ),
            (
                "databricks://h.example/wh?client_id=sp",
                &token[..],
                "DATABRICKS_CLIENT_SECRET",
            ),
            (
                "databricks://h.example/wh?protocol=http",
                &token[..],
                "this machine only",
            ),
            (
                "databricks://h.example/wh?protocol=ftp",
                &token[..],
                "https or http",
            ),
            (
                "databricks://h.example/wh?http_path=x",
                &token[..],
                "unsupported parameter",
            ),
        ] {
            let e = databricks(url, env).unwrap_err();
            assert!(e.contains(why), "{url}: {e}");
            assert!(!e.contains("dapi-secret"), "{e}");
        }
        assert!(is_loopback_host("localhost") && is_loopback_host("[::1]"));
        assert!(!is_loopback_host("10.0.0.1"));
    }

    #[test]
    fn bad_urls_name_the_problem_without_the_password() {
        let e = WarehouseUrl::parse("mysql://u:topsecret@h/db", None).unwrap_err();
        assert!(matches!(e, WarehouseUrlError::Scheme(_)));
        assert!(!e.to_string().contains("topsecret"));
        let e = WarehouseUrl::parse("postgres://u:topsecret@h/", None).unwrap_err();
        assert!(e.to_string().contains("no database"), "{e}");
        assert!(!e.to_string().contains("topsecret"));
        assert!(WarehouseUrl::parse("sqlite:", None).is_err());
        assert!(WarehouseUrl::parse("not a url", None).is_err());
    }
}
