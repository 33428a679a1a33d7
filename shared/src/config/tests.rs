use super::*;

/// The complete example of docs/config.md (kept in sync by this test reading the same text).
pub(crate) const EXAMPLE: &str = r#"
[[data_source]]
id = "warehouse"
kind = "postgres"
connection = { host = "db.internal", port = "5432", database = "analytics", user = "prdiff_ro" }
secret = { env = "PRDIFF_WAREHOUSE_PASSWORD" }

[[ci_config]]
name = "analytics-main"
data_source = "warehouse"
skip_pull_requests = false
primary_key_tag = "primary-key"
base_commit = "merge_base"
sync_on_push = true
sync_schedule = "0 */6 * * *"
files_to_ignore = """
docs/
*.md
!models/**/*.md
"""
status_reporting = true
slim_ci = true
diff_downstream = false
require_label = { enabled = true, name = "datafold" }
sampling = { tolerance = 0.001, confidence = 0.99, threshold = 1000000 }
base_branch = "main"
fail_on_primary_key_issues = true
max_models = 25
github_checks = true
reuse_unchanged = true

[ci_config.repository]
provider = "github"
full_name = "acme/analytics"

[ci_config.git_auth]
kind = "github_app"
app_id = 12345
installation_id = 67890
private_key = { file = "prdiff-app.private-key.pem" }

[ci_config.dbt_cloud]
access_url = "https://ab123.us1.dbt.com"
account_id = 1
api_key = { env = "DBT_CLOUD_API_KEY" }
artifacts_job_id = 10
pr_job_id = 11
"#;

/// A stored configuration for tests elsewhere: the example with secrets named
/// `prdiff/<config>/<role>`, adjusted by `edit` (TOML text replacements).
pub(crate) fn stored_example(edits: &[(&str, &str)]) -> CiConfig {
    let mut text = EXAMPLE.to_owned();
    for (from, to) in edits {
        assert!(text.contains(from), "{from}");
        text = text.replace(from, to);
    }
    let file = ConfigFile::parse(&text, &[]).unwrap();
    let c = file.ci_configs.into_iter().next().unwrap();
    let name = c.name.clone();
    c.map_secrets(|role, _| SecretName::parse(format!("prdiff/{name}/{}", role.suffix())))
        .unwrap()
}

#[test]
fn the_documented_example_parses_with_every_field() {
    let file = ConfigFile::parse(EXAMPLE, &[]).unwrap();
    assert_eq!(file.data_sources.len(), 1);
    let c = &file.ci_configs[0];
    assert_eq!(c.name.as_str(), "analytics-main");
    assert_eq!(c.repository.provider, Provider::Github);
    assert_eq!(c.require_label.required().unwrap().as_str(), "datafold");
    assert_eq!(c.sampling.threshold, Some(1_000_000));
    assert_eq!(c.base_branch.as_ref().unwrap().as_str(), "main");
    assert!(c.fail_on_primary_key_issues);
    assert_eq!(c.max_models.map(|m| m.get()), Some(25));
    assert!(c.github_checks);
    assert!(c.files_to_ignore.is_ignored("docs/index.html"));
    assert!(c.files_to_ignore.is_ignored("README.md"));
    assert!(!c.files_to_ignore.is_ignored("models/staging/schema.md"));
    assert!(!c.files_to_ignore.is_ignored("models/orders.sql"));
    assert!(matches!(
        c.dbt_cloud.api_key,
        SecretSource::Env { ref env } if env == "DBT_CLOUD_API_KEY"
    ));
}

#[test]
fn defaults_fill_every_optional_field() {
    let text = r#"
[[ci_config]]
name = "minimal"
data_source = "wh"
repository = { provider = "gitlab", full_name = "group/sub/project" }
git_auth = { kind = "token", token = { secret = "prdiff/gitlab-token" } }
dbt_cloud = { access_url = "https://cloud.getdbt.com", account_id = 1, api_key = { secret = "k" }, artifacts_job_id = 2, pr_job_id = 3 }
"#;
    let file = ConfigFile::parse(text, &[DataSourceId::parse("wh").unwrap()]).unwrap();
    let c = &file.ci_configs[0];
    assert_eq!(c.primary_key_tag.as_str(), "primary-key");
    assert_eq!(c.base_commit, BaseCommitSelection::MergeBase);
    assert!(c.status_reporting && c.slim_ci && !c.diff_downstream);
    assert!(c.github_checks);
    assert!(c.reuse_unchanged);
    assert!(c.require_label.required().is_none());
    assert_eq!(c.require_label.name.as_str(), "datafold");
    assert!(c.files_to_ignore.is_empty());
    assert_eq!(
        c.sampling.threshold_for(DataSourceKind::Snowflake),
        5_000_000
    );
}

