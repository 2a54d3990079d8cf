package pool_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	auditlogpb "github.com/gravitational/teleport/api/gen/proto/go/teleport/auditlog/v1"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/fdfwd/teleport-event-handler/actors/pool"
	"github.com/fdfwd/teleport-event-handler/internal/deliver/eventjson"
	"github.com/fdfwd/teleport-event-handler/internal/deliver/eventmsgpack"
	"github.com/fdfwd/teleport-event-handler/internal/deliver/wire"
	"github.com/fdfwd/teleport-event-handler/internal/deliver/wire/forward"
	"github.com/fdfwd/teleport-event-handler/internal/operate/metrics"
	"github.com/fdfwd/teleport-event-handler/messages"
	"github.com/fdfwd/teleport-event-handler/persistence"
	"github.com/fdfwd/teleport-event-handler/tests/fluentdsrv"
)

// forward is a forward transport to the fixture's receiver, whose acks
// are waited for ackWait.
func (f *fixture) forward(t *testing.T, ackWait time.Duration, opts forward.Options) *forward.Transport {
	t.Helper()
	creds, err := wire.LoadCredentials(f.pki.FluentdCAFile, f.pki.FluentdClientCertFile, f.pki.FluentdClientKeyFile)
	require.NoError(t, err)
	opts.Hostname, opts.AckWait = "pool-test", ackWait
	return forward.New(creds, opts)
}

// big is the body of event i, padded to size bytes.
func big(i, size int) []byte {
	return fmt.Appendf(nil, `{"uid":"ev-%d","event":"exec","pad":%q}`, i, strings.Repeat("p", size))
}

// in_forward drops a message over its chunk_size_limit without an answer.
// A batch sent again unchanged was dropped again, for ever (0 of 3,000
// events delivered against a real Fluentd with chunk_size_limit 16k):
// unanswered messages are now sent in halves, and the one event too large
// alone is dead-lettered once other messages are acknowledged.
func TestUnansweredForwardMessagesAreHalvedAndTheOversizedEventDeadLettered(t *testing.T) {
	f := newFixture(t)
	f.rcv.SetForwardFaults(fluentdsrv.ForwardFaults{ChunkSizeLimit: 2000})
	const n, poison = 300, 133
	m := metrics.New()
	got := batchRun{f: f, deps: pool.Deps{MaxConnections: 2, Batch: 40, Metrics: m},
		transport: f.forward(t, 150*time.Millisecond, forward.Options{}), base: f.rcv.ForwardURL(),
		body: func(i int) []byte {
			if i == poison {
				return big(i, 5000)
			}
			return big(i, 60)
		},
	}.deliver(t, n, 60*time.Second)
	for seq, d := range got {
		want := messages.Sent
		if seq == poison {
			want = messages.DeadLettered
		}
		require.Equal(t, want, d.Outcome, seq)
	}
	requireOnce(t, f, n-1)
	require.Equal(t, []string{fmt.Sprint("ev-", poison)}, deadLetterIDs(t, f))
	letters, _, err := f.dl.Letters()
	require.NoError(t, err)
	require.Contains(t, letters[0].Reason, "chunk_size_limit")
	require.Positive(t, f.rcv.ForwardDropped())
}

// A Fluentd that answers nothing at all is an outage, not a message it
// will not take: nothing is dead-lettered, readiness is red, and the events
// are delivered once it answers again.
func TestAForwardReceiverThatAnswersNothingHoldsTheEvents(t *testing.T) {
	f := newFixture(t)
	f.rcv.SetForwardFaults(fluentdsrv.ForwardFaults{AckNothing: true})
	m := metrics.New()
	m.Health.SetRunning(true)
	m.Health.SetGrace(time.Millisecond) // red at the first failure that lasts
	const n = 30
	// Well past MaxNoAcks tries of single events, the receiver answers
	// again.
	red := make(chan bool, 1)
	go func() {
		deadline := time.Now().Add(30 * time.Second)
		for f.rcv.ForwardDropped() < 2*pool.MaxNoAcks+2 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		ok, _ := m.Health.Ready()
		red <- !ok
		f.rcv.SetForwardFaults(fluentdsrv.ForwardFaults{})
	}()
	got := batchRun{f: f, deps: pool.Deps{MaxConnections: 2, Batch: 10, Metrics: m},
		transport: f.forward(t, 50*time.Millisecond, forward.Options{}), base: f.rcv.ForwardURL(),
	}.deliver(t, n, 60*time.Second)
	require.True(t, <-red, "readiness stayed green while nothing was answered")
	for seq, d := range got {
		require.Equal(t, messages.Sent, d.Outcome, seq)
	}
	requireOnce(t, f, n)
	require.Empty(t, deadLetterIDs(t, f))
}

