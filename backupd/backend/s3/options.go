package s3

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/meshbackup/backupd/backupd/faultpoint"
)

// Options say where an S3 repository is and how to reach it. Every field
// but Bucket may be left zero: the AWS conventions (environment, shared
// config and credentials files, web identity) fill in what is missing.
type Options struct {
	// Bucket and Prefix locate the repository: objects are stored under
	// Prefix/ in Bucket (see ParseURL for s3://BUCKET[/PREFIX]).
	Bucket string
	Prefix string

	// Endpoint is the store's base URL with its scheme, e.g.
	// http://127.0.0.1:9000; empty means AWS S3 (or AWS_ENDPOINT_URL).
	Endpoint string
	// Region is the bucket's region; empty means AWS_REGION or the
	// profile's, and "us-east-1" for a custom Endpoint that names none.
	Region string
	// PathStyle is "auto" (or empty), "true" or "false". Auto addresses
	// AWS by virtual host and any custom endpoint by path, as MinIO and
	// most S3-compatible stores expect.
	PathStyle string

	// CAFile adds a PEM bundle to the trusted roots. InsecureSkipVerify
	// turns off certificate checks: for tests only.
	CAFile             string
	InsecureSkipVerify bool

	// AccessKeyID, SecretAccessKey and SessionToken are static
	// credentials; when AccessKeyID is empty the SDK's provider chain is
	// used (environment, AWS_PROFILE or Profile, shared files, web
	// identity for IRSA, container credentials for EKS Pod Identity).
	AccessKeyID     string
	SecretAccessKey string
	SessionToken    string
	Profile         string

	// AllowUnconditionalWrites opts out of conditional create
	// (If-None-Match: *) for a store that refuses it. Objects may then be
	// overwritten by a racing writer; Create fails without it on such a
	// store.
	AllowUnconditionalWrites bool

	// PartSize is the size of multipart parts and the threshold above
	// which Save uses multipart: 64 MiB by default, at least 5 MiB (the
	// smallest part S3 accepts) and at most 5 GiB.
	PartSize int64

	// ListPageSize is the number of keys asked for per List request: 1000
	// (the S3 maximum) by default. Tests set it small to cover paging.
	ListPageSize int32

	// StaleUploadAge is how old an unfinished multipart upload under the
	// prefix must be before CleanTemp aborts it: 1 hour by default. An
	// upload that old belongs to a writer that died; CleanTemp is only
	// called under an exclusive lock anyway.
	StaleUploadAge time.Duration

	// Transport, if set, wraps the HTTP transport the client uses (tests
	// inject faults with it). It receives the configured transport.
	Transport func(http.RoundTripper) http.RoundTripper

	// Faults are the armed fault points of crash tests: S3AfterPart is
	// hit after each part of a multipart upload is stored. Nil: none.
	Faults *faultpoint.Set

	Logger *slog.Logger
}

// Defaults, with their reasons.
const (
	// DefaultPartSize bounds the number of parts of a pack far below the
	// 10,000 S3 allows (a 640 GiB object) while keeping a failed part
	// cheap to send again.
	DefaultPartSize = 64 << 20
	// MinPartSize is the smallest part S3 (and MinIO) accepts but for the
	// last one.
	MinPartSize = 5 << 20
	// MaxPartSize is the largest part S3 accepts.
	MaxPartSize = 5 << 30
	// DefaultStaleUploadAge is far longer than any part takes to upload,
	// so CleanTemp never aborts the upload of a live writer that a
	// mistaken caller runs it beside.
	DefaultStaleUploadAge = time.Hour
	// maxListPageSize is the largest page S3 returns.
	maxListPageSize = 1000
)

