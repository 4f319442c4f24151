package engine

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/open-telemetry/opentelemetry-collector-contrib/extension/storage/filestorage"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/extension"
	"go.opentelemetry.io/collector/extension/extensiontest"
	"go.opentelemetry.io/collector/extension/xextension/storage"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/betracehq/betrace/go-shim/internal/betrace"
	"github.com/betracehq/betrace/go-shim/internal/testtraces"
)

// The tests below run the runner on contrib's file_storage extension, as a collector
// would, in a directory of the test's; a "crash" stops the runner without judging or
// delivering anything and closes the storage the way a killed process leaves it.

var storageID = component.MustNewID("file_storage")

// extHost is a host with one storage extension.
type extHost struct {
	component.Host
	ext extension.Extension
}

func (h extHost) GetExtensions() map[component.ID]component.Component {
	return map[component.ID]component.Component{storageID: h.ext}
}

// collected records every signal delivered, by message.
type collected struct {
	mu   sync.Mutex
	msgs []string
	fail bool // refuse every batch (a backend down), without blocking
}

func (c *collected) deliver(_ context.Context, o Outgoing) error {
	ld, err := (&plog.ProtoUnmarshaler{}).UnmarshalLogs(o.Logs)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fail {
		return context.DeadlineExceeded
	}
	rls := ld.ResourceLogs()
	for i := range rls.Len() {
		sls := rls.At(i).ScopeLogs()
		for j := range sls.Len() {
			lrs := sls.At(j).LogRecords()
			for k := range lrs.Len() {
				c.msgs = append(c.msgs, lrs.At(k).Body().AsString())
			}
		}
	}
	return nil
}

func (c *collected) got() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.msgs...)
}

// stored is one run of a runner on a storage directory.
type stored struct {
	*Runner
	clock *clockwork.FakeClock
	ext   extension.Extension
	logs  *observer.ObservedLogs
}

// startStored starts a runner with storage in dir, its fake clock at `at`.
func startStored(t *testing.T, dir string, at time.Time, c *collected, cfg Config) *stored {
	t.Helper()
	f := filestorage.NewFactory()
	fcfg := f.CreateDefaultConfig().(*filestorage.Config)
	fcfg.Directory = dir
	ext, err := f.Create(context.Background(), extensiontest.NewNopSettings(f.Type()), fcfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := ext.Start(context.Background(), componenttest.NewNopHost()); err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.InfoLevel)
	set := componenttest.NewNopTelemetrySettings()
	set.Logger = zap.New(core)
	cfg.RulesInline = testtraces.Rules
	age := cfg.MaxTraceAge
	cfg.TraceIdleTimeout, cfg.MaxTraceAge, cfg.MaxTraces, cfg.MaxSpans = 50*time.Millisecond, time.Minute, 1000, 100_000
	if age > 0 {
		cfg.MaxTraceAge = age
	}
	cfg.MemoryLimitMiB = 512
	id := storageID
	cfg.Storage = &id
	clock := clockwork.NewFakeClockAt(at)
	ctx := clockwork.AddToContext(context.Background(), clock)
	r, err := Start(ctx, cfg, Settings{
		ID: component.MustNewID("betrace"), Kind: component.KindConnector, Telemetry: set,
		Outputs: betrace.Options{Logs: true}, Deliver: c.deliver, Host: extHost{componenttest.NewNopHost(), ext},
	})
	if err != nil {
		t.Fatal(err)
	}
	testtraces.WaitForTheLoop(t, clock)
	return &stored{Runner: r, clock: clock, ext: ext, logs: logs}
}

func (s *stored) advance(t *testing.T, d time.Duration) {
	t.Helper()
	testtraces.Advance(t, s.clock, d, TickInterval(s.cfg.TraceIdleTimeout))
}

// waitDelivered waits until n signals were delivered in all.
func waitDelivered(t *testing.T, c *collected, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(c.got()) < n && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := len(c.got()); got != n {
		t.Fatalf("%d signals delivered, want %d: %v", got, n, c.got())
	}
}

