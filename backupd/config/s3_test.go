package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestS3Config(t *testing.T) {
	cfg, err := Load("testdata/s3.yaml")
	if err != nil {
		t.Fatal(err)
	}
	local, r := cfg.Repositories[0], cfg.Repositories[1]
	if local.IsS3() || !filepath.IsAbs(local.Path) || local.Uploads != 2 {
		t.Errorf("local repository decoded as %+v", local)
	}
	if !r.IsS3() || r.Path != "s3://backupd/mesh/prod" {
		t.Errorf("path %q, want the URL kept as written", r.Path)
	}
	if r.Timeout != 2*time.Minute || r.Uploads != 4 {
		t.Errorf("timeout %v uploads %d", r.Timeout, r.Uploads)
	}
	c := r.S3
	if c.Endpoint != "http://127.0.0.1:9000" || c.Region != "us-east-1" || c.PathStyle != "true" || c.AccessKeyIDEnv != "MINIO_ACCESS_KEY" {
		t.Errorf("s3 decoded as %+v", c)
	}
	for _, p := range []string{c.CAFile, c.SecretAccessKeyFile} {
		if !filepath.IsAbs(p) || !strings.Contains(p, "testdata") {
			t.Errorf("%q not resolved against the config's directory", p)
		}
	}
}

// Every mistake of a repository's location names the key path and what
// was expected.
func TestBadS3Configs(t *testing.T) {
	good, err := os.ReadFile("testdata/s3.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, from, to, want string
	}{
		{"endpoint without scheme", "endpoint: http://127.0.0.1:9000", "endpoint: minio:9000",
			`s3.yaml:13: repositories[1].s3.endpoint: "minio:9000" has no scheme, want http:// or https://`},
		{"endpoint with another scheme", "endpoint: http://127.0.0.1:9000", "endpoint: ftp://minio:9000",
			`repositories[1].s3.endpoint: "ftp://minio:9000": scheme ftp, want http:// or https://`},
		{"endpoint without host", "endpoint: http://127.0.0.1:9000", "endpoint: http://",
			`repositories[1].s3.endpoint: "http://" has no host`},
		{"endpoint with credentials", "endpoint: http://127.0.0.1:9000", "endpoint: http://minio:s3cr3t-pass@127.0.0.1:9000",
			`repositories[1].s3.endpoint: "REDACTED@127.0.0.1:9000" must not hold credentials`},
		{"endpoint with query", "endpoint: http://127.0.0.1:9000", "endpoint: http://127.0.0.1:9000/?x=1",
			`repositories[1].s3.endpoint: "http://127.0.0.1:9000/?x=1" must not have a query`},
		{"bad path style", `path_style: "true"`, "path_style: virtual",
			`s3.yaml:15: repositories[1].s3.path_style: expected auto, true or false, got "virtual"`},
		{"bucket too short", "path: s3://backupd/mesh/prod", "path: s3://b",
			`s3.yaml:8: repositories[1].path: bucket "b" in "s3://b": want 3 to 63 lowercase letters`},
		{"no bucket", "path: s3://backupd/mesh/prod", "path: s3://",
			`repositories[1].path: bucket "" in "s3://"`},
		{"upper-case bucket", "path: s3://backupd/mesh/prod", "path: s3://Backupd",
			`repositories[1].path: bucket "Backupd"`},
		{"double slash in prefix", "path: s3://backupd/mesh/prod", "path: s3://backupd/mesh//prod",
			`repositories[1].path: prefix "mesh//prod"`},
		{"other scheme", "path: s3://backupd/mesh/prod", "path: gs://backupd",
			`repositories[1].path: unsupported scheme gs:// in "gs://backupd": want a directory or s3://BUCKET[/PREFIX]`},
		{"s3 block on a directory", "path: s3://backupd/mesh/prod", "path: some/dir",
			`s3.yaml:13: repositories[1].s3: s3 settings for a directory repository`},
		{"timeout on a directory", "    uploads: 2\n", "    uploads: 2\n    timeout: 1m\n",
			`repositories[0].timeout: timeout applies to object storage`},
		{"retry_for on a directory", "    uploads: 2\n", "    uploads: 2\n    retry_for: 5m\n",
			`repositories[0].retry_for: retry_for applies to object storage`},
		{"retry_for not a duration", "    uploads: 4\n", "    uploads: 4\n    retry_for: forever\n",
			`repositories[1].retry_for`},
		{"env and file", "access_key_id_env: MINIO_ACCESS_KEY", "access_key_id_env: MINIO_ACCESS_KEY\n      access_key_id_file: id",
			`repositories[1].s3.access_key_id_file: give access_key_id_env or access_key_id_file, not both`},
		{"id without secret", "      secret_access_key_file: secrets/minio-secret\n", "",
			`repositories[1].s3.access_key_id_env: an access key id needs a secret access key`},
		{"secret without id", "      access_key_id_env: MINIO_ACCESS_KEY\n", "",
			`repositories[1].s3.secret_access_key_env: a secret access key needs an access key id`},
		{"profile and static keys", "region: us-east-1", "region: us-east-1\n      profile: backup",
			`repositories[1].s3.profile: give static credentials (access_key_id_*) or a profile, not both`},
		{"unknown s3 key", "region: us-east-1", "region: us-east-1\n      secret_key: x",
			`repositories[1].s3.secret_key: unknown key (expected one of: access_key_id_env, access_key_id_file, allow_unconditional_writes`},
		{"insecure not a bool", "region: us-east-1", "region: us-east-1\n      insecure_skip_verify: \"yes\"",
			`repositories[1].s3.insecure_skip_verify: expected true or false, got "yes"`},
		{"zero uploads", "uploads: 4", "uploads: 0", `repositories[1].uploads: expected a whole number >= 1, got "0"`},
		{"bad timeout", "timeout: 2m", "timeout: soon", `repositories[1].timeout: expected a positive duration`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(string(good), tc.from) {
				t.Fatalf("fixture lacks %q", tc.from)
			}
			bad := strings.Replace(string(good), tc.from, tc.to, 1)
			_, err := Parse("testdata/s3.yaml", []byte(bad))
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q\nwant it to contain %q", err, tc.want)
			}
		})
	}
}

