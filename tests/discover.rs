//! `betrace discover` (docs/discover.md): what it reports is what a replay of it gives, its
//! examples pass `betrace test`, planted invariants are found with their exceptions named,
//! noise is not reported, and the order of the input changes nothing.

mod common;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::process::Command;

use betrace::discover::candidate::Claim;
use betrace::discover::{self, render, Found, Options};
use betrace::replay::{self, Progress};
use betrace::rules::examples::Outcome;
use betrace::RuleSet;
use betrace_corpus::{Compression, Corpus, Format, GenTrace, BASE_TIME};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::Span;
use serde_json::json;

use common::Rng;

/// Runs discovery over `inputs` with these thresholds (all candidates reported).
fn discover(
    inputs: &[&Path],
    min_support: u64,
    min_confidence: f64,
) -> (Vec<Found>, discover::Summary) {
    let opts = Options {
        read: replay::Options {
            inputs: paths(inputs),
            ..replay::Options::default()
        },
        min_support: Some(min_support),
        min_confidence: Some(min_confidence),
        top: 0,
        ..Options::default()
    };
    let mut bad = Vec::new();
    let r = discover::run(
        &opts,
        &Progress::default(),
        &mut |b| bad.push(b.to_string()),
        &mut |_| {},
    );
    assert!(bad.is_empty(), "{bad:?}");
    r.unwrap()
}

/// Paths as the options take them.
fn paths(inputs: &[&Path]) -> Vec<String> {
    inputs
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect()
}

/// Runs discovery with `opts`; a bad record fails the test.
fn mine_all(opts: &Options) -> (Vec<Found>, discover::Summary) {
    discover::run(
        opts,
        &Progress::default(),
        &mut |b| panic!("{b}"),
        &mut |_| {},
    )
    .unwrap()
}

/// Every candidate's support, violations and first exceptions are what a replay of it (as
/// an enabled rule) gives; every example passes as `betrace test` runs it.
fn check_against_replay(found: &[Found], inputs: &[&Path]) {
    let text = render::yaml(found, "test");
    let (rules, _) = RuleSet::from_text("found.yaml", &text)
        .unwrap_or_else(|r| panic!("{}\n{text}", r.render()));
    for (i, r) in rules.rules().iter().enumerate() {
        assert!(!r.def.enabled, "{} is disabled", r.def.id);
        assert!(r.def.tags.iter().any(|t| t == "discovered"));
        for e in &r.def.examples {
            let run = rules.run_example(i, e);
            assert_eq!(
                run.outcome,
                Outcome::Passed,
                "{}: example {}\n{text}",
                r.def.id,
                e.name
            );
        }
    }
    let enabled = text.replace("    enabled: false\n", "");
    let (rules, _) = RuleSet::from_text("enabled.yaml", &enabled).unwrap();
    let opts = replay::Options {
        inputs: paths(inputs),
        ..replay::Options::default()
    };
    let mut signals: HashMap<String, Vec<String>> = HashMap::new();
    let summary = replay::run(
        rules,
        &opts,
        &Progress::default(),
        &mut |s| {
            signals
                .entry(s.rule_id.clone())
                .or_default()
                .push(s.trace_id.to_string())
        },
        &mut |b| panic!("{b}"),
        &mut |_| {},
    )
    .unwrap();
    for f in found {
        let c = summary
            .stats
            .rules
            .get(&f.candidate.id)
            .cloned()
            .unwrap_or_default();
        assert_eq!(
            (f.support, f.violations),
            (c.applied, c.violated),
            "{}: {}",
            f.candidate.id,
            f.candidate.condition
        );
        let replayed: Vec<String> = signals.get(&f.candidate.id).cloned().unwrap_or_default();
        let stated: Vec<String> = f.exceptions.iter().map(|t| t.to_string()).collect();
        assert_eq!(
            stated,
            replayed.into_iter().take(20).collect::<Vec<_>>(),
            "{}",
            f.candidate.id
        );
    }
}

#[test]
fn the_demo_traces_give_candidates_that_load_pass_their_examples_and_equal_a_replay() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/traces");
    let (found, summary) = discover(&[&dir], 5, 0.95);
    assert!(summary.traces_mined > 100, "{summary:?}");
    assert!(found.len() > 10);
    // The demo's incidents show up as near-invariants naming their traces.
    assert!(found
        .iter()
        .any(|f| f.violations > 0 && !f.exceptions.is_empty()));
    // The generator pads spans with these keys at random values: a candidate on one of them
    // is chance (hundreds of conditions are tried; some cuts pick traces where a filler
    // span is a little more common).
    for f in &found {
        for key in [
            "thread.id",
            "component",
            "net.peer.port",
            "host.arch",
            "request.id",
        ] {
            assert!(
                !f.candidate.condition.contains(&format!("{key} ")),
                "a candidate on the random key {key}: {}",
                f.candidate.condition
            );
        }
    }
    check_against_replay(&found, &[&dir]);
}

// ------------------------------------------------------------------ a planted corpus

fn kv(k: &str, v: any_value::Value) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

fn str_kv(k: &str, v: &str) -> KeyValue {
    kv(k, any_value::Value::StringValue(v.into()))
}

/// Builds traces span by span.
struct Builder {
    trace: [u8; 16],
    spans: Vec<(&'static str, Span)>,
    next: u64,
}

impl Builder {
    fn new(n: u64) -> Builder {
        let mut trace = [0u8; 16];
        trace[..8].copy_from_slice(&(n + 1).to_be_bytes());
        trace[8] = 0xab;
        Builder {
            trace,
            spans: Vec::new(),
            next: 1,
        }
    }