// handedOn waits until the runner has deleted every stored signal the consumer took: a
// crash between the consumer taking a signal and its deletion hands it on again (at least
// once), which the tests below do not mean to exercise.
func (s *stored) handedOn(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		s.store.mu.Lock()
		n := len(s.store.signals)
		s.store.mu.Unlock()
		if n == 0 && s.Waiting() == 0 {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatal("stored signals were not deleted after delivery")
}

// crash stops the runner as a SIGKILL would: nothing more is judged, taken or handed on,
// and the storage is left as the last write left it.
func (s *stored) crash(t *testing.T) {
	t.Helper()
	// The storage goes first: nothing the runner does from here on reaches it.
	_ = s.store.client.Close(context.Background())
	close(s.stop)
	<-s.ticked
	s.cancelDelivery()
	close(s.out)
	<-s.delivered
	s.unregister()
	s.closedMu.Lock()
	s.closed = true
	s.eng.Close()
	s.closedMu.Unlock()
	if err := s.ext.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func (s *stored) finish(t *testing.T) {
	t.Helper()
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := s.ext.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestACrashLosesNoTraceAndRepeatsNoSignal(t *testing.T) {
	dir, c := t.TempDir(), &collected{}
	s := startStored(t, dir, time.Unix(1_700_000_000, 0), c, Config{})
	violate(t, s.Runner, 1)
	s.advance(t, idle)
	waitDelivered(t, c, 1) // trace 1 judged and handed on before the crash
	s.handedOn(t)
	violate(t, s.Runner, 2)
	if err := s.Ingest(0, testtraces.Span(3, 1, 0, "shop", "inventory.reserve")); err != nil {
		t.Fatal(err)
	}
	at := s.clock.Now()
	s.crash(t) // traces 2 and 3 held, not judged

	// Back a second later, past the idle timeout: the engine's clock stood still while it
	// was down, so trace 2 is still open for its next span (queued by its sender).
	s = startStored(t, dir, at.Add(time.Second), c, Config{})
	if held := s.Counters().HeldTraces; held != 0 {
		t.Errorf("held traces wait in storage for input to resume: %d in the engine", held)
	}
	s.advance(t, idle) // nothing comes in yet: nothing is judged
	// Trace 2's spans arrive on after the restart: judged whole, with them.
	if err := s.Ingest(0, testtraces.Span(2, 2, 1, "shop", "inventory.reserve")); err != nil {
		t.Fatal(err)
	}
	if held := s.Counters().HeldTraces; held != 2 {
		t.Errorf("the restart holds the two traces not judged: %d", held)
	}
	violate(t, s.Runner, 4)
	// The grace the outage earned (as long as it stood: a second and an idle timeout), then
	// the idle timeout.
	s.advance(t, time.Second+2*idle)
	waitDelivered(t, c, 2) // trace 4 only: 1 is not repeated, 2 holds, 3 has no charge
	s.finish(t)

	s = startStored(t, dir, s.clock.Now().Add(time.Second), c, Config{})
	s.advance(t, idle)
	if held := s.Counters().HeldTraces; held != 0 {
		t.Errorf("nothing is held after the stop: %d", held)
	}
	if c := s.counters().storage; c.bytes != 0 || c.unreadable != 0 || c.failures != 0 {
		t.Errorf("every trace judged, nothing stays stored: %+v", c)
	}
	s.finish(t)
	if got := len(c.got()); got != 2 {
		t.Errorf("a clean stop leaves nothing to deliver twice: %v", c.got())
	}
}

func TestSignalsNotHandedOnSurviveACrash(t *testing.T) {
	dir, c := t.TempDir(), &collected{fail: false}
	block := make(chan struct{})
	var once sync.Once
	stuck := func(ctx context.Context, o Outgoing) error {
		once.Do(func() { close(block) })
		<-ctx.Done() // the backend never answers
		return ctx.Err()
	}
	s := startStored(t, dir, time.Unix(1_700_000_000, 0), c, Config{})
	s.deliver = stuck
	violate(t, s.Runner, 1)
	s.advance(t, idle)
	<-block // judged, stored, and stuck in delivery
	at := s.clock.Now()
	s.crash(t)

	s = startStored(t, dir, at.Add(time.Second), c, Config{})
	waitDelivered(t, c, 1)
	s.finish(t)
}

func TestAStopWithStorageKeepsHeldTracesForTheNextStart(t *testing.T) {
	dir, c := t.TempDir(), &collected{}
	s := startStored(t, dir, time.Unix(1_700_000_000, 0), c, Config{})
	violate(t, s.Runner, 1)
	at := s.clock.Now()
	s.finish(t)
	if got := len(c.got()); got != 0 {
		t.Fatalf("a stop with storage judges nothing early (a rollout cuts traces off): %v", c.got())
	}
	// No input after the restart: the held trace resumes max_trace_age after the start.
	s = startStored(t, dir, at.Add(10*time.Millisecond), c, Config{MaxTraceAge: 200 * time.Millisecond})
	s.advance(t, 150*time.Millisecond)
	if got := len(c.got()); got != 0 {
		t.Fatalf("before max_trace_age the held trace waits for input: %v", c.got())
	}
	// Then it waits the grace of the outage (as long as it stood, here max_trace_age,
	// which also bounds it).
	s.advance(t, 50*time.Millisecond)
	if got := len(c.got()); got != 0 {
		t.Fatalf("the held trace waits the grace of the outage: %v", c.got())
	}
	s.advance(t, 200*time.Millisecond)
	waitDelivered(t, c, 1)
	s.finish(t)
}

func TestUnreadableRecordsAreCountedAndSkipped(t *testing.T) {
	dir, c := t.TempDir(), &collected{}
	s := startStored(t, dir, time.Unix(1_700_000_000, 0), c, Config{})
	violate(t, s.Runner, 1)
	violate(t, s.Runner, 2)
	ctx := context.Background()
	// Damage the spans of the first stored batch (sequence number 1) and cut the second's
	// record short.
	first, _ := s.store.client.Get(ctx, key(kindSpans, 1))
	second, _ := s.store.client.Get(ctx, key(kindBatch, 2))
	if first == nil || second == nil {
		t.Fatal("the two batches are stored under 1 and 2")
	}
	first[len(first)/2] ^= 0xff
	_ = s.store.client.Set(ctx, key(kindSpans, 1), first)
	_ = s.store.client.Set(ctx, key(kindBatch, 2), second[:len(second)-3])
	at := s.clock.Now()
	s.crash(t)

	s = startStored(t, dir, at.Add(time.Second), c, Config{})
	if got := s.store.corrupt.Load(); got != 2 {
		t.Errorf("two unreadable records counted: %d", got)
	}
	violate(t, s.Runner, 3)
	if held := s.Counters().HeldTraces; held != 1 {
		t.Errorf("nothing unreadable is restored: %d traces held beside the new one", held-1)
	}
	s.advance(t, idle)
	waitDelivered(t, c, 1)
	s.finish(t)
}

func TestPastTheBoundBatchesAreJudgedNotStored(t *testing.T) {
	dir, c := t.TempDir(), &collected{}
	s := startStored(t, dir, time.Unix(1_700_000_000, 0), c, Config{})
	s.store.limit = 1 // nothing fits
	violate(t, s.Runner, 1)
	if got := s.counters().storage.notStored; got != 1 {
		t.Errorf("the batch is counted as not stored: %d", got)
	}
	s.advance(t, idle)
	waitDelivered(t, c, 1)
	s.finish(t)
}

func TestTracesJudgedBeforeACrashAreNotJudgedAgainFromASharedBatch(t *testing.T) {
	dir, c := t.TempDir(), &collected{}
	s := startStored(t, dir, time.Unix(1_700_000_000, 0), c, Config{})
	// One batch carries traces 1 and 2; trace 2 goes on, so the batch stays stored after
	// trace 1 is judged.
	td := testtraces.Span(1, 1, 0, "shop", "payment.charge")
	testtraces.Span(2, 1, 0, "shop", "payment.charge").ResourceSpans().MoveAndAppendTo(td.ResourceSpans())
	if err := s.Ingest(0, td); err != nil {
		t.Fatal(err)
	}
	s.advance(t, 40*time.Millisecond)
	if err := s.Ingest(0, testtraces.Span(2, 2, 1, "shop", "inventory.reserve")); err != nil {
		t.Fatal(err)
	}
	s.advance(t, 30*time.Millisecond)
	waitDelivered(t, c, 1) // trace 1
	s.handedOn(t)
	at := s.clock.Now()
	s.crash(t)

	s = startStored(t, dir, at.Add(10*time.Millisecond), c, Config{})
	if err := s.Ingest(0, testtraces.Span(9, 1, 0, "shop", "inventory.reserve")); err != nil {
		t.Fatal(err)
	}
	if held := s.Counters().HeldTraces; held != 2 {
		t.Errorf("only trace 2 is held again, with the new trace 9: %d", held)
	}
	s.advance(t, idle)
	s.finish(t)
	if got := len(c.got()); got != 1 {
		t.Errorf("trace 1 is not judged twice, trace 2 holds: %v", c.got())
	}
}

func TestASpanSentAgainAfterARestartIsLateNotANewTrace(t *testing.T) {
	dir, c := t.TempDir(), &collected{}
	s := startStored(t, dir, time.Unix(1_700_000_000, 0), c, Config{})
	violate(t, s.Runner, 1)
	s.advance(t, 3*idle) // judged, delivered, and released
	waitDelivered(t, c, 1)
	s.handedOn(t)
	at := s.clock.Now()
	s.crash(t)

	s = startStored(t, dir, at.Add(time.Second), c, Config{})
	violate(t, s.Runner, 1) // the sender retries a batch it had sent before
	s.advance(t, 3*idle)
	if late := s.Counters().LateSpans; late != 1 {
		t.Errorf("the span is counted as late: %d", late)
	}
	s.finish(t)
	if got := len(c.got()); got != 1 {
		t.Errorf("trace 1 is not judged again on the span sent twice: %v", c.got())
	}
}

// flaky is a storage client that fails every write while failing is set.
type flaky struct {
	storage.Client
	failing atomic.Bool
}

func (f *flaky) Set(ctx context.Context, k string, v []byte) error {
	if f.failing.Load() {
		return errors.New("disk full")
	}
	return f.Client.Set(ctx, k, v)
}

func (f *flaky) Delete(ctx context.Context, k string) error {
	if f.failing.Load() {
		return errors.New("disk full")
	}
	return f.Client.Delete(ctx, k)
}

func (f *flaky) Batch(ctx context.Context, ops ...*storage.Operation) error {
	if f.failing.Load() {
		return errors.New("disk full")
	}
	return f.Client.Batch(ctx, ops...)
}

func TestAFailedWriteLosesNothingWrittenAfterIt(t *testing.T) {
	dir, c := t.TempDir(), &collected{}
	s := startStored(t, dir, time.Unix(1_700_000_000, 0), c, Config{})
	f := &flaky{Client: s.store.client}
	s.store.client = f
	// The next batch needs a new block of numbers: its "meta" write fails.
	s.store.mu.Lock()
	s.store.next = s.store.reserved
	s.store.mu.Unlock()
	f.failing.Store(true)
	violate(t, s.Runner, 1)
	s.advance(t, idle) // trace 1 judged: its signal's write fails too, handed on unstored
	waitDelivered(t, c, 1)
	f.failing.Store(false)
	violate(t, s.Runner, 2)
	violate(t, s.Runner, 3)
	if got := s.store.unstored.Load(); got != 1 {
		t.Errorf("one batch not stored: %d", got)
	}
	at := s.clock.Now()
	s.crash(t)

	s = startStored(t, dir, at.Add(time.Second), c, Config{})
	violate(t, s.Runner, 9)
	if held := s.Counters().HeldTraces; held != 3 {
		t.Errorf("traces 2 and 3, stored after the failed write, are back (with 9): %d held", held)
	}
	s.advance(t, time.Second+idle)
	s.finish(t)
	if got := len(c.got()); got != 4 {
		t.Errorf("1 (before the crash), 2, 3 and 9, each once: %v", c.got())
	}
}

func TestTwoRestartsInARowKeepTheClockStill(t *testing.T) {
	dir, c := t.TempDir(), &collected{}
	s := startStored(t, dir, time.Unix(1_700_000_000, 0), c, Config{})
	violate(t, s.Runner, 2) // its reservation comes after two restarts
	at := s.clock.Now()
	s.crash(t)

	s = startStored(t, dir, at.Add(time.Hour), c, Config{})
	violate(t, s.Runner, 9) // input resumes: trace 2 is back, an hour later on its clock
	at = s.clock.Now()
	s.crash(t)

	// The clock now runs behind the last one: the batches keep their order all the same.
	s = startStored(t, dir, at.Add(-time.Minute), c, Config{})
	if err := s.Ingest(0, testtraces.Span(2, 2, 1, "shop", "inventory.reserve")); err != nil {
		t.Fatal(err)
	}
	s.advance(t, idle)
	s.finish(t) // every signal taken is handed on
	if got := c.got(); len(got) != 1 {
		t.Errorf("trace 9's signal only (trace 2 got its reservation): %v", got)
	}
}

func TestSpansRetriedLateAfterARestartStillJoinTheirTrace(t *testing.T) {
	dir, c := t.TempDir(), &collected{}
	s := startStored(t, dir, time.Unix(1_700_000_000, 0), c, Config{})
	violate(t, s.Runner, 2) // its reservation is queued in the sender during the outage
	at := s.clock.Now()
	s.crash(t)

	// Down for a second. The sender retries its queued requests each after its own
	// backoff: one comes first and resumes the engine, trace 2's reservation comes three
	// idle timeouts later — within the grace of one second the outage earned.
	s = startStored(t, dir, at.Add(time.Second), c, Config{})
	violate(t, s.Runner, 9)
	s.advance(t, 3*idle)
	if got := c.got(); len(got) != 0 {
		t.Fatalf("within the grace nothing is judged: %v", got)
	}
	if err := s.Ingest(0, testtraces.Span(2, 2, 1, "shop", "inventory.reserve")); err != nil {
		t.Fatal(err)
	}
	s.advance(t, time.Second+idle)
	waitDelivered(t, c, 1)
	if got := c.got(); len(got) != 1 {
		t.Errorf("trace 9's signal only (trace 2 got its reservation): %v", got)
	}
	// Past the grace, the idle timeout is the configured one again.
	violate(t, s.Runner, 10)
	s.advance(t, idle)
	waitDelivered(t, c, 2)
	s.finish(t)
}
