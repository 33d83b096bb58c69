package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sealrelay/sealrelay/bridge"
	"github.com/sealrelay/sealrelay/broker"
	"github.com/sealrelay/sealrelay/crypto"
	"github.com/sealrelay/sealrelay/internal/slackfake"
	"github.com/sealrelay/sealrelay/queue"
	"github.com/sealrelay/sealrelay/store/boltstore"
)

// Simulated workspace identities.
const (
	sandboxTeamID   = "T0SANDBOX"
	sandboxTeamName = "Sandbox Workspace"
	sandboxBotUser  = "U0SANDBOT"
	sandboxAppID    = "A0SANDBOX"
	sandboxUser     = "U0ALICE"
	sandboxChannel  = "C123"
	sandboxDM       = "D0ALICEDM"
)

// sandbox is one running instance: every component and what the terminal
// display needs to know about them.
type sandbox struct {
	opts   options
	p      *printer
	tr     *tracker
	dir    string
	logger *slog.Logger

	fake          *slackfake.Fake
	slackURL      string
	brokerURL     string
	apiURL        string // bridge local API, http://127.0.0.1:7890
	signingSecret string
	userToken     string // token of the simulated user's own posts
	orgID         string

	httpc *http.Client

	callsMu   sync.Mutex
	seenCalls int
	lastLocal time.Time // when the last local API POST arrived

	seq   int // generated event counter, guarded by callsMu
	posts chan simEvent
}

// run starts the sandbox and blocks until ctx ends or a component fails;
// everything is stopped and removed when it returns. ready, when not nil, is
// called once everything is up (tests use it).
func run(ctx context.Context, opts options, stdin io.Reader, stdout, stderr io.Writer, ready func(*sandbox)) error {
	p := &printer{w: stdout}
	err := runSandbox(ctx, p, opts, stdin, stderr, ready)
	if err != nil && ctx.Err() != nil && errors.Is(err, context.Canceled) {
		err = nil // Ctrl-C while starting up
	}
	if err != nil {
		return err
	}
	p.Printf("stopped cleanly.\n")
	return nil
}

