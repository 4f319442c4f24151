//! Every example of the language reference (docs/language.md), each a test of what it says it means.

use betrace::engine::judge;
use betrace::engine::signal::Mode;
use betrace::rules::compact;
use betrace::RuleSet;

/// Loads a one-rule set with the given condition.
fn rules(condition: &str) -> RuleSet {
    let text = format!(
        "rules:\n  - id: r\n    name: R\n    condition: |\n      {}\n",
        condition.replace('\n', "\n      ")
    );
    match RuleSet::from_text("spec.yaml", &text) {
        Ok((r, _)) => r,
        Err(report) => panic!("{condition:?} did not load:\n{}", report.render()),
    }
}

fn trace(yaml: &str) -> betrace::trace::Trace {
    compact::from_yaml(yaml, 1).unwrap_or_else(|e| panic!("bad trace: {e}"))
}

fn fires(condition: &str, yaml: &str) -> bool {
    let r = rules(condition);
    !r.judge(&trace(yaml)).is_empty()
}

/// The names of the trigger spans, first trigger span first.
fn triggers(condition: &str, yaml: &str) -> Vec<String> {
    let r = rules(condition);
    let t = trace(yaml);
    let fired = r.judge(&t);
    assert_eq!(fired.len(), 1, "{condition} should fire");
    fired[0]
        .1
        .triggers
        .iter()
        .map(|&i| t.spans[i].name.clone())
        .collect()
}

/// The trigger spans' ids (indexes into the trace) of a rule that fires.
fn trigger_ids(condition: &str, yaml: &str) -> Vec<usize> {
    let r = rules(condition);
    let fired = r.judge(&trace(yaml));
    assert_eq!(fired.len(), 1, "{condition} should fire");
    fired[0].1.triggers.clone()
}

fn load_error(text: &str) -> String {
    match RuleSet::from_text("bad.yaml", text) {
        Ok(_) => panic!("should not load:\n{text}"),
        Err(report) => report.render(),
    }
}

const RESERVED_THEN_CHARGED: &str = "
- name: inventory.reserve
- name: payment.charge
  attributes: { amount: 59.99 }
";
const CHARGE_ONLY: &str = "- name: payment.charge\n  attributes: { amount: 59.99, payment_intent_id: pi_1, order_id: ord_1 }";

// ------------------------------------------------------------------ §1 rule files

const SPEC_RULE_FILE: &str = r#"
rules:
  - id: payment-requires-inventory          # required, unique across all loaded files, [A-Za-z0-9_.-]+
    name: Payment requires inventory reservation   # required
    description: Charges must follow a reservation.  # optional
    severity: critical                       # critical | high | medium | low | info (default medium)
    enabled: true                            # default true; false: loaded and checked, never evaluated
    tags: [ecommerce]                        # optional
    compliance: { framework: SOC2, control: CC7.2 }   # optional, copied into every signal
    condition: |                             # required: the rule's expression, section 2
      when { payment.charge } always { inventory.reserve }
    signal:                                  # optional
      type: PAYMENT_WITHOUT_INVENTORY        # default: the id in UPPER_SNAKE
      message: "charge {payment_intent_id} without reservation"   # {key} = attribute of the first trigger span; missing -> empty
      context: [order_id, payment_intent_id] # attributes copied from the trigger spans into the signal
    examples:                                # optional; run by `betrace test`
      - name: reserved then charged
        expect: pass                         # pass | violation
        trace:                               # compact trace, section 5
          - name: inventory.reserve
          - name: payment.charge
            attributes: { amount: 59.99 }
"#;

#[test]
fn spec_rule_file_loads_and_its_example_passes() {
    let (r, warnings) = RuleSet::from_text("spec.yaml", SPEC_RULE_FILE).unwrap();
    assert!(warnings.items.is_empty());
    let rule = &r.rules()[0];
    assert_eq!(rule.def.severity.as_str(), "critical");
    assert_eq!(rule.def.tags, vec!["ecommerce"]);
    let ex = &rule.def.examples[0];
    assert!(
        r.judge(&ex.trace).is_empty(),
        "reserved then charged passes"
    );
}

#[test]
fn spec_rule_file_signal_fields() {
    let (r, _) = RuleSet::from_text("spec.yaml", SPEC_RULE_FILE).unwrap();
    let signals = judge::signals(&r, &trace(CHARGE_ONLY), Mode::Replay);
    assert_eq!(signals.len(), 1);
    let j = signals[0].to_json();
    assert_eq!(j["rule_id"], "payment-requires-inventory");
    assert_eq!(j["rule_name"], "Payment requires inventory reservation");
    assert_eq!(j["severity"], "critical");
    assert_eq!(j["signal_type"], "PAYMENT_WITHOUT_INVENTORY");
    assert_eq!(j["message"], "charge pi_1 without reservation");
    assert_eq!(
        j["context"],
        serde_json::json!({"order_id": "ord_1", "payment_intent_id": "pi_1"})
    );
    assert_eq!(
        j["compliance"],
        serde_json::json!({"framework": "SOC2", "control": "CC7.2"})
    );
    assert_eq!(j["mode"], "replay");
    assert_eq!(j["service"], "test");
    assert_eq!(j["time"], "2024-01-01T00:00:00.000000000Z");
    assert_eq!(j["trace_id"].as_str().unwrap().len(), 32);
    assert_eq!(j["span_id"].as_str().unwrap().len(), 16);
    assert_eq!(j["span_ids"], serde_json::json!([j["span_id"]]));
}

#[test]
fn missing_message_attribute_renders_empty() {
    let (r, _) = RuleSet::from_text("spec.yaml", SPEC_RULE_FILE).unwrap();
    let s = judge::signals(&r, &trace("- name: payment.charge"), Mode::Live);
    assert_eq!(s[0].message, "charge  without reservation");
    assert!(s[0].context.is_empty());
    assert_eq!(s[0].to_json()["mode"], "live");
}

