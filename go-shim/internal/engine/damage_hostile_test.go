package engine

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"compress/gzip"
	"io"
	"runtime"

	"go.etcd.io/bbolt"
)

// Hand-made hostile files for checkBolt (damage.go). Each test here reproduces a finding:
// it FAILS while the finding stands. They run with BETRACE_HOSTILE=1 (so that the package's
// tests stay green until damage.go is fixed):
//
//	BETRACE_HOSTILE=1 go test -run 'TestHostile' -v ./internal/engine/

func hostile(t *testing.T) {
	if os.Getenv("BETRACE_HOSTILE") == "" {
		t.Skip("BETRACE_HOSTILE not set")
	}
}

// boltFileOpts writes a bbolt file as file_storage does (its options), with n records of
// size `size` in "default", and returns its bytes.
func boltFileOpts(t *testing.T, pageSize, n, size int) []byte {
	t.Helper()
	path := filepath.Join(t.TempDir(), "db")
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second, NoSync: true, NoFreelistSync: true,
		FreelistType: bbolt.FreelistMapType, PageSize: pageSize})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; {
		if err := db.Update(func(tx *bbolt.Tx) error {
			b, err := tx.CreateBucketIfNotExists(fileStorageBucket)
			if err != nil {
				return err
			}
			for j := 0; j < 200 && i < n; j, i = j+1, i+1 {
				if err := b.Put([]byte(key(kindBatch, uint64(i+1))), bytes.Repeat([]byte{byte(i)}, size)); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// putMeta writes a valid meta page at off.
func putMeta(f []byte, off int, pageSize uint32, root, pgid, txid uint64) {
	le := binary.LittleEndian
	p := f[off:]
	clear(p[:16+64])
	le.PutUint64(p, uint64(off)/uint64(pageSize)) // page id (bbolt does not look)
	le.PutUint16(p[8:], boltMetaPage)
	m := p[16:]
	le.PutUint32(m, boltMagic)
	le.PutUint32(m[4:], boltVersion)
	le.PutUint32(m[8:], pageSize)
	le.PutUint64(m[16:], root)
	le.PutUint64(m[32:], noFreelist)
	le.PutUint64(m[40:], pgid)
	le.PutUint64(m[48:], txid)
	fixMeta(p)
}

func writeFile(t *testing.T, raw []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "connector_betrace_")
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// Finding: the meta page bbolt uses has a page size of its own, which checkBolt uses to
// find the pages, while bbolt finds them with the page size of meta page 0. A file whose
// page 0 says 4096 and whose page 1 (newer) says 8192: checkBolt walks an 8192-byte-page
// tree, sound; bbolt looks for the same page ids 4096 bytes apart, and its free-page scan
// (a goroutine of its own) panics at the first: the collector dies at every start.
func TestHostileMetaPageSizesDiffer(t *testing.T) {
	hostile(t)
	d8 := boltFileOpts(t, 8192, 20, 100) // a sound file of 8192-byte pages
	var m [64]byte
	copy(m[:], d8[16:16+64])
	if binary.LittleEndian.Uint64(d8[8192+16+48:]) > binary.LittleEndian.Uint64(m[48:]) {
		copy(m[:], d8[8192+16:8192+16+64])
	}
	le := binary.LittleEndian
	root, pgid, txid := le.Uint64(m[16:]), le.Uint64(m[40:]), le.Uint64(m[48:])
	f := bytes.Clone(d8)
	putMeta(f, 0, 4096, 2, 3, 1)             // page 0: 4096-byte pages, an old transaction
	putMeta(f, 4096, 8192, root, pgid, txid) // page 1 (at 4096): the 8192-byte file's meta, newer
	path := writeFile(t, f)
	_ = os.WriteFile(filepath.Join("testdata", "bolt", "findings", "meta-page-sizes-differ.db"), f, 0o644)
	d, err := checkBolt(path, true)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("checkBolt: damage %v, %d records", d.err, len(d.records))
	out, cerr := runBoltChild(path, 20*time.Second)
	t.Logf("the collector's use: %v [%s]", cerr, childSignature(out, errOrNil(cerr)))
	if d.err == nil && cerr != nil {
		t.Errorf("checkBolt says sound; file_storage: %s", childSignature(out, cerr))
	}
}

func errOrNil(err error) error {
	if err == nil {
		return fmt.Errorf("ok")
	}
	return err
}

// Finding: a file of 16 KiB pages (written on an arm64 machine with 16K or 64K pages, or
// with PageSize set) whose meta page 0 is torn: bbolt finds meta page 1 (it tries 1K, 2K,
// ..., 16M) and opens it whole; checkBolt looks for page 1 only at the OS page size
// (4096 here), calls it damaged ("no valid meta page") and salvages nothing: every record
// is lost. The same on a 64K-page machine for an ordinary 4096-page file moved there.
func TestHostileForeignPageSizeTornMeta0(t *testing.T) {
	hostile(t)
	f := boltFileOpts(t, 16384, 300, 200)
	clear(f[:4096]) // meta page 0 torn
	path := writeFile(t, f)
	_ = os.WriteFile(filepath.Join("testdata", "bolt", "findings", "pagesize-16k-meta0-torn.db"), f, 0o644)
	d, err := checkBolt(path, true)
	if err != nil {
		t.Fatal(err)
	}
	out, cerr := runBoltChild(path, 20*time.Second)
	t.Logf("checkBolt: damage %v, %d records salvaged; the collector's use: %v %s", d.err, len(d.records), cerr, strings.TrimSpace(lastLine(out, "BOLT-CHILD")))
	if cerr == nil && len(d.records) < 300 {
		t.Errorf("bbolt reads all 300 records; checkBolt (%v) recovers %d", d.err, len(d.records))
	}
}

func lastLine(out, prefix string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}

// craftLeafBomb writes a damaged file (so that it is salvaged) whose "default" bucket is
// one leaf page, overflowing over the whole file, with `count` elements: distinct 18-byte
// keys, each value the same `vsize` bytes of the page. Each is cloned by the salvage.
func craftLeafBomb(t *testing.T, pages, count, vsize int) []byte {
	const ps = 4096
	le := binary.LittleEndian
	f := make([]byte, pages*ps)
	putMeta(f, 0, ps, 2, uint64(pages), 2)
	// page 1: a torn meta (invalid); page 2: root bucket leaf with "default" -> page 3
	// and "x", a bucket whose root page is out of range (the damage).
	p := f[2*ps:]
	le.PutUint64(p, 2)
	le.PutUint16(p[8:], boltLeaf)
	le.PutUint16(p[10:], 2)
	// element 0: "default", value: bucket header root=3
	e := p[16:]
	le.PutUint32(e, boltBucketFlag)
	le.PutUint32(e[4:], 64-16)
	le.PutUint32(e[8:], 7)
	le.PutUint32(e[12:], 16)
	copy(p[64:], "default")
	le.PutUint64(p[64+7:], 3)
	e = p[32:]
	le.PutUint32(e, boltBucketFlag)
	le.PutUint32(e[4:], 128-32)
	le.PutUint32(e[8:], 1)
	le.PutUint32(e[12:], 16)
	copy(p[128:], "x")
	le.PutUint64(p[129:], 1<<40) // the damage: a root far past the file
	// page 3: the leaf, overflowing to the end
	p = f[3*ps:]
	le.PutUint64(p, 3)
	le.PutUint16(p[8:], boltLeaf)
	le.PutUint16(p[10:], uint16(count))
	le.PutUint32(p[12:], uint32(pages-4))
	keys := 16 + count*16
	for i := range count {
		at := 16 + i*16
		k := []byte(key(kindBatch, uint64(i+1)))
		kat := keys + i*18
		copy(p[kat:], k)
		le.PutUint32(p[at+4:], uint32(kat-at))
		le.PutUint32(p[at+8:], 18)
		le.PutUint32(p[at+12:], uint32(vsize))
		// the value follows the key: keep all values inside the page
		if kat+18+vsize > len(p) {
			t.Fatalf("value past the page: %d", kat+18+vsize-len(p))
		}
	}
	return f
}

// Finding: the salvage clones every value it reads, and values may overlap (bbolt does
// not mind). A 2 MiB damaged file makes the salvage allocate count*vsize bytes: here
// 1000 x 1 MiB = 1 GiB; with 65535 elements (a page's count) and a bigger file, far past
// any memory: "fatal error: out of memory" or the OOM killer — no recover — at every start.
func TestHostileSalvageAllocatesWithoutBound(t *testing.T) {
	hostile(t)
	f := craftLeafBomb(t, 512, 1000, 1<<20)
	path := writeFile(t, f)
	_ = writeGzFile(filepath.Join("testdata", "bolt", "findings", "salvage-overlapping-values.db.gz"), f)
	start := time.Now()
	d, err := checkBounded(t, path, true, time.Minute, 1<<62)
	t.Logf("damage %v; %d records, %v", d.err, len(d.records), time.Since(start))
	var total int
	for _, v := range d.records {
		total += len(v)
	}
	if err != nil || d.err == nil {
		t.Fatalf("not the damaged file meant: %v %v", err, d.err)
	}
	if total > 8*len(f) {
		t.Errorf("a %d-byte file salvaged into %d bytes of records (%dx)", len(f), total, total/len(f))
	}
}

func writeGzFile(path string, raw []byte) error {
	var b bytes.Buffer
	w := newGz(&b)
	_, _ = w.Write(raw)
	_ = w.Close()
	return os.WriteFile(path, b.Bytes(), 0o644)
}

// Finding: the salvage reads a page (all of its overflow) before it checks whether it was
// seen: a branch whose elements all name one page overflowing over the file reads the
// file once per element. 4096 elements over a 16 MiB file: 64 GiB read and allocated.
func TestHostileSalvageRereadsOnePage(t *testing.T) {
	hostile(t)
	const ps, pages, count = 4096, 4096, 4096
	le := binary.LittleEndian
	f := craftLeafBomb(t, pages, 1, 16)
	// "default" -> page 3, now a branch (overflowing to page 43: 4096 elements of 16
	// bytes, keys after) whose elements all name page 50; page 50: a leaf overflowing to the
	// end of the file.
	p := f[3*ps:]
	clear(p[:48*ps])
	le.PutUint64(p, 3)
	le.PutUint16(p[8:], boltBranch)
	le.PutUint16(p[10:], count)
	le.PutUint32(p[12:], 40)
	keys := 16 + count*16
	for i := range count {
		at, kat := 16+i*16, keys+i*18
		copy(p[kat:], key(kindBatch, uint64(i+1)))
		le.PutUint32(p[at:], uint32(kat-at))
		le.PutUint32(p[at+4:], 18)
		le.PutUint64(p[at+8:], 50)
	}
	p = f[50*ps:]
	le.PutUint64(p, 50)
	le.PutUint16(p[8:], boltLeaf)
	le.PutUint32(p[12:], uint32(pages-51))
	path := writeFile(t, f)
	_ = writeGzFile(filepath.Join("testdata", "bolt", "findings", "salvage-rereads-one-page.db.gz"), f)
	start := time.Now()
	var before, after runtimeMem
	before.read()
	d, err := checkBolt(path, true)
	after.read()
	el := time.Since(start)
	t.Logf("damage %v, %d lost; %v, %d MiB allocated for a %d MiB file", errOr(d.err, err), d.lost, el, (after.total-before.total)>>20, len(f)>>20)
	if el > 10*time.Second || after.total-before.total > uint64(64*len(f)) {
		t.Errorf("the salvage of a %d MiB file takes %v and allocates %d MiB", len(f)>>20, el, (after.total-before.total)>>20)
	}
}

func errOr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// Finding: a FIFO where the file should be: os.Open (read-only) blocks until a writer
// opens it — the collector's start hangs, never to finish. (bbolt opens O_RDWR, which
// does not block on a FIFO, and fails.)
func TestHostileFIFOHangsTheCheck(t *testing.T) {
	hostile(t)
	path := filepath.Join(t.TempDir(), "connector_betrace_")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Skip(err)
	}
	done := make(chan error, 1)
	go func() { _, err := checkBolt(path, false); done <- err }()
	select {
	case err := <-done:
		t.Logf("returned: %v", err)
	case <-time.After(3 * time.Second):
		// unblock it
		w, _ := os.OpenFile(path, os.O_WRONLY, 0)
		if w != nil {
			w.Close()
		}
		<-done
		t.Error("checkBolt on a FIFO blocks (the start hangs)")
	}
}

// Finding: checkBolt takes no lock. A second collector on the same directory (a rolling
// update on one volume; a restart before the old process is gone), whose file_storage
// client is writing: checkBolt reads a file bbolt is rewriting under it, sees pages of two
// transactions, calls the live file damaged, and renames it out from under the running
// collector (which writes on into the renamed file). bbolt itself would have waited for
// its flock (Timeout) and failed.
func TestHostileLiveFileIsCalledDamaged(t *testing.T) {
	hostile(t)
	path := filepath.Join(t.TempDir(), "connector_betrace_")
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second, NoSync: true, NoFreelistSync: true, FreelistType: bbolt.FreelistMapType})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; !stop.Load(); i++ {
			_ = db.Update(func(tx *bbolt.Tx) error {
				b, _ := tx.CreateBucketIfNotExists(fileStorageBucket)
				for j := range 20 {
					k := []byte(key(kindBatch, uint64((i*20+j)%3000)))
					if i%2 == 0 {
						_ = b.Put(k, bytes.Repeat([]byte{byte(i)}, 300))
					} else {
						_ = b.Delete(k)
					}
				}
				return nil
			})
		}
	}()
	damaged, runs := 0, 0
	var first error
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); runs++ {
		d, err := checkBolt(path, false)
		if err == nil && d.err != nil {
			damaged++
			if first == nil {
				first = d.err
			}
		}
	}
	stop.Store(true)
	wg.Wait()
	t.Logf("%d of %d checks of a live, sound file said damaged (first: %v)", damaged, runs, first)
	if damaged > 0 {
		t.Errorf("a live file is called damaged (and would be moved aside): %d of %d", damaged, runs)
	}
}

