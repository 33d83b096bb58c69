package crypto

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/crypto/chacha20poly1305"
)

// MasterKeySize is the size of a master key (256 bits).
const MasterKeySize = 32

const sealedPrefix = "sr1"

// Errors returned by Keyring. None of them carries key bytes.
var (
	// ErrUnknownKeyVersion means a stored secret names a master-key version
	// the keyring does not hold.
	ErrUnknownKeyVersion = errors.New("crypto: unknown master key version")
	// ErrDecrypt means a stored secret failed authentication: wrong owner,
	// wrong master key or tampered bytes.
	ErrDecrypt = errors.New("crypto: stored secret does not decrypt")
	// ErrMalformedSecret means the stored form could not be parsed.
	ErrMalformedSecret = errors.New("crypto: malformed stored secret")
)

// Keyring holds versioned master keys for envelope encryption of secrets at
// rest, KMS style: each secret is encrypted with a fresh random data key
// (XChaCha20-Poly1305, owner id as associated data) and the data key is
// wrapped by the active master key (XChaCha20-Poly1305, version and owner as
// associated data). The stored form names the master-key version, so keys can
// be rotated and data keys re-wrapped without touching the secrets.
//
// The active key is the highest version. A Keyring is immutable after
// construction and safe for concurrent use.
type Keyring struct {
	keys   map[uint32][]byte
	active uint32
}

// NewKeyring builds a keyring from version → 32-byte key. Keys are copied.
func NewKeyring(keys map[uint32][]byte) (*Keyring, error) {
	if len(keys) == 0 {
		return nil, errors.New("keyring: no master keys")
	}
	kr := &Keyring{keys: make(map[uint32][]byte, len(keys))}
	for v, k := range keys {
		if v == 0 {
			return nil, errors.New("keyring: master key version 0 is not allowed (versions start at 1)")
		}
		if len(k) != MasterKeySize {
			return nil, fmt.Errorf("keyring: master key version %d must be %d bytes, got %d", v, MasterKeySize, len(k))
		}
		kr.keys[v] = append([]byte(nil), k...)
		if v > kr.active {
			kr.active = v
		}
	}
	return kr, nil
}

// ParseKeyring parses the keyring text format: entries "<version>:<standard
// base64 of 32 bytes>", separated by newlines or commas; blank lines and
// lines starting with '#' are ignored.
func ParseKeyring(text string) (*Keyring, error) {
	keys := map[uint32][]byte{}
	fields := strings.FieldsFunc(text, func(r rune) bool { return r == '\n' || r == ',' || r == '\r' })
	for i, f := range fields {
		f = strings.TrimSpace(f)
		if f == "" || strings.HasPrefix(f, "#") {
			continue
		}
		vs, b64, ok := strings.Cut(f, ":")
		if !ok {
			return nil, fmt.Errorf("keyring: entry %d: want <version>:<base64 key>", i+1)
		}
		v, err := strconv.ParseUint(strings.TrimSpace(vs), 10, 32)
		if err != nil {
			return nil, fmt.Errorf("keyring: entry %d: version %q is not a positive integer", i+1, vs)
		}
		k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(b64))
		if err != nil {
			return nil, fmt.Errorf("keyring: master key version %d is not standard base64", v)
		}
		if _, dup := keys[uint32(v)]; dup {
			return nil, fmt.Errorf("keyring: master key version %d appears twice", v)
		}
		keys[uint32(v)] = k
	}
	kr, err := NewKeyring(keys)
	for _, k := range keys {
		Wipe(k)
	}
	return kr, err
}

// LoadKeyring reads a keyring from the environment variable name, or from the
// file named by name+"_FILE", or from path when neither is set. Exactly one
// source may be set.
func LoadKeyring(name, path string) (*Keyring, error) {
	val, inEnv := os.LookupEnv(name)
	file, inFile := os.LookupEnv(name + "_FILE")
	switch {
	case inEnv && inFile:
		return nil, fmt.Errorf("keyring: set %s or %s_FILE, not both", name, name)
	case inEnv:
		kr, err := ParseKeyring(val)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		return kr, nil
	case inFile:
		path = file
	}
	if path == "" {
		return nil, fmt.Errorf("keyring: no master key: set %s, %s_FILE or a key file path", name, name)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("keyring: read %s: %w", path, err)
	}
	defer Wipe(b)
	kr, err := ParseKeyring(string(b))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return kr, nil
}

// GenerateMasterKeyEntry returns a new keyring entry "<version>:<base64>"
// holding a random key, for appending to a keyring file.
func GenerateMasterKeyEntry(version uint32) (string, error) {
	k := make([]byte, MasterKeySize)
	if _, err := rand.Read(k); err != nil {
		return "", fmt.Errorf("generate master key: %w", err)
	}
	defer Wipe(k)
	return fmt.Sprintf("%d:%s", version, base64.StdEncoding.EncodeToString(k)), nil
}

// ActiveVersion returns the version new secrets are wrapped with.
func (kr *Keyring) ActiveVersion() uint32 { return kr.active }

// Versions returns the held versions, ascending.
func (kr *Keyring) Versions() []uint32 {
	vs := make([]uint32, 0, len(kr.keys))
	for v := range kr.keys {
		vs = append(vs, v)
	}
	sort.Slice(vs, func(i, j int) bool { return vs[i] < vs[j] })
	return vs
}