#[test]
fn severity_defaults_to_medium_and_signal_type_to_upper_snake_id() {
    let r = rules("payment.charge");
    assert_eq!(r.rules()[0].def.severity.as_str(), "medium");
    let (r, _) = RuleSet::from_text(
        "x.yaml",
        "rules:\n  - {id: pay.retry-idem_1, name: N, condition: a}\n",
    )
    .unwrap();
    assert_eq!(r.rules()[0].def.signal_type, "PAY_RETRY_IDEM_1");
}

#[test]
fn disabled_rules_are_checked_but_never_evaluated() {
    let (r, _) = RuleSet::from_text(
        "x.yaml",
        "rules:\n  - {id: r, name: N, enabled: false, condition: payment.charge}\n",
    )
    .unwrap();
    assert!(r.judge(&trace(CHARGE_ONLY)).is_empty());
    let err = load_error("rules:\n  - {id: r, name: N, enabled: false, condition: \"payment.charge.where(span:duration > 1)\"}\n");
    assert!(err.contains("duration"), "{err}");
}

#[test]
fn loading_errors_name_file_rule_line_and_column() {
    let text = "rules:\n  - id: ok-rule\n    name: fine\n    condition: a\n  - id: broken\n    name: B\n    condition: |\n      when { a } always { b.where(x >) }\n";
    let err = load_error(text);
    assert!(err.contains("bad.yaml:8:"), "{err}");
    assert!(err.contains("rule `broken`"), "{err}");
    assert!(err.contains('^'), "{err}");
    assert!(
        load_error("rules:\n  - {id: a, name: A, condition: x, bogus: 1}\n")
            .contains("unknown field `bogus`")
    );
    assert!(load_error("rules:\n  - {name: A, condition: x}\n").contains("missing field `id`"));
    assert!(load_error("rules:\n  - {id: a, condition: x}\n").contains("missing field `name`"));
    assert!(load_error("rules:\n  - {id: a, name: A}\n").contains("missing field `condition`"));
    assert!(load_error(
        "rules:\n  - {id: a, name: A, condition: x}\n  - {id: a, name: B, condition: y}\n"
    )
    .contains("duplicate rule id `a`"));
    assert!(load_error("rules:\n  - {id: \"a b\", name: A, condition: x}\n").contains("rule id"));
    assert!(load_error("rulez: []\n").contains("unknown key `rulez`"));
}

#[test]
fn loading_is_all_or_nothing() {
    let text = "rules:\n  - {id: good, name: G, condition: a}\n  - {id: bad, name: B, condition: \"a.where(\"}\n";
    assert!(RuleSet::from_text("x.yaml", text).is_err());
}

// ------------------------------------------------------------------ §2 the two forms

#[test]
fn invariant_form_fires_when_always_is_false() {
    let c = "when { payment.charge } always { inventory.reserve }";
    assert!(!fires(c, RESERVED_THEN_CHARGED));
    assert!(fires(c, CHARGE_ONLY));
    assert!(
        !fires(c, "- name: inventory.reserve"),
        "the rule applies only where `when` holds"
    );
}

#[test]
fn invariant_form_fires_when_never_is_true() {
    let c = "when { payment.charge } never { payment.refund }";
    assert!(!fires(c, CHARGE_ONLY));
    assert!(fires(c, "- name: payment.charge\n- name: payment.refund"));
    let both = "when { payment.charge } always { inventory.reserve } never { payment.refund }";
    assert!(fires(
        both,
        "- name: payment.charge\n- name: inventory.reserve\n- name: payment.refund"
    ));
    assert!(fires(both, CHARGE_ONLY));
    assert!(!fires(both, RESERVED_THEN_CHARGED));
}

#[test]
fn violation_form_fires_when_true() {
    let c = "trace.has(payment.charge) and not trace.has(payment.fraud_check)";
    assert!(fires(c, CHARGE_ONLY));
    assert!(!fires(
        c,
        "- name: payment.charge\n- name: payment.fraud_check"
    ));
}

#[test]
fn conjunction_of_has_is_a_warning_with_the_rewrite() {
    let text = "rules:\n  - id: r\n    name: R\n    condition: trace.has(A) and trace.has(B)\n";
    let (_, warnings) = RuleSet::from_text("w.yaml", text).unwrap();
    assert_eq!(warnings.items.len(), 1);
    let out = warnings.render();
    assert!(out.contains("warning"), "{out}");
    assert!(
        out.contains("when { trace.has(A) } always { trace.has(B) }"),
        "{out}"
    );
}

// ------------------------------------------------------------------ §2.1 selectors

#[test]
fn selectors_match_exact_quoted_glob_and_any() {
    let t = "- name: \"GET /api/users/{id}\"\n- name: payment.charge\n- name: HTTP GET\n- name: \"HTTP *\"";
    assert!(fires("payment.charge", t));
    assert!(!fires("payment", t), "a dotted name matches exactly");
    assert!(fires("\"GET /api/users/{id}\"", t));
    assert!(fires("payment.*", t));
    assert!(!fires("payment.*", "- name: payments"));
    assert_eq!(triggers("\"HTTP *\"", t), vec!["HTTP GET", "HTTP *"]);
    assert_eq!(
        triggers("\"HTTP \\*\"", t),
        vec!["HTTP *"],
        "\\* is a literal asterisk"
    );
    assert_eq!(triggers("*", t).len(), 4);
    assert!(fires("\"say \\\"hi\\\"\"", "- name: 'say \"hi\"'"));
}

#[test]
fn chained_wheres_apply_to_the_same_span() {
    let t = "- name: x\n  attributes: { a: 1 }\n- name: x\n  attributes: { b: 2 }";
    assert!(!fires("x.where(a == 1).where(b == 2)", t));
    assert!(fires(
        "x.where(a == 1).where(b == 2)",
        "- name: x\n  attributes: { a: 1, b: 2 }"
    ));
}

// ------------------------------------------------------------------ §2.2 boolean terms

