package betraceprocessor

import (
	"context"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/processor"
	"go.uber.org/zap"

	"github.com/betracehq/betrace/go-shim/internal/betrace"
	"github.com/betracehq/betrace/go-shim/internal/engine"
)

type betraceProcessor struct {
	cfg    *Config
	set    processor.Settings
	next   consumer.Traces // where violation spans go, beside the traces processorhelper passes on
	runner *engine.Runner
}

// start loads the rules; a rule error fails the collector's start with its message.
func (p *betraceProcessor) start(_ context.Context, host component.Host) error {
	tel, err := telemetry(p.set.TelemetrySettings)
	if err != nil {
		return err
	}
	// Violation spans are built only when they are sent on; signals are counted either way.
	r, err := engine.Start(p.cfg.Config, p.set.TelemetrySettings, host, tel, betrace.Options{Spans: p.cfg.EmitViolationSpans}, p.deliver)
	if err != nil {
		return err
	}
	p.runner = r
	return nil
}

func (p *betraceProcessor) deliver(ctx context.Context, _, spans []byte) error {
	if len(spans) == 0 {
		return nil
	}
	td, err := (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces(spans)
	if err != nil {
		return err
	}
	return p.next.ConsumeTraces(ctx, td)
}

// shutdown judges every held trace and delivers its violation spans before returning.
func (p *betraceProcessor) shutdown(ctx context.Context) error {
	if p.runner == nil {
		return nil
	}
	return p.runner.Shutdown(ctx)
}

// processTraces hands the batch to the engine (marshalled before it goes on) and passes it
// on unchanged.
func (p *betraceProcessor) processTraces(_ context.Context, td ptrace.Traces) (ptrace.Traces, error) {
	if err := p.runner.Ingest(td); err != nil {
		p.set.Logger.Warn("betrace: batch not judged", zap.Error(err))
	}
	return td, nil
}
