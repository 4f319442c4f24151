//! A compiled rule set: what the CLI, replay and the C ABI judge traces with.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use crate::diagnostic::{Report, SourceFile};
use crate::eval::vm::{Lookup, Verdict, View};
use crate::lang::bytecode::{Code, Program};
use crate::lang::compile::Compiler;
use crate::lang::hir::{Attr, Intrinsic};
use crate::lang::stack::with_stack;
use crate::rules::{self, message, RuleDef, SourceError};
use crate::trace;
use crate::trace::projected::{self, Projection};

/// Why a rule set could not be built.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A `RULES` argument could not be read.
    #[error(transparent)]
    Sources(#[from] SourceError),
    /// The files have errors; the report has every one, located and rendered.
    #[error("{}", .0.render())]
    Rules(Report),
}

/// One rule with its program.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The rule as loaded and checked.
    pub def: RuleDef,
    /// Its bytecode.
    pub program: Program,
    /// Its id as a number, the same for the same id in every rule set: what the engine
    /// remembers per judged trace, across reloads. A 64-bit hash of the id (two ids of one
    /// rule set sharing it is a chance of about n² in 2^65).
    pub uid: u64,
    /// What the rule does, as a stable hash (`digest_of`): equal digests, equal
    /// behaviour. Reloads compare them to say which rules were edited.
    pub digest: u64,
}

/// A rule's digest: FNV-1a (64 bits, the same in every build and on every host) over what
/// shapes its verdicts and signals — id, name, severity, whether it is enabled, what it
/// does on incomplete traces, tags, compliance mapping, condition, signal type, message
/// and context. Its description and examples do not change what it does, so they are
/// left out.
fn digest_of(def: &RuleDef) -> u64 {
    use std::hash::Hasher;
    let mut h = fnv::FnvHasher::default();
    let mut field = |s: &str| {
        h.write(s.as_bytes());
        h.write_u8(0xff);
    };
    field(&def.id);
    field(&def.name);
    field(&format!("{:?}", def.severity));
    field(if def.enabled { "enabled" } else { "disabled" });
    field(&format!("{:?}", def.incomplete));
    for t in &def.tags {
        field(t);
    }
    field("");
    if let Some(c) = &def.compliance {
        field(&c.framework);
        field(&c.control);
    }
    field(&def.condition);
    field(&def.signal_type);
    field(&def.message);
    for k in &def.context {
        field(k);
    }
    h.finish()
}

/// How one rule set differs from the one it replaces, by rule id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Rules only in the new set.
    pub added: Vec<String>,
    /// Rules only in the old set.
    pub removed: Vec<String>,
    /// Rules in both whose digests differ.
    pub edited: Vec<String>,
}

impl Changes {
    /// No rule added, removed or edited.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.edited.is_empty()
    }
}

/// [`Rule::uid`]: a fixed-key hash, so that no table of ids lives in the process.
fn uid_of(id: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    id.hash(&mut h);
    h.finish()
}

/// Traces a rule applied to, and of them the ones that violated it (each trace once).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct RuleCounts {
    /// Traces the rule applied to: its `when` part held (an invariant), or every trace
    /// judged (a violation-form rule).
    pub applied: u64,
    /// Traces it fired on: its signals.
    pub violated: u64,
    /// Traces it skipped: `incomplete: skip` and the trace was not complete.
    pub skipped: u64,
}

/// A rule's counts while a rule set is in force: atomics, so judging threads never lock.
#[derive(Debug, Default)]
struct Counter {
    applied: AtomicU64,
    violated: AtomicU64,
    skipped: AtomicU64,
}

/// What [`RuleSet::apply`] reports of one enabled rule that applies to a trace: its
/// verdict, or that it was skipped. The rule set only judges; what a verdict leads to
/// (signals, counts, evidence) is the engine's (`engine::judge`).
#[derive(Debug)]
pub struct Applied<'a> {
    /// The rule's index in [`RuleSet::rules`].
    pub rule: usize,
    /// The trace as judged: keyed for these rules' projection.
    pub trace: &'a projected::Trace,
    /// The rule's verdict; `None` when the rule says `incomplete: skip` and the trace is
    /// not complete (not judged).
    pub verdict: Option<&'a Verdict>,
    /// The span the outcome is attributed to (the verdict's subject, else the root); only
    /// when asked for, and never for a skipped rule.
    pub subject: Option<usize>,
}

/// Every rule of a set of files, compiled together.
#[derive(Debug, Clone)]
pub struct RuleSet {
    rules: Vec<Rule>,
    code: Code,
    lookup: Lookup,
    files: Vec<SourceFile>,
    /// Per rule (by index), what [`RuleSet::count`] counted; shared by clones.
    counters: Arc<[Counter]>,
    /// The set's digest ([`RuleSet::digest`]).
    digest: u64,
}

impl RuleSet {
    /// Loads rule files named by `specs` (files, directories, globs). On success, also
    /// returns the warnings.
    pub fn from_paths<S: AsRef<str>>(specs: &[S]) -> Result<(RuleSet, Report), LoadError> {
        let files = rules::read_sources(specs)?;
        RuleSet::from_sources(files).map_err(LoadError::Rules)
    }

