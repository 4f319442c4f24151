//! Replay from a Jaeger v2 trace store, over its api_v3 HTTP/JSON query API; and every
//! trace of a window fetched once, for `betrace discover` ([`spool`]).
//!
//! # What is fetched
//!
//! The rules' span names are pushed down: each enabled rule needs a span of some names to
//! apply ([`required_names`]); the store's services and their operations are listed, and
//! only the (service, operation) pairs whose operation one of those names matches (exact
//! names and globs, matched here) are queried. When some rule can apply without any
//! particular span (`not`, `within`, a `*` selector), every service is queried whole.
//! Every returned trace is judged whole, once. [`spool`] has no rules to push down: it
//! queries every service whole and writes each trace down once.
//!
//! # Enumerating completely
//!
//! The store has no cursor and returns at most `query.num_traces` traces a query. A time
//! slice that comes back full is split in `SPLIT` parts and each asked again, until no
//! slice is full; trace ids are de-duplicated, so a trace matched in several slices or pairs is
//! judged once. A trace whose spans straddle a slice boundary is still whole: the store
//! returns every span of a trace it matches. A slice that returns fewer traces than asked is
//! complete and never split.
//!
//! # Failures
//!
//! Each failed request is classified once ([`ErrorKind`]). A store that refuses a large
//! `num_traces` (Jaeger's memory store answers 500 "… less than max traces" beyond its
//! `max_traces`) is asked again with half, and after a success with a limit between the
//! largest that answered and the smallest refused, so that the limit settles on the
//! store's own. A transient failure (another 5xx, 429, a timeout, a connection reset) is
//! retried with the same query, [`TRIES`] times in all, with exponential backoff from
//! [`BACKOFF`]; it never changes the limit. A redirect to the same host is followed; one
//! to another host is refused, and the error names where it led.
//!
//! # Time
//!
//! Traces are selected by their first span's start in `[from, to]`, as replay over files.
//! The store matches the start of the *matching* span, which can be up to a trace's age
//! after its first span: the queries reach `lookahead` past `to`, and the engine's window
//! drops the traces that start after it.

use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::engine::buffer::BufferConfig;
use crate::engine::signal::{rfc3339, Mode, Signal};
use crate::engine::{Engine, EngineConfig};
use crate::lang::hir::NameMatch;
use crate::otlp;
use crate::replay::{Progress, Summary};
use crate::rules::ruleset::RuleSet;
use crate::trace::projected::Projection;
use crate::trace::TraceId;

/// A full slice is asked again in this many parts: each level of splitting fetches its
/// traces again, so fewer, wider levels fetch less in all than halving would.
const SPLIT: u64 = 4;

/// The most traces asked for in one query (for a slice one nanosecond wide).
const MAX_LIMIT: usize = 1 << 20;

/// Attempts of one request that fails transiently, the first included.
pub const TRIES: u32 = 4;

/// The wait before the first retry; each next one waits twice as long, at most
/// [`MAX_BACKOFF`].
pub const BACKOFF: Duration = Duration::from_millis(50);

/// The longest wait between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Redirects to the same host followed for one request.
const MAX_REDIRECTS: u32 = 5;

/// Where and what to replay from a Jaeger store.
#[derive(Debug, Clone)]
pub struct JaegerOptions {
    /// The query service's base URL, e.g. `http://jaeger-query:16686`.
    pub url: String,
    /// Judge traces whose first span starts at or after this (ns).
    pub from: u64,
    /// …and at or before this (ns).
    pub to: u64,
    /// Only these services (all when empty).
    pub services: Vec<String>,
    /// `query.num_traces`: most traces asked for in one query.
    pub limit: usize,
    /// Longest a request may take, connecting and reading included.
    pub timeout: Duration,
    /// Largest response read, in bytes; a larger one has its slice split.
    pub max_response_bytes: u64,
    /// How far past `to` a matching span may start (the live `max_trace_age`).
    pub lookahead: u64,
    /// The engine's buffer: only its limits matter, traces arrive whole ([`run`] only).
    pub buffer: BufferConfig,
    /// Keep compliance evidence ([`run`] only).
    pub evidence: bool,
}

