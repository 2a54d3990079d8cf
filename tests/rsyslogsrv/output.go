package rsyslogsrv

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// Lines are the messages rsyslog wrote for input (Syslog or RELP) so far,
// one a line as received, over restarts. A line rsyslog is still writing
// is left out.
func (s *Server) Lines(input string) ([]string, error) {
	file, ok := s.out[input]
	if !ok {
		return nil, fmt.Errorf("rsyslogsrv: no input %q (%q or %q)", input, Syslog, RELP)
	}
	b, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil // nothing received yet
	}
	if err != nil {
		return nil, fmt.Errorf("rsyslogsrv: read %s: %w", input, err)
	}
	text := string(b)
	if end := strings.LastIndexByte(text, '\n'); end >= 0 {
		text = text[:end]
	} else {
		return nil, nil
	}
	return strings.Split(text, "\n"), nil
}

// Messages are Lines parsed. A line Parse refuses is an error, with the
// messages before it.
func (s *Server) Messages(input string) ([]Message, error) {
	lines, err := s.Lines(input)
	if err != nil {
		return nil, err
	}
	msgs := make([]Message, 0, len(lines))
	for i, line := range lines {
		m, err := Parse(line)
		if err != nil {
			return msgs, fmt.Errorf("rsyslogsrv: %s message %d: %w", input, i+1, err)
		}
		msgs = append(msgs, m)
	}
	return msgs, nil
}

// Await returns input's messages once there are at least n, and fails the
// test, with the count, when there are fewer after timeout or one does
// not parse.
func (s *Server) Await(t testing.TB, input string, n int, timeout time.Duration) []Message {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		msgs, err := s.Messages(input)
		if err != nil {
			t.Fatalf("%v", err)
		}
		if len(msgs) >= n {
			return msgs
		}
		if time.Now().After(deadline) {
			t.Fatalf("rsyslogsrv: %d %s messages after %v, want %d%s", len(msgs), input, timeout, n, s.logTail())
		}
		time.Sleep(pollInterval)
	}
}
