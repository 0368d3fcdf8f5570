//lint:file-ignore SA1019 Grafana provisions files and sidecar ConfigMaps in the v1 dashboard schema; dashboardv2 needs Grafana 12 and its v2 API.

package dashboards_test

import (
	"bytes"
	"encoding/json"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/meshbackup/backupd/bench/faults"
	"github.com/meshbackup/backupd/collectors/collectorstest"
	"github.com/meshbackup/backupd/dashboards"
)

// benchFamilies are the fault benchmark's families (bench/faults, loaded
// from its faults.om) by name.
func benchFamilies() map[string]faults.Family {
	out := map[string]faults.Family{}
	for _, f := range faults.MetricFamilies() {
		out[f.Name] = f
	}
	return out
}

// The committed JSON and ConfigMaps are what the generator makes.
func TestGeneratedFilesAreCurrent(t *testing.T) {
	files, err := dashboards.Files()
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range files {
		got, err := os.ReadFile("../" + path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is stale: run make dashboards", path)
		}
	}
}

// errMsg is the message of an SDK strict-unmarshal error: on success the SDK
// returns an empty, non-nil error.
func errMsg(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// A strict round trip through the SDK's types loses nothing and accepts no
// unknown field. (v0.0.18's Dashboard.UnmarshalJSONStrict drops panels,
// because a panel's empty non-nil error stops PanelOrRowPanel; so panels
// are checked strictly one by one, and the whole dashboard round-trips
// through json.Unmarshal with the SDK's plugins registered.)
func TestStrictRoundTrip(t *testing.T) {
	plugins.RegisterDefaultPlugins()
	for _, b := range dashboards.Boards() {
		raw, err := os.ReadFile("json/" + b.UID + ".json")
		if err != nil {
			t.Fatal(err)
		}
		var strict dashboard.Dashboard
		if msg := errMsg(strict.UnmarshalJSONStrict(raw)); msg != "" {
			t.Fatalf("%s: %s", b.UID, msg)
		}
		var parts struct {
			Panels []json.RawMessage `json:"panels"`
		}
		if err := json.Unmarshal(raw, &parts); err != nil {
			t.Fatal(err)
		}
		if len(parts.Panels) != len(b.Panels) {
			t.Fatalf("%s: %d panels in JSON, %d in the spec", b.UID, len(parts.Panels), len(b.Panels))
		}
		for i, pr := range parts.Panels {
			var p dashboard.Panel
			if msg := errMsg(p.UnmarshalJSONStrict(pr)); msg != "" {
				t.Errorf("%s: panel %d: %s", b.UID, i, msg)
			}
		}
		var d dashboard.Dashboard
		if err := json.Unmarshal(raw, &d); err != nil {
			t.Fatal(err)
		}
		again, err := json.MarshalIndent(d, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(append(again, '\n'), raw) {
			t.Errorf("%s: JSON changes in a round trip through the SDK", b.UID)
		}
	}
}

func ruleNames(t *testing.T) map[string]bool {
	t.Helper()
	groups, errs := rulefmt.ParseFile("../alerts/backupd.rules.yml", false, model.UTF8Validation, parser.NewParser(parser.Options{}), nil)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	out := map[string]bool{}
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			if r.Record != "" {
				out[r.Record] = true
			}
		}
	}
	return out
}

// Every panel has a description, a unit and thresholds; every query parses
// as PromQL and names only metrics the exporter serves, the rules record or
// the fault benchmark writes; the variables are datasource, cluster,
// instance and policy, then the board's own.
func TestPanels(t *testing.T) {
	known := collectorstest.MetricNames(t)
	for n := range ruleNames(t) {
		known[n] = true
	}
	for n := range benchFamilies() {
		known[n] = true
	}
	p := parser.NewParser(parser.Options{})
	for _, b := range dashboards.Boards() {
		d, err := dashboards.Build(b)
		if err != nil {
			t.Fatal(err)
		}
		var vars []string
		for _, v := range d.Templating.List {
			vars = append(vars, v.Name)
		}
		want := []string{"datasource", "cluster", "instance", "namespace", "policy"}
		for _, v := range b.Vars {
			want = append(want, v.Name)
		}
		if !slices.Equal(vars, want) {
			t.Errorf("%s: variables %v, want %v", b.UID, vars, want)
		}
		for _, panel := range d.Panels {
			pn := panel.Panel
			if pn == nil {
				continue
			}
			title := ""
			if pn.Title != nil {
				title = *pn.Title
			}
			if pn.Description == nil || *pn.Description == "" {
				t.Errorf("%s/%s: no description", b.UID, title)
			}
			if pn.FieldConfig == nil || pn.FieldConfig.Defaults.Unit == nil || pn.FieldConfig.Defaults.Thresholds == nil ||
				len(pn.FieldConfig.Defaults.Thresholds.Steps) == 0 {
				t.Errorf("%s/%s: no unit or thresholds", b.UID, title)
			}
		}
		for _, panel := range b.Panels {
			if panel.Kind != "text" && len(panel.Queries) == 0 {
				t.Errorf("%s/%s: no query", b.UID, panel.Title)
			}
			for _, q := range panel.Queries {
				expr, err := p.ParseExpr(dashboards.Concrete(q.Expr))
				if err != nil {
					t.Errorf("%s/%s: %q does not parse: %v", b.UID, panel.Title, q.Expr, err)
					continue
				}
				parser.Inspect(expr, func(node parser.Node, _ []parser.Node) error {
					if vs, ok := node.(*parser.VectorSelector); ok && vs.Name != "" && !known[vs.Name] {
						t.Errorf("%s/%s: %s is neither exported, recorded nor a benchmark family", b.UID, panel.Title, vs.Name)
					}
					return nil
				})
			}
		}
	}
}

