package pki

import (
	"crypto/tls"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

const token = "0123456789abcdef0123456789abcdef"

func TestSignAndVerify(t *testing.T) {
	ca, err := NewCA("default")
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, csrPEM, err := NewKey("node-2", []string{"127.0.0.1", "node-2.example"})
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err := ca.Sign("node-2", csrPEM)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Verify(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	if cert.Subject.CommonName != "node-2" || len(cert.IPAddresses) != 1 || cert.DNSNames[0] != "node-2.example" {
		t.Fatalf("certificate for %q, %v, %v", cert.Subject.CommonName, cert.IPAddresses, cert.DNSNames)
	}
	if _, err := ca.Sign("node-3", csrPEM); err == nil || !strings.Contains(err.Error(), `not node "node-3"`) {
		t.Fatalf("a request for node-2 signed for node-3: %v", err)
	}
	if _, err := ca.Sign("node-2", []byte("garbage")); err == nil {
		t.Fatal("garbage signed")
	}
	// A certificate of another CA does not verify.
	other, _ := NewCA("other")
	otherCert, _, _ := other.Issue("node-2", []string{"127.0.0.1"})
	if _, err := ca.Verify(otherCert); err == nil {
		t.Fatal("another CA's certificate verified")
	}

	// Mutual TLS between two certificates of the CA works; a client without one is refused.
	serverCfg, err := ca.ServerConfig(certPEM, keyPEM, true)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) }))
	srv.TLS = serverCfg
	srv.StartTLS()
	defer srv.Close()
	cCert, cKey, _ := ca.Issue("node-3", []string{"127.0.0.1"})
	clientCfg, err := ca.ClientConfig(cCert, cKey)
	if err != nil {
		t.Fatal(err)
	}
	get := func(cfg *tls.Config) error {
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
		defer c.CloseIdleConnections()
		resp, err := c.Get(srv.URL)
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	if err := get(clientCfg); err != nil {
		t.Fatalf("client with a certificate of the CA: %v", err)
	}
	bare, _ := ca.ClientConfig(nil, nil)
	if err := get(bare); err == nil {
		t.Fatal("a client without a certificate was served")
	}
	if _, _, err := net.SplitHostPort(srv.Listener.Addr().String()); err != nil {
		t.Fatal(err)
	}
}

func TestProofAndSeal(t *testing.T) {
	ca, _ := NewCA("default")
	p := Proof(token, ca.CertPEM)
	if !CheckProof(token, ca.CertPEM, p) {
		t.Fatal("proof does not check")
	}
	if CheckProof(token+"x", ca.CertPEM, p) || CheckProof(token, append([]byte(nil), ca.CertPEM[:len(ca.CertPEM)-2]...), p) {
		t.Fatal("proof checks under another token or another CA")
	}
	sealed, err := ca.Seal(token)
	if err != nil {
		t.Fatal(err)
	}
	public, err := ParseCA(ca.CertPEM, nil)
	if err != nil || public.CanSign() {
		t.Fatalf("parsed CA without its key: %v, can sign %v", err, public.CanSign())
	}
	if err := public.Unseal("another-token-of-enough-length", sealed); err == nil || public.CanSign() {
		t.Fatalf("unsealed with the wrong token: %v", err)
	}
	if err := public.Unseal(token, sealed); err != nil || !public.CanSign() {
		t.Fatalf("unseal: %v", err)
	}
	if _, _, err := public.Issue("node-4", nil); err != nil {
		t.Fatal(err)
	}
}

func TestCheckToken(t *testing.T) {
	for _, ok := range []string{token, NewToken(), "abcdefgh.ijklmnop"} {
		if err := CheckToken(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "short", strings.Repeat("a", 257), "0123456789abcdef 0123", "0123456789abcdef\n"} {
		if err := CheckToken(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
