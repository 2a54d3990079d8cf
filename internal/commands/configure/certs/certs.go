// Package certs issues the X.509 material the daemon and its peers use for
// mutual TLS: a private CA, server certificates and client certificates, plus
// the legacy encrypted PEM keys that Fluentd's Ruby OpenSSL reads.
package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/youmark/pkcs8"
)

// KeyType selects the key algorithm of a new certificate.
type KeyType string

const (
	// ECDSA is ECDSA on P-256: fast, and accepted by Teleport and Fluentd.
	ECDSA KeyType = "ecdsa"
	// RSA is RSA with Options.RSABits bits.
	RSA KeyType = "rsa"
)

const (
	// DefaultRSABits is the RSA key size when Options.RSABits is 0.
	DefaultRSABits = 4096
	// DefaultTTL is the validity when Options.TTL is 0: ten years, since
	// these certificates live in config directories nobody rotates.
	DefaultTTL = 87600 * time.Hour
	// minRSABits is the smallest key size still considered safe.
	minRSABits = 2048
	// backdate is subtracted from NotBefore so that a peer whose clock lags
	// a little does not reject a certificate issued a moment ago.
	backdate = 5 * time.Minute
)

// Options controls key generation and validity. The zero value issues ECDSA
// P-256 certificates valid for DefaultTTL from now.
type Options struct {
	KeyType KeyType // ECDSA (default) or RSA
	RSABits int     // default DefaultRSABits; at least 2048
	TTL     time.Duration
	// Now is the issuing time; nil means time.Now. Tests set it in the past
	// to make certificates that have already expired.
	Now func() time.Time
}

func (o Options) withDefaults() (Options, error) {
	if o.KeyType == "" {
		o.KeyType = ECDSA
	}
	switch o.KeyType {
	case ECDSA:
	case RSA:
		if o.RSABits == 0 {
			o.RSABits = DefaultRSABits
		}
		if o.RSABits < minRSABits {
			return o, fmt.Errorf("RSA key size %d is too small: use at least %d bits", o.RSABits, minRSABits)
		}
	default:
		return o, fmt.Errorf("unknown key type %q: use %q or %q", o.KeyType, ECDSA, RSA)
	}
	if o.TTL < 0 {
		return o, fmt.Errorf("negative certificate TTL %s", o.TTL)
	}
	if o.TTL == 0 {
		o.TTL = DefaultTTL
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o, nil
}

// Pair is a certificate with its private key, parsed and PEM encoded.
type Pair struct {
	Cert    *x509.Certificate
	Key     crypto.Signer
	CertPEM []byte
	KeyPEM  []byte // PKCS#8, "PRIVATE KEY"
}

// NewCA creates a self-signed certificate authority that may sign leaf
// certificates only (no intermediates).
func NewCA(commonName string, o Options) (*Pair, error) {
	if commonName == "" {
		return nil, errors.New("CA common name is empty")
	}
	_, key, tmpl, err := prepare(commonName, o)
	if err != nil {
		return nil, err
	}
	skid, err := subjectKeyID(key.Public())
	if err != nil {
		return nil, err
	}
	tmpl.IsCA = true
	tmpl.MaxPathLenZero = true
	tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	tmpl.SubjectKeyId = skid
	p, err := sign(tmpl, tmpl, key.Public(), key, key)
	if err != nil {
		return nil, fmt.Errorf("create CA %q: %w", commonName, err)
	}
	return p, nil
}

// IssueServer issues a certificate for TLS servers, valid for the given DNS
// names and IP addresses (at least one of them).
func IssueServer(ca *Pair, commonName string, dnsNames []string, ips []net.IP, o Options) (*Pair, error) {
	if len(dnsNames) == 0 && len(ips) == 0 {
		return nil, fmt.Errorf("server certificate %q: no DNS name or IP address; clients verify the host against these", commonName)
	}
	return issue(ca, commonName, o, func(c *x509.Certificate) {
		c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		c.DNSNames = dnsNames
		c.IPAddresses = ips
	})
}

// IssueClient issues a certificate for TLS clients; servers that check client
// certificates see commonName as the client's identity.
func IssueClient(ca *Pair, commonName string, o Options) (*Pair, error) {
	return issue(ca, commonName, o, func(c *x509.Certificate) {
		c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	})
}

func issue(ca *Pair, commonName string, o Options, customize func(*x509.Certificate)) (*Pair, error) {
	if ca == nil || ca.Cert == nil || ca.Key == nil {
		return nil, errors.New("no CA certificate and key to sign with")
	}
	if !ca.Cert.IsCA || ca.Cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("%q is not a CA certificate", ca.Cert.Subject.CommonName)
	}
	if commonName == "" {
		return nil, errors.New("certificate common name is empty")
	}
	o, key, tmpl, err := prepare(commonName, o)
	if err != nil {
		return nil, err
	}
	// A leaf that outlives its CA would fail verification after the CA
	// expires anyway; say so in the certificate itself.
	if tmpl.NotAfter.After(ca.Cert.NotAfter) {
		tmpl.NotAfter = ca.Cert.NotAfter
	}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	if o.KeyType == RSA {
		// TLS 1.2 RSA key exchange encrypts with the certificate's key.
		tmpl.KeyUsage |= x509.KeyUsageKeyEncipherment
	}
	customize(tmpl)
	p, err := sign(tmpl, ca.Cert, key.Public(), key, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("issue %q: %w", commonName, err)
	}
	return p, nil
}

