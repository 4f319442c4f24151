package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componentstatus"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/jonboulle/clockwork"

	"github.com/betracehq/betrace/go-shim/internal/betrace"
)

// Outgoing is what one tick produced for one destination: signals as OTLP
// ExportLogsServiceRequest bytes, or the violation spans of one feed's traces as
// ExportTraceServiceRequest bytes.
type Outgoing struct {
	// Logs or Spans is set, never both.
	Logs, Spans []byte
	// Feed is the feed whose traces the violation spans are: every feed that carried part
	// of a trace gets its violation span (see Runner.Ingest).
	Feed int
	// N is how many signals the batch carries.
	N int
	// seq numbers the batch in storage (0: not stored).
	seq uint64
}

// Deliver sends an outgoing batch to the next consumer.
type Deliver func(ctx context.Context, o Outgoing) error

// Settings are what Start needs besides the configuration.
type Settings struct {
	// ID is the component's id (betrace, betrace/b): every series of its telemetry carries
	// it (ComponentIDAttribute).
	ID component.ID
	// Telemetry is the component's: its logger receives the engine's log events.
	Telemetry component.TelemetrySettings
	// Instruments are the component's generated instruments (a zero value registers
	// nothing).
	Instruments Telemetry
	// Report receives the component's status (rules that fail to reload, delivery that
	// fails); nil reports nothing.
	Report func(*componentstatus.Event)
	// Outputs are what the engine builds: log records, violation spans.
	Outputs betrace.Options
	// Feeds is how many inputs ingest into the engine (processor instances on several
	// pipelines sharing it), 1 to MaxFeeds; 0 is taken as 1.
	Feeds int
	// Deliver hands outgoing batches to the next consumer.
	Deliver Deliver
	// Host and Kind find the storage extension of the `storage` setting and name the
	// component to it.
	Host component.Host
	Kind component.Kind
}

// OutboxSize is how many batches of signals may wait for delivery. Judging never waits on
// delivery: a batch that finds the outbox full is dropped and counted
// (…_betrace_signals_dropped), so a stalled exporter costs signals, not judging.
const OutboxSize = 256

// MaxFeeds is how many inputs may share one engine (the engine's feeds are bits of a
// 64-bit mask).
const MaxFeeds = 64

// outboxSize is OutboxSize, smaller in tests that fill it.
var outboxSize = OutboxSize

// ShutdownGrace bounds delivery at shutdown when the host's context has no deadline (the
// collector shuts down on SIGTERM with none): an exporter retrying a dead backend must not
// hold the collector's exit for its whole retry budget. What is not delivered by then is
// dropped, counted and logged.
var ShutdownGrace = 5 * time.Second

// Runner is a started engine with its clock, and the outbox between judging and delivery.
type Runner struct {
	id        component.ID
	cfg       Config
	logger    *zap.Logger
	report    func(*componentstatus.Event)
	clock     clockwork.Clock
	outputs   betrace.Options // what the engine builds, so what there is to take
	feeds     int
	eng       *betrace.Engine
	deliver   Deliver
	stop      chan struct{}
	ticked    chan struct{} // closed when the clock loop has returned
	telemetry Telemetry
	marshaler ptrace.ProtoMarshaler
	// store keeps what the engine holds across restarts (the `storage` setting); nil
	// without it.
	store *store
	// started is when the runner started: with storage and no input after a restart, the
	// held traces resume at max_trace_age after it.
	started time.Time

	// The outbox: filled by the clock loop, emptied by one delivery goroutine.
	out            chan Outgoing
	delivered      chan struct{} // closed when the delivery goroutine has returned
	deliveryCtx    context.Context
	cancelDelivery context.CancelFunc

	// Go-side counters (the engine counts the rest).
	dropped        atomic.Uint64 // signals dropped: outbox full, or shutdown out of time
	deliveryFailed atomic.Uint64 // signals the next consumer refused
	reloadFailures atomic.Uint64 // reloads that failed, each distinct content once
	kept           atomic.Uint64 // stored signals left for the next start at shutdown
	// waiting is how many signals are in the outbox or being handed to the next consumer:
	// added as a batch enters the outbox, taken off once its delivery returned (delivered
	// or refused) or it was dropped.
	waiting atomic.Int64
	// pressure is whether the component refuses data (pushback.go).
	pressure pushback

	// What was last reported, so that a repeated failure is logged and reported once.
	statusMu      sync.Mutex
	lastReloadErr string
	failing       bool // the last delivery failed

	// closedMu guards the engine's lifetime: calls hold it for reading, Shutdown frees the
	// engine holding it for writing, so no call can reach a freed engine.
	closedMu sync.RWMutex
	closed   bool
	final    betrace.Counters // the counters at shutdown, once the engine is freed
}

