package alerts

import (
	"fmt"
	"strings"
)

// Groups generates the rule groups.
func Groups(o Options) ([]Group, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	al, err := alertGroup(o)
	if err != nil {
		return nil, err
	}
	return []Group{recordingGroup(), al}, nil
}

// recordingGroup records RPO compliance and, per SLO, its error ratio over
// each of Windows, its objective and the budget left.
func recordingGroup() Group {
	rec := Group{Name: "backupd-slo-recording"}
	rec.Rules = append(rec.Rules, Rule{
		Record: "backupd:rpo_compliant:bool",
		Expr: oneLine(`(time() - backupd_last_backup_success_timestamp_seconds)
<= bool on (cluster, job, instance, policy) backupd_policy_rpo_seconds`),
	})
	for _, s := range SLOs {
		rec.Rules = append(rec.Rules, sloRecordingRules(s)...)
	}
	return rec
}

// sloRecordingRules are the recording rules of one SLO.
func sloRecordingRules(s SLO) []Rule {
	label := func() map[string]string { return map[string]string{"slo": s.Name} }
	var rules []Rule
	for _, w := range Windows {
		rules = append(rules, Rule{Record: "slo:sli_error:ratio_rate" + w, Expr: s.ErrorRatio(w), Labels: label()})
	}
	return append(rules,
		Rule{Record: "slo:objective:ratio", Expr: fmt.Sprintf("vector(%g)", s.Objective), Labels: label()},
		Rule{
			Record: "slo:error_budget_remaining:ratio",
			Expr:   fmt.Sprintf(`1 - (slo:sli_error:ratio_rate28d{slo="%s"} / %g)`, s.Name, s.ErrorBudget()),
			Labels: label(),
		})
}

// alertGroup holds the alerts, in rule-file order.
func alertGroup(o Options) (Group, error) {
	backups, err := sloNamed("backup-success")
	if err != nil {
		return Group{}, err
	}
	return Group{Name: "backupd-alerts", Rules: []Rule{
		backupdDown(o),
		backupRPOBreached(o),
		backupFailing(o),
		backupIncomplete(o),
		backupErrorBudgetBurn(o, backups),
		restoreDrillFailing(o),
		restoreDrillStale(o),
		repositoryCorruption(o),
		verifyCoverageStale(o),
		repositoryFillingUp(o),
	}}, nil
}

// annotations are an alert's: summary is static text (one line that
// groups and dedupes well in notifications); the values (policy,
// repository, instance, ages, counts) go in description.
func (o Options) annotations(alert, summary, desc string) map[string]string {
	return map[string]string{"summary": summary, "description": desc, "runbook_url": o.runbook(alert)}
}

// Severities are those of kube-prometheus and the mixins, which its
// Alertmanager routes on: an alert that pages (wake someone now) is
// critical, one that makes a ticket (the next working day) is warning.
// info is not used.
const (
	severityPage   = "critical"
	severityTicket = "warning"
)

func page() map[string]string   { return map[string]string{"severity": severityPage} }
func ticket() map[string]string { return map[string]string{"severity": severityTicket} }

func backupdDown(o Options) Rule {
	return Rule{
		Alert:       "BackupdDown",
		Expr:        fmt.Sprintf(`up{%s} == 0 or absent(up{%s})`, o.jobSelector(), o.jobSelector()),
		For:         "5m",
		Labels:      page(),
		Annotations: o.annotations("BackupdDown", "backupd is down or not scraped", `backupd target {{ $labels.instance }} of job {{ $labels.job }} has been unreachable for 5 minutes (or no target exists): no backups, drills or verification are being reported.`),
	}
}

func backupRPOBreached(o Options) Rule {
	return Rule{
		Alert:       "BackupdRPOBreached",
		Expr:        `backupd:rpo_compliant:bool == 0`,
		Labels:      page(),
		Annotations: o.annotations("BackupdRPOBreached", "The newest good backup of a policy is older than its RPO", `The newest good snapshot of policy {{ $labels.policy }} on {{ $labels.instance }} is {{ with printf "time() - backupd_last_backup_success_timestamp_seconds{cluster='%s',instance='%s',policy='%s'}" $labels.cluster $labels.instance $labels.policy | query }}{{ . | first | value | humanizeDuration }}{{ end }} old, over the RPO of {{ with printf "backupd_policy_rpo_seconds{cluster='%s',instance='%s',policy='%s'}" $labels.cluster $labels.instance $labels.policy | query }}{{ . | first | value | humanizeDuration }}{{ end }}. Data written since then would be lost.`),
	}
}

func backupFailing(o Options) Rule {
	return Rule{
		Alert:       "BackupdBackupFailing",
		Expr:        `backupd_backup_consecutive_failures >= 3`,
		Labels:      page(),
		Annotations: o.annotations("BackupdBackupFailing", "Backups of a policy failed three or more times in a row", `The last {{ $value }} backup runs of policy {{ $labels.policy }} on {{ $labels.instance }} failed. See backupd_backup_failures_total by reason and the daemon's log.`),
	}
}

// backupIncomplete fires while the last completed backup of a policy lacks
// files it could not read; the next complete backup resolves it.
func backupIncomplete(o Options) Rule {
	return Rule{
		Alert:       "BackupdBackupIncomplete",
		Expr:        `backupd_last_backup_unreadable_files > 0`,
		Labels:      ticket(),
		Annotations: o.annotations("BackupdBackupIncomplete", "The last backup of a policy is missing files it could not read", `The last backup of policy {{ $labels.policy }} on {{ $labels.instance }} saved its snapshot without {{ $value }} files it could not read (permissions, I/O errors). Those files are only in older snapshots; retention keeps them until a complete backup. See the daemon's log for the paths.`),
	}
}

