//! Examples for a candidate: a real trace cut down to the spans that matter, written as a
//! compact trace (docs/language.md, "Compact traces") that `betrace test` judges as the
//! engine judged the trace.
//!
//! Kept: the spans the candidate names and the root. A candidate about the tree (`child_of`,
//! `within`) also keeps the direct parent of each named span, and each kept span hangs
//! from its nearest kept ancestor, so that both read the same; any other candidate reads no
//! parent, and its spans hang from the root. Starts are exact offsets; the attributes kept
//! are the candidate's keys, read as the condition reads them (the span's, else its
//! resource's); span ids are written when two named spans start together (the language
//! breaks such ties by span id).
//!
//! A trace whose cut cannot be written exactly gives no example: a value a compact trace
//! cannot hold (an array, bytes, NaN), an offset beyond 292 years, more than
//! [`MAX_SPANS`] spans, or (for the tree) kept spans nested deeper than [`MAX_DEPTH`].

use std::fmt::Write;

use crate::lang::value::ValueRef;
use crate::trace::projected::{KeyId, Trace};

/// Most spans an example keeps.
pub const MAX_SPANS: usize = 200;
/// Most levels an example nests (a rule file nests at most 64 YAML levels; each span is
/// two).
pub const MAX_DEPTH: usize = 20;

/// A trace's tree, read once for all the candidates judged on it.
pub struct Tree<'t> {
    t: &'t Trace,
    parent: Vec<Option<usize>>,
    root: Option<usize>,
}

/// Per span, the index of its parent in the trace (none for a root or a parent not in it).
pub fn parents(t: &Trace) -> Vec<Option<usize>> {
    let mut out = Vec::new();
    parents_into(t, &mut Vec::new(), &mut out);
    out
}

/// [`parents`], into `out`, with `by_id` to work in (both buffers reused by the caller).
pub fn parents_into(
    t: &Trace,
    by_id: &mut Vec<(crate::trace::SpanId, usize)>,
    out: &mut Vec<Option<usize>>,
) {
    by_id.clear();
    by_id.extend(t.spans.iter().enumerate().map(|(i, s)| (s.span_id, i)));
    by_id.sort_unstable();
    out.clear();
    out.extend(t.spans.iter().map(|s| {
        let p = s.parent_span_id?;
        by_id
            .binary_search_by_key(&p, |e| e.0)
            .ok()
            .map(|at| by_id[at].1)
    }));
}

/// What a cut keeps.
struct Kept {
    keep: Vec<bool>,
    named: Vec<bool>,
}

impl<'t> Tree<'t> {
    /// The tree of `t`.
    pub fn new(t: &'t Trace) -> Tree<'t> {
        let parent = parents(t);
        Tree {
            t,
            parent,
            root: t.root(),
        }
    }

    /// Which spans a cut for span names `names` keeps (with their parents when `tree`).
    fn keep(&self, names: &[String], tree: bool) -> Kept {
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
        if tree {
            for (i, n) in named.iter().enumerate() {
                if let (true, Some(p)) = (n, self.parent[i]) {
                    keep[p] = true;
                }
            }
        }
        Kept { keep, named }
    }

    /// The cut for span names `names` and attributes `keys` (with the tree between them
    /// when `tree`): how many spans it keeps, and them as YAML list items indented by
    /// `indent` spaces; `None` when it cannot be written exactly.
    pub fn cut(
        &self,
        names: &[String],
        keys: &[KeyId],
        tree: bool,
        indent: usize,
    ) -> Option<(usize, String)> {
        let t = self.t;
        let n = t.spans.len();
        let Kept { keep, named } = self.keep(names, tree);
        let kept = keep.iter().filter(|k| **k).count();
        if kept > MAX_SPANS {
            return None;
        }
        let up = if tree {
            self.nearest_kept(&keep)
        } else {
            (0..n)
                .map(|i| self.root.filter(|&r| r != i && keep[i]))
                .collect()
        };
        let mut children: Vec<Vec<usize>> = vec![Vec::new(); n];
        let mut roots = Vec::new();
        for i in (0..n).filter(|&i| keep[i]) {
            match up[i] {
                Some(p) => children[p].push(i),
                None => roots.push(i),
            }
        }
        let start = |i: usize| t.spans[i].start_unix_nano;
        let t0 = (0..n).filter(|&i| keep[i]).map(start).min().unwrap_or(0);
        if (0..n).any(|i| keep[i] && start(i) - t0 > i64::MAX as u64) {
            return None;
        }
        let mut starts: Vec<u64> = (0..n).filter(|&i| named[i]).map(start).collect();
        starts.sort_unstable();
        let ties = starts.windows(2).any(|w| w[0] == w[1]);
        let order = |v: &mut Vec<usize>| v.sort_by_key(|&i| (start(i), t.spans[i].span_id));
        for c in &mut children {
            order(c);
        }
        order(&mut roots);
        let w = Writer {
            t,
            keys,
            t0,
            ties,
            children: &children,
        };
        let mut out = String::new();
        // Depth first, without recursion: (span, its depth).
        let mut stack: Vec<(usize, usize)> = roots.iter().rev().map(|&r| (r, 0)).collect();
        while let Some((i, depth)) = stack.pop() {
            if depth >= MAX_DEPTH {
                return None;
            }
            w.span(&mut out, i, indent + 4 * depth)?;
            stack.extend(children[i].iter().rev().map(|&c| (c, depth + 1)));
        }
        Some((kept, out))
    }

    /// Per span, its nearest kept ancestor: each chain walked once.
    fn nearest_kept(&self, keep: &[bool]) -> Vec<Option<usize>> {
        let n = keep.len();
        let mut memo: Vec<Option<Option<usize>>> = vec![None; n];
        for i in 0..n {
            let mut path = Vec::new();
            let mut at = self.parent[i];
            let answer = loop {
                match at {
                    None => break None,
                    Some(p) if keep[p] => break Some(p),
                    Some(p) => {
                        if let Some(known) = memo[p] {
                            break known;
                        }
                        if path.len() > n {
                            break None;
                        }
                        path.push(p);
                        at = self.parent[p];
                    }
                }
            };
            for p in path {
                memo[p] = Some(answer);
            }
            memo[i] = Some(answer);
        }
        memo.into_iter().map(Option::flatten).collect()
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
    /// Writes one span's lines (not its children); `None` when a value cannot be written.
    fn span(&self, out: &mut String, i: usize, indent: usize) -> Option<()> {
        let s = &self.t.spans[i];
        let pad = " ".repeat(indent);
        let _ = writeln!(out, "{pad}- name: {}", json(self.t.name(s)));
        let _ = writeln!(out, "{pad}  start: {}", exact(s.start_unix_nano - self.t0));
        if self.ties {
            let _ = writeln!(out, "{pad}  span_id: \"{}\"", s.span_id);
        }
        let mut attrs = Vec::new();
        for &k in self.keys {
            let key = self.t.projection().key_name(k);
            // As a bare key reads it: the span's attribute, else its resource's.
            let Some(v) = self.t.attr(s, k).or_else(|| {
                crate::trace::lookup(&self.t.resource_of(s).attributes, key).map(Into::into)
            }) else {
                continue;
            };
            attrs.push(format!("{}: {}", json(key), value(v)?));
        }
        if !attrs.is_empty() {
            let _ = writeln!(out, "{pad}  attributes: {{ {} }}", attrs.join(", "));
        }
        if !self.children[i].is_empty() {
            let _ = writeln!(out, "{pad}  children:");
        }
        Some(())
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