fn with(replace: &str, by: &str) -> Result<ConfigFile, ConfigError> {
    assert!(EXAMPLE.contains(replace), "{replace}");
    ConfigFile::parse(&EXAMPLE.replace(replace, by), &[])
}

#[test]
fn a_tolerance_outside_zero_one_is_refused_naming_the_field() {
    for bad in ["tolerance = 1.5", "tolerance = 0.0", "tolerance = 1.0"] {
        let err = with("tolerance = 0.001", bad).unwrap_err().to_string();
        assert!(
            err.contains("tolerance") && err.contains("between 0 and 1"),
            "{err}"
        );
    }
    let err = with("confidence = 0.99", "confidence = 1.01")
        .unwrap_err()
        .to_string();
    assert!(err.contains("confidence"), "{err}");
}

#[test]
fn a_negative_threshold_is_refused_and_zero_is_allowed() {
    let err = with("threshold = 1000000", "threshold = -1")
        .unwrap_err()
        .to_string();
    assert!(err.contains("threshold"), "{err}");
    assert!(with("threshold = 1000000", "threshold = 0").is_ok());
}

#[test]
fn a_configurations_sampling_becomes_the_engines_settings_with_the_kinds_default_threshold() {
    let sampling = Sampling {
        tolerance: Probability::new(0.01).unwrap(),
        confidence: Probability::new(0.95).unwrap(),
        threshold: None,
    };
    let s = sampling.settings_for(DataSourceKind::Snowflake);
    assert_eq!(
        (s.threshold, s.tolerance, s.confidence),
        (5_000_000, 0.01, 0.95)
    );
    assert_eq!(
        sampling.settings_for(DataSourceKind::Postgres).threshold,
        1_000_000
    );
    let fixed = Sampling {
        threshold: Some(0),
        ..sampling
    };
    assert_eq!(fixed.settings_for(DataSourceKind::Bigquery).threshold, 0);
    // The same values pass the engine's own check: nothing is dropped on the way.
    assert_eq!(
        crate::diff::SamplingSettings::new(s.threshold, s.tolerance, s.confidence).unwrap(),
        s
    );
}

#[test]
fn a_cron_that_does_not_parse_is_refused() {
    let err = with("\"0 */6 * * *\"", "\"every day at noon\"")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("sync_schedule") && err.contains("cron"),
        "{err}"
    );
}

/// Found with the `config` fuzz target (docs/security.md, Fuzzing): these parsed, never
/// matched, and made every scheduled sync tick search croner's ~3000 years for each such
/// configuration (2.7 s per evaluation under AddressSanitizer).
#[test]
fn a_cron_that_never_matches_is_refused() {
    for never in [
        "0 0 30 2 *",
        "0 0 31 2 *",
        "0 0 * * 7L",
        "0 0 31 4,6,9,11 *",
    ] {
        let err = with("\"0 */6 * * *\"", &format!("{never:?}"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("never matches"), "{never}: {err}");
    }
    // Rare but real dates are kept: Feb 29, the last Sunday, the fifth Friday.
    for rare in [
        "0 0 29 2 *",
        "0 0 * * 0L",
        "0 30 2 * * 5L",
        "0 0 * * 5#5",
        "0 0 0 29 2 *",
    ] {
        assert!(
            with("\"0 */6 * * *\"", &format!("{rare:?}")).is_ok(),
            "{rare}"
        );
    }
}

#[test]
fn a_pattern_that_does_not_compile_is_refused() {
    for bad in ["[z-a].md\n", "models/{a,b.sql\n"] {
        let err = with("*.md\n", bad).unwrap_err().to_string();
        assert!(err.contains("files_to_ignore line 2"), "{err}");
    }
}

#[test]
fn an_empty_label_is_refused() {
    let err = with("name = \"datafold\"", "name = \"  \"")
        .unwrap_err()
        .to_string();
    assert!(err.contains("label"), "{err}");
}

#[test]
fn an_unknown_key_is_refused() {
    let err = with("slim_ci = true", "slim_ci = true\nslimci = true")
        .unwrap_err()
        .to_string();
    assert!(err.contains("slimci"), "{err}");
}

#[test]
fn a_configuration_pointing_at_an_unknown_data_source_is_refused() {
    let err = with("data_source = \"warehouse\"", "data_source = \"nope\"").unwrap_err();
    let ConfigError::Invalid(problems) = err else {
        panic!("{err}")
    };
    assert_eq!(
        problems[0].field,
        "ci_config \"analytics-main\".data_source"
    );
}

#[test]
fn cross_field_problems_are_reported_together() {
    let text = EXAMPLE
        .replace("data_source = \"warehouse\"", "data_source = \"nope\"")
        .replace("pr_job_id = 11\n", "");
    let Err(ConfigError::Invalid(problems)) = ConfigFile::parse(&text, &[]) else {
        panic!("expected problems")
    };
    let fields: Vec<_> = problems.iter().map(|p| p.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "ci_config \"analytics-main\".data_source",
            "ci_config \"analytics-main\".dbt_cloud.pr_job_id"
        ]
    );
}

