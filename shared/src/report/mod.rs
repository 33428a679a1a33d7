//! Rendering diffs for people: plain text for terminals, markdown for PR comments.
//!
//! Values that come from data (sample rows, column names) go through [`escape_cell`]
//! before they reach markdown, so they cannot break a table, inject HTML or mention users.

use std::fmt::Write as _;

use crate::diff::{DiffResult, SampleRow};

/// One model's entry in a report.
#[derive(Debug, Clone)]
pub struct ModelEntry {
    /// The model's name (or the relation when diffing by hand).
    pub name: String,
    pub outcome: Result<DiffResult, String>,
}

/// A model the plan lists but does not diff, and why.
#[derive(Debug, Clone)]
pub struct SkippedEntry {
    pub name: String,
    pub reason: String,
}

/// What the comment's header says about the commits compared.
#[derive(Debug, Clone, Default)]
pub struct Header {
    /// The configuration's name: one sticky comment per PR and configuration.
    pub config_name: String,
    pub head_sha: String,
    pub base_sha: String,
    /// Links to the commits (the git host's web URLs), when known.
    pub head_url: Option<String>,
    pub base_url: Option<String>,
    /// The dbt Cloud run that built the PR, and its link.
    pub dbt_run_id: Option<u64>,
    pub dbt_run_url: Option<String>,
    /// Said in the report when the production manifest is not from the base commit
    /// (e.g. "no artifacts run at the merge base; compared with run 123 at abc1234").
    pub base_note: Option<String>,
}

/// Model metadata from the synced manifest (owners, descriptions), by model name.
#[derive(Debug, Clone, Default)]
pub struct ModelMeta {
    pub owner: Option<String>,
    pub description: Option<String>,
}

/// Everything one report shows.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub title: String,
    pub header: Option<Header>,
    pub entries: Vec<ModelEntry>,
    pub skipped: Vec<SkippedEntry>,
    /// Models downstream of the changed ones (names), shown as impact.
    pub downstream: Vec<String>,
    /// Owners and descriptions from the synced metadata, by model name.
    pub metadata: std::collections::BTreeMap<String, ModelMeta>,
    /// Models materialized differently in production and the PR, by name: named in the
    /// model's summary row and details.
    pub materializations: std::collections::BTreeMap<String, crate::plan::MaterializationChange>,
    /// Models' merge gates, by name: each diffed model's gates are evaluated on its diff
    /// and shown with their verdicts.
    pub gates: std::collections::BTreeMap<String, crate::gates::GatePolicy>,
    /// Set when the plan had more models to diff than the configuration allows: none was
    /// diffed, and the comment says how to diff them.
    pub over_max_models: Option<OverMaxModels>,
    /// Models' files in the dbt project (`original_file_path`), by name: where GitHub
    /// check annotations point.
    pub paths: std::collections::BTreeMap<String, String>,
    /// Models whose result is re-used from an earlier push of the PR (their diff inputs
    /// did not change), by name: the short sha of the commit that was diffed.
    pub reused: std::collections::BTreeMap<String, String>,
}

/// A run over the configuration's diff threshold (`max_models`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OverMaxModels {
    /// Models the plan would diff.
    pub models: usize,
    /// The configuration's `max_models`.
    pub max: u32,
}

/// A skip reason in words, for reports.
pub fn skip_reason_text(r: crate::plan::SkipReason) -> &'static str {
    use crate::plan::SkipReason::*;
    match r {
        NewModel => "new model: nothing in production to compare with",
        Removed => "removed in this PR",
        Disabled => "disabled in this PR",
        Ephemeral => "ephemeral: no relation to compare",
        EphemeralInProd => "ephemeral in production: no production relation",
        NotBuilt => "not built by the PR run",
        Error => "the PR run failed to build it",
        Skipped => "skipped by the PR run (an upstream failure)",
        NeverDiff => "never_diff is set in its options",
    }
}

/// Longest value shown in a sample cell.
const MAX_CELL: usize = 60;

/// How much of a failure the summary table shows; the model's details section shows the
/// whole text, up to [`MAX_FAILURE_TEXT`].
const FAILURE_NOTE: usize = 100;