// runSandbox does the work of run; it prints nothing once stopped.
func runSandbox(ctx context.Context, p *printer, opts options, stdin io.Reader, stderr io.Writer, ready func(*sandbox)) (err error) {
	s := &sandbox{opts: opts, p: p, posts: make(chan simEvent, 16)}
	s.tr = newTracker(s.p)
	level := slog.LevelWarn
	if opts.Verbose {
		level = slog.LevelInfo
	}
	s.logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	s.httpc = &http.Client{Timeout: 30 * time.Second}

	// Listen first, so that a port clash is reported before anything starts.
	apiLn, err := listenFlag(opts.Listen, "listen")
	if err != nil {
		return err
	}
	defer apiLn.Close()
	brokerLn, err := listenFlag(opts.BrokerListen, "broker-listen")
	if err != nil {
		return err
	}
	defer brokerLn.Close()
	slackLn, err := listenFlag(opts.SlackListen, "slack-listen")
	if err != nil {
		return err
	}
	defer slackLn.Close()
	s.apiURL = "http://" + apiLn.Addr().String()
	s.brokerURL = "http://" + brokerLn.Addr().String()
	s.slackURL = "http://" + slackLn.Addr().String()

	s.dir, err = os.MkdirTemp("", "sealrelay-sandbox-")
	if err != nil {
		return fmt.Errorf("create temporary directory: %w", err)
	}
	if opts.KeepData {
		defer s.p.Printf("Data kept in %s\n", s.dir)
	} else {
		defer os.RemoveAll(s.dir)
	}

	// 1. The simulated Slack: Web API and OAuth consent.
	clientID := "sandbox-client-id"
	clientSecret, err := crypto.RandomToken(24)
	if err != nil {
		return err
	}
	if s.signingSecret, err = crypto.RandomToken(24); err != nil {
		return err
	}
	if s.userToken, err = crypto.RandomToken(24); err != nil {
		return err
	}
	s.userToken = "xoxp-sandbox-" + s.userToken
	s.fake = slackfake.New(slackfake.Options{ClientID: clientID, ClientSecret: clientSecret,
		DefaultInstall: slackfake.Install{TeamID: sandboxTeamID, TeamName: sandboxTeamName,
			AppID: sandboxAppID, BotUserID: sandboxBotUser,
			Scope: strings.Join(broker.DefaultBotScopes, ",")}})
	slackSrv := &http.Server{Handler: s.slackHandler(s.fake), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = slackSrv.Serve(slackLn) }()
	defer slackSrv.Close()

	// 2. The broker, on the embedded store.
	srv, hs, closeStores, err := s.startBroker(brokerLn, clientID, clientSecret)
	if err != nil {
		return err
	}
	brokerDone := make(chan struct{})
	go func() {
		defer close(brokerDone)
		if err := hs.Serve(brokerLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.logger.Error("broker listener failed", "err", err)
		}
	}()
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		// The bridge has stopped by now, so no long poll is waiting; shut
		// the listener first so that no pull handler is still starting
		// when Server.Shutdown waits for them (see notes/e2e-needs.md).
		_ = hs.Shutdown(sctx)
		_ = srv.Shutdown(sctx)
		<-brokerDone
		closeStores()
	}()

	s.p.Printf("sealrelay sandbox — everything runs in this process; data in %s\n\n", s.dir)
	s.p.Printf("  simulated Slack   %s   (Web API + OAuth consent)\n", s.slackURL)
	s.p.Printf("  broker            %s   (embedded bbolt store)\n", s.brokerURL)

	// 3. Install the app through the real OAuth path and scrape the token.
	org, token, err := s.install(ctx)
	if err != nil {
		return err
	}
	s.orgID = org
	s.fake.AddToken(s.userToken, slackfake.Install{TeamID: org, TeamName: sandboxTeamName, BotUserID: sandboxUser})
	s.p.Printf("  installed         GET %s/slack/install → Slack consent → /slack/oauth/callback\n", s.brokerURL)
	s.p.Printf("                    the page showed registration token %s… for org %s\n", token[:6], org)

	// 4. bridge register, in process, through the bridge package.
	cfgPath := filepath.Join(s.dir, "bridge.env")
	if _, err := bridge.Register(ctx, bridge.RegisterOptions{BrokerURL: s.brokerURL, OrgID: org,
		RegistrationToken: token, ConfigPath: cfgPath, HTTPClient: s.httpc}); err != nil {
		return fmt.Errorf("bridge register: %w", err)
	}
	s.p.Printf("  registered        bridge register --broker-url %s --org-id %s --registration-token %s… --config %s\n",
		s.brokerURL, org, token[:6], cfgPath)

	// 5. bridge run: poll loop plus the local API.
	noEnv := func(string) (string, bool) { return "", false }
	id, err := bridge.LoadIdentity(cfgPath, noEnv, false)
	if err != nil {
		return fmt.Errorf("load bridge configuration: %w", err)
	}
	b, err := bridge.New(bridge.Config{
		Identity: *id, StateDir: filepath.Join(s.dir, "bridge-state"), Stream: true,
		ListenAddr: apiLn.Addr().String(), HTTPClient: &http.Client{Timeout: 60 * time.Second},
		Deliver: func(_ context.Context, ev *bridge.Event) error {
			s.tr.mark(ev.MessageID, stOpened)
			return nil
		},
	}, s.logger.With("component", "bridge"))
	if err != nil {
		return fmt.Errorf("start bridge: %w", err)
	}
	defer b.Close()
	apiSrv := &http.Server{Handler: s.localAPIHandler(b.Handler()), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = apiSrv.Serve(apiLn) }()
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = b.Close() // ends SSE streams so that Shutdown does not wait for them
		_ = apiSrv.Shutdown(sctx)
	}()

	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	runErr := make(chan error, 1)
	go func() { runErr <- b.Run(runCtx) }()
	s.p.Printf("  bridge            polling %s; local API on %s\n\n", s.brokerURL, s.apiURL)

	// 6. Watch our own /events like an agent would, to time the last hop.
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); s.consumeEvents(runCtx) }()
	go func() { defer wg.Done(); s.poster(runCtx) }()
	go func() { defer wg.Done(); s.tr.watch(runCtx, 15*time.Second) }()
	go s.readStdin(runCtx, stdin)

	// The first message, so that the curl lines can react to it.
	firstEv := simEvent{kind: "app_mention", channel: sandboxChannel,
		text: "<@" + sandboxBotUser + "> hello! is anyone listening?"}
	firstTS, err := s.userPost(runCtx, firstEv.channel, firstEv.text)
	if err == nil {
		s.printHelp(firstEv.channel, firstTS)
		_, err = s.sendEvent(runCtx, firstEv, firstTS)
	}
	if err != nil {
		stopRun()
		wg.Wait()
		<-runErr
		return fmt.Errorf("first simulated event: %w", err)
	}
	if ready != nil {
		ready(s)
	}
	if opts.Every > 0 {
		wg.Add(1)
		go func() { defer wg.Done(); s.generate(runCtx, opts.Every) }()
	}

	var result error
	select {
	case <-ctx.Done():
		s.p.Printf("\nstopping…\n")
		stopRun()
		result = <-runErr
	case result = <-runErr:
		stopRun()
		if result != nil {
			result = fmt.Errorf("bridge stopped: %w", result)
		}
	}
	wg.Wait()
	return result
}

