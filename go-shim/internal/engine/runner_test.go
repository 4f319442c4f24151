package engine

import (
	"context"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component/componentstatus"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/jonboulle/clockwork"

	"github.com/betracehq/betrace/go-shim/internal/betrace"
	"github.com/betracehq/betrace/go-shim/internal/testtraces"
)

// fixture is a runner on the test rules with a 50 ms idle timeout, driven by a fake clock:
// no test waits for real time to pass.
type fixture struct {
	*Runner
	clock *clockwork.FakeClock
	host  *testtraces.StatusHost
	logs  *observer.ObservedLogs
}

// start starts a fixture with the given delivery and outputs (log records when none).
func start(t *testing.T, cfg Config, deliver Deliver, outputs ...betrace.Options) *fixture {
	t.Helper()
	core, logs := observer.New(zap.InfoLevel)
	set := componenttest.NewNopTelemetrySettings()
	set.Logger = zap.New(core)
	if len(cfg.Rules) == 0 {
		cfg.RulesInline = testtraces.Rules
	}
	cfg.TraceIdleTimeout, cfg.MaxTraceAge, cfg.MaxTraces, cfg.MaxSpans = 50*time.Millisecond, time.Minute, 1000, 100_000
	out := betrace.Options{Logs: true}
	feeds := 1
	if len(outputs) > 0 {
		out, feeds = outputs[0], 2
	}
	clock, ctx := testtraces.FakeClock()
	f := &fixture{clock: clock, host: testtraces.NewStatusHost(), logs: logs}
	r, err := Start(ctx, cfg, Settings{
		Telemetry: set, Report: f.host.Report, Outputs: out, Feeds: feeds, Deliver: deliver,
	})
	if err != nil {
		t.Fatal(err)
	}
	f.Runner = r
	testtraces.WaitForTheLoop(t, clock)
	return f
}

// advance moves the clock on by d, a tick at a time, and returns once the runner has
// handled every tick that fired: traces due are judged and their signals are in the outbox.
func (f *fixture) advance(t *testing.T, d time.Duration) {
	t.Helper()
	testtraces.Advance(t, f.clock, d, TickInterval(f.cfg.TraceIdleTimeout))
}

// idle is past the fixture's idle timeout.
const idle = 60 * time.Millisecond

// violate sends trace n through feed 0: a charge without a reservation.
func violate(t *testing.T, r *Runner, n byte) {
	t.Helper()
	if err := r.Ingest(0, testtraces.Span(n, 1, 0, "shop", "payment.charge")); err != nil {
		t.Fatal(err)
	}
}

func TestJudgingDoesNotWaitOnAStalledConsumer(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	entered := make(chan struct{}, 1)
	stalled := func(ctx context.Context, _ Outgoing) error {
		entered <- struct{}{}
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	r := start(t, Config{}, stalled)
	violate(t, r.Runner, 1)
	r.advance(t, idle)
	<-entered // the first delivery is now stuck
	for n := byte(2); n <= 4; n++ {
		violate(t, r.Runner, n)
	}
	r.advance(t, idle)
	if got := r.Counters().TracesJudged; got != 4 {
		t.Errorf("the three later traces are judged while delivery is stuck: %d judged", got)
	}
	ctx, cancel := clockwork.WithTimeout(context.Background(), r.clock, 200*time.Millisecond)
	defer cancel()
	r.clock.Advance(200 * time.Millisecond) // the host's shutdown deadline has passed
	if err := r.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("shutdown out of time says so: %v", err)
	}
	c := r.Counters()
	if got := c.SignalsDropped + r.deliveryFailed.Load(); got != 4 {
		t.Errorf("every signal is delivered, dropped or failed: dropped %d + failed %d != 4", c.SignalsDropped, r.deliveryFailed.Load())
	}
}

