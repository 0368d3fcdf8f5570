package s3

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/meshbackup/backupd/backupd/backend"
)

// errScope is what mapError needs to say where an error happened.
type errScope struct {
	op          string // "get", "put", "check bucket", ...
	bucket      string
	key         string // empty for bucket operations
	endpoint    string
	accessKeyID string // static credentials only; never the secret
}

// mapErr maps an SDK error of one request (nil stays nil).
func (b *Backend) mapErr(ctx context.Context, err error, op, key string) error {
	if err == nil {
		return nil
	}
	return mapError(ctx, err, errScope{op: op, bucket: b.opt.Bucket, key: key, endpoint: b.endpoint, accessKeyID: b.opt.AccessKeyID})
}

// Error is an S3 failure in words a user can act on. It matches (errors.Is)
// the contract's sentinel it stands for, if any, and the SDK error it
// came from, whose own text (request ids, service XML fields) it leaves
// out.
type Error struct {
	Msg        string
	Code       string // the S3 error code, if the store sent one
	StatusCode int    // the HTTP status, 0 if no response arrived
	kind       error  // backend.ErrNotFound, backend.ErrExists, io.ErrUnexpectedEOF or nil
	size       int64  // for a 416: the object's size from Content-Range, else -1
	err        error
}

func (e *Error) Error() string { return e.Msg }

// Unwrap returns the sentinel and the SDK error. An SDK error that wraps
// io.EOF or io.ErrUnexpectedEOF (an answer cut short) is left out: in this
// contract io.ErrUnexpectedEOF means an object shorter than asked.
func (e *Error) Unwrap() []error {
	var errs []error
	if e.kind != nil {
		errs = append(errs, e.kind)
	}
	if e.kind == io.ErrUnexpectedEOF || !errors.Is(e.err, io.ErrUnexpectedEOF) && !errors.Is(e.err, io.EOF) {
		errs = append(errs, e.err)
	}
	return errs
}

// objectSize returns the object size a 416 answer told, or -1.
func objectSize(err error) int64 {
	var e *Error
	if errors.As(err, &e) {
		return e.size
	}
	return -1
}

// S3 error codes by what they mean for a caller.
var (
	credentialCodes = map[string]bool{
		"InvalidAccessKeyId": true, "SignatureDoesNotMatch": true, "ExpiredToken": true,
		"InvalidToken": true, "TokenRefreshRequired": true, "InvalidClientTokenId": true,
	}
	deniedCodes = map[string]bool{
		"AccessDenied": true, "AllAccessDisabled": true, "Forbidden": true, "AccountProblem": true,
	}
	transientCodes = map[string]bool{
		"SlowDown": true, "RequestTimeout": true, "InternalError": true, "ServiceUnavailable": true,
		"Throttling": true, "ThrottlingException": true, "RequestThrottled": true,
		"ConditionalRequestConflict": true, "OperationAborted": true, "RequestTimeTooSkewed": false,
		"BadDigest": true, "XAmzContentSHA256Mismatch": true, "XAmzContentChecksumMismatch": true, "IncompleteBody": true,
		"XMinioServerNotInitialized": true,
	}
)

