//! Deterministic trace corpora from the BeTrace seeds' domains — checkout, payments with
//! retries, multi-tenant queries, admin actions, PHI access, LLM calls and agents — with a
//! known set of injected violations, written as the collector's `file` exporter writes them.
//!
//! Every trace satisfies every rule of `examples/rules` unless a violation was injected
//! into it; each injection breaks exactly one rule. Traces have 5–50 spans (median about
//! 12) with 6–10 attributes each. The same seed always gives the same bytes.

use std::io::Write;
use std::path::{Path, PathBuf};

use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    span, status, ResourceSpans, ScopeSpans, Span, Status, TracesData,
};
use prost::Message;
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;

/// Where generated traces start: 2024-11-25T08:00:00Z.
pub const BASE_TIME: u64 = 1_732_521_600_000_000_000;
const MS: u64 = 1_000_000;

/// A generated trace: its spans, each with the service that emitted it.
#[derive(Debug, Clone)]
pub struct GenTrace {
    /// The trace id.
    pub trace_id: [u8; 16],
    /// (service, span).
    pub spans: Vec<(&'static str, Span)>,
}

/// A corpus and what a correct engine must find in it.
#[derive(Debug, Clone)]
pub struct Corpus {
    /// The traces, in start order.
    pub traces: Vec<GenTrace>,
    /// (trace id as hex, rule id) of every injected violation.
    pub expected: Vec<(String, &'static str)>,
}

impl Corpus {
    /// How many spans the corpus holds.
    pub fn span_count(&self) -> usize {
        self.traces.iter().map(|t| t.spans.len()).sum()
    }
}

/// How the file exporter was configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `format: json`: one OTLP/JSON object per line.
    Json,
    /// `format: proto`: length-prefixed protobuf messages.
    Proto,
}

/// `compression:` of the file exporter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// None.
    None,
    /// zstd per message, length-prefixed (the exporter's default zstd framing).
    Zstd,
}

/// Generates `n` traces; each carries one injected violation with probability `rate`.
pub fn generate(seed: u64, n: usize, rate: f64) -> Corpus {
    let mut g = Gen {
        rng: Pcg64Mcg::seed_from_u64(seed),
        spans: Vec::new(),
        trace_id: [0; 16],
        t0: 0,
    };
    let mut corpus = Corpus {
        traces: Vec::with_capacity(n),
        expected: Vec::new(),
    };
    for i in 0..n {
        g.trace_id = g.rng.random();
        g.t0 = BASE_TIME + i as u64 * 20 * MS;
        g.spans.clear();
        let inject = g.rng.random_bool(rate.clamp(0.0, 1.0));
        let template = g.rng.random_range(0..100);
        let violated = match template {
            0..=39 => g.checkout(inject),
            40..=54 => g.tenant_query(inject),
            55..=64 => g.admin(inject),
            65..=74 => g.phi(inject),
            _ => g.llm(inject),
        };
        g.pad();
        let hex: String = g.trace_id.iter().map(|b| format!("{b:02x}")).collect();
        if let Some(rule) = violated {
            corpus.expected.push((hex, rule));
        }
        corpus.traces.push(GenTrace {
            trace_id: g.trace_id,
            spans: std::mem::take(&mut g.spans),
        });
    }
    corpus
}

struct Gen {
    rng: Pcg64Mcg,
    spans: Vec<(&'static str, Span)>,
    trace_id: [u8; 16],
    t0: u64,
}

fn kv(key: &str, value: AnyValue) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(value),
        ..Default::default()
    }
}
fn s(v: &str) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::StringValue(v.to_string())),
    }
}
fn i(v: i64) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::IntValue(v)),
    }
}
fn f(v: f64) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::DoubleValue(v)),
    }
}
fn b(v: bool) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::BoolValue(v)),
    }
}

