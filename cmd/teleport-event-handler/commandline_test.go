package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fdfwd/teleport-event-handler/config"
	"github.com/fdfwd/teleport-event-handler/internal/commands/configure"
)

func noEnv(string) (string, bool) { return "", false }

// help and --version work as people type them.
func TestHelpAndVersionAsPeopleType(t *testing.T) {
	for _, args := range [][]string{{"--version"}, {"start", "--version"}, {"version"}} {
		inv, err := parse(args, noEnv)
		require.NoError(t, err, args)
		require.Equal(t, "version", inv.command, args)
		require.Nil(t, inv.start, args)
	}
	inv, err := parse([]string{"help"}, noEnv)
	require.NoError(t, err)
	require.Empty(t, inv.command)
	require.Contains(t, inv.help, "Usage: teleport-event-handler")
	inv, err = parse([]string{"help", "start"}, noEnv)
	require.NoError(t, err)
	require.Contains(t, inv.help, "--fluentd-url")
	inv, err = parse([]string{"help", "configure"}, noEnv)
	require.NoError(t, err)
	require.Equal(t, configure.Usage(), inv.help)
}

func TestCommandErrors(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{nil, "command line: no command given"},
		{[]string{"bogus"}, "command line: Unknown command `bogus'"},
		{[]string{"version", "extra"}, `command line: unexpected argument "extra"`},
		{[]string{"start", "--nope"}, "command line: unknown flag `nope'; run teleport-event-handler --help"},
		// An unknown flag is one a user mistyped.
		{[]string{"start", "--fluentd-urll", "x"}, "unknown flag `fluentd-urll' (did you mean --fluentd-url?)"},
		{[]string{"status", "--storag", "x"}, "(did you mean --storage?)"},
		{[]string{"configure", "--nope", "dir"}, "unknown flag `nope'"},
		// A switch takes its value only after =.
		{[]string{"start", "--dry-run", "false"}, `command line: unexpected argument "false"`},
	} {
		_, err := parse(tt.args, noEnv)
		require.Error(t, err, tt.args)
		require.IsType(t, &config.Error{}, err, tt.args)
		require.Contains(t, err.Error(), tt.want, tt.args)
	}
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"-h"}, {"start", "--help"}, {"start", "-h", "--storage", "x"}, {"version", "--help"}} {
		inv, err := parse(args, noEnv)
		require.NoError(t, err, args)
		require.Empty(t, inv.command, args)
		require.Nil(t, inv.start, args)
		require.Contains(t, inv.help, "Usage: teleport-event-handler", args)
	}

	inv, err := parse([]string{"start", "--help"}, noEnv)
	require.NoError(t, err)
	for _, want := range []string{"Teleport connection:", "--receiver-url=URL (or --fluentd-url)", "FDFWD_FLUENTD_URL", "Default: 20, doubling up to 1000 while a backlog is read."} {
		require.Contains(t, inv.help, want)
	}
	for _, line := range strings.Split(inv.help+usage(""), "\n") {
		require.LessOrEqual(t, len(line), 80, line)
	}

	inv, err = parse([]string{"--help"}, noEnv)
	require.NoError(t, err)
	for _, want := range []string{"start", "version", "--config", "FDFWD_CONFIG", "--debug", "FDFWD_DEBUG", "  configure  Write certificates"} {
		require.Contains(t, inv.help, want)
	}
	for _, args := range [][]string{{"configure", "--help"}, {"configure", "-h", "dir"}} {
		inv, err := parse(args, noEnv)
		require.NoError(t, err)
		require.Equal(t, configure.Usage(), inv.help)
	}
}

// Each command's own switch lands in its own field, and the global options
// work before the command, as upstream, and after it.
func TestCommandsAndTheirOwnFlags(t *testing.T) {
	storage := t.TempDir()
	inv, err := parse([]string{"sessions", "drop", "--all", "--storage", storage}, noEnv)
	require.NoError(t, err)
	require.Equal(t, "sessions", inv.command)
	require.Equal(t, "drop", inv.sub)
	require.True(t, inv.all)
	require.False(t, inv.yes)
	inv, err = parse([]string{"dead-letters", "purge", "--yes", "--storage", storage}, noEnv)
	require.NoError(t, err)
	require.True(t, inv.yes)
	require.False(t, inv.all)
	_, err = parse([]string{"dead-letters", "purge", "--all", "--storage", storage}, noEnv)
	require.ErrorContains(t, err, "unknown flag `all'")
	inv, err = parse([]string{"export", "retry", "2026-01-02/3", "--storage", storage}, noEnv)
	require.NoError(t, err)
	require.Equal(t, []string{"2026-01-02/3"}, inv.args)
	inv, err = parse([]string{"status", "--json", "--storage", storage}, noEnv)
	require.NoError(t, err)
	require.True(t, inv.json)
	require.Equal(t, storage, inv.start.Config.Storage)

	file := filepath.Join(t.TempDir(), "eh.toml")
	require.NoError(t, os.WriteFile(file, []byte("storage = \"/var/lib/x\"\nnamespace = \"default\"\n"), 0o600))
	for _, args := range [][]string{{"-c", file, "-d", "status"}, {"status", "-c", file, "--debug"}} {
		inv, err = parse(args, noEnv)
		require.NoError(t, err, args)
		require.Equal(t, file, inv.start.File)
		require.True(t, inv.start.Config.Debug)
		require.Len(t, inv.warnings, 1, "the retired namespace")
	}
	_, err = parse([]string{"-c", file, "start"}, noEnv)
	require.ErrorContains(t, err, "--fluentd-url, --fluentd-session-url", "start checks the whole configuration")

	inv, err = parse([]string{"-d", "configure", "--force", "--output", "fluentd", "dir"}, noEnv)
	require.NoError(t, err)
	require.True(t, inv.configure.Force)
	require.Equal(t, "dir", inv.configure.OutDir)
	require.Len(t, inv.warnings, 1, "the retired --output")
}
