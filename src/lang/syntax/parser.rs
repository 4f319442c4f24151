//! From condition text to [`ast::Condition`], with the pest grammar in `grammar/betrace.pest`.

use pest::error::{ErrorVariant, InputLocation};
use pest::iterators::Pair;
use pest::Parser as _;

use super::ast::*;
use crate::diagnostic::{Code, Diagnostic};
use crate::lang::value::parse_duration;

#[derive(pest_derive::Parser)]
#[grammar = "../grammar/betrace.pest"]
struct Grammar;

/// How deep a condition may nest: parentheses, braces and brackets, and `not`s, counted
/// together. Real rules nest a few levels; the bound keeps every recursive pass (parser,
/// checker, compiler, evaluators, and dropping the tree) within a small, fixed stack.
pub(super) const MAX_NESTING: usize = 64;

/// Parses a condition. Pure syntax: reserved words, intrinsics and types are the checker's.
pub fn parse(text: &str) -> Result<Condition, Diagnostic> {
    check_nesting(text)?;
    let mut pairs = Grammar::parse(Rule::condition, text).map_err(|e| convert_error(e, text))?;
    let condition = pairs
        .next()
        .expect("the grammar's condition rule always yields one pair");
    let inner = condition
        .into_inner()
        .next()
        .expect("condition holds a form");
    match inner.as_rule() {
        Rule::invariant => invariant(inner),
        _ => Ok(Condition::Violation(expr(inner)?)),
    }
}

/// Refuses a condition nesting deeper than [`MAX_NESTING`], pointing at where it does,
/// before any recursive pass sees it. A lexical scan: strings and comments are skipped;
/// each open bracket is a level, and so is each `not` until its term ends.
fn check_nesting(text: &str) -> Result<(), Diagnostic> {
    // Per open bracket: the `not`s pending in the enclosing term when it opened.
    let mut stack: Vec<usize> = Vec::new();
    let (mut nots, mut outer_nots) = (0usize, 0usize);
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        match c {
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\n' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
                continue;
            }
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'(' | b'[' | b'{' => {
                stack.push(nots);
                outer_nots += nots;
                nots = 0;
            }
            b')' | b']' | b'}' => {
                nots = stack.pop().unwrap_or(0);
                outer_nots = outer_nots.saturating_sub(nots);
                // The bracketed term ended the pending `not`s' operand.
                nots = 0;
            }
            c if c.is_ascii_alphanumeric() || c == b'_' => {
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
                match &text[start..i] {
                    "not" => nots += 1,
                    "and" | "or" => nots = 0,
                    _ => {}
                }
                if stack.len() + outer_nots + nots > MAX_NESTING {
                    return Err(too_deep(text, start));
                }
                continue;
            }
            _ => {}
        }
        if stack.len() + outer_nots + nots > MAX_NESTING {
            return Err(too_deep(text, start));
        }
        i += 1;
    }
    Ok(())
}

fn too_deep(text: &str, at: usize) -> Diagnostic {
    Diagnostic::error(Code::ParseTooDeep,
        at..next_token_end(text, at),
        format!(
            "the condition nests deeper than {MAX_NESTING} levels here (parentheses, braces, brackets and `not`s count); split it into simpler terms"
        ),
        "here",
    )
}

/// A pair's range without the whitespace pest's implicit skipping leaves at its end.
fn loc(p: &Pair<Rule>) -> Loc {
    let start = p.as_span().start();
    start..start + p.as_str().trim_end().len()
}

fn invariant(p: Pair<Rule>) -> Result<Condition, Diagnostic> {
    let mut inner = p.into_inner();
    let kw = inner.next().expect("invariant starts with `when`");
    let when = block(inner.next().expect("`when` has a block"))?;
    let (mut always, mut never) = (None, None);
    for clause in inner {
        let rule = clause.as_rule();
        let body = block(clause.into_inner().nth(1).expect("clause has a block"))?;
        match rule {
            Rule::always_clause => always = Some(body),
            _ => never = Some(body),
        }
    }
    Ok(Condition::Invariant {
        when,
        always,
        never,
        loc: loc(&kw),
    })
}