    /// Adds a span under `parent` (an index), starting `at` ms after the trace's start.
    fn span(&mut self, name: &str, parent: Option<usize>, at: u64, attrs: Vec<KeyValue>) -> usize {
        let base =
            BASE_TIME + u64::from_be_bytes(self.trace[..8].try_into().unwrap()) * 10_000_000_000;
        let id = self.next.to_be_bytes().to_vec();
        self.next += 1;
        self.spans.push((
            "shop",
            Span {
                trace_id: self.trace.to_vec(),
                span_id: id,
                parent_span_id: parent
                    .map(|p| self.spans[p].1.span_id.clone())
                    .unwrap_or_default(),
                name: name.into(),
                start_time_unix_nano: base + at * 1_000_000,
                end_time_unix_nano: base + at * 1_000_000 + 500_000,
                attributes: attrs,
                ..Default::default()
            },
        ));
        self.spans.len() - 1
    }

    fn done(self) -> GenTrace {
        GenTrace {
            trace_id: self.trace,
            spans: self.spans,
        }
    }
}

/// What was planted, and where each planted invariant was broken.
struct Planted {
    corpus: Corpus,
    audit_missing: BTreeSet<String>,
    intent_changed: BTreeSet<String>,
}

/// 2,000 traces of a shop: invariants planted, a few broken on purpose, and a noise span
/// present in 30–90% of traces at random times under random parents.
fn planted(seed: u64) -> Planted {
    let mut rng = Rng(seed);
    let mut traces = Vec::new();
    let (mut audit_missing, mut intent_changed) = (BTreeSet::new(), BTreeSet::new());
    let noise_rate = 30 + rng.below(61);
    for n in 0..2_000u64 {
        let mut b = Builder::new(n);
        let root = b.span("GET /order", None, 0, vec![]);
        let hex: String = b.trace.iter().map(|x| format!("{x:02x}")).collect();
        // Charges, each after a reservation (precedence), a repeated charge keeping its
        // payment intent (idempotency) but in three traces.
        if n % 10 < 6 {
            b.span("inventory.reserve", Some(root), 1, vec![]);
            let charges = 1 + rng.below(3);
            for c in 0..charges {
                let intent = if n % 10 == 0 && c == 1 && intent_changed.len() < 3 {
                    intent_changed.insert(hex.clone());
                    format!("pi_{n}_other")
                } else {
                    format!("pi_{n}")
                };
                b.span(
                    "payment.charge",
                    Some(root),
                    5 + c as u64 * 3,
                    vec![str_kv("payment_intent_id", &intent)],
                );
            }
        }
        // PHI access, each audited for its patient, but in four traces.
        if n % 5 == 1 {
            let parent = b.span("GET /patients", Some(root), 2, vec![]);
            for p in 0..(1 + rng.below(2) as u64) {
                let patient = format!("p{}", rng.below(1_000));
                b.span(
                    "phi.access",
                    Some(parent),
                    3 + p * 4,
                    vec![str_kv("patient.id", &patient)],
                );
                if n % 500 == 1 && p == 0 {
                    audit_missing.insert(hex.clone());
                } else {
                    b.span(
                        "audit.log",
                        Some(parent),
                        4 + p * 4,
                        vec![str_kv("patient.id", &patient)],
                    );
                }
            }
        }
        // Generations, each moderated by a moderation of its own.
        if n % 4 == 2 {
            let gens = 1 + rng.below(3) as u64;
            for g in 0..gens {
                b.span("llm.generate", Some(root), 10 + g * 10, vec![]);
                b.span("content.moderate", Some(root), 12 + g * 10, vec![]);
            }
        }
        // Database reads under a cache miss.
        if n % 3 == 0 {
            let miss = b.span("cache.miss", Some(root), 30, vec![]);
            b.span("db.query", Some(miss), 31, vec![]);
        }
        if rng.below(100) < noise_rate {
            let parent = rng.below(b.spans.len());
            let at = rng.below(60) as u64;
            b.span("recommend.fetch", Some(parent), at, vec![]);
        }
        traces.push(b.done());
    }
    Planted {
        corpus: Corpus {
            traces,
            expected: vec![],
        },
        audit_missing,
        intent_changed,
    }
}

/// The claims the found candidates state, with everything they imply, and the orders and
/// responses their chains imply.
fn stated(found: &[Found]) -> HashSet<Claim> {
    let mut all: HashSet<Claim> = HashSet::new();
    for f in found {
        all.insert(f.candidate.claim.clone());
        all.extend(f.candidate.claim.closure());
    }
    loop {
        let mut more = Vec::new();
        for x in &all {
            for y in &all {
                match (x, y) {
                    (Claim::Before(a, b), Claim::Before(b2, c)) if b == b2 && a != c => {
                        more.push(Claim::Before(a.clone(), c.clone()))
                    }
                    (Claim::Response(a, b), Claim::Response(b2, c)) if b == b2 && a != c => {
                        more.push(Claim::Response(a.clone(), c.clone()))
                    }
                    (Claim::Within(z, y1), Claim::Within(y2, a)) if y1 == y2 && z != a => {
                        more.push(Claim::Within(z.clone(), a.clone()))
                    }
                    _ => {}
                }
            }
        }
        let before = all.len();
        all.extend(more);
        if all.len() == before {
            return all;
        }
    }
}

fn write_corpus(dir: &Path, corpus: &Corpus, spans_per_batch: usize) -> Vec<std::path::PathBuf> {
    betrace_corpus::write(
        dir,
        corpus,
        Format::Json,
        Compression::None,
        spans_per_batch,
        25,
    )
    .unwrap()
}

#[test]
fn planted_invariants_are_found_with_their_exceptions_and_noise_is_not() {
    let p = planted(7);
    let scratch = common::tmp("discover-planted");
    write_corpus(&scratch, &p.corpus, 200);
    let (found, summary) = discover(&[&scratch], 20, 0.95);
    assert_eq!(summary.traces_mined, 2_000);
    // Judged from the traces kept while mining: checked against a replay below.
    assert_eq!(summary.replayed, None);
    let claims = stated(&found);
    let s = |x: &str| x.to_string();
    for want in [
        Claim::Before(s("inventory.reserve"), s("payment.charge")),
        Claim::OwnAfter(s("llm.generate"), s("content.moderate")),
        Claim::ChildOf(s("db.query"), s("cache.miss")),
    ] {
        assert!(claims.contains(&want), "{want:?} not found");
    }
    // Near-invariants: found, with every planted exception named.
    let agree = found
        .iter()
        .find(|f| matches!(&f.candidate.claim, Claim::Agree(a, b, k) | Claim::AgreeAfter(a, b, k) if a == "phi.access" && b == "audit.log" && k == "patient.id"))
        .expect("the audit of each patient's access");
    let named: BTreeSet<String> = agree.exceptions.iter().map(|t| t.to_string()).collect();
    assert_eq!(named, p.audit_missing);
    let same = found
        .iter()
        .find(|f| f.candidate.claim == Claim::Same(s("payment.charge"), s("payment_intent_id")))
        .expect("a retried charge keeps its payment intent");
    let named: BTreeSet<String> = same.exceptions.iter().map(|t| t.to_string()).collect();
    assert_eq!(named, p.intent_changed);
    // Both near-invariants rank in the first screen.
    let rank = |id: &str| found.iter().position(|f| f.candidate.id == id).unwrap();
    assert!(rank(&agree.candidate.id) < 30 && rank(&same.candidate.id) < 30);
    // The noise span, at random times under random parents in some of the traces, is in
    // no candidate.
    for f in &found {
        assert!(
            !f.candidate.names.iter().any(|n| n == "recommend.fetch"),
            "{}",
            f.candidate.condition
        );
    }
    check_against_replay(&found, &[&scratch]);
}

#[test]
fn the_order_of_files_and_batches_changes_nothing() {
    let p = planted(11);
    let (a, b) = (
        common::tmp("discover-order-a"),
        common::tmp("discover-order-b"),
    );
    write_corpus(&a, &p.corpus, 200);
    let mut shuffled = p.corpus.clone();
    Rng(5).shuffle(&mut shuffled.traces);
    let files = write_corpus(&b, &shuffled, 37);
    let mut inputs: Vec<&Path> = files.iter().map(|f| f.as_path()).collect();
    Rng(9).shuffle(&mut inputs);
    let (x, sx) = discover(&[&a], 20, 0.95);
    let (y, _) = discover(&inputs, 20, 0.95);
    assert_eq!(render::jsonl(&x), render::jsonl(&y));
    // Held to 50 traces, the stream stops and the input spills: what the stream had mined
    // before it stopped is not counted again with the partitions (nor split for the
    // holdout twice): the same traces mined, the same candidates.
    let run = |holdout: Option<f64>, max_traces: usize| {
        let opts = Options {
            read: replay::Options {
                inputs: vec![a.to_string_lossy().into_owned()],
                buffer: betrace::engine::buffer::BufferConfig {
                    max_traces,
                    ..Default::default()
                },
                ..replay::Options::default()
            },
            min_support: Some(20),
            min_confidence: Some(0.95),
            holdout,
            top: 0,
            ..Options::default()
        };
        mine_all(&opts)
    };
    for holdout in [None, Some(0.3)] {
        let (whole, sw) = run(holdout, 100_000);
        let (spilled, ss) = run(holdout, 50);
        assert!(ss.read.spilled.is_some() && sw.read.spilled.is_none());
        // Without a holdout both are judged from the traces kept while mining (the
        // stream's, forgotten when it spilled, then the partitions'); with one, by
        // reading the input again.
        assert_eq!(
            sw.replayed.is_none(),
            holdout.is_none(),
            "{:?}",
            sw.replayed
        );
        assert_eq!(
            ss.replayed.is_none(),
            holdout.is_none(),
            "{:?}",
            ss.replayed
        );
        assert_eq!(ss.traces_mined, sw.traces_mined, "{holdout:?}");
        assert_eq!(ss.holdout_from, sw.holdout_from, "{holdout:?}");
        assert_eq!(
            render::jsonl(&spilled),
            render::jsonl(&whole),
            "{holdout:?}"
        );
    }
    assert_eq!(sx.traces_mined, p.corpus.traces.len() as u64);
}

#[test]
fn a_corpus_without_invariants_finds_nothing_and_exits_0() {
    // One of three roots, one of four children at a random time: no name goes with
    // another in 95% of the traces.
    let mut rng = Rng(3);
    let traces = (0..600)
        .map(|n| {
            let mut b = Builder::new(n);
            let root = b.span(["r1", "r2", "r3"][rng.below(3)], None, 0, vec![]);
            let at = rng.below(50) as u64;
            b.span(["a", "b", "c", "d"][rng.below(4)], Some(root), at, vec![]);
            b.done()
        })
        .collect();
    let scratch = common::tmp("discover-nothing");
    write_corpus(
        &scratch,
        &Corpus {
            traces,
            expected: vec![],
        },
        100,
    );
    let out = Command::new(env!("CARGO_BIN_EXE_betrace"))
        .args(["discover", "--format", "jsonl"])
        .arg(&*scratch)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "", "{stderr}");
    assert!(
        stderr.contains("600 complete traces mined") && stderr.contains("nothing found"),
        "{stderr}"
    );
}

