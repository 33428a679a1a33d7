//! Least privilege on the PostgreSQL test cluster: roles with only CONNECT + USAGE +
//! SELECT get no warning; each write or administrative right added to one gets its own
//! warning, whose revoke statement takes it away again; `config check` connects with the
//! stored secret and reports warnings without failing.
//!
//! Every test makes its own roles (unique names) and drops them at the end, also when an
//! assertion fails.

use std::future::Future;

use prdiff_shared::app::apply;
use prdiff_shared::config::ConfigId;
use prdiff_shared::dbtcloud::memory::MemoryDbtCloud;
use prdiff_shared::secrets::local::LocalSecrets;
use prdiff_shared::sql::Relation;
use prdiff_shared::store::embedded::EmbeddedStore;
use prdiff_shared::warehouse::{
    self, ConnectOptions, PrivilegeScope, PrivilegeWarning, WarehouseUrl,
};

/// A schema with two tables, and the roles a test creates; `drop_all` removes them.
struct Fixture {
    db: String,
    schema: String,
    roles: Vec<String>,
}

impl Fixture {
    async fn new() -> Self {
        let schema = prdiff_tests::pg_schema("priv").await;
        let client = prdiff_tests::pg_client().await;
        client
            .batch_execute(&format!(
                "CREATE TABLE \"{schema}\".orders (id int PRIMARY KEY, amount int); \
                 CREATE TABLE \"{schema}\".payments (id int PRIMARY KEY, order_id int)"
            ))
            .await
            .unwrap();
        let db: String = client
            .query_one("SELECT current_database()::text", &[])
            .await
            .unwrap()
            .get(0);
        Fixture {
            db,
            schema,
            roles: Vec::new(),
        }
    }

    /// A login role that may only connect, use the schema and read its tables.
    async fn reader(&mut self) -> String {
        let role = prdiff_tests::unique_name("prdiff_reader");
        self.roles.push(role.clone());
        let (db, schema) = (&self.db, &self.schema);
        superuser(&format!(
            "CREATE ROLE \"{role}\" LOGIN; \
             GRANT CONNECT ON DATABASE \"{db}\" TO \"{role}\"; \
             GRANT USAGE ON SCHEMA \"{schema}\" TO \"{role}\"; \
             GRANT SELECT ON ALL TABLES IN SCHEMA \"{schema}\" TO \"{role}\""
        ))
        .await;
        role
    }

    /// Runs `body`, then drops the roles and the schema whatever happened, then passes a
    /// failure of `body` on.
    async fn run(self, body: impl Future<Output = ()> + Send + 'static) {
        let outcome = tokio::spawn(body).await;
        for role in &self.roles {
            // Revokes its grants (database included) and drops what it owns, then the role.
            superuser(&format!(
                "DROP OWNED BY \"{role}\" CASCADE; DROP ROLE \"{role}\""
            ))
            .await;
        }
        superuser(&format!("DROP SCHEMA \"{}\" CASCADE", self.schema)).await;
        if let Err(e) = outcome {
            std::panic::resume_unwind(e.into_panic());
        }
    }
}

