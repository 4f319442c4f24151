//! From checked conditions to bytecode: one [`Compiler`] per rule set, so that names,
//! selectors and attributes are interned once across all rules.

use std::collections::HashMap;

use crate::lang::bytecode::{
    AttrId, BoundCode, Code, ConstId, GlobId, Id, Jump, NameCode, NameId, NumId, Op, PredOp,
    Program, RelCode, SelId, SelectorCode,
};
use crate::lang::hir::{self, trigger_selectors, Attr, Expr, Form, NameMatch, Num, Pred, RelKind};
use crate::lang::value::{CmpOp, Number, Value, ValueKey};

/// Builds the shared [`Code`] tables while compiling each rule's [`Program`].
#[derive(Default)]
pub struct Compiler {
    code: Code,
    names: HashMap<String, NameId>,
    globs: HashMap<String, GlobId>,
    selectors: HashMap<SelKey, SelId>,
    attrs: HashMap<Attr, AttrId>,
    consts: HashMap<ValueKey, ConstId>,
    numbers: HashMap<ValueKey, NumId>,
    /// The `own` terms of the rule being compiled.
    owns: Vec<SelId>,
}

impl Compiler {
    /// A compiler with empty tables.
    pub fn new() -> Compiler {
        Compiler::default()
    }

    /// Compiles one rule's checked condition.
    pub fn compile(&mut self, form: &Form) -> Program {
        let mut ops = Vec::new();
        self.owns.clear();
        let guard = match form {
            Form::Invariant {
                when,
                always,
                never,
                ..
            } => {
                self.expr(when, &mut ops);
                let end_jump = emit_jump(&mut ops, Op::Applies(Jump::at(0)));
                // `never` first: when it holds, its spans are the trigger spans, whether
                // or not `always` failed too.
                match (always, never) {
                    (Some(a), Some(n)) => {
                        self.expr(n, &mut ops);
                        ops.push(Op::Never);
                        let j = emit_jump(&mut ops, Op::JumpIfTrueOrPop(Jump::at(0)));
                        self.expr(a, &mut ops);
                        ops.push(Op::Not);
                        patch(&mut ops, j);
                    }
                    (Some(a), None) => {
                        self.expr(a, &mut ops);
                        ops.push(Op::Not);
                    }
                    (None, Some(n)) => {
                        self.expr(n, &mut ops);
                        ops.push(Op::Never);
                    }
                    (None, None) => ops.push(Op::False),
                }
                patch(&mut ops, end_jump);
                guard_name(when)
            }
            Form::Violation(e) => {
                self.expr(e, &mut ops);
                guard_name(e)
            }
        };
        let guard = guard.map(|n| self.name(n));
        let mut triggers = |by_never: bool| {
            let mut t: Vec<SelId> = trigger_selectors(form, by_never)
                .into_iter()
                .map(|s| self.selector(s))
                .collect();
            t.sort_unstable();
            t.dedup();
            t
        };
        let (triggers, never_triggers) = (triggers(false), triggers(true));
        let bind = match form {
            Form::Invariant { bind: Some(b), .. } => Some(self.selector(&b.selector)),
            _ => None,
        };
        Program {
            ops,
            guard,
            triggers,
            never_triggers,
            gated: matches!(form, Form::Invariant { .. }),
            bind,
            owns: std::mem::take(&mut self.owns),
        }
    }

    /// The shared tables, once every rule is compiled.
    pub fn finish(self) -> Code {
        self.code
    }

