package engine

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/extension/xextension/storage"
	"go.uber.org/zap"

	"github.com/betracehq/betrace/go-shim/internal/betrace"
)

// What a component with `storage` keeps in its storage extension, so that a crash or a
// restart loses nothing it had accepted (docs/deploy.md, "Nothing lost when a collector
// dies"). Three kinds of record, numbered in one sequence:
//
//   - b/SEQ: a batch of spans as it arrived (feed, arrival time, OTLP bytes), written
//     before the engine sees it and deleted once every trace it carried is judged
//     (betrace.Engine.TakeJournal says when);
//   - j/SEQ: the ids of traces judged, written with the signals they produced, and kept
//     while an older batch is still stored (a restart must not judge those traces again);
//   - s/SEQ: a batch of signals, written when taken from the engine and deleted once
//     handed to the next consumer.
//
// The record "meta" holds the range of sequence numbers in use (reserved a block at a
// time) and the epoch: every record carries the epoch it was written in, so that records
// of an earlier, unreadable store are never mistaken for current ones. A restart reads the
// records in sequence order and hands them back: batches and judged ids to the engine
// (betrace.Engine.Restore, RestoreJudged), signals to the outbox.

const (
	metaKey  = "meta"
	seqBlock = 4096 // sequence numbers reserved in "meta" at a time
	getChunk = 256  // sequence numbers read in one Batch at restart
)

// Record kinds, the first byte of each record.
const (
	kindBatch  byte = 'b'
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
	client storage.Client
	logger *zap.Logger
	limit  int64 // bytes of stored batches, beyond which batches are judged but not stored

	// pause is held for reading by every stored ingest and for writing while the journal
	// and the signals are taken from the engine and written: no batch is half-way between
	// storage and the engine when the engine says which stored batches it still needs.
	pause sync.RWMutex

	mu       sync.Mutex
	epoch    uint64
	next     uint64              // the next sequence number
	reserved uint64              // sequence numbers below this are in "meta"'s range
	lo       uint64              // the lowest sequence number that may be stored
	batches  map[uint64]int64    // stored batches still needed, and their sizes
	judged   []uint64            // stored judged-id records, oldest first
	signals  map[uint64]struct{} // stored signal batches not yet handed on
	bytes    int64               // the size of the stored batches
	retry    []*storage.Operation

	unstored, corrupt, failures atomic.Uint64
	unstoredLogged              atomic.Int64 // unix seconds of the last warning
}

// openStore gets the storage client of the extension `id` for the component.
func openStore(ctx context.Context, set Settings, id component.ID, limit int64) (*store, error) {
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
	client, err := se.GetClient(ctx, set.Kind, set.ID, "")
	if err != nil {
		return nil, fmt.Errorf("betrace: storage %v: %w", id, err)
	}
	return &store{client: client, logger: set.Telemetry.Logger, limit: limit,
		batches: map[uint64]int64{}, signals: map[uint64]struct{}{}}, nil
}

func (s *store) meta() []byte {
	var p [16]byte
	binary.LittleEndian.PutUint64(p[:], s.lo)
	binary.LittleEndian.PutUint64(p[8:], s.reserved)
	return frame(kindMeta, s.epoch, p[:])
}

// reserve moves "meta"'s range on when the next number would fall outside it (s.mu held).
func (s *store) reserve() []*storage.Operation {
	if s.next < s.reserved {
		return nil
	}
	s.reserved = s.next + seqBlock
	return []*storage.Operation{storage.SetOperation(metaKey, s.meta())}
}

// Restored is what a restart brought back.
type Restored struct {
	Batches, Judged, Signals, Corrupt int
}

