package engine

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.etcd.io/bbolt"
)

// Hostile files for checkBolt (damage.go), each a finding of a hostile probe (made here,
// or found by FuzzDamage; the files under testdata/bolt/findings), now regression tests.
// The 1 GiB timing runs only with BETRACE_HOSTILE=1 BETRACE_HOSTILE_BIG=1.

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
	le.PutUint16(p[8:], 0x04)                     // a meta page
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

// Finding (crash): meta page 0 says 4096-byte pages, meta page 1 (at 4096, newer) says
// 8192: bbolt reads the pages 4096 bytes apart (meta 0's page size) with meta 1's tree,
// and its free-page scan, in a goroutine of its own, panicked at the first page: the
// collector died at every start. checkBolt walked the tree 8192 bytes apart and called it
// sound. Now a meta page whose page size is not the one bbolt reads with is damage; the
// salvage reads the tree with meta 1's own page size and recovers every record.
func TestHostileMetaPageSizesDiffer(t *testing.T) {
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
	d, err := checkBolt(path, true)
	if err != nil {
		t.Fatal(err)
	}
	if d.err == nil {
		out, cerr := runBoltChild(path, 20*time.Second)
		t.Fatalf("checkBolt says sound; file_storage: %s", childSignature(out, errOrNil(cerr)))
	}
	if len(d.records) != 20 || d.lost != 0 {
		t.Errorf("damage %v: %d records of 20 recovered, %d lost", d.err, len(d.records), d.lost)
	}
	// Meta page 1 claiming another page size than meta page 0, its tree still where
	// bbolt looks: bbolt reads it, but should meta page 0 ever be torn it would take
	// meta page 1's page size (bboltPageSize): damage, every record recovered.
	f = boltFileOpts(t, 4096, 20, 100)
	le.PutUint32(f[4096+16+8:], 8192)
	fixMeta(f[4096:])
	d, err = checkBolt(writeFile(t, f), true)
	if err != nil || d.err == nil || len(d.records) != 20 || d.lost != 0 {
		t.Errorf("meta pages of two page sizes: %v %v, %d records of 20, %d lost", err, d.err, len(d.records), d.lost)
	}
}

// A page size no bbolt writes for file_storage (not a power of two from 1 KiB to 64
// KiB; bbolt writes this machine's) is damage, though the file reads — as every
// record of it, salvaged.
func TestAnOddPageSizeIsDamage(t *testing.T) {
	for _, ps := range []int{512, 1 << 17} {
		d, err := checkBolt(writeFile(t, boltFileOpts(t, ps, 200, 100)), true)
		if err != nil || d.err == nil || len(d.records) != 200 || d.lost != 0 {
			t.Errorf("%d-byte pages: %v %v, %d records of 200, %d lost", ps, err, d.err, len(d.records), d.lost)
		}
	}
}

func errOrNil(err error) error {
	if err == nil {
		return fmt.Errorf("ok")
	}
	return err
}

