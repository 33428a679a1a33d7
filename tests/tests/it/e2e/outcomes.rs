//! Every way a run ends, end to end (the webhook, poller and diff runner handlers, serve's
//! lifecycle pass on the embedded store, the sync Lambda's tick on moto): the final commit
//! status, its description, and what the sticky comment says.

use super::*;
use prdiff_shared::queue::DeadLetters;
use prdiff_shared::queue::sqs::SqsDeadLetters;
use prdiff_shared::store::unix_now;

const FOUR_HOURS: Duration = Duration::from_secs(4 * 3600);

/// The PR run's run_results with `models` built into relations that do not exist.
fn missing_relations(models: &[&str]) -> Vec<u8> {
    let mut results: serde_json::Value = serde_json::from_slice(&built().pr_run_results).unwrap();
    for r in results["results"].as_array_mut().unwrap() {
        for m in models {
            if r["unique_id"] == format!("model.e2e_shop.{m}") {
                let rel = r["relation_name"]
                    .as_str()
                    .unwrap()
                    .replace(m, &format!("{m}_missing"));
                r["relation_name"] = rel.into();
            }
        }
    }
    serde_json::to_vec(&results).unwrap()
}

/// The last status set on `head` (any state).
fn last_status(p: &Pipeline, head: &str) -> CommitStatus {
    p.host
        .statuses()
        .into_iter()
        .rev()
        .find(|(sha, _)| sha == head)
        .map(|(_, st)| st)
        .unwrap_or_else(|| panic!("no status on {head}"))
}

/// The one sticky comment (id, body).
fn sticky(p: &Pipeline) -> (u64, String) {
    let all = p.host.comments();
    assert_eq!(all.len(), 1, "one sticky comment: {all:?}");
    all[0].clone()
}

async fn patches(p: &Pipeline) -> usize {
    p._github_server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.method.as_str() == "PATCH")
        .count()
}

#[tokio::test]
async fn a_run_whose_every_model_fails_ends_in_failure_with_the_counts_and_a_link() {
    let p = Pipeline::embedded(&config("shop", "")).await;
    let run = p.open_pr("o-all-1", HEAD).await;
    p.prod_run(510, BASE);
    p.pr_run(
        910,
        HEAD,
        status::SUCCESS,
        Some(missing_relations(&["orders", "customers"])),
    );
    p.deliver_polls().await;
    p.deliver_diffs().await;
    assert_eq!(run_state(&p, &run).await, RunState::Done);
    assert_eq!(
        p.final_statuses(HEAD),
        [(
            StatusState::Failure,
            "prdiff: 2 of 2 models failed, 0 with differences".to_owned()
        )]
    );
    let (id, comment) = sticky(&p);
    assert!(comment.contains("❌ 2 of 2 models failed"), "{comment}");
    for m in ["orders", "customers"] {
        let cells = row(&comment, m).join("|");
        assert!(cells.contains("failed"), "{m}: {comment}");
    }
    // The check links to the comment.
    assert_eq!(
        last_status(&p, HEAD).target_url.as_deref(),
        Some(comment_url(id).as_str())
    );
}

#[tokio::test]
async fn a_wrong_warehouse_login_fails_every_model_and_the_check() {
    let p = Pipeline::embedded(&config("shop", "")).await;
    // The data source logs in as a user the cluster does not have.
    let configs = p.webhook.configs.clone();
    let mut source = configs
        .get_data_source(&DataSourceId::parse("wh").unwrap())
        .await
        .unwrap()
        .unwrap();
    source
        .connection
        .insert("user".into(), "prdiff_no_such_user".into());
    let config = configs
        .get_config(&prdiff_shared::config::ConfigId::parse("shop").unwrap())
        .await
        .unwrap()
        .unwrap();
    configs.put_all(&[source], &[config]).await.unwrap();
    let run = p.open_pr("o-pw-1", HEAD).await;
    p.prod_run(511, BASE);
    p.pr_run(911, HEAD, status::SUCCESS, None);
    p.deliver_polls().await;
    // Delivered as the queue's last attempt: whatever the error, it is the model's result.
    let msgs: Vec<Message> = p.diffs.drain().into_iter().map(|(m, _)| m).collect();
    let resp = prdiff_diff::handle_batch(sqs_event(&msgs, 5), &p.differ).await;
    assert!(resp.batch_item_failures.is_empty(), "{resp:?}");
    assert_eq!(run_state(&p, &run).await, RunState::Done);
    let statuses = p.final_statuses(HEAD);
    assert_eq!(statuses.len(), 1, "{statuses:?}");
    assert_eq!(statuses[0].0, StatusState::Failure);
    assert!(
        statuses[0].1.starts_with("prdiff: 2 of 2 models failed"),
        "{statuses:?}"
    );
}

/// The failed model's collapsible section in the comment, `<details>` to `</details>`.
fn failure_section<'a>(comment: &'a str, model: &str) -> &'a str {
    let open = format!("<details><summary><code>{model}</code> · ⚠️ failed");
    let start = comment
        .find(&open)
        .unwrap_or_else(|| panic!("no failure section for {model}:\n{comment}"));
    let len = comment[start..]
        .find("</details>")
        .unwrap_or_else(|| panic!("unclosed section for {model}:\n{comment}"));
    &comment[start..start + len]
}

#[tokio::test]
async fn a_wrong_warehouse_password_fails_every_model_on_the_first_delivery() {
    let p = Pipeline::embedded(&config("shop", "")).await;
    // The cluster asks `prdiff_pw` for a password (scripts/lib.sh); this one is wrong.
    let configs = p.webhook.configs.clone();
    let mut source = configs
        .get_data_source(&DataSourceId::parse("wh").unwrap())
        .await
        .unwrap()
        .unwrap();
    source.connection.insert("user".into(), "prdiff_pw".into());
    let secret = SecretName::parse("prdiff/wh/wrong-password").unwrap();
    p.secrets.insert(&secret, "not-the-password");
    source.secret = Some(secret);
    let config = configs
        .get_config(&prdiff_shared::config::ConfigId::parse("shop").unwrap())
        .await
        .unwrap()
        .unwrap();
    configs.put_all(&[source], &[config]).await.unwrap();
    let run = p.open_pr("o-pw-2", HEAD).await;
    p.prod_run(516, BASE);
    p.pr_run(918, HEAD, status::SUCCESS, None);
    p.deliver_polls().await;
    // The first delivery: a transient error would be handed back to the queue for a retry.
    let msgs: Vec<Message> = p.diffs.drain().into_iter().map(|(m, _)| m).collect();
    assert_eq!(msgs.len(), 2);
    let resp = prdiff_diff::handle_batch(sqs_event(&msgs, 1), &p.differ).await;
    assert!(
        resp.batch_item_failures.is_empty(),
        "not redelivered: {resp:?}"
    );
    assert!(p.diffs.drain().is_empty());
    assert_eq!(run_state(&p, &run).await, RunState::Done);
    assert_eq!(
        p.final_statuses(HEAD),
        [(
            StatusState::Failure,
            "prdiff: 2 of 2 models failed, 0 with differences".to_owned()
        )]
    );
    let (_, comment) = sticky(&p);
    for m in ["orders", "customers"] {
        let section = failure_section(&comment, m);
        assert!(
            section.contains("password authentication failed for user \"prdiff\\_pw\""),
            "PostgreSQL's own message: {section}"
        );
        assert!(!section.contains("not-the-password"), "{section}");
    }
}

#[tokio::test]
async fn a_long_warehouse_error_is_complete_and_escaped_in_the_model_s_details() {
    let b = built();
    // A reader who may read everything but the PR's copy of `customers`, under a long name:
    // PostgreSQL's "permission denied for table …" is well past 60 characters.
    let long = "customers_kept_from_this_reader_by_a_missing_grant";
    let role = prdiff_tests::unique_name("e2e_reader");
    let (prod, pr) = (&b.prod_schema, &b.pr_schema);
    prdiff_tests::pg_client()
        .await
        .batch_execute(&format!(
            "CREATE TABLE \"{pr}\".\"{long}\" AS SELECT * FROM \"{pr}\".customers;
             CREATE ROLE \"{role}\" LOGIN;
             GRANT USAGE ON SCHEMA \"{prod}\", \"{pr}\" TO \"{role}\";
             GRANT SELECT ON ALL TABLES IN SCHEMA \"{prod}\" TO \"{role}\";
             GRANT SELECT ON \"{pr}\".orders, \"{pr}\".customers TO \"{role}\";"
        ))
        .await
        .unwrap();
    let p = Pipeline::embedded(&config("shop", "")).await;
    let configs = p.webhook.configs.clone();
    let mut source = configs
        .get_data_source(&DataSourceId::parse("wh").unwrap())
        .await
        .unwrap()
        .unwrap();
    source.connection.insert("user".into(), role.clone());
    let config = configs
        .get_config(&prdiff_shared::config::ConfigId::parse("shop").unwrap())
        .await
        .unwrap()
        .unwrap();
    configs.put_all(&[source], &[config]).await.unwrap();
    let run = p.open_pr("o-long-1", HEAD).await;
    p.prod_run(517, BASE);
    let mut results: serde_json::Value = serde_json::from_slice(&b.pr_run_results).unwrap();
    for r in results["results"].as_array_mut().unwrap() {
        if r["unique_id"] == "model.e2e_shop.customers" {
            let rel = r["relation_name"]
                .as_str()
                .unwrap()
                .replace("customers", long);
            r["relation_name"] = rel.into();
        }
    }
    p.pr_run(
        919,
        HEAD,
        status::SUCCESS,
        Some(serde_json::to_vec(&results).unwrap()),
    );
    p.deliver_polls().await;
    p.deliver_diffs().await;
    assert_eq!(run_state(&p, &run).await, RunState::Done);
    let (_, comment) = sticky(&p);
    let section = failure_section(&comment, "customers");
    // PostgreSQL's message and SQLSTATE, escaped for markdown, not cut.
    let message = format!("permission denied for table {long}");
    assert!(message.chars().count() > 60);
    let escaped = message.replace('_', "\\_");
    assert!(section.contains(&escaped), "{escaped}\nnot in:\n{section}");
    assert!(section.contains("SQLSTATE 42501"), "{section}");
    assert!(!section.contains('…'), "{section}");
    assert_eq!(
        p.final_statuses(HEAD),
        [(
            StatusState::Failure,
            "prdiff: 1 of 2 models failed, 1 with differences".to_owned()
        )]
    );
    prdiff_tests::pg_client()
        .await
        .batch_execute(&format!(
            "DROP TABLE \"{pr}\".\"{long}\";
             REVOKE ALL ON ALL TABLES IN SCHEMA \"{prod}\" FROM \"{role}\";
             REVOKE ALL ON ALL TABLES IN SCHEMA \"{pr}\" FROM \"{role}\";
             REVOKE ALL ON SCHEMA \"{prod}\", \"{pr}\" FROM \"{role}\";
             DROP ROLE \"{role}\";"
        ))
        .await
        .unwrap();
}

