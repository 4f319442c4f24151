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
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"runtime/debug"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
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
// bbolt's opening and its consistency check (Tx.Check) would trip on — finding the page
// size and the meta page exactly as bbolt does, else the check vouches for a tree bbolt
// never reads — and what bbolt opens but trips on at the first write or compaction (an
// empty leaf below a root, a plain key in the root bucket, an empty key, a branch's key
// that is not its child's first key). Keys of other shapes than the component's are not damage: bbolt
// does not mind them, and the start skips records it cannot read. The file is read and
// moved only if it is a regular file, under bbolt's own lock (inspectBolt). A sound
// file is handed to file_storage untouched. A damaged one is salvaged — the records of the
// "default" bucket (file_storage's) reachable through readable pages — moved aside under
// a name logged as an error (kept for a person to look at, never deleted), and its
// records written into the fresh file file_storage then creates, where the start reads
// them as usual (each record is still checked against its epoch and CRC).

// boltFile reads a bbolt file page by page, finding its pages as bbolt does.
type boltFile struct {
	f        *os.File
	size     int64
	pageSize uint64   // the page size bbolt opens the file with (bboltPageSize)
	bufs     [][]byte // a page's bytes, by depth in a tree: kept from walk to walk
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
	boltFreelist   = 0x10
	boltBucketFlag = 0x01
	noFreelist     = ^uint64(0)
	// The page sizes taken for sane: bbolt writes the page size of the machine (4 KiB,
	// 16 KiB or 64 KiB) unless told otherwise, and file_storage does not tell it.
	minBoltPageSize = 1 << 10
	maxBoltPageSize = 1 << 16
	// minSalvagePageSize is the least page size a salvage reads pages with: any page size
	// that holds a page header and a meta page reads safely (a page and its overflow
	// stay within the file), if a page size bbolt does not write is damage.
	minSalvagePageSize = 128
	// maxTreeDepth is deeper than any tree bbolt writes (every page below a root holds at
	// least two keys, so 2^63 pages need fewer levels); a deeper one is a loop of damage.
	maxTreeDepth = 64
)

// fileStorageBucket is the bucket file_storage keeps a client's keys in.
var fileStorageBucket = []byte("default")

// parseMeta reads the meta page at the start of p. Valid means valid to bbolt
// (Meta.Validate): magic, version and checksum; bbolt does not look at the page header.
func parseMeta(p []byte) boltMeta {
	var buf [boltHeader + 64]byte
	copy(buf[:], p)
	m := buf[boltHeader:]
	le := binary.LittleEndian
	return boltMeta{
		pageSize: uint64(le.Uint32(m[8:])), root: le.Uint64(m[16:]), freelist: le.Uint64(m[32:]),
		hwm: le.Uint64(m[40:]), txid: le.Uint64(m[48:]),
		valid: le.Uint32(m) == boltMagic && le.Uint32(m[4:]) == boltVersion && le.Uint64(m[56:]) == fnv64a(m[:56]),
	}
}

// fnv64a is the FNV-1a hash of b, bbolt's meta checksum.
func fnv64a(b []byte) uint64 {
	h := fnv.New64a()
	h.Write(b)
	return h.Sum64()
}

// readMeta reads the meta page at off; one the file does not hold whole is not valid.
func (b *boltFile) readMeta(off uint64) boltMeta {
	var p [boltHeader + 64]byte
	if off > uint64(b.size) {
		return boltMeta{}
	}
	if _, err := b.f.ReadAt(p[:], int64(off)); err != nil {
		return boltMeta{}
	}
	return parseMeta(p[:])
}

