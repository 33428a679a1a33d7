//! Least privilege: what the data source's role could do besides reading.
//!
//! prdiff only ever reads, and its sessions are read-only, but the role it connects as is
//! the real boundary: a filter the engine failed to catch, or a stolen secret, can do
//! whatever the role may do. [`privilege_warnings`] asks the warehouse's catalog (read-only
//! queries through [`Warehouse::query`]) for the role's write and administrative rights and
//! returns one warning per kind of right, naming what to revoke. `docs/warehouse-privileges.md`
//! lists the grants a read-only role needs per warehouse.
//!
//! Checked for PostgreSQL and Redshift (their catalogs), Snowflake (`SHOW GRANTS TO ROLE`,
//! in [`snowflake`]), Databricks (Unity Catalog's `information_schema` privilege views and
//! owners) and BigQuery (the driver's [`Warehouse::api_privilege_warnings`]: IAM's
//! `tables.testIamPermissions`); other dialects return no warnings (the docs say what to
//! look at by hand).

use std::fmt;

mod snowflake;

use super::{Row, Warehouse, WarehouseError};
use crate::sql::{Dialect, Relation};

/// A write or administrative right the role holds, and how to take it away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrivilegeWarning {
    /// The right, e.g. `SUPERUSER`, `CREATE on schemas`, `INSERT on tables`,
    /// `member of pg_write_all_data`.
    pub privilege: String,
    /// Who holds it and on what.
    pub detail: String,
    /// The statement(s) that remove it.
    pub revoke: String,
}

impl fmt::Display for PrivilegeWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}; revoke: {}",
            self.privilege, self.detail, self.revoke
        )
    }
}

/// Which objects the table and schema checks look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrivilegeScope {
    /// Every table and schema outside the system schemas (`pg_*`, `information_schema`).
    AllSchemas,
    /// These relations and the schemas holding them (a relation without a schema is
    /// looked for in every schema; a database part is ignored: the catalog is the current
    /// database's).
    Relations(Vec<Relation>),
}

/// Whether [`privilege_warnings_as`] queries this dialect's catalog.
pub fn privileges_checked(dialect: &str) -> bool {
    matches!(
        dialect,
        "postgres" | "redshift" | "snowflake" | "databricks" | "bigquery"
    )
}

/// What a check that found nothing means, per dialect (for `config check`).
pub fn privileges_ok_text(dialect: &str) -> &'static str {
    match dialect {
        "databricks" => {
            "read-only: no MODIFY, MANAGE, ALL PRIVILEGES or CREATE on a catalog, schema or \
             table, and no ownership"
        }
        "snowflake" => {
            "read-only: the role and the roles it inherits hold no ownership, write, CREATE, \
             MANAGE or system administrator role (SHOW GRANTS TO ROLE)"
        }
        "bigquery" => {
            "read-only: no write permission (bigquery.tables.updateData, update, delete, \
             setIamPolicy) on the tables checked"
        }
        _ => {
            "read-only: no superuser or role attribute, no CREATE on the database or a \
             schema, no write on a table, no write role"
        }
    }
}

/// The role's write and administrative rights, for the warehouse's own dialect.
pub async fn privilege_warnings(
    wh: &dyn Warehouse,
    scope: &PrivilegeScope,
) -> Result<Vec<PrivilegeWarning>, WarehouseError> {
    privilege_warnings_as(wh.dialect().name(), wh, scope).await
}

/// As [`privilege_warnings`], with the dialect named by the caller (a Redshift data source
/// is reached through the PostgreSQL driver). Dialects without a check return no warnings.
pub async fn privilege_warnings_as(
    dialect: &str,
    wh: &dyn Warehouse,
    scope: &PrivilegeScope,
) -> Result<Vec<PrivilegeWarning>, WarehouseError> {
    match dialect {
        "postgres" => postgres(wh, scope).await,
        "redshift" => redshift(wh, scope).await,
        // Account-wide: a Snowflake role's grants are not narrowed to relations.
        "snowflake" => snowflake::snowflake(wh).await,
        "databricks" => databricks(wh, scope).await,
        "bigquery" => wh
            .api_privilege_warnings(scope)
            .await
            .unwrap_or_else(|| Ok(Vec::new())),
        _ => Ok(Vec::new()),
    }
}

/// How many objects a warning names before it says "and N more".
const SHOWN: usize = 5;

/// The SQL fragments that differ between the PostgreSQL and Redshift catalogs.
struct Catalog {
    /// The dialect whose string literals the scope's names become.
    dialect: &'static dyn Dialect,
    /// Table privileges that write, in report order.
    table_privileges: &'static [&'static str],
    /// Whether the role holds `privilege` on the table `c` (in schema `n`).
    has_table: fn(&str) -> String,
    /// Whether the role owns (or may act as the owner of) the table `c`.
    owns_table: &'static str,
    /// Whether the role holds CREATE on the schema `n`.
    has_schema_create: &'static str,
    /// Whether the role owns the schema `n`.
    owns_schema: &'static str,
    /// Whether PUBLIC holds CREATE on the schema `n`, when the catalog can tell.
    public_schema_create: &'static str,
}

