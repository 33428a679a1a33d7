//! On-demand runs end to end on the PostgreSQL test warehouse: a `/prdiff run` comment
//! (GitHub `issue_comment`, GitLab `Note Hook`) and `POST /trigger` through `prdiff serve`
//! start a run that ignores the label gate and `max_models`; who may start one is asked of
//! the git host (wiremock answering GitHub's collaborator permission and GitLab's project
//! member endpoints).

use super::*;

const LABELLED: &str = r#"require_label = { enabled = true, name = "datafold" }"#;

/// The signed `issue_comment` webhook: `body` written by `login` on PR `PR_NUMBER`.
fn pr_comment(delivery: &str, login: &str, body: &str) -> prdiff_webhook::WebhookRequest {
    let mut v: serde_json::Value = serde_json::from_slice(
        &std::fs::read(prdiff_tests::fixtures().join("github/issue_comment.created.json")).unwrap(),
    )
    .unwrap();
    v["issue"]["number"] = PR_NUMBER.into();
    v["issue"]["pull_request"] = serde_json::json!({
        "url": format!("https://api.github.com/repos/Codertocat/Hello-World/pulls/{PR_NUMBER}")
    });
    v["comment"]["body"] = body.into();
    v["comment"]["user"]["login"] = login.into();
    github("issue_comment", delivery, serde_json::to_vec(&v).unwrap())
}

/// The GitLab `Note Hook` for MR `PR_NUMBER`: `body` written by user `user_id`.
fn mr_note(key: &str, user_id: u64, body: &str) -> prdiff_webhook::WebhookRequest {
    let mut v: serde_json::Value = serde_json::from_slice(
        &std::fs::read(prdiff_tests::fixtures().join("gitlab/go-gitlab.note_merge_request.json"))
            .unwrap(),
    )
    .unwrap();
    v["project"]["path_with_namespace"] = GITLAB_PROJECT.into();
    v["merge_request"]["iid"] = PR_NUMBER.into();
    v["object_attributes"]["note"] = body.into();
    v["user"]["id"] = user_id.into();
    prdiff_webhook::WebhookRequest::new(
        [
            ("X-Gitlab-Event", "Note Hook"),
            ("Idempotency-Key", key),
            ("X-Gitlab-Token", SECRET),
            ("Content-Type", "application/json"),
        ],
        serde_json::to_vec(&v).unwrap(),
    )
}

fn pr_key(p: &Pipeline) -> prdiff_shared::run::PrKey {
    prdiff_shared::run::PrKey {
        provider: if p.gitlab {
            prdiff_shared::config::Provider::Gitlab
        } else {
            prdiff_shared::config::Provider::Github
        },
        repository: prdiff_shared::config::RepoName::parse(if p.gitlab {
            GITLAB_PROJECT
        } else {
            "Codertocat/Hello-World"
        })
        .unwrap(),
        number: PR_NUMBER,
    }
}

async fn current_run(p: &Pipeline) -> Option<prdiff_shared::run::CiRun> {
    let config = prdiff_shared::config::ConfigId::parse("shop").unwrap();
    p.runs.current_run(&config, &pr_key(p)).await.unwrap()
}

/// Nothing was recorded or sent for the PR: no run, no poll message, no status, no comment.
async fn assert_nothing_started(p: &Pipeline) {
    assert!(current_run(p).await.is_none(), "no run recorded");
    assert!(p.poll.drain().is_empty(), "no poll message");
    assert!(p.host.statuses().is_empty(), "no status");
    assert!(p.comments().is_empty(), "no comment");
}

/// The accepted run's id in an intake response.
fn accepted(resp: &prdiff_webhook::WebhookResponse) -> RunId {
    assert_eq!(resp.status, 202, "{}", resp.body);
    RunId::parse(resp.body["runs"][0]["run_id"].as_str().unwrap()).unwrap()
}

/// dbt Cloud finished the PR job at HEAD; polls and diffs are delivered.
async fn finish(p: &Pipeline, run: &RunId, models: usize) {
    p.prod_run(540, BASE);
    p.pr_run(940, HEAD, status::SUCCESS, None);
    let out = p.deliver_polls().await;
    assert_eq!(out, [prdiff_poller::PollOutcome::FannedOut { models }]);
    p.deliver_diffs().await;
    assert_eq!(run_state(p, run).await, RunState::Done);
}