// Finding (records lost): a file of 16 KiB pages (written on a machine of 16K or 64K
// pages) whose meta page 0 is torn: bbolt finds meta page 1 (it looks 1K, 2K, ... 16M
// in) and opens the file whole; checkBolt looked for meta page 1 only at this machine's
// page size, called the file damaged ("no valid meta page") and recovered nothing. Now it
// takes the page size as bbolt does: the file is sound, every record there.
func TestHostileForeignPageSizeTornMeta0(t *testing.T) {
	f := boltFileOpts(t, 16384, 300, 200)
	clear(f[:4096]) // meta page 0 torn
	path := writeFile(t, f)
	d, err := checkBolt(path, true)
	if err != nil {
		t.Fatal(err)
	}
	if d.err != nil || len(d.records) != 300 || d.lost != 0 {
		t.Errorf("bbolt reads all 300 records; checkBolt: %v, %d records, %d lost", d.err, len(d.records), d.lost)
	}
	if out, cerr := runBoltChild(path, 20*time.Second); cerr != nil || !strings.Contains(out, "BOLT-CHILD-OK 300 keys") {
		t.Errorf("the collector's use: %s", childSignature(out, errOrNil(cerr)))
	}
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

// Finding (out of memory): the salvage cloned every value it read, and values may
// overlap (bbolt does not mind): a 2 MiB damaged file made it allocate 1000 x 1 MiB; with
// 65535 elements and a bigger file, past any memory, at every start. Now the records
// kept come to at most the file's size; the rest are counted as lost.
func TestHostileSalvageAllocatesWithoutBound(t *testing.T) {
	f := craftLeafBomb(t, 512, 1000, 1<<20)
	path := writeFile(t, f)
	d, err := checkBounded(t, path, true, 10*time.Second, uint64(4*len(f)))
	if err != nil || d.err == nil {
		t.Fatalf("not the damaged file meant: %v %v", err, d.err)
	}
	var total int
	for k, v := range d.records {
		total += len(k) + len(v)
	}
	if total > len(f) || len(d.records) == 0 || d.lost < 1000-len(d.records) {
		t.Errorf("a %d-byte file salvaged into %d records, %d bytes, %d lost", len(f), len(d.records), total, d.lost)
	}
}

// Finding (quadratic): the salvage read a page (all of its overflow) before it checked
// whether it had seen it: a branch whose 4096 elements all name one page overflowing over
// a 16 MiB file read 64 GiB. Now the header is read first and the page skipped.
func TestHostileSalvageRereadsOnePage(t *testing.T) {
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
	start := time.Now()
	d, err := checkBounded(t, path, true, 10*time.Second, uint64(2*len(f)))
	if el := time.Since(start); err != nil || d.err == nil || el > 2*time.Second {
		t.Errorf("the salvage of a %d MiB file: %v %v, %v", len(f)>>20, err, d.err, el)
	}
}

// Finding (a sound file moved aside): checkBolt took no lock. A second collector on the
// same directory (a rolling update on one volume; a restart before the old process is
// gone) read a file bbolt was rewriting under it, saw pages of two transactions, called
// the live file damaged and renamed it from under the running collector. Now the check
// and the rename happen under bbolt's own flock, taken without waiting: a file another
// process holds is neither checked nor moved (errInUse).
func TestHostileLiveFileIsCalledDamaged(t *testing.T) {
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
	damaged, runs, moved := 0, 0, 0
	var other error
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); runs++ {
		d, err := inspectBolt(path, false, func(*boltDamage) { moved++ })
		if d.err != nil {
			damaged++
		}
		if !errors.Is(err, errInUse) && other == nil {
			other = err
		}
	}
	stop.Store(true)
	wg.Wait()
	if damaged > 0 || moved > 0 || other != nil {
		t.Errorf("a live file: %d of %d checks said damaged, %d would have moved it (%v)", damaged, runs, moved, other)
	}
	// closed, it is checked again, and sound
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if d, err := checkBolt(path, false); err != nil || d.err != nil {
		t.Errorf("the file closed: %v %v", err, d.err)
	}
}

// Finding (hang): a FIFO where the file should be: os.Open (read-only) blocked until a
// writer opened it — the collector's start hung. Now only a regular file is read (Lstat);
// anything else is left to bbolt (which opens O_RDWR, does not block, and fails) and
// never moved aside.
func TestHostileFIFOHangsTheCheck(t *testing.T) {
	path := filepath.Join(t.TempDir(), "connector_betrace_")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Skip(err)
	}
	done := make(chan error, 1)
	called := false
	go func() {
		_, err := inspectBolt(path, true, func(*boltDamage) { called = true })
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, errNotRegular) || called {
			t.Errorf("a FIFO: %v (moved aside: %v)", err, called)
		}
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

