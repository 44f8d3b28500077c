package clusterkit

import (
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/clusterkit-go/clusterkit/internal/nextmap"
	"github.com/clusterkit-go/clusterkit/internal/pki"
	"github.com/clusterkit-go/clusterkit/pkg/client"
)

// The HTTP API over TLS with certificates the caller gives, mutual TLS required: a node joins
// through JoinAddr over https presenting its certificate, the Go client follows the map with a
// certificate, and a client without one is refused.
func TestHTTPAPIOverMutualTLS(t *testing.T) {
	ca, err := pki.NewCA("test")
	if err != nil {
		t.Fatal(err)
	}
	configs := func(id string) (server, client *tls.Config) {
		cert, key, err := ca.Issue(id, []string{"127.0.0.1"})
		if err != nil {
			t.Fatal(err)
		}
		server, err = ca.ServerConfig(cert, key, true)
		if err != nil {
			t.Fatal(err)
		}
		client, err = ca.ClientConfig(cert, key)
		if err != nil {
			t.Fatal(err)
		}
		return server, client
	}
	s1, c1 := configs("node-1")
	ck1, err := NewClusterKit(Options{NodeID: "node-1", HTTPAddr: "127.0.0.1:0", DataDir: t.TempDir(), LeaseTTL: 2 * time.Second,
		EmbeddedMembers: 1, unsafeNoFsync: true, HTTPTLS: s1, HTTPClientTLS: c1})
	if err != nil {
		t.Fatal(err)
	}
	if err := ck1.Start(); err != nil {
		t.Fatal(err)
	}
	defer ck1.Stop()
	s2, c2 := configs("node-2")
	ck2, err := NewClusterKit(Options{NodeID: "node-2", HTTPAddr: "127.0.0.1:0", JoinAddr: ck1.AdvertiseAddr(), DataDir: t.TempDir(),
		LeaseTTL: 2 * time.Second, HTTPTLS: s2, HTTPClientTLS: c2})
	if err != nil {
		t.Fatal(err)
	}
	if err := ck2.Start(); err != nil {
		t.Fatal(err)
	}
	defer ck2.Stop()

	_, clientTLS := configs("reader")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := client.New(ctx, client.Config{Seeds: []string{ck2.AdvertiseAddr()}, TLS: clientTLS})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitFor(t, 10*time.Second, "the client over mutual TLS lists both nodes, handoffs done", func() error {
		if s := ck1.maps.snapshot(); s == nil || nextmap.Pending(s.raw) > 0 || len(c.Nodes()) != 2 {
			return errors.New("not yet")
		}
		return nil
	})

	get := func(cfg *tls.Config, url string) (int, error) {
		httpc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
		defer httpc.CloseIdleConnections()
		resp, err := httpc.Get(url)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	if code, err := get(clientTLS, "https://"+ck1.AdvertiseAddr()+"/health"); err != nil || code != http.StatusOK {
		t.Fatalf("GET /health with a client certificate: %d %v", code, err)
	}
	if _, err := get(&tls.Config{RootCAs: ca.Pool()}, "https://"+ck1.AdvertiseAddr()+"/health"); err == nil {
		t.Fatal("a client without a certificate was served")
	}
	if code, err := get(nil, "http://"+ck1.AdvertiseAddr()+"/health"); err == nil && code == http.StatusOK {
		t.Fatal("the API answered plain HTTP")
	}
}
