package engine

import (
	"context"
	"fmt"
	"sync"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.uber.org/zap"

	"github.com/betracehq/betrace/go-shim/internal/betrace"
	"github.com/betracehq/betrace/go-shim/internal/metadata"
)

// Deliver sends what the engine produced to the next consumer: signals as OTLP
// ExportLogsServiceRequest bytes, violation spans as ExportTraceServiceRequest bytes
// (either may be nil).
type Deliver func(ctx context.Context, logs, spans []byte) error

// Runner is a started engine with its clock.
type Runner struct {
	cfg        Config
	logger     *zap.Logger
	eng        *betrace.Engine
	deliver    Deliver
	stop, done chan struct{}
	flushMu    sync.Mutex
	reg        metric.Registration
	marshaler  ptrace.ProtoMarshaler

	// closedMu guards the engine's lifetime: calls hold it for reading, Shutdown frees the
	// engine holding it for writing, so no call can reach a freed engine.
	closedMu sync.RWMutex
	closed   bool
	final    betrace.Counters // the counters at shutdown, once the engine is freed
}

// errShutDown is returned by calls that arrive after Shutdown.
var errShutDown = &betrace.Error{Code: betrace.ErrShutDown, Message: "betrace: the component is shut down"}

// Start loads the rules (an error names every rule problem, located) and starts the clock.
func Start(cfg Config, set component.TelemetrySettings, outputs betrace.Options, deliver Deliver) (*Runner, error) {
	sources, err := cfg.Sources()
	if err != nil {
		return nil, err
	}
	opts := outputs
	opts.TraceIdleTimeout, opts.MaxTraceAge, opts.MaxTraces, opts.MaxSpans = cfg.TraceIdleTimeout, cfg.MaxTraceAge, cfg.MaxTraces, cfg.MaxSpans
	eng, err := betrace.New(sources, opts)
	if err != nil {
		return nil, fmt.Errorf("betrace: the rules do not load:\n%w", err)
	}
	r := &Runner{cfg: cfg, logger: set.Logger, eng: eng, deliver: deliver, stop: make(chan struct{}), done: make(chan struct{})}
	if r.reg, err = r.registerMetrics(set.MeterProvider.Meter(metadata.ScopeName)); err != nil {
		eng.Close()
		return nil, err
	}
	r.forwardLogEvents()
	go r.loop(tickInterval(cfg.TraceIdleTimeout))
	return r, nil
}

// tickInterval lets a trace be judged within a fifth of its idle timeout, at most a second.
func tickInterval(idle time.Duration) time.Duration {
	return min(max(idle/5, 10*time.Millisecond), time.Second)
}

// Ingest hands a batch to the engine. The batch is marshalled before Ingest returns, so the
// caller may reuse it.
func (r *Runner) Ingest(td ptrace.Traces) error {
	b, err := r.marshaler.MarshalTraces(td)
	if err != nil {
		return err
	}
	r.closedMu.RLock()
	defer r.closedMu.RUnlock()
	if r.closed {
		return errShutDown
	}
	return r.eng.Ingest(b, time.Now())
}

// Counters reads the engine's counters (after Shutdown, the last ones it had).
func (r *Runner) Counters() betrace.Counters {
	r.closedMu.RLock()
	defer r.closedMu.RUnlock()
	if r.closed {
		return r.final
	}
	return r.eng.Counters()
}

func (r *Runner) loop(every time.Duration) {
	defer close(r.done)
	ticker := time.NewTicker(every)
	defer ticker.Stop()
	lastReload := time.Now()
	for {
		select {
		case <-r.stop:
			return
		case now := <-ticker.C:
			if err := r.eng.Tick(now); err != nil {
				r.logger.Warn("betrace: tick failed", zap.Error(err))
			}
			if err := r.flush(context.Background()); err != nil {
				r.logger.Warn("betrace: delivering signals failed", zap.Error(err))
			}
			if r.cfg.ReloadInterval > 0 && now.Sub(lastReload) >= r.cfg.ReloadInterval {
				lastReload = now
				r.reload()
			}
			r.forwardLogEvents()
		}
	}
}

func (r *Runner) reload() {
	sources, err := r.cfg.Sources()
	if err == nil {
		err = r.eng.SetRules(sources)
	}
	if err != nil {
		r.logger.Warn("betrace: rules not reloaded; the previous rules keep running", zap.Error(err))
	}
}

// flush delivers everything the engine has produced, in order.
func (r *Runner) flush(ctx context.Context) error {
	r.flushMu.Lock()
	defer r.flushMu.Unlock()
	logs, _, err := r.eng.TakeLogs()
	if err != nil {
		return err
	}
	spans, _, err := r.eng.TakeSpans()
	if err != nil {
		return err
	}
	if len(logs) == 0 && len(spans) == 0 {
		return nil
	}
	return r.deliver(ctx, logs, spans)
}

