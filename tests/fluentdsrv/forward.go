package fluentdsrv

import (
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/IBM/fluent-forward-go/fluent/protocol"
	"github.com/tinylib/msgp/msgp"
)

// The receiver also serves Fluentd's forward protocol (in_forward) on a
// port of its own, with the same TLS (client certificates required) and
// the same records: the four event modes, the <security> handshake when
// Config.SharedKey is set, an ack for every message with a chunk, and
// faults on demand (ForwardFaults). As in_forward, it acks a message once
// it is buffered: its records are made and stored behind the ack, in
// order (storeForward), and what reads the records waits for them.

// ForwardFaults are faults of the forward listener: counts are for the
// next N messages, the others for every connection opened while they are
// set.
type ForwardFaults struct {
	// DropAcks: the message is stored but not acked, and the connection
	// closed (the client must send it again: a duplicate).
	DropAcks int
	// CloseMidMessage: the connection is closed after the first bytes of
	// the message, nothing stored.
	CloseMidMessage int
	// AckDelay delays every ack.
	AckDelay time.Duration
	// HeloDelay delays the HELO (with Config.SharedKey): a busy Fluentd.
	HeloDelay time.Duration
	// NoKeepalive is in_forward's deny_keepalive: the HELO says keepalive
	// false, and the connection is closed after each message's ack.
	NoKeepalive bool
	// EchoPong: the PONG accepts any key and echoes the client's PING, its
	// hostname and digest, as a server that does not know the key could.
	EchoPong bool
	// ChunkSizeLimit is in_forward's chunk_size_limit: a message larger
	// than this many bytes (as received) is dropped, with no ack and the
	// connection kept open, as in_forward drops it. Zero: no limit.
	ChunkSizeLimit int
	// AckNothing: every message is dropped unanswered, the connection kept
	// open (in_forward whose buffer overflows, or a stuck Fluentd).
	AckNothing bool
	// WrongAcks: the message is stored, and acked with a chunk ID that is
	// not its own (a confused proxy in between).
	WrongAcks int
	// RefusePong: every shared-key handshake fails, the PONG saying so
	// (Config.SharedKey only).
	RefusePong bool
}

// ForwardDropped is how many forward messages the listener dropped
// without an ack (ChunkSizeLimit, AckNothing).
func (r *Receiver) ForwardDropped() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.fwdDropped
}

// SetSharedKey sets the forward listener's shared key (Config.SharedKey)
// for the connections that follow.
func (r *Receiver) SetSharedKey(key []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cfg.SharedKey = key
}

// SetForwardFaults replaces the forward faults.
func (r *Receiver) SetForwardFaults(f ForwardFaults) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fwdFaults = f
}

// ForwardURL is the forward:// base URL of the receiver.
func (r *Receiver) ForwardURL() string { return "forward://" + r.fwdAddr }

// ForwardHandshakes counts the shared-key handshakes that succeeded.
func (r *Receiver) ForwardHandshakes() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.fwdHandshakes
}

// ForwardMessages counts the forward messages received, by mode
// ("message", "forward", "packed", "compressed").
func (r *Receiver) ForwardMessages() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]int{}
	for k, v := range r.fwdModes {
		out[k] = v
	}
	return out
}

// EventTimes are the forward times of the records of tag, in order, as
// the message carried them (zero for records that came over HTTP).
func (r *Receiver) EventTimes(tag string) []time.Time {
	r.lockStored()
	defer r.mu.Unlock()
	var out []time.Time
	for _, i := range r.byTag[tag] {
		out = append(out, r.records[i].at)
	}
	return out
}

func (r *Receiver) serveForward() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("fluentdsrv: listen for forward: %w", err)
	}
	r.fwdAddr, r.fwdLn = ln.Addr().String(), ln
	r.fwdBuffer, r.fwdStoreDone = make(chan *forwardMsg, 1024), make(chan struct{})
	r.fwdStored = sync.NewCond(&r.mu)
	go r.storeForward()
	r.fwdWG.Add(1)
	go func() {
		defer r.fwdWG.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			r.mu.Lock()
			if r.fwdConns == nil { // stopping
				r.mu.Unlock()
				c.Close()
				return
			}
			r.fwdConns[c] = struct{}{}
			r.mu.Unlock()
			r.fwdWG.Add(1)
			go func() {
				defer r.fwdWG.Done()
				r.forwardConn(tls.Server(c, r.tls))
				r.mu.Lock()
				delete(r.fwdConns, c)
				r.mu.Unlock()
			}()
		}
	}()
	return nil
}

// stopForward closes the listener and every connection, and waits for
// their goroutines.
func (r *Receiver) stopForward() {
	r.fwdLn.Close()
	r.mu.Lock()
	for c := range r.fwdConns {
		c.Close()
	}
	r.fwdConns = nil
	r.mu.Unlock()
	r.fwdWG.Wait()
	close(r.fwdBuffer)
	<-r.fwdStoreDone
}

