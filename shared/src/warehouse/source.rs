//! The warehouse URL of a configured data source: its connection settings and its secret
//! (password, key or token) become a [`WarehouseUrl`].

use crate::config::{DataSource, DataSourceKind};
use crate::warehouse::WarehouseUrl;

/// Why a data source cannot be connected to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("data source {source_id}: {problem}")]
pub struct DataSourceError {
    pub source_id: String,
    pub problem: String,
}

/// The warehouse URL of a data source, with its secret (the password) filled in.
pub fn warehouse_url(
    source: &DataSource,
    secret: Option<String>,
) -> Result<WarehouseUrl, DataSourceError> {
    let err = |problem: String| DataSourceError {
        source_id: source.id.to_string(),
        problem,
    };
    let get = |k: &str| source.connection.get(k).map(String::as_str);
    match source.kind {
        DataSourceKind::Postgres | DataSourceKind::Redshift => {
            let redshift = source.kind == DataSourceKind::Redshift;
            let host = get("host").ok_or_else(|| err("connection has no `host`".into()))?;
            let port = match get("port") {
                None if redshift => 5439,
                None => 5432,
                Some(p) => p
                    .parse()
                    .map_err(|_| err(format!("port {p:?} is not a number")))?,
            };
            Ok(WarehouseUrl::Postgres {
                user: get("user")
                    .ok_or_else(|| err("connection has no `user`".into()))?
                    .to_owned(),
                password: secret.map(crate::warehouse::Password::new),
                host: host.to_owned(),
                port,
                database: get("database")
                    .or_else(|| get("dbname"))
                    .ok_or_else(|| err("connection has no `database`".into()))?
                    .to_owned(),
                options: get("options").map(str::to_owned),
                tls: crate::warehouse::Tls {
                    mode: match get("sslmode") {
                        None if redshift => crate::warehouse::SslMode::VerifyFull,
                        None => crate::warehouse::SslMode::Prefer,
                        Some(m) => crate::warehouse::SslMode::parse(m).ok_or_else(|| {
                            err(format!(
                                "sslmode {m:?} is not one of disable, prefer, require, verify-ca, verify-full"
                            ))
                        })?,
                    },
                    root_cert: get("sslrootcert").map(std::path::PathBuf::from),
                },
                redshift,
                iam: match get("iam") {
                    Some(mode) if redshift => Some(
                        crate::warehouse::RedshiftIam::from_settings(
                            mode,
                            get("cluster_id").or_else(|| get("workgroup")),
                            get("region"),
                            host,
                        )
                        .map_err(err)?,
                    ),
                    Some(_) => return Err(err("`iam` is for redshift data sources only".into())),
                    None => None,
                },
            })
        }
        DataSourceKind::Bigquery => {
            let project = get("project")
                .filter(|p| !p.is_empty())
                .ok_or_else(|| err("connection has no `project`".into()))?;
            let bq = crate::warehouse::BigQueryUrl {
                project: project.to_owned(),
                location: get("location").map(str::to_owned),
                dataset: get("dataset").map(str::to_owned),
                endpoint: get("endpoint").map(str::to_owned),
                maximum_bytes_billed: match get("maximum_bytes_billed") {
                    None => None,
                    Some(n) => Some(n.parse().map_err(|_| {
                        err(format!(
                            "maximum_bytes_billed {n:?} is not a number of bytes"
                        ))
                    })?),
                },
                // The secret is a service-account key (JSON); without one, Application
                // Default Credentials (workload identity, the metadata server).
                credentials: secret.map(crate::warehouse::Password::new),
            };
            bq.check_endpoint().map_err(err)?;
            if let Some(unknown) = source.connection.keys().find(|k| {
                !matches!(
                    k.as_str(),
                    "project" | "location" | "dataset" | "endpoint" | "maximum_bytes_billed"
                )
            }) {
                return Err(err(format!(
                    "connection key `{unknown}` is not one of project, location, dataset, endpoint, maximum_bytes_billed"
                )));
            }
            Ok(WarehouseUrl::BigQuery(bq))
        }
        DataSourceKind::Sqlite => {
            let path = get("path").ok_or_else(|| err("connection has no `path`".into()))?;
            WarehouseUrl::parse(&format!("sqlite:{path}"), None).map_err(|e| err(e.to_string()))
        }
        DataSourceKind::Snowflake => snowflake_target(source, secret).map_err(err),
        DataSourceKind::Databricks => databricks_target(source, secret).map_err(err),
        other => Err(err(format!(
            "no warehouse driver for {} in this build",
            other.as_str()
        ))),
    }
}

