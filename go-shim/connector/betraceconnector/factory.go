// Package betraceconnector is the `betrace` connector: traces in, one OTLP log record out
// per invariant violation (a rule firing on a trace), in the logs pipeline it feeds.
package betraceconnector

import (
	"context"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/connector"
	"go.opentelemetry.io/collector/consumer"

	"github.com/betracehq/betrace/go-shim/connector/betraceconnector/internal/metadata"
	"github.com/betracehq/betrace/go-shim/internal/engine"
)

// NewFactory returns the factory of the betrace connector.
func NewFactory() connector.Factory {
	return connector.NewFactory(metadata.Type, createDefaultConfig,
		connector.WithTracesToLogs(createTracesToLogs, metadata.TracesToLogsStability))
}

func createDefaultConfig() component.Config {
	return &Config{Config: engine.DefaultConfig()}
}

func createTracesToLogs(_ context.Context, set connector.Settings, cfg component.Config, next consumer.Logs) (connector.Traces, error) {
	return &tracesToLogs{cfg: cfg.(*Config), set: set, next: next}, nil
}
