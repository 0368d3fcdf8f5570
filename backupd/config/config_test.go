package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshbackup/backupd/backupd/budget"
)

func TestGoodConfig(t *testing.T) {
	cfg, err := Load("testdata/good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	p := cfg.Policies[0]
	if p.Name != "mesh-volumes" || p.RPO != 5*time.Minute || p.RTO != 2*time.Minute || p.Verify.ReadShare != 0.25 ||
		p.Retention.KeepLast != 10 || p.Retention.KeepDaily != 7 || cfg.Scheduler.Jitter != 5*time.Second ||
		p.FullWalkEvery != 5 || p.FullReadEvery != 0 {
		t.Fatalf("decoded %+v", p)
	}
	if want, _ := filepath.Abs("testdata/volumes"); !strings.HasSuffix(p.Source, "testdata/volumes") || !filepath.IsAbs(want) {
		t.Fatalf("source %q not resolved against the config's directory", p.Source)
	}
	if iv := p.Schedule.Interval(time.Now()); iv != time.Minute {
		t.Fatalf("interval %v", iv)
	}
	if cfg.Scheduler.PruneGrace != 24*time.Hour {
		t.Fatal("prune grace default")
	}
}

// Every kind of mistake names the file, the line, the key and what was
// expected.
func TestBadConfigs(t *testing.T) {
	good, err := os.ReadFile("testdata/good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, from, to, want string
	}{
		{"unknown key", "    rto: 2m", "    rto: 2m\n    rot: 3m", "good.yaml:13: policies[0].rot: unknown key (expected one of: allow_empty_source, append_only, budget, drill, exclude, full_read_every, full_walk_every, host, max_shrink, name, one_file_system, repository, retention, rpo, rto, schedule, source, tags, verify)"},
		{"bad duration", "rpo: 5m", "rpo: five minutes", `good.yaml:11: policies[0].rpo: expected a positive duration such as 90s, 15m or 24h, got "five minutes"`},
		{"negative duration", "rto: 2m", "rto: -2m", `good.yaml:12: policies[0].rto: expected a positive duration`},
		{"bad cron", `schedule: "@every 1m"`, `schedule: "61 * * * *"`, "good.yaml:10: policies[0].schedule: expected a cron schedule"},
		{"unknown repository", "repository: local", "repository: remote", `good.yaml:9: policies[0].repository: expected the name of a repository defined under 'repositories', got "remote"`},
		{"missing rpo", "    rpo: 5m\n", "", "policies[0].rpo: required: the recovery point objective"},
		{"rpo below interval", "rpo: 5m", "rpo: 30s", "the rpo (30s) is shorter than the backup interval (1m0s)"},
		{"share out of range", "read_share: 0.25", "read_share: 2", `good.yaml:20: policies[0].verify.read_share: expected a share 0 < x <= 1`},
		{"negative keep", "keep_last: 10", "keep_last: -1", `good.yaml:14: policies[0].retention.keep_last: expected a whole number >= 0, got "-1"`},
		{"zero full walk", "full_walk_every: 5", "full_walk_every: 0", `good.yaml:22: policies[0].full_walk_every: expected a whole number >= 1, got "0"`},
		{"wrong type", "append_only: [\"*.log\"]", "append_only: \"*.log\"", `good.yaml:21: policies[0].append_only: expected a list, got the value "*.log"`},
		{"two passwords", "password_env: BACKUPD_PASSWORD", "password_env: BACKUPD_PASSWORD\n    password_file: pw", "repositories[0].password_file: exactly one of password_file and password_env is required"},
		{"bad name", "name: mesh-volumes", "name: mesh volumes!", `policies[0].name: expected a name of letters, digits`},
		{"bad yaml", "policies:", "policies: [", "good.yaml:"},
		{"duplicate key", "    rto: 2m", "    rto: 2m\n    rto: 3m", "policies[0].rto: "},
		{"no policies", "policies:", "nothing:", "unknown key"},
		{"max shrink out of range", "full_walk_every: 5", "full_walk_every: 5\n    max_shrink: 1.5", `policies[0].max_shrink: expected a share 0 < x <= 1 (0.9 refuses a backup that lost nine in ten of its files and bytes), got "1.5"`},
		{"allow empty not a bool", "full_walk_every: 5", "full_walk_every: 5\n    allow_empty_source: \"yes\"", `policies[0].allow_empty_source: expected true or false, got "yes"`},
		{"read rate without /s", "full_walk_every: 5", "full_walk_every: 5\n    budget: {read_rate: 50MiB}", `good.yaml:23: policies[0].budget.read_rate: expected a positive rate of bytes per second such as 50MiB/s or 200MB/s: "50MiB" is not a rate`},
		{"read rate zero", "full_walk_every: 5", "full_walk_every: 5\n    budget: {read_rate: 0MiB/s}", `policies[0].budget.read_rate: expected a positive rate of bytes per second`},
		{"read rate not a size", "full_walk_every: 5", "full_walk_every: 5\n    budget: {read_rate: fast/s}", `policies[0].budget.read_rate: expected a positive rate`},
		{"cpu zero", "full_walk_every: 5", "full_walk_every: 5\n    budget: {cpu: 0}", `policies[0].budget.cpu: expected a number of cores from 0.01 to 1024, such as 0.5 for half a core, got "0"`},
		{"cpu not a number", "full_walk_every: 5", "full_walk_every: 5\n    budget: {cpu: half}", `policies[0].budget.cpu: expected a number of cores`},
		{"budget unknown key", "full_walk_every: 5", "full_walk_every: 5\n    budget: {write_rate: 1MiB/s}", `policies[0].budget.write_rate: unknown key (expected one of: cpu, read_rate)`},
		{"priority word", "jitter: 5s", "jitter: 5s\n  priority: low", `good.yaml:25: scheduler.priority: expected off, or a mapping with nice, io_class and cpu_class, got the value "low"`},
		{"nice too high", "jitter: 5s", "jitter: 5s\n  priority: {nice: 25}", `scheduler.priority.nice: expected a nice value from 0 (unchanged) to 19 (lowest priority), got "25"`},
		{"nice negative", "jitter: 5s", "jitter: 5s\n  priority: {nice: -5}", `scheduler.priority.nice: expected a nice value from 0 (unchanged) to 19`},
		{"io class realtime", "jitter: 5s", "jitter: 5s\n  priority: {io_class: realtime}", `scheduler.priority.io_class: "realtime" is not an I/O class: want idle, best-effort, best-effort:N`},
		{"io level out of range", "jitter: 5s", "jitter: 5s\n  priority: {io_class: \"best-effort:9\"}", `scheduler.priority.io_class: "best-effort:9" is not an I/O class`},
		{"priority unknown key", "jitter: 5s", "jitter: 5s\n  priority: {cpu: 1}", `scheduler.priority.cpu: unknown key (expected one of: cpu_class, io_class, nice)`},
		{"cpu class batch", "jitter: 5s", "jitter: 5s\n  priority: {cpu_class: batch}", `scheduler.priority.cpu_class: "batch" is not a CPU class: want normal`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(string(good), tc.from) {
				t.Fatalf("fixture lacks %q", tc.from)
			}
			bad := strings.Replace(string(good), tc.from, tc.to, 1)
			_, err := Parse("testdata/good.yaml", []byte(bad))
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q\nwant it to contain %q", err, tc.want)
			}
		})
	}
}

