package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Traffic is what one or more tool runs asked of the object store through
// the counting proxy. Sent and received are from the tool's side: request
// bodies it uploaded, response bodies it downloaded (headers not counted).
type Traffic struct {
	Requests int64            `json:"requests"`
	ByMethod map[string]int64 `json:"by_method,omitempty"`
	// ByStatus counts responses by status class ("2xx", "4xx", ...);
	// "proxy error" is a request the proxy could not forward.
	ByStatus      map[string]int64 `json:"by_status,omitempty"`
	SentBytes     int64            `json:"sent_bytes"`
	ReceivedBytes int64            `json:"received_bytes"`
}

// sub returns t minus before (t is a later snapshot of the same counters).
func (t Traffic) sub(before Traffic) *Traffic {
	d := &Traffic{
		Requests:      t.Requests - before.Requests,
		SentBytes:     t.SentBytes - before.SentBytes,
		ReceivedBytes: t.ReceivedBytes - before.ReceivedBytes,
	}
	diff := func(now, then map[string]int64) map[string]int64 {
		var out map[string]int64
		for k, v := range now {
			if n := v - then[k]; n != 0 {
				if out == nil {
					out = make(map[string]int64)
				}
				out[k] = n
			}
		}
		return out
	}
	d.ByMethod = diff(t.ByMethod, before.ByMethod)
	d.ByStatus = diff(t.ByStatus, before.ByStatus)
	return d
}

// methods renders ByMethod as "GET 12, PUT 3", the usual methods first.
func (t *Traffic) methods() string {
	if t == nil || len(t.ByMethod) == 0 {
		return "–"
	}
	order := []string{http.MethodGet, http.MethodHead, http.MethodPut, http.MethodPost, http.MethodDelete}
	rank := func(m string) int {
		if i := slices.Index(order, m); i >= 0 {
			return i
		}
		return len(order)
	}
	keys := slices.Sorted(maps.Keys(t.ByMethod))
	slices.SortStableFunc(keys, func(a, b string) int { return cmp.Compare(rank(a), rank(b)) })
	parts := make([]string, len(keys))
	for i, m := range keys {
		parts[i] = fmt.Sprintf("%s %d", m, t.ByMethod[m])
	}
	return strings.Join(parts, ", ")
}

// countingProxy is a reverse proxy in front of the object store that counts
// every request passing through it. The tools run one at a time, so the
// bench attributes traffic to a run by snapshotting the counters around it.
//
// The client's Host header is passed on unchanged: SigV4 signs it, so the
// store must see the host the client signed (the proxy's address).
type countingProxy struct {
	addr string // host:port the tools connect to
	srv  *http.Server

	sent, received atomic.Int64
	mu             sync.Mutex
	requests       int64
	byMethod       map[string]int64
	byStatus       map[string]int64
}

// startCountingProxy serves a counting reverse proxy to target on a free
// 127.0.0.1 port until ctx ends or close is called.
func startCountingProxy(ctx context.Context, target *url.URL) (*countingProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("counting proxy: listen: %w", err)
	}
	p := &countingProxy{addr: ln.Addr().String(), byMethod: map[string]int64{}, byStatus: map[string]int64{}}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil               // never through an HTTP proxy of the environment
	tr.DisableCompression = true // bodies pass as the store sent them
	tr.MaxIdleConnsPerHost = 128 // tools upload in parallel
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = pr.In.Host // SigV4 signed this host
		},
		Transport: tr,
		ModifyResponse: func(resp *http.Response) error {
			p.count(func() { p.byStatus[fmt.Sprintf("%dxx", resp.StatusCode/100)]++ })
			resp.Body = &countingBody{rc: resp.Body, n: &p.received}
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			p.count(func() { p.byStatus["proxy error"]++ })
			if !errors.Is(err, context.Canceled) {
				http.Error(w, "bench proxy: "+err.Error(), http.StatusBadGateway)
			}
		},
	}
	p.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p.count(func() { p.requests++; p.byMethod[r.Method]++ })
			if r.Body != nil {
				r.Body = &countingBody{rc: r.Body, n: &p.sent}
			}
			rp.ServeHTTP(w, r)
		}),
		ReadHeaderTimeout: time.Minute,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	go p.srv.Serve(ln) //nolint:errcheck // ErrServerClosed after close
	return p, nil
}

func (p *countingProxy) count(f func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f()
}

// snapshot returns the counters so far.
func (p *countingProxy) snapshot() Traffic {
	p.mu.Lock()
	defer p.mu.Unlock()
	return Traffic{
		Requests: p.requests, ByMethod: maps.Clone(p.byMethod), ByStatus: maps.Clone(p.byStatus),
		SentBytes: p.sent.Load(), ReceivedBytes: p.received.Load(),
	}
}

// url is the proxy's base URL.
func (p *countingProxy) url() string { return "http://" + p.addr }

func (p *countingProxy) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.srv.Shutdown(ctx); err != nil {
		return fmt.Errorf("counting proxy: %w", errors.Join(err, p.srv.Close()))
	}
	return nil
}

// countingBody adds the bytes read through it to n.
type countingBody struct {
	rc io.ReadCloser
	n  *atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	b.n.Add(int64(n))
	return n, err
}

func (b *countingBody) Close() error { return b.rc.Close() }
