package engine

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/s2"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/extension/xextension/storage"
	"go.uber.org/zap"

	"github.com/betracehq/betrace/go-shim/internal/betrace"
)

// What a component with `storage` keeps in its storage extension, so that a crash or a
// restart loses nothing it had accepted (docs/deploy.md, "Nothing lost when a collector
// dies"). Three kinds of record, numbered in one sequence:
//
//   - b/SEQ and p/SEQ: a batch of spans as it arrived — its feed, arrival time, length and
//     checksum, and apart, its OTLP bytes compressed with S2 (a third of their size on
//     OTLP traces: the storage's write, which costs by the byte, costs a third) — written
//     before the engine sees it and deleted once every trace it carried is judged
//     (betrace.Engine.TakeJournal says when);
//   - j/SEQ: the ids of traces judged, written with the signals they produced, and kept
//     as long as the engine would remember them exactly (the latest max_traces ids) and
//     while an older batch is still stored (a restart must not judge those traces again);
//   - s/SEQ: a batch of signals, written when taken from the engine and deleted once
//     handed to the next consumer.
//
// The record "meta" holds the range of sequence numbers in use (reserved a block at a
// time, and written before a number of the block is used) and the epoch: every record
// carries the epoch it was written in, so that records of an earlier, unreadable store are
// never mistaken for current ones. A restart reads the records (with the storage's Walk
// where it has one, else by number across the range) in sequence order and hands them
// back: batches and judged ids to the engine (betrace.Engine.Restore, RestoreJudged),
// signals to the outbox.

const (
	metaKey  = "meta"
	seqBlock = 4096 // sequence numbers reserved in "meta" at a time
	getChunk = 256  // sequence numbers read in one Batch at restart
	// maxRange bounds the range a restart reads number by number (a storage without
	// Walk): wider, "meta" is taken as damaged.
	maxRange = 1 << 22
)

// Record kinds, the first byte of each record.
const (
	kindBatch  byte = 'b'
	kindSpans  byte = 'p' // a batch's OTLP bytes, as they came (the 'b' record checks them)
	kindJudged byte = 'j'
	kindSignal byte = 's'
	kindMeta   byte = 'm'
)

// errCorrupt is a record that cannot be read: cut short, a checksum that does not match,
// or of another epoch.
var errCorrupt = errors.New("corrupt record")

func key(kind byte, seq uint64) string { return fmt.Sprintf("%c/%016x", kind, seq) }

