package agent

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/meshbackup/backupd/backupd/config"
	"github.com/meshbackup/backupd/backupd/kube/api/v1alpha1"
)

// Defaults of a BackupPolicy's optional parts.
const (
	defaultVerifySchedule = "@daily"
	defaultDrillSchedule  = "@daily"
)

// RepoConfig is the config repository made of a BackupRepository. The
// secrets are not in it: Options.Password and the agent's OpenBackend give
// them from memory.
func RepoConfig(r *v1alpha1.BackupRepository, caFile string) (config.Repository, error) {
	rc := config.Repository{Name: r.Name}
	if u := r.Spec.Uploads; u != nil {
		rc.Uploads = int(*u)
	}
	if t := r.Spec.RetryFor; t != nil {
		rc.RetryFor = t.Duration
	}
	if t := r.Spec.Timeout; t != nil {
		rc.Timeout = t.Duration
	}
	switch {
	case r.Spec.S3 != nil:
		s := r.Spec.S3
		rc.Path = "s3://" + s.Bucket
		if s.Prefix != "" {
			rc.Path += "/" + s.Prefix
		}
		rc.S3 = config.S3{Endpoint: s.Endpoint, Region: s.Region, PathStyle: s.PathStyle, CAFile: caFile,
			InsecureSkipVerify: s.InsecureSkipVerify, AllowUnconditionalWrites: s.AllowUnconditionalWrites}
	case r.Spec.Local != nil:
		rc.Path = filepath.Clean(r.Spec.Local.Path)
	default:
		return config.Repository{}, fmt.Errorf("BackupRepository %s: neither spec.s3 nor spec.local", r.Name)
	}
	return rc, nil
}

// PolicyConfig is the daemon policy of one volume. source is the stable
// path the agent links to the volume's directory; scratch is where drills
// restore.
func PolicyConfig(v Volume, cluster, source, scratch string) (config.Policy, error) {
	s := v.Policy.Spec
	p := config.Policy{Name: v.PolicyName(), Source: source, Repository: s.Repository, RPO: s.RPO.Duration,
		Host: v.Host(cluster), AppendOnly: slices.Clone(s.AppendOnly), Exclude: slices.Clone(s.Exclude)}
	if s.RTO != nil {
		p.RTO = s.RTO.Duration
	}
	var err error
	if p.Schedule, err = config.ParseSchedule(s.Schedule); err != nil {
		return config.Policy{}, fmt.Errorf("spec.schedule: %w", err)
	}
	if r := s.Retention; r != nil {
		p.Retention = config.Retention{KeepLast: int(r.KeepLast), KeepHourly: int(r.KeepHourly), KeepDaily: int(r.KeepDaily),
			KeepWeekly: int(r.KeepWeekly), KeepMonthly: int(r.KeepMonthly)}
	}
	vs, share := defaultVerifySchedule, 1.0
	if ver := s.Verify; ver != nil {
		vs = ver.Schedule
		if ver.ReadPercent != nil {
			share = float64(*ver.ReadPercent) / 100
		}
		if ver.FullReadEvery != nil {
			p.FullReadEvery = int(*ver.FullReadEvery)
		}
	}
	if p.Verify.Schedule, err = config.ParseSchedule(vs); err != nil {
		return config.Policy{}, fmt.Errorf("spec.verify.schedule: %w", err)
	}
	p.Verify.ReadShare = share
	// Drills: on by default (daily); enabled: false leaves the schedule
	// nil, which the daemon takes as "no drills".
	if dr := s.Drill; dr == nil || dr.Enabled == nil || *dr.Enabled {
		ds := defaultDrillSchedule
		if dr != nil && dr.Schedule != "" {
			ds = dr.Schedule
		}
		if p.Drill.Schedule, err = config.ParseSchedule(ds); err != nil {
			return config.Policy{}, fmt.Errorf("spec.drill.schedule: %w", err)
		}
		p.Drill.ScratchDir = scratch
	}
	return p, nil
}

// sortConfig orders a config's repositories and policies by name, so that
// equal states give equal configs.
func sortConfig(c *config.Config) {
	slices.SortFunc(c.Repositories, func(a, b config.Repository) int { return strings.Compare(a.Name, b.Name) })
	slices.SortFunc(c.Policies, func(a, b config.Policy) int { return strings.Compare(a.Name, b.Name) })
}

// sameConfig reports whether two built configs schedule the same work.
func sameConfig(a, b *config.Config) bool {
	if a == nil || b == nil {
		return a == b
	}
	if !slices.Equal(a.Repositories, b.Repositories) || a.Scheduler != b.Scheduler || len(a.Policies) != len(b.Policies) {
		return false
	}
	for i := range a.Policies {
		if policyKey(a.Policies[i]) != policyKey(b.Policies[i]) {
			return false
		}
	}
	return true
}

// policyKey renders a policy's settings (schedules by their spec).
func policyKey(p config.Policy) string {
	q := p
	q.Schedule.Schedule, q.Drill.Schedule.Schedule, q.Verify.Schedule.Schedule = nil, nil, nil
	return fmt.Sprintf("%+v", q)
}
