package deadletters

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/fdfwd/teleport-event-handler/internal/deliver/wire"
	"github.com/fdfwd/teleport-event-handler/persistence"
	"github.com/fdfwd/teleport-event-handler/tests/leaktest"
	"github.com/fdfwd/teleport-event-handler/tests/storetest"
)

// Replay's senders are goroutines it joins before it returns.
func TestMain(m *testing.M) { leaktest.Main(m) }

// accepting is a Fluentd that takes every event.
type accepting struct {
	mu   sync.Mutex
	sent []string
}

func (a *accepting) Check(context.Context, string) error { return nil }
func (a *accepting) NewSender() wire.Sender              { return a }
func (a *accepting) Close()                              {}
func (a *accepting) Send(_ context.Context, _ string, events [][]byte) wire.Result {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, e := range events {
		a.sent = append(a.sent, string(e))
	}
	return wire.Result{Class: wire.Success, Status: 200}
}

// state makes dir a daemon's directory, its state file closed.
func state(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	storetest.Seed(t, dir)
	return dir
}

func line(t *testing.T, id string) []byte {
	t.Helper()
	raw, err := json.Marshal(persistence.DeadLetter{URL: "https://f/t", Status: 400, EventID: id, Event: []byte(`{"uid":"` + id + `"}`)})
	require.NoError(t, err)
	return append(raw, '\n')
}

// Replay and purge rewrite the dead-letter file: they run alone. Beside a
// process holding the state, even with a shared lock as another replay or
// a status does, they are refused, and the message names that process.
func TestReplayAndPurgeRefuseWhileAnotherProcessHoldsTheState(t *testing.T) {
	for name, hold := range map[string]func(dir string) (*persistence.Store, error){
		"a daemon (exclusive)":        persistence.Open,
		"a replay or status (shared)": func(dir string) (*persistence.Store, error) { return persistence.OpenReadOnly(dir, 0) },
	} {
		t.Run(name, func(t *testing.T) {
			dir := state(t)
			file := filepath.Join(dir, persistence.DeadLetterFile)
			require.NoError(t, os.WriteFile(file, line(t, "a"), 0o600))
			held, err := hold(dir)
			require.NoError(t, err)
			defer held.Close()

			_, _, err = Purge(dir, func(int, string, []persistence.BadLine) bool { return true })
			var he *HeldError
			require.ErrorAs(t, err, &he)
			require.ErrorIs(t, err, persistence.ErrLocked)
			require.ErrorContains(t, err, fmt.Sprintf("is held by process (pid %d: ", os.Getpid()))
			require.ErrorContains(t, err, "stop it first")
			_, err = Replay(context.Background(), dir, &accepting{}, 1, LetterJSON, zerolog.Nop())
			require.ErrorAs(t, err, &he)
			raw, err := os.ReadFile(file)
			require.NoError(t, err)
			require.Equal(t, string(line(t, "a")), string(raw), "the letter is neither purged nor replayed")
		})
	}
}

// The holder is named by what it is, from its command line.
func TestHeldErrorNamesTheHolder(t *testing.T) {
	for args, what := range map[string]string{
		"teleport-event-handler -c /etc/teh.toml start --debug":     "a running daemon (pid 42: teleport-event-handler -c /etc/teh.toml start --debug)",
		"/usr/bin/teleport-event-handler dead-letters replay --yes": "another dead-letters command (pid 42: ",
		"teleport-event-handler export retry --all":                 "an export command (pid 42: ",
		"vim state.db": "process (pid 42: vim state.db)",
	} {
		err := &HeldError{Path: "/s/x/state.db", Holders: []persistence.Holder{{PID: 42, Args: strings.Fields(args)}}}
		require.Contains(t, err.Error(), "the state file /s/x/state.db is held by "+what)
	}
	err := &HeldError{Path: "/s/x/state.db", Holders: []persistence.Holder{{PID: 0}}}
	require.Contains(t, err.Error(), "held by a process in another PID namespace")
	err = &HeldError{Path: "/s/x/state.db"}
	require.Contains(t, err.Error(), "another process holds the state file /s/x/state.db (a running daemon")
}

// Replay and purge need the daemon's state directory: they do not make one.
func TestReplayWithoutStateMakesNone(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "typo_3025")
	_, err := Replay(context.Background(), dir, &accepting{}, 1, LetterJSON, zerolog.Nop())
	require.ErrorContains(t, err, "no daemon has run with this --storage and --teleport-addr")
	_, err = os.Stat(dir)
	require.True(t, os.IsNotExist(err))
}

