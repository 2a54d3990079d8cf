// Package persistence keeps the daemon's progress in a bbolt file under
// --storage, one directory per Teleport address (as upstream does), and the
// dead letters beside it. Every bucket and key of the state file is defined
// here, with the records stored under them; writes are kv.Write values,
// which the checkpoint writer applies.
//
// Every write is one fsync'd bbolt transaction, so a kill -9 leaves either the
// old or the new position on disk, never a torn file.
package persistence

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/fdfwd/teleport-event-handler/persistence/kv"
)

// FileName is the name of the state file inside the per-cluster directory.
const FileName = "state.db"

// Bucket names.
const (
	BucketMeta  = "meta"
	BucketAudit = "audit"
)

// Keys in BucketMeta and BucketAudit.
const (
	KeySchema    = "schema"
	KeyStartTime = "start_time"
	KeyPosition  = "position"
)

const schemaVersion = "1"

// ErrLocked is returned when another process holds the state file.
var ErrLocked = errors.New("state file is in use by another process")

// CorruptError reports a state file that cannot be read. The daemon never
// starts over silently: the operator decides.
type CorruptError struct {
	Path string
	Err  error
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("state file %s is unreadable (%v); restore it from a backup, or move it away to start again from --start-time (events already sent will be sent again)", e.Path, e.Err)
}

func (e *CorruptError) Unwrap() error { return e.Err }

// Unrecoverable tells the supervisor that restarting the actor that read
// the file cannot help.
func (e *CorruptError) Unrecoverable() bool { return true }

// ErrClosed is the error of a read or write after Close: the daemon is
// stopping. It is not corruption.
var ErrClosed error = closedError{}

type closedError struct{}

func (closedError) Error() string       { return "the state file is closed: the daemon is stopping" }
func (closedError) Unrecoverable() bool { return true }

// decodeErr is the error of a read whose records did not decode: corrupt,
// unless the file was closed meanwhile.
func (s *Store) decodeErr(err error) error {
	if errors.Is(err, bolterrors.ErrDatabaseNotOpen) {
		return s.readErr(err)
	}
	return &CorruptError{Path: s.path, Err: err}
}

// readErr classifies an error of bbolt outside of decoding: a closed file
// is ErrClosed; anything else is an I/O error, with the path, and not
// corruption (only bbolt's checks at Open and records that do not decode
// are).
func (s *Store) readErr(err error) error {
	if errors.Is(err, bolterrors.ErrDatabaseNotOpen) {
		return fmt.Errorf("%s: %w", s.path, ErrClosed)
	}
	return fmt.Errorf("read state file %s: %w", s.path, err)
}

// putJSON is the write that stores v as JSON at bucket/key. Every record of
// the state file is a plain struct of strings, times and numbers; one that
// does not encode all the same (a time past year 9999) is a write that
// can never be applied, which the checkpoint writer fails rather than
// retries.
func putJSON(bucket, key string, v any) kv.Write {
	raw, err := json.Marshal(v)
	if err != nil {
		return kv.Write{Bucket: bucket, Key: key, Err: fmt.Errorf("encode the record: %w", err)}
	}
	return kv.Write{Bucket: bucket, Key: key, Value: raw}
}

// del is the write that removes bucket/key.
func del(bucket, key string) kv.Write { return kv.Write{Bucket: bucket, Key: key, Delete: true} }

// Store is the state of one Teleport cluster.
type Store struct {
	db      *bolt.DB
	dir     string
	path    string
	commits atomic.Uint64
}

// Commits is how many transactions Apply committed: the fsyncs paid.
func (s *Store) Commits() uint64 { return s.commits.Load() }

// Dir returns the per-cluster directory for a Teleport address: host:port
// becomes host_port, as upstream names it.
func Dir(storage, teleportAddr string) string {
	name := strings.NewReplacer(":", "_", "/", "_", "\\", "_").Replace(teleportAddr)
	if name == "" {
		name = "default"
	}
	return filepath.Join(storage, name)
}

// Open opens (creating if needed) the state file in dir.
func Open(dir string) (s *Store, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create storage directory: %w", err)
	}
	path := filepath.Join(dir, FileName)
	// bbolt panics on some kinds of damage instead of returning an error.
	defer func() {
		if r := recover(); r != nil {
			s, err = nil, &CorruptError{Path: path, Err: fmt.Errorf("%v", r)}
		}
	}()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	switch {
	case errors.Is(err, bolterrors.ErrTimeout):
		return nil, fmt.Errorf("%s: %w; stop the other teleport-event-handler or use another --storage", path, ErrLocked)
	case errors.Is(err, bolterrors.ErrInvalid), errors.Is(err, bolterrors.ErrVersionMismatch), errors.Is(err, bolterrors.ErrChecksum):
		return nil, &CorruptError{Path: path, Err: err}
	case err != nil:
		if os.IsPermission(err) {
			return nil, fmt.Errorf("open state file %s: %w; give the daemon's user read and write access to it", path, err)
		}
		if errors.Is(err, syscall.EROFS) || errors.Is(err, syscall.ENOSPC) {
			return nil, fmt.Errorf("open state file %s: %w; --storage must be on a writable file system with free space", path, err)
		}
		// Not one of bbolt's checks: an I/O error, not corruption.
		return nil, fmt.Errorf("open state file %s: %w", path, err)
	}
	s = &Store{db: db, dir: dir, path: path}
	if err := s.init(); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// OpenReadOnly opens the state file in dir for reading only, for the status
