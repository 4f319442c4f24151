package engine

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componentstatus"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/betracehq/betrace/go-shim/internal/betrace"
	"github.com/betracehq/betrace/go-shim/internal/testtraces"
)

// statusHost records the status events a component reports.
type statusHost struct {
	component.Host
	mu       sync.Mutex
	statuses []componentstatus.Status
}

func (h *statusHost) Report(ev *componentstatus.Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.statuses = append(h.statuses, ev.Status())
}

func (h *statusHost) seen() []componentstatus.Status {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]componentstatus.Status(nil), h.statuses...)
}

// start runs a runner on the test rules with a 50 ms idle timeout and the given delivery;
// its log is observed.
func start(t *testing.T, cfg Config, deliver Deliver) (*Runner, *statusHost, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zap.InfoLevel)
	set := componenttest.NewNopTelemetrySettings()
	set.Logger = zap.New(core)
	if len(cfg.Rules) == 0 {
		cfg.RulesInline = testtraces.Rules
	}
	cfg.TraceIdleTimeout, cfg.MaxTraceAge, cfg.MaxTraces, cfg.MaxSpans = 50*time.Millisecond, time.Minute, 1000, 100_000
	host := &statusHost{Host: componenttest.NewNopHost()}
	r, err := Start(cfg, set, host, Telemetry{}, betrace.Options{Logs: true}, deliver)
	if err != nil {
		t.Fatal(err)
	}
	return r, host, logs
}

// violate sends trace n: a charge without a reservation.
func violate(t *testing.T, r *Runner, n byte) {
	t.Helper()
	if err := r.Ingest(testtraces.Span(n, 1, 0, "shop", "payment.charge")); err != nil {
		t.Fatal(err)
	}
}

// eventually waits up to 5 s for cond.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 5s: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestJudgingDoesNotWaitOnAStalledConsumer(t *testing.T) {
	release := make(chan struct{})
	var calls sync.WaitGroup
	calls.Add(1)
	var once sync.Once
	stalled := func(ctx context.Context, _, _ []byte) error {
		once.Do(calls.Done)
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	r, _, _ := start(t, Config{}, stalled)
	violate(t, r, 1)
	calls.Wait() // the first delivery is now stuck
	for n := byte(2); n <= 4; n++ {
		violate(t, r, n)
	}
	eventually(t, "the three later traces judged while delivery is stuck", func() bool {
		return r.Counters().TracesJudged == 4
	})

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	began := time.Now()
	err := r.Shutdown(ctx)
	if took := time.Since(began); took > 3*time.Second {
		t.Errorf("shutdown took %v with a 200ms context", took)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("shutdown out of time says so: %v", err)
	}
	c := r.Counters()
	if got := c.SignalsDropped + r.deliveryFailed.Load(); got != 4 {
		t.Errorf("every signal is delivered, dropped or failed: dropped %d + failed %d != 4", c.SignalsDropped, r.deliveryFailed.Load())
	}
	close(release)
}

