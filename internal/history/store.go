package history

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/closewait/closewait/internal/diagnose"
	"github.com/closewait/closewait/internal/sockdiag"
)

// Defaults for the zero values of Options.
const (
	DefaultMaxAge   = 7 * 24 * time.Hour
	DefaultMaxBytes = 64 << 20
	DefaultTimeout  = 3 * time.Second
	// MinMaxBytes is the smallest size bound Open accepts.
	MinMaxBytes = 64 << 10
)

// formatVersion is the on-disk layout version, stored in the meta bucket.
const formatVersion = 1

var (
	bucketMeta    = []byte("meta")
	bucketTotals  = []byte("totals")
	bucketPoints  = []byte("points")
	bucketSockets = []byte("sockets")
	keyVersion    = []byte("version")
)

// appendFill is the page fill of the time-keyed buckets, which are written
// in key order: full pages, as bbolt advises for sequential inserts.
const appendFill = 0.95

// ErrLocked is returned by Open when another process holds the store open.
var ErrLocked = errors.New("history store is in use by another closewait process")

// Options bound a store. Zero values mean the documented defaults.
type Options struct {
	// MaxAge is how long records are kept; zero means DefaultMaxAge (7 days).
	MaxAge time.Duration
	// MaxBytes bounds the file size; zero means DefaultMaxBytes (64 MiB).
	// Values below MinMaxBytes are refused.
	MaxBytes int64
	// Timeout is how long Open waits for another process's lock; zero means
	// DefaultTimeout (3 s).
	Timeout time.Duration
	// CreateDir creates the file's directory when it is missing (for
	// DefaultPath). Otherwise a path in a missing directory is refused.
	CreateDir bool
}

// Store is an open history file.
type Store struct {
	path string
	opt  Options

	mu        sync.Mutex // guards db replacement during compaction and lastPrune
	db        *bolt.DB
	lastPrune time.Time

	compactions int // how often the file was rewritten (tests)
}

// DefaultPath is where the history lives unless told otherwise:
// /var/lib/closewait/history.db for root, otherwise
// $XDG_STATE_HOME/closewait/history.db (~/.local/state/closewait/history.db).
func DefaultPath() string {
	if os.Geteuid() == 0 {
		return "/var/lib/closewait/history.db"
	}
	if d := os.Getenv("XDG_STATE_HOME"); d != "" && filepath.IsAbs(d) {
		return filepath.Join(d, "closewait", "history.db")
	}
	if home, err := os.UserHomeDir(); err == nil && home != "" {
		return filepath.Join(home, ".local", "state", "closewait", "history.db")
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("closewait-%d", os.Geteuid()), "history.db")
}

// Open opens the store at path, creating the file if needed. The path
// must name a regular file, or a new file in an existing directory (which
// Options.CreateDir creates instead). An existing file is checked before
// anything is written to it: a damaged one is refused with an error that
// wraps ErrDamaged, and left as it is.
func Open(path string, opt Options) (*Store, error) {
	if path == "" {
		return nil, errors.New("history: empty path")
	}
	if opt.MaxAge == 0 {
		opt.MaxAge = DefaultMaxAge
	}
	if opt.MaxBytes == 0 {
		opt.MaxBytes = DefaultMaxBytes
	}
	if opt.Timeout == 0 {
		opt.Timeout = DefaultTimeout
	}
	if opt.MaxAge < 0 {
		return nil, fmt.Errorf("history: max age %v is negative", opt.MaxAge)
	}
	if opt.MaxBytes < MinMaxBytes {
		return nil, fmt.Errorf("history: max size %d bytes is below the minimum %d", opt.MaxBytes, MinMaxBytes)
	}
	exists, err := checkPath(path, opt.CreateDir)
	if err != nil {
		return nil, fmt.Errorf("history %s: %w", path, err)
	}
	s := &Store{path: path, opt: opt}
	if exists {
		if err := s.checkExisting(nil); err != nil {
			return nil, err
		}
	}
	// A compaction interrupted by a crash leaves its unfinished copy behind.
	if fi, err := os.Lstat(path + ".compact"); err == nil && fi.Mode().IsRegular() {
		os.Remove(path + ".compact")
	}
	db, err := s.open(path)
	if err != nil {
		return nil, err
	}
	s.db = db
	return s, nil
}

