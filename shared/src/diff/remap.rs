//! Column remapping from the PR: directives in commit messages and the PR description that
//! map a column's old name to its new one, so the pair is compared as one column.
//!
//! The syntax is Datafold's, with `prdiff` accepted in place of `datafold`. One directive a
//! line, anywhere in a commit message or the PR description:
//!
//! ```text
//! datafold remap oldcol newcol
//! X-Datafold: rename oldcol newcol
//! /datafold renamed oldcol newcol
//! datafold: remapped oldcol newcol orders_*
//! prdiff remap oldcol newcol
//! ```
//!
//! The optional third word is a shell-like glob on the model name (or its relation's
//! table name), matched with `globset`: without it, the directive applies to every model.
//! Commits apply oldest first, and a directive naming a column an earlier one mapped to
//! continues the chain (`a b` then `b c` maps `a` to `c`); one mapping the same old name
//! again replaces it. The PR description describes the whole change: its directives are
//! applied last and replace what the commits say about the same old or new name.
//!
//! Everything here is PR input: names must be plain identifiers (letters, digits, `_`,
//! `$`, not starting with a digit) and globs made of identifier characters and
//! `* ? [ ] { } , ! -`. A directive line with anything else is ignored (and logged); the
//! names are only ever compared with catalog column names and quoted by the dialect.

use globset::{GlobBuilder, GlobMatcher};
use serde::{Deserialize, Serialize};

/// One remapping directive, as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Remap {
    pub from: String,
    pub to: String,
    /// A glob on the model name; `None`: every model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub glob: Option<String>,
}

/// A remapping that applies to one model: the diff compares prod's `from` with the PR's
/// `to` as one column when prod has `from` (and not `to`) and the PR has `to` (and not
/// `from`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnRemap {
    pub from: String,
    pub to: String,
    /// The directive's glob matched the model (rather than having no glob): when the
    /// columns are not there, the result says so.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub explicit: bool,
}

/// The most directives read from one text, and from all of a PR's commit messages
/// together (the rest are ignored).
pub const MAX_DIRECTIVES: usize = 100;
/// The longest name or glob accepted.
const MAX_WORD: usize = 255;

/// Why a directive line was ignored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("expected an old and a new column name and an optional model glob")]
    WordCount,
    #[error("`{0}` is not a plain column name")]
    Name(String),
    #[error("`{0}` is not a model name glob")]
    Glob(String),
    #[error("the old and the new column name are the same")]
    Same,
}

/// Reads one line: `None` when it is not a remapping directive, else the directive or why
/// it was refused.
pub fn parse_line(line: &str) -> Option<Result<Remap, Refused>> {
    let line = line.trim();
    let mut words = line.split_whitespace();
    let first = words.next()?;
    // `datafold`, `/datafold`, `X-Datafold:`, `datafold:` (and with `prdiff`).
    let head = first.strip_suffix(':').unwrap_or(first);
    let head = head.strip_prefix('/').unwrap_or(head);
    let head = match head.get(..2) {
        Some(p) if p.eq_ignore_ascii_case("x-") => &head[2..],
        _ => head,
    };
    if !(head.eq_ignore_ascii_case("datafold") || head.eq_ignore_ascii_case("prdiff")) {
        return None;
    }
    let verb = words.next()?;
    if !["remap", "remapped", "rename", "renamed"]
        .iter()
        .any(|v| verb.eq_ignore_ascii_case(v))
    {
        return None;
    }
    let args: Vec<&str> = words.collect();
    Some(directive(&args))
}

fn directive(args: &[&str]) -> Result<Remap, Refused> {
    let (from, to, glob) = match args {
        [from, to] => (*from, *to, None),
        [from, to, glob] => (*from, *to, Some(*glob)),
        _ => return Err(Refused::WordCount),
    };
    for name in [from, to] {
        if !is_identifier(name) {
            return Err(Refused::Name(shorten(name)));
        }
    }
    if from == to {
        return Err(Refused::Same);
    }
    if let Some(g) = glob
        && matcher(g).is_none()
    {
        return Err(Refused::Glob(shorten(g)));
    }
    Ok(Remap {
        from: from.to_owned(),
        to: to.to_owned(),
        glob: glob.map(str::to_owned),
    })
}

fn shorten(word: &str) -> String {
    crate::githost::shorten(word, 64)
}

/// A plain identifier: what dbt columns are called without quoting.
pub fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    s.len() <= MAX_WORD
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
}

