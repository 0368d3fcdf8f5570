package repository

import (
	"bytes"
	"errors"
	"testing"

	"github.com/meshbackup/backupd/backupd/backend"
	"github.com/meshbackup/backupd/backupd/backend/mem"
	"github.com/meshbackup/backupd/backupd/crypto"
)

// The associated data of each unpacked type is part of the format
// (docs/FORMAT.md): objects sealed before SaveUnpacked existed must still
// open, and new ones must open with the documented AD.
func TestUnpackedKeepsTheFormatsAD(t *testing.T) {
	ctx := t.Context()
	be := mem.New()
	r, err := Init(ctx, be, []byte("pw"), Options{KDF: crypto.KDFParams{Time: 1, MemoryKiB: 64, Threads: 1}, Hostname: "testhost"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		t  backend.FileType
		ad string
	}{
		{backend.IndexFile, "backupd index v1"},
		{backend.SnapshotFile, "backupd snapshot v1"},
		{backend.ResultFile, "backupd result v1"},
	} {
		plain := []byte("plaintext of " + string(tc.t))
		sealed := r.key.Seal(nil, plain, []byte(tc.ad))
		id := Hash(sealed)
		if err := be.Save(ctx, backend.Handle{Type: tc.t, Name: id.String()}, bytes.NewReader(sealed)); err != nil {
			t.Fatal(err)
		}
		got, err := r.LoadUnpacked(ctx, tc.t, id)
		if err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("%s sealed with %q: got %q, %v", tc.t, tc.ad, got, err)
		}
		id2, err := r.SaveUnpacked(ctx, tc.t, plain)
		if err != nil {
			t.Fatal(err)
		}
		b, err := backend.LoadAll(ctx, be, backend.Handle{Type: tc.t, Name: id2.String()})
		if err != nil {
			t.Fatal(err)
		}
		if got, err := r.key.Open(nil, b, []byte(tc.ad)); err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("%s saved by SaveUnpacked does not open with %q: %v", tc.t, tc.ad, err)
		}
		// The type is authenticated: the same bytes stored as a snapshot
		// do not open.
		h := backend.Handle{Type: backend.SnapshotFile, Name: id2.String()}
		if tc.t != backend.SnapshotFile {
			if err := be.Save(ctx, h, bytes.NewReader(b)); err != nil {
				t.Fatal(err)
			}
			if _, err := r.LoadUnpacked(ctx, backend.SnapshotFile, id2); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("a %s object opened as a snapshot: %v", tc.t, err)
			}
		}
	}
}

func TestUnpackedRefusesOtherTypes(t *testing.T) {
	for _, ft := range []backend.FileType{backend.PackFile, backend.ConfigFile, backend.KeyFile, backend.LockFile, backend.MarkerFile, "bogus"} {
		if err := checkUnpacked(ft); err == nil {
			t.Errorf("%s accepted as an unpacked type", ft)
		}
	}
}
