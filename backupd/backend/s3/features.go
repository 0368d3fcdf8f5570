package s3

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/meshbackup/backupd/backupd/backend"
)

// ServerTime returns the store's clock. It is read from the Date header of
// a recent answer of the store to any request (clockSampler) when there is
// one: that Date plus the time elapsed since, on the host's monotonic
// clock, is as close as a request of its own would tell. Otherwise it asks
// with a HeadBucket (one cheap request). Either way the header has a
// resolution of a second.
func (b *Backend) ServerTime(ctx context.Context) (time.Time, error) {
	if t, ok := b.clock.now(); ok {
		return t, nil
	}
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

// Bounds of a clock sample: an answer that took longer than
// clockSampleRTT tells the moment the store read its clock too loosely
// (the sample is the middle of the round trip); one older than
// clockSampleAge is not used, so that the host's clock cannot drift far
// from the store's behind a sample (at 100 ppm, 6 ms a minute).
const (
	clockSampleRTT = time.Second
	clockSampleAge = time.Minute
)

// clockSampler is the HTTP transport's outermost layer: it keeps the Date
// of the latest answer of the store whose round trip was short, for
// ServerTime.
type clockSampler struct {
	next http.RoundTripper
	mu   sync.Mutex
	date time.Time // the answer's Date
	at   time.Time // the middle of its round trip, with a monotonic reading
}

func (c *clockSampler) RoundTrip(req *http.Request) (*http.Response, error) {
	sent := time.Now()
	resp, err := c.next.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	rtt := time.Since(sent)
	if rtt <= clockSampleRTT {
		if d, perr := http.ParseTime(resp.Header.Get("Date")); perr == nil {
			c.mu.Lock()
			c.date, c.at = d, sent.Add(rtt/2)
			c.mu.Unlock()
		}
	}
	return resp, nil
}

// now returns the store's time from the latest sample, if it is recent.
func (c *clockSampler) now() (time.Time, bool) {
	if c == nil {
		return time.Time{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.at.IsZero() {
		return time.Time{}, false
	}
	age := time.Since(c.at)
	if age > clockSampleAge || age < 0 {
		return time.Time{}, false
	}
	return c.date.Add(age), true
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
