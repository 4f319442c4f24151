package engine

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/betracehq/betrace/go-shim/internal/betrace"
)

// What a batch costs between pdata and the engine, part by part, per span of W1 (the
// collector file exporter's proto files that `make bench` writes to target/bench/w1/proto):
//
//	cd go-shim && BETRACE_W1=$PWD/../target/bench/w1/proto \
//	  go test -run - -bench Ingest -benchtime 3x ./internal/engine
//
// pdata/marshal is the marshalling a component does before the call; cgo/empty a call that
// carries no spans (the cgo crossing, the engine's locks); engine is the call with the
// batch's bytes (decode, assembly, judging at the idle timeout, on a clock of 50 batches a
// second); runner is all of it as the connector does it. Skipped when no W1 is given.
func BenchmarkIngest(b *testing.B) {
	dir := os.Getenv("BETRACE_W1")
	if dir == "" {
		b.Skip("BETRACE_W1 names no directory of W1 proto files")
	}
	raw, traces, spans := readW1(b, dir)
	cfg := Config{Rules: []string{"../../../examples/rules"}, TraceIdleTimeout: 5 * time.Second}
	rules := cfg.Sources()
	perSpan := func(b *testing.B, n int) {
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n*b.N), "ns/span")
	}

	b.Run("pdata/marshal", func(b *testing.B) {
		var m ptrace.ProtoMarshaler
		for range b.N {
			for _, td := range traces {
				if _, err := m.MarshalTraces(td); err != nil {
					b.Fatal(err)
				}
			}
		}
		perSpan(b, spans)
	})
	b.Run("cgo/empty", func(b *testing.B) {
		eng := newBenchEngine(b, rules)
		now := time.Unix(0, 0)
		for range b.N {
			for range raw {
				if err := eng.Ingest(0, nil, now); err != nil {
					b.Fatal(err)
				}
			}
		}
		perSpan(b, spans)
	})
	b.Run("engine", func(b *testing.B) {
		for range b.N {
			b.StopTimer()
			eng := newBenchEngine(b, rules)
			b.StartTimer()
			now := time.Unix(1_700_000_000, 0)
			for i, batch := range raw {
				if err := eng.Ingest(0, batch, now); err != nil {
					b.Fatal(err)
				}
				now = now.Add(20 * time.Millisecond)
				if i%10 == 9 {
					if err := eng.Tick(now); err != nil {
						b.Fatal(err)
					}
					if _, _, err := eng.TakeLogs(); err != nil {
						b.Fatal(err)
					}
				}
			}
		}
		perSpan(b, spans)
	})
	b.Run("runner", func(b *testing.B) {
		for range b.N {
			b.StopTimer()
			r, err := Start(context.Background(), cfg, Settings{
				Telemetry: componenttest.NewNopTelemetrySettings(), Outputs: betrace.Options{Logs: true},
				Deliver: func(context.Context, Outgoing) error { return nil },
			})
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			for _, td := range traces {
				if err := r.Ingest(0, td); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			if err := r.Shutdown(context.Background()); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
		perSpan(b, spans)
	})
}

func newBenchEngine(b *testing.B, rules []betrace.Source) *betrace.Engine {
	eng, err := betrace.New(rules, betrace.Options{Logs: true, TraceIdleTimeout: 5 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(eng.Close)
	return eng
}

// readW1 reads every length-prefixed TracesData message of the files in dir, as bytes and
// as pdata, and counts their spans.
func readW1(b *testing.B, dir string) ([][]byte, []ptrace.Traces, int) {
	files, err := filepath.Glob(filepath.Join(dir, "*"))
	if err != nil || len(files) == 0 {
		b.Fatalf("%s: no files (%v)", dir, err)
	}
	sort.Strings(files)
	var raw [][]byte
	var traces []ptrace.Traces
	spans := 0
	var u ptrace.ProtoUnmarshaler
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			b.Fatal(err)
		}
		for len(data) >= 4 {
			n := int(binary.BigEndian.Uint32(data))
			if len(data) < 4+n {
				b.Fatalf("%s: truncated message", f)
			}
			msg := data[4 : 4+n]
			data = data[4+n:]
			td, err := u.UnmarshalTraces(msg)
			if err != nil {
				b.Fatalf("%s: %v", f, err)
			}
			raw = append(raw, msg)
			traces = append(traces, td)
			spans += td.SpanCount()
		}
	}
	return raw, traces, spans
}
