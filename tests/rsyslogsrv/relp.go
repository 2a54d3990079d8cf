package rsyslogsrv

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// RELP frames (https://www.rsyslog.com/doc/relp.html):
//
//	TXNR SP COMMAND SP DATALEN [SP DATA] LF
//
// TXNR and DATALEN are at most 9 digits, COMMAND 1 to 32 letters; DATA is
// present when DATALEN is not 0. TXNR 0 is the server's: serverclose.

const (
	maxDigits  = 9
	maxCommand = 32
)

// errFrame is a frame that breaks the grammar, as opposed to a connection
// that ended.
var errFrame = errors.New("malformed RELP frame")

type frame struct {
	txnr int
	cmd  string
	data []byte
}

func (f frame) String() string { return fmt.Sprintf("%d %s %q", f.txnr, f.cmd, f.data) }

// serverclose is what a RELP server sends to its sessions when it shuts
// down, as rsyslog does on SIGTERM.
var serverclose = frame{txnr: 0, cmd: "serverclose"}

// appendFrame is f on the wire.
func appendFrame(b []byte, f frame) []byte {
	b = fmt.Appendf(b, "%d %s %d", f.txnr, f.cmd, len(f.data))
	if len(f.data) > 0 {
		b = append(b, ' ')
		b = append(b, f.data...)
	}
	return append(b, '\n')
}

// readFrame reads one frame whose DATA is at most maxData bytes. A frame
// that breaks the grammar is an errFrame; an end of the stream before the
// first byte is io.EOF, within a frame io.ErrUnexpectedEOF.
func readFrame(r *bufio.Reader, maxData int) (frame, error) {
	var f frame
	if _, err := r.Peek(1); err != nil {
		return f, err // io.EOF: the stream ended between frames
	}
	txnr, end, err := readNumber(r, "TXNR")
	if err != nil {
		return f, err
	}
	if end != ' ' {
		return f, fmt.Errorf("%w: %q after TXNR", errFrame, end)
	}
	f.txnr = txnr
	if f.cmd, err = readCommand(r); err != nil {
		return f, err
	}
	n, end, err := readNumber(r, "DATALEN")
	switch {
	case err != nil:
		return f, err
	case n > maxData:
		return f, fmt.Errorf("%w: DATALEN %d is more than %d", errFrame, n, maxData)
	case n == 0 && end != '\n', n > 0 && end != ' ':
		return f, fmt.Errorf("%w: %q after DATALEN %d", errFrame, end, n)
	}
	if n > 0 {
		f.data = make([]byte, n+1) // and the trailer
		if _, err := io.ReadFull(r, f.data); err != nil {
			return f, unexpected(err)
		}
		if f.data[n] != '\n' {
			return f, fmt.Errorf("%w: %q where the trailer LF must be", errFrame, f.data[n])
		}
		f.data = f.data[:n]
	}
	return f, nil
}

// readNumber reads 1 to 9 digits and the byte after them, which it
// returns.
func readNumber(r *bufio.Reader, what string) (n int, end byte, err error) {
	var digits []byte
	for {
		c, err := r.ReadByte()
		if err != nil {
			return 0, 0, unexpected(err)
		}
		if c < '0' || c > '9' {
			if len(digits) == 0 {
				return 0, c, fmt.Errorf("%w: %s does not start with a digit (%q)", errFrame, what, c)
			}
			n, _ = strconv.Atoi(string(digits))
			return n, c, nil
		}
		if digits = append(digits, c); len(digits) > maxDigits {
			return 0, c, fmt.Errorf("%w: %s has more than %d digits", errFrame, what, maxDigits)
		}
	}
}

// readCommand reads 1 to 32 letters and the SP after them.
func readCommand(r *bufio.Reader) (string, error) {
	var cmd []byte
	for {
		c, err := r.ReadByte()
		if err != nil {
			return "", unexpected(err)
		}
		if c == ' ' && len(cmd) > 0 {
			return string(cmd), nil
		}
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return "", fmt.Errorf("%w: %q in COMMAND", errFrame, c)
		}
		if cmd = append(cmd, c); len(cmd) > maxCommand {
			return "", fmt.Errorf("%w: COMMAND longer than %d letters", errFrame, maxCommand)
		}
	}
}

// unexpected is err, an io.EOF within a frame made io.ErrUnexpectedEOF.
func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