// bboltPageSize is the page size bbolt opens the file with (db.getPageSize, bbolt
// v1.3 to v1.5): meta page 0's if it is valid; else that of the first valid meta page
// found 1 KiB, 2 KiB, ... 16 MiB into the file (where meta page 1 of that page size
// would be); else, if any of those places could be read, the page size of this machine.
// ok is false if none could: bbolt refuses the file.
func (b *boltFile) bboltPageSize() (ps uint64, ok bool) {
	var buf [4096]byte
	if n, err := b.f.ReadAt(buf[:], 0); err == nil && n == len(buf) {
		ok = true
		if m := parseMeta(buf[:]); m.valid {
			return m.pageSize, true
		}
	}
	for i := range 15 {
		pos := int64(1024) << i
		if pos >= b.size-1024 {
			break
		}
		buf = [4096]byte{}
		n, err := b.f.ReadAt(buf[:], pos)
		if err == nil && n == len(buf) || err == io.EOF && int64(n) == b.size-pos {
			ok = true
			if m := parseMeta(buf[:]); m.valid {
				return m.pageSize, true
			}
		}
	}
	return uint64(os.Getpagesize()), ok
}

func saneBoltPageSize(ps uint64) bool {
	return ps >= minBoltPageSize && ps <= maxBoltPageSize && ps&(ps-1) == 0
}

// metas finds the meta pages as bbolt does — its page size (bboltPageSize), meta pages 0
// and 1 that far apart — and returns the one bbolt uses (db.meta(): the valid one of the
// higher transaction, else the other) and the other. err says why bbolt cannot be
// trusted with them: no valid meta page (bbolt refuses the file), a page size that is
// not sane, or a valid meta page of another page size than bbolt reads the pages with
// (bbolt would walk its tree with page ids that land elsewhere).
func (b *boltFile) metas() (use, other boltMeta, err error) {
	ps, ok := b.bboltPageSize()
	if !ok {
		return use, other, errors.New("no meta page readable")
	}
	b.pageSize = ps
	use, other = b.readMeta(0), b.readMeta(ps)
	if other.txid > use.txid {
		use, other = other, use
	}
	if !use.valid {
		use, other = other, use
	}
	switch {
	case !saneBoltPageSize(ps):
		return use, other, fmt.Errorf("a page size of %d bytes: not one bbolt writes", ps)
	case uint64(b.size) < 2*ps:
		return use, other, fmt.Errorf("%d bytes: shorter than two pages", b.size)
	case !use.valid:
		return use, other, errors.New("no valid meta page")
	}
	for _, m := range []boltMeta{use, other} {
		if m.valid && m.pageSize != ps {
			return use, other, fmt.Errorf("a meta page says its pages are %d bytes, bbolt reads them %d bytes apart", m.pageSize, ps)
		}
	}
	return use, other, nil
}

// page reads page id, with its overflow, as a page of the kind flags (the free list).
func (b *boltFile) page(id, hwm uint64, flags uint16) ([]byte, error) {
	n, err := b.header(id, hwm, func(f uint16) bool { return f == flags })
	if err != nil {
		return nil, err
	}
	p := make([]byte, n*b.pageSize)
	if _, err := b.f.ReadAt(p, int64(id*b.pageSize)); err != nil {
		return nil, fmt.Errorf("page %d: %w", id, err)
	}
	return p, nil
}

// header reads the header of page id and returns how many pages it spans. Anything a
// page cannot be — past the high water mark or the end of the file, naming another id,
// of a kind `kind` refuses — is an error.
func (b *boltFile) header(id, hwm uint64, kind func(uint16) bool) (uint64, error) {
	if id < 2 || id >= hwm {
		return 0, fmt.Errorf("page %d: outside the pages in use (2 to %d)", id, hwm)
	}
	var h [boltHeader]byte
	if _, err := b.f.ReadAt(h[:], int64(id*b.pageSize)); err != nil {
		return 0, fmt.Errorf("page %d: %w", id, err)
	}
	le := binary.LittleEndian
	if got := le.Uint64(h[:]); got != id {
		return 0, fmt.Errorf("page %d: its header says %d", id, got)
	}
	if got := le.Uint16(h[8:]); !kind(got) {
		return 0, fmt.Errorf("page %d: of kind %#x", id, got)
	}
	n := uint64(le.Uint32(h[12:])) + 1
	if n > hwm-id || (id+n)*b.pageSize > uint64(b.size) {
		return 0, fmt.Errorf("page %d: its %d pages run past the pages in use or the file", id, n)
	}
	return n, nil
}

