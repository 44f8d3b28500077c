// Command promqueries checks the repository's Grafana dashboard and Prometheus alert rules (see
// lint.CheckDashboard and lint.CheckAlertRules) and prints, as JSON, every PromQL query in them
// with the metrics it reads. The main module's test/monitoring compares those metrics with the
// ones a running node registers.
//
//	promqueries -root ../..
//
// The exit status is 1 when a file does not pass its checks (the errors go to stderr), 2 for a
// usage error.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	lint "github.com/clusterkit-go/clusterkit/deploy/lint"
)

func main() {
	root := flag.String("root", ".", "the repository root")
	flag.Parse()
	if flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: promqueries [-root DIR]")
		os.Exit(2)
	}
	dash, errs := lint.CheckDashboard(filepath.Join(*root, lint.DashboardFile))
	alerts, alertErrs := lint.CheckAlertRules(filepath.Join(*root, lint.AlertRulesFile))
	errs = append(errs, alertErrs...)
	for _, err := range errs {
		fmt.Fprintf(os.Stderr, "promqueries: %v\n", err)
	}
	if len(errs) > 0 {
		os.Exit(1)
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(append(dash, alerts...)); err != nil {
		fmt.Fprintf(os.Stderr, "promqueries: %v\n", err)
		os.Exit(1)
	}
}
