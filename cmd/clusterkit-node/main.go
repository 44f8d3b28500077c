// Command clusterkit-node runs one ClusterKit node, configured by environment variables as in
// the original README's Docker section; a flag overrides the variable of the same setting.
//
//	NODE_ID=node-1 HTTP_PORT=8080 DATA_DIR=/data clusterkit-node
//	NODE_ID=node-2 HTTP_PORT=8080 JOIN_ADDR=node-1:8080 DATA_DIR=/data clusterkit-node
//	clusterkit-node -node-id node-3 -http-addr 127.0.0.1:8082 -etcd-endpoints http://etcd:2379
//
// Settings (variable, flag, default):
//
//	NODE_ID             -node-id             required; unique node name: 1 to 128 letters, digits,
//	                                         '-', '_' and '.', starting with a letter or digit
//	HTTP_PORT           -http-port           HTTP API port, listening on all interfaces; or:
//	HTTP_ADDR           -http-addr           HTTP API host:port (one of the two is required)
//	ADVERTISE_ADDR      -advertise-addr      the HTTP address with 127.0.0.1 for an empty host;
//	                                         set it when peers run on other machines or containers
//	JOIN_ADDR           -join-addr           none; HTTP address of any node of the cluster; this
//	                                         node's own address makes it the bootstrap node
//	JOIN_TOKEN          (no flag)            none; secure mode (see below): 16 to 256 letters,
//	                                         digits and . _ ~ + / = -, the same on every node
//	DATA_DIR            -data-dir            <temp dir>/clusterkit/<NODE_ID>; in a container, a
//	                                         volume (the original README used /data)
//	CLUSTER_NAME        -cluster-name        "default", or the joined node's cluster; the same
//	                                         character set as NODE_ID
//	PARTITION_COUNT     -partition-count     64 (1 to 65536); fixed when the cluster is created
//	REPLICATION_FACTOR  -replication-factor  3 (1 to 16); fixed when the cluster is created
//	LEASE_TTL           -lease-ttl           10s; a Go duration in whole seconds, 2s to 10m
//	EMBEDDED_MEMBERS    -embedded-members    3 for a new cluster on embedded etcd (1, 3 or 5):
//	                                         how many nodes run an etcd member; the joined
//	                                         cluster's value for a joining node
//	ETCD_ENDPOINTS      -etcd-endpoints      none; comma-separated etcd client URLs
//	ETCD_USERNAME       -etcd-username       none
//	ETCD_PASSWORD       (no flag)            none; a flag would show in the process list
//	ETCD_CA_FILE        -etcd-ca-file        system roots; PEM CA that verifies etcd
//	ETCD_CERT_FILE      -etcd-cert-file      none; PEM client certificate, with ETCD_KEY_FILE
//	ETCD_KEY_FILE       -etcd-key-file       none; PEM client key, with ETCD_CERT_FILE
//	TLS_CERT_FILE       -tls-cert-file       none; PEM certificate: the HTTP API is served over
//	                                         https only, and JOIN_ADDR is asked over https
//	TLS_KEY_FILE        -tls-key-file        none; PEM key, with TLS_CERT_FILE
//	TLS_CLIENT_CA_FILE  -tls-client-ca-file  none; PEM CA: the API requires client certificates
//	                                         it signed (mutual TLS); the node presents its own
//	                                         certificate to JOIN_ADDR
//	TLS_CA_FILE         -tls-ca-file         system roots; PEM CA that verifies JOIN_ADDR's
//	                                         certificate
//	ZONE                -zone                none; failure domain, at most 128 bytes
//	HANDOFF_TIMEOUT     -handoff-timeout     2m (500ms to 24h)
//	MAX_HANDOFFS_PER_NODE -max-handoffs-per-node 0 (no bound); copies in flight into and out
//	                                         of each node
//	MAX_HANDOFFS        -max-handoffs        0 (no bound); copies in flight in the cluster
//	CRASH_GRACE_PERIOD  -crash-grace-period  0 (up to 24h)
//	LOG_LEVEL           -log-level           info (debug, info, warn, error)
//	DRAIN_ON_SIGTERM    -drain               false
//	DECOMMISSION_ON_SIGTERM -decommission    false; SIGTERM then means "not coming back": the
//	                                         node's etcd member is removed, then it drains
//
// Without ETCD_ENDPOINTS and JOIN_ADDR the node starts an embedded etcd and bootstraps a new
// cluster; the first EMBEDDED_MEMBERS nodes to join it with JOIN_ADDR also run etcd members, so
// that the cluster survives the loss of any one of them (of any two with 5). A node restarted
// with its DATA_DIR comes back as the member it was, even if the node at JOIN_ADDR is gone. Any
// ETCD_*_FILE setting turns TLS on for the etcd connection. An empty variable counts as unset.
//
// Bootstrap by self-join: when JOIN_ADDR names this node's own advertise address (ADVERTISE_ADDR,
// or else the HTTP address with 127.0.0.1 for an empty or unspecified host), and ETCD_ENDPOINTS
// is unset, the node ignores JOIN_ADDR and bootstraps: it starts the embedded etcd. Host names
// compare without case and without a trailing dot; all loopback hosts (localhost, 127.0.0.0/8,
// ::1) count as one. This lets every replica of a Kubernetes StatefulSet share one template,
// JOIN_ADDR naming pod 0: pod 0 bootstraps and the others join it.
//
// Secure mode: with JOIN_TOKEN the bootstrap node creates the cluster's CA in DATA_DIR/pki, its
// embedded etcd serves clients and peers over TLS and admits only certificates of that CA, the
// HTTP API is served over https, and GET /cluster/join answers only requests that carry the
// token. A node started with JOIN_ADDR and JOIN_TOKEN checks that the node at JOIN_ADDR knows the
// token before it trusts the CA, then receives a certificate for its own key. clusterkit-node
// -new-token prints a random token. Without JOIN_TOKEN, a node that advertises a non-loopback
// address warns at start: its etcd ports and its join API are open to anyone who reaches them.
//
// Metrics: GET /metrics on the HTTP API serves the node's metrics in Prometheus' text format:
// ClusterKit's (clusterkit_*, among them clusterkit_etcd_nospace_alarm), the Go runtime's and
// the process's.
//
// Health probe: clusterkit-node -healthcheck asks GET /health of the node configured by the same
// HTTP_PORT or HTTP_ADDR (on 127.0.0.1 for an empty or unspecified host) and exits with status 0
// when it answers 200, else 1. It needs no shell or curl, so a container image without them can
// run it as its HEALTHCHECK; every other setting is ignored.
//
// A missing or invalid setting is reported on stderr, naming the variable or flag, and the
// command exits with status 2; every problem is listed at once. So is a user name or password
// that etcd refuses at start (ETCD_USERNAME, ETCD_PASSWORD). The node logs JSON (zap's
// production format) to stderr. Once Start has returned it prints one line on stdout:
//
//	ready <node-id> <advertise-addr>
//
// SIGTERM or SIGINT stops the node gracefully (it leaves the cluster at once) and the command
// exits with status 0. With DRAIN_ON_SIGTERM=true (or -drain) the node first hands every
// partition over to the others, for at most 60s; a second signal gives up on draining. The last
// node of a cluster has nobody to hand over to: it leaves without draining. With
// DECOMMISSION_ON_SIGTERM=true (or -decommission) the node leaves for good: it removes its
// embedded etcd member (refused, and the node just stops, when the other members would not
// make a quorum), after which a client node takes the member place, then drains. A failed
// start, drain or decommission exits with status 1.
package main

