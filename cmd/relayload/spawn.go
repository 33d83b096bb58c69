package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sealrelay/sealrelay/broker"
	"github.com/sealrelay/sealrelay/crypto"
	"github.com/sealrelay/sealrelay/internal/installflow"
	"github.com/sealrelay/sealrelay/internal/slackfake"
)

// Simulated Slack app of spawn mode.
const (
	spawnClientID = "relayload-client-id"
	spawnTeamID   = "T0RELAYLD"
)

// deployment is what the load runs against.
type deployment struct {
	brokerURL string
	secret    []byte // the Slack app's signing secret
	// forwardSecret signs the bridges' forwarded requests (spawn mode).
	forwardSecret string
	teamID        string
	sseURLs       []string // one per consumer, or none when consuming forwards
	procs         []watchedProc
	profiles      []profileTarget // spawned with --pprof-listen (--profile)
	store         string          // "embedded", "redis" or "" (unknown: an existing deployment)
	dir           string
	close         func(failed bool) // stops everything spawned
}

// child is one spawned process.
type child struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

func startChild(dir, name, bin string, args ...string) (*child, error) {
	logPath := filepath.Join(dir, name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("%s log: %w", name, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "TMPDIR=" + os.TempDir(), "GORACE=halt_on_error=0"}
	cmd.Stdout, cmd.Stderr = f, f
	dieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s (%s): %w", name, bin, err)
	}
	c := &child{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); f.Close(); close(c.done) }()
	return c, nil
}

func (c *child) exited() bool { return isDone(c.done) }

