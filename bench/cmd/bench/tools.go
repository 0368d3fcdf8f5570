package main

import (
	"errors"
	"fmt"
	"github.com/meshbackup/backupd/internal/tools"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// benchPassword is the repository password of every tool (the repositories
// are throw-away).
const benchPassword = "bench-password-not-secret"

// knownTools lists the tools in the order they are run.
func knownTools() []string { return []string{"backupd", "restic", "borg", "kopia"} }

// driver knows one tool's command line. Each driver works in its own home
// directory (repository, caches, configuration) under the run directory.
type driver interface {
	name() string
	binary() string
	repoDir() string
	// homeDir holds all of the tool's state: repository, caches, config.
	homeDir() string
	versionCmd() invocation
	initCmd() invocation
	backupCmd(src string, seq int) invocation
	// restoreCmd restores the snapshot of backup seq of src into target,
	// which exists and is empty.
	restoreCmd(src, target string, seq int) invocation
	// restoredRoot is where the tree backed up from src ends up under the
	// restore target.
	restoredRoot(target, src string) string
	// bucket is the repository's bucket in S3 mode, "" in local mode.
	bucket() string
	// secrets are the strings that must not appear in any output.
	secrets() []string
}

// toolBase holds what every driver has.
type toolBase struct {
	bin  string
	home string
	repo string // the directory, or in S3 mode the tool's name of the repository
	env  []string
	s3   *s3Target // nil in local mode
}

func (b *toolBase) binary() string  { return b.bin }
func (b *toolBase) repoDir() string { return b.repo }
func (b *toolBase) homeDir() string { return b.home }

func (b *toolBase) bucket() string {
	if b.s3 == nil {
		return ""
	}
	return b.s3.bucket
}

func (b *toolBase) secrets() []string {
	if b.s3 == nil {
		return nil
	}
	return b.s3.creds.secrets()
}

func (b *toolBase) cmd(args ...string) invocation {
	return invocation{bin: b.bin, args: args, env: b.env}
}

// findTool returns the binary of tool name: backupd from backupdBin, the
// others from PATH or the tool cache where install-tools.sh builds them
// (internal/tools). It returns "" if the tool is not installed.
func findTool(name, backupdBin string) string {
	if name == "backupd" {
		if isExecutable(backupdBin) {
			return backupdBin
		}
		return ""
	}
	p, err := tools.Find(name)
	if err != nil {
		return ""
	}
	if abs, err := filepath.Abs(p); err == nil {
		return abs
	}
	return p
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// selectTools resolves the -tools list (nil: every tool found) to binaries.
func selectTools(want []string, backupdBin string) (map[string]string, []string, error) {
	bins := make(map[string]string)
	var order []string
	if want == nil {
		for _, t := range knownTools() {
			if b := findTool(t, backupdBin); b != "" {
				bins[t] = b
				order = append(order, t)
			}
		}
		if len(order) == 0 {
			return nil, nil, errors.New("no tool found (build bin/backupd, install restic and borg)")
		}
		return bins, order, nil
	}
	for _, t := range want {
		if !slices.Contains(knownTools(), t) {
			return nil, nil, fmt.Errorf("-tools: unknown tool %q (want %s)", t, strings.Join(knownTools(), ","))
		}
		if _, dup := bins[t]; dup {
			continue
		}
		b := findTool(t, backupdBin)
		if b == "" {
			return nil, nil, fmt.Errorf("-tools: %s is not installed (see scripts/install-tools.sh)", t)
		}
		bins[t] = b
	}
	for _, t := range knownTools() { // run in the canonical order
		if _, ok := bins[t]; ok {
			order = append(order, t)
		}
	}
	return bins, order, nil
}

// backupdS3Flags are the flags backupd gets after its command in S3 mode,
// besides --repo s3://BUCKET (the endpoint, region and keys are in its
// environment, see s3Env).
func backupdS3Flags() []string { return []string{"--s3-path-style=true"} }

// s3Env is the environment of a tool using the bucket of t through the
// counting proxy: the AWS SDK's variables, which restic and kopia read too.
func s3Env(t *s3Target) []string {
	return []string{
		"AWS_ENDPOINT_URL=http://" + t.endpoint,
		"AWS_REGION=" + s3Region,
		"AWS_ACCESS_KEY_ID=" + t.creds.accessKey,
		"AWS_SECRET_ACCESS_KEY=" + t.creds.secretKey,
	}
}

// newDriver creates the driver of tool name working in home, creating the
// directories it needs. With s3 set the repository is in s3's bucket.
func newDriver(name, bin, home string, s3 *s3Target) (adapter, error) {
	b := toolBase{bin: bin, home: home, repo: filepath.Join(home, "repo"), s3: s3}
	dirs := []string{home}
	env := baseEnv()
	// Keep every tool's caches and configuration inside its home.
	env = append(env, "XDG_CACHE_HOME="+filepath.Join(home, "xdg-cache"), "XDG_CONFIG_HOME="+filepath.Join(home, "xdg-config"))
	if s3 != nil {
		env = append(env, s3Env(s3)...)
	}
	var d adapter
	switch name {
	case "backupd":
		if s3 != nil {
			b.repo = "s3://" + s3.bucket
		}
		b.env = append(env, "BACKUPD_PASSWORD="+benchPassword)
		d = &backupdDriver{b}
	case "restic":
		cache := filepath.Join(home, "cache")
		dirs = append(dirs, cache)
		if s3 != nil {
			b.repo = "s3:http://" + s3.endpoint + "/" + s3.bucket
		}
		b.env = append(env, "RESTIC_PASSWORD="+benchPassword, "RESTIC_REPOSITORY="+b.repo, "RESTIC_CACHE_DIR="+cache)
		d = &resticDriver{b}
	case "borg":
		if s3 != nil {
			return nil, errors.New("borg has no S3 backend")
		}
		base := filepath.Join(home, "base")
		dirs = append(dirs, base)
		b.env = append(env, "BORG_PASSPHRASE="+benchPassword, "BORG_BASE_DIR="+base,
			"BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes", "BORG_RELOCATED_REPO_ACCESS_IS_OK=yes")
		d = &borgDriver{b}
	case "kopia":
		config, cache, logs := filepath.Join(home, "config"), filepath.Join(home, "cache"), filepath.Join(home, "logs")
		dirs = append(dirs, config, cache, logs)
		b.env = append(env, "KOPIA_PASSWORD="+benchPassword, "KOPIA_CONFIG_PATH="+filepath.Join(config, "repository.config"),
			"KOPIA_CACHE_DIRECTORY="+cache, "KOPIA_LOG_DIR="+logs, "KOPIA_CHECK_FOR_UPDATES=false")
		d = &kopiaDriver{b}
	default:
		return nil, fmt.Errorf("unknown tool %q", name)
	}
	for _, dir := range dirs {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("%s: create %s: %w", name, dir, err)
		}
	}
	return d, nil
}

// baseEnv is the bench's environment without any tool's own settings, so a
// stray RESTIC_REPOSITORY, BORG_REPO or AWS_PROFILE cannot redirect a run.
func baseEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "BACKUPD_") || strings.HasPrefix(k, "RESTIC_") ||
			strings.HasPrefix(k, "BORG_") || strings.HasPrefix(k, "KOPIA_") ||
			strings.HasPrefix(k, "AWS_") || strings.HasPrefix(k, "MINIO_") ||
			k == "XDG_CACHE_HOME" || k == "XDG_CONFIG_HOME" {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// underTarget is where restic and borg put a tree backed up by absolute
// path: the whole path, without its leading slash, under the target.
func underTarget(target, src string) string {
	return filepath.Join(target, strings.TrimPrefix(filepath.Clean(src), string(filepath.Separator)))
}

// dirSize returns the sum of the sizes of the regular files under dir.
func dirSize(dir string) (int64, error) {
	var total int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			total += fi.Size()
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("size of %s: %w", dir, err)
	}
	return total, nil
}
