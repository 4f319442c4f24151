// Package betrace binds the BeTrace engine through its C ABI (ffi/betrace.h) with cgo.
//
// It is the only package that touches C: the collector components hand it OTLP protobuf
// bytes and get OTLP protobuf bytes back. Every call copies what it needs; the engine never
// keeps Go memory, so batches can be reused by the collector as soon as a call returns.
package betrace

/*
#cgo CFLAGS: -I${SRCDIR}/../../../ffi
#cgo LDFLAGS: ${SRCDIR}/../../../target/release/libbetrace.a -lm -ldl -lpthread
#include <stdlib.h>
#include "betrace.h"
*/
import "C"

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"reflect"
	"runtime"
	"strings"
	"time"
	"unsafe"
)

// Status codes of the C ABI.
const (
	ErrInvalidArgument = int(C.BETRACE_ERR_INVALID_ARGUMENT)
	ErrRules           = int(C.BETRACE_ERR_RULES)
	ErrDecode          = int(C.BETRACE_ERR_DECODE)
	ErrShutDown        = int(C.BETRACE_ERR_SHUT_DOWN)
	ErrPanic           = int(C.BETRACE_ERR_PANIC)
)

// Error is a failed call: the ABI's status code and message.
type Error struct {
	Code    int
	Message string
}

func (e *Error) Error() string { return e.Message }

// Options configure an engine; zero values mean the engine's defaults.
type Options struct {
	TraceIdleTimeout time.Duration
	MaxTraceAge      time.Duration
	MaxTraces        int
	MaxSpans         int
	// MemoryLimit bounds the bytes the held traces take, as the engine estimates them
	// (Counters().HeldBytes); beyond it the oldest are judged early.
	MemoryLimit int64
	// Logs and Spans choose the outputs: signals as log records, as violation spans.
	// Neither: signals are only counted (Counters().Signals, RuleCounts).
	Logs  bool
	Spans bool
}

// Counters are the engine's counts: the Go mirror of the engine's one counters struct
// (src/engine/counters.rs, betrace_counters in ffi/betrace.h, where each field is
// described), field for field in the same order, so that the engine writes it directly;
// TestCountersMatchTheABI checks the layout by name.
type Counters struct {
	SpansIn, TracesIn, TracesJudged, TracesJudgedEarly   uint64
	LateSpans, LateSpansUnjudged, HeldTraces, HeldSpans  uint64
	Signals, SignalsDropped, DecodeErrors, InvalidSpans  uint64
	EvalNanos, DuplicateSpans, OwnSpans, TracesOversized uint64
	// Rules is how many rules are loaded; RulesDigest a stable hash of them (equal on
	// replicas running the same rules); RuleChanges how often a reload changed them.
	Rules, RulesDigest, RuleChanges    uint64
	SpansAccepted, TracesOutsideWindow uint64
	// HeldBytes is what the held traces take now (what MemoryLimit bounds);
	// TracesJudgedEarlyMemory the traces judged early because of it.
	HeldBytes, TracesJudgedEarlyMemory uint64
}

// Engine is one BeTrace engine; its methods are safe for concurrent use, Close last.
type Engine struct {
	h *C.betrace_engine
}

// Version is the engine library's version.
func Version() string { return C.GoString(C.betrace_version()) }

func bytesPtr(b []byte) (*C.uint8_t, C.size_t) {
	if len(b) == 0 {
		return nil, 0
	}
	return (*C.uint8_t)(unsafe.Pointer(&b[0])), C.size_t(len(b))
}

// take copies a library buffer into Go memory and frees it.
func take(buf *C.betrace_buf) []byte {
	if buf.ptr == nil {
		return nil
	}
	out := C.GoBytes(unsafe.Pointer(buf.ptr), C.int(buf.len))
	C.betrace_buf_free(buf)
	return out
}

func check(code C.int32_t, errBuf *C.betrace_buf) error {
	msg := string(take(errBuf))
	if code == C.BETRACE_OK {
		return nil
	}
	return &Error{Code: int(code), Message: msg}
}

func nanos(t time.Time) C.uint64_t { return C.uint64_t(t.UnixNano()) }

// Source is one rule file: a name for error messages, and its YAML text; or, with Path
// set, a file, directory (every *.yaml / *.yml) or glob that the engine expands and reads.
type Source struct {
	Name string
	Text string
	Path bool
}

