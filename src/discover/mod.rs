//! `betrace discover`: candidate rules mined from stored traces, in BeTrace's own language,
//! each with the evidence a replay of it gives (docs/discover.md).
//!
//! # How
//!
//! 0. **From a store** (`--jaeger`): every trace of the window is fetched once
//!    ([`crate::replay::jaeger::spool`]) into a file in the spill directory, which is then
//!    the input, read as any other.
//! 1. **Keys** ([`keys`]): the attribute keys on the most spans of a sample of the input.
//! 2. **Mine** ([`mine`]): the input is read as replay reads it — files in any order,
//!    assembled into whole traces, spilled when out of order — and every complete trace is
//!    counted into per-name, per-pair and per-key counters by an observer of the engine,
//!    which also writes it to the spill directory for judging; no trace is held in memory.
//! 3. **Generate** ([`candidate`]): every template instance whose mined support and
//!    confidence reach the thresholds becomes a candidate rule.
//! 4. **Judge**: the candidates, as rules with `incomplete: skip`, are judged on the
//!    traces mining kept in the spill directory (`kept`), each once, as a replay judges
//!    it — or, when those might not be what a replay judges (`kept_usable`), replayed
//!    over the same input by the same engine: either way their support, violations and
//!    exceptions are what `betrace replay` gives. Per candidate, the smallest trace that
//!    held it and the smallest that broke it are cut down ([`cut`]) into its examples.
//! 5. **Prune and rank**: below the thresholds once judged; implied by another candidate
//!    (or by a chain of two exact ones); already stated in `--rules KNOWN`; not holding up
//!    on the holdout. The rest are ranked by the Wilson lower bound of their confidence.

pub mod candidate;
pub mod cond;
pub mod cut;
mod kept;
pub mod keys;
pub mod mine;
pub mod render;
pub mod stats;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::engine::judge::{judge_trace, Judgement};
use crate::engine::signal::{Mode, Signal};
use crate::lang::hir::{Attr, Intrinsic};
#[cfg(feature = "jaeger")]
use crate::replay::jaeger::{self, Fetched, JaegerOptions, StoreError};
use crate::replay::{self, BadRecord, Location, Observe, Progress};
use crate::rules::ruleset::RuleSet;
use crate::trace::projected::packed;
use crate::trace::projected::{KeyId, Projection, Trace};
use crate::trace::TraceId;

use candidate::{Candidate, Claim};
use mine::Miner;
use stats::wilson_lower;

/// How to discover.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// What to read and how: replay's options (inputs, buffer, limits, threads, spill
    /// directory, index). Its window, evidence and observer are discovery's own.
    pub read: replay::Options,
    /// Rules already written: candidates they state are pruned.
    pub known: Option<RuleSet>,
    /// Least complete traces a candidate applies to (default: 1% of the traces mined,
    /// at least 5).
    pub min_support: Option<u64>,
    /// Least confidence (default 0.95).
    pub min_confidence: Option<f64>,
    /// Mine on the earlier `1 - F` of the traces by start; check on the rest.
    pub holdout: Option<f64>,
    /// Most candidates reported (0: all).
    pub top: usize,
    /// Mine the traces of this Jaeger store instead of `read.inputs` (its window is
    /// `read.from`/`read.to`'s too: traces are chosen by their first span's start).
    #[cfg(feature = "jaeger")]
    pub jaeger: Option<JaegerOptions>,
}

/// Why a discovery could not run.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// An input does not exist or cannot be spooled, or the spill directory cannot be
    /// written.
    #[error("{0}")]
    Input(BadRecord),
    /// The trace store failed (`--jaeger`): nothing is mined from part of a window.
    #[cfg(feature = "jaeger")]
    #[error("the trace store failed: {0}")]
    Store(StoreError),
}

impl From<BadRecord> for Error {
    fn from(b: BadRecord) -> Error {
        Error::Input(b)
    }
}

/// A candidate judged: its evidence and scores.
#[derive(Debug, Clone)]
pub struct Found {
    /// The candidate.
    pub candidate: Candidate,
    /// Complete traces it applied to (a replay's "applied").
    pub support: u64,
    /// Traces that broke it (a replay's "violated").
    pub violations: u64,
    /// Held ÷ support.
    pub confidence: f64,
    /// The Wilson (95%) lower bound of the confidence.
    pub confidence_lower: f64,
    /// Confidence over the chance its consequent holds anyway.
    pub lift: f64,
    /// Ids of the traces that broke it, in replay's signal order (the first
    /// [`EXCEPTIONS`]).
    pub exceptions: Vec<TraceId>,
    /// On the holdout: (applied, violated).
    pub holdout: Option<(u64, u64)>,
    /// Examples, as YAML list items: one trace that held it, one that broke it.
    pub examples: Vec<Example>,
}

impl Found {
    /// A near-invariant: broken, but in only a few of many traces (at most 5, or 1% of
    /// its support) — the traces to look at. Ranked first.
    pub fn is_near(&self) -> bool {
        self.violations > 0 && self.violations <= (self.support / 100).max(5)
    }
}

/// An example of a candidate: a trace that held it or broke it, cut down.
#[derive(Debug, Clone)]
pub struct Example {
    /// Whether the trace broke the candidate.
    pub violation: bool,
    /// The trace's id.
    pub trace_id: TraceId,
    /// Spans kept.
    pub spans: usize,
    /// The whole trace's spans and id: the smallest is the example.
    pub size: (usize, TraceId),
    /// The compact trace, YAML list items indented by 10 spaces.
    pub yaml: String,
}

/// Least lift of an agreement: below it, the key agrees by chance or is one value
/// throughout most traces (an order id on every span), and agreeing on it says nothing.
pub const MIN_AGREEMENT_LIFT: f64 = 1.5;

/// Least lift of a value bound: below it, the bound holds nearly as often when the values
/// are shuffled across traces — it says what each name's values are, not how they relate.
pub const MIN_VALUE_LIFT: f64 = 1.2;

/// Least lift of a conditional: below it, the condition picks the traces where the
/// consequent holds only a little more often than it does anyway — among hundreds of
/// conditions tried, some do so by chance (on the demo traces, cuts on a thread number or a
/// port, at lifts of 1.07 to 1.16) — and the rule says nothing about the condition. At
/// 1.25, an exact conditional's consequent holds without its condition in at most four
/// traces of five.
pub const MIN_CONDITIONAL_LIFT: f64 = 1.25;

