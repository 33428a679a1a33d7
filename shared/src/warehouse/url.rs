//! Warehouse URLs as operators write them.

use std::fmt;
use std::path::PathBuf;

use super::secret::Password;

/// A parsed warehouse URL. `Display` never shows the password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WarehouseUrl {
    /// `postgres://user[:password]@host[:port]/db[?options=…]`
    Postgres {
        user: String,
        password: Option<Password>,
        host: String,
        port: u16,
        database: String,
        /// Server options (`-c work_mem=256MB`), from the `options` query parameter.
        options: Option<String>,
    },
    /// `sqlite:PATH[?attach=NAME=PATH&…]`: each attached database is a schema.
    Sqlite {
        path: PathBuf,
        attach: Vec<(String, PathBuf)>,
    },
    /// `snowflake://USER[:PASSWORD]@ACCOUNT/DATABASE?warehouse=…&role=…&schema=…&private_key_path=…&host=…&port=…&protocol=https|http`
    Snowflake(SnowflakeTarget),
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

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WarehouseUrlError {
    #[error("warehouse URL `{0}` has an unsupported scheme (expected postgres://… or sqlite:PATH)")]
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
            let rest = rest.strip_prefix("//").unwrap_or(rest);
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
            return Ok(WarehouseUrl::Sqlite {
                path: PathBuf::from(decode(path)),
                attach,
            });
        }
        let parsed = ::url::Url::parse(input).map_err(|e| {
            if input.contains("://") {
                malformed(&redact(input), &e.to_string())
            } else {
                WarehouseUrlError::Scheme(redact(input))
            }
        })?;
        match parsed.scheme() {
            "postgres" | "postgresql" => {
                let shown = redact(input);
                let host = parsed
                    .host_str()
                    .filter(|h| !h.is_empty())
                    .ok_or_else(|| malformed(&shown, "no host"))?;
                let user = decode(parsed.username());
                if user.is_empty() {
                    return Err(malformed(&shown, "no user (postgres://USER@host/db)"));
                }
                let database = decode(parsed.path().trim_start_matches('/'));
                if database.is_empty() {
                    return Err(malformed(
                        &shown,
                        "no database name (postgres://user@host/DB)",
                    ));
                }
                let password = parsed
                    .password()
                    .map(|p| Password::new(decode(p)))
                    .or(pg_password.map(Password::new));
                let mut options = None;
                for (k, v) in parsed.query_pairs() {
                    match &*k {
                        "options" => options = Some(v.into_owned()),
                        "sslmode" if v == "disable" || v == "prefer" => {}
                        other => {
                            return Err(malformed(
                                &shown,
                                &format!("unsupported parameter `{other}`"),
                            ));
                        }
                    }
                }
                Ok(WarehouseUrl::Postgres {
                    user,
                    password,
                    host: host
                        .trim_start_matches('[')
                        .trim_end_matches(']')
                        .to_owned(),
                    port: parsed.port().unwrap_or(5432),
                    database,
                    options,
                })
            }
            "snowflake" => parse_snowflake(&parsed, &redact(input)).map(WarehouseUrl::Snowflake),
            _ => Err(WarehouseUrlError::Scheme(redact(input))),
        }
    }

    /// The SQL dialect of the warehouse this URL names (known before connecting, e.g. to
    /// resolve relation names the way the warehouse will).
    pub fn dialect(&self) -> &'static dyn crate::sql::Dialect {
        match self {
            WarehouseUrl::Postgres { .. } => &crate::sql::Postgres,
            WarehouseUrl::Sqlite { .. } => &crate::sql::Sqlite,
            WarehouseUrl::Snowflake(_) => &crate::sql::Snowflake,
        }
    }

    /// `postgres`, `sqlite` or `snowflake`.
    pub fn kind(&self) -> &'static str {
        match self {
            WarehouseUrl::Postgres { .. } => "postgres",
            WarehouseUrl::Sqlite { .. } => "sqlite",
            WarehouseUrl::Snowflake(_) => "snowflake",
        }
    }
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
    let auth = match (parsed.password(), key_path) {
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
    };
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
                ..
            } => {
                write!(f, "postgres://{user}@{host}:{port}/{database}")
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
