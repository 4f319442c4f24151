//! The bytecode VM against the reference evaluator, on random rules and random traces.
//!
//! Rules are generated as *text*, so the parser and the checker are exercised too; several
//! rules are compiled into one rule set and judged through one view, so selector sharing
//! and caching are exercised as in production. Every verdict and every trigger span must
//! agree. The VM judges the *projected* trace (only the keys the rules read, the status
//! message only when read), sometimes first projected for other rules and re-keyed as
//! after a reload; the reference judges the whole plain trace. `PROPTEST_CASES` overrides
//! the number of cases (10,000 by default).

use std::sync::Arc;

use betrace::eval::reference;
use betrace::eval::vm::{Lookup, View};
use betrace::lang::check::check_text;
use betrace::lang::compile::Compiler;
use betrace::lang::hir::{required_names, Form};
use betrace::lang::value::Value;
use betrace::rules::ruleset::projection_of;
use betrace::trace::projected::{self, Projection};
use betrace::trace::{Resource, Span, SpanId, SpanKind, StatusCode, Trace, TraceId};
use proptest::prelude::*;

// ------------------------------------------------------------------ rules as text

fn name_pattern() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "a", "b", "c", "a.x", "b.y", "a.*", "*", "\"b.y\"", "\"a *\"", "zz",
    ])
    .prop_map(str::to_string)
}

fn literal() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["1", "2", "-1", "2.5", "\"3\"", "x", "\"abc\"", "0"])
        .prop_map(str::to_string)
}

fn pred_leaf() -> impl Strategy<Value = String> {
    let cmp = (
        prop::sample::select(vec!["k", "n", "s", "span.k", "resource.k", "\"k\""]),
        prop::sample::select(vec!["==", "!=", ">", ">=", "<", "<="]),
        literal(),
    )
        .prop_map(|(k, op, v)| format!("{k} {op} {v}"));
    let list = (
        prop::sample::select(vec!["k", "n", "s"]),
        prop::collection::vec(literal(), 1..4),
    )
        .prop_map(|(k, items)| format!("{k} in [{}]", items.join(", ")));
    prop_oneof![
        4 => cmp,
        2 => list,
        1 => prop::sample::select(vec![
            "s matches \"x|3\"",
            "s matches \"a.*\"",
            "s contains \"b\"",
            "arr contains 1",
            "arr contains \"x\"",
            "exists(k)",
            "exists(resource.k)",
            "flag",
            "n > span.k",
            "k == resource.k",
            "span:duration > 2ms",
            "span:duration <= 1ms",
            "span:status == error",
            "span:status != ok",
            "span:kind in [server, client]",
            "span:name == a",
            "span:name matches \"a.*\"",
            "trace:rootName == a",
            "trace:rootService == svc1",
            "trace:duration > 3ms",
            "flag == true",
            "span:statusMessage == \"x\"",
            "span:statusMessage contains \"3\"",
        ])
        .prop_map(str::to_string),
    ]
}

fn pred() -> impl Strategy<Value = String> {
    pred_leaf().prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a} and {b}")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} or {b})")),
            inner.prop_map(|a| format!("not ({a})")),
        ]
    })
}

fn selector() -> impl Strategy<Value = String> {
    (name_pattern(), prop::collection::vec(pred(), 0..3)).prop_map(|(n, wheres)| {
        let mut s = n;
        for w in wheres {
            s.push_str(&format!(".where({w})"));
        }
        s
    })
}