// CheckFile checks the store at path without writing to it: its bbolt
// structure (as bbolt's own consistency check does, but safe against any
// damage) and that every record decodes. It returns what the store holds,
// or an error wrapping ErrDamaged, ErrNotHistory or ErrLocked.
func CheckFile(path string) (Info, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return Info{}, fmt.Errorf("history %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return Info{}, fmt.Errorf("history %s: not a regular file (%s)", path, fileKind(fi.Mode()))
	}
	if fi.Size() == 0 {
		return Info{}, fmt.Errorf("history %s: %w (an empty file)", path, ErrNotHistory)
	}
	s := &Store{path: path, opt: Options{Timeout: DefaultTimeout}}
	var in Info
	err = s.checkExisting(func() error {
		if err := s.checkRecords(); err != nil {
			return fmt.Errorf("%w: %s", ErrDamaged, strings.ReplaceAll(err.Error(), "\n", "; "))
		}
		var err error
		in, err = s.Info()
		return err
	})
	return in, err
}

// checkExisting checks an existing file before it is opened for writing,
// while holding bbolt's shared lock (so that no writer changes it
// meanwhile): the structure with plain reads (verifyFile), then bbolt's
// own check, then that it is a closewait store, then more (if not nil) with
// s.db open read-only. An empty file passes: bbolt initialises it.
func (s *Store) checkExisting(more func() error) error {
	f, err := os.Open(s.path)
	if err != nil {
		return fmt.Errorf("history %s: %w", s.path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("history %s: %w", s.path, err)
	}
	if fi.Size() == 0 {
		return nil
	}
	// Too short for bbolt's two meta pages: bbolt would refuse it too.
	if fi.Size() < 2*int64(os.Getpagesize()) {
		if err := verifyFile(f); errors.Is(err, ErrNotHistory) {
			return fmt.Errorf("history %s: %w (%d bytes)", s.path, ErrNotHistory, fi.Size())
		}
		return fmt.Errorf("history %s: %w: the file is only %d bytes (truncated?)", s.path, ErrDamaged, fi.Size())
	}
	db, err := bolt.Open(s.path, 0o600, &bolt.Options{ReadOnly: true, Timeout: s.opt.Timeout})
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return fmt.Errorf("history %s: %w (waited %v)", s.path, ErrLocked, s.opt.Timeout)
		}
		// bbolt refuses the meta pages; verifyFile says which way.
		if verr := verifyFile(f); verr != nil {
			return fmt.Errorf("history %s: %w", s.path, verr)
		}
		return fmt.Errorf("history %s: %w: %v", s.path, ErrDamaged, err)
	}
	defer db.Close()
	if err := verifyFile(f); err != nil {
		return fmt.Errorf("history %s: %w", s.path, err)
	}
	s.db = db
	defer func() { s.db = nil }()
	err = safely(func() error {
		return db.View(func(tx *bolt.Tx) error {
			for err := range tx.Check() {
				return fmt.Errorf("%w: %v", ErrDamaged, err)
			}
			meta := tx.Bucket(bucketMeta)
			if meta == nil {
				empty := true
				tx.ForEach(func([]byte, *bolt.Bucket) error { empty = false; return nil })
				if empty {
					return nil // created, then interrupted before its first write
				}
				return fmt.Errorf("%w (a bbolt file without closewait's buckets)", ErrNotHistory)
			}
			if v := meta.Get(keyVersion); v != nil && (len(v) != 1 || v[0] != formatVersion) {
				return fmt.Errorf("format version %v, this closewait reads %d", v, formatVersion)
			}
			return nil
		})
	})
	if err == nil && more != nil {
		err = safely(more)
	}
	if err != nil {
		return fmt.Errorf("history %s: %w", s.path, err)
	}
	return nil
}