#[test]
fn bare_selector_and_trace_has_are_the_same() {
    let t = "- name: x\n  attributes: { a: 1 }";
    for c in [
        "x",
        "trace.has(x)",
        "trace.has(x).where(a == 1)",
        "x.where(a == 1)",
    ] {
        assert!(fires(c, t), "{c}");
    }
    assert!(!fires("trace.has(x).where(a == 2)", t));
}

#[test]
fn count_compares_with_every_operator_and_either_side() {
    let t = "- name: approval.received\n- name: approval.received\n- name: x";
    for (c, want) in [
        ("count(approval.received) == 2", true),
        ("trace.count(approval.received) >= 2", true),
        ("count(approval.received) > 2", false),
        ("count(approval.received) != 2", false),
        ("count(approval.received) < 3", true),
        ("count(approval.received) <= 1", false),
        ("2 == count(approval.received)", true),
        ("count(approval.received) > count(x)", true),
        ("count(missing) == 0", true),
    ] {
        assert_eq!(fires(c, t), want, "{c}");
    }
}

#[test]
fn distinct_counts_values_and_ignores_spans_without_the_key() {
    let t = "
- name: payment.charge
  attributes: { payment_intent_id: pi_1, attempt: 1 }
- name: payment.charge
  attributes: { payment_intent_id: pi_2, attempt: 2 }
- name: payment.charge
  attributes: { attempt: 3 }
";
    assert!(fires("distinct(payment.charge, payment_intent_id) == 2", t));
    assert!(
        fires(
            "trace.count(payment.charge).where(payment_intent_id == unique) == 2",
            t
        ),
        "the seeds' spelling"
    );
    let idem = "when { payment.charge.where(attempt > 1) } always { trace.count(payment.charge).where(payment_intent_id == unique) == 1 }";
    assert!(
        fires(idem, t),
        "a retry with a new payment_intent_id is the OmniCart incident"
    );
    let reused = "
- name: payment.charge
  attributes: { payment_intent_id: pi_1, attempt: 1 }
- name: payment.charge
  attributes: { payment_intent_id: pi_1, attempt: 2 }
";
    assert!(!fires(idem, reused));
}

#[test]
fn before_compares_earliest_starts_strictly() {
    let t = "
- name: inventory.reserve
  start: 0ms
- name: payment.charge
  start: 5ms
- name: inventory.reserve
  start: 10ms
";
    assert!(fires("inventory.reserve before payment.charge", t));
    assert!(!fires("payment.charge before inventory.reserve", t));
    assert!(
        fires("payment.charge after inventory.reserve", t),
        "B after A is A before B"
    );
    assert!(
        !fires(
            "a before b",
            "- name: a\n  start: 0ms\n- name: b\n  start: 0ms"
        ),
        "strictly before"
    );
    assert!(!fires("a before b", "- name: a"), "both must match");
}

#[test]
fn within_follows_ancestors_and_is_true_when_nothing_matches() {
    let t = "
- name: http.request
  children:
    - name: handler
      children:
        - name: db.query
- name: db.query
";
    assert!(
        !fires("db.query within http.request", t),
        "the second db.query has no such ancestor"
    );
    let nested = "- name: http.request\n  children:\n    - name: handler\n      children:\n        - name: db.query";
    assert!(fires("db.query within http.request", nested));
    assert!(
        fires("nothing within http.request", nested),
        "true when nothing matches A"
    );
    assert!(
        !fires("db.query child_of http.request", nested),
        "child_of is the direct parent only"
    );
    assert!(fires("db.query child_of handler", nested));
    assert!(fires("nothing child_of handler", nested));
}

#[test]
fn not_and_or_precedence() {
    let t = "- name: a";
    assert!(fires("not b and a", t), "not binds tighter than and");
    assert!(fires("a or b and c", t), "and binds tighter than or");
    assert!(!fires("(a or b) and c", t));
    assert!(fires("a // a comment\n and not c", t));
}

// ------------------------------------------------------------------ §2.3 predicates

#[test]
fn attribute_references_fall_back_to_the_resource() {
    let t = "- name: x\n  attributes: { k: span }\n  resource: { k: res, r: only }";
    assert!(fires("x.where(k == span)", t));
    assert!(fires("x.where(span.k == span)", t));
    assert!(fires("x.where(resource.k == res)", t));
    assert!(
        fires("x.where(r == only)", t),
        "unscoped falls back to the resource"
    );
    assert!(!fires("x.where(span.r == only)", t));
    assert!(fires("x.where(\"k\" == span)", t));
    assert!(fires("x.where(service.name == test)", t));
    assert!(fires("x.where(resource.service.name == test)", t));
}

#[test]
fn intrinsics() {
    let t = "
- name: GET /checkout
  service: shop
  kind: server
  status: error
  duration: 300ms
  children:
    - name: db
      duration: 10ms
";
    assert!(fires("\"GET /checkout\".where(span:duration > 250ms)", t));
    assert!(fires(
        "db.where(span:duration < 250ms and span:status == unset)",
        t
    ));
    assert!(fires(
        "*.where(span:status == error and span:kind == server)",
        t
    ));
    assert!(fires("*.where(span:name == \"GET /checkout\")", t));
    assert!(fires(
        "db.where(trace:rootName == \"GET /checkout\" and trace:rootService == shop)",
        t
    ));
    assert!(fires("db.where(trace:duration >= 300ms)", t));
    assert!(fires("db.where(span:kind in [internal, client])", t));
    assert!(!fires("db.where(span:statusMessage == x)", t));
}

