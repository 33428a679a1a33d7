//! Parsers over every real fixture payload, and the gates over parsed events.

use crate::config::Provider;
use crate::config::tests::stored_example;
use crate::intake::{HostEvent, IntakeError, PrAction, github, gitlab};

use super::{all_files_ignored, check_event, other_base_branch};

fn fixture(rel: &str) -> Vec<u8> {
    let path = crate::test_fixtures().join(rel);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn gh(event: &str, file: &str) -> HostEvent {
    github::parse(event, &fixture(&format!("github/{file}"))).unwrap()
}

fn gl(event: &str, file: &str) -> Result<HostEvent, IntakeError> {
    gitlab::parse(event, &fixture(&format!("gitlab/{file}")))
}

fn pr(e: HostEvent) -> crate::intake::PrEvent {
    match e {
        HostEvent::PullRequest(p) => p,
        other => panic!("not a PR event: {other:?}"),
    }
}

#[test]
fn every_github_pull_request_fixture_parses_to_the_expected_event() {
    let opened = pr(gh("pull_request", "pull_request.opened.json"));
    assert_eq!(opened.action, PrAction::Opened);
    assert_eq!(opened.provider, Provider::Github);
    assert_eq!(opened.number, 2);
    assert!(opened.head_sha.as_str().starts_with("ec26c3e5"));
    assert!(opened.base_sha.is_some());
    assert_eq!(
        pr(gh(
            "pull_request",
            "pull_request.opened.with-organization.json"
        ))
        .action,
        PrAction::Opened
    );
    assert_eq!(
        pr(gh("pull_request", "pull_request.synchronize.json")).action,
        PrAction::NewCommits
    );
    assert_eq!(
        pr(gh("pull_request", "pull_request.reopened.json")).action,
        PrAction::Reopened
    );
    assert_eq!(
        pr(gh(
            "pull_request",
            "pull_request.ready_for_review.with-installation.json"
        ))
        .action,
        PrAction::ReadyForReview
    );
    let labeled = pr(gh("pull_request", "pull_request.labeled.json"));
    assert_eq!(labeled.action, PrAction::Labeled(vec!["bug".into()]));
    assert!(labeled.labels.contains(&"bug".to_owned()));
    assert!(matches!(
        gh("pull_request", "pull_request.closed.json"),
        HostEvent::PrClosed { number: 2, .. }
    ));
    for f in [
        "pull_request.unlabeled.json",
        "pull_request.converted_to_draft.json",
    ] {
        assert!(
            matches!(gh("pull_request", f), HostEvent::NotHandled(_)),
            "{f}"
        );
    }
}

#[test]
fn github_ping_push_and_other_events_parse() {
    assert_eq!(gh("ping", "ping.json"), HostEvent::Ping);
    assert_eq!(gh("ping", "ping.with-app_id.json"), HostEvent::Ping);
    for f in ["push.json", "push.with-installation.json"] {
        let HostEvent::Push(p) = gh("push", f) else {
            panic!("{f}")
        };
        // A tag deletion: no branch, no new head.
        assert_eq!(p.branch, None);
        assert_eq!(p.after, None);
        assert!(p.updates_default_branch().is_none());
    }
    let HostEvent::Push(p) = gh("push", "push.with-new-branch.json") else {
        panic!()
    };
    assert_eq!(p.branch.as_deref(), Some("master"));
    assert!(p.after.is_some());
    for (event, f) in [
        ("issue_comment", "issue_comment.created.json"),
        ("check_run", "check_run.created.json"),
        ("check_suite", "check_suite.requested.json"),
    ] {
        assert!(matches!(gh(event, f), HostEvent::NotHandled(_)), "{f}");
    }
}

#[test]
fn github_edited_starts_a_run_only_when_the_base_changed() {
    let mut v: serde_json::Value =
        serde_json::from_slice(&fixture("github/pull_request.opened.json")).unwrap();
    v["action"] = "edited".into();
    v["changes"] = serde_json::json!({"title": {"from": "old"}});
    let body = serde_json::to_vec(&v).unwrap();
    assert!(matches!(
        github::parse("pull_request", &body).unwrap(),
        HostEvent::NotHandled(_)
    ));
    v["changes"] = serde_json::json!({"base": {"ref": {"from": "develop"}, "sha": {"from": "x"}}});
    let body = serde_json::to_vec(&v).unwrap();
    assert_eq!(
        pr(github::parse("pull_request", &body).unwrap()).action,
        PrAction::BaseChanged
    );
}

#[test]
fn a_description_edit_starts_a_run_only_when_its_remapping_directives_change() {
    let mut v: serde_json::Value =
        serde_json::from_slice(&fixture("github/pull_request.opened.json")).unwrap();
    v["action"] = "edited".into();
    let mut edit = |before: &str, after: &str| {
        v["changes"] = serde_json::json!({"body": {"from": before}});
        v["pull_request"]["body"] = after.into();
        github::parse("pull_request", &serde_json::to_vec(&v).unwrap()).unwrap()
    };
    // Prose edited, directives the same (whitespace around them does not count).
    for (before, after) in [
        ("Fixes totals.", "Fixes the totals."),
        (
            "datafold remap a b\nOld text.",
            "New text.\r\n  datafold remap a b  ",
        ),
        ("", "X-Datafold: rename a-b c"),
    ] {
        assert!(
            matches!(edit(before, after), HostEvent::NotHandled(_)),
            "{before:?} → {after:?}"
        );
    }
    // Directives added, changed or removed.
    for (before, after) in [
        ("Fixes totals.", "Fixes totals.\n\ndatafold remap a b"),
        ("datafold remap a b", "datafold remap a c"),
        ("datafold remap a b", "datafold remap a b orders*"),
        ("/datafold renamed a b", "No more renames."),
    ] {
        let e = pr(edit(before, after));
        assert_eq!(e.action, PrAction::RemapChanged, "{before:?} → {after:?}");
        assert_eq!(
            e.remap,
            crate::diff::remap::parse_text(after, "test"),
            "the new description's directives"
        );
    }

    let mut v: serde_json::Value =
        serde_json::from_slice(&fixture("gitlab/gitlab-docs.merge_request.open.json")).unwrap();
    v["object_attributes"]["action"] = "update".into();
    let mut edit = |before: &str, after: &str| {
        v["changes"] = serde_json::json!({"description": {"previous": before, "current": after}});
        v["object_attributes"]["description"] = after.into();
        gitlab::parse("Merge Request Hook", &serde_json::to_vec(&v).unwrap()).unwrap()
    };
    assert!(matches!(
        edit("Fixes totals.", "Fixes the totals."),
        HostEvent::NotHandled(_)
    ));
    assert_eq!(
        pr(edit("Fixes totals.", "prdiff remap a b")).action,
        PrAction::RemapChanged
    );
}

#[test]
fn github_payloads_missing_fields_name_the_field() {
    let mut v: serde_json::Value =
        serde_json::from_slice(&fixture("github/pull_request.opened.json")).unwrap();
    v["pull_request"]["head"]
        .as_object_mut()
        .unwrap()
        .remove("sha");
    let err = github::parse("pull_request", &serde_json::to_vec(&v).unwrap()).unwrap_err();
    assert!(err.to_string().contains("pull_request.head.sha"), "{err}");
    let err = github::parse("pull_request", b"{\"action\": \"opened\"").unwrap_err();
    assert!(matches!(err, IntakeError::Json(_)));
    let err = github::parse("pull_request", b"[1,2]").unwrap_err();
    assert!(matches!(err, IntakeError::Field { .. }));
}

#[test]
fn every_gitlab_fixture_parses_to_the_expected_event() {
    let open = pr(gl("Merge Request Hook", "gitlab-docs.merge_request.open.json").unwrap());
    assert_eq!(open.action, PrAction::Opened);
    assert_eq!(open.repository.as_str(), "gitlabhq/gitlab-test");
    assert_eq!(open.labels, vec!["API"]);
    assert_eq!(open.base_branch, "master");
    assert_eq!(
        pr(gl("Merge Request Hook", "go-gitlab.merge_request.json").unwrap()).action,
        PrAction::Opened
    );
    let update = pr(gl("Merge Request Hook", "go-gitlab.service_merge_request.json").unwrap());
    assert_eq!(update.action, PrAction::NewCommits);
    assert_eq!(
        update.head_sha.as_str(),
        "0ab96a10266b95b4b533dcfd98738015fbe70889"
    );
    // go-gitlab's group hook sample has keys with trailing spaces ("iid "): the real
    // shape of a broken payload, answered with the missing field's name.
    let err = gl("Merge Request Hook", "go-gitlab.group_merge_request.json").unwrap_err();
    assert!(err.to_string().contains("object_attributes.iid"), "{err}");
    for f in ["gitlab-docs.push.json", "go-gitlab.push.json"] {
        let HostEvent::Push(p) = gl("Push Hook", f).unwrap() else {
            panic!("{f}")
        };
        assert_eq!(p.branch.as_deref(), Some("master"));
        assert!(p.updates_default_branch().is_some(), "{f}");
    }
    for (event, f) in [
        ("Tag Push Hook", "go-gitlab.tag_push.json"),
        ("Note Hook", "go-gitlab.note_merge_request.json"),
        ("Pipeline Hook", "go-gitlab.pipeline.json"),
    ] {
        assert!(
            matches!(gl(event, f).unwrap(), HostEvent::NotHandled(_)),
            "{f}"
        );
    }
}

#[test]
fn gitlab_label_changes_close_and_merge_are_read_from_the_update() {
    let mut v: serde_json::Value =
        serde_json::from_slice(&fixture("gitlab/gitlab-docs.merge_request.open.json")).unwrap();
    v["object_attributes"]["action"] = "update".into();
    // The docs sample's changes.labels goes API → Platform: "Platform" was added.
    let body = serde_json::to_vec(&v).unwrap();
    assert_eq!(
        pr(gitlab::parse("Merge Request Hook", &body).unwrap()).action,
        PrAction::Labeled(vec!["Platform".into()])
    );
    for action in ["close", "merge"] {
        v["object_attributes"]["action"] = action.into();
        let body = serde_json::to_vec(&v).unwrap();
        assert!(matches!(
            gitlab::parse("Merge Request Hook", &body).unwrap(),
            HostEvent::PrClosed { number: 1, .. }
        ));
    }
}

#[test]
fn the_gates_skip_prs_drafts_and_missing_labels() {
    let event = pr(gh("pull_request", "pull_request.opened.json"));
    let no_label = stored_example(&[("enabled = true", "enabled = false")]);
    assert_eq!(check_event(&no_label, &event), Ok(()));

    let skip = stored_example(&[("skip_pull_requests = false", "skip_pull_requests = true")]);
    assert!(
        check_event(&skip, &event)
            .unwrap_err()
            .contains("skips pull requests")
    );

    let mut draft = event.clone();
    draft.draft = true;
    assert!(
        check_event(&no_label, &draft)
            .unwrap_err()
            .contains("draft")
    );

    let labelled = stored_example(&[]);
    assert!(
        check_event(&labelled, &event)
            .unwrap_err()
            .contains("`datafold`")
    );
    let mut with_label = event.clone();
    with_label.labels.push("datafold".into());
    assert_eq!(check_event(&labelled, &with_label), Ok(()));
}

#[test]
fn adding_the_required_label_starts_a_run_and_other_labels_do_not() {
    let labeled = pr(gh("pull_request", "pull_request.labeled.json"));
    let bug = stored_example(&[("name = \"datafold\"", "name = \"bug\"")]);
    assert_eq!(check_event(&bug, &labeled), Ok(()));
    let datafold = stored_example(&[]);
    assert!(check_event(&datafold, &labeled).is_err());
    let none = stored_example(&[("enabled = true", "enabled = false")]);
    assert!(check_event(&none, &labeled).is_err());
}

#[test]
fn a_pr_touching_only_ignored_files_is_skipped_with_a_reason() {
    let config = stored_example(&[]);
    let docs = vec!["docs/index.md".to_owned(), "README.md".to_owned()];
    assert!(
        all_files_ignored(&config, &docs)
            .unwrap()
            .contains("all 2 changed files")
    );
    let mixed = vec!["README.md".to_owned(), "models/orders.sql".to_owned()];
    assert_eq!(all_files_ignored(&config, &mixed), None);
    let negated = vec!["models/staging/notes.md".to_owned()];
    assert_eq!(all_files_ignored(&config, &negated), None);
}

#[test]
fn a_base_branch_limits_the_configuration_to_prs_into_that_branch() {
    let github = pr(gh("pull_request", "pull_request.opened.json"));
    assert_eq!(github.base_branch, "master");
    let gitlab = pr(gl("Merge Request Hook", "gitlab-docs.merge_request.open.json").unwrap());
    let any = stored_example(&[("base_branch = \"main\"\n", "")]);
    let master = stored_example(&[("base_branch = \"main\"", "base_branch = \"master\"")]);
    let main = stored_example(&[]);
    let release = stored_example(&[("base_branch = \"main\"", "base_branch = \"release/2.0\"")]);
    let mut into_release = github.clone();
    into_release.base_branch = "release/2.0".into();
    let mut into_release_old = github.clone();
    into_release_old.base_branch = "release/2".into();
    // (configuration, event, skip reason or None when it runs)
    let cases: [(&_, &_, Option<&str>); 8] = [
        (&any, &github, None),
        (&any, &gitlab, None),
        (&master, &github, None),
        (&master, &gitlab, None),
        (
            &main,
            &github,
            Some("prdiff skipped: base branch master is not main"),
        ),
        (
            &main,
            &gitlab,
            Some("prdiff skipped: base branch master is not main"),
        ),
        (&release, &into_release, None),
        (
            &release,
            &into_release_old,
            Some("prdiff skipped: base branch release/2 is not release/2.0"),
        ),
    ];
    for (i, (config, event, want)) in cases.into_iter().enumerate() {
        assert_eq!(
            other_base_branch(config, event).as_deref(),
            want,
            "case {i}"
        );
    }
    // The base branch gate does not replace the others: a draft into the base is gated.
    let mut draft = github.clone();
    draft.draft = true;
    let master_no_label = stored_example(&[
        ("base_branch = \"main\"", "base_branch = \"master\""),
        ("enabled = true", "enabled = false"),
    ]);
    assert_eq!(other_base_branch(&master_no_label, &draft), None);
    assert!(check_event(&master_no_label, &draft).is_err());
}

#[test]
fn an_on_demand_run_passes_the_label_gate_but_not_the_others() {
    let mut event = pr(gh("pull_request", "pull_request.opened.json"));
    event.action = PrAction::OnDemand;
    let labelled = stored_example(&[]);
    assert_eq!(check_event(&labelled, &event), Ok(()));
    let skip = stored_example(&[("skip_pull_requests = false", "skip_pull_requests = true")]);
    assert!(check_event(&skip, &event).is_err());
    event.draft = true;
    assert!(
        check_event(&labelled, &event)
            .unwrap_err()
            .contains("draft")
    );
}

fn comment(mut v: serde_json::Value, pointer: &str, text: &str) -> Vec<u8> {
    *v.pointer_mut(pointer).unwrap() = text.into();
    serde_json::to_vec(&v).unwrap()
}

#[test]
fn a_github_pr_comment_with_the_command_is_a_run_command() {
    let mut v: serde_json::Value =
        serde_json::from_slice(&fixture("github/issue_comment.created.json")).unwrap();
    // The fixture's comment is on an issue: not a command, whatever it says.
    let on_issue = comment(v.clone(), "/comment/body", "/prdiff run");
    assert!(matches!(
        github::parse("issue_comment", &on_issue).unwrap(),
        HostEvent::NotHandled(r) if r.contains("not a pull request")
    ));
    v["issue"]["pull_request"] = serde_json::json!({
        "url": "https://api.github.com/repos/Codertocat/Hello-World/pulls/1"
    });
    let body = comment(v.clone(), "/comment/body", "LGTM\r\n/prdiff run orders\r\n");
    let HostEvent::Command(cmd) = github::parse("issue_comment", &body).unwrap() else {
        panic!("a command")
    };
    assert_eq!(cmd.provider, Provider::Github);
    assert_eq!(cmd.repository.as_str(), "Codertocat/Hello-World");
    assert_eq!(cmd.number, 1);
    assert_eq!(cmd.author.login, "Codertocat");
    assert_eq!(cmd.models, Ok(vec!["orders".to_owned()]));
    // Junk is a command refused with its reason.
    let junk = comment(v.clone(), "/comment/body", "/prdiff run orders;drop");
    let HostEvent::Command(cmd) = github::parse("issue_comment", &junk).unwrap() else {
        panic!("a command")
    };
    assert!(cmd.models.unwrap_err().contains("not a dbt model name"));
    // The fixture's own text, a bot, prdiff's sticky comment, an edit: not commands.
    assert!(matches!(
        github::parse("issue_comment", &serde_json::to_vec(&v).unwrap()).unwrap(),
        HostEvent::NotHandled(_)
    ));
    let mut bot = v.clone();
    bot["comment"]["user"]["type"] = "Bot".into();
    let bot = comment(bot, "/comment/body", "/prdiff run");
    assert!(matches!(
        github::parse("issue_comment", &bot).unwrap(),
        HostEvent::NotHandled(_)
    ));
    let sticky = comment(
        v.clone(),
        "/comment/body",
        "<!-- prdiff:shop -->\n/prdiff run",
    );
    assert!(matches!(
        github::parse("issue_comment", &sticky).unwrap(),
        HostEvent::NotHandled(_)
    ));
    let mut edited = v.clone();
    edited["action"] = "edited".into();
    let edited = comment(edited, "/comment/body", "/prdiff run");
    assert!(matches!(
        github::parse("issue_comment", &edited).unwrap(),
        HostEvent::NotHandled(_)
    ));
}

#[test]
fn a_gitlab_merge_request_note_with_the_command_is_a_run_command() {
    let v: serde_json::Value =
        serde_json::from_slice(&fixture("gitlab/go-gitlab.note_merge_request.json")).unwrap();
    let body = comment(v.clone(), "/object_attributes/note", "/prdiff run");
    let HostEvent::Command(cmd) = gitlab::parse("Note Hook", &body).unwrap() else {
        panic!("a command")
    };
    assert_eq!(cmd.provider, Provider::Gitlab);
    assert_eq!(cmd.repository.as_str(), "gitlab-org/gitlab-test");
    assert_eq!(cmd.number, 1);
    assert_eq!(
        (cmd.author.login.as_str(), cmd.author.id),
        ("root", Some(1))
    );
    assert_eq!(cmd.models, Ok(vec![]));
    let mut system = v.clone();
    system["object_attributes"]["system"] = true.into();
    let system = comment(system, "/object_attributes/note", "/prdiff run");
    assert!(matches!(
        gitlab::parse("Note Hook", &system).unwrap(),
        HostEvent::NotHandled(_)
    ));
    let mut on_commit = v.clone();
    on_commit["object_attributes"]["noteable_type"] = "Commit".into();
    let on_commit = comment(on_commit, "/object_attributes/note", "/prdiff run");
    assert!(matches!(
        gitlab::parse("Note Hook", &on_commit).unwrap(),
        HostEvent::NotHandled(_)
    ));
}

#[test]
fn remapping_directives_are_read_from_the_pr_description() {
    use crate::diff::remap::Remap;
    let want = vec![Remap {
        from: "legacy_code".into(),
        to: "code".into(),
        glob: Some("orders_*".into()),
    }];
    let mut v: serde_json::Value =
        serde_json::from_slice(&fixture("github/pull_request.opened.json")).unwrap();
    assert!(
        pr(gh("pull_request", "pull_request.opened.json"))
            .remap
            .is_empty()
    );
    v["pull_request"]["body"] =
        "Renames a column.\r\n\r\ndatafold: remapped legacy_code code orders_*\r\nprdiff remap x \"y\"".into();
    let e = pr(github::parse("pull_request", &serde_json::to_vec(&v).unwrap()).unwrap());
    assert_eq!(e.remap, want);

    let mut v: serde_json::Value =
        serde_json::from_slice(&fixture("gitlab/gitlab-docs.merge_request.open.json")).unwrap();
    v["object_attributes"]["description"] = "X-Datafold: rename legacy_code code orders_*\n".into();
    let e = pr(gitlab::parse("Merge Request Hook", &serde_json::to_vec(&v).unwrap()).unwrap());
    assert_eq!(e.remap, want);
}
