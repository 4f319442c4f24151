package betraceprocessor

import (
	"context"
	"errors"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/processor"
	"go.uber.org/zap"

	"github.com/betracehq/betrace/go-shim/internal/engine"
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
// on unchanged; while the processor pushes back, it refuses the batch with a retryable
// error instead, as memory_limiter does, and it goes no further.
func (p *betraceProcessor) processTraces(_ context.Context, td ptrace.Traces) (ptrace.Traces, error) {
	r := p.shared.runner.Load()
	if r == nil {
		p.set.Logger.Warn("betrace: batch not judged: the processor is not started")
		return td, nil
	}
	err := r.Ingest(p.feed, td)
	if errors.Is(err, engine.ErrDataRefused) {
		return td, err
	}
	if err != nil {
		p.set.Logger.Warn("betrace: batch not judged", zap.Error(err))
	}
	return td, nil
}