// safely runs fn, turning a panic (an assertion inside bbolt, or a memory
// fault in its mapping of the file) into an ErrDamaged error.
func safely(fn func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v", ErrDamaged, r)
		}
	}()
	return fn()
}

func (s *Store) boltOptions() *bolt.Options {
	return &bolt.Options{Timeout: s.opt.Timeout}
}

func (s *Store) open(path string) (*bolt.DB, error) {
	db, err := bolt.Open(path, 0o600, s.boltOptions())
	if err != nil {
		switch {
		case errors.Is(err, bolterrors.ErrTimeout):
			return nil, fmt.Errorf("history %s: %w (waited %v)", path, ErrLocked, s.opt.Timeout)
		case errors.Is(err, bolterrors.ErrInvalid), errors.Is(err, bolterrors.ErrVersionMismatch), errors.Is(err, bolterrors.ErrChecksum):
			return nil, fmt.Errorf("history %s: not a closewait history file (%v)", path, err)
		}
		return nil, fmt.Errorf("history %s: %w", path, err)
	}
	// Grow the file in small steps so that its size follows the data.
	db.AllocSize = int(min(1<<20, s.opt.MaxBytes/16))
	err = db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		if v := meta.Get(keyVersion); v != nil {
			if len(v) != 1 || v[0] != formatVersion {
				return fmt.Errorf("format version %v, this closewait reads %d", v, formatVersion)
			}
		} else if err := meta.Put(keyVersion, []byte{formatVersion}); err != nil {
			return err
		}
		for _, b := range [][]byte{bucketTotals, bucketPoints, bucketSockets} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("history %s: %w", path, err)
	}
	return db, nil
}

// Path returns the file the store lives in.
func (s *Store) Path() string { return s.path }

// Close closes the file. A closed Store must not be used again.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db == nil {
		return nil
	}
	err := s.db.Close()
	s.db = nil
	if err != nil {
		return fmt.Errorf("history %s: close: %w", s.path, err)
	}
	return nil
}

// Point is one record of one process.
type Point struct {
	Time      time.Time
	PID       int
	CloseWait int
	OpenFDs   int
	FDLimit   uint64 // soft RLIMIT_NOFILE; 0 unknown
	OldestAge time.Duration
	HasAge    bool // OldestAge is known
	// NotAccepted of CloseWait wait in the process's accept queues.
	NotAccepted int
	Status      diagnose.Status
	Comm        string
	// StartTime tells a process from a later one with the same pid; zero if unknown.
	StartTime time.Time
}

// TotalPoint is one record of the host.
type TotalPoint struct {
	Time         time.Time
	CloseWait    int
	Unattributed int // CLOSE_WAIT sockets with no owner found
	Processes    int // processes holding CLOSE_WAIT sockets
	// OpenFDs sums the open fds of those processes; kept by a Ring only
	// (a Store's records do not hold it: 0).
	OpenFDs int
	// OldestAge is the age of the host's oldest CLOSE_WAIT socket (of every
	// process and the unattributed ones), known when HasAge; kept by a Ring
	// only (a Store's records do not hold it).
	OldestAge time.Duration
	HasAge    bool
	Status    diagnose.Status
	// States counts every TCP socket by state name ("ESTABLISHED", ...).
	States map[string]int
	// Entered and Left count the CLOSE_WAIT sockets (with an inode) first seen
	// in this record and those of the previous record that are gone.
	Entered, Left int
}

// pointOf is the point of one process of a report taken at t.
func pointOf(t time.Time, p *diagnose.ProcessReport) Point {
	pt := Point{Time: t, PID: p.PID, CloseWait: p.CloseWait, NotAccepted: p.NotAccepted, OldestAge: p.Oldest, HasAge: p.HasAge, Status: p.Status}
	if pr := p.Process; pr != nil {
		pt.OpenFDs, pt.FDLimit, pt.Comm, pt.StartTime = pr.OpenFDs, pr.FDSoft, pr.Comm, pr.StartTime
	}
	return pt
}