#[test]
fn a_github_app_on_gitlab_is_refused() {
    let err = with("provider = \"github\"", "provider = \"gitlab\"")
        .unwrap_err()
        .to_string();
    assert!(err.contains("git_auth.kind"), "{err}");
}

#[test]
fn stored_configurations_round_trip_through_json() {
    let file = ConfigFile::parse(EXAMPLE, &[]).unwrap();
    let json = serde_json::to_string(&file.ci_configs[0]).unwrap();
    let back: CiConfigOf<SecretSource> = serde_json::from_str(&json).unwrap();
    assert_eq!(back, file.ci_configs[0]);
}

#[test]
fn ignore_patterns_follow_gitignore_order_and_negation() {
    let p = IgnorePatterns::parse("*.yml\n!dbt_project.yml\n# comment\n/analysis\n").unwrap();
    assert!(p.is_ignored("models/schema.yml"));
    assert!(!p.is_ignored("dbt_project.yml"));
    assert!(p.is_ignored("analysis/x.sql"));
    assert!(!p.is_ignored("models/analysis.sql"));
    assert!(p.all_ignored(["a.yml", "analysis/b.sql"]));
    assert!(!p.all_ignored(["a.yml", "models/c.sql"]));
    assert!(!p.all_ignored(std::iter::empty()));
}

#[test]
fn commit_shas_must_be_full_lower_case_hex() {
    assert!(CommitSha::parse("ec26c3e57ca3a959ca5aad62de7213c562f8c821").is_ok());
    assert!(CommitSha::parse("ec26c3e").is_err());
    assert!(CommitSha::parse("EC26C3E57CA3A959CA5AAD62DE7213C562F8C821").is_err());
}

#[test]
fn data_source_kind_names_match_the_file_format() {
    for kind in [
        DataSourceKind::Postgres,
        DataSourceKind::Redshift,
        DataSourceKind::Sqlite,
        DataSourceKind::Duckdb,
        DataSourceKind::Snowflake,
        DataSourceKind::Bigquery,
        DataSourceKind::Databricks,
    ] {
        assert_eq!(
            serde_json::to_string(&kind).unwrap(),
            format!("\"{}\"", kind.as_str())
        );
    }
}

/// The files-to-ignore example of the Datafold documentation ("exclude everything except
/// the /dbt folder, but not the dbt .md files"), case by case.
#[test]
fn files_to_ignore_follows_the_documented_example() {
    let patterns = IgnorePatterns::parse("*\n!dbt/*\ndbt/*.md\n").unwrap();
    let cases = [
        ("README.md", true),
        ("airflow/dags/x.py", true),
        ("dbt/models/x.sql", false),
        ("dbt/dbt_project.yml", false),
        ("dbt/README.md", true),
        ("dbt/models/docs.md", true),
    ];
    for (path, ignored) in cases {
        assert_eq!(patterns.is_ignored(path), ignored, "{path}");
    }
    assert!(!patterns.all_ignored(["README.md", "dbt/models/x.sql"]));
    assert!(patterns.all_ignored(["README.md", "dbt/models/docs.md"]));
}

