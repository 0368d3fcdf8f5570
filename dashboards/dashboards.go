//lint:file-ignore SA1019 Grafana provisions files and sidecar ConfigMaps in the v1 dashboard schema; dashboardv2 needs Grafana 12 and its v2 API.

// Package dashboards generates backupd's Grafana dashboards with
// grafana-foundation-sdk: an SLO overview, an operations board and a
// fault-tolerance board. Every panel has a description, a unit and
// thresholds; every query is PromQL over metrics the exporter registers,
// the SLO rules record, or the fault benchmark writes (the backupd_bench_*
// families of bench/faults, loaded from its faults.om). Variables:
// datasource, cluster, instance (the daemons; every query of a daemon's
// series selects on it), namespace (the Kubernetes namespaces of the node
// agents' volumes, from backupd_volume_info) and policy (those of the
// chosen namespaces, and every policy of a daemon outside Kubernetes); the
// fault-tolerance board adds tool and workload for the benchmark's series.
// The SLO overview has a table per PersistentVolumeClaim.
//
// Imports: grafana-foundation-sdk and YAML. It must not import engine
// (backupd/...), collectors/ or exporter/ code (its tests may use
// collectors/collectorstest to check metric names; docs/DESIGN.md §2.3).
package dashboards

import (
	"fmt"

	"github.com/grafana/grafana-foundation-sdk/go/bargauge"
	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/variants"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/heatmap"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/table"
	"github.com/grafana/grafana-foundation-sdk/go/text"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
)

// Query is one panel query.
type Query struct {
	Expr    string
	Legend  string
	Instant bool
	// Table asks for the table format (one row per series, a Value
	// column), for a table panel's transformations.
	Table bool
}

// Panel is the spec of one panel.
type Panel struct {
	Kind        string // stat, timeseries, table, heatmap, text
	Title       string
	Description string
	Unit        string
	// Steps are thresholds: the first color applies from -inf, the next
	// from each value on.
	Base  string
	Steps []Step
	Min   *float64
	Max   *float64
	// W and H are the grid size (24 columns).
	W, H    uint32
	Queries []Query
	Content string // text panels
	// Calcs, on a time series panel, make its legend a table with these
	// values per series (rates, durations, sizes); without them the
	// legend is a list.
	Calcs []string
	// AxisUnit is a heatmap's y axis unit (its buckets' bounds); Unit is
	// then the unit of its cells.
	AxisUnit string
	// Mappings show values as words and colors (a table's cells are then
	// colored by them).
	Mappings []Mapping
	// Matrix, on a table, turns the rows of a Table query into a matrix:
	// a row per value of one label, a column per value of another.
	Matrix *Matrix
	// Columns, on a table of Table queries (one per column, in order),
	// merge the queries' rows by their labels into one row each: the
	// value of query i is column i, with its title and unit.
	Columns []Column
}

// Column is one value column of a merged table.
type Column struct {
	Title, Unit string
}

// Mapping shows a value as a text in a color.
type Mapping struct {
	Value, Text, Color string
}

// Matrix names the labels of a table's rows and columns.
type Matrix struct {
	Row, Column string
}

// Var is a query variable of one board, beyond the common ones: a label's
// values from a series (multi, all by default).
type Var struct {
	Name, Label, Query string
}

// Step is a threshold.
type Step struct {
	Value float64
	Color string
}

// Board is the spec of one dashboard.
type Board struct {
	UID, Title, Description string
	Tags                    []string
	// From is the start of the default time range ("now-6h" if empty).
	From   string
	Vars   []Var
	Panels []Panel
}

// sel is the label selector every query of a policy's series applies.
const sel = `cluster=~"$cluster", instance=~"$instance", policy=~"$policy"`

// repoSel selects per-repository series (and the storage ones): those of
// the chosen daemons.
const repoSel = `cluster=~"$cluster", instance=~"$instance"`

// volumeSel selects the node agents' volume info series of the chosen
// daemons and namespaces.
const volumeSel = `cluster=~"$cluster", instance=~"$instance", namespace=~"$namespace"`

// VolumeLabels are the Kubernetes labels per-PVC queries give a policy's
// series, from backupd_volume_info (kube-state-metrics' names).
const VolumeLabels = "namespace, persistentvolumeclaim, pod, node"

// perPVC gives each series of expr (a policy's series) the Kubernetes
// names of its volume, one row per PersistentVolumeClaim: a policy of the
// node agent is one volume (docs/DESIGN.md §3.8), and a PVC that moved
// between nodes keeps its newest value. Series of policies outside
// Kubernetes have no volume info and drop out.
func perPVC(expr string) string {
	return "max by (" + VolumeLabels + ") (" + expr + " * on (cluster, instance, policy) group_left (" + VolumeLabels + ") backupd_volume_info{" + volumeSel + "})"
}

// benchSel selects the fault benchmark's series of the chosen tools and
// workloads.
const benchSel = `tool=~"$tool", workload=~"$workload"`

// lastRun wraps a benchmark series: its newest sample in the time range
// (each run is one sample per series, at the run's end).
func lastRun(series string) string { return "last_over_time(" + series + "[$__range])" }