/// Exceptions kept per candidate.
pub const EXCEPTIONS: usize = 20;
/// Most candidates judged; beyond it, the best by mined confidence (the rest counted).
pub const MAX_JUDGED: usize = 5_000;

/// What a discovery did, for the summary on stderr.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// The mining pass's reading: spans, bad records, spills.
    pub read: replay::Summary,
    /// Complete traces mined.
    pub traces_mined: u64,
    /// Traces checked on the holdout (complete, judged by some candidate or not).
    pub holdout_from: Option<u64>,
    /// The thresholds used, and whether they were scaled to the corpus.
    pub min_support: u64,
    /// …
    pub min_confidence: f64,
    /// Whether `min_support` was scaled to the corpus (not given).
    pub support_scaled: bool,
    /// The keys mined.
    pub keys: Vec<String>,
    /// Candidates generated from the counters.
    pub generated: usize,
    /// …not judged (beyond [`MAX_JUDGED`]).
    pub not_judged: usize,
    /// …below the thresholds once judged (vacuous or not confident).
    pub below_thresholds: usize,
    /// …implied by another.
    pub implied: usize,
    /// …agreements on a key that has one value per trace anyway.
    pub one_per_trace: usize,
    /// …value bounds that hold nearly as often by chance ([`MIN_VALUE_LIFT`]).
    pub by_chance: usize,
    /// …conditionals once judged no clearly better than without their condition.
    pub not_better: usize,
    /// Conditions on frequent values mined.
    pub conditions: usize,
    /// …already in `--rules KNOWN`.
    pub known: usize,
    /// …failed the holdout.
    pub failed_holdout: usize,
    /// …beyond `--top`.
    pub beyond_top: usize,
    /// Traces with more names than were paired, pairs not tracked (memory bounds).
    pub capped: (u64, u64),
    /// Why the candidates were judged by replaying the input rather than from the traces
    /// kept while mining (`None`: from the kept traces).
    pub replayed: Option<String>,
    /// With `--jaeger`: what was fetched from the store.
    #[cfg(feature = "jaeger")]
    pub fetched: Option<Fetched>,
    /// Time taken.
    pub elapsed: Duration,
    /// …by each step: fetching from the store, sampling keys, splitting for the holdout,
    /// mining, judging.
    pub steps: Vec<(&'static str, Duration)>,
}