const POSTGRES: Catalog = Catalog {
    dialect: &crate::sql::Postgres,
    table_privileges: &["INSERT", "UPDATE", "DELETE", "TRUNCATE"],
    has_table: |p| match p {
        // Column grants write too: has_any_column_privilege includes table-level grants.
        "INSERT" | "UPDATE" => format!("has_any_column_privilege(c.oid, '{p}')"),
        _ => format!("has_table_privilege(c.oid, '{p}')"),
    },
    owns_table: "pg_has_role(c.relowner, 'MEMBER')",
    has_schema_create: "has_schema_privilege(n.oid, 'CREATE')",
    owns_schema: "pg_has_role(n.nspowner, 'MEMBER')",
    public_schema_create: "EXISTS (SELECT 1 FROM aclexplode(n.nspacl) a \
         WHERE a.grantee = 0 AND a.privilege_type = 'CREATE')",
};

/// Redshift: `has_table_privilege` takes a table name and knows no TRUNCATE (DROP instead);
/// no `pg_has_role` or `aclexplode`. Every query reads catalog tables only, as its
/// leader-node functions require.
const REDSHIFT: Catalog = Catalog {
    dialect: &crate::sql::Redshift,
    table_privileges: &["INSERT", "UPDATE", "DELETE", "DROP"],
    has_table: |p| {
        format!(
            "has_table_privilege(quote_ident(n.nspname) || '.' || quote_ident(c.relname), '{p}')"
        )
    },
    owns_table: "c.relowner = (SELECT usesysid FROM pg_user WHERE usename = current_user)",
    has_schema_create: "has_schema_privilege(n.nspname, 'CREATE')",
    owns_schema: "n.nspowner = (SELECT usesysid FROM pg_user WHERE usename = current_user)",
    public_schema_create: "false",
};

async fn postgres(
    wh: &dyn Warehouse,
    scope: &PrivilegeScope,
) -> Result<Vec<PrivilegeWarning>, WarehouseError> {
    let rows = wh
        .query(
            "SELECT current_user::text, r.rolsuper, r.rolcreaterole, r.rolcreatedb, \
                    r.rolbypassrls, has_database_privilege(current_database(), 'CREATE'), \
                    current_database()::text, pg_has_role(d.datdba, 'MEMBER'), \
                    EXISTS (SELECT 1 FROM aclexplode(d.datacl) a \
                            WHERE a.grantee = 0 AND a.privilege_type = 'CREATE') \
             FROM pg_roles r, pg_database d \
             WHERE r.rolname = current_user AND d.datname = current_database()",
        )
        .await?;
    let row = one_row(&rows, "the role's attributes")?;
    let role = text(row, 0);
    let who = quote(&role);
    let mut out = Vec::new();
    if flag(row, 1) {
        // Every other check would pass for a superuser: report the one that matters.
        out.push(PrivilegeWarning {
            privilege: "SUPERUSER".into(),
            detail: format!(
                "role {role} is a superuser: it may write, drop and grant anything and \
                 bypasses every other check"
            ),
            revoke: format!(
                "ALTER ROLE {who} NOSUPERUSER; (then run the check again for what remains)"
            ),
        });
        return Ok(out);
    }
    for (i, attr, what) in [
        (
            2,
            "CREATEROLE",
            "may create roles and grant them (to itself, too)",
        ),
        (3, "CREATEDB", "may create databases"),
        (
            4,
            "BYPASSRLS",
            "reads past row-level security policies (prdiff needs only what the policies let it see)",
        ),
    ] {
        if flag(row, i) {
            out.push(PrivilegeWarning {
                privilege: attr.into(),
                detail: format!("role {role} {what}"),
                revoke: format!("ALTER ROLE {who} NO{attr};"),
            });
        }
    }
    if flag(row, 5) {
        let db = text(row, 6);
        let qdb = quote(&db);
        let mut revoke = Vec::new();
        if flag(row, 7) {
            revoke.push(format!(
                "ALTER DATABASE {qdb} OWNER TO <another role>; (the owner always holds it)"
            ));
        }
        if flag(row, 8) {
            revoke.push(format!("REVOKE CREATE ON DATABASE {qdb} FROM PUBLIC;"));
        }
        revoke.push(format!(
            "REVOKE CREATE ON DATABASE {qdb} FROM {who}; (or from the role {role} inherits it from)"
        ));
        out.push(PrivilegeWarning {
            privilege: "CREATE on database".into(),
            detail: format!("role {role} may create schemas in database {db}"),
            revoke: revoke.join(" "),
        });
    }
    out.extend(schema_warnings(wh, &POSTGRES, scope, &role).await?);
    out.extend(table_warnings(wh, &POSTGRES, scope, &role).await?);

    let rows = wh
        .query(
            "SELECT r.rolname::text FROM pg_roles r \
             WHERE r.rolname IN ('pg_write_all_data', 'pg_execute_server_program', \
                                 'pg_write_server_files') \
               AND pg_has_role(r.oid, 'MEMBER') \
             ORDER BY 1",
        )
        .await?;
    for row in &rows {
        let granted = text(row, 0);
        let what = match granted.as_str() {
            "pg_write_all_data" => "may insert, update and delete in every table of every schema",
            "pg_execute_server_program" => {
                "may run programs on the database server (COPY … TO/FROM PROGRAM)"
            }
            _ => "may write files on the database server (COPY … TO a file)",
        };
        out.push(PrivilegeWarning {
            privilege: format!("member of {granted}"),
            detail: format!("role {role} {what}"),
            revoke: format!(
                "REVOKE {granted} FROM {who}; (or from the role {role} belongs to that holds it)"
            ),
        });
    }
    Ok(out)
}

