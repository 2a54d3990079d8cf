package config

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestWebConfigFile(t *testing.T) {
	f := newFixture(t)
	good := writeFile(t, f.dir, "web.yml", "basic_auth_users:\n  prometheus: $2y$10$X0h1gDsPszWURQaxFh.zoubFi6DXncSjhoQNJgRrnGs7EsimhC7zG\n")
	bad := writeFile(t, f.dir, "bad.yml", "tls_server_config:\n  cert_file: /absent.crt\n  key_file: /absent.key\n")
	inv, err := parse(f.args(nil, "--metrics-addr", "127.0.0.1:9465", "--web-config-file", good, "--health-addr", ":9466"), envOf(nil))
	require.NoError(t, err)
	require.Equal(t, good, inv.Config.WebConfigFile)
	require.Equal(t, ":9466", inv.Config.HealthAddr)

	_, err = parse(f.args(nil, "--web-config-file", good), envOf(nil))
	require.ErrorContains(t, err, "secures --metrics-addr, which is not set")
	_, err = parse(f.args(nil, "--metrics-addr", "127.0.0.1:9465", "--web-config-file", bad), envOf(nil))
	require.ErrorContains(t, err, "--web-config-file")
	require.ErrorContains(t, err, "not a valid web configuration")
	_, err = parse(f.args(nil, "--health-addr", "9466"), envOf(nil))
	require.ErrorContains(t, err, "--health-addr")
}