func (r *Receiver) setErr(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fwdErr == nil {
		r.fwdErr = err
	}
}

// forwardConn serves one connection: the handshake, then messages.
func (r *Receiver) forwardConn(c *tls.Conn) {
	defer c.Close()
	// The TLS handshake first, as Fluentd does it: a HeloDelay delays the
	// HELO, not the client's dial.
	if c.Handshake() != nil {
		return
	}
	rd, w := msgp.NewReader(c), msgp.NewWriter(c)
	r.mu.Lock()
	key, faults := r.cfg.SharedKey, r.fwdFaults
	r.mu.Unlock()
	if len(key) > 0 && !r.forwardHandshake(rd, w, key, faults) {
		return
	}
	for {
		var raw bytes.Buffer
		if _, err := rd.CopyNext(&raw); err != nil {
			return
		}
		// in_forward with deny_keepalive closes once the ack is written.
		if !r.forwardMessage(c, w, raw.Bytes()) || faults.NoKeepalive {
			return
		}
	}
}

func (r *Receiver) forwardHandshake(rd *msgp.Reader, w *msgp.Writer, key []byte, f ForwardFaults) bool {
	if f.HeloDelay > 0 {
		select {
		case <-time.After(f.HeloDelay):
		case <-r.quit:
			return false
		}
	}
	nonce := make([]byte, 16)
	_, _ = rand.Read(nonce)
	helo := protocol.NewHelo(&protocol.HeloOpts{Nonce: nonce, Auth: []byte{}, Keepalive: !f.NoKeepalive})
	if helo.EncodeMsg(w) != nil || w.Flush() != nil {
		return false
	}
	var ping protocol.Ping
	if ping.DecodeMsg(rd) != nil {
		return false
	}
	pong, err := pongFor(&ping, key, helo, f.EchoPong)
	if err == nil && f.RefusePong {
		pong, err = protocol.NewPong(false, "injected: shared_key mismatch", "fluentdsrv", key, helo, &ping)
	}
	if err != nil || pong.EncodeMsg(w) != nil || w.Flush() != nil || !pong.AuthResult {
		return false
	}
	r.mu.Lock()
	r.fwdHandshakes++
	r.mu.Unlock()
	return true
}

// pongFor is the answer to ping: in_forward's, or with echo the PING's
// own hostname and digest, accepted whatever the key.
func pongFor(ping *protocol.Ping, key []byte, helo *protocol.Helo, echo bool) (*protocol.Pong, error) {
	if echo {
		return &protocol.Pong{MessageType: protocol.MsgTypePong, AuthResult: true,
			ServerHostname: ping.ClientHostname, SharedKeyHexDigest: ping.SharedKeyHexDigest}, nil
	}
	ok, reason := true, ""
	if protocol.ValidatePingDigest(ping, key, helo.Options.Nonce) != nil {
		ok, reason = false, "shared_key mismatch"
	}
	return protocol.NewPong(ok, reason, "fluentdsrv", key, helo, ping)
}

// forwardMessage stores one message's records and acks its chunk; false
// closes the connection.
func (r *Receiver) forwardMessage(c net.Conn, w *msgp.Writer, msg []byte) bool {
	r.mu.Lock()
	f := &r.fwdFaults
	if f.AckNothing || (f.ChunkSizeLimit > 0 && len(msg) > f.ChunkSizeLimit) {
		r.fwdDropped++
		r.mu.Unlock()
		return true
	}
	closeMid, dropAck, wrongAck, delay := f.CloseMidMessage > 0, false, false, f.AckDelay
	switch {
	case closeMid:
		f.CloseMidMessage--
	case f.DropAcks > 0:
		f.DropAcks--
		dropAck = true
	case f.WrongAcks > 0:
		f.WrongAcks--
		wrongAck = true
	}
	r.mu.Unlock()
	if closeMid {
		return false
	}
	m, err := readForward(msg)
	if err != nil {
		r.setErr(fmt.Errorf("fluentdsrv: forward message: %w", err))
		return false
	}
	r.mu.Lock()
	r.fwdModes[m.mode]++
	r.requests++
	r.fwdPending++
	r.mu.Unlock()
	r.fwdBuffer <- m // buffered: stored behind the ack
	chunk := m.chunk
	if dropAck {
		return false
	}
	if chunk == "" {
		return true // no chunk, no answer
	}
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.quit:
			return false
		}
	}
	_ = c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	ack := protocol.AckMessage{Ack: chunk}
	if wrongAck {
		ack.Ack = "wrong-" + chunk
	}
	return ack.EncodeMsg(w) == nil && w.Flush() == nil
}

// forwardMsg is a forward message as buffered: its entries, not yet
// records.
type forwardMsg struct {
	mode, tag, chunk string
	entries          []byte // gzip'd in mode "compressed"
}

