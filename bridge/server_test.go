package bridge_test

import (
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/sealrelay/sealrelay/bridge"
	"github.com/sealrelay/sealrelay/bridge/bridgetest"
)

// The local server closes connections whose request never completes
// (unfinished headers or body), while GET /events keeps streaming past the
// write timeout because it extends its deadline per write.
func TestLocalServerTimeouts(t *testing.T) {
	t.Parallel()
	fb := bridgetest.New(t, testOrg)
	cfg := baseConfig(t, newIdentity(t, fb), t.TempDir())
	cfg.Stream = true
	ln := apiListener(t)
	cfg.ListenAddr = ln.Addr().String()
	r := start(t, cfg)
	const short = 400 * time.Millisecond // generous: a loaded machine must still start the handler in time
	srv := bridge.NewLocalServerWithTimeouts(r.b.Handler(), short, short, short, short)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	addr := ln.Addr().String()

	cases := []struct{ name, req string }{
		{"unfinished headers", "POST /send HTTP/1.1\r\nHost: " + addr + "\r\nContent-Type: app"},
		{"unfinished body", "POST /send HTTP/1.1\r\nHost: " + addr + "\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"channel\":"},
		{"idle keep-alive", "GET /health HTTP/1.1\r\nHost: " + addr + "\r\n\r\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := io.WriteString(c, tc.req); err != nil {
				t.Fatal(err)
			}
			// The server must end the connection by itself; the deadline
			// here only keeps a broken server from hanging the test.
			_ = c.SetReadDeadline(time.Now().Add(testTimeout))
			_, err = io.ReadAll(c)
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatal("the server kept the connection open")
			}
		})
	}

	t.Run("stream outlives the write timeout", func(t *testing.T) {
		t.Parallel()
		base := "http://" + addr
		s := openStream(t, base, "")
		m1 := fb.Enqueue(slackEvent("a", "C1", "6.1"))
		if got := s.next(t); !strings.Contains(got.data, m1) {
			t.Fatal(got.data)
		}
		// Let the server's write timeout pass (the scenario, not a wait for
		// an event), then the stream must still deliver.
		time.Sleep(4 * short)
		m2 := fb.Enqueue(slackEvent("b", "C1", "6.2"))
		if got := s.next(t); !strings.Contains(got.data, m2) {
			t.Fatal(got.data)
		}
	})
}