    fn expr(&mut self, e: &Expr, ops: &mut Vec<Op>) {
        match e {
            Expr::Or(items) | Expr::And(items) => {
                let is_or = matches!(e, Expr::Or(_));
                let mut jumps = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    self.expr(item, ops);
                    if i + 1 < items.len() {
                        let op = if is_or {
                            Op::JumpIfTrueOrPop(Jump::at(0))
                        } else {
                            Op::JumpIfFalseOrPop(Jump::at(0))
                        };
                        jumps.push(emit_jump(ops, op));
                    }
                }
                for j in jumps {
                    patch(ops, j);
                }
            }
            Expr::Not(inner) => {
                self.expr(inner, ops);
                ops.push(Op::Not);
            }
            Expr::Has(s) => {
                let s = self.selector(s);
                ops.push(Op::Has(s));
            }
            Expr::Compare(a, op, b) => {
                self.num(a, ops);
                self.num(b, ops);
                ops.push(Op::Cmp(*op));
            }
            Expr::Before(a, b, bound) => {
                let (a, b) = (self.selector(a), self.selector(b));
                ops.push(match bound {
                    None => Op::Before(a, b),
                    Some(d) => Op::BeforeWithin(a, b, self.number(Number::Int(*d))),
                });
            }
            Expr::Within(a, b) => {
                let (a, b) = (self.selector(a), self.selector(b));
                ops.push(Op::Within(a, b));
            }
            Expr::ChildOf(a, b) => {
                let (a, b) = (self.selector(a), self.selector(b));
                ops.push(Op::ChildOf(a, b));
            }
            Expr::Own(s) => {
                let s = self.selector(s);
                ops.push(Op::Own(self.owns.len() as u32));
                self.owns.push(s);
            }
            Expr::BoundWithin(s) => {
                let s = self.selector(s);
                ops.push(Op::BoundWithin(s));
            }
            Expr::BoundChildOf(s) => {
                let s = self.selector(s);
                ops.push(Op::BoundChildOf(s));
            }
        }
    }

    fn num(&mut self, n: &Num, ops: &mut Vec<Op>) {
        match n {
            Num::Const(x) => {
                let k = self.number(*x);
                ops.push(Op::Num(k));
            }
            Num::Duration(d) => {
                let k = self.number(Number::Int(*d));
                ops.push(Op::Num(k));
            }
            Num::Agg(f, s, key) => {
                let s = self.selector(s);
                let key = self.attr(key);
                ops.push(Op::Agg(*f, s, key));
            }
            Num::Count(s) => {
                let s = self.selector(s);
                ops.push(Op::Count(s));
            }
            Num::Distinct(s, key) => {
                let s = self.selector(s);
                let key = self.attr(key);
                ops.push(Op::Distinct(s, key));
            }
            Num::Bound(key) => {
                let key = self.attr(key);
                ops.push(Op::Bound(key));
            }
        }
    }

    /// Interns a numeric constant.
    fn number(&mut self, x: Number) -> NumId {
        let key = ValueKey::of(&match x {
            Number::Int(i) => Value::Int(i),
            Number::Float(f) => Value::Float(f),
        });
        let next = self.code.numbers.next_id();
        let id = *self.numbers.entry(key).or_insert(next);
        if id == next {
            self.code.numbers.push(x);
        }
        id
    }

    fn name(&mut self, n: &str) -> NameId {
        if let Some(&id) = self.names.get(n) {
            return id;
        }
        let id = self.code.names.push(n.to_string());
        self.names.insert(n.to_string(), id);
        id
    }

    fn selector(&mut self, s: &hir::Selector) -> SelId {
        // Two selectors are the same when their name and predicates are.
        let key = SelKey::of(s);
        if let Some(&id) = self.selectors.get(&key) {
            return id;
        }
        let name = match &s.name {
            NameMatch::Exact(n) => NameCode::Exact(self.name(n)),
            NameMatch::Glob(text, re) => {
                let id = match self.globs.get(text) {
                    Some(&id) => id,
                    None => {
                        let id = self.code.globs.push((text.clone(), re.clone()));
                        self.globs.insert(text.clone(), id);
                        id
                    }
                };
                NameCode::Glob(id)
            }
            NameMatch::Any => NameCode::Any,
        };
        let mut pred = Vec::new();
        if let Some(p) = &s.pred {
            self.pred(p, &mut pred);
        }
        let bound = s.is_bound().then(|| self.bound_code(s));
        let id = self.code.selectors.push(SelectorCode {
            name,
            pred,
            text: s.text.clone(),
            bound,
        });
        self.selectors.insert(key, id);
        id
    }

    /// Splits a selector that reads the bound span: the filters that do not read it make
    /// the candidates' selector; a top-level `k == $x.j` becomes the lookup; the rest runs
    /// per candidate.
    fn bound_code(&mut self, s: &hir::Selector) -> BoundCode {
        let mut conjuncts = Vec::new();
        if let Some(p) = &s.pred {
            flatten_and(p, &mut conjuncts);
        }
        let (bound, plain): (Vec<&Pred>, Vec<&Pred>) =
            conjuncts.into_iter().partition(|p| p.reads_bound());
        let base = hir::Selector {
            name: s.name.clone(),
            pred: match plain.len() {
                0 => None,
                1 => Some(plain[0].clone()),
                _ => Some(Pred::And(plain.into_iter().cloned().collect())),
            },
            text: format!("candidates of {}", s.text),
            rel: None,
        };
        let base = self.selector(&base);
        let found = bound.iter().enumerate().find_map(|(i, p)| match p {
            Pred::CmpBound(k, CmpOp::Eq, j) => Some((i, k, j)),
            _ => None,
        });
        let join_at = found.map(|(i, _, _)| i);
        let join = found.map(|(_, k, j)| (self.attr(k), self.attr(j)));
        let rest: Vec<Pred> = bound
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != join_at)
            .map(|(_, p)| (*p).clone())
            .collect();
        let mut residual = Vec::new();
        if !rest.is_empty() {
            self.pred(&Pred::And(rest), &mut residual);
        }
        let rel = s.rel.as_deref().map(|r| RelCode {
            kind: r.kind,
            window: r.window,
            limit: r.limit.as_ref().map(|l| self.selector(l)),
        });
        BoundCode {
            base,
            join,
            residual,
            rel,
        }
    }

    fn pred(&mut self, p: &Pred, ops: &mut Vec<PredOp>) {
        match p {
            Pred::Or(items) | Pred::And(items) => {
                let is_or = matches!(p, Pred::Or(_));
                let mut jumps = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    self.pred(item, ops);
                    if i + 1 < items.len() {
                        jumps.push(ops.len());
                        ops.push(if is_or {
                            PredOp::JumpIfTrueOrPop(Jump::at(0))
                        } else {
                            PredOp::JumpIfFalseOrPop(Jump::at(0))
                        });
                    }
                }
                let end = Jump::at(ops.len());
                for j in jumps {
                    ops[j] = match ops[j] {
                        PredOp::JumpIfTrueOrPop(_) => PredOp::JumpIfTrueOrPop(end),
                        _ => PredOp::JumpIfFalseOrPop(end),
                    };
                }
            }
            Pred::Not(inner) => {
                self.pred(inner, ops);
                ops.push(PredOp::Not);
            }
            Pred::Exists(a) => {
                let a = self.attr(a);
                ops.push(PredOp::Exists(a));
            }
            Pred::Truthy(a) => {
                let a = self.attr(a);
                ops.push(PredOp::Truthy(a));
            }
            Pred::Cmp(a, op, v) => {
                let a = self.attr(a);
                let k = self.constant(v);
                ops.push(PredOp::Cmp(a, *op, k));
            }
            Pred::In(a, items) => {
                let a = self.attr(a);
                let l = self.code.lists.push(items.clone());
                ops.push(PredOp::In(a, l));
            }
            Pred::Matches(a, re) => {
                let a = self.attr(a);
                let r = self.code.regexes.push(re.clone());
                ops.push(PredOp::Matches(a, r));
            }
            Pred::Contains(a, v) => {
                let a = self.attr(a);
                let k = self.constant(v);
                ops.push(PredOp::Contains(a, k));
            }
            Pred::CmpAttr(a, op, b) => {
                let (a, b) = (self.attr(a), self.attr(b));
                ops.push(PredOp::CmpAttr(a, *op, b));
            }
            Pred::CmpBound(a, op, b) => {
                let (a, b) = (self.attr(a), self.attr(b));
                ops.push(PredOp::CmpBound(a, *op, b));
            }
            Pred::ContainsBound(a, b) => {
                let (a, b) = (self.attr(a), self.attr(b));
                ops.push(PredOp::ContainsBound(a, b));
            }
        }
    }

    fn attr(&mut self, a: &Attr) -> AttrId {
        if let Some(&id) = self.attrs.get(a) {
            return id;
        }
        let id = self.code.attrs.push(a.clone());
        self.attrs.insert(a.clone(), id);
        id
    }

    /// Interns a constant: one hash lookup, so a rule's constants cost linear time.
    fn constant(&mut self, v: &Value) -> ConstId {
        let next = self.code.consts.next_id();
        let id = *self.consts.entry(ValueKey::of(v)).or_insert(next);
        if id == next {
            self.code.consts.push(v.clone());
        }
        id
    }
}

