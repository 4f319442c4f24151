package engine

import (
	"context"
	"encoding/binary"
	"errors"
	"math/rand"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/extension/xextension/storage"
	"go.uber.org/zap"
)

// The storage file damaged at the bbolt level, as a disk full mid-write, a bad copy or a
// torn page leaves it: the component starts, gives the signals of what is readable, and
// counts the rest (docs/deploy.md, "Nothing lost when a collector dies").

// damageFile damages the bbolt file at path.
func damageFile(t *testing.T, path, how string, seed int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	size, r := fi.Size(), rand.New(rand.NewSource(seed))
	switch how {
	case "cut to half":
		err = f.Truncate(size / 2)
	case "cut to 4 KiB":
		err = f.Truncate(4096)
	case "emptied":
		err = f.Truncate(0)
	case "a page of garbage":
		garbage := make([]byte, 4096)
		r.Read(garbage)
		_, err = f.WriteAt(garbage, size/4096/2*4096)
	case "meta pages zeroed":
		_, err = f.WriteAt(make([]byte, 2*4096), 0)
	case "bytes flipped":
		b := make([]byte, 1)
		for range 64 {
			at := r.Int63n(size)
			if _, err = f.ReadAt(b, at); err != nil {
				break
			}
			b[0] ^= 1 << r.Intn(8)
			if _, err = f.WriteAt(b, at); err != nil {
				break
			}
		}
	default:
		t.Fatalf("no damage %q", how)
	}
	if err != nil {
		t.Fatal(err)
	}
}

func TestADamagedStorageFileStartsAndRecoversWhatIsReadable(t *testing.T) {
	const stored = 200
	cases := []struct {
		how  string
		seed int64
		// at least this many traces recovered (of 200); counted: whether damage is counted
		recovered int
		counted   bool
	}{
		// The latest root page is among the last written: nothing is reachable.
		{"cut to half", 0, 0, true},
		{"cut to 4 KiB", 0, 0, true},
		// bbolt takes an empty file for a new one: nothing to recover, nothing to tell.
		{"emptied", 0, 0, false},
		{"a page of garbage", 1, 150, true},
		// No meta page: the tree's root is unknown.
		{"meta pages zeroed", 0, 0, true},
		// 64 bits flipped over 32 pages: seed 2 hits a branch page.
		{"bytes flipped", 1, 150, true},
		{"bytes flipped", 2, 50, true},
		{"bytes flipped", 3, 150, true},
	}
	for _, tc := range cases {
		t.Run(tc.how, func(t *testing.T) {
			dir, c := t.TempDir(), &collected{}
			s := startStored(t, dir, time.Unix(1_700_000_000, 0), c, Config{})
			for n := 1; n <= stored; n++ {
				violate(t, s.Runner, byte(n))
			}
			at := s.clock.Now()
			path, ok := fileStorageFile(s.ext, component.KindConnector, component.MustNewID("betrace"))
			if !ok {
				t.Fatal("the file_storage file is not found")
			}
			s.crash(t)
			damageFile(t, path, tc.how, tc.seed)

			s = startStored(t, dir, at.Add(10*time.Millisecond), c, Config{})
			unreadable := s.store.corrupt.Load()
			violate(t, s.Runner, 255) // input resumes: what was recovered is back in the engine
			recovered := int(s.Counters().HeldTraces) - 1
			t.Logf("%d of %d traces recovered, %d counted unreadable", recovered, stored, unreadable)
			if recovered < tc.recovered || recovered > stored {
				t.Errorf("%d traces recovered, want at least %d", recovered, tc.recovered)
			}
			if tc.counted && unreadable == 0 {
				t.Error("the damage is not counted in storage_records_unreadable")
			}
			aside, _ := filepath.Glob(path + ".damaged-*")
			if tc.counted && len(aside) != 1 {
				t.Errorf("the damaged file is kept aside: %v", aside)
			}
			for _, a := range aside {
				if s.logs.FilterField(zap.String("damaged_file", a)).Len() != 1 {
					t.Errorf("the damaged file %s is not named in an error log line", a)
				}
			}
			s.advance(t, 3*idle)
			waitDelivered(t, c, recovered+1) // each recovered trace gives its signal
			if got := s.store.unstored.Load() + s.store.failures.Load(); got != 0 {
				t.Errorf("the new file stores batches: %d not stored or failed", got)
			}
			s.handedOn(t)
			s.finish(t)

			// The next start reads the new file, sound.
			s = startStored(t, dir, s.clock.Now().Add(time.Second), c, Config{})
			if got := s.store.corrupt.Load(); got != 0 {
				t.Errorf("the new file is sound: %d unreadable", got)
			}
			s.finish(t)
		})
	}
}

func TestTheStorageFileIsFound(t *testing.T) {
	dir, c := t.TempDir(), &collected{}
	s := startStored(t, dir, time.Unix(1_700_000_000, 0), c, Config{})
	path, ok := fileStorageFile(s.ext, component.KindConnector, component.MustNewID("betrace"))
	if !ok {
		t.Fatal("file_storage's directory is not where it was in its configuration (a contrib upgrade?): damaged files are no longer checked")
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("the component's file is not %s: %v", path, err)
	}
	// While the component has it open, bbolt's lock keeps the check off it.
	if d, err := checkBolt(path, false); !errors.Is(err, errInUse) || d.err != nil {
		t.Errorf("a file in use is not checked: %v %v", err, d.err)
	}
	s.finish(t)
	if d, err := checkBolt(path, true); err != nil || d.err != nil || d.lost != 0 || d.records[metaKey] == nil {
		t.Errorf("a sound file reads whole: %v %v, %d lost, %d records", err, d.err, d.lost, len(d.records))
	}
}

func TestALostIndexIsRebuiltFromTheRecords(t *testing.T) {
	const epoch = 7
	recs := map[string][]byte{
		key(kindBatch, 5):  frame(kindBatch, epoch, make([]byte, 24)),
		key(kindSpans, 5):  {1, 2, 3},
		key(kindSignal, 9): frame(kindSignal, epoch, make([]byte, 9)),
		key(kindBatch, 2):  frame(kindBatch, 3, make([]byte, 24)), // another epoch's
	}
	if !rebuildMeta(recs) {
		t.Fatal("not rebuilt")
	}
	p, err := unframe(kindMeta, epoch, recs[metaKey])
	if err != nil || binary.LittleEndian.Uint64(p) != 5 || binary.LittleEndian.Uint64(p[8:]) != 10 {
		t.Errorf("the index covers 5 to 10 in epoch %d: %v %v", epoch, p, err)
	}
	if rebuildMeta(recs) {
		t.Error("a readable index is kept")
	}
}

// panicking is a storage client that panics, as bbolt does on a page torn while the
// collector runs.
type panicking struct{ storage.Client }

func (panicking) Batch(context.Context, ...*storage.Operation) error { panic("a torn page") }

func TestAStoragePanicIsContained(t *testing.T) {
	dir, c := t.TempDir(), &collected{}
	s := startStored(t, dir, time.Unix(1_700_000_000, 0), c, Config{})
	real := s.store.client
	s.store.client = guard(panicking{real})
	violate(t, s.Runner, 1) // its write panics: judged all the same, counted
	violate(t, s.Runner, 2)
	if got := s.store.failures.Load(); got != 2 {
		t.Errorf("both writes failed: %d", got)
	}
	s.advance(t, idle)
	waitDelivered(t, c, 2)
	s.store.client = real
	s.finish(t)
}
