package betrace

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode"

	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/betracehq/betrace/go-shim/internal/testtraces"
)

var t0 = time.Now()

// batch is one OTLP request with one span of trace `trace`.
func batch(t *testing.T, trace, spanID byte, name string) []byte {
	t.Helper()
	b, err := (&ptrace.ProtoMarshaler{}).MarshalTraces(testtraces.Span(trace, spanID, 0, "shop", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func newEngine(t *testing.T, o Options) *Engine {
	t.Helper()
	e, err := New([]Source{{Name: "rules.yaml", Text: testtraces.Rules}}, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e
}

func TestAViolationSplitOverBatchesComesBackAsALogRecord(t *testing.T) {
	e := newEngine(t, Options{Logs: true, Spans: true})
	if err := e.Ingest(0, batch(t, 1, 1, "checkout"), t0); err != nil {
		t.Fatal(err)
	}
	if err := e.Ingest(0, batch(t, 1, 2, "payment.charge"), t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := e.Tick(t0.Add(3 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, n, _ := e.TakeLogs(); n != 0 {
		t.Fatalf("judged before the idle timeout: %d", n)
	}
	if err := e.Tick(t0.Add(7 * time.Second)); err != nil {
		t.Fatal(err)
	}
	b, n, err := e.TakeLogs()
	if err != nil || n != 1 {
		t.Fatalf("want 1 signal, got %d (%v)", n, err)
	}
	logs, err := (&plog.ProtoUnmarshaler{}).UnmarshalLogs(b)
	if err != nil {
		t.Fatal(err)
	}
	rec := logs.ResourceLogs().At(0).ScopeLogs().At(0).LogRecords().At(0)
	if rec.TraceID() != testtraces.TraceID(1) || rec.SpanID() != testtraces.SpanID(2) {
		t.Errorf("record not linked to the trace and trigger span: %v %v", rec.TraceID(), rec.SpanID())
	}
	if rec.SeverityNumber() != plog.SeverityNumberFatal || rec.SeverityText() != "critical" {
		t.Errorf("severity %v %q", rec.SeverityNumber(), rec.SeverityText())
	}
	if rec.EventName() != "betrace.violation" || rec.Body().Str() != "charge for ord_9 without reservation" {
		t.Errorf("event %q body %q", rec.EventName(), rec.Body().Str())
	}
	if v, _ := rec.Attributes().Get("betrace.rule.id"); v.Str() != "payment-requires-inventory" {
		t.Errorf("rule id %q", v.Str())
	}
	sb, ns, err := e.TakeSpans(0)
	if err != nil || ns != 1 {
		t.Fatalf("want 1 violation span, got %d (%v)", ns, err)
	}
	spans, err := (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces(sb)
	if err != nil || spans.SpanCount() != 1 || spans.ResourceSpans().At(0).ScopeSpans().At(0).Spans().At(0).Name() != "betrace.violation" {
		t.Fatalf("violation span: %v", err)
	}
}

func TestWithNoOutputSignalsAreOnlyCounted(t *testing.T) {
	e := newEngine(t, Options{})
	if err := e.Ingest(0, batch(t, 1, 2, "payment.charge"), t0); err != nil {
		t.Fatal(err)
	}
	if err := e.Tick(t0.Add(7 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if b, n, err := e.TakeLogs(); err != nil || n != 0 || b != nil {
		t.Errorf("no log records without the logs output: %d (%v)", n, err)
	}
	if b, n, err := e.TakeSpans(0); err != nil || n != 0 || b != nil {
		t.Errorf("no violation spans without the spans output: %d (%v)", n, err)
	}
	byRule, err := e.RuleCounts()
	if want := (RuleCounts{Applied: 1, Violated: 1, Skipped: 0}); err != nil || byRule["payment-requires-inventory"] != want || e.Counters().Signals != 1 {
		t.Errorf("the signal is counted: %v %d (%v)", byRule, e.Counters().Signals, err)
	}
}

func TestErrorsCarryCodeAndMessage(t *testing.T) {
	_, err := New([]Source{{Name: "ok.yaml", Text: testtraces.Rules}, {Name: "bad.yaml", Text: "rules:\n  - id: r\n    name: R\n    condition: when { a } always { b.where(x >) }\n"}}, Options{Logs: true})
	var e *Error
	if !errors.As(err, &e) || e.Code != ErrRules || !strings.Contains(e.Message, "bad.yaml:4:") {
		t.Fatalf("want a located rule error, got %v", err)
	}
	eng := newEngine(t, Options{Logs: true})
	err = eng.Ingest(0, []byte{0xff, 0xff, 0xff, 0xff, 0x0f}, t0)
	if !errors.As(err, &e) || e.Code != ErrDecode {
		t.Fatalf("want a decode error, got %v", err)
	}
	if eng.Counters().DecodeErrors != 1 {
		t.Error("decode errors are counted")
	}
	if err := eng.SetRules([]Source{{Name: "r.yaml", Text: "rules: ["}}); err == nil {
		t.Error("a bad reload is refused")
	}
}

func TestShutdownJudgesEverythingFromConcurrentIngest(t *testing.T) {
	e := newEngine(t, Options{Logs: true})
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				if err := e.Ingest(0, batch(t, byte(16*g+i%16), byte(i), "payment.charge"), t0); err != nil {
					t.Error(err)
				}
			}
		}(g)
	}
	wg.Wait()
	if err := e.Shutdown(t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	_, n, _ := e.TakeLogs()
	if n != 64 {
		t.Fatalf("want one signal per distinct trace (64), got %d", n)
	}
	c := e.Counters()
	if c.SpansIn != 200 || c.HeldSpans != 0 || c.Signals != 64 {
		t.Errorf("counters %+v", c)
	}
	byRule, err := e.RuleCounts()
	if want := (RuleCounts{Applied: 64, Violated: 64}); err != nil || byRule["payment-requires-inventory"] != want {
		t.Errorf("rule counts %v %v", byRule, err)
	}
	var se *Error
	if err := e.Ingest(0, batch(t, 1, 1, "x"), t0); !errors.As(err, &se) || se.Code != ErrShutDown {
		t.Errorf("ingest after shutdown: %v", err)
	}
	found := false
	for _, ev := range e.TakeLogEvents() {
		if ev.Message == "rules loaded" && ev.Level == "INFO" {
			found = true
		}
	}
	if !found {
		t.Error("the engine's own log events reach Go")
	}
	if Version() == "" {
		t.Error("version")
	}
}

// Rule paths are expanded and read by the engine, as `betrace check` reads its arguments:
// a directory's *.yaml and *.yml (not its other files), a glob; a path that names nothing
// is a rules error naming it.
func TestTheEngineReadsRulePaths(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("a.yaml", testtraces.Rules)
	write("b.yml", strings.Replace(testtraces.Rules, "payment-requires-inventory", "second-rule", 1))
	write("notes.txt", "not rules")
	for _, spec := range []string{dir, filepath.Join(dir, "*.y*ml")} {
		e, err := New([]Source{{Name: spec, Path: true}}, Options{})
		if err != nil {
			t.Fatalf("%s: %v", spec, err)
		}
		if n := e.Counters().Rules; n != 2 {
			t.Errorf("%s: %d rules, want 2", spec, n)
		}
		e.Close()
	}
	missing := filepath.Join(dir, "nowhere")
	_, err := New([]Source{{Name: missing, Path: true}}, Options{})
	var be *Error
	if !errors.As(err, &be) || be.Code != ErrRules || !strings.Contains(be.Message, missing) {
		t.Errorf("a missing path: %v", err)
	}
	e := newEngine(t, Options{})
	if err := e.SetRules([]Source{{Name: filepath.Join(dir, "*.nothing"), Path: true}}); err == nil || !strings.Contains(err.Error(), "no rule files") {
		t.Errorf("a glob matching nothing: %v", err)
	}
}

func TestRuleCountRecordsAreReadExactlyAndCutOnesRefused(t *testing.T) {
	rec := func(id string, a, v, s uint64) []byte {
		b := binary.LittleEndian.AppendUint32(nil, uint32(len(id)))
		b = append(b, id...)
		for _, n := range []uint64{a, v, s} {
			b = binary.LittleEndian.AppendUint64(b, n)
		}
		return b
	}
	both := append(rec("a", 3, 2, 1), rec("rule-b", 1<<40, 0, 7)...)
	got, err := parseRuleCounts(both)
	if err != nil || len(got) != 2 || got["a"] != (RuleCounts{3, 2, 1}) || got["rule-b"] != (RuleCounts{1 << 40, 0, 7}) {
		t.Errorf("%v %v", got, err)
	}
	for cut := 1; cut < len(both); cut++ {
		if cut == len(rec("a", 3, 2, 1)) {
			continue // a whole first record
		}
		if _, err := parseRuleCounts(both[:cut]); err == nil {
			t.Errorf("a record cut at %d bytes was read", cut)
		}
	}
	if got, err := parseRuleCounts(nil); err != nil || len(got) != 0 {
		t.Errorf("no records: %v %v", got, err)
	}
}

// TestCountersMatchTheABI checks that Counters is betrace_counters field for field (the
// engine writes it directly): same names (CamelCase for snake_case), offsets and sizes.
func TestCountersMatchTheABI(t *testing.T) {
	cFields, cSize := countersLayout()
	goType := reflect.TypeOf(Counters{})
	if goType.Size() != cSize || goType.NumField() != len(cFields) {
		t.Fatalf("Counters has %d fields in %d bytes, betrace_counters %d in %d", goType.NumField(), goType.Size(), len(cFields), cSize)
	}
	for i, c := range cFields {
		f := goType.Field(i)
		if snake(f.Name) != c.Name || f.Offset != c.Offset || f.Type.Size() != c.Size {
			t.Errorf("field %d: Go %s at %d (%d bytes), C %s at %d (%d bytes)", i, f.Name, f.Offset, f.Type.Size(), c.Name, c.Offset, c.Size)
		}
	}
}

// snake is CamelCase as snake_case: SpansIn → spans_in.
func snake(s string) string {
	var b strings.Builder
	for i, r := range s {
		if unicode.IsUpper(r) {
			if i > 0 {
				b.WriteByte('_')
			}
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}

// TestCountersLandInTheirFields reads counts that differ from one another through the ABI.
func TestCountersLandInTheirFields(t *testing.T) {
	e := newEngine(t, Options{Logs: true})
	if err := e.Ingest(0, batch(t, 1, 2, "payment.charge"), t0); err != nil {
		t.Fatal(err)
	}
	if err := e.Ingest(0, batch(t, 1, 2, "payment.charge"), t0); err != nil { // re-sent
		t.Fatal(err)
	}
	if err := e.Ingest(0, batch(t, 3, 4, "inventory.reserve"), t0); err != nil {
		t.Fatal(err)
	}
	if err := e.Ingest(0, []byte{0xff, 0xff}, t0); err == nil {
		t.Fatal("a broken batch is refused")
	}
	if err := e.Tick(t0.Add(7 * time.Second)); err != nil {
		t.Fatal(err)
	}
	c := e.Counters()
	want := Counters{
		SpansIn: 3, TracesIn: 2, TracesJudged: 2, HeldTraces: c.HeldTraces, HeldSpans: c.HeldSpans,
		Signals: 1, DecodeErrors: 1, EvalNanos: c.EvalNanos, DuplicateSpans: 1, Rules: 1,
		RulesDigest: c.RulesDigest, SpansAccepted: 2, HeldBytes: c.HeldBytes,
	}
	if c != want || c.RulesDigest == 0 || c.HeldBytes == 0 {
		t.Errorf("counters\n got %+v\nwant %+v", c, want)
	}
}

// MemoryLimit reaches the engine: the bytes held stay within it, and the traces judged
// early to keep them there are counted apart.
func TestTheMemoryLimitBoundsTheBytesHeld(t *testing.T) {
	const limit = 16 << 10
	e := newEngine(t, Options{Logs: true, MemoryLimit: limit})
	var c Counters
	for n := range 200 {
		if err := e.Ingest(0, batch(t, byte(n), 1, "checkout"), t0); err != nil {
			t.Fatal(err)
		}
		if c = e.Counters(); c.HeldBytes > limit {
			t.Fatalf("%d bytes held after %d traces, the limit is %d", c.HeldBytes, n+1, limit)
		}
	}
	if c.TracesJudgedEarlyMemory == 0 || c.TracesJudgedEarlyMemory != c.TracesJudgedEarly || c.HeldTraces < 5 {
		t.Errorf("judged early because of memory: %+v", c)
	}
}