func TestAFullOutboxDropsAndCounts(t *testing.T) {
	outboxSize = 2
	defer func() { outboxSize = OutboxSize }()
	block := make(chan struct{})
	defer close(block)
	r, _, logs := start(t, Config{}, func(ctx context.Context, _, _ []byte) error {
		select {
		case <-block:
		case <-ctx.Done():
		}
		return nil
	})
	// One batch being delivered, two waiting: the fourth and later are dropped. Each
	// trace is sent after the previous one was judged, so each is a batch of its own.
	for n := byte(1); n <= 6; n++ {
		violate(t, r, n)
		eventually(t, "judged", func() bool { return r.Counters().TracesJudged == uint64(n) })
		time.Sleep(30 * time.Millisecond) // the next tick moves it out
	}
	eventually(t, "drops counted", func() bool { return r.Counters().SignalsDropped >= 3 })
	if n := logs.FilterMessageSnippet("outbox is full").Len(); n == 0 {
		t.Error("the drop is logged")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_ = r.Shutdown(ctx)
}

func TestDeliveryFailuresAreCountedAndReportedOnce(t *testing.T) {
	var mu sync.Mutex
	fail := true
	r, host, logs := start(t, Config{}, func(context.Context, []byte, []byte) error {
		mu.Lock()
		defer mu.Unlock()
		if fail {
			return errors.New("backend down")
		}
		return nil
	})
	for n := byte(1); n <= 3; n++ {
		violate(t, r, n)
		eventually(t, "judged", func() bool { return r.Counters().TracesJudged == uint64(n) })
	}
	eventually(t, "three failures counted", func() bool { return r.deliveryFailed.Load() == 3 })
	mu.Lock()
	fail = false
	mu.Unlock()
	violate(t, r, 9)
	eventually(t, "healthy again", func() bool {
		s := host.seen()
		return len(s) > 0 && s[len(s)-1] == componentstatus.StatusOK
	})
	if got := host.seen(); len(got) != 2 || got[0] != componentstatus.StatusRecoverableError {
		t.Errorf("one recoverable error, then ok: %v", got)
	}
	if n := logs.FilterMessageSnippet("delivering signals failed").Len(); n != 1 {
		t.Errorf("a failing consumer is logged once, not per batch: %d", n)
	}
	if err := r.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestReloadSpeaksOnlyWhenSomethingChanged(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "rules.yaml")
	// Written whole and renamed into place, so that a reload never reads half a file.
	write := func(text string) {
		t.Helper()
		tmp := filepath.Join(dir, "next")
		if err := os.WriteFile(tmp, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, file); err != nil {
			t.Fatal(err)
		}
	}
	write(testtraces.Rules)
	r, host, logs := start(t, Config{Rules: []string{file}, ReloadInterval: time.Millisecond}, func(context.Context, []byte, []byte) error { return nil })
	defer func() { _ = r.Shutdown(context.Background()) }()
	settle := func() { time.Sleep(150 * time.Millisecond) } // about fifteen reloads
	settle()
	if n := logs.FilterMessageSnippet("reloaded").Len(); n != 0 {
		t.Errorf("an unchanged rule file logs nothing: %v", logs.All())
	}
	write("rules: [")
	settle()
	write("rules: [ {id: x} ]")
	settle()
	if n := logs.FilterMessageSnippet("rules not reloaded").Len(); n != 2 {
		t.Errorf("two distinct bad contents, two warnings (not one per reload): %d", n)
	}
	write(strings.Replace(testtraces.Rules, "severity: critical", "severity: high", 1))
	settle()
	reloaded := logs.FilterMessageSnippet("rules reloaded").All()
	if len(reloaded) != 1 || !strings.Contains(reloaded[0].ContextMap()["edited"].(string), "payment-requires-inventory") {
		t.Errorf("one change, logged with the rule edited: %v", reloaded)
	}
	c := r.Counters()
	if c.RuleChanges != 1 || r.reloadFailures.Load() != 2 || c.Rules != 1 {
		t.Errorf("changes %d, failures %d, rules %d", c.RuleChanges, r.reloadFailures.Load(), c.Rules)
	}
	want := []componentstatus.Status{componentstatus.StatusRecoverableError, componentstatus.StatusRecoverableError, componentstatus.StatusOK}
	if got := host.seen(); len(got) != 3 || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Errorf("status: %v, want %v", got, want)
	}
}