// The command: the table of its settings, and its lifecycle: parse the settings, start the
// node, print the ready line, and on a signal stop, drain or decommission it.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/zap"

	"github.com/clusterkit-go/clusterkit/internal/pki"
	"github.com/clusterkit-go/clusterkit/pkg/clusterkit"
)

// Exit statuses.
const (
	exitOK     = 0
	exitFailed = 1
	exitConfig = 2
)

// drainTimeout bounds the hand-over on SIGTERM with DRAIN_ON_SIGTERM.
const drainTimeout = 60 * time.Second

// The settings table, healthCheckFlag and drainTimeout stay in this file, beside the package
// comment that documents them: deploy/lint reads them from main.go's syntax to check the
// deployment files against the command.

// setting is one configuration value: an environment variable and the flag that overrides it.
type setting struct {
	env  string
	flag string // "" when there is no flag
	// field is the Options field the setting fills, "" when none.
	field  string
	isBool bool
	help   string
}

var (
	sNodeID             = &setting{env: "NODE_ID", flag: "node-id", field: "NodeID", help: "unique node name (required)"}
	sHTTPPort           = &setting{env: "HTTP_PORT", flag: "http-port", field: "HTTPAddr", help: "HTTP API port on all interfaces (this or HTTP_ADDR is required)"}
	sHTTPAddr           = &setting{env: "HTTP_ADDR", flag: "http-addr", field: "HTTPAddr", help: "HTTP API host:port (this or HTTP_PORT is required)"}
	sAdvertiseAddr      = &setting{env: "ADVERTISE_ADDR", flag: "advertise-addr", field: "AdvertiseAddr", help: "host:port other nodes reach the HTTP API at"}
	sJoinAddr           = &setting{env: "JOIN_ADDR", flag: "join-addr", field: "JoinAddr", help: "HTTP address of any node of the cluster to join"}
	sDataDir            = &setting{env: "DATA_DIR", flag: "data-dir", field: "DataDir", help: "data directory (default <temp dir>/clusterkit/<NODE_ID>)"}
	sClusterName        = &setting{env: "CLUSTER_NAME", flag: "cluster-name", field: "ClusterName", help: `cluster name (default "default")`}
	sPartitionCount     = &setting{env: "PARTITION_COUNT", flag: "partition-count", field: "PartitionCount", help: "number of partitions (default 64)"}
	sReplicationFactor  = &setting{env: "REPLICATION_FACTOR", flag: "replication-factor", field: "ReplicationFactor", help: "holders per partition (default 3)"}
	sLeaseTTL           = &setting{env: "LEASE_TTL", flag: "lease-ttl", field: "LeaseTTL", help: "lease time to live, whole seconds (default 10s)"}
	sEmbeddedMembers    = &setting{env: "EMBEDDED_MEMBERS", flag: "embedded-members", field: "EmbeddedMembers", help: "nodes that run an embedded etcd member: 1, 3 or 5 (default 3)"}
	sEtcdEndpoints      = &setting{env: "ETCD_ENDPOINTS", flag: "etcd-endpoints", field: "EtcdEndpoints", help: "comma-separated etcd client URLs"}
	sEtcdUsername       = &setting{env: "ETCD_USERNAME", flag: "etcd-username", field: "EtcdUsername", help: "etcd user"}
	sEtcdPassword       = &setting{env: "ETCD_PASSWORD", field: "EtcdPassword", help: "etcd password (environment only)"}
	sJoinToken          = &setting{env: "JOIN_TOKEN", field: "JoinToken", help: "secure mode: the cluster's join token (environment only; clusterkit-node -new-token prints one)"}
	sEtcdCAFile         = &setting{env: "ETCD_CA_FILE", flag: "etcd-ca-file", field: "EtcdTLS", help: "PEM CA that verifies etcd's certificate"}
	sEtcdCertFile       = &setting{env: "ETCD_CERT_FILE", flag: "etcd-cert-file", field: "EtcdTLS", help: "PEM client certificate for etcd"}
	sEtcdKeyFile        = &setting{env: "ETCD_KEY_FILE", flag: "etcd-key-file", field: "EtcdTLS", help: "PEM client key for etcd"}
	sTLSCertFile        = &setting{env: "TLS_CERT_FILE", flag: "tls-cert-file", field: "HTTPTLS", help: "PEM certificate: serve the HTTP API over https (with TLS_KEY_FILE)"}
	sTLSKeyFile         = &setting{env: "TLS_KEY_FILE", flag: "tls-key-file", field: "HTTPTLS", help: "PEM key of TLS_CERT_FILE"}
	sTLSClientCAFile    = &setting{env: "TLS_CLIENT_CA_FILE", flag: "tls-client-ca-file", field: "HTTPTLS", help: "PEM CA: require client certificates it signed (mutual TLS)"}
	sTLSCAFile          = &setting{env: "TLS_CA_FILE", flag: "tls-ca-file", field: "HTTPClientTLS", help: "PEM CA that verifies other nodes' API (JOIN_ADDR) over https"}
	sZone               = &setting{env: "ZONE", flag: "zone", field: "Zone", help: "failure domain"}
	sHandoffTimeout     = &setting{env: "HANDOFF_TIMEOUT", flag: "handoff-timeout", field: "HandoffTimeout", help: "time a partition copy may take (default 2m)"}
	sMaxHandoffsPerNode = &setting{env: "MAX_HANDOFFS_PER_NODE", flag: "max-handoffs-per-node", field: "MaxHandoffsPerNode", help: "partition copies in flight into and out of each node (default 0: no bound)"}
	sMaxHandoffs        = &setting{env: "MAX_HANDOFFS", flag: "max-handoffs", field: "MaxHandoffs", help: "partition copies in flight in the cluster (default 0: no bound)"}
	sCrashGracePeriod   = &setting{env: "CRASH_GRACE_PERIOD", flag: "crash-grace-period", field: "CrashGracePeriod", help: "time a crashed node keeps its places (default 0)"}
	sLogLevel           = &setting{env: "LOG_LEVEL", flag: "log-level", help: "debug, info, warn or error (default info)"}
	sDrain              = &setting{env: "DRAIN_ON_SIGTERM", flag: "drain", isBool: true, help: "hand partitions over before leaving on SIGTERM"}
	sDecommission       = &setting{env: "DECOMMISSION_ON_SIGTERM", flag: "decommission", isBool: true, help: "leave for good on SIGTERM: remove the node's etcd member, then drain"}
)