// Measure: a 1 GiB sound file, checked at the start (and salvaged, as a damaged one is).
func TestHostileOneGiBCheckTime(t *testing.T) {
	if os.Getenv("BETRACE_HOSTILE") == "" || os.Getenv("BETRACE_HOSTILE_BIG") == "" {
		t.Skip("BETRACE_HOSTILE and BETRACE_HOSTILE_BIG not set")
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

type runtimeMem struct{ total uint64 }

func (m *runtimeMem) read() {
	var s runtime.MemStats
	runtime.ReadMemStats(&s)
	m.total = s.TotalAlloc
}

// The files under testdata/bolt/findings (found by FuzzDamage, or made above), each one
// bbolt trips on — or, pagesize-16k-meta0-torn.db, one checkBolt wrongly called damaged:
//
//   - empty-leaf-already-freed.db, already-freed-page3.db: a leaf page of "default" with
//     its count zeroed. An empty leaf that is not a bucket's root: bbolt opens it, but the
//     first Delete nearby panics ("page N already freed"), storage off after every start;
//   - root-with-plain-keys-compact-panics.db: the meta page's root names a leaf of
//     "default": the root bucket holds plain keys, and bbolt.Compact dereferences nil on
//     them in file_storage's compaction goroutine (on_rebound): the collector dies;
//   - crash-page-copied.db: meta page 1, newer, has its page header's flags cleared (bbolt
//     does not look at them, checkBolt did) and its root page overwritten: checkBolt
//     checked meta 0's tree, bbolt opened meta 1's and panicked in its free-page scan;
//   - meta-page-sizes-differ.db: TestHostileMetaPageSizesDiffer;
//   - meta0-pagesize-odd-too-small.db: meta page 0 valid, with a page size bbolt uses but
//     checkBolt skipped (not a power of two);
//   - key-order-after-writes.db: a branch's key before its child's first key: sound to
//     read, but a write between the two leaves the keys out of order and bbolt panics;
//   - salvage-*.db.gz: TestHostileSalvageAllocatesWithoutBound, ...RereadsOnePage.
//
// Each must be called damaged (and be salvaged within bounds), or be sound and survive
// the collector's use (TestBoltChild).
func TestHostileFindingsReplay(t *testing.T) {
	damaged := map[string]bool{
		"already-freed-page3.db": true, "crash-page-copied.db": true, "empty-leaf-already-freed.db": true,
		"key-order-after-writes.db": true, "meta-page-sizes-differ.db": true, "meta0-pagesize-odd-too-small.db": true,
		"pagesize-16k-meta0-torn.db": false, "root-with-plain-keys-compact-panics.db": true,
		"salvage-overlapping-values.db.gz": true, "salvage-rereads-one-page.db.gz": true,
	}
	names, _ := filepath.Glob(filepath.Join("testdata", "bolt", "findings", "*.db*"))
	if len(names) != len(damaged) {
		t.Errorf("%d files under testdata/bolt/findings, %d known here", len(names), len(damaged))
	}
	for _, n := range names {
		t.Run(filepath.Base(n), func(t *testing.T) {
			want, ok := damaged[filepath.Base(n)]
			if !ok {
				t.Fatal("a finding not known here: say what it is")
			}
			var raw []byte
			if strings.HasSuffix(n, ".gz") {
				raw = readGz(t, n)
			} else {
				var err error
				if raw, err = os.ReadFile(n); err != nil {
					t.Fatal(err)
				}
			}
			path := writeFile(t, raw)
			bound := uint64(3*len(raw)) + 8<<20
			if _, err := checkBounded(t, path, false, 10*time.Second, bound); err != nil {
				t.Fatal(err)
			}
			d, err := checkBounded(t, path, true, 10*time.Second, bound)
			if err != nil {
				t.Fatal(err)
			}
			if (d.err != nil) != want {
				t.Errorf("damaged: %v, want %v", d.err, want)
			}
			if d.err == nil {
				if out, cerr := runBoltChild(path, 20*time.Second); cerr != nil {
					t.Errorf("checkBolt says sound; the collector's use: %s", childSignature(out, cerr))
				}
			}
		})
	}
}

// The other side of the findings: files bbolt writes — the seeds, and files of every
// page size bbolt may write with, after many puts and deletes (branches renamed,
// pages merged and freed, values overflowing) — are sound and read whole. (Each rule
// added for a finding is a rule no bbolt-written file breaks: a branch's key is its
// child's first key, no empty leaf below a root, only buckets in the root bucket.)
func TestFilesBboltWritesAreSound(t *testing.T) {
	for i, raw := range boltSeeds(t) {
		d, err := checkBolt(writeFile(t, raw), true)
		if err != nil || d.err != nil || d.lost != 0 || len(d.records) == 0 {
			t.Errorf("seed %d: %v %v, %d lost, %d records", i, err, d.err, d.lost, len(d.records))
		}
	}
	for _, ps := range []int{4096, 16384, 65536} {
		path := filepath.Join(t.TempDir(), "connector_betrace_")
		db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second, NoSync: true, NoFreelistSync: true,
			FreelistType: bbolt.FreelistMapType, PageSize: ps})
		if err != nil {
			t.Fatal(err)
		}
		r := rand.New(rand.NewPCG(uint64(ps), 1))
		live := map[string]bool{}
		for round := range 40 {
			if err := db.Update(func(tx *bbolt.Tx) error {
				b, err := tx.CreateBucketIfNotExists(fileStorageBucket)
				if err != nil {
					return err
				}
				for range 100 {
					k := key(kindBatch, r.Uint64N(2000))
					if round%4 == 3 || r.IntN(3) == 0 {
						live[k] = false
						if err := b.Delete([]byte(k)); err != nil {
							return err
						}
						continue
					}
					live[k] = true
					if err := b.Put([]byte(k), make([]byte, r.IntN(3*ps))); err != nil {
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
		n := 0
		for _, ok := range live {
			n += boolInt(ok)
		}
		d, err := checkBolt(path, true)
		if err != nil || d.err != nil || d.lost != 0 || len(d.records) != n {
			t.Errorf("%d-byte pages: %v %v, %d lost, %d records of %d", ps, err, d.err, d.lost, len(d.records), n)
		}
	}
}

// file_storage hashes a file's name whenever opening it fails with "file name too
// long" — a name past the file system's limit, or a path past the system's — and so
// does fileStoragePath, not only for names over 255 bytes.
func TestTheHashedFileNameIsFound(t *testing.T) {
	dir := t.TempDir()
	short := "connector_betrace_"
	if got := fileStoragePath(dir, short); got != filepath.Join(dir, short) {
		t.Errorf("a short name: %s", got)
	}
	hashed := func(name string) string {
		sum := sha256.Sum256([]byte(name))
		return filepath.Join(dir, hex.EncodeToString(sum[:]))
	}
	long := "connector_betrace_" + strings.Repeat("x", 300)
	if got := fileStoragePath(dir, long); got != hashed(long) {
		t.Errorf("a name over 255 bytes: %s", got)
	}
	// a name of 200 bytes, in a directory whose path takes it past PATH_MAX (4096)
	deep := dir
	for len(deep) < 3950 {
		deep = filepath.Join(deep, strings.Repeat("d", 50))
	}
	if err := os.MkdirAll(deep, 0o700); err != nil {
		t.Skip(err)
	}
	mid := "connector_betrace_" + strings.Repeat("y", 182)
	sum := sha256.Sum256([]byte(mid))
	if got, want := fileStoragePath(deep, mid), filepath.Join(deep, hex.EncodeToString(sum[:])); got != want {
		t.Errorf("a path over PATH_MAX (%d bytes): not hashed", len(filepath.Join(deep, mid)))
	}
}