// Encrypt seals secret for owner and returns its stored form:
// "sr1.<version>.<wrapped data key>.<ciphertext>" (base64url parts).
func (kr *Keyring) Encrypt(secret []byte, owner string) (string, error) {
	dk := make([]byte, chacha20poly1305.KeySize)
	if _, err := rand.Read(dk); err != nil {
		return "", fmt.Errorf("generate data key: %w", err)
	}
	defer Wipe(dk)
	ct, err := xseal(dk, secret, dataAD(owner))
	if err != nil {
		return "", err
	}
	wrapped, err := xseal(kr.keys[kr.active], dk, wrapAD(kr.active, owner))
	if err != nil {
		return "", err
	}
	return formatSealed(kr.active, wrapped, ct), nil
}

// Decrypt opens a stored secret for owner. The caller should Wipe the result
// when done.
func (kr *Keyring) Decrypt(stored, owner string) ([]byte, error) {
	v, wrapped, ct, err := parseSealed(stored)
	if err != nil {
		return nil, err
	}
	dk, err := kr.unwrap(v, wrapped, owner)
	if err != nil {
		return nil, err
	}
	defer Wipe(dk)
	pt, err := xopen(dk, ct, dataAD(owner))
	if err != nil {
		return nil, fmt.Errorf("%w (master key version %d)", ErrDecrypt, v)
	}
	return pt, nil
}

// Rewrap re-wraps the data key of stored under the active master key without
// decrypting the secret. It reports whether anything changed (false when the
// secret already uses the active version).
func (kr *Keyring) Rewrap(stored, owner string) (string, bool, error) {
	v, wrapped, ct, err := parseSealed(stored)
	if err != nil {
		return "", false, err
	}
	if v == kr.active {
		return stored, false, nil
	}
	dk, err := kr.unwrap(v, wrapped, owner)
	if err != nil {
		return "", false, err
	}
	defer Wipe(dk)
	nw, err := xseal(kr.keys[kr.active], dk, wrapAD(kr.active, owner))
	if err != nil {
		return "", false, err
	}
	return formatSealed(kr.active, nw, ct), true, nil
}

// StoredVersion returns the master-key version named by a stored secret.
func StoredVersion(stored string) (uint32, error) {
	v, _, _, err := parseSealed(stored)
	return v, err
}

func (kr *Keyring) unwrap(v uint32, wrapped []byte, owner string) ([]byte, error) {
	mk, ok := kr.keys[v]
	if !ok {
		return nil, fmt.Errorf("%w: version %d", ErrUnknownKeyVersion, v)
	}
	dk, err := xopen(mk, wrapped, wrapAD(v, owner))
	if err != nil {
		return nil, fmt.Errorf("%w (data key under master key version %d)", ErrDecrypt, v)
	}
	return dk, nil
}

func dataAD(owner string) []byte { return []byte("sealrelay/secret/v1|" + owner) }

func wrapAD(v uint32, owner string) []byte {
	return []byte("sealrelay/datakey/v1|" + strconv.FormatUint(uint64(v), 10) + "|" + owner)
}

func xseal(key, msg, ad []byte) ([]byte, error) {
	aead, err := chacha20poly1305.NewX(key)
	if err != nil {
		return nil, fmt.Errorf("xchacha20poly1305: %w", err)
	}
	out := make([]byte, aead.NonceSize(), aead.NonceSize()+len(msg)+aead.Overhead())
	if _, err := rand.Read(out); err != nil {
		return nil, fmt.Errorf("nonce: %w", err)
	}
	return aead.Seal(out, out[:aead.NonceSize()], msg, ad), nil
}

func xopen(key, sealed, ad []byte) ([]byte, error) {
	aead, err := chacha20poly1305.NewX(key)
	if err != nil {
		return nil, fmt.Errorf("xchacha20poly1305: %w", err)
	}
	if len(sealed) < aead.NonceSize()+aead.Overhead() {
		return nil, ErrDecrypt
	}
	n := aead.NonceSize()
	return aead.Open(nil, sealed[:n], sealed[n:], ad)
}

func formatSealed(v uint32, wrapped, ct []byte) string {
	enc := base64.RawURLEncoding
	return sealedPrefix + "." + strconv.FormatUint(uint64(v), 10) + "." + enc.EncodeToString(wrapped) + "." + enc.EncodeToString(ct)
}

func parseSealed(s string) (uint32, []byte, []byte, error) {
	parts := strings.Split(s, ".")
	if len(parts) != 4 || parts[0] != sealedPrefix {
		return 0, nil, nil, ErrMalformedSecret
	}
	v, err := strconv.ParseUint(parts[1], 10, 32)
	if err != nil || v == 0 {
		return 0, nil, nil, ErrMalformedSecret
	}
	strict := base64.RawURLEncoding.Strict()
	wrapped, err1 := strict.DecodeString(parts[2])
	ct, err2 := strict.DecodeString(parts[3])
	if err1 != nil || err2 != nil {
		return 0, nil, nil, ErrMalformedSecret
	}
	return uint32(v), wrapped, ct, nil
}