#[test]
fn literals_of_every_kind() {
    let t = "- name: x\n  attributes: { i: 3, f: 2.5, b: true, s: stripe, q: \"a b\", d: 2s, l: [1, two] }";
    for c in [
        "x.where(i == 3)",
        "x.where(i == 3.0)",
        "x.where(f > 2)",
        "x.where(b == true)",
        "x.where(b)",
        "x.where(s == stripe)",
        "x.where(q == \"a b\")",
        "x.where(d == 2s)",
        "x.where(d > 1500ms)",
        "x.where(i in [1, 2, 3])",
        "x.where(s in [paypal, \"stripe\"])",
        "x.where(l contains 1)",
        "x.where(l contains two)",
        "x.where(q contains \" \")",
        "x.where(exists(q))",
        "x.where(not exists(missing))",
        "x.where(s matches \"str.*\")",
    ] {
        assert!(fires(c, t), "{c}");
    }
    assert!(
        !fires("x.where(s matches \"trip\")", t),
        "matches is anchored at both ends"
    );
    assert!(!fires("x.where(i in [1, 2])", t));
}

#[test]
fn attribute_against_attribute_of_the_same_span() {
    let t = "- name: http.request\n  attributes: { duration_ms: 900, timeout_ms: 500 }";
    assert!(fires(
        "http.request.where(duration_ms > span.timeout_ms)",
        t
    ));
    assert!(!fires(
        "http.request.where(duration_ms < span.timeout_ms)",
        t
    ));
    assert!(!fires("http.request.where(duration_ms > span.missing)", t));
}

#[test]
fn strings_against_numbers() {
    let t = "- name: x\n  attributes: { code: \"503\", word: abc, n: 503 }";
    assert!(fires("x.where(code >= 500)", t), "\"503\" reads as 503");
    assert!(fires("x.where(code in [502, 503])", t));
    assert!(fires("x.where(n == \"503\")", t));
    assert!(!fires("x.where(word >= 500)", t), "\"abc\" >= 500 is false");
    assert!(
        !fires("x.where(word != 500)", t),
        "\"abc\" != 500 is false too"
    );
}

#[test]
fn mixed_types_and_missing_attributes_are_false() {
    let t = "- name: x\n  attributes: { flag: true }";
    assert!(!fires("x.where(flag == 1)", t));
    assert!(!fires("x.where(flag != 1)", t));
    assert!(
        !fires("x.where(k != v)", t),
        "a comparison on an absent attribute is false, != included"
    );
    assert!(
        fires("x.where(not (k == v))", t),
        "not (k == v) differs from k != v on spans without k"
    );
}

#[test]
fn compiler_visible_type_errors_are_load_errors() {
    for c in [
        "x.where(span:duration > \"slow\")",
        "x.where(k matches 5)",
        "x.where(k matches \"(\")",
        "x.where(span:status == broken)",
        "x.where(span:nope == 1)",
        "distinct(x, [a, b]) > 1",
        "x.where(k > true)",
    ] {
        let text = format!("rules:\n  - id: r\n    name: R\n    condition: '{c}'\n");
        assert!(
            RuleSet::from_text("t.yaml", &text).is_err(),
            "{c} should be refused"
        );
    }
}

#[test]
fn never_names_the_spans_where_its_filter_held() {
    // dsl §3: in `when { S } never { S.where(p) }` the trigger spans are the `S` where `p`
    // holds — not every `S`, and not the first `S` of the trace.
    let t = "
- name: db.query
  start: 1ms
  attributes: { rows: 10 }
- name: db.query
  start: 2ms
  attributes: { rows: 5000 }
- name: db.query
  start: 3ms
  attributes: { rows: 20 }
";
    let ids = trigger_ids("when { db.query } never { db.query.where(rows > 1000) }", t);
    assert_eq!(ids.len(), 1, "only the query with too many rows: {ids:?}");
    let all = trigger_ids("when { db.query } always { missing }", t);
    assert_eq!(all.len(), 3);
    assert_eq!(ids[0], all[1], "the second query, the one with 5000 rows");
}

#[test]
fn reserved_words_must_be_quoted_as_span_names() {
    let err = load_error("rules:\n  - id: r\n    name: R\n    condition: count.started\n");
    assert!(err.contains("reserved"), "{err}");
    assert!(fires("\"count.started\"", "- name: count.started"));
}

// ------------------------------------------------------------------ §3 what a rule reports

#[test]
fn trigger_spans_are_the_spans_that_broke_the_rule() {
    let t = "
- name: payment.charge
  start: 5ms
- name: payment.refund
  start: 9ms
- name: audit.log
  start: 1ms
";
    // Fired by `never`: the spans `never` matched, not those of `when` — whether or not
    // `always` failed too.
    assert_eq!(
        triggers("when { payment.charge } never { payment.refund }", t),
        vec!["payment.refund"]
    );
    assert_eq!(
        triggers(
            "when { payment.charge } always { missing } never { payment.refund }",
            t
        ),
        vec!["payment.refund"]
    );
    // Fired because `always` failed: the spans of `when`.
    assert_eq!(
        triggers(
            "when { payment.charge } always { missing } never { nothing }",
            t
        ),
        vec!["payment.charge"]
    );
    assert_eq!(
        triggers("when { payment.charge } always { missing }", t),
        vec!["payment.charge"]
    );
    assert_eq!(
        triggers("payment.charge and not missing", t),
        vec!["payment.charge"]
    );
    assert_eq!(
        triggers("not not audit.log", t),
        vec!["audit.log"],
        "an even number of nots is positive"
    );
    assert_eq!(
        triggers(
            "count(payment.charge) > 0 and audit.log before payment.refund",
            t
        ),
        vec!["audit.log", "payment.charge", "payment.refund"]
    );
}

#[test]
fn first_trigger_is_earliest_ties_by_lowest_span_id() {
    let t = "
- name: b
  span_id: \"0000000000000002\"
  start: 3ms
- name: a
  span_id: \"0000000000000009\"
  start: 1ms
- name: c
  span_id: \"0000000000000001\"
  start: 1ms
";
    let r = rules("a or b or c");
    let s = judge::signals(&r, &trace(t), Mode::Replay);
    assert_eq!(s[0].span_id.to_string(), "0000000000000001");
    let ids: Vec<String> = s[0].span_ids.iter().map(ToString::to_string).collect();
    assert_eq!(
        ids,
        vec!["0000000000000001", "0000000000000009", "0000000000000002"]
    );
}

