package betraceconnector

import (
	"context"
	"errors"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componentstatus"
	"go.opentelemetry.io/collector/connector"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.uber.org/zap"

	"github.com/betracehq/betrace/go-shim/internal/betrace"
	"github.com/betracehq/betrace/go-shim/internal/engine"
)

type tracesToLogs struct {
	cfg    *Config
	set    connector.Settings
	next   consumer.Logs
	runner *engine.Runner
}

// Start loads the rules; a rule error fails the collector's start with its message.
// The connector is one instance however many pipelines it joins (the collector fans
// their traces into it), so its engine is its own.
func (c *tracesToLogs) Start(ctx context.Context, host component.Host) error {
	tel, err := telemetry(c.set.TelemetrySettings)
	if err != nil {
		return err
	}
	r, err := engine.Start(ctx, c.cfg.Config, engine.Settings{
		ID:          c.set.ID,
		Telemetry:   c.set.TelemetrySettings,
		Instruments: tel,
		Report:      func(ev *componentstatus.Event) { componentstatus.ReportStatus(host, ev) },
		Outputs:     betrace.Options{Logs: true},
		Deliver:     c.deliver,
		Host:        host,
		Kind:        component.KindConnector,
	})
	if err != nil {
		return err
	}
	c.runner = r
	return nil
}

func (c *tracesToLogs) deliver(ctx context.Context, o engine.Outgoing) error {
	ld, err := (&plog.ProtoUnmarshaler{}).UnmarshalLogs(o.Logs)
	if err != nil {
		return err
	}
	return c.next.ConsumeLogs(ctx, ld)
}

// Shutdown judges every held trace and delivers its violations before returning.
func (c *tracesToLogs) Shutdown(ctx context.Context) error {
	if c.runner == nil {
		return nil
	}
	return c.runner.Shutdown(ctx)
}

func (c *tracesToLogs) Capabilities() consumer.Capabilities {
	return consumer.Capabilities{MutatesData: false}
}

// ConsumeTraces hands the batch to the engine; it is marshalled before this returns.
func (c *tracesToLogs) ConsumeTraces(_ context.Context, td ptrace.Traces) error {
	// While the connector pushes back, the batch is refused with a retryable error, as
	// memory_limiter refuses: the receiver answers "retry later". Any other batch the
	// engine cannot take is logged and counted, not failed: the traces pipeline must not
	// retry or drop spans because of BeTrace.
	err := c.runner.Ingest(0, td)
	if errors.Is(err, engine.ErrDataRefused) {
		return err
	}
	if err != nil {
		c.set.Logger.Warn("betrace: batch not judged", zap.Error(err))
	}
	return nil
}
