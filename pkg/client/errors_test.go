package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// IsUnavailable accepts the connection failures real requests produce, and nothing after which
// the node may have carried the operation out.
func TestIsUnavailable(t *testing.T) {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := l.Addr().String()
	l.Close()
	hangUp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
	}))
	defer hangUp.Close()
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}))
	defer slow.Close()
	get := func(url string, timeout time.Duration) error {
		httpc := &http.Client{Timeout: timeout, Transport: &http.Transport{}}
		defer httpc.CloseIdleConnections()
		resp, err := httpc.Get(url)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		return err
	}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	var d net.Dialer
	_, dialCancelled := d.DialContext(cancelled, "tcp", closed)
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"refused", get("http://"+closed+"/", time.Second), true},
		{"closed without an answer", get(hangUp.URL, time.Second), true},
		{"wraps ErrUnavailable", fmt.Errorf("503: %w", ErrUnavailable), true},
		{"timeout after connecting", get(slow.URL, 100*time.Millisecond), false},
		{"dial cancelled by the caller", dialCancelled, false},
		{"context", context.DeadlineExceeded, false},
		{"plain", errors.New("conflict"), false},
		{"nil", nil, false},
	}
	for _, tt := range tests {
		if got := IsUnavailable(tt.err); got != tt.want {
			t.Errorf("%s: IsUnavailable(%v) = %v, want %v", tt.name, tt.err, got, tt.want)
		}
	}
}