/// Mines `opts.read.inputs` (or the store `opts.jaeger`). Bad records go to `on_bad` (once,
/// from the first reading), notes to `on_note`. Fails when an input does not exist or
/// cannot be spooled, or the store fails.
pub fn run(
    opts: &Options,
    progress: &Progress,
    on_bad: &mut dyn FnMut(&BadRecord),
    on_note: &mut dyn FnMut(&str),
) -> Result<(Vec<Found>, Summary), Error> {
    let started = Instant::now();
    // Standard input and pipes are read more than once: spooled as replay spools them,
    // into a directory removed when `spill` is dropped at the end of the run; so is what
    // a store holds.
    let spill = Arc::new(replay::spill::Dir::new(opts.read.spill_dir.clone()));
    let mut spooled: HashMap<String, String> = HashMap::new();
    let mut steps = Vec::new();
    #[cfg(feature = "jaeger")]
    let mut fetched = None;
    #[cfg(feature = "jaeger")]
    let store = opts.jaeger.as_ref();
    #[cfg(not(feature = "jaeger"))]
    let store: Option<()> = None;
    let inputs = match store {
        #[cfg(feature = "jaeger")]
        Some(store) => {
            let (path, f) = from_store(store, &spill, progress, on_note)?;
            steps.push(("fetching", started.elapsed()));
            spooled.insert(path.clone(), format!("Jaeger at {}", store.url));
            fetched = Some(f);
            vec![path]
        }
        _ => replay::input::expand(&opts.read.inputs)?
            .into_iter()
            .enumerate()
            .map(|(i, name)| {
                if replay::input::rereadable(&name) {
                    return Ok(name);
                }
                let path = spill.spool(&name, i, &progress.bytes_read)?;
                spooled.insert(path.clone(), name);
                Ok(path)
            })
            .collect::<Result<Vec<_>, BadRecord>>()?,
    };
    // A spooled copy's bad records are reported under the name the user gave.
    let on_bad = &mut |b: &BadRecord| match spooled.get(&b.source) {
        Some(name) => on_bad(&BadRecord {
            source: name.clone(),
            ..b.clone()
        }),
        None => on_bad(b),
    };
    // Mining reads every trace: an index only helps judging, which knows its span names.
    let mut read = replay::Options {
        inputs,
        evidence: false,
        observe: None,
        no_index: true,
        ..opts.read.clone()
    };
    let mut step = Instant::now();
    let mut lap = |name: &'static str, steps: &mut Vec<(&'static str, Duration)>| {
        steps.push((name, step.elapsed()));
        step = Instant::now();
    };
    let sampled = keys::sample(&read.inputs, read.limits);
    let keys = sampled.keys.clone();
    let mining_rules = RuleSet::reading(keys.clone());
    let projection = mining_rules.projection().clone();
    let setup = Arc::new(cond::Setup::new(
        cond::choose(&sampled.values, &keys),
        &projection,
    ));
    drop(sampled);
    lap("keys", &mut steps);
    let split = match opts.holdout {
        Some(f) => split_at(&read, 1.0 - f, on_note)?,
        None => None,
    };
    if split.is_some() {
        lap("holdout split", &mut steps);
    }
    // Mine: one miner per judging engine, merged into `mined` when the engine is done
    // with it (a spilled input makes an engine per partition: memory stays that of one).
    let mined: Arc<Mutex<Miner>> = Arc::new(Mutex::new(Miner::new(setup.clone())));
    let (into, forget) = (mined.clone(), mined.clone());
    let (make_setup, restart_setup) = (setup.clone(), setup.clone());
    // The traces mined are kept to judge the candidates from (without a holdout, whose
    // part is not mined).
    let kept = Arc::new(kept::Kept::new(spill.clone()));
    let (keep, unkeep) = (kept.clone(), kept.clone());
    let keeping = split.is_none();
    read.observe = Some(Observe {
        make: Arc::new(move || {
            let mut m = Merging {
                miner: Miner::new(make_setup.clone()),
                into: into.clone(),
            };
            let mut w = keeping.then(|| keep.writer());
            Box::new(move |t: &Trace, _: &[Judgement]| {
                m.miner.observe(t);
                if let Some(w) = &mut w {
                    w.add(t);
                }
            })
        }),
        // A spill judges every trace again: what the stream had mined is counted anew.
        restart: Arc::new(move || {
            *forget.lock() = Miner::new(restart_setup.clone());
            unkeep.reset();
        }),
    });
    read.to = combine_to(opts.read.to, split);
    let mut read_summary =
        replay::run(mining_rules, &read, progress, &mut |_| {}, on_bad, on_note)?;
    // Why the input spilled names a spooled copy as the user knows it.
    if let Some(spilled) = &mut read_summary.spilled {
        for (path, name) in &spooled {
            spilled.reason = spilled.reason.replace(path.as_str(), name);
        }
    }
    // Every engine (and its observer) is dropped by now.
    read.observe = None;
    let miner = std::mem::take(&mut *mined.lock());
    lap("mining", &mut steps);
    let (min_support, support_scaled) = match opts.min_support {
        Some(s) => (s.max(1), false),
        None => (((miner.traces as f64) * 0.01).ceil().max(5.0) as u64, true),
    };
    let min_confidence = opts.min_confidence.unwrap_or(0.95);
    let mut summary = Summary {
        traces_mined: miner.traces,
        holdout_from: split.map(|s| s + 1),
        min_support,
        min_confidence,
        support_scaled,
        keys,
        conditions: setup.conditions.len(),
        capped: (miner.capped, miner.pairs_dropped),
        #[cfg(feature = "jaeger")]
        fetched,
        ..Summary::default()
    };
    // Generate.
    let mut cands = candidate::generate(&miner, &projection, min_support, min_confidence);
    summary.generated = cands.len();
    if cands.len() > MAX_JUDGED {
        summary.not_judged = cands.len() - MAX_JUDGED;
        cands = best_of_each_family(cands, MAX_JUDGED);
    }
    drop(miner);
    let (cands, implied_early) = prune_mined(cands);
    summary.implied += implied_early;
    // Judge: from the traces kept when they are what a replay judges, else by replaying.
    let cands = loadable(cands, on_note);
    let judged = if cands.is_empty() {
        Vec::new()
    } else {
        let rules = candidate_rules(&cands)?;
        match kept_usable(&kept, keeping, &read_summary, &rules, &projection) {
            Ok(files) => judge_kept(&cands, &rules, &files, &projection, read.threads, progress)?,
            Err(why) => {
                summary.replayed = Some(why);
                judge(
                    &cands,
                    &rules,
                    &read,
                    opts.read.to,
                    split,
                    opts.read.no_index,
                    progress,
                )?
            }
        }
    };
    drop(kept);
    lap("judging", &mut steps);
    // Prune and rank.
    let mut found = Vec::new();
    for (c, j) in cands.into_iter().zip(judged) {
        let support = j.applied.0 + j.applied.1;
        let violations = j.violated.0 + j.violated.1;
        // The thresholds hold on what was mined (with a holdout, the earlier part; the
        // holdout is checked below); the counts stated are the whole input's.
        let (s, v) = match split {
            Some(_) => (j.applied.0, j.violated.0),
            None => (support, violations),
        };
        if s < min_support || ((s - v) as f64) < min_confidence * s as f64 {
            summary.below_thresholds += 1;
            continue;
        }
        let confidence = (support - violations) as f64 / support as f64;
        let lift = confidence / c.chance.max(1e-9);
        let confidence_lower = wilson_lower(support - violations, support);
        if c.family == candidate::Family::Agreement && lift < MIN_AGREEMENT_LIFT {
            summary.one_per_trace += 1;
            continue;
        }
        if c.family == candidate::Family::ValueBound && lift < MIN_VALUE_LIFT {
            summary.by_chance += 1;
            continue;
        }
        // A conditional is worth its condition when, judged, the Wilson lower bound of its
        // confidence is still above the confidence without it (its chance), by a lift of
        // MIN_CONDITIONAL_LIFT at least.
        if c.family == candidate::Family::Conditional
            && (confidence_lower <= c.chance || lift < MIN_CONDITIONAL_LIFT)
        {
            summary.not_better += 1;
            continue;
        }
        found.push(Found {
            lift,
            confidence,
            confidence_lower,
            support,
            violations,
            exceptions: j.exceptions,
            holdout: split.map(|_| (j.applied.1, j.violated.1)),
            examples: j.examples,
            candidate: c,
        });
    }
    if split.is_some() {
        let before = found.len();
        found.retain(|f| holds_up(f, min_confidence));
        summary.failed_holdout = before - found.len();
    }
    let before = found.len();
    prune_implied(&mut found);
    prune_values(&mut found);
    summary.implied += before - found.len();
    if let Some(known) = &opts.known {
        let before = found.len();
        prune_known(&mut found, known);
        summary.known = before - found.len();
    }
    found.sort_by(|a, b| {
        b.is_near()
            .cmp(&a.is_near())
            .then(b.confidence_lower.total_cmp(&a.confidence_lower))
            .then(b.support.cmp(&a.support))
            .then(b.lift.total_cmp(&a.lift))
            .then_with(|| a.candidate.id.cmp(&b.candidate.id))
    });
    if opts.top > 0 && found.len() > opts.top {
        summary.beyond_top = found.len() - opts.top;
        found.truncate(opts.top);
    }
    summary.read = read_summary;
    summary.elapsed = started.elapsed();
    summary.steps = steps;
    Ok((found, summary))
}

/// The `n` candidates judged when there are more: each family's best by mined confidence
/// (its Wilson lower bound), taken in turn from every family, so that no family crowds the
/// others out.
fn best_of_each_family(cands: Vec<Candidate>, n: usize) -> Vec<Candidate> {
    let mut by_family: BTreeMap<candidate::Family, Vec<Candidate>> = BTreeMap::new();
    for c in cands {
        by_family.entry(c.family).or_default().push(c);
    }
    let mut queues: Vec<std::vec::IntoIter<Candidate>> = by_family
        .into_values()
        .map(|mut v| {
            v.sort_by(|a, b| {
                wilson_lower(b.mined.1, b.mined.0)
                    .total_cmp(&wilson_lower(a.mined.1, a.mined.0))
                    .then_with(|| a.id.cmp(&b.id))
            });
            v.into_iter()
        })
        .collect();
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let before = out.len();
        for q in &mut queues {
            if out.len() < n {
                out.extend(q.next());
            }
        }
        if out.len() == before {
            break;
        }
    }
    out
}