// element is one element of a branch or leaf page.
type element struct {
	flags      uint32
	key, value []byte
	child      uint64
}

// elementAt reads element i of a page; one out of the page's bounds is an error.
func elementAt(p []byte, i uint64) (element, error) {
	le := binary.LittleEndian
	at := boltHeader + i*boltElem
	if at+boltElem > uint64(len(p)) {
		return element{}, fmt.Errorf("page %d: element %d lies past its end", le.Uint64(p), i)
	}
	e := p[at : at+boltElem]
	var el element
	var pos, ksize, vsize uint64
	if le.Uint16(p[8:]) == boltBranch {
		pos, ksize, el.child = uint64(le.Uint32(e)), uint64(le.Uint32(e[4:])), le.Uint64(e[8:])
	} else {
		el.flags, pos, ksize, vsize = le.Uint32(e), uint64(le.Uint32(e[4:])), uint64(le.Uint32(e[8:])), uint64(le.Uint32(e[12:]))
	}
	if at+pos+ksize+vsize > uint64(len(p)) {
		return element{}, fmt.Errorf("page %d: element %d points past its end", le.Uint64(p), i)
	}
	el.key = p[at+pos : at+pos+ksize]
	el.value = p[at+pos+ksize : at+pos+ksize+vsize]
	return el, nil
}

// boltWalk walks a bucket's tree. strict stops at the first damage (bbolt would trip on
// it); otherwise every readable page is read and each damage counted. Each page is
// read once (seen is checked on its header, before its overflow is read), into a buffer
// kept for its depth in the tree.
type boltWalk struct {
	b       *boltFile
	hwm     uint64
	strict  bool
	seen    []uint64 // a bit per page below hwm
	keys    [][]byte // the greatest key seen so far, by depth
	damages int
	first   error
	// kv gets every key and value of the bucket wanted (file_storage's), in key order
	// where the tree is sound; both are only valid during the call.
	kv func(k, v []byte)
}

func newWalk(b *boltFile, hwm uint64, strict bool, kv func(k, v []byte)) *boltWalk {
	return &boltWalk{b: b, hwm: hwm, strict: strict, seen: make([]uint64, (hwm+63)/64), kv: kv}
}

func (w *boltWalk) damaged(err error) bool {
	if w.damages == 0 {
		w.first = err
	}
	w.damages++
	return w.strict
}

// buf is the buffer for a page of n bytes at depth.
func (w *boltWalk) buf(depth int, n uint64) []byte {
	for len(w.keys) <= depth {
		w.keys = append(w.keys, nil)
	}
	b := w.b
	for len(b.bufs) <= depth {
		b.bufs = append(b.bufs, nil)
	}
	if uint64(cap(b.bufs[depth])) < n {
		b.bufs[depth] = make([]byte, n)
	}
	return b.bufs[depth][:n]
}

// tree walks the tree at page id, whose keys lie in [lo, hi) (nil: unbounded), at depth
// in the file's trees; root says whether it is a bucket's root page. It returns the
// tree's greatest key (valid until the next page read at depth). bucket says whether the
// tree is file_storage's bucket (its keys go to kv) or the root bucket (its bucket is
// looked for).
func (w *boltWalk) tree(id uint64, lo, hi []byte, bucket bool, depth int, root bool) (last []byte, stop bool) {
	if depth >= maxTreeDepth {
		return nil, w.damaged(fmt.Errorf("page %d: deeper than any tree bbolt writes", id))
	}
	n, err := w.b.header(id, w.hwm, func(f uint16) bool { return f == boltBranch || f == boltLeaf })
	if err != nil {
		return nil, w.damaged(err)
	}
	for i := id; i < id+n; i++ {
		if w.seen[i/64]&(1<<(i%64)) != 0 {
			return nil, w.damaged(fmt.Errorf("page %d: reached twice", i))
		}
	}
	for i := id; i < id+n; i++ {
		w.seen[i/64] |= 1 << (i % 64)
	}
	p := w.buf(depth, n*w.b.pageSize)
	if _, err := w.b.f.ReadAt(p, int64(id*w.b.pageSize)); err != nil {
		return nil, w.damaged(fmt.Errorf("page %d: %w", id, err))
	}
	return w.page(p, lo, hi, bucket, depth, root)
}