// errShutDown is returned by calls that arrive after Shutdown.
var errShutDown = &betrace.Error{Code: betrace.ErrShutDown, Message: "betrace: the component is shut down"}

// Start loads the rules (an error names every rule problem, located), starts the clock
// and the delivery of signals, and registers the observations with the component's
// telemetry. The clock is ctx's (clockwork.FromContext: the wall clock, or a test's fake
// one).
func Start(ctx context.Context, cfg Config, set Settings) (*Runner, error) {
	opts := set.Outputs
	opts.TraceIdleTimeout, opts.MaxTraceAge, opts.MaxTraces, opts.MaxSpans = cfg.TraceIdleTimeout, cfg.MaxTraceAge, cfg.MaxTraces, cfg.MaxSpans
	opts.MemoryLimit = int64(cfg.MemoryLimitMiB) << 20
	eng, err := betrace.New(cfg.Sources(), opts)
	if err != nil {
		return nil, fmt.Errorf("betrace: the rules do not load:\n%w", err)
	}
	if set.Feeds > MaxFeeds {
		eng.Close()
		return nil, fmt.Errorf("betrace: %d feeds, at most %d share an engine", set.Feeds, MaxFeeds)
	}
	r := &Runner{
		id: set.ID, cfg: cfg, logger: set.Telemetry.Logger, report: set.Report, clock: clockwork.FromContext(ctx),
		outputs: set.Outputs, feeds: max(set.Feeds, 1), eng: eng, deliver: set.Deliver,
		stop: make(chan struct{}), ticked: make(chan struct{}),
		out: make(chan Outgoing, outboxSize), delivered: make(chan struct{}),
	}
	if r.report == nil {
		r.report = func(*componentstatus.Event) {}
	}
	r.deliveryCtx, r.cancelDelivery = context.WithCancel(context.Background())
	eng.SetLogLevel(logLevel(r.logger))
	if cfg.Storage != nil {
		st, err := openStore(ctx, set, *cfg.Storage, cfg.storageLimit(), cfg.MaxTraces, cfg.MaxTraceAge)
		if err != nil {
			eng.Close()
			return nil, err
		}
		r.store = st
	}
	r.telemetry = set.Instruments
	if err := r.register(set.Instruments); err != nil {
		r.unregister()
		r.closeStore(ctx)
		eng.Close()
		return nil, err
	}
	go r.deliverLoop()
	if r.store != nil {
		if err := r.restore(ctx); err != nil {
			close(r.out)
			<-r.delivered
			r.unregister()
			r.closeStore(ctx)
			eng.Close()
			return nil, err
		}
	}
	r.forwardLogEvents()
	go r.loop(TickInterval(cfg.TraceIdleTimeout))
	return r, nil
}

// TickInterval is how often the engine is ticked: a trace is judged within a fifth of its
// idle timeout after it is due, at most a second.
func TickInterval(idle time.Duration) time.Duration {
	return min(max(idle/5, 10*time.Millisecond), time.Second)
}