// mapError maps the error of one SDK call to the backend contract:
//   - the caller's context ending stays context.Canceled (or
//     DeadlineExceeded);
//   - NoSuchKey or a 404 on an object: backend.ErrNotFound;
//   - 412: backend.ErrExists;
//   - 416: io.ErrUnexpectedEOF;
//   - rejected credentials and denied access: a message naming the bucket
//     and at most the access key id;
//   - NoSuchBucket, or a 404 on the bucket: "bucket X does not exist";
//   - 5xx, 429, throttling, timeouts, 409 conflicts, a request that got no
//     answer, an answer cut short, or a success whose body could not be
//     decoded: backend.Transient.
func mapError(ctx context.Context, err error, s errScope) error {
	if err == nil {
		return nil
	}
	where := s.op + " " + s.bucket
	if s.key != "" {
		where = s.op + " " + s.bucket + "/" + s.key
	}
	if cerr := ctx.Err(); cerr != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		return fmt.Errorf("%s: %w", where, cerr)
	}
	e := &Error{err: err, size: -1}
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) && re.Response != nil {
		e.StatusCode = re.HTTPStatusCode()
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		e.Code = ae.ErrorCode()
	}
	status, code := e.StatusCode, e.Code
	switch {
	case status >= 200 && status < 300 && code == "":
		// A success whose body could not be decoded (an XML syntax
		// error, a deserialization error): a listing or an upload's
		// answer cut short or garbled on the way. Nothing was handed on;
		// the request may be repeated.
		cause := error(re)
		if re.Err != nil {
			cause = re.Err // the decoder's error, without request ids
		}
		e.Msg = fmt.Sprintf("%s: the answer of %s (HTTP %d) could not be read: %v", where, s.endpoint, status, cause)
		return backend.Transient(e)
	case e.StatusCode == 0 && e.Code == "":
		// No answer: connection refused or reset, DNS, TLS, a timeout of
		// the transport, or an answer whose body could not be read.
		var certErr *tls.CertificateVerificationError
		var hostErr x509.HostnameError
		var authErr x509.UnknownAuthorityError
		if errors.As(err, &certErr) || errors.As(err, &hostErr) || errors.As(err, &authErr) {
			// Not worth a retry: the same certificate comes back.
			e.Msg = fmt.Sprintf("%s: the TLS certificate of %s is not trusted (set ca_file to its CA's PEM file): %v", where, s.endpoint, rootCause(err))
			return e
		}
		e.Msg = fmt.Sprintf("%s: no usable answer from %s: %v", where, s.endpoint, rootCause(err))
		var de *smithy.DeserializationError
		var se *smithyhttp.RequestSendError
		if errors.As(err, &de) || errors.As(err, &se) || backend.IsTransient(err) {
			return backend.Transient(e)
		}
		return e
	case status == http.StatusPreconditionFailed || code == "PreconditionFailed":
		e.Msg = fmt.Sprintf("%s: already exists (If-None-Match: * refused)", where)
		e.kind = backend.ErrExists
		return e
	case code == "NoSuchBucket" || status == http.StatusNotFound && s.key == "" && (code == "" || code == "NotFound"):
		e.Msg = fmt.Sprintf("bucket %s does not exist at %s", s.bucket, s.endpoint)
		return e
	case code == "NoSuchKey" || code == "NoSuchUpload" || status == http.StatusNotFound && (code == "" || code == "NotFound"):
		e.Msg = fmt.Sprintf("%s: not found", where)
		e.kind = backend.ErrNotFound
		return e
	case status == http.StatusRequestedRangeNotSatisfiable || code == "InvalidRange":
		e.Msg = fmt.Sprintf("%s: range not satisfiable: beyond the object's end", where)
		e.kind = io.ErrUnexpectedEOF
		if re != nil && re.Response != nil {
			e.size = totalFromContentRange(re.Response.Header.Get("Content-Range"))
		}
		return e
	case code == "RequestTimeTooSkewed":
		e.Msg = fmt.Sprintf("%s: the store at %s refused the request because this host's clock differs too much from its own: fix the clock", where, s.endpoint)
		return e
	case status == http.StatusMovedPermanently || code == "PermanentRedirect" || code == "AuthorizationHeaderMalformed" && regionHeader(re) != "":
		e.Msg = fmt.Sprintf("bucket %s is not in the region the client used: set region", s.bucket)
		if r := regionHeader(re); r != "" {
			e.Msg = fmt.Sprintf("bucket %s is in region %s: set region to %s", s.bucket, r, r)
		}
		return e
	case credentialCodes[code]:
		who := "the credentials of the AWS configuration chain"
		if s.accessKeyID != "" {
			who = "access key id " + s.accessKeyID
		}
		e.Msg = fmt.Sprintf("credentials rejected by %s (%s) for bucket %s: check %s and its secret", s.endpoint, code, s.bucket, who)
		return e
	case deniedCodes[code] || status == http.StatusForbidden:
		e.Msg = fmt.Sprintf("access denied for bucket %s (check the credentials and the bucket policy)", s.bucket)
		if s.key != "" {
			e.Msg = fmt.Sprintf("%s: access denied for bucket %s (check the credentials and the bucket policy)", where, s.bucket)
		}
		return e
	case transientCodes[code] || status >= 500 || status == http.StatusTooManyRequests || status == http.StatusConflict || status == http.StatusRequestTimeout:
		e.Msg = fmt.Sprintf("%s: %s (HTTP %d, try again)", where, describe(code, ae), status)
		return backend.Transient(e)
	}
	e.Msg = fmt.Sprintf("%s: %s (HTTP %d)", where, describe(code, ae), status)
	return e
}

// regionHeader is the bucket's region an S3 answer names, if any.
func regionHeader(re *smithyhttp.ResponseError) string {
	if re == nil || re.Response == nil {
		return ""
	}
	return re.Response.Header.Get("X-Amz-Bucket-Region")
}

// describe is an S3 error code and its message, no XML, no request ids.
func describe(code string, ae smithy.APIError) string {
	if code == "" {
		return "error"
	}
	if msg := ae.ErrorMessage(); msg != "" {
		return code + ": " + strings.TrimSuffix(msg, ".")
	}
	return code
}

// rootCause strips the SDK's "operation error S3: GetObject, ..." layers
// down to the network error, whose text names the host but no secret.
func rootCause(err error) error {
	var se *smithyhttp.RequestSendError
	if errors.As(err, &se) && se.Err != nil {
		return se.Err
	}
	var oe *smithy.OperationError
	if errors.As(err, &oe) && oe.Err != nil {
		return oe.Err
	}
	return err
}

// totalFromContentRange parses "bytes */SIZE" (or "bytes A-B/SIZE"); -1 if
// it cannot.
func totalFromContentRange(v string) int64 {
	_, total, ok := strings.Cut(v, "/")
	if !ok {
		return -1
	}
	n, err := strconv.ParseInt(total, 10, 64)
	if err != nil {
		return -1
	}
	return n
}
