package engine

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/extension/xextension/storage"
	"go.uber.org/zap"
)

// A damaged file_storage file — cut short (a disk full mid-write, a bad copy), a torn or
// overwritten page, zeroed meta pages, flipped bytes — is not something bbolt survives:
// it refuses a file with no valid meta page or shorter than two pages, and on anything
// else it panics while opening (it rebuilds its list of free pages by walking every page,
// and asserts each page is what its parent says) — in a goroutine of its own, where no
// recover() reaches, so the collector dies at every start until someone moves the file.
// file_storage's `recreate` recovers only a panic in the opening goroutine, and throws
// the data away.
//
// So before the component asks file_storage for its client, it reads the file itself,
// here: with plain reads (no mmap, no unsafe), every offset bounds-checked, checking what
// bbolt's opening and its consistency check (Tx.Check) would trip on. A sound file is
// handed to file_storage untouched. A damaged one is salvaged — the records of the
// "default" bucket (file_storage's) reachable through readable pages — moved aside under
// a name logged as an error (kept for a person to look at, never deleted), and its
// records written into the fresh file file_storage then creates, where the start reads
// them as usual (each record is still checked against its epoch and CRC).

// boltFile reads a bbolt file page by page.
type boltFile struct {
	f        *os.File
	size     int64
	pageSize uint64
}

// boltMeta is a bbolt meta page (bbolt's internal/common.Meta).
type boltMeta struct {
	pageSize, root, freelist, hwm, txid uint64
	valid                               bool
}

const (
	boltMagic      = 0xED0CDAED
	boltVersion    = 2
	boltHeader     = 16 // a page's header: id, flags, count, overflow
	boltElem       = 16 // a branch or leaf element
	boltBranch     = 0x01
	boltLeaf       = 0x02
	boltMetaPage   = 0x04
	boltFreelist   = 0x10
	boltBucketFlag = 0x01
	noFreelist     = ^uint64(0)
	// maxSalvagedPages bounds the pages a salvage walks (a damaged branch can name any).
	maxSalvagedPages = 1 << 24
)

// fileStorageBucket is the bucket file_storage keeps a client's keys in.
var fileStorageBucket = []byte("default")

// readMeta reads the meta page at off.
func (b *boltFile) readMeta(off int64) boltMeta {
	var p [boltHeader + 64]byte
	if _, err := b.f.ReadAt(p[:], off); err != nil {
		return boltMeta{}
	}
	m := p[boltHeader:]
	le := binary.LittleEndian
	h := fnv.New64a()
	h.Write(m[:56])
	return boltMeta{
		pageSize: uint64(le.Uint32(m[8:])), root: le.Uint64(m[16:]), freelist: le.Uint64(m[32:]),
		hwm: le.Uint64(m[40:]), txid: le.Uint64(m[48:]),
		valid: le.Uint16(p[8:]) == boltMetaPage && le.Uint32(m) == boltMagic && le.Uint32(m[4:]) == boltVersion &&
			le.Uint64(m[56:]) == h.Sum64(),
	}
}

// metas returns the file's valid meta pages, the one bbolt uses first.
func (b *boltFile) metas() []boltMeta {
	m0 := b.readMeta(0)
	at := int64(os.Getpagesize())
	if m0.valid {
		at = int64(m0.pageSize)
	}
	m1 := b.readMeta(at)
	if m1.txid > m0.txid {
		m0, m1 = m1, m0
	}
	var ms []boltMeta
	for _, m := range []boltMeta{m0, m1} {
		if m.valid && m.pageSize >= 1024 && m.pageSize <= 1<<16 && m.pageSize&(m.pageSize-1) == 0 {
			ms = append(ms, m)
		}
	}
	return ms
}