// prepare applies the defaults to o and makes a new key and a certificate
// template for it.
func prepare(commonName string, o Options) (Options, crypto.Signer, *x509.Certificate, error) {
	o, err := o.withDefaults()
	if err != nil {
		return o, nil, nil, err
	}
	key, err := newKey(o)
	if err != nil {
		return o, nil, nil, err
	}
	tmpl, err := template(commonName, o)
	return o, key, tmpl, err
}

func template(commonName string, o Options) (*x509.Certificate, error) {
	// 128 random bits: unique serials without keeping state (RFC 5280 allows
	// up to 20 octets, and positive).
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("serial number: %w", err)
	}
	now := o.Now()
	return &x509.Certificate{
		SerialNumber:          serial.Add(serial, big.NewInt(1)),
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             now.Add(-backdate).UTC(),
		NotAfter:              now.Add(o.TTL).UTC(),
		BasicConstraintsValid: true,
	}, nil
}

func sign(tmpl, parent *x509.Certificate, pub crypto.PublicKey, key, signer crypto.Signer) (*Pair, error) {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return newPair(cert, key)
}

// newPair is cert and its key with their PEM forms (the key as PKCS#8).
func newPair(cert *x509.Certificate, key crypto.Signer) (*Pair, error) {
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode private key: %w", err)
	}
	return &Pair{
		Cert:    cert,
		Key:     key,
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	}, nil
}

func newKey(o Options) (crypto.Signer, error) {
	var (
		key crypto.Signer
		err error
	)
	switch o.KeyType {
	case RSA:
		key, err = rsa.GenerateKey(rand.Reader, o.RSABits)
	default:
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		return nil, fmt.Errorf("generate %s key: %w", o.KeyType, err)
	}
	return key, nil
}

// subjectKeyID follows RFC 7093 method 1: the leftmost 160 bits of the
// SHA-256 of the subjectPublicKey bit string.
func subjectKeyID(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("encode public key: %w", err)
	}
	var spki struct {
		Algorithm        pkix.AlgorithmIdentifier
		SubjectPublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(der, &spki); err != nil {
		return nil, fmt.Errorf("decode public key: %w", err)
	}
	sum := sha256.Sum256(spki.SubjectPublicKey.Bytes)
	return sum[:20], nil
}

// ParsePair parses a PEM certificate (the first block of certPEM) and its
// unencrypted private key (PKCS#8, PKCS#1 or SEC1), and checks that they
// belong together. KeyPEM of the result is PKCS#8.
func ParsePair(certPEM, keyPEM []byte) (*Pair, error) {
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM certificate found")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse certificate: %w", err)
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return nil, err
	}
	if !publicKeysEqual(cert.PublicKey, key.Public()) {
		return nil, fmt.Errorf("the private key does not belong to certificate %q", cert.Subject.CommonName)
	}
	return newPair(cert, key)
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}

// parseKey reads an unencrypted private key in any of the PEM forms OpenSSL
// writes.
func parseKey(keyPEM []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(keyPEM)
	if block == nil {
		return nil, errors.New("no PEM private key found")
	}
	if x509.IsEncryptedPEMBlock(block) { //nolint:staticcheck // detecting the legacy format is not using it
		return nil, errors.New("the private key is encrypted: decrypt it first")
	}
	return parseKeyDER(block.Bytes)
}

