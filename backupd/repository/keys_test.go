package repository_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/meshbackup/backupd/backupd/backend"
	"github.com/meshbackup/backupd/backupd/crypto"
	"github.com/meshbackup/backupd/backupd/faultpoint"
	"github.com/meshbackup/backupd/backupd/repository"
	"github.com/meshbackup/backupd/backupd/repotest"
)

func keyNames(t *testing.T, be backend.Backend) []string {
	t.Helper()
	var names []string
	if err := be.List(t.Context(), backend.KeyFile, func(fi backend.FileInfo) error { names = append(names, fi.Name); return nil }); err != nil {
		t.Fatal(err)
	}
	return names
}

func openWith(t *testing.T, be backend.Backend, pw string, opt repository.Options) (*repository.Repo, error) {
	t.Helper()
	return repository.Open(t.Context(), be, []byte(pw), opt)
}

// Issue 14: a key for another password wraps the same master key; a key
// is removed by id; the key in use and the last key are not.
func TestKeysAddListRemove(t *testing.T) {
	ctx := t.Context()
	r0, be := repotest.NewMem(t)
	k0 := r0.KeyName()
	if names := keyNames(t, be); len(names) != 1 || names[0] != k0 {
		t.Fatalf("key files %v, Init's %s", names, k0)
	}
	keys, err := r0.Keys(ctx)
	if err != nil || len(keys) != 1 || !keys[0].Current || keys[0].Hostname != "testhost" || keys[0].Created == "" ||
		keys[0].KDF != "argon2id" || keys[0].Params != repotest.FastKDF || keys[0].Err != nil {
		t.Fatalf("keys %+v, %v", keys, err)
	}
	k1, err := r0.AddKey(ctx, []byte("second password"))
	if err != nil {
		t.Fatal(err)
	}
	r1, err := openWith(t, be, "second password", repotest.Options())
	if err != nil || r1.KeyName() != k1 || r1.Config() != r0.Config() {
		t.Fatalf("open with the added key: %v (key %s, want %s)", err, r1.KeyName(), k1)
	}
	keys, _ = r1.Keys(ctx)
	if len(keys) != 2 || keys[0].Current == keys[1].Current {
		t.Fatalf("keys %+v", keys)
	}
	for _, k := range keys {
		if k.Current != (k.Name == k1) {
			t.Fatalf("current is %s, want %s", k.Name, k1)
		}
	}
	// A data blob stored under one key reads back under the other.
	id, err := r0.SaveUnpacked(ctx, backend.ResultFile, []byte("record"))
	if err != nil {
		t.Fatal(err)
	}
	if b, err := r1.LoadUnpacked(ctx, backend.ResultFile, id); err != nil || string(b) != "record" {
		t.Fatalf("read under the other key: %q, %v", b, err)
	}

	if err := r1.RemoveKey(ctx, k1); !errors.Is(err, repository.ErrCurrentKey) {
		t.Fatalf("removing the current key: %v", err)
	}
	if _, err := r1.FindKey(ctx, "ffffffffffff"); !errors.Is(err, repository.ErrKeyNotFound) {
		t.Fatalf("no such key: %v", err)
	}
	if err := r1.RemoveKey(ctx, "ffffffffffff"); !errors.Is(err, repository.ErrKeyNotFound) {
		t.Fatalf("removing no key: %v", err)
	}
	found, err := r1.FindKey(ctx, k0[:6])
	if err != nil || found != k0 {
		t.Fatalf("find %s: %s, %v", k0[:6], found, err)
	}
	if err := r1.RemoveKey(ctx, found); err != nil {
		t.Fatal(err)
	}
	if _, err := openWith(t, be, string(repotest.Password), repotest.Options()); !errors.Is(err, crypto.ErrWrongPassword) {
		t.Fatalf("the removed key's password: %v", err)
	}
	if err := r1.RemoveKey(ctx, k1); !errors.Is(err, repository.ErrLastKey) {
		t.Fatalf("removing the last key: %v", err)
	}
	if names := keyNames(t, be); len(names) != 1 || names[0] != k1 {
		t.Fatalf("key files %v", names)
	}
}