/// What a Jaeger replay fetched, and why.
#[derive(Debug, Clone, Default)]
pub struct Fetched {
    /// The store's URL.
    pub url: String,
    /// Services listed by the store (after `--service`).
    pub services: usize,
    /// (service, operation) pairs queried; an empty operation is the whole service.
    pub pairs: Vec<(String, String)>,
    /// Why those pairs.
    pub why: String,
    /// Queries made.
    pub queries: u64,
    /// Slices split because they came back full (or too large).
    pub splits: u64,
    /// Distinct traces fetched (each judged once).
    pub traces: u64,
    /// Traces returned again by another slice or pair, not judged again.
    pub repeats: u64,
    /// `query.num_traces` after the store refused larger ones.
    pub limit: usize,
    /// Queries asked again after a transient failure (counted in `queries` too).
    pub retries: u64,
}

/// `query.num_traces`, settling on the store's own maximum: halved when the store says
/// "too many", then, after each success, the middle between the largest limit that
/// answered and the smallest refused — never more than asked for.
#[derive(Debug, Clone, Copy)]
struct PageSize {
    wanted: usize,
    answered: usize,
    refused: usize,
}

impl PageSize {
    fn new(wanted: usize) -> PageSize {
        PageSize {
            wanted,
            answered: 0,
            refused: usize::MAX,
        }
    }

    /// The store refused `limit`: the next limit to ask for.
    fn refused(&mut self, limit: usize) -> usize {
        self.refused = self.refused.min(limit);
        if self.answered > 0 && self.answered < limit {
            self.answered
        } else {
            (limit / 2).max(1)
        }
    }

    /// The store answered with `limit`: the next limit to ask for.
    fn answered(&mut self, limit: usize) -> usize {
        self.answered = self.answered.max(limit);
        if self.refused == usize::MAX {
            return self.wanted.max(self.answered);
        }
        let gap = self.refused.saturating_sub(self.answered);
        if gap > 1 {
            (self.answered + gap / 2).min(self.wanted)
        } else {
            self.answered
        }
    }
}

/// A query that failed: which, where, and why.
#[derive(Debug, Clone)]
pub struct StoreError {
    /// The full URL of the request.
    pub request: String,
    /// What kind of failure it is.
    pub kind: ErrorKind,
    /// What went wrong.
    pub message: String,
}

/// The kinds of failed request, told apart once, where the answer is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The store refuses to list that many traces at once (Jaeger's memory store beyond
    /// its `max_traces`): ask for fewer.
    TooManyAsked,
    /// Worth asking again as it was: a server error, 429, a timeout, a reset connection.
    Transient,
    /// The response is larger than `max_response_bytes`: ask for a narrower slice.
    TooLarge,
    /// 404: Jaeger's answer when no trace matches.
    NotFound,
    /// Another client error (4xx): the query itself is refused.
    Refused,
    /// The store redirects to another host: not followed.
    Redirected,
    /// The store cannot be reached at all.
    Unreachable,
    /// The answer is not what api_v3 sends.
    Malformed,
    /// The traces fetched could not be written down ([`spool`]: the spill directory).
    NotWritten,
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.request, self.message)
    }
}

impl std::error::Error for StoreError {}

/// Judges every trace of the store the rules can apply to. Signals go to `on_signal` as
/// they are found; notes (a reduced limit, a missing service) to `on_note`. On a store
/// error the summary still holds everything judged before it.
pub fn run(
    rules: RuleSet,
    opts: &JaegerOptions,
    progress: &Progress,
    on_signal: &mut dyn FnMut(Signal),
    on_note: &mut dyn FnMut(&str),
) -> (Summary, Fetched, Option<StoreError>) {
    let started = Instant::now();
    let names = super::required_names(&rules);
    let engine = Engine::new(
        rules,
        EngineConfig {
            buffer: opts.buffer,
            mode: Mode::Replay,
            window: Some((opts.from, opts.to)),
            evidence: opts.evidence,
        },
    );
    let mut judge = Judge {
        projection: engine.rules().projection().clone(),
        engine,
        seen: HashSet::new(),
        summary: Summary::default(),
        progress,
        on_signal,
    };
    let (fetched, error) = fetch(opts, names, &mut judge, progress, on_note);
    judge.summary.close(&judge.engine, progress, started);
    (judge.summary, fetched, error)
}