// restore reads what an earlier run left, in sequence order: batches and judged ids go
// back to the engine, signal batches to enqueue. Unreadable records are counted, logged
// and deleted; an unreadable "meta" starts a new epoch (the old records are never read).
func (s *store) restore(ctx context.Context, eng *betrace.Engine, enqueue func(Outgoing)) (Restored, error) {
	var got Restored
	raw, err := s.client.Get(ctx, metaKey)
	if err != nil {
		return got, fmt.Errorf("betrace: storage: reading %q: %w", metaKey, err)
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
	if s.epoch == 0 {
		s.epoch = newEpoch()
		lo, hi = 1, 1
	}
	if hi < lo || hi-lo > 1<<32 {
		got.Corrupt++
		s.logger.Error("betrace: storage: its index record gives an absurd range; starting afresh", zap.Uint64("lo", lo), zap.Uint64("hi", hi))
		s.epoch, lo, hi = newEpoch(), 1, 1
	}
	for from := lo; from < hi; from += getChunk {
		to := min(from+getChunk, hi)
		ops := make([]*storage.Operation, 0, 3*(to-from))
		for seq := from; seq < to; seq++ {
			ops = append(ops, storage.GetOperation(key(kindBatch, seq)), storage.GetOperation(key(kindJudged, seq)), storage.GetOperation(key(kindSignal, seq)))
		}
		if err := s.client.Batch(ctx, ops...); err != nil {
			return got, fmt.Errorf("betrace: storage: reading records %d to %d: %w", from, to, err)
		}
		var drop []*storage.Operation
		for i, op := range ops {
			if op.Value == nil {
				continue
			}
			seq := from + uint64(i/3)
			if err := s.restoreOne(op.Key[0], seq, op.Value, eng, enqueue, &got); err != nil {
				got.Corrupt++
				drop = append(drop, storage.DeleteOperation(op.Key))
				s.logger.Warn("betrace: storage: a record is unreadable; skipped and deleted", zap.String("key", op.Key), zap.Error(err))
			}
		}
		if len(drop) > 0 {
			_ = s.client.Batch(ctx, drop...)
		}
	}
	s.corrupt.Add(uint64(got.Corrupt))
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lo, s.next, s.reserved = lo, hi, hi
	return got, s.client.Batch(ctx, s.reserve()...)
}

func (s *store) restoreOne(kind byte, seq uint64, raw []byte, eng *betrace.Engine, enqueue func(Outgoing), got *Restored) error {
	p, err := unframe(kind, s.epoch, raw)
	if err != nil {
		return err
	}
	switch kind {
	case kindBatch:
		if len(p) < 12 {
			return errCorrupt
		}
		feed, at := binary.LittleEndian.Uint32(p), binary.LittleEndian.Uint64(p[4:])
		if err := eng.Restore(feed, p[12:], time.Unix(0, int64(at)), seq); err != nil {
			return err
		}
		s.batches[seq] = int64(len(raw))
		s.bytes += int64(len(raw))
		got.Batches++
	case kindJudged:
		if len(p)%16 != 0 {
			return errCorrupt
		}
		if err := eng.RestoreJudged(p); err != nil {
			return err
		}
		s.judged = append(s.judged, seq)
		got.Judged += len(p) / 16
	case kindSignal:
		if len(p) < 9 {
			return errCorrupt
		}
		o := Outgoing{Feed: int(binary.LittleEndian.Uint32(p[1:])), N: int(binary.LittleEndian.Uint32(p[5:])), seq: seq}
		if p[0] == 1 {
			o.Spans = p[9:]
		} else {
			o.Logs = p[9:]
		}
		s.signals[seq] = struct{}{}
		got.Signals += o.N
		enqueue(o)
	}
	return nil
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
	s.pause.RLock()
	defer s.pause.RUnlock()
	rec := frame(kindBatch, s.epochNow(), binary.LittleEndian.AppendUint32(nil, uint32(feed)),
		binary.LittleEndian.AppendUint64(nil, uint64(now.UnixNano())), b)
	s.mu.Lock()
	if s.bytes+int64(len(rec)) > s.limit {
		s.mu.Unlock()
		s.notStored(now, "the storage bound is reached", nil)
		return eng.Ingest(uint32(feed), b, now)
	}
	seq := s.next
	s.next++
	// The range is moved on before the record lands in it, in the same write.
	ops := append(s.reserve(), storage.SetOperation(key(kindBatch, seq), rec))
	s.batches[seq] = int64(len(rec))
	s.bytes += int64(len(rec))
	s.mu.Unlock()
	if err := s.client.Batch(ctx, ops...); err != nil {
		s.mu.Lock()
		delete(s.batches, seq)
		s.bytes -= int64(len(rec))
		s.mu.Unlock()
		s.failures.Add(1)
		s.notStored(now, "the storage failed", err)
		return eng.Ingest(uint32(feed), b, now)
	}
	return eng.IngestStored(uint32(feed), b, now, seq)
}

func (s *store) epochNow() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.epoch
}

