package repository_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/meshbackup/backupd/backupd/backend"
	"github.com/meshbackup/backupd/backupd/backend/mem"
	"github.com/meshbackup/backupd/backupd/crypto"
	"github.com/meshbackup/backupd/backupd/repository"
	"github.com/meshbackup/backupd/backupd/repotest"
)

func rewriteConfig(t *testing.T, be backend.Backend, edit func(*repository.Config)) {
	t.Helper()
	ctx := t.Context()
	b, err := backend.LoadAll(ctx, be, backend.Handle{Type: backend.ConfigFile})
	if err != nil {
		t.Fatal(err)
	}
	var c repository.Config
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	edit(&c)
	nb, _ := json.Marshal(c)
	_ = be.Remove(ctx, backend.Handle{Type: backend.ConfigFile})
	if err := be.Save(ctx, backend.Handle{Type: backend.ConfigFile}, bytes.NewReader(nb)); err != nil {
		t.Fatal(err)
	}
}

// Issue 15: the config's id could be edited without detection.
func TestEditedConfigRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*repository.Config)
	}{
		{"id", func(c *repository.Config) { c.ID = repository.Hash([]byte("other")).String() }},
		{"created", func(c *repository.Config) { c.Created = "2020-01-01T00:00:00Z" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, be := repotest.NewMem(t)
			rewriteConfig(t, be, tc.edit)
			_, err := repository.Open(t.Context(), be, repotest.Password, repotest.Options())
			if !errors.Is(err, repository.ErrConfigMismatch) || !strings.Contains(err.Error(), "key file keys/") {
				t.Fatalf("edited config: %v", err)
			}
		})
	}
}

// A repository whose key file predates sealed configs opens, and its key
// file is upgraded on open: an edit made after that is refused.
func TestOldKeyFileIsUpgraded(t *testing.T) {
	ctx := t.Context()
	be, oldName := oldStyleRepository(t)

	if _, err := repository.Open(ctx, be, repotest.Password, repotest.Options()); err != nil {
		t.Fatalf("old repository: %v", err)
	}
	var names []string
	_ = be.List(ctx, backend.KeyFile, func(fi backend.FileInfo) error { names = append(names, fi.Name); return nil })
	if len(names) != 1 || names[0] == oldName {
		t.Fatalf("key files after upgrade: %v (old %s)", names, oldName)
	}
	if _, err := repository.Open(ctx, be, repotest.Password, repotest.Options()); err != nil {
		t.Fatalf("upgraded repository: %v", err)
	}
	rewriteConfig(t, be, func(c *repository.Config) { c.ID = repository.Hash([]byte("x")).String() })
	if _, err := repository.Open(ctx, be, repotest.Password, repotest.Options()); !errors.Is(err, repository.ErrConfigMismatch) {
		t.Fatalf("edited config after upgrade: %v", err)
	}
}

// oldStyleRepository is a repository as writers before 2026-12-02 left it:
// a key file without a sealed copy of the config. It returns the backend
// and the key file's name.
func oldStyleRepository(t *testing.T) (*mem.Mem, string) {
	t.Helper()
	be := mem.New()
	key, _ := crypto.NewRandomKey()
	kf, err := crypto.Wrap(key, repotest.Password, repotest.FastKDF)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := json.Marshal(kf)
	oldName := repository.Hash(kb).String()
	_ = be.Save(t.Context(), backend.Handle{Type: backend.KeyFile, Name: oldName}, bytes.NewReader(kb))
	cb, _ := json.Marshal(repository.Config{Version: repository.FormatVersion, ID: repository.Hash([]byte("id")).String(), Created: "2026-11-01T00:00:00Z"})
	_ = be.Save(t.Context(), backend.Handle{Type: backend.ConfigFile}, bytes.NewReader(cb))
	return be, oldName
}