/// Writes every trace of the store with a span starting in `[from, to + lookahead]` (of
/// `opts.services`, or all) to `out`, each once, as OTLP/JSON lines — what the collector's
/// `file` exporter writes, and replay reads — for `betrace discover` to mine: nothing is
/// pushed down, since every trace counts. On a store error (or one writing `out`), what
/// was written before it stays written.
pub fn spool(
    opts: &JaegerOptions,
    out: &mut dyn std::io::Write,
    progress: &Progress,
    on_note: &mut dyn FnMut(&str),
) -> (Fetched, Option<StoreError>) {
    let mut spool = Spool {
        out,
        seen: HashSet::new(),
        progress,
    };
    let why = "discover mines every trace".to_string();
    let (fetched, error) = fetch(opts, (None, why), &mut spool, progress, on_note);
    let error = error.or_else(|| {
        spool.out.flush().err().map(|e| StoreError {
            request: opts.url.clone(),
            kind: ErrorKind::NotWritten,
            message: format!("writing the traces fetched down: {e}"),
        })
    });
    (fetched, error)
}

/// Queries the store for every trace that spans of `names` (all when `None`) are in, and
/// hands each response to `take`.
fn fetch(
    opts: &JaegerOptions,
    names: (Option<Vec<NameMatch>>, String),
    take: &mut dyn Take,
    progress: &Progress,
    on_note: &mut dyn FnMut(&str),
) -> (Fetched, Option<StoreError>) {
    let mut run = Run {
        store: Store::new(opts, progress.bytes_read.clone()),
        pages: PageSize::new(opts.limit.max(1)),
        take,
        fetched: Fetched {
            url: opts.url.clone(),
            limit: opts.limit.max(1),
            ..Fetched::default()
        },
        progress,
        on_note,
    };
    let error = run.all(opts, names).err();
    (run.fetched, error)
}

/// What is done with the traces of each response.
trait Take {
    /// Takes the traces of one response to `url` (`result`: its OTLP/JSON `TracesData`)
    /// that were not taken before, counting them in `fetched`; returns how many distinct
    /// traces the response held.
    fn take(
        &mut self,
        url: &str,
        result: &[u8],
        fetched: &mut Fetched,
    ) -> Result<usize, StoreError>;
}

/// Replay's: each trace judged by the engine as it arrives.
struct Judge<'a> {
    engine: Engine,
    /// The rules' projection: what the decoder keeps of a span.
    projection: Arc<Projection>,
    seen: HashSet<TraceId>,
    summary: Summary,
    progress: &'a Progress,
    on_signal: &'a mut dyn FnMut(Signal),
}

/// Discover's: each trace written down, once.
struct Spool<'a> {
    out: &'a mut dyn std::io::Write,
    /// The trace ids written (as the store spells them).
    seen: HashSet<String>,
    progress: &'a Progress,
}

struct Run<'a> {
    store: Store,
    pages: PageSize,
    take: &'a mut dyn Take,
    fetched: Fetched,
    progress: &'a Progress,
    on_note: &'a mut dyn FnMut(&str),
}