func TestAFullOutboxDropsAndCounts(t *testing.T) {
	outboxSize = 4
	defer func() { outboxSize = OutboxSize }()
	block := make(chan struct{})
	defer close(block)
	entered := make(chan struct{}, 1)
	r := start(t, Config{}, func(ctx context.Context, _ Outgoing) error {
		select {
		case entered <- struct{}{}:
		default:
		}
		select {
		case <-block:
		case <-ctx.Done():
		}
		return nil
	})
	// Eight traces a tick apart, taken before the outbox is three quarters full (no push
	// back yet), each judged on a tick of its own, so each a batch of its own: one being
	// delivered, four waiting, the last three dropped.
	tick := TickInterval(50 * time.Millisecond)
	for n := byte(1); n <= 8; n++ {
		violate(t, r.Runner, n)
		r.advance(t, tick)
		if n == 5 { // trace 1 is judged
			<-entered
		}
	}
	r.advance(t, idle)
	if got := r.Counters().SignalsDropped; got != 3 {
		t.Errorf("dropped %d, want 3", got)
	}
	if n := r.logs.FilterMessageSnippet("outbox is full").Len(); n != 3 {
		t.Errorf("each drop is logged: %d", n)
	}
	ctx, cancel := clockwork.WithTimeout(context.Background(), r.clock, time.Second)
	defer cancel()
	r.clock.Advance(time.Second)
	_ = r.Shutdown(ctx)
}

// During an outage of the next consumer, the signals judged wait in the outbox: they are
// a gauge (…_signals_waiting), not dropped, and it falls back to 0 once they are delivered.
func TestSignalsWaitingDuringAnOutageAreAGauge(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 8)
	r := start(t, Config{}, func(ctx context.Context, _ Outgoing) error {
		entered <- struct{}{}
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	defer func() { _ = r.Shutdown(context.Background()) }()
	for n := byte(1); n <= 3; n++ { // a batch each: one being handed over, two in the outbox
		violate(t, r.Runner, n)
		r.advance(t, idle)
		if n == 1 {
			<-entered
		}
	}
	if got, dropped := r.Waiting(), r.Counters().SignalsDropped; got != 3 || dropped != 0 {
		t.Errorf("backend down: %d signals waiting, %d dropped; want 3 and 0", got, dropped)
	}
	close(release)
	for range 2 {
		<-entered
	}
	deadline := time.Now().Add(10 * time.Second)
	for r.Waiting() != 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if got := r.Waiting(); got != 0 {
		t.Errorf("delivered, %d still waiting", got)
	}
}

// A rule removed by a reload is no longer reported per rule (its series end); put back, it
// is reported again with what it had counted.
func TestARuleRemovedByAReloadIsNoLongerReported(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "rules.yaml")
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
	two := testtraces.Rules + `  - id: refund-needs-charge
    name: A refund needs a charge
    condition: when { payment.refund } always { payment.charge }
`
	write(two)
	r := start(t, Config{Rules: []string{file}, ReloadInterval: time.Millisecond}, func(context.Context, Outgoing) error { return nil })
	defer func() { _ = r.Shutdown(context.Background()) }()
	if err := r.Ingest(0, testtraces.Span(1, 1, 0, "shop", "payment.refund")); err != nil {
		t.Fatal(err)
	}
	r.advance(t, idle)
	ids := func() []string {
		counts, err := r.ruleCounts()
		if err != nil {
			t.Fatal(err)
		}
		return slices.Sorted(maps.Keys(counts))
	}
	if got := ids(); !slices.Equal(got, []string{"refund-needs-charge"}) {
		t.Fatalf("before the reload: %v", got)
	}
	write(testtraces.Rules)
	r.advance(t, 30*time.Millisecond)
	if got := ids(); len(got) != 0 {
		t.Errorf("refund-needs-charge was removed, still reported: %v", got)
	}
	write(two)
	r.advance(t, 30*time.Millisecond)
	if counts, _ := r.ruleCounts(); counts["refund-needs-charge"].Violated != 1 {
		t.Errorf("put back, it reports what it had counted: %+v", counts)
	}
}

