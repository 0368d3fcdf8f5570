package s3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/meshbackup/backupd/backupd/backend"
)

// Save stores rd's content under h with one conditional PutObject, or a
// multipart upload when it is larger than PartSize (see the package doc).
func (b *Backend) Save(ctx context.Context, h backend.Handle, rd io.ReadSeeker) error {
	if err := h.Valid(); err != nil {
		return fmt.Errorf("save: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	size, err := rd.Seek(0, io.SeekEnd)
	if err != nil {
		return fmt.Errorf("save %v: size of the content: %w", h, err)
	}
	if _, err := rd.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("save %v: rewind the content: %w", h, err)
	}
	key := b.key(h)
	ra := asReaderAt(rd)
	if !b.opt.AllowUnconditionalWrites && size <= b.opt.PartSize {
		return b.putObject(ctx, h, key, ra, size)
	}
	// A multipart upload sends every part before the store can refuse
	// the completion: ask first (racy, but it saves the upload in the
	// common case). Without conditional writes this check is all that
	// keeps an object from being replaced.
	if _, err := b.Stat(ctx, h); err == nil {
		return fmt.Errorf("save %v: %w", h, backend.ErrExists)
	} else if !errors.Is(err, backend.ErrNotFound) {
		return fmt.Errorf("save %v: %w", h, err)
	}
	if size <= b.opt.PartSize {
		return b.putObject(ctx, h, key, ra, size)
	}
	return b.multipart(ctx, h, key, ra, size)
}

func (b *Backend) ifNoneMatch() *string {
	if b.opt.AllowUnconditionalWrites {
		return nil
	}
	return aws.String("*")
}

func (b *Backend) putObject(ctx context.Context, h backend.Handle, key string, ra io.ReaderAt, size int64) error {
	_, err := b.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket:            &b.opt.Bucket,
		Key:               &key,
		Body:              io.NewSectionReader(ra, 0, size),
		ContentLength:     aws.Int64(size),
		ContentType:       aws.String("application/octet-stream"),
		IfNoneMatch:       b.ifNoneMatch(),
		ChecksumAlgorithm: types.ChecksumAlgorithmSha256,
	})
	if err != nil {
		return fmt.Errorf("save %v: %w", h, b.mapErr(ctx, err, "put", key))
	}
	return nil
}

// Load reads length bytes of h at offset (0: to the end) with one ranged
// GetObject and calls fn once with the body. A whole-object read asks the
// store for the object's checksum and the SDK verifies the body against
// it. The body fn reads reports a connection cut mid-body as a transient
// error, and a checksum mismatch as backend.ErrIntegrity.
func (b *Backend) Load(ctx context.Context, h backend.Handle, length int, offset int64, fn func(rd io.Reader) error) error {
	if err := h.Valid(); err != nil {
		return fmt.Errorf("load: %w", err)
	}
	if offset < 0 || length < 0 {
		return fmt.Errorf("load %v: negative offset %d or length %d", h, offset, length)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	key := b.key(h)
	in := &s3.GetObjectInput{Bucket: &b.opt.Bucket, Key: &key}
	whole := offset == 0 && length == 0
	switch {
	case whole:
		in.ChecksumMode = types.ChecksumModeEnabled
	case length == 0:
		in.Range = aws.String(fmt.Sprintf("bytes=%d-", offset))
	default:
		in.Range = aws.String(fmt.Sprintf("bytes=%d-%d", offset, offset+int64(length)-1))
	}
	out, err := b.client.GetObject(ctx, in)
	if err != nil {
		err = b.mapErr(ctx, err, "get", key)
		if errors.Is(err, io.ErrUnexpectedEOF) && length == 0 && offset > 0 && b.sizeIs(ctx, err, h, offset) {
			// bytes=SIZE- is unsatisfiable for S3, yet reading from the
			// end to the end is an empty read for every backend.
			return fn(eofReader{})
		}
		return fmt.Errorf("load %v: %w", h, err)
	}
	defer out.Body.Close()
	want := aws.ToInt64(out.ContentLength)
	if out.ContentLength == nil {
		want = -1
	}
	if in.Range != nil {
		// Invariant: fn sees the bytes from offset on, never the object
		// from its start: a store that ignores Range is refused.
		start, end, ok := parseContentRange(aws.ToString(out.ContentRange))
		if !ok || start != offset || want >= 0 && end-start+1 != want || length > 0 && end-start+1 > int64(length) {
			return fmt.Errorf("load %v: the store answered range %s with Content-Range %q", h, *in.Range, aws.ToString(out.ContentRange))
		}
	}
	if length > 0 && want >= 0 && want < int64(length) {
		return fmt.Errorf("load %v: range %d+%d beyond the object's end (%d bytes there): %w", h, offset, length, want, io.ErrUnexpectedEOF)
	}
	return fn(&bodyReader{ctx: ctx, rd: out.Body, want: want, validated: whole, what: fmt.Sprintf("load %v", h)})
}

// Stat returns the object's size.
func (b *Backend) Stat(ctx context.Context, h backend.Handle) (backend.FileInfo, error) {
	if err := h.Valid(); err != nil {
		return backend.FileInfo{}, fmt.Errorf("stat: %w", err)
	}
	key := b.key(h)
	out, err := b.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &b.opt.Bucket, Key: &key})
	if err != nil {
		return backend.FileInfo{}, fmt.Errorf("stat %v: %w", h, b.mapErr(ctx, err, "head", key))
	}
	return backend.FileInfo{Name: h.Name, Size: aws.ToInt64(out.ContentLength)}, nil
}