/// A data source's connection settings, checked against the keys its kind knows; values
/// are trimmed and an empty one counts as absent.
struct Connection<'a>(&'a std::collections::BTreeMap<String, String>);

impl<'a> Connection<'a> {
    fn checked(source: &'a DataSource, kind: &str, known: &[&str]) -> Result<Self, String> {
        let c = &source.connection;
        match c.keys().find(|k| !known.contains(&k.as_str())) {
            Some(k) => Err(format!(
                "unknown connection key `{k}` for {kind} (expected {})",
                known.join(", ")
            )),
            None => Ok(Connection(c)),
        }
    }

    fn get(&self, k: &str) -> Option<&'a str> {
        self.0.get(k).map(|v| v.trim()).filter(|v| !v.is_empty())
    }

    fn need(&self, k: &str) -> Result<&'a str, String> {
        self.get(k)
            .ok_or_else(|| format!("connection has no `{k}`"))
    }

    /// `port`, else the protocol's default.
    fn port(&self, protocol: &str) -> Result<u16, String> {
        match self.get("port") {
            None if protocol == "http" => Ok(80),
            None => Ok(443),
            Some(p) => p.parse().map_err(|_| format!("port {p:?} is not a number")),
        }
    }
}

/// The connection keys a Snowflake data source may have.
pub const SNOWFLAKE_CONNECTION_KEYS: &[&str] = &[
    "account",
    "user",
    "database",
    "warehouse",
    "role",
    "schema",
    "host",
    "port",
    "protocol",
];

/// A Snowflake data source's login. The secret is the password, or the user's PEM private
/// key (key-pair authentication) when it starts with `-----BEGIN`.
fn snowflake_target(source: &DataSource, secret: Option<String>) -> Result<WarehouseUrl, String> {
    use crate::warehouse::{Password, SnowflakeAuth, SnowflakeTarget, snowflake_default_host};
    let c = Connection::checked(source, "snowflake", SNOWFLAKE_CONNECTION_KEYS)?;
    let (get, need) = (|k: &str| c.get(k), |k: &str| c.need(k));
    let account = need("account")?.to_owned();
    let protocol = match get("protocol") {
        None | Some("https") => "https",
        Some("http") => "http",
        Some(p) => return Err(format!("protocol {p:?} is not https or http")),
    };
    let port = c.port(protocol)?;
    let secret = secret
        .filter(|s| !s.trim().is_empty())
        .ok_or("a snowflake data source needs a secret (the password or a PEM private key)")?;
    let auth = if secret.trim_start().starts_with("-----BEGIN") {
        SnowflakeAuth::PrivateKeyPem(Password::new(secret))
    } else {
        SnowflakeAuth::Password(Password::new(secret))
    };
    Ok(WarehouseUrl::Snowflake(SnowflakeTarget {
        host: get("host")
            .map(str::to_owned)
            .unwrap_or_else(|| snowflake_default_host(&account)),
        port,
        protocol: protocol.to_owned(),
        user: need("user")?.to_owned(),
        database: need("database")?.to_owned(),
        warehouse: get("warehouse").map(str::to_owned),
        role: get("role").map(str::to_owned),
        schema: get("schema").map(str::to_owned),
        auth,
        account,
    }))
}

/// The connection keys a Databricks data source may have.
pub const DATABRICKS_CONNECTION_KEYS: &[&str] = &[
    "host",
    "warehouse_id",
    "http_path",
    "catalog",
    "schema",
    "client_id",
    "port",
    "protocol",
];

