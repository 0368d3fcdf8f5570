package s3

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/meshbackup/backupd/backupd/backend"
)

// ServerTime returns the store's clock, read from the Date header of a
// HeadBucket answer (one cheap request; the header has a resolution of a
// second).
func (b *Backend) ServerTime(ctx context.Context) (time.Time, error) {
	out, err := b.client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &b.opt.Bucket})
	if err != nil {
		return time.Time{}, fmt.Errorf("server time: %w", b.mapErr(ctx, err, "check bucket", ""))
	}
	t, ok := awsmiddleware.GetServerTime(out.ResultMetadata)
	if !ok || t.IsZero() {
		return time.Time{}, fmt.Errorf("server time: the store at %s sent no Date header", b.endpoint)
	}
	return t, nil
}

// cleanTempTimeout bounds CleanTemp, whose interface has no context.
const cleanTempTimeout = 10 * time.Minute

// CleanTemp aborts the multipart uploads under the prefix that were started
// more than StaleUploadAge ago: the parts a writer killed mid-upload left,
// which the store keeps (and bills) until they are aborted. Call it only
// when no writer is running, e.g. under an exclusive repository lock.
func (b *Backend) CleanTemp() error {
	ctx, cancel := context.WithTimeout(context.Background(), cleanTempTimeout)
	defer cancel()
	return b.cleanTemp(ctx, time.Now())
}

func (b *Backend) cleanTemp(ctx context.Context, now time.Time) error {
	prefix := b.join("")
	// No Prefix in the request: MinIO takes it for an exact key and lists
	// nothing under it. The uploads of the bucket are filtered here.
	in := &s3.ListMultipartUploadsInput{Bucket: &b.opt.Bucket}
	if b.opt.ListPageSize < maxListPageSize {
		in.MaxUploads = &b.opt.ListPageSize
	}
	p := s3.NewListMultipartUploadsPaginator(b.client, in)
	var errs []error
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("clean temp: list multipart uploads: %w", b.mapErr(ctx, err, "list multipart uploads", prefix))
		}
		for _, u := range page.Uploads {
			key := derefStr(u.Key)
			if !strings.HasPrefix(key, prefix) || u.Initiated == nil || now.Sub(*u.Initiated) < b.opt.StaleUploadAge {
				continue
			}
			_, err := b.client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: &b.opt.Bucket, Key: u.Key, UploadId: u.UploadId})
			if err = b.mapErr(ctx, err, "abort multipart upload", key); err != nil && !errors.Is(err, backend.ErrNotFound) {
				errs = append(errs, err)
				continue
			}
			b.log.Info("aborted a stale multipart upload", "key", key, "initiated", *u.Initiated)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("clean temp: %w", err)
	}
	return nil
}

func derefStr(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}