fn block(p: Pair<Rule>) -> Result<Expr, Diagnostic> {
    expr(p.into_inner().next().expect("a block holds an expression"))
}

fn expr(p: Pair<Rule>) -> Result<Expr, Diagnostic> {
    match p.as_rule() {
        Rule::expr | Rule::and_expr => {
            let is_or = p.as_rule() == Rule::expr;
            connected(p, expr, if is_or { Expr::Or } else { Expr::And })
        }
        Rule::not_expr => negated(p, expr, Expr::loc, Expr::Not),
        Rule::has_term => Ok(Expr::Has(sel_term(
            p.into_inner().next().expect("has_term wraps a selector"),
        )?)),
        Rule::own_term => {
            let l = loc(&p);
            let sel = p
                .into_inner()
                .find(|c| c.as_rule() == Rule::filtered)
                .expect("own holds a selector");
            Ok(Expr::Own(filtered(sel)?, l))
        }
        Rule::bound_term => {
            let l = loc(&p);
            let mut inner = p.into_inner();
            let var = var(&inner.next().expect("bound_term starts with $x"));
            let op = match inner.next().expect("op").as_str() {
                "within" => RelOp::Within,
                _ => RelOp::ChildOf,
            };
            let sel = sel_term(inner.next().expect("bound_term ends with a selector"))?;
            Ok(Expr::BoundRel {
                var,
                op,
                sel,
                loc: l,
            })
        }
        Rule::comparison => {
            let l = loc(&p);
            let mut inner = p.into_inner();
            let lhs = numeric(inner.next().expect("lhs"))?;
            let op_pair = inner.next().expect("op");
            let op = CmpOp::parse(op_pair.as_str()).expect("cmp_op yields comparison operators");
            let rhs = numeric(inner.next().expect("rhs"))?;
            Ok(Expr::Compare {
                lhs,
                op,
                rhs,
                loc: l,
                op_loc: loc(&op_pair),
            })
        }
        Rule::relation => {
            let l = loc(&p);
            let mut inner = p.into_inner();
            let lhs = sel_term(inner.next().expect("lhs"))?;
            let op = match inner.next().expect("op").as_str() {
                "before" => RelOp::Before,
                "after" => RelOp::After,
                "within" => RelOp::Within,
                _ => RelOp::ChildOf,
            };
            let rhs = sel_term(inner.next().expect("rhs"))?;
            let bound = inner.next().map(time_bound).transpose()?;
            Ok(Expr::Relation {
                lhs,
                op,
                rhs,
                bound,
                loc: l,
            })
        }
        other => unreachable!("not a boolean term: {other:?}"),
    }
}

/// `a or b or …` / `a and b and …`, for boolean terms and predicates alike: one item
/// stands alone, several are joined by `join`.
fn connected<T>(
    p: Pair<Rule>,
    item: fn(Pair<Rule>) -> Result<T, Diagnostic>,
    join: fn(Vec<T>, Loc) -> T,
) -> Result<T, Diagnostic> {
    let l = loc(&p);
    let mut items = p
        .into_inner()
        .filter(|c| !matches!(c.as_rule(), Rule::kw_or | Rule::kw_and))
        .map(item)
        .collect::<Result<Vec<T>, _>>()?;
    Ok(if items.len() == 1 {
        items.pop().expect("one item")
    } else {
        join(items, l)
    })
}

