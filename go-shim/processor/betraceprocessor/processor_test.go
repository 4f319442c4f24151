package betraceprocessor

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componentstatus"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/confmap/confmaptest"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/processor"
	"go.opentelemetry.io/collector/processor/processortest"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/metric/metricdata/metricdatatest"

	"github.com/betracehq/betrace/go-shim/internal/engine"
	"github.com/betracehq/betrace/go-shim/internal/testtraces"
	"github.com/betracehq/betrace/go-shim/processor/betraceprocessor/internal/metadata"
	"github.com/betracehq/betrace/go-shim/processor/betraceprocessor/internal/metadatatest"
)

// holdingConfig is the test rules with traces held until shutdown.
func holdingConfig(emitViolationSpans bool) *Config {
	cfg := NewFactory().CreateDefaultConfig().(*Config)
	cfg.RulesInline = testtraces.Rules
	cfg.TraceIdleTimeout, cfg.MaxTraceAge = time.Hour, time.Hour
	cfg.EmitViolationSpans = emitViolationSpans
	return cfg
}

// newProcessor starts the processor as a collector builds it (on processorhelper), with
// its telemetry readable.
func newProcessor(t *testing.T, emit bool, sink *consumertest.TracesSink) (processor.Traces, *componenttest.Telemetry) {
	t.Helper()
	cfg := holdingConfig(emit)
	tt := componenttest.NewTelemetry()
	t.Cleanup(func() { _ = tt.Shutdown(context.Background()) })
	p, err := NewFactory().CreateTraces(context.Background(), metadatatest.NewSettings(tt), cfg, sink)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(context.Background(), componenttest.NewNopHost()); err != nil {
		t.Fatal(err)
	}
	return p, tt
}