// List calls fn for each object of type t, page by page (ListObjectsV2
// returns the keys in order, so each once). Keys under the type's prefix
// that do not fit the layout are skipped.
func (b *Backend) List(ctx context.Context, t backend.FileType, fn func(backend.FileInfo) error) error {
	if t == backend.ConfigFile {
		fi, err := b.Stat(ctx, backend.Handle{Type: t})
		if errors.Is(err, backend.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return fn(fi)
	}
	if err := (backend.Handle{Type: t, Name: "xx"}).Valid(); err != nil {
		return fmt.Errorf("list: %w", err)
	}
	prefix := b.typePrefix(t)
	p := s3.NewListObjectsV2Paginator(b.client, &s3.ListObjectsV2Input{
		Bucket:  &b.opt.Bucket,
		Prefix:  &prefix,
		MaxKeys: aws.Int32(b.opt.ListPageSize),
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("list %s: %w", t, b.mapErr(ctx, err, "list", prefix))
		}
		for _, obj := range page.Contents {
			name, ok := b.nameOf(t, aws.ToString(obj.Key))
			if !ok {
				continue
			}
			if err := fn(backend.FileInfo{Name: name, Size: aws.ToInt64(obj.Size)}); err != nil {
				return err
			}
		}
	}
	return nil
}

// Remove deletes h; a missing object is not an error.
func (b *Backend) Remove(ctx context.Context, h backend.Handle) error {
	if err := h.Valid(); err != nil {
		return fmt.Errorf("remove: %w", err)
	}
	key := b.key(h)
	_, err := b.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &b.opt.Bucket, Key: &key})
	if err = b.mapErr(ctx, err, "delete", key); err != nil && !errors.Is(err, backend.ErrNotFound) {
		return fmt.Errorf("remove %v: %w", h, err)
	}
	return nil
}

// sizeIs reports whether h has size bytes, from the Content-Range of a 416
// answer (AWS) or else a HeadObject (MinIO sends none).
func (b *Backend) sizeIs(ctx context.Context, err416 error, h backend.Handle, size int64) bool {
	if n := objectSize(err416); n >= 0 {
		return n == size
	}
	fi, err := b.Stat(ctx, h)
	return err == nil && fi.Size == size
}

// parseContentRange parses "bytes START-END/TOTAL" (TOTAL may be *).
func parseContentRange(v string) (start, end int64, ok bool) {
	r, ok := strings.CutPrefix(v, "bytes ")
	if !ok {
		return 0, 0, false
	}
	r, _, _ = strings.Cut(r, "/")
	a, b, ok := strings.Cut(r, "-")
	if !ok {
		return 0, 0, false
	}
	start, err1 := strconv.ParseInt(a, 10, 64)
	end, err2 := strconv.ParseInt(b, 10, 64)
	return start, end, err1 == nil && err2 == nil && start <= end
}

type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }

// bodyReader checks a response body against its Content-Length, so that a
// connection cut mid-body is told apart from an object at rest that is
// short.
type bodyReader struct {
	ctx  context.Context
	rd   io.Reader
	want int64 // Content-Length, -1 if unknown
	got  int64
	// validated: the SDK verifies the body against the object's checksum
	validated bool
	what      string
	err       error // sticky
}

func (r *bodyReader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	n, err := r.rd.Read(p)
	r.got += int64(n)
	if r.want >= 0 && r.got > r.want {
		r.err = backend.Transient(fmt.Errorf("%s: the body is longer than its Content-Length %d", r.what, r.want))
		return n, r.err
	}
	if err == nil {
		return n, nil
	}
	switch {
	case r.ctx.Err() != nil:
		r.err = fmt.Errorf("%s: %w", r.what, r.ctx.Err())
	case r.want >= 0 && r.got < r.want:
		// Whatever the cause (reset, unexpected EOF, a checksum over
		// the bytes that did arrive), the store did not send what it
		// announced: worth fetching again, and not a short object.
		r.err = backend.Transient(&cutError{what: r.what, got: r.got, want: r.want, cause: err})
	case errors.Is(err, io.EOF):
		r.err = io.EOF
	case !r.validated:
		r.err = backend.Transient(fmt.Errorf("%s: %w", r.what, err))
	default:
		// The whole body arrived and the read still failed: the SDK's
		// checksum validation of a whole-object read (its error type is
		// internal, so this is the only place to tell it).
		r.err = fmt.Errorf("%s: %w: %v", r.what, backend.ErrIntegrity, err)
	}
	return n, r.err
}

// cutError is a response body that ended before its Content-Length. It
// does not unwrap to its cause: an io.ErrUnexpectedEOF here is a cut
// connection, not an object shorter than the range asked.
type cutError struct {
	what      string
	got, want int64
	cause     error
}

func (e *cutError) Error() string {
	return e.what + ": response body cut after " + strconv.FormatInt(e.got, 10) + " of " + strconv.FormatInt(e.want, 10) + " bytes: " + e.cause.Error()
}
