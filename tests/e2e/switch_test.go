package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"text/template"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fdfwd/teleport-event-handler/persistence"
)

// originalTOML is the configuration file the original plugin's configure
// writes (../shared/notes/upstream.md, "How the original is deployed"): a
// storage relative to where it ran, and namespace = "default" as its
// earlier versions wrote it. The paths are where the unit's header installs
// the files.
var originalTOML = template.Must(template.New("toml").Parse(`storage = "./storage" # Plugin will save its state here
timeout = "10s"
batch = 20
namespace = "default"

[forward.fluentd]
ca = "{{.Etc}}/ca.crt"
cert = "{{.Etc}}/client.crt"
key = "{{.Etc}}/client.key"
url = "{{.URL}}/test.log"
session-url = "{{.URL}}/session"

[teleport]
addr = "{{.Addr}}"
identity = "{{.Etc}}/identity"
refresh.enabled = true
`))

// launch is how a deploy file starts the daemon: its command line, its
// environment and its working directory, with every absolute path moved
// under a root directory, as a chroot would see them.
type launch struct {
	argv []string
	env  []string
	dir  string
}

// The switch as operators make it: the original's configuration file, as
// its configure writes it, installed where our deploy files read it, and
// the original's storage directory moved to where its relative storage now
// points. Started by the unit's exact ExecStart line (specifiers and
// variables resolved as systemd resolves them) and by the image's
// entrypoint and environment, the daemon takes over the original's state
// and skips nothing.
func TestDeployFilesKeepTheOriginalsStorage(t *testing.T) {
	t.Parallel()
	for name, start := range map[string]func(*testing.T, string, string) launch{
		"systemd unit":    unitLaunch,
		"container image": imageLaunch,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			switchOver(t, start)
		})
	}
}

func switchOver(t *testing.T, start func(*testing.T, string, string) launch) {
	e := newEnv(t)
	evs := e.Seed(120, 97)
	const sent = 63 // the original had sent evs[:sent]

	root := t.TempDir()
	etc := filepath.Join(root, "etc", "teleport-event-handler")
	require.NoError(t, os.MkdirAll(etc, 0o755))
	for name, from := range map[string]string{"ca.crt": e.PKI.FluentdCAFile, "client.crt": e.PKI.FluentdClientCertFile,
		"client.key": e.PKI.FluentdClientKeyFile, "identity": e.PKI.IdentityFile} {
		data, err := os.ReadFile(from)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(etc, name), data, 0o600))
	}
	var toml strings.Builder
	require.NoError(t, originalTOML.Execute(&toml, map[string]string{"Etc": etc, "URL": e.FluentdURL, "Addr": e.TeleportAddr}))
	conf := filepath.Join(etc, "teleport-event-handler.toml")
	require.NoError(t, os.WriteFile(conf, []byte(toml.String()), 0o600))

	// The original's storage directory, moved into the state directory.
	state := filepath.Join(root, "var", "lib", "teleport-event-handler")
	files := map[string][]byte{
		"start_time": []byte(e.T0.Add(-time.Minute).UTC().Format(time.RFC3339)),
		"cursor":     []byte(searchCursor(evs, sent-1)),
		"id":         []byte(evs[sent-1].GetID()),
	}
	original := persistence.Dir(filepath.Join(state, "storage"), e.TeleportAddr)
	writeOriginal(t, original, files)

	l := start(t, root, e.Binary)
	// What an operator would add to try it out: the unit's EnvironmentFile
	// or docker run -e.
	l.env = append(l.env, "FDFWD_EXIT_ON_LAST_EVENT=true", "FDFWD_TIMEOUT=200ms")
	out := runLaunch(t, l)
	require.Contains(t, out, "took over the original Event Handler plugin's state", out)
	require.Contains(t, out, "namespace", "the retired key gets its warning")
	require.NotContains(t, out, "first start: no state here")
	requireContinuedAfter(t, e, evs, sent)
	requireUntouched(t, original, files)
	_, err := os.Stat(filepath.Join(original, persistence.FileName))
	require.NoError(t, err, "the daemon's state is beside the original's")
}

// runLaunch runs the daemon as l says and returns its output.
func runLaunch(t *testing.T, l launch) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, l.argv[0], l.argv[1:]...)
	cmd.Env, cmd.Dir = l.env, l.dir
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s\n%s", strings.Join(l.argv, " "), out)
	return string(out)
}