impl Gen {
    /// Adds a span starting `start_ms` after the trace start; returns its index.
    fn span(
        &mut self,
        service: &'static str,
        name: &str,
        parent: Option<usize>,
        (start_ms, dur_ms): (u64, u64),
        kind: span::SpanKind,
        attrs: Vec<(&str, AnyValue)>,
    ) -> usize {
        let span_id: [u8; 8] = self.rng.random();
        let parent_span_id = parent
            .map(|p| self.spans[p].1.span_id.clone())
            .unwrap_or_default();
        let start = self.t0 + start_ms * MS + self.rng.random_range(0..1000);
        self.spans.push((
            service,
            Span {
                trace_id: self.trace_id.to_vec(),
                span_id: span_id.to_vec(),
                parent_span_id,
                name: name.to_string(),
                kind: kind as i32,
                start_time_unix_nano: start,
                end_time_unix_nano: start + dur_ms * MS,
                attributes: attrs.into_iter().map(|(k, v)| kv(k, v)).collect(),
                status: Some(Status {
                    code: status::StatusCode::Unset as i32,
                    message: String::new(),
                }),
                ..Default::default()
            },
        ));
        self.spans.len() - 1
    }

    fn internal(
        &mut self,
        service: &'static str,
        name: &str,
        parent: usize,
        start_ms: u64,
        attrs: Vec<(&str, AnyValue)>,
    ) -> usize {
        let dur = self.rng.random_range(1..8);
        self.span(
            service,
            name,
            Some(parent),
            (start_ms, dur),
            span::SpanKind::Internal,
            attrs,
        )
    }