    /// Loads one rule file's text (`name` is shown in diagnostics).
    pub fn from_text(name: &str, text: &str) -> Result<(RuleSet, Report), Report> {
        RuleSet::from_sources(vec![SourceFile::new(name, text)])
    }

    /// No rules, but decoding keeps the attributes `keys` (and every span's name, times and
    /// tree): what `betrace discover` mines, judged by no rule.
    pub fn reading<I: IntoIterator<Item = String>>(keys: I) -> RuleSet {
        let (mut set, _) = RuleSet::build(Vec::new()).expect("an empty rule set loads");
        set.lookup = Lookup::new(&set.code, Arc::new(Projection::new(keys, false)));
        set
    }

    /// Loads and compiles rule files, all or nothing: any error refuses the whole set.
    pub fn from_sources(files: Vec<SourceFile>) -> Result<(RuleSet, Report), Report> {
        with_stack(|| RuleSet::build(files))
    }

    fn build(files: Vec<SourceFile>) -> Result<(RuleSet, Report), Report> {
        let (defs, items) = rules::load(&files);
        let report = Report { files, items };
        if report.has_errors() {
            return Err(report);
        }
        let mut compiler = Compiler::new();
        let rules: Vec<Rule> = defs
            .into_iter()
            .map(|def| {
                let program = compiler.compile(&def.form);
                let uid = uid_of(&def.id);
                let digest = digest_of(&def);
                Rule {
                    def,
                    program,
                    uid,
                    digest,
                }
            })
            .collect();
        let code = compiler.finish();
        let projection = Arc::new(projection_of(
            &code,
            rules.iter().flat_map(|r| {
                r.def
                    .context
                    .iter()
                    .cloned()
                    .chain(message::placeholders(&r.def.message))
            }),
        ));
        let lookup = Lookup::new(&code, projection);
        let files = report.files.clone();
        let digest = {
            use std::hash::Hasher;
            let mut by_id: Vec<(&str, u64)> = rules
                .iter()
                .map(|r| (r.def.id.as_str(), r.digest))
                .collect();
            by_id.sort_unstable();
            let mut h = fnv::FnvHasher::default();
            for (id, d) in by_id {
                h.write(id.as_bytes());
                h.write_u8(0xff);
                h.write_u64(d);
            }
            h.finish()
        };
        Ok((
            RuleSet {
                digest,
                counters: rules.iter().map(|_| Counter::default()).collect(),
                rules,
                code,
                lookup,
                files,
            },
            report,
        ))
    }

    /// What the set does, as one stable 64-bit hash of its rules' ids and digests (in id
    /// order: moving a rule between files changes nothing). Replicas running the same
    /// rules report the same digest, so a dashboard shows which rule set is live where.
    pub fn digest(&self) -> u64 {
        self.digest
    }

    /// How this set differs from `old`, rule by rule.
    pub fn changes_from(&self, old: &RuleSet) -> Changes {
        let digests = |set: &RuleSet| -> BTreeMap<String, u64> {
            set.rules
                .iter()
                .map(|r| (r.def.id.clone(), r.digest))
                .collect()
        };
        let (new, old) = (digests(self), digests(old));
        let mut changes = Changes::default();
        for (id, d) in &new {
            match old.get(id) {
                None => changes.added.push(id.clone()),
                Some(o) if o != d => changes.edited.push(id.clone()),
                Some(_) => {}
            }
        }
        changes.removed = old
            .keys()
            .filter(|id| !new.contains_key(*id))
            .cloned()
            .collect();
        changes
    }

    /// The rules, in file order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The rule files the set was built from.
    pub fn files(&self) -> &[SourceFile] {
        &self.files
    }

    /// The same rules with counts of their own, starting at zero: clones share their
    /// counts ([`RuleSet::count`]), and an engine that must count apart (each of replay's
    /// engines) takes a fresh set.
    pub fn fresh(&self) -> RuleSet {
        RuleSet {
            counters: self.counters.iter().map(|_| Counter::default()).collect(),
            ..self.clone()
        }
    }

    /// Adds `counts` (one trace's news: newly applied, violated, skipped) to rule `rule`
    /// (an index into [`RuleSet::rules`]).
    pub fn count(&self, rule: usize, counts: RuleCounts) {
        if let Some(c) = self.counters.get(rule) {
            for (counter, n) in [
                (&c.applied, counts.applied),
                (&c.violated, counts.violated),
                (&c.skipped, counts.skipped),
            ] {
                if n > 0 {
                    counter.fetch_add(n, Relaxed);
                }
            }
        }
    }

    /// What [`RuleSet::count`] counted, by rule id (rules that applied to nothing are
    /// absent), added into `into`.
    pub fn counts_into(&self, into: &mut BTreeMap<String, RuleCounts>) {
        for (r, c) in self.rules.iter().zip(self.counters.iter()) {
            let (applied, violated, skipped) = (
                c.applied.load(Relaxed),
                c.violated.load(Relaxed),
                c.skipped.load(Relaxed),
            );
            if applied > 0 || violated > 0 || skipped > 0 {
                let e = into.entry(r.def.id.clone()).or_default();
                e.applied += applied;
                e.violated += violated;
                e.skipped += skipped;
            }
        }
    }