func TestDeliveryFailuresAreCountedAndReportedOnce(t *testing.T) {
	var mu sync.Mutex
	fail := true
	calls := make(chan struct{})
	r := start(t, Config{}, func(context.Context, Outgoing) error {
		mu.Lock()
		failing := fail
		mu.Unlock()
		calls <- struct{}{}
		if failing {
			return errors.New("backend down")
		}
		return nil
	})
	for n := byte(1); n <= 3; n++ {
		violate(t, r.Runner, n)
		r.advance(t, idle)
		<-calls
	}
	mu.Lock()
	fail = false
	mu.Unlock()
	violate(t, r.Runner, 9)
	r.advance(t, idle)
	<-calls
	if err := r.Shutdown(context.Background()); err != nil { // the delivery loop has finished
		t.Fatal(err)
	}
	if got := r.deliveryFailed.Load(); got != 3 {
		t.Errorf("failures counted: %d, want 3", got)
	}
	want := []componentstatus.Status{componentstatus.StatusRecoverableError, componentstatus.StatusOK}
	if got := r.host.Seen(); !slices.Equal(got, want) {
		t.Errorf("one recoverable error, then ok: %v", got)
	}
	if n := r.logs.FilterMessageSnippet("delivering signals failed").Len(); n != 1 {
		t.Errorf("a failing consumer is logged once, not per batch: %d", n)
	}
}

