package config

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// hostRE is what a configured host name may be: a DNS name or a pod-ish
// identity, nothing that could not be a metric or log value.
var hostRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,252}$`)

// ValidHost reports whether s may be a snapshot's host name, in the config
// or on the command line.
func ValidHost(s string) bool { return hostRE.MatchString(s) }

// ValidTag reports whether s may be a snapshot's tag (a name).
func ValidTag(s string) bool { return nameRE.MatchString(s) }

// validate checks what decoding cannot (required keys, references between
// sections, names and objectives that fit together), makes paths absolute
// relative to dir and fills defaults. It stops at the first mistake.
func (p *parser) validate(root *yaml.Node, cfg *Config, dir string) {
	if len(cfg.Repositories) == 0 {
		p.fail(root, "repositories", "at least one repository is required")
		return
	}
	if len(cfg.Policies) == 0 {
		p.fail(root, "policies", "at least one policy is required")
		return
	}
	abs := absPath(dir)
	repos := map[string]bool{}
	for i := range cfg.Repositories {
		if !p.validateRepository(root, i, &cfg.Repositories[i], repos, abs) {
			return
		}
	}
	names := map[string]bool{}
	for i := range cfg.Policies {
		if !p.validatePolicy(root, i, &cfg.Policies[i], repos, names, abs) {
			return
		}
	}
	if cfg.Scheduler.PruneGrace == 0 {
		cfg.Scheduler.PruneGrace = 24 * time.Hour
	}
}

// absPath returns a function making a path of the file absolute, relative
// to dir; the empty path stays empty.
func absPath(dir string) func(string) string {
	return func(path string) string {
		if path == "" {
			return path
		}
		if !filepath.IsAbs(path) {
			path = filepath.Join(dir, path)
		}
		if a, err := filepath.Abs(path); err == nil {
			return a
		}
		return filepath.Clean(path)
	}
}

// validateRepository checks repositories[i], r, adds its name to repos and
// makes its paths absolute; false means it failed.
func (p *parser) validateRepository(root *yaml.Node, i int, r *Repository, repos map[string]bool, abs func(string) string) bool {
	at := func(k string) (*yaml.Node, string) {
		return find(root, "repositories", i, k), fmt.Sprintf("repositories[%d].%s", i, k)
	}
	if !nameRE.MatchString(r.Name) {
		n, k := at("name")
		p.fail(n, k, "expected a name of letters, digits, '_', '.', '-' (max 63), got %q", r.Name)
		return false
	}
	if repos[r.Name] {
		n, k := at("name")
		p.fail(n, k, "repository %q is defined twice", r.Name)
		return false
	}
	repos[r.Name] = true
	if r.Path == "" {
		n, k := at("path")
		p.fail(n, k, "required: the repository directory")
		return false
	}
	if (r.PasswordFile == "") == (r.PasswordEnv == "") {
		n, k := at("password_file")
		p.fail(n, k, "exactly one of password_file and password_env is required")
		return false
	}
	if r.Host != "" && !hostRE.MatchString(r.Host) {
		n, k := at("host")
		p.fail(n, k, "expected a host name of letters, digits, '_', '.', '-' (max 253), got %q", r.Host)
		return false
	}
	r.Path, r.PasswordFile = abs(r.Path), abs(r.PasswordFile)
	return true
}

// policyCheck reports mistakes of policies[i] at their key.
type policyCheck struct {
	p    *parser
	root *yaml.Node
	i    int
}

// at returns the node and the key name of the policy's key path k.
func (c policyCheck) at(k ...any) (*yaml.Node, string) {
	path := append([]any{"policies", c.i}, k...)
	key := fmt.Sprintf("policies[%d]", c.i)
	for _, s := range k {
		key += "." + fmt.Sprint(s)
	}
	return find(c.root, path...), key
}

// check fails at key path k unless ok, and returns ok.
func (c policyCheck) check(ok bool, k []any, format string, a ...any) bool {
	if !ok {
		n, key := c.at(k...)
		c.p.fail(n, key, format, a...)
	}
	return ok
}

// validatePolicy checks policies[i], pol, against the repositories and the
// names of the policies before it, adds its name to names, fills its
// defaults and makes its paths absolute; false means it failed.
func (p *parser) validatePolicy(root *yaml.Node, i int, pol *Policy, repos, names map[string]bool, abs func(string) string) bool {
	c := policyCheck{p: p, root: root, i: i}
	if !c.required(pol, repos, names) {
		return false
	}
	if iv := pol.Schedule.Interval(time.Now()); !c.check(iv <= pol.RPO, []any{"rpo"},
		"the rpo (%s) is shorter than the backup interval (%s): the objective could never be met", pol.RPO, iv) {
		return false
	}
	for j, pat := range pol.AppendOnly {
		if _, err := filepath.Match(pat, "x"); !c.check(err == nil, []any{"append_only", j}, "bad pattern %q: %v", pat, err) {
			return false
		}
	}
	if !c.check(pol.Host == "" || hostRE.MatchString(pol.Host), []any{"host"},
		"expected a host name of letters, digits, '_', '.', '-' (max 253), got %q", pol.Host) {
		return false
	}
	for j, tag := range pol.Tags {
		if !c.check(nameRE.MatchString(tag), []any{"tags", j}, "expected a tag of letters, digits, '_', '.', '-' (max 63), got %q", tag) {
			return false
		}
	}
	for j, pat := range pol.Exclude {
		if !c.check(strings.TrimSpace(pat) != "" && !strings.ContainsAny(pat, "\x00\n"), []any{"exclude", j}, "expected a gitignore-style pattern, got %q", pat) {
			return false
		}
	}
	if pol.Verify.ReadShare == 0 {
		pol.Verify.ReadShare = 1
	}
	names[pol.Name] = true
	pol.Source, pol.Drill.ScratchDir = abs(pol.Source), abs(pol.Drill.ScratchDir)
	return true
}

// required checks the policy's name and the keys every policy needs.
func (c policyCheck) required(pol *Policy, repos, names map[string]bool) bool {
	return c.check(nameRE.MatchString(pol.Name), []any{"name"}, "expected a name of letters, digits, '_', '.', '-' (max 63), got %q", pol.Name) &&
		c.check(!names[pol.Name], []any{"name"}, "policy %q is defined twice", pol.Name) &&
		c.check(pol.Source != "", []any{"source"}, "required: the directory to back up") &&
		c.check(repos[pol.Repository], []any{"repository"}, "expected the name of a repository defined under 'repositories', got %q", pol.Repository) &&
		c.check(pol.Schedule.Schedule != nil, []any{"schedule"}, `required: a cron schedule such as "*/5 * * * *" or "@every 1m"`) &&
		c.check(pol.RPO > 0, []any{"rpo"}, "required: the recovery point objective, a duration such as 1h") &&
		c.check(pol.RTO > 0, []any{"rto"}, "required: the recovery time objective, a duration such as 15m") &&
		c.check(pol.Drill.Schedule.Schedule != nil, []any{"drill", "schedule"}, `required: when to run restore drills, e.g. "@every 1h"`) &&
		c.check(pol.Verify.Schedule.Schedule != nil, []any{"verify", "schedule"}, `required: when to verify, e.g. "@daily"`)
}
