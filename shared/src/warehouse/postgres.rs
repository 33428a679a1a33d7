//! PostgreSQL (and Redshift) driver over tokio-postgres, with TLS through rustls
//! ([`super::tls`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Mutex;
use tokio_postgres::Client;
use tokio_postgres::types::Type;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::{ConnectOptions, Row, Warehouse, WarehouseError, WarehouseUrl, error_text};
use crate::sql::{Dialect, Postgres, Redshift};

/// Connections kept for one diff: the engine runs the per-side counts beside the join.
const MAX_CONNECTIONS: usize = 3;

pub struct PostgresWarehouse {
    /// The connection settings; with Redshift IAM, the user and password are temporary
    /// and renewed before they expire ([`PostgresWarehouse::config`]).
    config: std::sync::Mutex<tokio_postgres::Config>,
    /// Redshift IAM: how to renew the credentials, and when.
    iam: Option<Iam>,
    tls: MakeRustlsConnect,
    dialect: &'static dyn Dialect,
    target: String,
    statement_timeout: Duration,
    idle: Mutex<Vec<Client>>,
    /// Set once the server refuses `max_parallel_workers_per_gather` (older PostgreSQL,
    /// Redshift): statements beside then run as they are, without asking again.
    no_worker_setting: AtomicBool,
}

impl PostgresWarehouse {
    pub async fn connect(
        url: &WarehouseUrl,
        options: &ConnectOptions,
    ) -> Result<Self, WarehouseError> {
        let WarehouseUrl::Postgres {
            user,
            password,
            host,
            port,
            database,
            options: server_options,
            tls,
            redshift,
            iam,
        } = url
        else {
            return Err(WarehouseError::NoDriver("this URL"));
        };
        let mut config = tokio_postgres::Config::new();
        config
            .user(user)
            .host(host)
            .port(*port)
            .dbname(database)
            .application_name("prdiff");
        config.connect_timeout(Duration::from_secs(15));
        if let Some(p) = password {
            config.password(p.expose());
        }
        if let Some(o) = server_options {
            config.options(o);
        }
        let (connector, ssl_mode) =
            super::tls::connector(tls).map_err(|e| WarehouseError::Connect {
                target: url.to_string(),
                source: e.into(),
                retryable: false,
            })?;
        config.ssl_mode(ssl_mode);
        let iam = match iam {
            None => None,
            Some(how) => Some(Iam::new(how, user, database, &url.to_string())?),
        };
        let wh = PostgresWarehouse {
            config: std::sync::Mutex::new(config),
            iam,
            tls: connector,
            dialect: if *redshift { &Redshift } else { &Postgres },
            target: url.to_string(),
            statement_timeout: options.statement_timeout,
            idle: Mutex::new(Vec::new()),
            // Redshift has no parallel query setting.
            no_worker_setting: AtomicBool::new(*redshift),
        };
        // Connect once now so a bad URL or password fails before any work starts.
        let client = wh.new_client().await?;
        wh.idle.lock().await.push(client);
        Ok(wh)
    }

    /// The settings for a new connection, with fresh IAM credentials when they are due.
    async fn config(&self) -> Result<tokio_postgres::Config, WarehouseError> {
        if let Some(iam) = &self.iam
            && let Some((user, password)) = iam.due().await?
        {
            let mut config = self.config.lock().expect("config lock");
            config.user(&user).password(password);
        }
        Ok(self.config.lock().expect("config lock").clone())
    }

    async fn new_client(&self) -> Result<Client, WarehouseError> {
        let (client, connection) = self
            .config()
            .await?
            .connect(self.tls.clone())
            .await
            .map_err(|e| connect_error(&self.target, e))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "postgres connection closed");
            }
        });
        Ok(client)
    }
}

#[async_trait]
impl Warehouse for PostgresWarehouse {
    fn dialect(&self) -> &'static dyn Dialect {
        self.dialect
    }

    fn parallelism(&self) -> usize {
        MAX_CONNECTIONS
    }

    async fn query(&self, sql: &str) -> Result<Vec<Row>, WarehouseError> {
        self.run(sql, false).await
    }

    async fn query_beside(&self, sql: &str) -> Result<Vec<Row>, WarehouseError> {
        self.run(sql, true).await
    }
}

