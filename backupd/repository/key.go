package repository

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/meshbackup/backupd/backupd/backend"
	"github.com/meshbackup/backupd/backupd/crypto"
)

// Init creates a repository on an empty backend.
func Init(ctx context.Context, be backend.Backend, password []byte, opt Options) (*Repo, error) {
	opt.applyDefaults(be)
	if len(password) == 0 {
		return nil, errors.New("init: empty password")
	}
	if _, err := be.Stat(ctx, backend.Handle{Type: backend.ConfigFile}); err == nil {
		return nil, fmt.Errorf("init: %s already holds a repository", be.Location())
	}
	key, err := crypto.NewRandomKey()
	if err != nil {
		return nil, err
	}
	var rid ID
	_, _ = rand.Read(rid[:])
	created := opt.Now().UTC().Format(time.RFC3339)
	cfg := Config{Version: FormatVersion, ID: rid.String(), Created: created}
	// The key file seals a copy of the config: an edited config is
	// refused on open (docs/FORMAT.md "config").
	sealedCfg, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	key.SetConfig(sealedCfg)
	kf, err := crypto.Wrap(key, password, opt.KDF)
	if err != nil {
		return nil, err
	}
	kf.Hostname, kf.Username = opt.Hostname, currentUsername()
	kf.Created = created
	kb, err := json.Marshal(kf)
	if err != nil {
		return nil, err
	}
	keyName := Hash(kb).String()
	// Named by its content (a fresh master key and salt): ErrExists is a
	// retrying backend's earlier attempt that stored these bytes.
	if err := be.Save(ctx, backend.Handle{Type: backend.KeyFile, Name: keyName}, bytes.NewReader(kb)); err != nil && !errors.Is(err, backend.ErrExists) {
		return nil, fmt.Errorf("init: save key: %w", err)
	}
	cb, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return nil, err
	}
	// Invariant: config is written last, so a repository is either
	// complete or absent.
	if err := be.Save(ctx, backend.Handle{Type: backend.ConfigFile}, bytes.NewReader(cb)); err != nil {
		return nil, fmt.Errorf("init: save config: %w", err)
	}
	return newRepoWithKey(be, key, keyName, cfg, opt)
}

// newRepoWithKey is newRepo, recording the key file the password opened.
func newRepoWithKey(be backend.Backend, key *crypto.Key, keyName string, cfg Config, opt Options) (*Repo, error) {
	r, err := newRepo(be, key, cfg, opt)
	if err != nil {
		return nil, err
	}
	r.keyName = keyName
	if opt.Cache != nil {
		c, err := opt.Cache(cfg.ID)
		if err != nil {
			r.log.Warn("cannot open the local cache; reading everything from the repository", "err", err)
		} else {
			r.cache = c
		}
	}
	return r, nil
}

// Open opens an existing repository with password. It loads no index: call
// LoadIndex.
func Open(ctx context.Context, be backend.Backend, password []byte, opt Options) (*Repo, error) {
	opt.applyDefaults(be)
	cb, err := backend.LoadAll(ctx, be, backend.Handle{Type: backend.ConfigFile})
	if errors.Is(err, backend.ErrNotFound) {
		return nil, fmt.Errorf("open %s: no repository there (no config file); run 'backupd init' first", be.Location())
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", be.Location(), err)
	}
	cfg, err := DecodeConfig(cb)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", be.Location(), err)
	}
	key, keyName, err := searchKey(ctx, be, password)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", be.Location(), err)
	}
	if keyName, err = authenticateConfig(ctx, be, key, keyName, cfg, password, opt); err != nil {
		return nil, fmt.Errorf("open %s: %w", be.Location(), err)
	}
	return newRepoWithKey(be, key, keyName, cfg, opt)
}

// ErrConfigMismatch means the config file differs from the copy sealed in
// the key file: it was edited (or swapped for another repository's).
var ErrConfigMismatch = errors.New("repository config does not match the copy sealed in the key file")

