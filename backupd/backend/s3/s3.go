package s3

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go/logging"

	"github.com/meshbackup/backupd/backupd/backend"
)

// Backend is a repository in a bucket. All methods are safe for concurrent
// use.
type Backend struct {
	client   *s3.Client
	clock    *clockSampler // the Date of the store's latest answer (ServerTime)
	opt      Options       // defaults applied
	endpoint string        // for messages: the base URL, or "AWS S3 (region)"
	log      *slog.Logger
}

var (
	_ backend.Backend     = (*Backend)(nil)
	_ backend.ServerClock = (*Backend)(nil)
	_ backend.TempCleaner = (*Backend)(nil)
)

// Create checks that the bucket can hold a new repository (reachable, no
// repository under the prefix, conditional writes honoured) and returns
// the backend.
func Create(ctx context.Context, opt Options) (*Backend, error) {
	b, err := newBackend(ctx, opt)
	if err != nil {
		return nil, err
	}
	if err := b.headBucket(ctx); err != nil {
		return nil, fmt.Errorf("create repository %s: %w", b, err)
	}
	if _, err := b.Stat(ctx, backend.Handle{Type: backend.ConfigFile}); err == nil {
		return nil, fmt.Errorf("create repository %s: a repository already exists there (its config object is present): %w", b.Location(), backend.ErrExists)
	} else if !errors.Is(err, backend.ErrNotFound) {
		return nil, fmt.Errorf("create repository %s: %w", b, err)
	}
	if b.opt.AllowUnconditionalWrites {
		b.log.Warn("conditional writes are off (allow_unconditional_writes): racing writers may overwrite each other's objects", "repo", b.Location())
		return b, nil
	}
	if err := b.probeConditionalWrites(ctx); err != nil {
		return nil, fmt.Errorf("create repository %s: %w", b.Location(), err)
	}
	return b, nil
}

// Open returns the backend of an existing repository. It checks that the
// bucket is reachable with the credentials; it does not require the config
// object, whose absence the repository layer reports.
func Open(ctx context.Context, opt Options) (*Backend, error) {
	b, err := newBackend(ctx, opt)
	if err != nil {
		return nil, err
	}
	if err := b.headBucket(ctx); err != nil {
		return nil, fmt.Errorf("open repository %s: %w", b, err)
	}
	return b, nil
}

// Location returns s3://BUCKET[/PREFIX]; never credentials.
func (b *Backend) Location() string {
	if b.opt.Prefix == "" {
		return "s3://" + b.opt.Bucket
	}
	return "s3://" + b.opt.Bucket + "/" + b.opt.Prefix
}

// String returns the location and the endpoint, for messages.
func (b *Backend) String() string {
	return b.Location() + " (" + b.endpoint + ")"
}

func newBackend(ctx context.Context, opt Options) (*Backend, error) {
	if err := opt.Validate(); err != nil {
		return nil, err
	}
	opt.applyDefaults()
	client, clock, err := newClient(ctx, opt)
	if err != nil {
		return nil, err
	}
	o := client.Options()
	endpoint := "AWS S3 (" + o.Region + ")"
	if o.BaseEndpoint != nil {
		endpoint = *o.BaseEndpoint
	}
	return &Backend{
		client:   client,
		clock:    clock,
		opt:      opt,
		endpoint: endpoint,
		log:      opt.Logger.With("component", "s3", "repo", "s3://"+path.Join(opt.Bucket, opt.Prefix)),
	}, nil
}

