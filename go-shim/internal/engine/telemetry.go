package engine

import (
	"context"
	"fmt"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// registerMetrics reports the engine's counters and the runner's own as the component's
// telemetry, read when the collector collects.
func (r *Runner) registerMetrics(m metric.Meter) (metric.Registration, error) {
	counter := func(name, unit, desc string) metric.Int64ObservableCounter {
		c, _ := m.Int64ObservableCounter(name, metric.WithDescription(desc), metric.WithUnit(unit))
		return c
	}
	gauge := func(name, unit, desc string) metric.Int64ObservableGauge {
		g, _ := m.Int64ObservableGauge(name, metric.WithDescription(desc), metric.WithUnit(unit))
		return g
	}
	spansIn := counter("otelcol_betrace_spans_received", "{span}", "Spans received by the BeTrace engine.")
	judged := counter("otelcol_betrace_traces_judged", "{trace}", "Traces judged (a trace judged again after a late span counts twice).")
	early := counter("otelcol_betrace_traces_judged_early", "{trace}", "Traces judged early to stay within max_traces / max_spans.")
	oversized := counter("otelcol_betrace_traces_oversized", "{trace}", "Traces that alone outgrew max_spans: judged early on the spans they had; their later spans are late and not judged.")
	late := counter("otelcol_betrace_late_spans", "{span}", "Spans that arrived for a trace already judged.")
	lateUnjudged := counter("otelcol_betrace_late_spans_unjudged", "{span}", "Late spans that arrived after their trace was released, so were not judged.")
	duplicates := counter("otelcol_betrace_duplicate_spans", "{span}", "Spans received again (same trace and span id), counted once.")
	invalid := counter("otelcol_betrace_invalid_spans", "{span}", "Spans skipped because they could not be read (an empty or malformed id, a bad value); the rest of their batch was judged.")
	own := counter("otelcol_betrace_own_spans", "{span}", "BeTrace's own violation spans that came back in (scope betrace), left alone.")
	signals := counter("otelcol_betrace_signals", "{signal}", "Violations found, by rule: the traces that violated it.")
	applied := counter("otelcol_betrace_traces_applied", "{trace}", "Traces each rule applied to (its when part held; every trace judged, for a rule without when), by rule. 1 - signals/applied is its compliance rate.")
	skipped := counter("otelcol_betrace_traces_skipped", "{trace}", "Traces a rule with incomplete: skip did not judge because they were not complete, by rule.")
	dropped := counter("otelcol_betrace_signals_dropped", "{signal}", "Violations dropped: not taken in time, the outbox full, or shutdown out of time.")
	deliveryFailed := counter("otelcol_betrace_signals_delivery_failed", "{signal}", "Violations the next consumer refused (an exporter that failed).")
	decodeErrors := counter("otelcol_betrace_decode_errors", "{batch}", "Batches the engine could not decode.")
	ruleChanges := counter("otelcol_betrace_rule_reloads", "{reload}", "Reloads that changed the rules (a rule added, removed or edited).")
	reloadFailures := counter("otelcol_betrace_rule_reload_failures", "{reload}", "Reloads refused for an error in the rule files (each distinct content once); the previous rules keep running.")
	rules := gauge("otelcol_betrace_rules", "{rule}", "Rules loaded, with the rule set's digest (equal on replicas running the same rules).")
	heldTraces := gauge("otelcol_betrace_held_traces", "{trace}", "Traces held, waiting to be judged or kept for late spans.")
	heldSpans := gauge("otelcol_betrace_held_spans", "{span}", "Spans held.")
	evalTime, _ := m.Float64ObservableCounter("otelcol_betrace_evaluation_time", metric.WithDescription("Time spent judging traces."), metric.WithUnit("s"))
	return m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		c := r.Counters()
		o.ObserveInt64(spansIn, int64(c.SpansIn))
		o.ObserveInt64(judged, int64(c.TracesJudged))
		o.ObserveInt64(early, int64(c.TracesJudgedEarly))
		o.ObserveInt64(oversized, int64(c.TracesOversized))
		o.ObserveInt64(late, int64(c.LateSpans))
		o.ObserveInt64(lateUnjudged, int64(c.LateSpansUnjudged))
		o.ObserveInt64(duplicates, int64(c.DuplicateSpans))
		o.ObserveInt64(invalid, int64(c.InvalidSpans))
		o.ObserveInt64(own, int64(c.OwnSpans))
		o.ObserveInt64(dropped, int64(c.SignalsDropped))
		o.ObserveInt64(deliveryFailed, int64(r.deliveryFailed.Load()))
		o.ObserveInt64(decodeErrors, int64(c.DecodeErrors))
		o.ObserveInt64(ruleChanges, int64(c.RuleChanges))
		o.ObserveInt64(reloadFailures, int64(r.reloadFailures.Load()))
		o.ObserveInt64(rules, int64(c.Rules), metric.WithAttributes(attribute.String("digest", fmt.Sprintf("%016x", c.RulesDigest))))
		o.ObserveInt64(heldTraces, int64(c.HeldTraces))
		o.ObserveInt64(heldSpans, int64(c.HeldSpans))
		o.ObserveFloat64(evalTime, float64(c.EvalNanos)/1e9)
		byRule, err := r.ruleCounts()
		if err != nil {
			return err
		}
		for rule, n := range byRule {
			attrs := metric.WithAttributes(attribute.String("rule", rule))
			o.ObserveInt64(applied, int64(n.Applied), attrs)
			if n.Violated > 0 {
				o.ObserveInt64(signals, int64(n.Violated), attrs)
			}
			if n.Skipped > 0 {
				o.ObserveInt64(skipped, int64(n.Skipped), attrs)
			}
		}
		return nil
	}, spansIn, judged, early, oversized, late, lateUnjudged, duplicates, invalid, own, signals, applied, skipped, dropped, deliveryFailed, decodeErrors, ruleChanges, reloadFailures, rules, heldTraces, heldSpans, evalTime)
}