// TestImpactSettings: the daemon runs at budget.Default unless the file
// says otherwise; "off" changes nothing; a mapping sets what it names and
// keeps the defaults of the rest; a policy's budget is decoded in bytes per
// second and cores.
func TestImpactSettings(t *testing.T) {
	good, err := os.ReadFile("testdata/good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, add string
		want      budget.Priority
	}{
		{"default", "", budget.Default},
		{"off", "  priority: off\n", budget.Off},
		{"nice only", "  priority: {nice: 15}\n", budget.Priority{Nice: 15, IO: budget.IOBestEffort, IOLevel: 7}},
		{"idle", "  priority: {nice: 5, io_class: idle}\n", budget.Priority{Nice: 5, IO: budget.IOIdle}},
		{"io level", "  priority: {io_class: \"best-effort:4\"}\n", budget.Priority{Nice: 10, IO: budget.IOBestEffort, IOLevel: 4}},
		{"io unchanged", "  priority: {io_class: none}\n", budget.Priority{Nice: 10}},
		{"cpu idle", "  priority: {cpu_class: idle}\n", budget.Priority{Nice: 10, IO: budget.IOBestEffort, IOLevel: 7, CPU: budget.CPUIdle}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse("testdata/good.yaml", append(append([]byte(nil), good...), "\n"+tc.add...))
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.Scheduler.Priority; got != tc.want {
				t.Errorf("priority %+v, want %+v", got, tc.want)
			}
			if b := cfg.Policies[0].Budget; b != (budget.Limits{}) {
				t.Errorf("budget %+v without a budget key", b)
			}
		})
	}
	withBudget := strings.Replace(string(good), "full_walk_every: 5", "full_walk_every: 5\n    budget: {read_rate: 50MiB/s, cpu: 0.5}", 1)
	cfg, err := Parse("testdata/good.yaml", []byte(withBudget))
	if err != nil {
		t.Fatal(err)
	}
	if b := cfg.Policies[0].Budget; b != (budget.Limits{ReadRate: 50 << 20, CPU: 0.5}) {
		t.Errorf("budget %+v, want 50 MiB/s and half a core", b)
	}
}

