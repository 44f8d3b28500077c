package main

// The node's settings: the -h usage, the parsing of the environment and flags into
// clusterkit.Options (TLS files included), the recognition of a JOIN_ADDR that names the node
// itself, and the naming of the setting to change in an error of NewClusterKit or Start. The
// table of settings is in main.go.

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap/zapcore"

	"github.com/clusterkit-go/clusterkit/pkg/clusterkit"
)

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

func printUsage(w io.Writer) {
	fmt.Fprintln(w, "Usage: clusterkit-node [flags]")
	fmt.Fprintln(w, "       clusterkit-node -healthcheck   (GET /health of the node on HTTP_PORT or HTTP_ADDR)")
	fmt.Fprintln(w, "       clusterkit-node -new-token     (print a random join token for JOIN_TOKEN)")
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

// positive returns the integer value of s, 0 when unset; 0 and below are refused, since 0 would
// silently mean the default.
func (p *parser) positive(s *setting) int {
	return p.integer(s, 1, "is not positive (leave it unset for the default)")
}

// count returns the integer value of s, 0 (no bound) when unset or 0.
func (p *parser) count(s *setting) int {
	return p.integer(s, 0, "is negative (0 or unset: no bound)")
}

// integer returns the integer value of s, 0 when unset, refusing one below least with the
// words below.
func (p *parser) integer(s *setting, least int, below string) int {
	v, name, ok := p.get(s)
	if !ok {
		return 0
	}
	p.names[s.field] = name
	n, err := strconv.Atoi(strings.TrimSpace(v))
	switch {
	case err != nil:
		p.fail(name, "%q is not an integer", v)
	case n < least:
		p.fail(name, "%d %s", n, below)
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
	if f := fs.Lookup(newTokenFlag); f.Value.String() == "true" {
		return nil, errNewToken
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
	o.MaxHandoffsPerNode = p.count(sMaxHandoffsPerNode)
	o.MaxHandoffs = p.count(sMaxHandoffs)
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
	o.JoinToken = p.str(sJoinToken)
	o.EtcdTLS = p.etcdTLS()
	o.HTTPTLS, o.HTTPClientTLS = p.apiTLS()
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
	fs.Bool(newTokenFlag, false, "print a random join token and exit")
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

// apiTLS builds the HTTP API's server and client TLS configurations from the TLS_* settings;
// nil, nil when none is given.
func (p *parser) apiTLS() (server, client *tls.Config) {
	cert, certName, certOK := p.get(sTLSCertFile)
	key, keyName, keyOK := p.get(sTLSKeyFile)
	clientCA, clientCAName, clientCAOK := p.get(sTLSClientCAFile)
	ca, caName, caOK := p.get(sTLSCAFile)
	if !certOK && !keyOK && !clientCAOK && !caOK {
		return nil, nil
	}
	for _, n := range []string{certName, keyName, clientCAName} {
		if n != "" {
			p.names["HTTPTLS"] = n
			break
		}
	}
	if caOK {
		p.names["HTTPClientTLS"] = caName
	}
	client = &tls.Config{MinVersion: tls.VersionTLS12}
	pool := func(path, name string) *x509.CertPool {
		b, err := os.ReadFile(path)
		if err != nil {
			p.fail(name, "%v", err)
			return nil
		}
		cp := x509.NewCertPool()
		if !cp.AppendCertsFromPEM(b) {
			p.fail(name, "%s holds no PEM certificate", path)
		}
		return cp
	}
	if caOK {
		client.RootCAs = pool(ca, caName)
	}
	switch {
	case !certOK && !keyOK:
		if clientCAOK {
			p.fail(sTLSCertFile.env, "required with %s", clientCAName)
		}
		return nil, client
	case certOK && !keyOK:
		p.fail(sTLSKeyFile.env, "required with %s", certName)
		return nil, client
	case keyOK && !certOK:
		p.fail(sTLSCertFile.env, "required with %s", keyName)
		return nil, client
	}
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		p.fail(certName+" and "+keyName, "%v", err)
		return nil, client
	}
	server = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{pair}}
	if clientCAOK {
		server.ClientCAs = pool(clientCA, clientCAName)
		server.ClientAuth = tls.RequireAndVerifyClientCert
		client.Certificates = []tls.Certificate{pair}
	}
	return server, client
}

// explain prefixes an error of NewClusterKit or Start about an Options field with the settings
// that field came from, so that the message says what to change.
func (c *config) explain(err error) error {
	var field string
	var mismatch *clusterkit.ConfigMismatchError
	if errors.As(err, &mismatch) {
		field = mismatch.Setting
	} else if errors.Is(err, clusterkit.ErrEtcdAuthFailed) {
		field = "EtcdUsername/EtcdPassword"
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
