package configure_test

import (
	"net"
	"strings"
	"testing"
	"time"

	flags "github.com/jessevdk/go-flags"
	"github.com/stretchr/testify/require"

	"github.com/fdfwd/teleport-event-handler/config"
	"github.com/fdfwd/teleport-event-handler/internal/commands/configure"
	"github.com/fdfwd/teleport-event-handler/internal/commands/configure/certs"
)

// resolve parses configure's flags and arguments with go-flags, as the
// program's command line does, and resolves them.
func resolve(args []string, env map[string]string) (*configure.Options, error) {
	var f configure.Flags
	p := flags.NewParser(&f, flags.PassDoubleDash|flags.AllowBoolValues)
	rest, err := p.ParseArgs(args)
	if err != nil {
		return nil, err
	}
	isSet := func(flag string) bool {
		o := p.FindOptionByLongName(flag)
		return o != nil && o.IsSet()
	}
	return configure.Resolve(f, isSet, rest, func(k string) (string, bool) {
		v, ok := env[k]
		return v, ok
	})
}

func TestConfigureDefaults(t *testing.T) {
	c, err := resolve([]string{"out"}, nil)
	require.NoError(t, err)
	require.Equal(t, &configure.Options{
		OutDir:            "out",
		TeleportAddr:      "localhost:3025",
		FluentdURL:        "https://localhost:8888/test.log",
		FluentdSessionURL: "https://localhost:8888/session",
		KeyType:           certs.RSA,
		RSABits:           4096,
		TTL:               87600 * time.Hour,
		DNSNames:          []string{"localhost"},
		IPs:               []net.IP{net.IPv4(127, 0, 0, 1)},
	}, c)
}

func TestConfigureFlags(t *testing.T) {
	c, err := resolve([]string{"--key-type", "ECDSA", "--ttl", "8760h",
		"--dns-names", "fluentd.example.com,*.fluentd.example.com", "--dns-names", "localhost", "--ip", "10.0.0.1,::1",
		"--fluentd-url", "https://fluentd.example.com/audit", "--fluentd-session-url", "https://fluentd.example.com:443/rec",
		"--lock-enabled", "--force", "dir", "teleport.example.com:443"},
		map[string]string{configure.PasswordEnv: "from-env"})
	require.NoError(t, err)
	require.Equal(t, "dir", c.OutDir)
	require.Equal(t, "teleport.example.com:443", c.TeleportAddr)
	require.Equal(t, certs.ECDSA, c.KeyType)
	require.Equal(t, 8760*time.Hour, c.TTL)
	require.Equal(t, []string{"fluentd.example.com", "*.fluentd.example.com", "localhost"}, c.DNSNames)
	require.Equal(t, []net.IP{net.ParseIP("10.0.0.1"), net.ParseIP("::1")}, c.IPs)
	require.Equal(t, "https://fluentd.example.com/audit", c.FluentdURL)
	require.Equal(t, "from-env", c.Password)
	require.True(t, c.LockEnabled)
	require.True(t, c.Force)

	c, err = resolve([]string{"--length=2048", "--ip", "", "dir"}, map[string]string{configure.PasswordEnv: "from-env"})
	require.NoError(t, err)
	require.Equal(t, 2048, c.RSABits)
	require.Empty(t, c.IPs)
	require.Equal(t, []string{"localhost"}, c.DNSNames)
	require.Equal(t, "from-env", c.Password)

	// make passes PASS= through: an empty variable asks for a generated one.
	c, err = resolve([]string{"dir"}, map[string]string{configure.PasswordEnv: ""})
	require.NoError(t, err)
	require.Empty(t, c.Password)
}

