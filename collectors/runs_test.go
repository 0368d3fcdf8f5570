package collectors

import (
	"bytes"
	"flag"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"
	"google.golang.org/protobuf/proto"

	"github.com/meshbackup/backupd/backupd/config"
	"github.com/meshbackup/backupd/backupd/daemon"
	"github.com/meshbackup/backupd/backupd/results"
)

var update = flag.Bool("update", false, "rewrite golden files")

func testConfig(policies ...string) *config.Config {
	cfg := &config.Config{Repositories: []config.Repository{{Name: "local"}}}
	for _, p := range policies {
		cfg.Policies = append(cfg.Policies, config.Policy{Name: p, Repository: "local", RPO: time.Hour, RTO: 15 * time.Minute})
	}
	return cfg
}

var t0 = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

func rec(kind results.Kind, outcome results.Outcome, reason string, start time.Duration, dur time.Duration) results.Record {
	return results.Record{RunID: "r" + start.String(), Kind: kind, Policy: "mesh", Repository: "local", Trigger: "scheduled",
		Start: t0.Add(start), End: t0.Add(start + dur), Outcome: outcome, Reason: reason,
		BytesRead: 1000, BytesWritten: 250, FilesNew: 3, FilesChanged: 2, FilesUnchanged: 10, FilesSkipped: 1,
		CPUSeconds: 1.5, MaxRSS: 50 << 20, ReadIOBytes: 4096, WriteIOBytes: 8192, BlobsChecked: 40, Coverage: 0.5, WithinRTO: kind == results.Drill && outcome == results.Success}
}