// cSources copies rule files into C memory (cgo may not pass Go memory holding Go
// pointers); free releases it.
func cSources(rules []Source) (ptr *C.betrace_source, n C.size_t, free func()) {
	if len(rules) == 0 {
		return nil, 0, func() {}
	}
	size := C.size_t(unsafe.Sizeof(C.betrace_source{})) * C.size_t(len(rules))
	arr := (*C.betrace_source)(C.malloc(size))
	items := unsafe.Slice(arr, len(rules))
	var allocs []unsafe.Pointer
	for i, r := range rules {
		name := C.CBytes([]byte(r.Name))
		allocs = append(allocs, name)
		items[i] = C.betrace_source{name: (*C.uint8_t)(name), name_len: C.size_t(len(r.Name))}
		if !r.Path { // a path is passed with a NULL text: the engine reads it
			text := C.CBytes([]byte(r.Text))
			allocs = append(allocs, text)
			items[i].text, items[i].text_len = (*C.uint8_t)(text), C.size_t(len(r.Text))
		}
	}
	return arr, C.size_t(len(rules)), func() {
		for _, p := range allocs {
			C.free(p)
		}
		C.free(unsafe.Pointer(arr))
	}
}

// New creates an engine from rule files, loaded together. Rule errors come back as an
// *Error with Code ErrRules and every error, located by file, line and column, in Message.
func New(rules []Source, o Options) (*Engine, error) {
	outputs := C.uint32_t(0)
	if o.Logs {
		outputs |= C.BETRACE_OUTPUT_LOGS
	}
	if o.Spans {
		outputs |= C.BETRACE_OUTPUT_SPANS
	}
	if outputs == 0 {
		outputs = C.BETRACE_OUTPUT_NONE
	}
	opts := C.betrace_options{
		trace_idle_timeout_ns: C.uint64_t(o.TraceIdleTimeout),
		max_trace_age_ns:      C.uint64_t(o.MaxTraceAge),
		max_traces:            C.uint64_t(o.MaxTraces),
		max_spans:             C.uint64_t(o.MaxSpans),
		outputs:               outputs,
		memory_limit_bytes:    C.uint64_t(max(o.MemoryLimit, 0)),
	}
	src, n, free := cSources(rules)
	defer free()
	var h *C.betrace_engine
	var errBuf C.betrace_buf
	code := C.betrace_engine_new(src, n, &opts, &h, &errBuf)
	if err := check(code, &errBuf); err != nil {
		return nil, err
	}
	return &Engine{h: h}, nil
}

// SetRules replaces the rules; on error the old ones keep running.
func (e *Engine) SetRules(rules []Source) error {
	src, n, free := cSources(rules)
	defer free()
	var errBuf C.betrace_buf
	return check(C.betrace_engine_set_rules(e.h, src, n, &errBuf), &errBuf)
}

// Ingest hands one OTLP ExportTraceServiceRequest that came in through feed (0 to 63; 0
// for a host with one input) to the engine. The bytes are copied. A trace's violation span
// is taken by every feed that carried part of it (TakeSpans).
func (e *Engine) Ingest(feed uint32, otlp []byte, now time.Time) error {
	p, n := bytesPtr(otlp)
	var errBuf C.betrace_buf
	code := C.betrace_engine_ingest(e.h, C.uint32_t(feed), p, n, nanos(now), &errBuf)
	runtime.KeepAlive(otlp)
	return check(code, &errBuf)
}

// IngestStored is Ingest for a host that keeps what the engine holds in storage: the
// batch was written to storage under seq (rising, shared with the judged ids stored from
// TakeJournal), and the engine tracks which traces it carried, so that TakeJournal says
// when the stored batch may be deleted.
func (e *Engine) IngestStored(feed uint32, otlp []byte, now time.Time, seq uint64) error {
	p, n := bytesPtr(otlp)
	var errBuf C.betrace_buf
	code := C.betrace_engine_ingest_stored(e.h, C.uint32_t(feed), p, n, nanos(now), C.uint64_t(seq), &errBuf)
	runtime.KeepAlive(otlp)
	return check(code, &errBuf)
}

// Restore brings back a batch stored before a restart (as IngestStored was given it, with
// the time it arrived then), judging nothing. Batches and judged ids (RestoreJudged) go
// back in their sequence order, before anything new is ingested.
func (e *Engine) Restore(feed uint32, otlp []byte, arrived time.Time, seq uint64) error {
	p, n := bytesPtr(otlp)
	var errBuf C.betrace_buf
	code := C.betrace_engine_restore(e.h, C.uint32_t(feed), p, n, nanos(arrived), C.uint64_t(seq), &errBuf)
	runtime.KeepAlive(otlp)
	return check(code, &errBuf)
}

