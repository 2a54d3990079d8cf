package fluentd

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"sync"
	"time"
)

// ReloadEvery is how often the certificate files are looked at again:
// renewed files (a Kubernetes Secret updated in place, a cert-manager or
// tbot renewal) reach new connections without a restart.
var ReloadEvery = 10 * time.Second

// credentials are the client certificate and the CA pool of the link to
// Fluentd, re-read when their files change (the pool only serves the
// start). A renewal that does not load
// (half written, a key that does not match) keeps the previous ones until
// it does.
type credentials struct {
	caFile, certFile, keyFile string

	mu      sync.Mutex
	checked time.Time
	stamp   string
	cert    *tls.Certificate
	pool    *x509.CertPool
}

func (c *credentials) load() error {
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("load --fluentd-cert %s and --fluentd-key %s: %w", c.certFile, c.keyFile, err)
	}
	caPEM, err := os.ReadFile(c.caFile)
	if err != nil {
		return fmt.Errorf("read --fluentd-ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return fmt.Errorf("--fluentd-ca %s holds no PEM certificate", c.caFile)
	}
	c.cert, c.pool = &cert, pool
	return nil
}

// stampOf sums up the files' sizes and modification times.
func (c *credentials) stampOf() string {
	s := ""
	for _, f := range []string{c.caFile, c.certFile, c.keyFile} {
		if info, err := os.Stat(f); err == nil {
			s += fmt.Sprintf("%d/%d;", info.Size(), info.ModTime().UnixNano())
		}
	}
	return s
}

// current is the certificate and pool to use now, reloaded when the files
// changed since the last look (at most every ReloadEvery).
func (c *credentials) current() (*tls.Certificate, *x509.CertPool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now := time.Now(); now.Sub(c.checked) >= ReloadEvery {
		c.checked = now
		if stamp := c.stampOf(); stamp != c.stamp {
			cert, pool := c.cert, c.pool
			if c.load() == nil {
				c.stamp = stamp
			} else {
				c.cert, c.pool = cert, pool // not loadable yet: keep the working ones
			}
		}
	}
	return c.cert, c.pool
}

// TLSConfig builds the client side of the mTLS connection to Fluentd. The
// certificate, key and CA are read now (an error names the option); the
// client certificate and key again whenever their files change. The CA
// pool is the one read at start: crypto/tls verifies the server's chain and
// name against it, and a pool that changes would need that verification
// done by hand (where an IP address leaves no name to check).
func TLSConfig(caFile, certFile, keyFile string) (*tls.Config, error) {
	c := &credentials{caFile: caFile, certFile: certFile, keyFile: keyFile}
	if err := c.load(); err != nil {
		return nil, err
	}
	c.stamp, c.checked = c.stampOf(), time.Now()
	return &tls.Config{
		// Fluentd's TLS defaults to 1.2 only, so 1.2 must stay allowed.
		MinVersion: tls.VersionTLS12,
		RootCAs:    c.pool,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			cert, _ := c.current()
			return cert, nil
		},
	}, nil
}
