// Package alerts holds the SLOs of docs/DESIGN.md §5 as a small spec and generates
// from it the Prometheus recording and alerting rules (and the same groups as
// a prometheus-operator PrometheusRule). The spec is policy-agnostic: every
// objective comes from a metric (backupd_policy_rpo_seconds,
// backupd_policy_rto_seconds, backupd_policy_drill_interval_seconds), so the
// rules hard-code no per-policy threshold, and they avoid `le` selectors so
// they hold on Prometheus 2.x and 3.x.
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
	"strings"
)

// SLO is one objective over 28 days.
type SLO struct {
	Name        string // slo label value
	Description string
	Objective   float64 // e.g. 0.99
	// ErrorRatio returns the SLI's error ratio over a range (e.g. "2h").
	ErrorRatio func(window string) string
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
			return fmt.Sprintf(`sum by (job, instance, policy) (increase(backupd_backup_failures_total[%s]))
/
sum by (job, instance, policy) (increase(backupd_backup_runs_total[%s]))`, w, w)
		},
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
  sum by (job, instance, policy) (increase(backupd_restore_drills_within_rto_total[%s]))
/
  sum by (job, instance, policy) (increase(backupd_restore_runs_total{kind="drill"}[%s]))
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

// Options parameterize the generated rules.
type Options struct {
	// Job is the scrape job of backupd, for BackupdDown.
	Job string
	// RunbookBase prefixes runbook anchors.
	RunbookBase string
}

// DefaultOptions are those of the committed rule files.
var DefaultOptions = Options{
	Job:         "backupd",
	RunbookBase: "https://github.com/meshbackup/backupd/blob/main/alerts/runbooks.md",
}