// Shutdown stops the clock, judges everything held and delivers it before returning.
func (r *Runner) Shutdown(ctx context.Context) error {
	close(r.stop)
	<-r.done
	err := r.eng.Shutdown(time.Now())
	if err == nil {
		err = r.flush(ctx)
	}
	r.forwardLogEvents()
	if r.reg != nil {
		_ = r.reg.Unregister()
	}
	r.closedMu.Lock()
	r.final = r.eng.Counters()
	r.closed = true
	r.eng.Close()
	r.closedMu.Unlock()
	return err
}

// forwardLogEvents writes the engine's own log events to the collector's logger.
func (r *Runner) forwardLogEvents() {
	for _, ev := range betrace.TakeLogEvents() {
		fields := []zap.Field{zap.String("target", ev.Target)}
		for k, v := range ev.Fields {
			if k != "level" && k != "target" && k != "message" {
				fields = append(fields, zap.Any(k, v))
			}
		}
		switch ev.Level {
		case "ERROR":
			r.logger.Error(ev.Message, fields...)
		case "WARN":
			r.logger.Warn(ev.Message, fields...)
		case "INFO":
			r.logger.Info(ev.Message, fields...)
		default:
			r.logger.Debug(ev.Message, fields...)
		}
	}
}

func (r *Runner) registerMetrics(m metric.Meter) (metric.Registration, error) {
	counter := func(name, desc string) metric.Int64ObservableCounter {
		c, _ := m.Int64ObservableCounter(name, metric.WithDescription(desc), metric.WithUnit("{count}"))
		return c
	}
	gauge := func(name, desc string) metric.Int64ObservableGauge {
		g, _ := m.Int64ObservableGauge(name, metric.WithDescription(desc), metric.WithUnit("{count}"))
		return g
	}
	spansIn := counter("otelcol_betrace_spans_received", "Spans received by the BeTrace engine.")
	judged := counter("otelcol_betrace_traces_judged", "Traces judged (a trace judged again after a late span counts twice).")
	early := counter("otelcol_betrace_traces_judged_early", "Traces judged early to stay within max_traces / max_spans.")
	late := counter("otelcol_betrace_late_spans", "Spans that arrived for a trace already judged.")
	lateUnjudged := counter("otelcol_betrace_late_spans_unjudged", "Late spans that arrived after their trace was released, so were not judged.")
	duplicates := counter("otelcol_betrace_duplicate_spans", "Spans received again (same trace and span id), counted once.")
	invalid := counter("otelcol_betrace_invalid_spans", "Spans skipped because they could not be read; the rest of their batch was judged.")
	signals := counter("otelcol_betrace_signals", "Violations found, by rule: the traces that violated it.")
	applied := counter("otelcol_betrace_traces_applied", "Traces each rule applied to (its when part held; every trace judged, for a rule without when), by rule. 1 - signals/applied is its compliance rate.")
	skipped := counter("otelcol_betrace_traces_skipped", "Traces a rule with incomplete: skip did not judge because they were not complete, by rule.")
	dropped := counter("otelcol_betrace_signals_dropped", "Violations dropped because they were not delivered in time.")
	decodeErrors := counter("otelcol_betrace_decode_errors", "Batches the engine could not decode.")
	heldTraces := gauge("otelcol_betrace_held_traces", "Traces held, waiting to be judged or kept for late spans.")
	heldSpans := gauge("otelcol_betrace_held_spans", "Spans held.")
	evalTime, _ := m.Float64ObservableCounter("otelcol_betrace_evaluation_time", metric.WithDescription("Time spent judging traces."), metric.WithUnit("s"))
	return m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		c := r.Counters()
		o.ObserveInt64(spansIn, int64(c.SpansIn))
		o.ObserveInt64(judged, int64(c.TracesJudged))
		o.ObserveInt64(early, int64(c.TracesJudgedEarly))
		o.ObserveInt64(late, int64(c.LateSpans))
		o.ObserveInt64(lateUnjudged, int64(c.LateSpansUnjudged))
		o.ObserveInt64(duplicates, int64(c.DuplicateSpans))
		o.ObserveInt64(invalid, int64(c.InvalidSpans))
		o.ObserveInt64(dropped, int64(c.SignalsDropped))
		o.ObserveInt64(decodeErrors, int64(c.DecodeErrors))
		o.ObserveInt64(heldTraces, int64(c.HeldTraces))
		o.ObserveInt64(heldSpans, int64(c.HeldSpans))
		o.ObserveFloat64(evalTime, float64(c.EvalNanos)/1e9)
		byRule, err := r.eng.RuleCounts()
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
	}, spansIn, judged, early, late, lateUnjudged, duplicates, invalid, signals, applied, skipped, dropped, decodeErrors, heldTraces, heldSpans, evalTime)
}
