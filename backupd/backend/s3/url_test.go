package s3

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseURL(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		in             string
		bucket, prefix string
		err            string // substring of the error; "" for success
	}{
		{in: "s3://my-bucket", bucket: "my-bucket"},
		{in: "s3://my-bucket/", bucket: "my-bucket"},
		{in: "s3://my.bucket.01/backups/host-1", bucket: "my.bucket.01", prefix: "backups/host-1"},
		{in: "s3://abc/a/b/c/", bucket: "abc", prefix: "a/b/c"},
		{in: "s3://abc/with space/ünïcode", bucket: "abc", prefix: "with space/ünïcode"},
		{in: "s3://", err: "missing bucket"},
		{in: "s3:///prefix", err: "missing bucket"},
		{in: "my-bucket/prefix", err: "want s3://BUCKET[/PREFIX]"},
		{in: "https://my-bucket/prefix", err: `scheme "https"`},
		{in: "S3://my-bucket", err: `scheme "S3"`},
		{in: "s3://ab", err: "3 to 63 characters"},
		{in: "s3://" + strings.Repeat("a", 64), err: "3 to 63 characters"},
		{in: "s3://My-Bucket", err: `character 'M' not allowed`},
		{in: "s3://my_bucket", err: `character '_' not allowed`},
		{in: "s3://-bucket", err: "start and end with a lowercase letter or digit"},
		{in: "s3://bucket.", err: "start and end with a lowercase letter or digit"},
		{in: "s3://my..bucket", err: "two adjacent dots"},
		{in: "s3://192.168.1.1", err: "must not be an IP address"},
		{in: "s3://bucket?region=x", err: "query or fragment"},
		{in: "s3://bucket/p?x=1", err: "query or fragment"},
		{in: "s3://bucket/p#frag", err: "query or fragment"},
		{in: "s3://bucket/a//b", err: "empty path segment"},
		{in: "s3://bucket//a", err: "empty path segment"},
		{in: "s3://bucket/a/../b", err: `segment ".." not allowed`},
		{in: "s3://bucket/./b", err: `segment "." not allowed`},
		{in: "s3://bucket/a\\b", err: "backslashes"},
		{in: "s3://bucket/a\x00b", err: "control characters"},
		{in: "s3://bucket/\xff", err: "UTF-8"},
		{in: "s3://user:hunter2@bucket/x", err: "credentials in an s3 url are not supported"},
		{in: "s3://bucket/x?token=hunter2", err: "query or fragment"},
	} {
		t.Run(c.in, func(t *testing.T) {
			b, p, err := ParseURL(c.in)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("want an error containing %q, got %v (bucket %q prefix %q)", c.err, err, b, p)
				}
				if strings.Contains(err.Error(), "hunter2") {
					t.Fatalf("error repeats a secret: %v", err)
				}
				return
			}
			if err != nil || b != c.bucket || p != c.prefix {
				t.Fatalf("got %q %q %v, want %q %q", b, p, err, c.bucket, c.prefix)
			}
		})
	}
}

func FuzzParseURL(f *testing.F) {
	for _, s := range []string{"s3://bucket", "s3://my.bucket/a/b", "s3://b-1/x/", "s3://1.2.3.4", "s3://a//b", "s3://ab?c", "http://x", "s3://bucket/ü/.."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		bucket, prefix, err := ParseURL(s)
		if err != nil {
			return
		}
		if validBucket(bucket) != nil || validPrefix(prefix) != nil {
			t.Fatalf("accepted %q with invalid parts %q %q", s, bucket, prefix)
		}
		u := "s3://" + bucket
		if prefix != "" {
			u += "/" + prefix
		}
		b2, p2, err := ParseURL(u)
		if err != nil || b2 != bucket || p2 != prefix {
			t.Fatalf("%q -> %q %q does not round-trip through %q: %q %q %v", s, bucket, prefix, u, b2, p2, err)
		}
		if strings.HasPrefix(prefix, "/") || strings.HasSuffix(prefix, "/") {
			t.Fatalf("prefix %q has a leading or trailing slash", prefix)
		}
	})
}

func TestValidate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, []byte("not checked here"), 0o600); err != nil {
		t.Fatal(err)
	}
	ok := Options{Bucket: "bucket"}
	for _, c := range []struct {
		name string
		edit func(*Options)
		err  string
	}{
		{"minimal", func(*Options) {}, ""},
		{"everything", func(o *Options) {
			o.Prefix, o.Endpoint, o.Region, o.PathStyle, o.CAFile = "a/b", "https://minio.example:9000", "eu-west-1", "true", ca
			o.AccessKeyID, o.SecretAccessKey, o.SessionToken, o.PartSize = "id", "secret", "token", 16<<20
		}, ""},
		{"no bucket", func(o *Options) { o.Bucket = "" }, "bucket is empty"},
		{"bad bucket", func(o *Options) { o.Bucket = "Bad_Bucket" }, `bucket name "Bad_Bucket"`},
		{"bad prefix", func(o *Options) { o.Prefix = "a/../b" }, `prefix "a/../b"`},
		{"endpoint without scheme", func(o *Options) { o.Endpoint = "minio:9000" }, `endpoint "minio:9000" has no scheme: want http:// or https://`},
		{"endpoint with another scheme", func(o *Options) { o.Endpoint = "ftp://minio:9000" }, `scheme "ftp"`},
		{"endpoint without host", func(o *Options) { o.Endpoint = "http://" }, "has no host"},
		{"endpoint with credentials", func(o *Options) { o.Endpoint = "http://user:hunter2@minio:9000" }, "must not hold credentials"},
		{"endpoint with query", func(o *Options) { o.Endpoint = "http://minio:9000/?x=1" }, "query"},
		{"bad region", func(o *Options) { o.Region = "EU West" }, `region "EU West"`},
		{"bad path style", func(o *Options) { o.PathStyle = "yes" }, `path_style "yes": want auto, true or false`},
		{"unreadable CA file", func(o *Options) { o.CAFile = filepath.Join(dir, "missing.pem") }, "ca_file"},
		{"key without secret", func(o *Options) { o.AccessKeyID = "id" }, "secret_access_key is empty"},
		{"secret without key", func(o *Options) { o.SecretAccessKey = "s" }, "access_key_id is empty"},
		{"token without key", func(o *Options) { o.SessionToken = "t" }, "session_token is set"},
		{"static and profile", func(o *Options) { o.AccessKeyID, o.SecretAccessKey, o.Profile = "id", "s", "p" }, "choose one"},
		{"part too small", func(o *Options) { o.PartSize = 1 << 20 }, "part_size"},
		{"part too large", func(o *Options) { o.PartSize = 6 << 30 }, "part_size"},
		{"page too large", func(o *Options) { o.ListPageSize = 1001 }, "list_page_size"},
		{"negative upload age", func(o *Options) { o.StaleUploadAge = -1 }, "stale_upload_age"},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := ok
			c.edit(&o)
			err := o.Validate()
			if c.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Fatalf("want an error containing %q, got %v", c.err, err)
			}
			if strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "secret\"") {
				t.Fatalf("error holds a secret: %v", err)
			}
		})
	}
}