// page walks a page read (or a bucket's inline page) at depth.
func (w *boltWalk) page(p []byte, lo, hi []byte, bucket bool, depth int, root bool) (last []byte, stop bool) {
	le := binary.LittleEndian
	id, flags, count := le.Uint64(p), le.Uint16(p[8:]), uint64(le.Uint16(p[10:]))
	switch {
	case count == 0 && flags == boltBranch:
		return nil, w.damaged(fmt.Errorf("page %d: a branch with no element", id))
	case count == 0 && !root:
		// bbolt reads it, but frees it twice on the next write nearby and panics
		// ("page N already freed")
		return nil, w.damaged(fmt.Errorf("page %d: an empty leaf that is not a bucket's root", id))
	}
	prev := lo
	for i := range count {
		el, err := elementAt(p, i)
		if err != nil {
			w.damaged(err)
			return prev, w.strict
		}
		if len(el.key) == 0 {
			// bbolt writes no empty key, reads one, and asserts on it as soon as a write
			// reaches its page ("read: zero-length inode key"); a salvage skips the
			// element, not a branch's child
			if w.damaged(fmt.Errorf("page %d: key %d is empty", id, i)) {
				return nil, true
			}
			if flags != boltBranch {
				continue
			}
		}
		// A branch's key is its child's first key: bbolt writes them so and finds its
		// way by them. A first key after its branch's key reads well, but a write
		// between the two (bbolt puts it in the child, then renames the child by its
		// new first key) leaves keys out of order, and bbolt panics at the next walk.
		if (i == 0 && lo != nil && !bytes.Equal(el.key, lo)) || (i > 0 && bytes.Compare(el.key, prev) <= 0) || (hi != nil && bytes.Compare(el.key, hi) >= 0) {
			if w.damaged(fmt.Errorf("page %d: key %d out of order", id, i)) {
				return nil, true
			}
		}
		if flags == boltBranch {
			next := hi
			if nx, err := elementAt(p, i+1); i+1 < count && err == nil {
				next = nx.key
			}
			sub, stop := w.tree(el.child, el.key, next, bucket, depth+1, false)
			if stop {
				return nil, true
			}
			if sub != nil {
				w.keys[depth] = append(w.keys[depth][:0], sub...)
				prev = w.keys[depth]
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
		case el.flags&boltBucketFlag == 0:
			// The root bucket holds buckets only: bbolt's Compact (file_storage's
			// compaction, in a goroutine of its own) dereferences nil on a plain key. A
			// salvage takes it for one of file_storage's (a stale page of its bucket,
			// named as the root): every record is checked again when read.
			if w.damaged(fmt.Errorf("page %d: a key in the root bucket that is not a bucket", id)) {
				return nil, true
			}
			w.kv(el.key, el.value)
		case bytes.Equal(el.key, fileStorageBucket):
			if w.bucket(el.value, depth) {
				return nil, true
			}
		case w.strict:
			// another bucket (not file_storage's): bbolt checks it too
			if w.bucketCheck(el.value, depth) {
				return nil, true
			}
		}
	}
	return prev, false
}

// bucket walks file_storage's bucket, given its value in the root bucket's leaf at depth.
func (w *boltWalk) bucket(v []byte, depth int) bool {
	if len(v) < 16 {
		return w.damaged(errors.New("its bucket's header is cut short"))
	}
	if root := binary.LittleEndian.Uint64(v); root != 0 {
		_, stop := w.tree(root, nil, nil, true, depth+1, true)
		return stop
	}
	if len(v) < 16+boltHeader || binary.LittleEndian.Uint16(v[16+8:]) != boltLeaf {
		return w.damaged(errors.New("its inline bucket is not a leaf"))
	}
	_, stop := w.page(v[16:], nil, nil, true, depth+1, true)
	return stop
}

// bucketCheck checks a bucket that is not file_storage's, reading none of its keys.
func (w *boltWalk) bucketCheck(v []byte, depth int) bool {
	kv := w.kv
	w.kv = func(_, _ []byte) {}
	defer func() { w.kv = kv }()
	return w.bucket(v, depth)
}

// boltDamage is what reading a file found: what bbolt would trip on (nil: nothing), and
// with salvage, the records readable.
type boltDamage struct {
	err     error
	records map[string][]byte
	lost    int // pages, elements or records unreadable
}

var (
	// errNotRegular: the path is not a regular file (a FIFO, where a read-only open
	// blocks for ever; a directory; a symbolic link): not checked, never moved aside,
	// left to bbolt (which fails on it, or follows the link).
	errNotRegular = errors.New("not a regular file: not checked, left to bbolt")
	// errInUse: another process holds bbolt's lock (flock) on the file — a collector
	// writing it. It is not checked (a file written under the check reads as damaged)
	// and never moved aside; bbolt waits for the lock (file_storage's timeout) and fails.
	errInUse = errors.New("locked by another process (a collector using it?): not checked, left to bbolt")
)

// checkBolt reads the bbolt file at path: boltDamage.err says why bbolt cannot be
// trusted with it (nil: it can; an empty file is sound, bbolt starts it afresh). A damaged
// file, or any with salvage, has its records read: those of file_storage's bucket still
// readable, and the pages, elements or records that were not counted.
func checkBolt(path string, salvage bool) (boltDamage, error) {
	return inspectBolt(path, salvage, nil)
}

// inspectBolt is checkBolt, calling checked (when not nil) with what it found while it
// still holds the file's lock: a file moved aside there is moved from under no one.
// Only a regular file is read, and only under an exclusive flock — bbolt's own lock,
// taken without waiting (errNotRegular, errInUse).
func inspectBolt(path string, salvage bool, checked func(*boltDamage)) (boltDamage, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return boltDamage{}, err
	}
	if !fi.Mode().IsRegular() {
		return boltDamage{}, fmt.Errorf("%s (%v): %w", path, fi.Mode().Type(), errNotRegular)
	}
	// O_NONBLOCK: should a FIFO have replaced the file since Lstat, the open does not wait
	// for a writer (and Stat below tells).
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return boltDamage{}, err
	}
	defer f.Close() // and unlocked
	st, err := f.Stat()
	if err != nil {
		return boltDamage{}, err
	}
	if !st.Mode().IsRegular() || !os.SameFile(fi, st) {
		return boltDamage{}, fmt.Errorf("%s (replaced while opened): %w", path, errNotRegular)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return boltDamage{}, fmt.Errorf("%s: %w", path, errInUse)
		}
		return boltDamage{}, fmt.Errorf("%s: locking it: %w", path, err)
	}
	d := (&boltFile{f: f, size: st.Size()}).read(salvage)
	if checked != nil {
		checked(&d)
	}
	return d, nil
}