/// The matcher of a model glob, or `None` when the word is not one.
fn matcher(glob: &str) -> Option<GlobMatcher> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "_$*?[]{},!-".contains(c);
    if glob.is_empty() || glob.len() > MAX_WORD || !glob.chars().all(allowed) {
        return None;
    }
    GlobBuilder::new(glob)
        .literal_separator(false)
        .build()
        .ok()
        .map(|g| g.compile_matcher())
}

/// The directives of a commit message or PR description, in order. Refused directive
/// lines are logged and left out.
pub fn parse_text(text: &str, source: &str) -> Vec<Remap> {
    let mut out = Vec::new();
    for line in text.lines() {
        match parse_line(line) {
            None => {}
            Some(Ok(r)) if out.len() < MAX_DIRECTIVES => out.push(r),
            Some(Ok(_)) => {
                tracing::warn!(
                    source,
                    "more than {MAX_DIRECTIVES} remapping directives; the rest are ignored"
                );
                break;
            }
            Some(Err(why)) => {
                tracing::warn!(source, reason = %why, "column remapping directive ignored");
            }
        }
    }
    out
}

/// The mapping of a PR: its commits' directives (messages oldest first) chained in order,
/// then the description's directives, which win.
pub fn combine(commit_messages: &[String], description: &[Remap]) -> Vec<Remap> {
    let mut out: Vec<Remap> = Vec::new();
    let directives = commit_messages
        .iter()
        .flat_map(|msg| parse_text(msg, "commit message"));
    for (read, d) in directives.enumerate() {
        if read == MAX_DIRECTIVES {
            tracing::warn!(
                "more than {MAX_DIRECTIVES} remapping directives in the commit messages; the rest are ignored"
            );
            break;
        }
        // A chain: `x → from` becomes `x → to`.
        if let Some(prev) = out.iter_mut().find(|r| r.to == d.from && r.glob == d.glob) {
            prev.to = d.to;
            if prev.to == prev.from {
                // Renamed back: nothing left to map.
                let from = prev.from.clone();
                let glob = prev.glob.clone();
                out.retain(|r| !(r.from == from && r.glob == glob));
            }
            continue;
        }
        out.retain(|r| !(r.from == d.from && r.glob == d.glob));
        out.push(d);
    }
    for d in description {
        out.retain(|r| !(r.glob == d.glob && (r.from == d.from || r.to == d.to)));
        out.push(d.clone());
    }
    out
}

