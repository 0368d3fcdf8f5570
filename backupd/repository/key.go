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
	kf, err := crypto.Wrap(key, password, opt.KDF)
	if err != nil {
		return nil, err
	}
	kf.Hostname = opt.Hostname
	kf.Created = opt.Now().UTC().Format(time.RFC3339)
	kb, err := json.Marshal(kf)
	if err != nil {
		return nil, err
	}
	if err := be.Save(ctx, backend.Handle{Type: backend.KeyFile, Name: Hash(kb).String()}, bytes.NewReader(kb)); err != nil {
		return nil, fmt.Errorf("init: save key: %w", err)
	}
	var rid ID
	_, _ = rand.Read(rid[:])
	cfg := Config{Version: FormatVersion, ID: rid.String(), Created: kf.Created}
	cb, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return nil, err
	}
	// Invariant: config is written last, so a repository is either
	// complete or absent.
	if err := be.Save(ctx, backend.Handle{Type: backend.ConfigFile}, bytes.NewReader(cb)); err != nil {
		return nil, fmt.Errorf("init: save config: %w", err)
	}
	return newRepo(be, key, cfg, opt)
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
	key, err := searchKey(ctx, be, password)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", be.Location(), err)
	}
	return newRepo(be, key, cfg, opt)
}

// searchKey tries password on every key file and returns the master key of
// the first that it opens. A damaged key file (crypto.ErrBadKeyFile: not
// JSON, bad fields, truncated, key-derivation parameters out of bounds) is
// not tried; when no key file opens, the error names the first damaged one
// (a *KeyFileError), and is crypto.ErrWrongPassword only when every key
// file was well formed.
func searchKey(ctx context.Context, be backend.Backend, password []byte) (*crypto.Key, error) {
	var key *crypto.Key
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
		}
		if err != nil && !errors.Is(err, crypto.ErrWrongPassword) && damaged == nil {
			damaged = &KeyFileError{Name: fi.Name, Err: err}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list keys: %w", err)
	}
	if key != nil {
		return key, nil
	}
	if damaged != nil {
		if tried > 0 {
			return nil, fmt.Errorf("%w (and the password opened none of the other %d key files)", damaged, tried)
		}
		return nil, damaged
	}
	return nil, crypto.ErrWrongPassword
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
