package client

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clusterkit-go/clusterkit/internal/state"
)

// A node that ignores the long poll (it answers the same map at once, every time) is not
// hammered: the client pauses after an answer that brings nothing new.
func TestPollOfANodeIgnoringTheWaitPauses(t *testing.T) {
	var requests atomic.Int64
	body := servedMap(1, state.HashConfig{Algorithm: "md5", Modulo: 8, Format: "partition-%d"}, 8)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		w.Header().Set("ETag", `"c1-1"`)
		w.Write(body)
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := New(ctx, Config{Seeds: []string{strings.TrimPrefix(srv.URL, "http://")}})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	c.Close()
	// The first read, one poll answered at once, then the pause (1s).
	if n := requests.Load(); n > 3 {
		t.Fatalf("%d requests in 500ms to a node that ignores the wait", n)
	}
}
