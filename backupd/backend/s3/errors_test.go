package s3

import (
	"context"
	"encoding/xml"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"syscall"
	"testing"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/meshbackup/backupd/backupd/backend"
)

// sdkErr builds the error the SDK returns for an HTTP answer with status
// and, if apiErr is not nil, a decoded S3 error.
func sdkErr(status int, apiErr error, header ...string) error {
	h := http.Header{}
	for i := 0; i+1 < len(header); i += 2 {
		h.Set(header[i], header[i+1])
	}
	if apiErr == nil {
		apiErr = &smithy.GenericAPIError{Code: http.StatusText(status)}
	}
	return &smithy.OperationError{ServiceID: "S3", OperationName: "GetObject", Err: &awshttp.ResponseError{
		RequestID: "REQ123",
		ResponseError: &smithyhttp.ResponseError{
			Response: &smithyhttp.Response{Response: &http.Response{StatusCode: status, Header: h}},
			Err:      apiErr,
		},
	}}
}

func code(c, msg string) error { return &smithy.GenericAPIError{Code: c, Message: msg} }

func sendErr(err error) error {
	return &smithy.OperationError{ServiceID: "S3", OperationName: "PutObject", Err: &smithyhttp.RequestSendError{
		Err: &url.Error{Op: "Put", URL: "http://127.0.0.1:9000/bucket/key", Err: err},
	}}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func TestMapError(t *testing.T) {
	t.Parallel()
	const secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
	object := errScope{op: "get", bucket: "bkt", key: "p/data/ab/ab01", endpoint: "http://127.0.0.1:9000", accessKeyID: "AKIDEXAMPLE"}
	bucketOp := errScope{op: "check bucket", bucket: "bkt", endpoint: "http://127.0.0.1:9000"}
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	for _, c := range []struct {
		name      string
		ctx       context.Context
		err       error
		scope     errScope
		is        error // a sentinel the result matches, or nil
		transient bool
		msg       string // a substring of the message
	}{
		{name: "NoSuchKey", err: sdkErr(404, &types.NoSuchKey{Message: ptr("The specified key does not exist.")}), scope: object, is: backend.ErrNotFound, msg: "not found"},
		{name: "HEAD 404 without a body", err: sdkErr(404, &types.NotFound{}), scope: object, is: backend.ErrNotFound},
		{name: "404 on the bucket", err: sdkErr(404, &types.NotFound{}), scope: bucketOp, msg: "bucket bkt does not exist at http://127.0.0.1:9000"},
		{name: "NoSuchBucket on an object", err: sdkErr(404, &types.NoSuchBucket{}), scope: object, msg: "bucket bkt does not exist"},
		{name: "NoSuchUpload", err: sdkErr(404, code("NoSuchUpload", "")), scope: object, is: backend.ErrNotFound},
		{name: "412", err: sdkErr(412, code("PreconditionFailed", "At least one of the pre-conditions you specified did not hold")), scope: object, is: backend.ErrExists},
		{name: "412 without a code", err: sdkErr(412, nil), scope: object, is: backend.ErrExists},
		{name: "416", err: sdkErr(416, code("InvalidRange", "The requested range is not satisfiable"), "Content-Range", "bytes */10"), scope: object, is: io.ErrUnexpectedEOF},
		{name: "200 with a listing cut short", err: sdkErr(200, &xml.SyntaxError{Msg: "unexpected EOF", Line: 1}), scope: object, transient: true, msg: "(HTTP 200) could not be read"},
		{name: "409 conditional conflict", err: sdkErr(409, code("ConditionalRequestConflict", "A conflicting operation occurred")), scope: object, transient: true},
		{name: "403 AccessDenied", err: sdkErr(403, code("AccessDenied", "Access Denied.")), scope: object, msg: "access denied for bucket bkt (check the credentials and the bucket policy)"},
		{name: "403 on HEAD bucket", err: sdkErr(403, nil), scope: bucketOp, msg: "access denied for bucket bkt (check the credentials and the bucket policy)"},
		{name: "InvalidAccessKeyId", err: sdkErr(403, code("InvalidAccessKeyId", "The Access Key Id you provided does not exist in our records.")), scope: object, msg: "credentials rejected by http://127.0.0.1:9000 (InvalidAccessKeyId) for bucket bkt: check access key id AKIDEXAMPLE"},
		{name: "SignatureDoesNotMatch", err: sdkErr(403, code("SignatureDoesNotMatch", "The request signature we calculated does not match")), scope: bucketOp, msg: "credentials rejected"},
		{name: "ExpiredToken", err: sdkErr(400, code("ExpiredToken", "The provided token has expired.")), scope: object, msg: "credentials rejected"},
		{name: "301 wrong region", err: sdkErr(301, nil, "X-Amz-Bucket-Region", "eu-west-1"), scope: bucketOp, msg: "bucket bkt is in region eu-west-1: set region to eu-west-1"},
		{name: "PermanentRedirect", err: sdkErr(301, code("PermanentRedirect", "The bucket you are attempting to access must be addressed using the specified endpoint.")), scope: object, msg: "set region"},
		{name: "500", err: sdkErr(500, code("InternalError", "We encountered an internal error.")), scope: object, transient: true, msg: "InternalError"},
		{name: "503 SlowDown", err: sdkErr(503, code("SlowDown", "Please reduce your request rate.")), scope: object, transient: true, msg: "SlowDown"},
		{name: "502 without a body", err: sdkErr(502, nil), scope: object, transient: true},
		{name: "429", err: sdkErr(429, nil), scope: object, transient: true},
		{name: "RequestTimeout", err: sdkErr(400, code("RequestTimeout", "Your socket connection to the server was not read from or written to within the timeout period.")), scope: object, transient: true},
		{name: "checksum mismatch on upload", err: sdkErr(400, code("XAmzContentChecksumMismatch", "The provided 'x-amz-checksum' header does not match what was computed.")), scope: object, transient: true},
		{name: "BadDigest", err: sdkErr(400, code("BadDigest", "The Content-MD5 you specified did not match what we received.")), scope: object, transient: true},
		{name: "RequestTimeTooSkewed", err: sdkErr(403, code("RequestTimeTooSkewed", "")), scope: object, msg: "clock"},
		{name: "400 other", err: sdkErr(400, code("InvalidArgument", "Invalid argument.")), scope: object, msg: "InvalidArgument: Invalid argument (HTTP 400)"},
		{name: "connection refused", err: sendErr(&net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}), scope: object, transient: true, msg: "no usable answer from http://127.0.0.1:9000"},
		{name: "connection reset", err: sendErr(&net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}), scope: object, transient: true},
		{name: "transport timeout", err: sendErr(timeoutErr{}), scope: object, transient: true},
		{name: "body cut while decoding", err: &smithy.OperationError{ServiceID: "S3", OperationName: "ListObjectsV2", Err: &smithy.DeserializationError{Err: io.ErrUnexpectedEOF}}, scope: object, transient: true},
		{name: "canceled", ctx: canceled, err: sendErr(context.Canceled), scope: object, is: context.Canceled},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx := c.ctx
			if ctx == nil {
				ctx = context.Background()
			}
			got := mapError(ctx, c.err, c.scope)
			if got == nil {
				t.Fatal("nil")
			}
			if c.is != nil && !errors.Is(got, c.is) {
				t.Errorf("%v: does not match %v", got, c.is)
			}
			for _, s := range []error{backend.ErrNotFound, backend.ErrExists, io.ErrUnexpectedEOF, context.Canceled} {
				if s != c.is && errors.Is(got, s) {
					t.Errorf("%v: matches %v too", got, s)
				}
			}
			if backend.IsTransient(got) != c.transient {
				t.Errorf("%v: transient %v, want %v", got, backend.IsTransient(got), c.transient)
			}
			msg := got.Error()
			if c.msg != "" && !strings.Contains(msg, c.msg) {
				t.Errorf("message %q lacks %q", msg, c.msg)
			}
			if strings.Contains(msg, secret) || strings.Contains(msg, "REQ123") || strings.Contains(msg, "<Error>") || strings.Contains(msg, "operation error") {
				t.Errorf("message holds SDK noise or a secret: %q", msg)
			}
			if !errors.Is(got, c.err) && c.is != context.Canceled && !errors.Is(c.err, io.ErrUnexpectedEOF) {
				t.Errorf("the SDK error is not in the chain of %v", got)
			}
		})
	}
	if mapError(context.Background(), nil, object) != nil {
		t.Fatal("nil error mapped to non-nil")
	}
}