// totalOf is the host record of a report (without Entered and Left, which
// only a Store counts).
func totalOf(r *diagnose.Report) TotalPoint {
	tp := TotalPoint{
		Time: r.Snapshot.Time, CloseWait: r.CloseWait, Unattributed: r.Unattributed.Count,
		Processes: len(r.Processes), Status: r.Status, States: make(map[string]int, len(r.Snapshot.States)),
	}
	for st, n := range r.Snapshot.States {
		tp.States[st.String()] = n
	}
	tp.OldestAge, tp.HasAge = r.Unattributed.Oldest, r.Unattributed.HasAge
	for _, p := range r.Processes {
		if p.Process != nil {
			tp.OpenFDs += p.Process.OpenFDs
		}
		if p.HasAge {
			tp.OldestAge, tp.HasAge = max(tp.OldestAge, p.Oldest), true
		}
	}
	return tp
}

type sockKey struct {
	inode uint64
	tuple uint64
}

// tupleHash identifies a socket beyond its inode, which the kernel may
// reuse: FNV-1a of both addresses (16 bytes each) and ports, without
// allocating.
func tupleHash(s *sockdiag.Socket) uint64 {
	const offset, prime = 14695981039346656037, 1099511628211
	h := uint64(offset)
	for _, ap := range [2]netip.AddrPort{s.Local, s.Remote} {
		a := ap.Addr().As16()
		for _, c := range a {
			h = (h ^ uint64(c)) * prime
		}
		p := ap.Port()
		h = (h ^ uint64(p>>8)) * prime
		h = (h ^ uint64(p&0xff)) * prime
	}
	return h
}

