package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/slack-go/slack"

	"github.com/sealrelay/sealrelay/crypto"
	"github.com/sealrelay/sealrelay/internal/slackfake"
	"github.com/sealrelay/sealrelay/internal/testredis"
)

// Fixed test credentials of the simulated Slack app.
const (
	clientID      = "e2e-client-id"
	clientSecret  = "e2e-client-secret"
	signingSecret = "e2e-slack-signing-secret"
	forwardSecret = "e2e-forward-signing-secret"
	teamID        = "T0E2E0001"
	botUserID     = "U0E2EBOT"
)

// waitFor polls cond every few milliseconds until it holds; it fails the
// test when the deadline passes first.
func waitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// freePort returns a loopback port that was free a moment ago. Callers
// retry when a process fails to bind it.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// minimalEnv is the environment of child processes: nothing inherited that
// could change their configuration (SEALRELAY_*, SLACK_BROKER_*).
func minimalEnv(home string) []string {
	return []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home,
		"XDG_CONFIG_HOME=" + filepath.Join(home, "config"), "XDG_STATE_HOME=" + filepath.Join(home, "state"),
		"TMPDIR=" + os.TempDir(), "GORACE=halt_on_error=0"}
}

// proc is a child process whose output goes to a log file.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	err     error
}

func startProc(t testing.TB, name, logPath string, env []string, bin string, args ...string) *proc {
	t.Helper()
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = f, f
	dieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	p := &proc{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	t.Cleanup(func() { p.stop(t) })
	return p
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill9 kills the process with SIGKILL and waits for it.
func (p *proc) kill9(t testing.TB) {
	t.Helper()
	if p.exited() {
		t.Fatalf("%s exited before kill -9: %v\n%s", p.name, p.err, p.tail(30))
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// stop ends the process with SIGTERM (SIGKILL after 10 s).
func (p *proc) stop(t testing.TB) {
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Logf("%s did not stop within 10 s of SIGTERM; killing it", p.name)
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
	}
}

func (p *proc) log() string {
	b, _ := os.ReadFile(p.logPath)
	return string(b)
}

// tail returns the last n lines of the process's log.
func (p *proc) tail(n int) string {
	lines := strings.Split(strings.TrimRight(p.log(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return fmt.Sprintf("--- %s (%s), last %d lines:\n%s", p.name, p.logPath, len(lines), strings.Join(lines, "\n"))
}

// redisEnv is the Redis the brokers share.
type redisEnv struct {
	url    string
	prefix string
	rdb    *redis.Client
}

// startRedis returns the Redis the brokers share: $REDIS_URL when set;
// otherwise a private redis-server on a free port in a temporary directory
// (cleanest); a missing Redis fails the test. A shared Redis is
// isolated by a unique key prefix (the broker's --redis-prefix), and only
// this run's keys are deleted afterwards — never FLUSHALL.
func startRedis(t *testing.T, dir string) *redisEnv {
	t.Helper()
	prefix := testredis.NewPrefix("e2e")
	if bin, err := exec.LookPath("redis-server"); err == nil && os.Getenv("REDIS_URL") == "" {
		for attempt := 0; attempt < 3; attempt++ {
			port := freePort(t)
			p := startProc(t, "redis-server", filepath.Join(dir, "redis.log"), minimalEnv(dir), bin,
				"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
				"--save", "", "--appendonly", "no", "--daemonize", "no")
			url := fmt.Sprintf("redis://127.0.0.1:%d/0", port)
			if rdb := pingRedis(url, p, 10*time.Second); rdb != nil {
				t.Cleanup(func() { _ = rdb.Close() })
				return &redisEnv{url: url, prefix: prefix, rdb: rdb}
			}
			p.stop(t)
		}
		t.Fatalf("could not start a private redis-server")
	}
	url := testredis.URL(t)
	rdb := pingRedis(url, nil, 5*time.Second)
	if rdb == nil {
		t.Fatalf("no Redis answers at %s: set REDIS_URL to a reachable Redis or install redis-server (apt-get install redis-server)", url)
	}
	t.Cleanup(func() {
		// Remove only this run's keys.
		ctx := context.Background()
		iter := rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			rdb.Del(ctx, iter.Val())
		}
		_ = rdb.Close()
	})
	return &redisEnv{url: url, prefix: prefix, rdb: rdb}
}

func pingRedis(url string, p *proc, d time.Duration) *redis.Client {
	opts, err := redis.ParseURL(url)
	if err != nil {
		return nil
	}
	rdb := redis.NewClient(opts)
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if p != nil && p.exited() {
			break
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := rdb.Ping(ctx).Err()
		cancel()
		if err == nil {
			return rdb
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = rdb.Close()
	return nil
}

func randHex(t testing.TB, n int) string {
	b, err := crypto.RandomBytes(n)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", b)
}

// env is one complete deployment: Redis, fake Slack, broker replicas, a
// forward receiver and (once started) a bridge.
type env struct {
	t       *testing.T
	dir     string
	redis   *redisEnv
	fake    *slackfake.Fake
	slack   *httptest.Server
	keysDir string

	publicURL string
	replicas  map[string]*replica
	orgID     string

	// *agent is the first bridge (its fields and methods are promoted);
	// agents lists every bridge of the deployment.
	*agent
	agents []*agent

	evMu   sync.Mutex
	events map[string][]byte // event_id → body posted to the broker

	// brokerArgs are extra `broker serve` flags for every replica.
	brokerArgs []string
}

// agent is one registered bridge: its config and state directory, its
// `bridge run` process, its local API and the app it forwards to.
type agent struct {
	e          *env
	name       string
	recv       *receiver
	bridgeCfg  string
	bridgeDir  string
	bridgeAPI  string // http://127.0.0.1:port
	bridgePort int
	bridge     *proc
	bridgeRuns int
}

// newAgent adds a bridge with its own receiver, directories and port.
func (e *env) newAgent(name string) *agent {
	ag := &agent{e: e, name: name, recv: newReceiver(e.t, forwardSecret), bridgeDir: filepath.Join(e.dir, "bridge-"+name)}
	ag.bridgeCfg = filepath.Join(ag.bridgeDir, "bridge.env")
	e.agents = append(e.agents, ag)
	return ag
}

// replica is one broker process.
type replica struct {
	name string
	url  string
	proc *proc
}

func newEnv(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	e := &env{t: t, dir: dir, replicas: map[string]*replica{}, events: map[string][]byte{}}
	e.agent = e.newAgent("one")
	e.redis = startRedis(t, dir)
	e.fake = slackfake.New(slackfake.Options{ClientID: clientID, ClientSecret: clientSecret,
		DefaultInstall: slackfake.Install{TeamID: teamID, TeamName: "E2E Team", BotUserID: botUserID}})
	e.slack = httptest.NewServer(e.fake)
	t.Cleanup(e.slack.Close)

	e.keysDir = filepath.Join(dir, "keys")
	out, err := exec.Command(brokerBin, "init", "--dir", e.keysDir).CombinedOutput()
	if err != nil {
		t.Fatalf("broker init: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, r := range e.replicas {
				t.Log(r.proc.tail(40))
			}
			for _, ag := range e.agents {
				if ag.bridge != nil {
					t.Log(ag.bridge.tail(60))
				}
			}
		}
	})
	return e
}

// startReplica starts broker replica name on a free port. The first replica
// fixes the public URL (the OAuth redirect goes there); the others share it,
// as replicas behind one load balancer would.
func (e *env) startReplica(name string) *replica {
	t := e.t
	t.Helper()
	for attempt := 0; attempt < 3; attempt++ {
		port := freePort(t)
		url := fmt.Sprintf("http://127.0.0.1:%d", port)
		public := e.publicURL
		if public == "" {
			public = url
		}
		p := startProc(t, "broker "+name, filepath.Join(e.dir, "broker-"+name+".log"), minimalEnv(e.dir), brokerBin, append([]string{"serve",
			"--listen", fmt.Sprintf("127.0.0.1:%d", port),
			"--public-url", public,
			"--slack-client-id", clientID,
			"--slack-client-secret", clientSecret,
			"--slack-signing-secret", signingSecret,
			"--slack-api-url", slackfake.APIURL(e.slack.URL),
			"--slack-authorize-url", slackfake.AuthorizeURL(e.slack.URL),
			"--redis-url", e.redis.url,
			"--redis-prefix", e.redis.prefix,
			"--keys-dir", e.keysDir,
			"--send-rate", "0",
			"--log-format", "json",
			"--shutdown-timeout", "5s",
		}, e.brokerArgs...)...,
		)
		if waitHTTP(url+"/readyz", p, 15*time.Second) {
			r := &replica{name: name, url: url, proc: p}
			e.replicas[name] = r
			if e.publicURL == "" {
				e.publicURL = url
			}
			return r
		}
		p.stop(t)
		if !strings.Contains(p.log(), "address already in use") {
			t.Fatalf("broker %s did not become ready:\n%s", name, p.tail(40))
		}
	}
	t.Fatalf("broker %s: no free port after 3 attempts", name)
	return nil
}

// waitHTTP polls url until it answers 200, the process exits or d passes.
func waitHTTP(url string, p *proc, d time.Duration) bool {
	c := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) && !p.exited() {
		resp, err := c.Get(url)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return true
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// registerLine is the command the broker's install page shows.
var registerLine = regexp.MustCompile(`bridge register --broker-url (\S+) --org-id (\S+) --registration-token ([A-Za-z0-9_-]+)`)

// install runs the admin's install against replica r: GET /slack/install,
// the fake Slack consent, the callback page; it returns the org id and
// the registration token scraped from the page.
func (e *env) install(r *replica) (org, token string) {
	t := e.t
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	resp, err := c.Get(r.url + "/slack/install")
	if err != nil {
		t.Fatalf("install: %v", err)
	}
	defer resp.Body.Close()
	page, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("install: callback page %s:\n%s", resp.Status, page)
	}
	m := registerLine.FindStringSubmatch(html.UnescapeString(string(page)))
	if m == nil {
		t.Fatalf("install: no register command on the page:\n%s", page)
	}
	if m[1] != e.publicURL {
		t.Fatalf("install page names broker %s, want %s", m[1], e.publicURL)
	}
	return m[2], m[3]
}

// register runs `bridge register` with the scraped token and the given
// broker URL list.
func (ag *agent) register(brokerURLs, org, token string) string {
	t := ag.e.t
	t.Helper()
	ag.e.orgID = org
	cmd := exec.Command(bridgeBin, "register", "--broker-url", brokerURLs, "--org-id", org,
		"--registration-token", token, "--config", ag.bridgeCfg)
	cmd.Env = minimalEnv(ag.e.dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("bridge register: %v\n%s", err, out)
	}
	st, err := os.Stat(ag.bridgeCfg)
	if err != nil {
		t.Fatalf("bridge register wrote no config: %v\n%s", err, out)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("bridge config mode %v, want 0600", st.Mode().Perm())
	}
	return string(out)
}

// startBridge runs `bridge run` forwarding to the receiver, with the same
// state directory and local API port on every (re)start.
func (ag *agent) startBridge() {
	e := ag.e
	t := e.t
	t.Helper()
	secretFile := filepath.Join(e.dir, "forward-secret")
	if err := os.WriteFile(secretFile, []byte(forwardSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for attempt := 0; attempt < 3; attempt++ {
		if ag.bridgePort == 0 {
			ag.bridgePort = freePort(t)
		}
		ag.bridgeRuns++
		listen := fmt.Sprintf("127.0.0.1:%d", ag.bridgePort)
		p := startProc(t, fmt.Sprintf("bridge %s run #%d", ag.name, ag.bridgeRuns), filepath.Join(e.dir, "bridge-"+ag.name+".log"), minimalEnv(e.dir), bridgeBin, "run",
			"--config", ag.bridgeCfg,
			"--state-dir", filepath.Join(ag.bridgeDir, "state"),
			"--listen", listen,
			"--forward-url", ag.recv.srv.URL+"/slack/events",
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
		ag.bridgePort = 0
	}
	t.Fatal("bridge: no free port after 3 attempts")
}

// health reads the bridge's GET /health.
func (ag *agent) health() map[string]any {
	t := ag.e.t
	t.Helper()
	resp, err := http.Get(ag.bridgeAPI + "/health")
	if err != nil {
		t.Fatalf("GET /health: %v", err)
	}
	defer resp.Body.Close()
	var h map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		t.Fatalf("GET /health: %v", err)
	}
	return h
}

// localPost calls the bridge's local API.
func (ag *agent) localPost(path, body string) (int, map[string]any) {
	t := ag.e.t
	t.Helper()
	resp, err := http.Post(ag.bridgeAPI+path, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	var out map[string]any
	raw, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("POST %s: answer %q is not JSON", path, raw)
	}
	return resp.StatusCode, out
}

// eventBody builds a Slack Events API app_mention request.
func (e *env) eventBody(eventID, channel, ts, text string) []byte {
	b, err := json.Marshal(map[string]any{
		"token": "e2e-verification", "team_id": e.orgID, "api_app_id": "A0FAKE001",
		"event": map[string]any{"type": "app_mention", "user": "U0HUMAN", "text": text,
			"ts": ts, "channel": channel, "event_ts": ts},
		"type": "event_callback", "event_id": eventID, "event_time": time.Now().Unix(),
		"authorizations": []map[string]any{{"team_id": e.orgID, "user_id": botUserID, "is_bot": true}},
	})
	if err != nil {
		panic(err)
	}
	return b
}

var postClient = &http.Client{Timeout: 10 * time.Second}

// postEvent sends a signed event to a broker replica and returns an error
// unless the broker answered 200 (usable from goroutines).
func (e *env) postEvent(r *replica, eventID string, n int) error {
	ts := fmt.Sprintf("1700000000.%06d", n)
	body := e.eventBody(eventID, "C0E2E", ts, fmt.Sprintf("<@%s> message %d of %s", botUserID, n, eventID))
	e.evMu.Lock()
	e.events[eventID] = body
	e.evMu.Unlock()
	return postSigned(r, "/slack/events", "application/json", body, 0)
}

// repostEvent sends the body of an earlier event again, as Slack's retry
// number retry (X-Slack-Retry-Num) would.
func (e *env) repostEvent(r *replica, eventID string, retry int) error {
	return postSigned(r, "/slack/events", "application/json", e.postedBody(eventID), retry)
}

// postSigned posts body to path on replica r, signed like Slack signs it,
// and returns an error unless the broker answered 200.
func postSigned(r *replica, path, contentType string, body []byte, retry int) error {
	req, err := http.NewRequest(http.MethodPost, r.url+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", contentType)
	if retry > 0 {
		req.Header.Set("X-Slack-Retry-Num", strconv.Itoa(retry))
		req.Header.Set("X-Slack-Retry-Reason", "http_timeout")
	}
	slackfake.SignRequest(req, signingSecret, time.Now(), body)
	resp, err := postClient.Do(req)
	if err != nil {
		return fmt.Errorf("post %s to %s: %w", path, r.name, err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("post %s to %s: %s %s", path, r.name, resp.Status, answer)
	}
	return nil
}

// postedBody returns the body posted for eventID.
func (e *env) postedBody(eventID string) []byte {
	e.evMu.Lock()
	defer e.evMu.Unlock()
	return e.events[eventID]
}

// countLines counts the log lines of p holding every one of subs.
func countLines(p *proc, subs ...string) int {
	n := 0
	sc := bufio.NewScanner(strings.NewReader(p.log()))
	sc.Buffer(nil, 1<<20)
lines:
	for sc.Scan() {
		for _, s := range subs {
			if !strings.Contains(sc.Text(), s) {
				continue lines
			}
		}
		n++
	}
	return n
}

// receiver is the agent's Slack app: it accepts forwarded requests only
// with a valid X-Slack-Signature (checked by slack-go) and records each
// delivered event in arrival order.
type receiver struct {
	srv    *httptest.Server
	secret string

	mu     sync.Mutex
	order  []string          // event ids, in delivery order
	count  map[string]int    // deliveries per event id
	bodies map[string][]byte // first body per event id
	badSig int
	forms  []url.Values // forwarded interactivity and slash-command requests
	other  []string     // forwarded requests of no known kind
	// hold, when set, is called before an event is recorded; returning
	// false drops the event (the bridge was killed while we held it, so it
	// never learned of the delivery).
	hold func(eventID string) bool
}

func newReceiver(t testing.TB, secret string) *receiver {
	rc := &receiver{secret: secret, count: map[string]int{}, bodies: map[string][]byte{}}
	rc.srv = httptest.NewServer(http.HandlerFunc(rc.serve))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 2<<20))
	if err != nil {
		http.Error(w, "read", http.StatusBadRequest)
		return
	}
	sv, err := slack.NewSecretsVerifier(r.Header, rc.secret)
	if err == nil {
		_, _ = sv.Write(body)
		err = sv.Ensure()
	}
	if err != nil {
		rc.mu.Lock()
		rc.badSig++
		rc.mu.Unlock()
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	if r.Header.Get("Content-Type") == "application/x-www-form-urlencoded" {
		form, err := url.ParseQuery(string(body))
		rc.mu.Lock()
		if err == nil && (form.Has("payload") || form.Has("command")) {
			rc.forms = append(rc.forms, form)
		} else {
			rc.other = append(rc.other, string(body))
		}
		rc.mu.Unlock()
		w.WriteHeader(http.StatusOK)
		return
	}
	var ev struct {
		Type    string `json:"type"`
		EventID string `json:"event_id"`
	}
	if json.Unmarshal(body, &ev) != nil || ev.Type != "event_callback" || ev.EventID == "" {
		rc.mu.Lock()
		rc.other = append(rc.other, string(body))
		rc.mu.Unlock()
		w.WriteHeader(http.StatusOK)
		return
	}
	rc.mu.Lock()
	hold := rc.hold
	rc.mu.Unlock()
	if hold != nil && !hold(ev.EventID) {
		return
	}
	rc.mu.Lock()
	rc.order = append(rc.order, ev.EventID)
	rc.count[ev.EventID]++
	if _, ok := rc.bodies[ev.EventID]; !ok {
		rc.bodies[ev.EventID] = body
	}
	rc.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

func (rc *receiver) setHold(f func(string) bool) {
	rc.mu.Lock()
	rc.hold = f
	rc.mu.Unlock()
}

// received reports how many of ids were delivered at least once.
func (rc *receiver) received(ids []string) int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	n := 0
	for _, id := range ids {
		if rc.count[id] > 0 {
			n++
		}
	}
	return n
}

// snapshot returns the delivery order and counts so far.
func (rc *receiver) snapshot() (order []string, count map[string]int, badSig int, other []string) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	count = make(map[string]int, len(rc.count))
	for k, v := range rc.count {
		count[k] = v
	}
	return append([]string(nil), rc.order...), count, rc.badSig, append([]string(nil), rc.other...)
}

// formsReceived returns the forwarded form requests so far.
func (rc *receiver) formsReceived() []url.Values {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]url.Values(nil), rc.forms...)
}

// body returns the first delivered body of id.
func (rc *receiver) body(id string) []byte {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.bodies[id]
}

// execBridge prepares a bridge command with the test's minimal environment.
func execBridge(e *env, args ...string) *exec.Cmd {
	cmd := exec.Command(bridgeBin, args...)
	cmd.Env = minimalEnv(e.dir)
	return cmd
}