#[test]
fn without_trigger_spans_the_root_span_is_reported() {
    let t = "- name: checkout\n  start: 5ms\n  children:\n    - name: step\n- name: later\n  start: 9ms";
    let r = rules("count(payment.charge) == 0");
    let tr = trace(t);
    let s = judge::signals(&r, &tr, Mode::Replay);
    assert_eq!(s.len(), 1, "one signal per (rule, trace)");
    let root = tr.spans.iter().find(|sp| sp.name == "checkout").unwrap();
    assert_eq!(s[0].span_id, root.span_id);
}

#[test]
fn context_reads_span_then_resource() {
    let text = "rules:\n  - id: r\n    name: R\n    condition: x\n    signal:\n      message: \"{k} on {service.name}\"\n      context: [k, service.name, absent]\n";
    let (r, _) = RuleSet::from_text("c.yaml", text).unwrap();
    let s = judge::signals(
        &r,
        &trace("- name: x\n  service: shop\n  attributes: { k: 7 }"),
        Mode::Replay,
    );
    assert_eq!(s[0].message, "7 on shop");
    assert_eq!(
        s[0].to_json()["context"],
        serde_json::json!({"k": 7, "service.name": "shop"})
    );
}

// ------------------------------------------------------------------ §2.2.1 time bounds and values across spans

const FRAUD_THEN_CHARGES: &str = "
- name: fraud.check
  start: 0ms
- name: payment.charge
  start: 150ms
- name: payment.charge
  start: 260ms
";

#[test]
fn before_within_bounds_every_b_by_its_nearest_a() {
    // Each B needs an A starting before it by at most D: the second charge is 260 ms
    // after the only check.
    assert!(!fires(
        "fraud.check before payment.charge within 200ms",
        FRAUD_THEN_CHARGES
    ));
    assert!(fires(
        "fraud.check before payment.charge within 300ms",
        FRAUD_THEN_CHARGES
    ));
    // `B after A within D` is the same.
    assert!(fires(
        "payment.charge after fraud.check within 260ms",
        FRAUD_THEN_CHARGES
    ));
    assert!(!fires(
        "payment.charge after fraud.check within 259ms",
        FRAUD_THEN_CHARGES
    ));
    // A second check close to the second charge satisfies it.
    let two_checks = format!("{FRAUD_THEN_CHARGES}- name: fraud.check\n  start: 200ms\n");
    assert!(fires(
        "fraud.check before payment.charge within 200ms",
        &two_checks
    ));
    // Strictly before: an A starting with B does not count; without a bound it is the
    // plain `before`.
    let same = "- name: a\n  start: 5ms\n- name: b\n  start: 5ms\n";
    assert!(!fires("a before b within 1s", same));
    assert!(!fires("a before b", same));
    assert!(fires(
        "fraud.check before payment.charge",
        FRAUD_THEN_CHARGES
    ));
    // Both must match.
    assert!(!fires(
        "missing before payment.charge within 1h",
        FRAUD_THEN_CHARGES
    ));
    // `A within B` keeps its structural meaning.
    assert!(fires(
        "db.query within http.request",
        "- name: http.request\n  children:\n    - name: db.query\n"
    ));
}

#[test]
fn within_after_before_takes_a_duration() {
    for (c, says) in [
        ("a before b within c", "takes a duration"),
        ("a before b within 200", "takes a duration"),
        ("a within b within 2s", "follows only `before` or `after`"),
    ] {
        let err = load_error(&format!(
            "rules:\n  - id: r\n    name: R\n    condition: '{c}'\n"
        ));
        assert!(err.contains(says) && err.contains('^'), "{c}: {err}");
    }
}

const REFUNDS: &str = "
- name: payment.charge
  attributes: { amount: 100 }
- name: payment.refund
  attributes: { amount: 60 }