// Record stores one report: the host totals, one point per process holding
// CLOSE_WAIT sockets, and first-seen times of its CLOSE_WAIT sockets. It is
// timed by the report's snapshot. It prunes records past the bounds.
func (s *Store) Record(r *diagnose.Report) error {
	if r == nil || r.Snapshot == nil {
		return errors.New("history: record: no snapshot")
	}
	snap := r.Snapshot
	now := snap.Time
	cur := make([]sockKey, 0, r.CloseWait)
	for i := range snap.Sockets {
		so := &snap.Sockets[i].Socket
		if so.State == sockdiag.CloseWait && so.Inode != 0 {
			cur = append(cur, sockKey{so.Inode, tupleHash(so)})
		}
	}
	slices.SortFunc(cur, func(a, b sockKey) int {
		switch {
		case a.inode < b.inode:
			return -1
		case a.inode > b.inode:
			return 1
		}
		return 0
	})
	cur = slices.CompactFunc(cur, func(a, b sockKey) bool { return a.inode == b.inode })

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db == nil {
		return errors.New("history: store is closed")
	}
	prune := now.Sub(s.lastPrune) >= time.Minute || now.Before(s.lastPrune)
	err := s.db.Update(func(tx *bolt.Tx) error {
		socks := tx.Bucket(bucketSockets)
		socks.FillPercent = appendFill // inodes grow: new sockets land at the end
		entered, left, err := mergeSockets(socks, cur, now)
		if err != nil {
			return fmt.Errorf("first-seen: %w", err)
		}
		tp := totalOf(r)
		tp.Entered, tp.Left = entered, left
		totals := tx.Bucket(bucketTotals)
		totals.FillPercent = appendFill
		if err := totals.Put(timeKey(now), encodeTotal(tp)); err != nil {
			return err
		}
		points := tx.Bucket(bucketPoints)
		points.FillPercent = appendFill
		for _, p := range r.Processes {
			if err := points.Put(pointKey(now, p.PID), encodePoint(pointOf(now, p))); err != nil {
				return err
			}
		}
		if prune {
			return pruneBefore(tx, now.Add(-s.opt.MaxAge))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("history %s: record: %w", s.path, err)
	}
	if prune {
		s.lastPrune = now
	}
	if err := s.enforceSize(); err != nil {
		return fmt.Errorf("history %s: %w", s.path, err)
	}
	return nil
}

// mergeSockets walks the stored first-seen entries and the current sockets
// (sorted by inode) side by side: new inodes are added with time now, gone
// ones deleted, and an inode whose addresses changed (reused) starts again.
func mergeSockets(b *bolt.Bucket, cur []sockKey, now time.Time) (entered, left int, err error) {
	var add []sockKey
	var del [][]byte
	c := b.Cursor()
	k, v := c.First()
	i := 0
	for k != nil || i < len(cur) {
		var ki uint64
		if k != nil {
			ki = binary.BigEndian.Uint64(k)
		}
		switch {
		case k == nil || (i < len(cur) && cur[i].inode < ki):
			add = append(add, cur[i])
			i++
		case i >= len(cur) || ki < cur[i].inode:
			del = append(del, bytes.Clone(k))
			k, v = c.Next()
		default:
			if len(v) != 16 || binary.BigEndian.Uint64(v[8:]) != cur[i].tuple {
				add = append(add, cur[i])
				left++
			}
			i++
			k, v = c.Next()
		}
	}
	for _, k := range del {
		if err := b.Delete(k); err != nil {
			return 0, 0, err
		}
	}
	// bbolt keeps a reference to keys and values until the commit: one buffer each.
	vals := make([]byte, 16*len(add))
	for i, a := range add {
		val := vals[16*i : 16*i+16]
		binary.BigEndian.PutUint64(val, uint64(now.UnixNano()))
		binary.BigEndian.PutUint64(val[8:], a.tuple)
		if err := b.Put(u64Key(a.inode), val); err != nil {
			return 0, 0, err
		}
	}
	return len(add), left + len(del), nil
}

// pruneBefore deletes records older than cut.
func pruneBefore(tx *bolt.Tx, cut time.Time) error {
	ck := timeKey(cut)
	if err := deleteBefore(tx.Bucket(bucketTotals), ck); err != nil {
		return err
	}
	return deleteBefore(tx.Bucket(bucketPoints), ck)
}

// deleteBefore deletes the keys of b that sort before cut.
func deleteBefore(b *bolt.Bucket, cut []byte) error {
	var del [][]byte
	c := b.Cursor()
	for k, _ := c.First(); k != nil && bytes.Compare(k, cut) < 0; k, _ = c.Next() {
		del = append(del, bytes.Clone(k))
	}
	for _, k := range del {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// liveBytes is the size of the pages in use: the file's high-water mark less
// its free pages.
func (s *Store) liveBytes() (live, high int64, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		high = tx.Size()
		return nil
	})
	return high - int64(s.db.Stats().FreeAlloc), high, err
}

// enforceSize keeps the live data under 3/4 of MaxBytes by dropping the
// oldest records, and compacts the file when it has grown past MaxBytes.
func (s *Store) enforceSize() error {
	for range 8 {
		live, _, err := s.liveBytes()
		if err != nil {
			return err
		}
		if live <= s.opt.MaxBytes*3/4 {
			break
		}
		dropped := false
		err = s.db.Update(func(tx *bolt.Tx) error {
			c := tx.Bucket(bucketTotals).Cursor()
			first, _ := c.First()
			last, _ := c.Last()
			if first == nil || bytes.Equal(first, last) {
				return nil // nothing older than the newest record to drop
			}
			t0, t1 := int64(binary.BigEndian.Uint64(first)), int64(binary.BigEndian.Uint64(last))
			cut := t0 + max((t1-t0)/4, 1)
			dropped = true
			return pruneBefore(tx, time.Unix(0, cut))
		})
		if err != nil {
			return fmt.Errorf("trim: %w", err)
		}
		if !dropped {
			break
		}
	}
	fi, err := os.Stat(s.path)
	if err != nil {
		return err
	}
	if fi.Size() > s.opt.MaxBytes {
		return s.compact()
	}
	return nil
}

// compact rewrites the store into a new file and renames it over the old
// one; a crash at any point leaves either file whole.
func (s *Store) compact() error {
	tmp := s.path + ".compact"
	os.Remove(tmp)
	dst, err := bolt.Open(tmp, 0o600, s.boltOptions())
	if err != nil {
		return fmt.Errorf("compact: %w", err)
	}
	if err := bolt.Compact(dst, s.db, 4<<20); err != nil {
		dst.Close()
		os.Remove(tmp)
		return fmt.Errorf("compact: %w", err)
	}
	if err := dst.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("compact: %w", err)
	}
	if err := os.Rename(tmp, s.path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("compact: %w", err)
	}
	if d, err := os.Open(filepath.Dir(s.path)); err == nil {
		d.Sync()
		d.Close()
	}
	s.db.Close()
	db, err := s.open(s.path)
	if err != nil {
		s.db = nil
		return fmt.Errorf("reopen after compaction: %w", err)
	}
	s.db = db
	s.compactions++
	return nil
}

// view runs fn in a read transaction.
func (s *Store) view(fn func(tx *bolt.Tx) error) error {
	s.mu.Lock()
	db := s.db
	s.mu.Unlock()
	if db == nil {
		return errors.New("history: store is closed")
	}
	if err := db.View(fn); err != nil {
		return fmt.Errorf("history %s: %w", s.path, err)
	}
	return nil
}

// Series returns the points of process pid since a time, oldest first. When
// the pid was used by several processes in that span, only the latest one's
// points are returned (told apart by start time). It reads every process
// point since the time.
func (s *Store) Series(pid int, since time.Time) ([]Point, error) {
	var out []Point
	err := s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketPoints).Cursor()
		for k, v := c.Seek(timeKey(since)); k != nil; k, v = c.Next() {
			if !isPID(k, pid) {
				continue
			}
			p, err := decodePoint(k, v)
			if err != nil {
				return err
			}
			out = append(out, p)
		}
		return nil
	})
	if len(out) > 0 {
		latest := out[len(out)-1].StartTime
		out = slices.DeleteFunc(out, func(p Point) bool { return !p.StartTime.Equal(latest) })
	}
	return out, err
}