    fn checkout(&mut self, inject: bool) -> Option<&'static str> {
        const KINDS: [&str; 4] = [
            "payment-retry-idempotent",
            "shipment-after-payment-confirmed",
            "payment-requires-inventory",
            "high-value-payment-fraud-check",
        ];
        let violation = inject.then(|| KINDS[self.rng.random_range(0..KINDS.len())]);
        let order = format!("ord_{}", self.rng.random_range(10_000..99_999));
        let high_value =
            violation == Some("high-value-payment-fraud-check") || self.rng.random_bool(0.1);
        let amount = if high_value {
            self.rng.random_range(1_001.0..5_000.0)
        } else {
            self.rng.random_range(5.0..900.0)
        };
        let amount = (amount * 100.0f64).round() / 100.0;
        let root = self.span(
            "frontend",
            "POST /checkout",
            None,
            (0, 400),
            span::SpanKind::Server,
            vec![("http.route", s("/checkout")), ("order_id", s(&order))],
        );
        self.internal(
            "frontend",
            "checkout.initiate",
            root,
            1,
            vec![
                ("checkout_id", s(&format!("co_{order}"))),
                ("order_id", s(&order)),
            ],
        );
        let items = self.rng.random_range(1..6);
        self.internal(
            "frontend",
            "cart.validated",
            root,
            10,
            vec![
                ("cart_id", s(&format!("cart_{order}"))),
                ("items", i(items)),
            ],
        );
        if violation != Some("payment-requires-inventory") {
            self.internal(
                "inventory",
                "inventory.reserve",
                root,
                20,
                vec![("order_id", s(&order))],
            );
        }
        if high_value && violation != Some("high-value-payment-fraud-check") {
            let score = self.rng.random_range(0..40);
            self.internal(
                "payments",
                "payment.fraud_check",
                root,
                30,
                vec![("score", i(score))],
            );
        }
        let client = self.span(
            "frontend",
            "POST payments/charge",
            Some(root),
            (40, 200),
            span::SpanKind::Client,
            vec![("peer.service", s("payments"))],
        );
        let intent = format!("pi_{}", self.rng.random_range(100_000..999_999));
        let retries = violation == Some("payment-retry-idempotent") || self.rng.random_bool(0.15);
        let charge = |attempt: i64, intent: &str| {
            vec![
                ("order_id", s(&order)),
                ("payment_intent_id", s(intent)),
                ("attempt", i(attempt)),
                ("amount", f(amount)),
                ("amount_cents", i((amount * 100.0) as i64)),
                ("method", s("card")),
            ]
        };
        self.internal("payments", "payment.charge", client, 50, charge(1, &intent));
        if retries {
            let second = if violation == Some("payment-retry-idempotent") {
                format!("{intent}_retry")
            } else {
                intent.clone()
            };
            self.internal(
                "payments",
                "payment.charge",
                client,
                120,
                charge(2, &second),
            );
        }
        let (confirm_at, ship_at) = if violation == Some("shipment-after-payment-confirmed") {
            (300, 250)
        } else {
            (250, 300)
        };
        self.internal(
            "payments",
            "payment.confirm",
            root,
            confirm_at,
            vec![("order_id", s(&order))],
        );
        self.internal(
            "inventory",
            "inventory.deduct",
            root,
            310,
            vec![("order_id", s(&order)), ("sku", s("sku-1"))],
        );
        self.internal(
            "fulfilment",
            "shipment.initiate",
            root,
            ship_at,
            vec![
                ("order_id", s(&order)),
                ("shipment_id", s(&format!("sh_{order}"))),
            ],
        );
        self.internal(
            "frontend",
            "order.complete",
            root,
            320,
            vec![("order_id", s(&order))],
        );
        self.internal(
            "notifications",
            "email.confirmation_sent",
            root,
            330,
            vec![("order_id", s(&order))],
        );
        self.internal(
            "loyalty",
            "loyalty.award",
            root,
            340,
            vec![("order_id", s(&order)), ("points", i(amount as i64))],
        );
        violation
    }

    fn tenant_query(&mut self, inject: bool) -> Option<&'static str> {
        let tenant = format!("t_{}", self.rng.random_range(1..50));
        let root = self.span(
            "reports",
            "GET /api/v1/reports/{id}",
            None,
            (0, 120),
            span::SpanKind::Server,
            vec![("http.route", s("/api/v1/reports/{id}"))],
        );
        self.internal(
            "reports",
            "auth.validated",
            root,
            1,
            vec![("token_type", s("Bearer"))],
        );
        let rpm = self.rng.random_range(1..80);
        let req = self.internal(
            "reports",
            "api.request",
            root,
            5,
            vec![
                ("endpoint", s("/api/v1/reports/42")),
                ("method", s("GET")),
                ("user.id", s("u_7")),
                ("user.requests_per_minute", i(rpm)),
            ],
        );
        self.internal("reports", "cache.check", req, 10, vec![("hit", b(false))]);
        let table = ["tenant_data_reports", "tenant_data_invoices"][self.rng.random_range(0..2)];
        self.internal(
            "reports",
            "database.query",
            req,
            20,
            vec![
                ("table", s(table)),
                ("tenant_filter", b(!inject)),
                ("tenant_id", s(&tenant)),
            ],
        );
        inject.then_some("tenant-queries-filter-by-tenant")
    }

    fn admin(&mut self, inject: bool) -> Option<&'static str> {
        let root = self.span(
            "admin",
            "POST /api/v1/admin/users",
            None,
            (0, 80),
            span::SpanKind::Server,
            vec![("http.route", s("/api/v1/admin/users"))],
        );
        self.internal(
            "admin",
            "auth.validated",
            root,
            1,
            vec![("token_type", s("Bearer"))],
        );
        self.internal(
            "admin",
            "auth.check_admin_role",
            root,
            3,
            vec![("granted", b(true))],
        );
        self.internal("admin", "csrf.validated", root, 4, vec![]);
        self.internal(
            "admin",
            "api.request",
            root,
            6,
            vec![
                ("endpoint", s("/api/v1/admin/users")),
                ("method", s("POST")),
                ("user.id", s("admin_1")),
            ],
        );
        self.internal(
            "admin",
            "admin.action",
            root,
            10,
            vec![("action", s("disable_user")), ("user.id", s("admin_1"))],
        );
        if !inject {
            self.internal(
                "audit",
                "audit.log",
                root,
                20,
                vec![("action", s("disable_user"))],
            );
        }
        inject.then_some("soc2-admin-actions-audited")
    }

    fn phi(&mut self, inject: bool) -> Option<&'static str> {
        let root = self.span(
            "ehr",
            "GET /patients/{id}",
            None,
            (0, 60),
            span::SpanKind::Server,
            vec![("http.route", s("/patients/{id}"))],
        );
        if !inject {
            self.internal(
                "ehr",
                "auth.user_authenticated",
                root,
                1,
                vec![("user.id", s("dr_3"))],
            );
        }
        let patient = format!("p_{}", self.rng.random_range(1..10_000));
        self.internal(
            "ehr",
            "phi.access",
            root,
            10,
            vec![("data_type", s("phi")), ("patient.id", s(&patient))],
        );
        // The audit record names the access and its patient, as the seeds instrument it:
        // hipaa-phi-access-audited joins the record to the access by patient.id.
        self.internal(
            "audit",
            "audit.log",
            root,
            20,
            vec![
                ("action", s("phi_access")),
                ("user.id", s("dr_3")),
                ("patient.id", s(&patient)),
            ],
        );
        inject.then_some("hipaa-phi-access-authenticated")
    }

    fn llm(&mut self, inject: bool) -> Option<&'static str> {
        let agent = self.rng.random_bool(0.3);
        let violation = inject.then_some(if agent {
            "agent-destructive-actions-approved"
        } else {
            "llm-output-moderated"
        });
        let root = self.span(
            "assistant",
            "POST /chat",
            None,
            (0, 900),
            span::SpanKind::Server,
            vec![("http.route", s("/chat"))],
        );
        let entities = self.rng.random_range(0..3);
        self.internal(
            "assistant",
            "pii.redacted",
            root,
            1,
            vec![("entities", i(entities))],
        );
        self.internal(
            "assistant",
            "prompt.injection_check",
            root,
            5,
            vec![("detected", b(false))],
        );
        let rag = self.rng.random_bool(0.4);
        let max_tokens = 1024;
        let tokens = self.rng.random_range(50..max_tokens);
        let per_minute = self.rng.random_range(1..30);
        self.internal(
            "assistant",
            "llm.generate",
            root,
            10,
            vec![
                ("gen_ai.request.model", s("gpt-4o-2024-08-06")),
                ("token_count", i(tokens)),
                ("max_tokens", i(max_tokens)),
                ("rag_enabled", b(rag)),
                ("user.id", s("u_12")),
                ("user.llm_requests_per_minute", i(per_minute)),
            ],
        );
        if rag {
            self.internal(
                "assistant",
                "rag.cite_sources",
                root,
                600,
                vec![("count", i(3))],
            );
            self.internal(
                "assistant",
                "rag.fact_check",
                root,
                610,
                vec![("supported", b(true))],
            );
        }
        if violation != Some("llm-output-moderated") {
            self.internal(
                "assistant",
                "content.moderate",
                root,
                700,
                vec![("flagged", b(false))],
            );
        }
        self.internal(
            "assistant",
            "cost.calculated",
            root,
            710,
            vec![("usd", f(0.01))],
        );
        if agent {
            self.internal(
                "assistant",
                "goal.validated",
                root,
                720,
                vec![("aligned", b(true))],
            );
            if violation != Some("agent-destructive-actions-approved") {
                self.internal(
                    "assistant",
                    "human.approval",
                    root,
                    730,
                    vec![("approver", s("ops_1"))],
                );
            }
            self.internal(
                "assistant",
                "agent.action",
                root,
                750,
                vec![
                    ("tool", s("delete_records")),
                    ("destructive", b(true)),
                    ("agent.id", s("ag_1")),
                ],
            );
        }
        violation
    }

    /// Adds filler spans no rule names, up to a length drawn around a median of 12, and
    /// pads every span to 6–10 attributes.
    fn pad(&mut self) {
        const FILLER: [&str; 6] = [
            "middleware",
            "json.encode",
            "cache.get",
            "feature_flag.evaluate",
            "config.lookup",
            "http.client",
        ];
        let target = (5.0 + self.rng.random::<f64>().powf(2.2) * 45.0) as usize;
        while self.spans.len() < target {
            let parent = self.rng.random_range(0..self.spans.len());
            let service = self.spans[parent].0;
            let name = FILLER[self.rng.random_range(0..FILLER.len())];
            let at = self.rng.random_range(1..300);
            self.internal(service, name, parent, at, vec![]);
        }
        const GENERIC: [&str; 10] = [
            "code.function",
            "thread.id",
            "request.id",
            "deployment.region",
            "component",
            "sampled",
            "net.peer.port",
            "host.arch",
            "retry.budget",
            "feature.flag",
        ];
        for k in 0..self.spans.len() {
            let want = self.rng.random_range(6..=10);
            let mut g = 0;
            while self.spans[k].1.attributes.len() < want && g < GENERIC.len() {
                let value = match g % 3 {
                    0 => s(&format!("v{}", self.rng.random_range(0..1000))),
                    1 => i(self.rng.random_range(0..1000)),
                    _ => b(self.rng.random_bool(0.5)),
                };
                self.spans[k].1.attributes.push(kv(GENERIC[g], value));
                g += 1;
            }
        }
    }
}

