package betraceprocessor

import (
	"go.opentelemetry.io/collector/component"

	"github.com/betracehq/betrace/go-shim/internal/engine"
	"github.com/betracehq/betrace/go-shim/processor/betraceprocessor/internal/metadata"
)

// telemetry is the processor's generated telemetry (metadata.yaml, documentation.md), as
// the engine runner registers its observations with it.
func telemetry(set component.TelemetrySettings) (engine.Telemetry, error) {
	tb, err := metadata.NewTelemetryBuilder(set)
	if err != nil {
		return engine.Telemetry{}, err
	}
	return engine.Telemetry{
		SpansReceived:           tb.RegisterProcessorBetraceSpansReceivedCallback,
		TracesJudged:            tb.RegisterProcessorBetraceTracesJudgedCallback,
		TracesJudgedEarly:       tb.RegisterProcessorBetraceTracesJudgedEarlyCallback,
		TracesOversized:         tb.RegisterProcessorBetraceTracesOversizedCallback,
		LateSpans:               tb.RegisterProcessorBetraceLateSpansCallback,
		LateSpansUnjudged:       tb.RegisterProcessorBetraceLateSpansUnjudgedCallback,
		DuplicateSpans:          tb.RegisterProcessorBetraceDuplicateSpansCallback,
		InvalidSpans:            tb.RegisterProcessorBetraceInvalidSpansCallback,
		OwnSpans:                tb.RegisterProcessorBetraceOwnSpansCallback,
		Signals:                 tb.RegisterProcessorBetraceSignalsCallback,
		TracesApplied:           tb.RegisterProcessorBetraceTracesAppliedCallback,
		TracesSkipped:           tb.RegisterProcessorBetraceTracesSkippedCallback,
		SignalsDropped:          tb.RegisterProcessorBetraceSignalsDroppedCallback,
		SignalsDeliveryFailed:   tb.RegisterProcessorBetraceSignalsDeliveryFailedCallback,
		DecodeErrors:            tb.RegisterProcessorBetraceDecodeErrorsCallback,
		RuleReloads:             tb.RegisterProcessorBetraceRuleReloadsCallback,
		RuleReloadFailures:      tb.RegisterProcessorBetraceRuleReloadFailuresCallback,
		Rules:                   tb.RegisterProcessorBetraceRulesCallback,
		HeldTraces:              tb.RegisterProcessorBetraceHeldTracesCallback,
		HeldSpans:               tb.RegisterProcessorBetraceHeldSpansCallback,
		SignalsWaiting:          tb.RegisterProcessorBetraceSignalsWaitingCallback,
		HeldBytes:               tb.RegisterProcessorBetraceHeldBytesCallback,
		TracesJudgedEarlyMemory: tb.RegisterProcessorBetraceTracesJudgedEarlyMemoryCallback,
		SpansRefused:            tb.RegisterProcessorBetraceSpansRefusedCallback,
		StorageBytes:            tb.RegisterProcessorBetraceStorageBytesCallback,
		StorageNotStored:        tb.RegisterProcessorBetraceStorageBatchesNotStoredCallback,
		StorageUnreadable:       tb.RegisterProcessorBetraceStorageRecordsUnreadableCallback,
		StorageFailures:         tb.RegisterProcessorBetraceStorageFailuresCallback,
		EvaluationTime:          tb.RegisterProcessorBetraceEvaluationTimeCallback,
		Shutdown:                tb.Shutdown,
	}, nil
}