/// A Databricks data source's warehouse and credentials. The secret is a personal access
/// token, or the service principal's OAuth client secret when `client_id` is set.
fn databricks_target(source: &DataSource, secret: Option<String>) -> Result<WarehouseUrl, String> {
    use crate::warehouse::{DatabricksAuth, DatabricksTarget, Password};
    let c = Connection::checked(source, "databricks", DATABRICKS_CONNECTION_KEYS)?;
    let get = |k: &str| c.get(k);
    let host = get("host")
        .ok_or("connection has no `host`")?
        .trim_start_matches("https://")
        .trim_end_matches('/')
        .to_owned();
    let warehouse_id = match (get("warehouse_id"), get("http_path")) {
        (Some(id), None) => DatabricksTarget::warehouse_id_from_path(id),
        (None, Some(path)) => DatabricksTarget::warehouse_id_from_path(path),
        (Some(_), Some(_)) => return Err("give `warehouse_id` or `http_path`, not both".into()),
        (None, None) => return Err("connection has no `warehouse_id` (or `http_path`)".into()),
    }
    .ok_or("`warehouse_id` is one id, or `http_path` is /sql/1.0/warehouses/ID")?;
    let protocol = match get("protocol") {
        None | Some("https") => "https",
        Some("http") if crate::warehouse::is_loopback_host(&host) => "http",
        Some("http") => return Err("protocol http is for a stand-in on this machine only".into()),
        Some(p) => return Err(format!("protocol {p:?} is not https or http")),
    };
    let port = c.port(protocol)?;
    let secret = secret
        .filter(|s| !s.trim().is_empty())
        .ok_or(
            "a databricks data source needs a secret (a personal access token, or the OAuth client secret with `client_id`)",
        )?;
    let auth = match get("client_id") {
        Some(id) => DatabricksAuth::OAuthM2m {
            client_id: id.to_owned(),
            client_secret: Password::new(secret.trim()),
        },
        None => DatabricksAuth::Token(Password::new(secret.trim())),
    };
    Ok(WarehouseUrl::Databricks(DatabricksTarget {
        host,
        port,
        protocol: protocol.to_owned(),
        warehouse_id,
        catalog: get("catalog").map(str::to_owned),
        schema: get("schema").map(str::to_owned),
        auth,
    }))
}

