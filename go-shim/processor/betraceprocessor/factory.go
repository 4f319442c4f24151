// Package betraceprocessor is the `betrace` processor: traces pass through unchanged, and
// with `emit_violation_spans: true` each invariant violation is added to its trace as a
// `betrace.violation` span, sent on down the pipeline.
package betraceprocessor

import (
	"context"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/processor"

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

func createTraces(_ context.Context, set processor.Settings, cfg component.Config, next consumer.Traces) (processor.Traces, error) {
	return &betraceProcessor{cfg: cfg.(*Config), set: set, next: next}, nil
}