/// The conjuncts of a predicate, through nested `and`s.
fn flatten_and<'p>(p: &'p Pred, out: &mut Vec<&'p Pred>) {
    match p {
        Pred::And(items) => items.iter().for_each(|i| flatten_and(i, out)),
        other => out.push(other),
    }
}

/// A checked selector as a hash key: its name pattern, its predicate (regexes by their
/// pattern and constants as [`ValueKey`]s) and its relation filter.
#[derive(Debug, PartialEq, Eq, Hash)]
struct SelKey {
    name: NameKey,
    pred: Option<PredKey>,
    rel: Option<(RelKind, Option<i64>, Option<Box<SelKey>>)>,
}

#[derive(Debug, PartialEq, Eq, Hash)]
enum NameKey {
    Exact(String),
    Glob(String),
    Any,
}

#[derive(Debug, PartialEq, Eq, Hash)]
enum PredKey {
    Or(Vec<PredKey>),
    And(Vec<PredKey>),
    Not(Box<PredKey>),
    Exists(Attr),
    Truthy(Attr),
    Cmp(Attr, CmpOp, ValueKey),
    In(Attr, Vec<ValueKey>),
    Matches(Attr, String),
    Contains(Attr, ValueKey),
    CmpAttr(Attr, CmpOp, Attr),
    CmpBound(Attr, CmpOp, Attr),
    ContainsBound(Attr, Attr),
}