// settings lists every setting, in the order of the usage text.
var settings = []*setting{
	sNodeID, sHTTPPort, sHTTPAddr, sAdvertiseAddr, sJoinAddr, sJoinToken, sDataDir, sClusterName,
	sPartitionCount, sReplicationFactor, sLeaseTTL, sEmbeddedMembers, sEtcdEndpoints, sEtcdUsername, sEtcdPassword,
	sEtcdCAFile, sEtcdCertFile, sEtcdKeyFile, sTLSCertFile, sTLSKeyFile, sTLSClientCAFile, sTLSCAFile, sZone, sHandoffTimeout, sMaxHandoffsPerNode, sMaxHandoffs, sCrashGracePeriod, sLogLevel, sDrain, sDecommission,
}

// healthCheckFlag selects the health probe mode; it has no variable.
const (
	healthCheckFlag = "healthcheck"
	newTokenFlag    = "new-token"
)

func main() {
	os.Exit(run(os.Args[1:], os.LookupEnv, os.Stdout, os.Stderr))
}

// run is the whole command; it returns the exit status.
func run(args []string, lookupEnv func(string) (string, bool), stdout, stderr io.Writer) int {
	cfg, err := parseConfig(lookupEnv, args)
	if errors.Is(err, flag.ErrHelp) {
		printUsage(stderr)
		return exitOK
	}
	if errors.Is(err, errHealthCheck) {
		return healthCheck(lookupEnv, args, stdout, stderr)
	}
	if errors.Is(err, errNewToken) {
		fmt.Fprintln(stdout, pki.NewToken())
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "clusterkit-node: invalid settings:\n  %s\nRun clusterkit-node -h for the list of settings.\n",
			strings.ReplaceAll(err.Error(), "\n", "\n  "))
		return exitConfig
	}
	zcfg := zap.NewProductionConfig()
	zcfg.Level = zap.NewAtomicLevelAt(cfg.logLevel)
	log, err := zcfg.Build()
	if err != nil {
		fmt.Fprintf(stderr, "clusterkit-node: logger: %v\n", err)
		return exitFailed
	}
	defer log.Sync()
	cfg.opts.Logger = log
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	cfg.opts.Registerer = reg
	ck, err := clusterkit.NewClusterKit(cfg.opts)
	if err != nil {
		fmt.Fprintf(stderr, "clusterkit-node: invalid settings:\n  %v\n", cfg.explain(err))
		return exitConfig
	}
	log = log.Named("main").With(zap.String("node_id", cfg.opts.NodeID))
	if cfg.selfJoin != "" {
		log.Info("JOIN_ADDR names this node: bootstrapping with an embedded etcd", zap.String("join_addr", cfg.selfJoin))
	}

	// Signals are caught from here on: one that arrives during Start aborts it.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	startCtx, cancelStart := context.WithCancel(context.Background())
	defer cancelStart()
	started := make(chan error, 1)
	go func() { started <- ck.StartContext(startCtx) }()
	select {
	case err := <-started:
		if err != nil {
			var mismatch *clusterkit.ConfigMismatchError
			if errors.As(err, &mismatch) || errors.Is(err, clusterkit.ErrEtcdAuthFailed) {
				fmt.Fprintf(stderr, "clusterkit-node: invalid settings:\n  %v\n", cfg.explain(err))
				return exitConfig
			}
			log.Error("start failed", zap.Error(err))
			return exitFailed
		}
	case sig := <-sigs:
		log.Info("signal during start, stopping", zap.String("signal", sig.String()))
		cancelStart()
		<-started
		ck.Stop()
		return exitOK
	}
	fmt.Fprintf(stdout, "ready %s %s\n", cfg.opts.NodeID, ck.AdvertiseAddr())

	sig := <-sigs
	if !cfg.drain && !cfg.decommission {
		log.Info("signal received, leaving the cluster", zap.String("signal", sig.String()))
		ck.Stop()
		return exitOK
	}
	if others, ok := otherNodes(ck); ok && others == 0 {
		// Nobody could take the partitions over: a drain would only wait out its timeout.
		log.Info("signal received, the last node of the cluster leaves without draining", zap.String("signal", sig.String()))
		ck.Stop()
		return exitOK
	}
	leave := ck.Drain
	if cfg.decommission {
		leave = ck.Decommission
		log.Info("signal received, decommissioning", zap.String("signal", sig.String()), zap.Duration("timeout", drainTimeout))
	} else {
		log.Info("signal received, draining", zap.String("signal", sig.String()), zap.Duration("timeout", drainTimeout))
	}
	ctx, cancel := context.WithTimeout(context.Background(), drainTimeout)
	defer cancel()
	// A second signal means: stop waiting for the hand-over.
	interrupted := make(chan struct{})
	go func() {
		defer close(interrupted)
		select {
		case <-sigs:
			log.Warn("second signal, giving up on draining")
			cancel()
		case <-ctx.Done():
		}
	}()
	err = leave(ctx)
	cancel()
	<-interrupted
	if err != nil {
		log.Error("drain did not finish, leaving without it", zap.Error(err))
		ck.Stop()
		return exitFailed
	}
	return exitOK
}

// otherNodes counts the nodes other than this one in the partition map the node holds; ok is
// false before it holds a map, when nobody can tell.
func otherNodes(ck *clusterkit.ClusterKit) (n int, ok bool) {
	nodes := ck.Nodes()
	if nodes == nil {
		return 0, false
	}
	for _, node := range nodes {
		if node.ID != ck.GetMyNodeID() {
			n++
		}
	}
	return n, true
}
