//! The SAM template (`infra/template.yaml`) and `samconfig.toml`: the stack's safety
//! properties, checked so a later edit cannot silently drop one. cfn-lint (run by
//! scripts/test.sh) checks that the template is valid CloudFormation; these tests check
//! what prdiff relies on:
//!
//! - every queue has a dead-letter queue (redrive policy) that keeps messages longer;
//! - every SQS event source reports batch item failures, and its queue's visibility timeout
//!   exceeds the consuming function's timeout;
//! - no IAM statement grants a `*` action or a `*` resource (except the EC2 Describe calls
//!   that AWS authorizes only on `*`, for the diff runner in a VPC), and secrets are readable
//!   only under the stack's secret prefix;
//! - only the diff runner can be placed in a VPC, only when both `DiffSubnetIds` and
//!   `DiffSecurityGroupIds` are given, and only then does its role (and no other) get the
//!   network-interface permissions Lambda needs;
//! - every function is a Cargo Lambda build for arm64 on `provided.al2023` with JSON logs;
//! - the diff runner's concurrency is the `DiffConcurrency` parameter;
//! - the table is on demand with point-in-time recovery and TTL;
//! - the webhook function's environment satisfies what the webhook binary reads.
//! - each function's role grants exactly the AWS actions its code calls (derived from the
//!   adapters' SDK calls and the adapter methods each function's code path uses).
//!
//! CloudFormation short forms (`!Ref`, `!GetAtt`, `!Sub`) parse as YAML tagged values.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use prdiff_shared::settings::{
    DiffSettings, FromEnv, PollerSettings, SyncSettings, WebhookSettings,
};
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
            let can_receive = statements(&t).iter().any(|s| {
                s.conditions.is_empty()
                    && Some(s.holder.as_str()) == role
                    && one_or_many(&s.st["Action"])
                        .iter()
                        .any(|a| a.as_str() == Some("sqs:ReceiveMessage"))
                    && one_or_many(&s.st["Resource"])
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

/// One policy statement, the resource that holds it, and the conditions it exists under.
struct Statement<'a> {
    holder: String,
    /// Condition names that must all hold (`!X` for a condition that must not hold): a
    /// statement or policy written as `!If [X, ..., !Ref AWS::NoValue]` exists only under X.
    conditions: Vec<String>,
    st: &'a Value,
}

/// The alternatives of a value that may be `!If [Cond, then, else]` (nested too), each with
/// the conditions it needs; an `else` of `!Ref AWS::NoValue` is no alternative.
fn branches(v: &Value) -> Vec<(Vec<String>, &Value)> {
    match intrinsic(v) {
        Some((tag, Value::Sequence(args))) if tag == "If" => {
            assert_eq!(args.len(), 3, "!If takes a condition and two values: {v:?}");
            let cond = args[0].as_str().expect("!If names a condition");
            let mut out = Vec::new();
            for (name, branch) in [(cond.to_owned(), &args[1]), (format!("!{cond}"), &args[2])] {
                if ref_of(branch) == Some("AWS::NoValue") {
                    continue;
                }
                for (mut conds, value) in branches(branch) {
                    conds.insert(0, name.clone());
                    out.push((conds, value));
                }
            }
            out
        }
        _ => vec![(Vec::new(), v)],
    }
}

/// Every policy statement of the template, by the resource that holds it, conditional ones
/// included. Each function runs as its own role of this template, and no role carries a
/// managed policy (AWS's managed Lambda policies allow their actions on every resource).
fn statements(t: &Value) -> Vec<Statement<'_>> {
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
            assert!(
                r["Condition"].is_null(),
                "{name}: a conditional policy is an `!If` inside the role (checked here)"
            );
            let p = &r["Properties"];
            assert!(
                p["ManagedPolicyArns"].is_null(),
                "{name}: no managed policies (their actions and resources are not checked here)"
            );
            let mut docs = branches(&p["PolicyDocument"]);
            for policy in one_or_many(&p["Policies"]) {
                for (conds, policy) in branches(policy) {
                    docs.push((conds, &policy["PolicyDocument"]));
                }
            }
            for (doc_conds, doc) in docs {
                for s in one_or_many(&doc["Statement"]) {
                    for (conds, st) in branches(s) {
                        out.push(Statement {
                            holder: name.to_owned(),
                            conditions: doc_conds.iter().cloned().chain(conds).collect(),
                            st,
                        });
                    }
                }
            }
        }
    }
    out
}

/// Actions AWS authorizes only on `"Resource": "*"` (no resource-level permissions), that a
/// statement may therefore grant on `*`: the read-only EC2 calls Lambda makes for a function
/// in a VPC. Nothing else gets `*`.
const STAR_ONLY_ACTIONS: [&str; 2] = ["ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets"];

