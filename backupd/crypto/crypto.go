// Package crypto holds the repository's keys: the master key that encrypts
// every object (AES-256-GCM, random nonce per object), the key that makes blob
// ids (keyed BLAKE3-256) and the chunker seed, and the key files that wrap the
// master key with a key derived by scrypt from a password.
package crypto

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"

	"github.com/zeebo/blake3"
	"golang.org/x/crypto/scrypt"
)

// Overhead is what Seal adds to a plaintext: the nonce and the GCM tag.
const Overhead = nonceSize + 16

const nonceSize = 12

// ErrUnauthenticated means a ciphertext failed authentication: it was
// corrupted, truncated, or made with another key.
var ErrUnauthenticated = errors.New("ciphertext verification failed")

// ErrWrongPassword means no key file opened with the password given.
var ErrWrongPassword = errors.New("wrong password or no key file for it")

// Key is a repository master key.
type Key struct {
	encKey  [32]byte
	idKey   [32]byte
	Chunker uint64
	aead    cipher.AEAD
	idHash  *blake3.Hasher
	// treeHash names tree blobs with a key derived from the id key, so a
	// file whose bytes equal an encoded tree never shares its id.
	treeHash *blake3.Hasher
}

// NewRandomKey makes a fresh master key.
func NewRandomKey() (*Key, error) {
	var raw [72]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return nil, fmt.Errorf("read random key: %w", err)
	}
	k := &Key{}
	copy(k.encKey[:], raw[:32])
	copy(k.idKey[:], raw[32:64])
	for _, b := range raw[64:] {
		k.Chunker = k.Chunker<<8 | uint64(b)
	}
	return k, k.init()
}

func (k *Key) init() error {
	block, err := aes.NewCipher(k.encKey[:])
	if err != nil {
		return err
	}
	k.aead, err = cipher.NewGCM(block)
	if err != nil {
		return err
	}
	k.idHash, err = blake3.NewKeyed(k.idKey[:])
	if err != nil {
		return err
	}
	var treeKey [32]byte
	blake3.DeriveKey("backupd tree blob id v1", k.idKey[:], treeKey[:])
	k.treeHash, err = blake3.NewKeyed(treeKey[:])
	return err
}

// Seal encrypts and authenticates plaintext with associated data ad,
// appending nonce||ciphertext||tag to dst.
func (k *Key) Seal(dst, plaintext, ad []byte) []byte {
	n := len(dst)
	dst = append(dst, make([]byte, nonceSize)...)
	if _, err := rand.Read(dst[n : n+nonceSize]); err != nil {
		// crypto/rand.Read never returns an error on supported platforms.
		panic(err)
	}
	return k.aead.Seal(dst, dst[n:n+nonceSize], plaintext, ad)
}

// NonceSize is the length of the nonce that starts every sealed object.
const NonceSize = nonceSize

// SealInPlace seals buf[NonceSize:NonceSize+n] where it lies, writing a
// fresh nonce to buf[:NonceSize], and returns the sealed bytes
// (nonce||ciphertext||tag), which reuse buf's storage when its capacity
// allows NonceSize+n+16 bytes.
func (k *Key) SealInPlace(buf []byte, n int, ad []byte) []byte {
	if _, err := rand.Read(buf[:nonceSize]); err != nil {
		panic(err)
	}
	return k.aead.Seal(buf[:nonceSize], buf[:nonceSize], buf[nonceSize:nonceSize+n], ad)
}

// Open authenticates and decrypts a Seal output, appending the plaintext to
// dst. It fails with ErrUnauthenticated on any mismatch.
func (k *Key) Open(dst, sealed, ad []byte) ([]byte, error) {
	if len(sealed) < Overhead {
		return nil, fmt.Errorf("%w: %d bytes is shorter than the %d-byte envelope", ErrUnauthenticated, len(sealed), Overhead)
	}
	out, err := k.aead.Open(dst, sealed[:nonceSize], sealed[nonceSize:], ad)
	if err != nil {
		return nil, ErrUnauthenticated
	}
	return out, nil
}

// IDHasher returns a fresh keyed BLAKE3 hasher for blob ids. Each goroutine
// needs its own.
func (k *Key) IDHasher() *blake3.Hasher { return k.idHash.Clone() }

