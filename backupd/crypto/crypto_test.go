package crypto_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/meshbackup/backupd/backupd/crypto"
)

var fast = crypto.KDFParams{N: 1 << 10, R: 8, P: 1}

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
	for _, p := range []crypto.KDFParams{{N: 1 << 24, R: 8, P: 1}, {N: 1 << 20, R: 32, P: 1}, {N: 1000, R: 8, P: 1}, {N: 1 << 10, R: 0, P: 1}} {
		kf.Params = p
		if _, err := crypto.Unwrap(kf, []byte("pw")); err == nil || errors.Is(err, crypto.ErrWrongPassword) {
			t.Fatalf("params %+v: want a range error, got %v", p, err)
		}
	}
}
