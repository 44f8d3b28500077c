// Command clusterkit shows an operator the state of a ClusterKit cluster, in etcdctl's mould: it
// reads the cluster's keys in etcd directly (the nodes need not answer), with the decoders and
// the placement code the nodes themselves run. It writes only operators' actions, the records
// under admin/ that the leader applies to placement, each checked first against the cluster.
//
//	clusterkit status                       the cluster at a glance, and etcd's health
//	clusterkit nodes                        every node: state, partitions held, copies coming in
//	clusterkit partitions [--node ID]       every partition: holders, primary epoch, copies, target
//	clusterkit route KEY...                 where keys go, as the library computes it
//	clusterkit explain PARTITION            why a partition is where it is, and where it goes
//	clusterkit plan join NODE [--zone Z --weight W]
//	clusterkit plan leave NODE              what a join or leave would move (a dry run)
//	clusterkit watch                        one line per published map, until interrupted
//	clusterkit history [--since E] [--limit N]
//	                                        the maps published: what each changed and why
//
// Operators' actions (each write takes --reason R and --by WHO):
//
//	clusterkit drain NODE [--force]         move every partition off a node, keep it empty
//	clusterkit cordon NODE [--force]        give a node nothing another node can keep
//	clusterkit uncordon NODE                end a node's drain and cordon
//	clusterkit maintenance on --reason R    hold placement still while R stands
//	clusterkit maintenance off --reason R | --all
//	clusterkit maintenance list             the maintenances that stand
//	clusterkit move PARTITION --to NODE [--force]
//	clusterkit move PARTITION --clear       pin a partition to a node, or end the pin
//	clusterkit weight NODE N
//	clusterkit weight NODE --clear          a node's weight in placement, or its own again
//
// Global flags, named as etcdctl's; each can also be set by the environment variable
// CLUSTERKIT_<FLAG> (CLUSTERKIT_ENDPOINTS, CLUSTERKIT_DIAL_TIMEOUT, ...), and a flag given on the
// command line wins over its variable:
//
//	--endpoints        http://127.0.0.1:18080   comma-separated etcd client URLs (the default is
//	                                            the embedded etcd of a node on :8080)
//	--cacert, --cert, --key                     PEM files: the CA that verifies etcd, and a client
//	                                            certificate and its key
//	--user             user:password            etcd authentication
//	--dial-timeout     2s                       to connect to etcd and authenticate
//	--command-timeout  5s                       to read what a command shows, and write
//	--cluster          default                  the cluster, under /clusterkit/<name>/
//	-o, --output       table                    table or json; each command's help documents its
//	                                            JSON document
//
// Exit status: 0 when the command did what it says; 1 when the cluster's state does not allow it
// (no such cluster, no partition map yet, an unreadable map, a cluster that kept changing while
// an action was checked); 2 when etcd cannot be reached in time or refuses access; 3 for a bad
// flag, argument or value, or an action the checks refuse.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/clusterkit-go/clusterkit/internal/keys"
)

// Exit statuses.
const (
	exitOK    = 0
	exitState = 1 // the cluster's state does not allow the command
	exitEtcd  = 2 // etcd cannot be reached or refuses access
	exitUsage = 3 // a bad flag, argument or value
)

// envPrefix starts the environment variable of every global flag: --dial-timeout is
// CLUSTERKIT_DIAL_TIMEOUT.
const envPrefix = "CLUSTERKIT_"

// exitError carries the exit status of an error.
type exitError struct {
	status int
	err    error
	// refused marks an action the checks refuse: a bad value, for which the usage is no help.
	refused bool
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func usageError(format string, a ...any) error {
	return &exitError{status: exitUsage, err: fmt.Errorf(format, a...)}
}

// refusedError is a check's refusal of an operator's action: exit status 3, as bad input.
func refusedError(format string, a ...any) error {
	return &exitError{status: exitUsage, err: fmt.Errorf(format, a...), refused: true}
}

func stateError(format string, a ...any) error {
	return &exitError{status: exitState, err: fmt.Errorf(format, a...)}
}

// globals are the flags every command takes.
type globals struct {
	endpoints      []string
	cacert         string
	cert           string
	key            string
	user           string
	dialTimeout    time.Duration
	commandTimeout time.Duration
	cluster        string
	output         string

	// lookupEnv reads the environment (os.LookupEnv outside tests).
	lookupEnv func(string) (string, bool)
	// fromEnv holds the flags set from their environment variable.
	fromEnv map[string]bool
	// beforeWrite, when not nil, runs between the check of an operator's action and its write
	// (a test changes the cluster there).
	beforeWrite func()
}

// jsonOutput reports whether the output is JSON rather than tables.
func (g *globals) jsonOutput() bool { return g.output == "json" }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	status := run(ctx, os.Args[1:], os.LookupEnv, os.Stdout, os.Stderr)
	stop()
	os.Exit(status)
}

// run is the whole command; it returns the exit status. ctx ends on SIGINT or SIGTERM, which
// ends watch with status 0.
func run(ctx context.Context, args []string, lookupEnv func(string) (string, bool), stdout, stderr io.Writer) int {
	return (&globals{lookupEnv: lookupEnv}).run(ctx, args, stdout, stderr)
}