fn expr_leaf() -> impl Strategy<Value = String> {
    let op = prop::sample::select(vec!["==", "!=", ">", ">=", "<", "<="]);
    prop_oneof![
        3 => selector(),
        1 => selector().prop_map(|s| format!("trace.has({s})")),
        2 => (selector(), op.clone(), 0i64..4).prop_map(|(s, op, n)| format!("count({s}) {op} {n}")),
        1 => (selector(), op.clone(), selector()).prop_map(|(a, op, b)| format!("trace.count({a}) {op} count({b})")),
        1 => (selector(), prop::sample::select(vec!["k", "s", "n", "span:name"]), op.clone(), 0i64..3)
            .prop_map(|(s, k, op, n)| format!("distinct({s}, {k}) {op} {n}")),
        1 => (name_pattern(), prop::sample::select(vec!["k", "s"]), op.clone(), 0i64..3)
            .prop_map(|(s, k, op, n)| format!("trace.count({s}).where({k} == unique) {op} {n}")),
        2 => (selector(), prop::sample::select(vec!["before", "after", "within", "child_of"]), selector())
            .prop_map(|(a, r, b)| format!("{a} {r} {b}")),
        // Language v2: time bounds around the real gaps (starts are 0–5 ms, with 0, 250 or
        // 500 µs of jitter), aggregates over numeric, string-numeric, missing and
        // non-numeric values, durations, floats.
        2 => (selector(), prop::sample::select(vec!["before", "after"]), selector(),
              prop::sample::select(vec!["1ns", "250us", "500us", "1ms", "1500us", "2ms", "3ms", "1h"]))
            .prop_map(|(a, r, b, d)| format!("{a} {r} {b} within {d}")),
        2 => (agg(), op.clone(), prop::sample::select(vec!["0", "1", "-1", "2.5", "3", "0.5"]))
            .prop_map(|(a, op, n)| format!("{a} {op} {n}")),
        1 => (agg(), op.clone(), agg()).prop_map(|(a, op, b)| format!("{a} {op} {b}")),
        1 => (selector(), op.clone(), agg()).prop_map(|(s, op, b)| format!("count({s}) {op} {b}")),
        1 => (duration_agg(), op.clone(), prop::sample::select(vec!["0ms", "1ms", "1500us", "2ms", "4ms"]))
            .prop_map(|(a, op, d)| format!("{a} {op} {d}")),
        1 => (duration_agg(), op, duration_agg()).prop_map(|(a, op, b)| format!("{a} {op} {b}")),
    ]
}

fn agg() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec!["sum", "min", "max", "avg"]),
        selector(),
        prop::sample::select(vec![
            "k",
            "n",
            "s",
            "flag",
            "arr",
            "span.k",
            "resource.k",
            "\"n\"",
        ]),
    )
        .prop_map(|(f, s, k)| format!("{f}({s}, {k})"))
}

fn duration_agg() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec!["sum", "min", "max", "avg"]),
        selector(),
        prop::sample::select(vec!["span:duration", "trace:duration"]),
    )
        .prop_map(|(f, s, k)| format!("{f}({s}, {k})"))
}

fn expr() -> impl Strategy<Value = String> {
    expr_leaf().prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a} and {b}")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} or {b})")),
            inner.prop_map(|a| format!("not ({a})")),
        ]
    })
}

// ------------------------------------------------------------------ language v3

/// A filter that reads the bound span: joins on values present and missing (`j` holds
/// small integers, `s` and `k` mix strings, numeric strings, floats and integers), order
/// against its values, `contains`.
fn bound_pred() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "j == $x.j",
        "k == $x.k",
        "s == $x.s",
        "s == $x.k",
        "n > $x.n",
        "k <= $x.n",
        "j != $x.j",
        "arr contains $x.j",
        "s contains $x.s",
        "span:duration >= $x.span:duration",
        "span:kind == $x.span:kind",
        "missing == $x.missing",
    ])
    .prop_map(str::to_string)
}

/// A name that most generated traces have, so that bindings and partners exist.
fn common_name() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["a", "b", "c", "a.x", "*", "a.*"]).prop_map(str::to_string)
}

/// A selector whose filters may read the bound span.
fn bound_selector() -> impl Strategy<Value = String> {
    (
        prop_oneof![3 => common_name(), 1 => name_pattern()],
        prop::collection::vec(prop_oneof![1 => pred_leaf(), 2 => bound_pred()], 0..2),
    )
        .prop_map(|(n, wheres)| {
            let mut s = n;
            for w in wheres {
                s.push_str(&format!(".where({w})"));
            }
            s
        })
}

/// A relation filter to the bound span: every kind, with and without a time bound and a
/// scope (whose selector may read the bound span too).
fn rel_filter() -> impl Strategy<Value = String> {
    let window = prop::option::of(prop::sample::select(vec![
        "1ns", "250us", "1ms", "1500us", "2ms", "1h",
    ]));
    let scope = prop::option::of(prop_oneof![2 => common_name(), 1 => bound_selector()]);
    prop_oneof![
        3 => (prop::sample::select(vec!["before", "after"]), window, scope).prop_map(|(r, w, t)| {
            let mut f = format!("{r} $x");
            if let Some(w) = w {
                f.push_str(&format!(" within {w}"));
            }
            if let Some(t) = t {
                f.push_str(&format!(" {} {t}", if r == "before" { "since" } else { "until" }));
            }
            f
        }),
        2 => prop::sample::select(vec!["within $x", "child_of $x", "around $x"]).prop_map(str::to_string),
    ]
}

