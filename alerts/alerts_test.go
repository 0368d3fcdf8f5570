package alerts_test

import (
	"bytes"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/meshbackup/backupd/alerts"
	"github.com/meshbackup/backupd/collectors/collectorstest"
)

const (
	rulesPath = "backupd.rules.yml"
	crPath    = "../deploy/kubernetes/backupd-prometheusrule.yaml"
)

// The committed files are what the generator makes (make alerts).
func TestGeneratedFilesAreCurrent(t *testing.T) {
	for _, tc := range []struct {
		path string
		gen  func(alerts.Options) ([]byte, error)
	}{
		{rulesPath, alerts.RuleFile},
		{crPath, alerts.PrometheusRule},
	} {
		want, err := tc.gen(alerts.DefaultOptions)
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(tc.path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is stale: run make alerts", tc.path)
		}
	}
}

// Every burn-rate window of the spec is one the recording rules keep, and
// every SLO name is used once (the alerts look SLOs up by name).
func TestSpecBurnWindowsAreRecorded(t *testing.T) {
	names := map[string]bool{}
	for _, s := range alerts.SLOs {
		if names[s.Name] {
			t.Errorf("SLO %s defined twice", s.Name)
		}
		names[s.Name] = true
		for _, b := range s.Burn {
			if !slices.Contains(alerts.Windows, b.Long) || !slices.Contains(alerts.Windows, b.Short) {
				t.Errorf("SLO %s: burn rate %+v uses a window not in Windows %v", s.Name, b, alerts.Windows)
			}
			if b.Factor <= 0 {
				t.Errorf("SLO %s: burn rate %+v has no factor", s.Name, b)
			}
		}
	}
}

func promqlParser() parser.Parser { return parser.NewParser(parser.Options{}) }

// The rule file is valid for Prometheus's own loader, every expression
// parses, every alert is named Backupd… and carries severity, a static
// summary, description and a runbook anchor that exists, and no expression
// selects on `le`.
func TestRulesValidate(t *testing.T) {
	groups, errs := rulefmt.ParseFile(rulesPath, false, model.UTF8Validation, promqlParser(), nil)
	if len(errs) > 0 {
		t.Fatalf("rulefmt: %v", errs)
	}
	runbook, err := os.ReadFile("runbooks.md")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			expr, err := promqlParser().ParseExpr(r.Expr)
			if err != nil {
				t.Fatalf("%s%s: %v", r.Record, r.Alert, err)
			}
			parser.Inspect(expr, func(node parser.Node, _ []parser.Node) error {
				if vs, ok := node.(*parser.VectorSelector); ok {
					for _, m := range vs.LabelMatchers {
						if m.Name == "le" {
							t.Errorf("%s%s selects on le (breaks between Prometheus 2 and 3)", r.Record, r.Alert)
						}
					}
				}
				return nil
			})
			if r.Alert == "" {
				continue
			}
			n++
			// Mixins name their alerts after the component, so a
			// kube-prometheus Alertmanager config can route on it.
			if !strings.HasPrefix(r.Alert, "Backupd") {
				t.Errorf("%s: alert name lacks the Backupd prefix", r.Alert)
			}
			// The severities kube-prometheus routes on (critical pages,
			// warning is a ticket); page and ticket would reach no receiver.
			if !slices.Contains([]string{"critical", "warning"}, r.Labels["severity"]) {
				t.Errorf("%s: severity %q", r.Alert, r.Labels["severity"])
			}
			for _, a := range []string{"summary", "description", "runbook_url"} {
				if r.Annotations[a] == "" {
					t.Errorf("%s: no %s", r.Alert, a)
				}
			}
			// A summary is static: the same text for every instance,
			// policy and value (those go in description), so
			// notifications group and read alike.
			if strings.Contains(r.Annotations["summary"], "{{") {
				t.Errorf("%s: summary %q is a template; put values in description", r.Alert, r.Annotations["summary"])
			}
			// The runbook says what the severity means (page or ticket).
			if sec, ok := runbookSection(runbook, r.Alert); ok && !strings.Contains(sec, "**Severity:** `"+r.Labels["severity"]+"`") {
				t.Errorf("%s: runbook section does not give severity %s", r.Alert, r.Labels["severity"])
			}
			anchor := "#" + strings.ToLower(r.Alert)
			if !strings.HasSuffix(r.Annotations["runbook_url"], anchor) || !bytes.Contains(runbook, []byte("## "+r.Alert+"\n")) {
				t.Errorf("%s: runbook anchor %s missing from runbooks.md", r.Alert, anchor)
			}
		}
	}
	if n < 9 {
		t.Fatalf("only %d alerts", n)
	}
}

