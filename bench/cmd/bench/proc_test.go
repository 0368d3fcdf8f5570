package main

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestRunProcStopsOnCancel: a cancelled run is asked to stop with SIGINT;
// one that ignores it is killed stopGrace later, with its whole process
// group (the sleep the shell started included), instead of holding up the
// bench for the rest of its sleep.
func TestRunProcStopsOnCancel(t *testing.T) {
	for _, tc := range []struct {
		name, script string
		// graced: the run ignores SIGINT and so lasts the grace.
		graced bool
	}{
		{"exits on SIGINT", "sleep 60", false},
		{"ignores SIGINT", `trap "" INT; sleep 60; echo done`, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
			defer cancel()
			start := time.Now()
			p, err := runProc(ctx, invocation{bin: "/bin/sh", args: []string{"-c", tc.script}}, 0, 0)
			took := time.Since(start)
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("runProc of a cancelled run: error %v, want the context's deadline", err)
			}
			if took > stopGrace+20*time.Second {
				t.Fatalf("runProc returned %s after the cancel: the group was not killed", took)
			}
			if tc.graced != (took >= stopGrace) {
				t.Fatalf("returned %s after the start: want the %s grace only for a run that ignores SIGINT", took, stopGrace)
			}
			if p == nil || p.Stdout != "" {
				t.Fatalf("the run went on past its kill: %+v", p)
			}
		})
	}
}

// TestOutageHang: only the S3 outage, which ends by itself, gets
// MinIO's down time and the hang grace; the local faults, which last
// until the run exits, get the shorter fail grace.
func TestOutageHang(t *testing.T) {
	prof := profile{hangGrace: 20 * time.Second, failGrace: 5 * time.Second, s3Down: 5 * time.Second}
	for _, tc := range []struct {
		name          string
		bound         func(time.Duration) time.Duration
		healthy, want time.Duration
	}{
		{"local", prof.localHang, time.Second, 8 * time.Second},
		{"local, short run", prof.localHang, 100 * time.Millisecond, 5300 * time.Millisecond},
		{"s3", prof.s3Hang, time.Second, 35 * time.Second},
	} {
		if got := tc.bound(tc.healthy); got != tc.want {
			t.Errorf("%s hang bound (healthy %s) = %s, want %s", tc.name, tc.healthy, got, tc.want)
		}
	}
}
