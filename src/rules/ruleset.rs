//! A compiled rule set: what the CLI, replay and the C ABI judge traces with.

use std::borrow::Cow;
use std::sync::Arc;

use crate::diagnostic::{Report, SourceFile};
use crate::engine::signal::{self, Mode, Signal};
use crate::eval::vm::{Lookup, Verdict, View};
use crate::lang::bytecode::{Code, Program};
use crate::lang::compile::Compiler;
use crate::lang::hir::{Attr, Intrinsic};
use crate::rules::{self, RuleDef, SourceError};
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
}

/// Every rule of a set of files, compiled together.
#[derive(Debug, Clone)]
pub struct RuleSet {
    rules: Vec<Rule>,
    code: Code,
    lookup: Lookup,
    files: Vec<SourceFile>,
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

    /// Loads and compiles rule files, all or nothing: any error refuses the whole set.
    pub fn from_sources(files: Vec<SourceFile>) -> Result<(RuleSet, Report), Report> {
        crate::with_stack(|| RuleSet::build(files))
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
                Rule { def, program }
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
                    .chain(signal::placeholders(&r.def.message))
            }),
        ));
        let lookup = Lookup::new(&code, projection);
        let files = report.files.clone();
        Ok((
            RuleSet {
                rules,
                code,
                lookup,
                files,
            },
            report,
        ))
    }

    /// The rules, in file order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The rule files the set was built from.
    pub fn files(&self) -> &[SourceFile] {
        &self.files
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
        crate::with_stack(|| self.judge_all(&trace))
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

    /// The signals a plain trace raises: one per enabled rule that fires.
    pub fn signals(&self, trace: &trace::Trace, mode: Mode) -> Vec<Signal> {
        self.signals_projected(&self.project(trace), mode)
    }

    /// The signals a projected trace raises.
    pub fn signals_projected(&self, trace: &projected::Trace, mode: Mode) -> Vec<Signal> {
        let trace = self.keyed(trace);
        crate::with_stack(|| self.judge_all(&trace))
            .into_iter()
            .filter_map(|(i, v)| Signal::new(&self.rules[i].def, &trace, &v, mode))
            .collect()
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
