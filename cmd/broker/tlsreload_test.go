package main

import (
	"bytes"
	"crypto/tls"
	"log/slog"
	"os"
	"testing"
	"time"
)

func TestCertReloader(t *testing.T) {
	certA, keyA, a := writeSelfSignedCert(t)
	certB, keyB, b := writeSelfSignedCert(t)
	var logs bytes.Buffer
	r, err := newCertReloader(certA, keyA, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	clock := time.Now()
	r.now = func() time.Time { return clock }
	leaf := func() []byte {
		t.Helper()
		c, err := r.GetCertificate(&tls.ClientHelloInfo{})
		if err != nil {
			t.Fatal(err)
		}
		return c.Certificate[0]
	}
	// replace overwrites the served files and moves their mtime forward.
	mtime := time.Now()
	replace := func(cert, key []byte) {
		t.Helper()
		mtime = mtime.Add(time.Minute)
		for _, f := range []struct {
			path string
			b    []byte
		}{{certA, cert}, {keyA, key}} {
			if err := os.WriteFile(f.path, f.b, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chtimes(f.path, mtime, mtime); err != nil {
				t.Fatal(err)
			}
		}
	}
	read := func(p string) []byte {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}

	if !bytes.Equal(leaf(), a.Raw) {
		t.Fatal("initial certificate not served")
	}
	replace(read(certB), read(keyB))
	if !bytes.Equal(leaf(), a.Raw) {
		t.Fatal("reloaded before the check interval")
	}
	clock = clock.Add(certReloadInterval)
	if !bytes.Equal(leaf(), b.Raw) {
		t.Fatal("renewed certificate not picked up")
	}
	// A broken renewal keeps the last good pair.
	replace([]byte("not a certificate"), read(keyB))
	clock = clock.Add(certReloadInterval)
	if !bytes.Equal(leaf(), b.Raw) {
		t.Fatal("broken renewal replaced the served certificate")
	}
	if !bytes.Contains(logs.Bytes(), []byte("does not load")) {
		t.Fatalf("broken renewal not logged: %s", logs.String())
	}
	if _, err := newCertReloader(certA, keyA, slog.New(slog.DiscardHandler)); err == nil {
		t.Fatal("newCertReloader accepted a broken pair")
	}
}