// run runs the command with g's environment and hooks.
func (g *globals) run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRoot(g)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	var ee *exitError
	if !errors.As(err, &ee) {
		// Cobra's own errors (an unknown command or flag, a wrong number of arguments) come
		// before any command runs, and every error of a command carries its status.
		ee = &exitError{status: exitUsage, err: err}
	}
	fmt.Fprintf(stderr, "clusterkit: %v\n", ee.err)
	if ee.status == exitUsage && !ee.refused {
		fmt.Fprintln(stderr, "Run 'clusterkit --help' for usage.")
	}
	return ee.status
}

func newRoot(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:   "clusterkit",
		Short: "Show the state of a ClusterKit cluster, read from etcd, and steer its placement",
		Long: `clusterkit shows the state of a ClusterKit cluster as it is stored in etcd, with the
decoders and placement code the nodes run. It writes only operators' actions (drain,
cordon, uncordon, maintenance, move, weight): records under admin/ that the leader
applies to the maps it publishes, each checked against the cluster before it is written.

Every global flag can also be set by an environment variable: CLUSTERKIT_ and the flag's
name in capitals with '_' for '-' (CLUSTERKIT_ENDPOINTS, CLUSTERKIT_DIAL_TIMEOUT,
CLUSTERKIT_CLUSTER, CLUSTERKIT_CACERT, ...). A flag on the command line wins.

Exit status: 0 when the command did what it says; 1 when the cluster's state does not
allow it (no such cluster, no partition map yet, an unreadable map, a cluster that kept
changing while an action was checked); 2 when etcd cannot be reached within
--dial-timeout or refuses access; 3 for a bad flag, argument or value, or an action the
checks refuse (an unknown node, a drain of too many nodes, ...).`,
		SilenceErrors: true,
		SilenceUsage:  true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return g.complete(cmd.Root().PersistentFlags())
		},
	}
	root.CompletionOptions.DisableDefaultCmd = true
	f := root.PersistentFlags()
	f.StringSliceVar(&g.endpoints, "endpoints", []string{"http://127.0.0.1:18080"}, "comma-separated etcd client URLs (the embedded etcd of a node on :8080 by default)")
	f.StringVar(&g.cacert, "cacert", "", "PEM file of the CA that verifies etcd's certificate")
	f.StringVar(&g.cert, "cert", "", "PEM file of the client certificate for etcd (with --key)")
	f.StringVar(&g.key, "key", "", "PEM file of the client key for etcd (with --cert)")
	f.StringVar(&g.user, "user", "", "etcd user and password, as user:password")
	f.DurationVar(&g.dialTimeout, "dial-timeout", 2*time.Second, "time to connect to etcd and authenticate")
	f.DurationVar(&g.commandTimeout, "command-timeout", 5*time.Second, "time to read what a command shows, and write what it writes")
	f.StringVar(&g.cluster, "cluster", "default", "name of the cluster, under "+keys.Root+"<name>/")
	f.StringVarP(&g.output, "output", "o", "table", "output format: table or json")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError("%v", err) })
	root.AddCommand(newStatus(g), newNodes(g), newPartitions(g), newRoute(g), newExplain(g), newPlan(g), newWatch(g),
		newHistory(g), newDrain(g), newCordon(g), newUncordon(g), newMaintenance(g), newMove(g), newWeight(g))
	return root
}

// envName is the environment variable of a global flag.
func envName(flag string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// complete fills the flags not given on the command line from their environment variables,
// then checks every value.
func (g *globals) complete(flags *pflag.FlagSet) error {
	g.fromEnv = map[string]bool{}
	var errs []string
	flags.VisitAll(func(f *pflag.Flag) {
		if f.Changed {
			return
		}
		v, ok := g.lookupEnv(envName(f.Name))
		if !ok || v == "" {
			return
		}
		if err := flags.Set(f.Name, v); err != nil {
			errs = append(errs, fmt.Sprintf("%s=%q: %v", envName(f.Name), v, err))
		}
		g.fromEnv[f.Name] = true
	})
	if len(errs) > 0 {
		return usageError("%s", strings.Join(errs, "; "))
	}
	return g.check()
}

// check reports the first flag whose value cannot be used, naming it as it was given.
func (g *globals) check() error {
	var eps []string
	for _, ep := range g.endpoints {
		if ep = strings.TrimSpace(ep); ep != "" {
			eps = append(eps, ep)
		}
	}
	g.endpoints = eps
	switch {
	case len(g.endpoints) == 0:
		return usageError("%s: no etcd endpoint", g.source("endpoints"))
	case g.output != "table" && g.output != "json":
		return usageError("%s %q: want table or json", g.source("output"), g.output)
	case g.dialTimeout <= 0:
		return usageError("%s %v: want a positive duration", g.source("dial-timeout"), g.dialTimeout)
	case g.commandTimeout <= 0:
		return usageError("%s %v: want a positive duration", g.source("command-timeout"), g.commandTimeout)
	case (g.cert == "") != (g.key == ""):
		return usageError("%s and %s go together", g.source("cert"), g.source("key"))
	case g.user != "" && !strings.Contains(g.user, ":"):
		return usageError("%s: want user:password", g.source("user"))
	}
	if err := keys.ValidClusterName(g.cluster); err != nil {
		return usageError("%s: %v", g.source("cluster"), err)
	}
	return nil
}

// source names where a flag's value came from: the flag, or its environment variable.
func (g *globals) source(flag string) string {
	if g.fromEnv[flag] {
		return envName(flag)
	}
	return "--" + flag
}
