package s3_test

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/meshbackup/backupd/backupd/backend"
	"github.com/meshbackup/backupd/backupd/backend/s3"
	"github.com/meshbackup/backupd/backupd/backend/s3/s3test"
)

// isolateAWSEnv clears the AWS configuration of the environment and
// points the shared files at an empty directory.
func isolateAWSEnv(t *testing.T) string {
	t.Helper()
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "AWS_") {
			t.Setenv(k, "")
			os.Unsetenv(k)
		}
	}
	dir := t.TempDir()
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	return dir
}

// TestAWSConfigChain opens MinIO with nothing in Options but the bucket:
// endpoint, region and credentials come from the environment or a profile
// of the shared files, as on a host configured for the AWS CLI.
func TestAWSConfigChain(t *testing.T) {
	srv := s3test.StartMinIO(t)
	bucket := srv.NewBucket(t)
	id, secret := srv.Credentials()
	check := func(t *testing.T, opt s3.Options) {
		t.Helper()
		be, err := s3.Create(t.Context(), opt)
		if err != nil {
			t.Fatalf("create: %v", err)
		}
		h := backend.Handle{Type: backend.SnapshotFile, Name: "s1"}
		if err := be.Save(t.Context(), h, strings.NewReader("x")); err != nil {
			t.Fatalf("save: %v", err)
		}
		if !strings.Contains(be.String(), srv.Endpoint()) {
			t.Errorf("String() %q does not name the endpoint from the environment", be.String())
		}
	}
	t.Run("Environment", func(t *testing.T) {
		isolateAWSEnv(t)
		t.Setenv("AWS_ENDPOINT_URL", srv.Endpoint())
		t.Setenv("AWS_REGION", "us-east-1")
		t.Setenv("AWS_ACCESS_KEY_ID", id)
		t.Setenv("AWS_SECRET_ACCESS_KEY", secret)
		check(t, s3.Options{Bucket: bucket, Prefix: "env"})
	})
	t.Run("Profile", func(t *testing.T) {
		dir := isolateAWSEnv(t)
		if err := os.WriteFile(filepath.Join(dir, "credentials"), []byte("[backup]\naws_access_key_id = "+id+"\naws_secret_access_key = "+secret+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "config"), []byte("[profile backup]\nregion = us-east-1\nendpoint_url = "+srv.Endpoint()+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		check(t, s3.Options{Bucket: bucket, Prefix: "profile", Profile: "backup"})
		t.Setenv("AWS_PROFILE", "backup")
		check(t, s3.Options{Bucket: bucket, Prefix: "aws-profile"})
	})
	t.Run("MissingProfile", func(t *testing.T) {
		isolateAWSEnv(t)
		_, err := s3.Open(t.Context(), s3.Options{Bucket: bucket, Profile: "nope"})
		if err == nil || !strings.Contains(err.Error(), "nope") {
			t.Fatalf("open with a missing profile: %v", err)
		}
	})
	t.Run("MissingRegion", func(t *testing.T) {
		isolateAWSEnv(t)
		_, err := s3.Open(t.Context(), s3.Options{Bucket: bucket, AccessKeyID: id, SecretAccessKey: secret})
		if err == nil || !strings.Contains(err.Error(), "region is not set") {
			t.Fatalf("open AWS S3 without a region: %v", err)
		}
	})
	t.Run("BadEndpointFromEnvironment", func(t *testing.T) {
		isolateAWSEnv(t)
		t.Setenv("AWS_ENDPOINT_URL", "minio:9000")
		_, err := s3.Open(t.Context(), s3.Options{Bucket: bucket, Region: "us-east-1", AccessKeyID: id, SecretAccessKey: secret})
		if err == nil || !strings.Contains(err.Error(), "has no scheme") {
			t.Fatalf("open with AWS_ENDPOINT_URL=minio:9000: %v", err)
		}
	})
}

// TestSaveMemory checks that an upload holds no part in memory: a 24 MiB
// multipart Save of 5 MiB parts allocates far less than one part, from a
// file and from a reader that is not an io.ReaderAt.
func TestSaveMemory(t *testing.T) {
	srv := s3test.StartMinIO(t)
	be := newRepo(t, srv, "mem", func(o *s3.Options) { o.PartSize = s3.MinPartSize })
	path := filepath.Join(t.TempDir(), "pack")
	if err := os.WriteFile(path, randomBytes(31, 24<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	for i, wrap := range []bool{false, true} {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		var rd interface {
			Read([]byte) (int, error)
			Seek(int64, int) (int64, error)
		} = f
		if wrap {
			rd = struct{ *os.File }{f}
		}
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		if err := be.Save(t.Context(), backend.Handle{Type: backend.PackFile, Name: []string{"aa01", "aa02"}[i]}, rd); err != nil {
			t.Fatal(err)
		}
		runtime.ReadMemStats(&after)
		alloc := after.TotalAlloc - before.TotalAlloc
		t.Logf("not a ReaderAt %v: %d KiB allocated for a 24 MiB upload", wrap, alloc>>10)
		if alloc > 2<<20 {
			t.Errorf("not a ReaderAt %v: %d KiB allocated for a 24 MiB upload, want under 2 MiB (no part buffered)", wrap, alloc>>10)
		}
	}
}
