package lint

import (
	"path/filepath"
	"strings"
	"testing"
)

// The repository's dashboard and alert rules load with Grafana's and Prometheus' own types and
// loaders, and every query reads ClusterKit's metrics. That the metrics exist is checked against
// a running node by test/monitoring in the main module, with cmd/promqueries.
func TestMonitoringFiles(t *testing.T) {
	dash, errs := CheckDashboard(filepath.Join(root, DashboardFile))
	for _, err := range errs {
		t.Error(err)
	}
	alerts, errs := CheckAlertRules(filepath.Join(root, AlertRulesFile))
	for _, err := range errs {
		t.Error(err)
	}
	if len(dash) < 20 || len(alerts) < 10 {
		t.Fatalf("%d dashboard queries and %d alerts, want at least 20 and 10", len(dash), len(alerts))
	}
	for _, q := range append(dash, alerts...) {
		if len(q.Metrics) == 0 {
			t.Errorf("%s %s reads no metric", q.File, q.Where)
		}
		for _, m := range q.Metrics {
			if !strings.HasPrefix(m, "clusterkit_") {
				t.Errorf("%s %s reads %s, not a ClusterKit metric", q.File, q.Where, m)
			}
		}
	}
}

func TestDashboardBroken(t *testing.T) {
	src := readFile(t, filepath.Join(root, DashboardFile))
	tests := []struct {
		name          string
		old, new      string
		wantErrSubstr string
	}{
		{name: "unknown dashboard field", old: `"uid": "clusterkit",`, new: `"uid": "clusterkit", "uuid": "x",`, wantErrSubstr: "unexpected field 'uuid'"},
		{name: "unknown panel field", old: `"title": "Nodes",`, new: `"title": "Nodes", "titel": "x",`, wantErrSubstr: "unexpected field 'titel'"},
		{name: "stat option missing", old: `"graphMode": "none",`, new: ``, wantErrSubstr: "graphMode"},
		{name: "wrong type", old: `"schemaVersion": 39`, new: `"schemaVersion": "39"`, wantErrSubstr: "schemaVersion"},
		{name: "unknown query field", old: `"expr": "count(clusterkit_map_epoch{job=~\"$job\"})",`, new: `"expr": "count(clusterkit_map_epoch{job=~\"$job\"})", "expression": "x",`, wantErrSubstr: "unexpected field 'expression'"},
		{name: "invalid PromQL", old: `count(clusterkit_map_epoch{`, new: `count(clusterkit_map_epoch{{`, wantErrSubstr: "unexpected"},
		{name: "unknown variable", old: `count(clusterkit_map_epoch{job=~\"$job\"})`, new: `count(clusterkit_map_epoch{job=~\"$cluster\"})`, wantErrSubstr: "unknown variable $cluster"},
		{name: "variable in place of a duration", old: `[1h]`, new: `[$job]`, wantErrSubstr: "Leader changes (1h)"},
		{name: "selector without a metric name", old: `count(clusterkit_map_epoch{job=~\"$job\"})`, new: `count({job=~\"$job\"})`, wantErrSubstr: "names no metric"},
		{name: "fixed datasource", old: `"uid": "${datasource}"`, new: `"uid": "prometheus-1"`, wantErrSubstr: "datasource variable"},
		{name: "panel id twice", old: `"id": 3,`, new: `"id": 2,`, wantErrSubstr: "id 2 used twice"},
		{name: "panel past the 24 columns", old: `"w": 24,`, new: `"w": 25,`, wantErrSubstr: "24 columns"},
		{name: "variable query", old: `label_values(clusterkit_map_epoch, job)`, new: `clusterkit_map_epoch`, wantErrSubstr: "not label_values"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "dashboard.json")
			writeFile(t, path, replaceOnce(t, src, tt.old, tt.new))
			_, errs := CheckDashboard(path)
			expectError(t, errs, tt.wantErrSubstr)
		})
	}
}

func TestAlertRulesBroken(t *testing.T) {
	src := readFile(t, filepath.Join(root, AlertRulesFile))
	tests := []struct {
		name          string
		old, new      string
		wantErrSubstr string
	}{
		{name: "unknown field", old: "        for: 2m\n", new: "        for: 2m\n        fore: 2m\n", wantErrSubstr: "field fore not found"},
		{name: "invalid PromQL", old: "sum by (job) (clusterkit_is_leader) == 0", new: "sum by (job) (clusterkit_is_leader) ==", wantErrSubstr: "could not parse expression"},
		{name: "invalid duration", old: "for: 2m", new: "for: 2 minutes", wantErrSubstr: "2 minutes"},
		{name: "invalid template", old: `summary: "ClusterKit {{ $labels.job }} has no leader"`, new: `summary: "ClusterKit {{ $labels.job } has no leader"`, wantErrSubstr: "summary"},
		{name: "no severity", old: "          severity: critical\n", new: "          team: clusterkit\n", wantErrSubstr: `severity ""`},
		{name: "no description", old: "          description: >-\n            No node", new: "          details: >-\n            No node", wantErrSubstr: "no summary or description"},
		{name: "alert twice", old: "alert: ClusterKitLeaderFlapping", new: "alert: ClusterKitNoLeader", wantErrSubstr: "defined twice"},
		{name: "recording rule", old: "alert: ClusterKitLeaderFlapping", new: "record: clusterkit:leader_terms", wantErrSubstr: "invalid field 'annotations' in recording rule"},
		{name: "selector without a metric name", old: "max by (job) (clusterkit_etcd_nospace_alarm) == 1", new: `max by (job) ({job="x"}) == 1`, wantErrSubstr: "names no metric"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "alerts.yml")
			writeFile(t, path, replaceOnce(t, src, tt.old, tt.new))
			_, errs := CheckAlertRules(path)
			expectError(t, errs, tt.wantErrSubstr)
		})
	}
}
