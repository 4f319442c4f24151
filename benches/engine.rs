//! Criterion benchmarks of the engine core: loading the playbook library (parse, check,
//! compile) and judging whole traces of 10, 100 and 1,000 spans against all of its rules.
//! The reference evaluator is measured beside the VM for scale. Figures: BENCHMARKS.md.

use std::hint::black_box;

use betrace::diagnostic::SourceFile;
use betrace::eval::reference;
use betrace::trace::{SpanId, Trace};
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

criterion_group!(benches, load, judge);
criterion_main!(benches);
