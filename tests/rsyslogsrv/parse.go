package rsyslogsrv

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Message is one RFC 5424 message, its header fields as sent: a nil field
// is "-" (SDRaw too, with SD nil).
type Message struct {
	PRI, Facility, Severity int
	Version                 int
	// Timestamp is as sent, fraction and offset included.
	Timestamp                        string
	Hostname, AppName, ProcID, MsgID string
	// SD maps each SD-ID to its parameters, values unescaped (\" \\ \]
	// undone); SDRaw is the STRUCTURED-DATA part as sent.
	SD    map[string]map[string]string
	SDRaw string
	// BOM tells whether MSG began with a UTF-8 byte order mark; Msg is
	// MSG without it ("" when there is none).
	BOM bool
	Msg string
}

// ErrSyntax is the error Parse wraps for a line that is not an RFC 5424
// message.
var ErrSyntax = errors.New("not an RFC 5424 message")

const bom = "\ufeff"

// ianaSDIDs are the SD-IDs registered with IANA, the only ones without
// "@" (RFC 5424 section 7, RFC 5424's registry).
var ianaSDIDs = map[string]bool{"timeQuality": true, "origin": true, "meta": true}

// timestampForm is RFC 5424's TIMESTAMP: RFC 3339 with upper-case T and
// Z, at most 6 digits of fraction; time.Parse checks the ranges.
var timestampForm = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})$`)

// enterpriseID is what follows "@" in a private SD-ID (section 7.2.2).
var enterpriseID = regexp.MustCompile(`^[0-9]{1,10}(\.[0-9]{1,10})*$`)

// Parse reads one RFC 5424 message, strictly: the ABNF of section 6, in
// its canonical form (no leading zero in PRI), version 1, each SD-ID at
// most once per message and each parameter name once per element (the
// RFC allows repeating one; SD could not hold both). It is the oracle of
// the tests: it accepts what a receiver must, not what rsyslog lets by.
func Parse(line string) (Message, error) {
	p := &parser{s: line}
	m, err := p.message()
	if err != nil {
		return Message{}, fmt.Errorf("%w: %s at byte %d of %q", ErrSyntax, err, p.i, excerpt(line))
	}
	return m, nil
}

func excerpt(s string) string {
	const max = 200
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}

type parser struct {
	s string
	i int
}

func (p *parser) message() (m Message, err error) {
	if m.PRI, err = p.pri(); err != nil {
		return m, err
	}
	m.Facility, m.Severity = m.PRI/8, m.PRI%8
	if m.Version, err = p.version(); err != nil {
		return m, err
	}
	if m.Timestamp, err = p.timestamp(); err != nil {
		return m, err
	}
	for _, f := range []struct {
		to   *string
		name string
		max  int
	}{{&m.Hostname, "HOSTNAME", 255}, {&m.AppName, "APP-NAME", 48}, {&m.ProcID, "PROCID", 128}, {&m.MsgID, "MSGID", 32}} {
		if *f.to, err = p.token(f.name, f.max); err != nil {
			return m, err
		}
	}
	if m.SD, m.SDRaw, err = p.structuredData(); err != nil {
		return m, err
	}
	m.BOM, m.Msg, err = p.msg()
	return m, err
}

func (p *parser) pri() (int, error) {
	if !strings.HasPrefix(p.s, "<") {
		return 0, errors.New("no PRI (a message starts with '<')")
	}
	end := strings.IndexByte(p.s, '>')
	if end < 2 || end > 4 {
		return 0, errors.New("PRI is not 1 to 3 digits in '<' '>'")
	}
	digits := p.s[1:end]
	n, err := strconv.Atoi(digits)
	if err != nil || !allDigits(digits) || n > 191 || (len(digits) > 1 && digits[0] == '0') {
		return 0, fmt.Errorf("PRI %q is not a number from 0 to 191 without leading zeros", digits)
	}
	p.i = end + 1
	return n, nil
}

func (p *parser) version() (int, error) {
	v, err := p.token("VERSION", 3)
	if err != nil {
		return 0, err
	}
	if v != "1" {
		return 0, fmt.Errorf("VERSION %q is not 1", v)
	}
	return 1, nil
}

func (p *parser) timestamp() (string, error) {
	ts, err := p.token("TIMESTAMP", 32)
	if err != nil || ts == "-" {
		return ts, err
	}
	if !timestampForm.MatchString(ts) {
		return "", fmt.Errorf("TIMESTAMP %q is not RFC 3339 as RFC 5424 restricts it", ts)
	}
	if _, err := time.Parse(time.RFC3339Nano, ts); err != nil {
		return "", fmt.Errorf("TIMESTAMP %q: %w", ts, err)
	}
	return ts, nil
}

// token reads 1 to max PRINTUSASCII characters and the SP after them.
func (p *parser) token(name string, max int) (string, error) {
	start := p.i
	for p.i < len(p.s) && p.s[p.i] != ' ' {
		if c := p.s[p.i]; c < 33 || c > 126 {
			return "", fmt.Errorf("%s has the byte 0x%02x, not printable US-ASCII", name, c)
		}
		p.i++
	}
	tok := p.s[start:p.i]
	switch {
	case tok == "":
		return "", fmt.Errorf("%s is empty", name)
	case len(tok) > max:
		return "", fmt.Errorf("%s is %d characters, more than %d", name, len(tok), max)
	case p.i == len(p.s):
		return "", fmt.Errorf("the message ends after %s", name)
	}
	p.i++ // SP
	return tok, nil
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// msg is what follows STRUCTURED-DATA: nothing, or SP and MSG.
func (p *parser) msg() (hasBOM bool, msg string, err error) {
	if p.i == len(p.s) {
		return false, "", nil
	}
	if p.s[p.i] != ' ' {
		return false, "", errors.New("no SP between STRUCTURED-DATA and MSG")
	}
	p.i++
	msg, hasBOM = strings.CutPrefix(p.s[p.i:], bom)
	if hasBOM && !utf8.ValidString(msg) {
		return false, "", errors.New("MSG starts with a BOM but is not UTF-8")
	}
	return hasBOM, msg, nil
}
