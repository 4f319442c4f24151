package betraceprocessor

import (
	"context"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/processor"
	"go.uber.org/zap"
)

// betraceProcessor is the instance on one pipeline: a feed of its configuration's shared
// engine.
type betraceProcessor struct {
	set    processor.Settings
	next   consumer.Traces // where violation spans go, beside the traces processorhelper passes on
	feed   int
	shared *sharedEngine
}

// start loads the rules (with the first instance); a rule error fails the collector's
// start with its message.
func (p *betraceProcessor) start(ctx context.Context, host component.Host) error {
	return p.shared.start(ctx, p, host)
}

// shutdown judges every held trace and delivers its violation spans before returning.
func (p *betraceProcessor) shutdown(ctx context.Context) error {
	return p.shared.shutdown(ctx)
}

// processTraces hands the batch to the engine (marshalled before it goes on) and passes it
// on unchanged.
func (p *betraceProcessor) processTraces(_ context.Context, td ptrace.Traces) (ptrace.Traces, error) {
	r := p.shared.runner.Load()
	if r == nil {
		p.set.Logger.Warn("betrace: batch not judged: the processor is not started")
		return td, nil
	}
	if err := r.Ingest(p.feed, td); err != nil {
		p.set.Logger.Warn("betrace: batch not judged", zap.Error(err))
	}
	return td, nil
}