/// A selector in relation to the bound span, or one whose filters read it.
fn related() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => (bound_selector(), rel_filter()).prop_map(|(s, f)| format!("{s} {f}")),
        1 => bound_selector(),
    ]
}

/// A boolean term of a per-occurrence rule.
fn bound_leaf() -> impl Strategy<Value = String> {
    let op = prop::sample::select(vec!["==", "!=", ">", ">=", "<", "<="]);
    prop_oneof![
        4 => related(),
        2 => (related(), op.clone(), 0i64..3).prop_map(|(s, op, n)| format!("count({s}) {op} {n}")),
        1 => (prop::sample::select(vec!["sum", "min", "max", "avg"]), related(), prop::sample::select(vec!["n", "k", "s"]), op.clone(), prop::sample::select(vec!["$x.n", "$x.k", "1", "$x.missing"]))
            .prop_map(|(f, s, k, op, v)| format!("{f}({s}, {k}) {op} {v}")),
        1 => (related(), prop::sample::select(vec!["k", "s"]), op.clone(), 0i64..3)
            .prop_map(|(s, k, op, n)| format!("distinct({s}, {k}) {op} {n}")),
        1 => (prop::sample::select(vec!["$x.n", "$x.k", "$x.s"]), op.clone(), prop::sample::select(vec!["1", "2.5", "0"]))
            .prop_map(|(a, op, b)| format!("{a} {op} {b}")),
        1 => (prop::sample::select(vec!["$x.span:duration"]), op, prop::sample::select(vec!["1ms", "2ms"]))
            .prop_map(|(a, op, b)| format!("{a} {op} {b}")),
        1 => (prop::sample::select(vec!["$x within", "$x child_of"]), bound_selector())
            .prop_map(|(t, s)| format!("{t} {s}")),
        // Trace-level terms whose sides read the bound span.
        1 => (bound_selector(), prop::sample::select(vec!["before", "after", "within", "child_of"]), selector())
            .prop_map(|(a, r, b)| format!("{a} {r} {b}")),
        1 => expr_leaf(),
    ]
}

fn bound_expr() -> impl Strategy<Value = String> {
    bound_leaf().prop_recursive(1, 4, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a} and {b}")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} or {b})")),
            inner.prop_map(|a| format!("not ({a})")),
        ]
    })
}

/// `own S before|after $x …`: plain filters and joins on `j` (one kind of value, so that
/// a maximum matching is what the greedy of the spec finds), ties and groups, every scope.
fn own_term() -> impl Strategy<Value = String> {
    (
        common_name(),
        prop::collection::vec(
            prop_oneof![1 => pred_leaf(), 2 => Just("j == $x.j".to_string())],
            0..2,
        ),
        prop::sample::select(vec!["before", "after"]),
        prop::option::of(prop::sample::select(vec!["250us", "1ms", "2ms", "1h"])),
        prop::option::of(prop_oneof![
            3 => common_name(),
            1 => Just("c.where(j == $x.j)".to_string()),
            1 => Just("a.where(k == $x.k)".to_string()),
        ]),
    )
        .prop_map(|(n, wheres, r, w, t)| {
            let mut s = format!("own {n}");
            for w in wheres {
                s.push_str(&format!(".where({w})"));
            }
            s.push_str(&format!(" {r} $x"));
            if let Some(w) = w {
                s.push_str(&format!(" within {w}"));
            }
            if let Some(t) = t {
                s.push_str(&format!(
                    " {} {t}",
                    if r == "before" { "since" } else { "until" }
                ));
            }
            s
        })
}

/// `when` of a per-occurrence rule: the binding, beside terms that may read it.
fn bound_when() -> impl Strategy<Value = String> {
    let binding =
        (common_name(), prop::collection::vec(pred_leaf(), 0..2)).prop_map(|(n, wheres)| {
            let mut s = n;
            for w in wheres {
                s.push_str(&format!(".where({w})"));
            }
            s
        });
    (binding, prop::option::weighted(0.3, bound_expr())).prop_map(|(b, rest)| match rest {
        Some(r) => format!("{b} as $x and {r}"),
        None => format!("{b} as $x"),
    })
}

/// `always` of a per-occurrence rule: `own` terms at its top level, and other terms.
fn bound_always() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(own_term(), 0..3),
        prop::option::of(bound_expr()),
    )
        .prop_map(|(owns, rest)| {
            let mut parts = owns;
            parts.extend(rest);
            if parts.is_empty() {
                parts.push("*".to_string());
            }
            parts.join(" and ")
        })
}

