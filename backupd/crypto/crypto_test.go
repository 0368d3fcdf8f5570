package crypto_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/meshbackup/backupd/backupd/crypto"
)

var fast = crypto.KDFParams{Time: 1, MemoryKiB: 64, Threads: 1}

func TestWrapUnwrap(t *testing.T) {
	k, err := crypto.NewRandomKey()
	if err != nil {
		t.Fatal(err)
	}
	kf, err := crypto.Wrap(k, []byte("pw"), fast)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := crypto.Unwrap(kf, []byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	sealed := k.Seal(nil, []byte("secret"), []byte("ad"))
	if got, err := k2.Open(nil, sealed, []byte("ad")); err != nil || string(got) != "secret" {
		t.Fatalf("unwrapped key does not open: %v", err)
	}
	if _, err := crypto.Unwrap(kf, []byte("other")); !errors.Is(err, crypto.ErrWrongPassword) {
		t.Fatalf("wrong password: %v", err)
	}
}

func TestOpenRejectsTampering(t *testing.T) {
	k, _ := crypto.NewRandomKey()
	sealed := k.Seal(nil, []byte("payload"), []byte("ad"))
	for _, tc := range []struct {
		name   string
		sealed []byte
		ad     string
	}{
		{"flipped bit", func() []byte { b := bytes.Clone(sealed); b[15] ^= 1; return b }(), "ad"},
		{"other ad", sealed, "other"},
		{"truncated", sealed[:len(sealed)-1], "ad"},
		{"too short", sealed[:5], "ad"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := k.Open(nil, tc.sealed, []byte(tc.ad)); !errors.Is(err, crypto.ErrUnauthenticated) {
				t.Fatalf("want ErrUnauthenticated, got %v", err)
			}
		})
	}
}

func TestSealInPlace(t *testing.T) {
	k, _ := crypto.NewRandomKey()
	buf := make([]byte, crypto.NonceSize, 1024)
	buf = append(buf, "in place"...)
	sealed := k.SealInPlace(buf, 8, nil)
	if &sealed[0] != &buf[0] {
		t.Fatal("did not reuse the buffer")
	}
	if got, err := k.Open(nil, sealed, nil); err != nil || string(got) != "in place" {
		t.Fatalf("%q %v", got, err)
	}
}

func TestHostileKDFParamsRefused(t *testing.T) {
	k, _ := crypto.NewRandomKey()
	kf, _ := crypto.Wrap(k, []byte("pw"), fast)
	for _, p := range []crypto.KDFParams{
		{Time: 1, MemoryKiB: 1 << 30, Threads: 1}, // 1 TiB
		{Time: 1, MemoryKiB: 256<<10 + 1, Threads: 1},
		{Time: 1 << 20, MemoryKiB: 64, Threads: 1},
		{Time: 0, MemoryKiB: 64, Threads: 1},
		{Time: 1, MemoryKiB: 64, Threads: 0},
		{Time: 1, MemoryKiB: 64, Threads: 200},
		{Time: 1, MemoryKiB: 8, Threads: 2}, // less than 8 KiB per lane
	} {
		kf.Params = p
		if _, err := crypto.Unwrap(kf, []byte("pw")); err == nil || errors.Is(err, crypto.ErrWrongPassword) {
			t.Fatalf("params %+v: want a range error, got %v", p, err)
		}
	}
}

// The default key file is Argon2id at OWASP's recommended minimum; another
// kdf (format version 1 used scrypt) or a short salt is refused by name,
// not taken for a wrong password.
func TestKeyFileKDF(t *testing.T) {
	k, _ := crypto.NewRandomKey()
	kf, err := crypto.Wrap(k, []byte("pw"), crypto.DefaultKDF)
	if err != nil {
		t.Fatal(err)
	}
	if kf.KDF != "argon2id" || kf.Params != (crypto.KDFParams{Time: 2, MemoryKiB: 19456, Threads: 2}) || len(kf.Salt) != 32 {
		t.Fatalf("default key file: kdf %q params %+v salt %d bytes", kf.KDF, kf.Params, len(kf.Salt))
	}
	if _, err := crypto.Unwrap(kf, []byte("pw")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		edit func(*crypto.KeyFile)
		want string
	}{
		{"scrypt", func(kf *crypto.KeyFile) { kf.KDF = "scrypt" }, `unknown kdf "scrypt"`},
		{"short salt", func(kf *crypto.KeyFile) { kf.Salt = kf.Salt[:8] }, "salt of 8 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := *kf
			tc.edit(&bad)
			_, err := crypto.Unwrap(&bad, []byte("pw"))
			if err == nil || errors.Is(err, crypto.ErrWrongPassword) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want an error naming %q, got %v", tc.want, err)
			}
		})
	}
}

// A second key file for the same master key (key add) unwraps to the same
// master key; another repository's key is not the same.
func TestKeySameMaster(t *testing.T) {
	k, _ := crypto.NewRandomKey()
	other, _ := crypto.NewRandomKey()
	kf, err := crypto.Wrap(k, []byte("another password"), fast)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := crypto.Unwrap(kf, []byte("another password"))
	if err != nil {
		t.Fatal(err)
	}
	if !k.SameMaster(k2) || !k2.SameMaster(k) {
		t.Fatal("a rewrapped key is not the same master key")
	}
	if k.SameMaster(other) || k.SameMaster(nil) {
		t.Fatal("different keys are the same master key")
	}
}