/// How long past the statement timeout the client waits before it cancels the statement
/// itself (the server's own timeout should have fired by then).
const CLIENT_GRACE: Duration = Duration::from_secs(1);

impl PostgresWarehouse {
    /// Runs one statement on an idle connection (or a new one), in its own read-only
    /// transaction with its own settings ([`Dialect::statement_setup`], `SET LOCAL`), and
    /// rolls that transaction back: nothing the statement did to the session (a
    /// `set_config`, a large object) outlives it. `beside`: also without parallel workers.
    ///
    /// If the statement outlives its timeout by [`CLIENT_GRACE`], or the caller stops
    /// waiting (the future is dropped), a cancel request is sent to the server and the
    /// connection is discarded.
    async fn run(&self, sql: &str, beside: bool) -> Result<Vec<Row>, WarehouseError> {
        let mut client = match self.idle.lock().await.pop() {
            Some(c) if !c.is_closed() => c,
            _ => self.new_client().await?,
        };
        let mut cancel = CancelOnDrop(Some((client.cancel_token(), self.tls.clone())));
        let started = std::time::Instant::now();
        let serial = beside && !self.no_worker_setting.load(Ordering::Relaxed);
        let limit = self.statement_timeout + CLIENT_GRACE;
        let result =
            match tokio::time::timeout(limit, self.statement(&mut client, sql, serial)).await {
                Ok(r) => r,
                Err(_) => {
                    tracing::warn!(
                        timeout_ms = self.statement_timeout.as_millis() as u64,
                        "statement outlived its timeout: cancelling it on the server"
                    );
                    // `cancel` fires when dropped here; the connection is not reused.
                    return Err(WarehouseError::Timeout(self.statement_timeout));
                }
            };
        cancel.0 = None;
        tracing::debug!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            ok = result.is_ok(),
            beside,
            sql,
            "postgres statement"
        );
        if !client.is_closed() {
            let mut idle = self.idle.lock().await;
            if idle.len() < MAX_CONNECTIONS {
                idle.push(client);
            }
        }
        let rows = result.map_err(|e| map_error(e, self.statement_timeout))?;
        rows.iter().map(read_row).collect()
    }

    /// `BEGIN READ ONLY`, the statement's settings, the statement, `ROLLBACK`. A failure
    /// rolls the transaction back when it is dropped, before the connection's next use.
    async fn statement(
        &self,
        client: &mut Client,
        sql: &str,
        serial: bool,
    ) -> Result<Vec<tokio_postgres::Row>, tokio_postgres::Error> {
        let setup = self
            .dialect
            .statement_setup(self.statement_timeout.as_millis() as u64)
            .join("; ");
        let tx = client.build_transaction().read_only(true).start().await?;
        tx.batch_execute(&setup).await?;
        if serial
            && let Err(e) = tx
                .batch_execute("SET LOCAL max_parallel_workers_per_gather = 0")
                .await
        {
            // A server without the setting (older PostgreSQL): run the statement as
            // it is, in a new transaction, and stop asking.
            tracing::debug!(error = %e, "no max_parallel_workers_per_gather here");
            self.no_worker_setting.store(true, Ordering::Relaxed);
            tx.rollback().await?;
            return Box::pin(self.statement(client, sql, false)).await;
        }
        // `query` uses the extended protocol: exactly one statement.
        let rows = tx.query(sql, &[]).await?;
        tx.rollback().await?;
        Ok(rows)
    }
}

/// Redshift IAM authentication: the settings and the current credentials' renewal time.
struct Iam {
    #[cfg_attr(not(feature = "redshift-iam"), allow(dead_code))]
    how: super::RedshiftIam,
    #[cfg_attr(not(feature = "redshift-iam"), allow(dead_code))]
    user: String,
    #[cfg_attr(not(feature = "redshift-iam"), allow(dead_code))]
    database: String,
    #[cfg_attr(not(feature = "redshift-iam"), allow(dead_code))]
    target: String,
    #[cfg_attr(not(feature = "redshift-iam"), allow(dead_code))]
    refresh_at: Mutex<Option<std::time::SystemTime>>,
}

