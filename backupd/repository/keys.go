package repository

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/user"
	"sort"
	"strings"
	"time"

	"github.com/meshbackup/backupd/backupd/backend"
	"github.com/meshbackup/backupd/backupd/crypto"
	"github.com/meshbackup/backupd/backupd/faultpoint"
)

// Key management (backupd key list|add|remove|passwd). Every key file wraps
// the same master key; a key's id is its object name under keys/.
//
// Crash safety: key files are never rewritten in place. A new key file is
// stored durably (Save) and opened again with its password before any key
// file is removed, and a removal never takes the key file this Repo was
// opened with (except in ChangePassword, after its replacement is proved),
// so a kill at any point leaves a key file that opens the repository. The
// callers hold the exclusive lock, so that two processes cannot each remove
// the other's key.

// Errors of the key operations. ErrKeyNotFound and ErrKeyAmbiguous are the
// caller's mistake (the command line's exit 2); ErrCurrentKey and ErrLastKey
// are refusals.
var (
	ErrKeyNotFound  = errors.New("no key file with that id")
	ErrKeyAmbiguous = errors.New("key id is ambiguous")
	ErrCurrentKey   = errors.New("refusing to remove the key file the password opened")
	ErrLastKey      = errors.New("refusing to remove the last key file")
	ErrKeyGone      = errors.New("the key file the password opened is gone (removed meanwhile by another process?)")
)

// KeyInfo describes a key file, as 'backupd key list' shows it.
type KeyInfo struct {
	Name    string // object name under keys/: the key's id
	Current bool   // the key file this Repo was opened with
	// Created, Hostname and Username are what the key file records of who
	// added it ("" when it does not); plaintext, not authenticated.
	Created  string
	Hostname string
	Username string
	KDF      string
	Params   crypto.KDFParams
	// Err is set (a *KeyFileError) when the key file is damaged or
	// unreadable; the fields above but Name are then empty.
	Err error
}

// KeyName returns the name (under keys/) of the key file the password
// opened.
func (r *Repo) KeyName() string {
	r.keyMu.Lock()
	defer r.keyMu.Unlock()
	return r.keyName
}

