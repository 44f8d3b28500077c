package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/clusterkit-go/clusterkit/internal/etcdtest"
	"github.com/clusterkit-go/clusterkit/internal/keys"
	"github.com/clusterkit-go/clusterkit/internal/partition"
	"github.com/clusterkit-go/clusterkit/internal/proctest"
	"github.com/clusterkit-go/clusterkit/internal/state"
)

func TestMain(m *testing.M) { os.Exit(etcdtest.RunWithoutLeaks(m)) }

// env is an environment for run.
type env map[string]string

func (e env) lookup(k string) (string, bool) { v, ok := e[k]; return v, ok }

// runIn runs the command in this process and returns its exit status and output.
func runIn(t *testing.T, e env, args ...string) (status int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	status = run(context.Background(), args, e.lookup, &out, &errOut)
	return status, out.String(), errOut.String()
}

// Every global flag can come from CLUSTERKIT_<FLAG>; the command line wins.
func TestFlagsFromEnvironment(t *testing.T) {
	tests := []struct {
		name string
		env  env
		args []string
		want globals
	}{
		{
			name: "defaults",
			want: globals{endpoints: []string{"http://127.0.0.1:18080"}, dialTimeout: 2 * time.Second,
				commandTimeout: 5 * time.Second, cluster: "default", output: "table"},
		},
		{
			name: "environment",
			env: env{"CLUSTERKIT_ENDPOINTS": "http://a:2379,http://b:2379", "CLUSTERKIT_CLUSTER": "prod",
				"CLUSTERKIT_OUTPUT": "json", "CLUSTERKIT_DIAL_TIMEOUT": "300ms", "CLUSTERKIT_COMMAND_TIMEOUT": "9s",
				"CLUSTERKIT_CACERT": "/ca.pem", "CLUSTERKIT_CERT": "/c.pem", "CLUSTERKIT_KEY": "/k.pem",
				"CLUSTERKIT_USER": "root:pw"},
			want: globals{endpoints: []string{"http://a:2379", "http://b:2379"}, dialTimeout: 300 * time.Millisecond,
				commandTimeout: 9 * time.Second, cluster: "prod", output: "json", cacert: "/ca.pem", cert: "/c.pem",
				key: "/k.pem", user: "root:pw"},
		},
		{
			name: "the command line wins",
			env: env{"CLUSTERKIT_ENDPOINTS": "http://a:2379", "CLUSTERKIT_CLUSTER": "prod", "CLUSTERKIT_OUTPUT": "json",
				"CLUSTERKIT_DIAL_TIMEOUT": "300ms"},
			args: []string{"--endpoints", "http://c:2379", "--cluster=staging", "-o", "table"},
			want: globals{endpoints: []string{"http://c:2379"}, dialTimeout: 300 * time.Millisecond,
				commandTimeout: 5 * time.Second, cluster: "staging", output: "table"},
		},
		{
			name: "an empty variable counts as unset",
			env:  env{"CLUSTERKIT_CLUSTER": "", "CLUSTERKIT_OUTPUT": ""},
			want: globals{endpoints: []string{"http://127.0.0.1:18080"}, dialTimeout: 2 * time.Second,
				commandTimeout: 5 * time.Second, cluster: "default", output: "table"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := &globals{lookupEnv: tt.env.lookup}
			flags := newRoot(g).PersistentFlags()
			if err := flags.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			if err := g.complete(flags); err != nil {
				t.Fatal(err)
			}
			got := fmt.Sprintf("%q %v %v %q %q %q %q %q %q", g.endpoints, g.dialTimeout, g.commandTimeout, g.cluster,
				g.output, g.cacert, g.cert, g.key, g.user)
			w := tt.want
			want := fmt.Sprintf("%q %v %v %q %q %q %q %q %q", w.endpoints, w.dialTimeout, w.commandTimeout, w.cluster,
				w.output, w.cacert, w.cert, w.key, w.user)
			if got != want {
				t.Errorf("got  %s\nwant %s", got, want)
			}
		})
	}
}