// expose gathers reg in the text exposition format.
func expose(t *testing.T, reg prometheus.Gatherer) []byte {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, f := range fams {
		if err := enc.Encode(f); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

func golden(t *testing.T, name, got string) string {
	t.Helper()
	path := "testdata/" + name
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	return string(b)
}

// A sequence of runs as a user would see it in the exposition.
func TestRunsExposition(t *testing.T) {
	r := NewRuns()
	r.Configured(testConfig("mesh"))
	r.Restored([]results.Record{rec(results.Drill, results.Success, "", -time.Hour, time.Minute)})
	for _, x := range []results.Record{
		rec(results.Backup, results.Success, "", 0, 90*time.Second),
		rec(results.Backup, results.Failure, results.ReasonRepository, time.Hour, 10*time.Second),
		rec(results.Backup, results.Failure, results.ReasonInterrupted, 2*time.Hour, 10*time.Second),
		rec(results.Verify, results.Success, "", 2*time.Hour, 30*time.Second),
		rec(results.Drill, results.Failure, results.ReasonRTO, 3*time.Hour, 20*time.Minute),
	} {
		r.RunStarted(x)
		r.RunFinished(x)
	}
	r.Skipped("mesh", "overlap")
	r.Missed("mesh", 3)
	r.RepositoryState(daemon.RepoState{Name: "local", Up: true, SizeBytes: 1 << 30, LogicalBytes: 4 << 30, FreeBytes: 10 << 30, HasFreeBytes: true,
		Snapshots: map[string]int{"mesh": 7}, LastBackupSuccess: map[string]time.Time{"mesh": t0}})
	reg := prometheus.NewPedanticRegistry()
	if err := r.Register(reg); err != nil {
		t.Fatal(err)
	}
	got := expose(t, reg)
	want := golden(t, "runs.prom", string(got))
	if want != string(got) {
		t.Fatalf("exposition differs from testdata/runs.prom (rerun with -update if intended):\n%s", string(got))
	}
	// What the exporter serves, from the cache, is the same.
	if cached := expose(t, r); string(cached) != want {
		t.Fatalf("cached exposition differs from testdata/runs.prom:\n%s", cached)
	}
	problems, err := testutil.GatherAndLint(reg)
	if err != nil || len(problems) > 0 {
		t.Fatalf("promlint: %v %+v", err, problems)
	}
	// The series SLOs are computed from, spelled out.
	for _, tc := range []struct {
		c    prometheus.Collector
		want string
	}{
		{r.backupRuns, `# HELP backupd_backup_runs_total Backup runs completed, successful or not.
# TYPE backupd_backup_runs_total counter
backupd_backup_runs_total{kind="scheduled",policy="mesh"} 3
`},
		{r.withinRTO, `# HELP backupd_restore_drills_within_rto_total Drills that succeeded, proved every file byte-exact and finished within the RTO.
# TYPE backupd_restore_drills_within_rto_total counter
backupd_restore_drills_within_rto_total{policy="mesh"} 0
`},
		{r.consecutive, `# HELP backupd_backup_consecutive_failures Backup runs that failed in a row (0 after a success).
# TYPE backupd_backup_consecutive_failures gauge
backupd_backup_consecutive_failures{policy="mesh"} 2
`},
	} {
		if err := testutil.CollectAndCompare(tc.c, strings.NewReader(tc.want)); err != nil {
			t.Fatal(err)
		}
	}
}

// A removed policy's series disappear; a new one's appear at 0.
func TestPolicyAddedAndRemoved(t *testing.T) {
	r := NewRuns()
	r.Configured(testConfig("a", "b"))
	reg := prometheus.NewRegistry()
	_ = r.Register(reg)
	if n := testutil.CollectAndCount(r.rpo); n != 2 {
		t.Fatalf("%d rpo series", n)
	}
	r.Configured(testConfig("b", "c"))
	got := expose(t, reg)
	if strings.Contains(string(got), `policy="a"`) {
		t.Fatal("series of the removed policy remain")
	}
	if !strings.Contains(string(got), `backupd_backup_runs_total{kind="scheduled",policy="c"} 0`) {
		t.Fatalf("new policy not pre-created at 0:\n%s", got)
	}
}

// A run of a policy that a reload removed while the run went on (a node
// agent's volume whose pod was deleted, or that moved to another node)
// brings none of its series back: they would stay until the process ends,
// one set for every pod that ever ran. Configured again, it counts.
func TestRunOfARemovedPolicyCountsNowhere(t *testing.T) {
	for _, kind := range []results.Kind{results.Backup, results.Drill, results.Scrub} {
		t.Run(string(kind), func(t *testing.T) {
			r := NewRuns()
			r.Configured(testConfig("mesh", "other"))
			run := rec(kind, results.Failure, results.ReasonSource, 0, time.Second)
			r.RunStarted(run)
			r.RunProgress(run)
			r.Configured(testConfig("other"))
			r.RunProgress(run)
			r.RunFinished(run)
			r.Skipped("mesh", "overlap")
			if got := expose(t, r); strings.Contains(string(got), `policy="mesh"`) {
				t.Fatalf("series of the removed policy came back:\n%s", got)
			}
			r.Configured(testConfig("mesh", "other"))
			again := rec(kind, results.Success, "", time.Hour, time.Second)
			r.RunStarted(again)
			r.RunFinished(again)
			want := map[results.Kind]string{results.Backup: `backupd_backup_runs_total{kind="scheduled",policy="mesh"} 1`,
				results.Drill: `backupd_restore_runs_total{kind="drill",policy="mesh"} 1`,
				results.Scrub: `backupd_source_silent_changes_total{policy="mesh"} 0`}[kind]
			if got := expose(t, r); !strings.Contains(string(got), want) {
				t.Fatalf("the policy configured again: want %s in\n%s", want, got)
			}
		})
	}
}

// A repository shared by node agents holds every node's policies: a
// daemon exports the repository series of its own only, whether the state
// comes before its first config (at start), after it, or after a config
// with no policy left.
func TestRepositoryStateOnlyOfConfiguredPolicies(t *testing.T) {
	st := daemon.RepoState{Name: "local", Up: true, Snapshots: map[string]int{"mesh": 2, "foreign": 5},
		LastBackupSuccess: map[string]time.Time{"mesh": t0, "foreign": t0}}
	r := NewRuns()
	r.RepositoryState(st)
	r.Configured(testConfig("mesh"))
	r.RepositoryState(st)
	got := string(expose(t, r))
	if strings.Contains(got, `policy="foreign"`) {
		t.Errorf("series of another daemon's policy:\n%s", got)
	}
	if !strings.Contains(got, `backupd_repository_snapshots{policy="mesh",repository="local"} 2`) {
		t.Errorf("no snapshot count of the configured policy:\n%s", got)
	}
	r.Configured(testConfig())
	r.RepositoryState(st)
	if got := string(expose(t, r)); strings.Contains(got, `policy="`) {
		t.Errorf("series of a policy with none configured:\n%s", got)
	}
}

func TestStorageLint(t *testing.T) {
	s := NewStorage()
	reg := prometheus.NewPedanticRegistry()
	if err := s.Register(reg); err != nil {
		t.Fatal(err)
	}
	_ = s.Wrap("local", nil)
	problems, err := testutil.GatherAndLint(reg)
	if err != nil || len(problems) > 0 {
		t.Fatalf("promlint: %v %+v", err, problems)
	}
}

// scrapeSetup returns the registry the exporter serves (NewRegistry's)
// after 1,000 policies have each finished a backup, with 10,000 snapshots
// apiece.
func scrapeSetup(b *testing.B) prometheus.Gatherer {
	b.Helper()
	reg, r, _, err := NewRegistry("bench")
	if err != nil {
		b.Fatal(err)
	}
	var names []string
	for i := range 1000 {
		names = append(names, "policy-"+time.Duration(i).String())
	}
	cfg := testConfig(names...)
	r.Configured(cfg)
	snaps := map[string]int{}
	for _, p := range names {
		x := rec(results.Backup, results.Success, "", 0, time.Minute)
		x.Policy = p
		r.RunFinished(x)
		snaps[p] = 10000
	}
	r.RepositoryState(daemon.RepoState{Name: "local", Up: true, Snapshots: snaps})
	return reg
}

// Scrape cost does not grow with the number of snapshots or records; with
// 1,000 policies it is a plain gather of pre-computed series.
func BenchmarkScrape1000Policies(b *testing.B) {
	reg := scrapeSetup(b)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := reg.Gather(); err != nil {
			b.Fatal(err)
		}
	}
}

// The whole /metrics request as Prometheus makes it: gather and encode in
// OpenMetrics, uncompressed.
func BenchmarkScrapeHTTP1000Policies(b *testing.B) {
	h := promhttp.HandlerFor(scrapeSetup(b), promhttp.HandlerOpts{EnableOpenMetrics: true})
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		req := httptest.NewRequest("GET", "/metrics", nil)
		req.Header.Set("Accept", "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != 200 {
			b.Fatal(w.Code)
		}
	}
}