// command: it waits at most wait for the lock, and a running daemon holds
// it (ErrLocked then). A missing file is fs.ErrNotExist.
func OpenReadOnly(dir string, wait time.Duration) (s *Store, err error) {
	path := filepath.Join(dir, FileName)
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("state file %s: %w", path, err)
	}
	defer func() {
		if r := recover(); r != nil {
			s, err = nil, &CorruptError{Path: path, Err: fmt.Errorf("%v", r)}
		}
	}()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: wait})
	switch {
	case errors.Is(err, bolterrors.ErrTimeout):
		return nil, fmt.Errorf("%s: %w", path, ErrLocked)
	case err != nil:
		return nil, fmt.Errorf("open state file %s: %w", path, err)
	}
	return &Store{db: db, dir: dir, path: path}, nil
}

func (s *Store) init() error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		for _, b := range []string{BucketMeta, BucketAudit} {
			if _, err := tx.CreateBucketIfNotExists([]byte(b)); err != nil {
				return err
			}
		}
		meta := tx.Bucket([]byte(BucketMeta))
		switch v := meta.Get([]byte(KeySchema)); {
		case v == nil:
			return meta.Put([]byte(KeySchema), []byte(schemaVersion))
		case string(v) != schemaVersion:
			return fmt.Errorf("schema version %q, this build reads %q", v, schemaVersion)
		}
		return migrateLockKeys(tx)
	})
	if err != nil {
		return &CorruptError{Path: s.path, Err: err}
	}
	return nil
}

// Path is the state file's path, for messages.
func (s *Store) Path() string { return s.path }

// Dir is the per-cluster directory holding the state file.
func (s *Store) Dir() string { return s.dir }

// Close closes the file.
func (s *Store) Close() error { return s.db.Close() }

// appendOnly are the buckets whose keys come in order (times): their pages
// are split full, not half full, as bbolt advises for sequential inserts.
var appendOnly = map[string]bool{BucketSeenSets: true}

// Apply commits writes in one fsync'd transaction. A write that can never
// be applied fails it at once with an *UnwritableError (see Unwritable),
// before the file is touched.
func (s *Store) Apply(writes []kv.Write) error {
	for _, w := range writes {
		if err := CheckWrite(w); err != nil {
			return fmt.Errorf("write %s: %w", s.path, err)
		}
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		for _, w := range writes {
			b, err := tx.CreateBucketIfNotExists([]byte(w.Bucket))
			if err != nil {
				return err
			}
			if appendOnly[w.Bucket] {
				b.FillPercent = 0.95
			}
			if w.Delete {
				err = b.Delete([]byte(w.Key))
			} else {
				err = b.Put([]byte(w.Key), w.Value)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	if errors.Is(err, bolterrors.ErrDatabaseNotOpen) {
		return fmt.Errorf("%s: %w", s.path, ErrClosed)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", s.path, err)
	}
	s.commits.Add(1)
	return nil
}

// Get reads one value; ok is false when it is absent.
func (s *Store) Get(bucket, key string) (value []byte, ok bool, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bucket))
		if b == nil {
			return nil
		}
		if v := b.Get([]byte(key)); v != nil {
			value, ok = append([]byte(nil), v...), true
		}
		return nil
	})
	if err != nil {
		return nil, false, s.readErr(err)
	}
	return value, ok, nil
}

// getJSON decodes a JSON value; a value that does not decode is corruption.
func (s *Store) getJSON(bucket, key string, v any) (bool, error) {
	raw, ok, err := s.Get(bucket, key)
	if err != nil || !ok {
		return false, err
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return false, &CorruptError{Path: s.path, Err: fmt.Errorf("%s/%s: %w", bucket, key, err)}
	}
	return true, nil
}

// Scan calls fn for the keys of bucket after the key after (all when empty),
// in key order, until fn returns false or limit keys were seen (no limit
// when limit <= 0).
func (s *Store) Scan(bucket, after string, limit int, fn func(key string, value []byte) bool) error {
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bucket))
		if b == nil {
			return nil
		}
		c := b.Cursor()
		k, v := c.First()
		if after != "" {
			k, v = c.Seek([]byte(after))
			if k != nil && string(k) == after {
				k, v = c.Next()
			}
		}
		for n := 0; k != nil && (limit <= 0 || n < limit); n++ {
			if !fn(string(k), append([]byte(nil), v...)) {
				return nil
			}
			k, v = c.Next()
		}
		return nil
	})
	if err != nil {
		return s.readErr(err)
	}
	return nil
}
