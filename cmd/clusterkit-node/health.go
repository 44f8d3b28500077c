package main

// The -healthcheck mode: a probe of GET /health of the node on this machine, for container
// runtimes whose images have no shell or curl.

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// errHealthCheck is how parseConfig says that -healthcheck was given.
var errHealthCheck = errors.New("health check requested")

// errNewToken is returned by parseConfig for -new-token.
var errNewToken = errors.New("new token requested")

// healthCheckTimeout bounds the -healthcheck request: a container runtime kills a probe that
// runs longer than its own timeout anyway, and a hung node must read as unhealthy.
const healthCheckTimeout = 3 * time.Second

// healthCheck is the -healthcheck mode: GET /health of the node configured by HTTP_PORT or
// HTTP_ADDR. It returns exitOK for a 200 answer, exitFailed for any other answer or none, and
// exitConfig when the address settings are missing or invalid.
func healthCheck(lookupEnv func(string) (string, bool), args []string, stdout, stderr io.Writer) int {
	fs, err := parseFlags(args)
	if err != nil {
		fmt.Fprintf(stderr, "clusterkit-node -healthcheck: %v\n", err)
		return exitConfig
	}
	p := &parser{lookupEnv: lookupEnv, flags: map[string]string{}, names: map[string]string{}}
	fs.Visit(func(f *flag.Flag) { p.flags[f.Name] = f.Value.String() })
	addr := ownAddr("", p.httpAddr())
	if err := errors.Join(p.errs...); err != nil {
		fmt.Fprintf(stderr, "clusterkit-node -healthcheck: invalid settings:\n  %s\n", strings.ReplaceAll(err.Error(), "\n", "\n  "))
		return exitConfig
	}
	if addr == "" {
		fmt.Fprintln(stderr, "clusterkit-node -healthcheck: the HTTP port is 0 (chosen at start), so there is no address to probe")
		return exitConfig
	}
	// In secure mode (JOIN_TOKEN set) the node serves https. The probe sends nothing secret and
	// talks to its own node, so it does not verify the certificate.
	scheme, tlsConfig := "http", (*tls.Config)(nil)
	if v, ok := lookupEnv(sJoinToken.env); ok && v != "" {
		scheme, tlsConfig = "https", &tls.Config{InsecureSkipVerify: true}
	}
	// With TLS_CERT_FILE the API is https too; with mutual TLS the probe presents the node's
	// own certificate.
	if _, _, ok := p.get(sTLSCertFile); ok {
		server, _ := p.apiTLS()
		scheme, tlsConfig = "https", &tls.Config{InsecureSkipVerify: true}
		if server != nil && server.ClientAuth == tls.RequireAndVerifyClientCert {
			tlsConfig.Certificates = server.Certificates
		}
		if err := errors.Join(p.errs...); err != nil {
			fmt.Fprintf(stderr, "clusterkit-node -healthcheck: invalid settings:\n  %s\n", strings.ReplaceAll(err.Error(), "\n", "\n  "))
			return exitConfig
		}
	}
	url := scheme + "://" + addr + "/health"
	ctx, cancel := context.WithTimeout(context.Background(), healthCheckTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		fmt.Fprintf(stderr, "clusterkit-node -healthcheck: %v\n", err)
		return exitConfig
	}
	httpc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true, TLSClientConfig: tlsConfig}}
	resp, err := httpc.Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "clusterkit-node -healthcheck: GET %s: %v\n", url, err)
		return exitFailed
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "clusterkit-node -healthcheck: GET %s: %s: %s\n", url, resp.Status, bytes.TrimSpace(body))
		return exitFailed
	}
	fmt.Fprintf(stdout, "%s\n", bytes.TrimSpace(body))
	return exitOK
}