/// `not not … term`, for boolean terms and predicates alike: each `not` wraps what follows,
/// its range running from the keyword to the end of the term.
fn negated<T>(
    p: Pair<Rule>,
    item: fn(Pair<Rule>) -> Result<T, Diagnostic>,
    loc_of: fn(&T) -> Loc,
    not: fn(Box<T>, Loc) -> T,
) -> Result<T, Diagnostic> {
    let mut nots = Vec::new();
    let mut term = None;
    for child in p.into_inner() {
        if child.as_rule() == Rule::negation {
            nots.push(loc(&child).start);
        } else {
            term = Some(item(child)?);
        }
    }
    let mut t = term.expect("a negation ends in a term");
    for start in nots.into_iter().rev() {
        let end = loc_of(&t).end;
        t = not(Box::new(t), start..end);
    }
    Ok(t)
}

/// `trace.has(S).where(p)` or a bare selector.
fn sel_term(p: Pair<Rule>) -> Result<Selector, Diagnostic> {
    match p.as_rule() {
        Rule::selector => selector(p),
        Rule::filtered => filtered(p),
        Rule::trace_has => {
            let l = loc(&p);
            let mut sel = None;
            let mut extra = Vec::new();
            let mut binding = None;
            for child in p.into_inner() {
                match child.as_rule() {
                    Rule::filtered => sel = Some(filtered(child)?),
                    Rule::where_clause => extra.push(where_clause(child)?),
                    Rule::binding => binding = Some(binding_var(child)),
                    _ => {}
                }
            }
            let mut sel = sel.expect("trace.has holds a selector");
            sel.wheres.extend(extra);
            if let (Some(_), Some(outer)) = (&sel.binding, &binding) {
                return Err(Diagnostic::error(
                    Code::TwoBindings,
                    outer.loc.clone(),
                    "this span is already bound inside `trace.has(…)`",
                    "bound twice",
                )
                .with_help("bind it once: `trace.has(S) as $x` or `trace.has(S as $x)`"));
            }
            sel.binding = sel.binding.or(binding);
            sel.loc = l;
            Ok(sel)
        }
        other => unreachable!("not a selector term: {other:?}"),
    }
}

/// A selector with what may follow it: a relation filter to a bound span, `as $name`.
fn filtered(p: Pair<Rule>) -> Result<Selector, Diagnostic> {
    let l = loc(&p);
    let mut inner = p.into_inner();
    let mut sel = selector(inner.next().expect("filtered starts with a selector"))?;
    for child in inner {
        match child.as_rule() {
            Rule::rel_filter => sel.filter = Some(Box::new(rel_filter(child)?)),
            _ => sel.binding = Some(binding_var(child)),
        }
    }
    sel.loc = l;
    Ok(sel)
}

fn rel_filter(p: Pair<Rule>) -> Result<RelFilter, Diagnostic> {
    let l = loc(&p);
    let mut inner = p.into_inner();
    let op = match inner.next().expect("rel_kw").as_str() {
        "before" => FilterOp::Before,
        "after" => FilterOp::After,
        "within" => FilterOp::Within,
        "child_of" => FilterOp::ChildOf,
        _ => FilterOp::Around,
    };
    let var = var(&inner.next().expect("a filter names a bound span"));
    let (mut window, mut limit) = (None, None);
    for child in inner {
        match child.as_rule() {
            Rule::time_bound => window = Some(time_bound(child)?),
            _ => {
                let mut parts = child.into_inner();
                let kw = parts.next().expect("since or until");
                let sel = selector(parts.next().expect("a scope names a selector"))?;
                limit = Some(Box::new(ScopeLimit {
                    until: kw.as_str() == "until",
                    sel,
                    kw_loc: loc(&kw),
                }));
            }
        }
    }
    Ok(RelFilter {
        op,
        var,
        window,
        limit,
        loc: l,
    })
}

/// `as $name`.
fn binding_var(p: Pair<Rule>) -> Var {
    var(&p
        .into_inner()
        .find(|c| c.as_rule() == Rule::bound_ref)
        .expect("as names a span"))
}

/// `$name`, without the `$`.
fn var(p: &Pair<Rule>) -> Var {
    Var {
        name: p.as_str()[1..].to_string(),
        loc: loc(p),
    }
}