impl Run<'_> {
    fn all(
        &mut self,
        opts: &JaegerOptions,
        (names, why): (Option<Vec<NameMatch>>, String),
    ) -> Result<(), StoreError> {
        self.fetched.why = why;
        let mut services = self.store.services()?;
        if !opts.services.is_empty() {
            for s in &opts.services {
                if !services.contains(s) {
                    (self.on_note)(&format!(
                        "service {s:?} is not in the store at {}: nothing is fetched for it",
                        opts.url
                    ));
                }
            }
            services.retain(|s| opts.services.contains(s));
        }
        self.fetched.services = services.len();
        let end = opts.to.saturating_add(opts.lookahead);
        if names.is_none() && opts.services.is_empty() {
            // Everything: one series of queries across services, when the store allows a
            // query without a service (Jaeger's memory store does); else service by service.
            self.fetched.pairs = vec![(String::new(), String::new())];
            match self.enumerate("", "", opts.from, end) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind == ErrorKind::Refused => (self.on_note)(&format!(
                    "the store refuses a query without a service ({e}); querying service by service"
                )),
                Err(e) => return Err(e),
            }
        }
        let mut pairs = Vec::new();
        for service in &services {
            match &names {
                None => pairs.push((service.clone(), String::new())),
                Some(names) => {
                    let mut ops = self.store.operations(service)?;
                    ops.sort();
                    ops.dedup();
                    for op in ops {
                        if names.iter().any(|n| n.matches(&op)) {
                            pairs.push((service.clone(), op));
                        }
                    }
                }
            }
        }
        self.fetched.pairs = pairs.clone();
        for (service, operation) in &pairs {
            self.enumerate(service, operation, opts.from, end)?;
        }
        Ok(())
    }

    /// Every trace of one pair in `[from, to]`, splitting full slices. A full slice one
    /// nanosecond wide cannot be split: it is asked again for twice as many traces.
    fn enumerate(
        &mut self,
        service: &str,
        operation: &str,
        from: u64,
        to: u64,
    ) -> Result<(), StoreError> {
        // (first, last, a larger limit for a slice that cannot be split).
        let mut slices: Vec<(u64, u64, Option<usize>)> = vec![(from, to, None)];
        while let Some((a, b, wider)) = slices.pop() {
            let (found, limit) = loop {
                let limit = wider.unwrap_or(self.fetched.limit);
                match self.query(service, operation, a, b, limit) {
                    Ok(found) => {
                        if wider.is_none() {
                            self.fetched.limit = self.pages.answered(limit);
                        }
                        break (found, limit);
                    }
                    Err(e) if e.kind == ErrorKind::TooManyAsked && limit > 1 && wider.is_none() => {
                        let smaller = self.pages.refused(limit);
                        (self.on_note)(&format!(
                            "{e}; asking for {smaller} traces a query instead of {limit}"
                        ));
                        self.fetched.limit = smaller;
                    }
                    // Split: a narrower slice answers with fewer bytes.
                    Err(e) if e.kind == ErrorKind::TooLarge && a < b => {
                        break (Found::default().full(), limit)
                    }
                    Err(e) if e.kind == ErrorKind::TooManyAsked && wider.is_some() => {
                        return Err(StoreError {
                            message: format!(
                                "{}; more than {} traces match within one nanosecond and the store lists no more at once",
                                e.message,
                                limit / 2
                            ),
                            ..e
                        })
                    }
                    Err(e) => return Err(e),
                }
            };
            let full = found.full || found.traces >= limit;
            if !full {
                continue;
            }
            if a >= b {
                if limit >= MAX_LIMIT {
                    return Err(StoreError {
                        request: self.store.find_url(service, operation, a, b, limit),
                        kind: ErrorKind::TooManyAsked,
                        message: format!("more than {limit} traces match within one nanosecond: they cannot all be listed"),
                    });
                }
                slices.push((a, b, Some(limit.saturating_mul(2).min(MAX_LIMIT))));
                continue;
            }
            self.fetched.splits += 1;
            // Later parts first on the stack: the earliest is asked next.
            // `b - a + 1` overflows for a window reaching u64::MAX (year 2554).
            let parts = SPLIT.min((b - a).saturating_add(1));
            let width = (b - a) / parts + 1;
            let starts: Vec<u64> = (0..parts)
                .map(|i| a + i * width)
                .filter(|&t| t <= b)
                .collect();
            for (i, &start) in starts.iter().enumerate().rev() {
                let end = starts.get(i + 1).map_or(b, |next| next - 1);
                slices.push((start, end, None));
            }
        }
        Ok(())
    }

    /// One find-traces query (its transient failures retried by [`Store::get`]), its
    /// traces taken.
    fn query(
        &mut self,
        service: &str,
        operation: &str,
        a: u64,
        b: u64,
        limit: usize,
    ) -> Result<Found, StoreError> {
        self.fetched.queries += 1;
        self.progress.inputs_done.fetch_add(1, Relaxed);
        let url = self.store.find_url(service, operation, a, b, limit);
        let body = self.store.traces(&url);
        self.fetched.retries = self.store.retries.get();
        let Some(body) = body? else {
            return Ok(Found::default());
        };
        let wrapper: Wrapper = serde_json::from_slice(&body).map_err(|e| malformed(&url, &e))?;
        let Some(result) = wrapper.result else {
            return Err(StoreError {
                request: url,
                kind: ErrorKind::Malformed,
                message: "the response has no \"result\"".into(),
            });
        };
        let traces = self
            .take
            .take(&url, result.get().as_bytes(), &mut self.fetched)?;
        Ok(Found {
            traces,
            full: false,
        })
    }
}