impl Iam {
    fn new(
        how: &super::RedshiftIam,
        user: &str,
        database: &str,
        target: &str,
    ) -> Result<Self, WarehouseError> {
        if cfg!(not(feature = "redshift-iam")) {
            return Err(WarehouseError::NoDriver(
                "Redshift IAM authentication (cargo feature redshift-iam)",
            ));
        }
        Ok(Iam {
            how: how.clone(),
            user: user.to_owned(),
            database: database.to_owned(),
            target: target.to_owned(),
            refresh_at: Mutex::new(None),
        })
    }

    /// New credentials when none were fetched yet or they are about to expire.
    #[cfg(feature = "redshift-iam")]
    async fn due(&self) -> Result<Option<(String, String)>, WarehouseError> {
        let mut refresh_at = self.refresh_at.lock().await;
        if refresh_at.is_some_and(|t| std::time::SystemTime::now() < t) {
            return Ok(None);
        }
        // Boxed: the AWS SDK's futures are deep, and every caller's future would carry them.
        let c = Box::pin(super::redshift_iam::credentials(
            &self.how,
            &self.user,
            &self.database,
            &self.target,
        ))
        .await?;
        *refresh_at = Some(c.refresh_at);
        Ok(Some((c.user, c.password)))
    }

    #[cfg(not(feature = "redshift-iam"))]
    async fn due(&self) -> Result<Option<(String, String)>, WarehouseError> {
        Ok(None)
    }
}

/// Sends a cancel request for the connection's running statement when dropped while set:
/// a client-side timeout, or a caller that stopped waiting, must not leave the statement
/// running on the server.
struct CancelOnDrop(Option<(tokio_postgres::CancelToken, MakeRustlsConnect)>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        let Some((token, tls)) = self.0.take() else {
            return;
        };
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Err(e) = token.cancel_query(tls).await {
                    tracing::warn!(error = %e, "could not cancel a statement on the server");
                }
            });
        }
    }
}

fn read_row(row: &tokio_postgres::Row) -> Result<Row, WarehouseError> {
    let mut out = Vec::with_capacity(row.len());
    for (i, col) in row.columns().iter().enumerate() {
        let ty = col.type_();
        let v = if *ty == Type::INT8 {
            row.try_get::<_, Option<i64>>(i)
                .map(|v| v.map(|x| x.to_string()))
        } else if *ty == Type::INT4 {
            row.try_get::<_, Option<i32>>(i)
                .map(|v| v.map(|x| x.to_string()))
        } else if *ty == Type::INT2 {
            row.try_get::<_, Option<i16>>(i)
                .map(|v| v.map(|x| x.to_string()))
        } else if *ty == Type::FLOAT8 {
            row.try_get::<_, Option<f64>>(i)
                .map(|v| v.map(|x| x.to_string()))
        } else if *ty == Type::FLOAT4 {
            row.try_get::<_, Option<f32>>(i)
                .map(|v| v.map(|x| x.to_string()))
        } else if *ty == Type::BOOL {
            row.try_get::<_, Option<bool>>(i)
                .map(|v| v.map(|x| x.to_string()))
        } else {
            // TEXT, VARCHAR, NAME, BPCHAR, and anything else with a text-compatible wire form.
            row.try_get::<_, Option<String>>(i)
        };
        out.push(v.map_err(|e| WarehouseError::Other {
            message: format!(
                "column {} of type {ty} could not be read as text: {e}",
                col.name()
            ),
        })?);
    }
    Ok(out)
}

/// The warehouse's error as prdiff reports it: the SQLSTATE class and code and the
/// server's message, never its DETAIL (which can carry row values, e.g. "Failing row
/// contains …"); in data exceptions (class 22) quoted values are replaced by `"…"`, since
/// they come from the rows. Capped at [`MAX_ERROR_TEXT`](super::MAX_ERROR_TEXT).
fn map_error(e: tokio_postgres::Error, timeout: Duration) -> WarehouseError {
    if let Some(db) = e.as_db_error() {
        let code = db.code().code();
        let message = describe_db_error(db);
        return if code == "57014" {
            WarehouseError::Timeout(timeout)
        } else if permanent_access_error(code) {
            WarehouseError::Denied { message }
        } else if code.starts_with("42") || code.starts_with("22") || code == "25006" {
            // Syntax or access rule violations, data exceptions, read-only violations.
            WarehouseError::Rejected { message }
        } else {
            WarehouseError::Other { message }
        };
    }
    WarehouseError::Other {
        message: error_text(&crate::error_chain(&e)),
    }
}