// page reads page id, with its overflow, as a page of the kind flags. Anything a page
// cannot be — past the high water mark or the end of the file, naming another id, of
// another kind — is an error.
func (b *boltFile) page(id, hwm uint64, flags uint16) ([]byte, error) {
	if id < 2 || id >= hwm {
		return nil, fmt.Errorf("page %d: outside the pages in use (2 to %d)", id, hwm)
	}
	var h [boltHeader]byte
	if _, err := b.f.ReadAt(h[:], int64(id*b.pageSize)); err != nil {
		return nil, fmt.Errorf("page %d: %w", id, err)
	}
	le := binary.LittleEndian
	if got := le.Uint64(h[:]); got != id {
		return nil, fmt.Errorf("page %d: its header says %d", id, got)
	}
	if got := le.Uint16(h[8:]); got != flags {
		return nil, fmt.Errorf("page %d: of kind %#x, not %#x", id, got, flags)
	}
	n := uint64(le.Uint32(h[12:])) + 1
	if n > hwm-id || (id+n)*b.pageSize > uint64(b.size) {
		return nil, fmt.Errorf("page %d: its %d pages run past the pages in use or the file", id, n)
	}
	p := make([]byte, n*b.pageSize)
	if _, err := b.f.ReadAt(p, int64(id*b.pageSize)); err != nil {
		return nil, fmt.Errorf("page %d: %w", id, err)
	}
	return p, nil
}

// element is one element of a branch or leaf page.
type element struct {
	flags      uint32
	key, value []byte
	child      uint64
}

// elements reads a page's elements; each one out of the page's bounds is an error, and
// the elements read before it are returned with it.
func elements(p []byte) ([]element, error) {
	le := binary.LittleEndian
	flags, count := le.Uint16(p[8:]), uint64(le.Uint16(p[10:]))
	els := make([]element, 0, count)
	for i := range count {
		at := boltHeader + i*boltElem
		if at+boltElem > uint64(len(p)) {
			return els, fmt.Errorf("page %d: element %d of %d lies past its end", le.Uint64(p), i, count)
		}
		e := p[at : at+boltElem]
		var el element
		var pos, ksize, vsize uint64
		if flags == boltBranch {
			pos, ksize, el.child = uint64(le.Uint32(e)), uint64(le.Uint32(e[4:])), le.Uint64(e[8:])
		} else {
			el.flags, pos, ksize, vsize = le.Uint32(e), uint64(le.Uint32(e[4:])), uint64(le.Uint32(e[8:])), uint64(le.Uint32(e[12:]))
		}
		if at+pos+ksize+vsize > uint64(len(p)) {
			return els, fmt.Errorf("page %d: element %d of %d points past its end", le.Uint64(p), i, count)
		}
		el.key = p[at+pos : at+pos+ksize]
		el.value = p[at+pos+ksize : at+pos+ksize+vsize]
		els = append(els, el)
	}
	return els, nil
}

// boltWalk walks a bucket's tree. strict stops at the first damage (bbolt would trip on
// it); otherwise every readable page is read and each damage counted.
type boltWalk struct {
	b       *boltFile
	hwm     uint64
	strict  bool
	seen    map[uint64]bool
	damages []error
	// kv gets every key and value of the bucket wanted (file_storage's), in key order
	// where the tree is sound.
	kv func(k, v []byte)
}

func (w *boltWalk) damaged(err error) bool {
	w.damages = append(w.damages, err)
	return w.strict
}

// tree walks the tree at page id, whose keys lie in [lo, hi) (nil: unbounded); it
// returns the tree's greatest key. bucket says whether the tree is file_storage's
// bucket (its keys go to kv) or the root bucket (its bucket is looked for).
func (w *boltWalk) tree(id uint64, lo, hi []byte, bucket bool) (last []byte, stop bool) {
	if len(w.seen) >= maxSalvagedPages {
		return nil, w.damaged(fmt.Errorf("page %d: more pages than a file has", id))
	}
	var h [boltHeader]byte
	if id >= 2 && id < w.hwm {
		_, _ = w.b.f.ReadAt(h[:], int64(id*w.b.pageSize))
	}
	flags := binary.LittleEndian.Uint16(h[8:])
	if flags != boltBranch {
		flags = boltLeaf
	}
	p, err := w.b.page(id, w.hwm, flags)
	if err != nil {
		return nil, w.damaged(err)
	}
	for i := range uint64(len(p)) / w.b.pageSize {
		if w.seen[id+i] {
			return nil, w.damaged(fmt.Errorf("page %d: reached twice", id+i))
		}
		w.seen[id+i] = true
	}
	return w.page(p, lo, hi, bucket)
}

