// Package pki is the certificate authority of a cluster in secure mode (a join token set): the
// cluster's CA, certificates for its nodes signed from their certificate signing requests, the
// proof that a node knows the join token, and the CA key sealed under the token for storage in
// etcd.
//
// Every node certificate serves both sides of TLS (server and client authentication): a node
// presents it to the etcd members it talks to, to its peers as an etcd member, and to the
// clients of its HTTP API.
package pki

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"time"
)

// Validity of what the CA signs.
const (
	caValidity   = 10 * 365 * 24 * time.Hour
	nodeValidity = 2 * 365 * 24 * time.Hour
	// clockSkew back-dates NotBefore, so that a node whose clock is a little behind accepts a
	// certificate signed a moment ago.
	clockSkew = time.Hour
	// MaxCSRBytes bounds a certificate signing request (PEM) a node accepts.
	MaxCSRBytes = 16 << 10
	// maxHosts bounds the names a node may ask for.
	maxHosts = 16
)

// CA is a cluster's certificate authority: its certificate, and its key when this node can
// sign.
type CA struct {
	Cert *x509.Certificate
	// CertPEM is Cert, PEM-encoded.
	CertPEM []byte
	key     *ecdsa.PrivateKey
}

// NewCA creates a CA for cluster name.
func NewCA(name string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "clusterkit CA " + name, Organization: []string{"clusterkit"}},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), key: key}, nil
}

// ParseCA reads a CA certificate, and its key when keyPEM is not empty.
func ParseCA(certPEM, keyPEM []byte) (*CA, error) {
	cert, err := parseCert(certPEM)
	if err != nil {
		return nil, fmt.Errorf("pki: CA certificate: %w", err)
	}
	if !cert.IsCA {
		return nil, errors.New("pki: CA certificate is not a CA")
	}
	ca := &CA{Cert: cert, CertPEM: certPEM}
	if len(keyPEM) > 0 {
		key, err := parseKey(keyPEM)
		if err != nil {
			return nil, fmt.Errorf("pki: CA key: %w", err)
		}
		if !key.PublicKey.Equal(cert.PublicKey) {
			return nil, errors.New("pki: CA key does not match the CA certificate")
		}
		ca.key = key
	}
	return ca, nil
}

// CanSign reports whether the CA holds its key.
func (ca *CA) CanSign() bool { return ca.key != nil }

// KeyPEM returns the CA's key, PEM-encoded; nil when it does not hold it.
func (ca *CA) KeyPEM() []byte {
	if ca.key == nil {
		return nil
	}
	der, err := x509.MarshalECPrivateKey(ca.key)
	if err != nil {
		return nil
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
}

// Pool returns a certificate pool holding only the CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// Hash is the CA's pin: "sha256:" and the hex SHA-256 of its public key (the form of kubeadm's
// discovery hash).
func (ca *CA) Hash() string { return Hash(ca.Cert) }

// Hash returns the pin of cert.
func Hash(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// NewKey creates a node's key and a certificate signing request for node id and hosts (IP
// addresses or DNS names the node is reached at). It returns both PEM-encoded.
func NewKey(id string, hosts []string) (keyPEM, csrPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: id}}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return nil, nil, err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}

