//! Snowflake: the grants of the session's role and of every role it inherits, read with
//! `SHOW GRANTS TO ROLE`.
//!
//! `SHOW GRANTS TO ROLE <role>` answers one row per privilege in the columns `created_on`,
//! `privilege`, `granted_on`, `name`, `granted_to`, `grantee_name`, `grant_option`,
//! `granted_by` (in that order):
//! <https://docs.snowflake.com/en/sql-reference/sql/show-grants> and
//! <https://docs.snowflake.com/en/release-notes/bcr-bundles/2025_01/bcr-1803>. A role the
//! role inherits shows as `USAGE` on a `ROLE`. Write and administrative privileges are
//! those of <https://docs.snowflake.com/en/user-guide/security-access-control-privileges>
//! that change data, objects, grants or spend.
//!
//! Not read: future grants (`SHOW FUTURE GRANTS IN SCHEMA …`, which take effect only on
//! objects created later), database roles (`granted_on = DATABASE_ROLE`: named in a
//! warning, not expanded) and the user's secondary roles (`DEFAULT_SECONDARY_ROLES`, which
//! docs/warehouse-privileges.md says to set to `()`).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::{PrivilegeWarning, listing, plural};
use crate::warehouse::{Row, Warehouse, WarehouseError};

/// System roles that may administer the account: holding one is the one warning that
/// matters (as a PostgreSQL superuser).
/// <https://docs.snowflake.com/en/user-guide/security-access-control-overview#system-defined-roles>
const ADMIN_ROLES: &[&str] = &[
    "ACCOUNTADMIN",
    "ORGADMIN",
    "SECURITYADMIN",
    "SYSADMIN",
    "USERADMIN",
];

/// Privileges that write data, change or create objects, manage grants or spend credits.
const WRITE_PRIVILEGES: &[&str] = &[
    "OWNERSHIP",
    "INSERT",
    "UPDATE",
    "DELETE",
    "TRUNCATE",
    "EVOLVE SCHEMA",
    "REBUILD",
    "WRITE",
    "MODIFY",
    "ADD SEARCH OPTIMIZATION",
    "ATTACH POLICY",
    "OVERRIDE SHARE RESTRICTIONS",
    "ALL",
    "ALL PRIVILEGES",
];

/// Prefixes of privilege families that do the same (`CREATE TABLE`, `MANAGE GRANTS`,
/// `APPLY MASKING POLICY`, `EXECUTE TASK`, `IMPORT SHARE`, …).
const WRITE_PREFIXES: &[&str] = &["CREATE ", "MANAGE ", "APPLY ", "EXECUTE ", "IMPORT "];

/// How many roles the check reads grants of (the session's and those it inherits).
const MAX_ROLES: usize = 25;

fn is_write(privilege: &str) -> bool {
    WRITE_PRIVILEGES.contains(&privilege) || WRITE_PREFIXES.iter().any(|p| privilege.starts_with(p))
}

/// A role name as an identifier in a statement: quoted, with `"` doubled.
fn role_ident(role: &str) -> String {
    crate::sql::quote_doubling(role, '"', '"')
}

/// One row of `SHOW GRANTS TO ROLE`.
struct Grant {
    privilege: String,
    granted_on: String,
    name: String,
    grantee: String,
}

fn grants(rows: &[Row], role: &str) -> Result<Vec<Grant>, WarehouseError> {
    let col = |r: &Row, i: usize| r.get(i).cloned().flatten().unwrap_or_default();
    rows.iter()
        .map(|r| {
            let granted_to = col(r, 4);
            if r.len() < 6 || !matches!(granted_to.as_str(), "ROLE" | "DATABASE_ROLE") {
                return Err(WarehouseError::Other {
                    message: format!(
                        "SHOW GRANTS TO ROLE {role} answered a row prdiff does not read \
                         (expected created_on, privilege, granted_on, name, granted_to = \
                         ROLE, grantee_name, …)"
                    ),
                });
            }
            Ok(Grant {
                privilege: col(r, 1).to_ascii_uppercase(),
                granted_on: col(r, 2).to_ascii_uppercase(),
                name: col(r, 3),
                grantee: col(r, 5),
            })
        })
        .collect()
}

