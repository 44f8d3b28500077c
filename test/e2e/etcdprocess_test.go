package e2e

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/clusterkit-go/clusterkit/internal/etcdtest"
	"github.com/clusterkit-go/clusterkit/internal/proctest"
)

// builtEtcd is the etcd server built from this module's go.mod, once per test binary, when
// CLUSTERKIT_ETCD_BIN does not name one.
var builtEtcd builtTool

// builtTool is a program built once per test binary into a temporary directory, which TestMain
// removes.
type builtTool struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// get builds the package pkg of the module in moduleDir as name, the first time, and returns
// the binary's path.
func (b *builtTool) get(t *testing.T, moduleDir, pkg, name string) string {
	t.Helper()
	b.once.Do(func() {
		dir, err := os.MkdirTemp("", "clusterkit-e2e-"+name+"-")
		if err != nil {
			b.err = err
			return
		}
		b.dir = dir
		path := filepath.Join(dir, name)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", "build", "-o", path, pkg)
		cmd.Dir = moduleDir
		if out, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go build %s (in %s): %v\n%s", pkg, moduleDir, err, out)
			return
		}
		b.path = path
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// etcdBinary returns the etcd server to run: $CLUSTERKIT_ETCD_BIN, or else ./etcdserver built
// with the go command that runs the tests.
func etcdBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("CLUSTERKIT_ETCD_BIN"); p != "" {
		return p
	}
	return builtEtcd.get(t, ".", "./etcdserver", "etcd")
}

// etcdVersion returns the major and minor version that `etcd --version` reports.
func etcdVersion(t *testing.T, bin string) (major, minor int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "--version").Output()
	if err != nil {
		t.Fatalf("%s --version: %v", bin, err)
	}
	if _, err := fmt.Sscanf(string(out), "etcd Version: %d.%d", &major, &minor); err != nil {
		t.Fatalf("%s --version printed %q: %v", bin, out, err)
	}
	return major, minor
}

// etcdProcess is an etcd server running as a child process, serving clients over TLS on
// 127.0.0.1. It is killed at the end of the test.
type etcdProcess struct {
	URL string
	// CA is the pool that verifies the server's certificate.
	CA *x509.CertPool
	// Certs are the files of the CA and of the certificate etcd serves with (also valid for
	// client authentication), for processes that connect over TLS; zero without TLS.
	Certs   etcdtest.Certs
	Version string
	proc    *proctest.Process
}

// startEtcdProcess starts a single-member etcd with TLS on the client port and waits until it
// answers.
func startEtcdProcess(t *testing.T) *etcdProcess { return launchEtcd(t, true) }

// startPlainEtcdProcess starts a single-member etcd serving clients over plain HTTP.
func startPlainEtcdProcess(t *testing.T) *etcdProcess { return launchEtcd(t, false) }

// launchEtcd starts a single-member etcd on 127.0.0.1, with or without TLS on the client port,
// and waits until it answers. A free port taken by someone else between choosing it and etcd
// binding it is retried with new ports.
func launchEtcd(t *testing.T, withTLS bool) *etcdProcess {
	t.Helper()
	bin := etcdBinary(t)
	major, minor := etcdVersion(t, bin)
	dir := t.TempDir()
	scheme := "http"
	var certs etcdtest.Certs
	if withTLS {
		scheme = "https"
		certs = etcdtest.WriteCerts(t, dir)
	}
	var lastErr error
	for attempt := 1; attempt <= 3; attempt++ {
		clientPort, peerPort := proctest.FreePort(t), proctest.FreePort(t)
		e := &etcdProcess{
			URL:     fmt.Sprintf("%s://127.0.0.1:%d", scheme, clientPort),
			CA:      certs.Pool,
			Certs:   certs,
			Version: fmt.Sprintf("%d.%d", major, minor),
		}
		peerURL := fmt.Sprintf("http://127.0.0.1:%d", peerPort)
		args := []string{
			"--name", "external",
			"--data-dir", filepath.Join(dir, fmt.Sprintf("data-%d", attempt)),
			"--listen-client-urls", e.URL,
			"--advertise-client-urls", e.URL,
			"--listen-peer-urls", peerURL,
			"--initial-advertise-peer-urls", peerURL,
			"--initial-cluster", "external=" + peerURL,
			"--initial-cluster-state", "new",
			"--logger", "zap",
			// The lowest bcrypt cost: the test authenticates often and needs no strong hashes.
			"--bcrypt-cost", "4",
		}
		if withTLS {
			// No --trusted-ca-file: etcd 3.5 and later then demand a client certificate even
			// with --client-cert-auth=false, and the nodes authenticate with a password.
			args = append(args, "--cert-file", certs.CertFile, "--key-file", certs.KeyFile)
		}
		// etcd 3.4 (Debian's) has no --unsafe-no-fsync; a test etcd never survives a machine crash.
		if major > 3 || major == 3 && minor >= 5 {
			args = append(args, "--unsafe-no-fsync")
		}
		err := e.run(t, fmt.Sprintf("etcd-%d", attempt), bin, args)
		if err == nil {
			t.Logf("etcd %s (%s) serves %s", e.Version, bin, e.URL)
			return e
		}
		lastErr = err
		if !strings.Contains(e.proc.Log(), "address already in use") {
			break
		}
	}
	t.Fatal(lastErr)
	return nil
}

