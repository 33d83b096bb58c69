package crypto

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/nacl/box"
)

func mustBox(t testing.TB) *BoxKeyPair {
	t.Helper()
	kp, err := GenerateBoxKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

func TestSealedBoxRoundTripAndTamper(t *testing.T) {
	t.Parallel()
	kp, other := mustBox(t), mustBox(t)
	msg := []byte(`{"payload":"secret text"}`)
	sealed, err := SealAnonymous(msg, kp.Public)
	if err != nil {
		t.Fatal(err)
	}
	if len(sealed) != len(msg)+SealedBoxOverhead {
		t.Fatalf("sealed length %d", len(sealed))
	}
	got, err := kp.OpenAnonymous(sealed)
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("open: %q %v", got, err)
	}
	if _, err := other.OpenAnonymous(sealed); !errors.Is(err, ErrOpen) {
		t.Fatalf("opened with the wrong key: %v", err)
	}
	for i := range sealed {
		b := append([]byte(nil), sealed...)
		b[i] ^= 1
		if _, err := kp.OpenAnonymous(b); err == nil {
			t.Fatalf("flipped byte %d opened", i)
		}
	}
	for _, n := range []int{0, 1, SealedBoxOverhead - 1, SealedBoxOverhead} {
		if _, err := kp.OpenAnonymous(sealed[:n]); err == nil {
			t.Fatalf("truncated to %d opened", n)
		}
	}
}

func TestBoxPrecomputedMatchesPlain(t *testing.T) {
	t.Parallel()
	a, b := mustBox(t), mustBox(t)
	msg := []byte("reply body")
	ct, nonce, err := a.Precompute(b.Public).Seal(msg)
	if err != nil {
		t.Fatal(err)
	}
	got, err := b.Open(ct, &nonce, a.Public)
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("plain open of precomputed seal: %v", err)
	}
	ct2, nonce2, err := a.Seal(msg, b.Public)
	if err != nil {
		t.Fatal(err)
	}
	cache := NewSharedKeyCache(b, 2)
	got, err = cache.Get(a.Public).Open(ct2, &nonce2)
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("cached open of plain seal: %v", err)
	}
	if nonce == nonce2 {
		t.Fatal("two seals used the same nonce")
	}
	for i := range ct {
		x := append([]byte(nil), ct...)
		x[i] ^= 0x40
		if _, err := cache.Get(a.Public).Open(x, &nonce); err == nil {
			t.Fatalf("flipped byte %d opened", i)
		}
	}
	nonce[0] ^= 1
	if _, err := cache.Get(a.Public).Open(ct, &nonce); err == nil {
		t.Fatal("wrong nonce opened")
	}
	if _, err := cache.Get(a.Public).Open(ct[:BoxOverhead-1], &nonce); err == nil {
		t.Fatal("short ciphertext opened")
	}
}

func TestSharedKeyCacheBounded(t *testing.T) {
	t.Parallel()
	local := mustBox(t)
	c := NewSharedKeyCache(local, 3)
	var peers []*BoxKeyPair
	for i := 0; i < 10; i++ {
		p := mustBox(t)
		peers = append(peers, p)
		if c.Get(p.Public) == nil {
			t.Fatal("nil key")
		}
	}
	if n := c.keys.Len(); n != 3 {
		t.Fatalf("cache holds %d keys, want its max 3", n)
	}
	// The oldest peers were evicted, the newest kept.
	kept := c.Get(peers[8].Public)
	if n := c.keys.Len(); n != 3 || kept != c.Get(peers[8].Public) {
		t.Fatal("the newest peer's key was not kept")
	}
	k1 := c.Get(peers[9].Public)
	if k1 != c.Get(peers[9].Public) {
		t.Fatal("cache did not return the cached key")
	}
	c.Forget(peers[9].Public)
	if k1 == c.Get(peers[9].Public) {
		t.Fatal("Forget did not drop the key")
	}
}