// Validate reports the first field of o that cannot work, naming it. It
// does no I/O beyond reading CAFile.
func (o Options) Validate() error {
	if o.Bucket == "" {
		return errors.New("s3 options: bucket is empty")
	}
	if err := validBucket(o.Bucket); err != nil {
		return fmt.Errorf("s3 options: %w", err)
	}
	if err := validPrefix(o.Prefix); err != nil {
		return fmt.Errorf("s3 options: %w", err)
	}
	if o.Endpoint != "" {
		if err := validEndpoint(o.Endpoint); err != nil {
			return fmt.Errorf("s3 options: %w", err)
		}
	}
	if o.Region != "" && !validRegion(o.Region) {
		return fmt.Errorf("s3 options: region %q is not a region name (like us-east-1)", o.Region)
	}
	if _, err := parsePathStyle(o.PathStyle); err != nil {
		return fmt.Errorf("s3 options: %w", err)
	}
	if o.CAFile != "" {
		if _, err := os.ReadFile(o.CAFile); err != nil {
			return fmt.Errorf("s3 options: ca_file: %w", err)
		}
	}
	switch {
	case o.AccessKeyID != "" && o.SecretAccessKey == "":
		return errors.New("s3 options: access_key_id is set but secret_access_key is empty")
	case o.AccessKeyID == "" && o.SecretAccessKey != "":
		return errors.New("s3 options: secret_access_key is set but access_key_id is empty")
	case o.AccessKeyID == "" && o.SessionToken != "":
		return errors.New("s3 options: session_token is set but access_key_id is empty")
	case o.AccessKeyID != "" && o.Profile != "":
		return errors.New("s3 options: both static credentials (access_key_id) and a profile are set: choose one")
	}
	if o.PartSize != 0 && (o.PartSize < MinPartSize || o.PartSize > MaxPartSize) {
		return fmt.Errorf("s3 options: part_size %d out of range: want %d (5 MiB) to %d (5 GiB)", o.PartSize, MinPartSize, int64(MaxPartSize))
	}
	if o.ListPageSize < 0 || o.ListPageSize > maxListPageSize {
		return fmt.Errorf("s3 options: list_page_size %d out of range: want 1 to %d", o.ListPageSize, maxListPageSize)
	}
	if o.StaleUploadAge < 0 {
		return fmt.Errorf("s3 options: stale_upload_age %v is negative", o.StaleUploadAge)
	}
	return nil
}

// applyDefaults fills in the zero fields that have a default.
func (o *Options) applyDefaults() {
	if o.PartSize == 0 {
		o.PartSize = DefaultPartSize
	}
	if o.ListPageSize == 0 {
		o.ListPageSize = maxListPageSize
	}
	if o.StaleUploadAge == 0 {
		o.StaleUploadAge = DefaultStaleUploadAge
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

func validEndpoint(s string) error {
	if !strings.Contains(s, "://") {
		return fmt.Errorf("endpoint %q has no scheme: want http:// or https://", s)
	}
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("endpoint %q: %w", s, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("endpoint %q has scheme %q: want http:// or https://", s, u.Scheme)
	}
	if u.Host == "" {
		return fmt.Errorf("endpoint %q has no host", s)
	}
	if u.User != nil {
		return fmt.Errorf("endpoint %q must not hold credentials: set access_key_id and secret_access_key", redactURL(u))
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("endpoint %q must not have a query or fragment", s)
	}
	return nil
}

// redactURL prints u without its password.
func redactURL(u *url.URL) string {
	c := *u
	if c.User != nil {
		c.User = url.User(c.User.Username())
	}
	return c.String()
}

// validRegion accepts names like us-east-1, eu-central-2, cn-north-1 and
// the made-up names S3-compatible stores use (lowercase, digits, hyphens).
func validRegion(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// parsePathStyle returns nil for auto, else the forced setting.
func parsePathStyle(s string) (*bool, error) {
	switch strings.ToLower(s) {
	case "", "auto":
		return nil, nil
	case "true":
		t := true
		return &t, nil
	case "false":
		f := false
		return &f, nil
	}
	return nil, fmt.Errorf("path_style %q: want auto, true or false", s)
}
