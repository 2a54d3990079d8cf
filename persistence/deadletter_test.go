package persistence

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

// fullDisk is the dead-letter file on a disk with room bytes left: a write
// past them writes what fits and fails with ENOSPC, as write(2) does.
type fullDisk struct {
	*os.File
	room    int
	syncErr error
}

func (f *fullDisk) Write(b []byte) (int, error) {
	if len(b) <= f.room {
		f.room -= len(b)
		return f.File.Write(b)
	}
	n, err := f.File.Write(b[:f.room])
	f.room -= n
	if err != nil {
		return n, err
	}
	return n, &fs.PathError{Op: "write", Path: f.Name(), Err: syscall.ENOSPC}
}

// Sync fails once with syncErr.
func (f *fullDisk) Sync() error {
	if err := f.syncErr; err != nil {
		f.syncErr = nil
		return err
	}
	return f.File.Sync()
}

func onFullDisk(room int, syncErr error) func(string) (letterFile, error) {
	return func(path string) (letterFile, error) {
		f, err := openAppend(path)
		if err != nil {
			return nil, err
		}
		return &fullDisk{File: f.(*os.File), room: room, syncErr: syncErr}, nil
	}
}

func letter(id string) DeadLetter {
	return DeadLetter{URL: "https://f/t", Status: 400, Reason: "bad", EventID: id, Type: "exec", Event: []byte(`{"uid":"` + id + `"}`)}
}

func encoded(t *testing.T, l DeadLetter) []byte {
	t.Helper()
	raw, err := json.Marshal(l)
	require.NoError(t, err)
	return append(raw, '\n')
}

func ids(letters []DeadLetter) []string {
	out := make([]string, len(letters))
	for i, l := range letters {
		out[i] = l.EventID
	}
	return out
}

// A write that runs out of disk mid-line (or whose sync fails) leaves the
// file exactly as it was: no partial line for the retry's letter to be
// glued to, and the retry's letter reads back whole.
func TestDeadLetterWriteThatFailsLeavesTheFileAsItWas(t *testing.T) {
	size := len(encoded(t, letter("c")))
	for name, open := range map[string]func(string) (letterFile, error){
		"nothing written":  onFullDisk(0, nil),
		"one byte written": onFullDisk(1, nil),
		"half written":     onFullDisk(size/2, nil),
		"all but newline":  onFullDisk(size-1, nil),
		"sync failed":      onFullDisk(size, &fs.PathError{Op: "sync", Err: syscall.EIO}),
	} {
		t.Run(name, func(t *testing.T) {
			d := NewDeadLetters(t.TempDir())
			require.NoError(t, d.Append(letter("a")))
			require.NoError(t, d.Append(letter("b")))
			before, err := os.ReadFile(d.Path())
			require.NoError(t, err)

			d.open = open
			err = d.Append(letter("c"))
			require.Error(t, err)
			after, rerr := os.ReadFile(d.Path())
			require.NoError(t, rerr)
			require.Equal(t, string(before), string(after), "the partial letter is cut off")
			require.ErrorContains(t, err, d.Path())
			require.ErrorContains(t, err, "left as it was")
			require.Equal(t, 2, d.Count())

			d.open = openAppend // room again: the retry
			require.NoError(t, d.Append(letter("c")))
			letters, bad, err := d.Letters()
			require.NoError(t, err)
			require.Empty(t, bad)
			require.Equal(t, []string{"a", "b", "c"}, ids(letters))
		})
	}
	t.Run("full disk", func(t *testing.T) {
		d := NewDeadLetters(t.TempDir())
		d.open = onFullDisk(3, nil)
		err := d.Append(letter("a"))
		require.ErrorIs(t, err, syscall.ENOSPC, "a caller can tell a full disk")
		require.ErrorContains(t, err, "free space on the file system of --storage")
	})
}

