/*
 * A C program that uses BeTrace through ffi/betrace.h only, as any host would:
 * loads rules, ingests a known violation split over two batches, advances the clock,
 * reads the log record back and checks it, calls from 4 threads at once, and feeds
 * garbage, NULLs and a broken rule file, checking codes and messages.
 *
 * `make ffi-test` builds it against the cdylib and runs it under valgrind.
 * OTLP protobuf is encoded and walked by hand below: a test should not need a protobuf
 * library to speak the wire format.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "betrace.h"

static int failures = 0;
static int checks = 0;

#define CHECK(cond, ...)                                                   \
  do {                                                                     \
    checks++;                                                              \
    if (!(cond)) {                                                         \
      failures++;                                                          \
      fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);      \
      fprintf(stderr, __VA_ARGS__);                                        \
      fprintf(stderr, "\n");                                               \
    }                                                                      \
  } while (0)

static const uint64_t SEC = 1000000000ull;

/* ---------------------------------------------------------------- protobuf writing */

typedef struct {
  uint8_t *p;
  size_t len, cap;
} pb;

static void pb_put(pb *b, const void *data, size_t n) {
  if (b->len + n > b->cap) {
    b->cap = (b->len + n) * 2 + 64;
    b->p = realloc(b->p, b->cap);
    if (!b->p) abort();
  }
  memcpy(b->p + b->len, data, n);
  b->len += n;
}

static void pb_varint(pb *b, uint64_t v) {
  uint8_t tmp[10];
  size_t n = 0;
  do {
    tmp[n] = (uint8_t)(v & 0x7f);
    v >>= 7;
    if (v) tmp[n] |= 0x80;
    n++;
  } while (v);
  pb_put(b, tmp, n);
}

static void pb_bytes(pb *b, unsigned field, const void *data, size_t n) {
  pb_varint(b, (field << 3) | 2);
  pb_varint(b, n);
  pb_put(b, data, n);
}

static void pb_str(pb *b, unsigned field, const char *s) { pb_bytes(b, field, s, strlen(s)); }

static void pb_msg(pb *b, unsigned field, pb *inner) {
  pb_bytes(b, field, inner->p, inner->len);
  free(inner->p);
  inner->p = NULL;
  inner->len = inner->cap = 0;
}

static void pb_fixed64(pb *b, unsigned field, uint64_t v) {
  uint8_t le[8];
  for (int i = 0; i < 8; i++) le[i] = (uint8_t)(v >> (8 * i));
  pb_varint(b, (field << 3) | 1);
  pb_put(b, le, 8);
}

/* KeyValue{key, AnyValue{string_value}} */
static void pb_attr(pb *b, unsigned field, const char *key, const char *value) {
  pb any = {0}, kv = {0};
  pb_str(&any, 1, value);
  pb_str(&kv, 1, key);
  pb_msg(&kv, 2, &any);
  pb_msg(b, field, &kv);
}

/* An ExportTraceServiceRequest with one span of `service`. */
static pb one_span(const uint8_t trace[16], uint64_t span_id, uint64_t parent, const char *service, const char *name,
                   uint64_t start, const char *attr_key, const char *attr_value) {
  pb span = {0}, scope = {0}, resource = {0}, rs = {0}, req = {0};
  uint8_t sid[8], pid[8];
  for (int i = 0; i < 8; i++) {
    sid[i] = (uint8_t)(span_id >> (8 * (7 - i)));
    pid[i] = (uint8_t)(parent >> (8 * (7 - i)));
  }
  pb_bytes(&span, 1, trace, 16);
  pb_bytes(&span, 2, sid, 8);
  if (parent) pb_bytes(&span, 4, pid, 8);
  pb_str(&span, 5, name);
  pb_fixed64(&span, 7, start);
  pb_fixed64(&span, 8, start + 1000000);
  if (attr_key) pb_attr(&span, 9, attr_key, attr_value);
  pb_msg(&scope, 2, &span);
  pb_attr(&resource, 1, "service.name", service);
  pb_msg(&rs, 1, &resource);
  pb_msg(&rs, 2, &scope);
  pb_msg(&req, 1, &rs);
  return req;
}

/* ---------------------------------------------------------------- protobuf reading */

typedef struct {
  const uint8_t *p;
  size_t len;
} view;