impl Take for Judge<'_> {
    /// Judges the traces of one response not judged before.
    fn take(
        &mut self,
        url: &str,
        result: &[u8],
        fetched: &mut Fetched,
    ) -> Result<usize, StoreError> {
        let batch = otlp::json::decode(result, &self.projection).map_err(|e| StoreError {
            request: url.to_string(),
            kind: ErrorKind::Malformed,
            message: format!("the traces in the response cannot be read: {e}"),
        })?;
        self.summary.invalid_spans += batch.invalid_spans;
        // One fragment per trace of the response (the decoder groups a batch by trace).
        let total = batch.fragments.len();
        let fresh: Vec<_> = batch
            .fragments
            .into_iter()
            .filter(|f| self.seen.insert(f.trace_id))
            .collect();
        fetched.repeats += (total - fresh.len()) as u64;
        fetched.traces += fresh.len() as u64;
        let spans: u64 = fresh.iter().map(|f| f.spans.len() as u64).sum();
        self.summary.spans += spans;
        self.progress.spans.fetch_add(spans, Relaxed);
        let clock = fresh
            .iter()
            .flat_map(|f| f.spans.iter().map(|s| s.end_unix_nano))
            .max()
            .unwrap_or(0);
        let mut signals = self.engine.ingest(fresh, clock);
        // Every trace of the response is whole: judge them all now.
        signals.extend(self.engine.shutdown());
        for s in signals {
            self.progress.signals.fetch_add(1, Relaxed);
            (self.on_signal)(s);
        }
        Ok(total)
    }
}

impl Take for Spool<'_> {
    /// Writes the traces of one response not written before as one line: the response
    /// with the spans of the others left out.
    fn take(
        &mut self,
        url: &str,
        result: &[u8],
        fetched: &mut Fetched,
    ) -> Result<usize, StoreError> {
        let mut data: serde_json::Value =
            serde_json::from_slice(result).map_err(|e| malformed(url, &e))?;
        let mut all: HashSet<String> = HashSet::new();
        for_each_spans(&mut data, &mut |spans| {
            all.extend(spans.iter().map(trace_id_of));
        });
        let fresh: HashSet<String> = all
            .iter()
            .filter(|t| !self.seen.contains(*t))
            .cloned()
            .collect();
        let mut kept = 0u64;
        for_each_spans(&mut data, &mut |spans| {
            spans.retain(|s| fresh.contains(&trace_id_of(s)));
            kept += spans.len() as u64;
        });
        fetched.repeats += (all.len() - fresh.len()) as u64;
        fetched.traces += fresh.len() as u64;
        self.progress.spans.fetch_add(kept, Relaxed);
        if kept > 0 {
            let written = serde_json::to_writer(&mut *self.out, &data)
                .map_err(std::io::Error::from)
                .and_then(|()| self.out.write_all(b"\n"));
            if let Err(e) = written {
                return Err(StoreError {
                    request: url.to_string(),
                    kind: ErrorKind::NotWritten,
                    message: format!("writing the traces fetched down: {e}"),
                });
            }
        }
        self.seen.extend(fresh);
        Ok(all.len())
    }
}

/// Calls `f` with each list of spans of an OTLP/JSON `TracesData` (camelCase, as api_v3
/// and the file exporter write it, or snake_case).
fn for_each_spans(data: &mut serde_json::Value, f: &mut dyn FnMut(&mut Vec<serde_json::Value>)) {
    fn field<'v>(
        v: &'v mut serde_json::Value,
        camel: &str,
        snake: &str,
    ) -> Option<&'v mut Vec<serde_json::Value>> {
        let o = v.as_object_mut()?;
        let key = if o.contains_key(camel) { camel } else { snake };
        o.get_mut(key)?.as_array_mut()
    }
    for rs in field(data, "resourceSpans", "resource_spans")
        .into_iter()
        .flatten()
    {
        for ss in field(rs, "scopeSpans", "scope_spans").into_iter().flatten() {
            if let Some(spans) = field(ss, "spans", "spans") {
                f(spans);
            }
        }
    }
}

/// A span's trace id as the store spells it (empty when it has none).
fn trace_id_of(span: &serde_json::Value) -> String {
    span.get("traceId")
        .or_else(|| span.get("trace_id"))
        .and_then(|t| t.as_str())
        .unwrap_or_default()
        .to_string()
}

/// One find-traces answer.
#[derive(Default)]
struct Found {
    /// Distinct traces in it.
    traces: usize,
    /// Treat the slice as full (its response was too large to read).
    full: bool,
}

impl Found {
    fn full(mut self) -> Found {
        self.full = true;
        self
    }
}