func f(v float64) *float64 { return &v }

// lastMax is the legend table of rates, durations and sizes: the latest
// value and the peak over the time range.
var lastMax = []string{"lastNotNull", "max"}

var (
	ageSteps    = []Step{{0.5, "yellow"}, {1, "red"}}
	budgetSteps = []Step{{0, "orange"}, {0.25, "yellow"}, {0.5, "green"}}
)

// Boards is the spec of every dashboard.
func Boards() []Board {
	return []Board{sloOverview(), operations(), faults()}
}

func sloOverview() Board {
	return Board{
		UID: "backupd-slo", Title: "backupd / SLO overview", Tags: []string{"backupd", "slo"},
		Description: "Are the backups of each policy fresh enough, successful, and proven restorable? Error budgets over 28 days, burn rates, last results.",
		Panels: []Panel{
			{Kind: "stat", Title: "Error budget remaining (28d)", Unit: "percentunit", W: 12, H: 6, Base: "red", Steps: budgetSteps,
				Description: "Share of each SLO's 28-day error budget left, per policy: backup success (99% of runs), RPO freshness (99.9% of the time), recoverability (95% of drills byte-exact within RTO). Below 0 the objective is missed.",
				Queries:     []Query{{Expr: `slo:error_budget_remaining:ratio{` + sel + `}`, Legend: "{{instance}} {{policy}} {{slo}}", Instant: true}}},
			{Kind: "stat", Title: "Backup age ÷ RPO", Unit: "percentunit", W: 12, H: 6, Base: "green", Steps: ageSteps, Min: f(0),
				Description: "Age of the newest good snapshot as a share of the policy's RPO. At 100% the RPO is breached (BackupdRPOBreached pages).",
				Queries: []Query{{Expr: `(time() - backupd_last_backup_success_timestamp_seconds{` + sel + `})
/ on (job, instance, policy) backupd_policy_rpo_seconds{` + sel + `}`, Legend: "{{instance}} {{policy}}", Instant: true}}},
			{Kind: "timeseries", Title: "Backup error budget burn rate", Calcs: lastMax, Unit: "none", W: 12, H: 8, Base: "green", Steps: []Step{{0.93, "yellow"}, {2.8, "red"}},
				Description: "How fast backup failures spend the budget: 1 spends it exactly in 28 days. The ticket alert fires above 2.8 over both 1d and 2h, or above 0.93 over both 3d and 6h.",
				Queries: []Query{
					{Expr: `slo:sli_error:ratio_rate2h{slo="backup-success", ` + sel + `} / on (slo) group_left () (1 - slo:objective:ratio)`, Legend: "{{instance}} {{policy}} 2h"},
					{Expr: `slo:sli_error:ratio_rate1d{slo="backup-success", ` + sel + `} / on (slo) group_left () (1 - slo:objective:ratio)`, Legend: "{{instance}} {{policy}} 1d"},
				}},
			{Kind: "timeseries", Title: "Restore time against RTO", Calcs: lastMax, Unit: "s", W: 12, H: 8, Base: "green", Steps: []Step{{0, "green"}},
				Description: "90th percentile duration of restore drills next to the policy's RTO. Drills over the RTO count against recoverability.",
				Queries: []Query{
					{Expr: `histogram_quantile(0.9, sum by (le, policy) (rate(backupd_restore_duration_seconds_bucket{kind="drill", ` + sel + `}[$__rate_interval])))`, Legend: "{{policy}} p90 restore"},
					{Expr: `max by (policy) (backupd_policy_rto_seconds{` + sel + `})`, Legend: "{{policy}} RTO"},
				}},
			{Kind: "table", Title: "Last results", Unit: "s", W: 16, H: 8, Base: "green", Steps: []Step{{86400, "yellow"}, {7 * 86400, "red"}},
				Description: "Time since the newest good backup, the last successful drill and the last clean verify run, per policy and daemon, and per repository (the newest clean verify of any daemon), from now.",
				Queries: []Query{
					{Expr: `time() - backupd_last_backup_success_timestamp_seconds{` + sel + `}`, Legend: "backup {{instance}} {{policy}}", Instant: true},
					{Expr: `time() - backupd_last_restore_drill_success_timestamp_seconds{` + sel + `}`, Legend: "drill {{instance}} {{policy}}", Instant: true},
					{Expr: `time() - max by (repository) (backupd_last_verify_success_timestamp_seconds{` + repoSel + `})`, Legend: "verify {{repository}}", Instant: true},
				}},
			{Kind: "stat", Title: "Last drill", Unit: "bool_yes_no", W: 8, H: 8, Base: "red", Steps: []Step{{1, "green"}},
				Description: "Whether the last restore drill of each policy passed: restored, proved byte-exact and within the RTO.",
				Queries:     []Query{{Expr: `backupd_last_restore_drill_success_timestamp_seconds{` + sel + `} >= bool backupd_last_restore_drill_timestamp_seconds{` + sel + `}`, Legend: "{{instance}} {{policy}}", Instant: true}}},
			{Kind: "table", Title: "Volumes per PersistentVolumeClaim (Kubernetes)", Unit: "s", W: 24, H: 9, Base: "green", Steps: []Step{{0, "green"}},
				Description: "One row per PVC the node agents back up, in the chosen namespaces, with the pod mounting it and its node: " +
					"time since its newest good backup, its RPO and whether it is met now, time since its last passing drill, and its last backup's duration and stored bytes. " +
					"Joined through backupd_volume_info, so the same join gives any backupd series kube-state-metrics' labels. Empty for daemons outside Kubernetes.",
				Columns: []Column{{"Last good backup (age)", "s"}, {"RPO", "s"}, {"RPO met", "bool_yes_no"}, {"Last good drill (age)", "s"}, {"Last backup took", "s"}, {"Last backup stored", "bytes"}},
				Queries: []Query{
					{Expr: `time() - ` + perPVC(`backupd_last_backup_success_timestamp_seconds{`+sel+`}`), Instant: true, Table: true},
					{Expr: perPVC(`backupd_policy_rpo_seconds{` + sel + `}`), Instant: true, Table: true},
					{Expr: perPVC(`backupd:rpo_compliant:bool{` + sel + `}`), Instant: true, Table: true},
					{Expr: `time() - ` + perPVC(`backupd_last_restore_drill_success_timestamp_seconds{`+sel+`}`), Instant: true, Table: true},
					{Expr: perPVC(`backupd_last_backup_duration_seconds{` + sel + `}`), Instant: true, Table: true},
					{Expr: perPVC(`backupd_last_backup_written_bytes{` + sel + `}`), Instant: true, Table: true},
				}},
		},
	}
}

