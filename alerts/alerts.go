// Package alerts holds the SLOs of docs/DESIGN.md §5 as a small spec and generates
// from it the Prometheus recording and alerting rules (and the same groups as
// a prometheus-operator PrometheusRule). The spec is policy-agnostic: every
// objective comes from a metric (backupd_policy_rpo_seconds,
// backupd_policy_rto_seconds, backupd_policy_drill_interval_seconds), so the
// rules hard-code no per-policy threshold, and they avoid `le` selectors so
// they hold on Prometheus 2.x and 3.x. Aggregations and one-to-one matches
// keep the cluster label next to job, instance and policy, so the recorded
// series of several clusters (seen through Thanos or federation with an
// external cluster label) stay apart; where series carry no cluster label it
// is simply absent.
//
// Rare events: backups run a few times an hour, so a short window is often
// 0/0. Ratios of 0/0 are NaN and compare false: a quiet window never alerts,
// and burn-rate alerts pair a long window with a shorter one (never 5m/1h
// alone).
//
// Imports: the standard library and YAML only. It must not import engine
// (backupd/...), collectors/ or exporter/ code: the rules are generated from
// this spec and metric names alone (its tests may use
// collectors/collectorstest to check those names; docs/DESIGN.md §2.3).
package alerts

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// SLO is one objective over 28 days.
type SLO struct {
	Name        string // slo label value
	Description string
	Objective   float64 // e.g. 0.99
	// ErrorRatio returns the SLI's error ratio over a range (e.g. "2h").
	ErrorRatio func(window string) string
	// Burn are the conditions of the SLO's error-budget burn alert, any
	// of which fires it; each window must be one of Windows.
	Burn []BurnRate
}

// BurnRate is one condition of a multiwindow burn-rate alert: the error
// ratio over both the Long and the Short window is above Factor times the
// error budget. The short window makes the alert stop soon after the
// errors do.
type BurnRate struct {
	Long, Short string
	Factor      float64
}

// ErrorBudget is the share of errors the objective allows.
func (s SLO) ErrorBudget() float64 { return 1 - s.Objective }

// budgetPercent is the error budget for people, e.g. "1%" (rounded to
// 4 decimals, which hides the float error of 1 - 0.99).
func (s SLO) budgetPercent() string {
	return strconv.FormatFloat(math.Round(s.ErrorBudget()*100*1e4)/1e4, 'f', -1, 64) + "%"
}

// sloNamed returns the SLO of the spec with this name.
func sloNamed(name string) (SLO, error) {
	for _, s := range SLOs {
		if s.Name == name {
			return s, nil
		}
	}
	return SLO{}, fmt.Errorf("alerts: no SLO %q in the spec", name)
}

// Windows are the ranges recording rules are kept for: the burn-rate alert
// pairs (2h/1d, 6h/3d) and the 28-day budget.
var Windows = []string{"2h", "6h", "1d", "3d", "28d"}

// SLOs is the spec (docs/DESIGN.md §5).
var SLOs = []SLO{
	{
		Name: "backup-success", Objective: 0.99,
		Description: "99% of backup runs succeed",
		ErrorRatio: func(w string) string {
			return fmt.Sprintf(`sum by (cluster, job, instance, policy) (increase(backupd_backup_failures_total[%s]))
/
sum by (cluster, job, instance, policy) (increase(backupd_backup_runs_total[%s]))`, w, w)
		},
		// At these rates the 28-day budget is spent in 10 days (28d/2.8)
		// or in 30 (28d/0.93).
		Burn: []BurnRate{{Long: "1d", Short: "2h", Factor: 2.8}, {Long: "3d", Short: "6h", Factor: 0.93}},
	},
	{
		Name: "rpo-freshness", Objective: 0.999,
		Description: "99.9% of the time the newest good snapshot is younger than the policy's RPO",
		ErrorRatio: func(w string) string {
			return fmt.Sprintf(`1 - avg_over_time(backupd:rpo_compliant:bool[%s])`, w)
		},
	},
	{
		Name: "recoverability", Objective: 0.95,
		Description: "95% of restore drills succeed, byte-exact, within the RTO",
		ErrorRatio: func(w string) string {
			return fmt.Sprintf(`1 - (
  sum by (cluster, job, instance, policy) (increase(backupd_restore_drills_within_rto_total[%s]))
/
  sum by (cluster, job, instance, policy) (increase(backupd_restore_runs_total{kind="drill"}[%s]))
)`, w, w)
		},
	},
}

// Rule is one recording or alerting rule, in rule-file order.
type Rule struct {
	Record      string            `yaml:"record,omitempty"`
	Alert       string            `yaml:"alert,omitempty"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for,omitempty"`
	Labels      map[string]string `yaml:"labels,omitempty"`
	Annotations map[string]string `yaml:"annotations,omitempty"`
}

// Group is a rule group.
type Group struct {
	Name     string `yaml:"name"`
	Interval string `yaml:"interval,omitempty"`
	Rules    []Rule `yaml:"rules"`
}

// Options parameterize the generated rules (alerts/cmd/genrules takes them
// as flags).
type Options struct {
	// Job is the scrape job of backupd: BackupdDown, BackupdRestoreDrillStale
	// and BackupdVerifyCoverageStale select up and process_start_time_seconds
	// by it (the other rules select backupd's own metrics, whatever job
	// scrapes them).
	Job string
	// RunbookBase prefixes runbook anchors.
	RunbookBase string
	// Namespace is the PrometheusRule's metadata.namespace; empty leaves it
	// out, so kubectl apply -n decides. It must be one the Prometheus's
	// ruleNamespaceSelector selects.
	Namespace string
	// Labels are the PrometheusRule's metadata labels, which the
	// Prometheus's ruleSelector must match: kube-prometheus selects
	// prometheus=k8s and role=alert-rules, kube-prometheus-stack its
	// release label (release=<Helm release>).
	Labels map[string]string
}

// DefaultOptions are those of the committed rule files.
var DefaultOptions = Options{
	Job:         "backupd",
	RunbookBase: "https://github.com/meshbackup/backupd/blob/main/alerts/runbooks.md",
	Labels:      map[string]string{"app.kubernetes.io/name": "backupd", "prometheus": "k8s", "role": "alert-rules"},
}

// check refuses options no rule can be made of.
func (o Options) check() error {
	if o.Job == "" {
		return fmt.Errorf("alerts: no job")
	}
	for k := range o.Labels {
		if k == "" {
			return fmt.Errorf("alerts: a PrometheusRule label without a name")
		}
	}
	return nil
}

// jobSelector is the label matcher of backupd's scrape job.
func (o Options) jobSelector() string { return "job=" + strconv.Quote(o.Job) }

func (o Options) runbook(alert string) string {
	return o.RunbookBase + "#" + strings.ToLower(alert)
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