/// The most of one model's failure a report shows (in characters): the warehouse's own
/// error (capped by the driver) with prdiff's context around it.
pub const MAX_FAILURE_TEXT: usize = crate::warehouse::MAX_ERROR_TEXT + 300;

/// Makes `s` safe inside a markdown table cell: no pipes, no HTML, no @-mentions, no
/// line breaks, no markdown emphasis, bounded length.
pub fn escape_cell(s: &str) -> String {
    escape_at_most(s, MAX_CELL)
}

/// [`escape_cell`] without its length bound: for text whose length is bounded already.
pub fn escape_text(s: &str) -> String {
    escape_at_most(s, usize::MAX)
}

fn escape_at_most(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len());
    for (i, c) in s.chars().enumerate() {
        if i >= max {
            out.push('…');
            break;
        }
        match c {
            '|' => out.push_str("\\|"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            // An entity for @ keeps GitHub and GitLab from turning it into a mention.
            '@' => out.push_str("&#64;"),
            '`' => out.push_str("&#96;"),
            '\\' | '*' | '_' | '~' | '[' | ']' | '#' | '!' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' | '\t' => out.push(' '),
            c if c.is_control() => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// `s` as an inline code span that is safe in a table cell. Inside a code span markdown,
/// HTML and mentions are inert; only backticks (removed), pipes (escaped, which GFM tables
/// honour even in code) and line breaks need care.
pub fn code(s: &str) -> String {
    let mut out = String::from("`");
    for (i, c) in s.chars().enumerate() {
        if i >= MAX_CELL {
            out.push('…');
            break;
        }
        match c {
            '`' => out.push('\''),
            '|' => out.push_str("\\|"),
            '\n' | '\r' | '\t' => out.push(' '),
            c if c.is_control() => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    if out.len() == 1 {
        out.push(' ');
    }
    out.push('`');
    out
}

/// `s` inside an HTML element (the `<summary>` of a collapsible section).
fn html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('@', "&#64;")
}

fn value(v: &Option<String>) -> String {
    match v {
        None => "NULL".to_owned(),
        Some(s) => code(s),
    }
}

/// A count with thousands separators (`1,234,567`).
pub fn format_count(n: u64) -> String {
    fmt_n(n)
}

/// A number of bytes in binary units, as BigQuery bills them (1 TiB = 2^40 bytes):
/// `512 B`, `1.5 KiB`, `1.2 GiB`.
pub fn format_bytes(n: u64) -> String {
    const UNITS: &[&str] = &["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{} B", fmt_n(n));
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    // Rounded to one decimal, a value stays below 1,024 of its unit.
    while value >= 1023.95 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

fn fmt_n(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn approx(r: &DiffResult) -> &'static str {
    if r.sampled.is_some() { "≈" } else { "" }
}

fn opt(n: Option<u64>, pre: &str) -> String {
    n.map(|n| format!("{pre}{}", fmt_n(n)))
        .unwrap_or_else(|| "—".to_owned())
}

fn key_issue_text(r: &DiffResult) -> String {
    let i = r.primary_key_issues;
    let mut parts = Vec::new();
    for (side, k) in [("prod", i.prod), ("PR", i.pr)] {
        if k.nulls > 0 {
            parts.push(format!("{} NULL keys in {side}", fmt_n(k.nulls)));
        }
        if k.duplicates > 0 {
            parts.push(format!(
                "{} duplicate-key rows in {side}",
                fmt_n(k.duplicates)
            ));
        }
    }
    if r.primary_key.is_empty() {
        parts.push("no key".to_owned());
    }
    if parts.is_empty() {
        "—".to_owned()
    } else {
        parts.join(", ")
    }
}

fn schema_text(r: &DiffResult) -> String {
    let s = &r.schema;
    let mut parts = Vec::new();
    if !s.added.is_empty() {
        parts.push(format!("+{}", s.added.len()));
    }
    if !s.removed.is_empty() {
        parts.push(format!("−{}", s.removed.len()));
    }
    if !s.type_changed.is_empty() {
        parts.push(format!("{} type", s.type_changed.len()));
    }
    if !s.renamed.is_empty() {
        parts.push(format!("{} renamed", s.renamed.len()));
    }
    if parts.is_empty() {
        "—".to_owned()
    } else {
        parts.join(", ")
    }
}

/// GitHub's limit on an issue comment body, in characters.
pub const GITHUB_COMMENT_LIMIT: usize = 65_536;

/// How much a rendering shows. Reports that do not fit the host's limit drop detail in
/// this order (each level keeps everything the next one keeps):
/// 1. sample rows;
/// 2. the rows of unchanged columns in each model's column table;
/// 3. the per-model sections (the summary table stays);
/// 4. the list of models not diffed (its count stays);
/// 5. summary rows from the end, replaced by a line saying how many were left out.
///
/// Tables are only ever dropped whole or row by row, never cut in the middle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Detail {
    Full,
    NoSamples,
    ChangedColumnsOnly,
    SummaryOnly,
    NoSkippedList,
}

/// The hidden marker that finds a configuration's sticky comment again.
pub fn marker(config_name: &str) -> String {
    // `--` cannot appear inside an HTML comment.
    format!(
        "<!-- prdiff:{} -->",
        config_name.replace("--", "-\u{2010}").replace('>', "&gt;")
    )
}

/// Whether a comment is one prdiff wrote (it carries a [`marker`]): such a comment never
/// starts a run, whatever it says.
pub fn is_prdiff_comment(body: &str) -> bool {
    body.contains("<!-- prdiff:")
}

fn short(sha: &str) -> &str {
    sha.get(..7).unwrap_or(sha)
}

fn link(text: &str, url: Option<&str>) -> String {
    match url {
        Some(u) if u.starts_with("https://") || u.starts_with("http://") => {
            format!("[{text}]({})", u.replace(')', "%29").replace(' ', "%20"))
        }
        _ => text.to_owned(),
    }
}

fn header_lines(out: &mut String, report: &Report) {
    match &report.header {
        Some(h) => {
            let _ = writeln!(out, "{}", marker(&h.config_name));
            let _ = writeln!(out, "## prdiff · {}\n", escape_cell(&h.config_name));
            let _ = write!(
                out,
                "Comparing {} with base {}",
                link(&code(short(&h.head_sha)), h.head_url.as_deref()),
                link(&code(short(&h.base_sha)), h.base_url.as_deref())
            );
            if let Some(id) = h.dbt_run_id {
                let _ = write!(
                    out,
                    " · dbt Cloud run {}",
                    link(&format!("#{id}"), h.dbt_run_url.as_deref())
                );
            }
            out.push_str("\n\n");
            if let Some(n) = &h.base_note {
                let _ = writeln!(out, "> ⚠️ {}\n", escape_cell_long(n));
            }
        }
        None => {
            let _ = writeln!(out, "## {}\n", escape_cell(&report.title));
        }
    }
}

/// The comment shown while prdiff waits for dbt Cloud.
pub fn waiting_markdown(header: &Header, message: &str) -> String {
    let report = Report {
        header: Some(header.clone()),
        ..Default::default()
    };
    let mut out = String::new();
    header_lines(&mut out, &report);
    let _ = writeln!(out, "⏳ {}", escape_cell_long(message));
    out
}

/// The markdown report with every detail.
pub fn markdown(report: &Report) -> String {
    render(report, Detail::Full, usize::MAX)
}

/// The markdown report, shortened (see [`Detail`]'s order) until it fits `limit`
/// characters.
pub fn markdown_within(report: &Report, limit: usize) -> String {
    for level in [
        Detail::Full,
        Detail::NoSamples,
        Detail::ChangedColumnsOnly,
        Detail::SummaryOnly,
        Detail::NoSkippedList,
    ] {
        let s = render(report, level, usize::MAX);
        if s.chars().count() <= limit {
            return s;
        }
    }
    // Last resort: as many summary rows as fit.
    let (mut lo, mut hi) = (0usize, report.entries.len());
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if render(report, Detail::NoSkippedList, mid).chars().count() <= limit {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    render(report, Detail::NoSkippedList, lo)
}

/// A model's name in its summary row; a re-used result says since which commit.
fn name_cell(name: &str, report: &Report) -> String {
    match report.reused.get(name) {
        Some(sha) => format!("{} · unchanged since {}", code(name), code(sha)),
        None => code(name),
    }
}

fn summary_row(out: &mut String, e: &ModelEntry, report: &Report) {
    match &e.outcome {
        Ok(r) => {
            let mut schema = schema_text(r);
            if let Some(m) = report.materializations.get(&e.name) {
                let change = format!("{} → {}", code(&m.prod), code(&m.pr));
                schema = if schema == "—" {
                    change
                } else {
                    format!("{schema}, {change}")
                };
            }
            let a = approx(r);
            let cols = r
                .columns
                .iter()
                .filter(|c| c.changed.unwrap_or(0) > 0)
                .count();
            let _ = writeln!(
                out,
                "| {} | {} → {} | {} | {} | {} | {} | {} | {} |",
                name_cell(&e.name, report),
                fmt_n(r.rows.prod),
                fmt_n(r.rows.pr),
                opt(r.exclusive.map(|x| x.pr), a),
                opt(r.exclusive.map(|x| x.prod), a),
                opt(r.changed, a),
                if r.changed.is_some() {
                    cols.to_string()
                } else {
                    "—".to_owned()
                },
                schema,
                key_issue_text(r)
            );
        }
        Err(msg) => {
            let _ = writeln!(
                out,
                "| {} | ⚠️ failed: {} | | | | | | |",
                code(&e.name),
                escape_text(&truncate_chars(msg.trim(), FAILURE_NOTE))
            );
        }
    }
}

fn render(report: &Report, detail: Detail, max_rows: usize) -> String {
    let entries = &report.entries;
    let mut out = String::new();
    header_lines(&mut out, report);
    if let Some(over) = report.over_max_models {
        let _ = writeln!(
            out,
            "**{} models to diff, more than this configuration's `max_models` ({}): none was \
             diffed.** They are listed under \"Not diffed\" below.\n\n\
             To diff them anyway, comment `/prdiff run` (or `/prdiff run <model> …` for some \
             of them) on this pull request; or raise `max_models` in the prdiff configuration \
             and push a commit.",
            over.models, over.max
        );
    } else if entries.is_empty() {
        let _ = writeln!(out, "No models to diff.");
    } else {
        let _ = writeln!(
            out,
            "| model | rows prod → PR | added | removed | changed | columns changed | schema | key issues |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
        for e in entries.iter().take(max_rows) {
            summary_row(&mut out, e, report);
        }
        if entries.len() > max_rows {
            let _ = writeln!(
                out,
                "\n…and {} more models, left out to fit the comment size limit.",
                entries.len() - max_rows
            );
        }
        scan_total_line(&mut out, entries);
    }
    gates_section(&mut out, report);
    if detail < Detail::SummaryOnly {
        for e in entries {
            out.push('\n');
            let meta = report.metadata.get(&e.name);
            let materialization = report.materializations.get(&e.name);
            match &e.outcome {
                Ok(r) => model_details(&mut out, &e.name, r, detail, meta, materialization),
                Err(msg) => failure_details(&mut out, &e.name, msg, meta, materialization),
            }
        }
    } else if !entries.is_empty() {
        let _ = writeln!(
            out,
            "\n_Per-model details were left out to fit the comment size limit._"
        );
    }
    if !report.downstream.is_empty() {
        let shown: Vec<String> = report.downstream.iter().take(50).map(|d| code(d)).collect();
        let more = report.downstream.len().saturating_sub(50);
        let _ = write!(
            out,
            "\n**Downstream** ({}): {}",
            report.downstream.len(),
            shown.join(", ")
        );
        if more > 0 {
            let _ = write!(out, " and {more} more");
        }
        out.push('\n');
    }
    if !report.skipped.is_empty() {
        if detail < Detail::NoSkippedList {
            let _ = writeln!(
                out,
                "\n<details><summary>Not diffed ({})</summary>\n",
                report.skipped.len()
            );
            let _ = writeln!(out, "| model | why |");
            let _ = writeln!(out, "|---|---|");
            for s in &report.skipped {
                let _ = writeln!(
                    out,
                    "| {} | {} |",
                    code(&s.name),
                    escape_cell_long(&s.reason)
                );
            }
            let _ = writeln!(out, "\n</details>");
        } else {
            let _ = writeln!(
                out,
                "\n{} models were not diffed (list left out to fit the comment size limit).",
                report.skipped.len()
            );
        }
    }
    out
}

/// The bytes every diffed model was estimated to scan, summed (only where the warehouse
/// gives estimates: BigQuery's dry runs).
fn scan_total_line(out: &mut String, entries: &[ModelEntry]) {
    let estimates: Vec<u64> = entries
        .iter()
        .filter_map(|e| e.outcome.as_ref().ok()?.bytes_estimate)
        .collect();
    if estimates.is_empty() {
        return;
    }
    let total = estimates.iter().fold(0u64, |a, b| a.saturating_add(*b));
    let _ = writeln!(
        out,
        "\nScans ≈ {} in total ({} model{}; the warehouse's dry-run estimates).",
        format_bytes(total),
        estimates.len(),
        if estimates.len() == 1 { "" } else { "s" }
    );
}

/// Every gate of every diffed model with gates, with its verdict and what it measured.
/// Shown at every detail level: a failed gate is why a run fails.
fn gates_section(out: &mut String, report: &Report) {
    let mut rows = Vec::new();
    let (mut failed, mut total) = (0, 0);
    for e in &report.entries {
        let Some(policy) = report.gates.get(&e.name).filter(|p| !p.is_empty()) else {
            continue;
        };
        let name = code(&e.name);
        match &e.outcome {
            Ok(r) => {
                for o in crate::gates::evaluate_all(policy, r) {
                    total += 1;
                    failed += usize::from(!o.passed);
                    rows.push(format!(
                        "| {name} | {} {} | {} |",
                        if o.passed { "✅" } else { "❌" },
                        code(o.gate),
                        escape_cell_long(&o.text)
                    ));
                }
            }
            Err(_) if !policy.gates.is_empty() => rows.push(format!(
                "| {name} | — | {} not evaluated: the model's diff failed |",
                match policy.gates.len() {
                    1 => "1 gate".to_owned(),
                    n => format!("{n} gates"),
                }
            )),
            Err(_) => {}
        }
        for p in &policy.problems {
            rows.push(format!("| {name} | ⚠️ | {} |", escape_cell_long(p)));
        }
    }
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "\n**Merge gates**: {}\n",
        if failed == 0 {
            format!("{total} passed")
        } else {
            format!("{failed} of {total} failed")
        }
    );
    let _ = writeln!(out, "| model | gate | result |");
    let _ = writeln!(out, "|---|---|---|");
    for r in rows {
        let _ = writeln!(out, "{r}");
    }
}

/// The commit status description: at most 140 characters.
pub fn status_description(report: &Report) -> String {
    let failed = report.entries.iter().filter(|e| e.outcome.is_err()).count();
    let differing = report
        .entries
        .iter()
        .filter(|e| matches!(&e.outcome, Ok(r) if r.has_differences()))
        .count();
    let n = report.entries.len();
    let mut s = if n == 0 {
        "No models to diff".to_owned()
    } else {
        format!(
            "{n} model{} diffed: {differing} with differences",
            if n == 1 { "" } else { "s" }
        )
    };
    if failed > 0 {
        s.push_str(&format!(", {failed} failed"));
    }
    if !report.skipped.is_empty() {
        s.push_str(&format!(", {} not diffed", report.skipped.len()));
    }
    truncate_chars(&s, 140)
}

/// `s` cut to `max` characters, with an ellipsis when cut.
pub fn truncate_chars(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
    t.push('…');
    t
}

/// The opening of a model's collapsible section: its name, owner and description.
fn details_opening(out: &mut String, name: &str, status: &str, meta: Option<&ModelMeta>) {
    let owner = meta
        .and_then(|m| m.owner.as_deref())
        .map(|o| format!(" · owner {}", html(o)))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "<details><summary><code>{}</code>{status}{owner}</summary>\n",
        html(name)
    );
    if let Some(d) = meta
        .and_then(|m| m.description.as_deref())
        .filter(|d| !d.trim().is_empty())
    {
        let _ = writeln!(out, "_{}_\n", escape_cell_long(&truncate_chars(d, 300)));
    }
}

/// A failed model's section: the whole failure (the warehouse's class, code and message),
/// escaped, up to [`MAX_FAILURE_TEXT`] characters.
fn failure_details(
    out: &mut String,
    name: &str,
    msg: &str,
    meta: Option<&ModelMeta>,
    materialization: Option<&crate::plan::MaterializationChange>,
) {
    details_opening(out, name, " · ⚠️ failed", meta);
    materialization_line(out, materialization);
    let _ = writeln!(
        out,
        "**Failed:** {}",
        escape_text(&truncate_chars(msg.trim(), MAX_FAILURE_TEXT))
    );
    let _ = writeln!(out, "\n</details>");
}

/// The model's materialization change, as a line of its details.
fn materialization_line(out: &mut String, m: Option<&crate::plan::MaterializationChange>) {
    if let Some(m) = m {
        let _ = writeln!(
            out,
            "Materialization changed: {} in production, {} in this PR.\n",
            code(&m.prod),
            code(&m.pr)
        );
    }
}

fn model_details(
    out: &mut String,
    name: &str,
    r: &DiffResult,
    detail: Detail,
    meta: Option<&ModelMeta>,
    materialization: Option<&crate::plan::MaterializationChange>,
) {
    details_opening(out, name, "", meta);
    materialization_line(out, materialization);
    let _ = write!(out, "prod {} → PR {}", code(&r.prod), code(&r.pr));
    if !r.primary_key.is_empty() {
        let keys: Vec<String> = r.primary_key.iter().map(|k| code(k)).collect();
        let _ = write!(out, ", key {}", keys.join(", "));
    }
    out.push_str("\n\n");
    if let Some(b) = r.bytes_estimate {
        let _ = writeln!(
            out,
            "Scans ≈ {} (the warehouse's dry-run estimate of the counts and the join).\n",
            format_bytes(b)
        );
    }
    if let Some(s) = &r.sampled {
        let _ = writeln!(
            out,
            "Sampled: {:.2}% of keys; shares within ±{} percentage points at {}% confidence. Figures marked ≈ are estimates.\n",
            s.rate * 100.0,
            s.tolerance * 100.0,
            s.confidence * 100.0
        );
    }
    let s = &r.schema;
    for (label, cols) in [
        ("Columns added", &s.added),
        ("Columns removed", &s.removed),
        ("Type changed", &s.type_changed),
    ] {
        if !cols.is_empty() {
            let c: Vec<String> = cols.iter().map(|c| code(c)).collect();
            let _ = writeln!(out, "- {label}: {}", c.join(", "));
        }
    }
    for rn in &s.renamed {
        let how = if rn.from_pr {
            "from the PR".to_owned()
        } else {
            format!("{} agree", agreement(rn.agreement_pct))
        };
        let _ = writeln!(
            out,
            "- Renamed {} → {} ({how})",
            code(&rn.from),
            code(&rn.to)
        );
    }
    if !r.columns.is_empty() {
        let _ = writeln!(
            out,
            "\n| column | prod type | PR type | changed | % of matched |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|");
        for c in r
            .columns
            .iter()
            .filter(|c| detail < Detail::ChangedColumnsOnly || c.changed.unwrap_or(0) > 0)
        {
            let pct = match (c.changed_pct, c.changed_pct_interval) {
                (Some(p), Some((lo, hi))) => format!("{p:.2}% ({lo:.2}–{hi:.2}%)"),
                (Some(p), None) => format!("{p:.2}%"),
                _ => "—".to_owned(),
            };
            let changed = match (c.changed, c.nulls) {
                (Some(n), _) => format!("{}{}", approx(r), fmt_n(n)),
                (None, Some(n)) => format!("NULLs {} → {}", fmt_n(n.prod), fmt_n(n.pr)),
                _ => "—".to_owned(),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                column_label(&code(&c.name), c),
                code(&c.prod_type),
                code(&c.pr_type),
                changed,
                pct
            );
        }
    }
    if let Some(c) = &r.concentration {
        let _ = writeln!(out, "\n{}", concentration_line(c, true));
    }
    if !r.samples.is_empty() && detail < Detail::NoSamples {
        let _ = writeln!(out, "\nSample rows:\n");
        let _ = writeln!(out, "| kind | key | column | prod | PR |");
        let _ = writeln!(out, "|---|---|---|---|---|");
        for s in &r.samples {
            sample_rows(out, s);
        }
    }
    for n in &r.notes {
        let _ = writeln!(out, "\n> {}", escape_cell_long(n));
    }
    let _ = writeln!(out, "\n</details>");
}

/// Escaping for prdiff's own sentences (longer than a cell).
fn escape_cell_long(s: &str) -> String {
    s.split_inclusive(' ').map(escape_cell).collect()
}

fn sample_rows(out: &mut String, s: &SampleRow) {
    let key: Vec<String> = s
        .key
        .iter()
        .map(|(k, v)| format!("{}={}", code(k), value(v)))
        .collect();
    let kind = match s.kind {
        "only_prod" => "only in prod",
        "only_pr" => "only in PR",
        _ => "changed",
    };
    if s.values.is_empty() {
        let _ = writeln!(out, "| {kind} | {} | | | |", key.join(", "));
    }
    for (i, v) in s.values.iter().enumerate() {
        let (k, kd) = if i == 0 {
            (key.join(", "), kind)
        } else {
            (String::new(), "")
        };
        let _ = writeln!(
            out,
            "| {kd} | {k} | {} | {} | {} |",
            code(&v.column),
            value(&v.prod),
            value(&v.pr)
        );
    }
}

/// A plain-text summary of one diff, for terminals.
pub fn text(r: &DiffResult) -> String {
    let mut out = String::new();
    let a = approx(r);
    let _ = writeln!(out, "prod {}  →  PR {}", r.prod, r.pr);
    let _ = writeln!(out, "rows: {} → {}", fmt_n(r.rows.prod), fmt_n(r.rows.pr));
    if !r.primary_key.is_empty() {
        let _ = writeln!(out, "key: {}", r.primary_key.join(", "));
    }
    if let Some(b) = r.bytes_estimate {
        let _ = writeln!(out, "scans: ≈ {} (dry-run estimate)", format_bytes(b));
    }
    if let (Some(e), Some(m), Some(c)) = (r.exclusive, r.matched, r.changed) {
        let _ = writeln!(
            out,
            "only in prod: {a}{}   only in PR: {a}{}   matched: {a}{}   changed: {a}{}",
            fmt_n(e.prod),
            fmt_n(e.pr),
            fmt_n(m),
            fmt_n(c)
        );
    }
    let issues = key_issue_text(r);
    if issues != "—" {
        let _ = writeln!(out, "key issues: {issues}");
    }
    let s = &r.schema;
    if !s.added.is_empty() {
        let _ = writeln!(out, "columns added: {}", s.added.join(", "));
    }
    if !s.removed.is_empty() {
        let _ = writeln!(out, "columns removed: {}", s.removed.join(", "));
    }
    if !s.type_changed.is_empty() {
        let _ = writeln!(out, "type changed: {}", s.type_changed.join(", "));
    }
    for rn in &s.renamed {
        let how = if rn.from_pr {
            "from the PR".to_owned()
        } else {
            format!("{} agree", agreement(rn.agreement_pct))
        };
        let _ = writeln!(out, "renamed {} → {} ({how})", rn.from, rn.to);
    }
    for c in &r.columns {
        match (c.changed, c.changed_pct, c.nulls) {
            (Some(n), Some(p), _) => {
                let _ = writeln!(
                    out,
                    "  {:<30} {a}{:>12}  {:>7.3}%",
                    column_label(&c.name, c),
                    fmt_n(n),
                    p
                );
            }
            (_, _, Some(n)) => {
                let _ = writeln!(
                    out,
                    "  {:<30} NULLs {} → {}",
                    c.name,
                    fmt_n(n.prod),
                    fmt_n(n.pr)
                );
            }
            _ => {}
        }
    }
    if let Some(c) = &r.concentration {
        let _ = writeln!(out, "{}", concentration_line(c, false));
    }
    if let Some(s) = &r.sampled {
        let _ = writeln!(
            out,
            "sampled {:.3}% of keys (tolerance {}, confidence {})",
            s.rate * 100.0,
            s.tolerance,
            s.confidence
        );
    }
    for n in &r.notes {
        let _ = writeln!(out, "note: {n}");
    }
    out
}

#[cfg(test)]
mod escape_tests {
    use super::*;

    #[test]
    fn cells_cannot_break_tables_inject_html_or_mention() {
        let e = escape_cell("a|b <script>@team\nx `y` **z**");
        assert!(!e.contains('|') || e.contains("\\|"));
        assert!(!e.contains("<script>"));
        assert!(!e.contains("@team"));
        assert!(!e.contains('\n'));
        assert!(!e.contains('`'));
        assert!(e.contains("\\*\\*z\\*\\*"));
    }

    #[test]
    fn code_spans_keep_underscores_and_drop_backticks_and_pipes() {
        assert_eq!(code("dbt_cloud_pr_1"), "`dbt_cloud_pr_1`");
        assert_eq!(code("a`b|c\nd"), "`a'b\\|c d`");
        assert_eq!(code(""), "` `");
    }

    #[test]
    fn long_values_are_cut_with_an_ellipsis() {
        let e = escape_cell(&"x".repeat(500));
        assert!(e.chars().count() <= MAX_CELL + 1);
        assert!(e.ends_with('…'));
    }

    #[test]
    fn bytes_are_shown_in_binary_units() {
        assert_eq!(format_bytes(0), "0 B");
        assert_eq!(format_bytes(1023), "1,023 B");
        assert_eq!(format_bytes(1024), "1.0 KiB");
        assert_eq!(format_bytes(1536), "1.5 KiB");
        assert_eq!(format_bytes(1_288_490_189), "1.2 GiB");
        assert_eq!(format_bytes(1 << 40), "1.0 TiB");
        assert_eq!(format_bytes((1 << 20) - 1), "1.0 MiB");
        assert_eq!(format_bytes(u64::MAX), "16.0 EiB");
    }

    #[test]
    fn numbers_get_thousands_separators() {
        assert_eq!(fmt_n(0), "0");
        assert_eq!(fmt_n(1234567), "1,234,567");
        assert_eq!(fmt_n(999), "999");
    }
}

#[cfg(test)]
pub(crate) mod tests;

/// A compared column's name as reports show it: with its tolerance, `amount (±0.01)`.
fn column_label(name: &str, c: &crate::diff::ColumnDiff) -> String {
    match &c.tolerance {
        Some(t) => format!("{name} ({})", t.label()),
        None => name.to_owned(),
    }
}

/// Where the changed rows concentrate, on one line: each dimension's most frequent value
/// and its share of the changed rows (`markdown`: names and values as code spans), e.g.
/// `Changes concentrate in: region = 'EU' 92 % (1,204 of 1,309) · channel = 'web' 71 %`.
pub fn concentration_line(c: &crate::diff::Concentration, markdown: bool) -> String {
    let name = |s: &str| if markdown { code(s) } else { s.to_owned() };
    let val = |v: &Option<String>| match v {
        None => "NULL".to_owned(),
        Some(s) if markdown => code(s),
        Some(s) => format!("'{}'", truncate_chars(s, MAX_CELL)),
    };
    let a = if c.sample_rate.is_some() { "≈" } else { "" };
    let mut parts = Vec::new();
    for (i, d) in c.dimensions.iter().enumerate() {
        let Some(top) = d.top.first() else {
            continue;
        };
        let share = 100.0 * top.rows as f64 / c.changed_rows.max(1) as f64;
        let mut part = format!("{} = {} {a}{share:.0} %", name(&d.column), val(&top.value));
        if i == 0 {
            let _ = write!(part, " ({} of {})", fmt_n(top.rows), fmt_n(c.changed_rows));
        }
        parts.push(part);
    }
    let sample = match c.sample_rate {
        Some(rate) => format!(
            " (approximate: a {:.1} % key sample, {} changed rows)",
            rate * 100.0,
            fmt_n(c.changed_rows)
        ),
        None => String::new(),
    };
    format!("Changes concentrate in{sample}: {}", parts.join(" · "))
}

/// A rename's agreement as reports show it: `99.8 %`, `100 %`.
fn agreement(pct: f64) -> String {
    let t = format!("{pct:.2}");
    let t = t.trim_end_matches('0').trim_end_matches('.');
    format!("{t} %")
}
