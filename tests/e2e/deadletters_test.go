package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fdfwd/teleport-event-handler/persistence"
	"github.com/fdfwd/teleport-event-handler/tests/harness"
	"github.com/fdfwd/teleport-event-handler/tests/storetest"
)

// dl runs dead-letters SUB with start's arguments, stdin given.
func dl(t *testing.T, e *env, stdin string, sub string, extra ...string) (string, int) {
	t.Helper()
	args := append(append([]string{"dead-letters", sub}, e.Args()[1:]...), extra...)
	// A replay that never ends (a letter retried for ever) fails the test
	// rather than hanging it.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else {
		require.NoError(t, err)
	}
	return string(out), code
}

// deadLetterPath is the dead-letter file of e's daemon.
func deadLetterPath(e *env) string {
	return filepath.Join(persistence.Dir(e.Storage, e.Teleport.Addr()), persistence.DeadLetterFile)
}

// deadLetters reads the letters in the dead-letter file of e's daemon, in
// the file's order (none when there is no file), failing the test on a
// line that is not a letter.
func deadLetters(t *testing.T, e *env) []persistence.DeadLetter {
	t.Helper()
	letters, bad, err := persistence.NewDeadLetters(persistence.Dir(e.Storage, e.Teleport.Addr())).Letters()
	require.NoError(t, err)
	require.Empty(t, bad, "lines that are not letters")
	return letters
}

// Events Fluentd rejected are listed, and sent again once it takes them:
// each letter leaves the file only once confirmed, those still rejected
// stay; replay and purge refuse while the daemon runs; purge asks first.
func TestDeadLettersListReplayPurge(t *testing.T) {
	e, evs := seededEnv(t, 200, 71)
	var mu sync.Mutex
	bad := map[string]bool{evs[3].GetID(): true, evs[50].GetID(): true, evs[120].GetID(): true}
	e.Fluentd.RejectWhere(400, func(r map[string]any) bool {
		id, _ := r["uid"].(string)
		mu.Lock()
		defer mu.Unlock()
		return bad[id]
	})
	p := harness.Run(t, binary, nil, e.Args("--exit-on-last-event")...)
	require.Equal(t, 3, p.Wait(t, time.Minute), p.Output())
	file := deadLetterPath(e)

	out, code := dl(t, e, "", "list")
	t.Log("\n" + out)
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "3 dead letter(s)")
	for _, i := range []int{3, 50, 120} {
		require.Contains(t, out, evs[i].GetID())
	}

	// Running daemon: list works, replay and purge refuse.
	p = harness.Run(t, binary, nil, e.Args()...)
	harness.WaitFor(t, 30*time.Second, "the daemon holds its state", func() bool {
		s, err := persistence.OpenReadOnly(persistence.Dir(e.Storage, e.Teleport.Addr()), 10*time.Millisecond)
		if err == nil {
			s.Close()
		}
		return err != nil
	})
	out, code = dl(t, e, "", "replay")
	require.Equal(t, 1, code, out)
	require.Contains(t, out, "stop it first")
	p.Signal(syscall.SIGTERM)
	require.Equal(t, 0, p.Wait(t, 30*time.Second), p.Output())

	// Fluentd takes two of the three now.
	still := evs[120].GetID()
	mu.Lock()
	delete(bad, evs[3].GetID())
	delete(bad, evs[50].GetID())
	mu.Unlock()
	out, code = dl(t, e, "", "replay", "--log-format", "text")
	t.Log("\n" + out)
	require.Equal(t, 3, code, "one letter is still rejected: %s", out)
	got := e.Fluentd.CountByUID()
	require.Equal(t, 1, got[evs[3].GetID()])
	require.Equal(t, 1, got[evs[50].GetID()])
	raw, err := os.ReadFile(file)
	require.NoError(t, err)
	require.Equal(t, 1, strings.Count(string(raw), "\n"), "only the letter still rejected stays")
	require.Contains(t, string(raw), still)

	out, code = dl(t, e, "n\n", "purge")
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "for good?")
	raw, _ = os.ReadFile(file)
	require.Contains(t, string(raw), still, "not purged without a yes")
	out, code = dl(t, e, "", "purge", "--yes")
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "1 dead letter(s) removed")
	raw, _ = os.ReadFile(file)
	require.Empty(t, raw)
}

