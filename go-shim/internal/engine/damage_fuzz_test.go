package engine

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/open-telemetry/opentelemetry-collector-contrib/extension/storage/filestorage"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/extension/extensiontest"
	"go.opentelemetry.io/collector/extension/xextension/storage"
)

// Hostile probing of checkBolt (damage.go): for every input the checker must neither
// panic, hang nor allocate absurdly, and every file it calls sound must survive what the
// collector does with it (file_storage's GetClient, our Walk/Get/Set/Delete/Batch, and
// file_storage's compaction) — run in a child process, since bbolt panics in goroutines
// of its own.

// Seeds are real files written by the component (startStored + crash), gzipped under
// testdata/bolt/. BETRACE_WRITE_BOLT_SEEDS=1 go test -run TestWriteBoltSeeds writes them.
const boltSeedDir = "testdata/bolt"

func TestWriteBoltSeeds(t *testing.T) {
	if os.Getenv("BETRACE_WRITE_BOLT_SEEDS") == "" {
		t.Skip("BETRACE_WRITE_BOLT_SEEDS not set")
	}
	write := func(name string, rounds int, judge bool) {
		dir, c := t.TempDir(), &collected{}
		at := time.Unix(1_700_000_000, 0)
		s := startStored(t, dir, at, c, Config{})
		for r := range rounds {
			for n := 1; n <= 250; n++ {
				violate(t, s.Runner, byte(n))
			}
			if judge && r < rounds-1 {
				s.advance(t, 3*idle)
				s.handedOn(t)
			}
		}
		path, ok := fileStorageFile(s.ext, component.KindConnector, component.MustNewID("betrace"))
		if !ok {
			t.Fatal("no file")
		}
		s.crash(t)
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		d, err := checkBolt(path, true)
		if err != nil || d.err != nil {
			t.Fatalf("%s: not sound: %v %v", name, err, d.err)
		}
		writeGz(t, filepath.Join(boltSeedDir, name+".db.gz"), raw)
		t.Logf("%s: %d bytes, %d records", name, len(raw), len(d.records))
	}
	if err := os.MkdirAll(boltSeedDir, 0o755); err != nil {
		t.Fatal(err)
	}
	{
		// a handful of records: one leaf
		dir, c := t.TempDir(), &collected{}
		s := startStored(t, dir, time.Unix(1_700_000_000, 0), c, Config{})
		for n := 1; n <= 3; n++ {
			violate(t, s.Runner, byte(n))
		}
		path, _ := fileStorageFile(s.ext, component.KindConnector, component.MustNewID("betrace"))
		s.crash(t)
		raw, _ := os.ReadFile(path)
		writeGz(t, filepath.Join(boltSeedDir, "few.db.gz"), raw)
	}
	write("hundreds", 1, false) // 250 traces: branch pages
	write("deleted", 4, true)   // 3 rounds judged and deleted, one held: many free pages
	write("thousand", 4, false) // 1000 traces held: a deeper tree
}