// generated is the part of a generated dashboard's JSON the readability
// tests look at.
type generated struct {
	Panels []struct {
		Type    string `json:"type"`
		Title   string `json:"title"`
		Options struct {
			Legend *struct {
				DisplayMode string   `json:"displayMode"`
				ShowLegend  bool     `json:"showLegend"`
				Calcs       []string `json:"calcs"`
			} `json:"legend"`
			Calculate *bool `json:"calculate"`
		} `json:"options"`
		FieldConfig struct {
			Defaults struct {
				Unit string `json:"unit"`
			} `json:"defaults"`
			Overrides []struct {
				Matcher struct {
					ID      string `json:"id"`
					Options any    `json:"options"`
				} `json:"matcher"`
				Properties []struct {
					ID    string `json:"id"`
					Value any    `json:"value"`
				} `json:"properties"`
			} `json:"overrides"`
		} `json:"fieldConfig"`
		Targets []struct {
			Expr   string `json:"expr"`
			RefID  string `json:"refId"`
			Format string `json:"format"`
		} `json:"targets"`
	} `json:"panels"`
	Templating struct {
		List []struct {
			Type       string `json:"type"`
			Name       string `json:"name"`
			Query      any    `json:"query"`
			Multi      bool   `json:"multi"`
			IncludeAll bool   `json:"includeAll"`
			AllValue   string `json:"allValue"`
		} `json:"list"`
	} `json:"templating"`
}

// readGenerated reads the committed JSON of every board.
func readGenerated(t *testing.T) map[string]generated {
	t.Helper()
	out := map[string]generated{}
	for _, b := range dashboards.Boards() {
		raw, err := os.ReadFile("json/" + b.UID + ".json")
		if err != nil {
			t.Fatal(err)
		}
		var g generated
		if err := json.Unmarshal(raw, &g); err != nil {
			t.Fatalf("%s: %v", b.UID, err)
		}
		out[b.UID] = g
	}
	return out
}

// parseWithVariables parses a panel query with Grafana's interval
// variables replaced and the label variables ($cluster, $instance,
// $policy) left in their matchers, so tests can see which selector uses
// which variable.
func parseWithVariables(t *testing.T, expr string) parser.Expr {
	t.Helper()
	e, err := parser.NewParser(parser.Options{}).ParseExpr(strings.NewReplacer(
		"$__rate_interval", "1m", "$__interval", "15s", "$__range", "1h").Replace(expr))
	if err != nil {
		t.Fatalf("%q does not parse: %v", expr, err)
	}
	return e
}

// Every time series panel shows its legend: a table with calcs (last, max)
// or a list.
func TestTimeseriesLegendsShown(t *testing.T) {
	for uid, g := range readGenerated(t) {
		for _, p := range g.Panels {
			if p.Type != "timeseries" {
				continue
			}
			l := p.Options.Legend
			switch {
			case l == nil || !l.ShowLegend:
				t.Errorf("%s/%s: legend hidden", uid, p.Title)
			case l.DisplayMode == "table" && len(l.Calcs) == 0:
				t.Errorf("%s/%s: table legend without calcs", uid, p.Title)
			case l.DisplayMode != "table" && l.DisplayMode != "list":
				t.Errorf("%s/%s: legend display mode %q", uid, p.Title, l.DisplayMode)
			}
		}
	}
}

// counted reports whether a query selects a counter or a histogram's
// count: a number of things, not a ratio.
func counted(t *testing.T, expr string) bool {
	found := false
	parser.Inspect(parseWithVariables(t, expr), func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			for _, sfx := range []string{"_total", "_count", "_bucket"} {
				if strings.HasSuffix(vs.Name, sfx) {
					found = true
				}
			}
		}
		return nil
	})
	return found
}

