package s3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/meshbackup/backupd/backupd/backend"
	"github.com/meshbackup/backupd/backupd/faultpoint"
)

// multipart uploads rd in parts of PartSize, one at a time, each streamed
// from rd (no part is held in memory), and completes the upload with
// If-None-Match: * only after every part is stored. On any failure the
// upload is aborted, so no object and (best effort) no parts remain.
func (b *Backend) multipart(ctx context.Context, h backend.Handle, key string, ra io.ReaderAt, size int64) (err error) {
	if n := (size + b.opt.PartSize - 1) / b.opt.PartSize; n > maxParts {
		return fmt.Errorf("save %v: %d bytes need %d parts of part_size %d, more than the %d S3 allows: raise part_size", h, size, n, b.opt.PartSize, maxParts)
	}
	created, err := b.client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{
		Bucket:            &b.opt.Bucket,
		Key:               &key,
		ContentType:       aws.String("application/octet-stream"),
		ChecksumAlgorithm: types.ChecksumAlgorithmSha256,
	})
	if err != nil {
		return fmt.Errorf("save %v: %w", h, b.mapErr(ctx, err, "create multipart upload", key))
	}
	uploadID := created.UploadId
	defer func() {
		if err == nil {
			return
		}
		actx, cancel := cleanupContext(ctx)
		defer cancel()
		_, aerr := b.client.AbortMultipartUpload(actx, &s3.AbortMultipartUploadInput{Bucket: &b.opt.Bucket, Key: &key, UploadId: uploadID})
		if aerr = b.mapErr(actx, aerr, "abort multipart upload", key); aerr != nil && !errors.Is(aerr, backend.ErrNotFound) {
			// CleanTemp aborts it later.
			b.log.Warn("abort a failed multipart upload", "key", key, "err", aerr)
		}
	}()

	var parts []types.CompletedPart
	for off, num := int64(0), int32(1); off < size; off, num = off+b.opt.PartSize, num+1 {
		n := min(b.opt.PartSize, size-off)
		out, err := b.client.UploadPart(ctx, &s3.UploadPartInput{
			Bucket:            &b.opt.Bucket,
			Key:               &key,
			UploadId:          uploadID,
			PartNumber:        aws.Int32(num),
			Body:              io.NewSectionReader(ra, off, n),
			ContentLength:     aws.Int64(n),
			ChecksumAlgorithm: types.ChecksumAlgorithmSha256,
		})
		if err != nil {
			return fmt.Errorf("save %v: part %d: %w", h, num, b.mapErr(ctx, err, "upload part", key))
		}
		parts = append(parts, types.CompletedPart{PartNumber: aws.Int32(num), ETag: out.ETag, ChecksumSHA256: out.ChecksumSHA256})
		b.opt.Faults.Hit(faultpoint.S3AfterPart)
	}
	_, err = b.client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket:          &b.opt.Bucket,
		Key:             &key,
		UploadId:        uploadID,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
		IfNoneMatch:     b.ifNoneMatch(),
	})
	if err != nil {
		return fmt.Errorf("save %v: %w", h, b.mapErr(ctx, err, "complete multipart upload", key))
	}
	return nil
}

// maxParts is the most parts a multipart upload may have.
const maxParts = 10000

// asReaderAt returns rd as an io.ReaderAt, from which io.SectionReaders
// give the SDK bodies it can seek within (it reads a body twice: once for
// its checksum, once to send it). A pack's temp file is read in place; any
// other io.ReadSeeker is read through seeks under a lock. Neither holds a
// part in memory.
func asReaderAt(rd io.ReadSeeker) io.ReaderAt {
	if ra, ok := rd.(io.ReaderAt); ok {
		return ra
	}
	return &seekReaderAt{rd: rd}
}

// seekReaderAt turns an io.ReadSeeker into an io.ReaderAt: each ReadAt
// seeks, then reads, under a lock, so that a request body still being
// read by a transport goroutine cannot interleave with the next part.
type seekReaderAt struct {
	mu sync.Mutex
	rd io.ReadSeeker
}

func (s *seekReaderAt) ReadAt(p []byte, off int64) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.rd.Seek(off, io.SeekStart); err != nil {
		return 0, err
	}
	n, err := io.ReadFull(s.rd, p)
	if errors.Is(err, io.ErrUnexpectedEOF) {
		err = io.EOF
	}
	return n, err
}