/// Problems with a data source's connection settings that apply and check can catch
/// before anything is stored or connected: Snowflake keys that are missing or unknown. (A
/// kind this build has no driver for is refused by apply on its own.)
pub fn data_source_problems(source: &DataSource) -> Vec<String> {
    match source.kind {
        // A stand-in secret: only the connection keys are checked here.
        DataSourceKind::Snowflake => match snowflake_target(source, Some("-".into())) {
            Ok(_) => Vec::new(),
            Err(e) => vec![e],
        },
        DataSourceKind::Databricks => match databricks_target(source, Some("-".into())) {
            Ok(_) => Vec::new(),
            Err(e) => vec![e],
        },
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bigquery_data_source_maps_to_its_url_with_the_key_as_credentials() {
        let source = |pairs: &[(&str, &str)]| DataSource {
            id: crate::config::DataSourceId::parse("bq").unwrap(),
            kind: DataSourceKind::Bigquery,
            connection: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            secret: None,
        };
        let key = r#"{"type":"service_account","private_key":"-----BEGIN PRIVATE KEY-----"}"#;
        let url = warehouse_url(
            &source(&[
                ("project", "proj-1"),
                ("location", "EU"),
                ("dataset", "analytics"),
                ("maximum_bytes_billed", "5000000000"),
            ]),
            Some(key.into()),
        )
        .unwrap();
        let WarehouseUrl::BigQuery(bq) = &url else {
            panic!("not bigquery: {url}")
        };
        assert_eq!(bq.project, "proj-1");
        assert_eq!(bq.location.as_deref(), Some("EU"));
        assert_eq!(bq.dataset.as_deref(), Some("analytics"));
        assert_eq!(bq.maximum_bytes_billed, Some(5_000_000_000));
        assert_eq!(bq.credentials.as_ref().unwrap().expose(), key);
        assert!(!format!("{url} {url:?}").contains("PRIVATE"));

        for (pairs, why) in [
            (&[("location", "EU")][..], "no `project`"),
            (
                &[("project", "p"), ("maximum_bytes_billed", "lots")][..],
                "maximum_bytes_billed",
            ),
            (
                &[("project", "p"), ("endpoint", "http://bq.example")][..],
                "non-loopback",
            ),
            (
                &[("project", "p"), ("host", "x")][..],
                "connection key `host`",
            ),
        ] {
            let e = warehouse_url(&source(pairs), None).unwrap_err();
            assert!(e.to_string().contains(why), "{pairs:?}: {e}");
        }
    }

    #[test]
    fn a_snowflake_data_source_logs_in_with_its_secret_as_password_or_pem_key() {
        use crate::warehouse::SnowflakeAuth;
        let source: DataSource = serde_json::from_value(serde_json::json!({
            "id": "sf",
            "kind": "snowflake",
            "connection": { "account": "myorg-acme", "user": "PRDIFF", "database": "ANALYTICS",
                            "warehouse": "WH", "role": "READER" },
            "secret": "prdiff/data-source/sf"
        }))
        .unwrap();
        let WarehouseUrl::Snowflake(t) = warehouse_url(&source, Some("s3cret".into())).unwrap()
        else {
            panic!("not snowflake")
        };
        assert_eq!(
            t.auth,
            SnowflakeAuth::Password(crate::warehouse::Password::new("s3cret"))
        );
        assert_eq!(t.host, "myorg-acme.snowflakecomputing.com");
        assert_eq!((t.port, t.protocol.as_str()), (443, "https"));
        assert_eq!(t.role.as_deref(), Some("READER"));

        let pem = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg\n-----END PRIVATE KEY-----\n";
        let url = warehouse_url(&source, Some(pem.into())).unwrap();
        let WarehouseUrl::Snowflake(t) = &url else {
            panic!("not snowflake")
        };
        assert!(matches!(&t.auth, SnowflakeAuth::PrivateKeyPem(k) if k.expose() == pem));
        for shown in [url.to_string(), format!("{url:?}")] {
            assert!(
                !shown.contains("MIIEvQ") && !shown.contains("BEGIN"),
                "{shown}"
            );
        }
        let e = warehouse_url(&source, None).unwrap_err();
        assert!(e.to_string().contains("needs a secret"), "{e}");
    }

    #[test]
    fn a_databricks_data_source_uses_its_secret_as_token_or_oauth_client_secret() {
        use crate::warehouse::{DatabricksAuth, Password};
        let source = |connection: serde_json::Value| -> DataSource {
            serde_json::from_value(serde_json::json!({
                "id": "dbx",
                "kind": "databricks",
                "connection": connection,
                "secret": "prdiff/data-source/dbx"
            }))
            .unwrap()
        };
        let pat = source(serde_json::json!({
            "host": "https://dbc-1234.cloud.databricks.com/",
            "http_path": "/sql/1.0/warehouses/abc123",
            "catalog": "main", "schema": "analytics"
        }));
        let url = warehouse_url(&pat, Some("dapi-s3cret".into())).unwrap();
        let WarehouseUrl::Databricks(t) = &url else {
            panic!("not databricks")
        };
        assert_eq!(t.host, "dbc-1234.cloud.databricks.com");
        assert_eq!(t.warehouse_id, "abc123");
        assert_eq!(t.base_url(), "https://dbc-1234.cloud.databricks.com:443");
        assert_eq!(t.auth, DatabricksAuth::Token(Password::new("dapi-s3cret")));
        for shown in [url.to_string(), format!("{url:?}")] {
            assert!(!shown.contains("dapi-s3cret"), "{shown}");
        }
        let e = warehouse_url(&pat, None).unwrap_err();
        assert!(e.to_string().contains("needs a secret"), "{e}");

        let m2m = source(serde_json::json!({
            "host": "dbc-1234.cloud.databricks.com", "warehouse_id": "abc123",
            "client_id": "sp-uuid"
        }));
        let WarehouseUrl::Databricks(t) = warehouse_url(&m2m, Some("oauth-s3cret".into())).unwrap()
        else {
            panic!("not databricks")
        };
        assert_eq!(
            t.auth,
            DatabricksAuth::OAuthM2m {
                client_id: "sp-uuid".into(),
                client_secret: Password::new("oauth-s3cret")
            }
        );
        for (connection, why) in [
            (serde_json::json!({"warehouse_id": "w"}), "no `host`"),
            (serde_json::json!({"host": "h"}), "no `warehouse_id`"),
            (
                serde_json::json!({"host": "h", "warehouse_id": "w", "token": "x"}),
                "unknown connection key `token`",
            ),
            (
                serde_json::json!({"host": "h.example", "warehouse_id": "w", "protocol": "http"}),
                "this machine only",
            ),
        ] {
            let problems = data_source_problems(&source(connection));
            assert!(
                problems.iter().any(|p| p.contains(why)),
                "{why}: {problems:?}"
            );
        }
    }
}