// readForward reads a message of any mode: its mode, tag, entries and
// chunk.
func readForward(msg []byte) (*forwardMsg, error) {
	n, b, err := msgp.ReadArrayHeaderBytes(msg)
	if err != nil || n < 2 {
		return nil, fmt.Errorf("not a forward message (array of %d): %v", n, err)
	}
	m := &forwardMsg{}
	if m.tag, b, err = msgp.ReadStringBytes(b); err != nil {
		return nil, fmt.Errorf("tag: %w", err)
	}
	switch msgp.NextType(b) {
	case msgp.ExtensionType, msgp.IntType, msgp.UintType:
		m.mode, m.entries = "message", b // [time, record] in place
		if b, err = skipN(b, 2); err != nil {
			return nil, err
		}
		m.entries = m.entries[:len(m.entries)-len(b)]
		n-- // time and record count as one entry
	case msgp.ArrayType:
		m.mode = "forward"
		var count uint32
		if count, b, err = msgp.ReadArrayHeaderBytes(b); err != nil {
			return nil, err
		}
		start := b
		if b, err = skipN(b, int(count)); err != nil {
			return nil, err
		}
		m.entries = start[:len(start)-len(b)]
	default:
		m.mode = "packed"
		if m.entries, b, err = readBinOrStr(b); err != nil {
			return nil, fmt.Errorf("entries: %w", err)
		}
	}
	opts := map[string]any{}
	if n == 3 && msgp.NextType(b) == msgp.MapType {
		var v any
		if v, _, err = msgp.ReadIntfBytes(b); err != nil {
			return nil, fmt.Errorf("options: %w", err)
		}
		opts, _ = v.(map[string]any)
	}
	if opts["compressed"] == "gzip" {
		m.mode = "compressed"
	}
	m.chunk, _ = opts["chunk"].(string)
	return m, nil
}

// records decodes the message's entries.
func (m *forwardMsg) records() ([]record, error) {
	entries := m.entries
	if m.mode == "compressed" {
		var err error
		if entries, err = gunzip(entries); err != nil {
			return nil, err
		}
	}
	return decodeEntries(m.tag, entries, m.mode == "message")
}

// storeForward stores the buffered messages' records, in order, until the
// buffer is closed.
func (r *Receiver) storeForward() {
	defer close(r.fwdStoreDone)
	for m := range r.fwdBuffer {
		recs, err := m.records()
		if err == nil {
			err = r.store(recs)
		}
		if err != nil {
			r.setErr(fmt.Errorf("fluentdsrv: forward message: %w", err))
		}
		r.mu.Lock()
		if r.fwdPending--; r.fwdPending == 0 {
			r.fwdStored.Broadcast()
		}
		r.mu.Unlock()
	}
}

// lockStored locks mu once the records of every forward message buffered
// are stored.
func (r *Receiver) lockStored() {
	r.mu.Lock()
	for r.fwdPending > 0 {
		r.fwdStored.Wait()
	}
}

func skipN(b []byte, n int) ([]byte, error) {
	var err error
	for range n {
		if b, err = msgp.Skip(b); err != nil {
			return nil, err
		}
	}
	return b, nil
}

func readBinOrStr(b []byte) ([]byte, []byte, error) {
	if msgp.NextType(b) == msgp.StrType {
		s, rest, err := msgp.ReadStringZC(b)
		return s, rest, err
	}
	return msgp.ReadBytesZC(b)
}

func gunzip(b []byte) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("gzip: %w", err)
	}
	return io.ReadAll(zr) // concatenated members are read as one stream
}

// decodeEntries reads [time, record] entries (a bare time, record pair in
// message mode) into records of tag, the record converted to JSON.
func decodeEntries(tag string, b []byte, bare bool) ([]record, error) {
	var recs []record
	for len(b) > 0 {
		var err error
		if !bare {
			var n uint32
			if n, b, err = msgp.ReadArrayHeaderBytes(b); err != nil || n != 2 {
				return nil, fmt.Errorf("entry: not [time, record] (%d items): %v", n, err)
			}
		}
		var at time.Time
		if at, b, err = readTime(b); err != nil {
			return nil, err
		}
		rest, err := msgp.Skip(b)
		if err != nil {
			return nil, fmt.Errorf("record: %w", err)
		}
		if msgp.NextType(b) != msgp.MapType {
			return nil, errors.New("record: not a map")
		}
		var js bytes.Buffer
		if _, err := msgp.UnmarshalAsJSON(&js, b[:len(b)-len(rest)]); err != nil {
			return nil, fmt.Errorf("record: %w", err)
		}
		recs, b = append(recs, record{tag: tag, raw: js.Bytes(), at: at}), rest
	}
	return recs, nil
}

// readTime reads an EventTime or integer seconds.
func readTime(b []byte) (time.Time, []byte, error) {
	if msgp.NextType(b) == msgp.ExtensionType {
		var et protocol.EventTime
		rest, err := msgp.ReadExtensionBytes(b, &et)
		return et.Time, rest, err
	}
	sec, rest, err := msgp.ReadInt64Bytes(b)
	return time.Unix(sec, 0), rest, err
}