// unitLaunch reads deploy/teleport-event-handler.service as systemd does
// for what matters here: StateDirectory= creates /var/lib/NAME and sets
// STATE_DIRECTORY, %S is /var/lib, ${VAR} in ExecStart is the variable's
// value, and the command runs in WorkingDirectory= (/ without it).
func unitLaunch(t *testing.T, root, binary string) launch {
	t.Helper()
	svc := unitSection(t, "../../deploy/teleport-event-handler.service", "Service")
	require.NotEmpty(t, svc["StateDirectory"], "the unit has a state directory")
	state := filepath.Join(root, "var", "lib", svc["StateDirectory"][0])
	require.NoError(t, os.MkdirAll(state, 0o700))
	vars := map[string]string{"STATE_DIRECTORY": state}
	env := []string{"STATE_DIRECTORY=" + state}
	for _, kv := range svc["Environment"] {
		env = append(env, rooted(root, kv))
	}
	dir := "/"
	if wd := svc["WorkingDirectory"]; len(wd) > 0 {
		dir = strings.ReplaceAll(wd[len(wd)-1], "%S", "/var/lib")
	}
	require.Len(t, svc["ExecStart"], 1)
	argv := strings.Fields(svc["ExecStart"][0])
	for i, arg := range argv {
		argv[i] = os.Expand(arg, func(name string) string {
			v, ok := vars[name]
			require.True(t, ok, "ExecStart uses ${%s}, which the test does not know", name)
			return strings.TrimPrefix(v, root)
		})
	}
	return launch{argv: rootedArgs(root, binary, argv), env: env, dir: filepath.Join(root, dir)}
}

// imageLaunch reads deploy/Dockerfile's last stage as docker run does with
// the configuration given after the image: ENTRYPOINT with the arguments
// "-c FILE start" in place of CMD, ENV, and WORKDIR (/ without it).
func imageLaunch(t *testing.T, root, binary string) launch {
	t.Helper()
	raw, err := os.ReadFile("../../deploy/Dockerfile")
	require.NoError(t, err)
	var entrypoint []string
	var env []string
	dir := "/"
	for _, line := range strings.Split(string(raw), "\n") {
		instr, rest, _ := strings.Cut(strings.TrimSpace(line), " ")
		switch instr {
		case "FROM": // only the last stage is the image
			entrypoint, env, dir = nil, nil, "/"
		case "ENV":
			env = append(env, rooted(root, strings.TrimSpace(rest)))
		case "WORKDIR":
			dir = strings.TrimSpace(rest)
		case "ENTRYPOINT":
			require.NoError(t, json.Unmarshal([]byte(rest), &entrypoint), "ENTRYPOINT in exec form")
		}
	}
	require.NotEmpty(t, entrypoint)
	require.NoError(t, os.MkdirAll(filepath.Join(root, dir), 0o700))
	argv := append(entrypoint, "-c", "/etc/teleport-event-handler/teleport-event-handler.toml", "start")
	return launch{argv: rootedArgs(root, binary, argv), env: env, dir: filepath.Join(root, dir)}
}

// rootedArgs puts the binary under test in place of the installed one and
// moves the absolute paths of the arguments under root.
func rootedArgs(root, binary string, argv []string) []string {
	out := []string{binary}
	for _, arg := range argv[1:] {
		if strings.HasPrefix(arg, "/") {
			arg = filepath.Join(root, arg)
		}
		out = append(out, arg)
	}
	return out
}

// rooted moves the value of NAME=/path under root.
func rooted(root, kv string) string {
	name, value, _ := strings.Cut(kv, "=")
	if strings.HasPrefix(value, "/") {
		value = filepath.Join(root, value)
	}
	return name + "=" + value
}

// unitSection returns the settings of one section of a unit file, each
// key's values in order.
func unitSection(t *testing.T, path, section string) map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	settings, in := map[string][]string{}, false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "["):
			in = line == fmt.Sprintf("[%s]", section)
		case in:
			key, value, ok := strings.Cut(line, "=")
			require.True(t, ok, "%s: %q", path, line)
			settings[key] = append(settings[key], value)
		}
	}
	require.NoError(t, sc.Err())
	return settings
}
