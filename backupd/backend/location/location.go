// Package location opens the backend of a repository named by the user: a
// directory, or an S3 bucket as s3://BUCKET[/PREFIX]. It is the one place
// that turns a --repo value or a config's repository into a composed
// backend.Backend:
//
//	directory:  local                       -> wrap (metering)
//	s3://...:   s3 -> retry (with timeouts)  -> wrap (metering)
//
// The metering wrapper is the caller's (main's), passed as Options.Wrap, so
// that this package, like all of the engine, never imports collectors/.
//
// Imports: backend, backend/local, backend/s3, backend/retry, config,
// faultpoint, repository (for its Options), repository/cache and the
// standard library. It never imports Prometheus, collectors/ or exporter/
// (docs/DESIGN.md §2.3).
package location

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/meshbackup/backupd/backupd/backend"
	"github.com/meshbackup/backupd/backupd/backend/local"
	"github.com/meshbackup/backupd/backupd/backend/retry"
	"github.com/meshbackup/backupd/backupd/backend/s3"
	"github.com/meshbackup/backupd/backupd/config"
	"github.com/meshbackup/backupd/backupd/faultpoint"
	"github.com/meshbackup/backupd/backupd/repository"
	"github.com/meshbackup/backupd/backupd/repository/cache"
)

// Spec is where a repository is and how to reach it.
type Spec struct {
	// Location is a directory or s3://BUCKET[/PREFIX].
	Location string
	// S3 applies to an s3:// location only.
	S3 S3
	// Timeout bounds each attempt of a backend operation of an object
	// store (retry.Options.Timeout; 0: the retry layer's default). It does not apply to a directory: see Open.
	Timeout time.Duration
	// RetryFor is how long an operation failing transiently (the store
	// stopped, unreachable, throttling) is retried before it fails
	// (retry.Options.RetryFor; 0: the retry layer's default, 1 minute).
	// Object stores only.
	RetryFor time.Duration
	// Uploads is how many packs are uploaded in parallel (0: the
	// repository's default). It is a repository option, which Open does
	// not use: pass it to RepositoryOptions.
	Uploads int

	// Faults are the armed fault points of crash tests, for an object
	// store's own points (s3.Options.Faults). Nil: none.
	Faults *faultpoint.Set `json:"-" yaml:"-"`
	// Transport, if set, decorates the HTTP transport of an object store's
	// client (s3.Options.Transport). Only tests set it, to inject the
	// faults of a flaky store; no flag, variable or config key does.
	Transport func(http.RoundTripper) http.RoundTripper `json:"-" yaml:"-"`
}

// S3 are the settings of an S3 repository that its URL does not carry.
// Zero values leave the AWS conventions (environment, shared config and
// credentials files, web identity, container credentials) in charge.
type S3 struct {
	Endpoint                 string
	Region                   string
	PathStyle                string // auto (or empty), true or false
	CAFile                   string
	InsecureSkipVerify       bool
	Profile                  string
	AllowUnconditionalWrites bool
	// PartSize and StaleUploadAge are s3.Options' (0: its defaults).
	// Tests set them (BACKUPD_S3_PART_SIZE, BACKUPD_S3_STALE_UPLOAD_AGE)
	// to make small packs multipart and to clean their leftovers at once.
	PartSize       int64
	StaleUploadAge time.Duration
	// Credentials are static credentials; empty means the SDK's chain.
	Credentials Credentials `json:"-" yaml:"-"`
}

// Credentials are static S3 credentials. They print as [redacted] (fmt,
// slog), so that logging a Spec by mistake leaks nothing.
type Credentials struct {
	AccessKeyID     string
	SecretAccessKey string
	SessionToken    string
}

const redacted = "[redacted]"

// String hides the credentials.
func (Credentials) String() string { return redacted }

// GoString hides the credentials from %#v.
func (Credentials) GoString() string { return redacted }

// LogValue hides the credentials from slog.
func (Credentials) LogValue() slog.Value { return slog.StringValue(redacted) }

// MarshalJSON hides the credentials from encoding/json.
func (Credentials) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

// Options are what the caller adds around the backend.
type Options struct {
	Logger *slog.Logger
	// OnRetry is told of each retry of an object store's operation (the
	// storage metrics' RetryHook).
	OnRetry func(op string, attempt int, err error)
	// Wrap, if set, wraps the composed backend last, outermost (the
	// storage-operation metrics).
	Wrap func(backend.Backend) backend.Backend
}

// OpOpen is the op name of OnRetry for the opening of an object store.
const OpOpen = "open"