// newClient builds the SDK client: the whole AWS configuration chain, our
// HTTP transport, and no retries (a wrapper owns them). The transport's
// outermost layer samples the store's clock (ServerTime).
func newClient(ctx context.Context, opt Options) (*s3.Client, *clockSampler, error) {
	pathStyle, _ := parsePathStyle(opt.PathStyle) // checked by Validate
	var caPEM []byte
	if opt.CAFile != "" {
		var err error
		if caPEM, err = os.ReadFile(opt.CAFile); err != nil {
			return nil, nil, fmt.Errorf("s3 options: ca_file: %w", err)
		}
	}
	log := opt.Logger
	loadOpts := []func(*config.LoadOptions) error{
		// Invariant: one attempt per call. Retries live in a wrapper
		// that sees every attempt (metrics, budgets, backoff).
		config.WithRetryer(func() aws.Retryer { return aws.NopRetryer{} }),
		config.WithRetryMaxAttempts(1),
		// Checksums only where we ask for them: SHA256 on every write,
		// validation on whole-object reads (a ranged read carries no
		// checksum of its bytes).
		config.WithRequestChecksumCalculation(aws.RequestChecksumCalculationWhenRequired),
		config.WithResponseChecksumValidation(aws.ResponseChecksumValidationWhenRequired),
		config.WithLogger(logging.LoggerFunc(func(c logging.Classification, format string, v ...any) {
			log.Debug(fmt.Sprintf(format, v...), "component", "aws-sdk", "class", string(c))
		})),
	}
	if opt.Region != "" {
		loadOpts = append(loadOpts, config.WithRegion(opt.Region))
	}
	if opt.Profile != "" {
		loadOpts = append(loadOpts, config.WithSharedConfigProfile(opt.Profile))
	}
	if opt.AccessKeyID != "" {
		loadOpts = append(loadOpts, config.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(opt.AccessKeyID, opt.SecretAccessKey, opt.SessionToken)))
	}
	if opt.Endpoint != "" {
		loadOpts = append(loadOpts, config.WithBaseEndpoint(opt.Endpoint))
	}
	cfg, err := config.LoadDefaultConfig(ctx, loadOpts...)
	if err != nil {
		return nil, nil, fmt.Errorf("s3: load the AWS configuration (environment, shared files, profile %q): %w", opt.Profile, err)
	}
	// The SDK's HTTP client carries AWS_CA_BUNDLE; ours starts from its
	// transport so that Transport can wrap it.
	bc, ok := cfg.HTTPClient.(*awshttp.BuildableClient)
	if !ok || bc == nil {
		bc = awshttp.NewBuildableClient()
	}
	var caErr error
	tr := bc.WithTransportOptions(func(tr *http.Transport) {
		if tr.TLSClientConfig == nil {
			tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		if caPEM != nil {
			pool := tr.TLSClientConfig.RootCAs // AWS_CA_BUNDLE's, if set
			if pool == nil {
				if pool, caErr = x509.SystemCertPool(); caErr != nil {
					pool, caErr = x509.NewCertPool(), nil
				}
			}
			if !pool.AppendCertsFromPEM(caPEM) {
				caErr = fmt.Errorf("s3 options: ca_file %s holds no PEM certificate", opt.CAFile)
			}
			tr.TLSClientConfig.RootCAs = pool
		}
		tr.TLSClientConfig.InsecureSkipVerify = opt.InsecureSkipVerify //nolint:gosec // an explicit, test-only option
		tr.MaxIdleConnsPerHost = 32
	}).GetTransport()
	if caErr != nil {
		return nil, nil, caErr
	}
	var rt http.RoundTripper = tr
	if opt.Transport != nil {
		rt = opt.Transport(rt)
	}
	clock := &clockSampler{next: rt}
	rt = clock
	// No redirects: S3's region redirects are errors the SDK reports.
	cfg.HTTPClient = &http.Client{Transport: rt, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	client := s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.Retryer = aws.NopRetryer{}
		o.RetryMaxAttempts = 1
		o.DisableLogOutputChecksumValidationSkipped = true
		// BaseEndpoint is resolved here from Endpoint, AWS_ENDPOINT_URL,
		// AWS_ENDPOINT_URL_S3 or the shared config's endpoint_url.
		custom := o.BaseEndpoint != nil && *o.BaseEndpoint != ""
		if pathStyle != nil {
			o.UsePathStyle = *pathStyle
		} else {
			o.UsePathStyle = custom
		}
		if o.Region == "" && custom {
			o.Region = "us-east-1"
		}
	})
	if client.Options().Region == "" {
		return nil, nil, errors.New("s3 options: region is not set: set region in the repository options, AWS_REGION, or the profile's region (it is required for AWS S3)")
	}
	if e := client.Options().BaseEndpoint; e != nil && opt.Endpoint == "" {
		if err := validEndpoint(*e); err != nil {
			return nil, nil, fmt.Errorf("s3: the endpoint from the AWS configuration (AWS_ENDPOINT_URL or endpoint_url): %w", err)
		}
	}
	return client, clock, nil
}

// headBucket checks that the bucket exists and the credentials may use it.
func (b *Backend) headBucket(ctx context.Context) error {
	_, err := b.client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &b.opt.Bucket})
	return b.mapErr(ctx, err, "check bucket", "")
}

// probeConditionalWrites writes a probe object twice with If-None-Match: *;
// a store that honours the condition refuses the second write with 412.
func (b *Backend) probeConditionalWrites(ctx context.Context) error {
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	key := b.join("probe-if-none-match-" + hex.EncodeToString(rnd[:]))
	put := func() error {
		_, err := b.client.PutObject(ctx, &s3.PutObjectInput{
			Bucket:      &b.opt.Bucket,
			Key:         &key,
			Body:        http.NoBody,
			IfNoneMatch: aws.String("*"),
		})
		return b.mapErr(ctx, err, "probe conditional writes", key)
	}
	defer func() {
		dctx, cancel := cleanupContext(ctx)
		defer cancel()
		if _, err := b.client.DeleteObject(dctx, &s3.DeleteObjectInput{Bucket: &b.opt.Bucket, Key: &key}); err != nil {
			b.log.Warn("remove the conditional write probe", "key", key, "err", b.mapErr(dctx, err, "remove probe", key))
		}
	}()
	if err := put(); err != nil {
		return fmt.Errorf("%w (if the store at %s refuses If-None-Match, set allow_unconditional_writes to use it without conditional writes)", err, b.endpoint)
	}
	err := put()
	switch {
	case errors.Is(err, backend.ErrExists):
		return nil
	case err == nil:
		return fmt.Errorf("the store at %s ignores If-None-Match on PutObject (conditional writes), so racing writers could overwrite objects; set allow_unconditional_writes to use it anyway", b.endpoint)
	default:
		return err
	}
}

// cleanupContext is for best-effort cleanup after a failure: it survives
// the cancellation of ctx but not for long.
func cleanupContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
}