// run starts etcd as the process name and waits until it is healthy. The process is killed at
// the end of the test.
func (e *etcdProcess) run(t *testing.T, name, bin string, args []string) error {
	t.Helper()
	e.proc = proctest.Start(t, name, bin, args...)
	httpc := &http.Client{
		Timeout:   time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: e.CA}, DisableKeepAlives: true},
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := httpc.Get(e.URL + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("GET /health: %s", resp.Status)
		}
		if e.proc.State() == proctest.Exited {
			return fmt.Errorf("etcd exited with status %d before it was ready; log:\n%s", e.proc.ExitStatus(), proctest.Tail(e.proc.Log(), 30))
		}
		time.Sleep(100 * time.Millisecond)
		if time.Now().After(deadline) {
			return fmt.Errorf("etcd at %s not healthy after 30s: %v", e.URL, err)
		}
	}
}

// client returns a client of the etcd, authenticated when user is set, closed at the end of
// the test.
func (e *etcdProcess) client(t *testing.T, user, password string) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{e.URL},
		DialTimeout: 5 * time.Second,
		TLS:         &tls.Config{RootCAs: e.CA},
		Username:    user,
		Password:    password,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		t.Fatalf("etcd client: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// enableAuth creates the root user and a user "ck" that may read and write only the keys
// under prefix, then turns authentication on. It returns the two passwords.
func (e *etcdProcess) enableAuth(t *testing.T, prefix string) (rootPassword, ckPassword string) {
	t.Helper()
	rootPassword, ckPassword = randomHex(t), randomHex(t)
	c := e.client(t, "", "")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	steps := []struct {
		what string
		do   func() error
	}{
		{"add role root", func() error { _, err := c.RoleAdd(ctx, "root"); return err }},
		{"add user root", func() error { _, err := c.UserAdd(ctx, "root", rootPassword); return err }},
		{"grant root to root", func() error { _, err := c.UserGrantRole(ctx, "root", "root"); return err }},
		{"add role clusterkit", func() error { _, err := c.RoleAdd(ctx, "clusterkit"); return err }},
		{"grant " + prefix + " to clusterkit", func() error {
			_, err := c.RoleGrantPermission(ctx, "clusterkit", prefix, clientv3.GetPrefixRangeEnd(prefix),
				clientv3.PermissionType(clientv3.PermReadWrite))
			return err
		}},
		{"add user ck", func() error { _, err := c.UserAdd(ctx, "ck", ckPassword); return err }},
		{"grant clusterkit to ck", func() error { _, err := c.UserGrantRole(ctx, "ck", "clusterkit"); return err }},
		{"enable auth", func() error { _, err := c.AuthEnable(ctx); return err }},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("etcd auth setup: %s: %v", s.what, err)
		}
	}
	return rootPassword, ckPassword
}

func randomHex(t *testing.T) string {
	t.Helper()
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