- name: payment.refund
  attributes: { amount: \"30.5\" }
- name: payment.refund
  attributes: { amount: abc }
";

#[test]
fn aggregates_read_numbers_and_numeric_strings() {
    // 60 + 30.5 (a string that reads as a number); "abc" is not a number and is left out.
    assert!(fires("sum(payment.refund, amount) == 90.5", REFUNDS));
    assert!(fires(
        "sum(payment.refund, amount) <= sum(payment.charge, amount)",
        REFUNDS
    ));
    assert!(fires("min(payment.refund, amount) == 30.5", REFUNDS));
    assert!(fires("max(payment.refund, amount) == 60", REFUNDS));
    assert!(fires("avg(payment.refund, amount) == 45.25", REFUNDS));
    // `sum` over nothing is 0; `min`/`max`/`avg` over nothing have no value, and a
    // comparison with no value is false whatever the operator.
    assert!(fires("sum(missing, amount) == 0", REFUNDS));
    for f in ["min", "max", "avg"] {
        for op in ["==", "!=", "<", ">="] {
            assert!(
                !fires(&format!("{f}(missing, amount) {op} 0"), REFUNDS),
                "{f} {op}"
            );
            assert!(!fires(
                &format!("{f}(payment.refund, nope) {op} 0"),
                REFUNDS
            ));
        }
    }
    // Numeric terms compare in any combination.
    assert!(!fires(
        "count(payment.refund) > avg(payment.refund, amount)",
        REFUNDS
    ));
    assert!(fires(
        "count(payment.refund) < max(payment.refund, amount)",
        REFUNDS
    ));
}

#[test]
fn integers_sum_exactly_until_they_overflow() {
    let big = "
- name: x
  attributes: { n: 9223372036854775807 }
- name: x
  attributes: { n: 1 }
";
    // Overflow: a float (2^63), not a wrapped negative number.
    assert!(fires("sum(x, n) > 0", big));
    assert!(fires("sum(x, n) > 9223372036854775000", big));
    let exact = "
- name: x
  attributes: { n: 9007199254740993 }
- name: x
  attributes: { n: 0 }
";
    // 2^53 + 1 is not a float: summed exactly it equals itself.
    assert!(fires("sum(x, n) == 9007199254740993", exact));
    assert!(!fires("sum(x, n) == 9007199254740992", exact));
}

#[test]
fn durations_aggregate_and_compare_only_with_durations() {
    let t = "
- name: llm.call
  duration: 12s
- name: llm.call
  duration: 31s
- name: db.query
  duration: 40ms
";
    assert!(fires("max(llm.call, span:duration) > 30s", t));
    assert!(!fires("max(llm.call, span:duration) < 30s", t));
    assert!(fires("sum(llm.call, span:duration) == 43s", t));
    assert!(fires("avg(llm.call, span:duration) == 21500ms", t));
    assert!(fires("min(db.query, span:duration) < 1s", t));
    assert!(fires("max(llm.call, trace:duration) >= 31s", t));
    for c in [
        "max(llm.call, span:duration) > 30",
        "30 < max(llm.call, span:duration)",
        "count(llm.call) > 2s",
    ] {
        let err = load_error(&format!(
            "rules:\n  - id: r\n    name: R\n    condition: '{c}'\n"
        ));
        assert!(
            err.contains("a duration compared with a plain number") && err.contains('^'),
            "{c}: {err}"
        );
    }
}

#[test]
fn aggregates_refuse_what_can_never_be_a_number() {
    for (c, says) in [
        ("sum(x, span:name) > 1", "`span:name` is never a number"),
        ("avg(x, span:status) > 1", "`span:status` is never a number"),
        (
            "sum(x, [a, b]) > 1",
            "`sum` takes one attribute, not a list",
        ),
        ("sum > 1", "expected"),
        ("when { max } always { b }", "`max` is a reserved word"),
    ] {
        let err = load_error(&format!(
            "rules:\n  - id: r\n    name: R\n    condition: '{c}'\n"
        ));
        assert!(err.contains(says) && err.contains('^'), "{c}: {err}");
    }
    // Quoted, the new reserved words are span names again.
    assert!(fires("\"avg\"", "- name: avg"));
}

#[test]
fn selectors_inside_aggregates_are_trigger_selectors() {
    assert_eq!(
        triggers(
            "sum(payment.refund, amount) < sum(payment.charge, amount)",
            REFUNDS
        ),
        vec![
            "payment.charge",
            "payment.refund",
            "payment.refund",
            "payment.refund"
        ]
    );
}

// ------------------------------------------------------------------ §4 complete traces

fn skip_rule(condition: &str) -> RuleSet {
    let text = format!(
        "rules:\n  - id: r\n    name: R\n    incomplete: skip\n    condition: '{condition}'\n"
    );
    RuleSet::from_text("spec.yaml", &text).unwrap().0
}

#[test]
fn a_trace_is_complete_with_one_root_and_every_parent_present() {
    let project = |yaml: &str| rules("x").project(&trace(yaml));
    assert!(project("- name: a\n  children:\n    - name: b\n").is_complete());
    assert!(
        !project("- name: a\n- name: b\n").is_complete(),
        "two roots"
    );
    let mut t = trace("- name: a\n  children:\n    - name: b\n");
    t.spans[1].parent_span_id = Some(betrace::trace::SpanId([9; 8]));
    assert!(
        !rules("x").project(&t).is_complete(),
        "a parent that is not there"
    );
    assert!(
        !rules("x").project(&trace("[]")).is_complete(),
        "no root at all"
    );
}

#[test]
fn incomplete_skip_never_fires_on_an_incomplete_trace_and_every_signal_says_complete() {
    let cut = "- name: checkout\n- name: payment.charge\n"; // two roots: cut off
    let whole = "- name: checkout\n  children:\n    - name: payment.charge\n";
    let skip = skip_rule("when { payment.charge } always { inventory.reserve }");
    assert!(judge::signals(&skip, &trace(cut), Mode::Replay).is_empty());
    let s = judge::signals(&skip, &trace(whole), Mode::Replay);
    assert_eq!(s.len(), 1);
    assert!(s[0].complete);
    assert_eq!(s[0].to_json()["complete"], true);
    // `incomplete: fire` (the default) fires on both, saying which.
    let fire = rules("when { payment.charge } always { inventory.reserve }");
    let s = judge::signals(&fire, &trace(cut), Mode::Replay);
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].to_json()["complete"], false);
    // Unknown values are refused.
    let err =
        load_error("rules:\n  - id: r\n    name: R\n    incomplete: maybe\n    condition: a\n");
    assert!(err.contains("incomplete"), "{err}");
}

// ------------------------------------------------------------------ §2.2.2 per occurrence