func (o Options) runbook(alert string) string {
	return o.RunbookBase + "#" + strings.ToLower(alert)
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// Groups generates the rule groups.
func Groups(o Options) []Group {
	rec := Group{Name: "backupd-slo-recording"}
	rec.Rules = append(rec.Rules, Rule{
		Record: "backupd:rpo_compliant:bool",
		Expr: oneLine(`(time() - backupd_last_backup_success_timestamp_seconds)
<= bool on (job, instance, policy) backupd_policy_rpo_seconds`),
	})
	for _, s := range SLOs {
		for _, w := range Windows {
			rec.Rules = append(rec.Rules, Rule{
				Record: "slo:sli_error:ratio_rate" + w,
				Expr:   s.ErrorRatio(w),
				Labels: map[string]string{"slo": s.Name},
			})
		}
		rec.Rules = append(rec.Rules,
			Rule{Record: "slo:objective:ratio", Expr: fmt.Sprintf("vector(%g)", s.Objective), Labels: map[string]string{"slo": s.Name}},
			Rule{
				Record: "slo:error_budget_remaining:ratio",
				Expr:   fmt.Sprintf(`1 - (slo:sli_error:ratio_rate28d{slo="%s"} / %g)`, s.Name, 1-s.Objective),
				Labels: map[string]string{"slo": s.Name},
			})
	}

	ann := func(alert, summary, desc string) map[string]string {
		return map[string]string{"summary": summary, "description": desc, "runbook_url": o.runbook(alert)}
	}
	budget := 1 - SLOs[0].Objective
	al := Group{Name: "backupd-alerts"}
	al.Rules = []Rule{
		{
			Alert:       "BackupdDown",
			Expr:        fmt.Sprintf(`up{job="%s"} == 0 or absent(up{job="%s"})`, o.Job, o.Job),
			For:         "5m",
			Labels:      map[string]string{"severity": "page"},
			Annotations: ann("BackupdDown", "backupd is down or not scraped", `backupd target {{ $labels.instance }} of job {{ $labels.job }} has been unreachable for 5 minutes (or no target exists): no backups, drills or verification are being reported.`),
		},
		{
			Alert:       "BackupRPOBreached",
			Expr:        `backupd:rpo_compliant:bool == 0`,
			Labels:      map[string]string{"severity": "page"},
			Annotations: ann("BackupRPOBreached", "Newest good backup of {{ $labels.policy }} is older than its RPO", `The newest good snapshot of policy {{ $labels.policy }} on {{ $labels.instance }} is {{ with printf "time() - backupd_last_backup_success_timestamp_seconds{policy='%s',instance='%s'}" $labels.policy $labels.instance | query }}{{ . | first | value | humanizeDuration }}{{ end }} old, over the RPO of {{ with printf "backupd_policy_rpo_seconds{policy='%s',instance='%s'}" $labels.policy $labels.instance | query }}{{ . | first | value | humanizeDuration }}{{ end }}. Data written since then would be lost.`),
		},
		{
			Alert:       "BackupFailing",
			Expr:        `backupd_backup_consecutive_failures >= 3`,
			Labels:      map[string]string{"severity": "page"},
			Annotations: ann("BackupFailing", "Backups of {{ $labels.policy }} failed {{ $value }} times in a row", `The last {{ $value }} backup runs of policy {{ $labels.policy }} on {{ $labels.instance }} failed. See backupd_backup_failures_total by reason and the daemon's log.`),
		},
		{
			Alert: "BackupErrorBudgetBurn",
			Expr: oneLine(fmt.Sprintf(`(
  slo:sli_error:ratio_rate1d{slo="backup-success"} > (2.8 * %g)
and
  slo:sli_error:ratio_rate2h{slo="backup-success"} > (2.8 * %g)
)
or
(
  slo:sli_error:ratio_rate3d{slo="backup-success"} > (0.93 * %g)
and
  slo:sli_error:ratio_rate6h{slo="backup-success"} > (0.93 * %g)
)`, budget, budget, budget, budget)),
			Labels:      map[string]string{"severity": "ticket"},
			Annotations: ann("BackupErrorBudgetBurn", "Backups of {{ $labels.policy }} burn their error budget", `Policy {{ $labels.policy }} on {{ $labels.instance }}: {{ $value | humanizePercentage }} of backup runs failed over the alert's window; at this rate the 28-day budget of 1% failures runs out early.`),
		},
		{
			Alert:       "RestoreDrillFailing",
			Expr:        `backupd_last_restore_drill_timestamp_seconds > backupd_last_restore_drill_success_timestamp_seconds`,
			Labels:      map[string]string{"severity": "page"},
			Annotations: ann("RestoreDrillFailing", "The last restore drill of {{ $labels.policy }} failed", `The last restore drill of policy {{ $labels.policy }} on {{ $labels.instance }} did not restore byte-exact within the RTO of {{ with printf "backupd_policy_rto_seconds{policy='%s',instance='%s'}" $labels.policy $labels.instance | query }}{{ . | first | value | humanizeDuration }}{{ end }}. The newest backup may not be restorable in time.`),
		},
		{
			Alert: "RestoreDrillStale",
			// A policy that never had a good drill (gauge 0) only counts
			// once the daemon has been up for three drill intervals.
			Expr: oneLine(`(time() - backupd_last_restore_drill_success_timestamp_seconds)
  > on (job, instance, policy) (3 * backupd_policy_drill_interval_seconds)
and on (job, instance, policy)
(
  backupd_last_restore_drill_success_timestamp_seconds > 0
  or on (job, instance, policy)
  (3 * backupd_policy_drill_interval_seconds
    < on (job, instance) group_left () (time() - process_start_time_seconds{job="` + o.Job + `"}))
)`),
			Labels:      map[string]string{"severity": "ticket"},
			Annotations: ann("RestoreDrillStale", "No successful restore drill of {{ $labels.policy }} for three drill intervals", `Policy {{ $labels.policy }} on {{ $labels.instance }} has had no successful drill for {{ $value | humanizeDuration }}: recoverability is unproven.`),
		},
		{
			Alert:       "RepositoryCorruption",
			Expr:        `increase(backupd_verify_blobs_corrupt_total[1d]) > 0`,
			Labels:      map[string]string{"severity": "page"},
			Annotations: ann("RepositoryCorruption", "Corrupt data found in repository {{ $labels.repository }}", `Read-back found {{ $value | humanize }} corrupt blobs in repository {{ $labels.repository }} on {{ $labels.instance }} in the last day. Snapshots referring to them cannot be fully restored.`),
		},
		{
			Alert: "VerifyCoverageStale",
			Expr: oneLine(`(time() - backupd_last_verify_success_timestamp_seconds) > 7 * 86400
and on (job, instance) (time() - process_start_time_seconds{job="` + o.Job + `"}) > 7 * 86400`),
			Labels:      map[string]string{"severity": "ticket"},
			Annotations: ann("VerifyCoverageStale", "Repository {{ $labels.repository }} has not been read back for 7 days", `No verify run of repository {{ $labels.repository }} on {{ $labels.instance }} succeeded for {{ $value | humanizeDuration }}: bit rot would go unnoticed.`),
		},
		{
			Alert: "RepositoryFillingUp",
			Expr: oneLine(`predict_linear(backupd_repository_free_bytes[6h], 4 * 86400) < 0
and backupd_repository_free_bytes / (backupd_repository_free_bytes + backupd_repository_size_bytes) < 0.2`),
			For:         "1h",
			Labels:      map[string]string{"severity": "ticket"},
			Annotations: ann("RepositoryFillingUp", "Repository {{ $labels.repository }} fills up within 4 days", `At the growth of the last 6 hours, the file system of repository {{ $labels.repository }} on {{ $labels.instance }} is full within 4 days; {{ with printf "backupd_repository_free_bytes{repository='%s',instance='%s'}" $labels.repository $labels.instance | query }}{{ . | first | value | humanize1024 }}B{{ end }} are free.`),
		},
	}
	return []Group{rec, al}
}
