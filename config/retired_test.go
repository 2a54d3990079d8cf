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
	inv, err := parse(f.args(nil, "-c", older), envOf(nil))
	require.NoError(t, err)
	require.Len(t, inv.Warnings, 1)
	require.Contains(t, inv.Warnings[0], "namespace is retired")
	require.Contains(t, inv.Warnings[0], "older.toml, line 2")

	for _, env := range []map[string]string{nil, {"FDFWD_NAMESPACE": "default"}} {
		inv, err := parse(f.args(nil), envOf(env))
		require.NoError(t, err)
		require.Len(t, inv.Warnings, len(env), "a warning only when it is set")
	}

	other := writeFile(t, f.dir, "other.toml", "namespace = \"kube\"\n")
	_, err = parse(f.args(nil, "-c", other), envOf(nil))
	require.ErrorContains(t, err, `only the "default" namespace`)
	require.ErrorContains(t, err, "other.toml, line 1")
	_, err = parse(f.args(nil, "--namespace", "apps"), envOf(nil))
	require.ErrorContains(t, err, `remove it (or set it to "default")`)

	inv, err = parse(f.args(nil, "--teleport-debug"), envOf(nil))
	require.NoError(t, err)
	require.True(t, inv.Config.Debug, "--teleport-debug turns debug logging on, as it did")
	require.Len(t, inv.Warnings, 1)
	require.Contains(t, inv.Warnings[0], "use --debug")
	inv, err = parse(f.args(nil), envOf(map[string]string{"FDFWD_TELEPORT_DEBUG": "false"}))
	require.NoError(t, err)
	require.False(t, inv.Config.Debug)

	// status and the other commands read the same files.
	inv, err = parse([]string{"status", "-c", older, "--storage", f.storage}, envOf(nil))
	require.NoError(t, err)
	require.Len(t, inv.Warnings, 1)
}

// The defaults that follow from other options are set once, for every
// command.
func TestDerivedDefaults(t *testing.T) {
	f := newFixture(t)
	for _, args := range [][]string{f.args(nil), {"status", "--storage", f.storage}} {
		inv, err := parse(append(args, "--concurrency", "4"), envOf(nil))
		require.NoError(t, err)
		require.Equal(t, 8, inv.Config.Fluentd.MaxConnections, "2 x --concurrency, %s", args[0])
	}
}
