package crypto

import (
	"bytes"
	"sync"
	"testing"

	"golang.org/x/crypto/nacl/box"
)

// TestMultiSealerCompatible: every copy is a crypto_box_seal box that both
// OpenAnonymous and x/crypto's box.OpenAnonymous open, the copies share the
// ephemeral key, and a recipient sealed to twice gets a fresh one.
func TestMultiSealerCompatible(t *testing.T) {
	t.Parallel()
	m, err := NewMultiSealer()
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("one event, several agents")
	kps := []*BoxKeyPair{mustBox(t), mustBox(t), mustBox(t), mustBox(t)}
	sealed := make([][]byte, len(kps))
	var wg sync.WaitGroup
	for i, kp := range kps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sealed[i], _ = m.Seal(msg, kp.Public)
		}()
	}
	wg.Wait()
	for i, kp := range kps {
		s := sealed[i]
		if len(s) != len(msg)+SealedBoxOverhead {
			t.Fatalf("copy %d: %d bytes", i, len(s))
		}
		if !bytes.Equal(s[:KeySize], sealed[0][:KeySize]) {
			t.Errorf("copy %d: ephemeral key not shared", i)
		}
		got, err := kp.OpenAnonymous(s)
		if err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("copy %d: OpenAnonymous: %q, %v", i, got, err)
		}
		pub, priv := [32]byte(kp.Public), kp.private
		if got, ok := box.OpenAnonymous(nil, s, &pub, &priv); !ok || !bytes.Equal(got, msg) {
			t.Fatalf("copy %d: nacl/box.OpenAnonymous fails", i)
		}
		for j, other := range kps {
			if j != i {
				if _, err := other.OpenAnonymous(s); err == nil {
					t.Fatalf("copy %d opens with key %d", i, j)
				}
			}
		}
	}
	again, err := m.Seal([]byte("a second message"), kps[0].Public)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(again[:KeySize], sealed[0][:KeySize]) {
		t.Fatal("second seal to one recipient reused the ephemeral key")
	}
	if got, err := kps[0].OpenAnonymous(again); err != nil || string(got) != "a second message" {
		t.Fatalf("second seal: %q, %v", got, err)
	}
	if _, err := m.Seal(msg, BoxPublicKey{}); err == nil {
		t.Fatal("sealed to the all-zero (low-order) key")
	}
}

// BenchmarkMultiSeal is the per-copy cost of MultiSealer.Seal for a
// ten-agent fan-out (one NewMultiSealer per ten copies).
func BenchmarkMultiSeal(b *testing.B) {
	var kps []*BoxKeyPair
	for range 10 {
		kps = append(kps, mustBox(b))
	}
	b.SetBytes(int64(len(benchMsg)))
	var m *MultiSealer
	i := 0
	for b.Loop() {
		if i%10 == 0 {
			m, _ = NewMultiSealer()
		}
		if _, err := m.Seal(benchMsg, kps[i%10].Public); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
