package clusterkit

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/clusterkit-go/clusterkit/internal/atomicfile"
	"github.com/clusterkit-go/clusterkit/internal/joininfo"
	"github.com/clusterkit-go/clusterkit/internal/keys"
	"github.com/clusterkit-go/clusterkit/internal/pki"
	"github.com/clusterkit-go/clusterkit/pkg/embed"
	"github.com/clusterkit-go/clusterkit/pkg/wire"
)

// Secure mode (Options.JoinToken set). The bootstrap node creates the cluster's CA in its
// DataDir and a certificate for itself; its embedded etcd serves clients and peers over TLS only
// and admits only those that present a certificate of the CA; the HTTP API is served over TLS
// with the node's certificate. The CA key is stored in etcd sealed under the token, so that any
// node can sign a joiner's request, and never leaves a node otherwise.
//
// A joining node knows only JoinAddr and the token:
//
//  1. GET /cluster/ca over TLS it does not verify yet: the CA certificate and a proof, an HMAC
//     of it under the token. It trusts (pins) the CA only if the proof checks: only a node that
//     knows the token can make it trust a CA. The token is not sent in this step.
//  2. POST /cluster/join over TLS verified against the pinned CA, with the token as a bearer
//     token and a certificate signing request for its node ID: the answer is the join info
//     and the certificate. Its key never leaves it.
//
// From then on it uses its certificate towards etcd and serves its API with it. A node that
// restarts with its DataDir uses the files it has. The files are in DataDir/pki: ca.crt,
// node.crt, node.key, and ca.key on the node that created the cluster.

const (
	pkiDir = "pki"
	// maxJoinRequestBytes bounds the body of POST /cluster/join.
	maxJoinRequestBytes = 64 << 10
)

// secure is the node's secure-mode state; nil outside secure mode.
type secure struct {
	token string
	dir   string
	log   *zap.Logger

	ca       *pki.CA
	certPEM  []byte
	keyPEM   []byte
	tlsCert  atomic.Pointer[tls.Certificate]
	signerMu sync.Mutex
	signer   *pki.CA // the CA with its key, once read
}

type storedCA struct {
	Cert      []byte `json:"cert"`
	SealedKey []byte `json:"sealed_key"`
}

func newSecure(o *Options, log *zap.Logger) *secure {
	if o.JoinToken == "" {
		return nil
	}
	return &secure{token: o.JoinToken, dir: filepath.Join(o.DataDir, pkiDir), log: log}
}

func (s *secure) path(name string) string { return filepath.Join(s.dir, name) }

// load reads the files of an earlier life; ok is false when there are none.
func (s *secure) load() (bool, error) {
	caPEM, err := os.ReadFile(s.path("ca.crt"))
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("clusterkit: secure mode: %w", err)
	}
	keyPEM, _ := os.ReadFile(s.path("ca.key"))
	ca, err := pki.ParseCA(caPEM, keyPEM)
	if err != nil {
		return false, fmt.Errorf("clusterkit: secure mode: %s: %w", s.dir, err)
	}
	cert, err := os.ReadFile(s.path("node.crt"))
	if err != nil {
		return false, fmt.Errorf("clusterkit: secure mode: %s has ca.crt but no node certificate: %w", s.dir, err)
	}
	key, err := os.ReadFile(s.path("node.key"))
	if err != nil {
		return false, fmt.Errorf("clusterkit: secure mode: %w", err)
	}
	if _, err := ca.Verify(cert); err != nil {
		return false, fmt.Errorf("clusterkit: secure mode: %s/node.crt: %w", s.dir, err)
	}
	return true, s.use(ca, cert, key)
}

// use adopts the CA and the node's certificate.
func (s *secure) use(ca *pki.CA, certPEM, keyPEM []byte) error {
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return fmt.Errorf("clusterkit: secure mode: node certificate: %w", err)
	}
	s.ca, s.certPEM, s.keyPEM = ca, certPEM, keyPEM
	if ca.CanSign() {
		s.signer = ca
	}
	s.tlsCert.Store(&pair)
	return nil
}