/// The files-to-ignore example "exclude everything except the /dbt folder, but not the dbt
/// .md files".
const DBT_ONLY: &str = "files_to_ignore = \"\"\"\n*\n!dbt/*\ndbt/*.md\n\"\"\"";

#[tokio::test]
async fn with_the_dbt_folder_example_a_model_change_is_diffed() {
    let p = Pipeline::embedded(&config("shop", DBT_ONLY)).await;
    *p.host.files.lock().unwrap() = vec!["dbt/models/x.sql".into()];
    let run = p.open_pr("o-ig-1", HEAD).await;
    p.prod_run(518, BASE);
    p.pr_run(920, HEAD, status::SUCCESS, None);
    p.deliver_polls().await;
    p.deliver_diffs().await;
    assert_eq!(run_state(&p, &run).await, RunState::Done);
    let statuses = p.final_statuses(HEAD);
    assert_eq!(statuses.len(), 1, "{statuses:?}");
    assert_eq!(statuses[0].0, StatusState::Success);
    assert_eq!(statuses[0].1, "prdiff: 2 models diffed, 1 with differences");
    let (_, comment) = sticky(&p);
    assert_eq!(row(&comment, "orders")[2], "1,000 → 999", "{comment}");
}

#[tokio::test]
async fn with_the_dbt_folder_example_docs_only_changes_are_skipped_with_the_reason() {
    for (i, changed) in [
        vec!["dbt/README.md"],
        vec!["README.md"],
        vec!["README.md", "dbt/README.md", "airflow/dags/x.py"],
    ]
    .into_iter()
    .enumerate()
    {
        let p = Pipeline::embedded(&config("shop", DBT_ONLY)).await;
        *p.host.files.lock().unwrap() = changed.iter().map(|f| (*f).to_owned()).collect();
        let mut body: serde_json::Value = serde_json::from_slice(
            &std::fs::read(prdiff_tests::fixtures().join("github/pull_request.opened.json"))
                .unwrap(),
        )
        .unwrap();
        body["pull_request"]["head"]["sha"] = HEAD.into();
        let req = github(
            "pull_request",
            &format!("o-ig-skip-{i}"),
            serde_json::to_vec(&body).unwrap(),
        );
        let resp = prdiff_webhook::handle(&req, &p.webhook).await;
        assert_eq!(resp.status, 200, "{changed:?}: {}", resp.body);
        assert_eq!(resp.body["status"], "ignored", "{changed:?}: {}", resp.body);
        let reason = format!(
            "prdiff skipped: all {} changed files match files_to_ignore",
            changed.len()
        );
        assert_eq!(
            p.final_statuses(HEAD),
            [(StatusState::Success, reason)],
            "{changed:?}"
        );
        assert!(p.poll.drain().is_empty(), "{changed:?}: nothing to poll");
    }
}

/// The GitHub `pull_request` fixture at `head`, into `base`, as `action`.
fn pr_into(base: &str, head: &str, action: &str) -> Vec<u8> {
    let mut body: serde_json::Value = serde_json::from_slice(
        &std::fs::read(prdiff_tests::fixtures().join("github/pull_request.opened.json")).unwrap(),
    )
    .unwrap();
    body["action"] = action.into();
    body["pull_request"]["head"]["sha"] = head.into();
    body["pull_request"]["base"]["ref"] = base.into();
    if action == "edited" {
        body["changes"] = serde_json::json!({"base": {"ref": {"from": "master"}}});
    }
    serde_json::to_vec(&body).unwrap()
}

#[tokio::test]
async fn with_a_base_branch_only_prs_into_it_are_diffed_and_others_are_skipped_with_the_reason() {
    // The fixture's PR is into `master`; the configuration runs only for `master`.
    let p = Pipeline::embedded(&config("shop", "base_branch = \"master\"")).await;
    let req = github(
        "pull_request",
        "o-bb-skip",
        pr_into("develop", HEAD, "opened"),
    );
    let resp = prdiff_webhook::handle(&req, &p.webhook).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(resp.body["status"], "ignored", "{}", resp.body);
    let reason = "prdiff skipped: base branch develop is not master";
    assert_eq!(resp.body["skipped"][0]["reason"], reason, "{}", resp.body);
    assert_eq!(
        p.final_statuses(HEAD),
        [(StatusState::Success, reason.to_owned())]
    );
    assert!(p.poll.drain().is_empty(), "nothing to poll");

    // A PR into `master` runs to the end.
    let run = p.open_pr("o-bb-run", NEWER_HEAD).await;
    p.prod_run(519, BASE);
    p.pr_run(921, NEWER_HEAD, status::SUCCESS, None);
    p.deliver_polls().await;
    p.deliver_diffs().await;
    assert_eq!(run_state(&p, &run).await, RunState::Done);
    assert_eq!(
        p.final_statuses(NEWER_HEAD),
        [(
            StatusState::Success,
            "prdiff: 2 models diffed, 1 with differences".to_owned()
        )]
    );
}

#[tokio::test]
async fn retargeting_a_pr_away_from_the_base_branch_supersedes_its_run_and_skips_it() {
    let p = Pipeline::embedded(&config("shop", "base_branch = \"master\"")).await;
    let run = p.open_pr("o-bb-open", HEAD).await;
    let polls = p.poll.drain();
    assert_eq!(polls.len(), 1);
    let req = github(
        "pull_request",
        "o-bb-edit",
        pr_into("develop", HEAD, "edited"),
    );
    let resp = prdiff_webhook::handle(&req, &p.webhook).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(run_state(&p, &run).await, RunState::Superseded);
    let reason = "prdiff skipped: base branch develop is not master";
    assert_eq!(
        p.final_statuses(HEAD),
        [(StatusState::Success, reason.to_owned())]
    );
    // The superseded run's poll ends without a word to the PR.
    for (m, _) in &polls {
        let out = prdiff_poller::handle_message(&m.to_json(), &p.poller)
            .await
            .unwrap();
        assert_eq!(
            out,
            prdiff_poller::PollOutcome::Closed(RunState::Superseded)
        );
    }
    assert_eq!(p.final_statuses(HEAD).len(), 1);
}

/// The PR run's run_results with `customers` built into `relation` (same schema).
fn customers_into(relation: &str) -> Vec<u8> {
    let mut results: serde_json::Value = serde_json::from_slice(&built().pr_run_results).unwrap();
    for r in results["results"].as_array_mut().unwrap() {
        if r["unique_id"] == "model.e2e_shop.customers" {
            let rel = r["relation_name"]
                .as_str()
                .unwrap()
                .replace("customers", relation);
            r["relation_name"] = rel.into();
        }
    }
    serde_json::to_vec(&results).unwrap()
}

#[tokio::test]
async fn with_fail_on_primary_key_issues_duplicate_pr_keys_fail_the_run_and_the_model_is_named() {
    let b = built();
    let pr = &b.pr_schema;
    // The PR's customers with one key value twice.
    let dup = prdiff_tests::unique_name("customers_dup");
    prdiff_tests::pg_client()
        .await
        .batch_execute(&format!(
            "CREATE TABLE \"{pr}\".\"{dup}\" AS
               SELECT * FROM \"{pr}\".customers
               UNION ALL SELECT * FROM \"{pr}\".customers WHERE id = (SELECT min(id) FROM \"{pr}\".customers);"
        ))
        .await
        .unwrap();
    let mut statuses = Vec::new();
    for (i, extra) in ["fail_on_primary_key_issues = true", ""]
        .into_iter()
        .enumerate()
    {
        let p = Pipeline::embedded(&config("shop", extra)).await;
        let run = p.open_pr(&format!("o-pk-{i}"), HEAD).await;
        p.prod_run(523, BASE);
        p.pr_run(924, HEAD, status::SUCCESS, Some(customers_into(&dup)));
        p.deliver_polls().await;
        p.deliver_diffs().await;
        assert_eq!(run_state(&p, &run).await, RunState::Done, "{extra}");
        let (_, comment) = sticky(&p);
        let cells = row(&comment, "customers").join("|");
        assert!(cells.contains("2 duplicate-key rows in PR"), "{comment}");
        let named = comment.contains("NULL or duplicate primary keys in the PR: customers");
        assert_eq!(named, i == 0, "{comment}");
        let got = p.final_statuses(HEAD);
        assert_eq!(got.len(), 1, "{got:?}");
        statuses.push(got[0].clone());
    }
    assert_eq!(statuses[0].0, StatusState::Failure);
    assert!(
        statuses[0]
            .1
            .starts_with("prdiff: primary-key issues in 1 model, 2 models diffed, "),
        "{statuses:?}"
    );
    // Without the setting the same run passes with the same counts.
    assert_eq!(statuses[1].0, StatusState::Success);
    assert_eq!(
        statuses[0].1.replace("primary-key issues in 1 model, ", ""),
        statuses[1].1
    );
    prdiff_tests::pg_client()
        .await
        .batch_execute(&format!("DROP TABLE \"{pr}\".\"{dup}\""))
        .await
        .unwrap();
}

/// A second PR build (schema, manifest, run_results): `customers` becomes a view and a new
/// model `regions` (7 rows) is added; `orders` is unchanged.
fn built_reshaped() -> &'static (String, Vec<u8>, Vec<u8>) {
    static BUILT: std::sync::OnceLock<(String, Vec<u8>, Vec<u8>)> = std::sync::OnceLock::new();
    BUILT.get_or_init(|| {
        built();
        let dir = tempfile::tempdir().unwrap().keep();
        let project = dir.join("pr");
        copy_dir(
            &prdiff_tests::repo_root().join("examples/e2e_shop"),
            &project,
        );
        let customers = project.join("models/customers.sql");
        let sql = std::fs::read_to_string(&customers).unwrap();
        std::fs::write(
            &customers,
            format!("{{{{ config(materialized='view') }}}}\n{sql}"),
        )
        .unwrap();
        std::fs::write(
            project.join("models/regions.sql"),
            "select g as id, 'region ' || g as name\nfrom generate_series(1, 7) as g\n",
        )
        .unwrap();
        let yml = project.join("models/schema.yml");
        let mut schema_yml = std::fs::read_to_string(&yml).unwrap();
        schema_yml.push_str(
            "  - name: regions\n    columns:\n      - name: id\n        tags: [primary-key]\n",
        );
        std::fs::write(&yml, schema_yml).unwrap();
        let schema = format!("dbt_cloud_pr_{}_{PR_NUMBER}_reshaped", pr_job());
        let target = dir.join("target");
        dbt(&project, &schema, &target);
        (
            schema,
            std::fs::read(target.join("manifest.json")).unwrap(),
            std::fs::read(target.join("run_results.json")).unwrap(),
        )
    })
}

