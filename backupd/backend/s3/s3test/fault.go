package s3test

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// FaultKind names a fault FaultTransport injects.
type FaultKind string

// The faults of slow or flaky object storage (docs/DESIGN.md §8, scenario
// 7).
const (
	// Latency delays the request by Rule.Latency (cut short when the
	// request's context ends); other rules still apply.
	Latency FaultKind = "latency"
	// Status500 and Status503 answer without reaching the store.
	Status500 FaultKind = "500"
	Status503 FaultKind = "503"
	// SlowDown answers 503 with the S3 error code SlowDown.
	SlowDown FaultKind = "slowdown"
	// Reset passes the request on, then fails the response body with
	// ECONNRESET after Rule.AfterBytes bytes.
	Reset FaultKind = "reset"
	// Truncate passes the request on, then ends the response body with
	// io.EOF after Rule.AfterBytes bytes, short of its Content-Length.
	Truncate FaultKind = "truncate"
	// FlipResponse flips one bit of the response body's byte at
	// Rule.AfterBytes (the last byte if the body is shorter).
	FlipResponse FaultKind = "flip-response"
	// FlipRequest flips one bit of the request body's byte at
	// Rule.AfterBytes, after the client computed its checksums: the
	// store must refuse the body.
	FlipRequest FaultKind = "flip-request"
)

// Rule says when to inject a fault. A rule applies to a request when its
// Method (empty: any) and Match (nil: any) fit, it has fired fewer than
// Limit times (0: no limit), and the seeded random draw is below
// Probability.
type Rule struct {
	Kind        FaultKind
	Method      string
	Match       func(*http.Request) bool
	Probability float64
	Limit       int

	Latency    time.Duration // Latency
	AfterBytes int64         // Reset, Truncate, FlipResponse, FlipRequest
}

// FaultTransport is an http.RoundTripper decorator that injects the rules'
// faults, drawing from a seeded generator so that a failing run can be
// reproduced with its seed. Use its Wrap as s3.Options.Transport. It counts
// what it injected.
type FaultTransport struct {
	mu     sync.Mutex
	base   http.RoundTripper
	rng    *rand.Rand
	rules  []Rule
	fired  []int
	counts map[FaultKind]int
}

// NewFaultTransport returns a transport injecting rules with the seed.
func NewFaultTransport(seed uint64, rules ...Rule) *FaultTransport {
	return &FaultTransport{
		base:   http.DefaultTransport,
		rng:    rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		rules:  rules,
		fired:  make([]int, len(rules)),
		counts: make(map[FaultKind]int),
	}
}

// SetRules replaces the rules (and forgets how often the old ones fired;
// the counts by kind stay): a test can set up a repository without faults,
// then inject them.
func (f *FaultTransport) SetRules(rules ...Rule) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rules = rules
	f.fired = make([]int, len(rules))
}

// Wrap makes f decorate base and returns f: the signature of
// s3.Options.Transport.
func (f *FaultTransport) Wrap(base http.RoundTripper) http.RoundTripper {
	f.mu.Lock()
	f.base = base
	f.mu.Unlock()
	return f
}

// Count returns how many times a fault of kind k was injected.
func (f *FaultTransport) Count(k FaultKind) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.counts[k]
}

// Counts returns the number of injections by kind.
func (f *FaultTransport) Counts() map[FaultKind]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	m := make(map[FaultKind]int, len(f.counts))
	for k, v := range f.counts {
		m[k] = v
	}
	return m
}

