package main

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
)

// -healthcheck probes GET /health on the configured port and exits 0 only on a 200 answer.
func TestHealthCheck(t *testing.T) {
	var status atomic.Int32
	status.Store(http.StatusOK)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/health" {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(int(status.Load()))
		fmt.Fprintf(w, `{"status":%q}`, http.StatusText(int(status.Load())))
	})}
	go srv.Serve(l)
	defer srv.Close()
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	closed := freeTCPPort(t)

	tests := []struct {
		name       string
		env        env
		args       []string
		status     int
		wantStatus int
		wantOut    string
	}{
		// NODE_ID is not needed: the probe reads only the address settings.
		{"healthy, HTTP_PORT", env{"HTTP_PORT": port}, []string{"-healthcheck"}, http.StatusOK, exitOK, `{"status":"OK"}`},
		{"healthy, HTTP_ADDR flag", env{"NODE_ID": "n"}, []string{"-healthcheck", "-http-addr", "127.0.0.1:" + port}, http.StatusOK, exitOK, `"OK"`},
		{"unhealthy", env{"HTTP_PORT": port}, []string{"-healthcheck"}, http.StatusServiceUnavailable, exitFailed, "503 Service Unavailable"},
		{"nothing listening", env{"HTTP_PORT": closed}, []string{"-healthcheck"}, http.StatusOK, exitFailed, "connection refused"},
		{"no address", env{}, []string{"-healthcheck"}, http.StatusOK, exitConfig, "HTTP_PORT or HTTP_ADDR: required"},
		{"port 0", env{"HTTP_PORT": "0"}, []string{"-healthcheck"}, http.StatusOK, exitConfig, "port is 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status.Store(int32(tt.status))
			var stdout, stderr bytes.Buffer
			if got := run(tt.args, tt.env.lookup, &stdout, &stderr); got != tt.wantStatus {
				t.Errorf("status %d, want %d; stderr: %s", got, tt.wantStatus, &stderr)
			}
			if out := stdout.String() + stderr.String(); !strings.Contains(out, tt.wantOut) {
				t.Errorf("output %q lacks %q", out, tt.wantOut)
			}
		})
	}
}

// freeTCPPort returns a port on 127.0.0.1 that nothing listens on a moment later.
func freeTCPPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}
