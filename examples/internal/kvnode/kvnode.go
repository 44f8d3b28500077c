// Package kvnode is the process skeleton the examples' servers share: flags, a ClusterKit node
// whose data API address is published in its metadata, the store, the HTTP server, the "ready"
// line and the graceful stop on SIGTERM.
//
// A server is started with its own ID and addresses; the first one (no -join) starts an
// embedded etcd and creates the cluster, the others join through it (the first three run the
// embedded etcd's members, ClusterKit's default, so that the cluster survives the loss of one):
//
//	server -id node-1 -addr 127.0.0.1:8080 -kv-addr 127.0.0.1:9080
//	server -id node-2 -addr 127.0.0.1:8081 -kv-addr 127.0.0.1:9081 -join 127.0.0.1:8080
//
// Once the node has joined, the process prints one line on stdout, "ready <id> <addr>", where
// addr is the ClusterKit HTTP address, and logs JSON to stderr. SIGTERM or SIGINT sends what the
// replication queue holds (for up to 5s), leaves the cluster and exits with status 0.
//
// With the cluster's join token ($JOIN_TOKEN, or -token, which wins) every request to the data
// API, the example's own routes included, needs "Authorization: Bearer <token>", and the node
// sends it on its calls to the others; every node and client of a cluster uses the same. Without
// one the data API is open, and the node warns when it listens beyond the loopback interface.
// -max-value-bytes (default 1 MiB) bounds a value, and with it every request body.
package kvnode

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/clusterkit-go/clusterkit/examples/internal/store"
	"github.com/clusterkit-go/clusterkit/pkg/clusterkit"
)

// Config is a server's settings, from its flags.
type Config struct {
	ID, Addr, KVAddr, Join, DataDir string
	LeaseTTL                        time.Duration
	Partitions, Replication         int
	LogLevel                        string
	// Token is -token; Run falls back on $JOIN_TOKEN when it is empty.
	Token string
	// MaxValueBytes is -max-value-bytes: store.Options.MaxValueBytes.
	MaxValueBytes int
}

// RegisterFlags defines the servers' common flags on fs and returns the Config they fill.
func RegisterFlags(fs *flag.FlagSet) *Config {
	c := &Config{}
	fs.StringVar(&c.ID, "id", "", "node ID (required)")
	fs.StringVar(&c.Addr, "addr", "", "host:port of the node's ClusterKit HTTP API (required)")
	fs.StringVar(&c.KVAddr, "kv-addr", "", "host:port of the node's data API (required)")
	fs.StringVar(&c.Join, "join", "", "ClusterKit address of a node to join (default: start a new cluster with an embedded etcd)")
	fs.StringVar(&c.DataDir, "data-dir", "", "directory for the embedded etcd and the node's identity (default <temp dir>/clusterkit/<id>)")
	fs.DurationVar(&c.LeaseTTL, "lease-ttl", 0, "lease time to live: a crashed node is noticed after about this long (default 10s, at least 2s)")
	fs.IntVar(&c.Partitions, "partitions", 0, "partition count, fixed when the cluster is created (default 64)")
	fs.IntVar(&c.Replication, "replication", 0, "copies of each partition, fixed when the cluster is created (default 3)")
	fs.StringVar(&c.LogLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&c.Token, "token", "", "the cluster's join token: ClusterKit's secure mode (etcd and its HTTP API over TLS), and required from clients and nodes of the data API as \"Authorization: Bearer <token>\" (default $"+store.TokenEnv+", which keeps it out of the process list; none: plain http and an open data API)")
	fs.IntVar(&c.MaxValueBytes, "max-value-bytes", store.DefaultMaxValueBytes, "largest value accepted, in bytes; request bodies are bounded to match (the same on every node)")
	return c
}

// Node is a started server.
type Node struct {
	CK    *clusterkit.ClusterKit
	Store *store.Store
	// Mux serves the data API; add the example's own routes to it before Start returns. It is
	// served behind store.RequireToken: the routes need no check of their own.
	Mux *http.ServeMux
	// HTTP is for the example's own calls to the other nodes' data APIs: it sends the token.
	HTTP *http.Client
	Log  *zap.Logger

	srv    *http.Server
	served chan error
}