func TestPasswordSources(t *testing.T) {
	dir := t.TempDir()
	pf := filepath.Join(dir, "pw")
	_ = os.WriteFile(pf, []byte("s3cret\n"), 0o600)
	if b, err := (Repository{Name: "r", PasswordFile: pf}).Password(); err != nil || string(b) != "s3cret" {
		t.Fatalf("%q %v", b, err)
	}
	t.Setenv("BACKUPD_TEST_PW", "")
	_, err := (Repository{Name: "r", PasswordEnv: "BACKUPD_TEST_PW"}).Password()
	if err == nil || !strings.Contains(err.Error(), "BACKUPD_TEST_PW is empty") {
		t.Fatal(err)
	}
}

// The name, tag, host and bucket rules, lengths included.
func TestNameRules(t *testing.T) {
	for _, tc := range []struct {
		what string
		ok   func(string) bool
		in   string
		want bool
	}{
		{"tag", ValidTag, "mesh-1.a_b", true},
		{"tag", ValidTag, strings.Repeat("a", 63), true},
		{"tag", ValidTag, strings.Repeat("a", 64), false},
		{"tag", ValidTag, "-lead", false},
		{"tag", ValidTag, "a b", false},
		{"tag", ValidTag, "", false},
		{"host", ValidHost, "node-1.cluster.local", true},
		{"host", ValidHost, strings.Repeat("h", 253), true},
		{"host", ValidHost, strings.Repeat("h", 254), false},
		{"host", ValidHost, "node/1", false},
		{"bucket", validBucket, "abc", true},
		{"bucket", validBucket, "ab", false},
		{"bucket", validBucket, strings.Repeat("b", 63), true},
		{"bucket", validBucket, strings.Repeat("b", 64), false},
		{"bucket", validBucket, "my-bucket-", false},
		{"bucket", validBucket, "My-bucket", false},
	} {
		if got := tc.ok(tc.in); got != tc.want {
			t.Errorf("%s %q (%d characters): valid %v, want %v", tc.what, tc.in, len(tc.in), got, tc.want)
		}
	}
}
