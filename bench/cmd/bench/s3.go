package main

import (
	"context"
	"crypto/rand"
	"debug/buildinfo"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// s3Region is the region every bucket is created in and every tool is told.
const s3Region = "us-east-1"

// S3Info describes the object store of an S3-mode run. Credentials are
// throw-away and never recorded.
type S3Info struct {
	Server        string            `json:"server"` // MinIO's version line
	Binary        string            `json:"binary"`
	Buckets       map[string]string `json:"buckets"` // tool → bucket
	CountingProxy bool              `json:"counting_proxy"`
}

// s3Creds are the throw-away root credentials of the bench's MinIO.
type s3Creds struct {
	accessKey, secretKey string
}

// secrets returns the strings that must not appear in any output.
func (c s3Creds) secrets() []string { return []string{c.accessKey, c.secretKey} }

func newS3Creds() (s3Creds, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return s3Creds{}, fmt.Errorf("generate MinIO credentials: %w", err)
	}
	return s3Creds{accessKey: "bench" + hex.EncodeToString(b[:6]), secretKey: hex.EncodeToString(b[6:])}, nil
}

// s3Target is where one tool keeps its repository in S3 mode: a bucket,
// reached through the counting proxy at endpoint (host:port, plain HTTP).
type s3Target struct {
	endpoint string
	bucket   string
	creds    s3Creds
}

// minioServer is a MinIO server the bench started.
type minioServer struct {
	cmd     *exec.Cmd
	addr    string // host:port
	creds   s3Creds
	version string
	bin     string
	done    chan error // receives cmd.Wait's result
	// dir and versionOut are startMinioAt's, to start it again.
	dir, versionOut string
}

// startMinio starts the MinIO binary bin with its data (and log) under dir
// on a free 127.0.0.1 port and waits until it is ready. Stop it with stop.
func startMinio(ctx context.Context, bin, dir string, creds s3Creds) (*minioServer, error) {
	out, err := exec.CommandContext(ctx, bin, "--version").Output()
	if err != nil {
		return nil, fmt.Errorf("minio --version: %w", err)
	}
	data, certs := filepath.Join(dir, "data"), filepath.Join(dir, "certs")
	for _, d := range []string{data, certs} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("minio: %w", err)
		}
	}
	logf, err := os.Create(filepath.Join(dir, "minio.log"))
	if err != nil {
		return nil, fmt.Errorf("minio: %w", err)
	}
	defer logf.Close() // the child has its own descriptor
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	return startMinioAt(ctx, bin, dir, creds, net.JoinHostPort("127.0.0.1", port), string(out), logf)
}

// startMinioAt is startMinio on addr (host:port), with the output of
// --version and the open log file: to start a MinIO again where it was.
func startMinioAt(ctx context.Context, bin, dir string, creds s3Creds, addr, versionOut string, logf *os.File) (*minioServer, error) {
	data, certs := filepath.Join(dir, "data"), filepath.Join(dir, "certs")
	out := []byte(versionOut)
	cmd := exec.Command(bin, "server", "--quiet", "--address", addr, "--certs-dir", certs, data)
	cmd.Env = append(baseEnv(), "MINIO_ROOT_USER="+creds.accessKey, "MINIO_ROOT_PASSWORD="+creds.secretKey,
		"MINIO_BROWSER=off", "MINIO_UPDATE=off")
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group: a Ctrl-C of the bench reaches it only
	// through stop, after the tool that was running has stopped.
	// Pdeathsig: it must not outlive a bench killed outright.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start minio: %w", err)
	}
	s := &minioServer{cmd: cmd, addr: addr, creds: creds, version: minioVersion(bin, string(out)), bin: bin, done: make(chan error, 1),
		dir: dir, versionOut: versionOut}
	go func() { s.done <- cmd.Wait() }()
	if err := s.waitReady(ctx, 2*time.Minute); err != nil {
		s.stop()
		return nil, fmt.Errorf("%w (log: %s)", err, logf.Name())
	}
	return s, nil
}