/// The remappings that apply to a model known by `names` (its name, and its relations'
/// table names): those without a glob, and those whose glob matches one of the names. A
/// later directive for the same old name wins.
pub fn for_model(remaps: &[Remap], names: &[&str]) -> Vec<ColumnRemap> {
    let mut out: Vec<ColumnRemap> = Vec::new();
    for r in remaps {
        let explicit = match &r.glob {
            None => false,
            Some(g) => match matcher(g) {
                Some(m) if names.iter().any(|n| m.is_match(n)) => true,
                _ => continue,
            },
        };
        out.retain(|c| c.from != r.from);
        out.push(ColumnRemap {
            from: r.from.clone(),
            to: r.to.clone(),
            explicit,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remap(from: &str, to: &str, glob: Option<&str>) -> Remap {
        Remap {
            from: from.into(),
            to: to.into(),
            glob: glob.map(Into::into),
        }
    }

    #[test]
    fn datafolds_four_syntaxes_and_the_prdiff_variants_are_read() {
        for (line, glob) in [
            ("datafold remap oldcol newcol", None),
            ("X-Datafold: rename oldcol newcol", None),
            ("/datafold renamed oldcol newcol", None),
            (
                "datafold: remapped oldcol newcol orders_*",
                Some("orders_*"),
            ),
            ("prdiff remap oldcol newcol", None),
            ("X-Prdiff: rename oldcol newcol", None),
            ("/prdiff renamed oldcol newcol", None),
            (
                "  prdiff: remapped oldcol newcol orders_?  ",
                Some("orders_?"),
            ),
            ("DATAFOLD REMAP oldcol newcol", None),
        ] {
            assert_eq!(
                parse_line(line),
                Some(Ok(remap("oldcol", "newcol", glob))),
                "{line}"
            );
        }
    }

    #[test]
    fn other_lines_are_not_directives_and_bad_directives_are_refused() {
        for line in [
            "",
            "Fix the orders model",
            "datafold",
            "datafold diff a b",
            "remap a b",
            "xdatafold remap a b",
            "`datafold remap a b`",
            "- datafold remap a b",
            "prdiffs remap a b",
        ] {
            assert_eq!(parse_line(line), None, "{line}");
        }
        assert_eq!(
            parse_line("datafold remap a"),
            Some(Err(Refused::WordCount))
        );
        assert_eq!(
            parse_line("datafold remap a b c d"),
            Some(Err(Refused::WordCount))
        );
        assert_eq!(
            parse_line("datafold remap a; b"),
            Some(Err(Refused::Name("a;".into())))
        );
        assert_eq!(
            parse_line("datafold remap a \"b\"+1"),
            Some(Err(Refused::Name("\"b\"+1".into())))
        );
        assert_eq!(
            parse_line("datafold remap 1a b"),
            Some(Err(Refused::Name("1a".into())))
        );
        assert_eq!(parse_line("datafold remap a a"), Some(Err(Refused::Same)));
        assert_eq!(
            parse_line("datafold remap a b orders/*"),
            Some(Err(Refused::Glob("orders/*".into())))
        );
        assert_eq!(
            parse_line("datafold remap a b orders_[a"),
            Some(Err(Refused::Glob("orders_[a".into())))
        );
        let long = "a".repeat(300);
        assert!(matches!(
            parse_line(&format!("datafold remap {long} b")),
            Some(Err(Refused::Name(n))) if n.chars().count() == 64
        ));
    }

    #[test]
    fn a_text_yields_its_directives_in_order_and_skips_junk() {
        let msg = "Rename columns\n\ndatafold remap a b\nsome text\nprdiff remap c d; drop table x\n/prdiff renamed e f stg_*\r\n";
        assert_eq!(
            parse_text(msg, "test"),
            [remap("a", "b", None), remap("e", "f", Some("stg_*"))]
        );
        let many: String = (0..150)
            .map(|i| format!("prdiff remap a{i} b{i}\n"))
            .collect();
        assert_eq!(parse_text(&many, "test").len(), MAX_DIRECTIVES);
        // Across commits too: the first 100 directives count.
        let commits: Vec<String> = (0..150)
            .map(|i| format!("prdiff remap a{i} b{i}"))
            .collect();
        let all = combine(&commits, &[]);
        assert_eq!(all.len(), MAX_DIRECTIVES);
        assert_eq!(all[99], remap("a99", "b99", None));
    }

    #[test]
    fn commits_chain_in_order_and_a_later_commit_overrides() {
        let commits = |m: &[&str]| m.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // col1 → col2, then col2 → col3: col1 → col3.
        assert_eq!(
            combine(
                &commits(&["datafold remap col1 col2", "datafold remap col2 col3"]),
                &[]
            ),
            [remap("col1", "col3", None)]
        );
        // A later commit maps the same old name elsewhere.
        assert_eq!(
            combine(
                &commits(&["datafold remap a b", "x\nprdiff rename a c"]),
                &[]
            ),
            [remap("a", "c", None)]
        );
        // Renamed back: nothing to map.
        assert_eq!(
            combine(&commits(&["prdiff remap a b", "prdiff remap b a"]), &[]),
            []
        );
        // Globs keep chains apart.
        assert_eq!(
            combine(
                &commits(&["prdiff remap a b orders", "prdiff remap b c"]),
                &[]
            ),
            [remap("a", "b", Some("orders")), remap("b", "c", None)]
        );
    }

    #[test]
    fn the_description_wins_over_commits() {
        let commits = vec!["datafold remap a b\ndatafold remap x y".to_string()];
        let description = parse_text("Summary\n\nprdiff remap a c\nprdiff remap z y", "test");
        assert_eq!(
            combine(&commits, &description),
            [remap("a", "c", None), remap("z", "y", None)]
        );
    }

    #[test]
    fn a_model_gets_the_remappings_without_a_glob_and_those_whose_glob_matches() {
        let remaps = vec![
            remap("a", "b", None),
            remap("c", "d", Some("orders_*")),
            remap("e", "f", Some("customers")),
            remap("g", "h", Some("stg_{orders,items}")),
            remap("a", "z", Some("*_daily")),
        ];
        let got = for_model(&remaps, &["orders_daily", "orders_daily_v2"]);
        assert_eq!(
            got,
            [
                ColumnRemap {
                    from: "c".into(),
                    to: "d".into(),
                    explicit: true
                },
                ColumnRemap {
                    from: "a".into(),
                    to: "z".into(),
                    explicit: true
                },
            ]
        );
        let got = for_model(&remaps, &["stg_items"]);
        assert_eq!(
            got.iter()
                .map(|c| (c.from.as_str(), c.explicit))
                .collect::<Vec<_>>(),
            [("a", false), ("g", true)]
        );
        // The relation's table name counts too; `?` is one character.
        let got = for_model(&[remap("a", "b", Some("orders_v?"))], &["m", "orders_v2"]);
        assert_eq!(got.len(), 1);
        assert!(for_model(&[remap("a", "b", Some("orders_v?"))], &["orders_v10"]).is_empty());
    }
}
