package main

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fdfwd/teleport-event-handler/config"
)

// The configuration make testbed writes is one the daemon starts with, on
// both of the receiver's inputs.
func TestTestbedConfigurationIsValid(t *testing.T) {
	b, err := newBed(filepath.Join(t.TempDir(), "testbed"), 20, "127.0.0.1:0", "127.0.0.1:0")
	require.NoError(t, err)
	defer b.close()
	path, err := b.writeConfig()
	require.NoError(t, err)
	inv, err := config.Resolve(map[string]string{"config": path}, func(string) (string, bool) { return "", false })
	require.NoError(t, err)
	require.Equal(t, b.tp.Addr(), inv.Config.Teleport.Addr)
	require.Equal(t, b.fd.URL()+"/test.log", inv.Config.Fluentd.URL)

	_, err = newBed(filepath.Join(t.TempDir(), "testbed"), 20, "0.0.0.0:0", "127.0.0.1:0")
	require.ErrorContains(t, err, "127.0.0.1 only")
}
