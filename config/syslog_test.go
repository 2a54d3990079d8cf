package config

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestSyslogOptions(t *testing.T) {
	f := newFixture(t)
	both := []string{"fluentd-url", "fluentd-session-url"}
	urls := []string{"--fluentd-url", "relp+tls://siem.example.com:2514", "--fluentd-session-url", "syslog+tls://siem.example.com/recordings"}

	inv, err := parse(f.args(both, urls...), envOf(nil))
	require.NoError(t, err, "a syslog URL needs no path")
	c := inv.Config.Fluentd
	require.Equal(t, DefaultForwardBatch, c.Batch, "a window of messages, as forward's batch")
	require.Equal(t, 13, c.Facility, "log audit")
	require.Equal(t, 8, c.SyslogMaxMessageKB, "rsyslog's default maxMessageSize")
	require.True(t, c.UsesSyslog())
	require.False(t, c.UsesForward())

	for text, want := range map[string]int{"authpriv": 10, "LOCAL7": 23, "log_audit": 13, "log audit": 13, "4": 4, "0": 0} {
		inv, err = parse(f.args(both, append(urls, "--syslog-facility", text)...), envOf(nil))
		require.NoError(t, err, text)
		require.Equal(t, want, inv.Config.Fluentd.Facility, text)
	}
	inv, err = parse(f.args(both, urls...), envOf(map[string]string{"FDFWD_SYSLOG_MAX_MESSAGE_KB": "64", "FDFWD_SYSLOG_FACILITY": "local0"}))
	require.NoError(t, err)
	require.Equal(t, 64, inv.Config.Fluentd.SyslogMaxMessageKB)
	require.Equal(t, 16, inv.Config.Fluentd.Facility)
}

func TestSyslogOptionErrors(t *testing.T) {
	f := newFixture(t)
	syslog := []string{"--fluentd-url", "syslog+tls://siem.example.com:6514"}
	for name, tc := range map[string]struct {
		args []string
		want []string
	}{
		"facility over https": {[]string{"--syslog-facility", "local0"}, []string{"--syslog-facility", "syslog+tls:// and relp+tls:// URLs only"}},
		"limit over https":    {[]string{"--syslog-max-message-kb", "64"}, []string{"--syslog-max-message-kb", "syslog+tls:// and relp+tls:// URLs only"}},
		"odd facility":        {append(syslog, "--syslog-facility", "local8"), []string{"--syslog-facility", "not a syslog facility", "logaudit (13"}},
		"facility past 23":    {append(syslog, "--syslog-facility", "24"), []string{"--syslog-facility", "0 to 23"}},
		"no message":          {append(syslog, "--syslog-max-message-kb", "0"), []string{"--syslog-max-message-kb"}},
		"plain syslog":        {[]string{"--fluentd-url", "syslog://siem:514"}, []string{"--fluentd-url", "a syslog+tls://", "relp+tls://siem.example.com:2514"}},
		"forward key":         {append(syslog, "--fluentd-compress", "gzip"), []string{"--fluentd-compress", "forward:// Fluentd URLs only"}},
	} {
		t.Run(name, func(t *testing.T) {
			var drop []string
			if len(tc.args) > 0 && tc.args[0] == "--fluentd-url" {
				drop = []string{"fluentd-url"}
			}
			_, err := parse(f.args(drop, tc.args...), envOf(nil))
			require.Error(t, err)
			for _, w := range tc.want {
				require.Contains(t, err.Error(), w)
			}
		})
	}
}

// --fluentd-url reads wrong for a syslog receiver: --receiver-url (and its
// variable and key) set the same option, and the old names keep working.
func TestReceiverNamesLeadAndFluentdNamesStillWork(t *testing.T) {
	f := newFixture(t)
	relp := "relp+tls://siem.example.com:2514"
	inv, err := parse(f.args([]string{"fluentd-url"}, "--receiver-url", relp), envOf(nil))
	require.NoError(t, err)
	require.Equal(t, relp, inv.Config.Fluentd.URL)

	inv, err = parse(f.args([]string{"fluentd-url"}), envOf(map[string]string{"FDFWD_RECEIVER_URL": relp, "FDFWD_FLUENTD_URL": "https://ignored:8888/a"}))
	require.NoError(t, err)
	require.Equal(t, relp, inv.Config.Fluentd.URL, "the neutral variable comes first")

	file := writeFile(t, f.dir, "receiver.toml", "[receiver]\nurl = \""+relp+"\"\n")
	inv, err = parse(append(f.args([]string{"fluentd-url"}), "-c", file), envOf(nil))
	require.NoError(t, err)
	require.Equal(t, relp, inv.Config.Fluentd.URL)

	_, err = parse(f.args(nil, "--receiver-url", relp), envOf(nil))
	require.ErrorContains(t, err, "--receiver-url")
	require.ErrorContains(t, err, "sets the same option as --fluentd-url")

	_, err = parse(f.args([]string{"fluentd-url"}, "--receiver-url", "syslog://siem:514"), envOf(nil))
	require.ErrorContains(t, err, `invalid --receiver-url "syslog://siem:514"`, "an error names the flag given")

	_, err = parse(f.args([]string{"fluentd-url"}), envOf(nil))
	require.ErrorContains(t, err, "set --receiver-url, FDFWD_RECEIVER_URL or receiver.url in the config file (or by their older names --fluentd-url, FDFWD_FLUENTD_URL, forward.fluentd.url)")

	var help strings.Builder
	WriteStartHelp(&help)
	require.Contains(t, help.String(), "--receiver-url=URL (or --fluentd-url)")
	require.Contains(t, Flags(), Flag{Long: "receiver-url"})
	require.Equal(t, "receiver-url", Closest("reciever-url"))
}