async fn redshift(
    wh: &dyn Warehouse,
    scope: &PrivilegeScope,
) -> Result<Vec<PrivilegeWarning>, WarehouseError> {
    let rows = wh
        .query(
            "SELECT usename, usesuper, usecreatedb, \
                    has_database_privilege(current_database(), 'CREATE'), current_database() \
             FROM pg_user WHERE usename = current_user",
        )
        .await?;
    let row = one_row(&rows, "the user's attributes")?;
    let role = text(row, 0);
    let who = quote(&role);
    let mut out = Vec::new();
    if flag(row, 1) {
        out.push(PrivilegeWarning {
            privilege: "SUPERUSER".into(),
            detail: format!(
                "user {role} is a superuser: it may write, drop and grant anything and \
                 bypasses every other check"
            ),
            revoke: format!(
                "ALTER USER {who} NOCREATEUSER; (then run the check again for what remains)"
            ),
        });
        return Ok(out);
    }
    if flag(row, 2) {
        out.push(PrivilegeWarning {
            privilege: "CREATEDB".into(),
            detail: format!("user {role} may create databases"),
            revoke: format!("ALTER USER {who} NOCREATEDB;"),
        });
    }
    if flag(row, 3) {
        let db = text(row, 4);
        let qdb = quote(&db);
        out.push(PrivilegeWarning {
            privilege: "CREATE on database".into(),
            detail: format!("user {role} may create schemas in database {db}"),
            revoke: format!(
                "REVOKE CREATE ON DATABASE {qdb} FROM {who}; (and FROM PUBLIC or the group or \
                 role that holds it, if granted there)"
            ),
        });
    }
    out.extend(schema_warnings(wh, &REDSHIFT, scope, &role).await?);
    out.extend(table_warnings(wh, &REDSHIFT, scope, &role).await?);

    // Only roles granted to the user directly (SVV_USER_GRANTS shows a user its own).
    let rows = wh
        .query(
            "SELECT role_name FROM svv_user_grants \
             WHERE user_name = current_user \
               AND role_name IN ('sys:superuser', 'sys:dba', 'sys:secadmin') \
             ORDER BY 1",
        )
        .await?;
    for row in &rows {
        let granted = text(row, 0);
        let what = match granted.as_str() {
            "sys:superuser" => "holds every system permission",
            "sys:dba" => "may create, drop and truncate schemas, tables, views and procedures",
            _ => "may create users and roles and grant roles",
        };
        out.push(PrivilegeWarning {
            privilege: format!("member of {granted}"),
            detail: format!("user {role} {what}"),
            revoke: format!("REVOKE ROLE {} FROM {who};", quote(&granted)),
        });
    }
    Ok(out)
}

/// Unity Catalog privileges that write or administer, per securable, in report order
/// (<https://docs.databricks.com/en/data-governance/unity-catalog/manage-privileges/privileges.html>).
const DATABRICKS_TABLE: &[&str] = &["ALL PRIVILEGES", "MANAGE", "MODIFY"];
const DATABRICKS_SCHEMA: &[&str] = &[
    "ALL PRIVILEGES",
    "MANAGE",
    "MODIFY",
    "CREATE TABLE",
    "CREATE MATERIALIZED VIEW",
    "CREATE FUNCTION",
    "CREATE VOLUME",
    "CREATE MODEL",
];
const DATABRICKS_CATALOG: &[&str] = &[
    "ALL PRIVILEGES",
    "MANAGE",
    "MODIFY",
    "CREATE SCHEMA",
    "CREATE TABLE",
    "CREATE MATERIALIZED VIEW",
    "CREATE FUNCTION",
    "CREATE VOLUME",
    "CREATE MODEL",
];

/// The principal (the user itself, or a group it belongs to) in `column`.
fn databricks_mine(column: &str) -> String {
    format!("({column} = current_user() OR is_account_group_member({column}))")
}