// TreeIDHasher returns a fresh keyed hasher for tree blob ids.
func (k *Key) TreeIDHasher() *blake3.Hasher { return k.treeHash.Clone() }

// KDFParams are the scrypt parameters of a key file.
type KDFParams struct {
	N int `json:"N"`
	R int `json:"r"`
	P int `json:"p"`
}

// DefaultKDF costs about 0.09 s and 32 MiB on one core of this project's
// reference machine, most of a no-change backup's time. kopia's default
// (N=2^16) costs twice that; restic calibrates its parameters to about
// 0.5 s. Argon2id at the same memory was no faster in a fresh process
// here (first-touch page faults dominate; two lanes contend on them).
var DefaultKDF = KDFParams{N: 1 << 15, R: 8, P: 1}

// KeyFile is the stored form of a wrapped master key.
type KeyFile struct {
	KDF      string    `json:"kdf"`
	Params   KDFParams `json:"params"`
	Salt     []byte    `json:"salt"`
	Data     []byte    `json:"data"`
	Hostname string    `json:"hostname,omitempty"`
	Created  string    `json:"created,omitempty"`
}

type masterJSON struct {
	Encrypt []byte `json:"encrypt"`
	ID      []byte `json:"id"`
	Chunker uint64 `json:"chunker"`
}

var keyFileAD = []byte("backupd key file v1")

// Wrap seals k with a key derived from password.
func Wrap(k *Key, password []byte, p KDFParams) (*KeyFile, error) {
	salt := make([]byte, 32)
	if _, err := rand.Read(salt); err != nil {
		return nil, err
	}
	wk, err := derive(password, salt, p)
	if err != nil {
		return nil, err
	}
	plain, err := json.Marshal(masterJSON{Encrypt: k.encKey[:], ID: k.idKey[:], Chunker: k.Chunker})
	if err != nil {
		return nil, err
	}
	return &KeyFile{KDF: "scrypt", Params: p, Salt: salt, Data: wk.Seal(nil, plain, keyFileAD)}, nil
}

// Unwrap opens a key file with password.
func Unwrap(kf *KeyFile, password []byte) (*Key, error) {
	if kf.KDF != "scrypt" {
		return nil, fmt.Errorf("key file: unknown kdf %q, expected \"scrypt\"", kf.KDF)
	}
	p := kf.Params
	// Bound the work a key file can demand: scrypt needs 128*N*r bytes,
	// and a hostile or damaged key file must not exhaust memory.
	if p.N < 2 || p.N&(p.N-1) != 0 || p.N > 1<<20 || p.R < 1 || p.R > 32 || p.P < 1 || p.P > 16 || 128*p.N*p.R > 256<<20 {
		return nil, fmt.Errorf("key file: scrypt parameters N=%d r=%d p=%d out of range (N a power of two up to 2^20, r up to 32, p up to 16, at most 256 MiB)", p.N, p.R, p.P)
	}
	wk, err := derive(password, kf.Salt, p)
	if err != nil {
		return nil, err
	}
	// scrypt's 32 MiB work area is garbage now; collect it at once so
	// the memory is reused instead of adding to the process's peak.
	runtime.GC()
	plain, err := wk.Open(nil, kf.Data, keyFileAD)
	if err != nil {
		return nil, ErrWrongPassword
	}
	var m masterJSON
	if err := json.Unmarshal(plain, &m); err != nil || len(m.Encrypt) != 32 || len(m.ID) != 32 {
		return nil, fmt.Errorf("key file: malformed master key")
	}
	k := &Key{Chunker: m.Chunker}
	copy(k.encKey[:], m.Encrypt)
	copy(k.idKey[:], m.ID)
	return k, k.init()
}

func derive(password, salt []byte, p KDFParams) (*Key, error) {
	raw, err := scrypt.Key(password, salt, p.N, p.R, p.P, 32)
	if err != nil {
		return nil, fmt.Errorf("derive key: %w", err)
	}
	k := &Key{}
	copy(k.encKey[:], raw)
	block, err := aes.NewCipher(k.encKey[:])
	if err != nil {
		return nil, err
	}
	k.aead, err = cipher.NewGCM(block)
	return k, err
}