// RestoreJudged brings back trace ids judged before a restart (16 bytes each, as
// TakeJournal gave them): those traces are not judged again.
func (e *Engine) RestoreJudged(ids []byte) error {
	p, n := bytesPtr(ids)
	var errBuf C.betrace_buf
	code := C.betrace_engine_restore_judged(e.h, p, n, &errBuf)
	runtime.KeepAlive(ids)
	return check(code, &errBuf)
}

// ExtendIdle makes traces whose latest span arrives before until wait extra longer than
// trace_idle_timeout (max_trace_age still bounds them): after a restart that stood extra,
// the spans senders queued meanwhile come back retried each after its own backoff, and
// still join their traces. A later call replaces the earlier one.
func (e *Engine) ExtendIdle(until time.Time, extra time.Duration) error {
	var errBuf C.betrace_buf
	code := C.betrace_engine_extend_idle(e.h, nanos(until), C.uint64_t(max(extra, 0)), &errBuf)
	return check(code, &errBuf)
}

// Journal is what TakeJournal returns: the ids of the traces judged since the last call
// (16 bytes each, concatenated) and the sequence numbers of stored batches no longer
// needed.
type Journal struct {
	Judged []byte
	Freed  []uint64
}

// TakeJournal takes the trace ids judged since the last call and the stored batches no
// longer needed: store the one and delete the other in one write, with the signals taken
// in the same pause. Exact when no IngestStored runs meanwhile.
func (e *Engine) TakeJournal() (Journal, error) {
	var out, errBuf C.betrace_buf
	if err := check(C.betrace_engine_take_journal(e.h, &out, &errBuf), &errBuf); err != nil {
		return Journal{}, err
	}
	return parseJournal(take(&out))
}

// parseJournal reads betrace_engine_take_journal's layout: u32 n, n 16-byte ids, u32 m,
// m u64 sequence numbers, little-endian.
func parseJournal(b []byte) (Journal, error) {
	var j Journal
	if len(b) == 0 {
		return j, nil
	}
	if len(b) < 4 {
		return j, fmt.Errorf("betrace: journal cut at %d bytes", len(b))
	}
	n := int(binary.LittleEndian.Uint32(b))
	if len(b) < 4+16*n+4 {
		return j, fmt.Errorf("betrace: journal of %d ids in %d bytes", n, len(b))
	}
	j.Judged = b[4 : 4+16*n]
	rest := b[4+16*n:]
	m := int(binary.LittleEndian.Uint32(rest))
	rest = rest[4:]
	if len(rest) != 8*m {
		return j, fmt.Errorf("betrace: journal of %d freed batches in %d bytes", m, len(rest))
	}
	j.Freed = make([]uint64, m)
	for i := range j.Freed {
		j.Freed[i] = binary.LittleEndian.Uint64(rest[8*i:])
	}
	return j, nil
}

// Tick judges the traces whose timeouts have passed at now.
func (e *Engine) Tick(now time.Time) error {
	var errBuf C.betrace_buf
	return check(C.betrace_engine_tick(e.h, nanos(now), &errBuf), &errBuf)
}

// Shutdown judges everything held; take the signals afterwards.
func (e *Engine) Shutdown(now time.Time) error {
	var errBuf C.betrace_buf
	return check(C.betrace_engine_shutdown(e.h, nanos(now), &errBuf), &errBuf)
}

// TakeLogs returns the waiting signals as OTLP ExportLogsServiceRequest bytes (nil when
// none) and how many there are.
func (e *Engine) TakeLogs() ([]byte, int, error) {
	var out, errBuf C.betrace_buf
	var count C.uint64_t
	if err := check(C.betrace_engine_take_logs(e.h, &out, &count, &errBuf), &errBuf); err != nil {
		return nil, 0, err
	}
	return take(&out), int(count), nil
}

// TakeSpans returns the waiting violation spans of the traces feed carried (part of) as
// OTLP ExportTraceServiceRequest bytes.
func (e *Engine) TakeSpans(feed uint32) ([]byte, int, error) {
	var out, errBuf C.betrace_buf
	var count C.uint64_t
	if err := check(C.betrace_engine_take_spans(e.h, C.uint32_t(feed), &out, &count, &errBuf), &errBuf); err != nil {
		return nil, 0, err
	}
	return take(&out), int(count), nil
}