/// `$a.key`.
fn bound_value(p: Pair<Rule>) -> Result<BoundValue, Diagnostic> {
    let l = loc(&p);
    let mut inner = p.into_inner();
    let var = var(&inner.next().expect("a bound value starts with $x"));
    let attr = attr_from(inner.next().expect("a bound value names a key"))?;
    Ok(BoundValue { var, attr, loc: l })
}

/// What follows `within` after `before`/`after`.
fn time_bound(tb: Pair<Rule>) -> Result<Bound, Diagnostic> {
    let value = tb
        .into_inner()
        .find(|c| c.as_rule() != Rule::kw_within)
        .expect("within is followed by something");
    Ok(match value.as_rule() {
        Rule::duration => Bound::Duration(duration(&value)?, loc(&value)),
        _ => Bound::Other(loc(&value)),
    })
}

fn selector(p: Pair<Rule>) -> Result<Selector, Diagnostic> {
    let l = loc(&p);
    let mut inner = p.into_inner();
    let pattern = inner.next().expect("a selector starts with a name pattern");
    let name_loc = loc(&pattern);
    let name_pair = pattern
        .into_inner()
        .next()
        .expect("a name pattern is bare or quoted");
    let name = match name_pair.as_rule() {
        Rule::quoted_name => {
            let s = name_pair.as_str();
            NamePattern::Quoted(s[1..s.len() - 1].to_string())
        }
        _ => NamePattern::Bare(name_pair.as_str().to_string()),
    };
    let wheres = inner.map(where_clause).collect::<Result<_, _>>()?;
    Ok(Selector {
        name,
        wheres,
        loc: l,
        name_loc,
        filter: None,
        binding: None,
    })
}

fn where_clause(p: Pair<Rule>) -> Result<Predicate, Diagnostic> {
    let pred = p
        .into_inner()
        .find(|c| c.as_rule() == Rule::predicate)
        .expect("a where clause holds a predicate");
    predicate(pred)
}

fn numeric(p: Pair<Rule>) -> Result<Numeric, Diagnostic> {
    match p.as_rule() {
        Rule::integer => Ok(Numeric::Int(integer(&p)?, loc(&p))),
        Rule::float => Ok(Numeric::Float(float(&p)?, loc(&p))),
        Rule::duration => Ok(Numeric::Duration(duration(&p)?, loc(&p))),
        Rule::bound_value => Ok(Numeric::Bound(bound_value(p)?)),
        Rule::agg_term => {
            let l = loc(&p);
            let mut inner = p.into_inner();
            let f = match inner.next().expect("agg_fn").as_str() {
                "sum" => AggFn::Sum,
                "min" => AggFn::Min,
                "max" => AggFn::Max,
                _ => AggFn::Avg,
            };
            let sel = filtered(inner.next().expect("aggregate selector"))?;
            let key = agg_key(inner.next().expect("aggregate key"))?;
            Ok(Numeric::Agg(f, sel, key, l))
        }
        Rule::count_term => {
            let l = loc(&p);
            let mut sel = None;
            let mut extra = Vec::new();
            for child in p.into_inner() {
                match child.as_rule() {
                    Rule::filtered => sel = Some(filtered(child)?),
                    Rule::where_clause => extra.push(where_clause(child)?),
                    _ => {}
                }
            }
            let mut sel = sel.expect("count holds a selector");
            sel.wheres.extend(extra);
            sel.loc = l;
            Ok(Numeric::Count(sel))
        }
        Rule::distinct_term => {
            let l = loc(&p);
            let mut inner = p.into_inner().filter(|c| c.as_rule() != Rule::kw_distinct);
            let mut sel = filtered(inner.next().expect("distinct selector"))?;
            sel.loc = l;
            let key = agg_key(inner.next().expect("distinct key"))?;
            Ok(Numeric::Distinct(sel, key))
        }
        other => unreachable!("not a numeric term: {other:?}"),
    }
}

