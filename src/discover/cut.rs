//! Examples for a candidate: a real trace cut down to the spans that matter, written as a
//! compact trace (docs/language.md, "Compact traces") that `betrace test` judges as the
//! engine judged the trace.
//!
//! Kept: the spans the candidate names, the root, and the direct parent of each named span
//! (so that `child_of` reads the same); each kept span hangs from its nearest kept
//! ancestor, so `within` reads the same; starts are exact offsets; the attributes kept are
//! the candidate's keys; span ids are written when two named spans start together (the
//! language breaks such ties by span id).

use std::fmt::Write;

use crate::lang::value::ValueRef;
use crate::trace::projected::{KeyId, Trace};

/// A trace's tree, read once for all the candidates judged on it.
pub struct Tree<'t> {
    t: &'t Trace,
    parent: Vec<Option<usize>>,
    root: Option<usize>,
}

impl<'t> Tree<'t> {
    /// The tree of `t`.
    pub fn new(t: &'t Trace) -> Tree<'t> {
        let mut by_id: Vec<(crate::trace::SpanId, usize)> = t
            .spans
            .iter()
            .enumerate()
            .map(|(i, s)| (s.span_id, i))
            .collect();
        by_id.sort_unstable();
        let parent = t
            .spans
            .iter()
            .map(|s| {
                let p = s.parent_span_id?;
                by_id
                    .binary_search_by_key(&p, |e| e.0)
                    .ok()
                    .map(|at| by_id[at].1)
            })
            .collect();
        Tree {
            t,
            parent,
            root: t.root(),
        }
    }

    /// Which spans a cut for span names `names` keeps, and which it names.
    fn keep(&self, names: &[String]) -> (Vec<bool>, Vec<bool>) {
        let t = self.t;
        let named: Vec<bool> = t
            .spans
            .iter()
            .map(|s| {
                let n = t.name(s);
                names.iter().any(|x| x == n)
            })
            .collect();
        let mut keep = named.clone();
        if let Some(r) = self.root {
            keep[r] = true;
        }
        for (i, n) in named.iter().enumerate() {
            if let (true, Some(p)) = (n, self.parent[i]) {
                keep[p] = true;
            }
        }
        (keep, named)
    }

    /// How many spans a cut for `names` keeps.
    pub fn kept(&self, names: &[String]) -> usize {
        self.keep(names).0.iter().filter(|k| **k).count()
    }

    /// The cut for span names `names` and attributes `keys`, as YAML list items indented
    /// by `indent` spaces.
    pub fn cut(&self, names: &[String], keys: &[KeyId], indent: usize) -> String {
        let t = self.t;
        let n = t.spans.len();
        let (keep, named) = self.keep(names);
        // Nearest kept ancestor of each kept span.
        let up = |i: usize| -> Option<usize> {
            let mut at = self.parent[i];
            let mut steps = 0;
            while let Some(p) = at {
                if keep[p] || steps > n {
                    return keep[p].then_some(p);
                }
                at = self.parent[p];
                steps += 1;
            }
            None
        };
        let mut children: Vec<Vec<usize>> = vec![Vec::new(); n];
        let mut roots = Vec::new();
        for i in (0..n).filter(|&i| keep[i]) {
            match up(i) {
                Some(p) => children[p].push(i),
                None => roots.push(i),
            }
        }
        let start = |i: usize| t.spans[i].start_unix_nano;
        let t0 = (0..n).filter(|&i| keep[i]).map(start).min().unwrap_or(0);
        let mut starts: Vec<u64> = (0..n).filter(|&i| named[i]).map(start).collect();
        starts.sort_unstable();
        let ties = starts.windows(2).any(|w| w[0] == w[1]);
        let order = |v: &mut Vec<usize>| v.sort_by_key(|&i| (start(i), t.spans[i].span_id));
        for c in &mut children {
            order(c);
        }
        order(&mut roots);
        let mut out = String::new();
        let w = Writer {
            t,
            keys,
            t0,
            ties,
            children: &children,
        };
        for r in roots {
            w.span(&mut out, r, indent);
        }
        out
    }
}

struct Writer<'a> {
    t: &'a Trace,
    keys: &'a [KeyId],
    t0: u64,
    ties: bool,
    children: &'a [Vec<usize>],
}

impl Writer<'_> {
    fn span(&self, out: &mut String, i: usize, indent: usize) {
        let s = &self.t.spans[i];
        let pad = " ".repeat(indent);
        let _ = writeln!(out, "{pad}- name: {}", json(self.t.name(s)));
        let _ = writeln!(out, "{pad}  start: {}", exact(s.start_unix_nano - self.t0));
        if self.ties {
            let _ = writeln!(out, "{pad}  span_id: \"{}\"", s.span_id);
        }
        let attrs: Vec<String> = self
            .keys
            .iter()
            .filter_map(|&k| {
                let v = value(self.t.attr(s, k)?)?;
                Some(format!("{}: {v}", json(self.t.projection().key_name(k))))
            })
            .collect();
        if !attrs.is_empty() {
            let _ = writeln!(out, "{pad}  attributes: {{ {} }}", attrs.join(", "));
        }
        if !self.children[i].is_empty() {
            let _ = writeln!(out, "{pad}  children:");
            for &c in &self.children[i] {
                self.span(out, c, indent + 4);
            }
        }
    }
}

/// A JSON string: also a YAML double-quoted scalar.
fn json(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// A value as YAML flow (JSON); `None` for values a compact trace cannot say.
fn value(v: ValueRef<'_>) -> Option<String> {
    Some(match v {
        ValueRef::Str(s) => json(s),
        ValueRef::Int(i) => i.to_string(),
        ValueRef::Float(f) if f.is_finite() => {
            let s = serde_json::Number::from_f64(f)?.to_string();
            if s.contains(['.', 'e', 'E']) {
                s
            } else {
                format!("{s}.0")
            }
        }
        ValueRef::Bool(b) => b.to_string(),
        _ => return None,
    })
}

/// A duration written exactly, in the largest unit that divides it.
fn exact(ns: u64) -> String {
    for (scale, unit) in [(1_000_000_000, "s"), (1_000_000, "ms"), (1_000, "us")] {
        if ns != 0 && ns.is_multiple_of(scale) {
            return format!("{}{unit}", ns / scale);
        }
    }
    format!("{ns}ns")
}
