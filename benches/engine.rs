//! Criterion benchmarks of the engine core: loading the playbook library (parse, check,
//! compile) and judging whole traces of 10, 100 and 1,000 spans against all of its rules.
//! The reference evaluator is measured beside the VM for scale. `per-occurrence` compares a
//! rule judged per bound span (a scope, a join and `own`) with a trace-level rule over the
//! same traces of 10 … 10,000 spans: the language promises within 2×. Figures:
//! BENCHMARKS.md.

use std::hint::black_box;

use betrace::diagnostic::SourceFile;
use betrace::eval::reference;
use betrace::lang::value::Value;
use betrace::trace::{Resource, Span, SpanId, SpanKind, StatusCode, Trace, TraceId};
use betrace::RuleSet;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

fn library_sources() -> Vec<SourceFile> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/rules");
    betrace::rules::read_sources(&[dir]).expect("examples/rules is readable")
}

/// A trace of `n` spans made of the library's own example spans, so that rules find the
/// names they look for, as in production traffic.
fn trace_of(rules: &RuleSet, n: usize) -> Trace {
    let mut out = Trace::default();
    let examples: Vec<&Trace> = rules
        .rules()
        .iter()
        .flat_map(|r| r.def.examples.iter().map(|e| &e.trace))
        .collect();
    let mut i = 0;
    while out.spans.len() < n {
        let t = examples[i % examples.len()];
        let res_base = out.resources.len();
        out.resources.extend(t.resources.iter().cloned());
        for s in &t.spans {
            if out.spans.len() == n {
                break;
            }
            let mut s = s.clone();
            s.resource += res_base;
            s.span_id = SpanId(((i as u64) << 16 | out.spans.len() as u64).to_be_bytes());
            s.parent_span_id = None;
            out.spans.push(s);
        }
        i += 1;
    }
    out
}

fn load(c: &mut Criterion) {
    let files = library_sources();
    c.bench_function("load/playbook-library (87 rules)", |b| {
        b.iter(|| RuleSet::from_sources(black_box(files.clone())).expect("library loads"));
    });
}

fn judge(c: &mut Criterion) {
    let (rules, _) = RuleSet::from_sources(library_sources()).expect("library loads");
    let mut group = c.benchmark_group("judge");
    for n in [10usize, 100, 1000] {
        let trace = trace_of(&rules, n);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("vm", n), &trace, |b, t| {
            b.iter(|| rules.judge(black_box(t)))
        });
        group.bench_with_input(BenchmarkId::new("reference", n), &trace, |b, t| {
            b.iter(|| {
                rules
                    .rules()
                    .iter()
                    .filter(|r| reference::evaluate(&r.def.form, black_box(t)).fired)
                    .count()
            })
        });
    }
    group.finish();
}

/// A trace of `n` spans under one root: `x` and `y` spans taking turns, every tenth `y`
/// missing, each with a key `k` of 50 values, starts 1 µs apart.
fn alternating(n: usize) -> Trace {
    let span = |i: usize, name: &str, parent: Option<SpanId>| Span {
        span_id: SpanId((i as u64 + 1).to_be_bytes()),
        parent_span_id: parent,
        name: name.to_string(),
        kind: SpanKind::Internal,
        status: StatusCode::Unset,
        status_message: String::new(),
        start_unix_nano: 1_000_000_000 + 1_000 * i as u64,
        end_unix_nano: 1_000_000_000 + 1_000 * i as u64 + 500,
        attributes: vec![("k".to_string(), Value::Int((i / 2 % 50) as i64))],
        resource: 0,
    };
    let root = span(0, "r", None);
    let root_id = root.span_id;
    let mut spans = vec![root];
    for i in 1..n {
        let name = if i % 2 == 1 { "x" } else { "y" };
        if name == "y" && i % 20 == 0 {
            spans.push(span(i, "z", Some(root_id)));
        } else {
            spans.push(span(i, name, Some(root_id)));
        }
    }
    Trace {
        trace_id: TraceId([1; 16]),
        spans,
        resources: vec![Resource::default()],
    }
}

fn per_occurrence(c: &mut Criterion) {
    let load = |condition: &str| {
        let text = format!("rules:\n  - id: r\n    name: R\n    condition: '{condition}'\n");
        RuleSet::from_text("bench.yaml", &text)
            .expect("the rule loads")
            .0
    };
    // Two trace-level rules: the bare order (which `check` warns is the `after` trap), and
    // one that, like the per-span rule, reads every span's key.
    let trace_order = load("when { x } always { y after x }");
    let trace_level =
        load("when { x } always { y after x and count(y.where(k >= 0)) >= count(x) }");
    let per_span = load(
        "when { x as $x } always { y.where(k == $x.k) after $x until x and own y.where(k == $x.k) after $x }",
    );
    let mut group = c.benchmark_group("per-occurrence");
    for n in [10usize, 100, 1_000, 10_000] {
        let trace = alternating(n);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("trace-order", n), &trace, |b, t| {
            b.iter(|| trace_order.judge(black_box(t)))
        });
        group.bench_with_input(BenchmarkId::new("trace-level", n), &trace, |b, t| {
            b.iter(|| trace_level.judge(black_box(t)))
        });
        group.bench_with_input(BenchmarkId::new("per-span", n), &trace, |b, t| {
            b.iter(|| per_span.judge(black_box(t)))
        });
    }
    group.finish();
}

criterion_group!(benches, load, judge, per_occurrence);
criterion_main!(benches);