fn predicate(p: Pair<Rule>) -> Result<Predicate, Diagnostic> {
    match p.as_rule() {
        Rule::predicate | Rule::pred_and => {
            let is_or = p.as_rule() == Rule::predicate;
            connected(
                p,
                predicate,
                if is_or { Predicate::Or } else { Predicate::And },
            )
        }
        Rule::pred_not => negated(p, predicate, Predicate::loc, Predicate::Not),
        Rule::exists_pred => {
            let l = loc(&p);
            let a = p
                .into_inner()
                .find(|c| c.as_rule() == Rule::attr_ref)
                .expect("exists holds an attribute");
            Ok(Predicate::Exists(attr_ref(a)?, l))
        }
        Rule::truthy_pred => Ok(Predicate::Truthy(attr_ref(
            p.into_inner().next().expect("attr"),
        )?)),
        Rule::compare_pred => {
            let l = loc(&p);
            let mut inner = p.into_inner();
            let lhs = attr_ref(inner.next().expect("lhs"))?;
            let op_pair = inner.next().expect("op");
            let op_loc = loc(&op_pair);
            let op = PredicateOp::parse(op_pair.as_str()).expect("pred_op yields operators");
            let rhs = operand(inner.next().expect("rhs"))?;
            Ok(Predicate::Compare {
                lhs,
                op,
                rhs,
                loc: l,
                op_loc,
            })
        }
        other => unreachable!("not a predicate: {other:?}"),
    }
}

fn operand(p: Pair<Rule>) -> Result<Operand, Diagnostic> {
    let l = loc(&p);
    match p.as_rule() {
        Rule::list => {
            let items = p
                .into_inner()
                .map(|c| Ok((literal(&c)?, loc(&c))))
                .collect::<Result<_, Diagnostic>>()?;
            Ok(Operand::List(items, l))
        }
        Rule::unique => Ok(Operand::Unique(l)),
        Rule::bound_value => Ok(Operand::Bound(bound_value(p)?)),
        Rule::intrinsic | Rule::scoped_attr => Ok(Operand::Attr(attr_from(p)?)),
        _ => Ok(Operand::Literal(literal(&p)?, l)),
    }
}

fn literal(p: &Pair<Rule>) -> Result<Literal, Diagnostic> {
    Ok(match p.as_rule() {
        Rule::integer => Literal::Int(integer(p)?),
        Rule::float => Literal::Float(float(p)?),
        Rule::boolean => Literal::Bool(p.as_str() == "true"),
        Rule::string => Literal::Str(unescape(inner_text(p.as_str()))),
        Rule::duration => Literal::Duration(duration(p)?),
        Rule::bare_word => Literal::Word(p.as_str().to_string()),
        Rule::bound_value => {
            return Err(Diagnostic::error(
                Code::BoundInList,
                loc(p),
                "a bound value may not stand inside a list",
                "a bound value",
            )
            .with_help("compare with it directly: `k == $a.k`, or write the list's literals"))
        }
        other => unreachable!("not a literal: {other:?}"),
    })
}

/// The key of an aggregate or of `distinct`.
fn agg_key(p: Pair<Rule>) -> Result<AggKey, Diagnostic> {
    match p.as_rule() {
        Rule::list => Ok(AggKey::List(loc(&p))),
        _ => Ok(AggKey::Attr(attr_ref(p)?)),
    }
}

fn duration(p: &Pair<Rule>) -> Result<i64, Diagnostic> {
    let ns = parse_duration(p.as_str()).ok_or_else(|| {
        Diagnostic::error(
            Code::ParseDurationRange,
            loc(p),
            "duration out of range",
            "here",
        )
    })?;
    if ns == 0 && written_nonzero(p.as_str()) {
        return Err(Diagnostic::error(
            Code::ParseRoundsToZero,
            loc(p),
            format!("duration `{}` rounds to 0ns", p.as_str()),
            "below a nanosecond",
        ));
    }
    Ok(ns)
}