// Run starts the node with the store in mode, lets routes add the example's own handlers to
// the data API, prints the ready line, serves until SIGTERM or SIGINT, and stops.
func Run(c *Config, mode store.Mode, routes func(*Node)) error {
	var missing []string
	for name, v := range map[string]string{"-id": c.ID, "-addr": c.Addr, "-kv-addr": c.KVAddr} {
		if v == "" {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing required flags: %v", missing)
	}
	level, err := zapcore.ParseLevel(c.LogLevel)
	if err != nil {
		return fmt.Errorf("-log-level: %w", err)
	}
	zc := zap.NewProductionConfig()
	zc.Level = zap.NewAtomicLevelAt(level)
	log, err := zc.Build()
	if err != nil {
		return err
	}
	defer log.Sync()

	token, err := store.ResolveToken(c.Token)
	if err != nil {
		return err
	}

	// The data API listens first: its address is published with the node.
	l, err := net.Listen("tcp", c.KVAddr)
	if err != nil {
		return fmt.Errorf("-kv-addr: %w", err)
	}
	if token == "" && !store.Loopback(l.Addr()) {
		log.Warn("INSECURE: no join token ("+store.TokenEnv+" or -token) while the data API listens beyond the loopback interface: anyone who reaches it can write, read, and redirect this node's replication; set the same token on every node and client",
			zap.String("kv_addr", l.Addr().String()))
	}
	ck, err := clusterkit.NewClusterKit(clusterkit.Options{
		NodeID: c.ID, HTTPAddr: c.Addr, JoinAddr: c.Join, DataDir: c.DataDir, LeaseTTL: c.LeaseTTL,
		PartitionCount: c.Partitions, ReplicationFactor: c.Replication, Logger: log,
		// With a token, ClusterKit's secure mode: etcd and its HTTP API over TLS, joins need it.
		JoinToken: token, Metadata: map[string]string{store.AddrKey: l.Addr().String()},
	})
	if err != nil {
		l.Close()
		return err
	}
	st, err := store.New(ck, store.Options{Replication: mode, Logger: log, Token: token, MaxValueBytes: c.MaxValueBytes})
	if err != nil {
		l.Close()
		return err
	}
	n := &Node{
		CK:     ck,
		Store:  st,
		Mux:    http.NewServeMux(),
		HTTP:   store.TokenClient(&http.Client{Timeout: store.DefaultHTTPTimeout}, token),
		Log:    log,
		served: make(chan error, 1),
	}
	n.Mux.Handle("/store/", n.Store.Handler())
	if routes != nil {
		routes(n)
	}
	// The data API serves before Start: copies into this node start during Start, and the
	// other nodes' replication reaches it as soon as it is listed. The token check covers the
	// example's routes too (the store's own Handler checks it as well).
	n.srv = &http.Server{Handler: store.RequireToken(token, n.Mux), ReadHeaderTimeout: 5 * time.Second}
	go func() { n.served <- n.srv.Serve(l) }()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := ck.StartContext(ctx); err != nil {
		n.stop()
		return err
	}
	fmt.Printf("ready %s %s\n", c.ID, ck.AdvertiseAddr())
	log.Info("serving", zap.String("kv_addr", l.Addr().String()), zap.String("replication", mode.String()),
		zap.Bool("token_required", token != ""), zap.Int("max_value_bytes", c.MaxValueBytes))
	<-ctx.Done()
	log.Info("stopping")
	n.stop()
	return nil
}

// stop sends the replication queue, then closes the store, leaves the cluster and stops
// serving.
func (n *Node) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := n.Store.Flush(ctx); err != nil {
		n.Log.Warn("replication queue not sent", zap.Error(err))
	}
	n.Store.Close()
	n.CK.Stop()
	n.srv.Shutdown(ctx)
	if err := <-n.served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		n.Log.Warn("data API stopped", zap.Error(err))
	}
}
