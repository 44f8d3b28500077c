package clusterkit

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// apiServer owns the listener and the HTTP server of the node's API (the handlers are in
// http.go and mapdelta.go), and what the handlers share between requests. listen binds before
// the node registers, so that the advertised address is known; serve runs on a goroutine of the
// node's WaitGroup; close shuts the server down by a deadline.
type apiServer struct {
	log      *zap.Logger
	listener net.Listener
	server   *http.Server

	// polls counts the long polls waiting (waitNewMap), to bound them.
	polls atomic.Int64
	// answers are the last GET /cluster/map bodies.
	answers mapAnswers
}

// listen binds addr; with tlsConfig, the API is served over TLS only.
func (a *apiServer) listen(addr string, h http.Handler, tlsConfig *tls.Config) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("clusterkit: listen on HTTPAddr: %w", err)
	}
	if tlsConfig != nil {
		l = tls.NewListener(l, tlsConfig)
	}
	a.listener = l
	a.server = newHTTPServer(h)
	return nil
}

// addr is the address the listener is bound to.
func (a *apiServer) addr() net.Addr { return a.listener.Addr() }

// serve serves the API until close.
func (a *apiServer) serve() {
	if err := a.server.Serve(a.listener); err != nil && !errors.Is(err, http.ErrServerClosed) {
		a.log.Error("http server stopped", zap.Error(err))
	}
}

// close lets running requests finish until deadline, then closes every connection.
func (a *apiServer) close(deadline time.Time) {
	if a.server == nil {
		return
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	a.server.Shutdown(ctx)
	cancel()
	a.server.Close()
}