func isPID(k []byte, pid int) bool {
	return len(k) == 12 && binary.BigEndian.Uint32(k[8:]) == uint32(pid)
}

// Last returns the latest point of the process pid that started at start
// (a zero start matches any), and false when there is none. It reads
// backwards from the newest point until it finds pid.
func (s *Store) Last(pid int, start time.Time) (Point, bool, error) {
	var p Point
	found := false
	err := s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketPoints).Cursor()
		for k, v := c.Last(); k != nil; k, v = c.Prev() {
			if !isPID(k, pid) {
				continue
			}
			var err error
			if p, err = decodePoint(k, v); err != nil {
				return err
			}
			found = start.IsZero() || p.StartTime.IsZero() || p.StartTime.Equal(start)
			return nil
		}
		return nil
	})
	return p, found, err
}

// LastRecord returns the latest host record and the process points recorded
// with it (the processes that held CLOSE_WAIT sockets then), and false when
// the store is empty.
func (s *Store) LastRecord() (TotalPoint, []Point, bool, error) {
	var tp TotalPoint
	var pts []Point
	found := false
	err := s.view(func(tx *bolt.Tx) error {
		k, v := tx.Bucket(bucketTotals).Cursor().Last()
		if k == nil {
			return nil
		}
		var err error
		if tp, err = decodeTotal(k, v); err != nil {
			return err
		}
		found = true
		c := tx.Bucket(bucketPoints).Cursor()
		for pk, pv := c.Seek(k); pk != nil && bytes.HasPrefix(pk, k); pk, pv = c.Next() {
			p, err := decodePoint(pk, pv)
			if err != nil {
				return err
			}
			pts = append(pts, p)
		}
		return nil
	})
	return tp, pts, found, err
}

// Totals returns the host records since a time, oldest first.
func (s *Store) Totals(since time.Time) ([]TotalPoint, error) {
	var out []TotalPoint
	err := s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketTotals).Cursor()
		for k, v := c.Seek(timeKey(since)); k != nil; k, v = c.Next() {
			tp, err := decodeTotal(k, v)
			if err != nil {
				return err
			}
			out = append(out, tp)
		}
		return nil
	})
	return out, err
}

