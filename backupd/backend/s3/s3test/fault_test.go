package s3test

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestFaultTransport(t *testing.T) {
	t.Parallel()
	body := bytes.Repeat([]byte("0123456789"), 100)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, _ := io.ReadAll(r.Body)
		if r.Method == http.MethodPut {
			_, _ = w.Write(got) // echo
			return
		}
		_, _ = w.Write(body)
	}))
	t.Cleanup(srv.Close)
	get := func(ft *FaultTransport) (*http.Response, []byte, error) {
		req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
		resp, err := (&http.Client{Transport: ft.Wrap(http.DefaultTransport)}).Do(req)
		if err != nil {
			return nil, nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp, b, err
	}

	t.Run("SeededDraws", func(t *testing.T) {
		run := func(seed uint64) []bool {
			ft := NewFaultTransport(seed, Rule{Kind: Status500, Probability: 0.3})
			var fired []bool
			for range 200 {
				resp, _, err := get(ft)
				if err != nil {
					t.Fatal(err)
				}
				fired = append(fired, resp.StatusCode == 500)
			}
			if n := ft.Count(Status500); n < 30 || n > 90 {
				t.Fatalf("seed %d: %d of 200 at probability 0.3", seed, n)
			}
			return fired
		}
		a, b, c := run(1), run(1), run(2)
		if !slices.Equal(a, b) {
			t.Fatal("the same seed drew different faults")
		}
		if slices.Equal(a, c) {
			t.Fatal("different seeds drew the same faults")
		}
	})
	t.Run("SlowDown", func(t *testing.T) {
		resp, b, err := get(NewFaultTransport(1, Rule{Kind: SlowDown, Probability: 1}))
		if err != nil || resp.StatusCode != 503 || !strings.Contains(string(b), "<Code>SlowDown</Code>") {
			t.Fatalf("%v %q %v", resp.StatusCode, b, err)
		}
	})
	t.Run("Truncate", func(t *testing.T) {
		resp, b, err := get(NewFaultTransport(1, Rule{Kind: Truncate, Probability: 1, AfterBytes: 100}))
		if err != nil || len(b) != 100 || resp.ContentLength != int64(len(body)) {
			t.Fatalf("got %d bytes of Content-Length %d, err %v", len(b), resp.ContentLength, err)
		}
	})
	t.Run("Reset", func(t *testing.T) {
		_, b, err := get(NewFaultTransport(1, Rule{Kind: Reset, Probability: 1, AfterBytes: 100}))
		if !errors.Is(err, syscall.ECONNRESET) || len(b) != 100 {
			t.Fatalf("got %d bytes, err %v", len(b), err)
		}
	})
	t.Run("FlipResponse", func(t *testing.T) {
		ft := NewFaultTransport(1, Rule{Kind: FlipResponse, Probability: 1, Limit: 1, AfterBytes: 500})
		_, b, err := get(ft)
		if err != nil || len(b) != len(body) {
			t.Fatal(err)
		}
		diff := 0
		for i := range b {
			if b[i] != body[i] {
				diff++
				if i != 500 || b[i]^body[i] != 1 {
					t.Fatalf("byte %d changed from %q to %q", i, body[i], b[i])
				}
			}
		}
		if diff != 1 {
			t.Fatalf("%d bytes changed", diff)
		}
		if _, b, _ := get(ft); !bytes.Equal(b, body) {
			t.Fatal("fault fired beyond its limit")
		}
	})
	t.Run("FlipRequest", func(t *testing.T) {
		ft := NewFaultTransport(1, Rule{Kind: FlipRequest, Method: http.MethodPut, Probability: 1, AfterBytes: 3})
		req, _ := http.NewRequest(http.MethodPut, srv.URL, strings.NewReader("abcdef"))
		resp, err := (&http.Client{Transport: ft.Wrap(http.DefaultTransport)}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		got, _ := io.ReadAll(resp.Body)
		if string(got) != "abceef" {
			t.Fatalf("server received %q", got)
		}
	})
	t.Run("Latency", func(t *testing.T) {
		ft := NewFaultTransport(1, Rule{Kind: Latency, Probability: 1, Latency: 50 * time.Millisecond}, Rule{Kind: Status503, Method: http.MethodPost, Probability: 1})
		start := time.Now()
		resp, _, err := get(ft)
		if err != nil || resp.StatusCode != 200 || time.Since(start) < 50*time.Millisecond {
			t.Fatalf("%v %v after %v", resp, err, time.Since(start))
		}
		if ft.Count(Latency) != 1 || ft.Count(Status503) != 0 {
			t.Fatalf("counts %v", ft.Counts())
		}
	})
}