// save writes the files, the keys readable by the owner only.
func (s *secure) save() error {
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return fmt.Errorf("clusterkit: secure mode: %w", err)
	}
	files := map[string][]byte{"ca.crt": s.ca.CertPEM, "node.crt": s.certPEM, "node.key": s.keyPEM}
	if k := s.ca.KeyPEM(); k != nil {
		files["ca.key"] = k
	}
	for name, b := range files {
		if err := atomicfile.Write(s.path(name), b, 0o600); err != nil {
			return fmt.Errorf("clusterkit: secure mode: %w", err)
		}
	}
	return nil
}

// hosts are the names the node's certificate is for: its advertised host and loopback.
func certHosts(advertise string) []string {
	host, _, _ := net.SplitHostPort(advertise)
	hosts := []string{"127.0.0.1", "::1", "localhost"}
	if host != "" && host != "127.0.0.1" && host != "localhost" {
		hosts = append(hosts, host)
	}
	return hosts
}

// bootstrap creates the CA and the node's certificate for a new cluster (or loads them).
func (s *secure) bootstrap(clusterName, nodeID, advertise string) error {
	if ok, err := s.load(); ok || err != nil {
		return err
	}
	ca, err := pki.NewCA(clusterName)
	if err != nil {
		return fmt.Errorf("clusterkit: secure mode: create the CA: %w", err)
	}
	cert, key, err := ca.Issue(nodeID, certHosts(advertise))
	if err != nil {
		return fmt.Errorf("clusterkit: secure mode: %w", err)
	}
	if err := s.use(ca, cert, key); err != nil {
		return err
	}
	s.log.Info("secure mode: created the cluster's CA", zap.String("ca_hash", ca.Hash()), zap.String("dir", s.dir))
	return s.save()
}

// join gets the CA and a certificate from the node at joinAddr (or loads the files of an
// earlier life), and returns the join info when it asked for it.
func (s *secure) join(ctx context.Context, joinAddr, nodeID, advertise string) (*wire.JoinInfo, error) {
	if ok, err := s.load(); ok || err != nil {
		return nil, err
	}
	ca, err := s.discoverCA(ctx, joinAddr)
	if err != nil {
		return nil, err
	}
	keyPEM, csrPEM, err := pki.NewKey(nodeID, certHosts(advertise))
	if err != nil {
		return nil, err
	}
	body, _ := json.Marshal(wire.JoinRequest{NodeID: nodeID, CSR: string(csrPEM)})
	httpc := &http.Client{Transport: &http.Transport{TLSClientConfig: pinned(ca.Pool())}, Timeout: 30 * time.Second}
	defer httpc.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+joinAddr+"/cluster/join", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+s.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := httpc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("clusterkit: JoinAddr %s: join request: %w", joinAddr, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxJoinInfoBytes))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("clusterkit: JoinAddr %s refused the join: %s: %s", joinAddr, resp.Status, strings.TrimSpace(string(b)))
	}
	var ans wire.JoinAnswer
	if err := json.Unmarshal(b, &ans); err != nil {
		return nil, fmt.Errorf("clusterkit: JoinAddr %s: join answer: %w", joinAddr, err)
	}
	if _, err := ca.Verify([]byte(ans.Certificate)); err != nil {
		return nil, fmt.Errorf("clusterkit: JoinAddr %s: %w", joinAddr, err)
	}
	if err := joininfo.Check(&ans.Info); err != nil {
		return nil, fmt.Errorf("clusterkit: JoinAddr %s: %w", joinAddr, err)
	}
	if err := s.use(ca, []byte(ans.Certificate), keyPEM); err != nil {
		return nil, err
	}
	s.log.Info("secure mode: joined with the join token; the cluster's CA is pinned", zap.String("ca_hash", ca.Hash()))
	return &ans.Info, s.save()
}