// frame lays out a record: kind, epoch, payload, CRC-32C of all that.
func frame(kind byte, epoch uint64, payload ...[]byte) []byte {
	n := 1 + 8 + 4
	for _, p := range payload {
		n += len(p)
	}
	b := make([]byte, 0, n)
	b = append(b, kind)
	b = binary.LittleEndian.AppendUint64(b, epoch)
	for _, p := range payload {
		b = append(b, p...)
	}
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// unframe checks a record and returns its payload.
func unframe(kind byte, epoch uint64, b []byte) ([]byte, error) {
	if len(b) < 13 || b[0] != kind {
		return nil, errCorrupt
	}
	body, sum := b[:len(b)-4], binary.LittleEndian.Uint32(b[len(b)-4:])
	if crc32.Checksum(body, castagnoli) != sum {
		return nil, errCorrupt
	}
	if epoch != 0 && binary.LittleEndian.Uint64(body[1:9]) != epoch {
		return nil, errCorrupt
	}
	return body[9:], nil
}

// store keeps what one engine holds in a storage extension's client.
type store struct {
	client  storage.Client
	logger  *zap.Logger
	limit   int64         // bytes of stored batches, beyond which batches are judged but not stored
	keepIDs int           // judged ids kept at least (max_traces)
	maxAge  time.Duration // max_trace_age: the longest a restart's grace lasts

	// pause is held for reading by every stored ingest and for writing while the journal
	// and the signals are taken from the engine and written: no batch is half-way between
	// storage and the engine when the engine says which stored batches it still needs.
	pause sync.RWMutex

	mu       sync.Mutex
	epoch    uint64
	next     uint64              // the next sequence number
	reserved uint64              // numbers below this are in the stored "meta"'s range
	lo       uint64              // the stored "meta"'s lowest number
	batches  map[uint64]int64    // stored batches still needed, and their sizes
	judged   []judgedRecord      // stored judged-id records, oldest first
	ids      int                 // the trace ids in them
	signals  map[uint64]struct{} // stored signal batches not yet handed on
	bytes    int64               // the size of the stored batches
	// What a failed write left undone, done with the next one: judged ids to store (at
	// most keepIDs), and keys to delete.
	unwrittenJudged  []byte
	unwrittenDeletes map[string]struct{}

	// pending are the batches and judged ids read at the start, until resume hands them to
	// the engine; last is the latest arrival among the batches.
	pending    []record
	last       int64
	hasPending atomic.Bool
	// closing: the component is shutting down; stored ingest is refused from now on.
	closing atomic.Bool

	unstored, corrupt, failures atomic.Uint64
	unstoredLogged              atomic.Int64 // unix seconds of the last warning
}

// openStore gets the storage client of the extension `id` for the component.
func openStore(ctx context.Context, set Settings, id component.ID, limit int64, keepIDs int, maxAge time.Duration) (*store, error) {
	if set.Host == nil {
		return nil, fmt.Errorf("betrace: storage %v: the component has no host to find it in", id)
	}
	ext, ok := set.Host.GetExtensions()[id]
	if !ok {
		return nil, fmt.Errorf("betrace: storage %v: no such extension; add it under `extensions:` and to `service.extensions`", id)
	}
	se, ok := ext.(storage.Extension)
	if !ok {
		return nil, fmt.Errorf("betrace: storage %v is not a storage extension (file_storage is one)", id)
	}
	st := &store{logger: set.Telemetry.Logger, limit: limit, keepIDs: keepIDs, maxAge: maxAge,
		batches: map[uint64]int64{}, signals: map[uint64]struct{}{}, unwrittenDeletes: map[string]struct{}{}}
	var lost int
	st.client, lost = openClient(ctx, set, id, ext, se)
	st.corrupt.Add(uint64(lost))
	return st, nil
}

func (s *store) meta(lo, reserved uint64) []byte {
	var p [16]byte
	binary.LittleEndian.PutUint64(p[:], lo)
	binary.LittleEndian.PutUint64(p[8:], reserved)
	return frame(kindMeta, s.epoch, p[:])
}

// reserveLocked makes sure the next n numbers are within the stored "meta"'s range,
// writing "meta" first when they are not: a record is never written under a number that
// a restart would not read (s.mu held).
func (s *store) reserveLocked(ctx context.Context, n uint64) error {
	if s.next+n <= s.reserved {
		return nil
	}
	want := s.next + max(n, seqBlock)
	if err := s.client.Set(ctx, metaKey, s.meta(s.lo, want)); err != nil {
		return err
	}
	s.reserved = want
	return nil
}

// Restored is what a restart brought back.
type Restored struct {
	Batches, Judged, Signals, Corrupt int
}

// restore reads what an earlier run left, in sequence order: signal batches go to enqueue
// at once, batches and judged ids back to the engine at resume. Unreadable records are
// counted, logged and deleted; an unreadable "meta" starts a new epoch (the old records are
// never read).
func (s *store) restore(ctx context.Context, enqueue func(Outgoing)) (Restored, error) {
	var got Restored
	raw, err := s.client.Get(ctx, metaKey)
	if err != nil {
		s.withoutStorage(ctx, fmt.Errorf("betrace: storage: reading %q: %w", metaKey, err))
		return got, nil
	}
	var lo, hi uint64
	if raw != nil {
		if p, err := unframe(kindMeta, 0, raw); err == nil && len(p) == 16 {
			s.epoch = binary.LittleEndian.Uint64(raw[1:9])
			lo, hi = binary.LittleEndian.Uint64(p), binary.LittleEndian.Uint64(p[8:])
		} else {
			got.Corrupt++
			s.logger.Error("betrace: storage: its index record is unreadable; starting afresh (what it held is not restored)")
		}
	}
	walker, walks := s.client.(storage.Walker)
	if s.epoch != 0 && (hi < lo || lo == 0 || hi > 1<<62 || !walks && hi-lo > maxRange) {
		got.Corrupt++
		s.logger.Error("betrace: storage: its index record gives an absurd range; starting afresh", zap.Uint64("lo", lo), zap.Uint64("hi", hi))
		s.epoch = 0
	}
	if s.epoch == 0 {
		s.epoch = newEpoch()
		lo, hi = 1, 1
	}
	groups := map[uint64]*[4][]byte{} // per number: its b, p, j and s records
	if walks && hi > lo {
		err = walker.Walk(ctx, func(k string, v []byte) ([]*storage.Operation, error) {
			if seq, i, ok := parseKey(k); ok && seq >= lo && seq < hi {
				g := groups[seq]
				if g == nil {
					g = new([4][]byte)
					groups[seq] = g
				}
				g[i] = append([]byte(nil), v...) // v is valid during the call only
			}
			return nil, nil
		})
	} else {
		err = s.probe(ctx, lo, hi, groups)
	}
	if err != nil {
		s.withoutStorage(ctx, fmt.Errorf("betrace: storage: reading the records: %w", err))
		return got, nil
	}
	seqs := make([]uint64, 0, len(groups))
	for seq := range groups {
		seqs = append(seqs, seq)
	}
	slices.Sort(seqs)
	last := int64(math.MinInt64)
	for _, seq := range seqs {
		g := groups[seq]
		if g[1] != nil && g[0] == nil {
			s.unreadable(ctx, kindBatch, seq, fmt.Errorf("%w: spans without their batch record", errCorrupt), &got)
		}
		for i, kind := range recordKinds {
			if g[i] == nil || kind == kindSpans {
				continue
			}
			r := record{kind: kind, seq: seq, size: len(g[i])}
			p, err := unframe(kind, s.epoch, g[i])
			if err == nil && !wellFormed(kind, p) {
				err = errCorrupt
			}
			if err == nil && kind == kindBatch {
				r.spans = g[1]
				r.size += len(r.spans)
				if uint64(len(r.spans)) != binary.LittleEndian.Uint64(p[12:]) || crc32.Checksum(r.spans, castagnoli) != binary.LittleEndian.Uint32(p[20:]) {
					err = fmt.Errorf("%w: its spans are missing, cut short or altered", errCorrupt)
				}
			}
			if err != nil {
				s.unreadable(ctx, kind, seq, err, &got)
				continue
			}
			r.payload = p
			switch kind {
			case kindSignal:
				s.restoreSignal(r, enqueue, &got)
			case kindBatch:
				last = max(last, int64(binary.LittleEndian.Uint64(p[4:])))
				s.batches[seq] = int64(r.size)
				s.bytes += int64(r.size)
				s.pending = append(s.pending, r)
				got.Batches++
			case kindJudged:
				n := len(p) / 16
				s.judged = append(s.judged, judgedRecord{seq, n})
				s.ids += n
				s.pending = append(s.pending, r)
				got.Judged += n
			}
		}
	}
	s.corrupt.Add(uint64(got.Corrupt))
	s.last = last
	s.hasPending.Store(len(s.pending) > 0)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lo, s.next, s.reserved = lo, hi, hi
	if err := s.reserveLocked(ctx, 1); err != nil {
		// Tried again by the next write; until then batches are not stored (counted).
		s.failures.Add(1)
		s.logger.Warn("betrace: storage: writing its index at the start failed", zap.Error(err))
	}
	return got, nil
}

// withoutStorage leaves the component without storage when the start cannot read it (a
// client that panicked, a file gone bad): it starts all the same, every batch judged and
// counted as not stored (storage_batches_not_stored) — a collector that cannot start
// loses everything.
func (s *store) withoutStorage(ctx context.Context, err error) {
	s.failures.Add(1)
	s.logger.Error("betrace: storage: what the last run left cannot be read: the component runs WITHOUT storage (batches judged but not stored)", zap.Error(err))
	_ = s.client.Close(ctx)
	s.client = unusable{err}
	s.epoch = newEpoch()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lo, s.next, s.reserved = 1, 1, 1
}

// recordKinds are the kinds of record under one number, in the order a restart reads them.
var recordKinds = [4]byte{kindBatch, kindSpans, kindJudged, kindSignal}

// parseKey reads a record's key: its number, and the index of its kind in recordKinds.
func parseKey(k string) (seq uint64, i int, ok bool) {
	if len(k) != 18 || k[1] != '/' {
		return 0, 0, false
	}
	i = slices.Index(recordKinds[:], k[0])
	if i < 0 {
		return 0, 0, false
	}
	seq, err := strconv.ParseUint(k[2:], 16, 64)
	return seq, i, err == nil
}

// probe reads the records numbered lo to hi, a chunk of numbers at a time, into groups.
func (s *store) probe(ctx context.Context, lo, hi uint64, groups map[uint64]*[4][]byte) error {
	for from := lo; from < hi; {
		to := from + min(getChunk, hi-from)
		ops := make([]*storage.Operation, 0, len(recordKinds)*int(to-from))
		for seq := from; seq < to; seq++ {
			for _, k := range recordKinds {
				ops = append(ops, storage.GetOperation(key(k, seq)))
			}
		}
		if err := s.client.Batch(ctx, ops...); err != nil {
			return err
		}
		for i, op := range ops {
			if op.Value == nil {
				continue
			}
			seq := from + uint64(i/len(recordKinds))
			g := groups[seq]
			if g == nil {
				g = new([4][]byte)
				groups[seq] = g
			}
			g[i%len(recordKinds)] = op.Value
		}
		from = to
	}
	return nil
}

// wellFormed says whether a payload has the layout of its kind.
func wellFormed(kind byte, p []byte) bool {
	switch kind {
	case kindBatch:
		return len(p) == 24
	case kindJudged:
		return len(p)%16 == 0
	case kindSignal:
		return len(p) >= 9
	}
	return false
}

// judgedRecord is a stored record of judged ids: its sequence number and how many.
type judgedRecord struct {
	seq uint64
	n   int
}

// record is one record read back at a restart.
type record struct {
	kind    byte
	seq     uint64
	size    int
	payload []byte
	spans   []byte // a batch's OTLP bytes, compressed
}

// unreadable counts, logs and deletes a record that cannot be read (a batch with its
// spans).
func (s *store) unreadable(ctx context.Context, kind byte, seq uint64, err error, got *Restored) {
	got.Corrupt++
	s.logger.Warn("betrace: storage: a record is unreadable; skipped and deleted", zap.String("key", key(kind, seq)), zap.Error(err))
	ops := []*storage.Operation{storage.DeleteOperation(key(kind, seq))}
	if kind == kindBatch {
		ops = append(ops, storage.DeleteOperation(key(kindSpans, seq)))
	}
	_ = s.client.Batch(ctx, ops...)
}

// restoreSignal hands a stored signal batch to enqueue.
func (s *store) restoreSignal(r record, enqueue func(Outgoing), got *Restored) {
	p := r.payload
	o := Outgoing{Feed: int(binary.LittleEndian.Uint32(p[1:])), N: int(binary.LittleEndian.Uint32(p[5:])), seq: r.seq}
	if p[0] == 1 {
		o.Spans = p[9:]
	} else {
		o.Logs = p[9:]
	}
	s.signals[r.seq] = struct{}{}
	got.Signals += o.N
	enqueue(o)
}

// resume hands the batches and judged ids read at the start back to the engine, once:
// at the first batch that comes in after the restart (or, with none, when the loop says
// so). The restored batches arrive at that moment, and a grace as long as the collector
// stood (from the last batch stored before the stop to this one, at most max_trace_age)
// begins: every trace whose latest span arrives within it waits that much longer than
// trace_idle_timeout. Senders retry the requests they queued during the outage in no
// particular order, each after its own backoff — which grows with the outage (the
// collector's exporters back off exponentially) — so the spans of one trace, held or
// queued, can come back further apart than the idle timeout; without the grace such a
// trace is judged on part of its spans. A second restart does the same from its own first
// batch, whatever times the records hold.
func (s *store) resume(ctx context.Context, now time.Time, eng *betrace.Engine) {
	if !s.hasPending.Load() {
		return
	}
	s.pause.Lock()
	defer s.pause.Unlock()
	if !s.hasPending.Load() {
		return
	}
	at := max(now.UnixNano(), 0)
	stood := time.Duration(0)
	if s.last != math.MinInt64 {
		stood = time.Duration(at - s.last)
	}
	grace := min(max(stood, 0), s.maxAge)
	if err := eng.ExtendIdle(time.Unix(0, at).Add(grace), grace); err != nil {
		s.logger.Warn("betrace: the traces held before the restart get no grace for their senders' retries", zap.Error(err))
	}
	var got Restored
	for _, r := range s.pending {
		var err error
		switch r.kind {
		case kindBatch:
			feed := binary.LittleEndian.Uint32(r.payload)
			var spans []byte
			if spans, err = s2.Decode(nil, r.spans); err != nil {
				err = fmt.Errorf("%w: its spans do not decompress: %w", errCorrupt, err)
			} else if err = eng.Restore(feed, spans, time.Unix(0, at), r.seq); err == nil {
				got.Batches++
			}
		case kindJudged:
			if err = eng.RestoreJudged(r.payload); err == nil {
				got.Judged += len(r.payload) / 16
			}
		}
		if err != nil {
			s.unreadable(ctx, r.kind, r.seq, err, &got)
			s.mu.Lock()
			if n, ok := s.batches[r.seq]; ok && r.kind == kindBatch {
				delete(s.batches, r.seq)
				s.bytes -= n
			}
			s.mu.Unlock()
		}
	}
	s.pending = nil
	s.hasPending.Store(false)
	s.corrupt.Add(uint64(got.Corrupt))
	c := eng.Counters()
	s.logger.Info("betrace: the traces held before the restart are back in the engine, their clock resumed",
		zap.Int("batches", got.Batches), zap.Uint64("traces", c.HeldTraces), zap.Uint64("spans", c.HeldSpans),
		zap.Int("judged_traces", got.Judged), zap.Int("unreadable_records", got.Corrupt),
		zap.Duration("since_the_last_batch_stored", stood), zap.Duration("grace", grace))
}

func newEpoch() uint64 {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return binary.LittleEndian.Uint64(b[:]) | 1
}

// ingest stores a batch and hands it to the engine. A batch that does not fit under the
// bound, or that the storage refuses, is judged all the same but not stored: counted,
// and warned about at most once a minute.
func (s *store) ingest(ctx context.Context, eng *betrace.Engine, feed int, b []byte, now time.Time) error {
	if s.closing.Load() {
		return errShutDown
	}
	s.resume(ctx, now, eng)
	s.pause.RLock()
	defer s.pause.RUnlock()
	buf := compressed.Get().(*[]byte)
	defer compressed.Put(buf)
	z := s2.Encode((*buf)[:cap(*buf)], b)
	*buf = z
	var head [24]byte
	binary.LittleEndian.PutUint32(head[:], uint32(feed))
	binary.LittleEndian.PutUint64(head[4:], uint64(now.UnixNano()))
	binary.LittleEndian.PutUint64(head[12:], uint64(len(z)))
	binary.LittleEndian.PutUint32(head[20:], crc32.Checksum(z, castagnoli))
	s.mu.Lock()
	rec := frame(kindBatch, s.epoch, head[:])
	size := int64(len(rec) + len(z))
	if s.bytes+size > s.limit {
		s.mu.Unlock()
		s.notStored(now, "the storage bound is reached", nil)
		return eng.Ingest(uint32(feed), b, now)
	}
	if err := s.reserveLocked(ctx, 1); err != nil {
		s.mu.Unlock()
		s.failures.Add(1)
		s.notStored(now, "the storage failed", err)
		return eng.Ingest(uint32(feed), b, now)
	}
	seq := s.next
	s.next++
	s.batches[seq] = size
	s.bytes += size
	s.mu.Unlock()
	if err := s.client.Batch(ctx, storage.SetOperation(key(kindBatch, seq), rec), storage.SetOperation(key(kindSpans, seq), z)); err != nil {
		s.mu.Lock()
		delete(s.batches, seq)
		s.bytes -= size
		s.mu.Unlock()
		s.failures.Add(1)
		s.notStored(now, "the storage failed", err)
		return eng.Ingest(uint32(feed), b, now)
	}
	return eng.IngestStored(uint32(feed), b, now, seq)
}

// compressed holds buffers for compressed batches: the storage copies a value before its
// write returns, so one buffer serves batch after batch.
var compressed = sync.Pool{New: func() any { return new([]byte) }}

func (s *store) notStored(now time.Time, why string, err error) {
	n := s.unstored.Add(1)
	last := s.unstoredLogged.Load()
	if now.Unix()-last >= 60 && s.unstoredLogged.CompareAndSwap(last, now.Unix()) {
		s.logger.Warn("betrace: a batch was judged but not stored: a crash now loses its traces",
			zap.String("why", why), zap.Error(err), zap.Uint64("batches_not_stored", n),
			zap.Int64("stored_bytes", s.storedBytes()), zap.Int64("bound_bytes", s.limit))
	}
}

// storageCounters are the storage's counts, for the telemetry.
type storageCounters struct {
	bytes, notStored, unreadable, failures uint64
}

// counters reads the storage's counts (zero without storage).
func (s *store) counters() storageCounters {
	if s == nil {
		return storageCounters{}
	}
	return storageCounters{bytes: uint64(max(s.storedBytes(), 0)), notStored: s.unstored.Load(),
		unreadable: s.corrupt.Load(), failures: s.failures.Load()}
}

func (s *store) storedBytes() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bytes
}

