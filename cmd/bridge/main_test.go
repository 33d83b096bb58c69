package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sealrelay/sealrelay/bridge"
	"github.com/sealrelay/sealrelay/bridge/bridgetest"
	"github.com/sealrelay/sealrelay/protocol"
)

const org = "T0CLI0001"

func register(t *testing.T, fb *bridgetest.FakeBroker, cfgPath string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := realMain(t.Context(), []string{"register", "--broker-url", fb.URL(), "--workspace-id", org,
		"--auth-code", bridgetest.RegistrationToken, "--config", cfgPath}, strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

func TestRegisterCommand(t *testing.T) {
	t.Parallel()
	fb := bridgetest.New(t, org)
	cfgPath := filepath.Join(t.TempDir(), "bridge.env")
	code, out, errs := register(t, fb, cfgPath)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{"Registered", "bridge run --config " + cfgPath, "curl -N http://127.0.0.1:7890/events"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if st, err := os.Stat(cfgPath); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("config file: %v %v", st, err)
	}
	// The token is single use: the second run maps the broker phrase.
	before, _ := os.ReadFile(cfgPath)
	code, _, errs = register(t, fb, cfgPath)
	if code != 1 || !strings.Contains(errs, "registration token already used — re-run the Slack install and use the new token") {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if !strings.Contains(errs, "already holds a registration") {
		t.Errorf("no note about replacing the registration: %s", errs)
	}
	if after, _ := os.ReadFile(cfgPath); !bytes.Equal(before, after) {
		t.Error("failed registration changed the config file")
	}
}

func TestRegisterCommandUsage(t *testing.T) {
	t.Parallel()
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"register", "--broker-url", "https://b.example"}, 1, "missing --org-id, --registration-token"},
		{[]string{"register", "--broker-url", "http://b.example", "--org-id", "T1", "--registration-token", "x"}, 1, "plain http"},
		{[]string{"register", "extra"}, 2, "unexpected argument"},
		{[]string{"frobnicate"}, 2, "unknown command"},
		{nil, 2, "usage"},
		{[]string{"run", "--config", "/nonexistent/bridge.env"}, 1, "run `bridge register` first"},
		{[]string{"run", "--log-level", "loud"}, 1, "--log-level"},
	}
	for _, tc := range cases {
		var out, errb bytes.Buffer
		code := realMain(t.Context(), tc.args, strings.NewReader(""), &out, &errb)
		if code != tc.code || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want %d with %q", tc.args, code, errb.String(), tc.code, tc.want)
		}
	}
}

func TestRunRefusesRemoteListen(t *testing.T) {
	t.Parallel()
	fb := bridgetest.New(t, org)
	cfgPath := filepath.Join(t.TempDir(), "bridge.env")
	if code, _, errs := register(t, fb, cfgPath); code != 0 {
		t.Fatal(errs)
	}
	var out, errb bytes.Buffer
	code := realMain(t.Context(), []string{"run", "--config", cfgPath, "--state-dir", t.TempDir(), "--listen", "0.0.0.0:0"}, nil, &out, &errb)
	if code != 1 || !strings.Contains(errb.String(), "--allow-remote") {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
}

var addrRe = regexp.MustCompile(`msg="local API listening" addr=(\S+)`)

func TestRunCommandEndToEnd(t *testing.T) {
	t.Parallel()
	fb := bridgetest.New(t, org)
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
			"--local-token-file", tokenFile, "--wait-seconds", "5", "--log-level", "debug"}, nil, io.Discard, pw)
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
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/send", strings.NewReader(`{"channel":"C1","text":"from cli"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer local-secret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var body map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if resp.StatusCode != 200 || body["ok"] != true {
		t.Fatalf("send: %d %v", resp.StatusCode, body)
	}
	if s := fb.Sends(); len(s) != 1 || s[0].Body.Text != "from cli" {
		t.Fatalf("broker got %+v", s)
	}
	// An inbound event is delivered to the stream and acked.
	fb.Enqueue(protocol.Envelope{Source: "slack", Type: "event_callback", Payload: json.RawMessage(`{"type":"event_callback","event":{"type":"message","channel":"C1","ts":"1.1","text":"SECRET-TEXT"}}`)})
	for {
		ch := fb.WaitChange()
		if fb.Pending() == 0 {
			break
		}
		select {
		case <-ch:
		case <-time.After(20 * time.Second):
			t.Fatal("event not acked")
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
	if strings.Contains(logs.String(), "SECRET-TEXT") || strings.Contains(logs.String(), "from cli") || strings.Contains(logs.String(), fb.AccessToken) {
		t.Fatalf("logs leak message text or the token:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), "delivered") {
		t.Fatalf("no delivery log line:\n%s", logs.String())
	}
	// The file is still usable by the library.
	if _, err := bridge.LoadIdentity(cfgPath, func(string) (string, bool) { return "", false }, false); err != nil {
		t.Fatal(err)
	}
}

func TestUnregisterCommand(t *testing.T) {
	t.Parallel()
	fb := bridgetest.New(t, org)
	cfgPath := filepath.Join(t.TempDir(), "bridge.env")
	if code, _, errs := register(t, fb, cfgPath); code != 0 {
		t.Fatal(errs)
	}
	var out, errb bytes.Buffer
	if code := realMain(t.Context(), []string{"unregister", "--config", cfgPath}, nil, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "Unregistered") {
		t.Fatalf("output %q", out.String())
	}
	data, _ := os.ReadFile(cfgPath)
	if strings.Contains(string(data), bridge.EnvServerSigningKey) || strings.Contains(string(data), fb.AccessToken) {
		t.Fatalf("keys left in the file:\n%s", data)
	}
	out.Reset()
	errb.Reset()
	if code := realMain(t.Context(), []string{"run", "--config", cfgPath, "--state-dir", t.TempDir()}, nil, &out, &errb); code != 1 || !strings.Contains(errb.String(), "bridge register") {
		t.Fatalf("run after unregister: exit %d: %s", code, errb.String())
	}
}
