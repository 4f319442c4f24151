//! Replay from a Jaeger v2 trace store, over its api_v3 HTTP/JSON query API.
//!
//! # What is fetched
//!
//! The rules' span names are pushed down: each enabled rule needs a span of some names to
//! apply ([`required_names`]); the store's services and their operations are listed, and
//! only the (service, operation) pairs whose operation one of those names matches (exact
//! names and globs, matched here) are queried. When some rule can apply without any
//! particular span (`not`, `within`, a `*` selector), every service is queried whole.
//! Every returned trace is judged whole, once.
//!
//! # Enumerating completely
//!
//! The store has no cursor and returns at most `query.num_traces` traces a query. A time
//! slice that comes back full is split in [`SPLIT`] parts and each asked again, until no
//! slice is full; trace ids are de-duplicated, so a trace matched in several slices or pairs is
//! judged once. A trace whose spans straddle a slice boundary is still whole: the store
//! returns every span of a trace it matches. A store that refuses a large `num_traces`
//! (Jaeger's memory store answers 500 beyond its `max_traces`) is asked again with half.
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
use crate::lang::hir::{required_names, NameMatch};
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
    /// The engine's buffer: only its limits matter, traces arrive whole.
    pub buffer: BufferConfig,
    /// Keep compliance evidence.
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
}

/// A query that failed: which, where, and why.
#[derive(Debug, Clone)]
pub struct StoreError {
    /// The full URL of the request.
    pub request: String,
    /// What went wrong.
    pub message: String,
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
    let names = pushdown(&rules);
    let engine = Engine::new(
        rules,
        EngineConfig {
            buffer: opts.buffer,
            mode: Mode::Replay,
            window: Some((opts.from, opts.to)),
            evidence: opts.evidence,
        },
    );
    let projection = engine.rules().projection().clone();
    let mut run = Run {
        store: Store::new(opts, projection, progress.bytes_read.clone()),
        engine,
        seen: HashSet::new(),
        fetched: Fetched {
            url: opts.url.clone(),
            limit: opts.limit.max(1),
            ..Fetched::default()
        },
        summary: Summary::default(),
        progress,
        on_signal,
        on_note,
    };
    let error = run.all(opts, names).err();
    run.summary.close(&run.engine, progress, started);
    (run.summary, run.fetched, error)
}

/// The names some rule needs, or `None`: every trace can count for some rule. The second
/// part says why, for the summary.
fn pushdown(rules: &RuleSet) -> (Option<Vec<NameMatch>>, String) {
    let mut all = Vec::new();
    for r in rules.rules().iter().filter(|r| r.def.enabled) {
        match required_names(&r.def.form) {
            Some(names) if !names.iter().any(|n| matches!(n, NameMatch::Any)) => all.extend(names),
            _ => {
                return (
                    None,
                    format!(
                        "rule {} can apply to a trace without any particular span name: every trace is fetched",
                        r.def.id
                    ),
                )
            }
        }
    }
    let mut shown: Vec<String> = all
        .iter()
        .map(|n| match n {
            NameMatch::Exact(name) => name.clone(),
            NameMatch::Glob(glob, _) => glob.clone(),
            NameMatch::Any => "*".into(),
        })
        .collect();
    shown.sort();
    shown.dedup();
    let why = format!(
        "operations matching the span names the rules need: {}",
        shown.join(", ")
    );
    (Some(all), why)
}

