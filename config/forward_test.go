package config

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestForwardOptions(t *testing.T) {
	f := newFixture(t)
	fwd := []string{"--fluentd-url", "forward://fluentd.example.com:24224/test.log", "--fluentd-session-url", "forward://fluentd.example.com/session"}
	keyFile := writeFile(t, f.dir, "shared.key", "s3cret\n")

	inv, err := parse(f.args([]string{"fluentd-url", "fluentd-session-url"}, fwd...), envOf(nil))
	require.NoError(t, err)
	require.Equal(t, DefaultForwardBatch, inv.Config.Fluentd.Batch, "forward's own default")
	require.Empty(t, inv.Config.Fluentd.Compress)

	inv, err = parse(f.args([]string{"fluentd-url", "fluentd-session-url"}, append(fwd, "--fluentd-batch", "7", "--fluentd-compress", "GZIP",
		"--fluentd-shared-key-file", keyFile)...), envOf(nil))
	require.NoError(t, err)
	require.Equal(t, 7, inv.Config.Fluentd.Batch)
	require.Equal(t, "gzip", inv.Config.Fluentd.Compress)
	require.Equal(t, 8192, inv.Config.Fluentd.MaxMessageKB, "Fluentd's default buffer chunk")
	require.Equal(t, "s3cret", inv.Config.Fluentd.SharedKey, "read from the file, without the newline")

	inv, err = parse(f.args([]string{"fluentd-url", "fluentd-session-url"}, fwd...), envOf(map[string]string{"FDFWD_FLUENTD_MAX_MESSAGE_KB": "16"}))
	require.NoError(t, err)
	require.Equal(t, 16, inv.Config.Fluentd.MaxMessageKB)

	inv, err = parse(f.args([]string{"fluentd-session-url"}, "--fluentd-session-url", "forward://fluentd.example.com:24224/session"),
		envOf(map[string]string{"FDFWD_FLUENTD_SHARED_KEY": "k"}))
	require.NoError(t, err, "the two URLs may use different protocols")
	require.Equal(t, "k", inv.Config.Fluentd.SharedKey)
	require.Equal(t, "https://fluentd.example.com:8888/test.log", inv.Config.Fluentd.URL)

	inv, err = parse(f.args(nil), envOf(nil))
	require.NoError(t, err)
	require.Equal(t, 1, inv.Config.Fluentd.Batch, "HTTP keeps the original's one event per POST")
}

func TestForwardOptionErrors(t *testing.T) {
	f := newFixture(t)
	fwd := []string{"--fluentd-url", "forward://fluentd.example.com:24224/test.log"}
	key := map[string]string{"FDFWD_FLUENTD_SHARED_KEY": "s3cret"}
	for name, tc := range map[string]struct {
		args []string
		env  map[string]string
		want []string
	}{
		"plain tcp":        {[]string{"--fluentd-url", "tcp://fluentd:24224/test.log"}, nil, []string{"--fluentd-url", "not an https://, a forward://, a syslog+tls:// or a relp+tls:// URL", "in_forward"}},
		"credentials":      {[]string{"--fluentd-url", "https://bob:s3cret@fluentd:8888/test.log"}, nil, []string{"--fluentd-url", "holds credentials", "bob:xxxxx@"}},
		"key over https":   {nil, key, []string{"--fluentd-shared-key", "forward:// Fluentd URLs only"}},
		"key as a flag":    {append(fwd, "--fluentd-shared-key", "s3cret"), nil, []string{"--fluentd-shared-key", "(not shown)", "ps", "--fluentd-shared-key-file", "FDFWD_FLUENTD_SHARED_KEY"}},
		"gzip over https":  {[]string{"--fluentd-compress", "gzip"}, nil, []string{"--fluentd-compress", "forward:// Fluentd URLs only"}},
		"odd compression":  {append(fwd, "--fluentd-compress", "zstd"), nil, []string{"--fluentd-compress", "use none or gzip"}},
		"limit over https": {[]string{"--fluentd-max-message-kb", "16"}, nil, []string{"--fluentd-max-message-kb", "forward:// Fluentd URLs only"}},
		"no message":       {append(fwd, "--fluentd-max-message-kb", "0"), nil, []string{"--fluentd-max-message-kb"}},
		"key twice":        {append(fwd, "--fluentd-shared-key-file", f.ca), key, []string{"--fluentd-shared-key-file", "one way only"}},
		"no key file":      {append(fwd, "--fluentd-shared-key-file", f.dir+"/absent"), nil, []string{"--fluentd-shared-key-file", "cannot be read"}},
	} {
		t.Run(name, func(t *testing.T) {
			var drop []string
			if len(tc.args) > 0 && tc.args[0] == "--fluentd-url" {
				drop = []string{"fluentd-url"}
			}
			_, err := parse(f.args(drop, tc.args...), envOf(tc.env))
			require.Error(t, err)
			for _, w := range tc.want {
				require.Contains(t, err.Error(), w)
			}
			require.NotContains(t, err.Error(), "s3cret", "the key never appears in a message")
		})
	}
	_, err := parse(f.args(nil), envOf(key))
	require.ErrorContains(t, err, "(not shown)")
}

// dead-letters replay reads the forward options whatever the URLs (letters
// carry the URLs they were meant for): a forward configuration's shared key
// is kept, and none is refused for want of a forward:// URL.
func TestReplayKeepsTheForwardOptions(t *testing.T) {
	f := newFixture(t)
	keyFile := writeFile(t, f.dir, "shared.key", "s3cret\n")
	args := append([]string{"dead-letters", "replay"}, f.args([]string{"fluentd-url", "fluentd-session-url"})[1:]...)
	inv, err := parse(append(args, "--fluentd-url", "forward://fluentd.example.com:24224/test.log", "--fluentd-shared-key-file", keyFile), envOf(nil))
	require.NoError(t, err)
	require.Equal(t, "forward://fluentd.example.com:24224/test.log", inv.Config.Fluentd.URL)
	require.Equal(t, "s3cret", inv.Config.Fluentd.SharedKey)
	_, err = parse(append(args, "--fluentd-shared-key-file", keyFile), envOf(nil))
	require.NoError(t, err, "no Fluentd URL needed to replay")
}