/// Where the rules agree with git (no `*` meant to stop at `/`, no re-include below an
/// excluded directory), the matcher gives git's answer: checked against the `ignore`
/// crate's gitignore matcher for every pattern set and path below.
#[test]
fn files_to_ignore_agrees_with_git_where_the_rules_agree() {
    let pattern_sets = [
        "docs/\n*.md\n!models/**/*.md\n",
        "*.md\n!README.md\n",
        "/build\n",
        "build/\n",
        "target\n",
        "models/staging/**\n",
        "**/tmp\n",
        "# a comment\n\n*.log\n!keep.log\n",
        "a/**/b.sql\n",
        "seeds/*.csv\n",
        "\\#notes\n",
        "logs/\n!logs/\n",
    ];
    let paths = [
        "README.md",
        "docs/index.html",
        "docs/a/README.md",
        "models/staging/schema.md",
        "models/staging/stg_orders.sql",
        "models/orders.sql",
        "build",
        "build/x.txt",
        "src/build/x.txt",
        "target/debug/x",
        "x/target",
        "a/tmp/y",
        "tmp/z",
        "app.log",
        "keep.log",
        "sub/keep.log",
        "a/b.sql",
        "a/x/y/b.sql",
        "seeds/raw.csv",
        "#notes",
        "logs/today.txt",
    ];
    for set in pattern_sets {
        let ours = IgnorePatterns::parse(set).unwrap();
        let mut git = ignore::gitignore::GitignoreBuilder::new("");
        for line in set.lines() {
            git.add_line(None, line).unwrap();
        }
        let git = git.build().unwrap();
        for path in paths {
            let expected = git.matched_path_or_any_parents(path, false).is_ignore();
            assert_eq!(
                ours.is_ignored(path),
                expected,
                "patterns {set:?}, path {path}"
            );
        }
    }
}

/// The two documented differences from git.
#[test]
fn files_to_ignore_differs_from_git_in_two_documented_rules() {
    // `*` crosses `/`: git would need `dbt/**/*.md`.
    let p = IgnorePatterns::parse("dbt/*.md\n").unwrap();
    assert!(p.is_ignored("dbt/models/docs.md"));
    assert!(!p.is_ignored("dbt/models/x.sql"));
    // A negation re-includes a file below an excluded directory.
    let p = IgnorePatterns::parse("docs/\n!docs/keep.md\n").unwrap();
    assert!(p.is_ignored("docs/index.html"));
    assert!(!p.is_ignored("docs/keep.md"));
    // Invalid globs are refused with their line number.
    let err = IgnorePatterns::parse("ok\nbad[\n").err().unwrap();
    assert!(err.contains("files_to_ignore line 2"), "{err}");
}

#[test]
fn base_branches_follow_git_s_branch_name_rules() {
    for ok in ["main", "release/2.0", "feature-x_1", "staging"] {
        assert!(BranchName::parse(ok).is_ok(), "{ok}");
    }
    for bad in [
        "",
        "refs/heads/main",
        "a b",
        "a..b",
        "-main",
        "main/",
        "main.lock",
        "a~1",
        "a:b",
        "we\\ird",
        "x@{1}",
        "a//b",
    ] {
        assert!(BranchName::parse(bad).is_err(), "{bad:?}");
    }
    let err = BranchName::parse("refs/heads/main").unwrap_err();
    assert!(err.contains("without `refs/heads/`"), "{err}");
}

#[test]
fn base_branch_is_optional_and_refused_when_malformed() {
    let without = EXAMPLE.replace("base_branch = \"main\"\n", "");
    assert!(without != EXAMPLE);
    let file = ConfigFile::parse(&without, &[]).unwrap();
    assert_eq!(file.ci_configs[0].base_branch, None);
    let json = serde_json::to_string(&file.ci_configs[0]).unwrap();
    assert!(!json.contains("base_branch"), "{json}");
    let bad = EXAMPLE.replace("base_branch = \"main\"", "base_branch = \"main branch\"");
    let err = ConfigFile::parse(&bad, &[]).unwrap_err().to_string();
    assert!(
        err.contains("base_branch") || err.contains("branch name"),
        "{err}"
    );
}

#[test]
fn github_checks_can_be_turned_off_and_survive_the_stored_form() {
    let c = stored_example(&[("github_checks = true", "github_checks = false")]);
    assert!(!c.github_checks);
    let json = serde_json::to_string(&c).unwrap();
    let back: CiConfig = serde_json::from_str(&json).unwrap();
    assert!(!back.github_checks);
    // Stored before the setting existed: on.
    let mut old: serde_json::Value = serde_json::from_str(&json).unwrap();
    old.as_object_mut().unwrap().remove("github_checks");
    let back: CiConfig = serde_json::from_value(old).unwrap();
    assert!(back.github_checks);
}

#[test]
fn reuse_unchanged_can_be_turned_off_and_survives_the_stored_form() {
    let c = stored_example(&[("reuse_unchanged = true", "reuse_unchanged = false")]);
    assert!(!c.reuse_unchanged);
    let json = serde_json::to_string(&c).unwrap();
    let back: CiConfig = serde_json::from_str(&json).unwrap();
    assert!(!back.reuse_unchanged);
    // Stored before the setting existed: on.
    let mut old: serde_json::Value = serde_json::from_str(&json).unwrap();
    old.as_object_mut().unwrap().remove("reuse_unchanged");
    let back: CiConfig = serde_json::from_value(old).unwrap();
    assert!(back.reuse_unchanged);
}