static int read_varint(view *v, uint64_t *out) {
  uint64_t x = 0;
  for (int shift = 0; shift < 64 && v->len; shift += 7) {
    uint8_t byte = *v->p++;
    v->len--;
    x |= (uint64_t)(byte & 0x7f) << shift;
    if (!(byte & 0x80)) {
      *out = x;
      return 1;
    }
  }
  return 0;
}

/* The nth (0-based) occurrence of `field` in a message: its bytes (wire type 2) or its
 * integer value (wire types 0, 1). Returns 1 when found. */
static int field(view msg, unsigned want, int nth, view *bytes_out, uint64_t *int_out) {
  while (msg.len) {
    uint64_t tag, n;
    if (!read_varint(&msg, &tag)) return 0;
    unsigned f = (unsigned)(tag >> 3), wt = (unsigned)(tag & 7);
    view body = {msg.p, 0};
    uint64_t value = 0;
    if (wt == 0) {
      if (!read_varint(&msg, &value)) return 0;
    } else if (wt == 1 || wt == 5) {
      size_t w = wt == 1 ? 8 : 4;
      if (msg.len < w) return 0;
      for (size_t i = 0; i < w; i++) value |= (uint64_t)msg.p[i] << (8 * i);
      msg.p += w;
      msg.len -= w;
    } else if (wt == 2) {
      if (!read_varint(&msg, &n) || n > msg.len) return 0;
      body.p = msg.p;
      body.len = (size_t)n;
      msg.p += n;
      msg.len -= (size_t)n;
    } else {
      return 0;
    }
    if (f == want && nth-- == 0) {
      if (bytes_out) *bytes_out = body;
      if (int_out) *int_out = value;
      return 1;
    }
  }
  return 0;
}

static int view_eq(view v, const char *s) { return v.len == strlen(s) && memcmp(v.p, s, v.len) == 0; }

/* The string value of attribute `key` in a LogRecord (attributes are field 6). */
static int log_attr(view record, const char *key, view *value) {
  view kv, k, any;
  for (int i = 0; field(record, 6, i, &kv, NULL); i++) {
    if (field(kv, 1, 0, &k, NULL) && view_eq(k, key) && field(kv, 2, 0, &any, NULL)) return field(any, 1, 0, value, NULL);
  }
  return 0;
}

/* All LogRecords of an ExportLogsServiceRequest, in order. */
static int log_records(view req, view *out, int max) {
  int n = 0;
  view rl, sl, rec;
  for (int i = 0; field(req, 1, i, &rl, NULL); i++)
    for (int j = 0; field(rl, 2, j, &sl, NULL); j++)
      for (int k = 0; field(sl, 2, k, &rec, NULL); k++)
        if (n < max) out[n++] = rec;
  return n;
}

/* ---------------------------------------------------------------- the tests */

static const char *RULES =
    "rules:\n"
    "  - id: payment-requires-inventory\n"
    "    name: Payment requires an inventory reservation\n"
    "    severity: critical\n"
    "    condition: when { payment.charge } always { inventory.reserve }\n"
    "    signal:\n"
    "      message: \"charge for {order_id} without reservation\"\n"
    "      context: [order_id]\n";

static betrace_source source(const char *name, const char *text) {
  betrace_source s = {(const uint8_t *)name, strlen(name), (const uint8_t *)text, strlen(text)};
  return s;
}

static int ingest(betrace_engine *e, pb req, uint64_t now) {
  betrace_buf err = {0};
  int rc = betrace_engine_ingest(e, 0, req.p, req.len, now, &err);
  if (rc != BETRACE_OK) fprintf(stderr, "ingest: %d %s\n", rc, err.ptr ? (const char *)err.ptr : "");
  betrace_buf_free(&err);
  free(req.p);
  return rc;
}

