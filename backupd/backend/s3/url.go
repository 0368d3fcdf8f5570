package s3

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"unicode/utf8"
)

// ParseURL splits s3://BUCKET[/PREFIX] into the bucket and the prefix (no
// leading or trailing slash). The errors name what is wrong: the scheme, a
// missing or badly named bucket, a query, an empty or ".." segment of the
// prefix.
func ParseURL(s string) (bucket, prefix string, err error) {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return "", "", fmt.Errorf("s3 url %q: want s3://BUCKET[/PREFIX]", s)
	}
	if scheme != "s3" {
		return "", "", fmt.Errorf("s3 url %q: scheme %q: want s3://BUCKET[/PREFIX]", s, scheme)
	}
	bucket, prefix, _ = strings.Cut(rest, "/")
	// Neither is echoed: either may hold a secret.
	if strings.Contains(bucket, "@") {
		return "", "", errors.New("s3 url: credentials in an s3 url are not supported: set access_key_id and secret_access_key")
	}
	if i := strings.IndexAny(rest, "?#"); i >= 0 {
		b, _, _ := strings.Cut(rest[:i], "/")
		return "", "", fmt.Errorf("s3 url s3://%s/...: a query or fragment is not allowed (not shown: it may hold a secret): set options in the repository configuration", b)
	}
	if bucket == "" {
		return "", "", fmt.Errorf("s3 url %q: missing bucket: want s3://BUCKET[/PREFIX]", s)
	}
	if err := validBucket(bucket); err != nil {
		return "", "", fmt.Errorf("s3 url %q: %w", s, err)
	}
	prefix = strings.TrimSuffix(prefix, "/")
	if err := validPrefix(prefix); err != nil {
		return "", "", fmt.Errorf("s3 url %q: %w", s, err)
	}
	return bucket, prefix, nil
}

// validBucket applies the S3 naming rules for general purpose buckets:
// 3 to 63 characters of lowercase letters, digits, dots and hyphens,
// starting and ending with a letter or digit, no two adjacent dots, and not
// an IP address.
func validBucket(b string) error {
	if len(b) < 3 || len(b) > 63 {
		return fmt.Errorf("bucket name %q: want 3 to 63 characters, have %d", b, len(b))
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-') {
			return fmt.Errorf("bucket name %q: character %q not allowed: want lowercase letters, digits, dots and hyphens", b, c)
		}
	}
	if !isAlnum(b[0]) || !isAlnum(b[len(b)-1]) {
		return fmt.Errorf("bucket name %q: must start and end with a lowercase letter or digit", b)
	}
	if strings.Contains(b, "..") {
		return fmt.Errorf("bucket name %q: two adjacent dots", b)
	}
	if _, err := netip.ParseAddr(b); err == nil {
		return fmt.Errorf("bucket name %q: must not be an IP address", b)
	}
	return nil
}

func isAlnum(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }

// validPrefix accepts "" or slash-separated segments, none empty, "." or
// "..", and no leading slash. Other characters are kept as they are: S3
// keys are arbitrary UTF-8.
func validPrefix(p string) error {
	if p == "" {
		return nil
	}
	if len(p) > 512 {
		return fmt.Errorf("prefix too long (%d bytes, at most 512)", len(p))
	}
	if !utf8.ValidString(p) {
		return errors.New("prefix is not valid UTF-8")
	}
	for _, c := range p {
		if c < 0x20 || c == 0x7f || c == '\\' {
			return fmt.Errorf("prefix %q: control characters and backslashes are not allowed", p)
		}
	}
	for seg := range strings.SplitSeq(p, "/") {
		switch seg {
		case "":
			return fmt.Errorf("prefix %q: empty path segment", p)
		case ".", "..":
			return fmt.Errorf("prefix %q: segment %q not allowed", p, seg)
		}
	}
	return nil
}
