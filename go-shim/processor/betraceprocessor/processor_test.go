package betraceprocessor

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/confmap/confmaptest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/processor"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/metric/metricdata/metricdatatest"

	"github.com/betracehq/betrace/go-shim/internal/testtraces"
	"github.com/betracehq/betrace/go-shim/processor/betraceprocessor/internal/metadata"
	"github.com/betracehq/betrace/go-shim/processor/betraceprocessor/internal/metadatatest"
)

// newProcessor starts the processor as a collector builds it (on processorhelper), with
// its telemetry readable.
func newProcessor(t *testing.T, emit bool, sink *consumertest.TracesSink) (processor.Traces, *componenttest.Telemetry) {
	t.Helper()
	cfg := NewFactory().CreateDefaultConfig().(*Config)
	cfg.RulesInline = testtraces.Rules
	cfg.TraceIdleTimeout = time.Hour
	cfg.MaxTraceAge = time.Hour
	cfg.EmitViolationSpans = emit
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
	metadatatest.AssertEqualProcessorBetraceHeldTraces(t, tt, []metricdata.DataPoint[int64]{{Value: 2}}, metricdatatest.IgnoreTimestamp())
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(sink.AllTraces()) != 2 {
		t.Fatalf("want only the original batches, got %d", len(sink.AllTraces()))
	}
}
