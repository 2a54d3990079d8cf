package messages

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"log/slog"
	"testing"

	auditlogpb "github.com/gravitational/teleport/api/gen/proto/go/teleport/auditlog/v1"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
)

// protoactor logs an undeliverable message with slog.Any("message", m):
// a Delivery or an Observe shows what identifies it, never the event.
func TestMessagesLogWithoutTheEvent(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(zerolog.NewSlogHandler(zerolog.New(&buf)))
	d := &Delivery{EventID: "e1", Type: "user.login", URL: "https://f/test.log", Body: []byte(`{"user":"alice","password":"hunter2"}`)}
	o := &Observe{Event: &auditlogpb.EventUnstructured{Id: "e2", Type: "user.login"}}
	log.Info("[DeadLetter]", slog.Any("message", d))
	log.Info("[DeadLetter]", slog.Any("message", o))
	ds := &Deliveries{Items: []*Delivery{d, d}}
	log.Info("[DeadLetter]", slog.Any("message", ds))
	require.Contains(t, buf.String(), `"message.events":2`)
	require.Contains(t, buf.String(), "e1")
	require.Contains(t, buf.String(), "e2")
	for _, body := range []string{"hunter2", "alice", base64.StdEncoding.EncodeToString(d.Body)[:20], "Body"} {
		require.NotContains(t, buf.String(), body)
	}
	require.Contains(t, buf.String(), `"message.bytes":37`)
	require.Equal(t, "Deliveries{events=2 url=https://f/test.log bytes=74}", fmt.Sprint(ds))
	for _, s := range []string{fmt.Sprint(d), fmt.Sprintf("%+v", d), fmt.Sprintf("%v", o), fmt.Sprint(ds), fmt.Sprintf("%+v", ds)} {
		require.NotContains(t, s, "Body")
		require.NotContains(t, s, "123 34") // the bytes of `{"`
	}
}
