package config

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// Configurations of older versions of the original plugin start, with one
// warning per retired setting; a value that cannot be honoured is refused
// and says why.
func TestRetiredOptionsOfTheOriginal(t *testing.T) {
	f := newFixture(t)
	older := writeFile(t, f.dir, "older.toml", "storage = \"./storage\"\nnamespace = \"default\"\n")
	inv, err := Parse(f.args(nil, "-c", older), envOf(nil))
	require.NoError(t, err)
	require.Len(t, inv.Warnings, 1)
	require.Contains(t, inv.Warnings[0], "namespace is retired")
	require.Contains(t, inv.Warnings[0], "older.toml, line 2")

	for _, env := range []map[string]string{nil, {"FDFWD_NAMESPACE": "default"}} {
		inv, err := Parse(f.args(nil), envOf(env))
		require.NoError(t, err)
		require.Len(t, inv.Warnings, len(env), "a warning only when it is set")
	}

	other := writeFile(t, f.dir, "other.toml", "namespace = \"kube\"\n")
	_, err = Parse(f.args(nil, "-c", other), envOf(nil))
	require.ErrorContains(t, err, `only the "default" namespace`)
	require.ErrorContains(t, err, "other.toml, line 1")
	_, err = Parse(f.args(nil, "--namespace", "apps"), envOf(nil))
	require.ErrorContains(t, err, `remove it (or set it to "default")`)

	inv, err = Parse(f.args(nil, "--teleport-debug"), envOf(nil))
	require.NoError(t, err)
	require.True(t, inv.Config.Debug, "--teleport-debug turns debug logging on, as it did")
	require.Len(t, inv.Warnings, 1)
	require.Contains(t, inv.Warnings[0], "use --debug")
	inv, err = Parse(f.args(nil), envOf(map[string]string{"FDFWD_TELEPORT_DEBUG": "false"}))
	require.NoError(t, err)
	require.False(t, inv.Config.Debug)

	// status and the other commands read the same files.
	inv, err = Parse([]string{"status", "-c", older, "--storage", f.storage}, envOf(nil))
	require.NoError(t, err)
	require.Len(t, inv.Warnings, 1)
}

// configure's --output named the original's only export target.
func TestConfigureAcceptsTheRetiredOutputFlag(t *testing.T) {
	dir := t.TempDir()
	inv, err := Parse([]string{"configure", "--output", "fluentd", dir}, envOf(nil))
	require.NoError(t, err)
	require.Len(t, inv.Warnings, 1)
	require.Contains(t, inv.Warnings[0], "--output is retired")

	_, err = Parse([]string{"configure", "--output=kinesis", dir}, envOf(nil))
	require.ErrorContains(t, err, `invalid --output "kinesis"`)
	require.ErrorContains(t, err, "accepted only fluentd")
}