// page walks a page read (or a bucket's inline page).
func (w *boltWalk) page(p []byte, lo, hi []byte, bucket bool) (last []byte, stop bool) {
	id := binary.LittleEndian.Uint64(p)
	els, err := elements(p)
	if err != nil && w.damaged(err) {
		return nil, true
	}
	if len(els) == 0 && binary.LittleEndian.Uint16(p[8:]) == boltBranch && err == nil && w.damaged(fmt.Errorf("page %d: a branch with no element", id)) {
		return nil, true
	}
	prev := lo
	for i, el := range els {
		if (i == 0 && lo != nil && bytes.Compare(el.key, lo) < 0) || (i > 0 && bytes.Compare(el.key, prev) <= 0) || (hi != nil && bytes.Compare(el.key, hi) >= 0) {
			if w.damaged(fmt.Errorf("page %d: key %d out of order", id, i)) {
				return nil, true
			}
		}
		if binary.LittleEndian.Uint16(p[8:]) == boltBranch {
			next := hi
			if i+1 < len(els) {
				next = els[i+1].key
			}
			sub, stop := w.tree(el.child, el.key, next, bucket)
			if stop {
				return nil, true
			}
			if sub != nil {
				prev = sub
			}
			continue
		}
		prev = el.key
		switch {
		case bucket && el.flags&boltBucketFlag == 0:
			w.kv(el.key, el.value)
		case bucket:
			// file_storage keeps no bucket within its bucket: a damaged flag
			if w.damaged(fmt.Errorf("page %d: a bucket within file_storage's bucket", id)) {
				return nil, true
			}
		case el.flags&boltBucketFlag != 0 && bytes.Equal(el.key, fileStorageBucket):
			if w.bucket(el.value) {
				return nil, true
			}
		case el.flags&boltBucketFlag != 0 && w.strict:
			// another bucket (not file_storage's): bbolt checks it too
			if w.bucketCheck(el.value) {
				return nil, true
			}
		}
	}
	return prev, false
}

// bucket walks file_storage's bucket, given its value in the root bucket.
func (w *boltWalk) bucket(v []byte) bool {
	if len(v) < 16 {
		return w.damaged(errors.New("its bucket's header is cut short"))
	}
	if root := binary.LittleEndian.Uint64(v); root != 0 {
		_, stop := w.tree(root, nil, nil, true)
		return stop
	}
	if len(v) < 16+boltHeader || binary.LittleEndian.Uint16(v[16+8:]) != boltLeaf {
		return w.damaged(errors.New("its inline bucket is not a leaf"))
	}
	_, stop := w.page(v[16:], nil, nil, true)
	return stop
}

// bucketCheck checks a bucket that is not file_storage's, reading none of its keys.
func (w *boltWalk) bucketCheck(v []byte) bool {
	kv := w.kv
	w.kv = func(_, _ []byte) {}
	defer func() { w.kv = kv }()
	return w.bucket(v)
}

// boltDamage is what reading a file found: what bbolt would trip on (nil: nothing), and
// with salvage, the records readable.
type boltDamage struct {
	err     error
	records map[string][]byte
	lost    int // pages or elements unreadable
}

