//! The SAM template (`infra/template.yaml`) and `samconfig.toml`: the stack's safety
//! properties, checked so a later edit cannot silently drop one. cfn-lint (run by
//! scripts/test.sh) checks that the template is valid CloudFormation; these tests check
//! what prdiff relies on:
//!
//! - every queue has a dead-letter queue (redrive policy) that keeps messages longer;
//! - every SQS event source reports batch item failures, and its queue's visibility timeout
//!   exceeds the consuming function's timeout;
//! - no IAM statement grants a `*` action or a `*` resource, and secrets are readable only
//!   under the stack's secret prefix;
//! - every function is a Cargo Lambda build for arm64 on `provided.al2023` with JSON logs;
//! - the diff runner's concurrency is the `DiffConcurrency` parameter;
//! - the table is on demand with point-in-time recovery and TTL;
//! - the webhook function's environment satisfies what the webhook binary reads.
//!
//! CloudFormation short forms (`!Ref`, `!GetAtt`, `!Sub`) parse as YAML tagged values.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_yaml_ng::{Mapping, Value};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

fn template() -> Value {
    let path = repo_root().join("infra/template.yaml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

/// Resources of one type, by logical id.
fn resources<'a>(t: &'a Value, ty: &str) -> BTreeMap<&'a str, &'a Value> {
    t["Resources"]
        .as_mapping()
        .expect("Resources is a mapping")
        .iter()
        .filter(|(_, r)| r["Type"].as_str() == Some(ty))
        .map(|(k, r)| (k.as_str().expect("logical ids are strings"), r))
        .collect()
}

/// The tag of a short-form intrinsic (`Ref` for `!Ref`) and its argument.
fn intrinsic(v: &Value) -> Option<(String, &Value)> {
    match v {
        Value::Tagged(t) => Some((
            t.tag.to_string().trim_start_matches('!').to_owned(),
            &t.value,
        )),
        Value::Mapping(m) if m.len() == 1 => {
            let (k, arg) = m.iter().next()?;
            let k = k.as_str()?;
            let name = if k == "Ref" {
                k
            } else {
                k.strip_prefix("Fn::")?
            };
            Some((name.to_owned(), arg))
        }
        _ => None,
    }
}

/// `!Ref X` → `X`.
fn ref_of(v: &Value) -> Option<&str> {
    match intrinsic(v)? {
        (tag, arg) if tag == "Ref" => arg.as_str(),
        _ => None,
    }
}

/// `!GetAtt X.Attr` (or the list form) → `(X, Attr)`.
fn get_att(v: &Value) -> Option<(&str, &str)> {
    match intrinsic(v)? {
        (tag, Value::String(s)) if tag == "GetAtt" => s.split_once('.'),
        (tag, Value::Sequence(parts)) if tag == "GetAtt" && parts.len() == 2 => {
            Some((parts[0].as_str()?, parts[1].as_str()?))
        }
        _ => None,
    }
}

/// A number that may be written as a YAML number or a string.
fn number(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| v.as_str()?.parse().ok())
}

/// `Action` or `Resource` of a statement as a list.
fn one_or_many(v: &Value) -> Vec<&Value> {
    match v {
        Value::Sequence(items) => items.iter().collect(),
        Value::Null => Vec::new(),
        other => vec![other],
    }
}

const FUNCTIONS: [&str; 4] = [
    "WebhookFunction",
    "PollerFunction",
    "DiffFunction",
    "SyncFunction",
];

