//! The playbook rules as the collector's `tail_sampling` processor would check them: one
//! policy per rule that samples exactly the traces the rule would flag, written with
//! `ottl_condition`, `and` and `not` — where that is possible at all.
//!
//! A tail-sampling policy sees a trace as "is there a span for which this OTTL condition
//! holds?"; `and` and `not` combine such questions, and the trace is kept when any policy
//! keeps it. So a rule translates when its violation, put in disjunctive normal form, is
//! made only of "a span like S exists" and "no span like S exists", and each S is a
//! condition on one span. Everything that relates spans to each other (`before`, `after`,
//! `within`, `child_of`), counts them, compares values across them (`distinct`, `unique`),
//! or looks at the trace as a whole (`trace:duration`, `trace:rootName`) does not.

use betrace::lang::hir::{Attr, Expr, Form, Intrinsic, NameMatch, Num, Number, Pred, Selector};
use betrace::lang::value::{CmpOp, Value};
use betrace::RuleSet;
use serde_json::{json, Value as Yaml};

/// Most cases one rule's violation may split into before we call it unexpressible.
const MAX_CASES: usize = 16;

/// The outcome for a whole rule set.
#[derive(Debug, Default)]
pub struct Translation {
    /// The `tail_sampling` `policies:` list, one or more per expressed rule.
    pub policies: Vec<Yaml>,
    /// Ids of the rules expressed.
    pub expressed: Vec<String>,
    /// Ids of the rules that could not be, with why.
    pub unexpressed: Vec<(String, String)>,
}

/// Translates every enabled rule of `rules`.
pub fn translate(rules: &RuleSet) -> Translation {
    let mut out = Translation::default();
    for rule in rules.rules().iter().filter(|r| r.def.enabled) {
        match rule_policies(&rule.def.id, &rule.def.form) {
            Ok(policies) => {
                out.policies.extend(policies);
                out.expressed.push(rule.def.id.clone());
            }
            Err(why) => out.unexpressed.push((rule.def.id.clone(), why)),
        }
    }
    out
}

/// A term of the normal form: "a span matching this OTTL condition exists", or its negation.
#[derive(Debug, Clone, PartialEq)]
struct Literal {
    exists: bool,
    condition: String,
}

/// The policies that keep exactly the traces `form` flags.
fn rule_policies(id: &str, form: &Form) -> Result<Vec<Yaml>, String> {
    let violation = match form {
        Form::Invariant { bind: Some(_), .. } => {
            return Err("judges each occurrence of a span (as $x)".into())
        }
        Form::Invariant {
            when,
            always,
            never,
            ..
        } => {
            let mut cases = Vec::new();
            if let Some(a) = always {
                cases.push(Expr::And(vec![
                    when.clone(),
                    Expr::Not(Box::new(a.clone())),
                ]));
            }
            if let Some(n) = never {
                cases.push(Expr::And(vec![when.clone(), n.clone()]));
            }
            Expr::Or(cases)
        }
        Form::Violation(e) => e.clone(),
    };
    let cases = dnf(&violation, false)?;
    if cases.is_empty() {
        return Err("can never fire".into());
    }
    Ok(cases
        .iter()
        .enumerate()
        .map(|(n, case)| {
            let name = if cases.len() == 1 {
                id.to_string()
            } else {
                format!("{id}/{}", n + 1)
            };
            policy(&name, case)
        })
        .collect())
}

/// The violation as a list of cases (any may hold), each a list of literals (all must).
fn dnf(e: &Expr, negated: bool) -> Result<Vec<Vec<Literal>>, String> {
    let cases = match (e, negated) {
        (Expr::Not(inner), _) => dnf(inner, !negated)?,
        (Expr::Or(items), false) | (Expr::And(items), true) => {
            let mut all = Vec::new();
            for item in items {
                all.extend(dnf(item, negated)?);
            }
            all
        }
        (Expr::And(items), false) | (Expr::Or(items), true) => {
            let mut acc: Vec<Vec<Literal>> = vec![Vec::new()];
            for item in items {
                let next = dnf(item, negated)?;
                let mut product = Vec::new();
                for left in &acc {
                    for right in &next {
                        product.push(left.iter().chain(right).cloned().collect());
                    }
                }
                acc = product;
                if acc.len() > MAX_CASES {
                    return Err(format!("splits into more than {MAX_CASES} cases"));
                }
            }
            acc
        }
        (Expr::Has(s), _) => vec![vec![literal(s, !negated)?]],
        (Expr::Compare(lhs, op, rhs), _) => vec![vec![count_literal(lhs, *op, rhs, negated)?]],
        (Expr::Before(..), _) => return Err("orders spans in time (before/after)".into()),
        (Expr::Within(..), _) => return Err("relates spans in time (within)".into()),
        (Expr::ChildOf(..), _) => return Err("relates spans by parent (child_of)".into()),
        (Expr::Own(_) | Expr::BoundWithin(_) | Expr::BoundChildOf(_), _) => {
            return Err("relates spans to a bound span".into())
        }
    };
    if cases.len() > MAX_CASES {
        return Err(format!("splits into more than {MAX_CASES} cases"));
    }
    Ok(cases)
}