// checkBolt reads the bbolt file at path: boltDamage.err says why bbolt cannot be
// trusted with it (nil: it can; an empty file is sound, bbolt starts it afresh). A damaged
// file, or any with salvage, has its records read: those of file_storage's bucket still
// readable, and the pages or elements that were not counted.
func checkBolt(path string, salvage bool) (boltDamage, error) {
	f, err := os.Open(path)
	if err != nil {
		return boltDamage{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return boltDamage{}, err
	}
	b := &boltFile{f: f, size: fi.Size()}
	if b.size == 0 {
		return boltDamage{}, nil
	}
	ms := b.metas()
	if len(ms) == 0 {
		return boltDamage{err: errors.New("no valid meta page"), records: map[string][]byte{}, lost: 1}, nil
	}
	d := boltDamage{err: b.check(ms[0])}
	if d.err == nil && !salvage {
		return d, nil
	}
	// The records as the meta page bbolt would use has them; or, if they are worse, as
	// the other (one write older) has them.
	for i, m := range ms {
		recs, lost := b.salvage(m)
		if i == 0 || lost < d.lost || lost == d.lost && len(recs) > len(d.records) {
			d.records, d.lost = recs, lost
		}
	}
	return d, nil
}

// check walks the file from meta m as bbolt would, stopping at the first damage.
func (b *boltFile) check(m boltMeta) error {
	b.pageSize = m.pageSize
	if uint64(b.size) < 2*m.pageSize {
		return fmt.Errorf("%d bytes: shorter than two pages", b.size)
	}
	if m.hwm < 2 || m.hwm > uint64(b.size)/m.pageSize {
		return fmt.Errorf("cut short: %d pages in use, %d in the file", m.hwm, uint64(b.size)/m.pageSize)
	}
	if m.freelist != noFreelist {
		p, err := b.page(m.freelist, m.hwm, boltFreelist)
		if err != nil {
			return err
		}
		n := uint64(binary.LittleEndian.Uint16(p[10:]))
		at := uint64(boltHeader)
		if n == 0xFFFF {
			n, at = binary.LittleEndian.Uint64(p[boltHeader:]), at+8
		}
		if n > (uint64(len(p))-at)/8 {
			return fmt.Errorf("page %d: a free list longer than its page", m.freelist)
		}
	}
	w := &boltWalk{b: b, hwm: m.hwm, strict: true, seen: map[uint64]bool{}, kv: func(_, _ []byte) {}}
	w.tree(m.root, nil, nil, false)
	if len(w.damages) > 0 {
		return w.damages[0]
	}
	return nil
}

// salvage reads every record of file_storage's bucket reachable from meta m through
// readable pages, and counts the pages and elements that were not.
func (b *boltFile) salvage(m boltMeta) (map[string][]byte, int) {
	b.pageSize = m.pageSize
	hwm := min(m.hwm, uint64(b.size)/m.pageSize)
	recs := map[string][]byte{}
	w := &boltWalk{b: b, hwm: hwm, seen: map[uint64]bool{}, kv: func(k, v []byte) {
		if _, ok := recs[string(k)]; !ok {
			recs[string(k)] = bytes.Clone(v)
		}
	}}
	w.tree(m.root, nil, nil, false)
	return recs, len(w.damages)
}

// fileStoragePkg is contrib's file_storage extension, whose files checkBolt reads.
const fileStoragePkg = "github.com/open-telemetry/opentelemetry-collector-contrib/extension/storage/filestorage"

// fileStorageFile is the file contrib's file_storage extension keeps the client of
// component `id` of kind `kind` in, as its GetClient names it (extension.go, v0.159.0:
// "KIND_TYPE_NAME" in its `directory`, unsafe characters escaped, hashed when too long).
// file_storage tells no one its directory: it is read from the extension's configuration
// (an unexported field; TestTheStorageFileIsFound fails if a contrib upgrade moves it).
// ok is false for another extension, or if the field is not where it was.
func fileStorageFile(ext component.Component, kind component.Kind, id component.ID) (path string, ok bool) {
	v := reflect.ValueOf(ext)
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct || v.Elem().Type().PkgPath() != fileStoragePkg {
		return "", false
	}
	cfg := v.Elem().FieldByName("cfg")
	if !cfg.IsValid() || cfg.Kind() != reflect.Pointer || cfg.IsNil() || cfg.Elem().Type().PkgPath() != fileStoragePkg {
		return "", false
	}
	dir := cfg.Elem().FieldByName("Directory")
	if !dir.IsValid() || dir.Kind() != reflect.String || dir.String() == "" {
		return "", false
	}
	k := map[component.Kind]string{component.KindReceiver: "receiver", component.KindProcessor: "processor",
		component.KindExporter: "exporter", component.KindExtension: "extension", component.KindConnector: "connector"}[kind]
	if k == "" {
		k = "other"
	}
	var name strings.Builder
	for _, c := range fmt.Sprintf("%s_%s_%s", k, id.Type(), id.Name()) {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_' {
			name.WriteRune(c)
		} else {
			fmt.Fprintf(&name, "~%04X", c)
		}
	}
	path = filepath.Join(dir.String(), name.String())
	if len(name.String()) > 255 {
		sum := sha256.Sum256([]byte(name.String()))
		path = filepath.Join(dir.String(), hex.EncodeToString(sum[:]))
	}
	return path, true
}

