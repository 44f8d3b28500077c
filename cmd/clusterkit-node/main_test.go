package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/clusterkit-go/clusterkit/internal/etcdtest"
)

func TestMain(m *testing.M) { os.Exit(etcdtest.RunWithoutLeaks(m)) }

// run exits with status 2 and names the setting before it starts anything; -h exits with 0.
func TestRunExitStatus(t *testing.T) {
	tests := []struct {
		name       string
		env        env
		args       []string
		wantStatus int
		wantStderr string
	}{
		{"missing settings", env{}, nil, exitConfig, "NODE_ID: required"},
		{"invalid option", minimal(env{"LEASE_TTL": "1s"}), nil, exitConfig, "LEASE_TTL: clusterkit: invalid options: LeaseTTL"},
		{"help", env{}, []string{"-h"}, exitOK, "DRAIN_ON_SIGTERM     -drain"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if got := run(tt.args, tt.env.lookup, &stdout, &stderr); got != tt.wantStatus {
				t.Errorf("status %d, want %d; stderr:\n%s", got, tt.wantStatus, &stderr)
			}
			if !strings.Contains(stderr.String(), tt.wantStderr) {
				t.Errorf("stderr lacks %q:\n%s", tt.wantStderr, &stderr)
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout: %q; want nothing (only the ready line goes there)", &stdout)
			}
		})
	}
	if _, err := parseConfig(env{}.lookup, []string{"-help"}); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-help: %v, want flag.ErrHelp", err)
	}
}

// A user name or password that etcd refuses is an invalid setting: run exits with status 2 and
// names the variables, as it does for any other invalid setting.
func TestRunEtcdRefusesCredentials(t *testing.T) {
	srv := etcdtest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Authentication on, with a root user only. Users without a password cost no bcrypt hashing,
	// which the race detector slows down to seconds, and etcd refuses an unknown user as it
	// refuses a wrong password.
	steps := []struct {
		what string
		do   func() error
	}{
		{"add user root", func() error {
			_, err := srv.Client.UserAddWithOptions(ctx, "root", "", &clientv3.UserAddOptions{NoPassword: true})
			return err
		}},
		{"grant root to root", func() error { _, err := srv.Client.UserGrantRole(ctx, "root", "root"); return err }},
		{"enable auth", func() error { _, err := srv.Client.AuthEnable(ctx); return err }},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("etcd auth setup: %s: %v", s.what, err)
		}
	}
	e := env{
		"NODE_ID":        "node-1",
		"HTTP_ADDR":      "127.0.0.1:0",
		"DATA_DIR":       t.TempDir(),
		"ETCD_ENDPOINTS": strings.Join(srv.Member.Endpoints(), ","),
		"ETCD_USERNAME":  "ck",
		"ETCD_PASSWORD":  "some-password",
	}
	var stdout, stderr bytes.Buffer
	if got := run(nil, e.lookup, &stdout, &stderr); got != exitConfig {
		t.Errorf("status %d, want %d; stderr:\n%s", got, exitConfig, &stderr)
	}
	want := "clusterkit-node: invalid settings:\n  ETCD_USERNAME, ETCD_PASSWORD: clusterkit: etcd authentication failed: "
	if !strings.HasPrefix(stderr.String(), want) {
		t.Errorf("stderr:\n%s\nwant it to start with %q", &stderr, want)
	}
	if stdout.Len() != 0 {
		t.Errorf("stdout: %q; want nothing", &stdout)
	}
}

// The package comment lists every setting with its flag: it is the reference the deployment
// files are checked against.
func TestDocListsEverySetting(t *testing.T) {
	src, err := os.ReadFile("main.go")
	if err != nil {
		t.Fatal(err)
	}
	doc, _, _ := strings.Cut(string(src), "\npackage main")
	for _, s := range settings {
		flagCol := "(no flag)"
		if s.flag != "" {
			flagCol = "-" + s.flag
		}
		found := false
		for _, line := range strings.Split(doc, "\n") {
			if f := strings.Fields(strings.TrimPrefix(line, "//")); len(f) >= 2 && f[0] == s.env &&
				(f[1] == flagCol || flagCol == "(no flag)" && f[1] == "(no") {
				found = true
			}
		}
		if !found {
			t.Errorf("the package comment lacks a line for %s %s", s.env, flagCol)
		}
	}
}