// IsS3 reports whether loc names an S3 repository (s3://...).
func IsS3(loc string) bool { return strings.HasPrefix(loc, "s3://") }

var schemeRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*://`)

// Check reports a location that can name no repository: an unsupported
// URL scheme (a directory never looks like one), or an s3:// URL that is
// not s3://BUCKET[/PREFIX] (s3.ParseURL's error, which names the URL).
func Check(loc string) error {
	switch {
	case loc == "":
		return errors.New("empty: want a directory or s3://BUCKET[/PREFIX]")
	case IsS3(loc):
		_, _, err := s3.ParseURL(loc) // its errors name the URL
		return err
	case schemeRE.MatchString(loc):
		scheme, _, _ := strings.Cut(loc, "://")
		return fmt.Errorf("unsupported scheme %s://: want a directory or s3://BUCKET[/PREFIX]", scheme)
	}
	return nil
}

// CheckEndpoint reports an S3 endpoint that is not an http:// or https://
// URL with a host (the SDK would take "minio:9000" for a scheme "minio"),
// or that holds credentials (user:password@) or a query. The error shows
// the endpoint without anything before an '@'.
func CheckEndpoint(endpoint string) error {
	if endpoint == "" {
		return nil
	}
	shown := strconv.Quote(endpoint)
	if i := strings.LastIndex(endpoint, "@"); i >= 0 {
		scheme, _, ok := strings.Cut(endpoint, "://")
		if !ok || len(scheme) >= i {
			scheme = ""
		} else {
			scheme += "://"
		}
		shown = strconv.Quote(scheme + "REDACTED" + endpoint[i:])
	}
	u, err := url.Parse(endpoint)
	switch {
	case !strings.Contains(endpoint, "://") || err != nil || u.Scheme == "":
		return fmt.Errorf("%s has no scheme, want http:// or https://", shown)
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("%s: scheme %s, want http:// or https://", shown, u.Scheme)
	case u.User != nil:
		return fmt.Errorf("%s must not hold credentials: give them as AWS credentials", shown)
	case u.Host == "":
		return fmt.Errorf("%s has no host", shown)
	case u.RawQuery != "" || u.Fragment != "":
		return fmt.Errorf("%s must not have a query or fragment", shown)
	}
	return nil
}

// CheckPathStyle reports a path-style setting other than auto, true and
// false (empty means auto).
func CheckPathStyle(s string) error {
	switch s {
	case "", "auto", "true", "false":
		return nil
	}
	return fmt.Errorf("%q: want auto, true or false", s)
}

// check validates spec before any I/O.
func (spec Spec) check() error {
	if err := Check(spec.Location); err != nil {
		return err
	}
	if spec.Timeout < 0 || spec.Uploads < 0 || spec.RetryFor < 0 {
		return errors.New("timeout, retry_for and uploads must not be negative")
	}
	if !IsS3(spec.Location) {
		if spec.S3 != (S3{}) {
			return errors.New("s3 settings given for a directory repository")
		}
		return nil
	}
	if err := CheckEndpoint(spec.S3.Endpoint); err != nil {
		return fmt.Errorf("s3 endpoint %w", err)
	}
	if err := CheckPathStyle(spec.S3.PathStyle); err != nil {
		return fmt.Errorf("s3 path style %w", err)
	}
	return nil
}

// Open returns the backend of the existing repository at spec.Location.
func Open(ctx context.Context, spec Spec, opt Options) (backend.Backend, error) {
	return open(ctx, spec, opt, false)
}

// Create prepares spec.Location for a new repository (a directory's
// layout; for a bucket, s3.Create's checks) and returns its backend.
func Create(ctx context.Context, spec Spec, opt Options) (backend.Backend, error) {
	return open(ctx, spec, opt, true)
}