// guarded is a storage client whose panics (bbolt's, on damage the start did not see:
// a page torn while the collector runs) come back as errors, in the goroutine that made
// the call — a fault reading the file too (debug.SetPanicOnFault) — and leave the client
// failing every call from then on: bbolt may hold its lock after a panic, and the store
// counts failed writes and goes on without storage.
type guarded struct {
	storage.Client
	broken atomic.Pointer[error]
}

// guardedWalker is a guarded client with the storage's Walk.
type guardedWalker struct{ *guarded }

func guard(c storage.Client) storage.Client {
	g := &guarded{Client: c}
	if _, ok := c.(storage.Walker); ok {
		return guardedWalker{g}
	}
	return g
}

// call runs f, turning a panic into an error.
func (g *guarded) call(f func() error) (err error) {
	if e := g.broken.Load(); e != nil {
		return *e
	}
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("betrace: the storage panicked (a damaged file?), it is not used again until a restart: %v", r)
			g.broken.Store(&err)
		}
	}()
	return f()
}

func (g *guarded) Get(ctx context.Context, key string) (v []byte, err error) {
	err = g.call(func() (err error) { v, err = g.Client.Get(ctx, key); return err })
	return v, err
}

func (g *guarded) Set(ctx context.Context, key string, v []byte) error {
	return g.call(func() error { return g.Client.Set(ctx, key, v) })
}

func (g *guarded) Delete(ctx context.Context, key string) error {
	return g.call(func() error { return g.Client.Delete(ctx, key) })
}

func (g *guarded) Batch(ctx context.Context, ops ...*storage.Operation) error {
	return g.call(func() error { return g.Client.Batch(ctx, ops...) })
}

// Close does not touch a client that panicked (bbolt may hold its lock).
func (g *guarded) Close(ctx context.Context) error {
	return g.call(func() error { return g.Client.Close(ctx) })
}

func (g guardedWalker) Walk(ctx context.Context, fn storage.WalkFunc) error {
	return g.call(func() error { return g.Client.(storage.Walker).Walk(ctx, fn) })
}

// unusable is the client of a storage that could not be opened: nothing is read, every
// write fails (counted, and warned about, as any failed write).
type unusable struct{ err error }

func (u unusable) Get(context.Context, string) ([]byte, error) { return nil, nil }
func (u unusable) Set(context.Context, string, []byte) error   { return u.err }
func (u unusable) Delete(context.Context, string) error        { return u.err }
func (u unusable) Close(context.Context) error                 { return nil }
func (u unusable) Batch(_ context.Context, ops ...*storage.Operation) error {
	for _, op := range ops {
		if op.Type != storage.Get {
			return u.err
		}
	}
	return nil
}