static void test_split_violation(betrace_engine *e) {
  uint8_t trace[16];
  for (int i = 0; i < 16; i++) trace[i] = (uint8_t)(0xa0 + i);
  CHECK(ingest(e, one_span(trace, 1, 0, "shop", "checkout", 0, NULL, NULL), 0) == BETRACE_OK, "first half");
  CHECK(ingest(e, one_span(trace, 2, 1, "payments", "payment.charge", SEC, "order_id", "ord_42"), SEC) == BETRACE_OK,
        "second half");

  betrace_buf logs = {0};
  uint64_t n = 99;
  CHECK(betrace_engine_tick(e, 3 * SEC, NULL) == BETRACE_OK, "tick");
  CHECK(betrace_engine_take_logs(e, &logs, &n, NULL) == BETRACE_OK, "take");
  CHECK(n == 0 && logs.ptr == NULL && logs.len == 0, "nothing before the idle timeout, got %llu", (unsigned long long)n);

  CHECK(betrace_engine_tick(e, 7 * SEC, NULL) == BETRACE_OK, "tick");
  CHECK(betrace_engine_take_logs(e, &logs, &n, NULL) == BETRACE_OK, "take");
  CHECK(n == 1, "one signal, got %llu", (unsigned long long)n);
  view recs[4];
  int got = log_records((view){logs.ptr, logs.len}, recs, 4);
  CHECK(got == 1, "one log record, got %d", got);
  if (got == 1) {
    view v;
    uint64_t sev = 0, t = 0, observed = 0;
    CHECK(field(recs[0], 9, 0, &v, NULL) && v.len == 16 && memcmp(v.p, trace, 16) == 0, "trace_id links the record to the trace");
    CHECK(field(recs[0], 10, 0, &v, NULL) && v.len == 8 && v.p[7] == 2, "span_id is the charge, the trigger span");
    CHECK(field(recs[0], 2, 0, NULL, &sev) && sev == 21, "critical is FATAL (21), got %llu", (unsigned long long)sev);
    CHECK(field(recs[0], 3, 0, &v, NULL) && view_eq(v, "critical"), "severity_text");
    CHECK(field(recs[0], 1, 0, NULL, &t) && t == SEC, "time is the trigger span's start");
    CHECK(field(recs[0], 11, 0, NULL, &observed) && observed == 7 * SEC, "observed time is detection time");
    CHECK(field(recs[0], 12, 0, &v, NULL) && view_eq(v, "betrace.violation"), "event_name");
    view body, s;
    CHECK(field(recs[0], 5, 0, &body, NULL) && field(body, 1, 0, &s, NULL) && view_eq(s, "charge for ord_42 without reservation"),
          "body is the message");
    CHECK(log_attr(recs[0], "betrace.rule.id", &s) && view_eq(s, "payment-requires-inventory"), "rule id attribute");
    CHECK(log_attr(recs[0], "betrace.context.order_id", &s) && view_eq(s, "ord_42"), "context attribute");
    CHECK(log_attr(recs[0], "betrace.mode", &s) && view_eq(s, "live"), "mode attribute");
  }
  betrace_buf_free(&logs);
  CHECK(logs.ptr == NULL && logs.len == 0, "freed buffers are emptied");
  betrace_buf_free(&logs); /* twice is harmless */
}

typedef struct {
  betrace_engine *engine;
  int thread;
  int errors;
} worker;

static void *work(void *arg) {
  worker *w = arg;
  for (int i = 0; i < 100; i++) {
    uint8_t trace[16] = {0};
    trace[0] = (uint8_t)(w->thread + 1);
    trace[14] = (uint8_t)(i >> 8);
    trace[15] = (uint8_t)i;
    if (ingest(w->engine, one_span(trace, 1, 0, "payments", "payment.charge", 10 * SEC, "order_id", "x"), 10 * SEC) != BETRACE_OK)
      w->errors++;
    if (i % 10 == 0 && betrace_engine_tick(w->engine, 10 * SEC, NULL) != BETRACE_OK) w->errors++;
    betrace_counters c;
    if (betrace_engine_counters(w->engine, &c) != BETRACE_OK) w->errors++;
  }
  return NULL;
}

