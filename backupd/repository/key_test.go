package repository_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/meshbackup/backupd/backupd/backend"
	"github.com/meshbackup/backupd/backupd/crypto"
	"github.com/meshbackup/backupd/backupd/repository"
	"github.com/meshbackup/backupd/backupd/repotest"
)

// Issue 15: a damaged key file said "wrong password or no key file for
// it", and a hostile one could demand any key-derivation work.
func TestDamagedKeyFileIsNotAWrongPassword(t *testing.T) {
	for _, tc := range []struct {
		name    string
		edit    func(b []byte) []byte
		pw      string
		damaged bool
		want    string
	}{
		{"wrong password", func(b []byte) []byte { return b }, "not it", false, "wrong password"},
		{"truncated", func(b []byte) []byte { return b[:len(b)/2] }, string(repotest.Password), true, "not valid JSON"},
		{"not JSON", func(b []byte) []byte { return []byte("\x00\x01garbage") }, string(repotest.Password), true, "not valid JSON"},
		{"short salt", func(b []byte) []byte { return setField(t, b, "salt", []byte("short")) }, string(repotest.Password), true, "salt of 5 bytes"},
		{"truncated wrapped key", func(b []byte) []byte { return setField(t, b, "data", []byte("0123456789")) }, string(repotest.Password), true, "too short"},
		{"unknown kdf", func(b []byte) []byte { return setField(t, b, "kdf", "scrypt") }, string(repotest.Password), true, "unknown kdf"},
		{"hostile memory", func(b []byte) []byte {
			return setField(t, b, "params", crypto.KDFParams{Time: 1, MemoryKiB: 4 << 20, Threads: 1})
		}, string(repotest.Password), true, "out of range"},
		{"hostile passes", func(b []byte) []byte {
			return setField(t, b, "params", crypto.KDFParams{Time: 1 << 16, MemoryKiB: 64, Threads: 1})
		}, string(repotest.Password), true, "out of range"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			_, be := repotest.NewMem(t)
			var name string
			_ = be.List(ctx, backend.KeyFile, func(fi backend.FileInfo) error { name = fi.Name; return nil })
			b, err := backend.LoadAll(ctx, be, backend.Handle{Type: backend.KeyFile, Name: name})
			if err != nil {
				t.Fatal(err)
			}
			_ = be.Remove(ctx, backend.Handle{Type: backend.KeyFile, Name: name})
			if err := be.Save(ctx, backend.Handle{Type: backend.KeyFile, Name: name}, bytes.NewReader(tc.edit(b))); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			_, err = repository.Open(ctx, be, []byte(tc.pw), repotest.Options())
			if d := time.Since(start); d > 2*time.Second {
				t.Fatalf("open took %s", d)
			}
			var kfe *repository.KeyFileError
			switch {
			case err == nil:
				t.Fatal("opened")
			case tc.damaged && (!errors.Is(err, crypto.ErrBadKeyFile) || errors.Is(err, crypto.ErrWrongPassword) || !errors.As(err, &kfe) || kfe.Name != name):
				t.Fatalf("want a damaged key file named %s, got %v", name, err)
			case tc.damaged && !strings.Contains(err.Error(), "key file keys/"+name+" is damaged"):
				t.Fatalf("message does not name the key file: %v", err)
			case !tc.damaged && (!errors.Is(err, crypto.ErrWrongPassword) || errors.Is(err, crypto.ErrBadKeyFile)):
				t.Fatalf("want a wrong password, got %v", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not say %q", err, tc.want)
			}
		})
	}
}

func setField(t *testing.T, b []byte, key string, v any) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	m[key] = v
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// The default parameters are within the bounds.
func TestDefaultKDFWithinBounds(t *testing.T) {
	k, _ := crypto.NewRandomKey()
	kf, err := crypto.Wrap(k, []byte("pw"), crypto.DefaultKDF)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(kf)
	if _, err := crypto.DecodeKeyFile(b); err != nil {
		t.Fatal(err)
	}
}