func TestConfigureErrors(t *testing.T) {
	for _, tt := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{}, nil, "OUT_DIR: no output directory given; give the directory to write the files to"},
		{[]string{""}, nil, "OUT_DIR: empty output directory"},
		{[]string{"dir", "host:443", "extra"}, nil, `command line: unexpected argument "extra"`},
		{[]string{"dir", "teleport.example.com"}, nil, `invalid TELEPORT_ADDR "teleport.example.com" (from the command line): not a host:port address`},
		{[]string{"--key-type", "dsa", "dir"}, nil, `invalid --key-type "dsa" (from the command line): unknown key type; use rsa or ecdsa`},
		{[]string{"--length", "1024", "dir"}, nil, `invalid --length "1024" (from the command line): not a supported RSA key size; use 2048, 3072 or 4096`},
		{[]string{"--key-type", "ecdsa", "--length", "4096", "dir"}, nil, "sets the size of RSA keys, but --key-type is ecdsa"},
		{[]string{"--ttl", "10y", "dir"}, nil, `invalid --ttl "10y"`},
		{[]string{"--ttl=-1h", "dir"}, nil, "not a positive duration"},
		{[]string{"--dns-names", "10.0.0.1", "dir"}, nil, `invalid --dns-names "10.0.0.1" (from the command line): is an IP address; give it with --ip`},
		{[]string{"--dns-names", "bad_name", "dir"}, nil, "not a DNS name"},
		{[]string{"--ip", "localhost", "dir"}, nil, `invalid --ip "localhost" (from the command line): not an IP address`},
		{[]string{"--dns-names", "", "--ip", "", "dir"}, nil, "--dns-names: no DNS name and no IP address"},
		{[]string{"--fluentd-url", "http://fluentd:8888/test.log", "dir"}, nil, "a relp+tls:// URL with a host"},
		{[]string{"--fluentd-url", "https://fluentd:8888", "dir"}, nil, "has no path, which Fluentd needs as the tag"},
		{[]string{"--fluentd-url", "https://fluentd:99999/x", "dir"}, nil, "invalid port"},
		{[]string{"--fluentd-session-url", "https://localhost:8888/session/", "dir"}, nil, "ends with /, and .<session-id>.log is appended"},
		{[]string{"--fluentd-session-url", "https://localhost:9999/session", "dir"}, nil, "give both URLs the same scheme, host and port"},
		{[]string{"--password", "pw", "dir"}, nil, `invalid --password "(not shown)" (from the command line): a secret on the command line is shown to every user by ps`},
		{[]string{"dir"}, map[string]string{configure.PasswordEnv: "a\nb"}, `invalid FDFWD_PASSWORD "(not shown)" (from FDFWD_PASSWORD): contains control characters`},
	} {
		_, err := resolve(tt.args, tt.env)
		require.Error(t, err, tt.args)
		require.IsType(t, &config.Error{}, err, tt.args)
		require.Contains(t, err.Error(), tt.want, tt.args)
		require.NotContains(t, err.Error(), "\n")
	}
}

func TestConfigureHelp(t *testing.T) {
	help := configure.Usage()
	require.Contains(t, help, "Usage: teleport-event-handler configure [options] OUT_DIR [TELEPORT_ADDR]")
	for _, flag := range []string{"--key-type", "--length", "--ttl", "--dns-names", "--ip", configure.PasswordEnv,
		"--fluentd-url", "--fluentd-session-url", "--lock-enabled", "--force"} {
		require.Contains(t, help, flag)
	}
	require.Contains(t, help, "Default: 87600h.")
	for _, line := range strings.Split(help, "\n") {
		require.LessOrEqual(t, len(line), 80, line)
	}
}

// Fluentd's server certificate is for the host the daemon reaches it by:
// the host of --fluentd-url is always among its names.
func TestConfigureCertificateNamesFollowTheURL(t *testing.T) {
	c, err := resolve([]string{"--fluentd-url", "https://fluentd.example.com:8888/test.log",
		"--fluentd-session-url", "https://fluentd.example.com:8888/session", "dir"}, nil)
	require.NoError(t, err)
	require.Equal(t, []string{"localhost", "fluentd.example.com"}, c.DNSNames)
	require.Equal(t, []net.IP{net.IPv4(127, 0, 0, 1)}, c.IPs)

	c, err = resolve([]string{"--fluentd-url", "https://10.1.2.3:8888/test.log",
		"--fluentd-session-url", "https://10.1.2.3:8888/session", "--dns-names", "fluentd.internal", "dir"}, nil)
	require.NoError(t, err)
	require.Equal(t, []string{"fluentd.internal"}, c.DNSNames)
	require.Equal(t, []net.IP{net.IPv4(127, 0, 0, 1), net.ParseIP("10.1.2.3")}, c.IPs)
}

// configure's --output named the original's only export target.
func TestConfigureAcceptsTheRetiredOutputFlag(t *testing.T) {
	dir := t.TempDir()
	c, err := resolve([]string{"--output", "fluentd", dir}, nil)
	require.NoError(t, err)
	require.Len(t, c.Warnings, 1)
	require.Contains(t, c.Warnings[0], "--output is retired")

	_, err = resolve([]string{"--output=kinesis", dir}, nil)
	require.ErrorContains(t, err, `invalid --output "kinesis"`)
	require.ErrorContains(t, err, "accepted only fluentd")
}