// A line cut short by a crash (no newline at the end of the file) is ended
// before the next letter, which stays whole.
func TestDeadLetterAfterALineCutShortStartsALineOfItsOwn(t *testing.T) {
	d := NewDeadLetters(t.TempDir())
	a := encoded(t, letter("a"))
	require.NoError(t, os.WriteFile(d.Path(), a[:len(a)/2], 0o600))
	require.NoError(t, d.Append(letter("b")))
	letters, bad, err := d.Letters()
	require.NoError(t, err)
	require.Equal(t, []string{"b"}, ids(letters))
	require.Len(t, bad, 1)
	require.Equal(t, 1, bad[0].Line)
	require.False(t, bad[0].Salvaged)
}

// A file an older version left garbled (a letter cut short by a full disk,
// the retry's letter glued to it) and a line edited by hand do not make the
// other letters unreadable: each bad line is reported with its number, the
// glued letter is read, and removing or purging letters keeps the bad
// bytes in the file.
func TestDeadLettersReadPastBadLines(t *testing.T) {
	d := NewDeadLetters(t.TempDir())
	a, b, c := encoded(t, letter("a")), encoded(t, letter("b")), encoded(t, letter("c"))
	cut := b[:len(b)/2]
	file := fmt.Sprintf("%s%s%s%s%s", a, cut, b, "edited by hand {\n", c)
	require.NoError(t, os.WriteFile(d.Path(), []byte(file), 0o600))

	letters, bad, err := d.Letters()
	require.NoError(t, err)
	require.Equal(t, []string{"a", "b", "c"}, ids(letters), "every good letter, the glued one too")
	require.Len(t, bad, 2)
	require.Equal(t, 2, bad[0].Line)
	require.Equal(t, len(cut), bad[0].Bytes)
	require.True(t, bad[0].Salvaged)
	require.Contains(t, bad[0].String(), "line 2:")
	require.Equal(t, 3, bad[1].Line)
	require.False(t, bad[1].Salvaged)
	require.Contains(t, bad[1].String(), "line 3:")

	n, err := d.Remove([]string{LetterKey("https://f/t", "b", nil), LetterKey("https://f/t", "a", nil)})
	require.NoError(t, err)
	require.Equal(t, 2, n)
	raw, err := os.ReadFile(d.Path())
	require.NoError(t, err)
	require.Equal(t, string(cut)+"\n"+"edited by hand {\n"+string(c), string(raw), "the bad bytes stay, on lines of their own")

	n, err = d.Purge()
	require.NoError(t, err)
	require.Equal(t, 1, n)
	raw, err = os.ReadFile(d.Path())
	require.NoError(t, err)
	require.Equal(t, string(cut)+"\n"+"edited by hand {\n", string(raw), "purge takes the letters only")
	letters, bad, err = d.Letters()
	require.NoError(t, err)
	require.Empty(t, letters)
	require.Len(t, bad, 2)
}

// An event whose letter is larger than the whole file may be is not
// reported as a full file (for ever, on an empty one): the error names the
// event and the size --dead-letter-max-mb must have.
func TestDeadLetterLargerThanTheLimitSaysSo(t *testing.T) {
	d := NewDeadLetters(t.TempDir())
	d.SetLimit(1 << 20)
	big := letter("huge")
	big.Event = []byte(`{"uid":"huge","query":"` + strings.Repeat("x", 3<<20) + `"}`)
	err := d.Append(big)
	var tooLarge *DeadLetterTooLargeError
	require.ErrorAs(t, err, &tooLarge)
	var full *DeadLettersFullError
	require.False(t, errors.As(err, &full), "the file is not full: %v", err)
	require.ErrorContains(t, err, "event huge (exec)")
	require.ErrorContains(t, err, "too large")
	require.ErrorContains(t, err, "--dead-letter-max-mb 4 or more")
	require.Zero(t, d.Size())
	require.NoError(t, d.Append(letter("small")), "other letters are written")
}

