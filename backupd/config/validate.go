package config

import (
	"fmt"
	"net/url"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/meshbackup/backupd/backupd/budget"
)

// hostChars and validHost are what a configured host name may be (at
// most 253 characters): a DNS name or a pod-ish identity, nothing that
// could not be a metric or log value.
var hostChars = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)

func validHost(s string) bool { return len(s) <= 253 && hostChars.MatchString(s) }

// ValidHost reports whether s may be a snapshot's host name, in the config
// or on the command line.
func ValidHost(s string) bool { return validHost(s) }

// ValidTag reports whether s may be a snapshot's tag (a name).
func ValidTag(s string) bool { return validName(s) }

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
	if !cfg.Scheduler.prioritySet {
		cfg.Scheduler.Priority = budget.Default
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
	if !validName(r.Name) {
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
		p.fail(n, k, "required: the repository directory or s3://BUCKET[/PREFIX]")
		return false
	}
	if (r.PasswordFile == "") == (r.PasswordEnv == "") {
		n, k := at("password_file")
		p.fail(n, k, "exactly one of password_file and password_env is required")
		return false
	}
	if r.Host != "" && !validHost(r.Host) {
		n, k := at("host")
		p.fail(n, k, "expected a host name of letters, digits, '_', '.', '-' (max 253), got %q", r.Host)
		return false
	}
	if !p.validateLocation(root, i, r, abs) {
		return false
	}
	r.PasswordFile = abs(r.PasswordFile)
	return true
}

// bucketChars and validBucket are what an S3 bucket name may be (3 to 63 characters) (AWS's rules, without the ones
// about reserved prefixes and suffixes, which the store enforces).
var bucketChars = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]*[a-z0-9]$`)

func validBucket(s string) bool { return len(s) >= 3 && len(s) <= 63 && bucketChars.MatchString(s) }

var schemeRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*://`)

// validateLocation checks repositories[i]'s path, s3 block, timeout and
// uploads, and makes its local paths absolute; false means it failed.
func (p *parser) validateLocation(root *yaml.Node, i int, r *Repository, abs func(string) string) bool {
	at := func(k ...any) (*yaml.Node, string) {
		key := fmt.Sprintf("repositories[%d]", i)
		for _, s := range k {
			key += "." + fmt.Sprint(s)
		}
		return find(root, append([]any{"repositories", i}, k...)...), key
	}
	fail := func(msg string, k ...any) bool {
		n, key := at(k...)
		p.fail(n, key, "%s", msg)
		return false
	}
	if !r.IsS3() {
		switch {
		case schemeRE.MatchString(r.Path):
			scheme, _, _ := strings.Cut(r.Path, "://")
			return fail(fmt.Sprintf("unsupported scheme %s:// in %q: want a directory or s3://BUCKET[/PREFIX]", scheme, r.Path), "path")
		case r.s3Set:
			return fail(fmt.Sprintf("s3 settings for a directory repository (path %q): use path: s3://BUCKET[/PREFIX], or remove the s3 block", r.Path), "s3")
		case r.Timeout != 0:
			return fail("timeout applies to object storage (path: s3://...) only: a directory's operations are not retried or timed out", "timeout")
		case r.RetryFor != 0:
			return fail("retry_for applies to object storage (path: s3://...) only: a directory's operations are not retried", "retry_for")
		}
		r.Path = abs(r.Path)
		return true
	}
	bucket, prefix, _ := strings.Cut(strings.TrimPrefix(r.Path, "s3://"), "/")
	switch {
	case !validBucket(bucket) || strings.Contains(bucket, ".."):
		return fail(fmt.Sprintf("bucket %q in %q: want 3 to 63 lowercase letters, digits, '.' and '-', starting and ending with a letter or digit (s3://BUCKET[/PREFIX])", bucket, r.Path), "path")
	case strings.ContainsAny(prefix, "?#\x00") || strings.Contains(prefix, "//") || strings.HasPrefix(prefix, "/"):
		return fail(fmt.Sprintf("prefix %q in %q: want path segments separated by single '/', without '?' or '#'", prefix, r.Path), "path")
	}
	c := &r.S3
	if c.Endpoint != "" {
		if msg := endpointProblem(c.Endpoint); msg != "" {
			return fail(msg, "s3", "endpoint")
		}
	}
	switch c.PathStyle {
	case "", "auto", "true", "false":
	default:
		return fail(fmt.Sprintf("expected auto, true or false, got %q", c.PathStyle), "s3", "path_style")
	}
	for _, pair := range []struct{ key, env, file string }{
		{"access_key_id", c.AccessKeyIDEnv, c.AccessKeyIDFile},
		{"secret_access_key", c.SecretAccessKeyEnv, c.SecretAccessKeyFile},
		{"session_token", c.SessionTokenEnv, c.SessionTokenFile},
	} {
		if pair.env != "" && pair.file != "" {
			return fail(fmt.Sprintf("give %s_env or %s_file, not both", pair.key, pair.key), "s3", pair.key+"_file")
		}
	}
	hasID := c.AccessKeyIDEnv != "" || c.AccessKeyIDFile != ""
	hasSecret := c.SecretAccessKeyEnv != "" || c.SecretAccessKeyFile != ""
	hasToken := c.SessionTokenEnv != "" || c.SessionTokenFile != ""
	switch {
	case hasID && !hasSecret:
		return fail("an access key id needs a secret access key: set secret_access_key_env or secret_access_key_file", "s3", "access_key_id_env")
	case hasSecret && !hasID:
		return fail("a secret access key needs an access key id: set access_key_id_env or access_key_id_file", "s3", "secret_access_key_env")
	case hasToken && !hasID:
		return fail("a session token needs an access key id and a secret access key", "s3", "session_token_env")
	case hasID && c.Profile != "":
		return fail("give static credentials (access_key_id_*) or a profile, not both", "s3", "profile")
	}
	c.CAFile, c.AccessKeyIDFile = abs(c.CAFile), abs(c.AccessKeyIDFile)
	c.SecretAccessKeyFile, c.SessionTokenFile = abs(c.SecretAccessKeyFile), abs(c.SessionTokenFile)
	return true
}