// isDone reports whether c is closed.
func isDone(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM and waits up to 10 s before SIGKILL.
func (c *child) stop() {
	if c.exited() {
		return
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

// tail returns the last lines of the child's log.
func (c *child) tail(n int) string {
	b, _ := os.ReadFile(c.log)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// waitHTTP polls url until it answers 200, the child exits, ctx ends or 20 s pass.
func waitHTTP(ctx context.Context, url string, c *child) error {
	hc := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) && !c.exited() && ctx.Err() == nil {
		resp, err := hc.Get(url)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return fmt.Errorf("%s did not answer %s:\n%s", c.name, url, c.tail(20))
}

// freePort returns a loopback port that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// startServing starts a child listening on a free port (retrying when the
// port was taken meanwhile) and waits until path answers 200.
func startServing(ctx context.Context, dir, name, bin, path string, args func(port int) []string) (*child, string, error) {
	for attempt := 0; attempt < 3; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, "", err
		}
		c, err := startChild(dir, name, bin, args(port)...)
		if err != nil {
			return nil, "", err
		}
		base := "http://127.0.0.1:" + strconv.Itoa(port)
		err = waitHTTP(ctx, base+path, c)
		if err == nil {
			return c, base, nil
		}
		c.stop()
		if ctx.Err() != nil || !strings.Contains(c.tail(50), "address already in use") {
			return nil, "", err
		}
	}
	return nil, "", fmt.Errorf("%s: no free port after 3 attempts", name)
}

// buildBinaries go-builds the broker and bridge the options do not name.
func buildBinaries(ctx context.Context, o *options, dir string) error {
	for _, b := range []struct {
		path *string
		pkg  string
	}{{&o.BrokerBin, "github.com/sealrelay/sealrelay/cmd/broker"}, {&o.BridgeBin, "github.com/sealrelay/sealrelay/cmd/bridge"}} {
		if *b.path != "" {
			continue
		}
		out := filepath.Join(dir, filepath.Base(b.pkg))
		cmd := exec.CommandContext(ctx, "go", "build", "-o", out, b.pkg)
		if msg, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s (run relayload inside the sealrelay source tree, or pass --broker-bin and --bridge-bin): %w\n%s", b.pkg, err, msg)
		}
		*b.path = out
	}
	return nil
}

// spawn starts the simulated Slack, a broker and o.Agents bridges,
// installs the app and registers every bridge. forwardURL, when not empty,
// is the base URL of the harness's forward receiver.
func spawn(ctx context.Context, o *options, forwardURL string, stderr io.Writer) (_ *deployment, err error) {
	dir, err := os.MkdirTemp("", "relayload-")
	if err != nil {
		return nil, fmt.Errorf("create the work directory: %w", err)
	}
	var cleanups []func()
	d := &deployment{dir: dir, teamID: spawnTeamID, store: "embedded"}
	d.close = func(failed bool) {
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
		if o.KeepData || failed {
			fmt.Fprintf(stderr, "relayload: logs, keys and stores kept in %s\n", dir)
			return
		}
		_ = os.RemoveAll(dir)
	}
	defer func() {
		if err != nil {
			d.close(true)
		}
	}()
	// With --profile the binaries built go beside the profiles: go tool
	// pprof wants the binary that wrote a profile, and dir is removed.
	buildDir := dir
	if o.Profile != "" {
		buildDir = o.Profile
	}
	if err := buildBinaries(ctx, o, buildDir); err != nil {
		return nil, err
	}

	// The simulated Slack: OAuth consent and Web API.
	clientSecret, err := crypto.RandomToken(24)
	if err != nil {
		return nil, err
	}
	signing, err := crypto.RandomToken(24)
	if err != nil {
		return nil, err
	}
	d.secret = []byte(signing)
	if d.forwardSecret, err = crypto.RandomToken(24); err != nil {
		return nil, err
	}
	fake := slackfake.New(slackfake.Options{ClientID: spawnClientID, ClientSecret: clientSecret,
		DefaultInstall: slackfake.Install{TeamID: spawnTeamID, TeamName: "relayload", AppID: loadAppID, BotUserID: loadBotID,
			Scope: strings.Join(broker.DefaultBotScopes, ",")}})
	slackLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("simulated Slack: %w", err)
	}
	slackSrv := &http.Server{Handler: fake, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = slackSrv.Serve(slackLn) }()
	cleanups = append(cleanups, func() { _ = slackSrv.Close() })
	slackURL := "http://" + slackLn.Addr().String()

	// The broker.
	keys := filepath.Join(dir, "keys")
	if out, err := exec.CommandContext(ctx, o.BrokerBin, "init", "--dir", keys).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("broker init: %w\n%s", err, out)
	}
	secretsDir := filepath.Join(dir, "secrets")
	if err := os.MkdirAll(secretsDir, 0o700); err != nil {
		return nil, err
	}
	for name, v := range map[string]string{"client-secret": clientSecret, "signing-secret": signing, "forward-secret": d.forwardSecret} {
		if err := os.WriteFile(filepath.Join(secretsDir, name), []byte(v+"\n"), 0o600); err != nil {
			return nil, fmt.Errorf("write %s: %w", name, err)
		}
	}
	storeArgs := []string{"--data-dir", filepath.Join(dir, "broker-data")}
	if o.RedisURL != "" {
		d.store = "redis"
		prefix, err := redisPrefix()
		if err != nil {
			return nil, err
		}
		ropts, err := redis.ParseURL(o.RedisURL)
		if err != nil {
			return nil, errors.New("--redis-url is not a redis:// or rediss:// URL")
		}
		rdb := redis.NewClient(ropts)
		cleanups = append(cleanups, func() { deletePrefix(rdb, prefix); _ = rdb.Close() })
		urlFile := filepath.Join(secretsDir, "redis-url")
		if err := os.WriteFile(urlFile, []byte(o.RedisURL+"\n"), 0o600); err != nil {
			return nil, err
		}
		storeArgs = []string{"--redis-url-file", urlFile, "--redis-prefix", prefix}
	}
	brokerPprof := &pprofPort{on: o.Profile != ""}
	brokerProc, brokerURL, err := startServing(ctx, dir, "broker", o.BrokerBin, "/readyz", func(port int) []string {
		u := "http://127.0.0.1:" + strconv.Itoa(port)
		args := append([]string{"serve", "--listen", "127.0.0.1:" + strconv.Itoa(port), "--public-url", u,
			"--slack-client-id", spawnClientID,
			"--slack-client-secret-file", filepath.Join(secretsDir, "client-secret"),
			"--slack-signing-secret-file", filepath.Join(secretsDir, "signing-secret"),
			"--slack-api-url", slackfake.APIURL(slackURL), "--slack-authorize-url", slackfake.AuthorizeURL(slackURL),
			"--keys-dir", keys, "--send-rate", "0", "--log-format", "json", "--shutdown-timeout", "5s"}, storeArgs...)
		return append(args, brokerPprof.args()...)
	})
	if err != nil {
		return nil, err
	}
	cleanups = append(cleanups, brokerProc.stop)
	if err := brokerPprof.ready(ctx, d, "broker", o.BrokerBin, brokerProc); err != nil {
		return nil, err
	}
	d.brokerURL = brokerURL
	d.procs = append(d.procs, watchedProc{Name: "broker", PID: brokerProc.cmd.Process.Pid})

	// The bridges: one install (a fresh registration token) and one
	// `bridge register` each, then `bridge run`.
	hc := &http.Client{Timeout: 30 * time.Second}
	for i := 0; i < o.Agents; i++ {
		inst, err := installflow.Install(ctx, hc, brokerURL)
		if err != nil {
			return nil, err
		}
		name := fmt.Sprintf("bridge-%d", i)
		bdir := filepath.Join(dir, name)
		cfg := filepath.Join(bdir, "bridge.env")
		reg := exec.CommandContext(ctx, o.BridgeBin, "register", "--broker-url", brokerURL, "--org-id", inst.OrgID,
			"--registration-token", inst.RegistrationToken, "--config", cfg)
		reg.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}
		if out, err := reg.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("bridge register (%s): %w\n%s", name, err, out)
		}
		d.teamID = inst.OrgID
		bridgePprof := &pprofPort{on: o.Profile != ""}
		bp, base, err := startServing(ctx, dir, name, o.BridgeBin, "/health", func(port int) []string {
			args := append([]string{"run", "--config", cfg, "--state-dir", filepath.Join(bdir, "state"),
				"--listen", "127.0.0.1:" + strconv.Itoa(port), "--log-format", "json"}, bridgePprof.args()...)
			if forwardURL != "" {
				args = append(args, "--stream=false", "--forward-url", fmt.Sprintf("%s/c/%d/slack/events", forwardURL, i),
					"--forward-signing-secret-file", filepath.Join(secretsDir, "forward-secret"))
			}
			return args
		})
		if err != nil {
			return nil, err
		}
		cleanups = append(cleanups, bp.stop)
		if err := bridgePprof.ready(ctx, d, name, o.BridgeBin, bp); err != nil {
			return nil, err
		}
		d.procs = append(d.procs, watchedProc{Name: name, PID: bp.cmd.Process.Pid})
		if forwardURL == "" {
			d.sseURLs = append(d.sseURLs, base+"/events")
		}
	}
	return d, nil
}

