// Package crypto holds the repository's keys: the master key that encrypts
// every object (AES-256-GCM, random nonce per object), the key that makes blob
// ids (keyed BLAKE3-256) and the chunker seed, and the key files that wrap the
// master key with a key derived by Argon2id from a password.
//
// Imports: the standard library, BLAKE3 and golang.org/x; no other module
// package. Like all of the engine it never imports Prometheus, collectors/ or
// exporter/ (docs/DESIGN.md §2.3).
package crypto

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/zeebo/blake3"
	"golang.org/x/crypto/argon2"
)

// Overhead is what Seal adds to a plaintext: the nonce and the GCM tag.
const Overhead = nonceSize + 16

const nonceSize = 12

// ErrUnauthenticated means a ciphertext failed authentication: it was
// corrupted, truncated, or made with another key.
var ErrUnauthenticated = errors.New("ciphertext verification failed")

// ErrWrongPassword means no key file opened with the password given: each
// was well formed, but its wrapped key failed authentication with the key
// derived from the password. (AES-GCM cannot tell a flipped bit in the
// wrapped key from another password: that, too, is reported as a wrong
// password.)
var ErrWrongPassword = errors.New("wrong password or no key file for it")

// ErrBadKeyFile means a key file is damaged (not JSON, a field missing or
// malformed, truncated) or asks for key-derivation work beyond the bounds:
// it was not tried with the password.
var ErrBadKeyFile = errors.New("key file is damaged")

// DecodeKeyFile parses and validates a key file's JSON, before any key is
// derived: every failure wraps ErrBadKeyFile.
func DecodeKeyFile(b []byte) (*KeyFile, error) {
	var kf KeyFile
	if err := json.Unmarshal(b, &kf); err != nil {
		return nil, fmt.Errorf("%w: not valid JSON: %w", ErrBadKeyFile, err)
	}
	if err := kf.validate(); err != nil {
		return nil, err
	}
	return &kf, nil
}

// validate checks every field Unwrap uses.
func (kf *KeyFile) validate() error {
	if kf.KDF != kdfName {
		return fmt.Errorf("%w: unknown kdf %q, expected %q", ErrBadKeyFile, kf.KDF, kdfName)
	}
	if err := kf.Params.check(); err != nil {
		return fmt.Errorf("%w: %w", ErrBadKeyFile, err)
	}
	if len(kf.Salt) < 16 {
		return fmt.Errorf("%w: salt of %d bytes, want at least 16", ErrBadKeyFile, len(kf.Salt))
	}
	// The wrapped key: the master key's JSON (over 100 bytes) sealed.
	if len(kf.Data) < Overhead+64 {
		return fmt.Errorf("%w: wrapped key of %d bytes is too short (truncated?)", ErrBadKeyFile, len(kf.Data))
	}
	return nil
}

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
	// config is the repository config sealed with the key in its key file
	// (nil for key files written before 2026-12-02).
	config []byte
}

// Config returns the repository config sealed in the key file this key
// was opened from (nil when that key file predates it).
func (k *Key) Config() []byte { return k.config }

// SetConfig sets the config that Wrap seals with the key.
func (k *Key) SetConfig(c []byte) { k.config = append([]byte(nil), c...) }