// Bad input is refused before anything connects, naming the flag or the variable it came from:
// exit status 3.
func TestUsageErrors(t *testing.T) {
	tests := []struct {
		name string
		env  env
		args []string
		want string
	}{
		{"unknown command", nil, []string{"bogus"}, `unknown command "bogus" for "clusterkit"`},
		{"unknown flag", nil, []string{"status", "--bogus"}, "unknown flag: --bogus"},
		{"output", nil, []string{"status", "-o", "yaml"}, `--output "yaml": want table or json`},
		{"output from the environment", env{"CLUSTERKIT_OUTPUT": "yaml"}, []string{"nodes"}, `CLUSTERKIT_OUTPUT "yaml": want table or json`},
		{"unparsable variable", env{"CLUSTERKIT_DIAL_TIMEOUT": "soon"}, []string{"status"}, `CLUSTERKIT_DIAL_TIMEOUT="soon": `},
		{"cluster name", nil, []string{"status", "--cluster", "a/b"}, `--cluster: cluster name "a/b" has '/'`},
		{"cert without key", nil, []string{"status", "--cert", "c.pem"}, "--cert and --key go together"},
		{"user without password", env{"CLUSTERKIT_USER": "root"}, []string{"status"}, "CLUSTERKIT_USER: want user:password"},
		{"missing CA file", nil, []string{"status", "--cacert", "/nonexistent/ca.pem"}, "--cacert: open /nonexistent/ca.pem"},
		{"explain without partition", nil, []string{"explain"}, "want one PARTITION, got 0 arguments"},
		{"route without key", nil, []string{"route"}, "want at least one KEY"},
		{"plan join weight", nil, []string{"plan", "join", "node-4", "--weight", "0"}, "--weight 0: want 1 to"},
		{"plan join node ID", nil, []string{"plan", "join", "node 4"}, `node ID "node 4" has ' '`},
		{"weight out of range", nil, []string{"weight", "node-1", "0"}, `weight "0": want an integer from 1 to 1073741824`},
		{"weight not a number", nil, []string{"weight", "node-1", "heavy"}, `weight "heavy": want an integer`},
		{"weight without N", nil, []string{"weight", "node-1"}, "want NODE and N, or NODE --clear; got 1 arguments"},
		{"weight clear with N", nil, []string{"weight", "node-1", "2", "--clear"}, "want NODE and N, or NODE --clear; got 2 arguments"},
		{"drain node ID", nil, []string{"drain", "node/1"}, `node ID "node/1" has '/'`},
		{"maintenance without reason", nil, []string{"maintenance", "on"}, `--reason: want a reason, like --reason "kernel upgrade"`},
		{"maintenance blank reason", nil, []string{"maintenance", "on", "--reason", "  "}, "--reason: want a reason"},
		{"maintenance off of nothing", nil, []string{"maintenance", "off"}, "want --reason TEXT or --all"},
		{"maintenance off of both", nil, []string{"maintenance", "off", "--all", "--reason", "x"}, "want --reason TEXT or --all"},
		{"move without node", nil, []string{"move", "5"}, "want --to NODE or --clear"},
		{"move to and clear", nil, []string{"move", "5", "--to", "n", "--clear"}, "want --to NODE or --clear"},
		{"history limit", nil, []string{"history", "--limit", "0"}, "--limit 0: want 1 to 1000"},
		{"force where it means nothing", nil, []string{"weight", "node-1", "2", "--force"}, "unknown flag: --force"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, stdout, stderr := runIn(t, tt.env, tt.args...)
			if status != exitUsage {
				t.Errorf("status %d, want %d", status, exitUsage)
			}
			if !strings.HasPrefix(stderr, "clusterkit: ") || !strings.Contains(stderr, tt.want) {
				t.Errorf("stderr %q, want clusterkit: ...%s...", stderr, tt.want)
			}
			if stdout != "" {
				t.Errorf("stdout %q, want nothing", stdout)
			}
		})
	}
}