// bigEntry is event i, padded to size bytes, as the daemon sends it to
// in_forward: eventmsgpack's entry.
func bigEntry(i, size int) *auditlogpb.EventUnstructured {
	return &auditlogpb.EventUnstructured{Type: "exec", Id: fmt.Sprint("ev-", i), Unstructured: &structpb.Struct{Fields: map[string]*structpb.Value{
		"uid": structpb.NewStringValue(fmt.Sprint("ev-", i)), "event": structpb.NewStringValue("exec"),
		"time": structpb.NewStringValue("2026-12-08T01:02:03.456Z"), "pad": structpb.NewStringValue(strings.Repeat("p", size)),
	}}}
}

// A message that would be larger than --fluentd-max-message-kb is not sent:
// the batch goes in halves, and an event too large alone is dead-lettered
// at once, naming the option, as its JSON.
func TestForwardMessagesAreKeptUnderTheLimit(t *testing.T) {
	f := newFixture(t)
	const n, poison = 200, 77
	got := batchRun{f: f, deps: pool.Deps{MaxConnections: 2, Batch: 50},
		transport: f.forward(t, time.Minute, forward.Options{MaxMessage: 2000}), base: f.rcv.ForwardURL(),
		body: func(i int) []byte {
			if i == poison {
				return eventmsgpack.Entry(bigEntry(i, 3000))
			}
			return eventmsgpack.Entry(bigEntry(i, 60))
		},
	}.deliver(t, n, 30*time.Second)
	require.Equal(t, messages.DeadLettered, got[poison].Outcome)
	requireOnce(t, f, n-1)
	letters, _, err := f.dl.Letters()
	require.NoError(t, err)
	require.Len(t, letters, 1)
	require.Equal(t, string(eventjson.Event(bigEntry(poison, 3000))), string(letters[0].Event))
	require.Contains(t, letters[0].Reason, "--fluentd-max-message-kb")
	require.Zero(t, f.rcv.ForwardDropped())
}

// Letters taken back by an earlier run (a receiver rejected everything,
// then the daemon stopped) are events still owed: the pool's first start
// sends them again and removes each letter once accepted; a reader's own
// delivery of one of them (sent again from its checkpoint) joins it rather
// than sending it twice. A letter not taken back stays.
func TestLettersTakenBackByAnEarlierRunAreSentOnce(t *testing.T) {
	f := newFixture(t)
	url := f.rcv.URL() + "/test.log"
	letter := func(id string) persistence.DeadLetter {
		return persistence.DeadLetter{Time: time.Now(), URL: url, Status: 400, Reason: "rejected", EventID: id,
			Event: fmt.Appendf(nil, `{"uid":%q,"event":"exec"}`, id)}
	}
	for _, id := range []string{"ev-5", "ev-old", "ev-bad"} {
		require.NoError(t, f.dl.Append(letter(id)))
	}
	n, err := f.dl.MarkTakenBack([]string{persistence.LetterKey(url, "ev-5", nil), persistence.LetterKey(url, "ev-old", nil)})
	require.NoError(t, err)
	require.Equal(t, 2, n)

	const events = 20
	got := batchRun{f: f, deps: pool.Deps{MaxConnections: 2},
		until: func() bool {
			letters, _, err := f.dl.Letters()
			return err == nil && len(letters) == 1 && f.rcv.CountByUID()["ev-old"] == 1
		},
	}.deliver(t, events, 30*time.Second)
	for seq, d := range got {
		require.Equal(t, messages.Sent, d.Outcome, seq)
	}
	requireOnce(t, f, events+1) // ev-0 ... ev-19, and ev-old
	letters, _, err := f.dl.Letters()
	require.NoError(t, err)
	require.Len(t, letters, 1)
	require.Equal(t, "ev-bad", letters[0].EventID, "a letter not taken back stays")
}