// A garbled line (a letter cut short by a full disk, the next one glued to
// it, as older versions wrote) does not stop the others: list shows every
// letter, replay sends them all and names the bad line, which stays in the
// file.
func TestBadLinesAreReportedAndTheOtherLettersReplayed(t *testing.T) {
	dir := state(t)
	file := filepath.Join(dir, persistence.DeadLetterFile)
	b := line(t, "b")
	cut := b[:len(b)/3]
	content := string(line(t, "a")) + string(cut) + string(b) + "not a letter\n" + string(line(t, "c"))
	require.NoError(t, os.WriteFile(file, []byte(content), 0o600))

	var out bytes.Buffer
	n, bad, err := List(dir, &out)
	require.NoError(t, err)
	require.Equal(t, 3, n)
	require.Len(t, bad, 2)
	require.Equal(t, []int{2, 3}, []int{bad[0].Line, bad[1].Line})
	for _, id := range []string{" a ", " b ", " c "} {
		require.Contains(t, out.String(), id)
	}

	var logs bytes.Buffer
	fd := &accepting{}
	res, err := Replay(context.Background(), dir, fd, 2, LetterJSON, zerolog.New(&logs))
	require.NoError(t, err)
	require.Equal(t, Result{Replayed: 3, Unreadable: 2}, res)
	require.ElementsMatch(t, []string{`{"uid":"a"}`, `{"uid":"b"}`, `{"uid":"c"}`}, fd.sent)
	require.Contains(t, logs.String(), `"line":2`)
	require.Contains(t, logs.String(), `"line":3`)
	raw, err := os.ReadFile(file)
	require.NoError(t, err)
	require.Equal(t, string(cut)+"\nnot a letter\n", string(raw), "the bad bytes stay; every letter is out")

	n, bad, err = Purge(dir, func(int, string, []persistence.BadLine) bool { return true })
	require.NoError(t, err)
	require.Zero(t, n)
	require.Len(t, bad, 2, "reported to purge's caller too")
}

// Purge takes the letters out and reports the bad lines that stay, by
// their numbers in the file it leaves.
func TestPurgeKeepsTheBadLines(t *testing.T) {
	dir := state(t)
	file := filepath.Join(dir, persistence.DeadLetterFile)
	content := string(line(t, "a")) + "not a letter\n" + string(line(t, "b"))
	require.NoError(t, os.WriteFile(file, []byte(content), 0o600))
	var told []persistence.BadLine
	n, bad, err := Purge(dir, func(n int, _ string, bad []persistence.BadLine) bool {
		told = bad
		return n == 2
	})
	require.NoError(t, err)
	require.Equal(t, 2, n)
	require.Len(t, told, 1)
	require.Equal(t, 2, told[0].Line)
	require.Len(t, bad, 1)
	require.Equal(t, 1, bad[0].Line, "numbered as in the file left")
	raw, err := os.ReadFile(file)
	require.NoError(t, err)
	require.Equal(t, "not a letter\n", string(raw))
}

// tooLarge judges every event too large, as a receiver's limit does.
type tooLarge struct{ accepting }

func (t *tooLarge) NewSender() wire.Sender { return t }
func (t *tooLarge) Send(context.Context, string, [][]byte) wire.Result {
	return wire.Result{Class: wire.TooLarge, Reason: "over --syslog-max-message-kb"}
}

// A letter still too large for the receiver stays a letter; it is not
// retried for ever. What a letter is sent as is the Body's.
func TestReplayKeepsWhatIsStillTooLargeAndSendsTheBody(t *testing.T) {
	dir := state(t)
	require.NoError(t, os.WriteFile(filepath.Join(dir, persistence.DeadLetterFile), append(line(t, "a"), line(t, "b")...), 0o600))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := Replay(ctx, dir, &tooLarge{}, 1, LetterJSON, zerolog.Nop())
	require.NoError(t, err)
	require.Equal(t, Result{Kept: 2}, res)

	a := &accepting{}
	res, err = Replay(ctx, dir, a, 1, func(l persistence.DeadLetter) ([]byte, error) { return []byte("<13>1 " + l.EventID), nil }, zerolog.Nop())
	require.NoError(t, err)
	require.Equal(t, Result{Replayed: 2}, res)
	require.ElementsMatch(t, []string{"<13>1 a", "<13>1 b"}, a.sent)
}