func operations() Board {
	return Board{
		UID: "backupd-operations", Title: "backupd / Operations", Tags: []string{"backupd"},
		Description: "How backups run: durations, throughput, files, deduplication, repository growth, resources, storage operations, scheduling and verification.",
		Panels: []Panel{
			{Kind: "timeseries", Title: "Backup duration quantiles", Calcs: lastMax, Unit: "s", W: 12, H: 8, Base: "green", Steps: []Step{{3600, "yellow"}},
				Description: "50th, 90th and 99th percentile duration of successful backup runs.",
				Queries: []Query{
					{Expr: `histogram_quantile(0.5, sum by (le, policy) (rate(backupd_backup_duration_seconds_bucket{` + sel + `}[$__rate_interval])))`, Legend: "{{policy}} p50"},
					{Expr: `histogram_quantile(0.9, sum by (le, policy) (rate(backupd_backup_duration_seconds_bucket{` + sel + `}[$__rate_interval])))`, Legend: "{{policy}} p90"},
					{Expr: `histogram_quantile(0.99, sum by (le, policy) (rate(backupd_backup_duration_seconds_bucket{` + sel + `}[$__rate_interval])))`, Legend: "{{policy}} p99"},
				}},
			{Kind: "heatmap", Title: "Backup duration distribution", Unit: "ops", AxisUnit: "s", W: 12, H: 8, Base: "green", Steps: []Step{{0, "green"}},
				Description: "Successful backup runs per second by duration bucket (le, the histogram's upper bounds) over time.",
				Queries:     []Query{{Expr: `sum by (le) (rate(backupd_backup_duration_seconds_bucket{` + sel + `}[$__rate_interval]))`, Legend: "{{le}}"}}},
			{Kind: "timeseries", Title: "Bytes read and stored", Calcs: lastMax, Unit: "Bps", W: 12, H: 8, Base: "green", Steps: []Step{{0, "green"}},
				Description: "Source bytes read per second and bytes stored per second after deduplication and compression.",
				Queries: []Query{
					{Expr: `sum by (policy) (rate(backupd_backup_read_bytes_total{` + sel + `}[$__rate_interval]))`, Legend: "{{policy}} read"},
					{Expr: `sum by (policy) (rate(backupd_backup_written_bytes_total{` + sel + `}[$__rate_interval]))`, Legend: "{{policy}} stored"},
				}},
			{Kind: "timeseries", Title: "Files per second by state", Calcs: lastMax, Unit: "ops", W: 12, H: 8, Base: "green", Steps: []Step{{0, "green"}},
				Description: "Files backups found new, changed (read again), unchanged (not read) and skipped (sockets, FIFOs, vanished).",
				Queries:     []Query{{Expr: `sum by (policy, state) (rate(backupd_backup_files_total{` + sel + `}[$__rate_interval]))`, Legend: "{{policy}} {{state}}"}}},
			{Kind: "stat", Title: "Deduplication and compression", Unit: "none", W: 12, H: 8, Base: "red", Steps: []Step{{1, "yellow"}, {2, "green"}},
				Description: "Source bytes per stored byte: of recent backups (read ÷ stored), and of the repository (newest snapshots' source size ÷ repository size, one per repository however many daemons write it). Higher is better.",
				Queries: []Query{
					{Expr: `sum by (policy) (increase(backupd_backup_read_bytes_total{` + sel + `}[1h])) / sum by (policy) (increase(backupd_backup_written_bytes_total{` + sel + `}[1h]))`, Legend: "{{policy}} last hour", Instant: true},
					{Expr: `max by (repository) (backupd_repository_logical_bytes{` + repoSel + `}) / max by (repository) (backupd_repository_size_bytes{` + repoSel + `})`, Legend: "{{repository}} overall", Instant: true},
				}},
			{Kind: "timeseries", Title: "Repository size and free space", Calcs: lastMax, Unit: "bytes", W: 12, H: 8, Base: "green", Steps: []Step{{0, "green"}},
				Description: "Bytes stored in each repository and free bytes on its file system, one line each per repository (every daemon writing it reports the same). BackupdRepositoryFillingUp fires when free space runs out within 4 days.",
				Queries: []Query{
					{Expr: `max by (repository) (backupd_repository_size_bytes{` + repoSel + `})`, Legend: "{{repository}} size"},
					{Expr: `max by (repository) (backupd_repository_free_bytes{` + repoSel + `})`, Legend: "{{repository}} free"},
				}},
			{Kind: "timeseries", Title: "CPU per backup run", Calcs: lastMax, Unit: "s", W: 12, H: 8, Base: "green", Steps: []Step{{0, "green"}},
				Description: "CPU seconds used by backup runs, per run (increase of CPU seconds ÷ increase of runs).",
				Queries:     []Query{{Expr: `sum by (policy) (increase(backupd_backup_cpu_seconds_total{` + sel + `}[$__rate_interval])) / sum by (policy) (increase(backupd_backup_runs_total{` + sel + `}[$__rate_interval]))`, Legend: "{{policy}}"}}},
			{Kind: "timeseries", Title: "Peak RSS of the last backup", Calcs: lastMax, Unit: "bytes", W: 12, H: 8, Base: "green", Steps: []Step{{256 << 20, "yellow"}},
				Description: "Peak resident memory of the process during each policy's last backup run.",
				Queries:     []Query{{Expr: `backupd_last_backup_max_rss_bytes{` + sel + `}`, Legend: "{{instance}} {{policy}}"}}},
			{Kind: "timeseries", Title: "Storage operations", Calcs: lastMax, Unit: "ops", W: 12, H: 8, Base: "green", Steps: []Step{{0, "green"}},
				Description: "Backend operations per second by type and result; errors are operations that failed (not-found is reported apart).",
				Queries:     []Query{{Expr: `sum by (repository, op, result) (rate(backupd_storage_operations_total{` + repoSel + `}[$__rate_interval]))`, Legend: "{{repository}} {{op}} {{result}}"}}},
			{Kind: "timeseries", Title: "Storage latency p99", Calcs: lastMax, Unit: "s", W: 12, H: 8, Base: "green", Steps: []Step{{1, "yellow"}, {5, "red"}},
				Description: "99th percentile duration of backend operations by type.",
				Queries:     []Query{{Expr: `histogram_quantile(0.99, sum by (le, repository, op) (rate(backupd_storage_operation_duration_seconds_bucket{` + repoSel + `}[$__rate_interval])))`, Legend: "{{repository}} {{op}}"}}},
			{Kind: "timeseries", Title: "Scheduler skips and misses", Unit: "short", W: 8, H: 8, Base: "green", Steps: []Step{{1, "yellow"}},
				Description: "Cycles skipped because the previous one still ran (overlap) and cycles missed while the daemon was down, per hour.",
				Queries: []Query{
					{Expr: `sum by (policy, reason) (increase(backupd_scheduler_skipped_runs_total{` + sel + `}[1h]))`, Legend: "{{policy}} skipped {{reason}}"},
					{Expr: `sum by (policy) (increase(backupd_scheduler_missed_runs_total{` + sel + `}[1h]))`, Legend: "{{policy}} missed"},
				}},
			{Kind: "timeseries", Title: "Verification coverage", Unit: "percentunit", W: 8, H: 8, Base: "green", Steps: []Step{{0, "green"}}, Min: f(0), Max: f(1),
				Description: "Share of the repository's packs read back in the current verify rotation (100% = every pack verified since the rotation began); of the daemons that verify a repository, the one furthest along.",
				Queries:     []Query{{Expr: `max by (repository) (backupd_verify_coverage_ratio{` + repoSel + `})`, Legend: "{{repository}}"}}},
			{Kind: "timeseries", Title: "Corrupt blobs found (1d)", Unit: "short", W: 8, H: 8, Base: "green", Steps: []Step{{1, "red"}}, Min: f(0),
				Description: "Blobs that failed authentication or their hash on read-back in the last day, by all daemons that verify the repository. Should stay 0; anything above pages (BackupdRepositoryCorruption).",
				Queries:     []Query{{Expr: `sum by (repository) (increase(backupd_verify_blobs_corrupt_total{` + repoSel + `}[1d]))`, Legend: "{{repository}}"}}},
		},
	}
}

