package location_test

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshbackup/backupd/backupd/backend"
	"github.com/meshbackup/backupd/backupd/backend/location"
	"github.com/meshbackup/backupd/backupd/backend/retry"
	"github.com/meshbackup/backupd/backupd/config"
)

// wrapped is what a metering wrapper looks like to As.
type wrapped struct{ backend.Backend }

func (w wrapped) Unwrap() backend.Backend { return w.Backend }

// A directory is opened as the local backend, not retried, with the
// caller's wrapper outermost and the local backend's features reachable
// through it.
func TestDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "repo")
	wrap := func(be backend.Backend) backend.Backend { return wrapped{be} }
	if _, err := location.Open(t.Context(), location.Spec{Location: dir}, location.Options{}); err == nil {
		t.Fatal("open of a missing directory succeeded")
	}
	for _, open := range []func() (backend.Backend, error){
		func() (backend.Backend, error) {
			return location.Create(t.Context(), location.Spec{Location: dir}, location.Options{Wrap: wrap})
		},
		func() (backend.Backend, error) {
			return location.Open(t.Context(), location.Spec{Location: dir}, location.Options{Wrap: wrap})
		},
	} {
		be, err := open()
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := be.(wrapped); !ok {
			t.Errorf("outermost backend is %T, want the caller's wrapper", be)
		}
		if _, ok := backend.As[*retry.Backend](be); ok {
			t.Error("a directory is wrapped by the retry layer")
		}
		if td, ok := backend.As[backend.TempDirer](be); !ok || td.TempDir() != filepath.Join(dir, "tmp") {
			t.Error("the local backend's TempDir is not reachable through the wrapper")
		}
		if _, ok := backend.As[backend.SpaceReporter](be); !ok {
			t.Error("the local backend's free space is not reachable through the wrapper")
		}
	}
}

func TestCheck(t *testing.T) {
	for _, tc := range []struct{ loc, want string }{
		{"/var/lib/backupd/repo", ""},
		{"relative/repo", ""},
		{"a:b", ""}, // a directory may hold a colon
		{"", "empty: want a directory or s3://BUCKET[/PREFIX]"},
		{"gs://bucket", "unsupported scheme gs://"},
		{"S3://bucket", "unsupported scheme S3://"},
		{"file:///srv/repo", "unsupported scheme file://"},
		{"s3://", "s3"}, // s3.ParseURL's error
	} {
		t.Run(tc.loc, func(t *testing.T) {
			err := location.Check(tc.loc)
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("Check(%q) = %v, want %q", tc.loc, err, tc.want)
			}
		})
	}
}

func TestCheckEndpoint(t *testing.T) {
	for _, tc := range []struct{ endpoint, want string }{
		{"", ""},
		{"http://127.0.0.1:9000", ""},
		{"https://s3.eu-west-1.amazonaws.com", ""},
		{"minio:9000", `"minio:9000" has no scheme, want http:// or https://`},
		{"127.0.0.1:9000", "has no scheme"},
		{"ftp://minio", "scheme ftp, want http:// or https://"},
		{"https://", "has no host"},
		{"http://key:s3cr3t@minio:9000", `"http://REDACTED@minio:9000" must not hold credentials`},
		{"key:s3cr3t@minio:9000", `"REDACTED@minio:9000" has no scheme`},
		{"http://minio:9000?a=b", "must not have a query"},
	} {
		t.Run(tc.endpoint, func(t *testing.T) {
			err := location.CheckEndpoint(tc.endpoint)
			if err != nil && strings.Contains(err.Error(), "s3cr3t") {
				t.Fatalf("error %q shows the password", err)
			}
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("CheckEndpoint(%q) = %v, want %q", tc.endpoint, err, tc.want)
			}
		})
	}
}

// S3 settings for a directory are refused before anything is touched.
func TestS3SettingsForDirectory(t *testing.T) {
	dir := t.TempDir()
	_, err := location.Create(t.Context(), location.Spec{Location: dir, S3: location.S3{Region: "eu-west-1"}}, location.Options{})
	if err == nil || !strings.Contains(err.Error(), "s3 settings given for a directory repository") {
		t.Fatalf("err = %v", err)
	}
}

func TestFromConfig(t *testing.T) {
	t.Setenv("BACKUPD_TEST_ID", "AKIDEXAMPLE")
	t.Setenv("BACKUPD_TEST_SECRET", "secret-value")
	rc := config.Repository{Name: "b", Path: "s3://bucket/p", Timeout: time.Minute, Uploads: 3, S3: config.S3{
		Endpoint: "http://127.0.0.1:9000", Region: "r", PathStyle: "true", CAFile: "/ca.pem", InsecureSkipVerify: true,
		AccessKeyIDEnv: "BACKUPD_TEST_ID", SecretAccessKeyEnv: "BACKUPD_TEST_SECRET", AllowUnconditionalWrites: true}}
	spec, err := location.FromConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	want := location.Spec{Location: "s3://bucket/p", Timeout: time.Minute, Uploads: 3, S3: location.S3{
		Endpoint: "http://127.0.0.1:9000", Region: "r", PathStyle: "true", CAFile: "/ca.pem", InsecureSkipVerify: true,
		AllowUnconditionalWrites: true, Credentials: location.Credentials{AccessKeyID: "AKIDEXAMPLE", SecretAccessKey: "secret-value"}}}
	if spec.Location != want.Location || spec.Timeout != want.Timeout || spec.Uploads != want.Uploads || spec.S3 != want.S3 ||
		spec.Faults != nil || spec.Transport != nil {
		t.Fatalf("spec %#v\nwant %#v", spec, want)
	}
	// Printed or encoded, the spec shows no credential.
	js, _ := json.Marshal(spec)
	for _, s := range []string{fmt.Sprintf("%v", spec), fmt.Sprintf("%+v", spec), fmt.Sprintf("%#v", spec), string(js)} {
		if strings.Contains(s, "AKIDEXAMPLE") || strings.Contains(s, "secret-value") {
			t.Errorf("credentials shown in %s", s)
		}
	}
	t.Setenv("BACKUPD_TEST_SECRET", "")
	if _, err := location.FromConfig(rc); err == nil || !strings.Contains(err.Error(), "s3.secret_access_key_env: environment variable BACKUPD_TEST_SECRET is empty or unset") {
		t.Fatalf("err = %v", err)
	}
	if spec, err := location.FromConfig(config.Repository{Path: "/srv/repo", Uploads: 2}); err != nil || spec.Location != "/srv/repo" || spec.Uploads != 2 || spec.S3 != (location.S3{}) || spec.Timeout != 0 {
		t.Fatalf("directory: %+v %v", spec, err)
	}
}
