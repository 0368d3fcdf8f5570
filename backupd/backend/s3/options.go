package s3

import (
	"log/slog"
	"net/http"
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
	// which Save uses multipart: 64 MiB by default.
	PartSize int64

	// Transport, if set, wraps the HTTP transport the client uses (tests
	// inject faults with it). It receives the configured transport.
	Transport func(http.RoundTripper) http.RoundTripper

	Logger *slog.Logger
}