// backupErrorBudgetBurn fires when backups burn the error budget of s at
// one of its burn rates.
func backupErrorBudgetBurn(o Options, s SLO) Rule {
	return Rule{
		Alert:  "BackupdBackupErrorBudgetBurn",
		Expr:   burnExpr(s),
		Labels: ticket(),
		Annotations: o.annotations("BackupdBackupErrorBudgetBurn", "Backups of a policy burn their error budget too fast",
			`Policy {{ $labels.policy }} on {{ $labels.instance }}: {{ $value | humanizePercentage }} of backup runs failed over the alert's window; at this rate the 28-day budget of `+s.budgetPercent()+` failures runs out early.`),
	}
}

// burnExpr is true where any of the SLO's burn rates holds over both its
// windows.
func burnExpr(s SLO) string {
	above := func(w string, factor float64) string {
		return fmt.Sprintf(`slo:sli_error:ratio_rate%s{slo="%s"} > (%g * %g)`, w, s.Name, factor, s.ErrorBudget())
	}
	conds := make([]string, len(s.Burn))
	for i, b := range s.Burn {
		conds[i] = "(\n  " + above(b.Long, b.Factor) + "\nand\n  " + above(b.Short, b.Factor) + "\n)"
	}
	return oneLine(strings.Join(conds, "\nor\n"))
}

func restoreDrillFailing(o Options) Rule {
	return Rule{
		Alert:       "BackupdRestoreDrillFailing",
		Expr:        `backupd_last_restore_drill_timestamp_seconds > backupd_last_restore_drill_success_timestamp_seconds`,
		Labels:      page(),
		Annotations: o.annotations("BackupdRestoreDrillFailing", "The last restore drill of a policy failed", `The last restore drill of policy {{ $labels.policy }} on {{ $labels.instance }} did not restore byte-exact within the RTO of {{ with printf "backupd_policy_rto_seconds{cluster='%s',instance='%s',policy='%s'}" $labels.cluster $labels.instance $labels.policy | query }}{{ . | first | value | humanizeDuration }}{{ end }}. The newest backup may not be restorable in time.`),
	}
}

func restoreDrillStale(o Options) Rule {
	return Rule{
		Alert: "BackupdRestoreDrillStale",
		// A policy that never had a good drill (gauge 0) only counts
		// once the daemon has been up for three drill intervals.
		Expr: oneLine(`(time() - backupd_last_restore_drill_success_timestamp_seconds)
  > on (cluster, job, instance, policy) (3 * backupd_policy_drill_interval_seconds)
and on (cluster, job, instance, policy)
(
  backupd_last_restore_drill_success_timestamp_seconds > 0
  or on (cluster, job, instance, policy)
  (3 * backupd_policy_drill_interval_seconds
    < on (cluster, job, instance) group_left () (time() - process_start_time_seconds{` + o.jobSelector() + `}))
)`),
		Labels:      ticket(),
		Annotations: o.annotations("BackupdRestoreDrillStale", "No successful restore drill of a policy for three drill intervals", `Policy {{ $labels.policy }} on {{ $labels.instance }} has had no successful drill for {{ $value | humanizeDuration }}: recoverability is unproven.`),
	}
}

func repositoryCorruption(o Options) Rule {
	return Rule{
		Alert:       "BackupdRepositoryCorruption",
		Expr:        `increase(backupd_verify_blobs_corrupt_total[1d]) > 0`,
		Labels:      page(),
		Annotations: o.annotations("BackupdRepositoryCorruption", "Corrupt data found in a repository", `Read-back found {{ $value | humanize }} corrupt blobs in repository {{ $labels.repository }} on {{ $labels.instance }} in the last day. Snapshots referring to them cannot be fully restored.`),
	}
}

func verifyCoverageStale(o Options) Rule {
	return Rule{
		Alert: "BackupdVerifyCoverageStale",
		Expr: oneLine(`(time() - backupd_last_verify_success_timestamp_seconds) > 7 * 86400
and on (cluster, job, instance) (time() - process_start_time_seconds{` + o.jobSelector() + `}) > 7 * 86400`),
		Labels:      ticket(),
		Annotations: o.annotations("BackupdVerifyCoverageStale", "A repository has not been read back for 7 days", `No verify run of repository {{ $labels.repository }} on {{ $labels.instance }} succeeded for {{ $value | humanizeDuration }}: bit rot would go unnoticed.`),
	}
}

func repositoryFillingUp(o Options) Rule {
	return Rule{
		Alert: "BackupdRepositoryFillingUp",
		Expr: oneLine(`predict_linear(backupd_repository_free_bytes[6h], 4 * 86400) < 0
and backupd_repository_free_bytes / (backupd_repository_free_bytes + backupd_repository_size_bytes) < 0.2`),
		For:         "1h",
		Labels:      ticket(),
		Annotations: o.annotations("BackupdRepositoryFillingUp", "A repository fills up within 4 days", `At the growth of the last 6 hours, the file system of repository {{ $labels.repository }} on {{ $labels.instance }} is full within 4 days; {{ with printf "backupd_repository_free_bytes{cluster='%s',instance='%s',repository='%s'}" $labels.cluster $labels.instance $labels.repository | query }}{{ . | first | value | humanize1024 }}B{{ end }} are free.`),
	}
}
