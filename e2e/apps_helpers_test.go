package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sealrelay/sealrelay/internal/slackfake"
)

// appToken is the only token the Slack apps under test are given: any
// string works, the real bot token stays on the broker.
const appToken = "xoxb-not-a-real-token"

// boltDir is the Bolt for JavaScript app's directory (its dependencies are
// installed by ./scripts/test.sh with npm ci).
const boltDir = "apps/bolt"

// requireBolt fails the test, saying what to run, unless node and the
// pinned @slack/bolt are installed.
func requireBolt(t *testing.T) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node is not installed: the Bolt app test needs Node.js 18 or later (apt-get install nodejs npm), then `cd e2e/apps/bolt && npm ci` (./scripts/test.sh does both checks and the npm ci)")
	}
	raw, err := os.ReadFile(filepath.Join(boltDir, "node_modules", "@slack", "bolt", "package.json"))
	if err != nil {
		t.Fatalf("@slack/bolt is not installed in e2e/apps/bolt: run `cd e2e/apps/bolt && npm ci` (./scripts/test.sh does): %v", err)
	}
	var pkg struct {
		Version string `json:"version"`
	}
	if err := json.Unmarshal(raw, &pkg); err != nil || pkg.Version != "5.1.0" {
		t.Fatalf("e2e/apps/bolt has @slack/bolt %q installed, package-lock.json pins 5.1.0: run `cd e2e/apps/bolt && npm ci`", pkg.Version)
	}
	return node
}

// appsDeploy is a deployment for the app tests: Redis, the fake Slack, one
// broker replica (with brokerArgs added to its flags), the install and
// `bridge register`. The bridge is started by the caller, forwarding to
// its app.
func appsDeploy(t *testing.T, brokerArgs ...string) (*env, *replica) {
	t.Helper()
	e := newEnv(t)
	e.brokerArgs = brokerArgs
	r := e.startReplica("A")
	org, token := e.install(r)
	if org != teamID {
		t.Fatalf("install page org id %q, want %q", org, teamID)
	}
	e.register(r.url, org, token)
	return e, r
}

// realBotToken is the bot token the fake Slack issued at the install (the
// broker checks it with auth.test right away).
func realBotToken(t *testing.T, e *env) string {
	t.Helper()
	for _, c := range e.fake.Calls() {
		if c.Method == "auth.test" && strings.HasPrefix(c.Token, "xoxb-") {
			return c.Token
		}
	}
	t.Fatal("the fake Slack saw no auth.test with a bot token at the install")
	return ""
}

// startBridgeTo runs `bridge run` forwarding to forwardURL (events,
// interactivity and commands alike), on a fresh local API port.
func (ag *agent) startBridgeTo(forwardURL string) {
	e := ag.e
	t := e.t
	t.Helper()
	secretFile := filepath.Join(e.dir, "forward-secret")
	if err := os.WriteFile(secretFile, []byte(forwardSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for attempt := 0; attempt < 3; attempt++ {
		ag.bridgePort = freePort(t)
		ag.bridgeRuns++
		listen := fmt.Sprintf("127.0.0.1:%d", ag.bridgePort)
		p := startProc(t, fmt.Sprintf("bridge %s run #%d", ag.name, ag.bridgeRuns), filepath.Join(e.dir, "bridge-"+ag.name+".log"), minimalEnv(e.dir), bridgeBin, "run",
			"--config", ag.bridgeCfg,
			"--state-dir", filepath.Join(ag.bridgeDir, "state"),
			"--listen", listen,
			"--forward-url", forwardURL,
			"--forward-signing-secret-file", secretFile,
			"--log-format", "json",
		)
		if waitHTTP("http://"+listen+"/health", p, 15*time.Second) {
			ag.bridge = p
			ag.bridgeAPI = "http://" + listen
			return
		}
		p.stop(t)
		if !strings.Contains(p.log(), "address already in use") {
			t.Fatalf("bridge did not become ready:\n%s", p.tail(40))
		}
	}
	t.Fatal("bridge: no free port after 3 attempts")
}

// apiURL is the bridge's Slack Web API base URL, as apps are configured
// with it (docs/clients.md).
func (ag *agent) apiURL() string { return ag.bridgeAPI + "/api/" }

// jsonApp is a child process (the Bolt app) that reports on stdout as one
// JSON object per line; its stderr goes to a log file.
type jsonApp struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	err     error

	mu      sync.Mutex
	lines   []map[string]any
	raw     []string
	changed chan struct{} // closed and replaced on every new line
}

// startJSONApp starts bin with args in dir and the given environment only.
func startJSONApp(t *testing.T, name, dir, logPath string, env []string, bin string, args ...string) *jsonApp {
	t.Helper()
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir, cmd.Env, cmd.Stderr = dir, env, f
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	dieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	a := &jsonApp{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{}), changed: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			a.add(sc.Text())
		}
		a.err = cmd.Wait()
		f.Close()
		close(a.done)
	}()
	t.Cleanup(func() {
		a.stop(t)
		if t.Failed() {
			t.Logf("--- %s stdout:\n%s\n--- %s stderr (%s):\n%s", a.name, strings.Join(a.rawLines(), "\n"), a.name, a.logPath, a.stderr())
		}
	})
	return a
}