func open(ctx context.Context, spec Spec, opt Options, create bool) (backend.Backend, error) {
	if err := spec.check(); err != nil {
		return nil, fmt.Errorf("repository %s: %w", spec.Location, err)
	}
	var be backend.Backend
	if IsS3(spec.Location) {
		// The store is reached over a network that drops connections and
		// answers 503 SlowDown under load: the retry layer retries what
		// backend.IsTransient calls transient, and bounds each attempt by
		// spec.Timeout: the opening (its bucket check, and Create's
		// probes, which start afresh each attempt), every operation, the
		// reading of the store's clock that dates locks, and CleanTemp.
		ro := retry.Options{Timeout: spec.Timeout, RetryFor: spec.RetryFor, OnRetry: opt.OnRetry, Logger: opt.Logger}
		var b *s3.Backend
		if err := retry.Do(ctx, ro, OpOpen, func(actx context.Context) error {
			var err error
			b, err = openS3(actx, spec, opt, create)
			return err
		}); err != nil {
			return nil, err
		}
		be = retry.Wrap(b, ro)
	} else {
		// A directory is not wrapped by the retry layer: its errors
		// (ENOSPC, EACCES, EIO, a missing mount) do not go away by
		// themselves within seconds, so retrying would only delay the
		// failure and blur its cause; and a per-operation deadline could
		// not interrupt a system call hung on a dead network file system
		// (the daemon's stop grace handles that, cmd_run.go stopGrace).
		var (
			l   *local.Local
			err error
		)
		if create {
			l, err = local.Create(spec.Location, local.Options{})
		} else {
			l, err = local.Open(spec.Location, local.Options{})
		}
		if err != nil {
			return nil, err
		}
		be = l
	}
	if opt.Wrap != nil {
		be = opt.Wrap(be)
	}
	return be, nil
}

func openS3(ctx context.Context, spec Spec, opt Options, create bool) (*s3.Backend, error) {
	bucket, prefix, err := s3.ParseURL(spec.Location)
	if err != nil {
		return nil, fmt.Errorf("repository %s: %w", spec.Location, err)
	}
	c := spec.S3
	so := s3.Options{
		Bucket: bucket, Prefix: prefix,
		Endpoint: c.Endpoint, Region: c.Region, PathStyle: c.PathStyle,
		CAFile: c.CAFile, InsecureSkipVerify: c.InsecureSkipVerify,
		AccessKeyID: c.Credentials.AccessKeyID, SecretAccessKey: c.Credentials.SecretAccessKey,
		SessionToken: c.Credentials.SessionToken, Profile: c.Profile,
		AllowUnconditionalWrites: c.AllowUnconditionalWrites,
		PartSize:                 c.PartSize, StaleUploadAge: c.StaleUploadAge,
		Transport: spec.Transport, Faults: spec.Faults,
		Logger: opt.Logger,
	}
	var b *s3.Backend
	if create {
		b, err = s3.Create(ctx, so)
	} else {
		b, err = s3.Open(ctx, so)
	}
	if err != nil {
		// s3's errors never carry the credentials (the s3 package's
		// contract). Most name the repository; those that do not (options,
		// the AWS configuration) get it here. Only the message depends
		// on this test, never what the error matches.
		if !strings.Contains(err.Error(), spec.Location) {
			err = fmt.Errorf("repository %s: %w", spec.Location, err)
		}
		return nil, err
	}
	return b, nil
}

// RepositoryOptions returns o with the settings of a location that belong
// to the repository rather than the backend: uploads, the number of packs
// uploaded in parallel (0 keeps the repository's default), and the local
// cache of an object store's immutable metadata, under
// cacheRoot/<repository id> ("" for none). It is the one place they are
// set, for the command line and the daemon alike.
//
// A directory is never cached: it is its own cache, read as fast as the
// cache's own directory would be, and a copy would double its metadata on
// disk.
func RepositoryOptions(o repository.Options, spec Spec, cacheRoot string) repository.Options {
	if spec.Uploads > 0 {
		o.Uploads = spec.Uploads
	}
	if cacheRoot != "" && IsS3(spec.Location) {
		o.Cache = cache.Opener(cacheRoot)
	}
	return o
}

// FromConfig returns the spec of a config's repository, with the static
// credentials its s3 block names read from their variables or files.
// Errors name the repository and the key, never a credential.
func FromConfig(rc config.Repository) (Spec, error) {
	spec := Spec{Location: rc.Path, Timeout: rc.Timeout, RetryFor: rc.RetryFor, Uploads: rc.Uploads}
	if !rc.IsS3() {
		return spec, nil
	}
	c := rc.S3
	id, secret, token, err := rc.S3Credentials()
	if err != nil {
		return Spec{}, err
	}
	spec.S3 = S3{
		Endpoint: c.Endpoint, Region: c.Region, PathStyle: c.PathStyle,
		CAFile: c.CAFile, InsecureSkipVerify: c.InsecureSkipVerify, Profile: c.Profile,
		AllowUnconditionalWrites: c.AllowUnconditionalWrites,
		Credentials:              Credentials{AccessKeyID: id, SecretAccessKey: secret, SessionToken: token},
	}
	return spec, nil
}