func TestSigning(t *testing.T) {
	t.Parallel()
	k, err := GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("canonical bytes")
	sig := k.Sign(msg)
	if !k.Public().Verify(msg, sig) {
		t.Fatal("valid signature rejected")
	}
	for i := range sig {
		s := append([]byte(nil), sig...)
		s[i] ^= 1
		if k.Public().Verify(msg, s) {
			t.Fatalf("flipped signature byte %d accepted", i)
		}
	}
	if k.Public().Verify([]byte("canonical byteS"), sig) || k.Public().Verify(msg, sig[:63]) {
		t.Fatal("wrong message or short signature accepted")
	}
	k2, err := ParseSigningKey(k.SeedString())
	if err != nil || k2.Public() != k.Public() {
		t.Fatalf("seed round trip: %v", err)
	}
	// A 64-byte libsodium secret key is accepted and reduced to its seed.
	long := base64.StdEncoding.EncodeToString(append(k.seed[:], k.priv[32:]...))
	k3, err := ParseSigningKey(long)
	if err != nil || k3.SeedString() != k.SeedString() {
		t.Fatalf("64-byte secret key: %v", err)
	}
}

func TestKeyParsingErrors(t *testing.T) {
	t.Parallel()
	for name, fn := range map[string]func() error{
		"box short": func() error {
			_, err := ParseBoxPublicKey(base64.StdEncoding.EncodeToString(make([]byte, 31)))
			return err
		},
		"box not base64": func() error { _, err := ParseBoxPublicKey("!!!"); return err },
		"box private long": func() error {
			_, err := ParseBoxKeyPair(base64.StdEncoding.EncodeToString(make([]byte, 33)))
			return err
		},
		"signing pub url": func() error { _, err := ParseSigningPublicKey(strings.Repeat("_", 43) + "="); return err },
		"seed short": func() error {
			_, err := ParseSigningKey(base64.StdEncoding.EncodeToString(make([]byte, 16)))
			return err
		},
	} {
		if err := fn(); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("%s: got %v, want ErrInvalidKey", name, err)
		}
	}
}

func TestEqualHMACWipeToken(t *testing.T) {
	t.Parallel()
	if !Equal([]byte("abc"), []byte("abc")) || Equal([]byte("abc"), []byte("abd")) || Equal([]byte("abc"), []byte("ab")) {
		t.Fatal("Equal wrong")
	}
	mac := HMACSHA256([]byte("k"), []byte("m"))
	if !VerifyHMACSHA256([]byte("k"), []byte("m"), mac) || VerifyHMACSHA256([]byte("k"), []byte("n"), mac) {
		t.Fatal("HMAC verify wrong")
	}
	b := []byte("secret")
	Wipe(b)
	if !bytes.Equal(b, make([]byte, 6)) {
		t.Fatal("Wipe left bytes")
	}
	tok, err := RandomToken(32)
	if err != nil || len(tok) != 43 || strings.ContainsAny(tok, "+/=") {
		t.Fatalf("token %q %v", tok, err)
	}
	tok2, _ := RandomToken(32)
	if tok == tok2 {
		t.Fatal("two random tokens equal")
	}
}

func testKeyring(t testing.TB, versions ...uint32) *Keyring {
	t.Helper()
	var lines []string
	for _, v := range versions {
		e, err := GenerateMasterKeyEntry(v)
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, e)
	}
	kr, err := ParseKeyring(strings.Join(lines, "\n"))
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