func TestOwnViolationSpansAreNotJudged(t *testing.T) {
	core, _ := observer.New(zap.InfoLevel)
	set := componenttest.NewNopTelemetrySettings()
	set.Logger = zap.New(core)
	cfg := Config{RulesInline: testtraces.Rules, TraceIdleTimeout: 50 * time.Millisecond, MaxTraceAge: time.Minute, MaxTraces: 100, MaxSpans: 1000}
	var mu sync.Mutex
	var got [][]byte
	r, err := Start(cfg, set, nil, Telemetry{}, betrace.Options{Spans: true}, func(_ context.Context, _, spans []byte) error {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, spans)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	violate(t, r, 1)
	eventually(t, "a violation span", func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == 1 })
	td, err := (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces(got[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Ingest(td); err != nil { // the processor's output, back in
		t.Fatal(err)
	}
	if err := r.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	c := r.Counters()
	if c.OwnSpans != 1 || c.LateSpans != 0 || c.TracesJudged != 1 || len(got) != 1 {
		t.Errorf("own %d, late %d, judged %d, delivered %d", c.OwnSpans, c.LateSpans, c.TracesJudged, len(got))
	}
}

func TestSpansWithEmptyIdsAreCountedInvalid(t *testing.T) {
	r, _, _ := start(t, Config{}, func(context.Context, []byte, []byte) error { return nil })
	td := testtraces.Span(1, 1, 0, "shop", "payment.charge")
	sp := td.ResourceSpans().At(0).ScopeSpans().At(0).Spans()
	sp.At(0).SetTraceID([16]byte{})
	sp.AppendEmpty().SetName("no.span.id")
	sp.At(1).SetTraceID(testtraces.TraceID(2))
	if err := r.Ingest(td); err != nil {
		t.Fatal(err)
	}
	if err := r.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if c := r.Counters(); c.InvalidSpans != 2 || c.SpansIn != 0 {
		t.Errorf("invalid %d, received %d", c.InvalidSpans, c.SpansIn)
	}
}

func TestShutdownWithoutADeadlineIsBoundedByTheGrace(t *testing.T) {
	ShutdownGrace = 300 * time.Millisecond
	defer func() { ShutdownGrace = 5 * time.Second }()
	r, _, logs := start(t, Config{}, func(ctx context.Context, _, _ []byte) error {
		<-ctx.Done() // an exporter retrying a dead backend until cancelled
		return ctx.Err()
	})
	violate(t, r, 1)
	violate(t, r, 2)
	began := time.Now()
	if err := r.Shutdown(context.Background()); err != nil {
		t.Errorf("the grace ending is not the host's error: %v", err)
	}
	if took := time.Since(began); took > 2*time.Second {
		t.Errorf("shutdown took %v with a 300ms grace", took)
	}
	c := r.Counters()
	if c.TracesJudged != 2 || c.SignalsDropped+r.deliveryFailed.Load() != 2 {
		t.Errorf("judged %d; dropped %d + failed %d != 2", c.TracesJudged, c.SignalsDropped, r.deliveryFailed.Load())
	}
	if logs.FilterMessageSnippet("shutdown ran out of time").Len() != 1 {
		t.Error("the loss is logged")
	}
}

// Two components in one collector each log their own engine's events, under their own
// logger: a reload of one is not logged by the other.
func TestEachRunnerLogsItsOwnEngineEvents(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(file, []byte(testtraces.Rules), 0o600); err != nil {
		t.Fatal(err)
	}
	a, _, logsA := start(t, Config{Rules: []string{file}, ReloadInterval: time.Millisecond}, func(context.Context, []byte, []byte) error { return nil })
	b, _, logsB := start(t, Config{}, func(context.Context, []byte, []byte) error { return nil })
	defer func() { _ = b.Shutdown(context.Background()) }()
	edited := strings.Replace(testtraces.Rules, "severity: critical", "severity: low", 1)
	if err := os.WriteFile(file+".next", []byte(edited), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(file+".next", file); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a's reload logged by a", func() bool { return logsA.FilterMessageSnippet("rules reloaded").Len() == 1 })
	time.Sleep(100 * time.Millisecond) // b ticks meanwhile and forwards whatever its engine has
	if n := logsB.FilterMessageSnippet("rules reloaded").Len(); n != 0 {
		t.Errorf("b logged a's reload %d times", n)
	}
	_ = a.Shutdown(context.Background())
}

// The engine keeps events at the level the host's logger writes.
func TestTheEngineLogsAtTheHostLoggersLevel(t *testing.T) {
	core, logs := observer.New(zap.WarnLevel)
	set := componenttest.NewNopTelemetrySettings()
	set.Logger = zap.New(core)
	dir := t.TempDir()
	file := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(file, []byte(testtraces.Rules), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Rules: []string{file}, TraceIdleTimeout: 50 * time.Millisecond, MaxTraceAge: time.Minute, MaxTraces: 100, MaxSpans: 1000}
	r, err := Start(cfg, set, nil, Telemetry{}, betrace.Options{}, func(context.Context, []byte, []byte) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = r.Shutdown(context.Background()) }()
	if err := r.eng.SetRules([]betrace.Source{{Name: "two.yaml", Text: strings.Replace(testtraces.Rules, "critical", "low", 1)}}); err != nil {
		t.Fatal(err)
	}
	if got := r.eng.TakeLogEvents(); len(got) != 0 {
		t.Errorf("a warn-level host gets no info events from the engine: %+v", got)
	}
	if logs.Len() != 0 {
		t.Errorf("logged: %v", logs.All())
	}
}