// Ingest hands a batch that came in through feed (0 ≤ feed < Settings.Feeds) to the
// engine: a trace's spans from every feed are judged together, and its violation span is
// delivered to every feed that carried part of it. The batch is marshalled before Ingest
// returns, so the caller may reuse it. While the component pushes back (pushback.go) the
// batch is refused with ErrDataRefused, which the component returns to its caller.
func (r *Runner) Ingest(feed int, td ptrace.Traces) error {
	if feed < 0 || feed >= r.feeds {
		return fmt.Errorf("betrace: feed %d is out of range: the engine has %d", feed, r.feeds)
	}
	if err := r.admit(td.SpanCount()); err != nil {
		return err
	}
	b, err := r.marshaler.MarshalTraces(td)
	if err != nil {
		return err
	}
	r.closedMu.RLock()
	defer r.closedMu.RUnlock()
	if r.closed {
		return errShutDown
	}
	if r.store != nil {
		return r.store.ingest(context.Background(), r.eng, feed, b, r.clock.Now())
	}
	return r.eng.Ingest(uint32(feed), b, r.clock.Now())
}

// restore brings back what the storage kept from an earlier run: the engine holds again
// the traces it had not judged, and the signals not yet handed on wait in the outbox.
func (r *Runner) restore(ctx context.Context) error {
	r.started = r.clock.Now()
	got, err := r.store.restore(ctx, func(o Outgoing) {
		r.waiting.Add(int64(o.N))
		r.out <- o // the delivery goroutine runs: this waits for room, it never drops
	})
	if err != nil {
		return err
	}
	if got != (Restored{}) {
		r.logger.Info("betrace: storage holds what the last run left: signals handed on now, held traces back in the engine at the first batch that comes in",
			zap.Int("batches", got.Batches), zap.Int("judged_traces", got.Judged), zap.Int("signals", got.Signals),
			zap.Int("unreadable_records", got.Corrupt))
	}
	return nil
}

// closeStore releases the storage client, if any.
func (r *Runner) closeStore(ctx context.Context) {
	if r.store == nil {
		return
	}
	if err := r.store.close(ctx); err != nil {
		r.logger.Warn("betrace: storage: closing failed", zap.Error(err))
	}
}

// Counters reads the engine's counters (after Shutdown, the last ones it had), with the
// signals the runner dropped added to SignalsDropped.
func (r *Runner) Counters() betrace.Counters {
	r.closedMu.RLock()
	defer r.closedMu.RUnlock()
	c := r.final
	if !r.closed {
		c = r.eng.Counters()
	}
	c.SignalsDropped += r.dropped.Load()
	return c
}

// unregister drops the telemetry's callbacks.
func (r *Runner) unregister() {
	if r.telemetry.Shutdown != nil {
		r.telemetry.Shutdown()
	}
}

// counters are the engine's counters and the runner's own.
type counters struct {
	betrace.Counters
	deliveryFailed, reloadFailures, waiting, refused uint64
	storage                                          storageCounters
}

func (r *Runner) counters() counters {
	return counters{Counters: r.Counters(), deliveryFailed: r.deliveryFailed.Load(), reloadFailures: r.reloadFailures.Load(),
		waiting: uint64(max(r.waiting.Load(), 0)), refused: r.pressure.refused.Load(),
		storage: r.store.counters()}
}

// Waiting is how many signals wait in the outbox or are being handed to the next consumer.
func (r *Runner) Waiting() int64 { return r.waiting.Load() }

type ruleCounts = betrace.RuleCounts

// ruleCounts reads the per-rule counts (none after Shutdown).
func (r *Runner) ruleCounts() (map[string]betrace.RuleCounts, error) {
	r.closedMu.RLock()
	defer r.closedMu.RUnlock()
	if r.closed {
		return nil, nil
	}
	return r.eng.RuleCounts()
}

// loop ticks the engine every interval, measured from the end of the previous tick (a
// timer each time, not a ticker: a slow tick is not followed by a burst of them, and a
// test's fake clock sees the loop waiting again once a tick is done).
func (r *Runner) loop(every time.Duration) {
	defer close(r.ticked)
	lastReload := r.clock.Now()
	for {
		timer := r.clock.NewTimer(every)
		select {
		case <-r.stop:
			timer.Stop()
			return
		case now := <-timer.Chan():
			if r.store != nil && now.Sub(r.started) >= r.cfg.MaxTraceAge {
				r.store.resume(context.Background(), now, r.eng)
			}
			if err := r.eng.Tick(now); err != nil {
				r.logger.Warn("betrace: tick failed", zap.Error(err))
			}
			r.take()
			if r.cfg.ReloadInterval > 0 && now.Sub(lastReload) >= r.cfg.ReloadInterval {
				lastReload = now
				r.reload()
			}
			r.forwardLogEvents()
		}
	}
}