#[test]
fn bad_input_is_reported_and_the_rest_is_mined() {
    let p = planted(13);
    let scratch = common::tmp("discover-bad");
    write_corpus(&scratch, &p.corpus, 200);
    std::fs::write(
        scratch.join("zz-broken.json"),
        b"{\"resourceSpans\": [ not json\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_betrace"))
        .args(["discover", "--format", "table"])
        .arg(&*scratch)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("zz-broken.json:1"), "{stderr}");
    assert!(stderr.contains("2000 complete traces mined"), "{stderr}");
    let missing = Command::new(env!("CARGO_BIN_EXE_betrace"))
        .args(["discover", "/nonexistent/traces"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
}

#[test]
fn standard_input_is_read_once_and_mined() {
    let p = planted(17);
    let scratch = common::tmp("discover-stdin");
    let files = write_corpus(&scratch, &p.corpus, 200);
    let mut all = Vec::new();
    for f in &files {
        all.extend(std::fs::read(f).unwrap());
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_betrace"))
        .args(["discover", "--format", "jsonl", "--min-support", "20", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(&all).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("2000 complete traces mined"), "{stderr}");
    let (from_files, _) = discover(&[&scratch], 20, 0.95);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        render::jsonl(&from_files[..from_files.len().min(50)])
    );
}

#[test]
fn examples_after_a_spill_are_cut_from_whole_traces() {
    // One file holding the later half of the batches first: the stream judges the traces
    // cut at the halves' seam on the spans it has, then finds the input out of order and
    // spills. Judged again from the partitions, every trace is
    // whole: the examples must be the same as in time order, on either way of judging
    // (kept traces, or the input replayed, as a holdout does).
    let corpus = betrace_corpus::generate(17, 3_000, 0.05);
    let scratch = common::tmp("discover-spilled-examples");
    let mut files = write_corpus(&scratch.join("batches"), &corpus, 512);
    files.sort();
    let mut lines: Vec<String> = Vec::new();
    for f in &files {
        lines.extend(
            std::fs::read_to_string(f)
                .unwrap()
                .lines()
                .map(str::to_string),
        );
    }
    let in_order = scratch.join("in-order.json");
    std::fs::write(&in_order, lines.join("\n") + "\n").unwrap();
    // The later half first, as two replicas' files read one after the other.
    let half = lines.len() / 2;
    lines.rotate_left(half);
    let reversed = scratch.join("reversed.json");
    std::fs::write(&reversed, lines.join("\n") + "\n").unwrap();
    let (in_order, reversed) = ([in_order.as_path()], [reversed.as_path()]);
    let run = |inputs: &[&Path], holdout: Option<f64>| {
        let opts = Options {
            read: replay::Options {
                inputs: paths(inputs),
                ..replay::Options::default()
            },
            holdout,
            top: 0,
            ..Options::default()
        };
        mine_all(&opts)
    };
    for holdout in [None, Some(0.3)] {
        let (x, sx) = run(&in_order, holdout);
        let (y, sy) = run(&reversed, holdout);
        assert!(sx.read.spilled.is_none() && sy.read.spilled.is_some());
        // The same rules and examples; only the key sample, read from the start of the
        // file, says other counts in the descriptions.
        let rules = |found: &[Found]| {
            render::yaml(found, "examples")
                .lines()
                .filter(|l| !l.trim_start().starts_with("description:"))
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert_eq!(rules(&x), rules(&y), "{holdout:?}");
    }
}

#[test]
fn a_holdout_drops_what_does_not_hold_later() {
    // The first 1,400 traces always have a reservation before a charge; the last 600
    // never do: mined on the earlier part, the order fails the holdout.
    let mut traces = Vec::new();
    for n in 0..2_000u64 {
        let mut b = Builder::new(n);
        let root = b.span("GET /order", None, 0, vec![]);
        if n < 1_400 {
            b.span("inventory.reserve", Some(root), 1, vec![]);
            b.span("payment.charge", Some(root), 2, vec![]);
        } else {
            b.span("payment.charge", Some(root), 1, vec![]);
            b.span("inventory.reserve", Some(root), 2, vec![]);
        }
        traces.push(b.done());
    }
    let scratch = common::tmp("discover-holdout");
    write_corpus(
        &scratch,
        &Corpus {
            traces,
            expected: vec![],
        },
        100,
    );
    let run = |holdout: Option<f64>| {
        let opts = Options {
            read: replay::Options {
                inputs: vec![scratch.to_string_lossy().into_owned()],
                ..replay::Options::default()
            },
            holdout,
            top: 0,
            ..Options::default()
        };
        mine_all(&opts)
    };
    let order = Claim::Before("inventory.reserve".into(), "payment.charge".into());
    let (found, summary) = run(Some(0.3));
    assert!(summary.failed_holdout >= 1, "{summary:?}");
    assert!(!stated(&found).contains(&order));
    let (found, _) = run(None);
    assert!(
        !stated(&found).contains(&order),
        "70% is below the confidence asked for"
    );
}

// ------------------------------------------------------------------ property

fn int_kv(k: &str, v: i64) -> KeyValue {
    kv(k, any_value::Value::IntValue(v))
}

/// What a random corpus planted, and the traces planted to break each of its invariants.
struct RandomCorpus {
    corpus: Corpus,
    /// The response `A` → `B`.
    broken: BTreeSet<String>,
    /// `sum(v.refund, amount) <= $a.amount` of `v.charge`.
    refund_over: BTreeSet<String>,
    /// `c.request.where(status == "500")` has a `c.error`.
    error_missing: BTreeSet<String>,
    /// `c.charge.where(amount > cut)` has a `c.fraud`.
    fraud_missing: BTreeSet<String>,
}

/// Random traces over five names (random trees, times with ties, a key of four values),
/// with one response planted: every `A` answered by a `B` after it, except in
/// `exceptions` traces, which hold an `A` and no `B` at all. Beside them, the value
/// families, each broken in `value_exceptions` traces: a bound across spans (the refunds of
/// a charge, a log-uniform amount, sum to 60–100% of it; broken: more than it), a
/// condition on a frequent string (every `c.request` with status "500" has a `c.error`,
/// half the others do too; broken: a "500" without it) and one on a cut point (every
/// `c.charge` of the larger 60% of amounts has a `c.fraud`, no smaller one does; broken:
/// the largest amount of all without it).
fn random_corpus(
    seed: u64,
    a: usize,
    b: usize,
    exceptions: usize,
    value_exceptions: usize,
) -> RandomCorpus {
    const NAMES: [&str; 5] = ["n.a", "n.b", "n.c", "n.d", "n.e"];
    let mut rng = Rng(seed | 1);
    let mut traces = Vec::new();
    let mut broken = BTreeSet::new();
    let (mut refund_over, mut error_missing, mut fraud_missing) =
        (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
    for n in 0..80u64 {
        let mut t = Builder::new(n);
        let root = t.span("root", None, 0, vec![]);
        let hex: String = t.trace.iter().map(|x| format!("{x:02x}")).collect();
        let exception = (n as usize) < exceptions;
        // The values planted are broken in the last traces, away from the response's.
        let value_exception = n as usize >= 80 - value_exceptions;
        if n % 3 != 2 {
            let charge = 10f64.powf(2.0 + 3.0 * rng.below(1_000) as f64 / 1_000.0) as i64;
            let total = if value_exception && refund_over.len() < value_exceptions {
                refund_over.insert(hex.clone());
                charge + 1 + rng.below(100) as i64
            } else {
                charge * (60 + rng.below(41) as i64) / 100
            };
            t.span("v.charge", Some(root), 40, vec![int_kv("amount", charge)]);
            let parts = 1 + rng.below(3) as i64;
            for p in 0..parts {
                let amount = if p == parts - 1 {
                    total - total / parts * (parts - 1)
                } else {
                    total / parts
                };
                t.span(
                    "v.refund",
                    Some(root),
                    41 + p as u64,
                    vec![int_kv("amount", amount)],
                );
            }
        }
        let status = if n % 2 == 0 { "500" } else { "200" };
        t.span("c.request", Some(root), 50, vec![str_kv("status", status)]);
        if status == "500" && value_exception {
            error_missing.insert(hex.clone());
        } else if status == "500" || n % 4 == 1 {
            t.span("c.error", Some(root), 51, vec![]);
        }
        let large = n % 5 >= 2;
        let amount = if large && value_exception {
            fraud_missing.insert(hex.clone());
            20_000
        } else if large {
            5_000 + rng.below(5_000) as i64
        } else {
            1 + rng.below(100) as i64
        };
        t.span("c.charge", Some(root), 55, vec![int_kv("amount", amount)]);
        if large && !value_exception {
            t.span("c.fraud", Some(root), 56, vec![]);
        }
        let spans = 2 + rng.below(6);
        for s in 0..spans {
            let mut name = if s == 0 { a } else { rng.below(5) };
            if exception && name == b {
                name = a;
            }
            let parent = rng.below(t.spans.len());
            let at = rng.below(12) as u64;
            let value = format!("v{}", rng.below(4));
            let attrs = if rng.below(2) == 0 {
                vec![str_kv("k", &value)]
            } else {
                vec![]
            };
            t.span(NAMES[name], Some(parent), at, attrs);
        }
        if exception {
            broken.insert(t.trace.iter().map(|x| format!("{x:02x}")).collect());
        } else {
            let answers: Vec<u64> = t
                .spans
                .iter()
                .filter(|(_, s)| s.name == NAMES[a])
                .map(|(_, s)| (s.start_time_unix_nano - BASE_TIME) / 1_000_000 % 10_000)
                .collect();
            for at in answers {
                let late = 1 + rng.below(3) as u64;
                t.span(NAMES[b], Some(root), at + late, vec![]);
            }
        }
        traces.push(t.done());
    }
    RandomCorpus {
        corpus: Corpus {
            traces,
            expected: vec![],
        },
        broken,
        refund_over,
        error_missing,
        fraud_missing,
    }
}

/// The exceptions of the found candidate whose claim `is` picks: it must be found.
fn exceptions_of(found: &[Found], what: &str, is: impl Fn(&Claim) -> bool) -> BTreeSet<String> {
    let f = found
        .iter()
        .find(|f| is(&f.candidate.claim))
        .unwrap_or_else(|| {
            let all: Vec<&str> = found
                .iter()
                .map(|f| f.candidate.condition.as_str())
                .collect();
            panic!("{what} not found in {all:#?}")
        });
    f.exceptions.iter().map(|t| t.to_string()).collect()
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).map_or(24, |c: u32| c.min(200)),
        ..proptest::prelude::ProptestConfig::default()
    })]

    /// On random corpora: every candidate's counts and exceptions are a replay's, its
    /// examples pass; the planted response is found or implied, and every trace planted to
    /// break it is named; so are the planted value bound and conditionals, each with
    /// exactly the traces planted to break it.
    #[test]
    fn candidates_are_what_a_replay_gives_and_planted_responses_are_found(
        seed in 1u64..u64::MAX,
        a in 0usize..5,
        shift in 1usize..5,
        exceptions in 0usize..3,
        value_exceptions in 0usize..3,
    ) {
        let b = (a + shift) % 5;
        let planted = random_corpus(seed, a, b, exceptions, value_exceptions);
        let (corpus, broken) = (&planted.corpus, &planted.broken);
        let scratch = common::tmp(&format!("discover-prop-{seed}"));
        write_corpus(&scratch, corpus, 50);
        let (found, _) = discover(&[&scratch], 5, 0.9);
        check_against_replay(&found, &[&scratch]);
        let names = ["n.a", "n.b", "n.c", "n.d", "n.e"];
        let want = Claim::Response(names[a].into(), names[b].into());
        proptest::prop_assert!(stated(&found).contains(&want), "{:?} not found", want);
        let named: BTreeSet<String> = found
            .iter()
            .filter(|f| f.candidate.names.iter().any(|n| n == names[a]))
            .flat_map(|f| f.exceptions.iter().map(|t| t.to_string()))
            .collect();
        proptest::prop_assert!(broken.is_subset(&named), "{:?} not all named in {:?}", broken, named);
        let refunds = exceptions_of(&found, "the refunds' bound", |c| {
            *c == Claim::SumAtMost("v.charge".into(), "v.refund".into(), "amount".into())
        });
        proptest::prop_assert_eq!(&refunds, &planted.refund_over);
        let errors = exceptions_of(&found, "the errors of status 500", |c| {
            *c == Claim::WhenEq("c.request".into(), "status".into(), "\"500\"".into(), "c.error".into())
        });
        proptest::prop_assert_eq!(&errors, &planted.error_missing);
        let frauds = exceptions_of(&found, "the fraud checks of large charges", |c| {
            matches!(c, Claim::WhenAbove(a, k, _, b) if a == "c.charge" && k == "amount" && b == "c.fraud")
        });
        proptest::prop_assert_eq!(&frauds, &planted.fraud_missing);
        // The cut point is a percentile's, not an extreme: within the larger amounts.
        for f in &found {
            if let Claim::WhenAbove(a, _, cut, _) = &f.candidate.claim {
                if a == "c.charge" {
                    let cut: f64 = cut.parse().unwrap();
                    proptest::prop_assert!((100.0..10_000.0).contains(&cut), "{}", cut);
                }
            }
        }
    }
}