/// Authentication (class 28: wrong password, no `pg_hba.conf` entry, …) and missing
/// privileges (42501): retrying cannot help.
fn permanent_access_error(code: &str) -> bool {
    code.starts_with("28") || code == "42501"
}

/// The server's error in prdiff's words: class, SQLSTATE, message and hint (see
/// [`map_error`] for what is left out and redacted).
fn describe_db_error(db: &tokio_postgres::error::DbError) -> String {
    let code = db.code().code();
    let text = if code.starts_with("22") {
        redact_quoted(db.message())
    } else {
        db.message().to_owned()
    };
    error_text(&match db.hint() {
        Some(h) => format!(
            "{} [SQLSTATE {code}]: {text} (hint: {h})",
            sqlstate_class(code)
        ),
        None => format!("{} [SQLSTATE {code}]: {text}", sqlstate_class(code)),
    })
}

/// A failed connection, with the server's own message (tokio-postgres says only "db
/// error" for it). Retrying cannot help when the server refused who we are or what we
/// asked for (authentication, an unknown database, a refused or failed TLS handshake); it
/// can when the server was unreachable or busy.
fn connect_error(target: &str, e: tokio_postgres::Error) -> WarehouseError {
    let (retryable, message) = match e.as_db_error() {
        Some(db) => {
            let code = db.code().code();
            let permanent =
                permanent_access_error(code) || code.starts_with("3D") || code.starts_with("42");
            (!permanent, describe_db_error(db))
        }
        None => {
            let text = crate::error_chain(&e);
            let lower = text.to_lowercase();
            let tls =
                lower.contains("tls") || lower.contains("certificate") || lower.contains("ssl");
            (!tls, error_text(&text))
        }
    };
    WarehouseError::Connect {
        target: target.to_owned(),
        source: message.into(),
        retryable,
    }
}

/// The name of a SQLSTATE class
/// (<https://www.postgresql.org/docs/current/errcodes-appendix.html>).
fn sqlstate_class(code: &str) -> &'static str {
    if code == "42501" {
        return "insufficient privilege";
    }
    match code.get(..2).unwrap_or("") {
        "08" => "connection exception",
        "0A" => "feature not supported",
        "22" => "data exception",
        "25" => "invalid transaction state",
        "28" => "invalid authorization specification",
        "3D" => "invalid catalog name",
        "3F" => "invalid schema name",
        "40" => "transaction rollback",
        "42" => "syntax error or access rule violation",
        "53" => "insufficient resources",
        "54" => "program limit exceeded",
        "55" => "object not in prerequisite state",
        "57" => "operator intervention",
        "58" => "system error",
        "XX" => "internal error",
        _ => "error",
    }
}

/// `text` with every double-quoted part replaced by `"…"`.
fn redact_quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut inside = false;
    for c in text.chars() {
        if c == '"' {
            if !inside {
                out.push_str("\"…");
            }
            inside = !inside;
            if !inside {
                out.push('"');
            }
        } else if !inside {
            out.push(c);
        }
    }
    if inside {
        out.push('"');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_in_data_exceptions_are_redacted() {
        assert_eq!(
            redact_quoted(r#"invalid input syntax for type integer: "95000 USD""#),
            r#"invalid input syntax for type integer: "…""#
        );
        assert_eq!(
            redact_quoted(r#"value "12345678901" is out of range for type integer"#),
            r#"value "…" is out of range for type integer"#
        );
        assert_eq!(redact_quoted("division by zero"), "division by zero");
        assert_eq!(redact_quoted(r#"dangling "secret"#), r#"dangling "…""#);
    }

    #[test]
    fn sqlstate_classes_are_named() {
        assert_eq!(sqlstate_class("57014"), "operator intervention");
        assert_eq!(
            sqlstate_class("28P01"),
            "invalid authorization specification"
        );
        assert_eq!(sqlstate_class("?"), "error");
    }
}