// waitReady polls /minio/health/ready until it answers 200.
func (s *minioServer) waitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{Proxy: nil}}
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url()+"/minio/health/ready", nil)
		if err != nil {
			return fmt.Errorf("minio health: %w", err)
		}
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case err := <-s.done:
			s.done <- err
			return fmt.Errorf("minio exited before it was ready: %v", err)
		case <-ctx.Done():
			return fmt.Errorf("minio not ready at %s: %w", s.addr, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (s *minioServer) url() string { return "http://" + s.addr }

// stop asks MinIO to exit and kills it after 10 s.
func (s *minioServer) stop() {
	select {
	case err := <-s.done:
		s.done <- err
		return
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

// freePort returns a port on 127.0.0.1 that was free a moment ago.
func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	_, port, err := net.SplitHostPort(ln.Addr().String())
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	return port, nil
}

// newS3Client returns an SDK client of the store at endpoint (a URL),
// path-style, with static credentials and nothing from the environment.
func newS3Client(endpoint string, creds s3Creds) *s3.Client {
	return s3.New(s3.Options{
		Region:       s3Region,
		BaseEndpoint: aws.String(endpoint),
		UsePathStyle: true,
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: creds.accessKey, SecretAccessKey: creds.secretKey, Source: "bench"}, nil
		}),
		HTTPClient: &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 16}},
	})
}

// createBucket creates bucket.
func createBucket(ctx context.Context, c *s3.Client, bucket string) error {
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		return fmt.Errorf("create bucket %s: %w", bucket, err)
	}
	return nil
}

// objectInfo is what a listing says of one object.
type objectInfo struct {
	size int64
	etag string
}

// listBucket returns every object of bucket by key.
func listBucket(ctx context.Context, c *s3.Client, bucket string) (map[string]objectInfo, error) {
	objs := make(map[string]objectInfo)
	pg := s3.NewListObjectsV2Paginator(c, &s3.ListObjectsV2Input{Bucket: aws.String(bucket)})
	for pg.HasMorePages() {
		page, err := pg.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list bucket %s: %w", bucket, err)
		}
		for _, o := range page.Contents {
			objs[aws.ToString(o.Key)] = objectInfo{size: aws.ToInt64(o.Size), etag: aws.ToString(o.ETag)}
		}
	}
	return objs, nil
}

// bucketSize returns the sum of the sizes of bucket's objects.
func bucketSize(ctx context.Context, c *s3.Client, bucket string) (int64, error) {
	objs, err := listBucket(ctx, c, bucket)
	if err != nil {
		return 0, err
	}
	var total int64
	for _, o := range objs {
		total += o.size
	}
	return total, nil
}

// bucketSave is a copy of a bucket's objects in another bucket, made with
// server-side copies, to put the bucket back in that state later.
type bucketSave struct {
	c            *s3.Client
	bucket, save string
	// state is the bucket's listing when saved (ETags as they are in
	// bucket, updated when restore copies an object back).
	state map[string]objectInfo
}

// saveBucket copies every object of bucket into the new bucket save.
func saveBucket(ctx context.Context, c *s3.Client, bucket, save string) (*bucketSave, error) {
	if err := createBucket(ctx, c, save); err != nil {
		return nil, err
	}
	state, err := listBucket(ctx, c, bucket)
	if err != nil {
		return nil, err
	}
	bs := &bucketSave{c: c, bucket: bucket, save: save, state: state}
	for key := range state {
		if err := copyObject(ctx, c, bucket, key, save); err != nil {
			return nil, err
		}
	}
	return bs, nil
}

// restore puts bucket back in the saved state: objects added since are
// deleted, and objects removed or rewritten since are copied back.
func (bs *bucketSave) restore(ctx context.Context) error {
	now, err := listBucket(ctx, bs.c, bs.bucket)
	if err != nil {
		return err
	}
	for key := range now {
		if _, ok := bs.state[key]; !ok {
			if _, err := bs.c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(bs.bucket), Key: aws.String(key)}); err != nil {
				return fmt.Errorf("reset bucket %s: delete %s: %w", bs.bucket, key, err)
			}
		}
	}
	for key, want := range bs.state {
		if got, ok := now[key]; ok && got == want {
			continue
		}
		if err := copyObject(ctx, bs.c, bs.save, key, bs.bucket); err != nil {
			return fmt.Errorf("reset bucket %s: %w", bs.bucket, err)
		}
		head, err := bs.c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bs.bucket), Key: aws.String(key)})
		if err != nil {
			return fmt.Errorf("reset bucket %s: %w", bs.bucket, err)
		}
		bs.state[key] = objectInfo{size: aws.ToInt64(head.ContentLength), etag: aws.ToString(head.ETag)}
	}
	return nil
}