#[test]
fn an_index_beside_the_inputs_changes_nothing() {
    let p = planted(19);
    let scratch = common::tmp("discover-index");
    write_corpus(&scratch, &p.corpus, 200);
    let (plain, _) = discover(&[&scratch], 20, 0.95);
    let out = Command::new(env!("CARGO_BIN_EXE_betrace"))
        .arg("index")
        .arg(&*scratch)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let indexed: Vec<_> = std::fs::read_dir(&*scratch)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .to_string_lossy()
                .ends_with(".betrace-idx")
        })
        .collect();
    assert!(!indexed.is_empty());
    let (with_index, summary) = discover(&[&scratch], 20, 0.95);
    assert_eq!(summary.traces_mined, 2_000);
    assert_eq!(render::jsonl(&plain), render::jsonl(&with_index));
}

#[test]
fn the_report_as_a_browser_shows_it() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/traces");
    let scratch = common::tmp("discover-report");
    let report = scratch.join("candidates.html");
    let out = Command::new(env!("CARGO_BIN_EXE_betrace"))
        .args(["discover", "--format", "jsonl", "--report"])
        .arg(&report)
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let first: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().next().unwrap()).unwrap();
    let html = std::fs::read_to_string(&report).unwrap();
    for outside in ["src=", "href=\"http", "@import", "url(", "<script", "<link"] {
        assert!(!html.contains(outside), "the page refers to {outside}");
    }
    let browser = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    let Some(browser) = browser else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install Debian's chromium (.ci/run does)"
        );
        eprintln!("skipped: no chromium to render the report");
        return;
    };
    let dom = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
        ])
        .arg(format!(
            "--user-data-dir={}",
            scratch.join("profile").display()
        ))
        .args(["--dump-dom", &format!("file://{}", report.display())])
        .output()
        .expect("run chromium");
    assert!(
        dom.status.success(),
        "{}",
        String::from_utf8_lossy(&dom.stderr)
    );
    let rendered = String::from_utf8_lossy(&dom.stdout);
    let text = rendered
        .replace("&gt;", ">")
        .replace("&lt;", "<")
        .replace("&quot;", "\"");
    // The first candidate, its condition, and the trace that broke it, as the page shows them.
    assert!(text.contains("Candidate invariants"));
    assert!(
        text.contains(first["condition"].as_str().unwrap()),
        "{}",
        first["condition"]
    );
    let exception = first["exceptions"][0]
        .as_str()
        .expect("the first candidate is a near-invariant");
    assert!(text.contains(exception));
    assert!(rendered.contains(&format!("id=\"c-{}\"", first["id"].as_str().unwrap())));
}