/// Unity Catalog: the current catalog's `information_schema` privilege views (grants to the
/// user or any group it is a member of, inherited ones included) and owners. Each kind of
/// right is one warning naming where it is held and the `REVOKE` that takes it away.
async fn databricks(
    wh: &dyn Warehouse,
    scope: &PrivilegeScope,
) -> Result<Vec<PrivilegeWarning>, WarehouseError> {
    let d: &dyn Dialect = &crate::sql::Databricks;
    let list = |ps: &[&str]| {
        ps.iter()
            .map(|p| d.string_literal(p))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (schema_cond, table_cond) = match scope {
        PrivilegeScope::AllSchemas => (String::new(), String::new()),
        PrivilegeScope::Relations(rels) if rels.is_empty() => {
            (" AND false".to_owned(), " AND false".to_owned())
        }
        PrivilegeScope::Relations(rels) => {
            let schemas: Vec<String> = rels
                .iter()
                .map(|r| match &r.schema {
                    Some(s) => format!("schema_name = {}", d.string_literal(s)),
                    None => "true".to_owned(),
                })
                .collect();
            let tables: Vec<String> = rels
                .iter()
                .map(|r| match &r.schema {
                    Some(s) => format!(
                        "(table_schema = {} AND table_name = {})",
                        d.string_literal(s),
                        d.string_literal(&r.name)
                    ),
                    None => format!("table_name = {}", d.string_literal(&r.name)),
                })
                .collect();
            (
                format!(" AND ({})", schemas.join(" OR ")),
                format!(" AND ({})", tables.join(" OR ")),
            )
        }
    };
    let catalog_rows = wh
        .query(&format!(
            "SELECT privilege_type, catalog_name, grantee FROM information_schema.catalog_privileges \
             WHERE {} AND privilege_type IN ({}) ORDER BY 1, 2, 3 LIMIT 1000",
            databricks_mine("grantee"),
            list(DATABRICKS_CATALOG)
        ))
        .await?;
    let schema_rows = wh
        .query(&format!(
            "SELECT privilege_type, schema_name, grantee FROM information_schema.schema_privileges \
             WHERE {} AND privilege_type IN ({}) AND schema_name <> 'information_schema'{schema_cond} \
             ORDER BY 1, 2, 3 LIMIT 1000",
            databricks_mine("grantee"),
            list(DATABRICKS_SCHEMA)
        ))
        .await?;
    let table_rows = wh
        .query(&format!(
            "SELECT privilege_type, table_schema || '.' || table_name, grantee \
             FROM information_schema.table_privileges \
             WHERE {} AND privilege_type IN ({}) AND table_schema <> 'information_schema'{table_cond} \
             ORDER BY 1, 2, 3 LIMIT 1000",
            databricks_mine("grantee"),
            list(DATABRICKS_TABLE)
        ))
        .await?;
    let owned_schemas = wh
        .query(&format!(
            "SELECT 'schema', schema_name, schema_owner FROM information_schema.schemata \
             WHERE {} AND schema_name <> 'information_schema'{schema_cond} ORDER BY 2 LIMIT 1000",
            databricks_mine("schema_owner")
        ))
        .await?;
    let owned_tables = wh
        .query(&format!(
            "SELECT 'table', table_schema || '.' || table_name, table_owner \
             FROM information_schema.tables \
             WHERE {} AND table_schema <> 'information_schema'{table_cond} ORDER BY 2 LIMIT 1000",
            databricks_mine("table_owner")
        ))
        .await?;

    let mut out = Vec::new();
    for (securable, rows, order) in [
        ("CATALOG", &catalog_rows, DATABRICKS_CATALOG),
        ("SCHEMA", &schema_rows, DATABRICKS_SCHEMA),
        ("TABLE", &table_rows, DATABRICKS_TABLE),
    ] {
        for privilege in order {
            let held: Vec<&Row> = rows.iter().filter(|r| text(r, 0) == *privilege).collect();
            if held.is_empty() {
                continue;
            }
            let mut objects: Vec<String> = held.iter().map(|r| text(r, 1)).collect();
            objects.dedup();
            let mut grantees: Vec<String> = held.iter().map(|r| text(r, 2)).collect();
            grantees.sort();
            grantees.dedup();
            let what = match *privilege {
                "ALL PRIVILEGES" => "every privilege, writes included",
                "MANAGE" => "may grant and revoke privileges and drop the object",
                "MODIFY" => "may insert, update and delete data",
                "CREATE SCHEMA" => "may create schemas",
                _ => "may create objects",
            };
            let on = |o: &str| match securable {
                "TABLE" => {
                    let (s, t) = o.split_once('.').unwrap_or(("", o));
                    format!("{}.{}", d.quote_identifier(s), d.quote_identifier(t))
                }
                _ => d.quote_identifier(o),
            };
            let first = &held[0];
            out.push(PrivilegeWarning {
                privilege: format!("{privilege} on {}", securable.to_lowercase()),
                detail: format!(
                    "granted to {} ({what}) on {} {}{}: {}",
                    listing(&grantees),
                    objects.len(),
                    securable.to_lowercase(),
                    if objects.len() == 1 { "" } else { "s" },
                    listing(&objects)
                ),
                revoke: format!(
                    "REVOKE {privilege} ON {securable} {} FROM {}; (for each one; a grant \
                     inherited from a catalog or schema is revoked there)",
                    on(&text(first, 1)),
                    d.quote_identifier(&text(first, 2))
                ),
            });
        }
    }
    for (securable, rows) in [("SCHEMA", &owned_schemas), ("TABLE", &owned_tables)] {
        if rows.is_empty() {
            continue;
        }
        let objects: Vec<String> = rows.iter().map(|r| text(r, 1)).collect();
        let owner = text(&rows[0], 2);
        let first = &objects[0];
        let name = match securable {
            "TABLE" => {
                let (s, t) = first.split_once('.').unwrap_or(("", first));
                format!("{}.{}", d.quote_identifier(s), d.quote_identifier(t))
            }
            _ => d.quote_identifier(first),
        };
        out.push(PrivilegeWarning {
            privilege: format!("owner of {}s", securable.to_lowercase()),
            detail: format!(
                "{owner} owns {} {}{} (an owner holds every privilege on it): {}",
                objects.len(),
                securable.to_lowercase(),
                plural(objects.len()),
                listing(&objects)
            ),
            revoke: format!(
                "ALTER {securable} {name} OWNER TO `<another principal>`; (for each one)"
            ),
        });
    }
    Ok(out)
}

/// Schemas outside the system ones, narrowed to the scope's schemas.
fn schema_filter(d: &dyn Dialect, scope: &PrivilegeScope) -> String {
    let mut sql =
        "n.nspname <> 'information_schema' AND substr(n.nspname, 1, 3) <> 'pg_'".to_owned();
    if let PrivilegeScope::Relations(relations) = scope
        && relations.iter().all(|r| r.schema.is_some())
    {
        let mut schemas: Vec<&str> = relations
            .iter()
            .filter_map(|r| r.schema.as_deref())
            .collect();
        schemas.sort_unstable();
        schemas.dedup();
        let list: Vec<String> = schemas.iter().map(|s| d.string_literal(s)).collect();
        sql.push_str(&format!(
            " AND n.nspname IN ({})",
            if list.is_empty() {
                "NULL".to_owned()
            } else {
                list.join(", ")
            }
        ));
    }
    sql
}

/// The scope's relations as a condition on `n` and `c` (no condition for all schemas).
fn relation_filter(d: &dyn Dialect, scope: &PrivilegeScope) -> String {
    match scope {
        PrivilegeScope::AllSchemas => String::new(),
        PrivilegeScope::Relations(relations) if relations.is_empty() => " AND false".into(),
        PrivilegeScope::Relations(relations) => {
            let each: Vec<String> = relations
                .iter()
                .map(|r| match &r.schema {
                    Some(s) => format!(
                        "(n.nspname = {} AND c.relname = {})",
                        d.string_literal(s),
                        d.string_literal(&r.name)
                    ),
                    None => format!("c.relname = {}", d.string_literal(&r.name)),
                })
                .collect();
            format!(" AND ({})", each.join(" OR "))
        }
    }
}

async fn schema_warnings(
    wh: &dyn Warehouse,
    cat: &Catalog,
    scope: &PrivilegeScope,
    role: &str,
) -> Result<Option<PrivilegeWarning>, WarehouseError> {
    let rows = wh
        .query(&format!(
            "SELECT n.nspname, {owns}, {public} FROM pg_namespace n \
             WHERE {has} AND {filter} ORDER BY 1 LIMIT 1000",
            owns = cat.owns_schema,
            public = cat.public_schema_create,
            has = cat.has_schema_create,
            filter = schema_filter(cat.dialect, scope),
        ))
        .await?;
    if rows.is_empty() {
        return Ok(None);
    }
    let who = quote(role);
    let names: Vec<String> = rows.iter().map(|r| text(r, 0)).collect();
    let owned: Vec<String> = rows
        .iter()
        .filter(|r| flag(r, 1))
        .map(|r| quote(&text(r, 0)))
        .collect();
    let public: Vec<String> = rows
        .iter()
        .filter(|r| flag(r, 2))
        .map(|r| quote(&text(r, 0)))
        .collect();
    let granted: Vec<String> = rows
        .iter()
        .filter(|r| !flag(r, 1))
        .map(|r| quote(&text(r, 0)))
        .collect();
    let mut revoke = Vec::new();
    if !granted.is_empty() {
        revoke.push(format!(
            "REVOKE CREATE ON SCHEMA {} FROM {who};",
            listing(&granted)
        ));
    }
    if !public.is_empty() {
        revoke.push(format!(
            "REVOKE CREATE ON SCHEMA {} FROM PUBLIC;",
            listing(&public)
        ));
    }
    if !owned.is_empty() {
        revoke.push(format!(
            "ALTER SCHEMA … OWNER TO <another role>; for the schemas it owns ({})",
            listing(&owned)
        ));
    }
    Ok(Some(PrivilegeWarning {
        privilege: "CREATE on schemas".into(),
        detail: format!(
            "role {role} may create tables, views and functions in {} schema{}: {}",
            names.len(),
            plural(names.len()),
            listing(&names)
        ),
        revoke: revoke.join(" "),
    }))
}

async fn table_warnings(
    wh: &dyn Warehouse,
    cat: &Catalog,
    scope: &PrivilegeScope,
    role: &str,
) -> Result<Vec<PrivilegeWarning>, WarehouseError> {
    let from = format!(
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND {}{}",
        schema_filter(cat.dialect, scope),
        relation_filter(cat.dialect, scope)
    );
    let name = "quote_ident(n.nspname) || '.' || quote_ident(c.relname)";
    let has: Vec<String> = cat
        .table_privileges
        .iter()
        .map(|p| (cat.has_table)(p))
        .collect();
    // Counts: owned tables, then tables not owned with each privilege.
    let counts = wh
        .query(&format!(
            "SELECT COALESCE(SUM(CASE WHEN {owns} THEN 1 ELSE 0 END), 0), {each} {from}",
            owns = cat.owns_table,
            each = has
                .iter()
                .map(|h| format!(
                    "COALESCE(SUM(CASE WHEN NOT ({owns}) AND {h} THEN 1 ELSE 0 END), 0)",
                    owns = cat.owns_table
                ))
                .collect::<Vec<_>>()
                .join(", "),
        ))
        .await?;
    let counts = one_row(&counts, "the writable tables")?;
    let count = |i: usize| -> u64 { text(counts, i).parse().unwrap_or(0) };
    let who = quote(role);
    let mut out = Vec::new();

    let owned = count(0);
    if owned > 0 {
        let rows = wh
            .query(&format!(
                "SELECT {name} {from} AND {owns} ORDER BY 1 LIMIT {SHOWN}",
                owns = cat.owns_table
            ))
            .await?;
        let names: Vec<String> = rows.iter().map(|r| text(r, 0)).collect();
        out.push(PrivilegeWarning {
            privilege: "owner of tables".into(),
            detail: format!(
                "role {role} owns {owned} table{} or view{}: {} (an owner may always write, \
                 alter and drop)",
                plural_u(owned),
                plural_u(owned),
                more(&names, owned)
            ),
            revoke: "ALTER TABLE … OWNER TO <the role that builds them, e.g. dbt's>; \
                     for each of them"
                .into(),
        });
    }

    if (1..=has.len()).any(|i| count(i) > 0) {
        let rows = wh
            .query(&format!(
                "SELECT {name}, {flags} {from} AND NOT ({owns}) AND ({any}) ORDER BY 1 LIMIT 50",
                flags = has.join(", "),
                owns = cat.owns_table,
                any = has.join(" OR "),
            ))
            .await?;
        for (i, privilege) in cat.table_privileges.iter().enumerate() {
            let n = count(i + 1);
            if n == 0 {
                continue;
            }
            let names: Vec<String> = rows
                .iter()
                .filter(|r| flag(r, i + 1))
                .take(SHOWN)
                .map(|r| text(r, 0))
                .collect();
            let on = if n == 1 && names.len() == 1 {
                names[0].clone()
            } else {
                "ALL TABLES IN SCHEMA <schema>".to_owned()
            };
            out.push(PrivilegeWarning {
                privilege: format!("{privilege} on tables"),
                detail: format!(
                    "role {role} holds {privilege} on {n} table{} or view{} it does not own: {}",
                    plural_u(n),
                    plural_u(n),
                    more(&names, n)
                ),
                revoke: format!(
                    "REVOKE {privilege} ON {on} FROM {who}; (and FROM PUBLIC or the role \
                     {role} belongs to, where it was granted there)"
                ),
            });
        }
    }
    Ok(out)
}

fn one_row<'a>(rows: &'a [Row], what: &str) -> Result<&'a Row, WarehouseError> {
    rows.first().ok_or_else(|| WarehouseError::Other {
        message: format!("the catalog returned no row for {what}"),
    })
}

