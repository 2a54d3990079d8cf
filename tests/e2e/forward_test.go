package e2e

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fdfwd/teleport-event-handler/tests/fluentdsrv"
	"github.com/fdfwd/teleport-event-handler/tests/harness"
)

// forwardWindow is the in-flight window over forward with --fluentd-batch
// 20 and 10 connections: 4 x 10 x 20 events.
const forwardWindow = 800

// forwardEnv is an environment whose daemon sends with the forward
// protocol, to a receiver with the given shared key.
func forwardEnv(t *testing.T, key string) *env {
	t.Helper()
	e := newEnv(t)
	if key != "" {
		e.Fluentd.Close()
		rcv, err := fluentdsrv.Start(fluentdsrv.Config{TLS: e.PKI.ServerTLS(e.PKI.FluentdServer, e.PKI.FluentdCA), SharedKey: []byte(key)})
		require.NoError(t, err)
		t.Cleanup(rcv.Close)
		e.Fluentd = rcv
	}
	e.FluentdURL = e.Fluentd.ForwardURL()
	return e
}

// Over forward every audit event and every recording arrives once, in
// PackedForward messages of many events, with the event's time as the
// message time.
func TestForwardDeliversEveryEventOnce(t *testing.T) {
	t.Parallel()
	e := forwardEnv(t, "")
	evs := e.Seed(1500, 41)
	p := harness.Run(t, binary, nil, e.Args("--exit-on-last-event")...)
	require.Equal(t, 0, p.Wait(t, time.Minute), p.Output())
	require.Zero(t, harness.Delivered(t, e.Fluentd, evs, nil), "duplicates in a clean run")
	require.Zero(t, e.SessionsDelivered(defaultSkip), "recording duplicates")
	modes := e.Fluentd.ForwardMessages()
	require.Positive(t, modes["packed"])
	require.Less(t, modes["packed"], len(evs)/2, "many events per message")
	times := e.Fluentd.EventTimes("test.log")
	require.Len(t, times, len(evs))
	byID := map[string]time.Time{}
	for _, ev := range evs {
		byID[ev.GetID()] = ev.GetTime()
	}
	for i, raw := range e.Fluentd.Records("test.log") {
		var rec struct{ UID string }
		require.NoError(t, json.Unmarshal(raw, &rec))
		require.True(t, byID[rec.UID].Equal(times[i]), "record %s: message time %s, event time %s", rec.UID, times[i], byID[rec.UID])
	}
}

// With a shared key and gzip the handshake passes and CompressedPackedForward
// messages carry everything; a wrong key stops the start with a message
// that names the option, without printing the key.
func TestForwardWithSharedKeyAndGzip(t *testing.T) {
	t.Parallel()
	e := forwardEnv(t, "s3cret-key")
	evs := e.Seed(400, 43)
	p := harness.Run(t, binary, []string{"FDFWD_FLUENTD_SHARED_KEY=wrong-key"}, e.Args("--exit-on-last-event")...)
	require.Equal(t, 1, p.Wait(t, 30*time.Second), p.Output())
	require.Contains(t, p.Output(), "shared-key handshake failed")
	require.Contains(t, p.Output(), "--fluentd-shared-key")
	require.NotContains(t, p.Output(), "wrong-key")
	require.Zero(t, e.Fluentd.Count())

	p = harness.Run(t, binary, []string{"FDFWD_FLUENTD_SHARED_KEY=s3cret-key"}, e.Args("--exit-on-last-event", "--fluentd-compress", "gzip")...)
	require.Equal(t, 0, p.Wait(t, time.Minute), p.Output())
	require.NotContains(t, p.Output(), "s3cret-key")
	require.Zero(t, harness.Delivered(t, e.Fluentd, evs, nil))
	require.Positive(t, e.Fluentd.ForwardMessages()["compressed"])
	require.Zero(t, e.Fluentd.ForwardMessages()["packed"])
}

// Acks that never come (the connection closed after the message) and
// connections closed mid-message lose nothing: the chunk is sent again.
func TestForwardLostAcksAreSentAgain(t *testing.T) {
	t.Parallel()
	e := forwardEnv(t, "")
	evs := e.Seed(1000, 45)
	e.Fluentd.SetForwardFaults(fluentdsrv.ForwardFaults{DropAcks: 3, CloseMidMessage: 3})
	p := harness.Run(t, binary, nil, e.Args("--exit-on-last-event", "--fluentd-batch", "20")...)
	require.Equal(t, 0, p.Wait(t, time.Minute), p.Output())
	// The faults hit the next messages, audit or recording alike.
	dups := harness.Delivered(t, e.Fluentd, evs, nil) + e.SessionsDelivered(defaultSkip)
	t.Logf("%d duplicates from 3 dropped acks of up to 20 events", dups)
	require.LessOrEqual(t, dups, 3*20, "only the unacked messages are sent twice")
	require.Positive(t, dups, "a stored message without an ack is sent again")
}

func TestForwardKillNineLosesNothing(t *testing.T) {
	t.Parallel()
	e := forwardEnv(t, "")
	evs := e.Seed(12000, 47)
	// Stretch the run (600 messages over 10 connections, 30 ms an ack) so
	// that the kills land mid-stream.
	e.Fluentd.SetForwardFaults(fluentdsrv.ForwardFaults{AckDelay: 30 * time.Millisecond})
	args := []string{"--exit-on-last-event", "--fluentd-batch", "20"}
	kills := killAtRandom(t, e, args, 5, 600, 900)
	p := harness.Run(t, binary, nil, e.Args(args...)...)
	require.Equal(t, 0, p.Wait(t, 2*time.Minute), p.Output())
	dups := harness.Delivered(t, e.Fluentd, evs, nil)
	t.Logf("%d kills, %d duplicates (bound %d)", kills, dups, kills*forwardWindow)
	require.LessOrEqual(t, dups, kills*forwardWindow)
}

// in_forward drops a message over its chunk_size_limit without an ack.
// Measured against a real Fluentd 1.18 with chunk_size_limit 16k, 0 of
// 3,000 events arrived in 90 s: every batch of 100 was retried unchanged
// for ever. Now the messages are halved until they are answered, the one
// event too large alone is dead-lettered naming chunk_size_limit, and the
// run ends.
func TestForwardBatchesOverChunkSizeLimitAreHalvedNotRetriedForEver(t *testing.T) {
	t.Parallel()
	e := forwardEnv(t, "")
	e.Fluentd.SetForwardFaults(fluentdsrv.ForwardFaults{ChunkSizeLimit: 16 << 10})
	evs := e.Seed(3000, 26)
	huge := failedLogin(strings.Repeat("u", 20_000), 1, e.T0.Add(1500*time.Second+time.Millisecond))
	require.NoError(t, e.Teleport.AddEvents(huge))
	began := time.Now()
	p := harness.Run(t, binary, nil, e.Args("--exit-on-last-event")...)
	require.Equal(t, 3, p.Wait(t, 3*time.Minute), "caught up with one event dead-lettered: %s", harness.Tail(p.Output(), 20))
	t.Logf("%d events in %s, %d messages dropped by the receiver", len(evs)+1, time.Since(began).Round(time.Second), e.Fluentd.ForwardDropped())
	require.Zero(t, harness.Delivered(t, e.Fluentd, evs, map[string]bool{huge.GetID(): true}), "duplicates")
	require.Zero(t, e.SessionsDelivered(defaultSkip), "recording duplicates")
	letters := deadLetters(t, e)
	require.Len(t, letters, 1)
	require.Equal(t, huge.GetID(), letters[0].EventID)
	require.Contains(t, letters[0].Reason, "chunk_size_limit")
}