// No panel shows a count in percentunit: a query of a counter in a
// percentunit panel needs an override (by its query) giving it another
// unit.
func TestNoCountInPercentUnit(t *testing.T) {
	for uid, g := range readGenerated(t) {
		for _, p := range g.Panels {
			if p.FieldConfig.Defaults.Unit != "percentunit" {
				continue
			}
			for _, q := range p.Targets {
				if !counted(t, q.Expr) {
					continue
				}
				overridden := false
				for _, o := range p.FieldConfig.Overrides {
					if o.Matcher.ID != "byFrameRefID" || o.Matcher.Options != q.RefID {
						continue
					}
					for _, prop := range o.Properties {
						if prop.ID == "unit" && prop.Value != "percentunit" {
							overridden = true
						}
					}
				}
				if !overridden {
					t.Errorf("%s/%s: %s counts things but is shown in percentunit", uid, p.Title, q.Expr)
				}
			}
		}
	}
}

// Every heatmap is drawn from Prometheus's le buckets, not recalculated:
// targets in heatmap format over sum by (le) (rate(…_bucket[…])).
func TestHeatmapsUseBuckets(t *testing.T) {
	n := 0
	for uid, g := range readGenerated(t) {
		for _, p := range g.Panels {
			if p.Type != "heatmap" {
				continue
			}
			n++
			if p.Options.Calculate == nil || *p.Options.Calculate {
				t.Errorf("%s/%s: heatmap calculates buckets itself", uid, p.Title)
			}
			for _, q := range p.Targets {
				if q.Format != "heatmap" {
					t.Errorf("%s/%s: target %s has format %q, not heatmap", uid, p.Title, q.RefID, q.Format)
				}
				agg, ok := parseWithVariables(t, q.Expr).(*parser.AggregateExpr)
				if !ok || agg.Op != parser.SUM || agg.Without || len(agg.Grouping) != 1 || agg.Grouping[0] != "le" {
					t.Errorf("%s/%s: %s is not sum by (le) (…)", uid, p.Title, q.Expr)
					continue
				}
				call, ok := agg.Expr.(*parser.Call)
				if !ok || call.Func.Name != "rate" {
					t.Errorf("%s/%s: %s does not sum a rate", uid, p.Title, q.Expr)
					continue
				}
				ms, ok := call.Args[0].(*parser.MatrixSelector)
				if !ok || !strings.HasSuffix(ms.VectorSelector.(*parser.VectorSelector).Name, "_bucket") {
					t.Errorf("%s/%s: %s is not a rate of buckets", uid, p.Title, q.Expr)
				}
			}
		}
	}
	if n == 0 {
		t.Fatal("no heatmap")
	}
}

// constantRules are the recorded series with no daemon behind them (an
// objective recorded from vector(…)): they carry no cluster or instance
// label, so no query selects them by one.
func constantRules(t *testing.T) map[string]bool {
	t.Helper()
	groups, errs := rulefmt.ParseFile("../alerts/backupd.rules.yml", false, model.UTF8Validation, parser.NewParser(parser.Options{}), nil)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	out := map[string]bool{}
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			if r.Record == "" {
				continue
			}
			e, err := parser.NewParser(parser.Options{}).ParseExpr(r.Expr)
			if err != nil {
				t.Fatal(err)
			}
			selects := false
			parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
				if _, ok := n.(*parser.VectorSelector); ok {
					selects = true
				}
				return nil
			})
			if !selects {
				out[r.Record] = true
			}
		}
	}
	return out
}

// The instance variable lists the daemons of the chosen clusters, and every
// selector of a daemon's series (exported or recorded; the rules keep
// instance) matches instance=~"$instance" next to cluster=~"$cluster". The
// benchmark's series come from no daemon (TestBenchQueriesSelectToolAndWorkload).
func TestQueriesSelectInstance(t *testing.T) {
	constant := constantRules(t)
	for n := range benchFamilies() {
		constant[n] = true
	}
	for uid, g := range readGenerated(t) {
		found := false
		for _, v := range g.Templating.List {
			if v.Name != "instance" {
				continue
			}
			found = true
			if v.Type != "query" || v.Query != `label_values(backupd_build_info{cluster=~"$cluster"}, instance)` ||
				!v.Multi || !v.IncludeAll || v.AllValue != ".*" {
				t.Errorf("%s: instance variable %+v", uid, v)
			}
		}
		if !found {
			t.Errorf("%s: no instance variable", uid)
		}
		for _, p := range g.Panels {
			for _, q := range p.Targets {
				parser.Inspect(parseWithVariables(t, q.Expr), func(n parser.Node, _ []parser.Node) error {
					vs, ok := n.(*parser.VectorSelector)
					if !ok || constant[vs.Name] {
						return nil
					}
					for _, want := range []string{"cluster", "instance"} {
						ok := false
						for _, m := range vs.LabelMatchers {
							if m.Name == want && m.Type == labels.MatchRegexp && m.Value == "$"+want {
								ok = true
							}
						}
						if !ok {
							t.Errorf("%s/%s: %s does not select %s=~\"$%s\"", uid, p.Title, vs, want, want)
						}
					}
					return nil
				})
			}
		}
	}
}