/// A judging engine's miner, merged into the run's when the engine drops it.
struct Merging {
    miner: Miner,
    into: Arc<Mutex<Miner>>,
}

impl Drop for Merging {
    fn drop(&mut self) {
        let m = std::mem::take(&mut self.miner);
        self.into.lock().merge(m);
    }
}

/// `--to` and the holdout's split together: the earlier of the two.
fn combine_to(to: Option<u64>, split: Option<u64>) -> Option<u64> {
    match (to, split) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Whether a candidate's confidence holds on the holdout: it is dropped when the upper
/// Wilson bound there falls below the threshold (a clear shortfall, not noise).
fn holds_up(f: &Found, min_confidence: f64) -> bool {
    let Some((applied, violated)) = f.holdout else {
        return true;
    };
    if applied == 0 {
        return true;
    }
    let upper = 1.0 - wilson_lower(violated, applied);
    upper >= min_confidence
}

/// A relation between two names that chains: `a` then `b` and `b` then `c` give `a` then
/// `c`. Read child first for `Within`; an agreement chains on one key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Edge {
    Response(String, String),
    Before(String, String),
    Within(String, String),
    Agree(String, String, String),
}

impl Edge {
    /// The edges a claim asserts (directly or by what it implies).
    fn of(c: &Claim) -> Vec<Edge> {
        let mut all = c.closure();
        all.insert(c.clone());
        all.into_iter()
            .filter_map(|c| match c {
                Claim::Response(a, b) => Some(Edge::Response(a, b)),
                Claim::Before(a, b) => Some(Edge::Before(a, b)),
                Claim::Within(z, a) => Some(Edge::Within(z, a)),
                Claim::Agree(a, b, k) => Some(Edge::Agree(a, b, k)),
                _ => None,
            })
            .collect()
    }

    /// The edge a claim is about, when a chain can imply it.
    fn about(c: &Claim) -> Option<Edge> {
        Some(match c {
            Claim::Response(a, b) | Claim::AfterWithin(a, b, _) => {
                Edge::Response(a.clone(), b.clone())
            }
            Claim::Before(a, b) | Claim::BeforeWithin(a, b, _) => {
                Edge::Before(a.clone(), b.clone())
            }
            Claim::Within(z, a) => Edge::Within(z.clone(), a.clone()),
            Claim::Agree(a, b, k) | Claim::AgreeAfter(a, b, k) => {
                Edge::Agree(a.clone(), b.clone(), k.clone())
            }
            _ => return None,
        })
    }

    /// The same relation between other names.
    fn with(&self, a: &str, b: &str) -> Edge {
        match self {
            Edge::Response(..) => Edge::Response(a.into(), b.into()),
            Edge::Before(..) => Edge::Before(a.into(), b.into()),
            Edge::Within(..) => Edge::Within(a.into(), b.into()),
            Edge::Agree(_, _, k) => Edge::Agree(a.into(), b.into(), k.clone()),
        }
    }

    fn ends(&self) -> (&str, &str) {
        match self {
            Edge::Response(a, b)
            | Edge::Before(a, b)
            | Edge::Within(a, b)
            | Edge::Agree(a, b, _) => (a, b),
        }
    }
}

/// A candidate as pruning sees it.
struct Item<'a> {
    claim: &'a Claim,
    names: &'a [String],
    violations: u64,
    /// Whether it may imply others: a candidate judged, or one whose mined counts are
    /// exactly what judging it gives.
    sure: bool,
}

/// Which items are implied by others: by one's closure (a sure one's), then by a chain of
/// two with no more violations between them than the item has — an order, response,
/// agreement or containment of a fixed sequence is reported for its steps, not for every
/// pair of them (a time bound goes with its response).
fn implied(items: &[Item<'_>]) -> Vec<bool> {
    let mut by_closure: HashSet<Claim> = HashSet::new();
    for i in items.iter().filter(|i| i.sure) {
        by_closure.extend(i.claim.closure());
    }
    let mut out: Vec<bool> = items.iter().map(|i| by_closure.contains(i.claim)).collect();
    // Each edge asserted, with the fewest violations of a candidate asserting it.
    let mut edges: HashMap<Edge, u64> = HashMap::new();
    for (i, item) in items.iter().enumerate() {
        if item.sure && !out[i] {
            for e in Edge::of(item.claim) {
                let v = edges.entry(e).or_insert(u64::MAX);
                *v = (*v).min(item.violations);
            }
        }
    }
    let names: HashSet<&str> = items
        .iter()
        .flat_map(|i| i.names.iter().map(String::as_str))
        .collect();
    for (i, item) in items.iter().enumerate() {
        if out[i] {
            continue;
        }
        let Some(edge) = Edge::about(item.claim) else {
            continue;
        };
        let (a, c) = edge.ends();
        // The violations of a chain through `b` are at most the sum of its two steps'.
        out[i] = names.iter().any(|&b| {
            b != a
                && b != c
                && match (edges.get(&edge.with(a, b)), edges.get(&edge.with(b, c))) {
                    (Some(x), Some(y)) => x.saturating_add(*y) <= item.violations,
                    _ => false,
                }
        });
    }
    out
}

/// Drops the found candidates implied by others ([`implied`]).
fn prune_implied(found: &mut Vec<Found>) {
    let drop = implied(
        &found
            .iter()
            .map(|f| Item {
                claim: &f.candidate.claim,
                names: &f.candidate.names,
                violations: f.violations,
                sure: true,
            })
            .collect::<Vec<_>>(),
    );
    let mut at = 0;
    found.retain(|_| {
        at += 1;
        !drop[at - 1]
    });
}

/// Drops the value candidates that others found say already, each step on what the one
/// before left: [`bounds_implied`], [`conditionals_dominated`], [`conditionals_chained`].
fn prune_values(found: &mut Vec<Found>) {
    for step in [
        bounds_implied as fn(&[Found]) -> Vec<bool>,
        conditionals_dominated,
        conditionals_chained,
    ] {
        let drop = step(found);
        let mut at = 0;
        found.retain(|_| {
            at += 1;
            !drop[at - 1]
        });
    }
}

/// Three texts: names and a key.
type Names3<'a> = (&'a str, &'a str, &'a str);
/// A condition's key and value, as written.
type KeyValue<'a> = (&'a str, &'a str);