func (a *jsonApp) add(line string) {
	var m map[string]any
	if json.Unmarshal([]byte(line), &m) != nil {
		m = nil
	}
	a.mu.Lock()
	a.raw = append(a.raw, line)
	if m != nil {
		a.lines = append(a.lines, m)
	}
	close(a.changed)
	a.changed = make(chan struct{})
	a.mu.Unlock()
}

func (a *jsonApp) rawLines() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.raw...)
}

func (a *jsonApp) stderr() string {
	b, _ := os.ReadFile(a.logPath)
	return string(b)
}

// stop ends the process with SIGTERM (SIGKILL after 5 s).
func (a *jsonApp) stop(t *testing.T) {
	select {
	case <-a.done:
		return
	default:
	}
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.done:
	case <-time.After(5 * time.Second):
		t.Logf("%s did not stop within 5 s of SIGTERM; killing it", a.name)
		_ = a.cmd.Process.Signal(syscall.SIGKILL)
		<-a.done
	}
}

// waitLine waits for the first reported line (from the start) that
// satisfies pred and returns it; it fails the test when d passes or the
// process exits first.
func (a *jsonApp) waitLine(t *testing.T, what string, d time.Duration, pred func(map[string]any) bool) map[string]any {
	t.Helper()
	return a.waitScan(t, what, d, func(lines []map[string]any) map[string]any {
		for _, l := range lines {
			if pred(l) {
				return l
			}
		}
		return nil
	})
}

// waitScan waits until scan, given every line reported so far, returns a
// line; it fails the test when d passes or the process exits first.
func (a *jsonApp) waitScan(t *testing.T, what string, d time.Duration, scan func([]map[string]any) map[string]any) map[string]any {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		a.mu.Lock()
		l := scan(a.lines)
		changed := a.changed
		a.mu.Unlock()
		if l != nil {
			return l
		}
		select {
		case <-changed:
		case <-a.done:
			a.mu.Lock()
			l := scan(a.lines)
			a.mu.Unlock()
			if l != nil {
				return l
			}
			t.Fatalf("%s exited (%v) before %s", a.name, a.err, what)
		case <-timer.C:
			t.Fatalf("timed out after %s waiting for %s from %s", d, what, a.name)
		}
	}
}

// waitCall waits for the app's report of its (after+1)-th call of method
// and fails the test unless Slack (through the bridge and broker)
// answered ok.
func (a *jsonApp) waitCall(t *testing.T, method string, after int) map[string]any {
	t.Helper()
	l := a.waitScan(t, "its "+method+" call", 20*time.Second, func(lines []map[string]any) map[string]any {
		n := 0
		for _, m := range lines {
			if m["kind"] == "call" && m["method"] == method {
				if n++; n > after {
					return m
				}
			}
		}
		return nil
	})
	if l["ok"] != true {
		t.Fatalf("%s: %s answered %v", a.name, method, l)
	}
	res, _ := l["result"].(map[string]any)
	return res
}

// postSlackEvent posts a signed Events API callback wrapping event.
func (e *env) postSlackEvent(r *replica, eventID string, event map[string]any) error {
	body, err := json.Marshal(map[string]any{
		"token": "e2e-verification", "team_id": e.orgID, "api_app_id": "A0FAKE001",
		"event": event, "type": "event_callback", "event_id": eventID, "event_time": time.Now().Unix(),
		"authorizations": []map[string]any{{"team_id": e.orgID, "user_id": botUserID, "is_bot": true}},
	})
	if err != nil {
		return err
	}
	return postSigned(r, "/slack/events", "application/json", body, 0)
}

// postInteraction posts a signed interactivity request (payload=<json>).
func (e *env) postInteraction(r *replica, payload map[string]any) error {
	b, err := json.Marshal(payload)
	if err != nil {
		return err
	}
	return postSigned(r, "/slack/interactivity", "application/x-www-form-urlencoded",
		[]byte(url.Values{"payload": {string(b)}}.Encode()), 0)
}

