package betraceconnector

import (
	"go.opentelemetry.io/collector/component"

	"github.com/betracehq/betrace/go-shim/connector/betraceconnector/internal/metadata"
	"github.com/betracehq/betrace/go-shim/internal/engine"
)

// telemetry is the connector's generated telemetry (metadata.yaml, documentation.md), as
// the engine runner registers its observations with it.
func telemetry(set component.TelemetrySettings) (engine.Telemetry, error) {
	tb, err := metadata.NewTelemetryBuilder(set)
	if err != nil {
		return engine.Telemetry{}, err
	}
	return engine.Telemetry{
		SpansReceived:           tb.RegisterConnectorBetraceSpansReceivedCallback,
		TracesJudged:            tb.RegisterConnectorBetraceTracesJudgedCallback,
		TracesJudgedEarly:       tb.RegisterConnectorBetraceTracesJudgedEarlyCallback,
		TracesOversized:         tb.RegisterConnectorBetraceTracesOversizedCallback,
		LateSpans:               tb.RegisterConnectorBetraceLateSpansCallback,
		LateSpansUnjudged:       tb.RegisterConnectorBetraceLateSpansUnjudgedCallback,
		DuplicateSpans:          tb.RegisterConnectorBetraceDuplicateSpansCallback,
		InvalidSpans:            tb.RegisterConnectorBetraceInvalidSpansCallback,
		OwnSpans:                tb.RegisterConnectorBetraceOwnSpansCallback,
		Signals:                 tb.RegisterConnectorBetraceSignalsCallback,
		TracesApplied:           tb.RegisterConnectorBetraceTracesAppliedCallback,
		TracesSkipped:           tb.RegisterConnectorBetraceTracesSkippedCallback,
		SignalsDropped:          tb.RegisterConnectorBetraceSignalsDroppedCallback,
		SignalsDeliveryFailed:   tb.RegisterConnectorBetraceSignalsDeliveryFailedCallback,
		DecodeErrors:            tb.RegisterConnectorBetraceDecodeErrorsCallback,
		RuleReloads:             tb.RegisterConnectorBetraceRuleReloadsCallback,
		RuleReloadFailures:      tb.RegisterConnectorBetraceRuleReloadFailuresCallback,
		Rules:                   tb.RegisterConnectorBetraceRulesCallback,
		HeldTraces:              tb.RegisterConnectorBetraceHeldTracesCallback,
		HeldSpans:               tb.RegisterConnectorBetraceHeldSpansCallback,
		SignalsWaiting:          tb.RegisterConnectorBetraceSignalsWaitingCallback,
		HeldBytes:               tb.RegisterConnectorBetraceHeldBytesCallback,
		TracesJudgedEarlyMemory: tb.RegisterConnectorBetraceTracesJudgedEarlyMemoryCallback,
		SpansRefused:            tb.RegisterConnectorBetraceSpansRefusedCallback,
		StorageBytes:            tb.RegisterConnectorBetraceStorageBytesCallback,
		StorageNotStored:        tb.RegisterConnectorBetraceStorageBatchesNotStoredCallback,
		StorageUnreadable:       tb.RegisterConnectorBetraceStorageRecordsUnreadableCallback,
		StorageFailures:         tb.RegisterConnectorBetraceStorageFailuresCallback,
		EvaluationTime:          tb.RegisterConnectorBetraceEvaluationTimeCallback,
		Shutdown:                tb.Shutdown,
	}, nil
}