#[tokio::test]
async fn a_new_model_shows_its_pr_rows_and_a_table_to_view_change_is_named() {
    let p = Pipeline::embedded(&config("shop", "")).await;
    let run = p.open_pr("o-new-1", HEAD).await;
    p.prod_run(519, BASE);
    let (schema, manifest, run_results) = built_reshaped();
    p.pr_run(921, HEAD, status::SUCCESS, Some(run_results.clone()));
    p.dbt.put_artifact(921, "manifest.json", manifest.clone());
    p.dbt
        .runs
        .lock()
        .unwrap()
        .get_mut(&921)
        .unwrap()
        .trigger
        .as_mut()
        .unwrap()
        .schema_override = Some(schema.clone());
    assert_eq!(
        p.deliver_polls().await,
        [prdiff_poller::PollOutcome::FannedOut { models: 3 }]
    );
    p.deliver_diffs().await;
    assert_eq!(run_state(&p, &run).await, RunState::Done);
    let (_, comment) = sticky(&p);
    // | model | rows prod → PR | added | removed | changed | columns changed | schema | …
    let customers = row(&comment, "customers");
    assert_eq!(customers[2], "100 → 100", "{comment}");
    assert_eq!(customers[7], "`table` → `view`", "{comment}");
    assert!(
        comment.contains("Materialization changed: `table` in production, `view` in this PR."),
        "{comment}"
    );
    let regions = row(&comment, "regions");
    assert!(
        regions[2].starts_with("new model") && regions[2].ends_with("7 rows in the PR"),
        "{comment}"
    );
    assert_eq!(
        p.final_statuses(HEAD),
        [(
            StatusState::Success,
            "prdiff: 2 models diffed, 0 with differences, 1 not diffed".to_owned()
        )]
    );
}

/// The shop with a model `events` whose `payload` column is `json` (no equality operator),
/// built with real dbt into `schema`; returns (manifest, run_results).
fn build_with_events(schema: &str, payload: &str) -> (Vec<u8>, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap().keep();
    let project = dir.join("project");
    copy_dir(
        &prdiff_tests::repo_root().join("examples/e2e_shop"),
        &project,
    );
    std::fs::write(
        project.join("models/events.sql"),
        format!("select g as id, ({payload})::json as payload\nfrom generate_series(1, 10) as g\n"),
    )
    .unwrap();
    let yml = project.join("models/schema.yml");
    let mut schema_yml = std::fs::read_to_string(&yml).unwrap();
    schema_yml.push_str(
        "  - name: events\n    columns:\n      - name: id\n        tags: [primary-key]\n",
    );
    std::fs::write(&yml, schema_yml).unwrap();
    let target = dir.join("target");
    dbt(&project, schema, &target);
    (
        std::fs::read(target.join("manifest.json")).unwrap(),
        std::fs::read(target.join("run_results.json")).unwrap(),
    )
}

#[tokio::test]
async fn through_serve_a_json_column_is_diffed_ignoring_key_order_and_spacing() {
    built();
    // Production writes `{"a": g, "b": 1}`; the PR the same objects with the keys swapped
    // and other spacing, except row 10, whose `b` really changed.
    let prod_schema = prdiff_tests::unique_name("e2e_json_prod");
    let (prod_manifest, _) = build_with_events(&prod_schema, "'{\"a\": ' || g || ', \"b\": 1}'");
    let pr_schema = format!("dbt_cloud_pr_{}_{PR_NUMBER}_json", pr_job());
    let (pr_manifest, pr_results) = build_with_events(
        &pr_schema,
        "'{  \"b\":' || case when g = 10 then 2 else 1 end || ',\"a\":' || g || '}'",
    );
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("prdiff.db");
    let store = Arc::new(EmbeddedStore::open(&db).unwrap());
    let p = Pipeline::over(store.clone(), store, &config("shop", "")).await;
    p.prod_run(520, BASE);
    p.dbt.put_artifact(520, "manifest.json", prod_manifest);
    p.pr_run(922, HEAD, status::SUCCESS, Some(pr_results));
    p.dbt.put_artifact(922, "manifest.json", pr_manifest);
    p.dbt
        .runs
        .lock()
        .unwrap()
        .get_mut(&922)
        .unwrap()
        .trigger
        .as_mut()
        .unwrap()
        .schema_override = Some(pr_schema.clone());

    let (addr, stop, task) = start_serve(&p, &db).await;
    let mut body: serde_json::Value = serde_json::from_slice(
        &std::fs::read(prdiff_tests::fixtures().join("github/pull_request.opened.json")).unwrap(),
    )
    .unwrap();
    body["pull_request"]["head"]["sha"] = HEAD.into();
    let req = github(
        "pull_request",
        "o-json-1",
        serde_json::to_vec(&body).unwrap(),
    );
    let resp = post_webhook(addr, &req).await;
    assert_eq!(resp.status().as_u16(), 202);
    eventually("the final status", Duration::from_secs(60), || {
        !p.final_statuses(HEAD).is_empty()
    })
    .await;
    stop.send(()).unwrap();
    task.await.unwrap();

    let (_, comment) = sticky(&p);
    // | model | rows prod → PR | added | removed | changed | columns changed | …
    let events = row(&comment, "events");
    assert_eq!(events[2..7], ["10 → 10", "0", "0", "1", "1"], "{comment}");
    assert!(!comment.contains("failed"), "{comment}");
    assert_eq!(
        p.final_statuses(HEAD),
        [(
            StatusState::Success,
            "prdiff: 3 models diffed, 1 with differences".to_owned()
        )]
    );
}

#[tokio::test]
async fn with_status_reporting_off_failed_models_do_not_block_the_pr() {
    let p = Pipeline::embedded(&config("shop", "status_reporting = false")).await;
    p.open_pr("o-off-1", HEAD).await;
    p.prod_run(512, BASE);
    p.pr_run(
        912,
        HEAD,
        status::SUCCESS,
        Some(missing_relations(&["customers"])),
    );
    p.deliver_polls().await;
    p.deliver_diffs().await;
    assert_eq!(
        p.final_statuses(HEAD),
        [(
            StatusState::Success,
            "prdiff (not blocking): 1 of 2 models failed, 1 with differences".to_owned()
        )]
    );
    let (_, comment) = sticky(&p);
    assert!(comment.contains("not blocking"), "{comment}");
    assert!(row(&comment, "customers").join("|").contains("failed"));
}

#[tokio::test]
async fn a_dbt_cloud_run_cancelled_on_the_current_head_fails_the_run_and_says_so() {
    let p = Pipeline::embedded(&config("shop", "")).await;
    let run = p.open_pr("o-cx-1", HEAD).await;
    p.pr_run(913, HEAD, status::CANCELLED, None);
    let out = p.deliver_polls().await;
    assert_eq!(
        out,
        [prdiff_poller::PollOutcome::DbtCancelled { dbt_run: 913 }]
    );
    assert_eq!(run_state(&p, &run).await, RunState::Failed);
    let statuses = p.final_statuses(HEAD);
    assert_eq!(statuses.len(), 1, "{statuses:?}");
    assert_eq!(statuses[0].0, StatusState::Failure);
    assert!(
        statuses[0].1.contains("dbt Cloud run 913 was cancelled"),
        "{statuses:?}"
    );
    let (_, comment) = sticky(&p);
    assert!(
        comment.contains("dbt Cloud run 913 was cancelled") && comment.contains("/runs/913/"),
        "{comment}"
    );
    assert!(!comment.contains('⏳'), "{comment}");
    assert!(p.poll.drain().is_empty(), "not polled again");
}

#[tokio::test]
async fn closing_the_pr_while_waiting_finalises_the_status_and_the_comment() {
    let p = Pipeline::embedded(&config("shop", "")).await;
    let run = p.open_pr("o-cl-1", HEAD).await;
    p.deliver_polls().await;
    assert!(sticky(&p).1.contains('⏳'));
    let body =
        std::fs::read(prdiff_tests::fixtures().join("github/pull_request.closed.json")).unwrap();
    let resp = prdiff_webhook::handle(&github("pull_request", "o-cl-2", body), &p.webhook).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(resp.body["status"], "cancelled");
    assert_eq!(run_state(&p, &run).await, RunState::Cancelled);
    assert_eq!(
        p.final_statuses(HEAD),
        [(
            StatusState::Failure,
            format!("prdiff: {}", prdiff_webhook::CLOSED_REASON)
        )]
    );
    let (_, comment) = sticky(&p);
    assert!(
        comment.contains("closed before the diff finished") && !comment.contains('⏳'),
        "{comment}"
    );
    // The late poll ends quietly.
    let out = p.deliver_polls().await;
    assert_eq!(
        out,
        [prdiff_poller::PollOutcome::Closed(RunState::Cancelled)]
    );
}

#[tokio::test]
async fn unreadable_poll_and_diff_messages_are_left_for_the_dead_letter_queue() {
    let p = Pipeline::embedded(&config("shop", "")).await;
    let event = |id: &str, body: &str| -> SqsEvent {
        serde_json::from_value(serde_json::json!({ "Records": [{
            "messageId": id, "receiptHandle": "rh", "body": body,
            "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": {},
            "eventSource": "aws:sqs", "awsRegion": "eu-west-1"
        }]}))
        .unwrap()
    };
    let resp = prdiff_poller::handle_batch(event("bad-poll", "{not json"), &p.poller).await;
    assert_eq!(resp.batch_item_failures.len(), 1);
    assert_eq!(resp.batch_item_failures[0].item_identifier, "bad-poll");
    let resp = prdiff_diff::handle_batch(
        event("bad-diff", r#"{"version":1,"kind":"diff"}"#),
        &p.differ,
    )
    .await;
    assert_eq!(resp.batch_item_failures.len(), 1);
    assert_eq!(resp.batch_item_failures[0].item_identifier, "bad-diff");
}

#[tokio::test]
async fn serve_s_tick_ends_a_run_past_its_deadline_with_no_message_alive() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("prdiff.db");
    let p = Pipeline::embedded(&config("shop", "")).await;
    let run = p.open_pr("o-dl-1", HEAD).await;
    p.poll.drain(); // the poll message is lost
    let services = serve_services(&p, &db);
    let none = prdiff_serve::lifecycle_pass(&services, FOUR_HOURS, unix_now()).await;
    assert!(none.is_empty(), "not yet due: {none:?}");
    let ended = prdiff_serve::lifecycle_pass(&services, FOUR_HOURS, unix_now() + 5 * 3600).await;
    assert_eq!(ended, std::slice::from_ref(&run));
    assert_eq!(run_state(&p, &run).await, RunState::Failed);
    assert_eq!(
        p.final_statuses(HEAD),
        [(
            StatusState::Failure,
            "prdiff: no finished dbt Cloud run for commit ec26c3e within 4 h".to_owned()
        )]
    );
    assert!(sticky(&p).1.contains("within 4 h"));
    // A second pass changes nothing.
    let again = prdiff_serve::lifecycle_pass(&services, FOUR_HOURS, unix_now() + 5 * 3600).await;
    assert!(again.is_empty());
    assert_eq!(p.final_statuses(HEAD).len(), 1);
}

