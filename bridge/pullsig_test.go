package bridge

import (
	"fmt"
	"sync"
	"testing"

	"github.com/sealrelay/sealrelay/crypto"
	"github.com/sealrelay/sealrelay/protocol"
)

// TestPullSigMemo: the pull signature is reused exactly when the signed
// bytes and the signing key are those of the previous pull, and whatever
// is returned is the signature a fresh Sign would give.
func TestPullSigMemo(t *testing.T) {
	t.Parallel()
	k1, err := crypto.GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	k2, err := crypto.GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	k1again, err := crypto.ParseSigningKey(k1.SeedString()) // same key, another value
	if err != nil {
		t.Fatal(err)
	}
	const org, ts = "T0PSIGMEM", int64(1771465000)
	pull := func(ts int64, maxM, wait int) []byte { return protocol.PullSigningBytes(org, ts, maxM, wait) }
	var m pullSigMemo
	steps := []struct {
		name   string
		key    *crypto.SigningKey
		signed []byte
		reused bool
	}{
		{"first pull", k1, pull(ts, 10, 20), false},
		{"same second, same parameters", k1, pull(ts, 10, 20), true},
		{"and again", k1, pull(ts, 10, 20), true},
		{"next second", k1, pull(ts+1, 10, 20), false},
		{"backlog: other max_messages", k1, pull(ts+1, 100, 20), false},
		{"other wait_seconds", k1, pull(ts+1, 100, 0), false},
		{"other org", k1, protocol.PullSigningBytes("T0PSIGOTH", ts+1, 100, 0), false},
		{"back to the first bytes", k1, pull(ts, 10, 20), false},
		{"other key, same bytes", k2, pull(ts, 10, 20), false},
		{"first key again, same bytes", k1, pull(ts, 10, 20), false},
		{"same key parsed again", k1again, pull(ts, 10, 20), true},
		{"one byte more", k1, append(pull(ts, 10, 20), ' '), false},
	}
	for _, st := range steps {
		sig, reused := m.signature(st.key, st.signed)
		if reused != st.reused {
			t.Errorf("%s: reused = %v, want %v", st.name, reused, st.reused)
		}
		if want := protocol.EncodeSignature(st.key.Sign(st.signed)); sig != want {
			t.Errorf("%s: signature %s, want %s", st.name, sig, want)
		}
		if !protocol.VerifySignature(st.key.Public(), st.signed, sig) {
			t.Errorf("%s: signature does not verify", st.name)
		}
	}
}

// TestPullSigMemoConcurrent: concurrent callers with different bytes and
// keys each get the signature of their own bytes under their own key.
func TestPullSigMemoConcurrent(t *testing.T) {
	t.Parallel()
	keys := make([]*crypto.SigningKey, 2)
	for i := range keys {
		k, err := crypto.GenerateSigningKey()
		if err != nil {
			t.Fatal(err)
		}
		keys[i] = k
	}
	type job struct {
		key    *crypto.SigningKey
		signed []byte
		want   string
	}
	var jobs []job
	for i := range 6 {
		k := keys[i%2]
		signed := protocol.PullSigningBytes("T0PSIGCON", int64(1771465000+i/3), 10, 20)
		jobs = append(jobs, job{k, signed, protocol.EncodeSignature(k.Sign(signed))})
	}
	var m pullSigMemo
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				j := jobs[(g+i)%len(jobs)]
				if sig, _ := m.signature(j.key, j.signed); sig != j.want {
					errs <- fmt.Errorf("goroutine %d step %d: wrong signature for its bytes", g, i)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