struct Run<'a> {
    store: Store,
    engine: Engine,
    seen: HashSet<TraceId>,
    fetched: Fetched,
    summary: Summary,
    progress: &'a Progress,
    on_signal: &'a mut dyn FnMut(Signal),
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
                Err(e) if e.message.starts_with("HTTP 4") => (self.on_note)(&format!(
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
                self.fetched.queries += 1;
                self.progress.inputs_done.fetch_add(1, Relaxed);
                match self.store.traces(service, operation, a, b, limit) {
                    Ok(found) => break (found, limit),
                    Err(Failure::Refused(e)) if limit > 1 && wider.is_none() => {
                        let smaller = (limit / 2).max(1);
                        (self.on_note)(&format!(
                            "{e}; asking for {smaller} traces a query instead of {limit}"
                        ));
                        self.fetched.limit = smaller;
                    }
                    // Split: a narrower slice answers with fewer bytes.
                    Err(Failure::TooLarge(_)) if a < b => break (Found::default().full(), limit),
                    Err(Failure::Refused(e)) if wider.is_some() => {
                        return Err(StoreError {
                            message: format!(
                                "{}; more than {} traces match within one nanosecond and the store lists no more at once",
                                e.message,
                                limit / 2
                            ),
                            ..e
                        })
                    }
                    Err(f) => return Err(f.into_error()),
                }
            };
            let full = found.full || found.traces >= limit;
            self.judge(found.batch);
            if !full {
                continue;
            }
            if a >= b {
                if limit >= MAX_LIMIT {
                    return Err(StoreError {
                        request: self.store.find_url(service, operation, a, b, limit),
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

    /// Judges the traces of one response not judged before.
    fn judge(&mut self, batch: Option<otlp::Batch>) {
        let Some(batch) = batch else { return };
        self.summary.invalid_spans += batch.invalid_spans;
        // One fragment per trace of the response (the decoder groups a batch by trace).
        let total = batch.fragments.len();
        let fresh: Vec<_> = batch
            .fragments
            .into_iter()
            .filter(|f| self.seen.insert(f.trace_id))
            .collect();
        self.fetched.repeats += (total - fresh.len()) as u64;
        self.fetched.traces += fresh.len() as u64;
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
    }
}

/// One find-traces answer.
#[derive(Default)]
struct Found {
    batch: Option<otlp::Batch>,
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

/// Why a request failed.
enum Failure {
    /// The store refused the query with a server error: perhaps `num_traces` is too large.
    Refused(StoreError),
    /// The response is larger than `max_response_bytes`.
    TooLarge(StoreError),
    /// Anything else: unreachable, timed out, a client error, a malformed body.
    Fatal(StoreError),
}

impl Failure {
    fn into_error(self) -> StoreError {
        match self {
            Failure::Refused(e) | Failure::TooLarge(e) | Failure::Fatal(e) => e,
        }
    }
}

/// The HTTP side: requests, status codes, bodies.
struct Store {
    agent: ureq::Agent,
    base: String,
    max_response_bytes: u64,
    /// The rules' projection: what the decoder keeps of a span.
    projection: Arc<Projection>,
    bytes: Arc<std::sync::atomic::AtomicU64>,
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
    fn new(
        opts: &JaegerOptions,
        projection: Arc<Projection>,
        bytes: Arc<std::sync::atomic::AtomicU64>,
    ) -> Store {
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(opts.timeout))
            .http_status_as_error(false)
            .user_agent(concat!("betrace/", env!("CARGO_PKG_VERSION")))
            .build();
        Store {
            agent: ureq::Agent::new_with_config(config),
            base: opts.url.trim_end_matches('/').to_string(),
            max_response_bytes: opts.max_response_bytes,
            projection,
            bytes,
        }
    }

    fn services(&self) -> Result<Vec<String>, StoreError> {
        let url = format!("{}/api/v3/services", self.base);
        let body = self.get(&url).map_err(Failure::into_error)?;
        let s: Services = serde_json::from_slice(&body).map_err(|e| malformed(&url, &e))?;
        Ok(s.services)
    }

    fn operations(&self, service: &str) -> Result<Vec<String>, StoreError> {
        let url = format!(
            "{}/api/v3/operations?service={}",
            self.base,
            encode(service)
        );
        let body = self.get(&url).map_err(Failure::into_error)?;
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

    fn traces(
        &self,
        service: &str,
        operation: &str,
        a: u64,
        b: u64,
        limit: usize,
    ) -> Result<Found, Failure> {
        let url = self.find_url(service, operation, a, b, limit);
        let body = match self.get(&url) {
            Ok(body) => body,
            // Jaeger answers "no traces" with 404.
            Err(Failure::Fatal(e)) if e.message.starts_with("HTTP 404") => {
                return Ok(Found::default())
            }
            Err(f) => return Err(f),
        };
        let wrapper: Wrapper =
            serde_json::from_slice(&body).map_err(|e| Failure::Fatal(malformed(&url, &e)))?;
        let Some(result) = wrapper.result else {
            return Err(Failure::Fatal(StoreError {
                request: url,
                message: "the response has no \"result\"".into(),
            }));
        };
        let batch = otlp::json::decode(result.get().as_bytes(), &self.projection).map_err(|e| {
            Failure::Fatal(StoreError {
                request: url.clone(),
                message: format!("the traces in the response cannot be read: {e}"),
            })
        })?;
        let traces = batch.fragments.len();
        Ok(Found {
            batch: Some(batch),
            traces,
            full: false,
        })
    }

    /// GETs a URL and reads its body; any status but 200 is a failure with the store's
    /// own message.
    fn get(&self, url: &str) -> Result<Vec<u8>, Failure> {
        let fail = |message: String| StoreError {
            request: url.to_string(),
            message,
        };
        let mut response = self.agent.get(url).call().map_err(|e| {
            Failure::Fatal(fail(match e {
                ureq::Error::Timeout(_) => {
                    format!("no answer in time ({e}); raise --jaeger-timeout or narrow --from/--to")
                }
                ureq::Error::ConnectionFailed | ureq::Error::Io(_) | ureq::Error::HostNotFound => {
                    format!("cannot reach the store: {e}")
                }
                e => e.to_string(),
            }))
        })?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(self.max_response_bytes)
            .read_to_vec();
        let body = match body {
            Ok(b) => b,
            Err(ureq::Error::BodyExceedsLimit(n)) => {
                return Err(Failure::TooLarge(fail(format!(
                    "the response is larger than {n} bytes"
                ))))
            }
            Err(e @ ureq::Error::Timeout(_)) => {
                return Err(Failure::Fatal(fail(format!(
                    "no answer in time ({e}); raise --jaeger-timeout or narrow --from/--to"
                ))))
            }
            Err(e) => return Err(Failure::Fatal(fail(format!("reading the response: {e}")))),
        };
        self.bytes.fetch_add(body.len() as u64, Relaxed);
        if status == 200 {
            return Ok(body);
        }
        let said = String::from_utf8_lossy(&body[..body.len().min(500)])
            .trim()
            .to_string();
        let message = format!("HTTP {status}: {said}");
        if status >= 500 {
            Err(Failure::Refused(fail(message)))
        } else {
            Err(Failure::Fatal(fail(message)))
        }
    }
}

fn malformed(url: &str, e: &serde_json::Error) -> StoreError {
    StoreError {
        request: url.to_string(),
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