// ------------------------------------------------------------------ hostile input

/// A span for [`json_line`]: trace, span, parent, name, start (ns), attributes.
type JsonSpan<'a> = (
    u64,
    u64,
    Option<u64>,
    &'a str,
    u64,
    Vec<(&'a str, serde_json::Value)>,
);

/// One OTLP/JSON line: spans under a resource with these attributes.
fn json_line(resource: &[(&str, serde_json::Value)], spans: &[JsonSpan<'_>]) -> String {
    let attrs = |kv: &[(&str, serde_json::Value)]| -> Vec<serde_json::Value> {
        kv.iter()
            .map(|(k, v)| serde_json::json!({"key": k, "value": v}))
            .collect()
    };
    let spans: Vec<serde_json::Value> = spans
        .iter()
        .map(|(t, s, p, name, start, kv)| {
            let mut o = serde_json::json!({
                "traceId": format!("{:032x}", t + 1),
                "spanId": format!("{:016x}", s + 1),
                "name": name,
                "startTimeUnixNano": start.to_string(),
                "endTimeUnixNano": (start + 1_000).to_string(),
                "attributes": attrs(kv),
            });
            if let Some(p) = p {
                o["parentSpanId"] = serde_json::json!(format!("{:016x}", p + 1));
            }
            o
        })
        .collect();
    serde_json::json!({"resourceSpans": [{"resource": {"attributes": attrs(resource)}, "scopeSpans": [{"spans": spans}]}]}).to_string()
}

/// Runs the binary; (exit code, stdout, stderr).
fn betrace(args: &[&str], dir: &Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_betrace"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn deep_traces_give_a_rule_file_that_loads_and_passes() {
    // Chains 20,000 deep alternating two names: the examples must neither overflow the
    // stack nor nest deeper than a rule file can.
    let scratch = common::tmp("discover-deep");
    let mut lines = Vec::new();
    const B: u64 = 1_700_000_000_000_000_000;
    for t in 0..3u64 {
        let b = B + t * 10_000_000_000;
        let mut spans = vec![(t, 0, None, "R", b, vec![])];
        for i in 1..20_000u64 {
            spans.push((
                t,
                i,
                Some(i - 1),
                if i % 2 == 1 { "A" } else { "B" },
                b + i * 100,
                vec![],
            ));
        }
        lines.push(json_line(&[], &spans));
    }
    // …and 30 shallow traces with the same names.
    for t in 3..33u64 {
        let b = B + t * 10_000_000_000;
        lines.push(json_line(
            &[],
            &[
                (t, 0, None, "R", b, vec![]),
                (t, 1, Some(0), "A", b + 100, vec![]),
                (t, 2, Some(1), "B", b + 200, vec![]),
            ],
        ));
    }
    std::fs::write(scratch.join("deep.json"), lines.join("\n") + "\n").unwrap();
    let (code, out, err) = betrace(
        &[
            "discover",
            "--min-support",
            "3",
            "-o",
            "found.yaml",
            "deep.json",
        ],
        &scratch,
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.is_empty());
    let (code, _, err) = betrace(&["test", "found.yaml"], &scratch);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn examples_read_values_as_the_condition_does_or_are_left_out() {
    // A key read from the resource when the span lacks it, and values a compact trace
    // cannot hold (an array, NaN): the examples still pass, or there is none.
    let scratch = common::tmp("discover-values");
    const B: u64 = 1_700_000_000_000_000_000;
    let s = |v: &str| serde_json::json!({"stringValue": v});
    let mut lines = Vec::new();
    for t in 0..40u64 {
        let b = B + t * 10_000_000_000;
        let id = s(&format!("id{t}"));
        lines.push(json_line(
            &[],
            &[
                (t, 0, None, "root", b, vec![]),
                (t, 1, Some(0), "pay", b + 10, vec![("k", id.clone())]),
                (t, 2, Some(0), "pay", b + 20, vec![("k", id)]),
                (t, 3, Some(0), "filler", b + 30, vec![]),
            ],
        ));
    }
    let b = B + 50 * 10_000_000_000;
    lines.push(
        json!({"resourceSpans": [
            serde_json::from_str::<serde_json::Value>(&json_line(&[], &[(50, 0, None, "root", b, vec![]), (50, 1, Some(0), "pay", b + 10, vec![("k", s("x"))])])).unwrap()["resourceSpans"][0].clone(),
            serde_json::from_str::<serde_json::Value>(&json_line(&[("k", s("y"))], &[(50, 2, Some(0), "pay", b + 20, vec![])])).unwrap()["resourceSpans"][0].clone(),
        ]})
        .to_string(),
    );
    for (t, v) in [
        (
            51u64,
            serde_json::json!({"arrayValue": {"values": [{"intValue": "1"}]}}),
        ),
        (52, serde_json::json!({"doubleValue": "NaN"})),
    ] {
        let b = B + t * 10_000_000_000;
        lines.push(json_line(
            &[],
            &[
                (t, 0, None, "root", b, vec![]),
                (t, 1, Some(0), "pay", b + 10, vec![("k", v.clone())]),
                (t, 2, Some(0), "pay", b + 20, vec![("k", v)]),
            ],
        ));
    }
    std::fs::write(scratch.join("values.json"), lines.join("\n") + "\n").unwrap();
    let (code, _, err) = betrace(
        &[
            "discover",
            "--min-support",
            "5",
            "--top",
            "0",
            "-o",
            "found.yaml",
            "values.json",
        ],
        &scratch,
    );
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = betrace(&["test", "found.yaml"], &scratch);
    assert_eq!(code, 0, "{out}{err}");
    assert!(std::fs::read_to_string(scratch.join("found.yaml"))
        .unwrap()
        .contains("distinct(pay, k) == 1"));
}

#[test]
fn outputs_never_overwrite_inputs_and_write_errors_are_reported() {
    let scratch = common::tmp("discover-outputs");
    let p = planted(23);
    let files = write_corpus(&scratch, &p.corpus, 200);
    let first = files[0].to_string_lossy().into_owned();
    let before = std::fs::read(&files[0]).unwrap();
    let (code, _, err) = betrace(&["discover", "-o", &first, &first], &scratch);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--output"), "{err}");
    assert_eq!(
        std::fs::read(&files[0]).unwrap(),
        before,
        "the input was overwritten"
    );
    if Path::new("/dev/full").exists() {
        let (code, _, err) = betrace(&["discover", "-o", "/dev/full", &first], &scratch);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("/dev/full"), "{err}");
    }
    // A bad record on standard input is named `-`, not a temporary copy.
    let mut child = Command::new(env!("CARGO_BIN_EXE_betrace"))
        .args(["discover", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&before).unwrap();
        stdin.write_all(b"{\"resourceSpans\": [trunc\n").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("error: -:"), "{err}");
}

#[test]
fn hostile_values_give_value_candidates_that_load_pass_and_equal_a_replay() {
    // A numeric key that is a string on some spans (a number, or not one), NaN, infinities,
    // huge and negative values, booleans, a key on one name and not the other: nothing
    // panics, every candidate loads, passes its examples and counts what a replay counts.
    let scratch = common::tmp("discover-hostile-values");
    const B: u64 = 1_700_000_000_000_000_000;
    let hostile = [
        json!({"stringValue": "250"}),
        json!({"stringValue": "abc"}),
        json!({"doubleValue": "NaN"}),
        json!({"doubleValue": "Infinity"}),
        json!({"doubleValue": "-Infinity"}),
        json!({"doubleValue": 1e308}),
        json!({"intValue": "-50"}),
        json!({"intValue": "9223372036854775807"}),
        json!({"intValue": "-9223372036854775808"}),
        json!({"doubleValue": -0.0}),
        json!({"stringValue": "1e400"}),
        json!({"boolValue": true}),
        json!({"doubleValue": 1.5e-7}),
        json!({"stringValue": " 7"}),
    ];
    let mut rng = Rng(11);
    let mut lines = Vec::new();
    for t in 0..300u64 {
        let b = B + t * 10_000_000_000;
        let odd = t % 5 == 0;
        let pick = |rng: &mut Rng, normal: i64| {
            if odd {
                hostile[rng.below(hostile.len())].clone()
            } else {
                json!({"intValue": normal.to_string()})
            }
        };
        let charge = 100 + rng.below(10_000) as i64;
        let status = match t % 4 {
            0 => json!({"stringValue": "500"}),
            1 => json!({"intValue": "500"}),
            _ => json!({"stringValue": "200"}),
        };
        let mut spans: Vec<JsonSpan<'_>> = vec![
            (t, 0, None, "root", b, vec![]),
            (
                t,
                1,
                Some(0),
                "h.charge",
                b + 10,
                vec![
                    ("amount", pick(&mut rng, charge)),
                    ("limit", json!({"intValue": "9000"})),
                ],
            ),
            (
                t,
                2,
                Some(0),
                "h.refund",
                b + 20,
                vec![("amount", pick(&mut rng, charge / 2))],
            ),
            (
                t,
                3,
                Some(0),
                "h.refund",
                b + 30,
                vec![("amount", pick(&mut rng, charge / 3))],
            ),
            (
                t,
                4,
                Some(0),
                "h.request",
                b + 40,
                vec![("status", status), ("amount", pick(&mut rng, -charge))],
            ),
            (t, 5, Some(0), "h.audit", b + 50, vec![]),
        ];
        if t % 4 < 2 || t % 8 == 2 {
            spans.push((t, 6, Some(0), "h.error", b + 60, vec![]));
        }
        lines.push(json_line(&[], &spans));
    }
    std::fs::write(scratch.join("hostile.json"), lines.join("\n") + "\n").unwrap();
    let (found, _) = discover(&[&scratch.join("hostile.json")], 5, 0.7);
    let families: BTreeSet<&str> = found.iter().map(|f| f.candidate.family.word()).collect();
    assert!(
        families.contains("value_bound") && families.contains("conditional"),
        "{families:?}"
    );
    // No bound on a key the bounded name never carries (`limit` is on `h.charge` only, and
    // `h.audit` has no attributes): a sum over nothing is 0, which proves nothing.
    for f in &found {
        if let Claim::SumAtMost(_, b, k) | Claim::MaxAtMost(_, b, k, _) = &f.candidate.claim {
            assert!(b != "h.audit" && k != "limit", "{}", f.candidate.condition);
        }
    }
    check_against_replay(&found, &[&scratch.join("hostile.json")]);
    let (code, _, err) = betrace(
        &[
            "discover",
            "--min-support",
            "5",
            "--min-confidence",
            "0.7",
            "--top",
            "0",
            "-o",
            "found.yaml",
            "hostile.json",
        ],
        &scratch,
    );
    assert_eq!(code, 0, "{err}");
    for cmd in ["check", "test"] {
        let (code, out, err) = betrace(&[cmd, "found.yaml"], &scratch);
        assert_eq!(code, 0, "{cmd}: {out}{err}");
    }
}

/// Interrupted, the command removes its spill directory (here, standard input spooled into
/// it while the pipe stays open) and exits as the signal would have it.
#[cfg(unix)]
#[test]
fn an_interrupted_run_leaves_no_spill_directory() {
    use std::io::Write;
    use std::process::Stdio;
    let spill = common::tmp("discover-interrupted");
    for (signal, code) in [("INT", 130), ("TERM", 143)] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_betrace"))
            .args(["discover", "--spill-dir"])
            .arg(&*spill)
            .arg("-")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"{\"resourceSpans\": []}\n").unwrap();
        let made = || std::fs::read_dir(&*spill).unwrap().count();
        let started = std::time::Instant::now();
        while made() == 0 {
            assert!(started.elapsed().as_secs() < 30, "no spill directory made");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let killed = Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let status = child.wait().unwrap();
        drop(stdin);
        assert_eq!(status.code(), Some(code), "{signal}");
        assert_eq!(made(), 0, "{signal}: the spill directory is left behind");
    }
}
