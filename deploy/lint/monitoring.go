package lint

// The monitoring files: the Grafana dashboard, decoded strictly by the Grafana Foundation SDK's
// dashboard types, and the Prometheus alert rules, loaded by Prometheus' own rule loader. Every
// PromQL expression in them is parsed by Prometheus' parser, and the metrics it names are
// listed, so that a test can compare them with what a running node registers.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
)

// The monitoring files, relative to the repository root.
const (
	DashboardFile  = "deploy/grafana/clusterkit-dashboard.json"
	AlertRulesFile = "deploy/prometheus/clusterkit-alerts.yml"
)

// Query is one PromQL expression of a monitoring file.
type Query struct {
	File string `json:"file"`
	// Where names the panel and target, the variable or the alert.
	Where string `json:"where"`
	Expr  string `json:"expr"`
	// Metrics are the metric names its selectors name, sorted.
	Metrics []string `json:"metrics"`
}

// promql is the parser Prometheus evaluates rules and queries with, with its default options.
var promql = parser.NewParser(parser.Options{})

// metricNames parses expr and returns the metric names of its selectors. A selector without a
// metric name (or with a name matched by a regular expression) is an error: the file must say
// which metrics it reads.
func metricNames(expr string) ([]string, error) {
	e, err := promql.ParseExpr(expr)
	if err != nil {
		return nil, err
	}
	names := map[string]bool{}
	var errs []error
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		name := vs.Name
		for _, m := range vs.LabelMatchers {
			if m.Name == model.MetricNameLabel && m.Type == labels.MatchEqual {
				name = m.Value
			}
		}
		if name == "" {
			errs = append(errs, fmt.Errorf("selector %s names no metric", vs))
		}
		names[name] = true
		return nil
	})
	return slices.Sorted(maps.Keys(names)), errors.Join(errs...)
}

// grafanaDurations are Grafana's built-in variables that stand for a duration; a range given
// by one parses once it is replaced by a duration.
var grafanaDurations = map[string]bool{"__rate_interval": true, "__interval": true, "__range": true}

// variableRef matches Grafana's variable syntaxes: $name, ${name}, ${name:format}, [[name]].
var variableRef = regexp.MustCompile(`\$(\w+)|\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]`)

// substitute replaces the variables of a dashboard query by values PromQL can parse: a
// duration for Grafana's interval variables, "x" for the dashboard's own (they may stand only
// where a string is expected, as in a label matcher). An unknown variable is an error.
func substitute(expr string, vars map[string]bool) (string, error) {
	var errs []error
	out := variableRef.ReplaceAllStringFunc(expr, func(ref string) string {
		m := variableRef.FindStringSubmatch(ref)
		name := m[1] + m[2] + m[3]
		switch {
		case grafanaDurations[name]:
			return "5m"
		case vars[name]:
			return "x"
		}
		errs = append(errs, fmt.Errorf("unknown variable %s", ref))
		return ref
	})
	return out, errors.Join(errs...)
}

var registerGrafanaTypes sync.Once

// labelValuesQuery is the query of a Grafana variable that lists a label's values.
var labelValuesQuery = regexp.MustCompile(`^label_values\((.+),\s*(\w+)\)$`)