/// A float literal: refused when it does not fit in 64 bits (it would read as infinity) or
/// when a nonzero literal reads as zero.
fn float(p: &Pair<Rule>) -> Result<f64, Diagnostic> {
    let f: f64 = p
        .as_str()
        .parse()
        .map_err(|_| Diagnostic::error(Code::ParseNotANumber, loc(p), "not a number", "here"))?;
    if f.is_infinite() {
        return Err(Diagnostic::error(
            Code::ParseFloatRange,
            loc(p),
            format!("float `{}` does not fit in 64 bits", p.as_str()),
            "too large",
        ));
    }
    if f == 0.0 && written_nonzero(p.as_str()) {
        return Err(Diagnostic::error(
            Code::ParseRoundsToZero,
            loc(p),
            format!("float `{}` rounds to 0", p.as_str()),
            "too small",
        ));
    }
    Ok(f)
}

/// Whether a number literal has a nonzero digit before any exponent or unit.
fn written_nonzero(text: &str) -> bool {
    text.bytes()
        .take_while(|b| !b.is_ascii_alphabetic())
        .any(|b| (b'1'..=b'9').contains(&b))
}

fn integer(p: &Pair<Rule>) -> Result<i64, Diagnostic> {
    p.as_str().parse().map_err(|_| {
        Diagnostic::error(
            Code::ParseIntegerRange,
            loc(p),
            format!("integer `{}` does not fit in 64 bits", p.as_str()),
            "too large",
        )
    })
}

fn attr_ref(p: Pair<Rule>) -> Result<AttrRef, Diagnostic> {
    attr_from(p.into_inner().next().expect("attr_ref holds one form"))
}

fn attr_from(p: Pair<Rule>) -> Result<AttrRef, Diagnostic> {
    let l = loc(&p);
    let kind = match p.as_rule() {
        Rule::intrinsic => AttrKind::Intrinsic(p.as_str().to_string()),
        Rule::quoted_attr => AttrKind::Any(unescape(inner_text(p.as_str()))),
        Rule::plain_attr => AttrKind::Any(p.as_str().to_string()),
        Rule::scoped_attr => {
            let mut inner = p.into_inner();
            let scope = inner.next().expect("scope").as_str();
            let key_pair = inner.next().expect("key");
            let key = match key_pair.as_rule() {
                Rule::quoted_attr => unescape(inner_text(key_pair.as_str())),
                _ => key_pair.as_str().to_string(),
            };
            if scope == "span" {
                AttrKind::Span(key)
            } else {
                AttrKind::Resource(key)
            }
        }
        other => unreachable!("not an attribute: {other:?}"),
    };
    Ok(AttrRef { kind, loc: l })
}

fn inner_text(quoted: &str) -> &str {
    &quoted[1..quoted.len() - 1]
}

/// Resolves `\"`, `\\`, `\n` and `\t`; any other escape is kept as written, so that
/// regexes like `"\d+"` mean what they say.
pub fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('"') => out.push('"'),
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

fn convert_error(e: pest::error::Error<Rule>, text: &str) -> Diagnostic {
    let pos = match e.location {
        InputLocation::Pos(p) => p,
        InputLocation::Span((s, _)) => s,
    };
    let end = next_token_end(text, pos);
    let found = if pos >= text.len() {
        "the end of the condition".to_string()
    } else {
        format!("`{}`", crate::diagnostic::clip(&text[pos..end]))
    };
    let message = match e.variant {
        ErrorVariant::ParsingError { positives, .. } => {
            let mut words: Vec<&str> = positives.iter().filter_map(|r| describe(*r)).collect();
            words.sort_unstable();
            words.dedup();
            if words.is_empty() {
                format!("unexpected {found}")
            } else {
                format!("expected {}, found {found}", join_or(&words))
            }
        }
        ErrorVariant::CustomError { message } => message,
    };
    Diagnostic::error(Code::ParseSyntax, pos..end, message, "here")
}