// outcomeMappings show the benchmark's outcome ranks
// (backupd_bench_outcome_rank) as their classes, best green to worst dark
// red. The ranks are those of bench/faults (Outcome.Rank; the dashboards
// test compares them).
var outcomeMappings = []Mapping{
	{"-1", "not applicable", "text"},
	{"0", "survived exact", "green"},
	{"1", "recovered automatically", "green"},
	{"2", "detected and reported", "yellow"},
	{"3", "needed a human", "orange"},
	{"4", "silent wrong data", "red"},
	{"5", "data lost", "dark-red"},
}

func faults() Board {
	return Board{
		UID: "backupd-faults", Title: "backupd / Fault tolerance", Tags: []string{"backupd", "benchmark"}, From: "now-7d",
		Description: "How backupd and its peers came through the fault benchmark (outcomes, detection, recovery, cost, impact on a writer), and how backupd behaves under faults in operation: failures by reason, interrupted runs, corruption found, drill mismatches, silent source changes, storage errors.",
		Vars: []Var{
			{"tool", "Tool", `label_values(backupd_bench_outcome_rank, tool)`},
			{"workload", "Workload", `label_values(backupd_bench_outcome_rank{tool=~"$tool"}, workload)`},
		},
		Panels: []Panel{
			{Kind: "text", Title: "About this board", W: 24, H: 3, Base: "green", Unit: "none",
				Description: "Where the two halves of this board get their data.",
				Content: "The benchmark panels (tool and workload variables) show the newest fault-benchmark run in the time range: `go run ./bench/cmd/bench -faults` writes `faults.om`, " +
					"and `promtool tsdb create-blocks-from openmetrics faults.om DATA_DIR` loads it into Prometheus (widen the time range to the run's date). " +
					"The panels below them are backupd's own fault-related series (cluster, instance and policy variables)."},
			{Kind: "table", Title: "Benchmark outcome per tool and scenario", Unit: "none", W: 24, H: 7, Base: "text", Steps: []Step{{0, "green"}},
				Description: "The worst outcome class of each tool in each scenario, over the chosen workloads and variants, from the newest run in the time range: survived exact and recovered automatically are good, detected and reported is damage found and named, needed a human an unlock or repair, silent wrong data and data lost are failures.",
				Mappings:    outcomeMappings, Matrix: &Matrix{Row: "tool", Column: "scenario"},
				Queries: []Query{{Expr: `max by (tool, scenario) (` + lastRun(`backupd_bench_outcome_rank{`+benchSel+`}`) + `)`, Instant: true, Table: true}}},
			{Kind: "bargauge", Title: "Injected damage detected", Unit: "percentunit", W: 8, H: 9, Base: "red", Steps: []Step{{0.9, "orange"}, {1, "green"}}, Min: f(0), Max: f(1),
				Description: "Share of the damage the benchmark injected (into the repository, or the source for bit rot) that the tool's check reported. Below 100% some damage went unnoticed.",
				Queries:     []Query{{Expr: lastRun(`backupd_bench_detection_ratio{` + benchSel + `}`), Legend: "{{tool}} {{scenario}} {{workload}} {{variant}}", Instant: true}}},
			{Kind: "bargauge", Title: "Time to a good snapshot after the fault", Unit: "s", W: 8, H: 9, Base: "green", Steps: []Step{{300, "yellow"}, {3600, "red"}}, Min: f(0),
				Description: "Seconds from the fault until a snapshot whose restore matches its manifest existed again, per tool, scenario and workload. No bar: the tool never got there, or the scenario has no such figure.",
				Queries:     []Query{{Expr: lastRun(`backupd_bench_time_to_recover_seconds{` + benchSel + `}`), Legend: "{{tool}} {{scenario}} {{workload}} {{variant}}", Instant: true}}},
			{Kind: "bargauge", Title: "Time to detect the fault", Unit: "s", W: 8, H: 9, Base: "green", Steps: []Step{{60, "yellow"}, {3600, "red"}}, Min: f(0),
				Description: "Seconds from the fault until the tool reported it (a failed run, a check naming the damage). No bar: it never did, or there was nothing to detect.",
				Queries:     []Query{{Expr: lastRun(`backupd_bench_time_to_detect_seconds{` + benchSel + `}`), Legend: "{{tool}} {{scenario}} {{workload}} {{variant}}", Instant: true}}},
			{Kind: "bargauge", Title: "Healthy phase wall time", Unit: "s", W: 10, H: 10, Base: "green", Steps: []Step{{0, "green"}}, Min: f(0),
				Description: "Wall time of each run of the healthy phase (no fault): first backup, no-change backup, 1% change backup, restore, per tool and workload.",
				Queries:     []Query{{Expr: lastRun(`backupd_bench_wall_seconds{scenario="healthy", ` + benchSel + `}`), Legend: "{{tool}} {{workload}} {{phase}}", Instant: true}}},
			{Kind: "bargauge", Title: "Healthy phase peak RSS", Unit: "bytes", W: 7, H: 10, Base: "green", Steps: []Step{{0, "green"}}, Min: f(0),
				Description: "The highest peak resident memory of a tool's healthy-phase runs, per workload.",
				Queries:     []Query{{Expr: `max by (tool, workload) (` + lastRun(`backupd_bench_peak_rss_bytes{scenario="healthy", `+benchSel+`}`) + `)`, Legend: "{{tool}} {{workload}}", Instant: true}}},
			{Kind: "bargauge", Title: "backupd against its targets", Unit: "percentunit", W: 7, H: 10, Base: "green", Steps: []Step{{1.0001, "red"}}, Min: f(0),
				Description: "backupd's healthy-phase figure divided by the best peer's, as a share of its target (first backup and restore 0.8×, no-change and 1% change backup 0.25×, peak RSS 1.0× the best peer). Up to 100% the target is met.",
				Queries: []Query{{Expr: lastRun(`backupd_bench_peer_ratio{workload=~"$workload"}`) + ` / on (measure) group_left () ` + lastRun(`backupd_bench_peer_target_ratio`),
					Legend: "{{workload}} {{measure}}", Instant: true}}},
			{Kind: "bargauge", Title: "Proxy writer latency during backups", Unit: "s", W: 24, H: 10, Base: "green", Steps: []Step{{0.01, "yellow"}, {0.1, "red"}}, Min: f(0),
				Description: "Latency of the proxy-like writer's append and fsync while each tool backs up (impact scenario), and with no backup running (tool none): the median (0.5), the 99th percentile (0.99) and the maximum (1).",
				Queries:     []Query{{Expr: lastRun(`backupd_bench_writer_latency_seconds{tool=~"$tool|none", workload=~"$workload"}`), Legend: "{{tool}} {{variant}} {{workload}} q{{quantile}}", Instant: true}}},
			{Kind: "timeseries", Title: "Backup failures by reason", Unit: "short", W: 12, H: 8, Base: "green", Steps: []Step{{1, "red"}},
				Description: "Failed backup runs per hour by reason: interrupted (killed or stopped mid-run), crashed (the backup's child process died while the daemon ran), repository, source, corruption, locked.",
				Queries:     []Query{{Expr: `sum by (policy, reason) (increase(backupd_backup_failures_total{` + sel + `}[1h]))`, Legend: "{{policy}} {{reason}}"}}},
			{Kind: "timeseries", Title: "Drill failures by reason", Unit: "short", W: 12, H: 8, Base: "green", Steps: []Step{{1, "red"}},
				Description: "Failed restore drills per hour by reason: rto (too slow), mismatch (not byte-exact), corruption, repository.",
				Queries:     []Query{{Expr: `sum by (policy, reason) (increase(backupd_restore_failures_total{kind="drill", ` + sel + `}[1h]))`, Legend: "{{policy}} {{reason}}"}}},
			{Kind: "stat", Title: "Corrupt blobs found (7d)", Unit: "short", W: 6, H: 6, Base: "green", Steps: []Step{{1, "red"}},
				Description: "Blobs that failed authentication or their hash on read-back in the last 7 days. Anything above 0 pages (BackupdRepositoryCorruption).",
				Queries:     []Query{{Expr: `sum by (repository) (increase(backupd_verify_blobs_corrupt_total{` + repoSel + `}[7d]))`, Legend: "{{repository}}", Instant: true}}},
			{Kind: "stat", Title: "Drill mismatched files (7d)", Unit: "short", W: 6, H: 6, Base: "green", Steps: []Step{{1, "red"}},
				Description: "Files whose restored content differed from the hash recorded at backup time, in the last 7 days.",
				Queries:     []Query{{Expr: `sum by (policy) (increase(backupd_restore_drill_mismatched_files_total{` + sel + `}[7d]))`, Legend: "{{policy}}", Instant: true}}},
			{Kind: "stat", Title: "Silent source changes (7d)", Unit: "short", W: 6, H: 6, Base: "green", Steps: []Step{{1, "orange"}},
				Description: "Source files whose content changed while their size and mtime did not (bit rot under the file system, or an edit whose times were put back), found by scrub or a backup in the last 7 days.",
				Queries:     []Query{{Expr: `sum by (policy) (increase(backupd_source_silent_changes_total{` + sel + `}[7d]))`, Legend: "{{policy}}", Instant: true}}},
			{Kind: "stat", Title: "Interrupted or crashed runs (7d)", Unit: "short", W: 6, H: 6, Base: "green", Steps: []Step{{1, "yellow"}},
				Description: "Backup runs that did not finish, in the last 7 days: interrupted (the daemon was killed or stopped) or crashed (the backup's child process died: a panic, an out-of-memory kill).",
				Queries:     []Query{{Expr: `sum by (policy, reason) (increase(backupd_backup_failures_total{reason=~"interrupted|crashed", ` + sel + `}[7d]))`, Legend: "{{policy}} {{reason}}", Instant: true}}},
			{Kind: "timeseries", Title: "Storage errors", Calcs: lastMax, Unit: "ops", W: 24, H: 8, Base: "green", Steps: []Step{{0.01, "red"}},
				Description: "Backend operations that failed, per second, by repository and operation.",
				Queries:     []Query{{Expr: `sum by (repository, op) (rate(backupd_storage_operations_total{result="error", ` + repoSel + `}[$__rate_interval]))`, Legend: "{{repository}} {{op}}"}}},
		},
	}
}