/// Which value bounds and cut points another found one implies with no more violations: a
/// `max(B, k) <= $a.k` when `sum(B, k) <= $a.k` was found and `B`'s values were never
/// negative (a sum of non-negative values bounds each of them), and a conditional on
/// `k > c` when one on a lower cut of the same names and key was found (every trace with a
/// value above `c` has one above the lower cut).
fn bounds_implied(found: &[Found]) -> Vec<bool> {
    let mut sums: HashMap<Names3<'_>, u64> = HashMap::new();
    let mut cuts: HashMap<Names3<'_>, Vec<(f64, u64)>> = HashMap::new();
    for f in found {
        match &f.candidate.claim {
            Claim::SumAtMost(a, b, k) => {
                sums.insert((a, b, k), f.violations);
            }
            Claim::WhenAbove(a, k, c, b) => {
                if let Ok(c) = c.parse::<f64>() {
                    cuts.entry((a, k, b)).or_default().push((c, f.violations));
                }
            }
            _ => {}
        }
    }
    found
        .iter()
        .map(|f| match &f.candidate.claim {
            Claim::MaxAtMost(a, b, k, true) => sums
                .get(&(a.as_str(), b.as_str(), k.as_str()))
                .is_some_and(|&v| v <= f.violations),
            Claim::WhenAbove(a, k, c, b) => c.parse::<f64>().is_ok_and(|c| {
                cuts.get(&(a.as_str(), k.as_str(), b.as_str()))
                    .is_some_and(|l| l.iter().any(|&(lo, v)| lo < c && v <= f.violations))
            }),
            _ => false,
        })
        .collect()
}

/// The two names of a conditional, and its condition's key and value.
fn conditional_of(c: &Claim) -> Option<(&str, &str, KeyValue<'_>)> {
    match c {
        Claim::WhenEq(a, k, v, b) | Claim::WhenAbove(a, k, v, b) => {
            Some((a.as_str(), b.as_str(), (k.as_str(), v.as_str())))
        }
        _ => None,
    }
}

/// Conditionals in the order they are kept in: fewest violations, then most support, then
/// by id.
fn conditionals_ranked(found: &[Found]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..found.len())
        .filter(|&i| conditional_of(&found[i].candidate.claim).is_some())
        .collect();
    order.sort_by(|&x, &y| {
        let (a, b) = (&found[x], &found[y]);
        a.violations
            .cmp(&b.violations)
            .then(b.support.cmp(&a.support))
            .then_with(|| a.candidate.id.cmp(&b.candidate.id))
    });
    order
}

/// Which conditionals another on the same two names dominates — as much support or more,
/// as few violations or fewer (equals: the first by id kept): conditions that pick the same
/// traces (an endpoint and its method) say one thing, once.
fn conditionals_dominated(found: &[Found]) -> Vec<bool> {
    let mut drop = vec![false; found.len()];
    let mut kept: HashMap<(&str, &str), Vec<(u64, u64)>> = HashMap::new();
    for i in conditionals_ranked(found) {
        let f = &found[i];
        let Some((a, b, _)) = conditional_of(&f.candidate.claim) else {
            continue;
        };
        let k = kept.entry((a, b)).or_default();
        if k.iter().any(|&(s, v)| s >= f.support && v <= f.violations) {
            drop[i] = true;
        } else {
            k.push((f.support, f.violations));
        }
    }
    drop
}

