package configure

import (
	"io/fs"
	"strings"
	"testing"
	"text/template"

	"github.com/stretchr/testify/require"
)

// fill writes every template exactly as text/template does, in every
// combination of its flags and with values that need quoting: it may stand
// in for text/template only as long as the two cannot be told apart.
func TestFillRendersAsTextTemplate(t *testing.T) {
	reference := template.Must(template.New("").Funcs(template.FuncMap{
		"toml": tomlString, "fluentd": fluentdString, "rsyslog": rsyslogString, "yaml": tomlString,
	}).ParseFS(templateFS, "templates/*.tmpl"))
	names, err := fs.Glob(templateFS, "templates/*.tmpl")
	require.NoError(t, err)
	require.Len(t, names, 5)
	// The receivers: in_http, in_forward, syslog over TLS and RELP.
	for _, v := range []struct{ forward, syslog, relp bool }{{}, {forward: true}, {syslog: true}, {syslog: true, relp: true}} {
		for _, lock := range []bool{false, true} {
			d := &templateData{
				CACert: `/srv/it's "here"/ca.crt`, ServerCert: `C:\fluentd\server.crt`, ServerKey: "/srv/server.key",
				DaemonCA: "/etc/teleport-event-handler/ca.crt", ClientCert: "/etc/t/client.crt", ClientKey: "/etc/t/client.key",
				Identity: "/etc/t/identity", Storage: "./storage", Password: `p'ss\word #{x}`,
				FluentdURL: "forward://fluentd.example.com:24224/test.log", SessionURL: "forward://fluentd.example.com:24224/session",
				TeleportAddr: "teleport.example.com:443", Forward: v.forward, SharedKey: "k3y", SharedKeyFile: "/etc/t/shared.key",
				Syslog: v.syslog, RELP: v.relp, SDID: sdID, AuditLog: "/var/log/t/audit.log", SessionLog: "/var/log/t/sessions.log", MaxMessage: "64k", MaxMessageKB: "64",
				Port: 24224, AuditTag: "test.log", SessionMatch: "session.*.log", Role: Role, User: User, IdentityTTL: IdentityTTL,
				LockEnabled: lock, IdentitySecret: "id", CertSecret: "tls", SharedKeySecret: "sk",
			}
			for _, name := range names {
				base := strings.TrimPrefix(name, "templates/")
				var want strings.Builder
				require.NoError(t, reference.ExecuteTemplate(&want, base, d))
				src, err := fs.ReadFile(templateFS, name)
				require.NoError(t, err)
				got, err := fill(string(src), d)
				require.NoError(t, err, base)
				require.Equal(t, want.String(), got, "%s, %+v, lock %v", base, v, lock)
			}
		}
	}
}

// What fill does not know is an error, never silently empty output.
func TestFillRefusesWhatItDoesNotKnow(t *testing.T) {
	d := &templateData{}
	for src, want := range map[string]string{
		"{{.Nope}}":             "no field .Nope",
		"{{if .Nope}}x{{end}}":  "no flag .Nope",
		"{{range .Role}}":       "not understood",
		"{{if .Forward}}x":      "{{if}} without {{end}}",
		"{{.Role":               "unclosed action",
		"{{fluentd .Password}}": "",
	} {
		_, err := fill(src, d)
		if want == "" {
			require.NoError(t, err, src)
			continue
		}
		require.ErrorContains(t, err, want, src)
	}
}
