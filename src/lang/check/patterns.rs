//! Span name patterns (`payment.charge`, `payment.*`, `"a\\*b"`) and `matches` regexes,
//! compiled once at load, with limits a hostile rule cannot get past.

use regex::{Regex, RegexBuilder};

use crate::lang::hir::NameMatch;

/// Compiles a `matches` regex anchored at both ends, with a size limit so a hostile rule
/// cannot make the engine build an enormous automaton.
pub(super) fn compile_regex(re: &str) -> Result<Regex, String> {
    RegexBuilder::new(&format!("^(?:{re})$"))
        .size_limit(1 << 20)
        .dfa_size_limit(1 << 20)
        .build()
        .map_err(|e| match e {
            regex::Error::Syntax(s) => s
                .lines()
                .last()
                .unwrap_or("syntax error")
                .trim()
                .to_string(),
            regex::Error::CompiledTooBig(_) => "the regex is too large".into(),
            other => other.to_string(),
        })
}

/// A bare name: `*` is any name, a name with `*` in it is a glob, anything else exact.
pub(super) fn bare_pattern(n: &str) -> NameMatch {
    if n == "*" {
        NameMatch::Any
    } else if n.contains('*') {
        glob(n, &n.split('*').map(str::to_string).collect::<Vec<_>>())
    } else {
        NameMatch::Exact(n.to_string())
    }
}

/// A quoted name: `\"`, `\\` and `\*` escape; an unescaped `*` makes it a glob.
pub(super) fn quoted_pattern(raw: &str) -> NameMatch {
    let mut pieces = vec![String::new()];
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(e @ ('"' | '\\' | '*')) => pieces.last_mut().expect("never empty").push(e),
                Some(other) => {
                    let last = pieces.last_mut().expect("never empty");
                    last.push('\\');
                    last.push(other);
                }
                None => pieces.last_mut().expect("never empty").push('\\'),
            },
            '*' => pieces.push(String::new()),
            c => pieces.last_mut().expect("never empty").push(c),
        }
    }
    match pieces.len() {
        1 => NameMatch::Exact(pieces.pop().expect("one piece")),
        2 if pieces.iter().all(String::is_empty) => NameMatch::Any,
        _ => glob(raw, &pieces),
    }
}

/// A glob from the literal pieces between its stars.
fn glob(text: &str, pieces: &[String]) -> NameMatch {
    let body: Vec<String> = pieces.iter().map(|p| regex::escape(p)).collect();
    let re = Regex::new(&format!("^(?s:{})$", body.join(".*")))
        .expect("escaped pieces joined by .* always compile");
    NameMatch::Glob(text.to_string(), re)
}
