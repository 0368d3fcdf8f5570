package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckPaths(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "a-file")
	pw := filepath.Join(dir, "pw")
	empty := filepath.Join(dir, "empty-pw")
	for p, content := range map[string]string{file: "x", pw: "secret\n", empty: ""} {
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	missing := filepath.Join(dir, "not-mounted-yet")
	t.Setenv("BACKUPD_TEST_SET", "x")
	for _, tc := range []struct {
		name    string
		repo    Repository
		policy  Policy
		key     string
		warning bool
		msg     string
	}{
		{"all good", Repository{PasswordFile: pw}, Policy{Source: dir, Drill: Drill{ScratchDir: dir}}, "", false, ""},
		{"password from a set variable", Repository{PasswordEnv: "BACKUPD_TEST_SET"}, Policy{Source: dir}, "", false, ""},
		{"missing source", Repository{PasswordFile: pw}, Policy{Source: missing}, "policies[0].source", true, "fine if a volume is mounted there later"},
		{"source is a file", Repository{PasswordFile: pw}, Policy{Source: file}, "policies[0].source", false, "is not a directory"},
		{"missing password file", Repository{PasswordFile: missing}, Policy{Source: dir}, "repositories[0].password_file", false, "does not exist"},
		{"empty password file", Repository{PasswordFile: empty}, Policy{Source: dir}, "repositories[0].password_file", false, "is empty"},
		{"password file is a directory", Repository{PasswordFile: dir}, Policy{Source: dir}, "repositories[0].password_file", false, "not a regular file"},
		{"unset password variable", Repository{PasswordEnv: "BACKUPD_TEST_UNSET_VARIABLE"}, Policy{Source: dir}, "repositories[0].password_env", true, "unset here"},
		{"missing scratch dir", Repository{PasswordFile: pw}, Policy{Source: dir, Drill: Drill{ScratchDir: missing}}, "policies[0].drill.scratch_dir", false, "create it"},
		{"scratch dir is a file", Repository{PasswordFile: pw}, Policy{Source: dir, Drill: Drill{ScratchDir: file}}, "policies[0].drill.scratch_dir", false, "is not a directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := CheckPaths(&Config{Repositories: []Repository{tc.repo}, Policies: []Policy{tc.policy}})
			if tc.key == "" {
				if len(got) > 0 {
					t.Fatalf("findings %v, want none", got)
				}
				return
			}
			if len(got) != 1 || got[0].Key != tc.key || got[0].Warning != tc.warning || !strings.Contains(got[0].String(), tc.msg) {
				t.Fatalf("findings %v, want one %s (warning %v) saying %q", got, tc.key, tc.warning, tc.msg)
			}
		})
	}
}