/// Which conditionals a chain implies: `a.where(c)` has a `b1`, which every trace with a
/// `b1` has a `b2` (a found candidate implies it), with no more violations between them
/// than `a.where(c)` having a `b2` has — a condition is reported with the names it brings
/// first, not with every name those bring. Kept ones imply, in rank order.
fn conditionals_chained(found: &[Found]) -> Vec<bool> {
    let mut exists: HashMap<(String, String), u64> = HashMap::new();
    for f in found {
        let c = &f.candidate.claim;
        for e in c.closure().into_iter().chain([c.clone()]) {
            if let Claim::Exists(x, y) = e {
                let v = exists.entry((x, y)).or_insert(u64::MAX);
                *v = (*v).min(f.violations);
            }
        }
    }
    let mut drop = vec![false; found.len()];
    // Per (a, condition): the names kept with it and their violations.
    let mut kept: HashMap<(&str, KeyValue<'_>), Vec<(&str, u64)>> = HashMap::new();
    for i in conditionals_ranked(found) {
        let f = &found[i];
        let Some((a, b, cond)) = conditional_of(&f.candidate.claim) else {
            continue;
        };
        let k = kept.entry((a, cond)).or_default();
        let chained = k.iter().any(|&(b1, v1)| {
            exists
                .get(&(b1.to_string(), b.to_string()))
                .is_some_and(|&v2| v1.saturating_add(v2) <= f.violations)
        });
        if chained {
            drop[i] = true;
        } else {
            k.push((b, f.violations));
        }
    }
    drop
}

/// Drops, before judging, the candidates that the sure ones imply: those whose mined
/// counts are exactly what judging gives (orders, responses, partners, structure,
/// existence), so that judging pays only for what can be reported.
fn prune_mined(cands: Vec<Candidate>) -> (Vec<Candidate>, usize) {
    let sure = |c: &Claim| {
        matches!(
            c,
            Claim::Exists(..)
                | Claim::Before(..)
                | Claim::Response(..)
                | Claim::ResponseUntil(..)
                | Claim::OwnAfter(..)
                | Claim::OwnBefore(..)
                | Claim::ChildOf(..)
                | Claim::Within(..)
        )
    };
    let drop = implied(
        &cands
            .iter()
            .map(|c| Item {
                claim: &c.claim,
                names: &c.names,
                violations: c.mined.0 - c.mined.1,
                sure: sure(&c.claim),
            })
            .collect::<Vec<_>>(),
    );
    let n = drop.iter().filter(|d| **d).count();
    let kept = cands
        .into_iter()
        .zip(drop)
        .filter_map(|(c, d)| (!d).then_some(c))
        .collect();
    (kept, n)
}

/// Drops candidates that a known rule states: its condition is the candidate's (spacing
/// aside), or one the candidate's claim is implied by.
fn prune_known(found: &mut Vec<Found>, known: &RuleSet) {
    let norm = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let stated: HashSet<String> = known
        .rules()
        .iter()
        .map(|r| norm(&r.def.condition))
        .collect();
    let by_text: HashMap<String, Claim> = found
        .iter()
        .map(|f| (norm(&f.candidate.condition), f.candidate.claim.clone()))
        .collect();
    let mut implied: HashSet<Claim> = HashSet::new();
    for s in &stated {
        if let Some(c) = by_text.get(s) {
            implied.insert(c.clone());
            implied.extend(c.closure());
        }
    }
    found.retain(|f| !implied.contains(&f.candidate.claim));
}

/// Candidates that load as rules on their own (a name or key the generator could not
/// write is noted and dropped, never allowed to refuse the whole set).
fn loadable(cands: Vec<Candidate>, on_note: &mut dyn FnMut(&str)) -> Vec<Candidate> {
    cands
        .into_iter()
        .filter(|c| {
            let text = render::rule_file(&[render::Rule::bare(c)]);
            match RuleSet::from_text("candidate", &text) {
                Ok(_) => true,
                Err(report) => {
                    on_note(&format!(
                        "candidate {} does not load and is left out: {}",
                        c.id,
                        report.render().lines().next().unwrap_or_default()
                    ));
                    false
                }
            }
        })
        .collect()
}

/// What judging one candidate gave: (mining part, holdout part).
#[derive(Debug, Default)]
struct Judged {
    applied: (u64, u64),
    violated: (u64, u64),
    exceptions: Vec<TraceId>,
    examples: Vec<Example>,
}

/// What a candidate's examples keep: its span names, its keys, whether the tree between
/// them.
type Wanted = (Vec<String>, Vec<KeyId>, bool);

/// The smallest examples seen so far per candidate: [held, broke].
type Best = Vec<[Option<Example>; 2]>;

/// Whether an example of `size` (spans, trace id) beats what `slot` holds: it holds none,
/// or a larger one.
fn smaller(slot: &Option<Example>, size: (usize, TraceId)) -> bool {
    slot.as_ref().is_none_or(|e| size < e.size)
}

/// No example yet for `n` candidates.
fn no_examples(n: usize) -> Best {
    (0..n).map(|_| [None, None]).collect()
}

/// Replays the candidates (`rules`) over the input (in two windows with a holdout).
fn judge(
    cands: &[Candidate],
    rules: &RuleSet,
    read: &replay::Options,
    to: Option<u64>,
    split: Option<u64>,
    no_index: bool,
    progress: &Progress,
) -> Result<Vec<Judged>, BadRecord> {
    let mut out: Vec<Judged> = cands.iter().map(|_| Judged::default()).collect();
    let index: HashMap<String, usize> = cands
        .iter()
        .enumerate()
        .map(|(i, c)| (c.id.clone(), i))
        .collect();
    let best: Mutex<Best> = Mutex::new(no_examples(cands.len()));
    let wanted: Arc<Vec<Wanted>> = Arc::new(wanted(cands, rules));
    let windows: Vec<(Option<u64>, Option<u64>)> = match split {
        Some(s) => vec![(read.from, Some(s)), (Some(s.saturating_add(1)), to)],
        None => vec![(read.from, to)],
    };
    for (part, (from, to)) in windows.into_iter().enumerate() {
        if let (Some(f), Some(t)) = (from, to) {
            if f > t {
                continue;
            }
        }
        // This window's examples, merged into `best` once it is judged.
        let window: Arc<Mutex<Best>> = Arc::new(Mutex::new(no_examples(cands.len())));
        let (b, w) = (window.clone(), wanted.clone());
        let opts = replay::Options {
            from,
            to,
            no_index,
            signals_per_rule: Some(EXCEPTIONS),
            observe: Some(Observe {
                make: Arc::new(move || {
                    let (b, w) = (b.clone(), w.clone());
                    Box::new(move |t: &Trace, js: &[Judgement]| keep_examples(t, js, &b, &w))
                }),
                // A spill judges every trace of the window again, whole: the examples the
                // stream kept may be traces it saw in part (a root before its children),
                // so they go.
                restart: {
                    let (b, n) = (window.clone(), cands.len());
                    Arc::new(move || *b.lock() = no_examples(n))
                },
            }),
            ..read.clone()
        };
        let mut on_signal = |s: Signal| {
            if let Some(&i) = index.get(&s.rule_id) {
                if out[i].exceptions.len() < EXCEPTIONS {
                    out[i].exceptions.push(s.trace_id);
                }
            }
        };
        let summary = replay::run(
            rules.clone(),
            &opts,
            progress,
            &mut on_signal,
            &mut |_| {},
            &mut |_| {},
        )?;
        drop(opts);
        let window = std::mem::take(&mut *window.lock());
        for (kept, found) in best.lock().iter_mut().zip(window) {
            for (k, f) in kept.iter_mut().zip(found) {
                if f.as_ref().is_some_and(|f| smaller(k, f.size)) {
                    *k = f;
                }
            }
        }
        for (id, counts) in &summary.stats.rules {
            if let Some(&i) = index.get(id) {
                let j = &mut out[i];
                if part == 0 {
                    (j.applied.0, j.violated.0) = (counts.applied, counts.violated);
                } else {
                    (j.applied.1, j.violated.1) = (counts.applied, counts.violated);
                }
            }
        }
    }
    let best = std::mem::take(&mut *best.lock());
    for (j, [held, broke]) in out.iter_mut().zip(best) {
        j.examples = held.into_iter().chain(broke).collect();
    }
    Ok(out)
}

/// The files of the traces kept while mining, when judging them is judging what a replay
/// judges; else why not. A replay judges each trace once, whole, when nothing arrives late,
/// nothing is judged early for memory, nothing is cut, and no span is refused (the mining
/// pass decodes more attributes than judging reads: a span refused for one of them would
/// be judged by a replay).
fn kept_usable(
    kept: &kept::Kept,
    keeping: bool,
    read: &replay::Summary,
    rules: &RuleSet,
    mined: &Projection,
) -> Result<Vec<String>, String> {
    if !keeping {
        return Err("with a holdout, its part is not mined".into());
    }
    let c = &read.stats.counters;
    let why = [
        (
            c.late_spans + c.late_spans_unjudged,
            "spans arrived after their trace was judged",
        ),
        (
            c.traces_judged_early,
            "traces were judged early to bound memory",
        ),
        (c.traces_oversized, "traces were cut at the size limit"),
        (read.invalid_spans, "spans were refused"),
        (read.bad_records, "records were unreadable"),
    ];
    if let Some((n, why)) = why.iter().find(|(n, _)| *n > 0) {
        return Err(format!("{n} {why}"));
    }
    // The candidates' conditions read only what mining kept (its keys, never a status
    // message); were one to read more, the kept traces would not have it. (Keys only their
    // messages name change no verdict.)
    for a in &rules.code().attrs {
        match a {
            Attr::Any(k) | Attr::Span(k) if mined.key(k).is_none() => {
                return Err(format!(
                    "a candidate reads `{k}`, which mining did not keep"
                ));
            }
            Attr::Intrinsic(Intrinsic::StatusMessage) if !mined.status_message() => {
                return Err(
                    "a candidate reads the status message, which mining did not keep".into(),
                );
            }
            _ => {}
        }
    }
    kept.files()
}

/// Judges the candidates (`rules`) on the traces kept while mining (keyed for `mined`):
/// what [`judge`] gives without a holdout, as a replay counts it — each complete trace
/// judged once, and the exceptions each candidate's first by signal time, then trace id.
/// One file at a time on each of `threads` threads (0: one per core).
fn judge_kept(
    cands: &[Candidate],
    rules: &RuleSet,
    files: &[String],
    mined: &Projection,
    threads: usize,
    progress: &Progress,
) -> Result<Vec<Judged>, BadRecord> {
    use rayon::prelude::*;
    let projection = rules.projection();
    let keys: Vec<Option<KeyId>> = (0..mined.len())
        .map(|k| projection.key(mined.key_name(KeyId(k as u32))))
        .collect();
    let best: Mutex<Best> = Mutex::new(no_examples(cands.len()));
    let wanted: Vec<Wanted> = wanted(cands, rules);
    // What reading the kept files stands for on the progress bar: the input, read again.
    let input_bytes = progress.bytes_read.load(Relaxed);
    let kept_bytes: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f).map_or(0, |m| m.len()))
        .sum::<u64>()
        .max(1);
    let judge_file = |file: &String| -> Result<Tally, BadRecord> {
        let bad = |e: String| BadRecord {
            source: "discover".into(),
            location: Location::Whole,
            message: format!("reading the traces kept in {file}: {e}"),
        };
        let mut tally = Tally::new(cands.len());
        let mut records = kept::Records::open(file).map_err(|e| bad(e.to_string()))?;
        while let Some(rec) = records.next_record().map_err(|e| bad(e.to_string()))? {
            let read = (rec.len() as u128 + 4) * u128::from(input_bytes) / u128::from(kept_bytes);
            let t = packed::read(rec, projection, &keys).map_err(|e| bad(e.to_string()))?;
            let js = judge_trace(rules, &t, Mode::Replay, false, false);
            tally.add(&js);
            keep_examples(&t, &js, &best, &wanted);
            progress.spans.fetch_add(t.spans.len() as u64, Relaxed);
            progress
                .bytes_read
                .fetch_add(u64::try_from(read).unwrap_or(u64::MAX), Relaxed);
        }
        Ok(tally)
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.min(files.len()))
        .thread_name(|i| format!("betrace-judge-{i}"))
        .build()
        .map_err(|e| BadRecord {
            source: "discover".into(),
            location: Location::Whole,
            message: format!("cannot start the judging threads: {e}"),
        })?;
    let tally = pool.install(|| {
        files
            .par_iter()
            .map(judge_file)
            .try_reduce(|| Tally::new(cands.len()), |a, b| Ok(a.merged(b)))
    })?;
    let mut out: Vec<Judged> = cands.iter().map(|_| Judged::default()).collect();
    for (j, (counts, mut broke)) in out.iter_mut().zip(tally.rules) {
        (j.applied.0, j.violated.0) = counts;
        broke.sort_unstable();
        j.exceptions = broke.into_iter().take(EXCEPTIONS).map(|(_, t)| t).collect();
    }
    for (j, [held, broke]) in out.iter_mut().zip(best.into_inner()) {
        j.examples = held.into_iter().chain(broke).collect();
    }
    Ok(out)
}