func marshal(t *testing.T, td ptrace.Traces) string {
	t.Helper()
	b, err := (&ptrace.JSONMarshaler{}).MarshalTraces(td)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestConfig(t *testing.T) {
	cm, err := confmaptest.LoadConf(filepath.Join("testdata", "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for name, emit := range map[string]bool{"": true, "quiet": false} {
		cfg := NewFactory().CreateDefaultConfig().(*Config)
		sub, _ := cm.Sub(component.NewIDWithName(metadata.Type, name).String())
		if err := sub.Unmarshal(cfg); err != nil || cfg.Validate() != nil {
			t.Fatalf("%q: %v %v", name, err, cfg.Validate())
		}
		if cfg.EmitViolationSpans != emit {
			t.Errorf("%q: emit_violation_spans = %v", name, cfg.EmitViolationSpans)
		}
	}
}

func TestTracesPassThroughUnchangedAndViolationsFollowAsSpans(t *testing.T) {
	sink := new(consumertest.TracesSink)
	p, tt := newProcessor(t, true, sink)
	ctx := context.Background()
	in := testtraces.Span(3, 7, 0, "payments", "payment.charge")
	want := marshal(t, in)
	if err := p.ConsumeTraces(ctx, in); err != nil {
		t.Fatal(err)
	}
	if len(sink.AllTraces()) != 1 || marshal(t, sink.AllTraces()[0]) != want {
		t.Fatal("the batch must go on unchanged")
	}
	// processorhelper's own telemetry, as every collector processor records it.
	if _, err := tt.GetMetric("otelcol_processor_incoming_items"); err != nil {
		t.Errorf("processorhelper records items in: %v", err)
	}
	if err := p.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	all := sink.AllTraces()
	if len(all) != 2 || all[1].SpanCount() != 1 {
		t.Fatalf("want the violation span after shutdown, got %d batches", len(all))
	}
	v := all[1].ResourceSpans().At(0).ScopeSpans().At(0).Spans().At(0)
	if v.Name() != "betrace.violation" || v.TraceID() != testtraces.TraceID(3) || v.ParentSpanID() != testtraces.SpanID(7) {
		t.Errorf("violation span: %q %v %v", v.Name(), v.TraceID(), v.ParentSpanID())
	}
	if v.Status().Code() != ptrace.StatusCodeError || v.Status().Message() != "charge for ord_9 without reservation" {
		t.Errorf("status %v %q", v.Status().Code(), v.Status().Message())
	}
	if id, _ := v.Attributes().Get("betrace.rule.id"); id.Str() != "payment-requires-inventory" {
		t.Errorf("rule id %q", id.Str())
	}
}

func TestWithoutEmitOnlyTheOriginalTracesGoOn(t *testing.T) {
	sink := new(consumertest.TracesSink)
	p, tt := newProcessor(t, false, sink)
	if err := p.ConsumeTraces(context.Background(), testtraces.Span(4, 1, 0, "payments", "payment.charge")); err != nil {
		t.Fatal(err)
	}
	// Two traces held: the telemetry says so before shutdown judges them.
	if err := p.ConsumeTraces(context.Background(), testtraces.Span(5, 1, 0, "payments", "checkout")); err != nil {
		t.Fatal(err)
	}
	id := attribute.NewSet(attribute.String(engine.ComponentIDAttribute, "betrace"))
	metadatatest.AssertEqualProcessorBetraceHeldTraces(t, tt, []metricdata.DataPoint[int64]{{Value: 2, Attributes: id}}, metricdatatest.IgnoreTimestamp())
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(sink.AllTraces()) != 2 {
		t.Fatalf("want only the original batches, got %d", len(sink.AllTraces()))
	}
}

// violationTraces is the first byte of the trace id of each violation span that reached
// sink, sorted.
func violationTraces(sink *consumertest.TracesSink) []byte {
	var got []byte
	for _, td := range sink.AllTraces() {
		for _, rs := range td.ResourceSpans().All() {
			for _, ss := range rs.ScopeSpans().All() {
				for _, sp := range ss.Spans().All() {
					if sp.Name() == "betrace.violation" {
						id := sp.TraceID()
						got = append(got, id[0])
					}
				}
			}
		}
	}
	slices.Sort(got)
	return got
}

// The collector creates an instance for each pipeline that lists the processor, all with
// one configuration: they share one engine, so a trace whose spans come through two
// pipelines is judged once, whole, and its violation span goes down each pipeline that
// carried part of it.
func TestInstancesOfOneConfigurationShareOneEngine(t *testing.T) {
	cfg := holdingConfig(true)
	ctx := context.Background()
	set := processortest.NewNopSettings(metadata.Type)
	sinkA, sinkB := new(consumertest.TracesSink), new(consumertest.TracesSink)
	a, err := NewFactory().CreateTraces(ctx, set, cfg, sinkA)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewFactory().CreateTraces(ctx, set, cfg, sinkB)
	if err != nil {
		t.Fatal(err)
	}
	// Another configuration of the processor has an engine of its own.
	other := holdingConfig(true)
	sinkC := new(consumertest.TracesSink)
	c, err := NewFactory().CreateTraces(ctx, set, other, sinkC)
	if err != nil {
		t.Fatal(err)
	}
	hostA, hostB := testtraces.NewStatusHost(), testtraces.NewStatusHost()
	for p, host := range map[processor.Traces]component.Host{a: hostA, b: hostB, c: testtraces.NewStatusHost()} {
		if err := p.Start(ctx, host); err != nil {
			t.Fatal(err)
		}
	}
	send := func(p processor.Traces, trace byte, span byte, name string) {
		t.Helper()
		if err := p.ConsumeTraces(ctx, testtraces.Span(trace, span, 0, "shop", name)); err != nil {
			t.Fatal(err)
		}
	}
	send(a, 1, 1, "payment.charge") // trace 1 in pipeline A
	send(b, 2, 1, "payment.charge") // trace 2 in pipeline B
	send(a, 4, 1, "payment.charge") // trace 4 in both
	send(b, 4, 2, "checkout")
	send(a, 3, 1, "payment.charge") // trace 3's reservation comes through B: no violation
	send(b, 3, 2, "inventory.reserve")
	send(c, 3, 3, "payment.charge")         // the other engine sees only this span of trace 3
	if err := a.Shutdown(ctx); err != nil { // the first shutdown judges and delivers all
		t.Fatal(err)
	}
	if got := violationTraces(sinkA); !slices.Equal(got, []byte{1, 4}) {
		t.Errorf("pipeline A's violation spans: traces %v, want [1 4]", got)
	}
	if got := violationTraces(sinkB); !slices.Equal(got, []byte{2, 4}) {
		t.Errorf("pipeline B's violation spans: traces %v, want [2 4]", got)
	}
	if err := b.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if got := violationTraces(sinkC); !slices.Equal(got, []byte{3}) {
		t.Errorf("the other configuration's violation spans: traces %v, want [3]", got)
	}
	// Both instances of the shared engine heard its status (none went wrong).
	if len(hostA.Seen()) != 0 || len(hostB.Seen()) != 0 {
		t.Errorf("statuses: %v %v", hostA.Seen(), hostB.Seen())
	}
}

// A delivery failure of the shared engine is reported to every instance's host.
func TestASharedEnginesStatusReachesEveryInstance(t *testing.T) {
	cfg := holdingConfig(true)
	ctx := context.Background()
	set := processortest.NewNopSettings(metadata.Type)
	a, err := NewFactory().CreateTraces(ctx, set, cfg, consumertest.NewErr(errors.New("backend down")))
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewFactory().CreateTraces(ctx, set, cfg, new(consumertest.TracesSink))
	if err != nil {
		t.Fatal(err)
	}
	hostA, hostB := testtraces.NewStatusHost(), testtraces.NewStatusHost()
	if err := a.Start(ctx, hostA); err != nil {
		t.Fatal(err)
	}
	if err := b.Start(ctx, hostB); err != nil {
		t.Fatal(err)
	}
	_ = a.ConsumeTraces(ctx, testtraces.Span(1, 1, 0, "shop", "payment.charge")) // next refuses it
	if err := b.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	_ = a.Shutdown(ctx)
	want := []componentstatus.Status{componentstatus.StatusRecoverableError}
	if !slices.Equal(hostA.Seen(), want) || !slices.Equal(hostB.Seen(), want) {
		t.Errorf("statuses: A %v, B %v, want %v each", hostA.Seen(), hostB.Seen(), want)
	}
}

// stallingSink takes the traces passing through, and holds violation spans until released:
// the pipeline's exporter stalls on what BeTrace adds.
type stallingSink struct {
	consumertest.TracesSink
	release chan struct{}
}

func (s *stallingSink) ConsumeTraces(ctx context.Context, td ptrace.Traces) error {
	if td.ResourceSpans().Len() > 0 && td.ResourceSpans().At(0).ScopeSpans().At(0).Scope().Name() == "betrace" {
		select {
		case <-s.release:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return s.TracesSink.ConsumeTraces(ctx, td)
}

// While violation spans pile up undelivered, the processor refuses batches with a
// retryable error, as memory_limiter does — the refused batch goes no further — and takes
// them again once the violation spans are delivered.
func TestStalledViolationSpansPushBack(t *testing.T) {
	cfg := holdingConfig(true)
	cfg.TraceIdleTimeout, cfg.MaxTraceAge = 50*time.Millisecond, time.Minute
	sink := &stallingSink{release: make(chan struct{})}
	p, err := NewFactory().CreateTraces(context.Background(), processortest.NewNopSettings(metadata.Type), cfg, sink)
	if err != nil {
		t.Fatal(err)
	}
	clock, ctx := testtraces.FakeClock()
	if err := p.Start(ctx, componenttest.NewNopHost()); err != nil {
		t.Fatal(err)
	}
	testtraces.WaitForTheLoop(t, clock)
	var refused error
	n := 0
	for ; n < 250 && refused == nil; n++ {
		refused = p.ConsumeTraces(context.Background(), testtraces.Span(byte(n), 1, 0, "shop", "payment.charge"))
		testtraces.Advance(t, clock, 60*time.Millisecond, engine.TickInterval(cfg.TraceIdleTimeout))
	}
	if !errors.Is(refused, engine.ErrDataRefused) || consumererror.IsPermanent(refused) {
		t.Fatalf("after %d batches: %v", n, refused)
	}
	if got := sink.SpanCount(); got != n-1 {
		t.Errorf("the refused batch goes no further: %d spans passed for %d taken", got, n-1)
	}
	close(sink.release)
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := len(violationTraces(&sink.TracesSink)); got != n-1 {
		t.Errorf("every violation span of a batch taken is delivered: %d of %d", got, n-1)
	}
}
