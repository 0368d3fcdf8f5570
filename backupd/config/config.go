// Package config reads the daemon's YAML configuration. Decoding is strict:
// an unknown key, a wrong type or a bad value is an error that names the
// file, the line, the key and what was expected. Paths in the file are
// relative to the file's directory. See deploy/CONFIG.md for every key.
//
// Imports: the standard library, YAML and cron parsing, and of the module
// only snapshot and budget (for their types), so collectors/ may use its
// types. Like all of the engine it never
// imports Prometheus, collectors/ or exporter/ (docs/DESIGN.md §2.3).
package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
	"go.yaml.in/yaml/v3"

	"github.com/meshbackup/backupd/backupd/budget"
	"github.com/meshbackup/backupd/backupd/snapshot"
	"github.com/meshbackup/backupd/internal/units"
)

// Config is the whole file.
type Config struct {
	Repositories []Repository `yaml:"repositories"`
	Policies     []Policy     `yaml:"policies"`
	Scheduler    Scheduler    `yaml:"scheduler"`

	// File is the path the config was read from.
	File string `yaml:"-"`
}

// Repository is one repository the daemon writes.
type Repository struct {
	Name string `yaml:"name"`
	// Path is the repository directory (made absolute) or an S3 URL,
	// s3://BUCKET[/PREFIX] (kept as it is).
	Path string `yaml:"path"`
	// PasswordFile or PasswordEnv gives the password; exactly one is set.
	PasswordFile string `yaml:"password_file"`
	PasswordEnv  string `yaml:"password_env"`
	// Host is the host name this daemon's snapshots and runs of the
	// repository carry (parent snapshots, retention groups and the closing
	// of interrupted runs go by it), instead of the machine's: set it in a
	// pod, whose host name changes with every rollout.
	Host string `yaml:"host"`
	// Timeout bounds each attempt of a storage operation of an object
	// store (0: the retry layer's default). Not for a directory.
	Timeout time.Duration `yaml:"timeout"`
	// RetryFor is how long a storage operation of an object store that
	// keeps failing transiently (the store stopped or unreachable) is
	// retried before the run fails (0: the retry layer's default, 1
	// minute). Not for a directory.
	RetryFor time.Duration `yaml:"retry_for"`
	// Uploads is how many packs are uploaded in parallel (0: the
	// repository's default).
	Uploads int `yaml:"uploads"`
	// S3 is how to reach an s3:// repository (only with one).
	S3 S3 `yaml:"s3"`
	// s3Set records that the file has an s3 block, even an empty one.
	s3Set bool
}

