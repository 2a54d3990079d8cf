package wire

import (
	"context"
	"fmt"
	"strings"
)

// Schemes is a Transport that sends each URL with the transport of its
// scheme, so that the audit and the recording URLs may use different
// protocols (https:// with HTTP, forward:// with Forward).
type Schemes map[string]Transport

func (s Schemes) of(rawURL string) Transport {
	scheme, _, _ := strings.Cut(rawURL, "://")
	return s[scheme]
}

// Check implements Transport.
func (s Schemes) Check(ctx context.Context, rawURL string) error {
	t := s.of(rawURL)
	if t == nil {
		return fmt.Errorf("%s: no transport for its scheme", rawURL)
	}
	return t.Check(ctx, rawURL)
}

// NewSender implements Transport: a sender of each scheme's transport.
func (s Schemes) NewSender() Sender {
	senders := schemeSenders{}
	for scheme, t := range s {
		senders[scheme] = t.NewSender()
	}
	return senders
}

// Close implements Transport.
func (s Schemes) Close() {
	for _, t := range s {
		t.Close()
	}
}

type schemeSenders map[string]Sender

func (s schemeSenders) Send(ctx context.Context, rawURL string, events [][]byte) Result {
	scheme, _, _ := strings.Cut(rawURL, "://")
	sender := s[scheme]
	if sender == nil {
		return Result{Class: Permanent, Reason: "no transport for the URL's scheme: " + scheme}
	}
	return sender.Send(ctx, rawURL, events)
}

func (s schemeSenders) Close() {
	for _, sender := range s {
		sender.Close()
	}
}