static void test_threads(betrace_engine *e) {
  pthread_t t[4];
  worker w[4];
  for (int i = 0; i < 4; i++) {
    w[i] = (worker){e, i, 0};
    pthread_create(&t[i], NULL, work, &w[i]);
  }
  for (int i = 0; i < 4; i++) {
    pthread_join(t[i], NULL);
    CHECK(w[i].errors == 0, "thread %d had %d errors", i, w[i].errors);
  }
  CHECK(betrace_engine_shutdown(e, 11 * SEC, NULL) == BETRACE_OK, "shutdown");
  betrace_buf logs = {0};
  uint64_t n = 0;
  CHECK(betrace_engine_take_logs(e, &logs, &n, NULL) == BETRACE_OK, "take after shutdown");
  CHECK(n == 400, "shutdown judged all 400 traces from 4 threads, got %llu signals", (unsigned long long)n);
  betrace_buf_free(&logs);

  betrace_counters c;
  CHECK(betrace_engine_counters(e, &c) == BETRACE_OK, "counters");
  CHECK(c.spans_in == 402, "spans_in %llu", (unsigned long long)c.spans_in);
  CHECK(c.traces_judged == 401, "traces_judged %llu", (unsigned long long)c.traces_judged);
  CHECK(c.signals == 401 && c.held_traces == 0 && c.held_spans == 0, "signals %llu held %llu", (unsigned long long)c.signals,
        (unsigned long long)c.held_traces);

  betrace_buf records = {0};
  CHECK(betrace_engine_rule_counts(e, &records, NULL) == BETRACE_OK, "rule counts");
  const char *id = "payment-requires-inventory";
  size_t id_len = strlen(id);
  CHECK(records.ptr && records.len == 4 + id_len + 3 * 8, "one record, %zu bytes", records.len);
  if (records.ptr && records.len == 4 + id_len + 3 * 8) {
    uint32_t n = 0;
    uint64_t counts[3] = {0};
    memcpy(&n, records.ptr, 4); /* little-endian, as the machines this runs on */
    memcpy(counts, records.ptr + 4 + id_len, sizeof counts);
    CHECK(n == id_len && memcmp(records.ptr + 4, id, id_len) == 0, "the record names the rule");
    CHECK(counts[0] == 401 && counts[1] == 401 && counts[2] == 0, "applied %llu violated %llu skipped %llu",
          (unsigned long long)counts[0], (unsigned long long)counts[1], (unsigned long long)counts[2]);
  }
  betrace_buf_free(&records);

  uint8_t trace[16] = {9};
  betrace_buf err = {0};
  pb late = one_span(trace, 1, 0, "shop", "x", 0, NULL, NULL);
  CHECK(betrace_engine_ingest(e, 0, late.p, late.len, 12 * SEC, &err) == BETRACE_ERR_SHUT_DOWN, "no ingest after shutdown");
  CHECK(err.ptr && strstr((const char *)err.ptr, "shut down"), "message says so");
  betrace_buf_free(&err);
  free(late.p);
}

static void test_bad_input(betrace_engine *e) {
  betrace_buf err = {0};
  const uint8_t garbage[] = {0xff, 0xff, 0xff, 0xff, 0x0f, 0x12, 0x34};
  CHECK(betrace_engine_ingest(e, 0, garbage, sizeof garbage, 0, &err) == BETRACE_ERR_DECODE, "garbage is a decode error");
  CHECK(err.ptr && err.len > 0 && strstr((const char *)err.ptr, "protobuf"), "with a message");
  betrace_buf_free(&err);
  CHECK(betrace_engine_ingest(e, 0, NULL, 10, 0, &err) == BETRACE_ERR_INVALID_ARGUMENT, "NULL data with a length");
  betrace_buf_free(&err);
  CHECK(betrace_engine_ingest(e, 0, NULL, 0, 0, NULL) == BETRACE_OK, "an empty batch is fine");
  CHECK(betrace_engine_ingest(NULL, 0, garbage, sizeof garbage, 0, &err) == BETRACE_ERR_INVALID_ARGUMENT, "NULL engine");
  CHECK(err.ptr && strstr((const char *)err.ptr, "engine is NULL"), "says which");
  betrace_buf_free(&err);
  pb req = one_span((const uint8_t *)"0123456789abcdef", 1, 0, "shop", "checkout", 0, NULL, NULL);
  CHECK(betrace_engine_ingest(e, 64, req.p, req.len, 0, &err) == BETRACE_ERR_INVALID_ARGUMENT, "feed 64 is out of range");
  CHECK(err.ptr && strstr((const char *)err.ptr, "feed 64"), "says which feed");
  betrace_buf_free(&err);
  free(req.p);
  betrace_buf spans = {0};
  uint64_t n = 99;
  CHECK(betrace_engine_take_spans(e, 64, &spans, &n, NULL) == BETRACE_OK && n == 0, "no spans for a feed out of range");
  betrace_buf_free(&spans);
  CHECK(betrace_engine_take_logs(e, NULL, NULL, NULL) == BETRACE_ERR_INVALID_ARGUMENT, "NULL out pointer");
  CHECK(betrace_engine_counters(e, NULL) == BETRACE_ERR_INVALID_ARGUMENT, "NULL counters");

  betrace_source files[2] = {source("good.yaml", RULES),
                             source("bad.yaml", "rules:\n  - id: r\n    name: R\n    condition: when { a } always { b.where(x >) }\n")};
  betrace_engine *none = (betrace_engine *)0x1;
  CHECK(betrace_engine_new(files, 2, NULL, &none, &err) == BETRACE_ERR_RULES, "rule error");
  CHECK(err.ptr && strstr((const char *)err.ptr, "bad.yaml:4:"), "located: %s", err.ptr ? (const char *)err.ptr : "NULL");
  CHECK(none == (betrace_engine *)0x1, "no handle on failure");
  betrace_buf_free(&err);
  CHECK(betrace_engine_set_rules(e, files, 2, &err) == BETRACE_ERR_RULES, "reload refused, all or nothing");
  betrace_buf_free(&err);
  CHECK(betrace_engine_new(files, 0, NULL, &none, &err) == BETRACE_ERR_RULES, "no rule files");
  betrace_buf_free(&err);
  CHECK(betrace_engine_new(NULL, 1, NULL, &none, &err) == BETRACE_ERR_INVALID_ARGUMENT, "NULL rules");
  betrace_buf_free(&err);
  const char not_utf8[] = {(char)0xc3, (char)0x28, 0};
  betrace_source broken = source("x.yaml", not_utf8);
  CHECK(betrace_engine_new(&broken, 1, NULL, &none, &err) == BETRACE_ERR_INVALID_ARGUMENT, "not UTF-8");
  betrace_buf_free(&err);
}

