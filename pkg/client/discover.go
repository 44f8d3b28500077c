package client

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/clusterkit-go/clusterkit/internal/pki"
	"github.com/clusterkit-go/clusterkit/pkg/wire"
)

// maxCABytes bounds the answer of GET /cluster/ca.
const maxCABytes = 64 << 10

// DiscoverCA learns the CA of a cluster in secure mode from the node at seed (host:port) and
// returns a TLS configuration for Config.TLS that trusts only that CA. pin says which CA to
// accept: the CA's hash ("sha256:<hex>", logged by the bootstrap node and served as the hash of
// GET /cluster/ca), or the cluster's join token, in which case the node must prove that it
// knows the token (an HMAC of the CA under it) and the token itself is not sent. A node that
// cannot show the pinned CA is refused: a CA is never trusted on first use.
func DiscoverCA(ctx context.Context, seed, pin string) (*tls.Config, error) {
	if pin == "" {
		return nil, fmt.Errorf("%w: DiscoverCA needs the CA's hash or the join token", ErrInvalidConfig)
	}
	// Not verified yet: the CA is what is being learned, and nothing secret is sent.
	httpc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	defer httpc.CloseIdleConnections()
	url := "https://" + seed + "/cluster/ca"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: seed %q: %v", ErrInvalidConfig, seed, err)
	}
	resp, err := httpc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxCABytes))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	var info wire.CAInfo
	if err := json.Unmarshal(body, &info); err != nil {
		return nil, fmt.Errorf("GET %s: not a ClusterKit node in secure mode: %v", url, err)
	}
	ca, err := pki.ParseCA([]byte(info.CA), nil)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	if strings.HasPrefix(pin, "sha256:") {
		if got := ca.Hash(); got != strings.ToLower(pin) {
			return nil, fmt.Errorf("the node at %s shows a CA of hash %s, not the pinned %s: refusing to trust it", seed, got, pin)
		}
	} else if !pki.CheckProof(pin, ca.CertPEM, info.Proof) {
		return nil, fmt.Errorf("the node at %s does not prove that it knows the join token: refusing to trust its CA", seed)
	}
	return &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12}, nil
}
