//! PostgreSQL (and Redshift) driver over tokio-postgres.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Mutex;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, NoTls};

use super::{ConnectOptions, Row, Warehouse, WarehouseError, WarehouseUrl};
use crate::sql::{Dialect, Postgres};

/// Connections kept for one diff: the engine runs the per-side counts beside the join.
const MAX_CONNECTIONS: usize = 3;

pub struct PostgresWarehouse {
    config: tokio_postgres::Config,
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
        let wh = PostgresWarehouse {
            config,
            target: url.to_string(),
            statement_timeout: options.statement_timeout,
            idle: Mutex::new(Vec::new()),
            no_worker_setting: AtomicBool::new(false),
        };
        // Connect once now so a bad URL or password fails before any work starts.
        let client = wh.new_client().await?;
        wh.idle.lock().await.push(client);
        Ok(wh)
    }

    async fn new_client(&self) -> Result<Client, WarehouseError> {
        let (client, connection) =
            self.config
                .connect(NoTls)
                .await
                .map_err(|e| WarehouseError::Connect {
                    target: self.target.clone(),
                    source: Box::new(e),
                })?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "postgres connection closed");
            }
        });
        let mut setup = Postgres.session_setup(self.statement_timeout.as_millis() as u64);
        // Filters come from PR yaml: the session can only read.
        setup.push("SET default_transaction_read_only = on".to_owned());
        client
            .batch_execute(&setup.join("; "))
            .await
            .map_err(|e| map_error(e, self.statement_timeout))?;
        Ok(client)
    }
}

#[async_trait]
impl Warehouse for PostgresWarehouse {
    fn dialect(&self) -> &'static dyn Dialect {
        &Postgres
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

impl PostgresWarehouse {
    /// Runs one statement on an idle connection (or a new one). `beside`: in a
    /// transaction that gives it no parallel workers (`SET LOCAL`, so the connection's
    /// settings are unchanged afterwards).
    async fn run(&self, sql: &str, beside: bool) -> Result<Vec<Row>, WarehouseError> {
        let mut client = match self.idle.lock().await.pop() {
            Some(c) if !c.is_closed() => c,
            _ => self.new_client().await?,
        };
        let started = std::time::Instant::now();
        let serial = beside && !self.no_worker_setting.load(Ordering::Relaxed);
        let result = match serial_statement(&mut client, sql, serial).await {
            Ok(Some(rows)) => Ok(rows),
            Ok(None) => {
                if serial {
                    self.no_worker_setting.store(true, Ordering::Relaxed);
                }
                // `query` uses the extended protocol: exactly one statement.
                client.query(sql, &[]).await
            }
            Err(e) => Err(e),
        };
        tracing::debug!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            ok = result.is_ok(),
            beside,
            sql,
            "postgres statement"
        );
        let rows = match result {
            Ok(rows) => rows,
            Err(e) => {
                if !client.is_closed() {
                    self.idle.lock().await.push(client);
                }
                return Err(map_error(e, self.statement_timeout));
            }
        };
        let mut idle = self.idle.lock().await;
        if idle.len() < MAX_CONNECTIONS {
            idle.push(client);
        }
        drop(idle);
        rows.iter().map(read_row).collect()
    }
}

/// With `serial`, one statement without parallel workers; a failure rolls the transaction
/// back when it is dropped, before the connection's next use. `None` when not `serial` or
/// when the server does not know the setting: the caller runs the statement as it is.
async fn serial_statement(
    client: &mut Client,
    sql: &str,
    serial: bool,
) -> Result<Option<Vec<tokio_postgres::Row>>, tokio_postgres::Error> {
    if !serial {
        return Ok(None);
    }
    let tx = client.transaction().await?;
    if let Err(e) = tx
        .batch_execute("SET LOCAL max_parallel_workers_per_gather = 0")
        .await
    {
        tracing::debug!(error = %e, "no max_parallel_workers_per_gather here");
        tx.rollback().await?;
        return Ok(None);
    }
    let rows = tx.query(sql, &[]).await?;
    tx.commit().await?;
    Ok(Some(rows))
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

fn map_error(e: tokio_postgres::Error, timeout: Duration) -> WarehouseError {
    if let Some(db) = e.as_db_error() {
        let code = db.code().code();
        let message = match db.detail() {
            Some(d) => format!("{} ({d}) [SQLSTATE {code}]", db.message()),
            None => format!("{} [SQLSTATE {code}]", db.message()),
        };
        return if code == "57014" {
            WarehouseError::Timeout(timeout)
        } else if code.starts_with("42") || code.starts_with("22") || code == "25006" {
            // Syntax or access rule violations, data exceptions, read-only violations.
            WarehouseError::Rejected { message }
        } else {
            WarehouseError::Other { message }
        };
    }
    WarehouseError::Other {
        message: e.to_string(),
    }
}