// pprofPort gives a spawned process --pprof-listen on a free loopback
// port (a new one at each start attempt) when on.
type pprofPort struct {
	on   bool
	addr string
	err  error
}

// args is the --pprof-listen flag of the next start attempt, or nothing.
func (p *pprofPort) args() []string {
	if !p.on {
		return nil
	}
	port, err := freePort()
	if p.err = err; err != nil {
		return nil
	}
	p.addr = "127.0.0.1:" + strconv.Itoa(port)
	return []string{"--pprof-listen", p.addr}
}

// ready waits for the profile listener of c, started from bin, and adds
// it to d's profile targets.
func (p *pprofPort) ready(ctx context.Context, d *deployment, name, bin string, c *child) error {
	if !p.on {
		return nil
	}
	if p.err != nil {
		return fmt.Errorf("%s --pprof-listen: %w", name, p.err)
	}
	base := "http://" + p.addr
	if err := waitHTTP(ctx, base+"/debug/pprof/", c); err != nil {
		return fmt.Errorf("%s --pprof-listen: %w", name, err)
	}
	d.profiles = append(d.profiles, profileTarget{name: name, url: base, binary: executablePath(bin)})
	return nil
}

// redisPrefix is a key prefix no other run uses.
func redisPrefix() (string, error) {
	b, err := crypto.RandomBytes(6)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("relayload-%x:", b), nil
}

// deletePrefix removes this run's keys (never anything else).
func deletePrefix(rdb *redis.Client, prefix string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	iter := rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	for iter.Next(ctx) {
		rdb.Del(ctx, iter.Val())
	}
}
