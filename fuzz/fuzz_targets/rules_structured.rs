//! Structure-aware fuzzing of rule text: conditions generated from a grammar-shaped tree
//! (selectors, filters, counts, aggregates, relations with and without time bounds, `never`
//! clauses, and long runs of `not`s and parentheses, so that deep nesting is reached; and
//! language v3: a bound span, bound values, relation filters with time bounds and scopes,
//! `own`, `$x within S`), loaded on a 256 KiB thread as a host might call the engine.
//! A rule that loads is judged on a small trace by the VM and the reference evaluator,
//! which must agree. Nothing may crash.
#![no_main]

use std::fmt::Write;

use betrace::eval::reference;
use betrace::rules::compact;
use betrace::RuleSet;
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Expr {
    Has(Sel),
    Not(Box<Expr>),
    Nots(u16, Box<Expr>),
    Parens(u16, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Count(Sel, Op, u8),
    Distinct(Sel, Key, Op, u8),
    Rel(Sel, Rel, Sel),
    /// `A before B within D` (or `after`); the bound is any literal, so that a bound of the
    /// wrong type is tried too.
    RelWithin(Sel, bool, Sel, Lit),
    /// `sum(S, key) op literal`.
    Agg(AggFn, Sel, Key, Op, Lit),
    /// `sum(S, key) op max(T, key)`: both sides are values across spans.
    AggCmp(AggFn, Sel, Key, Op, AggFn, Sel, Key),
    /// `count(S) op avg(T, key)`.
    CountAgg(Sel, Op, AggFn, Sel, Key),
    /// `S REL $x [within D] [since|until T]`, alone or counted.
    Filter(Sel, Filter, Option<Lit>, Option<(bool, Sel)>, Option<(Op, u8)>),
    /// `own S before|after $x [within D] [since|until T]`.
    Own(Sel, bool, Option<Lit>, Option<(bool, Sel)>),
    /// `$x.key op literal`.
    BoundNum(Key, Op, Lit),
    /// `$x within S` / `$x child_of S`.
    BoundTree(bool, Sel),
}

#[derive(Arbitrary, Debug)]
enum Filter {
    Before,
    After,
    Within,
    ChildOf,
    Around,
}

#[derive(Arbitrary, Debug)]
enum AggFn {
    Sum,
    Min,
    Max,
    Avg,
}

impl AggFn {
    fn render(&self) -> &'static str {
        match self {
            AggFn::Sum => "sum",
            AggFn::Min => "min",
            AggFn::Max => "max",
            AggFn::Avg => "avg",
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Pred {
    Cmp(Key, Op, Lit),
    Exists(Key),
    Truthy(Key),
    In(Key, Vec<Lit>),
    Matches(Key, String),
    Not(Box<Pred>),
    Parens(u16, Box<Pred>),
    And(Box<Pred>, Box<Pred>),
    Or(Box<Pred>, Box<Pred>),
    /// `key op $x.key`: a join, or an order against the bound span.
    Bound(Key, Op, Key),
}

#[derive(Arbitrary, Debug)]
struct Sel {
    name: Name,
    wheres: Vec<Pred>,
}

#[derive(Arbitrary, Debug)]
enum Name {
    A,
    B,
    Glob,
    Star,
    Quoted(String),
}

#[derive(Arbitrary, Debug)]
enum Key {
    Amount,
    Status,
    Duration,
    Resource,
    Other(String),
}

#[derive(Arbitrary, Debug)]
enum Lit {
    Int(i64),
    Float(f64),
    Str(String),
    Dur(u32),
    Bool(bool),
    Word,
}

#[derive(Arbitrary, Debug)]
enum Op {
    Eq,
    Ne,
    Lt,
    Ge,
}

#[derive(Arbitrary, Debug)]
enum Rel {
    Before,
    After,
    Within,
    ChildOf,
}

#[derive(Arbitrary, Debug)]
struct Rule {
    invariant: bool,
    /// Bind a span in `when`: `S as $x and …`.
    bind: Option<Sel>,
    when: Expr,
    then: Expr,
    never: Option<Expr>,
    skip_incomplete: bool,
}

fn quote(s: &str) -> String {
    s.chars()
        .take(20)
        .filter(|c| !c.is_control())
        .flat_map(|c| match c {
            '"' | '\\' => vec!['\\', c],
            c => vec![c],
        })
        .collect()
}

impl Sel {
    fn render(&self, out: &mut String) {
        match &self.name {
            Name::A => out.push_str("payment.charge"),
            Name::B => out.push_str("inventory.reserve"),
            Name::Glob => out.push_str("payment.*"),
            Name::Star => out.push('*'),
            Name::Quoted(s) => {
                let _ = write!(out, "\"{}\"", quote(s));
            }
        }
        for w in self.wheres.iter().take(3) {
            out.push_str(".where(");
            w.render(out);
            out.push(')');
        }
    }
}

impl Key {
    fn render(&self) -> String {
        match self {
            Key::Amount => "amount".into(),
            Key::Status => "span:status".into(),
            Key::Duration => "span:duration".into(),
            Key::Resource => "resource.service.name".into(),
            Key::Other(s) => format!("\"{}\"", quote(s)),
        }
    }
}

impl Lit {
    fn render(&self) -> String {
        match self {
            Lit::Int(i) => i.to_string(),
            Lit::Float(f) if f.is_finite() => format!("{f:.3}"),
            Lit::Float(_) => "1.5".into(),
            Lit::Str(s) => format!("\"{}\"", quote(s)),
            Lit::Dur(d) => format!("{d}ms"),
            Lit::Bool(b) => b.to_string(),
            Lit::Word => "error".into(),
        }
    }
}

impl Op {
    fn render(&self) -> &'static str {
        match self {
            Op::Eq => "==",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Ge => ">=",
        }
    }
}

impl Pred {
    fn render(&self, out: &mut String) {
        match self {
            Pred::Cmp(k, op, l) => {
                let _ = write!(out, "{} {} {}", k.render(), op.render(), l.render());
            }
            Pred::Exists(k) => {
                let _ = write!(out, "exists({})", k.render());
            }
            Pred::Truthy(k) => out.push_str(&k.render()),
            Pred::In(k, ls) => {
                let items: Vec<String> = ls.iter().take(4).map(Lit::render).collect();
                let _ = write!(out, "{} in [{}]", k.render(), items.join(", "));
            }
            Pred::Matches(k, re) => {
                let _ = write!(out, "{} matches \"{}\"", k.render(), quote(re));
            }
            Pred::Not(p) => {
                out.push_str("not ");
                p.render(out);
            }
            Pred::Parens(n, p) => {
                let n = usize::from(*n % 2100);
                out.push_str(&"(".repeat(n));
                p.render(out);
                out.push_str(&")".repeat(n));
            }
            Pred::Bound(k, op, j) => {
                let _ = write!(out, "{} {} $x.{}", k.render(), op.render(), j.render());
            }
            Pred::And(a, b) | Pred::Or(a, b) => {
                out.push('(');
                a.render(out);
                out.push_str(if matches!(self, Pred::And(..)) {
                    " and "
                } else {
                    " or "
                });
                b.render(out);
                out.push(')');
            }
        }
    }
}

impl Expr {
    fn render(&self, out: &mut String) {
        match self {
            Expr::Has(s) => s.render(out),
            Expr::Not(e) => {
                out.push_str("not ");
                e.render(out);
            }
            Expr::Nots(n, e) => {
                out.push_str(&"not ".repeat(usize::from(*n % 10_000)));
                e.render(out);
            }
            Expr::Parens(n, e) => {
                let n = usize::from(*n % 2100);
                out.push_str(&"(".repeat(n));
                e.render(out);
                out.push_str(&")".repeat(n));
            }
            Expr::And(a, b) | Expr::Or(a, b) => {
                out.push('(');
                a.render(out);
                out.push_str(if matches!(self, Expr::And(..)) {
                    " and "
                } else {
                    " or "
                });
                b.render(out);
                out.push(')');
            }
            Expr::Count(s, op, n) => {
                out.push_str("count(");
                s.render(out);
                let _ = write!(out, ") {} {n}", op.render());
            }
            Expr::Distinct(s, k, op, n) => {
                out.push_str("distinct(");
                s.render(out);
                let _ = write!(out, ", {}) {} {n}", k.render(), op.render());
            }
            Expr::Rel(a, r, b) => {
                a.render(out);
                out.push_str(match r {
                    Rel::Before => " before ",
                    Rel::After => " after ",
                    Rel::Within => " within ",
                    Rel::ChildOf => " child_of ",
                });
                b.render(out);
            }
            Expr::RelWithin(a, before, b, bound) => {
                a.render(out);
                out.push_str(if *before { " before " } else { " after " });
                b.render(out);
                let _ = write!(out, " within {}", bound.render());
            }
            Expr::Agg(f, s, k, op, l) => {
                let _ = write!(out, "{}(", f.render());
                s.render(out);
                let _ = write!(out, ", {}) {} {}", k.render(), op.render(), l.render());
            }
            Expr::AggCmp(f, s, k, op, g, t, j) => {
                let _ = write!(out, "{}(", f.render());
                s.render(out);
                let _ = write!(out, ", {}) {} {}(", k.render(), op.render(), g.render());
                t.render(out);
                let _ = write!(out, ", {})", j.render());
            }
            Expr::CountAgg(s, op, g, t, j) => {
                out.push_str("count(");
                s.render(out);
                let _ = write!(out, ") {} {}(", op.render(), g.render());
                t.render(out);
                let _ = write!(out, ", {})", j.render());
            }
            Expr::Filter(s, f, window, scope, count) => {
                if count.is_some() {
                    out.push_str("count(");
                }
                s.render(out);
                out.push_str(match f {
                    Filter::Before => " before $x",
                    Filter::After => " after $x",
                    Filter::Within => " within $x",
                    Filter::ChildOf => " child_of $x",
                    Filter::Around => " around $x",
                });
                render_scope(out, window, scope);
                if let Some((op, n)) = count {
                    let _ = write!(out, ") {} {n}", op.render());
                }
            }
            Expr::Own(s, before, window, scope) => {
                out.push_str("own ");
                s.render(out);
                out.push_str(if *before { " before $x" } else { " after $x" });
                render_scope(out, window, scope);
            }
            Expr::BoundNum(k, op, l) => {
                let _ = write!(out, "$x.{} {} {}", k.render(), op.render(), l.render());
            }
            Expr::BoundTree(within, s) => {
                out.push_str(if *within { "$x within " } else { "$x child_of " });
                s.render(out);
            }
        }
    }
}

/// `within D` and `since T` / `until T` after a relation filter (any literal as the bound,
/// either scope with either relation: the checker says which are wrong).
fn render_scope(out: &mut String, window: &Option<Lit>, scope: &Option<(bool, Sel)>) {
    if let Some(d) = window {
        let _ = write!(out, " within {}", d.render());
    }
    if let Some((until, t)) = scope {
        out.push_str(if *until { " until " } else { " since " });
        t.render(out);
    }
}

const TRACE: &str = "
- name: checkout
  service: shop
  children:
    - name: inventory.reserve
      start: 1ms
      attributes: { amount: 3 }
    - name: payment.charge
      start: 40ms
      status: error
      duration: 250ms
      attributes: { amount: \"12.5\", ok: true }
      children:
        - name: payment.retry
          start: 300ms
          attributes: { amount: 7 }
    - name: payment.charge
      start: 900ms
      duration: 2s
      attributes: { amount: 1000000000000, ok: false }
    - name: inventory.reserve
      start: 950ms
      attributes: { amount: -2.25 }
";

fuzz_target!(|rule: Rule| {
    let mut cond = String::new();
    if rule.invariant {
        cond.push_str("when { ");
        if let Some(b) = &rule.bind {
            b.render(&mut cond);
            cond.push_str(" as $x and ");
        }
        rule.when.render(&mut cond);
        cond.push_str(" } always { ");
        rule.then.render(&mut cond);
        cond.push_str(" }");
        if let Some(never) = &rule.never {
            cond.push_str(" never { ");
            never.render(&mut cond);
            cond.push_str(" }");
        }
    } else {
        rule.when.render(&mut cond);
    }
    let incomplete = if rule.skip_incomplete { "skip" } else { "fire" };
    let text = format!(
        "rules:\n  - id: fuzz\n    name: Fuzz\n    incomplete: {incomplete}\n    condition: |\n      {cond}\n"
    );
    std::thread::Builder::new()
        .stack_size(256 << 10)
        .spawn(move || {
            if let Ok((rules, _)) = RuleSet::from_text("fuzz.yaml", &text) {
                let trace = compact::from_yaml(TRACE, 7).expect("the fixed trace reads");
                let projected = rules.project(&trace);
                let mut view = rules.view(&projected);
                let vm = rules.judge_with(&mut view, 0);
                let form = &rules.rules()[0].def.form;
                let oracle = reference::evaluate(form, &trace);
                // A join of `own` mixing strings and numbers is not transitive: there the
                // spec's greedy may fall short of a maximum matching (docs/language.md).
                if reference::own_greedy_is_maximum(form, &trace) {
                    assert_eq!(vm, oracle, "VM and reference disagree on:\n{text}");
                }
            }
        })
        .unwrap()
        .join()
        .expect("no crash on a small stack");
});
