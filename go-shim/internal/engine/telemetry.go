package engine

import (
	"context"
	"fmt"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Telemetry is where a component's generated telemetry (mdatagen, from its metadata.yaml)
// takes the engine's observations: one registration per instrument, and Shutdown to
// unregister them all. Both components declare the same instruments under their own
// names (otelcol_connector_betrace_…, otelcol_processor_betrace_…); documentation.md next
// to each metadata.yaml lists them.
type Telemetry struct {
	SpansReceived, TracesJudged, TracesJudgedEarly, TracesOversized  func(metric.Int64Callback) error
	LateSpans, LateSpansUnjudged, DuplicateSpans, InvalidSpans       func(metric.Int64Callback) error
	OwnSpans, Signals, TracesApplied, TracesSkipped                  func(metric.Int64Callback) error
	SignalsDropped, SignalsDeliveryFailed, DecodeErrors, RuleReloads func(metric.Int64Callback) error
	RuleReloadFailures, Rules, HeldTraces, HeldSpans                 func(metric.Int64Callback) error
	SignalsWaiting, HeldBytes, TracesJudgedEarlyMemory, SpansRefused func(metric.Int64Callback) error
	// The storage's (zero without `storage`).
	StorageBytes, StorageNotStored, StorageUnreadable, StorageFailures func(metric.Int64Callback) error
	EvaluationTime                                                     func(metric.Float64Callback) error
	Shutdown                                                           func()
}

// ruleAttribute, digestAttribute and ComponentIDAttribute are the attributes of
// metadata.yaml. Every series carries ComponentIDAttribute, the instance's component id
// (betrace, betrace/b), under the key the collector's own telemetry names a component by
// (otelcol.component.id: go.opentelemetry.io/collector/internal/telemetry.ComponentIDKey,
// which the service sets on each component's telemetry): without it, two instances of one
// kind would observe the same series and the last one would win.
const (
	ruleAttribute        = "betrace.rule.id"
	digestAttribute      = "betrace.rules.digest"
	ComponentIDAttribute = "otelcol.component.id"
)

// register hands every observation to the component's telemetry. A zero Telemetry (tests,
// benchmarks) registers nothing.
func (r *Runner) register(t Telemetry) error {
	if t.SpansReceived == nil {
		return nil
	}
	id := attribute.String(ComponentIDAttribute, r.id.String())
	only := metric.WithAttributeSet(attribute.NewSet(id))
	count := func(read func(c *counters) uint64) metric.Int64Callback {
		return func(_ context.Context, o metric.Int64Observer) error {
			c := r.counters()
			o.Observe(int64(read(&c)), only)
			return nil
		}
	}
	// Every rule loaded that applied to a trace has a value in each by-rule instrument, zeros
	// too, so that a dashboard's series exist before the first violation; a rule removed by
	// a reload is no longer observed, so its series end.
	byRule := func(read func(n ruleCounts) uint64) metric.Int64Callback {
		return func(_ context.Context, o metric.Int64Observer) error {
			counts, err := r.ruleCounts()
			if err != nil {
				return err
			}
			for rule, n := range counts {
				o.Observe(int64(read(n)), metric.WithAttributes(id, attribute.String(ruleAttribute, rule)))
			}
			return nil
		}
	}
	regs := []struct {
		register func(metric.Int64Callback) error
		cb       metric.Int64Callback
	}{
		{t.SpansReceived, count(func(c *counters) uint64 { return c.SpansIn })},
		{t.TracesJudged, count(func(c *counters) uint64 { return c.TracesJudged })},
		{t.TracesJudgedEarly, count(func(c *counters) uint64 { return c.TracesJudgedEarly })},
		{t.TracesOversized, count(func(c *counters) uint64 { return c.TracesOversized })},
		{t.LateSpans, count(func(c *counters) uint64 { return c.LateSpans })},
		{t.LateSpansUnjudged, count(func(c *counters) uint64 { return c.LateSpansUnjudged })},
		{t.DuplicateSpans, count(func(c *counters) uint64 { return c.DuplicateSpans })},
		{t.InvalidSpans, count(func(c *counters) uint64 { return c.InvalidSpans })},
		{t.OwnSpans, count(func(c *counters) uint64 { return c.OwnSpans })},
		{t.SignalsDropped, count(func(c *counters) uint64 { return c.SignalsDropped })},
		{t.SignalsDeliveryFailed, count(func(c *counters) uint64 { return c.deliveryFailed })},
		{t.DecodeErrors, count(func(c *counters) uint64 { return c.DecodeErrors })},
		{t.RuleReloads, count(func(c *counters) uint64 { return c.RuleChanges })},
		{t.RuleReloadFailures, count(func(c *counters) uint64 { return c.reloadFailures })},
		{t.HeldTraces, count(func(c *counters) uint64 { return c.HeldTraces })},
		{t.HeldSpans, count(func(c *counters) uint64 { return c.HeldSpans })},
		{t.SignalsWaiting, count(func(c *counters) uint64 { return c.waiting })},
		{t.HeldBytes, count(func(c *counters) uint64 { return c.HeldBytes })},
		{t.TracesJudgedEarlyMemory, count(func(c *counters) uint64 { return c.TracesJudgedEarlyMemory })},
		{t.SpansRefused, count(func(c *counters) uint64 { return c.refused })},
		{t.StorageBytes, count(func(c *counters) uint64 { return c.storage.bytes })},
		{t.StorageNotStored, count(func(c *counters) uint64 { return c.storage.notStored })},
		{t.StorageUnreadable, count(func(c *counters) uint64 { return c.storage.unreadable })},
		{t.StorageFailures, count(func(c *counters) uint64 { return c.storage.failures })},
		{t.Rules, func(_ context.Context, o metric.Int64Observer) error {
			c := r.counters()
			o.Observe(int64(c.Rules), metric.WithAttributes(id, attribute.String(digestAttribute, fmt.Sprintf("%016x", c.RulesDigest))))
			return nil
		}},
		{t.Signals, byRule(func(n ruleCounts) uint64 { return n.Violated })},
		{t.TracesApplied, byRule(func(n ruleCounts) uint64 { return n.Applied })},
		{t.TracesSkipped, byRule(func(n ruleCounts) uint64 { return n.Skipped })},
	}
	for _, reg := range regs {
		if reg.register == nil {
			continue
		}
		if err := reg.register(reg.cb); err != nil {
			return err
		}
	}
	return t.EvaluationTime(func(_ context.Context, o metric.Float64Observer) error {
		c := r.counters()
		o.Observe(float64(c.EvalNanos)/1e9, metric.WithAttributeSet(attribute.NewSet(id)))
		return nil
	})
}
