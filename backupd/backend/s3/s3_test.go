package s3_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/meshbackup/backupd/backupd/backend"
	"github.com/meshbackup/backupd/backupd/backend/s3"
	"github.com/meshbackup/backupd/backupd/backend/s3/s3test"
)

// roundTripFunc adapts a function to http.RoundTripper.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func randomBytes(seed uint64, n int) []byte {
	rng := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

func isPartUpload(r *http.Request) bool {
	return r.Method == http.MethodPut && r.URL.Query().Has("partNumber")
}

func isCompleteUpload(r *http.Request) bool {
	return r.Method == http.MethodPost && r.URL.Query().Has("uploadId")
}

// uploads lists the unfinished multipart uploads in bucket.
func uploads(t *testing.T, srv *s3test.Server, bucket string) []types.MultipartUpload {
	t.Helper()
	out, err := srv.Client().ListMultipartUploads(t.Context(), &awss3.ListMultipartUploadsInput{Bucket: &bucket})
	if err != nil {
		t.Fatalf("list multipart uploads: %v", err)
	}
	return out.Uploads
}

func TestS3(t *testing.T) {
	srv := s3test.StartMinIO(t)
	ctx := t.Context()
	pack := func(name string) backend.Handle { return backend.Handle{Type: backend.PackFile, Name: name} }

	t.Run("ConditionalCreateRace", func(t *testing.T) {
		t.Parallel()
		be := newRepo(t, srv, "race", nil)
		h := backend.Handle{Type: backend.LockFile, Name: "the-lock"}
		const writers = 16
		errs := make([]error, writers)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range writers {
			wg.Go(func() {
				<-start
				errs[i] = be.Save(ctx, h, bytes.NewReader([]byte(fmt.Sprintf("writer %02d", i))))
			})
		}
		close(start)
		wg.Wait()
		winner := -1
		for i, err := range errs {
			switch {
			case err == nil && winner >= 0:
				t.Fatalf("writers %d and %d both won", winner, i)
			case err == nil:
				winner = i
			case !errors.Is(err, backend.ErrExists):
				t.Errorf("writer %d: want ErrExists, got %v", i, err)
			}
		}
		if winner < 0 {
			t.Fatal("no writer won")
		}
		got, err := backend.LoadAll(ctx, be, h)
		if want := fmt.Sprintf("writer %02d", winner); err != nil || string(got) != want {
			t.Fatalf("content: %q %v, want the winner's %q", got, err, want)
		}
	})

	t.Run("Multipart", func(t *testing.T) {
		t.Parallel()
		var parts, completes atomic.Int32
		be := newRepo(t, srv, "mp", func(o *s3.Options) {
			o.PartSize = s3.MinPartSize
			o.Transport = func(rt http.RoundTripper) http.RoundTripper {
				return roundTripFunc(func(r *http.Request) (*http.Response, error) {
					if isPartUpload(r) {
						parts.Add(1)
					}
					if isCompleteUpload(r) {
						completes.Add(1)
					}
					return rt.RoundTrip(r)
				})
			}
		})
		data := randomBytes(1, 12<<20)
		h := pack("ab12")
		// Not an io.ReaderAt: the seek-and-read path.
		rd := struct{ io.ReadSeeker }{bytes.NewReader(data)}
		if err := be.Save(ctx, h, rd); err != nil {
			t.Fatalf("save: %v", err)
		}
		if parts.Load() != 3 || completes.Load() != 1 {
			t.Fatalf("%d parts and %d completions sent, want 3 and 1", parts.Load(), completes.Load())
		}
		got, err := backend.LoadAll(ctx, be, h)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("load all: err %v, equal %v", err, bytes.Equal(got, data))
		}
		p := make([]byte, 1000)
		off := int64(s3.MinPartSize - 500) // across the first part boundary
		if err := backend.ReadAt(ctx, be, h, p, off); err != nil || !bytes.Equal(p, data[off:off+1000]) {
			t.Fatalf("range across parts: %v", err)
		}
		if fi, err := be.Stat(ctx, h); err != nil || fi.Size != int64(len(data)) {
			t.Fatalf("stat: %+v %v", fi, err)
		}
		// From an io.ReaderAt (a file), and refused: it exists.
		if err := be.Save(ctx, h, bytes.NewReader(data)); !errors.Is(err, backend.ErrExists) {
			t.Fatalf("second save: want ErrExists, got %v", err)
		}
	})

	t.Run("MultipartCompleteIsConditional", func(t *testing.T) {
		t.Parallel()
		// A racing writer stores the object between our Stat and our
		// CompleteMultipartUpload: the completion must be refused.
		bucket := srv.NewBucket(t)
		opt := srv.Options(bucket, "")
		opt.PartSize = s3.MinPartSize
		const key = "data/cd/cd34"
		var raced atomic.Bool
		opt.Transport = func(rt http.RoundTripper) http.RoundTripper {
			return roundTripFunc(func(r *http.Request) (*http.Response, error) {
				if isCompleteUpload(r) && !raced.Swap(true) {
					if _, err := srv.Client().PutObject(r.Context(), &awss3.PutObjectInput{Bucket: &opt.Bucket, Key: aws.String(key), Body: strings.NewReader("the racer")}); err != nil {
						return nil, err
					}
				}
				return rt.RoundTrip(r)
			})
		}
		be, err := s3.Create(ctx, opt)
		if err != nil {
			t.Fatal(err)
		}
		err = be.Save(ctx, pack("cd34"), bytes.NewReader(randomBytes(2, 6<<20)))
		if !errors.Is(err, backend.ErrExists) {
			t.Fatalf("save racing a writer: want ErrExists, got %v", err)
		}
		if got, err := backend.LoadAll(ctx, be, pack("cd34")); err != nil || string(got) != "the racer" {
			t.Fatalf("the racer's object was replaced: %q %v", got, err)
		}
		if u := uploads(t, srv, bucket); len(u) != 0 {
			t.Fatalf("%d multipart uploads left after a refused completion", len(u))
		}
	})

	t.Run("MultipartAbortsOnFailingPart", func(t *testing.T) {
		t.Parallel()
		ft := s3test.NewFaultTransport(7, s3test.Rule{
			Kind: s3test.Status500, Probability: 1, Limit: 1,
			Match: func(r *http.Request) bool { return isPartUpload(r) && r.URL.Query().Get("partNumber") == "2" },
		})
		bucket := srv.NewBucket(t)
		opt := srv.Options(bucket, "abort")
		opt.PartSize = s3.MinPartSize
		opt.Transport = ft.Wrap
		be, err := s3.Create(ctx, opt)
		if err != nil {
			t.Fatal(err)
		}
		h := pack("ef56")
		err = be.Save(ctx, h, bytes.NewReader(randomBytes(3, 12<<20)))
		if err == nil || !backend.IsTransient(err) {
			t.Fatalf("save with a failing part: want a transient error, got %v", err)
		}
		if ft.Count(s3test.Status500) != 1 {
			t.Fatalf("fault injected %d times", ft.Count(s3test.Status500))
		}
		if _, err := be.Stat(ctx, h); !errors.Is(err, backend.ErrNotFound) {
			t.Fatalf("object visible after a failed upload: %v", err)
		}
		if u := uploads(t, srv, bucket); len(u) != 0 {
			t.Fatalf("%d multipart uploads left after the failure, want them aborted", len(u))
		}
		// Tried again, it succeeds.
		if err := be.Save(ctx, h, bytes.NewReader(randomBytes(3, 12<<20))); err != nil {
			t.Fatalf("second save: %v", err)
		}
	})

	t.Run("CleanTemp", func(t *testing.T) {
		t.Parallel()
		bucket := srv.NewBucket(t)
		c := srv.Client()
		start := func(key string) {
			out, err := c.CreateMultipartUpload(ctx, &awss3.CreateMultipartUploadInput{Bucket: &bucket, Key: &key})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.UploadPart(ctx, &awss3.UploadPartInput{Bucket: &bucket, Key: &key, UploadId: out.UploadId, PartNumber: aws.Int32(1), Body: bytes.NewReader([]byte("part"))}); err != nil {
				t.Fatal(err)
			}
		}
		start("repo/data/aa/aa01")    // a killed writer's
		start("other/data/aa/aa01")   // another repository's
		start("repository/data/aa01") // a prefix of ours as a string, not a path
		keys := func() []string {
			var ks []string
			for _, u := range uploads(t, srv, bucket) {
				ks = append(ks, *u.Key)
			}
			return ks
		}
		opt := srv.Options(bucket, "repo")
		fresh, err := s3.Open(ctx, opt)
		if err != nil {
			t.Fatal(err)
		}
		if err := fresh.CleanTemp(); err != nil {
			t.Fatal(err)
		}
		if got := keys(); len(got) != 3 {
			t.Fatalf("an upload younger than StaleUploadAge was aborted: left %v", got)
		}
		opt.StaleUploadAge = time.Nanosecond
		stale, err := s3.Open(ctx, opt)
		if err != nil {
			t.Fatal(err)
		}
		if err := stale.CleanTemp(); err != nil {
			t.Fatal(err)
		}
		got := keys()
		if len(got) != 2 || strings.HasPrefix(got[0], "repo/") || strings.HasPrefix(got[1], "repo/") {
			t.Fatalf("after CleanTemp: %v, want only the uploads outside repo/", got)
		}
	})

	t.Run("ListPages", func(t *testing.T) {
		t.Parallel()
		var lists atomic.Int32
		be := newRepo(t, srv, "pages", func(o *s3.Options) {
			o.ListPageSize = 7
			o.Transport = func(rt http.RoundTripper) http.RoundTripper {
				return roundTripFunc(func(r *http.Request) (*http.Response, error) {
					if r.Method == http.MethodGet && r.URL.Query().Get("list-type") == "2" {
						lists.Add(1)
					}
					return rt.RoundTrip(r)
				})
			}
		})
		want := map[string]bool{}
		for i := range 60 {
			n := fmt.Sprintf("%02x%04d", i%5, i) // several data/xx/ directories
			want[n] = true
			if err := be.Save(ctx, pack(n), bytes.NewReader([]byte(n))); err != nil {
				t.Fatal(err)
			}
		}
		// Keys that do not fit the layout are not objects.
		for _, k := range []string{"pages/data/zz/aa01", "pages/data/aa01", "pages/data/ab/"} {
			if _, err := srv.Client().PutObject(ctx, &awss3.PutObjectInput{Bucket: aws.String(bucketOf(t, be)), Key: aws.String(k), Body: strings.NewReader("x")}); err != nil {
				t.Fatal(err)
			}
		}
		seen := map[string]int{}
		if err := be.List(ctx, backend.PackFile, func(fi backend.FileInfo) error {
			seen[fi.Name]++
			if fi.Size != int64(len(fi.Name)) {
				t.Errorf("size of %s: %d", fi.Name, fi.Size)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		for n := range want {
			if seen[n] != 1 {
				t.Errorf("%s listed %d times", n, seen[n])
			}
		}
		if len(seen) != len(want) {
			t.Errorf("listed %d names, want %d: %v", len(seen), len(want), seen)
		}
		if lists.Load() < 9 {
			t.Errorf("%d list requests for 63 keys in pages of 7", lists.Load())
		}
	})

	// ServerTime answers from the Date of a recent answer without a
	// request; it asks with a HeadBucket when the latest is over a minute
	// old. Either way the time is the store's (MinIO runs on this host's
	// clock).
	t.Run("ServerTime", func(t *testing.T) {
		t.Parallel()
		var requests atomic.Int32
		be := newRepo(t, srv, "", func(o *s3.Options) {
			o.Transport = func(rt http.RoundTripper) http.RoundTripper {
				return roundTripFunc(func(r *http.Request) (*http.Response, error) {
					requests.Add(1)
					return rt.RoundTrip(r)
				})
			}
		})
		for _, tc := range []struct {
			name     string
			age      time.Duration // the latest answer's age
			requests int32
		}{
			{"after an answer", 0, 0},
			{"answer 59s old", 59 * time.Second, 0},
			{"answer 61s old", 61 * time.Second, 1},
		} {
			if _, err := be.Stat(ctx, backend.Handle{Type: backend.ConfigFile}); !errors.Is(err, backend.ErrNotFound) {
				t.Fatal(err)
			}
			s3.AgeClockSample(be, tc.age)
			before := requests.Load()
			st, err := be.ServerTime(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if n := requests.Load() - before; n != tc.requests {
				t.Errorf("%s: %d requests, want %d", tc.name, n, tc.requests)
			}
			if d := time.Since(st); d < -2*time.Second || d > 2*time.Second {
				t.Errorf("%s: server time %v is %v away from now", tc.name, st, d)
			}
		}
	})

	t.Run("LoadRanges", func(t *testing.T) {
		t.Parallel()
		be := newRepo(t, srv, "ranges", nil)
		data := []byte("0123456789")
		h := backend.Handle{Type: backend.IndexFile, Name: "i1"}
		if err := be.Save(ctx, h, bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			name          string
			length        int
			offset        int64
			want          string
			unexpectedEOF bool
		}{
			{"whole", 0, 0, "0123456789", false},
			{"from offset to end", 0, 3, "3456789", false},
			{"middle", 4, 2, "2345", false},
			{"last byte", 1, 9, "9", false},
			{"empty at the end", 0, 10, "", false},
			{"past the end (416)", 0, 11, "", true},
			{"range beyond the end", 5, 8, "", true},
			{"range starting beyond (416)", 2, 20, "", true},
		} {
			t.Run(c.name, func(t *testing.T) {
				var got []byte
				err := be.Load(ctx, h, c.length, c.offset, func(rd io.Reader) error {
					var err error
					got, err = io.ReadAll(rd)
					return err
				})
				if c.unexpectedEOF {
					if !errors.Is(err, io.ErrUnexpectedEOF) || backend.IsTransient(err) {
						t.Fatalf("want a non-transient io.ErrUnexpectedEOF, got %v", err)
					}
					return
				}
				if err != nil || string(got) != c.want {
					t.Fatalf("got %q, %v; want %q", got, err, c.want)
				}
			})
		}
	})

	t.Run("StoreIgnoringRange", func(t *testing.T) {
		t.Parallel()
		be := newRepo(t, srv, "norange", func(o *s3.Options) {
			o.Transport = func(rt http.RoundTripper) http.RoundTripper {
				return roundTripFunc(func(r *http.Request) (*http.Response, error) {
					r = r.Clone(r.Context())
					r.Header.Del("Range") // unsigned, so the store still answers
					return rt.RoundTrip(r)
				})
			}
		})
		h := backend.Handle{Type: backend.IndexFile, Name: "i1"}
		if err := be.Save(ctx, h, strings.NewReader("0123456789")); err != nil {
			t.Fatal(err)
		}
		p := make([]byte, 3)
		err := backend.ReadAt(ctx, be, h, p, 5)
		if err == nil || string(p) == "012" {
			t.Fatalf("a store ignoring Range gave %q, %v; want an error", p, err)
		}
	})

	t.Run("CutBodies", func(t *testing.T) {
		t.Parallel()
		data := randomBytes(4, 100_000)
		for _, kind := range []s3test.FaultKind{s3test.Truncate, s3test.Reset} {
			for _, whole := range []bool{true, false} {
				t.Run(fmt.Sprintf("%s/whole=%v", kind, whole), func(t *testing.T) {
					ft := s3test.NewFaultTransport(11)
					be := newRepo(t, srv, "cut", func(o *s3.Options) { o.Transport = ft.Wrap })
					h := pack("ab01")
					if err := be.Save(ctx, h, bytes.NewReader(data)); err != nil {
						t.Fatal(err)
					}
					ft.SetRules(s3test.Rule{Kind: kind, Method: http.MethodGet, Probability: 1, AfterBytes: 5000})
					var err error
					if whole {
						_, err = backend.LoadAll(ctx, be, h)
					} else {
						err = backend.ReadAt(ctx, be, h, make([]byte, 50_000), 10)
					}
					if ft.Count(kind) != 1 {
						t.Fatalf("fault injected %d times", ft.Count(kind))
					}
					if !backend.IsTransient(err) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, backend.ErrIntegrity) {
						t.Fatalf("want a transient error that is neither ErrUnexpectedEOF nor ErrIntegrity, got %v", err)
					}
				})
			}
		}
	})

	t.Run("FlippedByteInTransit", func(t *testing.T) {
		t.Parallel()
		data := randomBytes(5, 100_000)
		ft := s3test.NewFaultTransport(12, s3test.Rule{Kind: s3test.FlipResponse, Method: http.MethodGet, Probability: 1, Limit: 1, AfterBytes: 4242})
		be := newRepo(t, srv, "flip", func(o *s3.Options) { o.Transport = ft.Wrap })
		h := pack("ab01")
		if err := be.Save(ctx, h, bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
		_, err := backend.LoadAll(ctx, be, h)
		if ft.Count(s3test.FlipResponse) != 1 {
			t.Fatalf("fault injected %d times", ft.Count(s3test.FlipResponse))
		}
		if !errors.Is(err, backend.ErrIntegrity) {
			t.Fatalf("flipped byte: want ErrIntegrity, got %v", err)
		}
		if got, err := backend.LoadAll(ctx, be, h); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("load without the fault: %v", err)
		}
	})

	t.Run("TamperedUploadIsRefused", func(t *testing.T) {
		t.Parallel()
		for _, size := range []int{100_000, 6 << 20} {
			t.Run(fmt.Sprint(size), func(t *testing.T) {
				ft := s3test.NewFaultTransport(13, s3test.Rule{Kind: s3test.FlipRequest, Method: http.MethodPut, Probability: 1, Limit: 1, AfterBytes: 777})
				be := newRepo(t, srv, "tamper", func(o *s3.Options) { o.Transport = ft.Wrap; o.PartSize = s3.MinPartSize })
				h := pack("ab01")
				err := be.Save(ctx, h, bytes.NewReader(randomBytes(6, size)))
				if ft.Count(s3test.FlipRequest) != 1 {
					t.Fatalf("fault injected %d times", ft.Count(s3test.FlipRequest))
				}
				if err == nil {
					t.Fatal("the store accepted a body that does not match its checksum")
				}
				t.Logf("tampered body refused: %v", err)
				if !backend.IsTransient(err) {
					t.Errorf("want a transient error (corrupted in transit), got %v", err)
				}
				if _, err := be.Stat(ctx, h); !errors.Is(err, backend.ErrNotFound) {
					t.Fatalf("object stored after a refused upload: %v", err)
				}
			})
		}
	})

	t.Run("StoreVerifiesChecksumHeader", func(t *testing.T) {
		t.Parallel()
		// What Save relies on: the store checks x-amz-checksum-sha256
		// against the body (apart from the SigV4 payload hash, which a
		// TLS upload does not send).
		bucket := srv.NewBucket(t)
		wrong := base64.StdEncoding.EncodeToString(make([]byte, sha256.Size))
		_, err := srv.Client().PutObject(ctx, &awss3.PutObjectInput{Bucket: &bucket, Key: aws.String("k"), Body: strings.NewReader("hello"), ChecksumSHA256: &wrong})
		var ae smithy.APIError
		if !errors.As(err, &ae) || ae.ErrorCode() != "XAmzContentChecksumMismatch" {
			t.Fatalf("put with a wrong x-amz-checksum-sha256: want XAmzContentChecksumMismatch, got %v", err)
		}
	})

	t.Run("TransientAnswers", func(t *testing.T) {
		t.Parallel()
		for _, kind := range []s3test.FaultKind{s3test.Status500, s3test.Status503, s3test.SlowDown} {
			t.Run(string(kind), func(t *testing.T) {
				ft := s3test.NewFaultTransport(14)
				be := newRepo(t, srv, "", func(o *s3.Options) { o.Transport = ft.Wrap })
				ft.SetRules(s3test.Rule{Kind: kind, Probability: 1})
				h := backend.Handle{Type: backend.SnapshotFile, Name: "s1"}
				for op, err := range map[string]error{
					"save": be.Save(ctx, h, strings.NewReader("x")),
					"load": func() error { _, err := backend.LoadAll(ctx, be, h); return err }(),
					"stat": func() error { _, err := be.Stat(ctx, h); return err }(),
					"list": be.List(ctx, backend.SnapshotFile, func(backend.FileInfo) error { return nil }),
				} {
					if !backend.IsTransient(err) || errors.Is(err, backend.ErrNotFound) {
						t.Errorf("%s: want a transient error, got %v", op, err)
					}
				}
			})
		}
	})

	t.Run("Create", func(t *testing.T) {
		t.Parallel()
		bucket := srv.NewBucket(t)
		be, err := s3.Create(ctx, srv.Options(bucket, "r1"))
		if err != nil {
			t.Fatal(err)
		}
		if err := be.Save(ctx, backend.Handle{Type: backend.ConfigFile}, strings.NewReader("cfg")); err != nil {
			t.Fatal(err)
		}
		_, err = s3.Create(ctx, srv.Options(bucket, "r1"))
		if !errors.Is(err, backend.ErrExists) || !strings.Contains(err.Error(), "already exists") {
			t.Fatalf("create over a repository: %v", err)
		}
		if _, err := s3.Create(ctx, srv.Options(bucket, "r2")); err != nil {
			t.Fatalf("create beside it: %v", err)
		}
		out, err := srv.Client().ListObjectsV2(ctx, &awss3.ListObjectsV2Input{Bucket: &bucket})
		if err != nil {
			t.Fatal(err)
		}
		if len(out.Contents) != 1 || *out.Contents[0].Key != "r1/config" {
			var keys []string
			for _, o := range out.Contents {
				keys = append(keys, *o.Key)
			}
			t.Fatalf("bucket holds %v, want only r1/config (the probes removed)", keys)
		}
		if be.Location() != "s3://"+bucket+"/r1" {
			t.Fatalf("location %q", be.Location())
		}
		if !strings.Contains(be.String(), srv.Endpoint()) {
			t.Fatalf("String() %q does not name the endpoint", be.String())
		}
	})

	t.Run("StoreIgnoringConditionalWrites", func(t *testing.T) {
		t.Parallel()
		bucket := srv.NewBucket(t)
		opt := srv.Options(bucket, "")
		// A proxy in front of the store drops the condition: the store
		// behaves like one that ignores it.
		opt.Transport = func(rt http.RoundTripper) http.RoundTripper {
			return roundTripFunc(func(r *http.Request) (*http.Response, error) {
				r = r.Clone(r.Context())
				r.Header.Del("If-None-Match")
				return rt.RoundTrip(r)
			})
		}
		_, err := s3.Create(ctx, opt)
		if err == nil || !strings.Contains(err.Error(), "allow_unconditional_writes") || !strings.Contains(err.Error(), srv.Endpoint()) {
			t.Fatalf("create on a store ignoring If-None-Match: want an error naming the store and allow_unconditional_writes, got %v", err)
		}
		opt.AllowUnconditionalWrites = true
		be, err := s3.Create(ctx, opt)
		if err != nil {
			t.Fatalf("create with allow_unconditional_writes: %v", err)
		}
		h := backend.Handle{Type: backend.SnapshotFile, Name: "s1"}
		if err := be.Save(ctx, h, strings.NewReader("first")); err != nil {
			t.Fatal(err)
		}
		if err := be.Save(ctx, h, strings.NewReader("second")); !errors.Is(err, backend.ErrExists) {
			t.Fatalf("second save without conditional writes: want ErrExists (from the check), got %v", err)
		}
	})

	t.Run("BadCredentials", func(t *testing.T) {
		t.Parallel()
		bucket := srv.NewBucket(t)
		id, secret := srv.Credentials()
		for _, c := range []struct{ name, id, secret string }{
			{"wrong secret", id, "not-the-secret-0123456789"},
			{"unknown access key", "AKIDUNKNOWN0000", secret},
		} {
			t.Run(c.name, func(t *testing.T) {
				opt := srv.Options(bucket, "")
				opt.AccessKeyID, opt.SecretAccessKey = c.id, c.secret
				_, err := s3.Open(ctx, opt)
				if err == nil {
					t.Fatal("open with bad credentials succeeded")
				}
				msg := err.Error()
				t.Logf("open: %s", msg)
				if !strings.Contains(msg, "access denied for bucket "+bucket) && !strings.Contains(msg, "credentials rejected") {
					t.Errorf("message says neither access denied nor credentials rejected: %s", msg)
				}
				if strings.Contains(msg, c.secret) || strings.Contains(msg, "<Error>") {
					t.Errorf("message holds the secret or XML: %s", msg)
				}
				if backend.IsTransient(err) || errors.Is(err, backend.ErrNotFound) {
					t.Errorf("bad credentials reported as transient or not found: %v", err)
				}
				// An object request has a body with the S3 error code.
				be := newBackendWith(t, srv, bucket, c.id, c.secret)
				_, err = backend.LoadAll(ctx, be, backend.Handle{Type: backend.ConfigFile})
				if err == nil || !strings.Contains(err.Error(), "credentials rejected") || strings.Contains(err.Error(), c.secret) {
					t.Errorf("load with bad credentials: want \"credentials rejected\" without the secret, got %v", err)
				}
			})
		}
	})

	t.Run("MissingBucket", func(t *testing.T) {
		t.Parallel()
		_, err := s3.Open(ctx, srv.Options("no-such-bucket-here", ""))
		if err == nil || !strings.Contains(err.Error(), "bucket no-such-bucket-here does not exist") || errors.Is(err, backend.ErrNotFound) {
			t.Fatalf("open a missing bucket: %v", err)
		}
		_, err = s3.Create(ctx, srv.Options("no-such-bucket-here", "x"))
		if err == nil || !strings.Contains(err.Error(), "does not exist") {
			t.Fatalf("create in a missing bucket: %v", err)
		}
	})

	t.Run("Canceled", func(t *testing.T) {
		t.Parallel()
		be := newRepo(t, srv, "", nil)
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := be.Stat(cctx, backend.Handle{Type: backend.ConfigFile}); !errors.Is(err, context.Canceled) || backend.IsTransient(err) {
			t.Fatalf("stat with a canceled context: %v", err)
		}
	})
}

// newBackendWith opens bucket with the given credentials, skipping the
// checks of Open (they would fail): a backend whose object requests show
// how bad credentials are reported.
func newBackendWith(t *testing.T, srv *s3test.Server, bucket, id, secret string) backend.Backend {
	t.Helper()
	opt := srv.Options(bucket, "")
	opt.AccessKeyID, opt.SecretAccessKey = id, secret
	return s3.NewUnchecked(t, opt)
}

func bucketOf(t *testing.T, be *s3.Backend) string {
	t.Helper()
	loc := strings.TrimPrefix(be.Location(), "s3://")
	b, _, _ := strings.Cut(loc, "/")
	return b
}