// LastTotal returns the latest host record, and false when the store is empty.
func (s *Store) LastTotal() (TotalPoint, bool, error) {
	var tp TotalPoint
	found := false
	err := s.view(func(tx *bolt.Tx) error {
		k, v := tx.Bucket(bucketTotals).Cursor().Last()
		if k == nil {
			return nil
		}
		var err error
		tp, err = decodeTotal(k, v)
		found = err == nil
		return err
	})
	return tp, found, err
}

// FirstSeen returns when the CLOSE_WAIT socket with this inode was first
// recorded, and false when it was not (or has left CLOSE_WAIT since).
func (s *Store) FirstSeen(inode uint64) (time.Time, bool) {
	var t time.Time
	found := false
	s.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketSockets).Get(u64Key(inode))
		if len(v) == 16 {
			t, found = time.Unix(0, int64(binary.BigEndian.Uint64(v))), true
		}
		return nil
	})
	return t, found
}

// Info describes a store's contents.
type Info struct {
	Path           string
	FileBytes      int64
	Records        int       // host records
	Processes      int       // processes in the newest record
	Sockets        int       // CLOSE_WAIT sockets with a first-seen time
	Oldest, Newest time.Time // of the host records; zero when empty
}

// Info counts what the store holds.
func (s *Store) Info() (Info, error) {
	in := Info{Path: s.path}
	err := s.view(func(tx *bolt.Tx) error {
		in.FileBytes = tx.Size()
		in.Records = tx.Bucket(bucketTotals).Stats().KeyN
		in.Sockets = tx.Bucket(bucketSockets).Stats().KeyN
		c := tx.Bucket(bucketTotals).Cursor()
		if k, _ := c.First(); k != nil {
			in.Oldest = time.Unix(0, int64(binary.BigEndian.Uint64(k)))
		}
		if k, _ := c.Last(); k != nil {
			in.Newest = time.Unix(0, int64(binary.BigEndian.Uint64(k)))
			pc := tx.Bucket(bucketPoints).Cursor()
			for pk, _ := pc.Seek(k); pk != nil && bytes.HasPrefix(pk, k); pk, _ = pc.Next() {
				in.Processes++
			}
		}
		return nil
	})
	if fi, serr := os.Stat(s.path); serr == nil {
		in.FileBytes = fi.Size()
	}
	return in, err
}

// Check verifies the file's consistency (bbolt's page and freelist check)
// and that every record decodes; it returns every problem found, joined.
func (s *Store) Check() error {
	var errs []error
	err := s.view(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			errs = append(errs, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if len(errs) == 0 {
		errs = append(errs, s.checkRecords())
	}
	return errors.Join(errs...)
}

// checkRecords checks that every bucket is there and every record decodes.
func (s *Store) checkRecords() error {
	var errs []error
	err := s.view(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketMeta, bucketTotals, bucketPoints, bucketSockets} {
			if tx.Bucket(name) == nil {
				errs = append(errs, fmt.Errorf("bucket %s missing", name))
			}
		}
		if len(errs) > 0 {
			return nil
		}
		tx.Bucket(bucketTotals).ForEach(func(k, v []byte) error {
			if _, err := decodeTotal(k, v); err != nil {
				errs = append(errs, err)
			}
			return nil
		})
		tx.Bucket(bucketPoints).ForEach(func(k, v []byte) error {
			if _, err := decodePoint(k, v); err != nil {
				errs = append(errs, err)
			}
			return nil
		})
		tx.Bucket(bucketSockets).ForEach(func(k, v []byte) error {
			if len(k) != 8 || len(v) != 16 {
				errs = append(errs, fmt.Errorf("socket entry %x: bad length", k))
			}
			return nil
		})
		return nil
	})
	if err != nil {
		return err
	}
	return errors.Join(errs...)
}
