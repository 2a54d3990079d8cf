package persistence

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/fdfwd/teleport-event-handler/persistence/kv"
)

// Keys of the state file are made from what Teleport sends: user names of
// failed logins, event IDs, export chunk names. None of it is trusted to
// fit a bbolt key (at most 32 KiB, never empty): a name typed at a login
// prompt can be 40,000 characters long, and a write that can never succeed
// must not hold up the checkpoints of every stream. So content enters a key
// as itself only while it is short (keyPart), and otherwise as a fixed-size
// digest, its full text kept in the record.

// maxKeyPart is the longest content that enters a key as itself: far more
// than a UUID or a chunk name, far less than bbolt's limit.
const maxKeyPart = 256

// digestPrefix starts a key part that is a digest, not the content itself.
const digestPrefix = "sha256:"

// digest is the fixed-size key part of s: 71 bytes whatever its length.
func digest(s string) string {
	sum := sha256.Sum256([]byte(s))
	return digestPrefix + hex.EncodeToString(sum[:])
}

// keyPart is s as it enters a key: s itself, or its digest (digested true)
// when s is longer than maxKeyPart or could be taken for a digest. A
// digested part's content must be kept in the record. (An empty part is
// kept: every key it enters has a prefix.)
func keyPart(s string) (part string, digested bool) {
	if len(s) > maxKeyPart || strings.HasPrefix(s, digestPrefix) {
		return digest(s), true
	}
	return s, false
}

// Cut shortens content from Teleport for a log line or a message: at most
// n bytes (on a rune boundary) and, when cut, how long it was.
func Cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := n
	for i > 0 && i < len(s) && s[i]&0xC0 == 0x80 { // not in the middle of a rune
		i--
	}
	return fmt.Sprintf("%s... (%d bytes)", s[:i], len(s))
}

// UnwritableError is a write that can never be applied: a key or value
// outside bbolt's limits, or a record that did not encode. Retrying cannot
// help, so the checkpoint writer fails the save that carries it, and the
// requester decides (see messages.SaveFailed).
type UnwritableError struct {
	Bucket, Key string // Key cut short
	Err         error
}

func (e *UnwritableError) Error() string {
	return fmt.Sprintf("state file write %s/%s can never succeed: %v", e.Bucket, e.Key, e.Err)
}

func (e *UnwritableError) Unwrap() error { return e.Err }

// Unrecoverable tells the supervisor that restarting the actor whose save
// failed would only fail the same save again.
func (e *UnwritableError) Unrecoverable() bool { return true }

// CheckWrite returns an *UnwritableError when w can never be applied, as
// bbolt would refuse it, without touching the file.
func CheckWrite(w kv.Write) error {
	var err error
	switch {
	case w.Err != nil:
		err = w.Err
	case w.Bucket == "":
		err = bolterrors.ErrBucketNameRequired
	case len(w.Bucket) > bolt.MaxKeySize:
		err = bolterrors.ErrKeyTooLarge
	case w.Delete:
		return nil // bbolt deletes any key, even one it could not hold
	case w.Key == "":
		err = bolterrors.ErrKeyRequired
	case len(w.Key) > bolt.MaxKeySize:
		err = bolterrors.ErrKeyTooLarge
	case int64(len(w.Value)) > bolt.MaxValueSize:
		err = bolterrors.ErrValueTooLarge
	default:
		return nil
	}
	return &UnwritableError{Bucket: Cut(w.Bucket, 64), Key: Cut(w.Key, 64), Err: err}
}

// Unwritable reports whether err, from Apply, is one that retrying cannot
// fix: a write outside bbolt's limits, or a key where a bucket is (or the
// reverse). A full disk or an I/O error is not.
func Unwritable(err error) bool {
	var u *UnwritableError
	return errors.As(err, &u) || errors.Is(err, bolterrors.ErrKeyRequired) || errors.Is(err, bolterrors.ErrKeyTooLarge) ||
		errors.Is(err, bolterrors.ErrValueTooLarge) || errors.Is(err, bolterrors.ErrBucketNameRequired) ||
		errors.Is(err, bolterrors.ErrIncompatibleValue)
}
