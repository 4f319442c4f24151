package betraceconnector

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/confmap/confmaptest"
	"go.opentelemetry.io/collector/connector/connectortest"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/metric/metricdata/metricdatatest"

	"github.com/betracehq/betrace/go-shim/connector/betraceconnector/internal/metadata"
	"github.com/betracehq/betrace/go-shim/connector/betraceconnector/internal/metadatatest"
	"github.com/betracehq/betrace/go-shim/internal/engine"
	"github.com/betracehq/betrace/go-shim/internal/testtraces"
)

func loadConfig(t *testing.T, name string) (*Config, error) {
	t.Helper()
	cm, err := confmaptest.LoadConf(filepath.Join("testdata", "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := NewFactory().CreateDefaultConfig().(*Config)
	sub, err := cm.Sub(component.NewIDWithName(metadata.Type, name).String())
	if err != nil {
		t.Fatal(err)
	}
	return cfg, sub.Unmarshal(cfg)
}

func TestConfig(t *testing.T) {
	cfg, err := loadConfig(t, "full")
	if err != nil || cfg.Validate() != nil {
		t.Fatalf("full config: %v %v", err, cfg.Validate())
	}
	if cfg.TraceIdleTimeout != 2*time.Second || cfg.MaxTraceAge != 30*time.Second || cfg.MaxTraces != 1000 || cfg.MaxSpans != 50000 ||
		cfg.MemoryLimitMiB != 256 || cfg.ReloadInterval != time.Minute {
		t.Errorf("not read as written: %+v", cfg)
	}
	def, _ := loadConfig(t, "")
	if def.TraceIdleTimeout != 5*time.Second || def.MaxTraceAge != 60*time.Second || def.MaxTraces != 1_000_000 || def.MaxSpans != 5_000_000 ||
		def.MemoryLimitMiB != 512 {
		t.Errorf("defaults: %+v", def)
	}
	nomemory, err := loadConfig(t, "nomemory")
	if err != nil {
		t.Fatal(err)
	}
	if err := nomemory.Validate(); err == nil || !strings.Contains(err.Error(), "memory_limit_mib must be a positive number of MiB") {
		t.Errorf("memory_limit_mib: 0 is refused: %v", err)
	}
	norules, err := loadConfig(t, "norules")
	if err != nil {
		t.Fatal(err)
	}
	if err := norules.Validate(); err == nil || !strings.Contains(err.Error(), "no rules") {
		t.Errorf("a config without rules is refused: %v", err)
	}
	if _, err := loadConfig(t, "badduration"); err == nil {
		t.Error("a bad duration is refused")
	}
}

// newConnector starts a connector on a fake clock; advance moves the clock on by d and
// returns once the connector has judged what is due.
func newConnector(t *testing.T, idle time.Duration, next consumer.Logs) (c *tracesToLogs, advance func(d time.Duration), err error) {
	t.Helper()
	cfg := NewFactory().CreateDefaultConfig().(*Config)
	cfg.RulesInline = testtraces.Rules
	cfg.TraceIdleTimeout = idle
	cl, err := NewFactory().CreateTracesToLogs(context.Background(), connectortest.NewNopSettings(metadata.Type), cfg, next)
	if err != nil {
		t.Fatal(err)
	}
	clock, ctx := testtraces.FakeClock()
	if err := cl.Start(ctx, componenttest.NewNopHost()); err != nil {
		return nil, nil, err
	}
	testtraces.WaitForTheLoop(t, clock)
	return cl.(*tracesToLogs), func(d time.Duration) { testtraces.Advance(t, clock, d, engine.TickInterval(idle)) }, nil
}

// notifyingSink tells a test each time logs are delivered (delivery runs beside judging).
type notifyingSink struct {
	consumertest.LogsSink
	delivered chan struct{}
}

func newNotifyingSink() *notifyingSink { return &notifyingSink{delivered: make(chan struct{}, 16)} }

func (s *notifyingSink) ConsumeLogs(ctx context.Context, ld plog.Logs) error {
	err := s.LogsSink.ConsumeLogs(ctx, ld)
	s.delivered <- struct{}{}
	return err
}

func record(t *testing.T, sink *consumertest.LogsSink) plog.LogRecord {
	t.Helper()
	if sink.LogRecordCount() != 1 {
		t.Fatalf("want one violation record, got %d", sink.LogRecordCount())
	}
	return sink.AllLogs()[0].ResourceLogs().At(0).ScopeLogs().At(0).LogRecords().At(0)
}

func TestAViolationSplitOverBatchesArrivesAsOneLogRecord(t *testing.T) {
	sink := newNotifyingSink()
	c, advance, err := newConnector(t, 100*time.Millisecond, sink)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	first := testtraces.Span(1, 1, 0, "shop", "checkout")
	if err := c.ConsumeTraces(ctx, first); err != nil {
		t.Fatal(err)
	}
	// The collector reuses batches once ConsumeTraces returns: clobber it.
	first.ResourceSpans().RemoveIf(func(ptrace.ResourceSpans) bool { return true })
	if err := c.ConsumeTraces(ctx, testtraces.Span(1, 2, 1, "payments", "payment.charge")); err != nil {
		t.Fatal(err)
	}
	advance(90 * time.Millisecond)
	if sink.LogRecordCount() != 0 {
		t.Fatal("judged before its idle timeout")
	}
	advance(20 * time.Millisecond)
	<-sink.delivered
	rec := record(t, &sink.LogsSink)
	if rec.TraceID() != testtraces.TraceID(1) || rec.SpanID() != testtraces.SpanID(2) {
		t.Errorf("not linked to the trace: %v %v", rec.TraceID(), rec.SpanID())
	}
	if rec.SeverityNumber() != plog.SeverityNumberFatal || rec.EventName() != "betrace.violation" || rec.Body().Str() != "charge for ord_9 without reservation" {
		t.Errorf("record: %v %q %q", rec.SeverityNumber(), rec.EventName(), rec.Body().Str())
	}
	for k, want := range map[string]string{"betrace.rule.id": "payment-requires-inventory", "betrace.mode": "live", "betrace.context.order_id": "ord_9"} {
		if v, ok := rec.Attributes().Get(k); !ok || v.Str() != want {
			t.Errorf("%s = %q", k, v.Str())
		}
	}
	res := sink.AllLogs()[0].ResourceLogs().At(0).Resource()
	if v, _ := res.Attributes().Get("service.name"); v.Str() != "payments" {
		t.Errorf("resource is the trigger span's: %q", v.Str())
	}
	if err := c.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if sink.LogRecordCount() != 1 {
		t.Errorf("shutdown must not repeat a signal: %d", sink.LogRecordCount())
	}
}

func TestShutdownDeliversWhatIsHeld(t *testing.T) {
	sink := new(consumertest.LogsSink)
	c, _, err := newConnector(t, time.Hour, sink)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.ConsumeTraces(context.Background(), testtraces.Span(2, 1, 0, "payments", "payment.charge")); err != nil {
		t.Fatal(err)
	}
	if sink.LogRecordCount() != 0 {
		t.Fatal("judged before its timeout")
	}
	if err := c.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	record(t, sink)
	if got := c.runner.Counters(); got.SpansIn != 1 || got.TracesJudged != 1 || got.HeldSpans != 0 {
		t.Errorf("counters after shutdown: %+v", got)
	}
}

func TestARuleErrorFailsStartWithItsMessage(t *testing.T) {
	cfg := NewFactory().CreateDefaultConfig().(*Config)
	cfg.RulesInline = "rules:\n  - id: r\n    name: R\n    condition: when { a } always { b.where(x >) }\n"
	c, err := NewFactory().CreateTracesToLogs(context.Background(), connectortest.NewNopSettings(metadata.Type), cfg, new(consumertest.LogsSink))
	if err != nil {
		t.Fatal(err)
	}
	err = c.Start(context.Background(), componenttest.NewNopHost())
	if err == nil || !strings.Contains(err.Error(), "rules_inline:4:") {
		t.Fatalf("want the located rule error, got %v", err)
	}
	if err := c.Shutdown(context.Background()); err != nil {
		t.Errorf("shutdown after a failed start: %v", err)
	}
}

func TestTelemetryIsTheGeneratedOne(t *testing.T) {
	tt := componenttest.NewTelemetry()
	defer func() { _ = tt.Shutdown(context.Background()) }()
	cfg := NewFactory().CreateDefaultConfig().(*Config)
	cfg.RulesInline = testtraces.Rules
	sink := new(consumertest.LogsSink)
	c, err := NewFactory().CreateTracesToLogs(context.Background(), metadatatest.NewSettings(tt), cfg, sink)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := c.Start(ctx, componenttest.NewNopHost()); err != nil {
		t.Fatal(err)
	}
	if err := c.ConsumeTraces(ctx, testtraces.Span(1, 1, 0, "shop", "payment.charge")); err != nil {
		t.Fatal(err)
	}
	if err := c.ConsumeTraces(ctx, testtraces.Span(1, 2, 1, "shop", "payment.refund")); err != nil {
		t.Fatal(err)
	}
	if err := c.ConsumeTraces(ctx, testtraces.Span(2, 1, 0, "shop", "checkout")); err != nil {
		t.Fatal(err)
	}
	// Three spans of two traces, held (the idle timeout is 5 s): counted as they come in,
	// under the instance's component id.
	id := attribute.NewSet(attribute.String(engine.ComponentIDAttribute, "betrace"))
	metadatatest.AssertEqualConnectorBetraceSpansReceived(t, tt, []metricdata.DataPoint[int64]{{Value: 3, Attributes: id}}, metricdatatest.IgnoreTimestamp())
	metadatatest.AssertEqualConnectorBetraceHeldSpans(t, tt, []metricdata.DataPoint[int64]{{Value: 3, Attributes: id}}, metricdatatest.IgnoreTimestamp())
	metadatatest.AssertEqualConnectorBetraceHeldTraces(t, tt, []metricdata.DataPoint[int64]{{Value: 2, Attributes: id}}, metricdatatest.IgnoreTimestamp())
	metadatatest.AssertEqualConnectorBetraceSignalsWaiting(t, tt, []metricdata.DataPoint[int64]{{Value: 0, Attributes: id}}, metricdatatest.IgnoreTimestamp())
	metadatatest.AssertEqualConnectorBetraceSpansRefused(t, tt, []metricdata.DataPoint[int64]{{Value: 0, Attributes: id}}, metricdatatest.IgnoreTimestamp())
	metadatatest.AssertEqualConnectorBetraceTracesJudgedEarlyMemory(t, tt, []metricdata.DataPoint[int64]{{Value: 0, Attributes: id}}, metricdatatest.IgnoreTimestamp())
	held, err := tt.GetMetric("otelcol_connector_betrace_held_bytes")
	if err != nil {
		t.Fatal(err)
	}
	if pts := held.Data.(metricdata.Gauge[int64]).DataPoints; len(pts) != 1 || pts[0].Value < 3*64 || pts[0].Value > 1<<20 {
		t.Errorf("held bytes of three spans: %+v", pts)
	}
	if err := c.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := tt.GetMetric("otelcol_connector_betrace_spans_received"); err == nil {
		t.Error("shutdown unregisters the callbacks")
	}
}

func TestSignalsAreCountedByRuleID(t *testing.T) {
	tt := componenttest.NewTelemetry()
	defer func() { _ = tt.Shutdown(context.Background()) }()
	cfg := NewFactory().CreateDefaultConfig().(*Config)
	cfg.RulesInline = testtraces.Rules
	cfg.TraceIdleTimeout = 50 * time.Millisecond
	sink := new(consumertest.LogsSink)
	c, err := NewFactory().CreateTracesToLogs(context.Background(), metadatatest.NewSettings(tt), cfg, sink)
	if err != nil {
		t.Fatal(err)
	}
	clock, ctx := testtraces.FakeClock()
	if err := c.Start(ctx, componenttest.NewNopHost()); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Shutdown(ctx) }()
	testtraces.WaitForTheLoop(t, clock)
	if err := c.ConsumeTraces(ctx, testtraces.Span(1, 1, 0, "shop", "payment.charge")); err != nil {
		t.Fatal(err)
	}
	testtraces.Advance(t, clock, 60*time.Millisecond, engine.TickInterval(cfg.TraceIdleTimeout)) // judged and counted
	rule := attribute.NewSet(attribute.String(engine.ComponentIDAttribute, "betrace"), attribute.String("betrace.rule.id", "payment-requires-inventory"))
	metadatatest.AssertEqualConnectorBetraceSignals(t, tt, []metricdata.DataPoint[int64]{{Value: 1, Attributes: rule}}, metricdatatest.IgnoreTimestamp())
	metadatatest.AssertEqualConnectorBetraceTracesApplied(t, tt, []metricdata.DataPoint[int64]{{Value: 1, Attributes: rule}}, metricdatatest.IgnoreTimestamp())
	digest := fmt.Sprintf("%016x", c.(*tracesToLogs).runner.Counters().RulesDigest)
	metadatatest.AssertEqualConnectorBetraceRules(t, tt, []metricdata.DataPoint[int64]{{Value: 1, Attributes: attribute.NewSet(attribute.String(engine.ComponentIDAttribute, "betrace"), attribute.String("betrace.rules.digest", digest))}}, metricdatatest.IgnoreTimestamp())
}

// Two instances of the connector in one collector (betrace and betrace/b) share the
// collector's meter: each series carries its instance's component id, so the two report
// apart instead of one overwriting the other's gauges and per-rule counts.
func TestTwoInstancesReportApart(t *testing.T) {
	tt := componenttest.NewTelemetry()
	defer func() { _ = tt.Shutdown(context.Background()) }()
	sinks := map[string]*consumertest.LogsSink{}
	start := func(name string) (connectorTraces, func(time.Duration)) {
		cfg := NewFactory().CreateDefaultConfig().(*Config)
		cfg.RulesInline = testtraces.Rules
		cfg.TraceIdleTimeout = 50 * time.Millisecond
		set := metadatatest.NewSettings(tt)
		set.ID = component.NewIDWithName(metadata.Type, name)
		sinks[name] = new(consumertest.LogsSink)
		c, err := NewFactory().CreateTracesToLogs(context.Background(), set, cfg, sinks[name])
		if err != nil {
			t.Fatal(err)
		}
		clock, ctx := testtraces.FakeClock()
		if err := c.Start(ctx, componenttest.NewNopHost()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Shutdown(context.Background()) })
		testtraces.WaitForTheLoop(t, clock)
		return c, func(d time.Duration) { testtraces.Advance(t, clock, d, engine.TickInterval(cfg.TraceIdleTimeout)) }
	}
	a, advanceA := start("")
	b, advanceB := start("b")
	ctx := context.Background()
	consume := func(c connectorTraces, td ptrace.Traces) {
		t.Helper()
		if err := c.ConsumeTraces(ctx, td); err != nil {
			t.Fatal(err)
		}
	}
	// a: one trace that violates the rule; b: two traces, one that holds it and one it
	// does not apply to.
	consume(a, testtraces.Span(1, 1, 0, "shop", "payment.charge"))
	consume(b, testtraces.Span(2, 1, 0, "shop", "payment.charge"))
	consume(b, testtraces.Span(2, 2, 1, "shop", "inventory.reserve"))
	consume(b, testtraces.Span(3, 1, 0, "shop", "checkout"))
	idA := attribute.String(engine.ComponentIDAttribute, "betrace")
	idB := attribute.String(engine.ComponentIDAttribute, "betrace/b")
	points := func(na, nb int64) []metricdata.DataPoint[int64] {
		return []metricdata.DataPoint[int64]{{Value: na, Attributes: attribute.NewSet(idA)}, {Value: nb, Attributes: attribute.NewSet(idB)}}
	}
	opts := []metricdatatest.Option{metricdatatest.IgnoreTimestamp()}
	metadatatest.AssertEqualConnectorBetraceHeldTraces(t, tt, points(1, 2), opts...)
	metadatatest.AssertEqualConnectorBetraceHeldSpans(t, tt, points(1, 3), opts...)
	metadatatest.AssertEqualConnectorBetraceSpansReceived(t, tt, points(1, 3), opts...)
	advanceA(60 * time.Millisecond)
	advanceB(60 * time.Millisecond)
	metadatatest.AssertEqualConnectorBetraceTracesJudged(t, tt, points(1, 2), opts...)
	// a's violation is delivered by its own goroutine: once it is, nothing waits.
	deadline := time.Now().Add(10 * time.Second)
	for (sinks[""].LogRecordCount() < 1 || a.(*tracesToLogs).runner.Waiting() != 0) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	metadatatest.AssertEqualConnectorBetraceSignalsWaiting(t, tt, points(0, 0), opts...)
	rule := attribute.String("betrace.rule.id", "payment-requires-inventory")
	byRule := func(na, nb int64) []metricdata.DataPoint[int64] {
		return []metricdata.DataPoint[int64]{{Value: na, Attributes: attribute.NewSet(idA, rule)}, {Value: nb, Attributes: attribute.NewSet(idB, rule)}}
	}
	metadatatest.AssertEqualConnectorBetraceSignals(t, tt, byRule(1, 0), opts...)
	metadatatest.AssertEqualConnectorBetraceTracesApplied(t, tt, byRule(1, 1), opts...)
}