/// A per-occurrence rule: a binding, and `always` and/or `never`.
fn bound_condition() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => (bound_when(), bound_always()).prop_map(|(w, a)| format!("when {{ {w} }} always {{ {a} }}")),
        1 => (bound_when(), bound_expr()).prop_map(|(w, n)| format!("when {{ {w} }} never {{ {n} }}")),
        1 => (bound_when(), bound_always(), bound_expr()).prop_map(|(w, a, n)| format!("when {{ {w} }} always {{ {a} }} never {{ {n} }}")),
    ]
}

fn condition() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => bound_condition(),
        2 => expr(),
        1 => (expr(), expr()).prop_map(|(w, a)| format!("when {{ {w} }} always {{ {a} }}")),
        1 => (expr(), expr()).prop_map(|(w, n)| format!("when {{ {w} }} never {{ {n} }}")),
        1 => (expr(), expr(), expr()).prop_map(|(w, a, n)| format!("when {{ {w} }} always {{ {a} }} never {{ {n} }}")),
    ]
}

// ------------------------------------------------------------------ traces

fn attr_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        (-2i64..4).prop_map(Value::Int),
        prop::sample::select(vec![2.5f64, 1.0, -0.5]).prop_map(Value::Float),
        prop::sample::select(vec!["x", "3", "abc", "a.b", "2.5", ""]).prop_map(Value::str),
        any::<bool>().prop_map(Value::Bool),
        prop::collection::vec((0i64..3).prop_map(Value::Int), 0..3).prop_map(Value::Array),
        Just(Value::Array(vec![Value::str("x")])),
    ]
}

fn attributes() -> impl Strategy<Value = Vec<(String, Value)>> {
    prop::collection::vec(
        (
            // "other" and "noise": keys no generated rule reads, which projection drops.
            prop::sample::select(vec!["k", "n", "s", "flag", "arr", "other", "noise", "j"]),
            attr_value(),
        ),
        0..5,
    )
    .prop_map(|kvs| {
        let mut out: Vec<(String, Value)> = Vec::new();
        for (k, v) in kvs {
            // `j`, the key `own` joins on, holds small integers only.
            let v = match (k, &v) {
                ("j", Value::Int(i)) => Value::Int(i.rem_euclid(3)),
                ("j", _) => Value::Int(0),
                _ => v,
            };
            if !out.iter().any(|(e, _)| e == k) {
                out.push((k.to_string(), v));
            }
        }
        out
    })
}

#[derive(Debug, Clone)]
struct SpanSpec {
    name: &'static str,
    parent: Option<usize>,
    dangling: bool,
    /// Nanoseconds.
    start: u64,
    duration_ms: u64,
    kind: u8,
    status: u8,
    status_message: &'static str,
    attrs: Vec<(String, Value)>,
    resource: usize,
}

fn span_spec() -> impl Strategy<Value = SpanSpec> {
    (
        prop::sample::select(vec![
            "a", "a", "b", "b", "c", "c", "a.x", "b.y", "a b", "a.x.y",
        ]),
        prop::option::of(0usize..12),
        prop::bool::weighted(0.1),
        (0u64..6, 0u64..3),
        0u64..5,
        0u8..6,
        (0u8..3, prop::sample::select(vec!["", "x", "a3"])),
        attributes(),
        0usize..2,
    )
        .prop_map(
            |(
                name,
                parent,
                dangling,
                (start, jitter),
                duration_ms,
                kind,
                (status, status_message),
                attrs,
                resource,
            )| {
                SpanSpec {
                    status_message,
                    name,
                    parent,
                    dangling,
                    start: 1_000_000 * start + 250_000 * jitter,
                    duration_ms,
                    kind,
                    status,
                    attrs,
                    resource,
                }
            },
        )
}