// reload re-reads the rule files. The engine recognises unchanged files and logs a real
// change itself; a failure is logged and reported once per distinct error, and the
// component is reported healthy again when the rules load.
func (r *Runner) reload() {
	err := r.eng.SetRules(r.cfg.Sources())
	r.statusMu.Lock()
	defer r.statusMu.Unlock()
	if err == nil {
		if r.lastReloadErr != "" {
			r.lastReloadErr = ""
			r.logger.Info("betrace: rules load again")
			r.report(componentstatus.NewEvent(componentstatus.StatusOK))
		}
		return
	}
	if err.Error() == r.lastReloadErr {
		return
	}
	r.lastReloadErr = err.Error()
	r.reloadFailures.Add(1)
	r.logger.Warn("betrace: rules not reloaded; the previous rules keep running", zap.Error(err))
	r.report(componentstatus.NewRecoverableErrorEvent(fmt.Errorf("betrace: rules not reloaded: %w", err)))
}

// taken is what the engine has produced since it was last asked, a batch per destination
// (one caller at a time: the clock loop, then Shutdown once the loop has stopped).
func (r *Runner) taken() []Outgoing {
	var out []Outgoing
	if r.outputs.Logs {
		logs, n, err := r.eng.TakeLogs()
		if err != nil {
			r.logger.Warn("betrace: taking signals failed", zap.Error(err))
		}
		if n > 0 {
			out = append(out, Outgoing{Logs: logs, N: n})
		}
	}
	if !r.outputs.Spans {
		return out
	}
	for feed := range r.feeds {
		spans, n, err := r.eng.TakeSpans(uint32(feed))
		if err != nil {
			r.logger.Warn("betrace: taking violation spans failed", zap.Error(err))
		}
		if n > 0 {
			out = append(out, Outgoing{Spans: spans, Feed: feed, N: n})
		}
	}
	return out
}

// take moves what the engine has produced into the outbox, never waiting for room: a
// batch that finds it full is dropped and counted. With storage, the signals and what
// was judged are stored first.
func (r *Runner) take() {
	outs := r.takenStored()
	for _, o := range outs {
		// Counted before it is in the outbox: the delivery goroutine may take it off at once.
		r.waiting.Add(int64(o.N))
		select {
		case r.out <- o:
		default:
			r.waiting.Add(-int64(o.N))
			r.handedOn(o)
			total := r.dropped.Add(uint64(o.N))
			r.logger.Warn("betrace: signals dropped: the outbox is full because the next consumer is not keeping up",
				zap.Int("dropped", o.N), zap.Uint64("total", total), zap.Int("outbox_batches", cap(r.out)))
		}
	}
}

// takenStored is taken, through the storage when there is one.
func (r *Runner) takenStored() []Outgoing {
	if r.store == nil {
		return r.taken()
	}
	return r.store.take(context.Background(), r.eng, r.taken)
}

// handedOn forgets a stored signal batch once the next consumer had it.
func (r *Runner) handedOn(o Outgoing) {
	if r.store != nil {
		r.store.handedOn(context.Background(), o.seq)
	}
}