// S3 are the settings of an S3 repository. It names where the credentials
// are (an environment variable or a file each), never holds them; they are
// read at open by Repository.S3Credentials. Empty fields leave the AWS
// conventions in charge (AWS_* environment, shared config and credentials
// files, web identity for IRSA, container credentials for EKS Pod
// Identity).
type S3 struct {
	Endpoint           string `yaml:"endpoint"`
	Region             string `yaml:"region"`
	PathStyle          string `yaml:"path_style"` // auto, true or false
	CAFile             string `yaml:"ca_file"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
	Profile            string `yaml:"profile"`

	AccessKeyIDEnv      string `yaml:"access_key_id_env"`
	AccessKeyIDFile     string `yaml:"access_key_id_file"`
	SecretAccessKeyEnv  string `yaml:"secret_access_key_env"`
	SecretAccessKeyFile string `yaml:"secret_access_key_file"`
	SessionTokenEnv     string `yaml:"session_token_env"`
	SessionTokenFile    string `yaml:"session_token_file"`

	AllowUnconditionalWrites bool `yaml:"allow_unconditional_writes"`
}

// IsS3 reports whether the repository is in an S3 bucket (path s3://...).
func (r Repository) IsS3() bool { return strings.HasPrefix(r.Path, "s3://") }

// S3Credentials reads the static credentials the s3 block names: all
// empty when it names none (the SDK's chain then finds them). Errors name
// the key and the variable or file, never a value; the caller names the
// repository.
func (r Repository) S3Credentials() (accessKeyID, secretAccessKey, sessionToken string, err error) {
	read := func(key, env, file string) (string, error) {
		switch {
		case env != "":
			v := os.Getenv(env)
			if v == "" {
				return "", fmt.Errorf("s3.%s_env: environment variable %s is empty or unset", key, env)
			}
			return v, nil
		case file != "":
			b, err := os.ReadFile(file)
			if err != nil {
				return "", fmt.Errorf("s3.%s_file: %w", key, err)
			}
			v := strings.TrimRight(string(b), "\r\n")
			if v == "" {
				return "", fmt.Errorf("s3.%s_file: file %s is empty", key, file)
			}
			return v, nil
		}
		return "", nil
	}
	c := r.S3
	if accessKeyID, err = read("access_key_id", c.AccessKeyIDEnv, c.AccessKeyIDFile); err != nil {
		return "", "", "", err
	}
	if secretAccessKey, err = read("secret_access_key", c.SecretAccessKeyEnv, c.SecretAccessKeyFile); err != nil {
		return "", "", "", err
	}
	if sessionToken, err = read("session_token", c.SessionTokenEnv, c.SessionTokenFile); err != nil {
		return "", "", "", err
	}
	return accessKeyID, secretAccessKey, sessionToken, nil
}

// Password reads the repository password. The error never contains it.
func (r Repository) Password() ([]byte, error) {
	if r.PasswordEnv != "" {
		v := os.Getenv(r.PasswordEnv)
		if v == "" {
			return nil, fmt.Errorf("repository %q: environment variable %s is empty or unset", r.Name, r.PasswordEnv)
		}
		return []byte(v), nil
	}
	b, err := os.ReadFile(r.PasswordFile)
	if err != nil {
		return nil, fmt.Errorf("repository %q: read password file: %w", r.Name, err)
	}
	b = bytes.TrimRight(b, "\r\n")
	if len(b) == 0 {
		return nil, fmt.Errorf("repository %q: password file %s is empty", r.Name, r.PasswordFile)
	}
	return b, nil
}

// Schedule is a cron expression (robfig/cron syntax, optional seconds
// field, descriptors such as "@every 1m" and "@hourly").
type Schedule struct {
	Spec string
	cron.Schedule
}

// Interval estimates the time between two runs, from now.
func (s Schedule) Interval(now time.Time) time.Duration {
	a := s.Next(now)
	return s.Next(a).Sub(a)
}

// Retention is how many snapshots forget keeps after each backup; all zero
// means keep everything.
type Retention struct {
	KeepLast    int `yaml:"keep_last"`
	KeepHourly  int `yaml:"keep_hourly"`
	KeepDaily   int `yaml:"keep_daily"`
	KeepWeekly  int `yaml:"keep_weekly"`
	KeepMonthly int `yaml:"keep_monthly"`
}

// KeepPolicy is the retention as the keep policy forget applies.
func (r Retention) KeepPolicy() snapshot.KeepPolicy {
	return snapshot.KeepPolicy{Last: r.KeepLast, Hourly: r.KeepHourly, Daily: r.KeepDaily, Weekly: r.KeepWeekly, Monthly: r.KeepMonthly}
}

// Drill configures restore drills.
type Drill struct {
	Schedule Schedule `yaml:"schedule"`
	// ScratchDir is where drills restore to; default: the system temp dir.
	ScratchDir string `yaml:"scratch_dir"`
}

// Verify configures repository read-back and source scrub.
type Verify struct {
	Schedule Schedule `yaml:"schedule"`
	// ReadShare is the share of packs read back per run (0 < share <= 1);
	// runs rotate through the packs, so 1/share runs cover everything.
	ReadShare float64 `yaml:"read_share"`
}

// Policy is one backed-up source.
type Policy struct {
	Name       string        `yaml:"name"`
	Source     string        `yaml:"source"`
	Repository string        `yaml:"repository"`
	Schedule   Schedule      `yaml:"schedule"`
	RPO        time.Duration `yaml:"rpo"`
	RTO        time.Duration `yaml:"rto"`
	Retention  Retention     `yaml:"retention"`
	Drill      Drill         `yaml:"drill"`
	Verify     Verify        `yaml:"verify"`
	AppendOnly []string      `yaml:"append_only"`
	// FullReadEvery and FullWalkEvery are the archiver's options of the
	// same names (every Nth backup reads append-only files whole, walks
	// every directory); 0 in the file means the default, 10.
	FullReadEvery int `yaml:"full_read_every"`
	FullWalkEvery int `yaml:"full_walk_every"`
	// AllowEmptySource and MaxShrink are the archiver's options of the
	// same names: accept an empty source whose previous snapshot was not;
	// refuse a backup that lost more than this share of both its files and
	// its bytes (0 in the file means the default, 0.9; 1 turns it off).
	AllowEmptySource bool    `yaml:"allow_empty_source"`
	MaxShrink        float64 `yaml:"max_shrink"`
	// Host overrides the repository's host for this policy.
	Host string `yaml:"host"`
	// Tags are stored with every snapshot of the policy.
	Tags []string `yaml:"tags"`
	// Exclude lists gitignore-style patterns of paths, relative to the
	// source, that are not backed up.
	Exclude []string `yaml:"exclude"`
	// OneFileSystem stores directories on another file system than the
	// source (mount points) as empty directories.
	OneFileSystem bool `yaml:"one_file_system"`
	// Budget limits what the policy's backups and scrubs read from the
	// source per second and the CPU they use (docs/DESIGN.md §3.9); zero
	// limits nothing.
	Budget budget.Limits `yaml:"budget"`
}

// HostFor returns the host name the daemon uses for policy p, on a machine
// named hostname: the policy's host, else its repository's, else hostname.
func (c *Config) HostFor(p Policy, hostname string) string {
	if p.Host != "" {
		return p.Host
	}
	for _, r := range c.Repositories {
		if r.Name == p.Repository && r.Host != "" {
			return r.Host
		}
	}
	return hostname
}

// Scheduler holds daemon-wide scheduling settings.
type Scheduler struct {
	// Jitter spreads start times: each run starts up to Jitter late.
	Jitter time.Duration `yaml:"jitter"`
	// PruneGrace is the grace period of the prune after forget.
	PruneGrace time.Duration `yaml:"prune_grace"`
	// Priority is the CPU and I/O priority the daemon runs at
	// (docs/DESIGN.md §3.9): budget.Default unless the file sets it,
	// budget.Off for "priority: off".
	Priority budget.Priority `yaml:"priority"`
	// prioritySet records that the file has a priority key.
	prioritySet bool
}

// Error is a configuration mistake at a place in the file.
type Error struct {
	File string
	Line int
	Key  string
	Msg  string
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s: %s", e.File, e.Line, e.Key, e.Msg)
	}
	return fmt.Sprintf("%s: %s: %s", e.File, e.Key, e.Msg)
}

// Load reads and validates a config file.
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(path, b)
}

// nameChars is what a name or tag is made of; validName bounds its
// length (a bounded repetition in the expression would compile to 63
// copies of it, at every start of the program).
var nameChars = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)

func validName(s string) bool { return len(s) <= 63 && nameChars.MatchString(s) }

var cronParser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// Parse validates config text; path names the file in errors and anchors
// relative paths.
func Parse(path string, b []byte) (*Config, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(b, &root); err != nil {
		return nil, yamlError(path, err)
	}
	if len(root.Content) == 0 {
		return nil, &Error{File: path, Key: "(file)", Msg: "empty config: expected 'repositories' and 'policies'"}
	}
	p := &parser{file: path}
	cfg := &Config{File: path}
	p.decode(root.Content[0], "", cfg)
	if p.err != nil {
		return nil, p.err
	}
	p.validate(root.Content[0], cfg, filepath.Dir(path))
	if p.err != nil {
		return nil, p.err
	}
	return cfg, nil
}

type parser struct {
	file string
	err  error
}

func (p *parser) fail(n *yaml.Node, key, format string, a ...any) {
	if p.err != nil {
		return
	}
	line := 0
	if n != nil {
		line = n.Line
	}
	p.err = &Error{File: p.file, Line: line, Key: key, Msg: fmt.Sprintf(format, a...)}
}

var lineRE = regexp.MustCompile(`line (\d+): (.*)`)

func yamlError(path string, err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		if m := lineRE.FindStringSubmatch(te.Errors[0]); m != nil {
			l, _ := strconv.Atoi(m[1])
			return &Error{File: path, Line: l, Key: "(yaml)", Msg: m[2]}
		}
	}
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if m := lineRE.FindStringSubmatch(msg); m != nil {
		l, _ := strconv.Atoi(m[1])
		return &Error{File: path, Line: l, Key: "(yaml)", Msg: m[2]}
	}
	return &Error{File: path, Key: "(yaml)", Msg: msg}
}

// decode walks the node tree by hand so that every error knows its line
// and key path, and unknown keys are refused.
func (p *parser) decode(n *yaml.Node, key string, out any) {
	if p.err != nil {
		return
	}
	switch v := out.(type) {
	case *Config:
		p.mapping(n, key, map[string]func(*yaml.Node, string){
			"repositories": func(c *yaml.Node, k string) {
				p.seq(c, k, func(e *yaml.Node, ek string) {
					var r Repository
					p.decode(e, ek, &r)
					v.Repositories = append(v.Repositories, r)
				})
			},
			"policies": func(c *yaml.Node, k string) {
				p.seq(c, k, func(e *yaml.Node, ek string) {
					var pol Policy
					p.decode(e, ek, &pol)
					v.Policies = append(v.Policies, pol)
				})
			},
			"scheduler": func(c *yaml.Node, k string) { p.decode(c, k, &v.Scheduler) },
		})
	case *Repository:
		p.mapping(n, key, map[string]func(*yaml.Node, string){
			"name":          p.str(&v.Name),
			"path":          p.str(&v.Path),
			"password_file": p.str(&v.PasswordFile),
			"password_env":  p.str(&v.PasswordEnv),
			"host":          p.str(&v.Host),
			"timeout":       p.duration(&v.Timeout),
			"retry_for":     p.duration(&v.RetryFor),
			"uploads":       p.atLeast(&v.Uploads, 1),
			"s3":            func(c *yaml.Node, k string) { v.s3Set = true; p.decode(c, k, &v.S3) },
		})
	case *S3:
		p.mapping(n, key, map[string]func(*yaml.Node, string){
			"endpoint":                   p.str(&v.Endpoint),
			"region":                     p.str(&v.Region),
			"path_style":                 p.str(&v.PathStyle),
			"ca_file":                    p.str(&v.CAFile),
			"insecure_skip_verify":       p.boolean(&v.InsecureSkipVerify),
			"profile":                    p.str(&v.Profile),
			"access_key_id_env":          p.str(&v.AccessKeyIDEnv),
			"access_key_id_file":         p.str(&v.AccessKeyIDFile),
			"secret_access_key_env":      p.str(&v.SecretAccessKeyEnv),
			"secret_access_key_file":     p.str(&v.SecretAccessKeyFile),
			"session_token_env":          p.str(&v.SessionTokenEnv),
			"session_token_file":         p.str(&v.SessionTokenFile),
			"allow_unconditional_writes": p.boolean(&v.AllowUnconditionalWrites),
		})
	case *Policy:
		p.mapping(n, key, map[string]func(*yaml.Node, string){
			"name":               p.str(&v.Name),
			"source":             p.str(&v.Source),
			"repository":         p.str(&v.Repository),
			"schedule":           p.schedule(&v.Schedule),
			"rpo":                p.duration(&v.RPO),
			"rto":                p.duration(&v.RTO),
			"retention":          func(c *yaml.Node, k string) { p.decode(c, k, &v.Retention) },
			"drill":              func(c *yaml.Node, k string) { p.decode(c, k, &v.Drill) },
			"verify":             func(c *yaml.Node, k string) { p.decode(c, k, &v.Verify) },
			"append_only":        p.strings(&v.AppendOnly),
			"full_read_every":    p.atLeast(&v.FullReadEvery, 1),
			"full_walk_every":    p.atLeast(&v.FullWalkEvery, 1),
			"allow_empty_source": p.boolean(&v.AllowEmptySource),
			"max_shrink":         p.fraction(&v.MaxShrink, "0.9 refuses a backup that lost nine in ten of its files and bytes"),
			"host":               p.str(&v.Host),
			"tags":               p.strings(&v.Tags),
			"exclude":            p.strings(&v.Exclude),
			"one_file_system":    p.boolean(&v.OneFileSystem),
			"budget":             func(c *yaml.Node, k string) { p.decode(c, k, &v.Budget) },
		})
	case *budget.Limits:
		p.mapping(n, key, map[string]func(*yaml.Node, string){
			"read_rate": p.rate(&v.ReadRate),
			"cpu":       p.cores(&v.CPU),
		})
	case *Retention:
		p.mapping(n, key, map[string]func(*yaml.Node, string){
			"keep_last":    p.count(&v.KeepLast),
			"keep_hourly":  p.count(&v.KeepHourly),
			"keep_daily":   p.count(&v.KeepDaily),
			"keep_weekly":  p.count(&v.KeepWeekly),
			"keep_monthly": p.count(&v.KeepMonthly),
		})
	case *Drill:
		p.mapping(n, key, map[string]func(*yaml.Node, string){
			"schedule":    p.schedule(&v.Schedule),
			"scratch_dir": p.str(&v.ScratchDir),
		})
	case *Verify:
		p.mapping(n, key, map[string]func(*yaml.Node, string){
			"schedule":   p.schedule(&v.Schedule),
			"read_share": p.share(&v.ReadShare),
		})
	case *Scheduler:
		p.mapping(n, key, map[string]func(*yaml.Node, string){
			"jitter":      p.duration(&v.Jitter),
			"prune_grace": p.duration(&v.PruneGrace),
			"priority": func(c *yaml.Node, k string) {
				v.prioritySet = true
				p.decode(c, k, &v.Priority)
			},
		})
	case *budget.Priority:
		if n.Kind == yaml.ScalarNode {
			if n.Value != "off" {
				p.fail(n, key, "expected off, or a mapping with nice, io_class and cpu_class, got %s", kind(n))
				return
			}
			*v = budget.Off
			return
		}
		*v = budget.Default // what the mapping leaves out keeps its default
		p.mapping(n, key, map[string]func(*yaml.Node, string){
			"nice":      p.nice(&v.Nice),
			"io_class":  p.ioClass(v),
			"cpu_class": p.cpuClass(&v.CPU),
		})
	default:
		panic(fmt.Sprintf("config: no decoder for %T", out))
	}
}

func join(key, sub string) string {
	if key == "" {
		return sub
	}
	return key + "." + sub
}

func (p *parser) mapping(n *yaml.Node, key string, fields map[string]func(*yaml.Node, string)) {
	if n.Kind != yaml.MappingNode {
		p.fail(n, nonEmpty(key), "expected a mapping of keys, got %s", kind(n))
		return
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		fn, ok := fields[k.Value]
		if !ok {
			var known []string
			for f := range fields {
				known = append(known, f)
			}
			slices.Sort(known)
			p.fail(k, join(key, k.Value), "unknown key (expected one of: %s)", strings.Join(known, ", "))
			return
		}
		if seen[k.Value] {
			p.fail(k, join(key, k.Value), "key given twice")
			return
		}
		seen[k.Value] = true
		fn(v, join(key, k.Value))
		if p.err != nil {
			return
		}
	}
}

func nonEmpty(s string) string {
	if s == "" {
		return "(top level)"
	}
	return s
}

func kind(n *yaml.Node) string {
	switch n.Kind {
	case yaml.ScalarNode:
		return fmt.Sprintf("the value %q", n.Value)
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a mapping"
	}
	return "nothing"
}

func (p *parser) seq(n *yaml.Node, key string, fn func(*yaml.Node, string)) {
	if n.Kind != yaml.SequenceNode {
		p.fail(n, key, "expected a list, got %s", kind(n))
		return
	}
	for i, e := range n.Content {
		fn(e, fmt.Sprintf("%s[%d]", key, i))
		if p.err != nil {
			return
		}
	}
}

func (p *parser) scalar(n *yaml.Node, key, what string) (string, bool) {
	if n.Kind != yaml.ScalarNode {
		p.fail(n, key, "expected %s, got %s", what, kind(n))
		return "", false
	}
	return n.Value, true
}

func (p *parser) str(dst *string) func(*yaml.Node, string) {
	return func(n *yaml.Node, key string) {
		if v, ok := p.scalar(n, key, "a string"); ok {
			*dst = v
		}
	}
}

func (p *parser) strings(dst *[]string) func(*yaml.Node, string) {
	return func(n *yaml.Node, key string) {
		p.seq(n, key, func(e *yaml.Node, ek string) {
			if v, ok := p.scalar(e, ek, "a string"); ok {
				*dst = append(*dst, v)
			}
		})
	}
}

func (p *parser) duration(dst *time.Duration) func(*yaml.Node, string) {
	return func(n *yaml.Node, key string) {
		v, ok := p.scalar(n, key, "a duration such as 90s, 15m or 24h")
		if !ok {
			return
		}
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			p.fail(n, key, "expected a positive duration such as 90s, 15m or 24h, got %q", v)
			return
		}
		*dst = d
	}
}

func (p *parser) count(dst *int) func(*yaml.Node, string) { return p.atLeast(dst, 0) }

func (p *parser) atLeast(dst *int, least int) func(*yaml.Node, string) {
	return func(n *yaml.Node, key string) {
		v, ok := p.scalar(n, key, "a whole number")
		if !ok {
			return
		}
		c, err := strconv.Atoi(v)
		if err != nil || c < least {
			p.fail(n, key, "expected a whole number >= %d, got %q", least, v)
			return
		}
		*dst = c
	}
}

func (p *parser) share(dst *float64) func(*yaml.Node, string) {
	return p.fraction(dst, "0.25 reads a quarter of the packs per run")
}

// fraction decodes a share 0 < x <= 1; example explains one value.
func (p *parser) fraction(dst *float64, example string) func(*yaml.Node, string) {
	return func(n *yaml.Node, key string) {
		v, ok := p.scalar(n, key, "a number")
		if !ok {
			return
		}
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f <= 0 || f > 1 {
			p.fail(n, key, "expected a share 0 < x <= 1 (%s), got %q", example, v)
			return
		}
		*dst = f
	}
}

// rate decodes a rate of bytes per second such as 50MiB/s.
func (p *parser) rate(dst *int64) func(*yaml.Node, string) {
	return func(n *yaml.Node, key string) {
		v, ok := p.scalar(n, key, "a rate such as 50MiB/s")
		if !ok {
			return
		}
		r, err := units.ParseRate(v)
		if err != nil {
			p.fail(n, key, "expected a positive rate of bytes per second such as 50MiB/s or 200MB/s: %v", err)
			return
		}
		*dst = r
	}
}

// cores decodes a CPU limit in cores.
func (p *parser) cores(dst *float64) func(*yaml.Node, string) {
	return func(n *yaml.Node, key string) {
		v, ok := p.scalar(n, key, "a number of cores")
		if !ok {
			return
		}
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || !(f >= budget.MinCPU) || f > 1024 {
			p.fail(n, key, "expected a number of cores from %g to 1024, such as 0.5 for half a core, got %q", budget.MinCPU, v)
			return
		}
		*dst = f
	}
}

// nice decodes a nice value backupd may take without privileges.
func (p *parser) nice(dst *int) func(*yaml.Node, string) {
	return func(n *yaml.Node, key string) {
		v, ok := p.scalar(n, key, "a nice value")
		if !ok {
			return
		}
		c, err := strconv.Atoi(v)
		if err != nil || c < 0 || c > 19 {
			p.fail(n, key, "expected a nice value from 0 (unchanged) to 19 (lowest priority), got %q", v)
			return
		}
		*dst = c
	}
}

// ioClass decodes an I/O class into dst's IO and IOLevel.
func (p *parser) ioClass(dst *budget.Priority) func(*yaml.Node, string) {
	return func(n *yaml.Node, key string) {
		v, ok := p.scalar(n, key, "an I/O class")
		if !ok {
			return
		}
		c, l, err := budget.ParseIOClass(v)
		if err != nil {
			p.fail(n, key, "%v", err)
			return
		}
		dst.IO, dst.IOLevel = c, l
	}
}

// cpuClass decodes a CPU class.
func (p *parser) cpuClass(dst *budget.CPUClass) func(*yaml.Node, string) {
	return func(n *yaml.Node, key string) {
		v, ok := p.scalar(n, key, "a CPU class")
		if !ok {
			return
		}
		c, err := budget.ParseCPUClass(v)
		if err != nil {
			p.fail(n, key, "%v", err)
			return
		}
		*dst = c
	}
}

func (p *parser) boolean(dst *bool) func(*yaml.Node, string) {
	return func(n *yaml.Node, key string) {
		v, ok := p.scalar(n, key, "true or false")
		if !ok {
			return
		}
		b, err := strconv.ParseBool(v)
		if err != nil || n.Tag != "!!bool" {
			p.fail(n, key, "expected true or false, got %q", v)
			return
		}
		*dst = b
	}
}

func (p *parser) schedule(dst *Schedule) func(*yaml.Node, string) {
	return func(n *yaml.Node, key string) {
		v, ok := p.scalar(n, key, `a cron schedule such as "*/5 * * * *" or "@every 1m"`)
		if !ok {
			return
		}
		s, err := cronParser.Parse(v)
		if err != nil {
			p.fail(n, key, `expected a cron schedule such as "*/5 * * * *", "0 */5 * * * *" or "@every 1m": %v`, err)
			return
		}
		*dst = Schedule{Spec: v, Schedule: s}
	}
}

// ParseSchedule parses a cron expression or descriptor as the config file's
// schedule keys do (for configs built by code: the node agent's).
func ParseSchedule(spec string) (Schedule, error) {
	s, err := cronParser.Parse(spec)
	if err != nil {
		return Schedule{}, fmt.Errorf("schedule %q: %w", spec, err)
	}
	return Schedule{Spec: spec, Schedule: s}, nil
}

// find returns the node at a key path (for error lines of semantic checks).
func find(n *yaml.Node, path ...any) *yaml.Node {
	for _, step := range path {
		if n == nil {
			return nil
		}
		switch s := step.(type) {
		case string:
			var next *yaml.Node
			if n.Kind == yaml.MappingNode {
				for i := 0; i+1 < len(n.Content); i += 2 {
					if n.Content[i].Value == s {
						next = n.Content[i+1]
					}
				}
			}
			if next == nil {
				return n
			}
			n = next
		case int:
			if n.Kind != yaml.SequenceNode || s >= len(n.Content) {
				return n
			}
			n = n.Content[s]
		}
	}
	return n
}