/// The HTTP side: requests, status codes, bodies.
struct Store {
    agent: ureq::Agent,
    base: String,
    max_response_bytes: u64,
    bytes: Arc<std::sync::atomic::AtomicU64>,
    /// Requests asked again after a transient failure.
    retries: std::cell::Cell<u64>,
}

#[derive(Deserialize)]
struct Services {
    #[serde(default)]
    services: Vec<String>,
}

#[derive(Deserialize)]
struct Operations {
    #[serde(default)]
    operations: Vec<Operation>,
}

#[derive(Deserialize)]
struct Operation {
    name: String,
}

/// `{"result": TracesData}` or `{"error": {...}}`.
#[derive(Deserialize)]
struct Wrapper<'a> {
    #[serde(borrow)]
    result: Option<&'a serde_json::value::RawValue>,
}

impl Store {
    fn new(opts: &JaegerOptions, bytes: Arc<std::sync::atomic::AtomicU64>) -> Store {
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(opts.timeout))
            .http_status_as_error(false)
            // Redirects are followed by `Store::get`, to the same host only.
            .max_redirects(0)
            .user_agent(concat!("betrace/", env!("CARGO_PKG_VERSION")))
            .build();
        Store {
            agent: ureq::Agent::new_with_config(config),
            base: opts.url.trim_end_matches('/').to_string(),
            max_response_bytes: opts.max_response_bytes,
            bytes,
            retries: std::cell::Cell::new(0),
        }
    }

    fn services(&self) -> Result<Vec<String>, StoreError> {
        let url = format!("{}/api/v3/services", self.base);
        let body = self.get(&url)?;
        let s: Services = serde_json::from_slice(&body).map_err(|e| malformed(&url, &e))?;
        Ok(s.services)
    }

    fn operations(&self, service: &str) -> Result<Vec<String>, StoreError> {
        let url = format!(
            "{}/api/v3/operations?service={}",
            self.base,
            encode(service)
        );
        let body = self.get(&url)?;
        let o: Operations = serde_json::from_slice(&body).map_err(|e| malformed(&url, &e))?;
        Ok(o.operations.into_iter().map(|o| o.name).collect())
    }

    fn find_url(&self, service: &str, operation: &str, a: u64, b: u64, limit: usize) -> String {
        let mut url = format!(
            "{}/api/v3/traces?query.start_time_min={}&query.start_time_max={}&query.num_traces={limit}&query.raw_traces=true",
            self.base,
            encode(&rfc3339(a)),
            encode(&rfc3339(b)),
        );
        if !service.is_empty() {
            url.push_str("&query.service_name=");
            url.push_str(&encode(service));
        }
        if !operation.is_empty() {
            url.push_str("&query.operation_name=");
            url.push_str(&encode(operation));
        }
        url
    }

    /// The body of one find-traces query (none: Jaeger's 404 for "no traces").
    fn traces(&self, url: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match self.get(url) {
            Ok(body) => Ok(Some(body)),
            Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// GETs a URL and reads its body. A transient failure is asked again, [`TRIES`]
    /// times in all, backing off exponentially from [`BACKOFF`] to at most
    /// [`MAX_BACKOFF`].
    fn get(&self, url: &str) -> Result<Vec<u8>, StoreError> {
        let mut wait = BACKOFF;
        let mut attempt = 1;
        loop {
            match self.get_following(url) {
                Err(e) if e.kind == ErrorKind::Transient && attempt < TRIES => {
                    self.retries.set(self.retries.get() + 1);
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(MAX_BACKOFF);
                    attempt += 1;
                }
                Err(e) if e.kind == ErrorKind::Transient => {
                    return Err(StoreError {
                        message: format!("{} (after {TRIES} attempts)", e.message),
                        ..e
                    })
                }
                other => return other,
            }
        }
    }

    /// GETs a URL and reads its body, following redirects to the same host; any final
    /// status but 200 is a failure, classified, with the store's own message.
    fn get_following(&self, url: &str) -> Result<Vec<u8>, StoreError> {
        let mut target = url.to_string();
        for _ in 0..=MAX_REDIRECTS {
            match self.get_once(url, &target)? {
                Answer::Body(body) => return Ok(body),
                Answer::Redirect(next) => {
                    if origin(&next) != origin(url) {
                        return Err(StoreError {
                            request: url.to_string(),
                            kind: ErrorKind::Redirected,
                            message: format!(
                                "the store redirects to {next}, another host: not followed (give --jaeger that URL if it is the store)"
                            ),
                        });
                    }
                    target = next;
                }
            }
        }
        Err(StoreError {
            request: url.to_string(),
            kind: ErrorKind::Redirected,
            message: format!("more than {MAX_REDIRECTS} redirects, the last to {target}"),
        })
    }

    /// One request: its body, where it redirects, or its failure (named by `url`, the
    /// request as first made).
    fn get_once(&self, url: &str, target: &str) -> Result<Answer, StoreError> {
        let fail = |kind: ErrorKind, message: String| StoreError {
            request: url.to_string(),
            kind,
            message,
        };
        let slow = |e: &ureq::Error| {
            fail(
                ErrorKind::Transient,
                format!("no answer in time ({e}); raise --jaeger-timeout or narrow --from/--to"),
            )
        };
        let mut response = self.agent.get(target).call().map_err(|e| match e {
            ureq::Error::Timeout(_) => slow(&e),
            ureq::Error::ConnectionFailed | ureq::Error::HostNotFound => fail(
                ErrorKind::Unreachable,
                format!("cannot reach the store: {e}"),
            ),
            ureq::Error::Io(_) => {
                fail(ErrorKind::Transient, format!("cannot reach the store: {e}"))
            }
            e => fail(ErrorKind::Unreachable, e.to_string()),
        })?;
        let status = response.status().as_u16();
        if (300..400).contains(&status) {
            let location = response
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .map(|l| resolve(target, l));
            return match location {
                Some(next) => Ok(Answer::Redirect(next)),
                None => Err(fail(
                    ErrorKind::Malformed,
                    format!("HTTP {status} without a Location"),
                )),
            };
        }
        let body = response
            .body_mut()
            .with_config()
            .limit(self.max_response_bytes)
            .read_to_vec();
        let body = match body {
            Ok(b) => b,
            Err(ureq::Error::BodyExceedsLimit(n)) => {
                return Err(fail(
                    ErrorKind::TooLarge,
                    format!("the response is larger than {n} bytes"),
                ))
            }
            Err(e @ ureq::Error::Timeout(_)) => return Err(slow(&e)),
            Err(e) => {
                return Err(fail(
                    ErrorKind::Transient,
                    format!("reading the response: {e}"),
                ))
            }
        };
        self.bytes.fetch_add(body.len() as u64, Relaxed);
        if status == 200 {
            return Ok(Answer::Body(body));
        }
        let said = String::from_utf8_lossy(&body[..body.len().min(500)])
            .trim()
            .to_string();
        let kind = match status {
            404 => ErrorKind::NotFound,
            429 => ErrorKind::Transient,
            // Jaeger's memory store, asked for more than its `max_traces`: "search depth
            // must be greater than 0 and less than max traces".
            500 if said.contains("max traces") => ErrorKind::TooManyAsked,
            500..=599 => ErrorKind::Transient,
            _ => ErrorKind::Refused,
        };
        Err(fail(kind, format!("HTTP {status}: {said}")))
    }
}

/// What one request came to.
enum Answer {
    Body(Vec<u8>),
    Redirect(String),
}

/// `scheme://host[:port]` of an absolute URL (the whole URL when it has no path).
fn origin(url: &str) -> &str {
    let after = url.find("://").map_or(0, |i| i + 3);
    let end = url[after..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| after + i);
    &url[..end]
}

/// A Location header's URL, made absolute against the request's.
fn resolve(base: &str, location: &str) -> String {
    if location.contains("://") {
        location.to_string()
    } else if let Some(rest) = location.strip_prefix("//") {
        let scheme = base.split("://").next().unwrap_or("http");
        format!("{scheme}://{rest}")
    } else if location.starts_with('/') {
        format!("{}{location}", origin(base))
    } else {
        let dir = base
            .rfind('/')
            .filter(|&i| i >= origin(base).len())
            .map_or(base, |i| &base[..i]);
        format!("{dir}/{location}")
    }
}

fn malformed(url: &str, e: &serde_json::Error) -> StoreError {
    StoreError {
        request: url.to_string(),
        kind: ErrorKind::Malformed,
        message: format!("the response is not the JSON expected of Jaeger's api_v3: {e}"),
    }
}

/// Percent-encodes a query parameter value (RFC 3986 unreserved characters kept).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}