/// A trace of top-level spans, each `name@ms` with optional attributes (`k=v`).
fn at(spans: &[&str]) -> String {
    let mut out = String::new();
    for s in spans {
        let (head, attrs) = match s.split_once(' ') {
            Some((h, a)) => (h, a),
            None => (*s, ""),
        };
        let (name, ms) = head.split_once('@').expect("name@ms");
        out.push_str(&format!("- name: {name}\n  start: {ms}ms\n"));
        if !attrs.is_empty() {
            out.push_str(&format!(
                "  attributes: {{ {} }}\n",
                attrs
                    .split(' ')
                    .map(|kv| kv.replacen('=', ": ", 1))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    out
}

/// The verdict of a per-occurrence example: `None` for a pass, else the trigger spans as
/// `name@ms`.
fn verdict(condition: &str, spans: &[&str]) -> Option<Vec<String>> {
    let r = rules(condition);
    let t = trace(&at(spans));
    let fired = r.judge(&t);
    let (_, v) = fired.first()?;
    Some(
        v.triggers
            .iter()
            .map(|&i| {
                let s = &t.spans[i];
                let ms = (s.start_unix_nano - t.start_unix_nano()) / 1_000_000;
                format!("{}@{ms}", s.name)
            })
            .collect(),
    )
}

fn pass(condition: &str, spans: &[&str]) {
    assert_eq!(verdict(condition, spans), None, "{condition} on {spans:?}");
}

fn broke(condition: &str, spans: &[&str], triggers: &[&str]) {
    let got = verdict(condition, spans);
    assert_eq!(
        got.as_deref(),
        Some(&triggers.iter().map(|s| s.to_string()).collect::<Vec<_>>()[..]),
        "{condition} on {spans:?}"
    );
}

const EACH_MODERATED: &str = "when { llm.generate as $g } always { content.moderate after $g }";

#[test]
fn each_generation_is_moderated_after_it() {
    pass(EACH_MODERATED, &["llm.generate@0", "content.moderate@10"]);
    broke(
        EACH_MODERATED,
        &["content.moderate@0", "llm.generate@10"],
        &["llm.generate@10"],
    );
    let second = ["llm.generate@0", "content.moderate@5", "llm.generate@10"];
    broke(EACH_MODERATED, &second, &["llm.generate@10"]);
    // The trace-level form passes it: only the earliest generation is compared.
    pass(
        "when { llm.generate } always { content.moderate after llm.generate }",
        &second,
    );
}

const OWN_MODERATION: &str = "when { llm.generate as $g } always { own content.moderate after $g }";

#[test]
fn own_gives_each_binding_a_partner_of_its_own() {
    pass(
        OWN_MODERATION,
        &[
            "llm.generate@0",
            "llm.generate@5",
            "content.moderate@10",
            "content.moderate@12",
        ],
    );
    // moderate@10 serves generate@0: both windows are open-ended, the earlier start first.
    broke(
        OWN_MODERATION,
        &["llm.generate@0", "llm.generate@5", "content.moderate@10"],
        &["llm.generate@5"],
    );
    // Without `own` both generations are moderated after them.
    pass(
        EACH_MODERATED,
        &["llm.generate@0", "llm.generate@5", "content.moderate@10"],
    );
}

const AUDITED: &str = "when { phi.access as $a } always { audit.log.where(resource_id == $a.resource_id) after $a within 5s }";

#[test]
fn each_access_is_audited_for_its_resource() {
    pass(
        AUDITED,
        &[
            "phi.access@0 resource_id=r1",
            "audit.log@100 resource_id=r1",
        ],
    );
    broke(
        AUDITED,
        &[
            "phi.access@0 resource_id=r1",
            "phi.access@10 resource_id=r2",
            "audit.log@100 resource_id=r1",
        ],
        &["phi.access@10"],
    );
    broke(
        AUDITED,
        &[
            "phi.access@0 resource_id=r1",
            "audit.log@6000 resource_id=r1",
        ],
        &["phi.access@0"],
    );
    // A bound value that is missing makes the join false.
    broke(
        AUDITED,
        &["phi.access@0", "audit.log@100 resource_id=r1"],
        &["phi.access@0"],
    );
}

const BREAKER: &str =
    "when { breaker.open as $o } never { http.call after $o until breaker.close }";

#[test]
fn no_call_after_the_breaker_opened_until_it_closed() {
    pass(
        BREAKER,
        &["breaker.open@0", "breaker.close@10", "http.call@20"],
    );
    broke(
        BREAKER,
        &["breaker.open@0", "http.call@5", "breaker.close@10"],
        &["breaker.open@0"],
    );
    // `until` is exclusive.
    pass(
        BREAKER,
        &["breaker.open@0", "breaker.close@10", "http.call@10"],
    );
    broke(
        BREAKER,
        &["breaker.open@0", "http.call@5"],
        &["breaker.open@0"],
    );
    broke(
        BREAKER,
        &[
            "breaker.open@0",
            "breaker.close@10",
            "breaker.open@20",
            "http.call@25",
        ],
        &["breaker.open@20"],
    );
}

const CACHE_FIRST: &str = "when { db.query as $q } always { cache.check before $q since db.query }";

#[test]
fn each_query_is_preceded_by_a_cache_check_since_the_previous_query() {
    pass(
        CACHE_FIRST,
        &[
            "cache.check@0",
            "db.query@10",
            "cache.check@20",
            "db.query@30",
        ],
    );
    broke(
        CACHE_FIRST,
        &["cache.check@0", "db.query@10", "db.query@30"],
        &["db.query@30"],
    );
}

const DUAL_APPROVAL: &str =
    "when { wire.transfer as $t } always { count(approval.granted before $t) >= 2 }";

#[test]
fn counting_the_spans_in_relation_to_the_bound_one() {
    pass(
        DUAL_APPROVAL,
        &[
            "approval.granted@0",
            "approval.granted@5",
            "wire.transfer@10",
        ],
    );
    broke(
        DUAL_APPROVAL,
        &[
            "approval.granted@0",
            "wire.transfer@10",
            "approval.granted@20",
        ],
        &["wire.transfer@10"],
    );
}

#[test]
fn own_with_a_join_serves_the_window_that_ends_first() {
    // reserve@0 serves charge@10, whose window ends first.
    broke(
        "when { payment.charge as $c } always { own inventory.reserve.where(order_id == $c.order_id) before $c }",
        &[
            "inventory.reserve@0 order_id=o1",
            "payment.charge@10 order_id=o1",
            "payment.charge@20 order_id=o1",
        ],
        &["payment.charge@20"],
    );
}

#[test]
fn a_bound_value_as_a_numeric_term() {
    broke(
        "when { refund as $r } always { sum(payment.charge.where(order_id == $r.order_id), amount) >= $r.amount }",
        &[
            "payment.charge@0 order_id=o1 amount=50",
            "refund@10 order_id=o1 amount=30",
            "refund@20 order_id=o1 amount=60",
        ],
        &["refund@20"],
    );
}

#[test]
fn a_child_of_the_bound_span() {
    let rule = "when { \"GET /api/*\" as $r } always { auth.verify child_of $r }";
    assert!(!fires(
        rule,
        "- name: GET /api/x\n  children:\n    - name: auth.verify\n"
    ));
    assert!(fires(
        rule,
        "- name: GET /api/x\n  children:\n    - name: mw\n      children:\n        - name: auth.verify\n"
    ));
}

#[test]
fn the_tree_around_the_bound_span() {
    let tree = "- name: http\n  children:\n    - name: handler\n      children:\n        - name: db\n        - name: cache\n    - name: db\n";
    // `within $x`: descendants; `around $x`: ancestors; `$x within S`, `$x child_of S`.
    assert!(!fires(
        "when { handler as $h } always { db within $h }",
        tree
    ));
    assert!(fires(
        "when { handler as $h } always { count(db within $h) == 2 }",
        tree
    ));
    assert!(!fires("when { db as $d } always { $d within http }", tree));
    assert!(fires(
        "when { db as $d } always { $d child_of handler }",
        tree
    ));
    assert!(!fires("when { db as $d } always { http around $d }", tree));
    assert!(fires(
        "when { db as $d } always { handler around $d }",
        tree
    ));
}

#[test]
fn a_per_occurrence_signal_reads_the_first_broken_binding() {
    let r = rules("when { llm.generate as $g } always { content.moderate after $g }");
    let t = trace(&at(&[
        "llm.generate@0 model=a",
        "content.moderate@5",
        "llm.generate@10 model=b",
        "llm.generate@20 model=c",
    ]));
    let fired = r.judge(&t);
    assert_eq!(fired.len(), 1, "one signal per rule and trace");
    let names: Vec<_> = fired[0]
        .1
        .triggers
        .iter()
        .map(|&i| t.spans[i].start_unix_nano - t.start_unix_nano())
        .collect();
    assert_eq!(names, vec![10_000_000, 20_000_000]);
}

#[test]
fn misplaced_bindings_and_names_are_located_errors() {
    for (c, code, says) in [
        (
            "when { not (a as $a) } always { b }",
            "E230",
            "only at the top level of `when`",
        ),
        (
            "when { a or b as $b } always { c }",
            "E230",
            "only at the top level",
        ),
        (
            "when { count(a as $a) > 1 } always { b }",
            "E230",
            "only at the top level",
        ),
        (
            "when { a } always { b as $b }",
            "E230",
            "only at the top level",
        ),
        ("a as $a", "E230", "only at the top level"),
        (
            "when { a as $a and b as $b } always { c }",
            "E231",
            "at most one span",
        ),
        (
            "when { a as $a } always { b after $x }",
            "E232",
            "`$x` is not bound",
        ),
        (
            "when { a } always { b.where(k == $a.k) }",
            "E232",
            "`$a` is not bound",
        ),
        (
            "when { a.where(k == $a.k) as $a } always { b }",
            "E233",
            "selector that binds it",
        ),
        (
            "when { a as $a } always { b after $a before c }",
            "E234",
            "cannot be a side",
        ),
        (
            "when { a as $a } never { own b after $a }",
            "E235",
            "top level of `always`",
        ),
        (
            "when { a as $a } always { not own b after $a }",
            "E235",
            "top level of `always`",
        ),
        (
            "when { a as $a } always { own b within $a }",
            "E235",
            "`before $x` or `after $x`",
        ),
        (
            "when { a as $a } always { own b.where(k > $a.k) after $a }",
            "E236",
            "only joined with `==`",
        ),
        (
            "when { a as $a } always { own b.where(k == $a.k or j == 1) after $a }",
            "E236",
            "only joined",
        ),
        (
            "when { a as $a } always { b after $a since c }",
            "E237",
            "`since` cannot follow `after $x`",
        ),
        (
            "when { a as $a } always { b before $a until c }",
            "E237",
            "`until` cannot follow `before $x`",
        ),
        (
            "when { a as $a } always { b within $a within 5s }",
            "E237",
            "takes no time bound",
        ),
        (
            "when { a as $a } always { b.where(k matches $a.k) }",
            "E238",
            "regex",
        ),
        (
            "when { a as $a } always { b.where(k in [$a.k, 1]) }",
            "E108",
            "inside a list",
        ),
    ] {
        let err = load_error(&format!(
            "rules:\n  - id: r\n    name: R\n    condition: '{c}'\n"
        ));
        assert!(
            err.contains(code) && err.contains(says) && err.contains('^'),
            "{c}: {err}"
        );
    }
}

#[test]
fn the_after_trap_is_a_warning_with_the_rewrite() {
    let text = "rules:\n  - id: r\n    name: R\n    condition: 'when { llm.generate } always { content.moderate after llm.generate }'\n";
    let (_, warnings) = RuleSet::from_text("w.yaml", text).expect("loads");
    let shown = warnings.render();
    assert!(shown.contains("W251"), "{shown}");
    assert!(
        shown.contains("when { llm.generate as $w } always { content.moderate after $w }"),
        "{shown}"
    );
    // Written with `trace.has` or other spacing, the same trap.
    for loud in [
        "when { trace.has(llm.generate) } always { llm.generate before content.moderate }",
        "when { a.where(k == 1) } always { c after a.where(k==1) }",
    ] {
        let text = format!("rules:\n  - id: r\n    name: R\n    condition: '{loud}'\n");
        let (_, warnings) = RuleSet::from_text("w.yaml", &text).expect("loads");
        assert!(warnings.render().contains("W251"), "{loud}");
    }
    // Bound, bounded in time, or not about the `when` selector: no warning.
    for quiet in [
        "when { llm.generate as $g } always { content.moderate after $g }",
        "when { llm.generate } always { content.moderate after tool.call }",
        "when { llm.generate } always { content.moderate after llm.generate within 5s }",
    ] {
        let text = format!("rules:\n  - id: r\n    name: R\n    condition: '{quiet}'\n");
        let (_, warnings) = RuleSet::from_text("w.yaml", &text).expect("loads");
        assert!(!warnings.render().contains("W251"), "{quiet}");
    }
}