#[tokio::test]
async fn a_run_past_its_deadline_while_diffing_reports_every_model() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("prdiff.db");
    let p = Pipeline::embedded(&config("shop", "")).await;
    let run = p.open_pr("o-dd-1", HEAD).await;
    p.prod_run(513, BASE);
    p.pr_run(914, HEAD, status::SUCCESS, None);
    p.deliver_polls().await;
    // One model is diffed; the other's message is lost.
    let msgs: Vec<Message> = p.diffs.drain().into_iter().map(|(m, _)| m).collect();
    assert_eq!(msgs.len(), 2);
    let resp = prdiff_diff::handle_batch(sqs_event(&msgs[..1], 1), &p.differ).await;
    assert!(resp.batch_item_failures.is_empty());
    let ended =
        prdiff_serve::lifecycle_pass(&serve_services(&p, &db), FOUR_HOURS, unix_now() + 5 * 3600)
            .await;
    assert_eq!(ended, std::slice::from_ref(&run));
    assert_eq!(
        p.final_statuses(HEAD),
        [(
            StatusState::Failure,
            "prdiff: the diff did not finish within 4 h".to_owned()
        )]
    );
    let (_, comment) = sticky(&p);
    let Message::Diff(first) = &msgs[0] else {
        panic!("a diff message")
    };
    let (done, lost) = if first.model.ends_with("orders") {
        ("orders", "customers")
    } else {
        ("customers", "orders")
    };
    assert!(
        !row(&comment, done).join("|").contains("failed"),
        "{comment}"
    );
    assert!(
        row(&comment, lost)
            .join("|")
            .contains("not diffed: the diff did not finish within 4 h"),
        "{comment}"
    );
}

#[tokio::test]
async fn serve_s_tick_ends_the_run_of_a_dead_lettered_poll_and_keeps_the_message() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("prdiff.db");
    let p = Pipeline::embedded(&config("shop", "")).await;
    let run = p.open_pr("o-dq-1", HEAD).await;
    let (msg, _) = p.poll.drain().pop().unwrap();
    let services = serve_services(&p, &db);
    let q = services.queues.queue(prdiff_serve::POLL_QUEUE);
    q.send(&msg, Duration::ZERO).await.unwrap();
    let d = q.receive(Duration::from_secs(60)).unwrap().unwrap();
    q.dead_letter(&d, "dbt Cloud answered 503 for an hour")
        .unwrap();
    let ended = prdiff_serve::lifecycle_pass(&services, FOUR_HOURS, unix_now()).await;
    assert_eq!(ended, std::slice::from_ref(&run));
    assert_eq!(run_state(&p, &run).await, RunState::Failed);
    let statuses = p.final_statuses(HEAD);
    assert_eq!(statuses.len(), 1, "{statuses:?}");
    assert_eq!(statuses[0].0, StatusState::Failure);
    assert!(
        statuses[0]
            .1
            .contains("polling dbt Cloud failed repeatedly"),
        "{statuses:?}"
    );
    let (_, comment) = sticky(&p);
    assert!(comment.contains("503 for an hour"), "{comment}");
    assert_eq!(
        services.queues.dead_letters().unwrap().len(),
        1,
        "kept for replay"
    );
}

#[tokio::test]
async fn the_sync_lambda_tick_on_moto_ends_dead_lettered_and_overdue_runs() {
    let store = Arc::new(crate::stores::dynamo_store().await);
    let p = Pipeline::over(store.clone(), store.clone(), &config("shop", "")).await;
    let run = p.open_pr("o-lq-1", HEAD).await;
    let (msg, _) = p.poll.drain().pop().unwrap();
    let dlq = crate::stores::sqs_queue().await;
    dlq.send(&msg, Duration::ZERO).await.unwrap();
    let lifecycle = prdiff_sync::Lifecycle {
        configs: store.clone(),
        runs: store.clone(),
        hosts: p.webhook.hosts.clone(),
        dead_letters: vec![Arc::new(SqsDeadLetters {
            name: "poll".into(),
            queue: dlq.clone(),
        }) as Arc<dyn DeadLetters>],
        deadline: FOUR_HOURS,
    };
    let out = prdiff_sync::lifecycle_tick(&lifecycle, unix_now()).await;
    assert_eq!(out["runs_ended"], serde_json::json!([run.to_string()]));
    assert_eq!(out["errors"], serde_json::json!([]));
    assert_eq!(run_state(&p, &run).await, RunState::Failed);
    let statuses = p.final_statuses(HEAD);
    assert_eq!(statuses.len(), 1, "{statuses:?}");
    assert_eq!(statuses[0].0, StatusState::Failure);
    assert!(statuses[0].1.contains("dead-letter queue"), "{statuses:?}");
    // The message is still in the dead-letter queue (held out of sight for a while).
    let client = aws_sdk_sqs::Client::new(&crate::stores::moto().await);
    let attrs = client
        .get_queue_attributes()
        .queue_url(dlq.url())
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap();
    let count = |k: aws_sdk_sqs::types::QueueAttributeName| -> u64 {
        attrs.get(&k).map_or(0, |v| v.parse().unwrap())
    };
    assert_eq!(
        count(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
            + count(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        1
    );

    // A newer commit's run whose poll is lost: swept past the deadline.
    let newer = p.open_pr("o-lq-2", NEWER_HEAD).await;
    p.poll.drain();
    let out = prdiff_sync::lifecycle_tick(&lifecycle, unix_now() + 5 * 3600).await;
    assert_eq!(out["runs_ended"], serde_json::json!([newer.to_string()]));
    assert_eq!(run_state(&p, &newer).await, RunState::Failed);
    assert_eq!(
        p.final_statuses(NEWER_HEAD),
        [(
            StatusState::Failure,
            "prdiff: no finished dbt Cloud run for commit 0d1a26e within 4 h".to_owned()
        )]
    );
}

#[tokio::test]
async fn artifacts_not_saved_missing_or_unreadable_are_waited_for() {
    let p = Pipeline::embedded(&config("shop", "")).await;
    let run = p.open_pr("o-ar-1", HEAD).await;
    p.prod_run(514, BASE);
    p.pr_run(915, HEAD, status::SUCCESS, None);
    let set_saved = |saved: bool| {
        let mut runs = p.dbt.runs.lock().unwrap();
        runs.get_mut(&915).unwrap().artifacts_saved = Some(saved);
    };
    let awaiting = |out: &[prdiff_poller::PollOutcome]| {
        assert!(
            matches!(
                out,
                [prdiff_poller::PollOutcome::AwaitingArtifacts { dbt_run: 915, .. }]
            ),
            "{out:?}"
        );
    };
    // Succeeded, artifacts not saved yet.
    set_saved(false);
    awaiting(&p.deliver_polls().await);
    // Saved, but manifest.json still answers 404.
    set_saved(true);
    let manifest = p
        .dbt
        .artifacts
        .lock()
        .unwrap()
        .remove(&(915, "manifest.json".to_owned()))
        .unwrap();
    awaiting(&p.deliver_polls().await);
    // A 200 that is not JSON.
    p.dbt
        .put_artifact(915, "manifest.json", b"<html>busy</html>".to_vec());
    awaiting(&p.deliver_polls().await);
    // Ready.
    p.dbt.put_artifact(915, "manifest.json", manifest);
    assert_eq!(
        p.deliver_polls().await,
        [prdiff_poller::PollOutcome::FannedOut { models: 2 }]
    );
    assert_eq!(run_state(&p, &run).await, RunState::Diffing);
    assert!(p.final_statuses(HEAD).is_empty());
}

#[tokio::test]
async fn artifacts_that_never_come_end_the_run_after_a_few_looks_without_blaming_the_ids() {
    let mut p = Pipeline::embedded(&config("shop", "")).await;
    p.poller.settings.artifact_waits = 2;
    let run = p.open_pr("o-ar-2", HEAD).await;
    p.prod_run(515, BASE);
    p.pr_run(916, HEAD, status::SUCCESS, None);
    p.dbt
        .artifacts
        .lock()
        .unwrap()
        .remove(&(916, "manifest.json".to_owned()));
    for _ in 0..2 {
        let out = p.deliver_polls().await;
        assert!(
            matches!(
                out[..],
                [prdiff_poller::PollOutcome::AwaitingArtifacts { .. }]
            ),
            "{out:?}"
        );
    }
    let out = p.deliver_polls().await;
    assert!(
        matches!(out[..], [prdiff_poller::PollOutcome::Ended(_)]),
        "{out:?}"
    );
    assert_eq!(run_state(&p, &run).await, RunState::Failed);
    let st = last_status(&p, HEAD);
    assert_eq!(st.state, StatusState::Failure);
    assert!(
        st.description.contains("no manifest.json for run 916 yet"),
        "{st:?}"
    );
    assert!(!st.description.contains("account id"), "{st:?}");
}

#[tokio::test]
async fn re_polls_follow_the_job_s_typical_duration_and_the_comment_is_edited_only_on_change() {
    let p = Pipeline::embedded(&config("shop", "")).await;
    p.open_pr("o-rp-1", HEAD).await;
    // Three earlier PR runs of the job took 17 minutes from trigger to end.
    for (id, pr) in [(801, 90), (802, 91), (803, 92)] {
        p.dbt.put_run(Run {
            id,
            account_id: Some(ACCOUNT),
            job_definition_id: Some(pr_job()),
            status: status::SUCCESS,
            git_sha: Some(BASE.into()),
            git_branch: None,
            status_message: None,
            created_at: Some("2026-11-20 10:00:00.000000+00:00".into()),
            finished_at: Some("2026-11-20 10:17:00.000000+00:00".into()),
            artifacts_saved: Some(true),
            href: None,
            trigger: Some(Trigger {
                github_pull_request_id: Some(pr),
                ..Default::default()
            }),
        });
    }
    let delays = |p: &Pipeline| -> Vec<u64> {
        p.poll
            .sent
            .lock()
            .unwrap()
            .iter()
            .map(|(_, d)| d.as_secs())
            .collect()
    };
    p.deliver_polls().await;
    assert_eq!(delays(&p), [102], "a tenth of 17 minutes");
    assert_eq!(patches(&p).await, 0, "the comment was created");
    p.pr_run(917, HEAD, status::RUNNING, None);
    p.deliver_polls().await;
    assert_eq!(patches(&p).await, 1, "new text: edited");
    for _ in 0..3 {
        p.deliver_polls().await;
    }
    assert_eq!(patches(&p).await, 1, "same text: not edited again");
    assert_eq!(delays(&p), [102]);
    assert!(sticky(&p).1.contains("waiting for dbt Cloud run 917"));
}

/// The PR manifest with `meta.prdiff.gates` on `orders` (as dbt writes a model's yaml
/// `meta` into the manifest).
fn pr_manifest_with_gates(gates: serde_json::Value) -> Vec<u8> {
    let mut m: serde_json::Value = serde_json::from_slice(&built().pr_manifest).unwrap();
    m["nodes"]["model.e2e_shop.orders"]["meta"] = serde_json::json!({"prdiff": {"gates": gates}});
    serde_json::to_vec(&m).unwrap()
}

/// One PR through `prdiff serve` (the signed webhook over HTTP) with `orders` carrying
/// `gates`; returns the sticky comment and the final statuses.
async fn through_serve_with_gates(
    delivery: &str,
    gates: serde_json::Value,
) -> (String, Vec<(StatusState, String)>) {
    through_serve(delivery, "", pr_manifest_with_gates(gates)).await
}

/// One PR through `prdiff serve` under a configuration with `extra` settings, the PR job
/// serving `pr_manifest`; returns the sticky comment and the final statuses.
async fn through_serve(
    delivery: &str,
    extra: &str,
    pr_manifest: Vec<u8>,
) -> (String, Vec<(StatusState, String)>) {
    through_serve_over(delivery, extra, None, pr_manifest, None).await
}

/// [`through_serve`] with production's manifest and the PR run's run_results replaced when
/// given.
async fn through_serve_over(
    delivery: &str,
    extra: &str,
    prod_manifest: Option<Vec<u8>>,
    pr_manifest: Vec<u8>,
    pr_run_results: Option<Vec<u8>>,
) -> (String, Vec<(StatusState, String)>) {
    let pr = PrText::default();
    through_serve_pr(
        delivery,
        extra,
        prod_manifest,
        pr_manifest,
        pr_run_results,
        pr,
    )
    .await
}

/// What the PR says: its commit messages (oldest first) and its description.
#[derive(Default)]
struct PrText<'a> {
    commits: &'a [&'a str],
    description: Option<&'a str>,
}