// discoverCA asks the node at joinAddr for the cluster's CA and checks that node's proof that it
// knows the token. It retries while the node is starting, until ctx ends.
func (s *secure) discoverCA(ctx context.Context, joinAddr string) (*pki.CA, error) {
	// Not verified: the CA is what is being learned. Nothing secret is sent.
	httpc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, Timeout: 10 * time.Second}
	defer httpc.CloseIdleConnections()
	var ans wire.CAInfo
	err := retryJoinAddr(ctx, joinAddr, "; a node in secure mode serves https", func() error {
		body, err := getBody(ctx, httpc, "https://"+joinAddr+"/cluster/ca", "")
		if err == nil {
			err = json.Unmarshal(body, &ans)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if !pki.CheckProof(s.token, []byte(ans.CA), ans.Proof) {
		return nil, fmt.Errorf("clusterkit: JoinAddr %s does not prove that it knows the join token: JoinToken is not the cluster's (or that address is not a node of the cluster); refusing to trust its CA", joinAddr)
	}
	ca, err := pki.ParseCA([]byte(ans.CA), nil)
	if err != nil {
		return nil, fmt.Errorf("clusterkit: JoinAddr %s: %w", joinAddr, err)
	}
	return ca, nil
}

// pinned is a client TLS configuration that trusts the certificates the pool's CA signed,
// whatever name they carry: nodes reach each other by addresses their certificates may not list
// (a load balancer's, a Service's), and the CA is the cluster's own.
func pinned(pool *x509.CertPool) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: true, // the chain is verified below, against the pinned CA only
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("clusterkit: no server certificate")
			}
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter})
			if err != nil {
				return fmt.Errorf("clusterkit: server certificate not signed by the cluster's CA: %w", err)
			}
			return nil
		},
	}
}

// memberTLSOrNil is the embedded member's TLS files in secure mode, nil otherwise.
func (s *secure) memberTLSOrNil() *embed.TLSFiles {
	if s == nil {
		return nil
	}
	c, _ := s.ca.ClientConfig(s.certPEM, s.keyPEM)
	return &embed.TLSFiles{CertFile: s.path("node.crt"), KeyFile: s.path("node.key"), TrustedCAFile: s.path("ca.crt"), ClientTLS: c}
}

// etcdTLS is the etcd client's TLS configuration: the node's certificate, the CA as the only
// root.
func (s *secure) etcdTLS() (*tls.Config, error) { return s.ca.ClientConfig(s.certPEM, s.keyPEM) }

// serverTLS serves the HTTP API with the node's certificate once it has one; a handshake before
// that fails.
func (s *secure) serverTLS() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		if c := s.tlsCert.Load(); c != nil {
			return c, nil
		}
		return nil, errors.New("clusterkit: the node has no certificate yet")
	}}
}

// publishCA stores the CA, with its key sealed under the token, when the cluster has none yet,
// and checks a stored one against the node's.
func (s *secure) publishCA(ctx context.Context, client *clientv3.Client, key string) error {
	var stored storedCA
	if s.signer != nil {
		sealed, err := s.signer.Seal(s.token)
		if err != nil {
			return err
		}
		b, _ := json.Marshal(storedCA{Cert: s.ca.CertPEM, SealedKey: sealed})
		resp, err := client.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
			Then(clientv3.OpPut(key, string(b))).Else(clientv3.OpGet(key)).Commit()
		if err != nil {
			return fmt.Errorf("clusterkit: secure mode: store the CA: %w", err)
		}
		if resp.Succeeded {
			return nil
		}
		kvs := resp.Responses[0].GetResponseRange().Kvs
		if len(kvs) == 0 || json.Unmarshal(kvs[0].Value, &stored) != nil {
			return fmt.Errorf("clusterkit: secure mode: the CA stored at %s is unreadable", key)
		}
	} else {
		resp, err := client.Get(ctx, key)
		if err != nil {
			return fmt.Errorf("clusterkit: secure mode: read the CA: %w", err)
		}
		if len(resp.Kvs) == 0 || json.Unmarshal(resp.Kvs[0].Value, &stored) != nil {
			return fmt.Errorf("clusterkit: secure mode: no readable CA at %s", key)
		}
	}
	if !bytes.Equal(stored.Cert, s.ca.CertPEM) {
		return fmt.Errorf("clusterkit: secure mode: the CA at %s is not the one in %s", key, s.dir)
	}
	// The token must open the stored key: a node started with another token refuses to start.
	// The key opened is what this node signs joiners' requests with.
	signer, _ := pki.ParseCA(stored.Cert, nil)
	if err := signer.Unseal(s.token, stored.SealedKey); err != nil {
		return fmt.Errorf("clusterkit: secure mode: %w", err)
	}
	s.signerMu.Lock()
	s.signer = signer
	s.signerMu.Unlock()
	return nil
}

