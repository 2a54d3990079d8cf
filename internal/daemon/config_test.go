package daemon_test

import (
	"maps"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fdfwd/teleport-event-handler/config"
	"github.com/fdfwd/teleport-event-handler/tests/testpki"
)

// startConfig is start's configuration for the test Teleport server at
// teleportAddr and a Fluentd at fluentdBase (https://host:port), with the
// test PKI's credentials, fresh storage, and the options of extra by long
// name.
func startConfig(t *testing.T, pki *testpki.Bundle, teleportAddr, fluentdBase string, extra map[string]string) *config.Config {
	t.Helper()
	flags := map[string]string{
		"teleport-addr": teleportAddr, "teleport-identity": pki.IdentityFile,
		"fluentd-url": fluentdBase + "/test.log", "fluentd-session-url": fluentdBase + "/session",
		"fluentd-ca": pki.FluentdCAFile, "fluentd-cert": pki.FluentdClientCertFile, "fluentd-key": pki.FluentdClientKeyFile,
		"storage": filepath.Join(t.TempDir(), "storage"),
	}
	maps.Copy(flags, extra)
	res, err := config.Resolve(flags, func(string) (string, bool) { return "", false })
	require.NoError(t, err)
	return res.Config
}