/// [`through_serve_over`] for a PR with `pr`'s commit messages and description.
async fn through_serve_pr(
    delivery: &str,
    extra: &str,
    prod_manifest: Option<Vec<u8>>,
    pr_manifest: Vec<u8>,
    pr_run_results: Option<Vec<u8>>,
    pr_text: PrText<'_>,
) -> (String, Vec<(StatusState, String)>) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("prdiff.db");
    let store = Arc::new(EmbeddedStore::open(&db).unwrap());
    let p = Pipeline::over(store.clone(), store, &config("shop", extra)).await;
    p.prod_run(530, BASE);
    if let Some(m) = prod_manifest {
        p.dbt.put_artifact(530, "manifest.json", m);
    }
    p.pr_run(930, HEAD, status::SUCCESS, pr_run_results);
    p.dbt.put_artifact(930, "manifest.json", pr_manifest);
    *p.host.commits.lock().unwrap() = pr_text.commits.iter().map(|m| m.to_string()).collect();
    let (addr, stop, task) = start_serve(&p, &db).await;
    let mut body: serde_json::Value = serde_json::from_slice(
        &std::fs::read(prdiff_tests::fixtures().join("github/pull_request.opened.json")).unwrap(),
    )
    .unwrap();
    body["pull_request"]["head"]["sha"] = HEAD.into();
    if let Some(d) = pr_text.description {
        body["pull_request"]["body"] = d.into();
    }
    let req = github("pull_request", delivery, serde_json::to_vec(&body).unwrap());
    let resp = post_webhook(addr, &req).await;
    assert_eq!(resp.status().as_u16(), 202);
    eventually("the final status", Duration::from_secs(60), || {
        !p.final_statuses(HEAD).is_empty()
    })
    .await;
    stop.send(()).unwrap();
    task.await.unwrap();
    (sticky(&p).1, p.final_statuses(HEAD))
}

/// The gates section's row for `gate` whose result starts with `result`.
fn gate_row<'a>(comment: &'a str, gate: &str, result: &str) -> Option<Vec<&'a str>> {
    comment
        .lines()
        .filter(|l| l.starts_with("| `orders` |"))
        .map(|l| l.split('|').map(str::trim).collect::<Vec<_>>())
        .find(|cells| cells[2].ends_with(&format!("`{gate}`")) && cells[3].starts_with(result))
}

#[tokio::test]
async fn through_serve_a_failed_merge_gate_in_the_model_yaml_fails_the_status() {
    // The PR removes 1 of 1,000 orders and changes `amount` on 50 of 999 matched rows
    // (5.01 %), on the PostgreSQL test warehouse.
    let (comment, statuses) = through_serve_with_gates(
        "o-gates-fail",
        serde_json::json!([
            {"changed_pct": {"column": "amount", "max": 5}},
            {"rows_removed": {"max": 0}},
            {"rows_added": {"max_pct": 10}},
            {"no_key_issues": true},
            {"changed_pct": {"column": "amout", "max": 5}},
            {"rows_deleted": {"max": 0}},
        ]),
    )
    .await;
    assert_eq!(
        statuses,
        [(
            StatusState::Failure,
            "prdiff: 3 gates failed in 1 model, 2 models diffed, 1 with differences".to_owned()
        )]
    );
    assert!(
        comment.contains("**Merge gates**: 3 of 5 failed"),
        "{comment}"
    );
    let expect = [
        (
            "❌",
            "changed_pct",
            "amount changed on 5.01 % of matched rows &gt; 5 %",
        ),
        (
            "❌",
            "rows_removed",
            "1 row removed (0.1 % of production rows) &gt; 0",
        ),
        (
            "✅",
            "rows_added",
            "0 rows added (0 % of production rows) ≤ 10 %",
        ),
        ("✅", "no_key_issues", "no NULL or duplicate keys"),
        (
            "❌",
            "changed_pct",
            "column amout is not among the compared columns",
        ),
    ];
    for (mark, gate, result) in expect {
        let cells = gate_row(&comment, gate, result)
            .unwrap_or_else(|| panic!("no row for {gate} {result} in:\n{comment}"));
        assert!(cells[2].starts_with(mark), "{cells:?}");
    }
    assert!(
        comment.contains("unknown gate &#96;rows\\_deleted&#96;"),
        "{comment}"
    );
}

#[tokio::test]
async fn through_serve_merge_gates_that_hold_pass_the_status_and_show_their_measures() {
    let (comment, statuses) = through_serve_with_gates(
        "o-gates-pass",
        serde_json::json!([
            {"changed_pct": {"column": "amount", "max": 10}},
            {"rows_removed": {"max_pct": 1}},
            {"no_key_issues": true},
        ]),
    )
    .await;
    assert_eq!(
        statuses,
        [(
            StatusState::Success,
            "prdiff: 2 models diffed, 1 with differences".to_owned()
        )]
    );
    assert!(comment.contains("**Merge gates**: 3 passed"), "{comment}");
    assert!(
        gate_row(
            &comment,
            "changed_pct",
            "amount changed on 5.01 % of matched rows ≤ 10 %"
        )
        .is_some(),
        "{comment}"
    );
    assert!(
        gate_row(
            &comment,
            "rows_removed",
            "1 row removed (0.1 % of production rows) ≤ 1 %"
        )
        .is_some(),
        "{comment}"
    );
}

#[tokio::test]
async fn through_serve_a_plan_over_max_models_diffs_nothing_and_lists_the_models() {
    let (comment, statuses) =
        through_serve("o-max-1", "max_models = 1", built().pr_manifest.clone()).await;
    assert_eq!(
        statuses,
        [(
            StatusState::Success,
            "prdiff: 2 models to diff, over max_models 1: not diffed".to_owned()
        )]
    );
    assert!(
        comment.contains("2 models to diff, more than this configuration's `max_models` (1)"),
        "{comment}"
    );
    assert!(comment.contains("raise `max_models`"), "{comment}");
    // No summary table: nothing was diffed; both models are in the list with the reason.
    assert!(!comment.contains("| rows prod → PR |"), "{comment}");
    for model in ["customers", "orders"] {
        assert_eq!(
            row(&comment, model)[2],
            "over max\\_models (1)",
            "{comment}"
        );
    }
    // At the threshold, the run diffs as usual.
    let (comment, statuses) =
        through_serve("o-max-2", "max_models = 2", built().pr_manifest.clone()).await;
    assert_eq!(
        statuses,
        [(
            StatusState::Success,
            "prdiff: 2 models diffed, 1 with differences".to_owned()
        )]
    );
    assert_eq!(row(&comment, "orders")[2], "1,000 → 999", "{comment}");
}

/// A GitHub App key for the fake GitHub (which does not check the JWT's signature).
fn app_private_key() -> String {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("app.pem");
    let out = std::process::Command::new("openssl")
        .args(["genrsa", "-out"])
        .arg(&key)
        .arg("2048")
        .output()
        .expect("openssl is installed");
    assert!(out.status.success());
    std::fs::read_to_string(key).unwrap()
}

/// One PR through `prdiff serve` for a configuration installed as a GitHub App (with
/// `extra` settings), the PR job serving `pr_manifest`; returns the check runs GitHub
/// kept, the final statuses and the sticky comment.
async fn through_serve_as_app(
    delivery: &str,
    extra: &str,
    pr_manifest: Vec<u8>,
) -> (Vec<serde_json::Value>, Vec<(StatusState, String)>, String) {
    let (runs, statuses, comment, _) =
        through_serve_as_app_with(delivery, extra, pr_manifest, false).await;
    (runs, statuses, comment)
}

/// [`through_serve_as_app`]; `forbidden`: the App lacks `checks:write` (GitHub answers 403).
async fn through_serve_as_app_with(
    delivery: &str,
    extra: &str,
    pr_manifest: Vec<u8>,
    forbidden: bool,
) -> (
    Vec<serde_json::Value>,
    Vec<(StatusState, String)>,
    String,
    usize,
) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("prdiff.db");
    let store = Arc::new(EmbeddedStore::open(&db).unwrap());
    let key =
        prdiff_shared::config::SecretName::parse("prdiff/shop/github-app-private-key").unwrap();
    let mut config = config("shop", extra);
    config.git_auth = prdiff_shared::config::GitAuth::GithubApp {
        app_id: 12345,
        installation_id: 1,
        private_key: key.clone(),
    };
    let p = Pipeline::over(store.clone(), store, &config).await;
    p.secrets.insert(&key, &app_private_key());
    p.host
        .checks_forbidden
        .store(forbidden, std::sync::atomic::Ordering::SeqCst);
    p.prod_run(540, BASE);
    p.pr_run(940, HEAD, status::SUCCESS, None);
    p.dbt.put_artifact(940, "manifest.json", pr_manifest);
    let (addr, stop, task) = start_serve(&p, &db).await;
    let mut body: serde_json::Value = serde_json::from_slice(
        &std::fs::read(prdiff_tests::fixtures().join("github/pull_request.opened.json")).unwrap(),
    )
    .unwrap();
    body["pull_request"]["head"]["sha"] = HEAD.into();
    let req = github("pull_request", delivery, serde_json::to_vec(&body).unwrap());
    let resp = post_webhook(addr, &req).await;
    assert_eq!(resp.status().as_u16(), 202);
    eventually("the final status", Duration::from_secs(60), || {
        !p.final_statuses(HEAD).is_empty()
    })
    .await;
    stop.send(()).unwrap();
    task.await.unwrap();
    (
        p.host.check_runs(),
        p.final_statuses(HEAD),
        sticky(&p).1,
        p.host
            .checks_denied
            .load(std::sync::atomic::Ordering::SeqCst),
    )
}

