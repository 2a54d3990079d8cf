package configure

import (
	"fmt"
	"strconv"
	"strings"
)

// fill fills one of templates/*.tmpl. It knows the little the templates
// use, with text/template's meaning: {{.Name}}, {{fn .Name}} with fn toml,
// fluentd, rsyslog or yaml, and {{if .Flag}} ... {{else}} ... {{end}},
// where "{{- " drops the white space before the action and " -}}" that
// after it.
//
// It stands in for text/template because of the binary's size: a reachable
// text/template Execute calls reflect.Value.MethodByName, and the linker
// then keeps every exported method of every type in the binary, about 10
// MB of the daemon's 42 (issue 27). A test renders every template both
// ways and compares.
func fill(src string, d *templateData) (string, error) {
	f := newFiller(d)
	trimNext := false
	for src != "" {
		i := strings.Index(src, "{{")
		if i < 0 {
			f.text(src, trimNext, false)
			break
		}
		j := strings.Index(src[i:], "}}")
		if j < 0 {
			return "", fmt.Errorf("unclosed action: %.20q", src[i:])
		}
		action := src[i+2 : i+j]
		f.text(src[:i], trimNext, strings.HasPrefix(action, "- "))
		trimNext = strings.HasSuffix(action, " -")
		if err := f.action(strings.TrimSuffix(strings.TrimPrefix(action, "- "), " -")); err != nil {
			return "", fmt.Errorf("{{%s}}: %w", action, err)
		}
		src = src[i+j+2:]
	}
	if len(f.on) > 0 {
		return "", fmt.Errorf("{{if}} without {{end}}")
	}
	return f.out.String(), nil
}

// filler is one fill under way.
type filler struct {
	vals  map[string]string
	flags map[string]bool
	out   strings.Builder
	on    []bool // one per open {{if}}: whether its current branch is written
}

// funcs are the functions a template may apply to a value.
var funcs = map[string]func(string) (string, error){
	"toml":    tomlString,
	"fluentd": fluentdString,
	"rsyslog": rsyslogString,
	"yaml":    tomlString, // a JSON string is a YAML string
}

func newFiller(d *templateData) *filler {
	return &filler{
		vals: map[string]string{
			"CACert": d.CACert, "ServerCert": d.ServerCert, "ServerKey": d.ServerKey,
			"DaemonCA": d.DaemonCA, "ClientCert": d.ClientCert, "ClientKey": d.ClientKey,
			"Identity": d.Identity, "Storage": d.Storage, "Password": d.Password,
			"FluentdURL": d.FluentdURL, "SessionURL": d.SessionURL, "TeleportAddr": d.TeleportAddr,
			"SharedKey": d.SharedKey, "SharedKeyFile": d.SharedKeyFile, "Port": strconv.Itoa(d.Port),
			"AuditTag": d.AuditTag, "SessionMatch": d.SessionMatch,
			"Role": d.Role, "User": d.User, "IdentityTTL": d.IdentityTTL,
			"IdentitySecret": d.IdentitySecret, "CertSecret": d.CertSecret, "SharedKeySecret": d.SharedKeySecret,
			"SDID": d.SDID, "AuditLog": d.AuditLog, "SessionLog": d.SessionLog, "MaxMessage": d.MaxMessage,
			"MaxMessageKB": d.MaxMessageKB,
		},
		flags: map[string]bool{"Forward": d.Forward, "LockEnabled": d.LockEnabled, "Syslog": d.Syslog, "RELP": d.RELP},
	}
}

// writing reports whether every open {{if}} is on the branch written.
func (f *filler) writing() bool {
	for _, w := range f.on {
		if !w {
			return false
		}
	}
	return true
}

// text writes the text between two actions, trimmed as the actions ask.
func (f *filler) text(s string, trimLeft, trimRight bool) {
	if trimLeft {
		s = strings.TrimLeft(s, " \t\r\n")
	}
	if trimRight {
		s = strings.TrimRight(s, " \t\r\n")
	}
	if f.writing() {
		f.out.WriteString(s)
	}
}

// action carries out one action, without its delimiters and trim marks.
func (f *filler) action(a string) error {
	w := strings.Fields(a)
	switch {
	case len(w) == 2 && w[0] == "if" && strings.HasPrefix(w[1], "."):
		v, ok := f.flags[w[1][1:]]
		if !ok {
			return fmt.Errorf("no flag %s", w[1])
		}
		f.on = append(f.on, v)
	case len(w) == 1 && w[0] == "else" && len(f.on) > 0:
		f.on[len(f.on)-1] = !f.on[len(f.on)-1]
	case len(w) == 1 && w[0] == "end" && len(f.on) > 0:
		f.on = f.on[:len(f.on)-1]
	case len(w) == 1 && strings.HasPrefix(w[0], "."):
		return f.value(w[0], nil)
	case len(w) == 2 && funcs[w[0]] != nil && strings.HasPrefix(w[1], "."):
		return f.value(w[1], funcs[w[0]])
	default:
		return fmt.Errorf("not understood")
	}
	return nil
}

// value writes the field named .Name, through fn if given.
func (f *filler) value(name string, fn func(string) (string, error)) error {
	v, ok := f.vals[name[1:]]
	if !ok {
		return fmt.Errorf("no field %s", name)
	}
	if !f.writing() {
		return nil
	}
	if fn != nil {
		var err error
		if v, err = fn(v); err != nil {
			return err
		}
	}
	f.out.WriteString(v)
	return nil
}