// keyNames lists the names of the key files.
func (r *Repo) keyNames(ctx context.Context) ([]string, error) {
	var names []string
	if err := r.be.List(ctx, backend.KeyFile, func(fi backend.FileInfo) error {
		names = append(names, fi.Name)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("list keys: %w", err)
	}
	sort.Strings(names)
	return names, nil
}

// Keys describes every key file, oldest first (by recorded creation time,
// then name). Key files that cannot be read or are damaged are listed with
// Err set; they are not an error of the listing.
func (r *Repo) Keys(ctx context.Context) ([]KeyInfo, error) {
	names, err := r.keyNames(ctx)
	if err != nil {
		return nil, err
	}
	current := r.KeyName()
	out := make([]KeyInfo, 0, len(names))
	for _, n := range names {
		ki := KeyInfo{Name: n, Current: n == current}
		kb, err := backend.LoadAll(ctx, r.be, backend.Handle{Type: backend.KeyFile, Name: n})
		if errors.Is(err, backend.ErrNotFound) {
			continue // removed meanwhile
		}
		var kf *crypto.KeyFile
		if err == nil {
			kf, err = crypto.DecodeKeyFile(kb)
		}
		if err != nil {
			ki.Err = &KeyFileError{Name: n, Err: err}
		} else {
			ki.Created, ki.Hostname, ki.Username = kf.Created, kf.Hostname, kf.Username
			ki.KDF, ki.Params = kf.KDF, kf.Params
		}
		out = append(out, ki)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Created != out[j].Created {
			return out[i].Created < out[j].Created
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

// FindKey resolves a key id prefix (lowercase hex) to the one key file
// whose name starts with it: ErrKeyNotFound or ErrKeyAmbiguous otherwise.
func (r *Repo) FindKey(ctx context.Context, prefix string) (string, error) {
	names, err := r.keyNames(ctx)
	if err != nil {
		return "", err
	}
	prefix = strings.ToLower(prefix)
	var found []string
	for _, n := range names {
		if strings.HasPrefix(n, prefix) {
			found = append(found, n)
		}
	}
	switch len(found) {
	case 0:
		return "", fmt.Errorf("%w: %q", ErrKeyNotFound, prefix)
	case 1:
		return found[0], nil
	}
	short := make([]string, len(found))
	for i, n := range found {
		short[i] = n[:min(len(n), 16)]
	}
	return "", fmt.Errorf("%w: %q matches %d key files (%s); give more of it", ErrKeyAmbiguous, prefix, len(found), strings.Join(short, ", "))
}

// AddKey stores a new key file that wraps the repository's master key with
// password (the KDF parameters of Options.KDF), recording the host, the
// user and the time, and returns its name. It returns once the key file
// is stored durably and opens with password. The caller holds the
// exclusive lock.
func (r *Repo) AddKey(ctx context.Context, password []byte) (string, error) {
	if len(password) == 0 {
		return "", errors.New("add key: empty password")
	}
	if err := r.currentKeyExists(ctx); err != nil {
		return "", err
	}
	// The new key file seals the config too (docs/FORMAT.md "config"):
	// the config this Repo authenticated on open.
	cb, err := json.Marshal(r.cfg)
	if err != nil {
		return "", err
	}
	r.key.SetConfig(cb)
	kf, err := crypto.Wrap(r.key, password, r.opt.KDF)
	if err != nil {
		return "", fmt.Errorf("add key: %w", err)
	}
	kf.Hostname, kf.Username = r.opt.Hostname, currentUsername()
	kf.Created = r.opt.Now().UTC().Format(time.RFC3339)
	kb, err := json.Marshal(kf)
	if err != nil {
		return "", err
	}
	name := Hash(kb).String()
	h := backend.Handle{Type: backend.KeyFile, Name: name}
	// Named by its content, which holds a fresh salt: ErrExists is a
	// retrying backend's earlier attempt that stored these bytes, and the
	// read-back below proves them.
	if err := r.be.Save(ctx, h, bytes.NewReader(kb)); err != nil && !errors.Is(err, backend.ErrExists) {
		return "", fmt.Errorf("add key: save keys/%s: %w", name, err)
	}
	r.opt.Faults.Hit(faultpoint.AfterKeyWrite)
	// Prove the stored key file: read it back and open it with password.
	back, err := backend.LoadAll(ctx, r.be, h)
	if err == nil {
		var rkf *crypto.KeyFile
		if rkf, err = crypto.DecodeKeyFile(back); err == nil {
			var k *crypto.Key
			if k, err = crypto.Unwrap(rkf, password); err == nil && !k.SameMaster(r.key) {
				err = errors.New("it holds another master key")
			}
		}
	}
	if err != nil {
		return "", fmt.Errorf("add key: the stored key file keys/%s does not open: %w", name, err)
	}
	r.log.Debug("added key file", "key", name)
	return name, nil
}

// RemoveKey removes the key file name (a full name; see FindKey). It
// refuses to remove the last key file (ErrLastKey) and the key file the
// password opened (ErrCurrentKey: 'key passwd' replaces it), and refuses
// anything when that key file is gone (ErrKeyGone), so a working key file
// always remains. The caller holds the exclusive lock.
func (r *Repo) RemoveKey(ctx context.Context, name string) error {
	names, err := r.keyNames(ctx)
	if err != nil {
		return err
	}
	found := false
	for _, n := range names {
		found = found || n == name
	}
	current := r.KeyName()
	switch {
	case !found:
		return fmt.Errorf("%w: %q", ErrKeyNotFound, name)
	case len(names) == 1:
		return fmt.Errorf("%w keys/%s: the repository would have no key left", ErrLastKey, name)
	case name == current:
		return fmt.Errorf("%w (keys/%s): use 'key passwd' to replace it, or remove it with another key's password", ErrCurrentKey, name)
	}
	if err := r.currentKeyExists(ctx); err != nil {
		return err
	}
	return r.removeKeyFile(ctx, name)
}

// ChangePassword replaces the key file the password opened with one for
// password: the new key file is stored and proved (AddKey) before the old
// one is removed. It returns the new key file's name; the Repo is opened
// with it from then on. The caller holds the exclusive lock.
func (r *Repo) ChangePassword(ctx context.Context, password []byte) (string, error) {
	old := r.KeyName()
	name, err := r.AddKey(ctx, password)
	if err != nil {
		return "", err
	}
	r.keyMu.Lock()
	r.keyName = name
	r.keyMu.Unlock()
	if err := r.removeKeyFile(ctx, old); err != nil {
		return name, fmt.Errorf("the new key file keys/%s is stored and opens the repository, but the old one could not be removed (remove it with 'backupd key remove %s'): %w", name, old[:min(len(old), 8)], err)
	}
	return name, nil
}

// currentKeyExists checks, under the caller's lock, that the key file the
// password opened is still there.
func (r *Repo) currentKeyExists(ctx context.Context) error {
	name := r.KeyName()
	_, err := r.be.Stat(ctx, backend.Handle{Type: backend.KeyFile, Name: name})
	if errors.Is(err, backend.ErrNotFound) {
		return fmt.Errorf("%w: keys/%s", ErrKeyGone, name)
	}
	if err != nil {
		return fmt.Errorf("key file keys/%s: %w", name, err)
	}
	return nil
}

func (r *Repo) removeKeyFile(ctx context.Context, name string) error {
	r.opt.Faults.Hit(faultpoint.BeforeKeyRemove)
	if err := r.be.Remove(ctx, backend.Handle{Type: backend.KeyFile, Name: name}); err != nil {
		return fmt.Errorf("remove keys/%s: %w", name, err)
	}
	r.opt.Faults.Hit(faultpoint.AfterKeyRemove)
	r.log.Debug("removed key file", "key", name)
	return nil
}

// currentUsername names the user writing a key file, for 'key list'; ""
// when it cannot be told.
func currentUsername() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	return os.Getenv("USER")
}