func TestS3Credentials(t *testing.T) {
	const secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret")
	emptyFile := filepath.Join(dir, "empty")
	for p, content := range map[string]string{secretFile: secret + "\n", emptyFile: ""} {
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("BACKUPD_TEST_KEY_ID", "AKIDEXAMPLE")
	t.Setenv("BACKUPD_TEST_TOKEN", "token-value")
	t.Setenv("BACKUPD_TEST_EMPTY", "")
	for _, tc := range []struct {
		name              string
		s3                S3
		id, secret, token string
		wantErr           string
	}{
		{"none: the SDK's chain", S3{}, "", "", "", ""},
		{"env and file", S3{AccessKeyIDEnv: "BACKUPD_TEST_KEY_ID", SecretAccessKeyFile: secretFile, SessionTokenEnv: "BACKUPD_TEST_TOKEN"},
			"AKIDEXAMPLE", secret, "token-value", ""},
		{"unset variable", S3{AccessKeyIDEnv: "BACKUPD_TEST_EMPTY", SecretAccessKeyFile: secretFile}, "", "", "",
			`s3.access_key_id_env: environment variable BACKUPD_TEST_EMPTY is empty or unset`},
		{"missing file", S3{AccessKeyIDEnv: "BACKUPD_TEST_KEY_ID", SecretAccessKeyFile: filepath.Join(dir, "nope")}, "", "", "",
			`s3.secret_access_key_file: open ` + filepath.Join(dir, "nope")},
		{"empty file", S3{AccessKeyIDEnv: "BACKUPD_TEST_KEY_ID", SecretAccessKeyFile: emptyFile}, "", "", "",
			`s3.secret_access_key_file: file ` + emptyFile + ` is empty`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, sec, tok, err := Repository{Name: "r", Path: "s3://bucket", S3: tc.s3}.S3Credentials()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), "AKIDEXAMPLE") {
					t.Fatalf("error %q shows a credential", err)
				}
				return
			}
			if err != nil || id != tc.id || sec != tc.secret || tok != tc.token {
				t.Fatalf("got %q %q %q %v, want %q %q %q", id, sec, tok, err, tc.id, tc.secret, tc.token)
			}
		})
	}
}

func TestCheckPathsS3(t *testing.T) {
	const secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret")
	if err := os.WriteFile(secretFile, []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("BACKUPD_TEST_KEY_ID", "AKIDEXAMPLE")
	for _, tc := range []struct {
		name    string
		s3      S3
		key     string
		warning bool
		msg     string
	}{
		{"all good", S3{AccessKeyIDEnv: "BACKUPD_TEST_KEY_ID", SecretAccessKeyFile: secretFile, CAFile: secretFile}, "", false, ""},
		{"missing ca file", S3{CAFile: filepath.Join(dir, "ca.pem")}, "repositories[0].s3.ca_file", false, "does not exist: expected a file holding PEM certificates"},
		{"missing secret file", S3{AccessKeyIDEnv: "BACKUPD_TEST_KEY_ID", SecretAccessKeyFile: filepath.Join(dir, "nope")},
			"repositories[0].s3.secret_access_key_file", false, "does not exist: expected a file holding the secret access key"},
		{"insecure", S3{InsecureSkipVerify: true}, "repositories[0].s3.insecure_skip_verify", true, "for tests only"},
		{"unset id variable", S3{AccessKeyIDEnv: "BACKUPD_TEST_UNSET_VARIABLE", SecretAccessKeyFile: secretFile},
			"repositories[0].s3.access_key_id_env", true, "unset here"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			repo := Repository{Path: "s3://bucket", PasswordEnv: "BACKUPD_TEST_KEY_ID", S3: tc.s3}
			got := CheckPaths(&Config{Repositories: []Repository{repo}, Policies: []Policy{{Source: dir}}})
			for _, f := range got {
				if strings.Contains(f.String(), secret) || strings.Contains(f.String(), "AKIDEXAMPLE") {
					t.Fatalf("finding %q shows a credential", f)
				}
			}
			if tc.key == "" {
				if len(got) > 0 {
					t.Fatalf("findings %v, want none", got)
				}
				return
			}
			if len(got) != 1 || got[0].Key != tc.key || got[0].Warning != tc.warning || !strings.Contains(got[0].String(), tc.msg) {
				t.Fatalf("findings %v, want one %s (warning %v) saying %q", got, tc.key, tc.warning, tc.msg)
			}
		})
	}
}