// An endpoint where nothing answers fails within --dial-timeout, naming the endpoint: exit
// status 2, for every command.
func TestUnreachableEtcdFailsFast(t *testing.T) {
	ep := fmt.Sprintf("http://127.0.0.1:%d", proctest.FreePort(t))
	for _, args := range [][]string{{"status"}, {"nodes"}, {"partitions"}, {"route", "k"}, {"explain", "1"},
		{"plan", "join", "n"}, {"plan", "leave", "n"}, {"watch"}, {"history"}, {"drain", "n"}, {"cordon", "n"},
		{"uncordon", "n"}, {"maintenance", "on", "--reason", "r"}, {"maintenance", "off", "--all"}, {"maintenance", "list"},
		{"move", "1", "--to", "n"}, {"move", "1", "--clear"}, {"weight", "n", "2"}, {"weight", "n", "--clear"}} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			t.Parallel()
			began := time.Now()
			status, stdout, stderr := runIn(t, env{"CLUSTERKIT_ENDPOINTS": ep}, append(args, "--dial-timeout", "300ms")...)
			took := time.Since(began)
			want := fmt.Sprintf("clusterkit: cannot reach etcd at %s within --dial-timeout 300ms: ", ep)
			if status != exitEtcd || !strings.HasPrefix(stderr, want) || stdout != "" {
				t.Errorf("status %d, stdout %q, stderr %q; want %d and %q", status, stdout, stderr, exitEtcd, want)
			}
			if took > 2*time.Second {
				t.Errorf("took %v with a dial timeout of 300ms", took)
			}
		})
	}
}

// A cluster whose config exists but that has no map yet (no node has led it): status shows
// what there is and exits with status 1; the commands that need the map say so.
func TestClusterWithoutMap(t *testing.T) {
	srv := etcdtest.Start(t)
	s := keys.New("default")
	cfg, err := json.Marshal(state.Config{ClusterID: "c0ffee", PartitionCount: 8, ReplicationFactor: 2,
		Hash: state.HashConfig{Algorithm: state.HashMD5, Modulo: 8, Format: partition.Format}})
	if err != nil {
		t.Fatal(err)
	}
	rec, err := json.Marshal(state.Node{ID: "node-1", IP: "127.0.0.1:8080"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for k, v := range map[string][]byte{s.Config(): cfg, s.Node("node-1"): rec} {
		if _, err := srv.Client.Put(ctx, k, string(v)); err != nil {
			t.Fatal(err)
		}
	}
	e := env{"CLUSTERKIT_ENDPOINTS": strings.Join(srv.Member.Endpoints(), ",")}

	status, stdout, stderr := runIn(t, e, "status", "-o", "json")
	var doc statusDoc
	if err := json.Unmarshal([]byte(stdout), &doc); err != nil || doc.ClusterID != "c0ffee" || doc.Map != nil || doc.NodesWithLease != 1 {
		t.Errorf("status without a map printed %q (%v); want the cluster, no map, one node with a lease", stdout, err)
	}
	if want := `clusterkit: cluster "default" has no partition map yet`; status != exitState || !strings.HasPrefix(stderr, want) {
		t.Errorf("status without a map: status %d, stderr %q; want %d and %q", status, stderr, exitState, want)
	}
	status, stdout, _ = runIn(t, e, "nodes")
	if rows := tableRows(stdout, "NODE"); status != exitOK || len(rows) != 1 || rows[0][0] != "node-1" || rows[0][4] != stateNotInMap {
		t.Errorf("nodes without a map: status %d, output:\n%s\nwant node-1 not in the map", status, stdout)
	}
	for _, args := range [][]string{{"partitions"}, {"route", "k"}, {"explain", "1"}, {"plan", "join", "node-2"},
		{"drain", "node-1"}, {"move", "1", "--to", "node-1"}, {"maintenance", "on", "--reason", "r"}} {
		status, stdout, stderr := runIn(t, e, args...)
		if status != exitState || stdout != "" || !strings.Contains(stderr, "has no partition map yet") {
			t.Errorf("%v without a map: status %d, stdout %q, stderr %q", args, status, stdout, stderr)
		}
	}
	if status, _, stderr := runIn(t, e, "explain", "8"); status != exitUsage || !strings.Contains(stderr, "partition 8 out of range 0..7") {
		t.Errorf("explain 8 of 8 partitions: status %d, stderr %q", status, stderr)
	}
}