// A repository's series are reported by every daemon that writes it, so a
// query of one is aggregated by repository (not by instance): one line per
// repository, not one identical line per daemon.
func TestRepositoryQueriesAggregateByRepository(t *testing.T) {
	exported := collectorstest.MetricLabels(t)
	n := 0
	for uid, g := range readGenerated(t) {
		for _, p := range g.Panels {
			for _, q := range p.Targets {
				parser.Inspect(parseWithVariables(t, q.Expr), func(node parser.Node, path []parser.Node) error {
					vs, ok := node.(*parser.VectorSelector)
					if !ok || !exported[vs.Name]["repository"] {
						return nil
					}
					n++
					for _, anc := range path {
						agg, ok := anc.(*parser.AggregateExpr)
						if ok && !agg.Without && slices.Contains(agg.Grouping, "repository") && !slices.Contains(agg.Grouping, "instance") {
							return nil
						}
					}
					t.Errorf("%s/%s: %s is not aggregated by repository", uid, p.Title, vs)
					return nil
				})
			}
		}
	}
	if n == 0 {
		t.Fatal("no query of a repository's series")
	}
}

// Every selector of a benchmark series selects the tool and workload
// variables where the family has those labels (the writer latency also
// keeps the no-backup baseline, tool "none"), and the tool and workload
// variables take their values from a benchmark family.
func TestBenchQueriesSelectToolAndWorkload(t *testing.T) {
	fams := benchFamilies()
	n := 0
	for _, b := range dashboards.Boards() {
		for _, v := range b.Vars {
			e, err := parser.NewParser(parser.Options{}).ParseExpr(strings.TrimSuffix(strings.TrimPrefix(
				strings.Split(v.Query, ", ")[0], "label_values("), ")"))
			if err != nil {
				t.Errorf("%s: variable %s: %q: %v", b.UID, v.Name, v.Query, err)
				continue
			}
			vs, ok := e.(*parser.VectorSelector)
			if !ok || !slices.Contains(fams[vs.Name].Labels, v.Name) {
				t.Errorf("%s: variable %s from %q: not a benchmark family with that label", b.UID, v.Name, v.Query)
			}
		}
		for _, p := range b.Panels {
			for _, q := range p.Queries {
				parser.Inspect(parseWithVariables(t, q.Expr), func(node parser.Node, _ []parser.Node) error {
					vs, ok := node.(*parser.VectorSelector)
					if !ok {
						return nil
					}
					fam, ok := fams[vs.Name]
					if !ok {
						return nil
					}
					n++
					for _, l := range []string{"tool", "workload"} {
						if !slices.Contains(fam.Labels, l) {
							continue
						}
						ok := false
						for _, m := range vs.LabelMatchers {
							ok = ok || (m.Name == l && m.Type == labels.MatchRegexp &&
								(m.Value == "$"+l || (l == "tool" && m.Value == "$tool|"+faults.BaselineTool)))
						}
						if !ok {
							t.Errorf("%s/%s: %s does not select %s=~\"$%s\"", b.UID, p.Title, vs, l, l)
						}
					}
					return nil
				})
			}
		}
	}
	if n == 0 {
		t.Fatal("no query of a benchmark series")
	}
}

// The outcome table shows each rank of backupd_bench_outcome_rank as the
// class bench/faults gives it.
func TestOutcomeMappings(t *testing.T) {
	found := false
	for _, b := range dashboards.Boards() {
		for _, p := range b.Panels {
			if len(p.Mappings) == 0 {
				continue
			}
			found = true
			if len(p.Mappings) != len(faults.Outcomes()) {
				t.Errorf("%s/%s: %d mappings for %d outcome classes", b.UID, p.Title, len(p.Mappings), len(faults.Outcomes()))
			}
			for _, o := range faults.Outcomes() {
				i := slices.IndexFunc(p.Mappings, func(m dashboards.Mapping) bool { return m.Value == strconv.Itoa(o.Rank()) })
				if i < 0 || p.Mappings[i].Text != o.Label() {
					t.Errorf("%s/%s: rank %d (%s) is not shown as %q", b.UID, p.Title, o.Rank(), o, o.Label())
				}
			}
		}
	}
	if !found {
		t.Fatal("no panel maps outcome ranks")
	}
}