/// The end of the token starting at `pos`, for a caret as wide as the offending word.
fn next_token_end(text: &str, pos: usize) -> usize {
    let rest = &text[pos.min(text.len())..];
    let mut chars = rest.char_indices();
    match chars.next() {
        None => pos,
        Some((_, c)) if c.is_alphanumeric() || c == '_' => {
            pos + rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.' || c == '-'))
                .unwrap_or(rest.len())
        }
        Some((_, c)) => pos + c.len_utf8(),
    }
}

fn join_or(words: &[&str]) -> String {
    match words {
        [one] => one.to_string(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
        [] => String::new(),
    }
}

/// The words users see for grammar rules in "expected …" messages.
fn describe(rule: Rule) -> Option<&'static str> {
    Some(match rule {
        Rule::EOI => "the end of the condition",
        Rule::invariant | Rule::kw_when => "`when`",
        Rule::always_clause | Rule::kw_always => "`always`",
        Rule::never_clause | Rule::kw_never => "`never`",
        Rule::block => "`{`",
        Rule::expr | Rule::and_expr | Rule::not_expr | Rule::has_term => "a condition",
        Rule::negation | Rule::kw_not => "`not`",
        Rule::kw_and => "`and`",
        Rule::kw_or => "`or`",
        Rule::comparison => "a comparison",
        Rule::count_term | Rule::kw_count => "`count(...)`",
        Rule::distinct_term | Rule::kw_distinct => "`distinct(...)`",
        Rule::agg_term
        | Rule::agg_fn
        | Rule::kw_sum
        | Rule::kw_min
        | Rule::kw_max
        | Rule::kw_avg => "an aggregate such as `sum(S, key)`",
        Rule::time_bound => "`within` and a duration",
        Rule::relation | Rule::rel_op => "`before`, `after`, `within` or `child_of`",
        Rule::trace_has | Rule::kw_trace => "`trace.has(...)`",
        Rule::cmp_op => "a comparison operator (== != > >= < <=)",
        Rule::selector
        | Rule::filtered
        | Rule::name_pattern
        | Rule::bare_name
        | Rule::name_segment
        | Rule::quoted_name => "a span name",
        Rule::where_clause | Rule::kw_where => "`.where(...)`",
        Rule::predicate | Rule::pred_and | Rule::pred_not => "a predicate",
        Rule::exists_pred | Rule::kw_exists => "`exists(...)`",
        Rule::compare_pred
        | Rule::truthy_pred
        | Rule::attr_ref
        | Rule::plain_attr
        | Rule::quoted_attr
        | Rule::scoped_attr => "an attribute",
        Rule::intrinsic => "an intrinsic such as `span:duration`",
        Rule::pred_op | Rule::kw_in | Rule::kw_matches | Rule::kw_contains => {
            "an operator (== != > >= < <= in matches contains)"
        }
        Rule::list => "a list `[...]`",
        Rule::own_term | Rule::kw_own => "`own`",
        Rule::rel_filter | Rule::rel_kw | Rule::kw_around => {
            "`before`, `after`, `within`, `child_of` or `around`"
        }
        Rule::scope_limit | Rule::kw_since | Rule::kw_until => "`since` or `until`",
        Rule::binding | Rule::kw_as => "`as $name`",
        Rule::bound_term | Rule::bound_ref => "`$name`",
        Rule::bound_value => "`$name.key`",
        Rule::unique | Rule::kw_unique => "`unique`",
        Rule::boolean
        | Rule::duration
        | Rule::float
        | Rule::integer
        | Rule::string
        | Rule::bare_word => "a value",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Condition {
        parse(text).unwrap_or_else(|e| panic!("{text:?} did not parse: {e:?}"))
    }

    #[test]
    fn invariant_form_has_its_three_blocks() {
        match ok("when { a } always { b } never { c }") {
            Condition::Invariant {
                always: Some(_),
                never: Some(_),
                ..
            } => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn where_after_a_dotted_name_is_a_filter_not_a_segment() {
        let Condition::Violation(Expr::Has(sel)) = ok("payment.charge.where(amount > 5)") else {
            panic!()
        };
        assert_eq!(sel.name, NamePattern::Bare("payment.charge".into()));
        assert_eq!(sel.wheres.len(), 1);
    }

    #[test]
    fn keywords_need_a_word_boundary() {
        let Condition::Violation(Expr::Has(sel)) = ok("android.notify") else {
            panic!()
        };
        assert_eq!(sel.name, NamePattern::Bare("android.notify".into()));
    }

    #[test]
    fn right_hand_scoped_reference_is_an_attribute_and_bare_words_are_strings() {
        let Condition::Violation(Expr::Has(sel)) =
            ok("x.where(duration_ms > span.timeout_ms and processor == stripe)")
        else {
            panic!()
        };
        let Predicate::And(items, _) = &sel.wheres[0] else {
            panic!()
        };
        let Predicate::Compare {
            rhs: Operand::Attr(a),
            ..
        } = &items[0]
        else {
            panic!("{:?}", items[0])
        };
        assert_eq!(a.kind, AttrKind::Span("timeout_ms".into()));
        let Predicate::Compare {
            rhs: Operand::Literal(Literal::Word(w), _),
            ..
        } = &items[1]
        else {
            panic!()
        };
        assert_eq!(w, "stripe");
    }

    #[test]
    fn durations_floats_and_ints_are_told_apart() {
        let Condition::Violation(Expr::Has(sel)) =
            ok("x.where(a == 250ms or b == 1.5 or c == 3 or d == 1m)")
        else {
            panic!()
        };
        let Predicate::Or(items, _) = &sel.wheres[0] else {
            panic!()
        };
        let lits: Vec<_> = items
            .iter()
            .map(|p| match p {
                Predicate::Compare {
                    rhs: Operand::Literal(l, _),
                    ..
                } => l.clone(),
                _ => panic!(),
            })
            .collect();
        assert_eq!(
            lits,
            vec![
                Literal::Duration(250_000_000),
                Literal::Float(1.5),
                Literal::Int(3),
                Literal::Duration(60_000_000_000)
            ]
        );
    }

    #[test]
    fn errors_say_what_was_expected_and_where() {
        let e = parse("when { a } always { b.where(x >) }").unwrap_err();
        assert_eq!(e.primary.range.start, 31);
        assert!(e.message.contains("expected"), "{}", e.message);
        let e = parse("count(a)").unwrap_err();
        assert!(e.message.contains("comparison operator"), "{}", e.message);
    }

    #[test]
    fn numbers_beyond_their_type_are_located_errors() {
        for (text, word, at) in [
            ("x.where(k > 1.0e309)", "does not fit", 12),
            ("count(x) > -1.0e309", "does not fit", 11),
            ("x.where(k > 1.0e-400)", "rounds to 0", 12),
            ("x.where(span:duration > 0.4ns)", "rounds to 0ns", 24),
            ("a before b within 0.0000000001s", "rounds to 0ns", 18),
            ("x.where(k > 99999999999999999999)", "does not fit", 12),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.message.contains(word), "{text}: {}", e.message);
            assert_eq!(e.primary.range.start, at, "{text}");
        }
        ok("x.where(k > 0.0 and k < 1.5e300 and span:duration > 0ns and j == -0.0)");
    }

    #[test]
    fn comments_are_ignored() {
        ok("// a comment\nwhen { a } // trailing\n always { b }");
    }

    #[test]
    fn unescape_keeps_regex_escapes() {
        assert_eq!(unescape(r#"a\"b\\c\d"#), "a\"b\\c\\d");
    }
}