// CheckDashboard decodes the dashboard strictly (unknown fields, missing required ones and
// wrong types are errors; panels of the types timeseries and stat and Prometheus queries with
// their own types) and checks that: it has a uid and a title; panel IDs are unique; every
// panel reads Prometheus through the dashboard's datasource variable, lies within the 24
// columns and has queries with unique refIds; every query and every query variable parses as
// PromQL (after its variables are replaced) and names its metrics. It returns the queries.
func CheckDashboard(path string) ([]Query, []error) {
	registerGrafanaTypes.Do(func() {
		rt := cog.NewRuntime()
		rt.RegisterDataqueryVariant(prometheus.VariantConfig())
		rt.RegisterPanelcfgVariant(timeseries.VariantConfig())
		rt.RegisterPanelcfgVariant(stat.VariantConfig())
	})
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, []error{err}
	}
	// The strict decoding finds what is wrong, but its nested decoders return their empty
	// error lists as non-nil errors, and so drop panels and queries that decoded well: the
	// values come from the same types' plain decoding.
	var strict dashboard.Dashboard
	var buildErrs cog.BuildErrors
	if err := strict.UnmarshalJSONStrict(raw); err != nil && (!errors.As(err, &buildErrs) || len(buildErrs) > 0) {
		return nil, []error{fmt.Errorf("%s: %w", path, err)}
	}
	var d dashboard.Dashboard
	if err := json.Unmarshal(raw, &d); err != nil {
		return nil, []error{fmt.Errorf("%s: %w", path, err)}
	}
	var errs []error
	fail := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{path}, args...)...))
	}
	if d.Uid == nil || *d.Uid == "" || d.Title == nil || *d.Title == "" {
		fail("no uid or title")
	}

	var queries []Query
	vars := map[string]bool{}
	datasourceVar := ""
	for _, v := range d.Templating.List {
		vars[v.Name] = true
		switch v.Type {
		case "datasource":
			if v.Query == nil || v.Query.String == nil || *v.Query.String != "prometheus" {
				fail("datasource variable %s is not of type prometheus", v.Name)
			}
			datasourceVar = "${" + v.Name + "}"
		case "query":
			if !usesVariable(v.Datasource, datasourceVar) {
				fail("variable %s does not read the datasource variable (declare that first)", v.Name)
			}
			q := ""
			if v.Query != nil && v.Query.String != nil {
				q = *v.Query.String
			}
			m := labelValuesQuery.FindStringSubmatch(q)
			if m == nil {
				fail("variable %s: query %q is not label_values(metric, label)", v.Name, q)
				continue
			}
			queries = append(queries, Query{File: DashboardFile, Where: "variable " + v.Name, Expr: m[1]})
		default:
			fail("variable %s of type %s: only datasource and query variables are checked", v.Name, v.Type)
		}
	}
	if datasourceVar == "" {
		fail("no datasource variable")
	}

	var panels []dashboard.Panel
	for _, p := range d.Panels {
		switch {
		case p.Panel != nil:
			panels = append(panels, *p.Panel)
		case p.RowPanel != nil:
			panels = append(panels, p.RowPanel.Panels...)
			if p.RowPanel.Id == 0 {
				fail("row %q has no id", deref(p.RowPanel.Title))
			}
		}
	}
	ids := map[uint32]bool{}
	for _, p := range d.Panels {
		if r := p.RowPanel; r != nil {
			ids[r.Id] = true
			if r.GridPos == nil || r.GridPos.X+r.GridPos.W > 24 {
				fail("row %q: grid position outside the 24 columns", deref(r.Title))
			}
		}
	}
	if len(panels) == 0 {
		fail("no panels")
	}
	for _, p := range panels {
		title := deref(p.Title)
		where := fmt.Sprintf("panel %q", title)
		switch {
		case p.Id == nil:
			fail("%s has no id", where)
		case ids[*p.Id]:
			fail("%s: id %d used twice", where, *p.Id)
		default:
			ids[*p.Id] = true
		}
		if title == "" {
			fail("a panel has no title")
		}
		if p.Type != "timeseries" && p.Type != "stat" {
			fail("%s of type %q: only timeseries and stat panels are checked", where, p.Type)
		}
		if p.GridPos == nil || p.GridPos.W == 0 || p.GridPos.H == 0 || p.GridPos.X+p.GridPos.W > 24 {
			fail("%s: grid position outside the 24 columns or empty", where)
		}
		if !usesVariable(p.Datasource, datasourceVar) {
			fail("%s does not read the datasource variable", where)
		}
		if len(p.Targets) == 0 {
			fail("%s has no query", where)
		}
		refs := map[string]bool{}
		for _, t := range p.Targets {
			q, ok := t.(*prometheus.Dataquery)
			if !ok {
				fail("%s: a query that is not a Prometheus query (%T)", where, t)
				continue
			}
			ref := deref(q.RefId)
			if ref == "" || refs[ref] {
				fail("%s: refId %q missing or used twice", where, ref)
			}
			refs[ref] = true
			if !usesVariable(q.Datasource, datasourceVar) {
				fail("%s query %s does not read the datasource variable", where, ref)
			}
			expr, err := substitute(q.Expr, vars)
			if err != nil {
				fail("%s query %s: %v", where, ref, err)
				continue
			}
			queries = append(queries, Query{File: DashboardFile, Where: where + " query " + ref, Expr: expr})
		}
	}
	for i := range queries {
		names, err := metricNames(queries[i].Expr)
		if err != nil {
			fail("%s: %q: %v", queries[i].Where, queries[i].Expr, err)
		}
		queries[i].Metrics = names
	}
	return queries, errs
}

// usesVariable reports whether ref is a Prometheus datasource named by the variable reference
// ("${datasource}").
func usesVariable(ref *common.DataSourceRef, variable string) bool {
	return variable != "" && ref != nil && deref(ref.Uid) == variable && deref(ref.Type) == "prometheus"
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// Severities an alert may have.
var severities = map[string]bool{"critical": true, "warning": true}

// CheckAlertRules loads the rules with Prometheus' loader (unknown fields are errors, every
// expression and template must parse), and checks that: every rule is an alert with a unique
// name, a severity label (critical or warning) and summary and description annotations; every
// expression names its metrics. It returns the alerts' queries.
func CheckAlertRules(path string) ([]Query, []error) {
	groups, errs := rulefmt.ParseFile(path, false, model.UTF8Validation, promql, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if len(errs) > 0 {
		return nil, errs
	}
	fail := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{path}, args...)...))
	}
	var queries []Query
	seen := map[string]bool{}
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				fail("group %s: a rule that is not an alert (%s)", g.Name, r.Record)
				continue
			}
			where := "alert " + r.Alert
			if seen[r.Alert] {
				fail("%s defined twice", where)
			}
			seen[r.Alert] = true
			if !severities[r.Labels["severity"]] {
				fail("%s: severity %q, want critical or warning", where, r.Labels["severity"])
			}
			if strings.TrimSpace(r.Annotations["summary"]) == "" || strings.TrimSpace(r.Annotations["description"]) == "" {
				fail("%s: no summary or description annotation", where)
			}
			names, err := metricNames(r.Expr)
			if err != nil {
				fail("%s: %v", where, err)
			}
			queries = append(queries, Query{File: AlertRulesFile, Where: where, Expr: r.Expr, Metrics: names})
		}
	}
	if len(queries) == 0 {
		fail("no alerts")
	}
	return queries, errs
}
