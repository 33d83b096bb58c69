package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/slack-go/slack"
)

// TestPosterAgainstNetHTTP posts through a net/http server that checks
// the Slack signature: posts share one keep-alive connection, a non-200
// answer comes back as an error quoting its status and text, a chunked
// answer and a "Connection: close" one are read, and a connection the
// server closed while idle is redialled without losing the post.
func TestPosterAgainstNetHTTP(t *testing.T) {
	t.Parallel()
	const secret = "s3cret"
	var mode atomic.Value
	mode.Store("ok")
	var conns, posts atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		sv, err := slack.NewSecretsVerifier(r.Header, secret)
		if err == nil {
			_, _ = sv.Write(body)
			err = sv.Ensure()
		}
		if err != nil || r.URL.Path != "/base/slack/events" {
			http.Error(w, `{"ok":false,"error":"invalid signature"}`, http.StatusUnauthorized)
			return
		}
		if _, err := deliveredEventID(body); err != nil {
			http.Error(w, `{"ok":false,"error":"not a callback"}`, http.StatusBadRequest)
			return
		}
		posts.Add(1)
		switch mode.Load() {
		case "refuse":
			http.Error(w, `{"ok":false,"error":"store unavailable"}`, http.StatusServiceUnavailable)
		case "chunked":
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
			fmt.Fprint(w, `{"ok":true}`)
		case "close":
			w.Header().Set("Connection", "close")
			fmt.Fprint(w, `{"ok":true}`)
		default:
			fmt.Fprint(w, `{"ok":true}`)
		}
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	target, err := newBrokerTarget(srv.URL + "/base/")
	if err != nil {
		t.Fatal(err)
	}
	p := newPoster(target, newBodyTemplate("T1", "RUN"), []byte(secret))
	defer p.close()
	n := 0
	postIt := func() error {
		n++
		return p.post(p.build(n, 0, n, time.Now().Unix()))
	}
	steps := []struct {
		mode      string
		wantErr   string // "" = accepted
		wantConns int32  // connections opened so far
		before    func()
	}{
		{mode: "ok", wantConns: 1},
		{mode: "ok", wantConns: 1},
		{mode: "refuse", wantErr: "503 Service Unavailable: {\"ok\":false,\"error\":\"store unavailable\"}", wantConns: 1},
		{mode: "chunked", wantConns: 1},
		{mode: "close", wantConns: 1},
		{mode: "ok", wantConns: 2}, // the server asked to close: a new connection
		{mode: "ok", wantConns: 3, before: srv.CloseClientConnections},
	}
	for i, st := range steps {
		if st.before != nil {
			st.before()
		}
		mode.Store(st.mode)
		err := postIt()
		if (st.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), st.wantErr)) {
			t.Fatalf("step %d (%s): post = %v, want error %q", i, st.mode, err, st.wantErr)
		}
		if got := conns.Load(); got != st.wantConns {
			t.Fatalf("step %d (%s): %d connections, want %d", i, st.mode, got, st.wantConns)
		}
	}
	if got := posts.Load(); got != int32(len(steps)) {
		t.Fatalf("the server saw %d signed posts, want %d", got, len(steps))
	}
	p.secretForTest([]byte("wrong"))
	if err := postIt(); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("post with a wrong secret = %v, want a 401", err)
	}
}

// TestPosterReadsRawAnswers reads the HTTP/1.x answers net/http's server
// does not send by itself and refuses malformed ones.
func TestPosterReadsRawAnswers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, answer string
		wantErr      string
		keep         bool
	}{
		{name: "content length", answer: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", keep: true},
		{name: "informational first", answer: "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n", keep: true},
		{name: "chunked with trailer", answer: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2;x=y\r\nok\r\n0\r\nX-T: 1\r\n\r\n", keep: true},
		{name: "HTTP/1.0 until close", answer: "HTTP/1.0 200 OK\r\n\r\nbody until the end"},
		{name: "HTTP/1.0 keep-alive", answer: "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n", keep: true},
		{name: "long error text", answer: "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 5000\r\n\r\n" + strings.Repeat("e", 5000),
			wantErr: "500 Internal Server Error: " + strings.Repeat("e", maxAnswerKept), keep: true},
		{name: "garbage", answer: "SMTP ready\r\n\r\n", wantErr: "malformed"},
		{name: "bad length", answer: "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", wantErr: "malformed"},
		{name: "short body", answer: "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nok", wantErr: "EOF"},
		{name: "bad chunk", answer: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", wantErr: "malformed"},
		{name: "no answer", answer: "", wantErr: "EOF"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			addr, requests := rawServer(t, tc.answer)
			target, err := newBrokerTarget("http://" + addr)
			if err != nil {
				t.Fatal(err)
			}
			p := newPoster(target, newBodyTemplate("T1", "RUN"), []byte("s"))
			defer p.close()
			err = p.post(p.build(1, 0, 1, time.Now().Unix()))
			if (tc.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("post = %v, want error %q", err, tc.wantErr)
			}
			if err == nil && (p.conn != nil) != tc.keep {
				t.Fatalf("connection kept = %v, want %v", p.conn != nil, tc.keep)
			}
			if got := <-requests; !strings.HasPrefix(got, "POST /slack/events HTTP/1.1\r\n") {
				t.Fatalf("the server read %q", got)
			}
		})
	}
}

// rawServer accepts one connection, reads one request, writes answer and
// closes; requests receives the request's first line and headers.
func rawServer(t *testing.T, answer string) (string, <-chan string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	requests := make(chan string, 1)
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		c, err := ln.Accept()
		if err != nil {
			requests <- ""
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		var head strings.Builder
		for {
			l, err := br.ReadString('\n')
			head.WriteString(l)
			if err != nil || l == "\r\n" {
				break
			}
		}
		requests <- head.String()
		_, _ = io.WriteString(c, answer)
	})
	return ln.Addr().String(), requests
}