/// Runs `sql` as the cluster's superuser. Grants on the one database (and DROP OWNED,
/// which revokes them) update the same catalog row, which PostgreSQL refuses to do from two
/// sessions at once ("tuple concurrently updated"): tests running beside each other retry.
async fn superuser(sql: &str) {
    let client = prdiff_tests::pg_client().await;
    let mut attempt = 0;
    loop {
        match client.batch_execute(sql).await {
            Ok(()) => return,
            Err(e)
                if attempt < 50
                    && e.as_db_error()
                        .is_some_and(|d| d.message() == "tuple concurrently updated") =>
            {
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            Err(e) => panic!("{sql}: {e:?}"),
        }
    }
}

/// The test cluster's URL with another user (the cluster trusts local connections).
fn url_as(role: &str) -> String {
    let mut url = url::Url::parse(&prdiff_tests::pg_url()).unwrap();
    url.set_username(role).unwrap();
    url.to_string()
}

async fn warnings_as(role: &str, scope: &PrivilegeScope) -> Vec<PrivilegeWarning> {
    let url = WarehouseUrl::parse(&url_as(role), None).unwrap();
    let wh = warehouse::connect(&url, &ConnectOptions::default())
        .await
        .unwrap();
    warehouse::privilege_warnings(wh.as_ref(), scope)
        .await
        .unwrap()
}

fn names(warnings: &[PrivilegeWarning]) -> Vec<&str> {
    warnings.iter().map(|w| w.privilege.as_str()).collect()
}

/// The first statement of a warning's revoke text (up to its `;`).
fn first_statement(w: &PrivilegeWarning) -> String {
    let end = w.revoke.find(';').expect("a revoke statement ends with ;");
    w.revoke[..=end].to_owned()
}

#[tokio::test]
async fn a_role_with_only_connect_usage_and_select_gets_no_warning() {
    let mut f = Fixture::new().await;
    let role = f.reader().await;
    let schema = f.schema.clone();
    f.run(async move {
        assert_eq!(
            warnings_as(&role, &PrivilegeScope::AllSchemas).await,
            [],
            "CONNECT + USAGE + SELECT is read-only"
        );
        let sampled = PrivilegeScope::Relations(vec![
            Relation::new(None, Some(&schema), "orders"),
            Relation::new(None, Some(&schema), "payments"),
        ]);
        assert_eq!(warnings_as(&role, &sampled).await, []);
    })
    .await;
}

#[tokio::test]
async fn insert_on_one_table_is_one_warning_naming_it_and_its_revoke_clears_it() {
    let mut f = Fixture::new().await;
    let role = f.reader().await;
    let schema = f.schema.clone();
    f.run(async move {
        superuser(&format!(
            "GRANT INSERT ON \"{schema}\".payments TO \"{role}\""
        ))
        .await;
        let w = warnings_as(&role, &PrivilegeScope::AllSchemas).await;
        assert_eq!(names(&w), ["INSERT on tables"], "{w:?}");
        assert!(
            w[0].detail.contains(&format!(
                "INSERT on 1 table or view it does not own: {schema}.payments"
            )),
            "{}",
            w[0]
        );
        let revoke = first_statement(&w[0]);
        assert_eq!(
            revoke,
            format!("REVOKE INSERT ON {schema}.payments FROM \"{role}\";")
        );
        superuser(&revoke).await;
        assert_eq!(warnings_as(&role, &PrivilegeScope::AllSchemas).await, []);
    })
    .await;
}

#[tokio::test]
async fn update_delete_and_truncate_are_each_their_own_warning() {
    let mut f = Fixture::new().await;
    let role = f.reader().await;
    let schema = f.schema.clone();
    f.run(async move {
        superuser(&format!(
            "GRANT UPDATE (amount) ON \"{schema}\".orders TO \"{role}\"; \
             GRANT DELETE, TRUNCATE ON ALL TABLES IN SCHEMA \"{schema}\" TO \"{role}\""
        ))
        .await;
        let w = warnings_as(&role, &PrivilegeScope::AllSchemas).await;
        // A column grant counts: UPDATE of one column is a write.
        assert_eq!(
            names(&w),
            ["UPDATE on tables", "DELETE on tables", "TRUNCATE on tables"],
            "{w:?}"
        );
        assert!(w[1].detail.contains("on 2 tables or views"), "{}", w[1]);
        assert!(
            w[1].revoke
                .starts_with("REVOKE DELETE ON ALL TABLES IN SCHEMA <schema> FROM"),
            "{}",
            w[1]
        );
    })
    .await;
}

#[tokio::test]
async fn create_on_a_schema_is_one_warning_and_its_revoke_clears_it() {
    let mut f = Fixture::new().await;
    let role = f.reader().await;
    let schema = f.schema.clone();
    f.run(async move {
        superuser(&format!(
            "GRANT CREATE ON SCHEMA \"{schema}\" TO \"{role}\""
        ))
        .await;
        let w = warnings_as(&role, &PrivilegeScope::AllSchemas).await;
        assert_eq!(names(&w), ["CREATE on schemas"], "{w:?}");
        assert!(
            w[0].detail.ends_with(&format!("1 schema: {schema}")),
            "{}",
            w[0]
        );
        // The schemas of the sampled relations are checked too.
        let sampled = PrivilegeScope::Relations(vec![Relation::new(None, Some(&schema), "orders")]);
        assert_eq!(
            names(&warnings_as(&role, &sampled).await),
            ["CREATE on schemas"]
        );
        let revoke = first_statement(&w[0]);
        assert_eq!(
            revoke,
            format!("REVOKE CREATE ON SCHEMA \"{schema}\" FROM \"{role}\";")
        );
        superuser(&revoke).await;
        assert_eq!(warnings_as(&role, &PrivilegeScope::AllSchemas).await, []);
    })
    .await;
}

#[tokio::test]
async fn a_superuser_gets_the_superuser_warning_alone() {
    let mut f = Fixture::new().await;
    let role = f.reader().await;
    f.run(async move {
        superuser(&format!("ALTER ROLE \"{role}\" SUPERUSER")).await;
        let w = warnings_as(&role, &PrivilegeScope::AllSchemas).await;
        assert_eq!(names(&w), ["SUPERUSER"], "{w:?}");
        assert_eq!(
            first_statement(&w[0]),
            format!("ALTER ROLE \"{role}\" NOSUPERUSER;")
        );
        superuser(&first_statement(&w[0])).await;
        assert_eq!(warnings_as(&role, &PrivilegeScope::AllSchemas).await, []);
    })
    .await;
}

#[tokio::test]
async fn membership_in_pg_write_all_data_is_reported_with_the_writes_it_brings() {
    let mut f = Fixture::new().await;
    let role = f.reader().await;
    let schema = f.schema.clone();
    f.run(async move {
        superuser(&format!("GRANT pg_write_all_data TO \"{role}\"")).await;
        let w = warnings_as(&role, &PrivilegeScope::AllSchemas).await;
        let n = names(&w);
        assert!(n.contains(&"member of pg_write_all_data"), "{n:?}");
        // It writes every table: the sampled ones say so too.
        let sampled = PrivilegeScope::Relations(vec![Relation::new(None, Some(&schema), "orders")]);
        let s = warnings_as(&role, &sampled).await;
        assert_eq!(
            names(&s),
            [
                "INSERT on tables",
                "UPDATE on tables",
                "DELETE on tables",
                "member of pg_write_all_data"
            ],
            "{s:?}"
        );
        let revoke = first_statement(&s[3]);
        assert_eq!(revoke, format!("REVOKE pg_write_all_data FROM \"{role}\";"));
        superuser(&revoke).await;
        assert_eq!(warnings_as(&role, &PrivilegeScope::AllSchemas).await, []);
    })
    .await;
}

#[tokio::test]
async fn role_attributes_database_create_and_table_ownership_are_each_reported() {
    let mut f = Fixture::new().await;
    let role = f.reader().await;
    let (schema, db) = (f.schema.clone(), f.db.clone());
    f.run(async move {
        superuser(&format!(
            "ALTER ROLE \"{role}\" CREATEROLE CREATEDB BYPASSRLS; \
             GRANT CREATE ON DATABASE \"{db}\" TO \"{role}\"; \
             ALTER TABLE \"{schema}\".orders OWNER TO \"{role}\""
        ))
        .await;
        let w = warnings_as(&role, &PrivilegeScope::AllSchemas).await;
        assert_eq!(
            names(&w),
            [
                "CREATEROLE",
                "CREATEDB",
                "BYPASSRLS",
                "CREATE on database",
                "owner of tables"
            ],
            "{w:?}"
        );
        assert!(
            w[4].detail
                .contains(&format!("owns 1 table or view: {schema}.orders")),
            "{}",
            w[4]
        );
        // Each attribute's revoke statement is valid and clears it.
        for attribute in &w[..4] {
            superuser(&first_statement(attribute)).await;
        }
        assert_eq!(
            names(&warnings_as(&role, &PrivilegeScope::AllSchemas).await),
            ["owner of tables"]
        );
    })
    .await;
}

#[tokio::test]
async fn with_known_relations_only_those_tables_are_checked() {
    let mut f = Fixture::new().await;
    let role = f.reader().await;
    let schema = f.schema.clone();
    f.run(async move {
        superuser(&format!(
            "GRANT INSERT ON \"{schema}\".payments TO \"{role}\""
        ))
        .await;
        let orders = PrivilegeScope::Relations(vec![Relation::new(None, Some(&schema), "orders")]);
        assert_eq!(warnings_as(&role, &orders).await, []);
        let payments =
            PrivilegeScope::Relations(vec![Relation::new(None, Some(&schema), "payments")]);
        assert_eq!(
            names(&warnings_as(&role, &payments).await),
            ["INSERT on tables"]
        );
    })
    .await;
}

/// A configuration whose data source is the test cluster as `user` (database `db`), stored
/// in an embedded store with an in-memory dbt Cloud that knows its account and jobs.
async fn stored_config(
    dir: &std::path::Path,
    user: &str,
    db: &str,
) -> (EmbeddedStore, LocalSecrets, MemoryDbtCloud) {
    let pg = url::Url::parse(&prdiff_tests::pg_url()).unwrap();
    // The cluster trusts local connections: the password is read and sent, not needed.
    std::fs::write(dir.join("wh.password"), "unused-password\n").unwrap();
    let source = format!(
        r#"kind = "postgres"
connection = {{ host = "{host}", port = "{port}", database = "{db}", user = "{user}" }}
secret = {{ file = "wh.password" }}"#,
        host = pg.host_str().unwrap(),
        port = pg.port().unwrap(),
    );
    stored_config_with(dir, &source).await
}

/// As [`stored_config`], with the data source's `kind`, `connection` and `secret` lines.
async fn stored_config_with(
    dir: &std::path::Path,
    source: &str,
) -> (EmbeddedStore, LocalSecrets, MemoryDbtCloud) {
    std::fs::write(dir.join("dbt.key"), "dbtc_key\n").unwrap();
    std::fs::write(dir.join("gh.token"), "ghp_token\n").unwrap();
    let text = format!(
        r#"
[[data_source]]
id = "warehouse"
{source}

[[ci_config]]
name = "analytics"
data_source = "warehouse"
repository = {{ provider = "github", full_name = "acme/analytics" }}
git_auth = {{ kind = "token", token = {{ file = "gh.token" }} }}
dbt_cloud = {{ access_url = "https://cloud.getdbt.com", account_id = 1, api_key = {{ file = "dbt.key" }}, artifacts_job_id = 10, pr_job_id = 11 }}
"#
    );
    let store = EmbeddedStore::open(&dir.join("prdiff.db")).unwrap();
    let secrets = LocalSecrets::with_env_and_dir(Some(dir.join("secrets")));
    let dbt = MemoryDbtCloud::new();
    dbt.add_account(1, "Acme", &[(10, "artifacts"), (11, "ci")]);
    apply::apply(&text, dir, &store, &secrets, &dbt, true)
        .await
        .unwrap();
    (store, secrets, dbt)
}

fn show(lines: &[apply::CheckLine]) -> String {
    lines
        .iter()
        .map(|l| format!("{} {} {}: {}\n", l.ok, l.warning, l.what, l.detail))
        .collect()
}

#[tokio::test]
async fn config_check_connects_with_the_stored_secret_and_warns_without_failing() {
    let mut f = Fixture::new().await;
    let reader = f.reader().await;
    let writer = f.reader().await;
    let (schema, db) = (f.schema.clone(), f.db.clone());
    f.run(async move {
        let id = ConfigId::parse("analytics").unwrap();

        // A read-only role: every line ok, none a warning.
        let dir = tempfile::tempdir().unwrap();
        let (store, secrets, dbt) = stored_config(dir.path(), &reader, &db).await;
        let lines = apply::check(&id, &store, &secrets, &dbt, true)
            .await
            .unwrap()
            .unwrap();
        assert!(lines.iter().all(|l| l.ok && !l.warning), "{}", show(&lines));
        let conn = lines
            .iter()
            .find(|l| l.what == "warehouse connection")
            .expect("a connection line");
        assert!(conn.detail.contains("SELECT 1 ran"), "{}", conn.detail);
        assert!(!conn.detail.contains("unused-password"), "{}", conn.detail);
        let privileges = lines.last().unwrap();
        assert_eq!(privileges.what, "warehouse privileges");
        assert!(
            privileges.detail.starts_with("read-only"),
            "{}",
            privileges.detail
        );

        // Without the warehouse check, no warehouse line.
        let lines = apply::check(&id, &store, &secrets, &dbt, false)
            .await
            .unwrap()
            .unwrap();
        assert!(!lines.iter().any(|l| l.what.starts_with("warehouse")));

        // A role that can write: warnings, and the check still passes.
        superuser(&format!(
            "GRANT INSERT ON \"{schema}\".orders TO \"{writer}\"; \
             GRANT CREATE ON SCHEMA \"{schema}\" TO \"{writer}\""
        ))
        .await;
        let dir = tempfile::tempdir().unwrap();
        let (store, secrets, dbt) = stored_config(dir.path(), &writer, &db).await;
        let lines = apply::check(&id, &store, &secrets, &dbt, true)
            .await
            .unwrap()
            .unwrap();
        assert!(lines.iter().all(|l| l.ok), "{}", show(&lines));
        let warned: Vec<&str> = lines
            .iter()
            .filter(|l| l.warning)
            .map(|l| l.what.as_str())
            .collect();
        assert_eq!(
            warned,
            [
                "warehouse privilege CREATE on schemas",
                "warehouse privilege INSERT on tables"
            ],
            "{}",
            show(&lines)
        );
        assert!(
            lines.iter().any(|l| l.detail.contains(&format!(
                "revoke: REVOKE INSERT ON {schema}.orders FROM \"{writer}\";"
            ))),
            "{}",
            show(&lines)
        );

        // A warehouse that refuses: the line fails with the warehouse's own words.
        let dir = tempfile::tempdir().unwrap();
        let (store, secrets, dbt) =
            stored_config(dir.path(), &reader, "prdiff_no_such_database").await;
        let lines = apply::check(&id, &store, &secrets, &dbt, true)
            .await
            .unwrap()
            .unwrap();
        let failed: Vec<_> = lines.iter().filter(|l| !l.ok).collect();
        assert_eq!(failed.len(), 1, "{}", show(&lines));
        assert_eq!(failed[0].what, "warehouse connection");
        assert!(
            failed[0]
                .detail
                .contains("database \"prdiff_no_such_database\" does not exist"),
            "{}",
            failed[0].detail
        );
    })
    .await;
}

#[tokio::test]
async fn config_check_on_sqlite_opens_an_existing_file_says_privileges_are_unchecked_and_creates_none()
 {
    let id = ConfigId::parse("analytics").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("warehouse.db");
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch("CREATE TABLE orders (id INTEGER PRIMARY KEY)")
        .unwrap();
    let source = format!(
        "kind = \"sqlite\"\nconnection = {{ path = \"{}\" }}",
        db.display()
    );
    let (store, secrets, dbt) = stored_config_with(dir.path(), &source).await;
    let lines = apply::check(&id, &store, &secrets, &dbt, true)
        .await
        .unwrap()
        .unwrap();
    assert!(lines.iter().all(|l| l.ok && !l.warning), "{}", show(&lines));
    let last = lines.last().unwrap();
    assert_eq!(last.what, "warehouse privileges");
    assert!(
        last.detail.starts_with("not checked for sqlite"),
        "{}",
        last.detail
    );

    // A missing file fails the check and is not created by it.
    let missing = dir.path().join("missing.db");
    let dir2 = tempfile::tempdir().unwrap();
    let source = format!(
        "kind = \"sqlite\"\nconnection = {{ path = \"{}\" }}",
        missing.display()
    );
    let (store, secrets, dbt) = stored_config_with(dir2.path(), &source).await;
    let lines = apply::check(&id, &store, &secrets, &dbt, true)
        .await
        .unwrap()
        .unwrap();
    let failed: Vec<_> = lines.iter().filter(|l| !l.ok).collect();
    assert_eq!(failed.len(), 1, "{}", show(&lines));
    assert!(
        failed[0].detail.ends_with("does not exist"),
        "{}",
        failed[0].detail
    );
    assert!(!missing.exists());
}

/// `config check` on the Snowflake stand-in: it connects with the stored password and runs
/// `SELECT 1`; fakesnow 0.12 does not serve `SHOW GRANTS`, so the privilege line is a
/// warning that carries the stand-in's own error, and the check still passes. (The
/// reading of `SHOW GRANTS` rows is tested on documented rows in
/// `prdiff_shared::warehouse::privileges::snowflake`.)
#[tokio::test]
async fn config_check_on_snowflake_degrades_to_a_warning_when_grants_cannot_be_read() {
    let id = ConfigId::parse("analytics").unwrap();
    let WarehouseUrl::Snowflake(t) = WarehouseUrl::parse(&prdiff_tests::snowflake_url(), None)
        .expect("PRDIFF_TEST_SNOWFLAKE_URL")
    else {
        panic!("PRDIFF_TEST_SNOWFLAKE_URL is not a snowflake:// URL");
    };
    let warehouse::SnowflakeAuth::Password(password) = &t.auth else {
        panic!("the stand-in's URL carries a password");
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("secrets")).unwrap();
    std::fs::write(dir.path().join("sf.password"), password.expose()).unwrap();
    let source = format!(
        "kind = \"snowflake\"\nconnection = {{ account = \"{}\", user = \"{}\", database = \"{}\", \
         host = \"{}\", port = \"{}\", protocol = \"{}\" }}\nsecret = {{ file = \"sf.password\" }}",
        t.account, t.user, t.database, t.host, t.port, t.protocol
    );
    let (store, secrets, dbt) = stored_config_with(dir.path(), &source).await;
    let lines = apply::check(&id, &store, &secrets, &dbt, true)
        .await
        .unwrap()
        .unwrap();
    assert!(lines.iter().all(|l| l.ok), "{}", show(&lines));
    let conn = lines
        .iter()
        .find(|l| l.what == "warehouse connection")
        .expect("a connection line");
    assert!(conn.detail.contains("SELECT 1 ran"), "{}", conn.detail);
    assert!(!conn.detail.contains(password.expose()), "{}", conn.detail);
    let last = lines.last().unwrap();
    assert_eq!(last.what, "warehouse privileges", "{}", show(&lines));
    assert!(last.warning, "{}", show(&lines));
    assert!(
        last.detail
            .starts_with("could not read grants: the warehouse rejected the query: ")
            && last.detail.contains("syntax error"),
        "{}",
        last.detail
    );
}
