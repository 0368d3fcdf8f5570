package main

import (
	"bytes"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/meshbackup/backupd/backupd/backend/s3/s3test"
)

// denyAll answers every request 403 AccessDenied, as a store whose bucket
// policy refuses the key.
type denyAll struct{}

func (denyAll) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		_, _ = io.Copy(io.Discard, req.Body)
		req.Body.Close()
	}
	body := []byte(`<?xml version="1.0" encoding="UTF-8"?>` + "\n" +
		`<Error><Code>AccessDenied</Code><Message>Access Denied.</Message><RequestId>17A0</RequestId></Error>`)
	if req.Method == http.MethodHead {
		body = nil
	}
	h := http.Header{}
	h.Set("Content-Type", "application/xml")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	return &http.Response{StatusCode: http.StatusForbidden, Status: "403 Forbidden", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: h, Body: io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body)), Request: req}, nil
}

// The errors of object storage, as a user of the command line sees them:
// each names the bucket, shows no XML and no secret, and fails the command
// at once (an access refused is not retried).
func TestS3ErrorsNameTheBucket(t *testing.T) {
	srv := s3test.StartMinIO(t)
	c := s3CLI(t, srv, "errs")
	bucket := strings.SplitN(c.repo, "/", 4)[2]
	_, secret := srv.Credentials()
	c.init()
	const wrong = "wrong-secret-0123456789abcdef"
	noLeak := func(t *testing.T, msg string) {
		t.Helper()
		for _, s := range []string{"<Error>", "<?xml", "RequestId", secret, wrong} {
			if strings.Contains(msg, s) {
				t.Errorf("message shows %q: %s", s, msg)
			}
		}
	}

	t.Run("wrong secret", func(t *testing.T) {
		// The bucket check is a HEAD: its 403 has no body to tell a bad
		// signature from a policy's refusal, so both are named.
		_, stderr, code := c.run([]string{"AWS_SECRET_ACCESS_KEY=" + wrong}, "snapshots")
		if code != exitFailed || !strings.Contains(stderr, "access denied for bucket "+bucket+" (check the credentials and the bucket policy)") {
			t.Errorf("exit %d, %q; want exit 1, access denied for bucket %s naming the credentials", code, stderr, bucket)
		}
		noLeak(t, stderr)
	})
	t.Run("access denied", func(t *testing.T) {
		var retries retryCounter
		c.hooks = testHooks{s3Transport: func(http.RoundTripper) http.RoundTripper { return denyAll{} }, onRetry: retries.onRetry}
		defer func() { c.hooks = testHooks{} }()
		out, err := callOut(c, runSnapshots, snapshotsOptions{})
		if err == nil || exitCode(err) != exitFailed || !strings.Contains(err.Error(), "access denied for bucket "+bucket) {
			t.Errorf("snapshots on a bucket that denies access: %v (exit %d), want exit 1, access denied for bucket %s", err, exitCode(err), bucket)
		}
		if err != nil {
			noLeak(t, err.Error()+out)
		}
		if n := retries.total(); n != 0 {
			t.Errorf("an access denied was retried %d times", n)
		}
	})
	t.Run("missing bucket", func(t *testing.T) {
		_, stderr, code := c.run([]string{"BACKUPD_REPOSITORY=s3://no-such-bucket-4711/x"}, "snapshots")
		if code != exitFailed || !strings.Contains(stderr, "bucket no-such-bucket-4711 does not exist") {
			t.Errorf("exit %d, %q; want exit 1, bucket no-such-bucket-4711 does not exist", code, stderr)
		}
		noLeak(t, stderr)
	})
}