var dsRef = func() common.DataSourceRef {
	t, u := "prometheus", "${datasource}"
	return common.DataSourceRef{Type: &t, Uid: &u}
}()

type panelBuilder[B any] interface {
	cog.Builder[dashboard.Panel]
	Title(string) B
	Description(string) B
	Unit(string) B
	Thresholds(cog.Builder[dashboard.ThresholdsConfig]) B
	Datasource(common.DataSourceRef) B
	Height(uint32) B
	Span(uint32) B
	WithTarget(cog.Builder[variants.Dataquery]) B
	Min(float64) B
	Max(float64) B
}

func thresholds(p Panel) *dashboard.ThresholdsConfigBuilder {
	steps := []dashboard.Threshold{{Value: nil, Color: p.Base}}
	for _, s := range p.Steps {
		v := s.Value
		steps = append(steps, dashboard.Threshold{Value: &v, Color: s.Color})
	}
	return dashboard.NewThresholdsConfigBuilder().Mode(dashboard.ThresholdsModeAbsolute).Steps(steps)
}

func configure[B panelBuilder[B]](b B, p Panel) cog.Builder[dashboard.Panel] {
	b.Title(p.Title)
	b.Description(p.Description)
	b.Unit(p.Unit)
	b.Thresholds(thresholds(p))
	b.Datasource(dsRef)
	b.Height(p.H)
	b.Span(p.W)
	if p.Min != nil {
		b.Min(*p.Min)
	}
	if p.Max != nil {
		b.Max(*p.Max)
	}
	for i, q := range p.Queries {
		t := prometheus.NewDataqueryBuilder().Expr(q.Expr).LegendFormat(q.Legend).RefId(string(rune('A' + i))).Datasource(dsRef)
		if q.Instant {
			t.Instant()
		} else {
			t.Range()
		}
		if p.Kind == "heatmap" {
			// Prometheus's cumulative le buckets, made into cells by the
			// data source (not recalculated by the panel).
			t.Format(prometheus.PromQueryFormatHeatmap)
		}
		if q.Table {
			t.Format(prometheus.PromQueryFormatTable)
		}
		b.WithTarget(t)
	}
	return b
}