fn trace() -> impl Strategy<Value = Trace> {
    (
        prop::collection::vec(span_spec(), 0..12),
        attributes(),
        prop::bool::ANY,
    )
        .prop_map(|(specs, res_attrs, shuffle_ids)| {
            let n = specs.len() as u64;
            let id = |i: usize| {
                // Unique ids whose byte order differs from arrival order half of the time.
                let v = if shuffle_ids {
                    n - i as u64
                } else {
                    i as u64 + 1
                };
                SpanId(v.to_be_bytes())
            };
            let spans = specs
                .iter()
                .enumerate()
                .map(|(i, s)| Span {
                    span_id: id(i),
                    parent_span_id: if s.dangling {
                        Some(SpanId([0xee; 8]))
                    } else {
                        // Any span may be a parent, later ones and itself included: cycles
                        // are possible.
                        s.parent.filter(|&p| p < specs.len()).map(id)
                    },
                    name: s.name.to_string(),
                    kind: SpanKind::from_otlp(s.kind as i32),
                    status: StatusCode::from_otlp(s.status as i32),
                    status_message: s.status_message.to_string(),
                    start_unix_nano: s.start,
                    end_unix_nano: s.start + 1_000_000 * s.duration_ms,
                    attributes: s.attrs.clone(),
                    resource: s.resource,
                })
                .collect();
            let mut second = res_attrs;
            second.insert(0, ("service.name".to_string(), Value::str("svc2")));
            Trace {
                trace_id: TraceId([7; 16]),
                spans,
                resources: vec![
                    Resource {
                        attributes: vec![
                            ("service.name".into(), Value::str("svc1")),
                            ("k".into(), Value::Int(1)),
                        ],
                    },
                    Resource { attributes: second },
                ],
            }
        })
}

/// docs/language.md, "Complete traces", as plainly as it can be said: one root, and
/// every span reaches it by parent links (at most as many links as there are spans).
fn reference_complete(t: &Trace) -> bool {
    let roots = t
        .spans
        .iter()
        .filter(|s| s.parent_span_id.is_none())
        .count();
    roots == 1
        && t.spans.iter().all(|s| {
            let mut at = s;
            for _ in 0..=t.spans.len() {
                match at.parent_span_id {
                    None => return true,
                    Some(p) => match t.spans.iter().find(|x| x.span_id == p) {
                        Some(parent) => at = parent,
                        None => return false,
                    },
                }
            }
            false
        })
}

// ------------------------------------------------------------------ the property

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), max_global_rejects: 1_000_000, ..ProptestConfig::default() })]

    #[test]
    fn vm_agrees_with_reference(conditions in prop::collection::vec(condition(), 1..4), traces in prop::collection::vec(trace(), 1..3), reloaded in prop::sample::select(vec![0u8, 1, 2])) {
        let forms: Vec<Form> = conditions
            .iter()
            .map(|c| check_text(c).map(|k| k.form).map_err(|e| format!("{c}: {e:?}")))
            .collect::<Result<_, _>>()
            .map_err(|e| TestCaseError::fail(format!("generated rule did not check: {e}")))?;
        let mut compiler = Compiler::new();
        let programs: Vec<_> = forms.iter().map(|f| compiler.compile(f)).collect();
        let code = compiler.finish();
        let projection = Arc::new(projection_of(&code, Vec::<String>::new()));
        let lookup = Lookup::new(&code, projection.clone());
        // Before a reload: every key and the status message, or none at all.
        let before = match reloaded {
            1 => Some(Arc::new(Projection::new(["k", "n", "s", "flag", "arr", "other", "noise", "j"], true))),
            2 => Some(Arc::new(Projection::new(["other"], false))),
            _ => None,
        };
        for t in &traces {
            let p = match &before {
                None => projected::Trace::project(t, &projection),
                Some(old) => projected::Trace::project(t, old).reproject(&projection),
            };
            if reloaded == 2 {
                // Keys only the new rules read are absent from spans held across the reload.
                continue;
            }
            // Completeness, the same in both representations and as defined.
            prop_assert_eq!(t.is_complete(), reference_complete(t), "plain {:#?}", t);
            prop_assert_eq!(p.is_complete(), reference_complete(t), "projected {:#?}", t);
            let mut view = View::new(&code, &lookup, &p);
            for (i, (form, prog)) in forms.iter().zip(&programs).enumerate() {
                let expected = reference::evaluate(form, t);
                let got = view.run(prog);
                // `own` joins here compare values of one kind: the greedy must find a
                // maximum matching.
                prop_assert!(
                    reference::own_greedy_is_maximum(form, t),
                    "rule {:?}: the greedy leaves more bindings than a maximum matching on {:#?}",
                    conditions[i],
                    t
                );
                prop_assert_eq!(&got, &expected, "rule {:?} on trace {:#?}", conditions[i], t);
                // Replay from a store fetches only traces with a span of the names a rule
                // needs: a trace it applies to (an invariant) or fires on must have one.
                let counts = match form {
                    Form::Invariant { .. } => expected.applies,
                    Form::Violation(_) => expected.fired,
                };
                if let (true, Some(names)) = (counts, required_names(form)) {
                    prop_assert!(
                        t.spans.iter().any(|s| names.iter().any(|n| n.matches(&s.name))),
                        "rule {:?} counts on a trace with none of {:?}: {:#?}", conditions[i], names, t
                    );
                }
            }
        }
    }
}
