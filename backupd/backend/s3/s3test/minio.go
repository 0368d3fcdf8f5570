// Package s3test runs a real MinIO server for tests of the s3 backend and
// of code above it, and injects the faults of slow or flaky object storage
// into the backend's HTTP transport (FaultTransport).
//
// Imports: the s3 backend and the AWS SDK; only tests import it. Like all
// of the engine it never imports Prometheus, collectors/ or exporter/
// (docs/DESIGN.md §2.3).
package s3test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"github.com/meshbackup/backupd/internal/tools"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	s3backend "github.com/meshbackup/backupd/backupd/backend/s3"
)

// Region is the region MinIO answers for.
const Region = "us-east-1"

// Server is a MinIO server on 127.0.0.1, its data in a test's temp dir.
type Server struct {
	bin, dir    string
	addr        string // 127.0.0.1:PORT of the S3 API
	consoleAddr string
	user, pass  string

	caFile string // set for a TLS server: its self-signed certificate
	roots  *x509.CertPool

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
	log  *syncBuffer
}

// StartMinIO starts a MinIO server for the test and stops it in
// t.Cleanup. Without the binary it fails the test naming the install
// script (in -short mode it skips it).
func StartMinIO(t testing.TB) *Server {
	t.Helper()
	return startMinIO(t, false)
}

// StartMinIOTLS is StartMinIO with HTTPS, on a self-signed certificate for
// 127.0.0.1 (CAFile names it). Over TLS the SDK sends the body's checksum
// as a trailer of an unsigned, aws-chunked body, not a signed payload hash.
func StartMinIOTLS(t testing.TB) *Server {
	t.Helper()
	return startMinIO(t, true)
}

func startMinIO(t testing.TB, withTLS bool) *Server {
	t.Helper()
	bin, err := tools.Find("minio")
	if err != nil {
		if testing.Short() {
			t.Skipf("skipped in -short mode: %v", err)
		}
		t.Fatal(err)
	}
	s := &Server{
		bin:  bin,
		dir:  t.TempDir(),
		user: "root-" + randHex(6),
		pass: randHex(20),
		log:  &syncBuffer{},
	}
	if withTLS {
		if err := s.makeCert(); err != nil {
			t.Fatalf("make a certificate for minio: %v", err)
		}
	}
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			t.Logf("minio output:\n%s", s.log.String())
		}
	})
	var lastErr error
	for range 3 { // a free port can be taken before MinIO binds it
		s.addr, s.consoleAddr = freeAddr(t), freeAddr(t)
		if lastErr = s.start(); lastErr == nil {
			return s
		}
		s.Kill()
	}
	t.Fatalf("start minio: %v\n%s", lastErr, s.log.String())
	return nil
}

func (s *Server) start() error {
	cmd := exec.Command(s.bin, "server", "--quiet",
		"--address", s.addr, "--console-address", s.consoleAddr,
		"--certs-dir", filepath.Join(s.dir, ".certs"),
		filepath.Join(s.dir, "data"))
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + s.dir,
		"MINIO_ROOT_USER=" + s.user,
		"MINIO_ROOT_PASSWORD=" + s.pass,
		"MINIO_BROWSER=off",
		"MINIO_UPDATE=off",
		"MINIO_CI_CD=on",
	}
	cmd.Stdout, cmd.Stderr = s.log, s.log
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("run %s: %w", s.bin, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()
	return s.waitReady(done)
}

// waitReady polls the readiness endpoint, then the S3 API (MinIO reports
// ready a moment before its object layer answers), for up to a minute.
func (s *Server) waitReady(done <-chan struct{}) error {
	url := s.Endpoint() + "/minio/health/ready"
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	client := s.httpClient()
	client.Timeout = 2 * time.Second
	api := s.Client()
	for ready := false; ; {
		select {
		case <-done:
			return errors.New("minio exited before it was ready")
		case <-ctx.Done():
			return errors.New("minio not ready after a minute")
		case <-time.After(50 * time.Millisecond):
		}
		if !ready {
			resp, err := client.Get(url)
			if err != nil {
				continue
			}
			resp.Body.Close()
			ready = resp.StatusCode == http.StatusOK
			if !ready {
				continue
			}
		}
		if _, err := api.ListBuckets(ctx, &s3.ListBucketsInput{}); err == nil {
			return nil
		}
	}
}

