package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const unitFile = "teleport-event-handler.service"

// systemd accepts the unit as it is installed: systemd-analyze verify, in
// a root of its own that holds the unit, an executable where ExecStart
// looks, and the system's targets, reports nothing (it exits 0 on unknown
// keys and bad values, and only says so). The end-to-end suite runs its
// ExecStart line (tests/e2e, TestDeployFilesKeepTheOriginalsStorage).
func TestSystemdAcceptsTheUnit(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	require.NoError(t, err, "systemd-analyze is missing: make test installs it (Debian's systemd package)")
	root := t.TempDir()
	for _, dir := range []string{"etc/systemd/system", "usr/lib/systemd/system", "usr/local/bin"} {
		require.NoError(t, os.MkdirAll(filepath.Join(root, dir), 0o755))
	}
	require.NoError(t, os.WriteFile(filepath.Join(root, "etc/systemd/system", unitFile), readFile(t, unitFile), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(root, "usr/local/bin/teleport-event-handler"), []byte("#!/bin/sh\n"), 0o755))
	units, err := filepath.Glob("/usr/lib/systemd/system/*.target")
	require.NoError(t, err)
	require.NotEmpty(t, units, "the system's targets, which the unit is ordered after")
	for _, u := range units {
		data, err := os.ReadFile(u)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(root, "usr/lib/systemd/system", filepath.Base(u)), data, 0o644))
	}

	out, err := exec.Command(analyze, "verify", "--man=no", "--root="+root, unitFile).CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Empty(t, strings.TrimSpace(string(out)), "systemd-analyze verify says nothing about a good unit")
}