// authenticateConfig compares the plaintext config with the copy sealed in
// the key file. A key file from before configs were sealed (2026-12-02) is
// upgraded: a new key file sealing the config, with the same password and
// parameters, is written, then the old one removed (new before old: a kill
// leaves one or both, each opening the repository). An upgrade that fails
// (a read-only repository) is logged and retried at the next open. It
// returns the name of the key file that opens the repository now (the
// upgraded one, or keyName).
func authenticateConfig(ctx context.Context, be backend.Backend, key *crypto.Key, keyName string, cfg Config, password []byte, opt Options) (string, error) {
	cb, err := json.Marshal(cfg)
	if err != nil {
		return "", err
	}
	if sealed := key.Config(); sealed != nil {
		var want Config
		if err := json.Unmarshal(sealed, &want); err != nil {
			return "", fmt.Errorf("key file keys/%s: sealed config: %w", keyName, err)
		}
		if want != cfg {
			return "", fmt.Errorf("%w: config says id %s, version %d, created %s; key file keys/%s sealed id %s, version %d, created %s",
				ErrConfigMismatch, cfg.ID, cfg.Version, cfg.Created, keyName, want.ID, want.Version, want.Created)
		}
		return keyName, nil
	}
	kb, err := backend.LoadAll(ctx, be, backend.Handle{Type: backend.KeyFile, Name: keyName})
	if err != nil {
		return "", fmt.Errorf("key file keys/%s: %w", keyName, err)
	}
	old, err := crypto.DecodeKeyFile(kb)
	if err != nil {
		return "", &KeyFileError{Name: keyName, Err: err}
	}
	key.SetConfig(cb)
	current := keyName
	nkf, err := crypto.Wrap(key, password, old.Params)
	if err == nil {
		nkf.Hostname, nkf.Username, nkf.Created = old.Hostname, old.Username, old.Created
		var nb []byte
		if nb, err = json.Marshal(nkf); err == nil {
			newName := Hash(nb).String()
			if err = be.Save(ctx, backend.Handle{Type: backend.KeyFile, Name: newName}, bytes.NewReader(nb)); err == nil {
				current = newName
				err = be.Remove(ctx, backend.Handle{Type: backend.KeyFile, Name: keyName})
			}
		}
	}
	if err != nil {
		opt.Logger.Warn("could not seal the config into the key file (retried at the next open)", "key", keyName, "err", err)
	}
	return current, nil
}

// searchKey tries password on every key file and returns the master key of
// the first that it opens. A damaged key file (crypto.ErrBadKeyFile: not
// JSON, bad fields, truncated, key-derivation parameters out of bounds) is
// not tried; when no key file opens, the error names the first damaged one
// (a *KeyFileError), and is crypto.ErrWrongPassword only when every key
// file was well formed.
func searchKey(ctx context.Context, be backend.Backend, password []byte) (*crypto.Key, string, error) {
	var key *crypto.Key
	var keyName string
	var damaged error
	tried := 0
	err := be.List(ctx, backend.KeyFile, func(fi backend.FileInfo) error {
		if key != nil {
			return nil
		}
		kb, err := backend.LoadAll(ctx, be, backend.Handle{Type: backend.KeyFile, Name: fi.Name})
		if err != nil {
			if damaged == nil {
				damaged = &KeyFileError{Name: fi.Name, Err: err}
			}
			return nil
		}
		kf, err := crypto.DecodeKeyFile(kb)
		if err == nil {
			tried++
			key, err = crypto.Unwrap(kf, password)
			keyName = fi.Name
		}
		if err != nil && !errors.Is(err, crypto.ErrWrongPassword) && damaged == nil {
			damaged = &KeyFileError{Name: fi.Name, Err: err}
		}
		return nil
	})
	if err != nil {
		return nil, "", fmt.Errorf("list keys: %w", err)
	}
	if key != nil {
		return key, keyName, nil
	}
	if damaged != nil {
		if tried > 0 {
			return nil, "", fmt.Errorf("%w (and the password opened none of the other %d key files)", damaged, tried)
		}
		return nil, "", damaged
	}
	return nil, "", crypto.ErrWrongPassword
}

// KeyFileError names a key file that could not be used.
type KeyFileError struct {
	Name string // object name under keys/
	Err  error
}

func (e *KeyFileError) Error() string {
	if errors.Is(e.Err, crypto.ErrBadKeyFile) {
		return fmt.Sprintf("key file keys/%s is damaged: %v", e.Name, strings.TrimPrefix(e.Err.Error(), crypto.ErrBadKeyFile.Error()+": "))
	}
	return fmt.Sprintf("key file keys/%s: %v", e.Name, e.Err)
}

func (e *KeyFileError) Unwrap() error { return e.Err }