// Endpoint is the S3 API's base URL, http://127.0.0.1:PORT (https:// for
// StartMinIOTLS).
func (s *Server) Endpoint() string {
	if s.caFile != "" {
		return "https://" + s.addr
	}
	return "http://" + s.addr
}

// CAFile is the PEM file of a TLS server's certificate, "" without TLS.
func (s *Server) CAFile() string { return s.caFile }

// httpClient trusts the server's certificate.
func (s *Server) httpClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if s.roots != nil {
		tr.TLSClientConfig = &tls.Config{RootCAs: s.roots, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{Transport: tr, Timeout: time.Minute}
}

// makeCert writes a self-signed certificate for 127.0.0.1 where MinIO
// looks for it.
func (s *Server) makeCert() error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "s3test minio"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return err
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	dir := filepath.Join(s.dir, ".certs")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := os.WriteFile(filepath.Join(dir, "public.crt"), certPEM, 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "private.key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}), 0o600); err != nil {
		return err
	}
	s.caFile = filepath.Join(s.dir, "ca.pem")
	s.roots = x509.NewCertPool()
	s.roots.AddCert(cert)
	return os.WriteFile(s.caFile, certPEM, 0o600)
}

// Credentials returns the root user and password.
func (s *Server) Credentials() (id, secret string) { return s.user, s.pass }

// Client returns a plain SDK client with the root credentials, for test
// set-up and for inspecting the bucket behind the backend's back.
func (s *Server) Client() *s3.Client {
	return s3.New(s3.Options{
		Region:       Region,
		BaseEndpoint: aws.String(s.Endpoint()),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(s.user, s.pass, ""),
		HTTPClient:   s.httpClient(),
	})
}

// NewBucket creates a fresh bucket and returns its name.
func (s *Server) NewBucket(t testing.TB) string {
	t.Helper()
	name := "test-" + randHex(8)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := s.Client().CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &name}); err != nil {
		t.Fatalf("create bucket %s: %v", name, err)
	}
	return name
}

// Options returns backend options for bucket and prefix on this server.
func (s *Server) Options(bucket, prefix string) s3backend.Options {
	return s3backend.Options{
		Bucket:          bucket,
		Prefix:          prefix,
		Endpoint:        s.Endpoint(),
		Region:          Region,
		AccessKeyID:     s.user,
		SecretAccessKey: s.pass,
		CAFile:          s.caFile,
	}
}

// Stop sends SIGTERM and waits for the server to exit (SIGKILL after 10
// seconds). Stopping a stopped server does nothing.
func (s *Server) Stop() { s.signal(syscall.SIGTERM, 10*time.Second) }

// Kill sends SIGKILL and waits for the server to exit.
func (s *Server) Kill() { s.signal(syscall.SIGKILL, time.Minute) }

func (s *Server) signal(sig syscall.Signal, grace time.Duration) {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return
	}
	select {
	case <-done:
		return
	default:
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(grace):
		_ = cmd.Process.Kill()
		<-done
	}
}

// Restart stops the server if it runs (SIGTERM) and starts it again on the
// same port with the same data directory.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Stop()
	var err error
	for range 50 { // the old socket may linger for a moment
		if err = s.start(); err == nil {
			return
		}
		s.Kill()
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("restart minio: %v\n%s", err, s.log.String())
}

func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().String()
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// syncBuffer collects the server's output for a failed test's log.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.buf.Len() > 1<<20 {
		return len(p), nil
	}
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