func parseKeyDER(der []byte) (crypto.Signer, error) {
	if k, err := x509.ParsePKCS8PrivateKey(der); err == nil {
		if s, ok := k.(crypto.Signer); ok {
			return s, nil
		}
		return nil, fmt.Errorf("unsupported private key type %T", k)
	}
	if k, err := x509.ParsePKCS1PrivateKey(der); err == nil {
		return k, nil
	}
	if k, err := x509.ParseECPrivateKey(der); err == nil {
		return k, nil
	}
	return nil, errors.New("the private key is neither PKCS#8, PKCS#1 nor SEC1")
}

// Key encryption of EncryptKeyPEM: PKCS#8 (PBES2) with PBKDF2-HMAC-SHA256
// at OWASP's iteration count and AES-256-CBC.
var keyEncryption = &pkcs8.Opts{Cipher: pkcs8.AES256CBC,
	KDFOpts: pkcs8.PBKDF2Opts{SaltSize: 16, IterationCount: 600_000, HMACHash: crypto.SHA256}}

// EncryptKeyPEM encrypts a private key as an "ENCRYPTED PRIVATE KEY"
// (PKCS#8 with PBKDF2 and AES-256), which Fluentd's private_key_passphrase
// (Ruby OpenSSL::PKey.read) and `openssl pkey -passin` read; not the legacy
// "Proc-Type: 4,ENCRYPTED" PEM form, whose key derivation is one MD5.
func EncryptKeyPEM(keyPEM []byte, passphrase string) ([]byte, error) {
	if passphrase == "" {
		return nil, errors.New("empty passphrase")
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return nil, err
	}
	der, err := pkcs8.MarshalPrivateKey(key, []byte(passphrase), keyEncryption)
	if err != nil {
		return nil, fmt.Errorf("encrypt private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: der}), nil
}

// DecryptKeyPEM reverses EncryptKeyPEM (and reads the legacy encrypted PEM
// keys older OpenSSL writes) and returns the key as unencrypted PKCS#8 PEM.
// A wrong passphrase gives an error that wraps x509.IncorrectPasswordError.
func DecryptKeyPEM(keyPEM []byte, passphrase string) ([]byte, error) {
	block, _ := pem.Decode(keyPEM)
	if block == nil {
		return nil, errors.New("no PEM private key found")
	}
	var (
		key any
		err error
	)
	switch {
	case block.Type == "ENCRYPTED PRIVATE KEY":
		if key, _, err = pkcs8.ParsePrivateKey(block.Bytes, []byte(passphrase)); err != nil {
			return nil, fmt.Errorf("decrypt private key: %w", x509.IncorrectPasswordError)
		}
	case x509.IsEncryptedPEMBlock(block): //nolint:staticcheck // reading the legacy format on purpose
		der, err := x509.DecryptPEMBlock(block, []byte(passphrase)) //nolint:staticcheck // reading the legacy format on purpose
		if err != nil {
			return nil, fmt.Errorf("decrypt private key: %w", err)
		}
		if key, err = parseKeyDER(der); err != nil {
			// CBC padding checks let about 1 in 256 wrong passphrases
			// through; the garbage then fails to parse.
			return nil, fmt.Errorf("decrypt private key: %w", x509.IncorrectPasswordError)
		}
	default:
		return nil, errors.New("the private key is not encrypted")
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// WriteFiles writes the certificate (mode 0644) and the private key (mode
// 0600). Each file is replaced atomically, so a reader never sees half a
// key, and the key is never readable by others, not even briefly.
func (p *Pair) WriteFiles(certPath, keyPath string) error {
	if err := WriteFileAtomic(certPath, p.CertPEM, 0o644); err != nil {
		return fmt.Errorf("write certificate: %w", err)
	}
	if err := WriteFileAtomic(keyPath, p.KeyPEM, 0o600); err != nil {
		return fmt.Errorf("write private key: %w", err)
	}
	return nil
}

// WriteFileAtomic replaces path with data, so that a reader never sees half a
// file; the file is created with its final mode, so a key is never readable
// by others, not even briefly.
func WriteFileAtomic(path string, data []byte, mode os.FileMode) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*") // created 0600
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err = f.Chmod(mode); err != nil {
		return err
	}
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
