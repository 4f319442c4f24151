// Package betraceprocessor is the `betrace` processor: traces pass through unchanged, and
// with `emit_violation_spans: true` each invariant violation is added to its trace as a
// `betrace.violation` span, sent on down the pipeline.
package betraceprocessor

import (
	"context"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/processor"
	"go.opentelemetry.io/collector/processor/processorhelper"

	"github.com/betracehq/betrace/go-shim/internal/engine"
	"github.com/betracehq/betrace/go-shim/processor/betraceprocessor/internal/metadata"
)

// NewFactory returns the factory of the betrace processor.
func NewFactory() processor.Factory {
	return processor.NewFactory(metadata.Type, createDefaultConfig,
		processor.WithTraces(createTraces, metadata.TracesStability))
}

func createDefaultConfig() component.Config {
	return &Config{Config: engine.DefaultConfig()}
}

// createTraces builds the processor on processorhelper, as the collector's own processors
// are: it records the standard processor telemetry (items in and out, time spent) and
// handles context propagation; betrace adds its engine around it, one engine shared by
// the instances of one configuration (shared.go).
func createTraces(ctx context.Context, set processor.Settings, cfg component.Config, next consumer.Traces) (processor.Traces, error) {
	p := &betraceProcessor{set: set, next: next}
	p.shared = join(cfg.(*Config), p)
	return processorhelper.NewTraces(ctx, set, cfg, next, p.processTraces,
		processorhelper.WithStart(p.start),
		processorhelper.WithShutdown(p.shutdown),
		processorhelper.WithCapabilities(consumer.Capabilities{MutatesData: false}))
}
