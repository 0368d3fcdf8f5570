package tools

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestFindPrefersTheToolCache: the binary install-tools.sh put in the
// cache wins over one of the same name on PATH (Debian's older restic),
// PATH serves when the cache has none or a file there is not executable,
// and a binary in neither is an error naming the install command.
func TestFindPrefersTheToolCache(t *testing.T) {
	cache, onPath := t.TempDir(), t.TempDir()
	t.Setenv("BACKUPD_TOOLS", cache)
	t.Setenv("PATH", onPath)
	exe := func(dir, name string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	both := exe(cache, "both", 0o755)
	exe(onPath, "both", 0o755)
	pathOnly := exe(onPath, "pathonly", 0o755)
	exe(cache, "notexec", 0o644)
	pathNotexec := exe(onPath, "notexec", 0o755)
	for _, tc := range []struct{ name, want string }{
		{"both", both},
		{"pathonly", pathOnly},
		{"notexec", pathNotexec},
	} {
		if got, err := Find(tc.name); err != nil || got != tc.want {
			t.Errorf("Find(%q) = %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
	if _, err := Find("missing"); err == nil || !strings.Contains(err.Error(), "install-tools.sh missing") {
		t.Errorf("Find of a missing tool: %v, want an error naming install-tools.sh", err)
	}
}