/// The annotations of a check run by path: (level, title, message).
fn annotations_by_path(run: &serde_json::Value) -> Vec<(String, String, String, String)> {
    let mut out: Vec<_> = run["annotations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            assert_eq!((&a["start_line"], &a["end_line"]), (&1.into(), &1.into()));
            let s = |k: &str| a[k].as_str().unwrap().to_owned();
            (s("path"), s("annotation_level"), s("title"), s("message"))
        })
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn through_serve_a_github_app_install_gets_a_check_run_with_per_model_annotations() {
    // `orders` loses 1 of 1,000 rows and changes `amount` on 50 rows (PostgreSQL test
    // warehouse); `customers` is unchanged. A merge gate on `orders` fails.
    let (runs, statuses, comment) = through_serve_as_app(
        "o-checks-app",
        "",
        pr_manifest_with_gates(serde_json::json!([{"rows_removed": {"max": 0}}])),
    )
    .await;
    assert_eq!(
        statuses,
        [(
            StatusState::Failure,
            "prdiff: 1 gate failed in 1 model, 2 models diffed, 1 with differences".to_owned()
        )]
    );
    assert_eq!(
        runs.len(),
        1,
        "one check run, started then completed: {runs:?}"
    );
    let run = &runs[0];
    assert_eq!(run["name"], "prdiff/shop");
    assert_eq!(run["head_sha"], HEAD);
    assert_eq!(run["status"], "completed");
    assert_eq!(run["conclusion"], "failure");
    assert_eq!(run["output"]["title"], statuses[0].1.as_str());
    let summary = run["output"]["summary"].as_str().unwrap();
    // The comment's report and headline, without its hidden marker.
    assert!(
        summary.starts_with("**❌ 1 gate failed in 1 model"),
        "{summary}"
    );
    assert!(summary.contains("\n## prdiff · shop\n"), "{summary}");
    assert!(!summary.contains("<!-- prdiff:shop -->"));
    assert_eq!(comment.replacen("<!-- prdiff:shop -->\n", "", 1), summary);
    let annotations = annotations_by_path(run);
    assert_eq!(annotations.len(), 2, "{annotations:?}");
    assert_eq!(
        annotations[0],
        (
            "models/customers.sql".to_owned(),
            "notice".to_owned(),
            "customers: no differences".to_owned(),
            "rows 100 → 100 · only in production 0 · only in PR 0 · changed 0".to_owned()
        )
    );
    assert_eq!(annotations[1].0, "models/orders.sql");
    assert_eq!(annotations[1].1, "failure");
    assert_eq!(annotations[1].2, "orders: 1 merge gates failed");
    assert_eq!(
        annotations[1].3,
        "rows 1,000 → 999 · only in production 1 · only in PR 0 · changed 50 · 1 gates failed"
    );
}

#[tokio::test]
async fn through_serve_not_blocking_is_a_neutral_check_and_github_checks_false_creates_none() {
    let (runs, statuses, _) = through_serve_as_app(
        "o-checks-neutral",
        "status_reporting = false",
        pr_manifest_with_gates(serde_json::json!([{"rows_removed": {"max": 0}}])),
    )
    .await;
    assert_eq!(statuses[0].0, StatusState::Success);
    assert!(statuses[0].1.starts_with("prdiff (not blocking): "));
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["conclusion"], "neutral");
    let levels: Vec<String> = annotations_by_path(&runs[0])
        .into_iter()
        .map(|a| a.1)
        .collect();
    assert_eq!(levels, ["notice", "failure"]);

    let (runs, statuses, _) = through_serve_as_app(
        "o-checks-off",
        "github_checks = false",
        built().pr_manifest.clone(),
    )
    .await;
    assert_eq!(statuses.len(), 1);
    assert!(runs.is_empty(), "{runs:?}");
}

#[tokio::test]
async fn through_serve_an_app_without_checks_write_still_gets_its_status_and_comment() {
    let (runs, statuses, comment, denied) =
        through_serve_as_app_with("o-checks-403", "", built().pr_manifest.clone(), true).await;
    // Creating it when the run starts and looking it up when it ends: both refused.
    assert_eq!(denied, 2);
    assert!(runs.is_empty());
    assert_eq!(
        statuses,
        [(
            StatusState::Success,
            "prdiff: 2 models diffed, 1 with differences".to_owned()
        )]
    );
    assert!(
        comment.contains("✅ 2 models diffed, 1 with differences"),
        "{comment}"
    );
}

/// `orders` for one test, built in the PostgreSQL test warehouse from `prod_select` (into a
/// new table in the production schema) and `pr_select` (into one in the PR schema); returns
/// production's manifest, the PR's manifest with `meta` on `orders`, and the PR run's
/// run_results, all pointing `orders` at those tables.
async fn orders_from(
    prod_select: &str,
    pr_select: &str,
    meta: serde_json::Value,
) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let b = built();
    let (prod, pr) = (&b.prod_schema, &b.pr_schema);
    let table = prdiff_tests::unique_name("orders_e2e");
    prdiff_tests::pg_client()
        .await
        .batch_execute(&format!(
            "CREATE TABLE \"{prod}\".\"{table}\" AS {prod_select};
             CREATE TABLE \"{pr}\".\"{table}\" AS {pr_select};"
        ))
        .await
        .unwrap();
    let point = |m: &mut serde_json::Value| {
        let rel = m["relation_name"]
            .as_str()
            .unwrap()
            .replace("\"orders\"", &format!("\"{table}\""));
        m["relation_name"] = rel.into();
    };
    let mut prod_manifest: serde_json::Value = serde_json::from_slice(&b.prod_manifest).unwrap();
    point(&mut prod_manifest["nodes"]["model.e2e_shop.orders"]);
    let mut pr_manifest: serde_json::Value = serde_json::from_slice(&b.pr_manifest).unwrap();
    point(&mut pr_manifest["nodes"]["model.e2e_shop.orders"]);
    pr_manifest["nodes"]["model.e2e_shop.orders"]["meta"] = meta;
    let mut results: serde_json::Value = serde_json::from_slice(&b.pr_run_results).unwrap();
    for r in results["results"].as_array_mut().unwrap() {
        if r["unique_id"] == "model.e2e_shop.orders" {
            point(r);
        }
    }
    (
        serde_json::to_vec(&prod_manifest).unwrap(),
        serde_json::to_vec(&pr_manifest).unwrap(),
        serde_json::to_vec(&results).unwrap(),
    )
}

#[tokio::test]
async fn through_serve_a_tolerance_in_the_model_yaml_hides_rounding_noise_and_is_shown() {
    // Production's `amount` is g × 1.5; the PR's adds 0.004 on every third row (333 of
    // 1,000): under the 0.01 bound, and a change without it.
    let prod = "SELECT g AS id, (g % 100) + 1 AS customer_id, (g * 1.5)::numeric(12,4) AS amount
                FROM generate_series(1, 1000) AS g";
    let pr = "SELECT g AS id, (g % 100) + 1 AS customer_id,
                (g * 1.5 + CASE WHEN g % 3 = 0 THEN 0.004 ELSE 0 END)::numeric(12,4) AS amount
              FROM generate_series(1, 1000) AS g";
    let tolerant = serde_json::json!({"prdiff": {"tolerance": {"amount": {"absolute": 0.01}}}});
    let (prod_m, pr_m, pr_rr) = orders_from(prod, pr, tolerant).await;
    let (comment, statuses) =
        through_serve_over("o-tol-1", "", Some(prod_m), pr_m, Some(pr_rr)).await;
    // | model | rows prod → PR | added | removed | changed | columns changed | …
    let orders = row(&comment, "orders");
    assert_eq!(
        orders[2..7],
        ["1,000 → 1,000", "0", "0", "0", "0"],
        "{comment}"
    );
    assert!(comment.contains("`amount` (±0.01)"), "{comment}");
    assert_eq!(statuses.len(), 1, "{statuses:?}");
    assert_eq!(statuses[0].0, StatusState::Success, "{statuses:?}");
    assert!(
        statuses[0].1.ends_with(", 0 with differences"),
        "{statuses:?}"
    );

    // The same data without the tolerance: `amount` changed on the 333 rows.
    let (prod_m, pr_m, pr_rr) = orders_from(prod, pr, serde_json::json!({})).await;
    let (comment, _) = through_serve_over("o-tol-2", "", Some(prod_m), pr_m, Some(pr_rr)).await;
    let orders = row(&comment, "orders");
    assert_eq!(
        orders[2..7],
        ["1,000 → 1,000", "0", "0", "333", "1"],
        "{comment}"
    );
    assert!(!comment.contains("(±"), "{comment}");
    let amount = comment
        .lines()
        .find(|l| l.starts_with("| `amount` |"))
        .unwrap_or_else(|| panic!("no amount row in:\n{comment}"));
    assert!(amount.contains("| 333 |"), "{amount}");
}

#[tokio::test]
async fn through_serve_a_renamed_column_is_reported_as_a_rename_not_added_and_removed() {
    let prod = "SELECT g AS id, g + 5000 AS legacy_id, g * 10 AS amount
                FROM generate_series(1, 1000) AS g";
    let pr = "SELECT g AS id, g + 5000 AS customer_ref, g * 10 AS amount
              FROM generate_series(1, 1000) AS g";
    let (prod_m, pr_m, pr_rr) = orders_from(prod, pr, serde_json::json!({})).await;
    let (comment, statuses) =
        through_serve_over("o-rename-1", "", Some(prod_m), pr_m, Some(pr_rr)).await;
    assert!(
        comment.contains("Renamed `legacy_id` → `customer_ref`"),
        "{comment}"
    );
    assert!(!comment.contains("Columns added"), "{comment}");
    assert!(!comment.contains("Columns removed"), "{comment}");
    // | model | rows prod → PR | added | removed | changed | columns changed | schema | …
    let orders = row(&comment, "orders");
    assert_eq!(
        orders[2..8],
        ["1,000 → 1,000", "0", "0", "0", "0", "1 renamed"],
        "{comment}"
    );
    assert_eq!(statuses.len(), 1, "{statuses:?}");
}