    /// The shared bytecode tables.
    pub fn code(&self) -> &Code {
        &self.code
    }

    /// Looks a rule up by id.
    pub fn rule(&self, id: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.def.id == id)
    }

    /// What of a span these rules can read: decode spans for them with it.
    pub fn projection(&self) -> &Arc<Projection> {
        self.lookup.projection()
    }

    /// A plain trace in the form the VM judges, keeping what these rules read.
    pub fn project(&self, trace: &trace::Trace) -> projected::Trace {
        projected::Trace::project(trace, self.projection())
    }

    /// Indexes a projected trace for this rule set; judge it with [`RuleSet::judge_with`].
    /// A trace projected for other rules (held across a reload) is re-keyed first.
    pub fn view<'a>(&'a self, trace: &'a projected::Trace) -> View<'a> {
        View::new(&self.code, &self.lookup, trace)
    }

    /// Judges one rule (enabled or not) on a trace.
    pub fn judge_with(&self, view: &mut View<'_>, rule: usize) -> Verdict {
        view.run(&self.rules[rule].program)
    }

    /// The enabled rules that fire on a plain trace, with their verdicts, in rule order.
    pub fn judge(&self, trace: &trace::Trace) -> Vec<(usize, Verdict)> {
        self.judge_projected(&self.project(trace))
    }

    /// The enabled rules that fire on a projected trace.
    pub fn judge_projected(&self, trace: &projected::Trace) -> Vec<(usize, Verdict)> {
        let trace = self.keyed(trace);
        with_stack(|| self.judge_all(&trace))
    }

    /// The trace keyed for these rules' projection (a copy only after a reload).
    fn keyed<'t>(&self, trace: &'t projected::Trace) -> Cow<'t, projected::Trace> {
        if Arc::ptr_eq(trace.projection(), self.projection()) {
            Cow::Borrowed(trace)
        } else {
            Cow::Owned(trace.reproject(self.projection()))
        }
    }

    fn judge_all(&self, trace: &projected::Trace) -> Vec<(usize, Verdict)> {
        if trace.spans.is_empty() {
            return Vec::new();
        }
        let mut view = self.view(trace);
        self.rules
            .iter()
            .enumerate()
            .filter(|(_, r)| r.def.enabled)
            .filter_map(|(i, r)| {
                let v = view.run(&r.program);
                v.fired.then_some((i, v))
            })
            .collect()
    }

    /// Judges every enabled rule on a projected trace and hands each one that applies to
    /// `sink`, in rule order, with `complete`: whether the trace is complete (asked at most
    /// once, and only when needed). A trace judged early (`judged_early`) is not complete;
    /// a rule with `incomplete: skip` that applies to an incomplete trace is skipped, not
    /// judged. With `subjects`, each verdict comes with the span it is attributed to.
    pub fn apply(
        &self,
        trace: &projected::Trace,
        subjects: bool,
        judged_early: bool,
        mut sink: impl FnMut(Applied<'_>, &dyn Fn() -> bool),
    ) {
        let trace = self.keyed(trace);
        let trace = &*trace;
        if trace.spans.is_empty() {
            return;
        }
        let complete = std::cell::OnceCell::new();
        let complete = || *complete.get_or_init(|| !judged_early && trace.is_complete());
        with_stack(|| {
            let mut view = self.view(trace);
            for (i, r) in self.rules.iter().enumerate() {
                if !r.def.enabled {
                    continue;
                }
                let v = view.run(&r.program);
                if !v.applies {
                    continue;
                }
                if r.def.skips(complete) {
                    let skipped = Applied {
                        rule: i,
                        trace,
                        verdict: None,
                        subject: None,
                    };
                    sink(skipped, &complete);
                    continue;
                }
                let subject = subjects
                    .then(|| view.subject(&r.program, &v).or_else(|| trace.root()))
                    .flatten();
                let applied = Applied {
                    rule: i,
                    trace,
                    verdict: Some(&v),
                    subject,
                };
                sink(applied, &complete);
            }
        })
    }

    /// The disassembly of one rule, for `betrace explain`.
    pub fn explain(&self, id: &str) -> Option<String> {
        self.rule(id).map(|r| self.code.disassemble(&r.program))
    }
}

/// What rules compiled into `code` read of a span: every attribute key of their
/// conditions, plus `extra` keys (messages' placeholders and context), and whether one
/// reads the status message.
pub fn projection_of(code: &Code, extra: impl IntoIterator<Item = String>) -> Projection {
    let mut keys: Vec<String> = Vec::new();
    let mut status_message = false;
    for a in &code.attrs {
        match a {
            Attr::Any(k) | Attr::Span(k) => keys.push(k.clone()),
            Attr::Intrinsic(Intrinsic::StatusMessage) => status_message = true,
            Attr::Resource(_) | Attr::Intrinsic(_) => {}
        }
    }
    keys.extend(extra);
    Projection::new(keys, status_message)
}