/// What judging kept traces counted: per candidate, (applied, violated) and its earliest
/// signals as (signal time, trace), at most [`EXCEPTIONS`] once pruned.
struct Tally {
    rules: Vec<(Counts, Vec<(u64, TraceId)>)>,
}

/// A candidate's (applied, violated).
type Counts = (u64, u64);

impl Tally {
    fn new(n: usize) -> Tally {
        Tally {
            rules: (0..n).map(|_| ((0, 0), Vec::new())).collect(),
        }
    }

    /// Counts one trace's judgements as an engine counts a trace's first.
    fn add(&mut self, js: &[Judgement]) {
        for j in js.iter().filter(|j| !j.skipped) {
            let (counts, broke) = &mut self.rules[j.rule];
            counts.0 += 1;
            if let Some(s) = &j.signal {
                counts.1 += 1;
                broke.push((s.time_unix_nano, s.trace_id));
                if broke.len() >= 4 * EXCEPTIONS {
                    broke.sort_unstable();
                    broke.truncate(EXCEPTIONS);
                }
            }
        }
    }

    /// Both tallies' counts and earliest signals.
    fn merged(mut self, other: Tally) -> Tally {
        for (mine, (counts, broke)) in self.rules.iter_mut().zip(other.rules) {
            mine.0 .0 += counts.0;
            mine.0 .1 += counts.1;
            mine.1.extend(broke);
            mine.1.sort_unstable();
            mine.1.truncate(EXCEPTIONS);
        }
        self
    }
}

/// The candidates as one rule set (each with `incomplete: skip`).
fn candidate_rules(cands: &[Candidate]) -> Result<RuleSet, BadRecord> {
    let text = render::rule_file(&cands.iter().map(render::Rule::bare).collect::<Vec<_>>());
    RuleSet::from_text("candidates", &text)
        .map(|(rules, _)| rules)
        .map_err(|r| BadRecord {
            source: "discover".into(),
            location: Location::Whole,
            message: format!("the candidates do not load: {}", r.render()),
        })
}

/// What each candidate's examples keep ([`Wanted`]).
fn wanted(cands: &[Candidate], rules: &RuleSet) -> Vec<Wanted> {
    cands
        .iter()
        .map(|c| {
            let keys = candidate::key_ids(rules.projection(), &c.keys);
            (
                c.names.clone(),
                keys,
                c.family == candidate::Family::Structure,
            )
        })
        .collect()
}