// A trace's violation span goes to every feed that carried part of it, one batch per
// feed, the trace judged whole across feeds.
func TestViolationSpansGoToTheFeedsThatCarriedTheTrace(t *testing.T) {
	var mu sync.Mutex
	got := map[int][]byte{} // feed: first byte of each trace id delivered
	r := start(t, Config{}, func(_ context.Context, o Outgoing) error {
		td, err := (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces(o.Spans)
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		for _, rs := range td.ResourceSpans().All() {
			for _, ss := range rs.ScopeSpans().All() {
				for _, sp := range ss.Spans().All() {
					id := sp.TraceID()
					got[o.Feed] = append(got[o.Feed], id[0])
				}
			}
		}
		return nil
	}, betrace.Options{Spans: true})
	ingest := func(feed int, trace byte, name string) {
		t.Helper()
		if err := r.Ingest(feed, testtraces.Span(trace, byte(len(name)), 0, "shop", name)); err != nil {
			t.Fatal(err)
		}
	}
	ingest(1, 1, "payment.charge") // trace 1 on feed 1
	ingest(0, 2, "payment.charge") // trace 2 on feed 0
	ingest(1, 4, "payment.charge") // trace 4 on both
	ingest(0, 4, "checkout")
	ingest(1, 3, "payment.charge") // trace 3: the reservation comes through the other feed
	ingest(0, 3, "inventory.reserve")
	if err := r.Ingest(2, testtraces.Span(5, 1, 0, "shop", "checkout")); err == nil {
		t.Error("a feed past Settings.Feeds is refused")
	}
	r.advance(t, idle)
	if err := r.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, ids := range got {
		slices.Sort(ids)
	}
	if len(got) != 2 || !slices.Equal(got[0], []byte{2, 4}) || !slices.Equal(got[1], []byte{1, 4}) {
		t.Errorf("violation spans by feed: %v, want feed 0: [2 4], feed 1: [1 4]", got)
	}
	if c := r.Counters(); c.TracesJudged != 4 || c.Signals != 3 {
		t.Errorf("judged %d, signals %d", c.TracesJudged, c.Signals)
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
	r := start(t, Config{Rules: []string{file}, ReloadInterval: time.Millisecond}, func(context.Context, Outgoing) error { return nil })
	defer func() { _ = r.Shutdown(context.Background()) }()
	host, logs := r.host, r.logs
	settle := func() { // three ticks, three reloads
		for range 3 {
			r.advance(t, 10*time.Millisecond)
		}
	}
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
	if got := host.Seen(); !slices.Equal(got, want) {
		t.Errorf("status: %v, want %v", got, want)
	}
}

func TestOwnViolationSpansAreNotJudged(t *testing.T) {
	delivered := make(chan []byte, 4)
	r := start(t, Config{}, func(_ context.Context, o Outgoing) error {
		delivered <- o.Spans
		return nil
	}, betrace.Options{Spans: true})
	violate(t, r.Runner, 1)
	r.advance(t, idle)
	td, err := (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces(<-delivered)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Ingest(0, td); err != nil { // the processor's output, back in
		t.Fatal(err)
	}
	if err := r.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	c := r.Counters()
	if c.OwnSpans != 1 || c.LateSpans != 0 || c.TracesJudged != 1 || len(delivered) != 0 {
		t.Errorf("own %d, late %d, judged %d, delivered again %d", c.OwnSpans, c.LateSpans, c.TracesJudged, len(delivered))
	}
}

func TestSpansWithEmptyIdsAreCountedInvalid(t *testing.T) {
	r := start(t, Config{}, func(context.Context, Outgoing) error { return nil })
	td := testtraces.Span(1, 1, 0, "shop", "payment.charge")
	sp := td.ResourceSpans().At(0).ScopeSpans().At(0).Spans()
	sp.At(0).SetTraceID([16]byte{})
	sp.AppendEmpty().SetName("no.span.id")
	sp.At(1).SetTraceID(testtraces.TraceID(2))
	if err := r.Ingest(0, td); err != nil {
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
	entered := make(chan struct{}, 1)
	r := start(t, Config{}, func(ctx context.Context, _ Outgoing) error {
		entered <- struct{}{}
		<-ctx.Done() // an exporter retrying a dead backend until cancelled
		return ctx.Err()
	})
	violate(t, r.Runner, 1)
	violate(t, r.Runner, 2)
	done := make(chan error)
	go func() { done <- r.Shutdown(context.Background()) }()
	<-entered // the grace is running: Shutdown set it before judging
	r.clock.Advance(ShutdownGrace - time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("shutdown returned before its grace ended: %v", err)
	default:
	}
	r.clock.Advance(time.Millisecond)
	if err := <-done; err != nil {
		t.Errorf("the grace ending is not the host's error: %v", err)
	}
	c := r.Counters()
	if c.TracesJudged != 2 || c.SignalsDropped+r.deliveryFailed.Load() != 2 {
		t.Errorf("judged %d; dropped %d + failed %d != 2", c.TracesJudged, c.SignalsDropped, r.deliveryFailed.Load())
	}
	if r.logs.FilterMessageSnippet("shutdown ran out of time").Len() != 1 {
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
	a := start(t, Config{Rules: []string{file}, ReloadInterval: time.Millisecond}, func(context.Context, Outgoing) error { return nil })
	b := start(t, Config{}, func(context.Context, Outgoing) error { return nil })
	defer func() { _ = b.Shutdown(context.Background()) }()
	edited := strings.Replace(testtraces.Rules, "severity: critical", "severity: low", 1)
	if err := os.WriteFile(file+".next", []byte(edited), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(file+".next", file); err != nil {
		t.Fatal(err)
	}
	a.advance(t, 10*time.Millisecond)
	if n := a.logs.FilterMessageSnippet("rules reloaded").Len(); n != 1 {
		t.Errorf("a logged its reload %d times", n)
	}
	b.advance(t, 10*time.Millisecond) // b forwards whatever its engine has
	if n := b.logs.FilterMessageSnippet("rules reloaded").Len(); n != 0 {
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
	r, err := Start(context.Background(), cfg, Settings{Telemetry: set, Deliver: func(context.Context, Outgoing) error { return nil }})
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

// manyTraces is one batch of n one-span traces named name, each of its own trace id.
func manyTraces(n int, name string) ptrace.Traces {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "shop")
	spans := rs.ScopeSpans().AppendEmpty().Spans()
	for i := range n {
		sp := spans.AppendEmpty()
		sp.SetTraceID(pcommon.TraceID{byte(i >> 8), byte(i), 0xfe, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, byte(i)})
		sp.SetSpanID(testtraces.SpanID(1))
		sp.SetName(name)
	}
	return td
}

// Traces judged early under memory_limit_mib reach the collector's log, naming the limit,
// and are counted apart; the bytes held stay within the limit.
func TestJudgingEarlyUnderTheMemoryLimitIsLoggedAndCounted(t *testing.T) {
	r := start(t, Config{MemoryLimitMiB: 1}, func(context.Context, Outgoing) error { return nil })
	defer func() { _ = r.Shutdown(context.Background()) }()
	// Spans of 2 KB (their names): the megabyte is reached before the fixture's 1,000 traces.
	if err := r.Ingest(0, manyTraces(900, strings.Repeat("checkout.", 230))); err != nil {
		t.Fatal(err)
	}
	r.advance(t, 10*time.Millisecond) // the clock loop forwards the engine's log events
	c := r.Counters()
	if c.TracesJudgedEarlyMemory == 0 || c.HeldBytes > 1<<20 {
		t.Errorf("the limit bites and holds: %+v", c)
	}
	lines := r.logs.FilterMessageSnippet("judged early").All()
	if len(lines) != 1 {
		t.Fatalf("one warning: %v", r.logs.All())
	}
	line := lines[0]
	if line.Level != zap.WarnLevel || line.ContextMap()["limit"] != "memory_limit_mib" ||
		!strings.Contains(line.Message, "raise memory_limit_mib") {
		t.Errorf("the warning names the limit and what to raise: %s %v", line.Message, line.ContextMap())
	}
}

// While violations wait for delivery beyond three quarters of the outbox, batches are
// refused with ErrDataRefused — retryable, not permanent — counted and reported once; once
// the next consumer takes them, batches are accepted again.
func TestAStalledOutboxPushesBack(t *testing.T) {
	outboxSize = 4
	defer func() { outboxSize = OutboxSize }()
	release := make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	entered := make(chan struct{}, 16)
	r := start(t, Config{}, func(ctx context.Context, _ Outgoing) error {
		entered <- struct{}{}
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	defer func() { _ = r.Shutdown(context.Background()) }()
	defer unblock() // before the shutdown: a failing test must not hang on it
	// One batch being delivered, then three waiting: three quarters of four.
	for n := byte(1); n <= 4; n++ {
		violate(t, r.Runner, n)
		r.advance(t, idle)
		if n == 1 {
			<-entered
		}
	}
	err := r.Ingest(0, testtraces.Span(9, 1, 0, "shop", "payment.charge"))
	if !errors.Is(err, ErrDataRefused) || consumererror.IsPermanent(err) {
		t.Fatalf("refused, retryably: %v", err)
	}
	_ = r.Ingest(0, testtraces.Span(9, 2, 0, "shop", "checkout"))
	if got := r.counters().refused; got != 2 {
		t.Errorf("spans refused: %d, want 2", got)
	}
	if c := r.Counters(); c.SpansIn != 4 || c.SignalsDropped != 0 {
		t.Errorf("refused spans are not ingested, and nothing was dropped: %+v", c)
	}
	if n := r.logs.FilterMessageSnippet("refusing data").Len(); n != 1 {
		t.Errorf("refusing is logged once: %d", n)
	}
	unblock()
	for range 3 {
		<-entered
	}
	deadline := time.Now().Add(10 * time.Second)
	for r.Waiting() != 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if err := r.Ingest(0, testtraces.Span(9, 1, 0, "shop", "payment.charge")); err != nil {
		t.Errorf("accepted again once delivered: %v", err)
	}
	want := []componentstatus.Status{componentstatus.StatusRecoverableError, componentstatus.StatusOK}
	if got := r.host.Seen(); !slices.Equal(got, want) {
		t.Errorf("reported once each way: %v", got)
	}
}