/// The write and administrative rights of the session's role and the roles it inherits.
pub(super) async fn snowflake(wh: &dyn Warehouse) -> Result<Vec<PrivilegeWarning>, WarehouseError> {
    let rows = wh.query("SELECT CURRENT_ROLE()").await?;
    let role = rows
        .first()
        .and_then(|r| r.first().cloned().flatten())
        .filter(|r| !r.is_empty())
        .ok_or_else(|| WarehouseError::Other {
            message: "CURRENT_ROLE() returned no role".into(),
        })?;
    if ADMIN_ROLES.contains(&role.as_str()) {
        return Ok(vec![PrivilegeWarning {
            privilege: role.clone(),
            detail: format!(
                "the session's role is {role}, a system role that administers the account: \
                 it may write, drop and grant anything"
            ),
            revoke: "connect with a dedicated read-only role instead (role=… in the URL, \
                     `role` in the data source); docs/warehouse-privileges.md has the script"
                .into(),
        }]);
    }

    // The session's role first, then the roles it inherits, breadth first.
    let mut queue = VecDeque::from([role.clone()]);
    let mut seen = BTreeSet::from([role.clone()]);
    // privilege -> (objects, REVOKE statements)
    let mut writes: BTreeMap<String, (Vec<String>, Vec<String>)> = BTreeMap::new();
    let mut out = Vec::new();
    let mut truncated = false;
    while let Some(r) = queue.pop_front() {
        let rows = wh
            .query(&format!("SHOW GRANTS TO ROLE {}", role_ident(&r)))
            .await?;
        for g in grants(&rows, &r)? {
            let holder = if g.grantee.is_empty() { &r } else { &g.grantee };
            let from = role_ident(holder);
            if g.privilege == "USAGE" && matches!(g.granted_on.as_str(), "ROLE" | "DATABASE_ROLE") {
                let inherited = g.name.trim_matches('"').to_owned();
                if ADMIN_ROLES.contains(&inherited.as_str()) {
                    out.push(PrivilegeWarning {
                        privilege: format!("member of {inherited}"),
                        detail: format!(
                            "role {holder} inherits {inherited}, a system role that \
                             administers the account (the session's role is {role})"
                        ),
                        revoke: format!("REVOKE ROLE {inherited} FROM ROLE {from};"),
                    });
                } else if g.granted_on == "DATABASE_ROLE" {
                    // Its grants are not read: name it so an operator can look.
                    out.push(PrivilegeWarning {
                        privilege: format!("member of database role {}", g.name),
                        detail: format!(
                            "role {holder} inherits database role {}, whose grants prdiff \
                             does not read: check them with SHOW GRANTS TO DATABASE ROLE {}",
                            g.name, g.name
                        ),
                        revoke: format!(
                            "REVOKE DATABASE ROLE {} FROM ROLE {from}; (if it may write)",
                            g.name
                        ),
                    });
                } else if seen.len() < MAX_ROLES {
                    if seen.insert(inherited.clone()) {
                        queue.push_back(inherited);
                    }
                } else {
                    truncated = true;
                }
                continue;
            }
            if !is_write(&g.privilege) {
                continue;
            }
            let on = g.granted_on.replace('_', " ");
            let object = if on == "ACCOUNT" {
                "the account".to_owned()
            } else {
                format!("{} {}", on.to_ascii_lowercase(), g.name)
            };
            let target = if on == "ACCOUNT" {
                "ACCOUNT".to_owned()
            } else {
                format!("{on} {}", g.name)
            };
            let revoke = if g.privilege == "OWNERSHIP" {
                // Ownership is not revoked but handed to another role.
                format!("GRANT OWNERSHIP ON {target} TO ROLE <another role> COPY CURRENT GRANTS;")
            } else {
                format!("REVOKE {} ON {target} FROM ROLE {from};", g.privilege)
            };
            let entry = writes.entry(g.privilege.clone()).or_default();
            entry.0.push(format!("{object} (held by {holder})"));
            entry.1.push(revoke);
        }
    }
    for (privilege, (objects, revokes)) in writes {
        out.push(PrivilegeWarning {
            detail: format!(
                "{} object{}: {}",
                objects.len(),
                plural(objects.len()),
                listing(&objects)
            ),
            revoke: listing(&revokes),
            privilege,
        });
    }
    if truncated {
        tracing::warn!(
            max = MAX_ROLES,
            "Snowflake privilege check: more inherited roles than it reads; the rest were not checked"
        );
        out.push(PrivilegeWarning {
            privilege: "more inherited roles".into(),
            detail: format!(
                "role {role} inherits more than {MAX_ROLES} roles; the grants of the rest were not read"
            ),
            revoke: "give prdiff a dedicated role that inherits only what it reads".into(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;

    use super::*;
    use crate::sql::{Dialect, Snowflake};
    use crate::warehouse::{PrivilegeScope, privilege_warnings, privileges_checked};

    /// Rows of `SHOW GRANTS TO ROLE` in the documented column order (created_on,
    /// privilege, granted_on, name, granted_to, grantee_name, grant_option, granted_by):
    /// <https://docs.snowflake.com/en/sql-reference/sql/show-grants>.
    fn grant(privilege: &str, on: &str, name: &str, grantee: &str) -> Row {
        [
            "2026-01-01 00:00:00.000 -0800",
            privilege,
            on,
            name,
            "ROLE",
            grantee,
            "false",
            "SECURITYADMIN",
        ]
        .iter()
        .map(|v| Some((*v).to_owned()))
        .collect()
    }

    /// A Snowflake warehouse that answers `CURRENT_ROLE()` and `SHOW GRANTS TO ROLE` from
    /// tables, or fails `SHOW` as a stand-in without it does; records what it was sent.
    struct Fake {
        role: &'static str,
        grants: Vec<(&'static str, Vec<Row>)>,
        show_fails: bool,
        sent: Mutex<Vec<String>>,
    }

    impl Fake {
        fn new(role: &'static str, grants: Vec<(&'static str, Vec<Row>)>) -> Self {
            Fake {
                role,
                grants,
                show_fails: false,
                sent: Mutex::new(Vec::new()),
            }
        }
    }

    #[async_trait]
    impl Warehouse for Fake {
        fn dialect(&self) -> &'static dyn Dialect {
            &Snowflake
        }
        async fn query(&self, sql: &str) -> Result<Vec<Row>, WarehouseError> {
            self.sent.lock().unwrap().push(sql.to_owned());
            if sql == "SELECT CURRENT_ROLE()" {
                return Ok(vec![vec![Some(self.role.to_owned())]]);
            }
            if self.show_fails {
                return Err(WarehouseError::Rejected {
                    message:
                        "[001003, SQLSTATE 42000] Parser Error: syntax error at or near \"SHOW\""
                            .into(),
                });
            }
            for (role, rows) in &self.grants {
                if sql == format!("SHOW GRANTS TO ROLE \"{role}\"") {
                    return Ok(rows.clone());
                }
            }
            Err(WarehouseError::Rejected {
                message: format!("unexpected statement: {sql}"),
            })
        }
    }

    #[tokio::test]
    async fn a_read_only_role_has_no_warnings() {
        let wh = Fake::new(
            "PRDIFF_READER",
            vec![(
                "PRDIFF_READER",
                vec![
                    grant("USAGE", "WAREHOUSE", "PRDIFF_WH", "PRDIFF_READER"),
                    grant("USAGE", "DATABASE", "ANALYTICS", "PRDIFF_READER"),
                    grant("USAGE", "SCHEMA", "ANALYTICS.PROD", "PRDIFF_READER"),
                    grant("SELECT", "TABLE", "ANALYTICS.PROD.ORDERS", "PRDIFF_READER"),
                    grant("SELECT", "VIEW", "ANALYTICS.PROD.V", "PRDIFF_READER"),
                ],
            )],
        );
        assert!(privileges_checked("snowflake"));
        let w = privilege_warnings(&wh, &PrivilegeScope::AllSchemas)
            .await
            .unwrap();
        assert!(w.is_empty(), "{w:?}");
    }

    #[tokio::test]
    async fn write_rights_of_the_role_and_its_inherited_roles_are_named_with_their_revoke() {
        let wh = Fake::new(
            "CI",
            vec![
                (
                    "CI",
                    vec![
                        grant("USAGE", "ROLE", "TRANSFORMER", "CI"),
                        grant("SELECT", "TABLE", "ANALYTICS.PROD.ORDERS", "CI"),
                        grant("INSERT", "TABLE", "ANALYTICS.PROD.ORDERS", "CI"),
                        grant("OWNERSHIP", "SCHEMA", "ANALYTICS.DBT_PR_1", "CI"),
                    ],
                ),
                (
                    "TRANSFORMER",
                    vec![
                        grant("CREATE SCHEMA", "DATABASE", "ANALYTICS", "TRANSFORMER"),
                        grant("INSERT", "TABLE", "ANALYTICS.PROD.PAYMENTS", "TRANSFORMER"),
                        grant("CREATE DATABASE", "ACCOUNT", "XY12345", "TRANSFORMER"),
                        grant("USAGE", "ROLE", "SYSADMIN", "TRANSFORMER"),
                        // A cycle back to the first role is not followed again.
                        grant("USAGE", "ROLE", "CI", "TRANSFORMER"),
                    ],
                ),
            ],
        );
        let w = privilege_warnings(&wh, &PrivilegeScope::AllSchemas)
            .await
            .unwrap();
        let names: Vec<&str> = w.iter().map(|w| w.privilege.as_str()).collect();
        assert_eq!(
            names,
            [
                "member of SYSADMIN",
                "CREATE DATABASE",
                "CREATE SCHEMA",
                "INSERT",
                "OWNERSHIP"
            ]
        );
        assert_eq!(
            w[0].revoke,
            "REVOKE ROLE SYSADMIN FROM ROLE \"TRANSFORMER\";"
        );
        assert_eq!(
            w[1].revoke,
            "REVOKE CREATE DATABASE ON ACCOUNT FROM ROLE \"TRANSFORMER\";"
        );
        assert_eq!(
            w[2].revoke,
            "REVOKE CREATE SCHEMA ON DATABASE ANALYTICS FROM ROLE \"TRANSFORMER\";"
        );
        assert_eq!(
            w[3].detail,
            "2 objects: table ANALYTICS.PROD.ORDERS (held by CI), \
             table ANALYTICS.PROD.PAYMENTS (held by TRANSFORMER)"
        );
        assert_eq!(
            w[3].revoke,
            "REVOKE INSERT ON TABLE ANALYTICS.PROD.ORDERS FROM ROLE \"CI\";, \
             REVOKE INSERT ON TABLE ANALYTICS.PROD.PAYMENTS FROM ROLE \"TRANSFORMER\";"
        );
        assert_eq!(
            w[4].revoke,
            "GRANT OWNERSHIP ON SCHEMA ANALYTICS.DBT_PR_1 TO ROLE <another role> COPY CURRENT GRANTS;"
        );
        // The session's role, then the inherited one; SYSADMIN and the cycle not read.
        assert_eq!(
            *wh.sent.lock().unwrap(),
            [
                "SELECT CURRENT_ROLE()",
                "SHOW GRANTS TO ROLE \"CI\"",
                "SHOW GRANTS TO ROLE \"TRANSFORMER\""
            ]
        );
    }

    #[tokio::test]
    async fn an_admin_session_role_is_one_warning_and_no_further_queries() {
        let wh = Fake::new("ACCOUNTADMIN", vec![]);
        let w = privilege_warnings(&wh, &PrivilegeScope::AllSchemas)
            .await
            .unwrap();
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].privilege, "ACCOUNTADMIN");
        assert!(w[0].revoke.contains("dedicated read-only role"), "{}", w[0]);
        assert_eq!(wh.sent.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn role_names_are_quoted_and_odd_rows_are_an_error_not_silence() {
        let wh = Fake::new(
            "Ci \"x\"",
            vec![(
                "Ci \"\"x\"\"",
                vec![vec![Some("2026-01-01".into()), Some("SELECT".into())]],
            )],
        );
        let e = privilege_warnings(&wh, &PrivilegeScope::AllSchemas)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("does not read"), "{e}");
        assert_eq!(
            wh.sent.lock().unwrap()[1],
            "SHOW GRANTS TO ROLE \"Ci \"\"x\"\"\""
        );
    }

    #[tokio::test]
    async fn a_warehouse_without_show_grants_reports_its_own_error() {
        let mut wh = Fake::new("PRDIFF", vec![]);
        wh.show_fails = true;
        let e = privilege_warnings(&wh, &PrivilegeScope::AllSchemas)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("Parser Error"), "{e}");
    }
}