// A partial backup (snapshot saved without files it could not read) is a
// completed run, not a failure: it ends a failure streak, and it is counted
// apart, with the number of files its snapshot lacks, until the next
// complete backup.
func TestPartialBackupIsCountedNotFailed(t *testing.T) {
	r := NewRuns()
	r.Configured(testConfig("mesh"))
	failed := rec(results.Backup, results.Failure, results.ReasonRepository, 0, time.Second)
	partial := rec(results.Backup, results.Partial, "", time.Hour, time.Second)
	partial.FilesUnreadable = 4
	complete := rec(results.Backup, results.Success, "", 2*time.Hour, time.Second)
	value := func(c prometheus.Collector) float64 { return testutil.ToFloat64(c) }
	for _, x := range []results.Record{failed, failed, partial} {
		r.RunStarted(x)
		r.RunFinished(x)
	}
	for name, c := range map[string]struct {
		got, want float64
	}{
		"runs":                 {value(r.backupRuns.WithLabelValues("mesh", "scheduled")), 3},
		"failures":             {value(r.backupFailures.WithLabelValues("mesh", "scheduled", results.ReasonRepository)), 2},
		"consecutive failures": {value(r.consecutive.WithLabelValues("mesh")), 0},
		"partial":              {value(r.partial.WithLabelValues("mesh")), 1},
		"unreadable files":     {value(r.unreadable.WithLabelValues("mesh")), 4},
		"files unreadable":     {value(r.files.WithLabelValues("mesh", "unreadable")), 4},
	} {
		if c.got != c.want {
			t.Errorf("after a partial backup, %s = %v, want %v", name, c.got, c.want)
		}
	}
	r.RunStarted(complete)
	r.RunFinished(complete)
	if v := value(r.unreadable.WithLabelValues("mesh")); v != 0 {
		t.Errorf("after a complete backup, unreadable files = %v, want 0", v)
	}
	// Replayed at a restart, the last backup's count is restored.
	r2 := NewRuns()
	r2.Configured(testConfig("mesh"))
	r2.Restored([]results.Record{failed, partial})
	if v := value(r2.unreadable.WithLabelValues("mesh")); v != 4 {
		t.Errorf("restored: unreadable files = %v, want 4", v)
	}
}