// postCommand posts a signed slash command.
func (e *env) postCommand(r *replica, command, text, channel, triggerID string) error {
	form := url.Values{"command": {command}, "text": {text}, "team_id": {e.orgID}, "team_domain": {"e2e"},
		"user_id": {"U0HUMAN"}, "user_name": {"human"}, "channel_id": {channel}, "channel_name": {"apps"},
		"api_app_id": {"A0FAKE001"}, "token": {"e2e-verification"}, "trigger_id": {triggerID},
		"response_url": {"https://hooks.slack.invalid/commands/1"}}
	return postSigned(r, "/slack/commands", "application/x-www-form-urlencoded", []byte(form.Encode()), 0)
}

// blockActionsPayload is a button click on message ts in channel.
func (e *env) blockActionsPayload(channel, ts, actionID, triggerID string) map[string]any {
	return map[string]any{
		"type": "block_actions", "token": "e2e-verification", "api_app_id": "A0FAKE001",
		"team":       map[string]any{"id": e.orgID, "domain": "e2e"},
		"user":       map[string]any{"id": "U0HUMAN", "username": "human", "team_id": e.orgID},
		"channel":    map[string]any{"id": channel, "name": "apps"},
		"container":  map[string]any{"type": "message", "message_ts": ts, "channel_id": channel, "is_ephemeral": false},
		"message":    map[string]any{"type": "message", "ts": ts, "text": "approve?", "user": botUserID},
		"trigger_id": triggerID, "response_url": "https://hooks.slack.invalid/actions/1",
		"actions": []map[string]any{{"type": "button", "action_id": actionID, "block_id": "relay_actions",
			"value": "yes", "text": map[string]any{"type": "plain_text", "text": "Approve"}, "action_ts": "1700000300.000001"}},
	}
}

// viewSubmissionPayload submits the relay_modal with note.
func (e *env) viewSubmissionPayload(channel, note, triggerID string) map[string]any {
	return map[string]any{
		"type": "view_submission", "token": "e2e-verification", "api_app_id": "A0FAKE001",
		"team":       map[string]any{"id": e.orgID, "domain": "e2e"},
		"user":       map[string]any{"id": "U0HUMAN", "username": "human", "team_id": e.orgID},
		"trigger_id": triggerID,
		"view": map[string]any{"id": "V0APPS0001", "type": "modal", "callback_id": "relay_modal",
			"private_metadata": channel, "team_id": e.orgID, "app_id": "A0FAKE001", "hash": "1700000400.abc",
			"state": map[string]any{"values": map[string]any{"note": map[string]any{
				"note_input": map[string]any{"type": "plain_text_input", "value": note}}}}},
		"response_urls": []any{},
	}
}

// callsSince returns the fake Slack's calls after the first n.
func callsSince(e *env, n int) []slackfake.Call {
	calls := e.fake.Calls()
	if n > len(calls) {
		return nil
	}
	return calls[n:]
}

// findCall returns the first call of method whose params contain every
// key/value of want ("" values only require the key), or fails the test.
func findCall(t *testing.T, calls []slackfake.Call, method string, want map[string]string) slackfake.Call {
	t.Helper()
next:
	for _, c := range calls {
		if c.Method != method {
			continue
		}
		for k, v := range want {
			if !c.Params.Has(k) || (v != "" && c.Params.Get(k) != v) {
				continue next
			}
		}
		return c
	}
	var seen []string
	for _, c := range calls {
		seen = append(seen, c.Method+" "+c.Params.Encode())
	}
	t.Fatalf("the fake Slack saw no %s with %v; it saw:\n%s", method, want, strings.Join(seen, "\n"))
	return slackfake.Call{}
}

// checkTokens checks that every Web API call in calls carried the installation's bot token and nothing else.
func checkTokens(t *testing.T, calls []slackfake.Call, botToken string) {
	t.Helper()
	for _, c := range calls {
		switch c.Method {
		case "authorize", "oauth.v2.access":
			continue // the OAuth install, on the broker
		case "upload":
			// The upload URL is a capability Slack hands out: the app
			// posts the bytes there itself, with no bot token.
			continue
		}
		if c.Token != botToken {
			t.Errorf("the fake Slack saw %s with token %q, want the installation's bot token", c.Method, redact(c.Token))
		}
	}
}

// redact keeps a token's prefix only.
func redact(s string) string {
	if len(s) > 9 {
		return s[:9] + "…(" + strconv.Itoa(len(s)) + " bytes)"
	}
	return s
}

// percentile returns the p-th percentile (0 < p ≤ 100) of sorted d.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p/100+0.5) - 1
	i = max(0, min(i, len(sorted)-1))
	return sorted[i]
}