func TestKeyringEnvelope(t *testing.T) {
	t.Parallel()
	kr := testKeyring(t, 1)
	secret := []byte("xoxb-canary-token")
	stored, err := kr.Encrypt(secret, "T1")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(stored, "canary") || !strings.HasPrefix(stored, "sr1.1.") {
		t.Fatalf("stored form %q", stored)
	}
	got, err := kr.Decrypt(stored, "T1")
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("decrypt: %v", err)
	}
	// Copied to another org's record: must not open.
	if _, err := kr.Decrypt(stored, "T2"); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("other owner: %v", err)
	}
	// Two encryptions of the same secret differ (fresh data key and nonce).
	again, _ := kr.Encrypt(secret, "T1")
	if again == stored {
		t.Fatal("deterministic envelope")
	}
	// Tamper with every character position of the stored form.
	for i := 0; i < len(stored); i++ {
		b := []byte(stored)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		if _, err := kr.Decrypt(string(b), "T1"); err == nil {
			t.Fatalf("tampered position %d decrypted", i)
		}
	}
	for _, bad := range []string{"", "sr1", "sr1.1.a", "sr2.1.AA.AA", "sr1.0.AA.AA", "sr1.x.AA.AA", "sr1.1.!!.AA"} {
		if _, err := kr.Decrypt(bad, "T1"); err == nil {
			t.Fatalf("malformed %q decrypted", bad)
		}
	}
}

func TestKeyringRotation(t *testing.T) {
	t.Parallel()
	v1 := testKeyring(t, 1)
	stored, err := v1.Encrypt([]byte("refresh-token"), "E1")
	if err != nil {
		t.Fatal(err)
	}
	entry, _ := GenerateMasterKeyEntry(2)
	// Rebuild a keyring holding version 1 and a new version 2.
	old := "1:" + base64.StdEncoding.EncodeToString(v1.keys[1])
	both, err := ParseKeyring(old + "," + entry)
	if err != nil {
		t.Fatal(err)
	}
	if both.ActiveVersion() != 2 || len(both.Versions()) != 2 {
		t.Fatalf("active %d versions %v", both.ActiveVersion(), both.Versions())
	}
	re, changed, err := both.Rewrap(stored, "E1")
	if err != nil || !changed {
		t.Fatalf("rewrap: %v changed=%v", err, changed)
	}
	// Only the wrapped data key changes, not the secret's ciphertext.
	if strings.Split(re, ".")[3] != strings.Split(stored, ".")[3] {
		t.Fatal("rewrap re-encrypted the secret")
	}
	if v, _ := StoredVersion(re); v != 2 {
		t.Fatalf("rewrapped version %d", v)
	}
	if _, changed, _ := both.Rewrap(re, "E1"); changed {
		t.Fatal("rewrap of an up-to-date secret changed it")
	}
	pt, err := both.Decrypt(re, "E1")
	if err != nil || string(pt) != "refresh-token" {
		t.Fatalf("decrypt rewrapped: %v", err)
	}
	// The old keyring cannot open the rewrapped secret, and says which version.
	if _, err := v1.Decrypt(re, "E1"); !errors.Is(err, ErrUnknownKeyVersion) {
		t.Fatalf("old keyring: %v", err)
	}
	if _, _, err := both.Rewrap(stored, "E2"); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("rewrap with the wrong owner: %v", err)
	}
}