/// Keeps, for each candidate judged on `t`, the trace if it is smaller than the one kept
/// for that outcome (ties: the lower trace id), cut down: the smallest trace that held
/// (broke) it, whatever the order traces are judged in.
fn keep_examples(t: &Trace, js: &[Judgement], best: &Mutex<Best>, wanted: &[Wanted]) {
    let mut tree = None;
    let mut b = best.lock();
    let size = (t.spans.len(), t.trace_id);
    for j in js.iter().filter(|j| !j.skipped) {
        let broke = j.signal.is_some();
        let slot = &mut b[j.rule][usize::from(broke)];
        if !smaller(slot, size) {
            continue;
        }
        let tree = tree.get_or_insert_with(|| cut::Tree::new(t));
        let (names, keys, structural) = &wanted[j.rule];
        let Some((spans, yaml)) = tree.cut(names, keys, *structural, 10) else {
            continue;
        };
        *slot = Some(Example {
            violation: broke,
            trace_id: t.trace_id,
            size,
            spans,
            yaml,
        });
    }
}

/// Every trace of the store's window, fetched once into a file of the spill directory:
/// its path, and what was fetched.
#[cfg(feature = "jaeger")]
fn from_store(
    store: &JaegerOptions,
    spill: &replay::spill::Dir,
    progress: &Progress,
    on_note: &mut dyn FnMut(&str),
) -> Result<(String, Fetched), Error> {
    let (file, path) = spill.create("store.jsonl")?;
    let mut out = std::io::BufWriter::new(file);
    let (fetched, failure) = jaeger::spool(store, &mut out, progress, on_note);
    match failure {
        Some(e) => Err(Error::Store(e)),
        None => Ok((path, fetched)),
    }
}

/// The start time before which a fraction `q` of the complete traces start: a first
/// reading that keeps a bounded sample of trace starts.
fn split_at(
    read: &replay::Options,
    q: f64,
    on_note: &mut dyn FnMut(&str),
) -> Result<Option<u64>, BadRecord> {
    const SAMPLE: usize = 100_000;
    let starts: Arc<Mutex<(Vec<u64>, u64)>> = Arc::default();
    let (s, forget) = (starts.clone(), starts.clone());
    let opts = replay::Options {
        observe: Some(Observe {
            restart: Arc::new(move || *forget.lock() = Default::default()),
            make: Arc::new(move || {
                let s = s.clone();
                Box::new(move |t: &Trace, _: &[Judgement]| {
                    let mut g = s.lock();
                    g.1 += 1;
                    let seen = g.1;
                    let start = t.start_unix_nano();
                    if g.0.len() < SAMPLE {
                        g.0.push(start);
                    } else {
                        // Reservoir sampling, with a cheap deterministic stream of indexes.
                        let at = (seen.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) % seen;
                        if (at as usize) < SAMPLE {
                            g.0[at as usize] = start;
                        }
                    }
                })
            }),
        }),
        ..read.clone()
    };
    replay::run(
        RuleSet::reading(Vec::new()),
        &opts,
        &Progress::default(),
        &mut |_| {},
        &mut |_| {},
        &mut |_| {},
    )?;
    let mut g = starts.lock();
    if g.0.is_empty() {
        on_note("no complete trace to split for the holdout");
        return Ok(None);
    }
    g.0.sort_unstable();
    let at = ((g.0.len() as f64 * q.clamp(0.0, 1.0)) as usize).min(g.0.len() - 1);
    Ok(Some(g.0[at]))
}

/// Per family, how many were found: for the summary.
pub fn by_family(found: &[Found]) -> BTreeMap<&'static str, usize> {
    let mut m = BTreeMap::new();
    for f in found {
        *m.entry(f.candidate.family.word()).or_default() += 1;
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kept traces are judged only when they are what a replay judges.
    #[test]
    fn kept_traces_are_judged_only_when_a_replay_would_judge_the_same() {
        let dir = Arc::new(replay::spill::Dir::new(None));
        let kept = Arc::new(kept::Kept::new(dir));
        drop(kept.writer());
        let clean = replay::Summary::default();
        let (none, mined) = (RuleSet::reading(Vec::new()), Projection::new(["k"], false));
        // A candidate whose condition reads a key mining did not keep: the input is read
        // again (a key only its message names does not count).
        let reads = |key: &str| {
            let text = format!(
                "rules:\n  - id: r\n    name: r\n    condition: x.where({key} == 1)\n    signal:\n      message: \"{{other}}\"\n"
            );
            RuleSet::from_text("r.yaml", &text).unwrap().0
        };
        assert!(kept_usable(&kept, true, &clean, &reads("k"), &mined).is_ok());
        assert!(kept_usable(&kept, true, &clean, &reads("j"), &mined)
            .unwrap_err()
            .contains("`j`"));
        assert_eq!(
            kept_usable(&kept, true, &clean, &none, &mined).map(|f| f.len()),
            Ok(1)
        );
        assert!(kept_usable(&kept, false, &clean, &none, &mined)
            .unwrap_err()
            .contains("holdout"));
        let mut late = replay::Summary::default();
        late.stats.counters.late_spans = 3;
        assert!(kept_usable(&kept, true, &late, &none, &mined)
            .unwrap_err()
            .starts_with("3 spans arrived after"));
        for set in [
            |s: &mut replay::Summary| s.stats.counters.late_spans_unjudged = 1,
            |s: &mut replay::Summary| s.stats.counters.traces_judged_early = 1,
            |s: &mut replay::Summary| s.stats.counters.traces_oversized = 1,
            |s: &mut replay::Summary| s.invalid_spans = 1,
            |s: &mut replay::Summary| s.bad_records = 1,
        ] {
            let mut s = replay::Summary::default();
            set(&mut s);
            assert!(kept_usable(&kept, true, &s, &none, &mined).is_err());
        }
        // A reset forgets the files; a failed write makes them unusable.
        kept.reset();
        assert_eq!(kept_usable(&kept, true, &clean, &none, &mined), Ok(vec![]));
        let nowhere = Arc::new(replay::spill::Dir::new(Some("/dev/null".into())));
        let failed = Arc::new(kept::Kept::new(nowhere));
        drop(failed.writer());
        assert!(kept_usable(&failed, true, &clean, &none, &mined)
            .unwrap_err()
            .contains("spill directory"));
    }
}