/// `count(S) > 0` and its like are existence; any other comparison counts spans.
fn count_literal(lhs: &Num, op: CmpOp, rhs: &Num, negated: bool) -> Result<Literal, String> {
    let exists = match (lhs, op, rhs) {
        (Num::Count(s), CmpOp::Gt, Num::Const(Number::Int(0)))
        | (Num::Count(s), CmpOp::Ge, Num::Const(Number::Int(1))) => (s, true),
        (Num::Count(s), CmpOp::Eq, Num::Const(Number::Int(0)))
        | (Num::Count(s), CmpOp::Lt, Num::Const(Number::Int(1))) => (s, false),
        (Num::Distinct(..), _, _) | (_, _, Num::Distinct(..)) => {
            return Err("compares attribute values across spans (distinct/unique)".into())
        }
        (Num::Agg(..), _, _) | (_, _, Num::Agg(..)) => {
            return Err("aggregates values across spans (sum/min/max/avg)".into())
        }
        _ => return Err("counts spans (count(...) against a number other than 0)".into()),
    };
    literal(exists.0, exists.1 != negated)
}

fn literal(s: &Selector, exists: bool) -> Result<Literal, String> {
    let name = match &s.name {
        NameMatch::Exact(n) => Some(format!("span.name == {}", quote(n))),
        NameMatch::Glob(_, re) => Some(format!("IsMatch(span.name, {})", quote(re.as_str()))),
        NameMatch::Any => None,
    };
    let pred = s.pred.as_ref().map(pred).transpose()?;
    let condition = match (name, pred) {
        (Some(n), Some(p)) => format!("{n} and {p}"),
        (Some(n), None) => n,
        (None, Some(p)) => p,
        (None, None) => "true".into(),
    };
    Ok(Literal { exists, condition })
}

/// One span predicate as an OTTL boolean expression. As in BeTrace, a comparison on an
/// absent attribute is false, `!=` included, so every comparison checks presence first.
fn pred(p: &Pred) -> Result<String, String> {
    Ok(match p {
        Pred::And(items) => join(items, " and ")?,
        Pred::Or(items) => join(items, " or ")?,
        Pred::Not(inner) => format!("not {}", pred(inner)?),
        Pred::Exists(a) => on_attr(a, &|path| Ok(format!("{path} != nil")))?,
        Pred::Truthy(a) => on_attr(a, &|path| Ok(format!("{path} == true")))?,
        Pred::Cmp(a, op, v) => on_attr(a, &|path| compare(a, &path, *op, v))?,
        Pred::In(a, values) => on_attr(a, &|path| {
            let each: Result<Vec<String>, String> = values
                .iter()
                .map(|v| compare(a, &path, CmpOp::Eq, v))
                .collect();
            Ok(format!("({})", each?.join(" or ")))
        })?,
        Pred::Matches(a, re) => on_attr(a, &|path| {
            Ok(format!(
                "IsMatch({path}, {})",
                quote(&format!("^(?:{})$", re.as_str()))
            ))
        })?,
        Pred::Contains(a, Value::Str(v)) => on_attr(a, &|path| {
            Ok(format!("IsMatch({path}, {})", quote(&regex::escape(v))))
        })?,
        Pred::Contains(..) => return Err("looks inside an array attribute (contains)".into()),
        Pred::CmpBound(..) | Pred::ContainsBound(..) => {
            return Err("compares with a bound span's value".into())
        }
        Pred::CmpAttr(a, op, b) => on_attr(a, &|pa| {
            on_attr(b, &|pb| {
                Ok(format!(
                    "({pa} != nil and {pb} != nil and {pa} {} {pb})",
                    op.as_str()
                ))
            })
        })?,
    })
}

fn join(items: &[Pred], sep: &str) -> Result<String, String> {
    let parts: Result<Vec<String>, String> = items.iter().map(pred).collect();
    Ok(format!("({})", parts?.join(sep)))
}

/// Applies `f` to the attribute's OTTL path, with BeTrace's scoping: a bare key is the
/// span's attribute, else the resource's. `f` must be false for an absent attribute.
fn on_attr(a: &Attr, f: &dyn Fn(String) -> Result<String, String>) -> Result<String, String> {
    match a {
        Attr::Any(k) => {
            let span = format!("span.attributes[{}]", quote(k));
            let resource = format!("resource.attributes[{}]", quote(k));
            Ok(format!(
                "({} or ({span} == nil and {}))",
                f(span.clone())?,
                f(resource)?
            ))
        }
        _ => f(single_path(a)?),
    }
}