/* One unreadable span (a 3-byte trace id) keeps the rest of its request; an absurd `now`
   cannot wrap a deadline into the past. */
static void test_bad_span_and_absurd_clock(void) {
  betrace_engine *e = NULL;
  betrace_source rules = source("rules.yaml", RULES);
  CHECK(betrace_engine_new(&rules, 1, NULL, &e, NULL) == BETRACE_OK && e, "engine");
  if (!e) return;
  betrace_counters before = {0}, after = {0};
  CHECK(betrace_engine_counters(e, &before) == BETRACE_OK, "counters");
  const uint8_t trace[16] = {0x7e, 0x57, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14};
  pb good = {0}, bad = {0}, scope = {0}, rs = {0}, req = {0};
  const uint8_t sid[8] = {0, 0, 0, 0, 0, 0, 0x5b, 1}, short_id[3] = {1, 2, 3};
  pb_bytes(&good, 1, trace, 16);
  pb_bytes(&good, 2, sid, 8);
  pb_str(&good, 5, "inventory.reserve");
  pb_bytes(&bad, 1, short_id, 3);
  pb_bytes(&bad, 2, sid, 8);
  pb_str(&bad, 5, "broken");
  pb_msg(&scope, 2, &bad);
  pb_msg(&scope, 2, &good);
  pb_msg(&rs, 2, &scope);
  pb_msg(&req, 1, &rs);
  betrace_buf err = {0};
  CHECK(betrace_engine_ingest(e, 0, req.p, req.len, UINT64_MAX - SEC, &err) == BETRACE_OK,
        "a request with one bad span is accepted: %s", err.ptr ? (const char *)err.ptr : "");
  betrace_buf_free(&err);
  free(req.p);
  CHECK(betrace_engine_counters(e, &after) == BETRACE_OK, "counters");
  CHECK(after.invalid_spans == before.invalid_spans + 1, "the bad span is counted");
  CHECK(after.spans_in == before.spans_in + 1, "the good span is taken");
  CHECK(betrace_engine_tick(e, 20 * SEC, NULL) == BETRACE_OK, "tick");
  betrace_counters ticked = {0};
  CHECK(betrace_engine_counters(e, &ticked) == BETRACE_OK, "counters");
  CHECK(ticked.traces_judged == after.traces_judged, "a deadline near UINT64_MAX did not wrap into the past");
  betrace_engine_free(e);
}

/* memory_limit_bytes bounds the bytes held: past it the oldest traces are judged early,
 * counted apart, and the held bytes never exceed it. */