// The cache serves exactly what the vectors hold, exemplars, native
// histograms and created timestamps included, through additions, failures,
// a policy removed and one added, in every exposition format.
func TestCacheMatchesRegistry(t *testing.T) {
	r := NewRuns()
	reg := prometheus.NewPedanticRegistry()
	if err := r.Register(reg); err != nil {
		t.Fatal(err)
	}
	r.Configured(testConfig("mesh", "gone"))
	compare := func(step string) {
		t.Helper()
		want, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		got, _ := r.Gather()
		if len(got) != len(want) {
			t.Fatalf("%s: %d families cached, %d gathered", step, len(got), len(want))
		}
		for i := range want {
			if !proto.Equal(got[i], want[i]) {
				t.Fatalf("%s: family %s differs:\ncached:   %v\ngathered: %v", step, want[i].GetName(), got[i], want[i])
			}
		}
		for _, f := range []expfmt.Format{expfmt.NewFormat(expfmt.TypeOpenMetrics), expfmt.NewFormat(expfmt.TypeProtoDelim)} {
			var a, b bytes.Buffer
			ea, eb := expfmt.NewEncoder(&a, f), expfmt.NewEncoder(&b, f)
			for i := range want {
				if err := ea.Encode(got[i]); err != nil {
					t.Fatal(err)
				}
				if err := eb.Encode(want[i]); err != nil {
					t.Fatal(err)
				}
			}
			if !bytes.Equal(a.Bytes(), b.Bytes()) {
				t.Fatalf("%s: %s exposition differs", step, f)
			}
		}
	}
	compare("configured")
	for i, x := range []results.Record{
		rec(results.Backup, results.Success, "", 0, 90*time.Second),
		rec(results.Backup, results.Failure, results.ReasonRepository, time.Hour, 10*time.Second),
		rec(results.Drill, results.Failure, results.ReasonRTO, 3*time.Hour, 20*time.Minute),
		rec(results.Verify, results.Success, "", 2*time.Hour, 30*time.Second),
	} {
		x.Policy = []string{"mesh", "gone"}[i%2]
		r.RunStarted(x)
		r.RunFinished(x)
	}
	r.RepositoryState(daemon.RepoState{Name: "local", Up: true, Snapshots: map[string]int{"mesh": 3, "gone": 1}})
	compare("after runs")
	r.Configured(testConfig("mesh", "new"))
	compare("after a reload")
	var text bytes.Buffer
	for _, f := range must(r.Gather()) {
		_, _ = expfmt.MetricFamilyToText(&text, f)
	}
	if strings.Contains(text.String(), `"gone"`) || !strings.Contains(text.String(), `policy="new"`) {
		t.Fatalf("removed policy served or new one missing:\n%s", text.String())
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// NewRegistry's Gather serves the run metrics with the rest, sorted by
// name, once each.
func TestRegistryGathersRunsAndTheRest(t *testing.T) {
	reg, runs, storage, err := NewRegistry("test")
	if err != nil {
		t.Fatal(err)
	}
	runs.Configured(testConfig("mesh"))
	_ = storage.Wrap("local", nil)
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for i, f := range fams {
		if i > 0 && fams[i-1].GetName() >= f.GetName() {
			t.Fatalf("families out of order: %s before %s", fams[i-1].GetName(), f.GetName())
		}
		seen[f.GetName()] = true
	}
	for _, name := range []string{"backupd_backup_runs_total", "backupd_storage_operations_total", "backupd_build_info", "go_goroutines", "process_start_time_seconds"} {
		if !seen[name] {
			t.Errorf("%s not gathered", name)
		}
	}
	// A collector registered later cannot take a run metric's name.
	if err := reg.Register(prometheus.NewCounter(prometheus.CounterOpts{Name: "backupd_backup_runs_total", Help: "x"})); err == nil {
		t.Error("a second backupd_backup_runs_total was registered")
	}
}

// Progress reports of a running backup move its byte and file counters
// before it ends; RunFinished adds only the remainder, so the totals are
// those of the same run reported only when it ended.
func TestProgressMovesCountersAndKeepsTotals(t *testing.T) {
	live, once := NewRuns(), NewRuns()
	live.Configured(testConfig("mesh"))
	once.Configured(testConfig("mesh"))
	final := rec(results.Backup, results.Partial, "", 0, time.Minute)
	final.FilesUnreadable = 2
	value := func(c prometheus.Collector) float64 { return testutil.ToFloat64(c) }
	live.RunStarted(final)
	for i, p := range []struct{ read, written, files uint64 }{{300, 0, 1}, {700, 100, 3}} {
		progress := final
		progress.End, progress.Outcome, progress.FilesUnreadable = time.Time{}, "", 0
		progress.BytesRead, progress.BytesWritten, progress.FilesNew, progress.FilesChanged, progress.FilesUnchanged, progress.FilesSkipped = p.read, p.written, p.files, 0, 0, 0
		live.RunProgress(progress)
		for name, c := range map[string]struct{ got, want float64 }{
			"read bytes":    {value(live.readBytes.WithLabelValues("mesh")), float64(p.read)},
			"written bytes": {value(live.writtenBytes.WithLabelValues("mesh")), float64(p.written)},
			"new files":     {value(live.files.WithLabelValues("mesh", "new")), float64(p.files)},
			"runs":          {value(live.backupRuns.WithLabelValues("mesh", "scheduled")), 0},
		} {
			if c.got != c.want {
				t.Errorf("after progress report %d, %s = %v, want %v", i+1, name, c.got, c.want)
			}
		}
	}
	live.RunFinished(final)
	once.RunStarted(final)
	once.RunFinished(final)
	if got, want := expose(t, live), expose(t, once); !bytes.Equal(got, want) {
		t.Fatalf("totals after progress reports differ from those of the run reported at its end:\n%s\nwant:\n%s", got, want)
	}
	if v := value(live.readBytes.WithLabelValues("mesh")); v != float64(final.BytesRead) {
		t.Fatalf("read bytes %v, want %d", v, final.BytesRead)
	}
	if len(live.reported) != 0 {
		t.Fatalf("progress of finished runs kept: %v", live.reported)
	}
}

// repository_free_bytes exists only for a repository whose backend reports
// free space: an object store gets no series (not a 0 that would look like
// a full disk), and a series goes when its repository stops reporting.
func TestRepositoryFreeBytesOnlyWhenReported(t *testing.T) {
	r := NewRuns()
	cfg := testConfig("mesh")
	cfg.Repositories = append(cfg.Repositories, config.Repository{Name: "bucket", Path: "s3://bucket"})
	r.Configured(cfg)
	free := func() string {
		t.Helper()
		var lines []string
		for _, l := range strings.Split(string(expose(t, r)), "\n") {
			if strings.HasPrefix(l, "backupd_repository_free_bytes{") {
				lines = append(lines, l)
			}
		}
		return strings.Join(lines, "\n")
	}
	if got := free(); got != "" {
		t.Errorf("before any state: %q, want no series", got)
	}
	r.RepositoryState(daemon.RepoState{Name: "local", Up: true, FreeBytes: 1 << 30, HasFreeBytes: true})
	r.RepositoryState(daemon.RepoState{Name: "bucket", Up: true, SizeBytes: 5})
	if got, want := free(), `backupd_repository_free_bytes{repository="local"} 1.073741824e+09`; got != want {
		t.Errorf("got %q, want only %q", got, want)
	}
	if !strings.Contains(string(expose(t, r)), `backupd_repository_size_bytes{repository="bucket"} 5`) {
		t.Error("the bucket's size is not exposed")
	}
	r.RepositoryState(daemon.RepoState{Name: "local", Up: true})
	if got := free(); got != "" {
		t.Errorf("after local stopped reporting: %q, want no series", got)
	}
}