// read checks the file, and salvages it if damaged or asked to.
func (b *boltFile) read(salvage bool) boltDamage {
	if b.size == 0 {
		return boltDamage{}
	}
	use, other, err := b.metas()
	ps := b.pageSize
	d := boltDamage{err: err}
	if d.err == nil {
		d.err = b.check(use)
	}
	if d.err == nil && !salvage {
		return d
	}
	// The records as the meta page bbolt uses has them; if some are unreadable there, as
	// the other (one write older) has them, or either as its own page size finds them:
	// whichever loses the least.
	type way struct {
		m  boltMeta
		ps uint64
	}
	var tried []way
	for _, c := range []way{{use, ps}, {other, ps}, {use, use.pageSize}, {other, other.pageSize}} {
		if !c.m.valid || c.ps < minSalvagePageSize || uint64(b.size) < 2*c.ps || slices.Contains(tried, c) {
			continue
		}
		recs, lost := b.salvage(c.m, c.ps)
		if len(tried) == 0 || lost < d.lost || lost == d.lost && len(recs) > len(d.records) {
			d.records, d.lost = recs, lost
		}
		tried = append(tried, c)
		if d.lost == 0 {
			break
		}
	}
	if len(tried) == 0 {
		d.records, d.lost = map[string][]byte{}, 1
	}
	b.pageSize = ps
	return d
}