#[tokio::test]
async fn through_serve_the_comment_shows_where_the_changes_concentrate() {
    // `amount` changes on ids 1–100; every tenth id is in `US`, the rest in `EU`: 90 of
    // the 100 changed rows are `EU`. `region` is named in the model's yaml.
    let prod = "SELECT g AS id, CASE WHEN g % 10 = 0 THEN 'US' ELSE 'EU' END AS region,
                g * 10 AS amount FROM generate_series(1, 1000) AS g";
    let pr = "SELECT g AS id, CASE WHEN g % 10 = 0 THEN 'US' ELSE 'EU' END AS region,
              g * 10 + CASE WHEN g <= 100 THEN 1 ELSE 0 END AS amount
              FROM generate_series(1, 1000) AS g";
    let meta = serde_json::json!({"prdiff": {"dimensions": ["region"]}});
    let (prod_m, pr_m, pr_rr) = orders_from(prod, pr, meta).await;
    let (comment, statuses) =
        through_serve_over("o-conc-1", "", Some(prod_m), pr_m, Some(pr_rr)).await;
    let orders = row(&comment, "orders");
    assert_eq!(
        orders[2..7],
        ["1,000 → 1,000", "0", "0", "100", "1"],
        "{comment}"
    );
    assert!(
        comment.contains("Changes concentrate in: `region` = `EU` 90 % (90 of 100)"),
        "{comment}"
    );
    assert_eq!(statuses.len(), 1, "{statuses:?}");
}

/// `model`'s relation pointed at `table` (in whichever schema it names) in a manifest or
/// run_results node.
fn point_at(node: &mut serde_json::Value, model: &str, table: &str) {
    let rel = node["relation_name"]
        .as_str()
        .unwrap()
        .replace(&format!("\"{model}\""), &format!("\"{table}\""));
    node["relation_name"] = rel.into();
}

/// Three pushes of one PR through `prdiff serve` with `extra` settings: `customers` and
/// `orders` on their own tables (production and PR), so the test can change the PR's rows
/// between pushes. Returns the sticky comment after each push.
async fn three_pushes(extra: &str) -> [String; 3] {
    const THIRD_HEAD: &str = "3c0ffee3c0ffee3c0ffee3c0ffee3c0ffee3c0ff";
    let b = built();
    let (prod, pr) = (&b.prod_schema, &b.pr_schema);
    let customers = prdiff_tests::unique_name("customers_reuse");
    let orders = prdiff_tests::unique_name("orders_reuse");
    // Push 1: 3 customers renamed in the PR, 5 orders with a new amount.
    let client = prdiff_tests::pg_client().await;
    client
        .batch_execute(&format!(
            "CREATE TABLE \"{prod}\".\"{customers}\" AS
               SELECT g AS id, 'customer ' || g AS name FROM generate_series(1, 100) AS g;
             CREATE TABLE \"{pr}\".\"{customers}\" AS
               SELECT g AS id, CASE WHEN g <= 3 THEN 'renamed ' || g ELSE 'customer ' || g END AS name
               FROM generate_series(1, 100) AS g;
             CREATE TABLE \"{prod}\".\"{orders}\" AS
               SELECT g AS id, g * 10 AS amount FROM generate_series(1, 1000) AS g;
             CREATE TABLE \"{pr}\".\"{orders}\" AS
               SELECT g AS id, CASE WHEN g <= 5 THEN g * 10 + 1 ELSE g * 10 END AS amount
               FROM generate_series(1, 1000) AS g;"
        ))
        .await
        .unwrap();
    let point = |m: &mut serde_json::Value| {
        point_at(
            &mut m["nodes"]["model.e2e_shop.customers"],
            "customers",
            &customers,
        );
        point_at(&mut m["nodes"]["model.e2e_shop.orders"], "orders", &orders);
    };
    let mut prod_manifest: serde_json::Value = serde_json::from_slice(&b.prod_manifest).unwrap();
    point(&mut prod_manifest);
    let mut pr_manifest: serde_json::Value = serde_json::from_slice(&b.pr_manifest).unwrap();
    point(&mut pr_manifest);
    let mut results: serde_json::Value = serde_json::from_slice(&b.pr_run_results).unwrap();
    for r in results["results"].as_array_mut().unwrap() {
        match r["unique_id"].as_str() {
            Some("model.e2e_shop.customers") => point_at(r, "customers", &customers),
            Some("model.e2e_shop.orders") => point_at(r, "orders", &orders),
            _ => {}
        }
    }
    let results = serde_json::to_vec(&results).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("prdiff.db");
    let store = Arc::new(EmbeddedStore::open(&db).unwrap());
    let p = Pipeline::over(store.clone(), store, &config("shop", extra)).await;
    p.prod_run(540, BASE);
    p.dbt.put_artifact(
        540,
        "manifest.json",
        serde_json::to_vec(&prod_manifest).unwrap(),
    );
    let (addr, stop, task) = start_serve(&p, &db).await;
    let push = |delivery: &'static str, head: &'static str, action: &'static str| {
        let mut body: serde_json::Value = serde_json::from_slice(
            &std::fs::read(prdiff_tests::fixtures().join("github/pull_request.opened.json"))
                .unwrap(),
        )
        .unwrap();
        body["action"] = action.into();
        body["pull_request"]["head"]["sha"] = head.into();
        let req = github("pull_request", delivery, serde_json::to_vec(&body).unwrap());
        async move {
            let resp = post_webhook(addr, &req).await;
            assert_eq!(resp.status().as_u16(), 202);
        }
    };
    let pr_run = |id: u64, head: &str, manifest: &serde_json::Value| {
        p.pr_run(id, head, status::SUCCESS, Some(results.clone()));
        p.dbt
            .put_artifact(id, "manifest.json", serde_json::to_vec(manifest).unwrap());
    };
    let mut comments = Vec::new();

    // Push 1: both models diffed.
    pr_run(941, HEAD, &pr_manifest);
    push("reuse-1", HEAD, "opened").await;
    eventually("push 1's status", Duration::from_secs(60), || {
        !p.final_statuses(HEAD).is_empty()
    })
    .await;
    comments.push(sticky(&p).1);

    // Between the pushes the PR's tables change: 10 customers and 7 orders renamed now. A
    // re-used result keeps push 1's figures; a diffed one shows the new rows.
    client
        .batch_execute(&format!(
            "UPDATE \"{pr}\".\"{customers}\" SET name = 'renamed ' || id WHERE id <= 10;
             UPDATE \"{pr}\".\"{orders}\" SET amount = id * 10 + 1 WHERE id <= 7;"
        ))
        .await
        .unwrap();

    // Push 2: only `orders` changes (its checksum in the PR manifest).
    pr_manifest["nodes"]["model.e2e_shop.orders"]["checksum"]["checksum"] =
        "changed-by-push-2".into();
    pr_run(942, NEWER_HEAD, &pr_manifest);
    push("reuse-2", NEWER_HEAD, "synchronize").await;
    eventually("push 2's status", Duration::from_secs(60), || {
        !p.final_statuses(NEWER_HEAD).is_empty()
    })
    .await;
    comments.push(sticky(&p).1);

    // Push 3: the same code, a new production run.
    p.prod_run(541, BASE);
    p.dbt.put_artifact(
        541,
        "manifest.json",
        serde_json::to_vec(&prod_manifest).unwrap(),
    );
    pr_run(943, THIRD_HEAD, &pr_manifest);
    push("reuse-3", THIRD_HEAD, "synchronize").await;
    eventually("push 3's status", Duration::from_secs(60), || {
        !p.final_statuses(THIRD_HEAD).is_empty()
    })
    .await;
    comments.push(sticky(&p).1);
    stop.send(()).unwrap();
    task.await.unwrap();
    // Every status of every push is a success: nothing failed or was left open.
    for head in [HEAD, NEWER_HEAD, THIRD_HEAD] {
        let statuses = p.final_statuses(head);
        assert_eq!(statuses.len(), 1, "{head}: {statuses:?}");
        assert_eq!(statuses[0].0, StatusState::Success, "{statuses:?}");
        assert!(statuses[0].1.contains("2 models"), "{statuses:?}");
    }
    comments.try_into().unwrap()
}

/// `| model | rows prod → PR | added | removed | changed | …`: the name cell and the
/// figures of a model's row.
fn figures<'a>(comment: &'a str, model: &str) -> (&'a str, Vec<&'a str>) {
    let cells = row(comment, &format!("`{model}`"));
    (cells[1], cells[2..6].to_vec())
}

#[tokio::test]
async fn through_serve_a_push_that_leaves_a_model_unchanged_re_uses_its_result() {
    let [first, second, third] = three_pushes("").await;
    let short = &HEAD[..7];
    // Push 1: both diffed.
    assert_eq!(
        figures(&first, "customers"),
        ("`customers`", vec!["100 → 100", "0", "0", "3"]),
        "{first}"
    );
    assert_eq!(
        figures(&first, "orders"),
        ("`orders`", vec!["1,000 → 1,000", "0", "0", "5"]),
        "{first}"
    );
    // Push 2: `customers` re-used with push 1's figures although its PR table changed;
    // `orders` (changed) diffed again and shows the new rows.
    assert_eq!(
        figures(&second, "customers"),
        (
            format!("`customers` · unchanged since `{short}`").as_str(),
            vec!["100 → 100", "0", "0", "3"]
        ),
        "{second}"
    );
    assert_eq!(
        figures(&second, "orders"),
        ("`orders`", vec!["1,000 → 1,000", "0", "0", "7"]),
        "{second}"
    );
    assert_eq!(second.matches("unchanged since").count(), 1, "{second}");
    // Push 3: a new production run: `customers` is diffed again (10 renamed). `orders` did
    // not change since push 2 but production did: diffed again too.
    assert_eq!(
        figures(&third, "customers"),
        ("`customers`", vec!["100 → 100", "0", "0", "10"]),
        "{third}"
    );
    assert_eq!(
        figures(&third, "orders"),
        ("`orders`", vec!["1,000 → 1,000", "0", "0", "7"]),
        "{third}"
    );
    assert!(!third.contains("unchanged since"), "{third}");
}

#[tokio::test]
async fn through_serve_with_reuse_unchanged_off_every_push_diffs_every_model() {
    let [_, second, _] = three_pushes("reuse_unchanged = false").await;
    assert_eq!(
        figures(&second, "customers"),
        ("`customers`", vec!["100 → 100", "0", "0", "10"]),
        "{second}"
    );
    assert!(!second.contains("unchanged since"), "{second}");
}

