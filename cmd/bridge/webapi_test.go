package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slack-go/slack"

	"github.com/sealrelay/sealrelay/bridge/bridgetest"
)

// TestRunWebAPI runs `bridge run` with a local token and an allowed web
// origin, calls the Slack Web API with slack-go and checks the flags took
// effect and that neither the arguments nor Slack's answer reach the logs.
func TestRunWebAPI(t *testing.T) {
	t.Parallel()
	fb := bridgetest.New(t, org)
	fb.AnswerCalls(func(c bridgetest.Call) bridgetest.CallAnswer {
		if c.Method == "auth.test" {
			return bridgetest.CallAnswer{Body: bridgetest.AuthTestBody(org)}
		}
		return bridgetest.CallAnswer{Body: []byte(`{"ok":true,"channel":"C1","ts":"1.2","message":{"text":"SECRET-ANSWER"}}`)}
	})
	cfgPath := filepath.Join(t.TempDir(), "bridge.env")
	if code, _, errs := register(t, fb, cfgPath); code != 0 {
		t.Fatal(errs)
	}
	tokenFile := filepath.Join(t.TempDir(), "local-token")
	if err := os.WriteFile(tokenFile, []byte("local-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		done <- realMain(ctx, []string{"run", "--config", cfgPath, "--state-dir", t.TempDir(), "--listen", "127.0.0.1:0",
			"--local-token-file", tokenFile, "--web-api-allow-origin", "http://localhost:5173, https://tool.example",
			"--wait-seconds", "5", "--log-level", "debug"}, nil, io.Discard, pw)
		pw.Close()
	}()
	addrCh := make(chan string, 1)
	var logs bytes.Buffer
	logsDone := make(chan struct{})
	go func() {
		defer close(logsDone)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			logs.WriteString(sc.Text() + "\n")
			if m := addrRe.FindStringSubmatch(sc.Text()); m != nil {
				addrCh <- m[1]
			}
		}
	}()
	var addr string
	select {
	case addr = <-addrCh:
	case <-time.After(20 * time.Second):
		t.Fatal("bridge run did not start")
	}
	api := slack.New("local-secret", slack.OptionAPIURL("http://"+addr+"/api/"))
	if r, err := api.AuthTest(); err != nil || r.UserID != "U0BOT00001" {
		t.Fatalf("auth.test: %+v %v", r, err)
	}
	if _, ts, err := api.PostMessage("C1", slack.MsgOptionText("SECRET-ARG", false)); err != nil || ts != "1.2" {
		t.Fatalf("chat.postMessage: %q %v", ts, err)
	}
	if _, err := slack.New("xoxb-other", slack.OptionAPIURL("http://"+addr+"/api/")).AuthTest(); err == nil || err.Error() != "invalid_auth" {
		t.Fatalf("wrong token: %v", err)
	}
	for origin, want := range map[string]int{"https://tool.example": 200, "https://evil.example": 403} {
		req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/api/chat.postMessage", strings.NewReader("channel=C1&text=x&token=local-secret"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", origin)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("Origin %s: %d, want %d", origin, resp.StatusCode, want)
		}
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit %d", code)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("run did not stop on cancel")
	}
	<-logsDone
	for _, secret := range []string{"SECRET-ARG", "SECRET-ANSWER", "local-secret", fb.AccessToken} {
		if strings.Contains(logs.String(), secret) {
			t.Fatalf("logs leak %q:\n%s", secret, logs.String())
		}
	}
	if !strings.Contains(logs.String(), `msg="web api call" method=chat.postMessage outcome=ok`) {
		t.Fatalf("no web api log line:\n%s", logs.String())
	}
}

func TestRunWebAPIBadOrigin(t *testing.T) {
	t.Parallel()
	fb := bridgetest.New(t, org)
	cfgPath := filepath.Join(t.TempDir(), "bridge.env")
	if code, _, errs := register(t, fb, cfgPath); code != 0 {
		t.Fatal(errs)
	}
	var out, errb bytes.Buffer
	code := realMain(t.Context(), []string{"run", "--config", cfgPath, "--state-dir", t.TempDir(), "--listen", "127.0.0.1:0",
		"--web-api-allow-origin", "localhost:5173"}, nil, &out, &errb)
	if code != 1 || !strings.Contains(errb.String(), "web API origin") {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
}
