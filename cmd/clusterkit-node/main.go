// Command clusterkit-node runs one ClusterKit node, configured by environment variables as in
// the original README's Docker section; a flag overrides the variable of the same setting.
//
//	NODE_ID=node-1 HTTP_PORT=8080 DATA_DIR=/data clusterkit-node
//	NODE_ID=node-2 HTTP_PORT=8080 JOIN_ADDR=node-1:8080 DATA_DIR=/data clusterkit-node
//	clusterkit-node -node-id node-3 -http-addr 127.0.0.1:8082 -etcd-endpoints http://etcd:2379
//
// Settings (variable, flag, default):
//
//	NODE_ID             -node-id             required; unique node name, no '/' or spaces
//	HTTP_PORT           -http-port           HTTP API port, listening on all interfaces; or:
//	HTTP_ADDR           -http-addr           HTTP API host:port (one of the two is required)
//	ADVERTISE_ADDR      -advertise-addr      the HTTP address with 127.0.0.1 for an empty host;
//	                                         set it when peers run on other machines or containers
//	JOIN_ADDR           -join-addr           none; HTTP address of any node of the cluster; this
//	                                         node's own address makes it the bootstrap node
//	DATA_DIR            -data-dir            <temp dir>/clusterkit/<NODE_ID>; in a container, a
//	                                         volume (the original README used /data)
//	CLUSTER_NAME        -cluster-name        "default", or the joined node's cluster
//	PARTITION_COUNT     -partition-count     64; fixed when the cluster is created
//	REPLICATION_FACTOR  -replication-factor  3; fixed when the cluster is created
//	LEASE_TTL           -lease-ttl           10s; a Go duration in whole seconds, at least 2s
//	EMBEDDED_MEMBERS    -embedded-members    3 for a new cluster on embedded etcd (1, 3 or 5):
//	                                         how many nodes run an etcd member; the joined
//	                                         cluster's value for a joining node
//	ETCD_ENDPOINTS      -etcd-endpoints      none; comma-separated etcd client URLs
//	ETCD_USERNAME       -etcd-username       none
//	ETCD_PASSWORD       (no flag)            none; a flag would show in the process list
//	ETCD_CA_FILE        -etcd-ca-file        system roots; PEM CA that verifies etcd
//	ETCD_CERT_FILE      -etcd-cert-file      none; PEM client certificate, with ETCD_KEY_FILE
//	ETCD_KEY_FILE       -etcd-key-file       none; PEM client key, with ETCD_CERT_FILE
//	ZONE                -zone                none; failure domain
//	HANDOFF_TIMEOUT     -handoff-timeout     2m
//	CRASH_GRACE_PERIOD  -crash-grace-period  0
//	LOG_LEVEL           -log-level           info (debug, info, warn, error)
//	DRAIN_ON_SIGTERM    -drain               false
//	DECOMMISSION_ON_SIGTERM -decommission    false; SIGTERM then means "not coming back": the
//	                                         node's etcd member is removed, then it drains
//
// Without ETCD_ENDPOINTS and JOIN_ADDR the node starts an embedded etcd and bootstraps a new
// cluster; the first EMBEDDED_MEMBERS nodes to join it with JOIN_ADDR also run etcd members, so
// that the cluster survives the loss of any one of them (of any two with 5). A node restarted
// with its DATA_DIR comes back as the member it was, even if the node at JOIN_ADDR is gone. Any ETCD_*_FILE setting turns TLS on for the etcd connection. An empty variable counts
// as unset.
//
// Bootstrap by self-join: when JOIN_ADDR names this node's own advertise address (ADVERTISE_ADDR,
// or else the HTTP address with 127.0.0.1 for an empty or unspecified host), and ETCD_ENDPOINTS
// is unset, the node ignores JOIN_ADDR and bootstraps: it starts the embedded etcd. Host names
// compare without case and without a trailing dot; all loopback hosts (localhost, 127.0.0.0/8,
// ::1) count as one. This lets every replica of a Kubernetes StatefulSet share one template,
// JOIN_ADDR naming pod 0: pod 0 bootstraps and the others join it.
//
// Health probe: clusterkit-node -healthcheck asks GET /health of the node configured by the same
// HTTP_PORT or HTTP_ADDR (on 127.0.0.1 for an empty or unspecified host) and exits with status 0
// when it answers 200, else 1. It needs no shell or curl, so a container image without them can
// run it as its HEALTHCHECK; every other setting is ignored.
//
// A missing or invalid setting is reported on stderr, naming the variable or flag, and the
// command exits with status 2; every problem is listed at once. The node logs JSON (zap's
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

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

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
			if errors.As(err, &mismatch) {
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
	if others, err := otherNodes(ck); err == nil && others == 0 {
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

// config is what the command runs with.
type config struct {
	opts     clusterkit.Options
	drain    bool
	logLevel zapcore.Level
	// decommission makes SIGTERM leave for good (Decommission): it implies draining.
	decommission bool
	// selfJoin is the JOIN_ADDR that named this node itself (see sameAddr), "" otherwise.
	selfJoin string
	// names maps an Options field to the setting it came from, as the user gave it (the
	// variable or the flag), so that errors of NewClusterKit name what to change.
	names map[string]string
}

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
	sNodeID            = &setting{env: "NODE_ID", flag: "node-id", field: "NodeID", help: "unique node name (required)"}
	sHTTPPort          = &setting{env: "HTTP_PORT", flag: "http-port", field: "HTTPAddr", help: "HTTP API port on all interfaces (this or HTTP_ADDR is required)"}
	sHTTPAddr          = &setting{env: "HTTP_ADDR", flag: "http-addr", field: "HTTPAddr", help: "HTTP API host:port (this or HTTP_PORT is required)"}
	sAdvertiseAddr     = &setting{env: "ADVERTISE_ADDR", flag: "advertise-addr", field: "AdvertiseAddr", help: "host:port other nodes reach the HTTP API at"}
	sJoinAddr          = &setting{env: "JOIN_ADDR", flag: "join-addr", field: "JoinAddr", help: "HTTP address of any node of the cluster to join"}
	sDataDir           = &setting{env: "DATA_DIR", flag: "data-dir", field: "DataDir", help: "data directory (default <temp dir>/clusterkit/<NODE_ID>)"}
	sClusterName       = &setting{env: "CLUSTER_NAME", flag: "cluster-name", field: "ClusterName", help: `cluster name (default "default")`}
	sPartitionCount    = &setting{env: "PARTITION_COUNT", flag: "partition-count", field: "PartitionCount", help: "number of partitions (default 64)"}
	sReplicationFactor = &setting{env: "REPLICATION_FACTOR", flag: "replication-factor", field: "ReplicationFactor", help: "holders per partition (default 3)"}
	sLeaseTTL          = &setting{env: "LEASE_TTL", flag: "lease-ttl", field: "LeaseTTL", help: "lease time to live, whole seconds (default 10s)"}
	sEmbeddedMembers   = &setting{env: "EMBEDDED_MEMBERS", flag: "embedded-members", field: "EmbeddedMembers", help: "nodes that run an embedded etcd member: 1, 3 or 5 (default 3)"}
	sEtcdEndpoints     = &setting{env: "ETCD_ENDPOINTS", flag: "etcd-endpoints", field: "EtcdEndpoints", help: "comma-separated etcd client URLs"}
	sEtcdUsername      = &setting{env: "ETCD_USERNAME", flag: "etcd-username", field: "EtcdUsername", help: "etcd user"}
	sEtcdPassword      = &setting{env: "ETCD_PASSWORD", field: "EtcdPassword", help: "etcd password (environment only)"}
	sEtcdCAFile        = &setting{env: "ETCD_CA_FILE", flag: "etcd-ca-file", field: "EtcdTLS", help: "PEM CA that verifies etcd's certificate"}
	sEtcdCertFile      = &setting{env: "ETCD_CERT_FILE", flag: "etcd-cert-file", field: "EtcdTLS", help: "PEM client certificate for etcd"}
	sEtcdKeyFile       = &setting{env: "ETCD_KEY_FILE", flag: "etcd-key-file", field: "EtcdTLS", help: "PEM client key for etcd"}
	sZone              = &setting{env: "ZONE", flag: "zone", field: "Zone", help: "failure domain"}
	sHandoffTimeout    = &setting{env: "HANDOFF_TIMEOUT", flag: "handoff-timeout", field: "HandoffTimeout", help: "time a partition copy may take (default 2m)"}
	sCrashGracePeriod  = &setting{env: "CRASH_GRACE_PERIOD", flag: "crash-grace-period", field: "CrashGracePeriod", help: "time a crashed node keeps its places (default 0)"}
	sLogLevel          = &setting{env: "LOG_LEVEL", flag: "log-level", help: "debug, info, warn or error (default info)"}
	sDrain             = &setting{env: "DRAIN_ON_SIGTERM", flag: "drain", isBool: true, help: "hand partitions over before leaving on SIGTERM"}
	sDecommission      = &setting{env: "DECOMMISSION_ON_SIGTERM", flag: "decommission", isBool: true, help: "leave for good on SIGTERM: remove the node's etcd member, then drain"}
)

// healthCheckFlag selects the health probe mode; it has no variable.
const healthCheckFlag = "healthcheck"

// errHealthCheck is how parseConfig says that -healthcheck was given.
var errHealthCheck = errors.New("health check requested")

// settings lists every setting, in the order of the usage text.
var settings = []*setting{
	sNodeID, sHTTPPort, sHTTPAddr, sAdvertiseAddr, sJoinAddr, sDataDir, sClusterName,
	sPartitionCount, sReplicationFactor, sLeaseTTL, sEmbeddedMembers, sEtcdEndpoints, sEtcdUsername, sEtcdPassword,
	sEtcdCAFile, sEtcdCertFile, sEtcdKeyFile, sZone, sHandoffTimeout, sCrashGracePeriod, sLogLevel, sDrain, sDecommission,
}

func printUsage(w io.Writer) {
	fmt.Fprintln(w, "Usage: clusterkit-node [flags]")
	fmt.Fprintln(w, "       clusterkit-node -healthcheck   (GET /health of the node on HTTP_PORT or HTTP_ADDR)")
	fmt.Fprintln(w, "Every setting is an environment variable; its flag, when given, overrides it.")
	for _, s := range settings {
		f := "(no flag)"
		if s.flag != "" {
			f = "-" + s.flag
		}
		fmt.Fprintf(w, "  %-20s %-21s %s\n", s.env, f, s.help)
	}
}

// parser reads settings from the flags given and the environment, collecting every problem.
type parser struct {
	lookupEnv func(string) (string, bool)
	flags     map[string]string
	names     map[string]string
	errs      []error
}

// get returns the value of s and the name it was given under: the flag when it was given, else
// the environment variable when it is set and not empty.
func (p *parser) get(s *setting) (value, name string, ok bool) {
	if s.flag != "" {
		if v, ok := p.flags[s.flag]; ok {
			return v, "-" + s.flag, true
		}
	}
	if v, ok := p.lookupEnv(s.env); ok && v != "" {
		return v, s.env, true
	}
	return "", "", false
}

func (p *parser) fail(name, format string, args ...any) {
	p.errs = append(p.errs, fmt.Errorf("%s: %s", name, fmt.Sprintf(format, args...)))
}

// str returns the value of s, recording where the Options field came from.
func (p *parser) str(s *setting) string {
	v, name, ok := p.get(s)
	if ok && s.field != "" {
		p.names[s.field] = name
	}
	return v
}

// positive returns the integer value of s, 0 when unset.
func (p *parser) positive(s *setting) int {
	v, name, ok := p.get(s)
	if !ok {
		return 0
	}
	p.names[s.field] = name
	n, err := strconv.Atoi(strings.TrimSpace(v))
	switch {
	case err != nil:
		p.fail(name, "%q is not an integer", v)
	case n <= 0:
		p.fail(name, "%d is not positive (leave it unset for the default)", n)
	}
	return n
}

// duration returns the value of s, 0 when unset. With positive, 0 is refused: it would silently
// mean the default.
func (p *parser) duration(s *setting, positive bool) time.Duration {
	v, name, ok := p.get(s)
	if !ok {
		return 0
	}
	if s.field != "" {
		p.names[s.field] = name
	}
	d, err := time.ParseDuration(strings.TrimSpace(v))
	switch {
	case err != nil:
		p.fail(name, "%q is not a duration (for example 10s or 2m)", v)
	case positive && d <= 0:
		p.fail(name, "%v is not positive (leave it unset for the default)", d)
	}
	return d
}

func (p *parser) boolean(s *setting) bool {
	v, name, ok := p.get(s)
	if !ok {
		return false
	}
	b, err := strconv.ParseBool(strings.TrimSpace(v))
	if err != nil {
		p.fail(name, "%q is not a boolean (true or false)", v)
	}
	return b
}

// parseConfig reads the settings from args (flags) and lookupEnv (the environment; os.LookupEnv
// in the command). It reports every missing or malformed setting at once, each named as the user
// gave it; the Options themselves are checked by clusterkit.NewClusterKit (see config.explain).
// It returns flag.ErrHelp for -h.
func parseConfig(lookupEnv func(string) (string, bool), args []string) (*config, error) {
	fs, err := parseFlags(args)
	if err != nil {
		return nil, err
	}
	if f := fs.Lookup(healthCheckFlag); f.Value.String() == "true" {
		return nil, errHealthCheck
	}
	p := &parser{lookupEnv: lookupEnv, flags: map[string]string{}, names: map[string]string{}}
	fs.Visit(func(f *flag.Flag) { p.flags[f.Name] = f.Value.String() })

	cfg := &config{names: p.names}
	o := &cfg.opts
	o.NodeID = p.str(sNodeID)
	if o.NodeID == "" {
		p.fail(sNodeID.env, "required (or -%s)", sNodeID.flag)
	}
	o.HTTPAddr = p.httpAddr()
	o.AdvertiseAddr = p.str(sAdvertiseAddr)
	o.JoinAddr = p.str(sJoinAddr)
	o.DataDir = p.str(sDataDir)
	o.ClusterName = p.str(sClusterName)
	o.Zone = p.str(sZone)
	o.PartitionCount = p.positive(sPartitionCount)
	o.ReplicationFactor = p.positive(sReplicationFactor)
	o.LeaseTTL = p.duration(sLeaseTTL, true)
	o.EmbeddedMembers = p.positive(sEmbeddedMembers)
	o.HandoffTimeout = p.duration(sHandoffTimeout, true)
	o.CrashGracePeriod = p.duration(sCrashGracePeriod, false)
	if v, name, ok := p.get(sEtcdEndpoints); ok {
		p.names[sEtcdEndpoints.field] = name
		for _, ep := range strings.Split(v, ",") {
			ep = strings.TrimSpace(ep)
			if ep == "" {
				p.fail(name, "%q has an empty endpoint", v)
				continue
			}
			o.EtcdEndpoints = append(o.EtcdEndpoints, ep)
		}
	}
	// A node told to join itself is the one the others join: it bootstraps. With etcd
	// endpoints, JOIN_ADDR stays set so that NewClusterKit reports the contradiction.
	if o.JoinAddr != "" && len(o.EtcdEndpoints) == 0 && sameAddr(o.JoinAddr, ownAddr(o.AdvertiseAddr, o.HTTPAddr)) {
		cfg.selfJoin, o.JoinAddr = o.JoinAddr, ""
		delete(p.names, sJoinAddr.field)
	}
	o.EtcdUsername = p.str(sEtcdUsername)
	o.EtcdPassword = p.str(sEtcdPassword)
	o.EtcdTLS = p.etcdTLS()
	cfg.drain = p.boolean(sDrain)
	cfg.decommission = p.boolean(sDecommission)
	cfg.logLevel = zapcore.InfoLevel
	if v, name, ok := p.get(sLogLevel); ok {
		l, err := zapcore.ParseLevel(strings.TrimSpace(v))
		if err != nil {
			p.fail(name, "%q is not a log level (debug, info, warn or error)", v)
		}
		cfg.logLevel = l
	}
	if err := errors.Join(p.errs...); err != nil {
		return nil, err
	}
	return cfg, nil
}

// parseFlags parses the command line: a flag for each setting that has one, and -healthcheck.
func parseFlags(args []string) (*flag.FlagSet, error) {
	fs := flag.NewFlagSet("clusterkit-node", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Bool(healthCheckFlag, false, "probe GET /health of the node on HTTP_PORT or HTTP_ADDR")
	for _, s := range settings {
		switch {
		case s.flag == "":
		case s.isBool:
			fs.Bool(s.flag, false, s.help)
		default:
			fs.String(s.flag, "", s.help)
		}
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, fmt.Errorf("command line: %v", err)
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("command line: unexpected argument %q (settings are flags or environment variables)", fs.Arg(0))
	}
	return fs, nil
}

// httpAddr returns the HTTP listen address from HTTP_ADDR or HTTP_PORT. A flag beats a variable;
// two settings given the same way contradict each other.
func (p *parser) httpAddr() string {
	addr, addrName, addrOK := p.get(sHTTPAddr)
	port, portName, portOK := p.get(sHTTPPort)
	if addrOK && portOK {
		addrFlag, portFlag := strings.HasPrefix(addrName, "-"), strings.HasPrefix(portName, "-")
		if addrFlag == portFlag {
			p.fail(addrName, "set either %s or %s, not both", addrName, portName)
			return ""
		}
		addrOK, portOK = addrFlag, portFlag
	}
	switch {
	case addrOK:
		p.names["HTTPAddr"] = addrName
		return addr
	case portOK:
		p.names["HTTPAddr"] = portName
		n, err := strconv.Atoi(strings.TrimSpace(port))
		if err != nil || n < 0 || n > 65535 {
			p.fail(portName, "%q is not a port number (0 to 65535)", port)
			return ""
		}
		return ":" + strconv.Itoa(n)
	}
	p.fail(sHTTPPort.env+" or "+sHTTPAddr.env, "required (or -%s or -%s)", sHTTPPort.flag, sHTTPAddr.flag)
	return ""
}

// etcdTLS builds the TLS configuration from the ETCD_*_FILE settings; nil when none is given.
func (p *parser) etcdTLS() *tls.Config {
	ca, caName, caOK := p.get(sEtcdCAFile)
	cert, certName, certOK := p.get(sEtcdCertFile)
	key, keyName, keyOK := p.get(sEtcdKeyFile)
	if !caOK && !certOK && !keyOK {
		return nil
	}
	for _, n := range []string{caName, certName, keyName} {
		if n != "" {
			p.names["EtcdTLS"] = n
			break
		}
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if caOK {
		pem, err := os.ReadFile(ca)
		if err != nil {
			p.fail(caName, "%v", err)
		} else {
			c.RootCAs = x509.NewCertPool()
			if !c.RootCAs.AppendCertsFromPEM(pem) {
				p.fail(caName, "%s holds no PEM certificate", ca)
			}
		}
	}
	switch {
	case certOK && !keyOK:
		p.fail(sEtcdKeyFile.env, "required with %s", certName)
	case keyOK && !certOK:
		p.fail(sEtcdCertFile.env, "required with %s", keyName)
	case certOK && keyOK:
		ok := true
		for name, path := range map[string]string{certName: cert, keyName: key} {
			if _, err := os.Stat(path); err != nil {
				p.fail(name, "%v", err)
				ok = false
			}
		}
		if ok {
			pair, err := tls.LoadX509KeyPair(cert, key)
			if err != nil {
				p.fail(certName+" and "+keyName, "%v", err)
			} else {
				c.Certificates = []tls.Certificate{pair}
			}
		}
	}
	return c
}

// explain prefixes an error of NewClusterKit or Start about an Options field with the settings
// that field came from, so that the message says what to change.
func (c *config) explain(err error) error {
	var field string
	var mismatch *clusterkit.ConfigMismatchError
	if errors.As(err, &mismatch) {
		field = mismatch.Setting
	} else if rest, ok := strings.CutPrefix(err.Error(), clusterkit.ErrInvalidOptions.Error()+": "); ok {
		field, _, _ = strings.Cut(rest, ":")
	}
	var names []string
	for _, f := range strings.Split(field, "/") {
		if n := c.nameOf(f); n != "" {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return err
	}
	return fmt.Errorf("%s: %w", strings.Join(names, ", "), err)
}

// nameOf is the setting that fills an Options field: as the user gave it, or else its variable.
func (c *config) nameOf(field string) string {
	if n, ok := c.names[field]; ok {
		return n
	}
	for _, s := range settings {
		if s.field == field && field != "" {
			if field == "HTTPAddr" {
				return sHTTPPort.env + " or " + sHTTPAddr.env
			}
			return s.env
		}
	}
	return ""
}

// otherNodes counts the nodes other than this one in the partition map the node holds, as its
// GET /cluster shows it.
func otherNodes(ck *clusterkit.ClusterKit) (int, error) {
	rec := httptest.NewRecorder()
	ck.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/cluster", nil))
	if rec.Code != http.StatusOK {
		return 0, fmt.Errorf("GET /cluster: %d", rec.Code)
	}
	var body struct {
		Cluster struct {
			Nodes map[string]json.RawMessage `json:"nodes"`
		} `json:"cluster"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		return 0, fmt.Errorf("GET /cluster: %w", err)
	}
	n := len(body.Cluster.Nodes)
	if _, ok := body.Cluster.Nodes[ck.GetMyNodeID()]; ok {
		n--
	}
	return n, nil
}

// ownAddr is the address this node advertises: advertise when set, else the HTTP address with
// 127.0.0.1 for an empty or unspecified host, as clusterkit does. It is "" when that is not known
// before listening (port 0) or the HTTP address is malformed.
func ownAddr(advertise, httpAddr string) string {
	if advertise != "" {
		return advertise
	}
	host, port, err := net.SplitHostPort(httpAddr)
	if err != nil || port == "0" {
		return ""
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// sameAddr reports whether the host:port addresses a and b name the same listener: equal ports
// and equal hosts, ignoring case and a trailing dot, every loopback host being the same.
func sameAddr(a, b string) bool {
	ha, pa, errA := net.SplitHostPort(a)
	hb, pb, errB := net.SplitHostPort(b)
	if errA != nil || errB != nil || pa != pb {
		return false
	}
	ha, hb = canonicalHost(ha), canonicalHost(hb)
	return ha != "" && ha == hb
}

// canonicalHost lower-cases host, drops a trailing dot and maps every loopback host to one name.
func canonicalHost(host string) string {
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if host == "localhost" {
		return "loopback"
	}
	if ip := net.ParseIP(host); ip != nil {
		if ip.IsLoopback() {
			return "loopback"
		}
		return ip.String()
	}
	return host
}

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
	url := "http://" + addr + "/health"
	ctx, cancel := context.WithTimeout(context.Background(), healthCheckTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		fmt.Fprintf(stderr, "clusterkit-node -healthcheck: %v\n", err)
		return exitConfig
	}
	httpc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
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