/// A push that changes nothing a model's diff reads: the poller re-uses every result,
/// sends no diff message, counts each model once and publishes the report itself, with
/// the synced owner and description as the diff runner's report has them.
async fn every_model_unchanged(p: &Pipeline) {
    let config_name = config("shop", "").name;
    let synced: prdiff_shared::metadata::ModelMetadata =
        serde_json::from_value(serde_json::json!({
            "unique_id": "model.shop.orders",
            "name": "orders",
            "resource_type": "model",
            "package_name": "shop",
            "description": "One row per order, refunds netted.",
            "owner": "revenue-analytics"
        }))
        .unwrap();
    p.differ
        .metadata
        .as_ref()
        .unwrap()
        .put_models(&config_name, &[synced], &Default::default())
        .await
        .unwrap();
    let first = p.open_pr("reuse-all-1", HEAD).await;
    p.prod_run(550, BASE);
    p.pr_run(950, HEAD, status::SUCCESS, None);
    assert_eq!(
        p.deliver_polls().await,
        [prdiff_poller::PollOutcome::FannedOut { models: 2 }]
    );
    assert_eq!(p.deliver_diffs().await.len(), 2);
    assert_eq!(run_state(p, &first).await, RunState::Done);
    let diffed = sticky(p).1;

    let second = p.open_pr("reuse-all-2", NEWER_HEAD).await;
    p.pr_run(951, NEWER_HEAD, status::SUCCESS, None);
    assert_eq!(
        p.deliver_polls().await,
        [prdiff_poller::PollOutcome::FannedOut { models: 0 }]
    );
    assert!(
        p.diffs.drain().is_empty(),
        "no diff message for a re-used model"
    );
    assert_eq!(run_state(p, &second).await, RunState::Done);
    let reused = sticky(p).1;
    let short = &HEAD[..7];
    for model in ["customers", "orders"] {
        let (name, figures_now) = figures(&reused, model);
        assert_eq!(
            name,
            format!("`{model}` · unchanged since `{short}`"),
            "{reused}"
        );
        assert_eq!(figures_now, figures(&diffed, model).1, "{model}");
    }
    for comment in [&diffed, &reused] {
        let summary = comment
            .lines()
            .find(|l| l.starts_with("<details><summary><code>orders</code>"))
            .unwrap_or_else(|| panic!("no section for orders: {comment}"));
        assert!(
            summary.ends_with(" · owner revenue-analytics</summary>"),
            "{summary}"
        );
        assert!(
            comment.contains("_One row per order, refunds netted._"),
            "{comment}"
        );
    }
    // Each re-used model counted once: the same status as the diffed push.
    let (before, after) = (p.final_statuses(HEAD), p.final_statuses(NEWER_HEAD));
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(after, before);
    assert!(after[0].1.contains("2 models diffed"), "{after:?}");
    let results = p.runs.results(&second).await.unwrap();
    assert_eq!(results.len(), 2, "{results:?}");
    assert_eq!(results, p.runs.results(&first).await.unwrap());
}

#[tokio::test]
async fn a_push_with_every_model_unchanged_is_reported_without_diffing_on_sqlite() {
    every_model_unchanged(&Pipeline::embedded(&config("shop", "")).await).await;
}

#[tokio::test]
async fn a_push_with_every_model_unchanged_is_reported_without_diffing_on_moto() {
    let store = Arc::new(crate::stores::dynamo_store().await);
    every_model_unchanged(&Pipeline::over(store.clone(), store, &config("shop", "")).await).await;
}

#[tokio::test]
async fn through_serve_a_remapping_in_a_commit_message_compares_the_pair_with_exact_counts() {
    // `legacy_code` became `code`, and 50 of 1,000 values changed (95 % agree: below
    // what rename detection accepts).
    let prod = "SELECT g AS id, 'C' || g AS legacy_code, g * 10 AS amount
                FROM generate_series(1, 1000) AS g";
    let pr = "SELECT g AS id, CASE WHEN g % 20 = 0 THEN 'X' || g ELSE 'C' || g END AS code,
                g * 10 AS amount
              FROM generate_series(1, 1000) AS g";
    let (prod_m, pr_m, pr_rr) = orders_from(prod, pr, serde_json::json!({})).await;
    let commits = [
        "Rename legacy_code\n\ndatafold remap legacy_code code",
        "Fix formatting",
    ];
    let pr_text = PrText {
        commits: &commits,
        description: None,
    };
    let (comment, statuses) =
        through_serve_pr("o-remap-1", "", Some(prod_m), pr_m, Some(pr_rr), pr_text).await;
    assert!(
        comment.contains("- Renamed `legacy_code` → `code` (from the PR)"),
        "{comment}"
    );
    assert!(!comment.contains("Columns added"), "{comment}");
    assert!(!comment.contains("Columns removed"), "{comment}");
    // | model | rows prod → PR | added | removed | changed | columns changed | schema | …
    let orders = row(&comment, "orders");
    assert_eq!(
        orders[2..8],
        ["1,000 → 1,000", "0", "0", "50", "1", "1 renamed"],
        "{comment}"
    );
    let code = comment
        .lines()
        .find(|l| l.starts_with("| `code` |"))
        .unwrap_or_else(|| panic!("no code row in:\n{comment}"));
    assert!(code.contains("| 50 |"), "{code}");
    assert_eq!(statuses.len(), 1, "{statuses:?}");

    // Without the directive: one column removed, one added, and no rows changed.
    let (prod_m, pr_m, pr_rr) = orders_from(prod, pr, serde_json::json!({})).await;
    let (comment, _) = through_serve_over("o-remap-2", "", Some(prod_m), pr_m, Some(pr_rr)).await;
    assert!(!comment.contains("Renamed"), "{comment}");
    assert!(comment.contains("- Columns added: `code`"), "{comment}");
    assert!(
        comment.contains("- Columns removed: `legacy_code`"),
        "{comment}"
    );
    let orders = row(&comment, "orders");
    assert_eq!(
        orders[2..7],
        ["1,000 → 1,000", "0", "0", "0", "0"],
        "{comment}"
    );
}

/// Posts a signed `pull_request` delivery for `HEAD` to serve with `description` as the
/// PR's: `opened`, or with `edited_from` the `edited` of a description that was that text;
/// answers the HTTP status and body.
async fn post_description(
    addr: &str,
    delivery: &str,
    edited_from: Option<&str>,
    description: &str,
) -> (u16, String) {
    let mut body: serde_json::Value = serde_json::from_slice(
        &std::fs::read(prdiff_tests::fixtures().join("github/pull_request.opened.json")).unwrap(),
    )
    .unwrap();
    if let Some(before) = edited_from {
        body["action"] = "edited".into();
        body["changes"] = serde_json::json!({"body": {"from": before}});
    }
    body["pull_request"]["head"]["sha"] = HEAD.into();
    body["pull_request"]["body"] = description.into();
    let req = github("pull_request", delivery, serde_json::to_vec(&body).unwrap());
    let resp = post_webhook(addr, &req).await;
    (resp.status().as_u16(), resp.text().await.unwrap())
}

#[tokio::test]
async fn through_serve_editing_the_description_s_remapping_diffs_the_model_again_with_it() {
    // `legacy_code` became `code`, 10 of 200 values changed (95 %: no detected rename).
    let prod = "SELECT g AS id, 'C' || g AS legacy_code FROM generate_series(1, 200) AS g";
    let pr = "SELECT g AS id, CASE WHEN g % 20 = 0 THEN 'X' ELSE 'C' || g END AS code
              FROM generate_series(1, 200) AS g";
    let (prod_m, pr_m, pr_rr) = orders_from(prod, pr, serde_json::json!({})).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("prdiff.db");
    let store = Arc::new(EmbeddedStore::open(&db).unwrap());
    let p = Pipeline::over(store.clone(), store, &config("shop", "")).await;
    p.prod_run(531, BASE);
    p.dbt.put_artifact(531, "manifest.json", prod_m);
    p.pr_run(931, HEAD, status::SUCCESS, Some(pr_rr));
    p.dbt.put_artifact(931, "manifest.json", pr_m);
    let (addr, stop, task) = start_serve(&p, &db).await;
    let addr = addr.to_string();
    let first = "Renames a column.";
    let (code, answer) = post_description(&addr, "o-edit-1", None, first).await;
    assert_eq!(code, 202, "{answer}");
    eventually("the first report", Duration::from_secs(60), || {
        p.final_statuses(HEAD).len() == 1
    })
    .await;
    let before = sticky(&p).1;
    assert!(
        before.contains("- Columns removed: `legacy_code`"),
        "{before}"
    );

    // An edit that leaves the directives alone starts nothing.
    let (code, answer) =
        post_description(&addr, "o-edit-2", Some(first), "Renames a column!").await;
    assert_eq!(code, 200, "{answer}");
    assert!(answer.contains("column remapping"), "{answer}");

    // The directive added, for `orders`: that model is diffed again with the pair as one
    // column; the other model's inputs did not change, so its result is re-used (a
    // directive without a glob would apply to, and diff again, every model).
    let second = "Renames a column.\n\ndatafold remap legacy_code code orders";
    let (code, answer) = post_description(&addr, "o-edit-3", Some(first), second).await;
    assert_eq!(code, 202, "{answer}");
    eventually("the second report", Duration::from_secs(60), || {
        p.final_statuses(HEAD).len() == 2
    })
    .await;
    stop.send(()).unwrap();
    task.await.unwrap();
    let after = sticky(&p).1;
    assert!(
        after.contains("- Renamed `legacy_code` → `code` (from the PR)"),
        "{after}"
    );
    let orders = row(&after, "orders");
    assert_eq!(orders[2..7], ["200 → 200", "0", "0", "10", "1"], "{after}");
    assert!(
        row(&after, "customers")[1].contains("unchanged since"),
        "{after}"
    );
}

#[tokio::test]
async fn through_serve_the_pr_description_s_remapping_wins_over_a_commit_s() {
    // A commit maps `legacy_code` to a column the PR does not have; the description, with a
    // glob naming `orders`, maps it to `code`.
    let prod = "SELECT g AS id, 'C' || g AS legacy_code FROM generate_series(1, 200) AS g";
    let pr = "SELECT g AS id, CASE WHEN g <= 7 THEN 'X' ELSE 'C' || g END AS code
              FROM generate_series(1, 200) AS g";
    let (prod_m, pr_m, pr_rr) = orders_from(prod, pr, serde_json::json!({})).await;
    let pr_text = PrText {
        commits: &["prdiff remap legacy_code code_v2"],
        description: Some("Renames a column.\r\n\r\nX-Prdiff: rename legacy_code code ord*\r\n"),
    };
    let (comment, _) =
        through_serve_pr("o-remap-3", "", Some(prod_m), pr_m, Some(pr_rr), pr_text).await;
    assert!(
        comment.contains("- Renamed `legacy_code` → `code` (from the PR)"),
        "{comment}"
    );
    let orders = row(&comment, "orders");
    assert_eq!(orders[2..7], ["200 → 200", "0", "0", "7", "1"], "{comment}");
}