#[tokio::test]
async fn a_writers_run_comment_diffs_a_pr_the_label_gate_skipped() {
    let p = Pipeline::embedded(&config("shop", LABELLED)).await;
    // The PR has no label: its `opened` event is gated.
    let mut opened: serde_json::Value = serde_json::from_slice(
        &std::fs::read(prdiff_tests::fixtures().join("github/pull_request.opened.json")).unwrap(),
    )
    .unwrap();
    opened["pull_request"]["head"]["sha"] = HEAD.into();
    let resp = prdiff_webhook::handle(
        &github("pull_request", "od-1", serde_json::to_vec(&opened).unwrap()),
        &p.webhook,
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert!(
        resp.body["reason"].as_str().unwrap().contains("datafold"),
        "{}",
        resp.body
    );
    assert_nothing_started(&p).await;

    // The repository's admin comments `/prdiff run`.
    let comment = pr_comment("od-2", "Codertocat", "Please diff this.\n/prdiff run\n");
    let resp = prdiff_webhook::handle(&comment, &p.webhook).await;
    let run = accepted(&resp);
    let stored = p.runs.get_run(&run).await.unwrap().unwrap();
    assert_eq!(
        stored.head_sha.as_str(),
        HEAD,
        "the head is read from the PR"
    );
    let on_demand = stored.on_demand.expect("an on-demand run");
    assert_eq!(on_demand.by, "github:Codertocat");
    assert!(on_demand.models.is_empty());
    // A pending status, as for a push.
    let pending = p.host.statuses();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].1.state, StatusState::Pending);
    // The same delivery again changes nothing.
    let again = prdiff_webhook::handle(&comment, &p.webhook).await;
    assert_eq!(again.body["status"], "duplicate", "{}", again.body);

    finish(&p, &run, 2).await;
    let comments = p.comments();
    assert_eq!(comments.len(), 1, "{comments:?}");
    let orders = row(&comments[0], "orders");
    assert_eq!(orders[2..6], ["1,000 → 999", "0", "1", "50"], "{orders:?}");
    assert_eq!(
        p.final_statuses(HEAD),
        [(
            StatusState::Success,
            "prdiff: 2 models diffed, 1 with differences".to_owned()
        )]
    );
}

#[tokio::test]
async fn a_readers_or_strangers_run_comment_starts_nothing() {
    let p = Pipeline::embedded(&config("shop", "")).await;
    for (delivery, login) in [("od-r1", "reader"), ("od-r2", "someone-else")] {
        let resp =
            prdiff_webhook::handle(&pr_comment(delivery, login, "/prdiff run"), &p.webhook).await;
        assert_eq!(resp.status, 200, "{}", resp.body);
        assert_eq!(resp.body["status"], "ignored");
        assert!(
            resp.body["reason"]
                .as_str()
                .unwrap()
                .contains("write access"),
            "{}",
            resp.body
        );
    }
    // Junk after the command: refused before the host is asked anything.
    let resp = prdiff_webhook::handle(
        &pr_comment("od-r3", "Codertocat", "/prdiff run orders;drop table x"),
        &p.webhook,
    )
    .await;
    assert_eq!(resp.status, 200);
    assert!(
        resp.body["reason"]
            .as_str()
            .unwrap()
            .contains("not a dbt model name"),
        "{}",
        resp.body
    );
    assert_nothing_started(&p).await;
}

#[tokio::test]
async fn a_run_comment_naming_a_model_diffs_only_it_past_max_models() {
    let p = Pipeline::embedded(&config("shop", "max_models = 1")).await;
    let resp = prdiff_webhook::handle(
        &pr_comment("od-m1", "Codertocat", "/prdiff run orders"),
        &p.webhook,
    )
    .await;
    let run = accepted(&resp);
    finish(&p, &run, 1).await;
    let comments = p.comments();
    assert_eq!(comments.len(), 1, "{comments:?}");
    let report = &comments[0];
    let orders = row(report, "orders");
    assert_eq!(orders[2..6], ["1,000 → 999", "0", "1", "50"], "{orders:?}");
    assert!(!report.contains("max\\_models"), "{report}");
    // `customers` is listed as not requested, not diffed.
    let customers = row(report, "customers");
    assert!(customers[2].starts_with("not requested"), "{customers:?}");
    let statuses = p.final_statuses(HEAD);
    assert_eq!(statuses.len(), 1, "{statuses:?}");
    assert_eq!(statuses[0].0, StatusState::Success);
    assert!(
        statuses[0].1.starts_with("prdiff: 1 model diffed"),
        "{statuses:?}"
    );
}

