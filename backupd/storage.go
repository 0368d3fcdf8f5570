package main

import (
	"os"
	"strconv"
	"time"

	"github.com/spf13/pflag"

	"github.com/meshbackup/backupd/backupd/backend/location"
	"github.com/meshbackup/backupd/backupd/backend/s3"
)

// storageFlags adds the flags of object storage that AWS has no
// environment variable for. Their defaults come from the environment
// (BACKUPD_*); values are checked when a command opens --repo (spec), so a
// bad variable does not break commands that open none. They apply to
// --repo; the daemon takes the same settings from its config.
func (g *globalOptions) storageFlags(pf *pflag.FlagSet) {
	g.flags = pf
	env := g.env
	pathStyle := env.S3PathStyle
	if pathStyle == "" {
		pathStyle = "auto"
	}
	pf.StringVar(&g.s3PathStyle, "s3-path-style", pathStyle, "s3:// repositories: address the bucket by path (true), by virtual host (false), or auto: by path for a custom endpoint (AWS_ENDPOINT_URL), else by host (env BACKUPD_S3_PATH_STYLE)")
	pf.StringVar(&g.s3CAFile, "s3-ca-file", env.S3CAFile, "s3:// repositories: also trust the PEM certificates in this file (env BACKUPD_S3_CA_FILE)")
	pf.BoolVar(&g.s3InsecureSkipVerify, "s3-insecure-skip-verify", false, "s3:// repositories: do not check the store's TLS certificate. For tests only: anyone on the path can read and change the traffic")
	pf.DurationVar(&g.storageTimeout, "storage-timeout", 0, "s3:// repositories: deadline of each attempt of a storage operation; an attempt that runs out of it is retried (0: the retry layer's default; env BACKUPD_STORAGE_TIMEOUT)")
	pf.DurationVar(&g.storageRetryFor, "storage-retry-for", 0, "s3:// repositories: how long a storage operation that keeps failing transiently (the store stopped or unreachable) is retried before the command fails (0: the retry layer's default, 1m; env BACKUPD_STORAGE_RETRY_FOR)")
	pf.IntVar(&g.uploads, "uploads", 0, "packs uploaded in parallel (0: the repository's default; env BACKUPD_UPLOADS)")
	pf.StringVar(&g.cacheDir, "cache-dir", env.CacheDir, "s3:// repositories: keep copies of index files, snapshots and tree packs under `DIR`/<repository id>, verified on every read (default ${XDG_CACHE_HOME:-~/.cache}/backupd/repos; env BACKUPD_CACHE_DIR)")
	pf.BoolVar(&g.noCache, "no-cache", false, "s3:// repositories: keep no local cache; read every object from the store")
}

// given reports whether flag was given on the command line (not defaulted
// from the environment).
func (g *globalOptions) given(flag string) bool { return g.flags != nil && g.flags.Changed(flag) }

// source names where a flag's value came from, for errors: the flag, or
// the environment variable its default was read from.
func (g *globalOptions) source(flag, envVar, envValue string) string {
	if g.given(flag) || envValue == "" {
		return "--" + flag
	}
	return envVar
}

// durationFlag is a duration flag's value: the flag if given, else the
// environment variable envVar (raw value envValue) if set, else the flag's
// default. A bad or negative value is a usage error naming its source;
// example shows a good value.
func (g *globalOptions) durationFlag(flag, envVar, envValue string, value time.Duration, example string) (time.Duration, error) {
	if !g.given(flag) && envValue != "" {
		d, err := time.ParseDuration(envValue)
		if err != nil {
			return 0, usageErr("%s %s: want a duration such as %s", envVar, escape(envValue), example)
		}
		value = d
	}
	if value < 0 {
		return 0, usageErr("%s %s: want a duration of zero or more", g.source(flag, envVar, envValue), value)
	}
	return value, nil
}