fn single_path(a: &Attr) -> Result<String, String> {
    Ok(match a {
        Attr::Any(_) => unreachable!("on_attr resolves bare keys"),
        Attr::Span(k) => format!("span.attributes[{}]", quote(k)),
        Attr::Resource(k) => format!("resource.attributes[{}]", quote(k)),
        Attr::Intrinsic(Intrinsic::Name) => "span.name".into(),
        Attr::Intrinsic(Intrinsic::Duration) => {
            "(span.end_time_unix_nano - span.start_time_unix_nano)".into()
        }
        Attr::Intrinsic(Intrinsic::Status) => "span.status.code".into(),
        Attr::Intrinsic(Intrinsic::StatusMessage) => "span.status.message".into(),
        Attr::Intrinsic(Intrinsic::Kind) => "span.kind".into(),
        Attr::Intrinsic(i) => {
            return Err(format!("uses {}, a property of the whole trace", i.name()))
        }
    })
}

fn compare(a: &Attr, path: &str, op: CmpOp, v: &Value) -> Result<String, String> {
    let literal = match (a, v) {
        (Attr::Intrinsic(Intrinsic::Status), Value::Str(s)) => {
            format!("STATUS_CODE_{}", s.to_ascii_uppercase())
        }
        (Attr::Intrinsic(Intrinsic::Kind), Value::Str(s)) => {
            format!("SPAN_KIND_{}", s.to_ascii_uppercase())
        }
        (_, Value::Str(s)) => quote(s),
        (_, Value::Int(n)) | (_, Value::Duration(n)) => n.to_string(),
        (_, Value::Float(x)) => format!("{x:?}"),
        (_, Value::Bool(b)) => b.to_string(),
        (_, other) => return Err(format!("compares with {other:?}")),
    };
    let cmp = format!("{path} {} {literal}", op.as_str());
    Ok(match a {
        Attr::Intrinsic(_) => cmp,
        _ => format!("({path} != nil and {cmp})"),
    })
}

fn quote(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

/// One case as a policy: a single existence is an `ottl_condition`, a single absence a
/// `not`, several an `and` of those.
fn policy(name: &str, case: &[Literal]) -> Yaml {
    let leaf = |name: String, l: &Literal| {
        json!({
            "name": name,
            "type": "ottl_condition",
            "ottl_condition": {"error_mode": "ignore", "span": [l.condition]},
        })
    };
    let term = |name: String, l: &Literal| {
        if l.exists {
            return leaf(name, l);
        }
        json!({
            "name": name,
            "type": "not",
            "not": {"not_sub_policy": leaf(format!("{name}/inner"), l)},
        })
    };
    if let [only] = case {
        return term(name.to_string(), only);
    }
    let subs: Vec<Yaml> = case
        .iter()
        .enumerate()
        .map(|(n, l)| term(format!("{name}/{}", n + 1), l))
        .collect();
    json!({"name": name, "type": "and", "and": {"and_sub_policy": subs}})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(condition: &str) -> Result<Vec<Yaml>, String> {
        let text = format!(
            "rules:\n  - id: r\n    name: r\n    severity: high\n    condition: |\n      {condition}\n"
        );
        let (rules, _) = RuleSet::from_text("r.yaml", &text).expect("rule loads");
        rule_policies("r", &rules.rules()[0].def.form)
    }

    #[test]
    fn when_always_becomes_and_of_exists_and_not() {
        let p = one("when { payment.charge.where(amount > 1000) } always { payment.fraud_check }")
            .unwrap();
        let y = serde_json::to_string(&p).unwrap();
        assert!(y.contains(r#""type":"and""#), "{y}");
        assert!(y.contains(r#""type":"not""#), "{y}");
        assert!(y.contains(r#"span.name == \"payment.fraud_check\""#), "{y}");
        assert!(y.contains(r#"span.attributes[\"amount\"] > 1000"#), "{y}");
    }

    #[test]
    fn never_becomes_one_and_of_two_exists() {
        let p = one("when { admin.action } never { debug.dump }").unwrap();
        assert_eq!(p.len(), 1);
        let y = serde_json::to_string(&p).unwrap();
        assert!(
            y.contains(r#""type":"and""#) && !y.contains(r#""type":"not""#),
            "{y}"
        );
    }

    #[test]
    fn always_with_two_requirements_splits_into_two_policies() {
        let p = one("when { a } always { b and c }").unwrap();
        assert_eq!(p.len(), 2);
    }

    #[test]
    fn ordering_counting_and_trace_level_terms_are_refused() {
        assert!(one("when { a } always { b before a }")
            .unwrap_err()
            .contains("before"));
        assert!(one("when { a } always { count(b) > 2 }")
            .unwrap_err()
            .contains("counts"));
        assert!(one("when { a.where(span:duration > 1s) } always { b }").is_ok());
        assert!(one("when { a.where(trace:duration > 1s) } always { b }")
            .unwrap_err()
            .contains("trace:duration"));
    }
}