// Counters reads the engine's counters.
func (e *Engine) Counters() Counters {
	var c Counters
	// Counters has betrace_counters' layout (checked by TestCountersMatchTheABI).
	C.betrace_engine_counters(e.h, (*C.betrace_counters)(unsafe.Pointer(&c)))
	return c
}

// countersLayout lists betrace_counters' fields as the C compiler lays them out (name,
// offset, size), for the test that checks Counters against it.
func countersLayout() (fields []struct {
	Name         string
	Offset, Size uintptr
}, size uintptr) {
	t := reflect.TypeOf(C.betrace_counters{})
	for i := range t.NumField() {
		f := t.Field(i)
		fields = append(fields, struct {
			Name         string
			Offset, Size uintptr
		}{f.Name, f.Offset, f.Type.Size()})
	}
	return fields, t.Size()
}

// RuleCounts is how often one rule held: the traces it applied to (its `when` part held;
// every trace judged, for a rule without `when`) and the traces that violated it (its
// signals). 1 - Violated/Applied is its compliance rate.
type RuleCounts struct {
	Applied  uint64
	Violated uint64
	// Skipped counts traces a rule with `incomplete: skip` did not judge because they
	// were not complete.
	Skipped uint64
}

// RuleCounts returns the counts of every rule that applied to a trace so far, by rule id.
func (e *Engine) RuleCounts() (map[string]RuleCounts, error) {
	var out, errBuf C.betrace_buf
	if err := check(C.betrace_engine_rule_counts(e.h, &out, &errBuf), &errBuf); err != nil {
		return nil, err
	}
	return parseRuleCounts(take(&out))
}

// parseRuleCounts reads betrace_engine_rule_counts's records: u32 id length, the id,
// then applied, violated, skipped as u64, all little-endian.
func parseRuleCounts(b []byte) (map[string]RuleCounts, error) {
	counts := map[string]RuleCounts{}
	for len(b) > 0 {
		if len(b) < 4 {
			return nil, fmt.Errorf("betrace: rule counts: a record cut at %d bytes", len(b))
		}
		n := int(binary.LittleEndian.Uint32(b))
		if len(b) < 4+n+24 {
			return nil, fmt.Errorf("betrace: rule counts: a record of %d bytes, %d left", 4+n+24, len(b))
		}
		id, rest := string(b[4:4+n]), b[4+n:]
		counts[id] = RuleCounts{
			Applied:  binary.LittleEndian.Uint64(rest),
			Violated: binary.LittleEndian.Uint64(rest[8:]),
			Skipped:  binary.LittleEndian.Uint64(rest[16:]),
		}
		b = rest[24:]
	}
	return counts, nil
}

// Close frees the engine; no call may run on it at the same time or after.
func (e *Engine) Close() {
	if e.h != nil {
		C.betrace_engine_free(e.h)
		e.h = nil
	}
}

// LogEvent is one of the engine's own log events.
type LogEvent struct {
	Level   string         `json:"level"`
	Target  string         `json:"target"`
	Message string         `json:"message"`
	Fields  map[string]any `json:"-"`
}

// TakeLogEvents drains this engine's own log events: those raised during calls into it,
// at or above its level (SetLogLevel).
func (e *Engine) TakeLogEvents() []LogEvent {
	var out, errBuf C.betrace_buf
	if check(C.betrace_engine_take_log_events(e.h, &out, &errBuf), &errBuf) != nil {
		return nil
	}
	return parseLogEvents(take(&out))
}

// SetLogLevel sets the most verbose level the engine keeps: 0 off, 1 error, 2 warn,
// 3 info (the default), 4 debug, 5 trace.
func (e *Engine) SetLogLevel(level int) {
	C.betrace_engine_set_log_level(e.h, C.uint32_t(level))
}

func parseLogEvents(text []byte) []LogEvent {
	var events []LogEvent
	for _, line := range strings.Split(strings.TrimSpace(string(text)), "\n") {
		if line == "" {
			continue
		}
		var ev LogEvent
		if json.Unmarshal([]byte(line), &ev) == nil {
			_ = json.Unmarshal([]byte(line), &ev.Fields)
			events = append(events, ev)
		}
	}
	return events
}