func build(p Panel) (cog.Builder[dashboard.Panel], error) {
	switch p.Kind {
	case "stat":
		return configure(stat.NewPanelBuilder(), p), nil
	case "timeseries":
		legend := common.NewVizLegendOptionsBuilder().ShowLegend(true).Placement(common.LegendPlacementBottom).
			DisplayMode(common.LegendDisplayModeList).Calcs([]string{})
		if len(p.Calcs) > 0 {
			legend.DisplayMode(common.LegendDisplayModeTable).AsTable(true).Calcs(p.Calcs).SortBy("Max").SortDesc(true)
		}
		ts := timeseries.NewPanelBuilder().Legend(legend).
			Tooltip(common.NewVizTooltipOptionsBuilder().Mode(common.TooltipDisplayModeMulti).Sort(common.SortOrderDescending))
		return configure(ts, p), nil
	case "table":
		tb := table.NewPanelBuilder().Footer(common.NewTableFooterOptionsBuilder().Show(false).Reducer([]string{"lastNotNull"}))
		if len(p.Mappings) > 0 {
			tb.Mappings(mappings(p.Mappings))
			tb.CellOptions(common.TableCellOptions{TableColoredBackgroundCellOptions: &common.TableColoredBackgroundCellOptions{
				Type: common.TableCellDisplayModeColorBackground}})
		}
		if len(p.Columns) > 0 {
			rename := map[string]any{}
			for i, c := range p.Columns {
				name := fmt.Sprintf("Value #%c", 'A'+i)
				rename[name] = c.Title
				tb.OverrideByName(c.Title, []dashboard.DynamicConfigValue{{Id: "unit", Value: c.Unit}})
			}
			tb.WithTransformation(dashboard.DataTransformerConfig{Id: "merge", Options: map[string]any{}})
			tb.WithTransformation(dashboard.DataTransformerConfig{Id: "organize", Options: map[string]any{
				"excludeByName": map[string]any{"Time": true}, "renameByName": rename}})
		}
		if m := p.Matrix; m != nil {
			tb.WithTransformation(dashboard.DataTransformerConfig{Id: "groupingToMatrix", Options: map[string]any{
				"rowField": m.Row, "columnField": m.Column, "valueField": "Value", "emptyValue": "null"}})
		}
		return configure(tb, p), nil
	case "bargauge":
		bg := bargauge.NewPanelBuilder().Orientation(common.VizOrientationHorizontal).DisplayMode(common.BarGaugeDisplayModeBasic).
			ValueMode(common.BarGaugeValueModeText).ShowUnfilled(true).
			ReduceOptions(common.NewReduceDataOptionsBuilder().Calcs([]string{"lastNotNull"}).Values(false))
		if len(p.Mappings) > 0 {
			bg.Mappings(mappings(p.Mappings))
		}
		return configure(bg, p), nil
	case "heatmap":
		hm := heatmap.NewPanelBuilder().Calculate(false).
			RowsFrame(heatmap.NewRowsHeatmapOptionsBuilder().Layout(common.HeatmapCellLayoutLe)).
			YAxis(heatmap.NewYAxisConfigBuilder().Unit(p.AxisUnit)).
			CellValues(heatmap.NewCellValuesBuilder().Unit(p.Unit)).
			Tooltip(heatmap.NewHeatmapTooltipBuilder().Mode(common.TooltipDisplayModeSingle).YHistogram(true)).
			ShowLegend()
		return configure(hm, p), nil
	case "text":
		return text.NewPanelBuilder().Title(p.Title).Description(p.Description).Content(p.Content).Mode(text.TextModeMarkdown).
			Height(p.H).Span(p.W).Unit(p.Unit).Thresholds(thresholds(p)), nil
	}
	return nil, fmt.Errorf("panel %q: unknown kind %q", p.Title, p.Kind)
}