func TestKeyringLoadAndErrors(t *testing.T) {
	entry, _ := GenerateMasterKeyEntry(7)
	dir := t.TempDir()
	path := filepath.Join(dir, "master.keys")
	if err := os.WriteFile(path, []byte("# comment\n\n"+entry+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	kr, err := LoadKeyring("SEALRELAY_TEST_KEYRING_UNSET", path)
	if err != nil || kr.ActiveVersion() != 7 {
		t.Fatalf("load from path: %v", err)
	}
	t.Setenv("SEALRELAY_TEST_KEYRING_FILE", path)
	if kr, err := LoadKeyring("SEALRELAY_TEST_KEYRING", ""); err != nil || kr.ActiveVersion() != 7 {
		t.Fatalf("load from _FILE: %v", err)
	}
	t.Setenv("SEALRELAY_TEST_KEYRING", entry)
	if _, err := LoadKeyring("SEALRELAY_TEST_KEYRING", ""); err == nil {
		t.Fatal("both env and _FILE accepted")
	}
	secretB64 := strings.SplitN(entry, ":", 2)[1]
	for _, bad := range []string{"", "7", "x:" + secretB64, "0:" + secretB64, "7:short", entry + "," + entry, "3:" + base64.StdEncoding.EncodeToString(make([]byte, 16))} {
		_, err := ParseKeyring(bad)
		if err == nil {
			t.Errorf("ParseKeyring(%q) accepted", bad)
			continue
		}
		if strings.Contains(err.Error(), secretB64) {
			t.Errorf("error leaks key material: %v", err)
		}
	}
	if _, err := LoadKeyring("SEALRELAY_TEST_KEYRING_UNSET", filepath.Join(dir, "missing")); err == nil {
		t.Fatal("missing file accepted")
	}
}

// TestSealedBoxCompatibleWithNaCl checks the ecdh-based sealed box against
// x/crypto's reference implementation in both directions.
func TestSealedBoxCompatibleWithNaCl(t *testing.T) {
	t.Parallel()
	kp := mustBox(t)
	pub := [KeySize]byte(kp.Public)
	for _, n := range []int{0, 1, 100, 4096} {
		msg := bytes.Repeat([]byte{byte(n)}, n)
		ours, err := SealAnonymous(msg, kp.Public)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := box.OpenAnonymous(nil, ours, &pub, &kp.private)
		if !ok || !bytes.Equal(got, msg) {
			t.Fatalf("len %d: x/crypto cannot open our sealed box", n)
		}
		theirs, err := box.SealAnonymous(nil, msg, &pub, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		got, err = kp.OpenAnonymous(theirs)
		if err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("len %d: we cannot open x/crypto's sealed box: %v", n, err)
		}
	}
}

func TestLowOrderPeerRefused(t *testing.T) {
	t.Parallel()
	kp := mustBox(t)
	var zero BoxPublicKey // the identity: a low-order point
	if err := ValidateBoxPublicKey(zero); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("ValidateBoxPublicKey(zero) = %v", err)
	}
	if err := ValidateBoxPublicKey(kp.Public); err != nil {
		t.Fatalf("ValidateBoxPublicKey(valid) = %v", err)
	}
	if _, err := SealAnonymous([]byte("x"), zero); err == nil {
		t.Fatal("sealed to a low-order key")
	}
	k := kp.Precompute(zero)
	if _, _, err := k.Seal([]byte("x")); err == nil {
		t.Fatal("shared key with a low-order peer sealed")
	}
	var nonce [NonceSize]byte
	if _, err := k.Open(make([]byte, 64), &nonce); err == nil {
		t.Fatal("shared key with a low-order peer opened")
	}
	// A sealed box whose ephemeral key is low-order does not open.
	if _, err := kp.OpenAnonymous(make([]byte, SealedBoxOverhead+8)); err == nil {
		t.Fatal("opened a box with a low-order ephemeral key")
	}
}

func TestHMACKey(t *testing.T) {
	t.Parallel()
	// RFC 4231 test case 2.
	want, _ := hex.DecodeString("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
	key := []byte("Jefe")
	k := NewHMACKey(key)
	key[0] = 'X' // NewHMACKey copied it
	cases := []struct {
		name string
		msg  string
		want []byte
	}{
		{"rfc4231", "what do ya want for nothing?", want},
		{"empty", "", HMACSHA256([]byte("Jefe"), nil)},
		{"long", strings.Repeat("m", 200), HMACSHA256([]byte("Jefe"), []byte(strings.Repeat("m", 200)))},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			for range 3 { // pooled states are reset between uses
				if got := k.Sum([]byte("p"), []byte(c.msg)); !bytes.Equal(got, append([]byte("p"), c.want...)) {
					t.Fatalf("Sum = %x, want p‖%x", got, c.want)
				}
			}
		})
	}
}