// Measure: a 1 GiB sound file, checked at the start (and salvaged, as a damaged one is).
func TestHostileOneGiBCheckTime(t *testing.T) {
	hostile(t)
	if os.Getenv("BETRACE_HOSTILE_BIG") == "" {
		t.Skip("BETRACE_HOSTILE_BIG not set")
	}
	path := filepath.Join(t.TempDir(), "connector_betrace_")
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second, NoSync: true, NoFreelistSync: true, FreelistType: bbolt.FreelistMapType})
	if err != nil {
		t.Fatal(err)
	}
	v := bytes.Repeat([]byte{7}, 16<<10)
	for i := 0; i < (1<<30)/len(v); {
		if err := db.Update(func(tx *bbolt.Tx) error {
			b, _ := tx.CreateBucketIfNotExists(fileStorageBucket)
			for j := 0; j < 1000 && i < (1<<30)/len(v); j, i = j+1, i+1 {
				if err := b.Put([]byte(key(kindSpans, uint64(i))), v); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	_ = db.Close()
	fi, _ := os.Stat(path)
	for _, salvage := range []bool{false, true} {
		var before, after runtimeMem
		before.read()
		start := time.Now()
		d, err := checkBolt(path, salvage)
		after.read()
		t.Logf("%d MiB file, salvage %v: %v (%v %v), %d records, %d MiB allocated", fi.Size()>>20, salvage, time.Since(start), err, d.err, len(d.records), (after.total-before.total)>>20)
	}
	start := time.Now()
	db, err = bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second, NoSync: true, NoFreelistSync: true, FreelistType: bbolt.FreelistMapType})
	t.Logf("bbolt.Open (its own free-page scan): %v %v", time.Since(start), err)
	if db != nil {
		db.Close()
	}
}

var _ = context.Background

type runtimeMem struct{ total uint64 }

func (m *runtimeMem) read() {
	var s runtime.MemStats
	runtime.ReadMemStats(&s)
	m.total = s.TotalAlloc
}

func newGz(w io.Writer) *gzip.Writer { z, _ := gzip.NewWriterLevel(w, gzip.BestCompression); return z }

// The files under testdata/bolt/findings (found by FuzzDamage, or made above): checkBolt
// calls each sound, and the collector's use of it (TestBoltChild) fails:
//
//   - empty-leaf-already-freed.db, already-freed-page3.db: a leaf page of "default" with
//     its count zeroed (one u16 of a page header). An empty leaf that is not a bucket's
//     root: bbolt opens it and walks it, but the first Delete nearby panics ("page N
//     already freed", in the caller: guarded turns it into a broken client, the
//     component runs without storage, and again after every restart);
//   - root-with-plain-keys-compact-panics.db: the meta page's root names a leaf of
//     "default" (a stale page, as a lost write leaves with fsync off, or a valid meta
//     with another root): the root bucket holds plain keys; file_storage creates
//     "default" afresh, and bbolt.Compact dereferences nil on the plain keys — in
//     file_storage's compaction goroutine (compaction.on_rebound) the collector dies;
//   - crash-page-copied.db: meta page 1, newer, has its page header's flags cleared
//     (bbolt does not look at them: the meta is valid to bbolt, not to checkBolt), and
//     its root page is overwritten: checkBolt checks the tree of meta 0, bbolt opens
//     meta 1's and its free-page scan panics in a goroutine of its own: the collector
//     dies at every start;
//   - meta-page-sizes-differ.db: TestHostileMetaPageSizesDiffer.
func TestHostileFindingsReplay(t *testing.T) {
	hostile(t)
	names, _ := filepath.Glob(filepath.Join("testdata", "bolt", "findings", "*.db"))
	for _, n := range names {
		t.Run(filepath.Base(n), func(t *testing.T) {
			raw, err := os.ReadFile(n)
			if err != nil {
				t.Fatal(err)
			}
			path := writeFile(t, raw)
			d, err := checkBounded(t, path, true, 30*time.Second, 1<<34)
			if err != nil || d.err != nil {
				t.Logf("damaged: %v %v", err, d.err)
				return
			}
			out, cerr := runBoltChild(path, 20*time.Second)
			if cerr != nil {
				t.Errorf("checkBolt says sound; the collector's use: %s", childSignature(out, cerr))
			}
		})
	}
}