static void test_memory_limit(void) {
  betrace_source rules = source("rules.yaml", RULES);
  betrace_options opts = {0};
  opts.memory_limit_bytes = 16 * 1024;
  betrace_engine *e = NULL;
  CHECK(betrace_engine_new(&rules, 1, &opts, &e, NULL) == BETRACE_OK && e, "engine with a memory limit");
  if (!e) return;
  betrace_counters c = {0};
  for (int t = 0; t < 200; t++) {
    uint8_t trace[16] = {0x3e, (uint8_t)t, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, (uint8_t)t};
    CHECK(ingest(e, one_span(trace, 1, 0, "shop", "payment.charge", SEC, "k", "v"), SEC + (uint64_t)t) == BETRACE_OK,
          "ingest");
    CHECK(betrace_engine_counters(e, &c) == BETRACE_OK && c.held_bytes <= opts.memory_limit_bytes,
          "held bytes %llu within the limit", (unsigned long long)c.held_bytes);
  }
  CHECK(c.traces_judged_early_memory > 0 && c.traces_judged_early_memory == c.traces_judged_early,
        "judged early because of memory, counted apart (%llu of %llu)",
        (unsigned long long)c.traces_judged_early_memory, (unsigned long long)c.traces_judged_early);
  CHECK(c.held_traces > 5, "the limit is bytes, not a handful of traces (%llu held)", (unsigned long long)c.held_traces);
  betrace_buf events = {0};
  CHECK(betrace_engine_take_log_events(e, &events, NULL) == BETRACE_OK && events.ptr &&
            strstr((const char *)events.ptr, "judged early") && strstr((const char *)events.ptr, "memory_limit_mib"),
        "judging early is logged, naming the limit");
  betrace_buf_free(&events);
  betrace_engine_free(e);
}

static void test_outputs(void) {
  betrace_source rules = source("rules.yaml", RULES);
  betrace_options opts = {0};
  betrace_engine *e = NULL;
  betrace_buf err = {0};
  opts.outputs = BETRACE_OUTPUT_NONE | BETRACE_OUTPUT_LOGS;
  CHECK(betrace_engine_new(&rules, 1, &opts, &e, &err) == BETRACE_ERR_INVALID_ARGUMENT && !e,
        "no output and logs at once is refused");
  CHECK(err.ptr && strstr((const char *)err.ptr, "BETRACE_OUTPUT_NONE"), "the error says why");
  betrace_buf_free(&err);
  opts.outputs = 64;
  CHECK(betrace_engine_new(&rules, 1, &opts, &e, NULL) == BETRACE_ERR_INVALID_ARGUMENT && !e,
        "an unknown output bit is refused");
}

int main(void) {
  const char *version = betrace_version();
  CHECK(version && strlen(version) > 0, "version");

  betrace_options opts = {0};
  opts.trace_idle_timeout_ns = 5 * SEC;
  opts.outputs = BETRACE_OUTPUT_LOGS;
  betrace_engine *e = NULL;
  betrace_buf err = {0};
  betrace_source rules = source("rules.yaml", RULES);
  int rc = betrace_engine_new(&rules, 1, &opts, &e, &err);
  CHECK(rc == BETRACE_OK && e != NULL, "engine_new: %s", err.ptr ? (const char *)err.ptr : "");
  betrace_buf_free(&err);
  if (!e) return 1;

  test_split_violation(e);
  test_bad_input(e);
  test_bad_span_and_absurd_clock();
  test_threads(e);
  test_outputs();
  test_memory_limit();

  betrace_buf events = {0};
  CHECK(betrace_engine_take_log_events(e, &events, NULL) == BETRACE_OK, "log events");
  CHECK(events.ptr && strstr((const char *)events.ptr, "rules loaded"), "the engine's own log reaches the host");
  betrace_buf_free(&events);
  CHECK(betrace_engine_take_log_events(e, &events, NULL) == BETRACE_OK && events.len == 0, "drained once");
  betrace_buf_free(&events);
  CHECK(betrace_engine_take_log_events(NULL, &events, NULL) == BETRACE_ERR_INVALID_ARGUMENT, "a NULL engine is refused");
  CHECK(betrace_engine_set_log_level(e, 2) == BETRACE_OK, "set an engine's level");
  CHECK(betrace_engine_set_log_level(NULL, 2) == BETRACE_ERR_INVALID_ARGUMENT, "set the level of a NULL engine");
  CHECK(betrace_take_log_events(&events) == BETRACE_OK, "process-wide events");
  betrace_buf_free(&events);

  betrace_engine_free(e);
  betrace_engine_free(NULL);
  printf("ffi: %d passed, %d failed\n", checks - failures, failures);
  return failures ? 1 : 0;
}
