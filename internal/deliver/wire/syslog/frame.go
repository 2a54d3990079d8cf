package syslog

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// A RELP frame is TXNR SP COMMAND SP DATALEN [SP DATA] LF (RELP's
// specification, rsyslog's doc/relp.html).

// maxTxnr is the largest transaction number; the next is 1 again.
const maxTxnr = 999_999_999

// MaxServerFrame bounds the data of a frame from the server (an rsp's
// code, text and offers take a few hundred bytes): a longer one fails the
// session before anything is allocated for it.
const MaxServerFrame = 4 << 10

var errFrame = errors.New("malformed RELP frame from the server")

// frame is one frame read from the server.
type frame struct {
	txnr int
	cmd  string
	data []byte
}

// appendFrame writes a frame of the client's.
func appendFrame(b []byte, txnr int, cmd string, data []byte) []byte {
	b = strconv.AppendInt(b, int64(txnr), 10)
	b = append(append(append(b, ' '), cmd...), ' ')
	b = strconv.AppendInt(b, int64(len(data)), 10)
	if len(data) > 0 {
		b = append(append(b, ' '), data...)
	}
	return append(b, '\n')
}

// readFrame reads the server's next frame.
func readFrame(r *bufio.Reader) (frame, error) {
	var f frame
	txnr, sep, err := readNumber(r)
	if err != nil || sep != ' ' {
		return f, orFrame(err)
	}
	cmd, err := readWord(r)
	if err != nil {
		return f, err
	}
	n, sep, err := readNumber(r)
	if err != nil {
		return f, orFrame(err)
	}
	if n > MaxServerFrame {
		return f, fmt.Errorf("a RELP frame from the server announces %d bytes of data, over the %d an answer may take", n, MaxServerFrame)
	}
	f.txnr, f.cmd = txnr, cmd
	if sep == '\n' {
		return f, nil // no data, and no SP before the LF
	}
	if sep != ' ' {
		return f, errFrame
	}
	f.data = make([]byte, n)
	if _, err := io.ReadFull(r, f.data); err != nil {
		return f, err
	}
	if lf, err := r.ReadByte(); err != nil || lf != '\n' {
		return f, orFrame(err)
	}
	return f, nil
}

func orFrame(err error) error {
	if err != nil {
		return err
	}
	return errFrame
}

// readNumber reads up to nine digits and the byte after them.
func readNumber(r *bufio.Reader) (n int, after byte, err error) {
	digits := 0
	for {
		c, err := r.ReadByte()
		if err != nil {
			return 0, 0, err
		}
		if c < '0' || c > '9' {
			if digits == 0 {
				return 0, c, errFrame
			}
			return n, c, nil
		}
		if digits++; digits > 9 {
			return 0, c, errFrame
		}
		n = n*10 + int(c-'0')
	}
}

// readWord reads a command (letters, at most 32) and the SP after it.
func readWord(r *bufio.Reader) (string, error) {
	var b []byte
	for {
		c, err := r.ReadByte()
		if err != nil {
			return "", err
		}
		if c == ' ' && len(b) > 0 {
			return string(b), nil
		}
		if c < 'a' || c > 'z' || len(b) == 32 {
			return "", errFrame
		}
		b = append(b, c)
	}
}

// rsp is the answer in an rsp frame's data: a three-digit code, a text,
// and, after a LF, offers.
type rsp struct {
	code         int
	text, offers string
}

func parseRsp(data []byte) (rsp, error) {
	if len(data) < 3 {
		return rsp{}, errFrame
	}
	code, err := strconv.Atoi(string(data[:3]))
	if err != nil || code < 100 {
		return rsp{}, errFrame
	}
	r := rsp{code: code}
	rest := string(data[3:])
	if len(rest) > 0 && rest[0] == ' ' {
		rest = rest[1:]
	}
	for i := 0; i < len(rest); i++ {
		if rest[i] == '\n' {
			r.text, r.offers = rest[:i], rest[i+1:]
			return r, nil
		}
	}
	r.text = rest
	return r, nil
}