// Letters taken back are marked in the file, one per key, so that the next
// start sends their events again; the others are not.
func TestLettersTakenBackAreMarked(t *testing.T) {
	d := NewDeadLetters(t.TempDir())
	for _, id := range []string{"a", "b", "a"} {
		require.NoError(t, d.Append(DeadLetter{URL: "https://f/x", EventID: id, Event: []byte(`{"uid":"` + id + `"}`)}))
	}
	n, err := d.MarkTakenBack([]string{LetterKey("https://f/x", "a", nil)})
	require.NoError(t, err)
	require.Equal(t, 1, n)
	owed, err := d.TakenBack()
	require.NoError(t, err)
	require.Len(t, owed, 1)
	require.Equal(t, "a", owed[0].EventID)
	n, err = d.MarkTakenBack([]string{LetterKey("https://f/x", "a", nil), LetterKey("https://f/x", "a", nil)})
	require.NoError(t, err)
	require.Equal(t, 1, n, "the second letter of a; the first is marked already")
	all, bad, err := d.Letters()
	require.NoError(t, err)
	require.Empty(t, bad)
	require.Len(t, all, 3)
	require.Equal(t, []bool{true, false, true}, []bool{all[0].TakenBack, all[1].TakenBack, all[2].TakenBack})
}

func TestDeadLettersAppendJSONLines(t *testing.T) {
	dir := t.TempDir()
	d := NewDeadLetters(dir)
	require.NoError(t, d.Append(DeadLetter{Status: 400, Reason: "bad", EventID: "a", Event: []byte(`{"uid":"a"}`)}))
	require.NoError(t, d.Append(DeadLetter{Status: 413, Reason: "too big", EventID: "b", Event: []byte(`not json`)}))
	raw, err := os.ReadFile(d.Path())
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
	require.Len(t, lines, 2)
	require.Contains(t, lines[0], `"event":{"uid":"a"}`)
	require.Contains(t, lines[1], `"event":"not json"`)
}

// The dead-letter file is bounded and never silently loses a letter: at
// the limit an append fails, saying so, and works again once the operator
// has moved the file away.
func TestDeadLettersStopAtTheLimit(t *testing.T) {
	d := NewDeadLetters(t.TempDir())
	d.SetLimit(400)
	letter := DeadLetter{Status: 400, Reason: "bad", EventID: "a", Event: []byte(`{"uid":"a","pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}`)}
	require.NoError(t, d.Append(letter))
	require.NoError(t, d.Append(letter))
	err := d.Append(letter)
	var full *DeadLettersFullError
	require.ErrorAs(t, err, &full)
	require.ErrorContains(t, err, d.Path())
	require.ErrorContains(t, err, "--dead-letter-max-mb")
	size := d.Size()
	require.Positive(t, size)
	require.LessOrEqual(t, size, int64(400))
	require.Equal(t, 2, d.Count())

	require.NoError(t, os.Rename(d.Path(), d.Path()+".handled"))
	require.Zero(t, d.Size())
	require.NoError(t, d.Append(letter), "the operator dealt with the letters")
}

// Letters taken back are removed from the file, one per key, and the rest
// stay as they were.
func TestDeadLettersRemove(t *testing.T) {
	d := NewDeadLetters(t.TempDir())
	for _, id := range []string{"a", "b", "a", "c"} {
		require.NoError(t, d.Append(DeadLetter{URL: "https://f/t", Status: 400, EventID: id, Event: []byte(`{}`)}))
	}
	n, err := d.Remove([]string{LetterKey("https://f/t", "a", nil), LetterKey("https://f/t", "c", nil), LetterKey("https://f/other", "b", nil)})
	require.NoError(t, err)
	require.Equal(t, 2, n)
	raw, err := os.ReadFile(d.Path())
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
	require.Len(t, lines, 2)
	require.Contains(t, lines[0], `"event_id":"b"`)
	require.Contains(t, lines[1], `"event_id":"a"`)
	require.Equal(t, 2, d.Count())
	info, err := os.Stat(d.Path())
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), info.Mode().Perm())
}