// Two processes, each opened with another key, cannot remove each other's
// key: the key in use is checked to still exist (under the lock) before
// anything is changed.
func TestKeyRemovalNeedsTheKeyInUse(t *testing.T) {
	ctx := t.Context()
	r0, be := repotest.NewMem(t)
	k1, err := r0.AddKey(ctx, []byte("one"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r0.AddKey(ctx, []byte("two")); err != nil {
		t.Fatal(err)
	}
	r1, err := openWith(t, be, "one", repotest.Options())
	if err != nil {
		t.Fatal(err)
	}
	if err := r0.RemoveKey(ctx, k1); err != nil {
		t.Fatal(err)
	}
	if err := r1.RemoveKey(ctx, r0.KeyName()); !errors.Is(err, repository.ErrKeyGone) {
		t.Fatalf("removing with a key removed meanwhile: %v", err)
	}
	if _, err := r1.ChangePassword(ctx, []byte("three")); !errors.Is(err, repository.ErrKeyGone) {
		t.Fatalf("passwd with a key removed meanwhile: %v", err)
	}
	if _, err := r1.AddKey(ctx, []byte("three")); !errors.Is(err, repository.ErrKeyGone) {
		t.Fatalf("add with a key removed meanwhile: %v", err)
	}
	if n := len(keyNames(t, be)); n != 2 {
		t.Fatalf("%d key files, want 2", n)
	}
	for _, pw := range []string{string(repotest.Password), "two"} {
		if _, err := openWith(t, be, pw, repotest.Options()); err != nil {
			t.Fatalf("password %q: %v", pw, err)
		}
	}
}

// A damaged key file is listed as damaged and can be removed; an id prefix
// two key files share is ambiguous.
func TestKeysDamagedAndAmbiguous(t *testing.T) {
	ctx := t.Context()
	r, be := repotest.NewMem(t)
	k0 := r.KeyName()
	// A damaged key file named like the good one for 4 characters.
	bad := k0[:4] + "0000000000000000"
	if bad == k0 {
		t.Skip("unlucky name")
	}
	if err := be.Save(ctx, backend.Handle{Type: backend.KeyFile, Name: bad}, bytes.NewReader([]byte("{garbage"))); err != nil {
		t.Fatal(err)
	}
	keys, err := r.Keys(ctx)
	if err != nil || len(keys) != 2 {
		t.Fatalf("keys %+v, %v", keys, err)
	}
	var kfe *repository.KeyFileError
	for _, k := range keys {
		if (k.Name == bad) != (k.Err != nil) || k.Name == bad && (!errors.Is(k.Err, crypto.ErrBadKeyFile) || !errors.As(k.Err, &kfe) || kfe.Name != bad) {
			t.Fatalf("key %s: %v", k.Name, k.Err)
		}
	}
	if _, err := r.FindKey(ctx, k0[:4]); !errors.Is(err, repository.ErrKeyAmbiguous) {
		t.Fatalf("shared prefix: %v", err)
	}
	name, err := r.FindKey(ctx, bad[:6])
	if err != nil || name != bad {
		t.Fatalf("find %s: %s, %v", bad[:6], name, err)
	}
	if err := r.RemoveKey(ctx, name); err != nil {
		t.Fatal(err)
	}
	if names := keyNames(t, be); len(names) != 1 || names[0] != k0 {
		t.Fatalf("key files %v", names)
	}
}

type crash struct{}

// ChangePassword interrupted at each fault point (in process: the point
// panics) leaves a key file that opens the repository: both until the old
// key file is removed, then the new one.
func TestChangePasswordInterruptedAtEachKeyFaultPoint(t *testing.T) {
	for _, tc := range []struct {
		point          string
		oldOK, newOK   bool
		wantKeyFiles   int
		wantAfterRerun int
	}{
		{faultpoint.AfterKeyWrite, true, true, 2, 2},
		{faultpoint.BeforeKeyRemove, true, true, 2, 2},
		{faultpoint.AfterKeyRemove, false, true, 1, 1},
	} {
		t.Run(tc.point, func(t *testing.T) {
			ctx := t.Context()
			_, be := repotest.NewMem(t)
			opt := repotest.Options()
			opt.Faults = faultpoint.NewFunc(tc.point, 1, func() { panic(crash{}) })
			r, err := openWith(t, be, string(repotest.Password), opt)
			if err != nil {
				t.Fatal(err)
			}
			func() {
				defer func() {
					if v := recover(); v != (crash{}) {
						t.Fatalf("not interrupted: %v", v)
					}
				}()
				_, _ = r.ChangePassword(ctx, []byte("new password"))
			}()
			if n := len(keyNames(t, be)); n != tc.wantKeyFiles {
				t.Fatalf("%d key files, want %d", n, tc.wantKeyFiles)
			}
			for pw, ok := range map[string]bool{string(repotest.Password): tc.oldOK, "new password": tc.newOK} {
				_, err := openWith(t, be, pw, repotest.Options())
				if ok != (err == nil) {
					t.Fatalf("password %q opens: %v, want %v", pw, err, ok)
				}
			}
		})
	}
}

// Opening a repository whose key file predates sealed configs upgrades it;
// the Repo names the upgraded key file as the one in use.
func TestUpgradedKeyFileIsTheCurrentKey(t *testing.T) {
	ctx := t.Context()
	be, oldName := oldStyleRepository(t)

	r, err := openWith(t, be, string(repotest.Password), repotest.Options())
	if err != nil {
		t.Fatal(err)
	}
	if names := keyNames(t, be); len(names) != 1 || names[0] != r.KeyName() || names[0] == oldName {
		t.Fatalf("key files %v, current %s, old %s", names, r.KeyName(), oldName)
	}
	fr, err := r.Fresh()
	if err != nil || fr.KeyName() != r.KeyName() {
		t.Fatalf("Fresh: %v, key %s", err, fr.KeyName())
	}
	// A key added now seals the config too.
	if _, err := r.AddKey(ctx, []byte("second")); err != nil {
		t.Fatal(err)
	}
	if _, err := openWith(t, be, "second", repotest.Options()); err != nil {
		t.Fatal(err)
	}
}