// check walks the file from meta m as bbolt would, stopping at the first damage.
func (b *boltFile) check(m boltMeta) error {
	if m.hwm < 2 || m.hwm > uint64(b.size)/b.pageSize {
		return fmt.Errorf("cut short: %d pages in use, %d in the file", m.hwm, uint64(b.size)/b.pageSize)
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
	w := newWalk(b, m.hwm, true, func(_, _ []byte) {})
	w.tree(m.root, nil, nil, false, 0, true)
	return w.first
}

// salvage reads every record of file_storage's bucket reachable from meta m, with pages
// of ps bytes, through readable pages, and counts the pages, elements and records that
// were not. Values may overlap in a damaged file (one page's bytes read as a thousand
// values): the records kept come to at most the file's size, the rest counted as lost.
func (b *boltFile) salvage(m boltMeta, ps uint64) (map[string][]byte, int) {
	b.pageSize = ps
	hwm := min(m.hwm, uint64(b.size)/ps)
	recs, budget := map[string][]byte{}, b.size
	var w *boltWalk
	w = newWalk(b, hwm, false, func(k, v []byte) {
		if _, ok := recs[string(k)]; ok {
			return
		}
		if budget -= int64(len(k) + len(v)); budget < 0 {
			w.damaged(errors.New("more record bytes than the file holds"))
			return
		}
		recs[string(k)] = bytes.Clone(v)
	})
	w.tree(m.root, nil, nil, false, 0, true)
	return recs, w.damages
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
	return fileStoragePath(dir.String(), name.String()), true
}

// fileStoragePath is where file_storage keeps the file `name` in dir (extension.go,
// GetClient): dir/name, unless opening that fails with "file name too long" — a name
// past the file system's limit (255 bytes on most, fewer on some) or a path past the
// system's — when it is dir/ followed by the name's SHA-256 in hex. The same error here
// means the same there.
func fileStoragePath(dir, name string) string {
	path := filepath.Join(dir, name)
	if _, err := os.Lstat(path); errors.Is(err, syscall.ENAMETOOLONG) {
		sum := sha256.Sum256([]byte(name))
		return filepath.Join(dir, hex.EncodeToString(sum[:]))
	}
	return path
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
		// Checked, and moved aside if damaged, under bbolt's lock: a file another
		// process holds is neither (errInUse), nor is anything but a regular file.
		moved := false
		var err error
		d, err = inspectBolt(path, false, func(d *boltDamage) {
			if d.err != nil {
				moved = moveAside(d.err)
			}
		})
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			logger.Warn("betrace: storage: its file was not checked before opening it", zap.String("file", path), zap.Error(err))
		}
		if d.err != nil && !moved {
			return unusable{fmt.Errorf("betrace: storage %v: its file %s is damaged: %w", id, path, d.err)}, max(d.lost, 1)
		}
	}
	c, err := getClient(ctx, se, set)
	if err != nil && known && aside == "" {
		// bbolt refused or panicked on a file the check found sound (or that appeared
		// since): the same, salvaged as well as it can be — if it is a regular file no
		// one else holds.
		moved := false
		if dd, serr := inspectBolt(path, true, func(d *boltDamage) {
			if d.err == nil {
				d.err = err
			}
			moved = moveAside(d.err)
		}); serr == nil {
			if d = dd; !moved {
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