// Replay and purge hold the state file alone: beside a running daemon, or
// a replay still at work, another replay or a purge is refused (exit 1),
// naming what holds the state, and the letters stay as they were.
func TestDeadLettersReplayAndPurgeRunAlone(t *testing.T) {
	e := parallelEnv(t)
	dir := persistence.Dir(e.Storage, e.Teleport.Addr())
	storetest.Seed(t, dir)
	letters := persistence.NewDeadLetters(dir)
	for _, id := range []string{"a", "b"} {
		require.NoError(t, letters.Append(persistence.DeadLetter{URL: e.FluentdURL + "/test.log", Status: 400,
			EventID: id, Event: []byte(`{"uid":"` + id + `"}`)}))
	}
	before, err := os.ReadFile(letters.Path())
	require.NoError(t, err)
	held := func() bool {
		s, err := persistence.OpenReadOnly(dir, 10*time.Millisecond)
		if err == nil {
			s.Close()
		}
		return err != nil
	}
	refused := func(holder string) {
		t.Helper()
		for _, sub := range [][]string{{"purge", "--yes"}, {"replay"}} {
			out, code := dl(t, e, "", sub[0], sub[1:]...)
			t.Log("\n" + out)
			require.Equal(t, 1, code, out)
			require.Contains(t, out, "is held by "+holder+" (pid ")
			require.Equal(t, 1, strings.Count(out, "stop it first"), "the error once: %s", out)
			require.Equal(t, 1, strings.Count(strings.TrimSpace(out), "\n")+1, "one line: %s", out)
		}
		raw, err := os.ReadFile(letters.Path())
		require.NoError(t, err)
		require.Equal(t, string(before), string(raw), "the letters are as they were")
	}

	daemon := harness.Run(t, binary, nil, e.Args()...)
	harness.WaitFor(t, 30*time.Second, "the daemon holds its state", held)
	refused("a running daemon")
	daemon.Signal(syscall.SIGTERM)
	require.Equal(t, 0, daemon.Wait(t, 30*time.Second), daemon.Output())

	// Fluentd fails every request for now: the replay retries, holding the
	// state.
	e.Fluentd.FailFirst(1<<30, 503)
	replay := harness.Run(t, binary, nil, append([]string{"dead-letters", "replay"}, e.Args()[1:]...)...)
	harness.WaitFor(t, 30*time.Second, "the replay retries", func() bool {
		return strings.Contains(replay.Output(), "replaying a dead letter failed; retrying")
	})
	require.True(t, held())
	refused("another dead-letters command")
	replay.Signal(syscall.SIGINT)
	require.Equal(t, 3, replay.Wait(t, 30*time.Second), "the letters are left: %s", replay.Output())

	out, code := dl(t, e, "", "purge", "--yes")
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "2 dead letter(s) removed")
}

// Measured black-box: a receiver answering 400 to everything; the breaker
// opened after 9 letters and took them back; SIGTERM; a restart against a
// fixed receiver with --exit-on-last-event delivered 499 of 500 events and
// exited 0 while the file still held the 9 letters: 8 of them delivered in
// the second run (a replay would send them twice), and the first event of
// the log, whose letter the checkpoint had passed, never sent again. Taken
// back letters are events still owed: the next start sends them, once,
// and takes them out of the file.
func TestLettersTakenBackSurviveARestartAsEventsOwed(t *testing.T) {
	e, evs := seededEnv(t, 500, 27)
	var rejectAll atomic.Bool
	rejectAll.Store(true)
	e.Fluentd.RejectWhere(400, func(map[string]any) bool { return rejectAll.Load() })
	args := e.Args("--skip-session-types", "print,desktop.recording,session.start,session.end,session.data,resize")
	p := harness.Run(t, binary, nil, args...)
	harness.WaitFor(t, time.Minute, "the breaker to open", func() bool {
		return strings.Contains(p.Output(), "taking back the dead letters")
	})
	p.Signal(syscall.SIGTERM)
	p.Wait(t, time.Minute)
	require.NotEmpty(t, deadLetters(t, e), "the letters of the run stay in the file until delivered")

	rejectAll.Store(false)
	p = harness.Run(t, binary, nil, append(args, "--exit-on-last-event")...)
	require.Equal(t, 0, p.Wait(t, 2*time.Minute), harness.Tail(p.Output(), 20))
	require.Zero(t, harness.Delivered(t, e.Fluentd, evs, nil), "an event delivered twice")
	require.Empty(t, deadLetters(t, e), "letters of events delivered stay in the file")
	out := harness.Run(t, binary, nil, append([]string{"status"}, args[1:]...)...)
	require.Equal(t, 0, out.Wait(t, time.Minute), out.Output())
	require.Regexp(t, `dead letters +(none|0)`, out.Output())
}
