//! A compiled rule set: what the CLI, replay and the C ABI judge traces with.

use std::collections::HashMap;

use crate::bytecode::{Code, Program};
use crate::compile::Compiler;
use crate::diagnostic::{Report, SourceFile};
use crate::reference::Verdict;
use crate::rules::{self, RuleDef, SourceError};
use crate::signal::{Mode, Signal};
use crate::trace::Trace;
use crate::vm::View;

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
    name_ids: HashMap<String, u32>,
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
        let name_ids = code
            .names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i as u32))
            .collect();
        let files = report.files.clone();
        Ok((
            RuleSet {
                rules,
                code,
                name_ids,
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

    /// Indexes a trace for this rule set; judge it with [`RuleSet::judge_with`].
    pub fn view<'a>(&'a self, trace: &'a Trace) -> View<'a> {
        View::new(&self.code, &self.name_ids, trace)
    }

    /// Judges one rule (enabled or not) on a trace.
    pub fn judge_with(&self, view: &mut View<'_>, rule: usize) -> Verdict {
        view.run(&self.rules[rule].program)
    }

    /// The enabled rules that fire on a trace, with their verdicts, in rule order.
    pub fn judge(&self, trace: &Trace) -> Vec<(usize, Verdict)> {
        crate::with_stack(|| self.judge_all(trace))
    }

    fn judge_all(&self, trace: &Trace) -> Vec<(usize, Verdict)> {
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

    /// The signals a trace raises: one per enabled rule that fires.
    pub fn signals(&self, trace: &Trace, mode: Mode) -> Vec<Signal> {
        self.judge(trace)
            .into_iter()
            .filter_map(|(i, v)| Signal::new(&self.rules[i].def, trace, &v, mode))
            .collect()
    }

    /// The disassembly of one rule, for `betrace explain`.
    pub fn explain(&self, id: &str) -> Option<String> {
        self.rule(id).map(|r| self.code.disassemble(&r.program))
    }
}