#[tokio::test]
async fn a_run_comment_replaces_the_open_run_of_the_same_commit_held_to_max_models() {
    let p = Pipeline::embedded(&config("shop", "max_models = 1")).await;
    // The push's run waits for dbt Cloud; it would diff nothing (two models, max 1).
    let pushed = p.open_pr("od-s1", HEAD).await;
    let resp = prdiff_webhook::handle(
        &pr_comment("od-s2", "Codertocat", "/prdiff run orders"),
        &p.webhook,
    )
    .await;
    let run = accepted(&resp);
    assert_ne!(run, pushed);
    assert_eq!(resp.body["runs"][0]["superseded"], pushed.as_str());
    assert_eq!(run_state(&p, &pushed).await, RunState::Superseded);
    // The same command again while the on-demand run is open: already running.
    let again = prdiff_webhook::handle(
        &pr_comment("od-s3", "Codertocat", "Once more:\n/prdiff run orders"),
        &p.webhook,
    )
    .await;
    assert_eq!(
        again.body["runs"][0]["already_running"], true,
        "{}",
        again.body
    );
    assert_eq!(again.body["runs"][0]["run_id"], run.as_str());

    p.prod_run(542, BASE);
    p.pr_run(942, HEAD, status::SUCCESS, None);
    let mut out = p.deliver_polls().await;
    out.sort_by_key(|o| format!("{o:?}"));
    assert_eq!(
        out,
        [
            prdiff_poller::PollOutcome::Closed(RunState::Superseded),
            prdiff_poller::PollOutcome::FannedOut { models: 1 },
        ]
    );
    p.deliver_diffs().await;
    assert_eq!(run_state(&p, &run).await, RunState::Done);
    let comments = p.comments();
    assert_eq!(comments.len(), 1, "{comments:?}");
    let orders = row(&comments[0], "orders");
    assert_eq!(orders[2..6], ["1,000 → 999", "0", "1", "50"], "{orders:?}");
    let statuses = p.final_statuses(HEAD);
    assert_eq!(statuses.len(), 1, "{statuses:?}");
    assert!(
        statuses[0].1.starts_with("prdiff: 1 model diffed"),
        "{statuses:?}"
    );
}

#[tokio::test]
async fn a_maintainers_gitlab_note_starts_a_run_and_a_reporters_does_not() {
    let p = Pipeline::embedded(&config_on("gitlab", GITLAB_PROJECT, "shop", LABELLED)).await;
    let resp = prdiff_webhook::handle(&mr_note("od-g1", 2, "/prdiff run"), &p.webhook).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert!(
        resp.body["reason"]
            .as_str()
            .unwrap()
            .contains("write access"),
        "{}",
        resp.body
    );
    assert_nothing_started(&p).await;

    let resp = prdiff_webhook::handle(&mr_note("od-g2", 1, "/prdiff run"), &p.webhook).await;
    let run = accepted(&resp);
    let stored = p.runs.get_run(&run).await.unwrap().unwrap();
    assert_eq!(stored.on_demand.unwrap().by, "gitlab:root");
    finish(&p, &run, 2).await;
    let comments = p.comments();
    assert_eq!(comments.len(), 1, "one note: {comments:?}");
    let orders = row(&comments[0], "orders");
    assert_eq!(orders[2..6], ["1,000 → 999", "0", "1", "50"], "{orders:?}");
    assert_eq!(p.final_statuses(HEAD).len(), 1);
}