// listenFlag listens on addr and turns a port clash into advice naming the
// flag to change.
func listenFlag(addr, flagName string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err == nil {
		return ln, nil
	}
	if errors.Is(err, syscall.EADDRINUSE) {
		return nil, fmt.Errorf("%s is in use — pass --%s %s", addr, flagName, nextPort(addr))
	}
	return nil, fmt.Errorf("cannot listen on %s (--%s): %w", addr, flagName, err)
}

// nextPort returns addr with its port increased by one.
func nextPort(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	n, err := strconv.Atoi(port)
	if err != nil || n >= 65535 {
		return net.JoinHostPort(host, "0")
	}
	return net.JoinHostPort(host, strconv.Itoa(n+1))
}

// startBroker builds the broker on a bbolt state and queue in the data
// directory, with fresh keys. The queue is wrapped to time each event.
func (s *sandbox) startBroker(ln net.Listener, clientID, clientSecret string) (*broker.Server, *http.Server, func(), error) {
	box, err := crypto.GenerateBoxKeyPair()
	if err != nil {
		return nil, nil, nil, err
	}
	sig, err := crypto.GenerateSigningKey()
	if err != nil {
		return nil, nil, nil, err
	}
	mk, err := crypto.RandomBytes(crypto.MasterKeySize)
	if err != nil {
		return nil, nil, nil, err
	}
	kr, err := crypto.NewKeyring(map[uint32][]byte{1: mk})
	crypto.Wipe(mk)
	if err != nil {
		return nil, nil, nil, err
	}
	dataDir := filepath.Join(s.dir, "broker-data")
	bs, err := boltstore.Open(dataDir, queue.Options{}, boltstore.WithLogger(s.logger))
	if err != nil {
		return nil, nil, nil, fmt.Errorf("open broker store: %w", err)
	}
	st, q := bs.State, bs.Inbox
	closeStores := func() { _ = bs.Close() }
	cfg := broker.Config{
		PublicURL:          s.brokerURL,
		SlackClientID:      clientID,
		SlackClientSecret:  clientSecret,
		SlackSigningSecret: s.signingSecret,
		SlackAPIURL:        slackfake.APIURL(s.slackURL),
		SlackAuthorizeURL:  slackfake.AuthorizeURL(s.slackURL),
	}
	srv, err := broker.New(cfg, st, &observedStore{Store: q, tr: s.tr}, broker.Keys{Box: box, Signing: sig, Keyring: kr},
		s.logger.With("component", "broker"), nil)
	if err != nil {
		closeStores()
		return nil, nil, nil, fmt.Errorf("start broker: %w", err)
	}
	hs := srv.HTTPServer(ln.Addr().String())
	hs.Handler = s.tr.brokerMiddleware(hs.Handler)
	return srv, hs, closeStores, nil
}

// registerLine finds the command the install page shows.
var registerLine = regexp.MustCompile(`bridge register --broker-url (\S+) --org-id (\S+) --registration-token ([A-Za-z0-9_-]+)`)

// install walks the admin's install: GET /slack/install, follow the redirect
// to the (simulated) Slack consent page, which redirects back to the
// broker's callback; then scrape the org id and registration token from the
// page the admin would see.
func (s *sandbox) install(ctx context.Context) (org, token string, err error) {
	jar, err := cookiejar.New(nil)
	if err != nil {
		return "", "", err
	}
	c := &http.Client{Jar: jar, Timeout: 30 * time.Second}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.brokerURL+"/slack/install", nil)
	if err != nil {
		return "", "", err
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", "", fmt.Errorf("install: %w", err)
	}
	defer resp.Body.Close()
	page, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", "", fmt.Errorf("install: read the callback page: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", "", fmt.Errorf("install: the callback page answered %s", resp.Status)
	}
	m := registerLine.FindStringSubmatch(html.UnescapeString(string(page)))
	if m == nil {
		return "", "", errors.New("install: no registration command on the callback page")
	}
	return m[2], m[3], nil
}