// endpointProblem returns what is wrong with an S3 endpoint, or "". It
// never shows what comes before an '@' (user:password@).
func endpointProblem(e string) string {
	shown := strconv.Quote(e)
	if i := strings.LastIndex(e, "@"); i >= 0 {
		shown = strconv.Quote("REDACTED" + e[i:])
	}
	u, err := url.Parse(e)
	switch {
	case !strings.Contains(e, "://") || err != nil || u.Scheme == "":
		return shown + " has no scheme, want http:// or https://"
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Sprintf("%s: scheme %s, want http:// or https://", shown, u.Scheme)
	case u.User != nil:
		return shown + " must not hold credentials: use access_key_id_env/_file and secret_access_key_env/_file"
	case u.Host == "":
		return shown + " has no host, want e.g. http://127.0.0.1:9000"
	case u.RawQuery != "" || u.Fragment != "":
		return shown + " must not have a query or fragment"
	}
	return ""
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
	if !c.check(pol.Host == "" || validHost(pol.Host), []any{"host"},
		"expected a host name of letters, digits, '_', '.', '-' (max 253), got %q", pol.Host) {
		return false
	}
	for j, tag := range pol.Tags {
		if !c.check(validName(tag), []any{"tags", j}, "expected a tag of letters, digits, '_', '.', '-' (max 63), got %q", tag) {
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
	return c.check(validName(pol.Name), []any{"name"}, "expected a name of letters, digits, '_', '.', '-' (max 63), got %q", pol.Name) &&
		c.check(!names[pol.Name], []any{"name"}, "policy %q is defined twice", pol.Name) &&
		c.check(pol.Source != "", []any{"source"}, "required: the directory to back up") &&
		c.check(repos[pol.Repository], []any{"repository"}, "expected the name of a repository defined under 'repositories', got %q", pol.Repository) &&
		c.check(pol.Schedule.Schedule != nil, []any{"schedule"}, `required: a cron schedule such as "*/5 * * * *" or "@every 1m"`) &&
		c.check(pol.RPO > 0, []any{"rpo"}, "required: the recovery point objective, a duration such as 1h") &&
		c.check(pol.RTO > 0, []any{"rto"}, "required: the recovery time objective, a duration such as 15m") &&
		c.check(pol.Drill.Schedule.Schedule != nil, []any{"drill", "schedule"}, `required: when to run restore drills, e.g. "@every 1h"`) &&
		c.check(pol.Verify.Schedule.Schedule != nil, []any{"verify", "schedule"}, `required: when to verify, e.g. "@daily"`)
}