#[test]
fn every_function_is_an_arm64_cargo_lambda_build_of_its_crate_with_json_logs() {
    let t = template();
    let functions = resources(&t, "AWS::Serverless::Function");
    assert_eq!(
        functions.keys().copied().collect::<BTreeSet<_>>(),
        FUNCTIONS.into_iter().collect(),
        "the stack has exactly the four functions"
    );
    let log_groups = resources(&t, "AWS::Logs::LogGroup");
    let tables = resources(&t, "AWS::DynamoDB::Table");
    for (name, f) in &functions {
        let p = &f["Properties"];
        assert_eq!(p["Runtime"].as_str(), Some("provided.al2023"), "{name}");
        assert_eq!(
            p["Architectures"],
            Value::Sequence(vec!["arm64".into()]),
            "{name}"
        );
        assert_eq!(p["Handler"].as_str(), Some("bootstrap"), "{name}");
        assert_eq!(
            f["Metadata"]["BuildMethod"].as_str(),
            Some("rust-cargolambda"),
            "{name}"
        );
        let code_uri = p["CodeUri"].as_str().expect("CodeUri is a path");
        assert!(
            code_uri.starts_with("../functions/"),
            "{name}: CodeUri {code_uri} is a crate under functions/"
        );
        let binary = f["Metadata"]["BuildProperties"]["Binary"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: BuildProperties.Binary names the binary"));
        // A crate that exists must define that binary (the others are still being written).
        let manifest = repo_root().join("infra").join(code_uri).join("Cargo.toml");
        if let Ok(text) = std::fs::read_to_string(&manifest) {
            let cargo: toml::Table = text.parse().expect("Cargo.toml parses");
            let bins: Vec<&str> = cargo
                .get("bin")
                .and_then(|b| b.as_array())
                .map(|bins| {
                    bins.iter()
                        .filter_map(|b| b.get("name")?.as_str())
                        .collect()
                })
                .unwrap_or_default();
            let package = cargo["package"]["name"].as_str();
            assert!(
                bins.contains(&binary) || (bins.is_empty() && package == Some(binary)),
                "{name}: {} defines no binary {binary} (bins {bins:?})",
                manifest.display()
            );
        }
        let timeout = number(&p["Timeout"]).unwrap_or(3);
        assert!(timeout <= 900, "{name}: Lambda timeouts are at most 900 s");

        let logging = &p["LoggingConfig"];
        assert_eq!(logging["LogFormat"].as_str(), Some("JSON"), "{name}");
        assert_eq!(
            ref_of(&logging["ApplicationLogLevel"]),
            Some("LogLevel"),
            "{name}"
        );
        let group = ref_of(&logging["LogGroup"])
            .unwrap_or_else(|| panic!("{name}: LoggingConfig.LogGroup is !Ref of a log group"));
        assert!(
            number(&log_groups[group]["Properties"]["RetentionInDays"]).is_some()
                || ref_of(&log_groups[group]["Properties"]["RetentionInDays"]).is_some(),
            "{name}: log group {group} has a retention"
        );

        let env = &p["Environment"]["Variables"];
        let table = ref_of(&env["PRDIFF_TABLE"])
            .unwrap_or_else(|| panic!("{name}: PRDIFF_TABLE is !Ref of the table"));
        assert!(tables.contains_key(table), "{name}: {table} is a table");
        assert!(
            env["RUST_LOG"].is_string() || intrinsic(&env["RUST_LOG"]).is_some(),
            "{name}: RUST_LOG sets prdiff's log level"
        );
    }
}

#[test]
fn every_queue_has_a_dead_letter_queue_that_keeps_messages_longer() {
    let t = template();
    let queues = resources(&t, "AWS::SQS::Queue");
    let retention =
        |q: &Value| number(&q["Properties"]["MessageRetentionPeriod"]).unwrap_or(345_600);
    let dead_letter: BTreeSet<&str> = queues
        .values()
        .filter_map(|q| get_att(&q["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]))
        .map(|(target, _)| target)
        .collect();
    let mut sources = 0;
    for (name, q) in &queues {
        let redrive = &q["Properties"]["RedrivePolicy"];
        if dead_letter.contains(name) {
            assert!(
                redrive.is_null(),
                "{name} is a DLQ and has no DLQ of its own"
            );
            continue;
        }
        sources += 1;
        let (target, attr) = get_att(&redrive["deadLetterTargetArn"])
            .unwrap_or_else(|| panic!("{name} has a RedrivePolicy to !GetAtt <dlq>.Arn"));
        assert_eq!(attr, "Arn", "{name}");
        let dlq = queues
            .get(target)
            .unwrap_or_else(|| panic!("{name}: DLQ {target} is a queue of this stack"));
        let max = number(&redrive["maxReceiveCount"]).expect("maxReceiveCount");
        assert!((1..=10).contains(&max), "{name}: maxReceiveCount {max}");
        // The DLQ keeps the original enqueue time: a shorter retention would drop messages.
        assert!(
            retention(dlq) > retention(q),
            "{name}: DLQ {target} must keep messages longer than the queue"
        );
    }
    assert!(sources >= 3, "poll, diff and sync queues ({sources} found)");
}

#[test]
fn every_sqs_source_reports_batch_item_failures_and_outlasts_its_consumer() {
    let t = template();
    let queues = resources(&t, "AWS::SQS::Queue");
    let mut consumed = BTreeSet::new();
    for (name, f) in resources(&t, "AWS::Serverless::Function") {
        let p = &f["Properties"];
        let timeout = number(&p["Timeout"]).unwrap_or(3);
        let Some(events) = p["Events"].as_mapping() else {
            continue;
        };
        for (event, e) in events {
            if e["Type"].as_str() != Some("SQS") {
                continue;
            }
            let ep = &e["Properties"];
            assert_eq!(
                ep["FunctionResponseTypes"],
                Value::Sequence(vec!["ReportBatchItemFailures".into()]),
                "{name}.{event:?}: one bad message must not fail its batch"
            );
            let (queue, _) = get_att(&ep["Queue"])
                .unwrap_or_else(|| panic!("{name}.{event:?}: Queue is !GetAtt <queue>.Arn"));
            let q = queues
                .get(queue)
                .unwrap_or_else(|| panic!("{name}: {queue} is a queue of this stack"));
            assert!(
                !q["Properties"]["RedrivePolicy"].is_null(),
                "{name} consumes {queue}, which must have a DLQ"
            );
            let visibility = number(&q["Properties"]["VisibilityTimeout"]).unwrap_or(30);
            assert!(
                visibility > timeout,
                "{queue}: visibility timeout {visibility} s must exceed {name}'s timeout {timeout} s"
            );
            // The event source mapping receives with the function's role.
            let role = get_att(&p["Role"]).map(|(r, _)| r);
            let can_receive = statements(&t).iter().any(|(holder, st)| {
                Some(holder.as_str()) == role
                    && one_or_many(&st["Action"])
                        .iter()
                        .any(|a| a.as_str() == Some("sqs:ReceiveMessage"))
                    && one_or_many(&st["Resource"])
                        .iter()
                        .any(|r| get_att(r) == Some((queue, "Arn")))
            });
            assert!(can_receive, "{name}'s role cannot receive from {queue}");
            consumed.insert(queue);
        }
    }
    let sources: BTreeSet<&str> = queues
        .iter()
        .filter(|(_, q)| !q["Properties"]["RedrivePolicy"].is_null())
        .map(|(n, _)| *n)
        .collect();
    assert_eq!(consumed, sources, "every queue with a DLQ has a consumer");
}

/// Every policy statement of the template, by the resource that holds it. Each function
/// runs as its own role of this template, and no role carries a managed policy (AWS's
/// managed Lambda policies allow their actions on every resource).
fn statements(t: &Value) -> Vec<(String, &Value)> {
    let roles = resources(t, "AWS::IAM::Role");
    for (name, f) in resources(t, "AWS::Serverless::Function") {
        let p = &f["Properties"];
        assert!(
            p["Policies"].is_null(),
            "{name}: permissions go on its role, not in SAM `Policies` (SAM adds managed policies)"
        );
        let role = get_att(&p["Role"])
            .unwrap_or_else(|| panic!("{name}: Role is !GetAtt <role>.Arn"))
            .0;
        assert!(
            roles.contains_key(role),
            "{name}: {role} is a role of this stack"
        );
    }
    let mut out = Vec::new();
    for ty in [
        "AWS::IAM::Role",
        "AWS::IAM::Policy",
        "AWS::IAM::ManagedPolicy",
    ] {
        for (name, r) in resources(t, ty) {
            let p = &r["Properties"];
            assert!(
                p["ManagedPolicyArns"].is_null(),
                "{name}: no managed policies (their actions and resources are not checked here)"
            );
            let mut docs = vec![&p["PolicyDocument"]];
            docs.extend(
                one_or_many(&p["Policies"])
                    .into_iter()
                    .map(|p| &p["PolicyDocument"]),
            );
            for doc in docs {
                for s in one_or_many(&doc["Statement"]) {
                    out.push((name.to_owned(), s));
                }
            }
        }
    }
    out
}

#[test]
fn no_policy_grants_a_wildcard_action_and_secrets_stay_under_the_prefix() {
    let t = template();
    let statements = statements(&t);
    assert!(
        statements.len() >= 8,
        "the functions' statements were found"
    );
    let secrets_arn = "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:${SecretPrefix}*";
    for (name, s) in &statements {
        assert!(
            s["NotAction"].is_null() && s["NotResource"].is_null(),
            "{name}: no NotAction/NotResource"
        );
        assert_eq!(s["Effect"].as_str(), Some("Allow"), "{name}");
        let actions: Vec<&str> = one_or_many(&s["Action"])
            .into_iter()
            .map(|a| a.as_str().expect("actions are strings"))
            .collect();
        assert!(!actions.is_empty(), "{name}: a statement names its actions");
        for a in &actions {
            assert!(!a.contains('*'), "{name}: action {a} has a wildcard");
        }
        let resources = one_or_many(&s["Resource"]);
        assert!(
            !resources.is_empty(),
            "{name}: a statement names its resources"
        );
        for r in &resources {
            assert_ne!(r.as_str(), Some("*"), "{name}: resource * for {actions:?}");
        }
        if actions.iter().any(|a| a.starts_with("secretsmanager:")) {
            assert_eq!(actions, ["secretsmanager:GetSecretValue"], "{name}");
            for r in &resources {
                match intrinsic(r) {
                    Some((tag, arg)) if tag == "Sub" => {
                        assert_eq!(arg.as_str(), Some(secrets_arn), "{name}")
                    }
                    _ => panic!("{name}: secret resource must be the prefix ARN, got {r:?}"),
                }
            }
        }
    }
}

#[test]
fn diff_runner_concurrency_is_the_parameter_on_the_function_and_its_queue() {
    let t = template();
    let param = &t["Parameters"]["DiffConcurrency"];
    assert_eq!(param["Type"].as_str(), Some("Number"));
    assert!(
        number(&param["MinValue"]).is_some_and(|m| m >= 2),
        "SQS maximum concurrency is at least 2"
    );
    let diff = &t["Resources"]["DiffFunction"]["Properties"];
    assert_eq!(
        ref_of(&diff["ReservedConcurrentExecutions"]),
        Some("DiffConcurrency")
    );
    let sqs: Vec<&Value> = diff["Events"]
        .as_mapping()
        .map(Mapping::values)
        .into_iter()
        .flatten()
        .filter(|e| e["Type"].as_str() == Some("SQS"))
        .collect();
    assert_eq!(sqs.len(), 1, "the diff runner reads one queue");
    assert_eq!(
        ref_of(&sqs[0]["Properties"]["ScalingConfig"]["MaximumConcurrency"]),
        Some("DiffConcurrency"),
        "the event source stays within the reserved concurrency (no throttled receives)"
    );
    for p in [
        "Stage",
        "SyncScheduleRate",
        "SecretPrefix",
        "DiffConcurrency",
        "LogLevel",
    ] {
        assert!(t["Parameters"].get(p).is_some(), "parameter {p}");
    }
    let sync_events = &t["Resources"]["SyncFunction"]["Properties"]["Events"];
    assert!(
        sync_events
            .as_mapping()
            .into_iter()
            .flat_map(Mapping::values)
            .any(|e| e["Type"].as_str() == Some("Schedule")
                && ref_of(&e["Properties"]["Schedule"]) == Some("SyncScheduleRate")),
        "the sync function ticks on the SyncScheduleRate schedule"
    );
}

#[test]
fn table_is_on_demand_with_point_in_time_recovery_and_ttl_on_expires_at() {
    let t = template();
    let tables = resources(&t, "AWS::DynamoDB::Table");
    assert!(!tables.is_empty());
    for (name, table) in tables {
        let p = &table["Properties"];
        assert_eq!(p["BillingMode"].as_str(), Some("PAY_PER_REQUEST"), "{name}");
        assert_eq!(
            p["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"].as_bool(),
            Some(true),
            "{name}"
        );
        // shared/src/store/dynamodb.rs: delivery claims expire through `expires_at`.
        assert_eq!(
            p["TimeToLiveSpecification"]["AttributeName"].as_str(),
            Some("expires_at"),
            "{name}"
        );
        assert_eq!(
            p["TimeToLiveSpecification"]["Enabled"].as_bool(),
            Some(true),
            "{name}"
        );
        let keys: Vec<(&str, &str)> = one_or_many(&p["KeySchema"])
            .into_iter()
            .map(|k| {
                (
                    k["AttributeName"].as_str().unwrap(),
                    k["KeyType"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(keys, [("pk", "HASH"), ("sk", "RANGE")], "{name}");
    }
}

#[test]
fn every_dead_letter_queue_and_every_function_has_an_alarm() {
    let t = template();
    let alarms = resources(&t, "AWS::CloudWatch::Alarm");
    let mut watched_queues = BTreeSet::new();
    let mut watched_functions = BTreeSet::new();
    for (name, a) in &alarms {
        let p = &a["Properties"];
        assert!(
            !p["AlarmActions"].is_null(),
            "{name}: an alarm notifies someone"
        );
        for d in one_or_many(&p["Dimensions"]) {
            match (p["MetricName"].as_str(), d["Name"].as_str()) {
                (Some("ApproximateNumberOfMessagesVisible"), Some("QueueName")) => {
                    if let Some((q, "QueueName")) = get_att(&d["Value"]) {
                        watched_queues.insert(q.to_owned());
                    }
                }
                (Some("Errors"), Some("FunctionName")) => {
                    if let Some(f) = ref_of(&d["Value"]) {
                        watched_functions.insert(f.to_owned());
                    }
                }
                _ => {}
            }
        }
    }
    let dead_letter: BTreeSet<String> = resources(&t, "AWS::SQS::Queue")
        .values()
        .filter_map(|q| get_att(&q["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]))
        .map(|(q, _)| q.to_owned())
        .collect();
    assert!(!dead_letter.is_empty());
    assert_eq!(watched_queues, dead_letter, "DLQ depth alarms");
    assert_eq!(
        watched_functions,
        FUNCTIONS.iter().map(|f| f.to_string()).collect(),
        "function error alarms"
    );
}

#[test]
fn webhook_function_environment_satisfies_the_webhook_binary() {
    let t = template();
    let p = &t["Resources"]["WebhookFunction"]["Properties"];
    let env = p["Environment"]["Variables"]
        .as_mapping()
        .expect("the webhook has environment variables");
    let names: BTreeSet<&str> = env.keys().filter_map(Value::as_str).collect();
    // What `main.rs` does at cold start, with a stand-in for each value the template sets.
    let read = prdiff_webhook::LambdaEnv::from_vars(|name| {
        names.contains(name).then(|| {
            if name.ends_with("_SECONDS") {
                "60".to_owned()
            } else {
                format!("value-of-{name}")
            }
        })
    });
    assert!(
        read.is_ok(),
        "the template leaves out webhook settings: {read:?}"
    );
    let queue_of = |var: &str| ref_of(&env[var]).map(str::to_owned);
    assert_eq!(
        queue_of("PRDIFF_POLL_QUEUE_URL").as_deref(),
        Some("PollQueue")
    );
    assert_eq!(
        queue_of("PRDIFF_SYNC_QUEUE_URL").as_deref(),
        Some("SyncQueue")
    );
    assert_eq!(
        ref_of(&env["PRDIFF_WEBHOOK_SECRET_NAME"]),
        Some("WebhookSecret")
    );
    assert_eq!(
        p["FunctionUrlConfig"]["AuthType"].as_str(),
        Some("NONE"),
        "git hosts cannot sign AWS requests; the delivery signature is the authentication"
    );
    assert_eq!(
        get_att(&t["Outputs"]["WebhookUrl"]["Value"]),
        Some(("WebhookFunctionUrl", "FunctionUrl"))
    );
}

/// `PRDIFF_*` names that appear as string literals in a crate's `main.rs` and `lib.rs`.
fn env_names_in_code(crate_dir: &Path) -> Option<BTreeSet<String>> {
    let mut names = BTreeSet::new();
    let mut found = false;
    for file in ["src/main.rs", "src/lib.rs"] {
        let Ok(text) = std::fs::read_to_string(crate_dir.join(file)) else {
            continue;
        };
        found = true;
        for (i, _) in text.match_indices("\"PRDIFF_") {
            let rest = &text[i + 1..];
            let end = rest
                .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
                .unwrap_or(rest.len());
            if rest[end..].starts_with('"') {
                names.insert(rest[..end].to_owned());
            }
        }
    }
    found.then_some(names)
}

#[test]
fn each_function_gets_the_prdiff_variables_its_code_reads_and_no_others() {
    let t = template();
    let mut checked = 0;
    for (name, f) in resources(&t, "AWS::Serverless::Function") {
        let p = &f["Properties"];
        let dir = repo_root()
            .join("infra")
            .join(p["CodeUri"].as_str().unwrap());
        // Crates still being written are checked once they exist.
        let Some(in_code) = env_names_in_code(&dir) else {
            continue;
        };
        checked += 1;
        let in_template: BTreeSet<String> = p["Environment"]["Variables"]
            .as_mapping()
            .into_iter()
            .flat_map(Mapping::keys)
            .filter_map(Value::as_str)
            .filter(|n| n.starts_with("PRDIFF_"))
            .map(str::to_owned)
            .collect();
        // `*_SECONDS` variables are optional tuning with defaults in the code.
        let required: BTreeSet<&String> = in_code
            .iter()
            .filter(|n| !n.ends_with("_SECONDS"))
            .collect();
        let missing: Vec<_> = required
            .into_iter()
            .filter(|n| !in_template.contains(*n))
            .collect();
        assert!(
            missing.is_empty(),
            "{name}: the template does not set {missing:?}"
        );
        let unknown: Vec<_> = in_template.difference(&in_code).collect();
        assert!(
            unknown.is_empty(),
            "{name}: the code never reads {unknown:?}"
        );
    }
    assert!(checked >= 1, "at least the webhook crate exists");
}

#[test]
fn samconfig_builds_the_template_and_deploys_the_built_one() {
    let text = std::fs::read_to_string(repo_root().join("samconfig.toml")).unwrap();
    let cfg: toml::Table = text.parse().unwrap();
    let build = &cfg["default"]["build"]["parameters"];
    let template = build["template_file"].as_str().unwrap();
    assert_eq!(template, "infra/template.yaml");
    assert!(repo_root().join(template).is_file());
    assert_eq!(build["parallel"].as_bool(), Some(true));
    let deploy = &cfg["default"]["deploy"]["parameters"];
    assert!(
        deploy.get("template_file").is_none()
            && cfg["default"]
                .get("global")
                .and_then(|g| g["parameters"].get("template_file"))
                .is_none(),
        "sam deploy must pick up .aws-sam/build/template.yaml, not the unbuilt template"
    );
    assert!(
        deploy["capabilities"]
            .as_str()
            .is_some_and(|c| c.contains("CAPABILITY_IAM"))
    );
}