// SameMaster reports whether k and o are the same master key (encryption
// key, id key and chunker seed), in constant time for the keys.
func (k *Key) SameMaster(o *Key) bool {
	if k == nil || o == nil {
		return false
	}
	enc := subtle.ConstantTimeCompare(k.encKey[:], o.encKey[:])
	id := subtle.ConstantTimeCompare(k.idKey[:], o.idKey[:])
	return enc&id == 1 && k.Chunker == o.Chunker
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

// KDFParams are the Argon2id parameters of a key file.
type KDFParams struct {
	Time      uint32 `json:"t"` // passes over the memory
	MemoryKiB uint32 `json:"m"`
	Threads   uint8  `json:"p"` // lanes
}

// DefaultKDF is OWASP's recommended Argon2id memory and passes for
// password storage, 19 MiB and 2 passes, in 2 lanes. (OWASP asks scrypt for
// N=2^17, r=8 to be as strong: 128 MiB, four times restic's floor.) Lanes
// split the same memory and work, so an attacker's cost is unchanged, and
// let a machine with two cores derive the key in about half the time: in a
// fresh process on this project's 2-core reference machine, 34–37 ms with
// the work area prepared (prepareWorkArea) against about 41 ms in one lane;
// scrypt with N=2^15, r=8 took 110–125 ms. On the command line the key
// derivation is much of what a backup with nothing to do costs.
var DefaultKDF = KDFParams{Time: 2, MemoryKiB: 19 << 10, Threads: 2}

// kdfName is the only key derivation of format version 2.
const kdfName = "argon2id"

// check bounds the work a key file can demand: a hostile or damaged key
// file must not exhaust memory or time.
func (p KDFParams) check() error {
	if p.Time < 1 || p.Time > 16 || p.Threads < 1 || p.Threads > 16 || p.MemoryKiB < 8*uint32(p.Threads) || p.MemoryKiB > 256<<10 {
		return fmt.Errorf("argon2id parameters t=%d m=%d KiB p=%d out of range (t 1 to 16, p 1 to 16, m from 8*p KiB to 256 MiB)", p.Time, p.MemoryKiB, p.Threads)
	}
	return nil
}

// KeyFile is the stored form of a wrapped master key. Hostname, Username
// and Created say who added it, and when; they are plaintext and not
// authenticated (shown by 'backupd key list', never trusted).
type KeyFile struct {
	KDF      string    `json:"kdf"`
	Params   KDFParams `json:"params"`
	Salt     []byte    `json:"salt"`
	Data     []byte    `json:"data"`
	Hostname string    `json:"hostname,omitempty"`
	Username string    `json:"username,omitempty"`
	Created  string    `json:"created,omitempty"`
}

type masterJSON struct {
	Encrypt []byte `json:"encrypt"`
	ID      []byte `json:"id"`
	Chunker uint64 `json:"chunker"`
	// Config authenticates the repository's plaintext config file.
	Config []byte `json:"config,omitempty"`
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
	plain, err := json.Marshal(masterJSON{Encrypt: k.encKey[:], ID: k.idKey[:], Chunker: k.Chunker, Config: k.config})
	if err != nil {
		return nil, err
	}
	return &KeyFile{KDF: kdfName, Params: p, Salt: salt, Data: wk.Seal(nil, plain, keyFileAD)}, nil
}

// Unwrap opens a key file with password.
func Unwrap(kf *KeyFile, password []byte) (*Key, error) {
	if err := kf.validate(); err != nil {
		return nil, err
	}
	wk, err := derive(password, kf.Salt, kf.Params)
	if err != nil {
		return nil, err
	}
	// Argon2's work area is garbage now; collect it at once so
	// the memory is reused instead of adding to the process's peak.
	runtime.GC()
	plain, err := wk.Open(nil, kf.Data, keyFileAD)
	if err != nil {
		return nil, ErrWrongPassword
	}
	var m masterJSON
	if err := json.Unmarshal(plain, &m); err != nil || len(m.Encrypt) != 32 || len(m.ID) != 32 {
		return nil, fmt.Errorf("%w: the wrapped master key opened but is malformed", ErrBadKeyFile)
	}
	k := &Key{Chunker: m.Chunker, config: m.Config}
	copy(k.encKey[:], m.Encrypt)
	copy(k.idKey[:], m.ID)
	return k, k.init()
}

func derive(password, salt []byte, p KDFParams) (*Key, error) {
	if err := p.check(); err != nil {
		return nil, err
	}
	// No collection is started by the work area's allocations while
	// Argon2 runs: one would only mark a heap about to be freed, on the
	// cores the lanes need (a collection is forced after, in Unwrap and
	// here in prepareWorkArea). For the few milliseconds of a derivation
	// the heap of other goroutines grows unchecked.
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	prepareWorkArea(int(p.MemoryKiB) << 10)
	raw := argon2.IDKey(password, salt, p.Time, p.MemoryKiB, p.Threads, 32)
	k := &Key{}
	copy(k.encKey[:], raw)
	block, err := aes.NewCipher(k.encKey[:])
	if err != nil {
		return nil, err
	}
	k.aead, err = cipher.NewGCM(block)
	return k, err
}