// Sign signs the certificate signing request csrPEM of node id: a certificate for server and
// client authentication, for the names the request asks for. It refuses a request that is not
// validly signed, names another node, or asks for more than a few names.
func (ca *CA) Sign(id string, csrPEM []byte) ([]byte, error) {
	if ca.key == nil {
		return nil, errors.New("pki: this node does not hold the CA key")
	}
	if len(csrPEM) > MaxCSRBytes {
		return nil, fmt.Errorf("pki: certificate request of %d bytes, over %d", len(csrPEM), MaxCSRBytes)
	}
	block, _ := pem.Decode(csrPEM)
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		return nil, errors.New("pki: not a PEM certificate request")
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("pki: certificate request: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("pki: certificate request: %w", err)
	}
	if csr.Subject.CommonName != id {
		return nil, fmt.Errorf("pki: certificate request for %q, not node %q", csr.Subject.CommonName, id)
	}
	if n := len(csr.DNSNames) + len(csr.IPAddresses); n > maxHosts {
		return nil, fmt.Errorf("pki: certificate request for %d names, over %d", n, maxHosts)
	}
	if len(csr.URIs) > 0 || len(csr.EmailAddresses) > 0 {
		return nil, errors.New("pki: certificate request asks for URIs or e-mail addresses")
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: id, Organization: []string{"clusterkit"}},
		NotBefore:    now.Add(-clockSkew),
		NotAfter:     now.Add(nodeValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     csr.DNSNames,
		IPAddresses:  csr.IPAddresses,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, csr.PublicKey, ca.key)
	if err != nil {
		return nil, fmt.Errorf("pki: sign: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

// Issue creates a key and a signed certificate for node id and hosts, for the node that holds
// the CA key itself.
func (ca *CA) Issue(id string, hosts []string) (certPEM, keyPEM []byte, err error) {
	keyPEM, csrPEM, err := NewKey(id, hosts)
	if err != nil {
		return nil, nil, err
	}
	certPEM, err = ca.Sign(id, csrPEM)
	return certPEM, keyPEM, err
}

// Verify checks that certPEM is a node certificate signed by the CA, valid now, and returns it.
func (ca *CA) Verify(certPEM []byte) (*x509.Certificate, error) {
	cert, err := parseCert(certPEM)
	if err != nil {
		return nil, err
	}
	_, err = cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if err != nil {
		return nil, fmt.Errorf("pki: certificate not signed by the cluster's CA: %w", err)
	}
	return cert, nil
}

// Proof is what a node that knows token shows for the CA certificate caPEM: an HMAC-SHA256 under
// the token, hex-encoded. A joining node checks it before it trusts the CA, so that only a node
// that knows the token can make it trust a CA; the token itself is never sent before that.
func Proof(token string, caPEM []byte) string {
	mac := hmac.New(sha256.New, []byte(token))
	mac.Write([]byte("clusterkit ca proof\x00"))
	mac.Write(caPEM)
	return hex.EncodeToString(mac.Sum(nil))
}

// CheckProof reports whether proof is Proof(token, caPEM), in constant time.
func CheckProof(token string, caPEM []byte, proof string) bool {
	return hmac.Equal([]byte(Proof(token, caPEM)), []byte(proof))
}

// TokenMatches compares a presented token with the cluster's in constant time.
func TokenMatches(presented, token string) bool {
	return subtle.ConstantTimeCompare([]byte(presented), []byte(token)) == 1
}

// Seal encrypts the CA key under a key derived from token (HKDF-SHA256, AES-256-GCM), for
// storage in etcd, where every node that knows the token can read it and sign joiners' requests.
func (ca *CA) Seal(token string) ([]byte, error) {
	plain := ca.KeyPEM()
	if plain == nil {
		return nil, errors.New("pki: this node does not hold the CA key")
	}
	aead, err := tokenAEAD(token, ca.CertPEM)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, aead.NonceSize())
	rand.Read(nonce)
	return aead.Seal(nonce, nonce, plain, ca.CertPEM), nil
}

// Unseal decrypts a CA key sealed by Seal and adds it to ca. A token other than the one it was
// sealed with fails.
func (ca *CA) Unseal(token string, sealed []byte) error {
	aead, err := tokenAEAD(token, ca.CertPEM)
	if err != nil {
		return err
	}
	if len(sealed) < aead.NonceSize() {
		return errors.New("pki: sealed CA key is truncated")
	}
	plain, err := aead.Open(nil, sealed[:aead.NonceSize()], sealed[aead.NonceSize():], ca.CertPEM)
	if err != nil {
		return errors.New("pki: the CA key does not open with this join token: the cluster was created with another token")
	}
	withKey, err := ParseCA(ca.CertPEM, plain)
	if err != nil {
		return err
	}
	ca.key = withKey.key
	return nil
}

func tokenAEAD(token string, caPEM []byte) (cipher.AEAD, error) {
	key, err := hkdf.Key(sha256.New, []byte(token), caPEM, "clusterkit ca key seal", 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// ServerConfig is a TLS configuration that presents certPEM/keyPEM and, when clientAuth is set,
// requires client certificates signed by the CA.
func (ca *CA) ServerConfig(certPEM, keyPEM []byte, clientAuth bool) (*tls.Config, error) {
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12, ClientCAs: ca.Pool()}
	if clientAuth {
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// ClientConfig is a TLS configuration that trusts only the CA and presents certPEM/keyPEM when
// they are given.
func (ca *CA) ClientConfig(certPEM, keyPEM []byte) (*tls.Config, error) {
	cfg := &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12}
	if len(certPEM) > 0 {
		pair, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

func parseCert(certPEM []byte) (*x509.Certificate, error) {
	block, rest := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("not a PEM certificate")
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return nil, errors.New("more than one PEM block")
	}
	return x509.ParseCertificate(block.Bytes)
}

func parseKey(keyPEM []byte) (*ecdsa.PrivateKey, error) {
	block, _ := pem.Decode(keyPEM)
	if block == nil || block.Type != "EC PRIVATE KEY" {
		return nil, errors.New("not a PEM EC private key")
	}
	return x509.ParseECPrivateKey(block.Bytes)
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}

// Token bounds.
const (
	MinTokenLen = 16
	MaxTokenLen = 256
)

// CheckToken says why token cannot be a join token: 16 to 256 characters, each a letter, a digit
// or one of . _ ~ + / = - (so that it fits an HTTP header and a shell variable unquoted).
func CheckToken(token string) error {
	if len(token) < MinTokenLen || len(token) > MaxTokenLen {
		return fmt.Errorf("join token has %d characters: want %d to %d (clusterkit-node -new-token prints one)", len(token), MinTokenLen, MaxTokenLen)
	}
	for i := 0; i < len(token); i++ {
		c := token[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || bytes.IndexByte([]byte("._~+/=-"), c) >= 0
		if !ok {
			return fmt.Errorf("join token has %q at byte %d: use letters, digits and . _ ~ + / = -", c, i)
		}
	}
	return nil
}

// NewToken returns a random join token: 32 hex digits (128 bits).
func NewToken() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
