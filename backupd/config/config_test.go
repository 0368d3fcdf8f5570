package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
		{"unknown key", "    rto: 2m", "    rto: 2m\n    rot: 3m", "good.yaml:13: policies[0].rot: unknown key (expected one of: allow_empty_source, append_only, drill, exclude, full_read_every, full_walk_every, host, max_shrink, name, one_file_system, repository, retention, rpo, rto, schedule, source, tags, verify)"},
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