// openClient gets the component's client from the storage extension, checking its file
// first when the extension is file_storage (see the top of this file). A damaged file is
// moved aside and its readable records written into the new one; a storage that cannot
// be opened at all (GetClient fails or panics) leaves the component without storage —
// it starts, judges, and counts every batch as not stored — rather than failing the
// start: a collector down at every start loses everything. lost is what the damage cost:
// the pages or elements unreadable (at least one for a damaged file; what a page held is
// not known), for storage_records_unreadable.
func openClient(ctx context.Context, set Settings, id component.ID, ext component.Component, se storage.Extension) (client storage.Client, lost int) {
	logger := set.Telemetry.Logger
	path, known := fileStorageFile(ext, set.Kind, set.ID)
	var d boltDamage
	aside := ""
	moveAside := func(why error) bool {
		aside = fmt.Sprintf("%s.damaged-%s", path, time.Now().UTC().Format("20060102T150405.000000000Z"))
		if err := os.Rename(path, aside); err != nil {
			logger.Error("betrace: storage: its file is damaged and cannot be moved aside: the component runs WITHOUT storage (batches judged but not stored, storage_batches_not_stored); move the file away and restart",
				zap.Stringer("storage", id), zap.String("file", path), zap.NamedError("damage", why), zap.Error(err))
			return false
		}
		return true
	}
	if known {
		var err error
		if d, err = checkBolt(path, false); err != nil && !errors.Is(err, fs.ErrNotExist) {
			logger.Warn("betrace: storage: its file could not be read before opening it", zap.String("file", path), zap.Error(err))
		}
		if d.err != nil && !moveAside(d.err) {
			return unusable{fmt.Errorf("betrace: storage %v: its file %s is damaged: %w", id, path, d.err)}, max(d.lost, 1)
		}
	}
	c, err := getClient(ctx, se, set)
	if err != nil && known && aside == "" {
		// bbolt refused or panicked on a file the check found sound (or that appeared
		// since): the same, salvaged as well as it can be.
		if _, serr := os.Stat(path); serr == nil {
			if d, serr = checkBolt(path, true); serr == nil && d.err == nil {
				d.err = err
			}
			if d.err == nil || !moveAside(d.err) {
				return unusable{fmt.Errorf("betrace: storage %v: %w", id, err)}, max(d.lost, 1)
			}
			c, err = getClient(ctx, se, set)
		}
	}
	if err != nil {
		logger.Error("betrace: storage: it cannot be opened: the component runs WITHOUT storage (batches judged but not stored, storage_batches_not_stored)",
			zap.Stringer("storage", id), zap.Error(err))
		return unusable{fmt.Errorf("betrace: storage %v: %w", id, err)}, max(d.lost, boolInt(aside != ""))
	}
	client = guard(c)
	if aside == "" {
		return client, 0
	}
	lost = max(d.lost, 1)
	rebuilt := rebuildMeta(d.records)
	recovered, ops := 0, make([]*storage.Operation, 0, 256)
	flush := func() {
		if len(ops) == 0 {
			return
		}
		if err := client.Batch(ctx, ops...); err != nil {
			logger.Error("betrace: storage: writing the records recovered from a damaged file failed", zap.Error(err))
			lost += len(ops)
		} else {
			recovered += len(ops)
		}
		ops = ops[:0]
	}
	for k, v := range d.records {
		ops = append(ops, storage.SetOperation(k, v))
		if len(ops) == cap(ops) {
			flush()
		}
	}
	flush()
	logger.Error("betrace: storage: its file was damaged: moved aside (kept for a look, never deleted), its readable records recovered into a new file; what the damaged pages held is lost",
		zap.Stringer("storage", id), zap.String("damaged_file", aside), zap.String("file", path), zap.NamedError("damage", d.err),
		zap.Int("records_recovered", recovered), zap.Int("pages_or_records_unreadable", lost), zap.Bool("index_rebuilt", rebuilt))
	return client, lost
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// getClient asks the extension for the component's client; a panic (bbolt's, in this
// goroutine) is an error.
func getClient(ctx context.Context, se storage.Extension, set Settings) (c storage.Client, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			c, err = nil, fmt.Errorf("the storage panicked opening its file: %v", r)
		}
	}()
	return se.GetClient(ctx, set.Kind, set.ID, "")
}

// rebuildMeta writes "meta" among records recovered from a damaged file when it is
// missing or unreadable (its page was lost): the epoch most of the readable records
// carry, the range of their numbers. Without it the start would read none of them.
func rebuildMeta(recs map[string][]byte) bool {
	if raw, ok := recs[metaKey]; ok {
		if p, err := unframe(kindMeta, 0, raw); err == nil && len(p) == 16 {
			return false
		}
	}
	type span struct{ n, lo, hi uint64 }
	epochs := map[uint64]*span{}
	for k, v := range recs {
		seq, i, ok := parseKey(k)
		if !ok || recordKinds[i] == kindSpans {
			continue
		}
		if _, err := unframe(recordKinds[i], 0, v); err != nil {
			continue
		}
		e := binary.LittleEndian.Uint64(v[1:9])
		sp := epochs[e]
		if sp == nil {
			sp = &span{lo: seq, hi: seq + 1}
			epochs[e] = sp
		}
		sp.n++
		sp.lo, sp.hi = min(sp.lo, seq), max(sp.hi, seq+1)
	}
	var epoch uint64
	for e, sp := range epochs {
		if epoch == 0 || sp.n > epochs[epoch].n || sp.n == epochs[epoch].n && e < epoch {
			epoch = e
		}
	}
	if epoch == 0 {
		return false
	}
	var p [16]byte
	binary.LittleEndian.PutUint64(p[:], epochs[epoch].lo)
	binary.LittleEndian.PutUint64(p[8:], epochs[epoch].hi)
	recs[metaKey] = frame(kindMeta, epoch, p[:])
	return true
}