// runbookSection is the text of the runbook section of an alert, up to the
// next heading.
func runbookSection(runbook []byte, alert string) (string, bool) {
	_, sec, ok := strings.Cut(string(runbook), "\n## "+alert+"\n")
	if !ok {
		return "", false
	}
	sec, _, _ = strings.Cut(sec, "\n## ")
	return sec, true
}

// Every metric a rule names is one the exporter registers (read from a live
// registry, not a list), a recording rule, or Prometheus's own.
func TestRulesUseExportedMetrics(t *testing.T) {
	known := collectorstest.MetricNames(t)
	groups, errs := rulefmt.ParseFile(rulesPath, false, model.UTF8Validation, promqlParser(), nil)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			if r.Record != "" {
				known[r.Record] = true
			}
		}
	}
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			expr, _ := promqlParser().ParseExpr(r.Expr)
			parser.Inspect(expr, func(node parser.Node, _ []parser.Node) error {
				if vs, ok := node.(*parser.VectorSelector); ok && vs.Name != "" && !known[vs.Name] {
					t.Errorf("%s%s uses %s, which nothing exports", r.Record, r.Alert, vs.Name)
				}
				return nil
			})
		}
	}
}

// promtool's unit tests: every alert firing and not firing, and the edge
// cases. promtool is installed by make test (scripts/install-tools.sh).
func TestPromtoolUnitTests(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool is not installed: run ./scripts/install-tools.sh prometheus (make test does)")
	}
	files, _ := filepath.Glob("tests/*.yml")
	if len(files) == 0 {
		t.Fatal("no promtool tests")
	}
	out, err := exec.Command(promtool, append([]string{"test", "rules"}, files...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
	out, err = exec.Command(promtool, "check", "rules", rulesPath).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
}

// Another job, namespace and labels change exactly their places: the job
// selector of the three rules that select on it (up and
// process_start_time_seconds), and the PrometheusRule's metadata; nothing
// else of either file.
func TestOptionsChangeOnlyTheirPlaces(t *testing.T) {
	o := alerts.DefaultOptions
	o.Job, o.Namespace = "backupd-prod", "monitoring"
	o.Labels = maps.Clone(o.Labels)
	o.Labels["release"] = "kube-prometheus-stack"

	def, err := alerts.Groups(alerts.DefaultOptions)
	if err != nil {
		t.Fatal(err)
	}
	got, err := alerts.Groups(o)
	if err != nil {
		t.Fatal(err)
	}
	var changed []string
	for i, g := range got {
		for j, r := range g.Rules {
			d := def[i].Rules[j]
			if reflect.DeepEqual(r, d) {
				continue
			}
			changed = append(changed, r.Alert+r.Record)
			r.Expr = strings.ReplaceAll(r.Expr, `job="backupd-prod"`, `job="backupd"`)
			if !reflect.DeepEqual(r, d) {
				t.Errorf("%s: changed beyond its job selector:\n%+v\n%+v", r.Alert+r.Record, r, d)
			}
		}
	}
	if want := []string{"BackupdDown", "BackupdRestoreDrillStale", "BackupdVerifyCoverageStale"}; !slices.Equal(changed, want) {
		t.Errorf("the job changed %v, want %v", changed, want)
	}

	// The files: the rule file differs only in job selectors, the
	// PrometheusRule also in its namespace and the added label, line by line.
	for _, tc := range []struct {
		name  string
		gen   func(alerts.Options) ([]byte, error)
		extra []string
	}{
		{"rule file", alerts.RuleFile, nil},
		{"PrometheusRule", alerts.PrometheusRule, []string{"  namespace: monitoring", "    release: kube-prometheus-stack"}},
	} {
		d, err := tc.gen(alerts.DefaultOptions)
		if err != nil {
			t.Fatal(err)
		}
		g, err := tc.gen(o)
		if err != nil {
			t.Fatal(err)
		}
		var lines []string
		found := map[string]bool{}
		for _, l := range strings.Split(string(g), "\n") {
			if slices.Contains(tc.extra, l) {
				found[l] = true
				continue
			}
			lines = append(lines, strings.ReplaceAll(l, `job="backupd-prod"`, `job="backupd"`))
		}
		if strings.Join(lines, "\n") != string(d) {
			t.Errorf("%s: changed beyond the job, namespace and labels:\n%s", tc.name, g)
		}
		if len(found) != len(tc.extra) {
			t.Errorf("%s: lacks some of %q:\n%s", tc.name, tc.extra, g)
		}
		if n, m := strings.Count(string(g), `job="backupd-prod"`), strings.Count(string(d), `job="backupd"`); n != m || n == 0 {
			t.Errorf("%s: %d job selectors of the new job, %d of the default", tc.name, n, m)
		}
	}
}