#[tokio::test]
async fn through_prdiff_serve_the_trigger_needs_its_token_and_then_runs_past_the_label_gate() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("prdiff.db");
    let store = Arc::new(EmbeddedStore::open(&db).unwrap());
    let p = Pipeline::over(store.clone(), store, &config("shop", LABELLED)).await;
    p.prod_run(541, BASE);
    p.pr_run(941, HEAD, status::SUCCESS, None);
    let (addr, stop, task) = start_serve(&p, &db).await;
    let http = reqwest::Client::new();
    let url = format!("http://{addr}/trigger");
    let body = serde_json::json!({
        "provider": "github", "repository": "Codertocat/Hello-World",
        "pull_request": PR_NUMBER, "models": ["orders"]
    });
    let post = |auth: Option<&str>| {
        let mut req = http.post(&url).json(&body);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        req.send()
    };

    // No token secret yet, then a missing, a wrong and a malformed token: one answer.
    let mut refusals = Vec::new();
    let no_secret = post(Some("Bearer guess")).await.unwrap();
    refusals.push((no_secret.status().as_u16(), no_secret.text().await.unwrap()));
    p.secrets.insert(
        &SecretName::parse("prdiff/trigger-token").unwrap(),
        "trig-s3cret-value",
    );
    for auth in [
        None,
        Some("Bearer trig-s3cret-valuE"),
        Some("trig-s3cret-value"),
    ] {
        let resp = post(auth).await.unwrap();
        refusals.push((resp.status().as_u16(), resp.text().await.unwrap()));
    }
    for r in &refusals {
        assert_eq!(
            r,
            &(401, r#"{"error":"bad or missing bearer token"}"#.to_owned())
        );
    }
    assert!(current_run(&p).await.is_none(), "nothing written");
    assert!(p.host.statuses().is_empty());

    // A bad body with a good token: 400, nothing written.
    let resp = http
        .post(&url)
        .header("authorization", "Bearer trig-s3cret-value")
        .json(&serde_json::json!({
            "provider": "github", "repository": "Codertocat/Hello-World",
            "pull_request": PR_NUMBER, "models": ["orders; drop table x"]
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    assert!(current_run(&p).await.is_none(), "nothing written");

    // The good token: a run for `orders` only, though the PR has no label.
    let resp = post(Some("Bearer trig-s3cret-value")).await.unwrap();
    assert_eq!(resp.status().as_u16(), 202);
    let answer: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(answer["runs"][0]["config"], "shop", "{answer}");
    eventually("the final status", Duration::from_secs(60), || {
        !p.final_statuses(HEAD).is_empty()
    })
    .await;
    stop.send(()).unwrap();
    task.await.unwrap();

    let run = current_run(&p).await.unwrap();
    assert_eq!(run.state, RunState::Done);
    let on_demand = run.on_demand.unwrap();
    assert_eq!(
        (on_demand.by.as_str(), on_demand.models),
        ("trigger", vec!["orders".to_owned()])
    );
    let comments = p.comments();
    assert_eq!(comments.len(), 1, "{comments:?}");
    let orders = row(&comments[0], "orders");
    assert_eq!(orders[2..6], ["1,000 → 999", "0", "1", "50"], "{orders:?}");
    assert!(row(&comments[0], "customers")[2].starts_with("not requested"));
    let statuses = p.final_statuses(HEAD);
    assert_eq!(statuses.len(), 1, "{statuses:?}");
    assert_eq!(statuses[0].0, StatusState::Success);
}

#[tokio::test]
async fn an_on_demand_run_diffs_again_what_a_push_would_re_use() {
    let p = Pipeline::embedded(&config("shop", "")).await;
    let first = p.open_pr("od-reuse-1", HEAD).await;
    finish(&p, &first, 2).await;
    // The same head and production run: every input of both models is unchanged, so a
    // push's run would re-use both results. Asked for on demand, both are diffed again.
    let resp = prdiff_webhook::handle(
        &pr_comment("od-reuse-2", "Codertocat", "/prdiff run"),
        &p.webhook,
    )
    .await;
    let second = accepted(&resp);
    assert_ne!(second, first);
    assert_eq!(
        p.deliver_polls().await,
        [prdiff_poller::PollOutcome::FannedOut { models: 2 }]
    );
    assert_eq!(p.deliver_diffs().await.len(), 2, "a diff message per model");
    assert_eq!(run_state(&p, &second).await, RunState::Done);
    let comments = p.comments();
    let last = comments.last().expect("the sticky comment");
    assert!(!last.contains("unchanged since"), "{last}");
    assert_eq!(row(last, "orders")[2..6], ["1,000 → 999", "0", "1", "50"]);
}

#[tokio::test]
async fn through_prdiff_serve_a_writers_run_comment_diffs_a_pr_the_label_gate_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("prdiff.db");
    let store = Arc::new(EmbeddedStore::open(&db).unwrap());
    let p = Pipeline::over(store.clone(), store, &config("shop", LABELLED)).await;
    p.prod_run(542, BASE);
    p.pr_run(942, HEAD, status::SUCCESS, None);
    let (addr, stop, task) = start_serve(&p, &db).await;
    let deliver =
        |req: prdiff_webhook::WebhookRequest| async move { post_webhook(addr, &req).await };
    // A reader's command starts nothing; the admin's runs past the label gate.
    let refused = deliver(pr_comment("od-s1", "reader", "/prdiff run")).await;
    assert_eq!(refused.status().as_u16(), 200);
    assert!(current_run(&p).await.is_none(), "nothing written");
    let resp = deliver(pr_comment("od-s2", "Codertocat", "/prdiff run")).await;
    assert_eq!(resp.status().as_u16(), 202);
    eventually("the final status", Duration::from_secs(60), || {
        !p.final_statuses(HEAD).is_empty()
    })
    .await;
    stop.send(()).unwrap();
    task.await.unwrap();
    let run = current_run(&p).await.unwrap();
    assert_eq!(run.state, RunState::Done);
    assert_eq!(run.on_demand.unwrap().by, "github:Codertocat");
    let comments = p.comments();
    assert_eq!(comments.len(), 1, "{comments:?}");
    let orders = row(&comments[0], "orders");
    assert_eq!(orders[2..6], ["1,000 → 999", "0", "1", "50"], "{orders:?}");
    assert_eq!(
        p.final_statuses(HEAD),
        [(
            StatusState::Success,
            "prdiff: 2 models diffed, 1 with differences".to_owned()
        )]
    );
}