fn text(row: &Row, i: usize) -> String {
    row.get(i).cloned().flatten().unwrap_or_default()
}

/// A boolean column as drivers render it (`true`, `t`, `1`).
fn flag(row: &Row, i: usize) -> bool {
    matches!(
        row.get(i).and_then(|v| v.as_deref()),
        Some("true" | "t" | "1" | "TRUE" | "True")
    )
}

/// An identifier quoted the PostgreSQL/Redshift way.
fn quote(ident: &str) -> String {
    crate::sql::quote_doubling(ident, '"', '"')
}

/// The first few names, then how many more.
fn listing(names: &[String]) -> String {
    more(&names[..names.len().min(SHOWN)], names.len() as u64)
}

fn more(shown: &[String], total: u64) -> String {
    let mut s = shown.join(", ");
    let rest = total.saturating_sub(shown.len() as u64);
    if rest > 0 {
        s.push_str(&format!(" and {rest} more"));
    }
    s
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn plural_u(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;

    use super::*;
    use crate::sql::{Dialect, Postgres};

    /// Answers each statement with the rows of the first rule whose marker it contains,
    /// and records what it was sent.
    struct Fake {
        rules: Vec<(&'static str, Vec<Row>)>,
        sent: Mutex<Vec<String>>,
    }

    fn row(values: &[&str]) -> Row {
        values.iter().map(|v| Some((*v).to_owned())).collect()
    }

    #[async_trait]
    impl Warehouse for Fake {
        fn dialect(&self) -> &'static dyn Dialect {
            &Postgres
        }
        async fn query(&self, sql: &str) -> Result<Vec<Row>, WarehouseError> {
            self.sent.lock().unwrap().push(sql.to_owned());
            Ok(self
                .rules
                .iter()
                .find(|(marker, _)| sql.contains(marker))
                .map(|(_, rows)| rows.clone())
                .unwrap_or_default())
        }
    }

    #[tokio::test]
    async fn redshift_reads_pg_user_and_svv_user_grants_without_postgresql_only_functions() {
        let wh = Fake {
            rules: vec![
                (
                    "SELECT usename, usesuper",
                    vec![row(&["ci_reader", "false", "true", "false", "dev"])],
                ),
                (
                    "FROM pg_namespace n WHERE",
                    vec![row(&["analytics", "false", "false"])],
                ),
                ("SELECT COALESCE(SUM", vec![row(&["0", "2", "0", "0", "1"])]),
                (
                    "LIMIT 50",
                    vec![
                        row(&["analytics.orders", "true", "false", "false", "true"]),
                        row(&["analytics.payments", "true", "false", "false", "false"]),
                    ],
                ),
                ("svv_user_grants", vec![row(&["sys:dba"])]),
            ],
            sent: Mutex::new(Vec::new()),
        };
        let warnings = privilege_warnings_as("redshift", &wh, &PrivilegeScope::AllSchemas)
            .await
            .unwrap();
        let names: Vec<&str> = warnings.iter().map(|w| w.privilege.as_str()).collect();
        assert_eq!(
            names,
            [
                "CREATEDB",
                "CREATE on schemas",
                "INSERT on tables",
                "DROP on tables",
                "member of sys:dba"
            ]
        );
        assert_eq!(warnings[0].revoke, "ALTER USER \"ci_reader\" NOCREATEDB;");
        assert!(
            warnings[2].detail.contains(
                "2 tables or views it does not own: analytics.orders, analytics.payments"
            ),
            "{}",
            warnings[2]
        );
        assert_eq!(
            warnings[3].revoke.split(';').next().unwrap(),
            "REVOKE DROP ON analytics.orders FROM \"ci_reader\""
        );
        assert_eq!(
            warnings[4].revoke,
            "REVOKE ROLE \"sys:dba\" FROM \"ci_reader\";"
        );
        for sql in wh.sent.lock().unwrap().iter() {
            for pg_only in [
                "pg_has_role",
                "aclexplode",
                "array_agg",
                "FILTER",
                "rolbypassrls",
                "TRUNCATE",
            ] {
                assert!(!sql.contains(pg_only), "{pg_only} in: {sql}");
            }
        }
    }

    #[tokio::test]
    async fn a_superuser_gets_one_warning_and_no_further_queries() {
        let wh = Fake {
            rules: vec![(
                "FROM pg_roles r, pg_database d",
                vec![row(&[
                    "admin", "true", "true", "true", "true", "true", "db", "true", "false",
                ])],
            )],
            sent: Mutex::new(Vec::new()),
        };
        let warnings = privilege_warnings(&wh, &PrivilegeScope::AllSchemas)
            .await
            .unwrap();
        assert_eq!(warnings.len(), 1);
        assert_eq!(warnings[0].privilege, "SUPERUSER");
        assert!(
            warnings[0]
                .revoke
                .starts_with("ALTER ROLE \"admin\" NOSUPERUSER;")
        );
        assert_eq!(wh.sent.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn other_dialects_are_not_queried() {
        let wh = Fake {
            rules: vec![],
            sent: Mutex::new(Vec::new()),
        };
        for d in ["duckdb", "sqlite"] {
            assert!(!privileges_checked(d));
            let w = privilege_warnings_as(d, &wh, &PrivilegeScope::AllSchemas)
                .await
                .unwrap();
            assert!(w.is_empty());
        }
        assert!(wh.sent.lock().unwrap().is_empty());
        assert!(privileges_checked("postgres") && privileges_checked("redshift"));
        assert!(privileges_checked("snowflake"));
        assert!(privileges_checked("databricks") && privileges_checked("bigquery"));
        // BigQuery's check is its driver's API: a warehouse without one sends no SQL.
        let w = privilege_warnings_as("bigquery", &wh, &PrivilegeScope::AllSchemas)
            .await
            .unwrap();
        assert!(w.is_empty());
        assert!(wh.sent.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn databricks_reads_unity_catalog_grants_to_the_user_and_its_groups_and_owners() {
        let wh = Fake {
            rules: vec![
                (
                    "information_schema.catalog_privileges",
                    vec![row(&["CREATE SCHEMA", "main", "data-eng"])],
                ),
                (
                    "information_schema.schema_privileges",
                    vec![
                        row(&["CREATE TABLE", "analytics", "ci@example.com"]),
                        row(&["CREATE TABLE", "staging", "ci@example.com"]),
                    ],
                ),
                (
                    "information_schema.table_privileges",
                    vec![
                        row(&["MODIFY", "analytics.orders", "ci@example.com"]),
                        row(&["MODIFY", "analytics.pay`ments", "ci@example.com"]),
                    ],
                ),
                ("information_schema.schemata", vec![]),
                (
                    "information_schema.tables",
                    vec![row(&["table", "analytics.orders", "ci@example.com"])],
                ),
            ],
            sent: Mutex::new(Vec::new()),
        };
        let warnings = privilege_warnings_as("databricks", &wh, &PrivilegeScope::AllSchemas)
            .await
            .unwrap();
        let names: Vec<&str> = warnings.iter().map(|w| w.privilege.as_str()).collect();
        assert_eq!(
            names,
            [
                "CREATE SCHEMA on catalog",
                "CREATE TABLE on schema",
                "MODIFY on table",
                "owner of tables"
            ]
        );
        assert!(
            warnings[1]
                .detail
                .contains("on 2 schemas: analytics, staging"),
            "{}",
            warnings[1]
        );
        assert!(
            warnings[2]
                .revoke
                .starts_with("REVOKE MODIFY ON TABLE `analytics`.`orders` FROM `ci@example.com`;"),
            "{}",
            warnings[2]
        );
        assert!(warnings[0].detail.starts_with("granted to data-eng"));
        assert!(
            warnings[3]
                .revoke
                .starts_with("ALTER TABLE `analytics`.`orders` OWNER TO"),
            "{}",
            warnings[3]
        );
        let sent = wh.sent.lock().unwrap();
        assert_eq!(sent.len(), 5);
        for sql in sent.iter() {
            assert!(
                sql.contains("current_user()") && sql.contains("is_account_group_member("),
                "{sql}"
            );
        }
    }

    #[tokio::test]
    async fn databricks_scope_narrows_to_the_relations_as_literals() {
        let wh = Fake {
            rules: vec![],
            sent: Mutex::new(Vec::new()),
        };
        let scope = PrivilegeScope::Relations(vec![Relation::new(None, Some("pr_1"), "o'rders")]);
        assert_eq!(
            crate::sql::Databricks.string_literal("a\\' OR 1=1 --"),
            "'a\\\\\\' OR 1=1 --'"
        );
        let w = privilege_warnings_as("databricks", &wh, &scope)
            .await
            .unwrap();
        assert!(w.is_empty());
        let sent = wh.sent.lock().unwrap();
        assert!(
            sent[2].contains("AND ((table_schema = 'pr_1' AND table_name = 'o\\'rders'))"),
            "{}",
            sent[2]
        );
        assert!(
            sent[1].contains("AND (schema_name = 'pr_1')"),
            "{}",
            sent[1]
        );
    }

    #[test]
    fn the_scope_narrows_schemas_and_relations_with_quoted_literals() {
        use crate::sql::{Postgres, Redshift};
        let scope = PrivilegeScope::Relations(vec![
            Relation::new(Some("db"), Some("prod"), "orders"),
            Relation::new(None, Some("dbt_cloud_pr_1_2"), "o'brien"),
        ]);
        assert_eq!(
            schema_filter(&Postgres, &scope),
            "n.nspname <> 'information_schema' AND substr(n.nspname, 1, 3) <> 'pg_' \
             AND n.nspname IN ('dbt_cloud_pr_1_2', 'prod')"
        );
        assert_eq!(
            relation_filter(&Postgres, &scope),
            " AND ((n.nspname = 'prod' AND c.relname = 'orders') OR \
             (n.nspname = 'dbt_cloud_pr_1_2' AND c.relname = 'o''brien'))"
        );
        // A relation without a schema: every schema, matched by name.
        let loose = PrivilegeScope::Relations(vec![Relation::new(None, None, "orders")]);
        assert!(!schema_filter(&Postgres, &loose).contains(" IN "));
        assert_eq!(
            relation_filter(&Postgres, &loose),
            " AND (c.relname = 'orders')"
        );
        assert_eq!(relation_filter(&Postgres, &PrivilegeScope::AllSchemas), "");
        // Redshift reads a backslash as an escape: it is doubled there.
        let hostile =
            PrivilegeScope::Relations(vec![Relation::new(None, Some("s\\"), "o\\' OR 1=1 --")]);
        assert_eq!(
            relation_filter(&Redshift, &hostile),
            " AND ((n.nspname = 's\\\\' AND c.relname = 'o\\\\'' OR 1=1 --'))"
        );
    }
}
