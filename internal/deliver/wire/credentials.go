package wire

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"
)

// Credentials are the client side of the mTLS link to Fluentd: the client
// certificate and key, and the CA that signed Fluentd's certificate. The
// files are read again for each new connection, so a renewal (a Kubernetes
// Secret updated in place, cert-manager, tbot, a CA rotation) reaches the
// next connection without a restart; connections already open keep what
// they were opened with, as Fluentd itself only reads its certificates
// when it starts. A renewal that does not load yet (half written, a key
// that does not match its certificate) keeps the previous credentials
// until it does.
//
// Each connection gets a tls.Config of its own with the pool of the moment
// as RootCAs, so crypto/tls verifies the chain and the server's name as
// for fixed files (verifying a changing pool by hand would lose the name
// check where the URL names an IP address: no server name is sent then).
type Credentials struct {
	// OnReload, if set, hears of each change of the files: nil when they
	// loaded, the error when they do not (once for each content that does
	// not, however many connections try it).
	OnReload func(err error)

	caFile, certFile, keyFile string

	mu    sync.Mutex
	files [3][]byte // the contents last loaded
	// bad is what was last read when that failed to load, or to be read
	// (then the contents up to the file that could not be).
	bad    [3][]byte
	hasBad bool
	cert   *tls.Certificate
	pool   *x509.CertPool
}

// FixedCredentials are credentials held in memory rather than read from
// files, and never reloaded: a CA pool and a client certificate (which may
// be empty). The transports' tests use them with httptest's CA.
func FixedCredentials(pool *x509.CertPool, cert *tls.Certificate) *Credentials {
	return &Credentials{pool: pool, cert: cert}
}

// LoadCredentials reads the three files; an error names the option. Set
// OnReload, if at all, before the first connection.
func LoadCredentials(caFile, certFile, keyFile string) (*Credentials, error) {
	c := &Credentials{caFile: caFile, certFile: certFile, keyFile: keyFile}
	files, err := c.read()
	if err != nil {
		return nil, err
	}
	if err := c.load(files); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Credentials) read() (files [3][]byte, err error) {
	for i, f := range []struct{ option, path string }{
		{"--fluentd-ca", c.caFile}, {"--fluentd-cert", c.certFile}, {"--fluentd-key", c.keyFile},
	} {
		if files[i], err = os.ReadFile(f.path); err != nil {
			return files, fmt.Errorf("read %s: %w", f.option, err)
		}
	}
	return files, nil
}

func (c *Credentials) load(files [3][]byte) error {
	cert, err := tls.X509KeyPair(files[1], files[2])
	if err != nil {
		return fmt.Errorf("load --fluentd-cert %s and --fluentd-key %s: %w", c.certFile, c.keyFile, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(files[0]) {
		return fmt.Errorf("--fluentd-ca %s holds no PEM certificate", c.caFile)
	}
	c.files, c.cert, c.pool = files, &cert, pool
	return nil
}

// current is the certificate and pool to use now. The files are compared
// by content, not by modification time: a renewed certificate has the size
// of the old one, and a file system may keep whole seconds only.
func (c *Credentials) current() (*tls.Certificate, *x509.CertPool) {
	cert, pool, changed, err := c.refresh()
	if changed && c.OnReload != nil {
		c.OnReload(err) // unlocked: it may ask for Validity
	}
	return cert, pool
}

// refresh loads the files if they changed, and says whether they did.
func (c *Credentials) refresh() (*tls.Certificate, *x509.CertPool, bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	files, err := c.read()
	if (err == nil && sameFiles(files, c.files)) || (c.hasBad && sameFiles(files, c.bad)) {
		return c.cert, c.pool, false, nil
	}
	if err == nil {
		err = c.load(files) // not loadable yet: the working ones stay
	}
	if err != nil {
		// The files are read one by one: a renewal swapped in between
		// (a Secret volume's ..data link) mixes old and new. Once more.
		if again, rerr := c.read(); rerr == nil && !sameFiles(again, files) {
			files, err = again, c.load(again)
		}
	}
	c.bad, c.hasBad = files, err != nil
	return c.cert, c.pool, true, err
}

func sameFiles(a, b [3][]byte) bool {
	return bytes.Equal(a[0], b[0]) && bytes.Equal(a[1], b[1]) && bytes.Equal(a[2], b[2])
}

// Config is the TLS configuration of one new connection to serverName.
func (c *Credentials) Config(serverName string) *tls.Config {
	cert, pool := c.current()
	return &tls.Config{
		// Fluentd's TLS defaults to 1.2 only, so 1.2 must stay allowed.
		MinVersion: tls.VersionTLS12,
		RootCAs:    pool,
		ServerName: serverName,
		// Always offered, even to a server whose list of accepted CAs
		// does not name ours: its refusal then says why.
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil },
	}
}

// Validity is when the client certificate was issued and when it expires,
// after reading the files again (a change is reported to OnReload).
func (c *Credentials) Validity() (notBefore, notAfter time.Time) {
	c.current()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cert == nil || c.cert.Leaf == nil {
		return time.Time{}, time.Time{}
	}
	return c.cert.Leaf.NotBefore, c.cert.Leaf.NotAfter
}

// Dial opens a TLS connection to addr ("host:port") with the credentials
// of the moment: the TCP connection within 5 s, the whole within 10 s.
func (c *Credentials) Dial(ctx context.Context, addr string) (*tls.Conn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	dialer := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}, Config: c.Config(host)}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return conn.(*tls.Conn), nil
}

// DialHTTPS is Dial for http.Transport; a certificate problem reads as it
// does at start, with its fix.
func (c *Credentials) DialHTTPS(ctx context.Context, _, addr string) (net.Conn, error) {
	conn, err := c.Dial(ctx, addr)
	if err != nil {
		if tlsErr := (*TLSError)(nil); errors.As(ClassifyHandshake("https://"+addr, err), &tlsErr) {
			return nil, tlsErr
		}
		return nil, err
	}
	return conn, nil
}
