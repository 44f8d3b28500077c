// Package monitoring checks the repository's Grafana dashboard and Prometheus alert rules
// against the metrics a running node registers.
//
// The files are loaded and their PromQL parsed by deploy/lint (a module of its own, so that this
// module does not depend on Prometheus' and Grafana's libraries); its command promqueries
// prints every query with the metrics it reads.
package monitoring

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/clusterkit-go/clusterkit/internal/etcdtest"
	"github.com/clusterkit-go/clusterkit/pkg/clusterkit"
	"github.com/clusterkit-go/clusterkit/pkg/clustertest"
)

func TestMain(m *testing.M) { os.Exit(etcdtest.RunWithoutLeaks(m)) }

// query is what deploy/lint's promqueries prints for each query.
type query struct {
	File    string   `json:"file"`
	Where   string   `json:"where"`
	Expr    string   `json:"expr"`
	Metrics []string `json:"metrics"`
}

// Every metric the dashboard and the alert rules read is one a running node registers: a
// leader that has published its first map, so that the series of every labelled metric exist.
func TestDashboardAndAlertsReadRegisteredMetrics(t *testing.T) {
	queries := promQueries(t)
	registered, bounds := registeredMetrics(t)
	read := map[string]bool{}
	for _, q := range queries {
		for _, m := range q.Metrics {
			read[m] = true
			if !registered[m] {
				t.Errorf("%s, %s: %s is not a metric a node registers (expression %q)", q.File, q.Where, m, q.Expr)
			}
		}
		// A bucket selected by its bound must exist: le="0.3" matches no bucket of bound
		// 0.30000000000000004.
		for _, m := range bucketBound.FindAllStringSubmatch(q.Expr, -1) {
			le, err := strconv.ParseFloat(m[2], 64)
			if err != nil || !slices.Contains(bounds[m[1]], le) {
				t.Errorf("%s, %s: %s has no bucket le=%q (bounds %v)", q.File, q.Where, m[1], m[2], bounds[m[1]])
			}
		}
	}
	var unread []string
	for m := range registered {
		if !read[m] {
			unread = append(unread, m)
		}
	}
	slices.Sort(unread)
	t.Logf("%d queries read %d metrics; not read: %v", len(queries), len(read), unread)
}

// bucketBound matches a histogram bucket selected by its bound: the metric and the bound.
var bucketBound = regexp.MustCompile(`(\w+_bucket)\{[^}]*\ble="([^"]*)"`)

// registeredMetrics gathers the registry of a node that leads and has published its first map,
// and returns the names a query can read (a histogram's _bucket, _sum and _count series) and
// the bucket bounds of each histogram, by the name of its _bucket series.
func registeredMetrics(t *testing.T) (map[string]bool, map[string][]float64) {
	t.Helper()
	bounds := map[string][]float64{}
	reg := prometheus.NewRegistry()
	c := clustertest.New(t, clusterkit.Options{PartitionCount: 4})
	o := c.Options("node-1")
	o.Registerer = reg
	c.Start(o)
	names := map[string]bool{}
	etcdtest.WaitFor(t, 10*time.Second, "the leader's first map in the metrics", func() error {
		families, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		clear(names)
		for _, f := range families {
			switch f.GetType() {
			case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
				for _, s := range []string{"_bucket", "_sum", "_count"} {
					names[f.GetName()+s] = true
				}
				bounds[f.GetName()+"_bucket"] = nil
				for _, b := range f.GetMetric()[0].GetHistogram().GetBucket() {
					bounds[f.GetName()+"_bucket"] = append(bounds[f.GetName()+"_bucket"], b.GetUpperBound())
				}
			case dto.MetricType_SUMMARY:
				for _, s := range []string{"", "_sum", "_count"} {
					names[f.GetName()+s] = true
				}
			default:
				names[f.GetName()] = true
			}
		}
		if !names["clusterkit_handoffs_running"] {
			return errors.New("no map published yet")
		}
		return nil
	})
	return names, bounds
}

// promQueries runs deploy/lint's promqueries on the repository's files.
func promQueries(t *testing.T) []query {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	lintDir := filepath.Join("..", "..", "deploy", "lint")
	cmd := exec.CommandContext(ctx, "go", "run", "./cmd/promqueries", "-root", filepath.Join("..", ".."))
	cmd.Dir = lintDir
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("promqueries (in %s): %v\n%s", lintDir, err, stderr)
	}
	var qs []query
	if err := json.Unmarshal(out, &qs); err != nil {
		t.Fatalf("promqueries: %v", err)
	}
	if len(qs) == 0 {
		t.Fatal("promqueries listed no query")
	}
	return qs
}
