//! Secrets for one local process: values put at run time (memory), then environment
//! variables, then files in a directory.
//!
//! Lookup of `prdiff/acme/dbt-api-key`: memory; env `PRDIFF_SECRET_PRDIFF_ACME_DBT_API_KEY`
//! (upper-cased, other characters → `_`); file `<dir>/prdiff_acme_dbt-api-key`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::RwLock;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};

use super::{Secrets, SecretsError};
use crate::config::SecretName;

/// Memory, environment and directory secrets.
#[derive(Default)]
pub struct LocalSecrets {
    values: RwLock<HashMap<SecretName, SecretString>>,
    dir: Option<PathBuf>,
    use_env: bool,
}

impl LocalSecrets {
    /// Memory only: for tests and benchmarks.
    pub fn in_memory() -> Self {
        Self::default()
    }

    /// Memory, then environment variables, then files in `dir` (written by `put`).
    pub fn with_env_and_dir(dir: Option<PathBuf>) -> Self {
        Self {
            values: RwLock::default(),
            dir,
            use_env: true,
        }
    }

    /// The environment variable that holds a secret.
    pub fn env_var(name: &SecretName) -> String {
        let tail: String = name
            .as_str()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect();
        format!("PRDIFF_SECRET_{tail}")
    }

    fn file_name(name: &SecretName) -> String {
        name.as_str()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    }

    /// Sets a value in memory (tests, `prdiff serve` wiring).
    pub fn insert(&self, name: &SecretName, value: &str) {
        self.values
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.clone(), SecretString::from(value.to_owned()));
    }
}

#[async_trait]
impl Secrets for LocalSecrets {
    async fn get(&self, name: &SecretName) -> Result<SecretString, SecretsError> {
        if let Some(v) = self
            .values
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
        {
            return Ok(v.clone());
        }
        if self.use_env
            && let Ok(v) = std::env::var(Self::env_var(name))
        {
            return Ok(SecretString::from(v));
        }
        if let Some(dir) = &self.dir {
            let path = dir.join(Self::file_name(name));
            match std::fs::read_to_string(&path) {
                Ok(v) => {
                    return Ok(SecretString::from(
                        v.trim_end_matches(['\r', '\n']).to_owned(),
                    ));
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(SecretsError::Backend {
                        name: name.clone(),
                        retryable: false,
                        source: Box::new(e),
                    });
                }
            }
        }
        Err(SecretsError::NotFound(name.clone()))
    }

    async fn put(&self, name: &SecretName, value: SecretString) -> Result<(), SecretsError> {
        if let Some(dir) = &self.dir {
            let path = dir.join(Self::file_name(name));
            write_private(&path, value.expose_secret()).map_err(|e| SecretsError::Backend {
                name: name.clone(),
                retryable: false,
                source: Box::new(e),
            })?;
        }
        self.values
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.clone(), value);
        Ok(())
    }
}

/// Writes a file readable by its owner only (0600) in a directory only its owner can
/// enter (0700), whatever the process umask: a directory this creates gets 0700, the
/// secrets directory itself is narrowed to it if it is wider, and a file that already
/// existed with a wider mode is narrowed before the value is written.
fn write_private(path: &std::path::Path, value: &str) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        let mut dirs = std::fs::DirBuilder::new();
        dirs.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
            dirs.mode(0o700);
            dirs.create(parent)?;
            let mode = std::fs::metadata(parent)?.permissions().mode() & 0o7777;
            if mode & 0o077 != 0 {
                std::fs::set_permissions(parent, std::fs::Permissions::from_mode(mode & 0o700))?;
            }
        }
        #[cfg(not(unix))]
        dirs.create(parent)?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut file = opts.open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    file.write_all(value.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_put_secret_reads_back_from_memory_and_from_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let name = SecretName::parse("prdiff/acme/dbt-api-key").unwrap();
        let store = LocalSecrets::with_env_and_dir(Some(dir.path().to_owned()));
        store
            .put(&name, SecretString::from("dbtc_123".to_owned()))
            .await
            .unwrap();
        assert_eq!(store.get(&name).await.unwrap().expose_secret(), "dbtc_123");
        let fresh = LocalSecrets::with_env_and_dir(Some(dir.path().to_owned()));
        assert_eq!(fresh.get(&name).await.unwrap().expose_secret(), "dbtc_123");
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn the_secrets_directory_and_its_files_are_private_to_their_owner() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let base = tempfile::tempdir().unwrap();
        std::fs::set_permissions(base.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let dir = base.path().join("prdiff.db.secrets");
        let store = LocalSecrets::with_env_and_dir(Some(dir.clone()));
        let name = SecretName::parse("prdiff/acme/git-token").unwrap();
        store
            .put(&name, SecretString::from("ghp_1".to_owned()))
            .await
            .unwrap();
        let file = dir.join("prdiff_acme_git-token");
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&file), 0o600);
        // Made wide by hand: the next write narrows both again.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        store
            .put(&name, SecretString::from("ghp_2".to_owned()))
            .await
            .unwrap();
        assert_eq!((mode(&dir), mode(&file)), (0o700, 0o600));
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "ghp_2");
        // The directory's parent is not ours to change.
        assert_eq!(mode(base.path()), 0o755);
    }

    #[tokio::test]
    async fn a_missing_secret_is_not_found_and_its_debug_shows_no_value() {
        let store = LocalSecrets::in_memory();
        let name = SecretName::parse("nope").unwrap();
        assert!(matches!(
            store.get(&name).await,
            Err(SecretsError::NotFound(_))
        ));
        store.insert(&name, "hunter2");
        let v = store.get(&name).await.unwrap();
        assert!(!format!("{v:?}").contains("hunter2"));
    }

    #[test]
    fn env_var_names_are_upper_case_with_underscores() {
        let name = SecretName::parse("prdiff/acme/dbt-api-key").unwrap();
        assert_eq!(
            LocalSecrets::env_var(&name),
            "PRDIFF_SECRET_PRDIFF_ACME_DBT_API_KEY"
        );
    }
}