// take pauses stored ingest, takes the signals (taken) and the journal from the engine,
// and writes them in one write: the signals and the ids of the traces that produced them
// stored, the batches no longer needed deleted. The outgoing batches come back numbered
// when they were stored. A write that fails leaves its signals unstored (delivered all
// the same) and its judged ids and deletions to the next write.
func (s *store) take(ctx context.Context, eng *betrace.Engine, taken func() []Outgoing) []Outgoing {
	s.pause.Lock()
	defer s.pause.Unlock()
	outs := taken()
	j, err := eng.TakeJournal()
	if err != nil {
		s.logger.Warn("betrace: storage: taking the journal failed", zap.Error(err))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	judged := append(s.unwrittenJudged, j.Judged...)
	s.unwrittenJudged = nil
	deletes := s.unwrittenDeletes
	s.unwrittenDeletes = map[string]struct{}{}
	for _, seq := range j.Freed {
		if n, ok := s.batches[seq]; ok {
			delete(s.batches, seq)
			s.bytes -= n
			deletes[key(kindBatch, seq)] = struct{}{}
			deletes[key(kindSpans, seq)] = struct{}{}
		}
	}
	need := uint64(len(outs))
	if len(judged) > 0 {
		need++
	}
	var ops []*storage.Operation
	var jrec judgedRecord
	err = s.reserveLocked(ctx, need)
	if err == nil {
		if len(judged) > 0 {
			jrec = judgedRecord{s.next, len(judged) / 16}
			ops = append(ops, storage.SetOperation(key(kindJudged, s.next), frame(kindJudged, s.epoch, judged)))
			s.next++
		}
		for i := range outs {
			o := &outs[i]
			kind, body := byte(0), o.Logs
			if o.Spans != nil {
				kind, body = 1, o.Spans
			}
			var head [9]byte
			head[0] = kind
			binary.LittleEndian.PutUint32(head[1:], uint32(o.Feed))
			binary.LittleEndian.PutUint32(head[5:], uint32(o.N))
			o.seq = s.next
			ops = append(ops, storage.SetOperation(key(kindSignal, s.next), frame(kindSignal, s.epoch, head[:], body)))
			s.next++
		}
		// Judged ids are kept while an older batch is stored (a restart reads that batch,
		// and must know its traces were judged), and as many as the engine remembers
		// exactly, so that a span sent again after a restart is late, as it would have
		// been without one.
		oldest := s.next
		for seq := range s.batches {
			oldest = min(oldest, seq)
		}
		ids, drop := s.ids+jrec.n, 0
		for drop < len(s.judged) && s.judged[drop].seq < oldest && ids-s.judged[drop].n >= s.keepIDs {
			deletes[key(kindJudged, s.judged[drop].seq)] = struct{}{}
			ids -= s.judged[drop].n
			drop++
		}
		lo := oldest
		if drop < len(s.judged) {
			lo = min(lo, s.judged[drop].seq)
		} else if jrec.n > 0 {
			lo = min(lo, jrec.seq)
		}
		for _, o := range outs {
			lo = min(lo, o.seq)
		}
		for seq := range s.signals {
			lo = min(lo, seq)
		}
		for k := range deletes {
			ops = append(ops, storage.DeleteOperation(k))
		}
		if lo != s.lo {
			ops = append(ops, storage.SetOperation(metaKey, s.meta(lo, s.reserved)))
		}
		if len(ops) > 0 {
			err = s.client.Batch(ctx, ops...)
		}
		if err == nil {
			if jrec.n > 0 {
				s.judged = append(s.judged, jrec)
			}
			s.judged = s.judged[drop:]
			s.ids = ids
			s.lo = lo
			for _, o := range outs {
				s.signals[o.seq] = struct{}{}
			}
			return outs
		}
	}
	s.failures.Add(1)
	s.logger.Warn("betrace: storage: writing what was judged failed; signals are handed on unstored, the rest is written with the next write", zap.Error(err))
	for i := range outs {
		outs[i].seq = 0
	}
	if most := 16 * s.keepIDs; len(judged) > most {
		judged = judged[len(judged)-most:]
	}
	s.unwrittenJudged = judged
	for k := range deletes {
		s.unwrittenDeletes[k] = struct{}{}
	}
	return outs
}

// handedOn deletes a signal batch once the next consumer was given it (or it was
// dropped); a delete that fails is done with the next write.
func (s *store) handedOn(ctx context.Context, seq uint64) {
	if seq == 0 {
		return
	}
	// Forgotten once the delete landed (or is left to the next write): until then the
	// record is still stored, and "meta"'s range must still cover it.
	err := s.client.Delete(ctx, key(kindSignal, seq))
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.signals, seq)
	if err != nil {
		s.failures.Add(1)
		s.unwrittenDeletes[key(kindSignal, seq)] = struct{}{}
	}
}

// close writes what is left to delete and releases the client.
func (s *store) close(ctx context.Context) error {
	s.mu.Lock()
	ops := make([]*storage.Operation, 0, len(s.unwrittenDeletes))
	for k := range s.unwrittenDeletes {
		ops = append(ops, storage.DeleteOperation(k))
	}
	s.mu.Unlock()
	var err error
	if len(ops) > 0 {
		err = s.client.Batch(ctx, ops...)
	}
	return errors.Join(err, s.client.Close(ctx))
}