/// Splits the corpus into export batches the way a collector sees them: spans in the order
/// they end, `spans_per_batch` at a time, grouped by service. Traces straddle batches.
pub fn batches(corpus: &Corpus, spans_per_batch: usize) -> Vec<TracesData> {
    let mut all: Vec<&(&'static str, Span)> =
        corpus.traces.iter().flat_map(|t| t.spans.iter()).collect();
    all.sort_by_key(|(_, sp)| (sp.end_time_unix_nano, sp.span_id.clone()));
    all.chunks(spans_per_batch.max(1))
        .map(|chunk| {
            let mut by_service: Vec<(&str, Vec<Span>)> = Vec::new();
            for (svc, sp) in chunk {
                match by_service.iter_mut().find(|(s, _)| s == svc) {
                    Some((_, v)) => v.push(sp.clone()),
                    None => by_service.push((svc, vec![sp.clone()])),
                }
            }
            TracesData {
                resource_spans: by_service
                    .into_iter()
                    .map(|(svc, spans)| ResourceSpans {
                        resource: Some(Resource {
                            attributes: vec![
                                kv("service.name", s(svc)),
                                kv("deployment.environment", s("production")),
                            ],
                            ..Default::default()
                        }),
                        scope_spans: vec![ScopeSpans {
                            scope: Some(InstrumentationScope {
                                name: "betrace-corpus".into(),
                                ..Default::default()
                            }),
                            spans,
                            ..Default::default()
                        }],
                        ..Default::default()
                    })
                    .collect(),
            }
        })
        .collect()
}

/// One batch encoded as the file exporter writes a record (without framing).
pub fn encode(batch: &TracesData, format: Format) -> Vec<u8> {
    match format {
        Format::Json => serde_json::to_vec(batch).expect("OTLP types serialize"),
        Format::Proto => batch.encode_to_vec(),
    }
}

/// Writes the corpus into `dir` as the file exporter would, rotating every
/// `batches_per_file` batches. Returns the files written.
pub fn write(
    dir: &Path,
    corpus: &Corpus,
    format: Format,
    compression: Compression,
    spans_per_batch: usize,
    batches_per_file: usize,
) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let ext = match (format, compression) {
        (Format::Json, Compression::None) => "json",
        (Format::Proto, Compression::None) => "pb",
        (_, Compression::Zstd) => "zst.pb",
    };
    let mut files = Vec::new();
    for (n, chunk) in batches(corpus, spans_per_batch)
        .chunks(batches_per_file.max(1))
        .enumerate()
    {
        let path = dir.join(format!("traces-{n:04}.{ext}"));
        let mut out = std::io::BufWriter::new(std::fs::File::create(&path)?);
        for batch in chunk {
            let body = encode(batch, format);
            match (format, compression) {
                (Format::Json, Compression::None) => {
                    out.write_all(&body)?;
                    out.write_all(b"\n")?;
                }
                (_, Compression::None) => {
                    out.write_all(&(body.len() as u32).to_be_bytes())?;
                    out.write_all(&body)?;
                }
                (_, Compression::Zstd) => {
                    let packed = zstd::encode_all(body.as_slice(), 3)?;
                    out.write_all(&(packed.len() as u32).to_be_bytes())?;
                    out.write_all(&packed)?;
                }
            }
        }
        out.flush()?;
        files.push(path);
    }
    Ok(files)
}

/// Writes the expected violations, one `{"trace_id","rule_id"}` object per line.
pub fn write_expected(path: &Path, corpus: &Corpus) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    for (trace, rule) in &corpus.expected {
        writeln!(
            out,
            "{}",
            serde_json::json!({"trace_id": trace, "rule_id": rule})
        )?;
    }
    out.flush()
}
