package snapshot

import (
	"fmt"
	"time"
)

// KeepPolicy says which snapshots of a policy to keep. Each rule keeps the
// newest snapshot of each of its last N buckets; a snapshot kept by any
// rule is kept.
type KeepPolicy struct {
	Last    int
	Hourly  int
	Daily   int
	Weekly  int
	Monthly int
}

// Empty reports whether no rule is set.
func (k KeepPolicy) Empty() bool {
	return k.Last == 0 && k.Hourly == 0 && k.Daily == 0 && k.Weekly == 0 && k.Monthly == 0
}

// Decision is what forget does with one snapshot.
type Decision struct {
	Snapshot *Snapshot
	Keep     bool
	Reasons  []string
}

// ApplyPolicy decides, for the snapshots of one policy, which to keep.
// Invariant: the newest snapshot (highest sequence number) is always kept,
// whatever the rules and the clock say.
func ApplyPolicy(snaps []*Snapshot, k KeepPolicy) []Decision {
	s := append([]*Snapshot(nil), snaps...)
	Sort(s)
	// newest first
	for i, j := 0, len(s)-1; i < j; i, j = i+1, j-1 {
		s[i], s[j] = s[j], s[i]
	}
	out := make([]Decision, len(s))
	for i, sn := range s {
		out[i] = Decision{Snapshot: sn}
	}
	bucketRule := func(name string, n int, bucket func(time.Time) string) {
		seen := map[string]bool{}
		for i := range out {
			if len(seen) >= n {
				return
			}
			b := bucket(out[i].Snapshot.Time.UTC())
			if seen[b] {
				continue
			}
			seen[b] = true
			out[i].Keep = true
			out[i].Reasons = append(out[i].Reasons, fmt.Sprintf("%s %s", name, b))
		}
	}
	for i := range out {
		if i < k.Last {
			out[i].Keep = true
			out[i].Reasons = append(out[i].Reasons, "last")
		}
	}
	bucketRule("hourly", k.Hourly, func(t time.Time) string { return t.Format("2006-01-02T15") })
	bucketRule("daily", k.Daily, func(t time.Time) string { return t.Format("2006-01-02") })
	bucketRule("weekly", k.Weekly, func(t time.Time) string { y, w := t.ISOWeek(); return fmt.Sprintf("%d-W%02d", y, w) })
	bucketRule("monthly", k.Monthly, func(t time.Time) string { return t.Format("2006-01") })
	if len(out) > 0 && !out[0].Keep {
		out[0].Keep = true
		out[0].Reasons = append(out[0].Reasons, "newest")
	}
	return out
}