// deliverLoop hands each outgoing batch to the next consumer, counting what it refuses.
func (r *Runner) deliverLoop() {
	defer close(r.delivered)
	for o := range r.out {
		if r.deliveryCtx.Err() != nil {
			r.waiting.Add(-int64(o.N))
			if o.seq != 0 {
				r.kept.Add(uint64(o.N)) // stored: handed on at the next start
				continue
			}
			r.dropped.Add(uint64(o.N))
			continue
		}
		err := r.deliver(r.deliveryCtx, o)
		r.waiting.Add(-int64(o.N))
		if err != nil && o.seq != 0 && r.deliveryCtx.Err() != nil {
			// Cut off by shutdown: stored, so handed on at the next start.
			r.kept.Add(uint64(o.N))
			continue
		}
		r.handedOn(o)
		r.statusMu.Lock()
		if err != nil {
			r.deliveryFailed.Add(uint64(o.N))
			if !r.failing {
				r.failing = true
				r.logger.Warn("betrace: delivering signals failed; they are counted in …_betrace_signals_delivery_failed",
					zap.Int("signals", o.N), zap.Error(err))
				r.report(componentstatus.NewRecoverableErrorEvent(fmt.Errorf("betrace: delivering signals failed: %w", err)))
			}
		} else if r.failing {
			r.failing = false
			r.logger.Info("betrace: signals are delivered again")
			r.report(componentstatus.NewEvent(componentstatus.StatusOK))
		}
		r.statusMu.Unlock()
	}
}

// Shutdown stops the clock, judges everything held and delivers it, within ctx (within
// ShutdownGrace when ctx has no deadline): when time runs out, the next consumer's call is
// cancelled and what is still undelivered is dropped, counted and logged; the error is
// ctx's when ctx ended, none when only the grace did.
func (r *Runner) Shutdown(ctx context.Context) error {
	if r.store != nil {
		r.store.closing.Store(true) // a batch that comes in now is refused, not half-stored
	}
	close(r.stop)
	<-r.ticked
	graced := false
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = clockwork.WithTimeout(ctx, r.clock, ShutdownGrace)
		defer cancel()
		graced = true
	}
	// Without storage, everything held is judged now; with it, what is held stays stored
	// for the next start, judged then as if nothing had stopped (no false alarms from
	// traces cut off by a rollout).
	var err error
	if r.store == nil {
		err = r.eng.Shutdown(r.clock.Now())
	} else {
		c := r.eng.Counters()
		r.logger.Info("betrace: stopping; held traces stay in storage for the next start",
			zap.Uint64("traces", c.HeldTraces), zap.Uint64("spans", c.HeldSpans))
	}
	// The engine is asked here, before it can be freed below; only the hand-over to the
	// outbox may wait for room (bounded by ctx through the delivery's cancellation).
	last := r.takenStored()
	go func() {
		for _, o := range last {
			r.waiting.Add(int64(o.N))
			r.out <- o
		}
		close(r.out)
	}()
	select {
	case <-r.delivered:
	case <-ctx.Done():
		// Cancel the consumer's call; what is still waiting is dropped and counted. A
		// consumer that ignores its context is given a second, then left behind.
		r.cancelDelivery()
		select {
		case <-r.delivered:
		case <-r.clock.After(time.Second):
		}
		r.logger.Error("betrace: shutdown ran out of time delivering signals; the undelivered ones were dropped (with storage: kept for the next start)",
			zap.Uint64("dropped_in_all", r.dropped.Load()), zap.Uint64("delivery_failed_in_all", r.deliveryFailed.Load()),
			zap.Bool("grace_elapsed", graced))
		if !graced {
			err = errors.Join(err, fmt.Errorf("betrace: shutdown ran out of time; undelivered signals were dropped: %w", ctx.Err()))
		}
	}
	r.cancelDelivery()
	r.forwardLogEvents()
	r.unregister()
	r.closeStore(context.Background())
	r.closedMu.Lock()
	r.final = r.eng.Counters()
	r.closed = true
	r.eng.Close()
	r.closedMu.Unlock()
	return err
}

// logLevel is the most verbose engine level the host's logger writes: 4 debug, 3 info,
// 2 warn, 1 error.
func logLevel(l *zap.Logger) int {
	switch {
	case l.Core().Enabled(zapcore.DebugLevel):
		return 4
	case l.Core().Enabled(zapcore.InfoLevel):
		return 3
	case l.Core().Enabled(zapcore.WarnLevel):
		return 2
	default:
		return 1
	}
}

// forwardLogEvents writes this engine's own log events to the component's logger.
func (r *Runner) forwardLogEvents() {
	r.closedMu.RLock()
	defer r.closedMu.RUnlock()
	if r.closed {
		return
	}
	for _, ev := range r.eng.TakeLogEvents() {
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
