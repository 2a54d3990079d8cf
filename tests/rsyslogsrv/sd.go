package rsyslogsrv

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// structuredData reads STRUCTURED-DATA: "-" or SD-ELEMENTs, each
// "[" SD-ID *(SP PARAM-NAME "=" DQUOTE PARAM-VALUE DQUOTE) "]".
func (p *parser) structuredData() (map[string]map[string]string, string, error) {
	start := p.i
	if strings.HasPrefix(p.s[p.i:], "-") {
		p.i++
		return nil, "-", nil
	}
	if !strings.HasPrefix(p.s[p.i:], "[") {
		return nil, "", errors.New("STRUCTURED-DATA is neither '-' nor '['")
	}
	sd := map[string]map[string]string{}
	for strings.HasPrefix(p.s[p.i:], "[") {
		p.i++
		id, err := p.sdName("SD-ID")
		if err != nil {
			return nil, "", err
		}
		if err := checkSDID(id); err != nil {
			return nil, "", err
		}
		if _, dup := sd[id]; dup {
			return nil, "", fmt.Errorf("SD-ID %q appears twice", id)
		}
		if sd[id], err = p.sdParams(id); err != nil {
			return nil, "", err
		}
	}
	return sd, p.s[start:p.i], nil
}

// sdParams reads an element's parameters and its closing "]".
func (p *parser) sdParams(id string) (map[string]string, error) {
	params := map[string]string{}
	for {
		if p.i == len(p.s) {
			return nil, fmt.Errorf("SD-ELEMENT %q has no ']'", id)
		}
		switch p.s[p.i] {
		case ']':
			p.i++
			return params, nil
		case ' ':
			p.i++
		default:
			return nil, fmt.Errorf("SD-ELEMENT %q: %q where SP or ']' must be", id, p.s[p.i])
		}
		name, err := p.sdName("PARAM-NAME")
		if err != nil {
			return nil, err
		}
		if !strings.HasPrefix(p.s[p.i:], `="`) {
			return nil, fmt.Errorf("PARAM-NAME %q is not followed by '=\"'", name)
		}
		p.i += 2
		value, err := p.paramValue(name)
		if err != nil {
			return nil, err
		}
		if _, dup := params[name]; dup {
			return nil, fmt.Errorf("SD-ELEMENT %q has the parameter %q twice", id, name)
		}
		params[name] = value
	}
}

// sdName reads an SD-NAME: 1 to 32 printable US-ASCII characters but
// '=', SP, ']' and '"'.
func (p *parser) sdName(what string) (string, error) {
	start := p.i
	for p.i < len(p.s) {
		c := p.s[p.i]
		if c == '=' || c == ' ' || c == ']' || c == '"' {
			break
		}
		if c < 33 || c > 126 {
			return "", fmt.Errorf("%s has the byte 0x%02x, not printable US-ASCII", what, c)
		}
		p.i++
	}
	name := p.s[start:p.i]
	if name == "" || len(name) > 32 {
		return "", fmt.Errorf("%s %q is not 1 to 32 characters", what, name)
	}
	return name, nil
}

// checkSDID: an SD-ID without "@" is IANA's, one with it is
// name@<private enterprise number>.
func checkSDID(id string) error {
	name, pen, private := strings.Cut(id, "@")
	if !private {
		if !ianaSDIDs[id] {
			return fmt.Errorf("SD-ID %q has no '@' and is not registered with IANA", id)
		}
		return nil
	}
	if name == "" || strings.Contains(pen, "@") || !enterpriseID.MatchString(pen) {
		return fmt.Errorf("SD-ID %q is not name@<private enterprise number>", id)
	}
	return nil
}

// paramValue reads a PARAM-VALUE up to its closing '"', undoing the
// escapes \" \\ \]; a backslash before any other character stays, as
// section 6.3.3 says. An unescaped ']' is an error: it must be escaped.
func (p *parser) paramValue(name string) (string, error) {
	var b strings.Builder
	for p.i < len(p.s) {
		c := p.s[p.i]
		p.i++
		switch c {
		case '"':
			v := b.String()
			if !utf8.ValidString(v) {
				return "", fmt.Errorf("PARAM-VALUE of %q is not UTF-8", name)
			}
			return v, nil
		case ']':
			return "", fmt.Errorf("PARAM-VALUE of %q has an unescaped ']'", name)
		case '\\':
			if p.i < len(p.s) && strings.IndexByte(`"\]`, p.s[p.i]) >= 0 {
				c = p.s[p.i]
				p.i++
			}
		}
		b.WriteByte(c)
	}
	return "", fmt.Errorf("PARAM-VALUE of %q has no closing '\"'", name)
}