func writeGz(t testing.TB, path string, raw []byte) {
	var b bytes.Buffer
	z, _ := gzip.NewWriterLevel(&b, gzip.BestCompression)
	_, _ = z.Write(raw)
	_ = z.Close()
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readGz(t testing.TB, path string) []byte {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	z, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(z)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// boltSeeds reads the seed files (in name order).
func boltSeeds(t testing.TB) [][]byte {
	names, _ := filepath.Glob(filepath.Join(boltSeedDir, "*.db.gz"))
	var seeds [][]byte
	for _, n := range names {
		seeds = append(seeds, readGz(t, n))
	}
	if len(seeds) == 0 {
		t.Fatal("no seeds under " + boltSeedDir)
	}
	return seeds
}

// mutate applies a little program to a copy of a seed file: each op is 1 byte of opcode
// and a few bytes of operands, aimed at page structure rather than at random bytes.
func mutate(file []byte, prog []byte) []byte {
	f := bytes.Clone(file)
	const ps = 4096
	le := binary.LittleEndian
	rd := func(n int) uint64 {
		var b [8]byte
		k := copy(b[:n], prog)
		prog = prog[k:]
		return le.Uint64(b[:])
	}
	pages := func() uint64 { return uint64(max(len(f)/ps, 1)) }
	for steps := 0; len(prog) > 0 && steps < 64; steps++ {
		op := prog[0]
		prog = prog[1:]
		switch op % 12 {
		case 0: // flip a bit anywhere
			if len(f) > 0 {
				at := rd(4) % uint64(len(f))
				f[at] ^= 1 << (rd(1) % 8)
			}
		case 1: // write a byte in a page's header or first elements
			at := (rd(2)%pages())*ps + rd(1)%64
			if at < uint64(len(f)) {
				f[at] = byte(rd(1))
			}
		case 2: // write a u16 (count, flags) in a page header
			at := (rd(2)%pages())*ps + 8 + 2*(rd(1)%4)
			if at+2 <= uint64(len(f)) {
				le.PutUint16(f[at:], uint16(rd(2)))
			}
		case 3: // write a u32 (overflow; an element's pos/ksize/vsize)
			at := (rd(2)%pages())*ps + 12 + 4*(rd(1)%16)
			if at+4 <= uint64(len(f)) {
				le.PutUint32(f[at:], uint32(rd(4)))
			}
		case 4: // a branch element's child: another page, or a near one
			at := (rd(2)%pages())*ps + 16 + 16*(rd(1)%32) + 8
			if at+8 <= uint64(len(f)) {
				v := rd(2) % (pages() + 4)
				le.PutUint64(f[at:], v)
			}
		case 5: // truncate to whole pages, or anywhere
			n := rd(4)
			if rd(1)%2 == 0 {
				n = (n % (pages() + 1)) * ps
			}
			f = f[:min(uint64(len(f)), n%(uint64(len(f))+1))]
		case 6: // copy one page over another (a torn write, a misdirected one)
			a, b := rd(2)%pages(), rd(2)%pages()
			if (a+1)*ps <= uint64(len(f)) && (b+1)*ps <= uint64(len(f)) {
				copy(f[b*ps:(b+1)*ps], f[a*ps:(a+1)*ps])
			}
		case 7: // zero a page, or half of one
			a := rd(2) % pages()
			n := uint64(ps)
			if rd(1)%2 == 0 {
				n /= 2
			}
			if (a+1)*ps <= uint64(len(f)) {
				clear(f[a*ps : a*ps+n])
			}
		case 8: // rewrite a meta page's field and fix its checksum (a valid, wrong meta)
			m := rd(1) % 2 * ps
			fld := 8 + 8*(rd(1)%6) // pageSize(u32 @8), flags, root @16, seq, freelist @32, pgid @40, txid @48
			if m+16+64 <= uint64(len(f)) {
				v := rd(8)
				if rd(1)%2 == 0 {
					v %= pages() + 2
				}
				if fld == 8 {
					le.PutUint32(f[m+16+8:], uint32(v))
				} else {
					le.PutUint64(f[m+16+fld:], v)
				}
				fixMeta(f[m:])
			}
		case 9: // append pages (garbage or a copy)
			a := rd(2) % pages()
			if len(f) < 8<<20 && (a+1)*ps <= uint64(len(f)) {
				f = append(f, f[a*ps:(a+1)*ps]...)
			}
		case 10: // splice: a run of bytes moved within the file
			if len(f) > 0 {
				a, b, n := rd(4)%uint64(len(f)), rd(4)%uint64(len(f)), rd(2)
				n = min(n, uint64(len(f))-a, uint64(len(f))-b)
				copy(f[b:b+n], f[a:a+n])
			}
		case 11: // a leaf element's flags: a bucket, or not
			at := (rd(2)%pages())*ps + 16 + 16*(rd(1)%32)
			if at+4 <= uint64(len(f)) {
				le.PutUint32(f[at:], uint32(rd(1)%4))
			}
		}
	}
	return f
}

// fixMeta recomputes the checksum of the meta page at the start of p.
func fixMeta(p []byte) {
	m := p[16:]
	binary.LittleEndian.PutUint64(m[56:], fnv64a(m[:56]))
}

// checkBounded runs checkBolt on path in this process, failing on a panic, on taking
// longer than limit, or on allocating more than maxAlloc bytes.
func checkBounded(t testing.TB, path string, salvage bool, limit time.Duration, maxAlloc uint64) (boltDamage, error) {
	t.Helper()
	type res struct {
		d     boltDamage
		err   error
		panic any
		stack []byte
		alloc uint64
	}
	// One check at a time (the tests that run in parallel, FuzzDamage's inputs, run their
	// children beside it): what it allocates is measured process-wide.
	checkMu.Lock()
	defer checkMu.Unlock()
	ch := make(chan res, 1)
	go func() {
		var r res
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		defer func() {
			if p := recover(); p != nil {
				r.panic, r.stack = p, debug.Stack()
			}
			runtime.ReadMemStats(&after)
			r.alloc = after.TotalAlloc - before.TotalAlloc
			ch <- r
		}()
		r.d, r.err = checkBolt(path, salvage)
	}()
	select {
	case r := <-ch:
		if r.panic != nil {
			t.Fatalf("checkBolt(salvage=%v) panicked: %v\n%s", salvage, r.panic, r.stack)
		}
		if r.alloc > maxAlloc {
			t.Fatalf("checkBolt(salvage=%v) allocated %d bytes (bound %d)", salvage, r.alloc, maxAlloc)
		}
		return r.d, r.err
	case <-time.After(limit):
		buf := make([]byte, 1<<20)
		t.Fatalf("checkBolt(salvage=%v) still running after %v\n%s", salvage, limit, buf[:runtime.Stack(buf, true)])
	}
	panic("unreachable")
}

var checkMu sync.Mutex

var seedsOnce sync.Once
var seedFiles [][]byte

func FuzzDamage(f *testing.F) {
	seedsOnce.Do(func() { seedFiles = boltSeeds(f) })
	for i := range seedFiles {
		f.Add(uint8(i), []byte{})
		f.Add(uint8(i), []byte{0, 1, 2, 3, 4, 5, 6, 7, 8})
		f.Add(uint8(i), []byte{4, 3, 0, 5, 0, 0})
		f.Add(uint8(i), []byte{6, 5, 0, 9, 0})
		f.Add(uint8(i), []byte{8, 0, 2, 3, 0, 0, 0, 0, 0, 0, 0, 0})
		f.Add(uint8(i), []byte{3, 4, 0, 0, 0xff, 0xff, 0, 0})
		f.Add(uint8(i), []byte{7, 3, 0, 1})
	}
	dir := f.TempDir()
	var n atomic.Uint64
	f.Fuzz(func(t *testing.T, seed uint8, prog []byte) {
		// The inputs of plain `go test` (seeds, testdata/fuzz) run two at a time: most
		// are sound, each a child process (a second a piece under -race).
		t.Parallel()
		file := mutate(seedFiles[int(seed)%len(seedFiles)], prog)
		path := filepath.Join(dir, fmt.Sprintf("connector_betrace_%d", n.Add(1)))
		if err := os.WriteFile(path, file, 0o600); err != nil {
			t.Fatal(err)
		}
		defer os.Remove(path)
		// A check and a salvage (up to four ways of reading the tree, each keeping at most
		// the file's size in records): a generous bound, still far below "absurd".
		bound := 8*uint64(len(file)) + 64<<20
		d, err := checkBounded(t, path, false, 10*time.Second, bound)
		if err != nil {
			t.Fatalf("checkBolt: %v", err)
		}
		_, _ = checkBounded(t, path, true, 10*time.Second, bound)
		if d.err != nil {
			return
		}
		if out, err := runBoltChild(path, 20*time.Second); err != nil {
			sig := childSignature(out, err)
			// Findings already reported can be let through (BETRACE_FUZZ_KNOWN, a regexp
			// on the signature) so that the fuzzing goes on to others; their inputs are
			// kept in BETRACE_FUZZ_SAVE.
			if known := os.Getenv("BETRACE_FUZZ_KNOWN"); known != "" && regexp.MustCompile(known).MatchString(sig) {
				if save := os.Getenv("BETRACE_FUZZ_SAVE"); save != "" {
					name := regexp.MustCompile(`[^A-Za-z]+`).ReplaceAllString(sig, "-")
					_ = os.MkdirAll(save, 0o755)
					_ = os.WriteFile(filepath.Join(save, fmt.Sprintf("%.60s-%d.db", name, time.Now().UnixNano())), file, 0o600)
				}
				return
			}
			keep := filepath.Join(os.TempDir(), fmt.Sprintf("betrace-sound-but-%d.db", time.Now().UnixNano()))
			_ = os.WriteFile(keep, file, 0o600)
			t.Fatalf("checkBolt says sound, the collector's use of it fails [%s] (%v; kept as %s):\n%s", sig, err, keep, out)
		}
	})
}

// childSignature names what went wrong in a child: the step and the message, digits
// dropped; an unrecovered panic or a fatal error (the collector dies) starts with CRASH.
func childSignature(out string, err error) string {
	for _, l := range strings.Split(out, "\n") {
		switch {
		case strings.HasPrefix(l, "BOLT-CHILD-PANIC"), strings.HasPrefix(l, "BOLT-CHILD-ERROR"):
			return regexp.MustCompile(`[0-9]+`).ReplaceAllString(l, "N")
		case strings.HasPrefix(l, "panic: "), strings.HasPrefix(l, "fatal error: "), strings.HasPrefix(l, "unexpected fault"), strings.HasPrefix(l, "SIG"):
			return "CRASH " + regexp.MustCompile(`[0-9]+`).ReplaceAllString(l, "N")
		}
	}
	return "OTHER " + err.Error()
}

// runBoltChild opens a copy of the file at path as the collector would, in a child
// process (this test binary, TestBoltChild).
func runBoltChild(path string, limit time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestBoltChild$", "-test.v")
	cmd.Env = append(os.Environ(), "BETRACE_BOLT_CHILD="+path, "GOTRACEBACK=all")
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		return string(out), fmt.Errorf("the child hung for %v", limit)
	}
	if err != nil || !strings.Contains(string(out), "BOLT-CHILD-OK") {
		return string(out), fmt.Errorf("child: %v", err)
	}
	return string(out), nil
}

// TestBoltChild is the child: it copies the file into a directory of its own as the
// file of the connector "betrace", gets file_storage's client for it (compaction on start,
// as a configuration may ask), walks every key, gets, sets, deletes and batches, compacts,
// and reopens. Every step in this goroutine is guarded as the component guards it; a
// panic in another goroutine (bbolt's own) kills the process: what the collector would do.
func TestBoltChild(t *testing.T) {
	src := os.Getenv("BETRACE_BOLT_CHILD")
	if src == "" {
		t.Skip("not a child")
	}
	raw, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "connector_betrace_")
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	step := func(name string, fn func() error) {
		defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
		defer func() {
			if r := recover(); r != nil {
				fmt.Printf("BOLT-CHILD-PANIC (recoverable, in the calling goroutine) at %s: %v\n%s\n", name, r, debug.Stack())
				os.Exit(3)
			}
		}()
		if err := fn(); err != nil {
			fmt.Printf("BOLT-CHILD-ERROR at %s: %v\n", name, err)
			os.Exit(4)
		}
	}
	onStart := os.Getenv("BETRACE_BOLT_CHILD_COMPACT_ON_START") != ""
	fac := filestorage.NewFactory()
	cfg := fac.CreateDefaultConfig().(*filestorage.Config)
	cfg.Directory = dir
	cfg.Compaction.Directory = dir
	cfg.Compaction.OnStart = onStart
	ext, err := fac.Create(context.Background(), extensiontest.NewNopSettings(fac.Type()), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := ext.Start(context.Background(), componenttest.NewNopHost()); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var c storage.Client
	step("GetClient", func() (err error) {
		c, err = ext.(storage.Extension).GetClient(ctx, component.KindConnector, component.MustNewID("betrace"), "")
		return err
	})
	n := 0
	var keys []string
	step("Walk", func() error {
		return c.(storage.Walker).Walk(ctx, func(k string, v []byte) ([]*storage.Operation, error) {
			n++
			keys = append(keys, k)
			_ = bytes.Clone(v)
			return nil, nil
		})
	})
	step("Get", func() error {
		for _, k := range append(keys, metaKey) {
			if _, err := c.Get(ctx, k); err != nil {
				return err
			}
		}
		return nil
	})
	step("Set", func() error { return c.Set(ctx, metaKey, bytes.Repeat([]byte{1}, 100)) })
	step("Batch", func() error {
		ops := []*storage.Operation{storage.SetOperation("b/ffffffffffffffff", bytes.Repeat([]byte{2}, 5000))}
		for i, k := range keys {
			if i%3 == 0 {
				ops = append(ops, storage.DeleteOperation(k))
			}
		}
		return c.Batch(ctx, ops...)
	})
	step("Delete", func() error {
		for i, k := range keys {
			if i%3 == 1 {
				if err := c.Delete(ctx, k); err != nil {
					return err
				}
			}
		}
		return nil
	})
	step("Compact", func() error {
		type compacter interface {
			Compact(string, time.Duration, int64) error
		}
		cc, ok := c.(compacter)
		if !ok {
			return errors.New("no Compact")
		}
		return cc.Compact(dir, time.Second, 65536)
	})
	step("Walk after", func() error {
		return c.(storage.Walker).Walk(ctx, func(string, []byte) ([]*storage.Operation, error) { return nil, nil })
	})
	step("Close", func() error { return c.Close(ctx) })
	fmt.Printf("BOLT-CHILD-OK %d keys\n", n)
}