// sign signs a joiner's request with the CA key publishCA opened at start.
func (s *secure) sign(nodeID string, csr []byte) ([]byte, error) {
	s.signerMu.Lock()
	signer := s.signer
	s.signerMu.Unlock()
	if signer == nil {
		return nil, errors.New("the node has not opened the CA key yet")
	}
	return signer.Sign(nodeID, csr)
}

// authorized reports whether r carries the join token.
func (s *secure) authorized(r *http.Request) bool {
	presented, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && pki.TokenMatches(presented, s.token)
}

// warnIfOpen warns loudly when a node on the embedded etcd advertises a routable address without
// a join token: its etcd member's ports and its join API are then open to anyone who reaches
// them.
func (ck *ClusterKit) warnIfOpen() {
	if ck.env.secure != nil {
		return
	}
	if m := ck.env.opts.mode(); m != etcdEmbedded && m != etcdJoin {
		return
	}
	host, _, _ := net.SplitHostPort(ck.env.addr)
	if ip := net.ParseIP(host); host == "localhost" || ip != nil && ip.IsLoopback() {
		return
	}
	ck.env.log.Warn("INSECURE: no JoinToken (JOIN_TOKEN) while advertising a routable address: anyone who reaches this node's embedded etcd ports can rewrite the cluster's state, and GET /cluster/join hands out the etcd endpoints; set a join token (clusterkit-node -new-token prints one)",
		zap.String("advertise_addr", ck.env.addr))
}

func (ck *ClusterKit) handleCA(w http.ResponseWriter, r *http.Request) {
	s := ck.env.secure
	if s == nil {
		writeError(w, http.StatusNotFound, "this cluster is not in secure mode (no join token)")
		return
	}
	// The snapshot first, as in handleJoin: it is stored after Start has set the CA, so once it
	// is there the CA is too.
	if ck.maps.snapshot() == nil || s.ca == nil {
		writeError(w, http.StatusServiceUnavailable, "node is not started")
		return
	}
	writeJSON(w, http.StatusOK, wire.CAInfo{CA: string(s.ca.CertPEM), Proof: pki.Proof(s.token, s.ca.CertPEM), Hash: s.ca.Hash()})
}

// handleSecureJoin answers GET and POST /cluster/join in secure mode: 401 without the token;
// with it, the join info, and for a POST with a certificate signing request, the certificate.
func (ck *ClusterKit) handleSecureJoin(w http.ResponseWriter, r *http.Request, info wire.JoinInfo) {
	s := ck.env.secure
	if !s.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="clusterkit"`)
		writeError(w, http.StatusUnauthorized, "this cluster is in secure mode: /cluster/join needs the join token (Authorization: Bearer <token>)")
		ck.env.log.Warn("join refused: no or wrong join token", zap.String("remote", r.RemoteAddr))
		return
	}
	if r.Method != http.MethodPost {
		writeJSON(w, http.StatusOK, info)
		return
	}
	var req wire.JoinRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxJoinRequestBytes)).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "join request: "+err.Error())
		return
	}
	if err := keys.ValidNodeID(req.NodeID); err != nil {
		writeError(w, http.StatusBadRequest, "join request: "+err.Error())
		return
	}
	cert, err := s.sign(req.NodeID, []byte(req.CSR))
	if err != nil {
		writeError(w, http.StatusBadRequest, "join request: "+err.Error())
		return
	}
	ck.env.log.Info("secure mode: signed a joining node's certificate", zap.String("joiner", req.NodeID), zap.String("remote", r.RemoteAddr))
	writeJSON(w, http.StatusOK, wire.JoinAnswer{Info: info, Certificate: string(cert), CA: string(s.ca.CertPEM)})
}