// remove deletes the saved copy and its bucket.
func (bs *bucketSave) remove(ctx context.Context) error {
	objs, err := listBucket(ctx, bs.c, bs.save)
	if err != nil {
		return err
	}
	var errs []error
	for key := range objs {
		if _, err := bs.c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(bs.save), Key: aws.String(key)}); err != nil {
			errs = append(errs, err)
		}
	}
	if _, err := bs.c.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: aws.String(bs.save)}); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("remove bucket %s: %w", bs.save, err)
	}
	return nil
}

func copyObject(ctx context.Context, c *s3.Client, from, key, to string) error {
	src := from + "/" + (&url.URL{Path: key}).EscapedPath()
	if _, err := c.CopyObject(ctx, &s3.CopyObjectInput{Bucket: aws.String(to), Key: aws.String(key), CopySource: aws.String(src)}); err != nil {
		return fmt.Errorf("copy %s/%s to %s: %w", from, key, to, err)
	}
	return nil
}

// redact replaces every secret in s.
func redact(s string, secrets []string) string {
	for _, sec := range secrets {
		if sec != "" {
			s = strings.ReplaceAll(s, sec, "[redacted]")
		}
	}
	return s
}

// s3Run is the object store of an S3-mode run: the bench's MinIO, the
// counting proxy the tools talk to, and a client that talks to MinIO
// directly (bucket set-up, sizes and resets are not counted).
type s3Run struct {
	minio   *minioServer
	proxy   *countingProxy
	client  *s3.Client
	buckets map[string]string // tool → bucket
}

// bucketFor is the bucket of tool name.
func bucketFor(name string) string { return "bench-" + name }

// skipForS3 drops the tools without an S3 backend (borg) from order and
// says why; borg is named even when it was not selected.
func skipForS3(order []string) ([]string, []Skipped) {
	var kept []string
	for _, t := range order {
		if t != "borg" {
			kept = append(kept, t)
		}
	}
	return kept, []Skipped{{Tool: "borg", Reason: "no S3 backend"}}
}

// startS3 starts MinIO with its data under dir, the counting proxy in
// front of it, and creates one bucket per tool of order.
func startS3(ctx context.Context, dir string, order []string, log *logger) (*s3Run, error) {
	bin := findTool("minio", "")
	if bin == "" {
		return nil, errors.New("-s3: minio is not installed (run ./scripts/install-tools.sh minio)")
	}
	creds, err := newS3Creds()
	if err != nil {
		return nil, err
	}
	log.printf("starting MinIO (%s), data in %s", bin, dir)
	srv, err := startMinio(ctx, bin, dir, creds)
	if err != nil {
		return nil, err
	}
	target, err := url.Parse(srv.url())
	if err != nil {
		srv.stop()
		return nil, fmt.Errorf("minio address: %w", err)
	}
	proxy, err := startCountingProxy(context.WithoutCancel(ctx), target)
	if err != nil {
		srv.stop()
		return nil, err
	}
	r := &s3Run{minio: srv, proxy: proxy, client: newS3Client(srv.url(), creds), buckets: map[string]string{}}
	for _, t := range order {
		b := bucketFor(t)
		if err := createBucket(ctx, r.client, b); err != nil {
			r.close(log)
			return nil, err
		}
		r.buckets[t] = b
	}
	log.printf("MinIO %s at %s, counting proxy at %s, buckets %s", srv.version, srv.addr, proxy.addr, strings.Join(slices.Sorted(maps.Values(r.buckets)), ", "))
	return r, nil
}

// target is where tool name keeps its repository.
func (r *s3Run) target(name string) *s3Target {
	return &s3Target{endpoint: r.proxy.addr, bucket: r.buckets[name], creds: r.minio.creds}
}

func (r *s3Run) info() *S3Info {
	return &S3Info{Server: r.minio.version, Binary: r.minio.bin, Buckets: maps.Clone(r.buckets), CountingProxy: true}
}

// close stops the proxy and MinIO.
func (r *s3Run) close(log *logger) {
	if err := r.proxy.close(); err != nil {
		log.printf("warning: %v", err)
	}
	r.minio.stop()
	log.printf("MinIO stopped")
}

// minioVersion is the first line of minio --version (out) and, for a build
// from a module pseudo-version (whose line says DEVELOPMENT), the module
// version the binary was built from.
func minioVersion(bin, out string) string {
	v := firstLine(out)
	if bi, err := buildinfo.ReadFile(bin); err == nil && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		v += ", module " + bi.Main.Version
	}
	return v
}

// firstLine returns the first non-empty line of s ("minio version RELEASE...").
func firstLine(s string) string {
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			return l
		}
	}
	return ""
}
