//! Peak memory and time of one metadata sync of a large manifest, in its own process so
//! `/usr/bin/time -v` measures the sync alone (`scripts/bench_sync.sh` drives it).
//!
//! ```text
//! sync_bench generate DIR N   # DIR/api/v2/... as a static dbt Cloud: runs list + manifest
//! sync_bench run URL          # sync from that dbt Cloud into moto (PRDIFF_TEST_AWS_ENDPOINT)
//!                             # or, without it, into in-memory SQLite; then sync again
//! ```

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use prdiff_shared::app::sync::{SyncDeps, sync_config};
use prdiff_shared::config::{ConfigFile, DataSourceId, SecretSource};
use prdiff_shared::dbtcloud::http::HttpDbtCloud;
use prdiff_shared::metadata::MetadataStore;
use prdiff_shared::metadata::dynamodb::DynamoMetadata;
use prdiff_shared::metadata::embedded::EmbeddedMetadata;
use prdiff_shared::secrets::local::LocalSecrets;
use prdiff_shared::store::ConfigStore;
use prdiff_shared::store::dynamodb::DynamoStore;
use prdiff_shared::store::embedded::EmbeddedStore;

fn peak_rss_mb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .unwrap_or(0)
        / 1024
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["generate", dir, n] => generate(dir, n.parse().context("N")?),
        ["run", url] => run(url).await,
        _ => bail!("usage: sync_bench generate DIR N | sync_bench run URL"),
    }
}

fn generate(dir: &str, n: usize) -> anyhow::Result<()> {
    let base = std::path::Path::new(dir).join("api/v2/accounts/1/runs");
    std::fs::create_dir_all(base.join("100/artifacts"))?;
    std::fs::write(
        base.join("index.html"),
        r#"{"status": {"code": 200}, "data": [{"id": 100, "status": 10, "job_definition_id": 2}]}"#,
    )?;
    let manifest = prdiff_sync::synthetic::manifest(n, "2026-11-27T09:00:00Z");
    std::fs::write(base.join("100/artifacts/manifest.json"), &manifest)?;
    println!("{n} models, manifest {:.1} MB", manifest.len() as f64 / 1e6);
    Ok(())
}

async fn run(url: &str) -> anyhow::Result<()> {
    let text = format!(
        r#"
[[ci_config]]
name = "bench"
data_source = "wh"
repository = {{ provider = "github", full_name = "acme/analytics" }}
git_auth = {{ kind = "token", token = {{ secret = "prdiff/bench/git-token" }} }}
dbt_cloud = {{ access_url = "{url}", account_id = 1, api_key = {{ secret = "prdiff/bench/dbt-api-key" }}, artifacts_job_id = 2, pr_job_id = 3 }}
"#
    );
    let file = ConfigFile::parse(&text, &[DataSourceId::parse("wh").unwrap()])?;
    let config = file
        .ci_configs
        .into_iter()
        .next()
        .unwrap()
        .map_secrets(|_, s| match s {
            SecretSource::Stored { secret } => Ok(secret),
            other => Err(anyhow::anyhow!("{other:?}")),
        })?;
    let configs = EmbeddedStore::in_memory();
    configs.put_all(&[], std::slice::from_ref(&config)).await?;
    let secrets = LocalSecrets::in_memory();
    secrets.insert(&config.dbt_cloud.api_key, "bench-key");
    let (metadata, store_name): (Arc<dyn MetadataStore>, &str) =
        match std::env::var("PRDIFF_TEST_AWS_ENDPOINT") {
            Ok(endpoint) => {
                let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
                    .endpoint_url(endpoint)
                    .region(aws_config::Region::new("us-east-1"))
                    .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                        "test", "test", None, None, "bench",
                    ))
                    .load()
                    .await;
                let table = format!("prdiff_sync_bench_{}", std::process::id());
                let client = aws_sdk_dynamodb::Client::new(&sdk);
                DynamoStore::new(client.clone(), &table)
                    .create_table()
                    .await?;
                (
                    Arc::new(DynamoMetadata::new(client, table)),
                    "DynamoDB (moto)",
                )
            }
            Err(_) => (Arc::new(EmbeddedMetadata::in_memory()), "SQLite (memory)"),
        };
    let deps = SyncDeps {
        configs: Arc::new(configs),
        metadata,
        secrets: Arc::new(secrets),
        dbt: Arc::new(HttpDbtCloud::default()),
    };
    let started = Instant::now();
    let first = sync_config(&deps, &config.name, 1_800_000_000).await?;
    let first_time = started.elapsed();
    let first_peak = peak_rss_mb();
    let started = Instant::now();
    let again = sync_config(&deps, &config.name, 1_800_003_600).await?;
    println!(
        "store {store_name}: first sync {} models added in {:.1?} (peak RSS {first_peak} MB); \
         unchanged sync in {:.1?} (unchanged = {}); peak RSS {} MB",
        first.added.len(),
        first_time,
        started.elapsed(),
        again.unchanged,
        peak_rss_mb()
    );
    Ok(())
}