// printHelp prints the commands to try.
func (s *sandbox) printHelp(channel, ts string) {
	host := strings.TrimPrefix(s.apiURL, "http://")
	s.p.Printf("Ready. Try these in another terminal:\n\n")
	s.p.Printf("  curl -N %s/events\n", host)
	s.p.Printf("  curl -X POST %s/send -H 'Content-Type: application/json' -d '{\"channel\":\"%s\",\"text\":\"hi\"}'\n", host, sandboxChannel)
	s.p.Printf("  curl -X POST %s/react -H 'Content-Type: application/json' -d '{\"channel\":\"%s\",\"timestamp\":\"%s\",\"emoji\":\"eyes\"}'\n",
		host, channel, ts)
	s.p.Printf("  curl -X POST %s/reply -H 'Content-Type: application/json' -d '{\"thread_id\":\"%s:%s\",\"text\":\"on it\"}'\n",
		host, channel, ts)
	s.p.Printf("  curl %s/health\n", host)
	s.p.Printf("  curl -X POST %s/api/chat.postMessage -d channel=%s -d text=hi   # Slack's Web API: point your SDK at http://%s/api/\n\n",
		host, sandboxChannel, host)
	if s.opts.Every > 0 {
		s.p.Printf("The simulated workspace posts an event every %s. ", s.opts.Every)
	}
	s.p.Printf("Type a line and press Enter to send it as a DM to the bot. Ctrl-C stops.\n\n")
}

// slackHandler serves the fake Slack and prints every call it records
// (except the simulated user's own posts).
func (s *sandbox) slackHandler(fake *slackfake.Fake) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fake.ServeHTTP(w, r)
		s.reportSlackCalls()
	})
}

func (s *sandbox) reportSlackCalls() {
	s.callsMu.Lock()
	defer s.callsMu.Unlock()
	calls := s.fake.Calls()
	for _, c := range calls[min(s.seenCalls, len(calls)):] {
		if c.Token == s.userToken {
			continue
		}
		result := "ok"
		if c.Error != "" {
			result = "error " + c.Error
		}
		var parts []string
		for _, k := range []string{"channel", "thread_ts", "ts", "timestamp", "name", "text"} {
			if v := c.Params.Get(k); v != "" {
				parts = append(parts, k+"="+quote(v, 60))
			}
		}
		after := ""
		if !s.lastLocal.IsZero() && (strings.HasPrefix(c.Method, "chat.") || strings.HasPrefix(c.Method, "reactions.")) {
			after = fmt.Sprintf("  (%s after the local API call)", ms(c.Time.Sub(s.lastLocal)))
		}
		parts = append([]string{c.Method}, parts...)
		s.p.Printf("  slack ◂ %s → %s%s\n", strings.Join(parts, " "), result, after)
	}
	s.seenCalls = len(calls)
}

// localAPIHandler times the agent's calls to the local API.
func (s *sandbox) localAPIHandler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			next.ServeHTTP(w, r)
			return
		}
		start := time.Now()
		s.callsMu.Lock()
		s.lastLocal = start
		s.callsMu.Unlock()
		rec := &recorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		body := strings.TrimSpace(rec.body.String())
		if len(body) > 160 {
			body = body[:160] + "…"
		}
		s.p.Printf("  local API %s %s → %d %s in %s\n", r.Method, r.URL.Path, rec.status(), body, ms(time.Since(start)))
	})
}

// recorder captures the status and the start of the body of a response.
type recorder struct {
	http.ResponseWriter
	code int
	body bytes.Buffer
}

func (r *recorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	if r.body.Len() < 512 {
		r.body.Write(b[:min(len(b), 512)])
	}
	return r.ResponseWriter.Write(b)
}

func (r *recorder) status() int {
	if r.code == 0 {
		return http.StatusOK
	}
	return r.code
}

// consumeEvents reads the bridge's /events stream like an agent and marks
// each event delivered, reconnecting with Last-Event-ID.
func (s *sandbox) consumeEvents(ctx context.Context) {
	last := ""
	for ctx.Err() == nil {
		last = s.consumeOnce(ctx, last)
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (s *sandbox) consumeOnce(ctx context.Context, last string) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.apiURL+"/events", nil)
	if err != nil {
		return last
	}
	if last != "" {
		req.Header.Set("Last-Event-ID", last)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return last
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	var data strings.Builder
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "id:"):
			last = strings.TrimSpace(line[3:])
		case strings.HasPrefix(line, "data:"):
			data.WriteString(strings.TrimPrefix(line[5:], " "))
		case line == "":
			if data.Len() > 0 {
				var ev bridge.Event
				if json.Unmarshal([]byte(data.String()), &ev) == nil && ev.MessageID != "" {
					s.tr.delivered(&ev)
				}
				data.Reset()
			}
		}
	}
	return last
}

// quote renders v as a Go-quoted string cut to n runes.
func quote(v string, n int) string {
	r := []rune(v)
	if len(r) > n {
		return strconv.Quote(string(r[:n])) + "…"
	}
	return strconv.Quote(v)
}

// ms renders d in milliseconds with one decimal.
func ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d.Microseconds())/1000, 'f', 1, 64) + " ms"
}

// formValues is a tiny helper for the fake's form API.
func formValues(kv ...string) url.Values {
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Set(kv[i], kv[i+1])
	}
	return v
}
