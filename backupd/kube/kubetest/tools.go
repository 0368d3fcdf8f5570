package kubetest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// ToolDir is the tool cache of scripts/install-tools.sh:
// ${BACKUPD_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/backupd/bin}.
func ToolDir() (string, error) {
	if d := os.Getenv("BACKUPD_TOOLS"); d != "" {
		return d, nil
	}
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("no tool cache: no home directory: %w", err)
		}
		cache = filepath.Join(home, ".cache")
	}
	return filepath.Join(cache, "backupd", "bin"), nil
}

// FindTool returns the path of the named binary: on PATH, else in the tool
// cache. The error names the install command.
func FindTool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	dir, err := ToolDir()
	if err != nil {
		return "", fmt.Errorf("%s not on PATH and %w: run ./scripts/install-tools.sh %s", name, err, name)
	}
	p := filepath.Join(dir, name)
	fi, err := os.Stat(p)
	if err == nil && (fi.IsDir() || fi.Mode()&0o111 == 0) {
		err = errors.New("not an executable file")
	}
	if err != nil {
		return "", fmt.Errorf("%s is neither on PATH nor at %s (%v): run ./scripts/install-tools.sh %s", name, p, err, name)
	}
	return p, nil
}

// RepoRoot returns the module's root directory: the nearest parent of the
// working directory (a test's package directory) holding go.mod.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find repository root: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("find repository root: no go.mod above the working directory")
		}
		dir = parent
	}
}