func (s *store) notStored(now time.Time, why string, err error) {
	n := s.unstored.Add(1)
	last := s.unstoredLogged.Load()
	if now.Unix()-last >= 60 && s.unstoredLogged.CompareAndSwap(last, now.Unix()) {
		s.logger.Warn("betrace: a batch was judged but not stored: a crash now loses its traces",
			zap.String("why", why), zap.Error(err), zap.Uint64("batches_not_stored", n),
			zap.Int64("stored_bytes", s.storedBytes()), zap.Int64("bound_bytes", s.limit))
	}
}

func (s *store) storedBytes() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bytes
}

// take pauses stored ingest, takes the signals (taken) and the journal from the engine,
// and writes them in one write: the signals and the ids of the traces that produced them
// stored, the batches no longer needed deleted. The outgoing batches come back numbered.
func (s *store) take(ctx context.Context, eng *betrace.Engine, taken func() []Outgoing) []Outgoing {
	s.pause.Lock()
	defer s.pause.Unlock()
	outs := taken()
	j, err := eng.TakeJournal()
	if err != nil {
		s.logger.Warn("betrace: storage: taking the journal failed", zap.Error(err))
	}
	s.mu.Lock()
	ops := s.retry
	s.retry = nil
	if len(j.Judged) > 0 {
		ops = append(ops, s.reserve()...)
		ops = append(ops, storage.SetOperation(key(kindJudged, s.next), frame(kindJudged, s.epoch, j.Judged)))
		s.judged = append(s.judged, s.next)
		s.next++
	}
	for i := range outs {
		o := &outs[i]
		kind := byte(0)
		body := o.Logs
		if o.Spans != nil {
			kind, body = 1, o.Spans
		}
		var head [9]byte
		head[0] = kind
		binary.LittleEndian.PutUint32(head[1:], uint32(o.Feed))
		binary.LittleEndian.PutUint32(head[5:], uint32(o.N))
		ops = append(ops, s.reserve()...)
		o.seq = s.next
		ops = append(ops, storage.SetOperation(key(kindSignal, s.next), frame(kindSignal, s.epoch, head[:], body)))
		s.signals[s.next] = struct{}{}
		s.next++
	}
	for _, seq := range j.Freed {
		if n, ok := s.batches[seq]; ok {
			delete(s.batches, seq)
			s.bytes -= n
			ops = append(ops, storage.DeleteOperation(key(kindBatch, seq)))
		}
	}
	// Judged ids are needed while an older batch is stored: a restart reads that batch,
	// and must know its traces were judged.
	oldest := s.next
	for seq := range s.batches {
		oldest = min(oldest, seq)
	}
	for len(s.judged) > 0 && s.judged[0] < oldest {
		ops = append(ops, storage.DeleteOperation(key(kindJudged, s.judged[0])))
		s.judged = s.judged[1:]
	}
	lo := oldest
	if len(s.judged) > 0 {
		lo = min(lo, s.judged[0])
	}
	for seq := range s.signals {
		lo = min(lo, seq)
	}
	if lo != s.lo {
		s.lo = lo
		ops = append(ops, storage.SetOperation(metaKey, s.meta()))
	}
	s.mu.Unlock()
	if len(ops) > 0 {
		if err := s.client.Batch(ctx, ops...); err != nil {
			s.failures.Add(1)
			s.logger.Warn("betrace: storage: writing what was judged failed; retried at the next tick", zap.Error(err))
			s.mu.Lock()
			s.retry = append(s.retry, ops...)
			s.mu.Unlock()
		}
	}
	return outs
}

// handedOn deletes a signal batch once the next consumer was given it (or it was
// dropped).
func (s *store) handedOn(ctx context.Context, seq uint64) {
	if seq == 0 {
		return
	}
	s.mu.Lock()
	delete(s.signals, seq)
	s.mu.Unlock()
	if err := s.client.Delete(ctx, key(kindSignal, seq)); err != nil {
		s.failures.Add(1)
		s.mu.Lock()
		s.retry = append(s.retry, storage.DeleteOperation(key(kindSignal, seq)))
		s.mu.Unlock()
	}
}

// close writes what is left to retry and releases the client.
func (s *store) close(ctx context.Context) error {
	s.mu.Lock()
	ops := s.retry
	s.retry = nil
	s.mu.Unlock()
	var err error
	if len(ops) > 0 {
		err = s.client.Batch(ctx, ops...)
	}
	return errors.Join(err, s.client.Close(ctx))
}