// draw returns the rules that fire for req: every latency rule that fires,
// then the first other one that does.
func (f *FaultTransport) draw(req *http.Request) (latency time.Duration, fault *Rule, base http.RoundTripper) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.rules {
		r := &f.rules[i]
		if r.Kind != Latency && fault != nil {
			continue
		}
		if r.Method != "" && r.Method != req.Method || r.Match != nil && !r.Match(req) || r.Limit > 0 && f.fired[i] >= r.Limit {
			continue
		}
		if r.Kind == FlipRequest && (req.Body == nil || req.Body == http.NoBody || req.ContentLength == 0) {
			continue // nothing to flip
		}
		if f.rng.Float64() >= r.Probability {
			continue
		}
		f.fired[i]++
		f.counts[r.Kind]++
		if r.Kind == Latency {
			latency += r.Latency
		} else {
			fault = r
		}
	}
	return latency, fault, f.base
}

// RoundTrip injects the faults that fire, else passes req on.
func (f *FaultTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	latency, r, base := f.draw(req)
	if latency > 0 {
		t := time.NewTimer(latency)
		select {
		case <-t.C:
		case <-req.Context().Done():
			t.Stop()
			if req.Body != nil {
				req.Body.Close()
			}
			return nil, req.Context().Err()
		}
	}
	if r == nil {
		return base.RoundTrip(req)
	}
	switch r.Kind {
	case Status500:
		return errorResponse(req, http.StatusInternalServerError, "InternalError", "injected fault: internal error"), nil
	case Status503:
		return errorResponse(req, http.StatusServiceUnavailable, "ServiceUnavailable", "injected fault: service unavailable"), nil
	case SlowDown:
		return errorResponse(req, http.StatusServiceUnavailable, "SlowDown", "Please reduce your request rate."), nil
	case FlipRequest:
		if req.Body != nil && req.Body != http.NoBody {
			req = req.Clone(req.Context())
			req.Body = &flipBody{rc: req.Body, at: r.AfterBytes}
		}
		return base.RoundTrip(req)
	}
	resp, err := base.RoundTrip(req)
	if err != nil || resp.Body == nil || resp.Body == http.NoBody {
		return resp, err
	}
	switch r.Kind {
	case Reset:
		resp.Body = &cutBody{rc: resp.Body, left: r.AfterBytes, err: &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}}
	case Truncate:
		resp.Body = &cutBody{rc: resp.Body, left: r.AfterBytes, err: io.EOF}
	case FlipResponse:
		at := r.AfterBytes
		if resp.ContentLength > 0 && at >= resp.ContentLength {
			at = resp.ContentLength - 1
		}
		resp.Body = &flipBody{rc: resp.Body, at: at}
	}
	return resp, nil
}

// errorResponse is an S3 error answer made up without reaching the store.
func errorResponse(req *http.Request, status int, code, msg string) *http.Response {
	if req.Body != nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(req.Body, 1<<20))
		req.Body.Close()
	}
	var body []byte
	if req.Method != http.MethodHead {
		body = fmt.Appendf(nil, `<?xml version="1.0" encoding="UTF-8"?>`+"\n"+
			`<Error><Code>%s</Code><Message>%s</Message><RequestId>injected-fault</RequestId></Error>`, code, msg)
	}
	h := http.Header{}
	h.Set("Content-Type", "application/xml")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	return &http.Response{
		Status:        fmt.Sprintf("%d %s", status, http.StatusText(status)),
		StatusCode:    status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        h,
		Body:          io.NopCloser(bytes.NewReader(body)),
		ContentLength: int64(len(body)),
		Request:       req,
	}
}

// cutBody ends a body with err after left bytes.
type cutBody struct {
	rc   io.ReadCloser
	left int64
	err  error
}

func (b *cutBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, b.err
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	if err == nil && b.left <= 0 {
		err = b.err
	}
	return n, err
}

func (b *cutBody) Close() error { return b.rc.Close() }

// flipBody flips the low bit of the byte at offset at.
type flipBody struct {
	rc  io.ReadCloser
	at  int64
	off int64
}

func (b *flipBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if b.at >= b.off && b.at < b.off+int64(n) {
		p[b.at-b.off] ^= 1
	}
	b.off += int64(n)
	return n, err
}

func (b *flipBody) Close() error { return b.rc.Close() }