#[test]
fn no_policy_grants_a_wildcard_action_and_secrets_stay_under_the_prefix() {
    let t = template();
    let statements = statements(&t);
    assert!(
        statements.len() >= 8,
        "the functions' statements were found"
    );
    let secrets_arn = "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:${SecretPrefix}*";
    for Statement {
        holder: name,
        conditions,
        st: s,
    } in &statements
    {
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
            if r.as_str() == Some("*") {
                assert!(
                    actions.iter().all(|a| STAR_ONLY_ACTIONS.contains(a)),
                    "{name}: resource * for {actions:?}"
                );
                assert_eq!(
                    conditions,
                    &[IN_VPC],
                    "{name}: the EC2 Describe actions exist only for the diff runner in a VPC"
                );
            }
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
    let read = WebhookSettings::from_vars(|name| {
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
    // The HTTP trigger is on: its token is a secret of the stack, generated at deploy, under
    // the prefix the webhook role may read.
    assert_eq!(
        ref_of(&env["PRDIFF_TRIGGER_TOKEN_NAME"]),
        Some("TriggerToken")
    );
    let token = &t["Resources"]["TriggerToken"];
    assert_eq!(token["Type"].as_str(), Some("AWS::SecretsManager::Secret"));
    assert!(
        token["Properties"]["GenerateSecretString"]["PasswordLength"]
            .as_u64()
            .is_some_and(|n| n >= 32),
        "the trigger token is generated, long enough to guess never"
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

/// The `PRDIFF_*` variables a function's binary reads at start-up (its settings type, with
/// a lookup that records each name), and the ones it cannot start without.
fn variables_of(function: &str) -> Option<(BTreeSet<String>, BTreeSet<String>)> {
    let seen = std::cell::RefCell::new(BTreeSet::new());
    let get = |name: &str| -> Option<String> {
        seen.borrow_mut().insert(name.to_owned());
        None
    };
    let problems = match function {
        "WebhookFunction" => WebhookSettings::from_vars(get).err(),
        "PollerFunction" => PollerSettings::from_vars(get).err(),
        "DiffFunction" => DiffSettings::from_vars(get).err(),
        "SyncFunction" => SyncSettings::from_vars(get).err(),
        _ => return None,
    };
    let required = problems
        .map(|e| e.0)
        .unwrap_or_default()
        .iter()
        .filter_map(|p| p.strip_suffix(" is not set").map(str::to_owned))
        .collect();
    Some((seen.into_inner(), required))
}

#[test]
fn each_function_gets_the_prdiff_variables_its_code_reads_and_no_others() {
    let t = template();
    let mut checked = 0;
    for (name, f) in resources(&t, "AWS::Serverless::Function") {
        let p = &f["Properties"];
        let (in_code, required) = variables_of(name).expect("every function has a settings type");
        checked += 1;
        let in_template: BTreeSet<String> = p["Environment"]["Variables"]
            .as_mapping()
            .into_iter()
            .flat_map(Mapping::keys)
            .filter_map(Value::as_str)
            .filter(|n| n.starts_with("PRDIFF_"))
            .map(str::to_owned)
            .collect();
        let missing: Vec<_> = required.difference(&in_template).collect();
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
    assert_eq!(checked, 4, "the four functions");
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

// ---------------------------------------------------------------- VPC placement
// Only the diff runner connects to the warehouse, so only it can be placed in a VPC: with
// both DiffSubnetIds and DiffSecurityGroupIds (condition DiffInVpc), and its role gets the
// network-interface permissions Lambda needs then, and only then.

/// The condition that places the diff runner in a VPC.
const IN_VPC: &str = "DiffInVpc";

/// A value of the condition evaluator: a string, a list (CommaDelimitedList) or a boolean.
#[derive(Debug, Clone, PartialEq)]
enum Cfn {
    Str(String),
    List(Vec<String>),
    Bool(bool),
}

/// Evaluates a `Conditions` expression the way CloudFormation does, for the functions the
/// template's conditions use (`Ref`, `Fn::Join`, `Fn::Equals`, `Fn::Not`, `Fn::And`,
/// `Fn::Or`, `Condition`). `params` are the raw parameter values, as typed at deploy; a
/// `CommaDelimitedList` is split on commas (`""` is `[""]`, as in CloudFormation).
fn eval_condition(t: &Value, v: &Value, params: &BTreeMap<&str, &str>) -> Cfn {
    let bool_of = |v: &Value| match eval_condition(t, v, params) {
        Cfn::Bool(b) => b,
        other => panic!("expected a condition, got {other:?} from {v:?}"),
    };
    let args = |v: &Value| -> Vec<Value> {
        v.as_sequence()
            .unwrap_or_else(|| panic!("arguments are a list: {v:?}"))
            .clone()
    };
    // Tags first: `as_str` and `as_sequence` also see through `!Tag value`.
    let Some((tag, arg)) = intrinsic(v) else {
        return match v {
            Value::String(s) => Cfn::Str(s.clone()),
            Value::Sequence(items) => Cfn::List(
                items
                    .iter()
                    .map(|i| match eval_condition(t, i, params) {
                        Cfn::Str(s) => s,
                        other => panic!("list items are strings, got {other:?}"),
                    })
                    .collect(),
            ),
            other => panic!("not a condition expression: {other:?}"),
        };
    };
    match tag.as_str() {
        "Ref" => {
            let name = arg.as_str().expect("!Ref names a parameter");
            let param = &t["Parameters"][name];
            let raw = params
                .get(name)
                .copied()
                .or_else(|| param["Default"].as_str())
                .unwrap_or_else(|| panic!("no value for parameter {name}"));
            match param["Type"].as_str() {
                Some("CommaDelimitedList") => {
                    Cfn::List(raw.split(',').map(|s| s.trim().to_owned()).collect())
                }
                _ => Cfn::Str(raw.to_owned()),
            }
        }
        "Join" => {
            let a = args(arg);
            let delimiter = a[0].as_str().expect("!Join delimiter is a literal");
            match eval_condition(t, &a[1], params) {
                Cfn::List(items) => Cfn::Str(items.join(delimiter)),
                other => panic!("!Join takes a list, got {other:?}"),
            }
        }
        "Equals" => {
            let a = args(arg);
            Cfn::Bool(eval_condition(t, &a[0], params) == eval_condition(t, &a[1], params))
        }
        "Not" => Cfn::Bool(!bool_of(&args(arg)[0])),
        "And" => Cfn::Bool(args(arg).iter().all(bool_of)),
        "Or" => Cfn::Bool(args(arg).iter().any(bool_of)),
        "Condition" => {
            let name = arg.as_str().expect("!Condition names a condition");
            let def = &t["Conditions"][name];
            assert!(!def.is_null(), "condition {name} is defined");
            Cfn::Bool(bool_of(def))
        }
        other => panic!("the evaluator does not know Fn::{other} (extend it)"),
    }
}

fn condition_holds(t: &Value, name: &str, params: &[(&str, &str)]) -> bool {
    let def = &t["Conditions"][name];
    assert!(!def.is_null(), "condition {name} is defined");
    match eval_condition(t, def, &params.iter().copied().collect()) {
        Cfn::Bool(b) => b,
        other => panic!("{name} evaluates to {other:?}"),
    }
}

/// The role the function runs as (`Role: !GetAtt <role>.Arn`).
fn role_of<'a>(t: &'a Value, function: &str) -> &'a str {
    get_att(&t["Resources"][function]["Properties"]["Role"])
        .unwrap_or_else(|| panic!("{function}: Role is !GetAtt <role>.Arn"))
        .0
}

#[test]
fn diff_function_is_in_a_vpc_only_under_the_condition_with_the_two_parameters() {
    let t = template();
    for name in ["DiffSubnetIds", "DiffSecurityGroupIds"] {
        let p = &t["Parameters"][name];
        assert_eq!(p["Type"].as_str(), Some("CommaDelimitedList"), "{name}");
        assert_eq!(
            p["Default"].as_str(),
            Some(""),
            "{name}: off by default (no VPC)"
        );
        assert!(
            p["Description"]
                .as_str()
                .is_some_and(|d| d.contains("docs/deploy-vpc.md")),
            "{name}: the description points at the VPC deploy guide"
        );
    }
    let vpc = &t["Resources"]["DiffFunction"]["Properties"]["VpcConfig"];
    let Some((tag, Value::Sequence(args))) = intrinsic(vpc) else {
        panic!("DiffFunction.VpcConfig is !If [{IN_VPC}, ..., !Ref AWS::NoValue], got {vpc:?}");
    };
    assert_eq!(tag, "If");
    assert_eq!(args.len(), 3);
    assert_eq!(args[0].as_str(), Some(IN_VPC));
    assert_eq!(
        ref_of(&args[2]),
        Some("AWS::NoValue"),
        "outside the condition the function has no VpcConfig at all"
    );
    let config = args[1].as_mapping().expect("VpcConfig is a mapping");
    assert_eq!(
        config
            .keys()
            .filter_map(Value::as_str)
            .collect::<BTreeSet<_>>(),
        BTreeSet::from(["SecurityGroupIds", "SubnetIds"])
    );
    assert_eq!(ref_of(&args[1]["SubnetIds"]), Some("DiffSubnetIds"));
    assert_eq!(
        ref_of(&args[1]["SecurityGroupIds"]),
        Some("DiffSecurityGroupIds")
    );
    // The stack says where the diff runner ended up: a half-given pair is visible.
    let output = &t["Outputs"]["DiffNetwork"]["Value"];
    assert!(
        matches!(intrinsic(output), Some((tag, Value::Sequence(a))) if tag == "If" && a[0].as_str() == Some(IN_VPC)),
        "the DiffNetwork output depends on {IN_VPC}: {output:?}"
    );
}

#[test]
fn the_vpc_condition_needs_both_subnets_and_security_groups() {
    let t = template();
    let subnets = "subnet-0a1b2c3d4e5f60718,subnet-0f1e2d3c4b5a69788";
    let groups = "sg-0123456789abcdef0";
    let cases: [(&[(&str, &str)], bool); 7] = [
        (&[], false),
        (&[("DiffSubnetIds", subnets)], false),
        (&[("DiffSecurityGroupIds", groups)], false),
        (
            &[("DiffSubnetIds", ""), ("DiffSecurityGroupIds", groups)],
            false,
        ),
        (
            &[("DiffSubnetIds", ","), ("DiffSecurityGroupIds", groups)],
            false,
        ),
        (
            &[("DiffSubnetIds", subnets), ("DiffSecurityGroupIds", groups)],
            true,
        ),
        (
            &[
                ("DiffSubnetIds", "subnet-0a1b2c3d4e5f60718"),
                (
                    "DiffSecurityGroupIds",
                    "sg-0123456789abcdef0,sg-0fedcba9876543210",
                ),
            ],
            true,
        ),
    ];
    for (params, expected) in cases {
        assert_eq!(
            condition_holds(&t, IN_VPC, params),
            expected,
            "{IN_VPC} with {params:?}"
        );
    }
}

#[test]
fn network_interface_permissions_are_on_the_diff_role_only_and_only_in_a_vpc() {
    let t = template();
    let diff_role = role_of(&t, "DiffFunction");
    // What Lambda needs to manage a VPC function's network interfaces (AWS's
    // AWSLambdaVPCAccessExecutionRole, logs aside).
    let required = [
        "ec2:CreateNetworkInterface",
        "ec2:DescribeNetworkInterfaces",
        "ec2:DeleteNetworkInterface",
        "ec2:AssignPrivateIpAddresses",
        "ec2:UnassignPrivateIpAddresses",
    ];
    let allowed: BTreeSet<&str> = required
        .into_iter()
        .chain(["ec2:DescribeSubnets"])
        .collect();
    let mut granted = BTreeSet::new();
    for s in statements(&t) {
        let actions: Vec<&str> = one_or_many(&s.st["Action"])
            .into_iter()
            .filter_map(Value::as_str)
            .collect();
        if !actions.iter().any(|a| a.starts_with("ec2:")) {
            continue;
        }
        assert_eq!(
            s.holder, diff_role,
            "only the diff runner's role gets EC2 actions ({actions:?})"
        );
        assert_eq!(
            s.conditions,
            [IN_VPC],
            "{actions:?} exist only under {IN_VPC}, exactly the VpcConfig's condition"
        );
        for a in &actions {
            assert!(allowed.contains(a), "{a} is more than Lambda needs");
        }
        // AWS authorizes DescribeNetworkInterfaces only on `*`: a narrower resource would
        // make every deploy in a VPC fail.
        if actions.contains(&"ec2:DescribeNetworkInterfaces") {
            assert_eq!(
                s.st["Resource"].as_str(),
                Some("*"),
                "ec2:DescribeNetworkInterfaces works only on Resource *"
            );
        }
        granted.extend(actions);
    }
    for a in required {
        assert!(
            granted.contains(a),
            "{diff_role} lacks {a} under {IN_VPC}: Lambda cannot create the function in a VPC"
        );
    }
}

#[test]
fn no_function_but_the_diff_runner_can_be_placed_in_a_vpc() {
    let t = template();
    assert!(
        t["Globals"]["Function"]["VpcConfig"].is_null(),
        "a VpcConfig in Globals would put every function in the VPC"
    );
    let mut checked = 0;
    for (name, f) in resources(&t, "AWS::Serverless::Function")
        .into_iter()
        .chain(resources(&t, "AWS::Lambda::Function"))
    {
        if name == "DiffFunction" {
            assert!(!f["Properties"]["VpcConfig"].is_null());
            continue;
        }
        checked += 1;
        assert!(
            f["Properties"]["VpcConfig"].is_null(),
            "{name} has a VpcConfig: only the diff runner talks to the warehouse"
        );
    }
    assert_eq!(checked, FUNCTIONS.len() - 1);
}

/// docs/deploy-vpc.md says the diff runner in a VPC needs no SQS endpoint: the event source
/// mapping reads its queue from outside the VPC and the function itself never calls SQS.
#[test]
fn diff_runner_in_a_vpc_needs_no_sqs_endpoint() {
    let t = template();
    let diff_role = role_of(&t, "DiffFunction");
    for s in statements(&t).iter().filter(|s| s.holder == diff_role) {
        for a in one_or_many(&s.st["Action"])
            .into_iter()
            .filter_map(Value::as_str)
        {
            assert!(
                !a.starts_with("sqs:")
                    || [
                        "sqs:ReceiveMessage",
                        "sqs:DeleteMessage",
                        "sqs:GetQueueAttributes"
                    ]
                    .contains(&a),
                "{diff_role} may call {a}: the function would then need an SQS endpoint in a \
                 VPC (update docs/deploy-vpc.md and the DiffSubnetIds description)"
            );
        }
    }
    let manifest = repo_root().join("functions/diff/Cargo.toml");
    let cargo: toml::Table = std::fs::read_to_string(&manifest).unwrap().parse().unwrap();
    let deps = cargo["dependencies"].as_table().expect("[dependencies]");
    assert!(
        !deps.contains_key("aws-sdk-sqs"),
        "the diff runner now links the SQS SDK: docs/deploy-vpc.md says it needs no SQS endpoint"
    );
}

#[test]
fn redshift_credentials_are_granted_to_the_diff_role_only_for_the_listed_arns() {
    let t = template();
    let diff_role = role_of(&t, "DiffFunction");
    let mut found = false;
    for s in statements(&t) {
        let actions: Vec<&str> = one_or_many(&s.st["Action"])
            .into_iter()
            .filter_map(Value::as_str)
            .collect();
        if !actions
            .iter()
            .any(|a| a.starts_with("redshift:") || a.starts_with("redshift-serverless:"))
        {
            continue;
        }
        found = true;
        assert_eq!(
            s.holder, diff_role,
            "only the diff runner connects to Redshift"
        );
        assert_eq!(s.conditions, ["HasRedshiftIam"], "{actions:?}");
        assert_eq!(
            actions,
            [
                "redshift:GetClusterCredentials",
                "redshift-serverless:GetCredentials"
            ]
        );
        assert_eq!(
            ref_of(&s.st["Resource"]),
            Some("RedshiftCredentialArns"),
            "exactly the ARNs the operator lists"
        );
    }
    assert!(found, "the Redshift IAM statement exists");
    assert!(!condition_holds(&t, "HasRedshiftIam", &[]));
    assert!(condition_holds(
        &t,
        "HasRedshiftIam",
        &[(
            "RedshiftCredentialArns",
            "arn:aws:redshift:eu-west-1:123456789012:dbuser:analytics/prdiff_ro"
        )]
    ));
}

// ------------------------------------------------------------------ IAM from the code
//
// Each function's role must grant exactly the AWS actions its code calls. The actions are
// derived from the sources, not listed by hand:
// 1. each AWS adapter's trait methods → the SDK operations their bodies call (following
//    `self.helper(` calls within the adapter and the trait's default methods), each
//    operation's IAM action being its name in PascalCase under the adapter's service;
// 2. each function's code path (its crate and the shared modules it hands its adapters
//    to) → the adapter trait methods it calls on them.
// The platform adds what Lambda itself does with the role: log writes, the SQS event
// source's receive/delete/attributes calls, and the VPC network interfaces.

/// SDK operations (snake case, as the Rust SDK names the fluent builders) of the services
/// prdiff uses; a call to any of them in an adapter is an action its role needs.
const SDK_OPERATIONS: [(&str, &[&str]); 5] = [
    (
        "dynamodb",
        &[
            "get_item",
            "put_item",
            "update_item",
            "delete_item",
            "query",
            "scan",
            "batch_get_item",
            "batch_write_item",
            "transact_get_items",
            "transact_write_items",
            "describe_table",
        ],
    ),
    (
        "sqs",
        &[
            "send_message",
            "send_message_batch",
            "receive_message",
            "delete_message",
            "delete_message_batch",
            "change_message_visibility",
            "get_queue_attributes",
            "get_queue_url",
        ],
    ),
    (
        "secretsmanager",
        &[
            "get_secret_value",
            "batch_get_secret_value",
            "describe_secret",
            "put_secret_value",
            "create_secret",
            "update_secret",
        ],
    ),
    (
        "redshift",
        &[
            "get_cluster_credentials",
            "get_cluster_credentials_with_iam",
        ],
    ),
    ("redshift-serverless", &["get_credentials"]),
];

/// The AWS adapters: the trait they implement (or `None` for a module whose every call is
/// on the path of whoever reaches it), their source and the file with the trait (for its
/// default methods).
const ADAPTERS: [(Option<&str>, &str, &str); 6] = [
    (
        Some("ConfigStore"),
        "shared/src/store/dynamodb.rs",
        "shared/src/store/mod.rs",
    ),
    (
        Some("RunStore"),
        "shared/src/store/dynamodb.rs",
        "shared/src/store/mod.rs",
    ),
    (
        Some("Queue"),
        "shared/src/queue/sqs.rs",
        "shared/src/queue/mod.rs",
    ),
    (
        Some("Secrets"),
        "shared/src/secrets/aws.rs",
        "shared/src/secrets/mod.rs",
    ),
    (
        Some("MetadataStore"),
        "shared/src/metadata/dynamodb.rs",
        "shared/src/metadata/mod.rs",
    ),
    (None, "shared/src/warehouse/redshift_iam.rs", ""),
];

/// Each function's code path: its crate's sources and the shared files it hands an
/// adapter to (each must be named by the crate, checked below). Adapters are built in
/// `wiring`, so the git host and metadata code is reached through it. The diff runner reaches
/// Redshift's IAM credentials through the warehouse drivers.
/// A function's logical id, its crate's sources, and `(module, file)` of the shared code
/// its adapters are handed to.
type CodePath = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

const CODE_PATHS: [CodePath; 4] = [
    (
        "WebhookFunction",
        "functions/webhook/src",
        &[
            ("app::intake", "shared/src/app/intake.rs"),
            ("wiring", "shared/src/wiring.rs"),
            ("wiring", "shared/src/githost/http.rs"),
        ],
    ),
    (
        "PollerFunction",
        "functions/poller/src",
        &[
            ("app::poll", "shared/src/app/poll.rs"),
            ("wiring", "shared/src/wiring.rs"),
            ("wiring", "shared/src/githost/http.rs"),
            // With nothing left to diff, the poller publishes the report itself, with the
            // synced owners and descriptions.
            ("app::poll", "shared/src/app/publish_run.rs"),
            ("wiring", "shared/src/metadata/mod.rs"),
        ],
    ),
    (
        "DiffFunction",
        "functions/diff/src",
        &[
            ("app::diff_run", "shared/src/app/diff_run.rs"),
            // The last result publishes the report.
            ("app::diff_run", "shared/src/app/publish_run.rs"),
            ("wiring", "shared/src/wiring.rs"),
            ("wiring", "shared/src/githost/http.rs"),
            ("wiring", "shared/src/metadata/mod.rs"),
            // The diff run reaches Redshift's IAM credentials through the warehouse drivers.
            ("app::diff_run", "shared/src/warehouse/redshift_iam.rs"),
        ],
    ),
    (
        "SyncFunction",
        "functions/sync/src",
        &[
            ("app::sync", "shared/src/app/sync.rs"),
            ("wiring", "shared/src/wiring.rs"),
            ("wiring", "shared/src/metadata/mod.rs"),
            // The scheduled tick also ends overdue and dead-lettered runs.
            ("app::publish", "shared/src/app/publish.rs"),
        ],
    ),
];

/// The names through which code reaches an adapter (fields of the functions' `Deps`, and
/// the parameters of the shared functions they are handed to).
const ADAPTER_RECEIVERS: [&str; 9] = [
    "runs",
    "configs",
    "secrets",
    "poll_queue",
    "diff_queue",
    "sync_queue",
    "queue",
    "metadata",
    "store",
];

/// A Rust source without comments, whitespace (so a call split over lines reads as one
/// token run) and `#[cfg(test)]` modules (tests use other adapters). String contents
/// stay: they do not contain SDK call shapes.
fn squeeze(text: &str) -> String {
    let mut s: String = text
        .lines()
        .map(|l| match l.find("//") {
            Some(i) if !l[..i].contains('"') => &l[..i],
            _ => l,
        })
        .collect::<String>()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let mut from = 0;
    while let Some(at) = s[from..].find("#[cfg(") {
        let i = from + at;
        // The attribute (`#[cfg(test)]`, `#[cfg(all(test, feature = "x"))]`) and what follows.
        let Some(end) = s[i..].find(")]").map(|e| i + e + 2) else {
            break;
        };
        if !(s[i..end].contains("test") && s[end..].starts_with("mod")) {
            from = end;
            continue;
        }
        let rest = &s[i..];
        let (Some(open), semi) = (rest.find('{'), rest.find(';')) else {
            break;
        };
        if let Some(semi) = semi.filter(|x| *x < open) {
            // `mod tests;`: the module is another file.
            s.replace_range(i..=i + semi, "");
            continue;
        }
        let close = matching(s.as_bytes(), i + open);
        s.replace_range(i..=close, "");
    }
    s
}

/// The functions of a squeezed source with a body: (name, body, the impl block's trait).
fn functions_of(src: &str) -> Vec<(String, String, Option<String>)> {
    let bytes = src.as_bytes();
    // Trait impl blocks: `impl<...>TraitforType{` spans, and trait definitions.
    let mut blocks: Vec<(usize, usize, String)> = Vec::new();
    for (i, _) in src.match_indices("impl") {
        // The keyword, not part of a name (`simple`).
        if src[..i]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
        {
            continue;
        }
        let head_end = src[i..].find('{').map(|e| i + e);
        let Some(open) = head_end else { continue };
        let head = &src[i..open];
        if let Some(f) = head.find("for") {
            let trait_name: String = head[4..f]
                .trim_start_matches(|c| c != '>' && head[4..f].contains('<'))
                .trim_start_matches('>')
                .rsplit("::")
                .next()
                .unwrap_or("")
                .to_owned();
            blocks.push((open, matching(bytes, open), trait_name));
        }
    }
    for (i, _) in src.match_indices("pubtrait") {
        let open = i + src[i..].find('{').unwrap();
        let name: String = src[i + 8..open]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        blocks.push((open, matching(bytes, open), name));
    }
    let mut out = Vec::new();
    for (i, _) in src.match_indices("fn") {
        // `fn` as a keyword: after `;`, `{`, `}`, `)`, `]` (attributes), `pub`, `async`,
        // `const` or `(crate)`, and followed by a name.
        let before = &src[..i];
        if !(before.ends_with(['{', '}', ';', ']', ')'])
            || before.ends_with("pub")
            || before.ends_with("async"))
        {
            continue;
        }
        let name: String = src[i + 2..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if name.is_empty() {
            continue;
        }
        let rest = &src[i..];
        let (Some(brace), semi) = (rest.find('{'), rest.find(';')) else {
            continue;
        };
        if semi.is_some_and(|s| s < brace) {
            continue; // a declaration without a body
        }
        let open = i + brace;
        let close = matching(bytes, open);
        let trait_name = blocks
            .iter()
            .filter(|(o, c, _)| *o < i && i < *c)
            .map(|(_, _, t)| t.clone())
            .next();
        out.push((name, src[open..=close].to_owned(), trait_name));
    }
    out
}

/// The index of the `}` closing the `{` at `open`.
fn matching(bytes: &[u8], open: usize) -> usize {
    let mut depth = 0usize;
    for (k, b) in bytes.iter().enumerate().skip(open) {
        match b {
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return k;
                }
            }
            _ => {}
        }
    }
    panic!("unbalanced braces from {open}")
}

/// The IAM actions a squeezed body calls directly.
fn sdk_actions(body: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (service, ops) in SDK_OPERATIONS {
        for op in ops {
            if body.contains(&format!(".{op}()")) {
                let pascal: String = op
                    .split('_')
                    .map(|w| w[..1].to_uppercase() + &w[1..])
                    .collect();
                out.insert(format!("{service}:{pascal}"));
            }
        }
    }
    out
}

/// `trait method → IAM actions` for every adapter (`*` for modules without a trait).
fn adapter_actions() -> BTreeMap<(String, String), BTreeSet<String>> {
    let mut out = BTreeMap::new();
    for (trait_name, file, trait_file) in ADAPTERS {
        let src = squeeze(&std::fs::read_to_string(repo_root().join(file)).unwrap());
        let mut fns = functions_of(&src);
        if !trait_file.is_empty() {
            let t = squeeze(&std::fs::read_to_string(repo_root().join(trait_file)).unwrap());
            // Default methods the adapter does not override.
            for f in functions_of(&t) {
                if f.2.as_deref() == trait_name && !fns.iter().any(|g| g.0 == f.0 && g.2 == f.2) {
                    fns.push(f);
                }
            }
        }
        // Fixed point over `self.helper(` / `Self::helper(` / `helper(` calls in the file.
        let direct: Vec<BTreeSet<String>> = fns.iter().map(|f| sdk_actions(&f.1)).collect();
        let mut actions = direct.clone();
        loop {
            let mut changed = false;
            for (i, (_, body, _)) in fns.iter().enumerate() {
                for (j, (callee, _, _)) in fns.iter().enumerate() {
                    if i == j {
                        continue;
                    }
                    let calls = [format!("self.{callee}("), format!("Self::{callee}(")]
                        .iter()
                        .any(|p| body.contains(p.as_str()))
                        || body.match_indices(&format!("{callee}(")).any(|(k, _)| {
                            let prev = body[..k].chars().next_back().unwrap_or(' ');
                            !(prev.is_alphanumeric() || prev == '_' || prev == '.' || prev == ':')
                        });
                    if calls {
                        let add: Vec<String> =
                            actions[j].difference(&actions[i]).cloned().collect();
                        if !add.is_empty() {
                            actions[i].extend(add);
                            changed = true;
                        }
                    }
                }
            }
            if !changed {
                break;
            }
        }
        for (k, (name, _, in_trait)) in fns.iter().enumerate() {
            match trait_name {
                Some(t) if in_trait.as_deref() == Some(t) => {
                    out.insert((t.to_owned(), name.clone()), actions[k].clone());
                }
                None => {
                    out.entry(("*".to_owned(), file.to_owned()))
                        .or_insert_with(BTreeSet::new)
                        .extend(actions[k].clone());
                }
                _ => {}
            }
        }
    }
    out
}

/// The AWS actions a function's code path calls, and the adapter methods that need them.
fn code_actions(
    adapters: &BTreeMap<(String, String), BTreeSet<String>>,
    crate_dir: &str,
    shared: &[(&str, &str)],
) -> BTreeMap<String, Vec<String>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo_root().join(crate_dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .collect();
    let own: String = files
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (module, file) in shared {
        assert!(
            own.contains(&format!("{module}::")) || own.contains(&format!("{module}::{{")),
            "{crate_dir} names `{module}`, the module of {file}"
        );
        files.push(repo_root().join(file));
    }
    let text: String = files
        .iter()
        .map(|p| squeeze(&std::fs::read_to_string(p).unwrap()))
        .collect();
    for ((trait_name, method), actions) in adapters {
        let used = if trait_name == "*" {
            shared.iter().any(|(_, f)| f == method)
        } else {
            ADAPTER_RECEIVERS
                .iter()
                .any(|r| text.contains(&format!("{r}.{method}(")))
        };
        if used {
            for a in actions {
                out.entry(a.clone())
                    .or_default()
                    .push(format!("{trait_name}::{method}"));
            }
        }
    }
    out
}

#[test]
fn the_adapters_sdk_calls_are_found() {
    let adapters = adapter_actions();
    let get = |t: &str, m: &str| adapters.get(&(t.to_owned(), m.to_owned())).cloned();
    // A few the parser must see, directly and through helpers and default methods.
    let set = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(
        get("RunStore", "release_delivery"),
        Some(set(&["dynamodb:DeleteItem"]))
    );
    assert_eq!(get("RunStore", "get_run"), Some(set(&["dynamodb:GetItem"])));
    assert_eq!(
        get("ConfigStore", "configs_for_repository"),
        get("ConfigStore", "list_configs")
    );
    assert_eq!(get("Queue", "send"), Some(set(&["sqs:SendMessage"])));
    assert_eq!(
        get("Secrets", "get"),
        Some(set(&["secretsmanager:GetSecretValue"]))
    );
    assert!(
        get("MetadataStore", "put_models")
            .unwrap()
            .contains("dynamodb:BatchWriteItem")
    );
    assert_eq!(
        adapters[&(
            "*".to_owned(),
            "shared/src/warehouse/redshift_iam.rs".to_owned()
        )],
        set(&[
            "redshift:GetClusterCredentials",
            "redshift-serverless:GetCredentials"
        ])
    );
}

#[test]
fn each_role_grants_exactly_the_aws_actions_its_code_calls() {
    let t = template();
    let adapters = adapter_actions();
    let all = statements(&t);
    for (function, crate_dir, shared) in CODE_PATHS {
        let called = code_actions(&adapters, crate_dir, shared);
        let mut expected: BTreeSet<String> = called.keys().cloned().collect();
        // What Lambda does with the role.
        expected.extend(["logs:CreateLogStream".into(), "logs:PutLogEvents".into()]);
        let props = &t["Resources"][function]["Properties"];
        let consumes_sqs = props["Events"]
            .as_mapping()
            .into_iter()
            .flat_map(|m| m.values())
            .any(|e| e["Type"].as_str() == Some("SQS"));
        if consumes_sqs {
            expected.extend([
                "sqs:ReceiveMessage".into(),
                "sqs:DeleteMessage".into(),
                "sqs:GetQueueAttributes".into(),
            ]);
        }
        let role = role_of(&t, function);
        let mut granted = BTreeSet::new();
        for s in all.iter().filter(|s| s.holder == role) {
            for a in one_or_many(&s.st["Action"]) {
                let a = a.as_str().unwrap().to_owned();
                // Lambda manages a VPC function's network interfaces (checked above).
                if !a.starts_with("ec2:") {
                    granted.insert(a);
                }
            }
        }
        let missing: Vec<String> = expected
            .difference(&granted)
            .map(|a| match called.get(a) {
                Some(by) => format!("{a} (called by {})", by.join(", ")),
                None => a.clone(),
            })
            .collect();
        assert!(missing.is_empty(), "{function}: {role} lacks {missing:?}");
        let unused: Vec<&String> = granted.difference(&expected).collect();
        assert!(
            unused.is_empty(),
            "{function}: {role} grants {unused:?}, which its code never calls"
        );
    }
}
