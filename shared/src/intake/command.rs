//! The `/prdiff run` comment command: a line of a PR comment, read strictly.
//!
//! ```text
//! /prdiff run                   every model the plan would diff
//! /prdiff run orders customers  only these models (dbt model names)
//! ```
//!
//! The command is a line of its own (leading and trailing blanks allowed) outside fenced
//! code blocks; the first such line counts. Model names are checked against dbt's naming
//! (letters, digits, underscores; not starting with a digit) and kept as plain strings:
//! they select entries of the plan and never reach SQL or a shell.

/// The word that starts a command line.
pub const PREFIX: &str = "/prdiff";
/// At most this many models may be named in one command.
pub const MAX_MODELS: usize = 100;
/// A model name longer than this is refused (PostgreSQL's identifier limit is 63 bytes,
/// Snowflake's 255 characters).
pub const MAX_NAME_LEN: usize = 255;

/// Reads a comment body. `None`: the comment holds no `/prdiff` line. `Some(Err)`: it
/// does, but the line is not a valid command (the reason says what is accepted).
pub fn parse(body: &str) -> Option<Result<Vec<String>, String>> {
    let mut fenced = false;
    for line in body.lines() {
        let line = line.trim();
        if line.starts_with("```") || line.starts_with("~~~") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let mut words = line.split_whitespace();
        if words.next() != Some(PREFIX) {
            continue;
        }
        return Some(command(words));
    }
    None
}

fn command<'a>(mut words: impl Iterator<Item = &'a str>) -> Result<Vec<String>, String> {
    const USAGE: &str = "use `/prdiff run` or `/prdiff run <model> [<model> ...]`";
    match words.next() {
        Some("run") => {}
        Some(other) => {
            return Err(format!(
                "unknown command `{PREFIX} {}`: {USAGE}",
                printable(other)
            ));
        }
        None => return Err(format!("`{PREFIX}` needs a command: {USAGE}")),
    }
    let mut models: Vec<String> = Vec::new();
    for word in words {
        if !is_model_name(word) {
            return Err(format!(
                "`{}` is not a dbt model name (letters, digits and underscores, not starting \
                 with a digit, at most {MAX_NAME_LEN} characters)",
                printable(word)
            ));
        }
        if !models.iter().any(|m| m == word) {
            models.push(word.to_owned());
        }
        if models.len() > MAX_MODELS {
            return Err(format!("at most {MAX_MODELS} models may be named"));
        }
    }
    Ok(models)
}

/// A dbt model name as prdiff accepts it in a command.
pub fn is_model_name(s: &str) -> bool {
    let mut chars = s.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    s.len() <= MAX_NAME_LEN
        && (first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A word of the comment as it may appear in a log line or reply: at most 40 characters,
/// control characters and backticks replaced.
fn printable(word: &str) -> String {
    let cleaned: String = word
        .chars()
        .map(|c| if c.is_control() || c == '`' { '?' } else { c })
        .collect();
    crate::githost::shorten(&cleaned, 40)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(models: &[&str]) -> Option<Result<Vec<String>, String>> {
        Some(Ok(models.iter().map(|m| m.to_string()).collect()))
    }

    #[test]
    fn a_bare_command_runs_every_model() {
        assert_eq!(parse("/prdiff run"), ok(&[]));
        assert_eq!(parse("  /prdiff run  \r\n"), ok(&[]));
        assert_eq!(parse("Looks good.\n\n/prdiff run\nthanks"), ok(&[]));
    }

    #[test]
    fn named_models_are_kept_in_order_without_duplicates() {
        assert_eq!(
            parse("/prdiff run orders customers orders"),
            ok(&["orders", "customers"])
        );
        assert_eq!(
            parse("/prdiff run\t_stg_2  fct_x"),
            ok(&["_stg_2", "fct_x"])
        );
    }

    #[test]
    fn comments_without_a_command_line_are_not_commands() {
        assert_eq!(parse(""), None);
        assert_eq!(parse("please /prdiff run this"), None);
        assert_eq!(parse("> /prdiff run"), None, "a quoted command");
        assert_eq!(parse("/prdiffrun"), None);
        assert_eq!(parse("/PRDIFF run"), None);
        assert_eq!(parse("```\n/prdiff run\n```"), None, "inside a code block");
        assert_eq!(parse("~~~sh\n/prdiff run orders\n~~~\n"), None);
        // After the fence closes, a command counts again.
        assert_eq!(parse("```\nx\n```\n/prdiff run orders"), ok(&["orders"]));
    }

    #[test]
    fn junk_is_refused_with_a_reason() {
        for (body, says) in [
            ("/prdiff", "needs a command"),
            ("/prdiff diff", "unknown command `/prdiff diff`"),
            (
                "/prdiff run orders;drop",
                "`orders;drop` is not a dbt model name",
            ),
            ("/prdiff run 'orders'", "is not a dbt model name"),
            ("/prdiff run 1orders", "is not a dbt model name"),
            ("/prdiff run model.shop.orders", "is not a dbt model name"),
            ("/prdiff run $(id)", "is not a dbt model name"),
            ("/prdiff run ordérs", "is not a dbt model name"),
        ] {
            match parse(body) {
                Some(Err(reason)) => assert!(reason.contains(says), "{body}: {reason}"),
                other => panic!("{body}: {other:?}"),
            }
        }
    }

    #[test]
    fn the_first_command_line_counts() {
        assert_eq!(parse("/prdiff run a\n/prdiff run b"), ok(&["a"]));
        assert!(matches!(parse("/prdiff rn\n/prdiff run b"), Some(Err(_))));
    }

    #[test]
    fn names_and_counts_are_bounded() {
        let long = "m".repeat(MAX_NAME_LEN + 1);
        assert!(matches!(
            parse(&format!("/prdiff run {long}")),
            Some(Err(_))
        ));
        let fine = "m".repeat(MAX_NAME_LEN);
        assert_eq!(parse(&format!("/prdiff run {fine}")), ok(&[fine.as_str()]));
        let many: Vec<String> = (0..=MAX_MODELS).map(|i| format!("m{i}")).collect();
        let r = parse(&format!("/prdiff run {}", many.join(" ")));
        assert!(matches!(&r, Some(Err(e)) if e.contains("at most")), "{r:?}");
        let control = "/prdiff x\u{7}`y";
        let Some(Err(reason)) = parse(control) else {
            panic!()
        };
        assert!(reason.contains("x??y"), "{reason}");
    }
}