// spec checks --repo and the object storage flags and returns the
// location to open. Every mistake is a usage error (exit 2) naming the
// flag or variable.
func (g *globalOptions) spec() (location.Spec, error) {
	checkRepo := func() error {
		err := location.Check(g.repo)
		switch {
		case err == nil:
			return nil
		case location.IsS3(g.repo):
			return usageErr("--repo: %v", err) // s3.ParseURL's error names the URL
		}
		return usageErr("--repo %s: %v", escape(g.repo), err)
	}
	timeout, err := g.durationFlag("storage-timeout", "BACKUPD_STORAGE_TIMEOUT", g.env.StorageTimeout, g.storageTimeout, "30s or 2m")
	if err != nil {
		return location.Spec{}, err
	}
	retryFor, err := g.durationFlag("storage-retry-for", "BACKUPD_STORAGE_RETRY_FOR", g.env.StorageRetryFor, g.storageRetryFor, "30s or 5m")
	if err != nil {
		return location.Spec{}, err
	}
	uploads := g.uploads
	if !g.given("uploads") && g.env.Uploads != "" {
		n, err := strconv.Atoi(g.env.Uploads)
		if err != nil {
			return location.Spec{}, usageErr("BACKUPD_UPLOADS %s: want a whole number", escape(g.env.Uploads))
		}
		uploads = n
	}
	if uploads < 0 {
		return location.Spec{}, usageErr("%s %d: want a whole number of zero or more", g.source("uploads", "BACKUPD_UPLOADS", g.env.Uploads), uploads)
	}
	spec := location.Spec{Location: g.repo, Uploads: uploads}
	if !location.IsS3(g.repo) {
		if err := checkRepo(); err != nil {
			return location.Spec{}, err
		}
		// Flags given for a directory are a mistake; variables set in the
		// environment for another repository are not.
		for _, f := range []string{"s3-path-style", "s3-ca-file", "s3-insecure-skip-verify", "storage-timeout", "storage-retry-for"} {
			if g.given(f) {
				return location.Spec{}, usageErr("--%s applies to s3:// repositories only; --repo %s is a directory", f, escape(g.repo))
			}
		}
		return spec, nil
	}
	spec.Timeout, spec.RetryFor = timeout, retryFor
	if err := location.CheckPathStyle(g.s3PathStyle); err != nil {
		return location.Spec{}, usageErr("%s %v", g.source("s3-path-style", "BACKUPD_S3_PATH_STYLE", g.env.S3PathStyle), err)
	}
	for _, e := range []struct{ name, value string }{{"AWS_ENDPOINT_URL_S3", g.env.AWSEndpointURLS3}, {"AWS_ENDPOINT_URL", g.env.AWSEndpointURL}} {
		if err := location.CheckEndpoint(e.value); err != nil {
			return location.Spec{}, usageErr("%s: %v", e.name, err)
		}
	}
	if g.s3CAFile != "" {
		if _, err := os.Stat(g.s3CAFile); err != nil {
			return location.Spec{}, usageErr("%s: %v", g.source("s3-ca-file", "BACKUPD_S3_CA_FILE", g.env.S3CAFile), err)
		}
	}
	// The URL last: a mistake in the flags is reported whatever the URL.
	if err := checkRepo(); err != nil {
		return location.Spec{}, err
	}
	// Endpoint, region and credentials stay empty: the AWS SDK reads
	// them from the environment, the shared files, web identity (IRSA)
	// or container credentials (EKS Pod Identity).
	spec.S3 = location.S3{PathStyle: g.s3PathStyle, CAFile: g.s3CAFile, InsecureSkipVerify: g.s3InsecureSkipVerify}
	if v := g.env.S3PartSize; v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < s3.MinPartSize || n > s3.MaxPartSize {
			return location.Spec{}, usageErr("BACKUPD_S3_PART_SIZE %s: want a number of bytes from %d (5 MiB) to %d (5 GiB)", escape(v), s3.MinPartSize, int64(s3.MaxPartSize))
		}
		spec.S3.PartSize = n
	}
	if v := g.env.S3StaleUploadAge; v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return location.Spec{}, usageErr("BACKUPD_S3_STALE_UPLOAD_AGE %s: want a duration such as 1s or 2h", escape(v))
		}
		spec.S3.StaleUploadAge = d
	}
	return spec, nil
}