func mappings(ms []Mapping) []dashboard.ValueMapping {
	opts := map[string]dashboard.ValueMappingResult{}
	for i, m := range ms {
		idx := int32(i)
		opts[m.Value] = dashboard.ValueMappingResult{Text: ptr(m.Text), Color: ptr(m.Color), Index: &idx}
	}
	return []dashboard.ValueMapping{{ValueMap: &dashboard.ValueMap{Type: dashboard.MappingTypeValueToText, Options: opts}}}
}

// PolicyVariableQuery is the PromQL of the policy variable's values: the
// policies of the chosen daemons, less those of node agents' volumes in
// namespaces not chosen (a daemon outside Kubernetes has no volume info:
// its policies stay listed).
const PolicyVariableQuery = `group by (policy) (backupd_policy_rpo_seconds{cluster=~"$cluster", instance=~"$instance"} unless on (cluster, instance, policy) backupd_volume_info{cluster=~"$cluster", instance=~"$instance", namespace!~"$namespace"})`

// Build turns a board spec into a Grafana dashboard.
func Build(b Board) (dashboard.Dashboard, error) {
	from := b.From
	if from == "" {
		from = "now-6h"
	}
	db := dashboard.NewDashboardBuilder(b.Title).Uid(b.UID).Description(b.Description).Tags(b.Tags).
		Refresh("1m").Time(from, "now").Timezone(common.TimeZoneBrowser).Editable().
		WithVariable(dashboard.NewDatasourceVariableBuilder("datasource").Label("Data source").Type("prometheus")).
		WithVariable(dashboard.NewQueryVariableBuilder("cluster").Label("Cluster").Datasource(dsRef).
			Query(dashboard.StringOrMap{String: ptr(`label_values(backupd_build_info, cluster)`)}).
			Refresh(dashboard.VariableRefreshOnTimeRangeChanged).IncludeAll(true).AllValue(".*")).
		WithVariable(dashboard.NewQueryVariableBuilder("instance").Label("Instance").Datasource(dsRef).
			Query(dashboard.StringOrMap{String: ptr(`label_values(backupd_build_info{cluster=~"$cluster"}, instance)`)}).
			Refresh(dashboard.VariableRefreshOnTimeRangeChanged).IncludeAll(true).Multi(true).AllValue(".*")).
		WithVariable(dashboard.NewQueryVariableBuilder("namespace").Label("Namespace").Datasource(dsRef).
			Query(dashboard.StringOrMap{String: ptr(`label_values(backupd_volume_info{cluster=~"$cluster", instance=~"$instance"}, namespace)`)}).
			Refresh(dashboard.VariableRefreshOnTimeRangeChanged).IncludeAll(true).Multi(true).AllValue(".*")).
		// All policies is the list of those shown, not ".*": choosing a
		// namespace then narrows every panel to its volumes' policies.
		WithVariable(dashboard.NewQueryVariableBuilder("policy").Label("Policy").Datasource(dsRef).
			Query(dashboard.StringOrMap{String: ptr(`query_result(` + PolicyVariableQuery + `)`)}).Regex(`/policy="([^"]+)"/`).
			Refresh(dashboard.VariableRefreshOnTimeRangeChanged).IncludeAll(true).Multi(true))
	for _, v := range b.Vars {
		db.WithVariable(dashboard.NewQueryVariableBuilder(v.Name).Label(v.Label).Datasource(dsRef).
			Query(dashboard.StringOrMap{String: ptr(v.Query)}).
			Refresh(dashboard.VariableRefreshOnTimeRangeChanged).IncludeAll(true).Multi(true).AllValue(".*"))
	}
	for _, p := range b.Panels {
		pb, err := build(p)
		if err != nil {
			return dashboard.Dashboard{}, err
		}
		db.WithPanel(pb)
	}
	d, err := db.Build()
	if err != nil {
		return dashboard.Dashboard{}, fmt.Errorf("dashboard %s: %w", b.UID, err)
	}
	return d, nil
}

func ptr[T any](v T) *T { return &v }