type connectorTraces interface {
	component.Component
	consumer.Traces
}

// blockingSink holds every delivery until released: a logs backend down behind an
// exporter that blocks.
type blockingSink struct {
	consumertest.LogsSink
	release chan struct{}
}

func (s *blockingSink) ConsumeLogs(ctx context.Context, ld plog.Logs) error {
	select {
	case <-s.release:
		return s.LogsSink.ConsumeLogs(ctx, ld)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// While violations pile up for a stalled logs pipeline, the connector refuses traces with
// a retryable error (its receivers answer "retry later"), and takes them again once the
// violations are delivered.
func TestAStalledLogsPipelinePushesBackOnTheTraces(t *testing.T) {
	sink := &blockingSink{release: make(chan struct{})}
	c, advance, err := newConnector(t, 50*time.Millisecond, sink)
	if err != nil {
		t.Fatal(err)
	}
	var refused error
	n := 0
	for ; n < 250 && refused == nil; n++ { // a trace a batch: three quarters of 256 batches
		refused = c.ConsumeTraces(context.Background(), testtraces.Span(byte(n), 1, 0, "shop", "payment.charge"))
		advance(60 * time.Millisecond)
	}
	if !errors.Is(refused, engine.ErrDataRefused) || consumererror.IsPermanent(refused) {
		t.Fatalf("after %d traces: %v", n, refused)
	}
	close(sink.release)
	deadline := time.Now().Add(10 * time.Second)
	for c.runner.Waiting() != 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if err := c.ConsumeTraces(context.Background(), testtraces.Span(255, 1, 0, "shop", "checkout")); err != nil {
		t.Errorf("taken again once delivered: %v", err)
	}
	if err := c.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := sink.LogRecordCount(); got != n-1 {
		t.Errorf("every violation judged is delivered: %d of %d", got, n-1)
	}
}