func TestTotalFromContentRange(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]int64{"bytes */10": 10, "bytes 0-4/10": 10, "": -1, "bytes */*": -1, "bytes 0-1": -1} {
		if got := totalFromContentRange(in); got != want {
			t.Errorf("%q: %d, want %d", in, got, want)
		}
	}
}

// FuzzMapError checks the mapping's invariants for any status and code:
// it never panics, and the classes a caller branches on are exclusive.
func FuzzMapError(f *testing.F) {
	for _, s := range []struct {
		status int
		code   string
	}{{404, "NoSuchKey"}, {412, ""}, {503, "SlowDown"}, {403, "AccessDenied"}, {416, "InvalidRange"}, {400, "X"}, {0, ""}, {999, "NoSuchBucket"}} {
		f.Add(s.status, s.code, "message", true)
	}
	f.Fuzz(func(t *testing.T, status int, c, msg string, onObject bool) {
		scope := errScope{op: "get", bucket: "bkt", endpoint: "http://e"}
		if onObject {
			scope.key = "k"
		}
		var apiErr error
		if c != "" {
			apiErr = code(c, msg)
		}
		got := mapError(context.Background(), sdkErr(status, apiErr), scope)
		if got == nil {
			t.Fatal("nil")
		}
		classes := 0
		for _, s := range []error{backend.ErrNotFound, backend.ErrExists, io.ErrUnexpectedEOF} {
			if errors.Is(got, s) {
				classes++
			}
		}
		if backend.IsTransient(got) {
			classes++
		}
		if classes > 1 {
			t.Fatalf("%d %q: %v is in %d classes", status, c, got, classes)
		}
		if status == 412 && !errors.Is(got, backend.ErrExists) {
			t.Fatalf("412 %q: %v", c, got)
		}
		if status >= 500 && status < 600 && classes == 0 && !credentialCodes[c] && !deniedCodes[c] && c != "NoSuchBucket" && c != "RequestTimeTooSkewed" {
			t.Fatalf("%d %q not transient: %v", status, c, got)
		}
	})
}

func ptr[T any](v T) *T { return &v }