impl SelKey {
    fn of(s: &hir::Selector) -> SelKey {
        let name = match &s.name {
            NameMatch::Exact(n) => NameKey::Exact(n.clone()),
            NameMatch::Glob(text, _) => NameKey::Glob(text.clone()),
            NameMatch::Any => NameKey::Any,
        };
        SelKey {
            name,
            pred: s.pred.as_ref().map(PredKey::of),
            rel: s.rel.as_deref().map(|r| {
                (
                    r.kind,
                    r.window,
                    r.limit.as_ref().map(|l| Box::new(SelKey::of(l))),
                )
            }),
        }
    }
}

impl PredKey {
    fn of(p: &Pred) -> PredKey {
        let all = |items: &[Pred]| items.iter().map(PredKey::of).collect();
        match p {
            Pred::Or(items) => PredKey::Or(all(items)),
            Pred::And(items) => PredKey::And(all(items)),
            Pred::Not(inner) => PredKey::Not(Box::new(PredKey::of(inner))),
            Pred::Exists(a) => PredKey::Exists(a.clone()),
            Pred::Truthy(a) => PredKey::Truthy(a.clone()),
            Pred::Cmp(a, op, v) => PredKey::Cmp(a.clone(), *op, ValueKey::of(v)),
            Pred::In(a, items) => PredKey::In(a.clone(), items.iter().map(ValueKey::of).collect()),
            Pred::Matches(a, re) => PredKey::Matches(a.clone(), re.as_str().to_string()),
            Pred::Contains(a, v) => PredKey::Contains(a.clone(), ValueKey::of(v)),
            Pred::CmpAttr(a, op, b) => PredKey::CmpAttr(a.clone(), *op, b.clone()),
            Pred::CmpBound(a, op, b) => PredKey::CmpBound(a.clone(), *op, b.clone()),
            Pred::ContainsBound(a, b) => PredKey::ContainsBound(a.clone(), b.clone()),
        }
    }
}

fn emit_jump(ops: &mut Vec<Op>, op: Op) -> usize {
    ops.push(op);
    ops.len() - 1
}

fn patch(ops: &mut [Op], at: usize) {
    let end = Jump::at(ops.len());
    ops[at] = match ops[at] {
        Op::JumpIfTrueOrPop(_) => Op::JumpIfTrueOrPop(end),
        Op::Applies(_) => Op::Applies(end),
        _ => Op::JumpIfFalseOrPop(end),
    };
}

/// A span name the expression cannot be true without: the rule is skipped on traces that
/// lack it. Conservative: `None` whenever that is not certain.
fn guard_name(e: &Expr) -> Option<&str> {
    match e {
        Expr::Has(s) | Expr::Before(s, _, _) => match &s.name {
            NameMatch::Exact(n) => Some(n),
            _ => None,
        },
        Expr::And(items) => items.iter().find_map(guard_name),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lang::check::check_text;

    fn code(conditions: &[&str]) -> Code {
        let mut c = Compiler::new();
        for text in conditions {
            c.compile(&check_text(text).unwrap().form);
        }
        c.finish()
    }

    #[test]
    fn constants_numbers_and_selectors_are_interned_once() {
        let code = code(&[
            "x.where(k == \"a\" or k == \"b\" or k == \"a\" or k == 1 or k == 1.0)",
            "count(x.where(k == \"a\" or k == \"b\" or k == \"a\" or k == 1 or k == 1.0)) > 2",
            "count(y) > 2 and count(z) > 2.0 and count(w) > 2",
        ]);
        // "a", "b", 1 and 1.0 (an int and a float are two constants).
        assert_eq!(code.consts.len(), 4, "{:?}", code.consts);
        let numbers: Vec<Number> = code.numbers.iter().copied().collect();
        assert_eq!(numbers, vec![Number::Int(2), Number::Float(2.0)]);
        // x.where(…) once for both rules, then y, z, w.
        assert_eq!(code.selectors.len(), 4);
    }

    #[test]
    fn selectors_differ_by_regex_and_by_float_sign() {
        let code = code(&[
            "x.where(k matches \"a.*\") and x.where(k matches \"b.*\")",
            "x.where(k == 0.0) and x.where(k == -0.0)",
        ]);
        assert_eq!(code.selectors.len(), 4);
    }
}
