package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sealrelay/sealrelay/broker"
	"github.com/sealrelay/sealrelay/crypto"
	"github.com/sealrelay/sealrelay/internal/netutil"
	"github.com/sealrelay/sealrelay/internal/pprofserve"
	"github.com/sealrelay/sealrelay/internal/settings"
)

// Key file names written by `broker init` and read by `broker serve` and
// `broker keys rotate` from the keys directory.
const (
	boxKeyFile     = "broker-box.key"
	signingKeyFile = "broker-signing.key"
	masterKeysFile = "master.keys"
)

// envPrefix starts every environment variable the broker reads.
const envPrefix = "SEALRELAY_"

// Defaults of serve settings that other code refers to.
const (
	defaultListen            = ":8080"
	defaultSlackAPIURL       = "https://slack.com/api/"
	defaultSlackAuthorizeURL = "https://slack.com/oauth/v2/authorize"
	defaultDataDir           = "./data"
	defaultKeysDir           = "./keys"
	defaultRedisPrefix       = "sealrelay:"
	defaultAccessTokenTTL    = "90d"
	defaultSendRate          = "1"
	defaultSendBurst         = "20"
	defaultMaxPolls          = "4"
	defaultShutdownTimeout   = "30s"
	defaultLogLevel          = "info"
	defaultLogFormat         = "json"
)

// setting and value are internal/settings' table entry and resolved value;
// configError is its list of problems (exit code 2, like a usage error).
type (
	setting     = settings.Setting
	value       = settings.Value
	configError = settings.Error
)

// tagRotate marks the settings that `broker keys rotate` reads too.
const tagRotate = "rotate"

var forRotate = []string{tagRotate}

// serveTable lists every setting of `broker serve`, in --help order:
// each a flag --Name and a variable Env (every Env is SEALRELAY_ + the
// name), a Secret one also --Name-file and Env_FILE. internal/deploycheck
// checks docs/operations.md against it.
var serveTable = []settings.Setting{
	{Name: "listen", Env: "SEALRELAY_LISTEN", Default: defaultListen, Check: settings.ListenAddr, Arg: "ADDR",
		Usage: "address of the public HTTP(S) listener (HOST:PORT; \":8080\" = every interface)"},
	{Name: "public-url", Env: "SEALRELAY_PUBLIC_URL", Required: true, Check: settings.HTTPURL, Arg: "URL",
		Usage: "public base URL of this broker as Slack and bridges reach it, e.g. https://relay.example.com; used for the OAuth redirect (<URL>/slack/oauth/callback) and the register command shown after install",
		Fix:   "set it to the https:// address at which Slack and your bridges reach this broker"},
	{Name: "slack-client-id", Env: "SEALRELAY_SLACK_CLIENT_ID", Required: true, Check: checkToken, Arg: "ID",
		Usage: "Slack app Client ID",
		Fix:   "copy it from your Slack app's Basic Information page (App Credentials)"},
	{Name: "slack-client-secret", Env: "SEALRELAY_SLACK_CLIENT_SECRET", Secret: true, Required: true, Check: checkToken, Arg: "SECRET",
		Usage: "Slack app Client Secret",
		Fix:   "copy it from your Slack app's Basic Information page (App Credentials)"},
	{Name: "slack-signing-secret", Env: "SEALRELAY_SLACK_SIGNING_SECRET", Secret: true, Required: true, Check: checkToken, Arg: "SECRET",
		Usage: "Slack app Signing Secret (verifies Slack's webhooks)",
		Fix:   "copy it from your Slack app's Basic Information page"},
	{Name: "slack-api-url", Env: "SEALRELAY_SLACK_API_URL", Default: defaultSlackAPIURL, Check: settings.HTTPURL, Arg: "URL",
		Usage: "base URL of the Slack Web API (change only for testing)"},
	{Name: "slack-authorize-url", Env: "SEALRELAY_SLACK_AUTHORIZE_URL", Default: defaultSlackAuthorizeURL, Check: settings.HTTPURL, Arg: "URL",
		Usage: "Slack OAuth v2 authorize URL (change only for testing)"},
	{Name: "slack-bot-scopes", Env: "SEALRELAY_SLACK_BOT_SCOPES", Default: strings.Join(broker.DefaultBotScopes, ","), Arg: "LIST",
		Usage: "comma-separated bot scopes requested at install"},
	{Name: "redis-url", Env: "SEALRELAY_REDIS_URL", Secret: true, Tags: forRotate, Arg: "URL",
		Usage: "Redis URL (redis://[user:password@]host:port/db or rediss://...); empty = embedded single-node store in --data-dir"},
	{Name: "redis-prefix", Env: "SEALRELAY_REDIS_PREFIX", Default: defaultRedisPrefix, Tags: forRotate, Check: checkRedisPrefix, Arg: "PREFIX",
		Usage: "prefix of every Redis key (state under PREFIX\"st:{state}:\", inboxes under PREFIX\"q:ib:{<agent>}:\")"},
	{Name: "redis-cluster-addrs", Env: "SEALRELAY_REDIS_CLUSTER_ADDRS", Tags: forRotate, Arg: "HOST:PORT,...",
		Usage: "seed nodes of a Redis Cluster (instead of --redis-url); auth with --redis-username / --redis-password"},
	{Name: "redis-sentinel-master", Env: "SEALRELAY_REDIS_SENTINEL_MASTER", Tags: forRotate, Arg: "NAME",
		Usage: "master name monitored by Redis Sentinel (instead of --redis-url); with --redis-sentinel-addrs"},
	{Name: "redis-sentinel-addrs", Env: "SEALRELAY_REDIS_SENTINEL_ADDRS", Tags: forRotate, Arg: "HOST:PORT,...",
		Usage: "Sentinel addresses for --redis-sentinel-master"},
	{Name: "redis-username", Env: "SEALRELAY_REDIS_USERNAME", Tags: forRotate, Arg: "USER",
		Usage: "ACL user of the cluster or Sentinel-managed nodes (with --redis-url put it in the URL)"},
	{Name: "redis-password", Env: "SEALRELAY_REDIS_PASSWORD", Secret: true, Tags: forRotate, Arg: "PASSWORD",
		Usage: "password of the cluster or Sentinel-managed nodes (with --redis-url put it in the URL)"},
	{Name: "redis-sentinel-password", Env: "SEALRELAY_REDIS_SENTINEL_PASSWORD", Secret: true, Tags: forRotate, Arg: "PASSWORD",
		Usage: "password of the Sentinels themselves (requirepass of sentinel.conf), if any"},
	{Name: "agents-per-org", Env: "SEALRELAY_AGENTS_PER_ORG", Default: "0", Check: settings.IntRange(0, 1_000_000), Arg: "N",
		Usage: "agents one workspace may have registered at once; a registration beyond it gets 409 \"workspace already active\" (0 = unlimited; 1 = the Baudbot broker's rule)"},
	{Name: "data-dir", Env: "SEALRELAY_DATA_DIR", Default: defaultDataDir, Tags: forRotate, Arg: "DIR",
		Usage: "directory of the embedded store (state.db, queue.db) when no Redis URL is set"},
	{Name: "keys-dir", Env: "SEALRELAY_KEYS_DIR", Default: defaultKeysDir, Tags: forRotate, Arg: "DIR",
		Usage: "directory holding " + boxKeyFile + ", " + signingKeyFile + " and " + masterKeysFile + " (written by `broker init`); used for every key not given otherwise"},
	{Name: "box-key", Env: "SEALRELAY_BOX_KEY", Secret: true, Arg: "BASE64",
		Usage: "broker X25519 private key (default: read <keys-dir>/" + boxKeyFile + ")"},
	{Name: "signing-key", Env: "SEALRELAY_SIGNING_KEY", Secret: true, Arg: "BASE64",
		Usage: "broker Ed25519 signing seed (default: read <keys-dir>/" + signingKeyFile + ")"},
	{Name: "master-keys", Env: "SEALRELAY_MASTER_KEYS", Secret: true, Tags: forRotate, Arg: "KEYRING",
		Usage: "master keyring, entries VERSION:BASE64 separated by newlines or commas (default: read <keys-dir>/" + masterKeysFile + ")"},
	{Name: "metrics-listen", Env: "SEALRELAY_METRICS_LISTEN", Check: settings.Optional(settings.ListenAddr), Arg: "ADDR",
		Usage: "address of the Prometheus /metrics listener (e.g. 127.0.0.1:9090); empty = off"},
	{Name: "pprof-listen", Env: "SEALRELAY_PPROF_LISTEN", Check: pprofserve.CheckListen, Arg: "ADDR",
		Usage: "serve Go runtime profiles (/debug/pprof/) on this loopback address, e.g. 127.0.0.1:6060; empty = off"},
	{Name: "admin-listen", Env: "SEALRELAY_ADMIN_LISTEN", Default: defaultAdminListen, Check: checkAdminListen, Arg: "ADDR", Usage: adminListenUsage},
	{Name: "admin-token", Env: "SEALRELAY_ADMIN_TOKEN", Secret: true, Arg: "TOKEN", Usage: adminTokenUsage},
	{Name: "agent-idle-after", Env: "SEALRELAY_AGENT_IDLE_AFTER", Default: defaultAgentIdleAfter, Check: checkAgentIdleAfter, Arg: "DURATION", Usage: agentIdleAfterUsage},
	{Name: "pause-idle-fanout", Env: "SEALRELAY_PAUSE_IDLE_FANOUT", Default: "off", Check: checkOnOff, Arg: "on|off",
		Usage: "skip agents idle for --agent-idle-after when fanning out events; each skipped copy is counted (sealrelay_broker_fanout_paused_total) and reported to the agent as dropped (agent_idle) when it pulls again"},
	{Name: "tls-cert", Env: "SEALRELAY_TLS_CERT", Arg: "FILE",
		Usage: "TLS certificate chain (PEM) for the public listener; with --tls-key. Empty = plain HTTP (put a TLS proxy in front)"},
	{Name: "tls-key", Env: "SEALRELAY_TLS_KEY", Arg: "FILE",
		Usage: "TLS private key (PEM) for --tls-cert"},
	{Name: "log-level", Env: "SEALRELAY_LOG_LEVEL", Default: defaultLogLevel, Check: checkLogLevel, Arg: "LEVEL",
		Usage: "debug, info, warn or error"},
	{Name: "log-format", Env: "SEALRELAY_LOG_FORMAT", Default: defaultLogFormat, Check: checkLogFormat, Arg: "FORMAT",
		Usage: "json or text"},
	{Name: "access-token-ttl", Env: "SEALRELAY_ACCESS_TOKEN_TTL", Default: defaultAccessTokenTTL, Check: checkLifetime, Arg: "DURATION",
		Usage: "lifetime of agent access tokens (Go duration, or days such as 90d)"},
	{Name: "access-token-overlap", Env: "SEALRELAY_ACCESS_TOKEN_OVERLAP", Default: defaultAccessTokenOverlap,
		Check: settings.DurationRange(10*time.Second, 24*time.Hour, "use a duration such as 10m"), Arg: "DURATION",
		Usage: "how long an agent's previous access token keeps working after it renewed (agent.renew)"},
	{Name: "registration-token-ttl", Env: "SEALRELAY_REGISTRATION_TOKEN_TTL", Default: defaultRegistrationTokenTTL, Check: checkRegistrationTTL, Arg: "DURATION",
		Usage: "lifetime of the one-time registration token shown after a Slack install"},
	{Name: "send-rate", Env: "SEALRELAY_SEND_RATE", Default: defaultSendRate, Check: checkSendRate, Arg: "PER_SECOND",
		Usage: "sustained messages per second one agent may send (0 = no limit)"},
	{Name: "send-burst", Env: "SEALRELAY_SEND_BURST", Default: defaultSendBurst, Check: settings.IntRange(1, 1_000_000), Arg: "N",
		Usage: "burst of messages one agent may send at once"},
	{Name: "call-policy", Env: "SEALRELAY_CALL_POLICY", Arg: "FILE",
		Usage: "JSON file of per-agent /api/call rules (methods and channels); empty = the built-in default (messaging, reading, views, assistant threads, file uploads, auth.test)"},
	{Name: "call-rate-post", Env: "SEALRELAY_CALL_RATE_POST", Default: defaultCallRatePost, Check: checkRateBurst, Arg: "RATE/BURST",
		Usage: "per-agent /api/call bucket for posting methods (chat.*, reactions.add/remove, ...): calls per second/burst (0 = no limit)"},
	{Name: "call-rate-read", Env: "SEALRELAY_CALL_RATE_READ", Default: defaultCallRateRead, Check: checkRateBurst, Arg: "RATE/BURST",
		Usage: "per-agent /api/call bucket for reading methods (*.info, *.list, conversations.history, ...) (0 = no limit)"},
	{Name: "call-rate-other", Env: "SEALRELAY_CALL_RATE_OTHER", Default: defaultCallRateOther, Check: checkRateBurst, Arg: "RATE/BURST",
		Usage: "per-agent /api/call bucket for every other method (views.*, assistant.threads.*, ...) (0 = no limit)"},
	{Name: "call-max-response", Env: "SEALRELAY_CALL_MAX_RESPONSE", Default: defaultCallMaxResponse, Check: checkMaxResponse, Arg: "BYTES",
		Usage: "largest Slack answer /api/call relays; a larger one is refused with 502 response_too_large, never truncated"},
	{Name: "sync-response-timeout", Env: "SEALRELAY_SYNC_RESPONSE_TIMEOUT", Default: defaultSyncResponseTimeout, Check: checkSyncResponseTimeout, Arg: "DURATION",
		Usage: "how long a slash command or modal submission is held for an agent's inbox.respond (only for orgs whose agents declared it; Slack gives up after 3s)"},
	{Name: "max-polls-per-agent", Env: "SEALRELAY_MAX_POLLS_PER_AGENT", Default: defaultMaxPolls, Check: settings.IntRange(1, 1000), Arg: "N",
		Usage: "concurrent long polls allowed per agent (more are refused with 429)"},
	{Name: "shutdown-timeout", Env: "SEALRELAY_SHUTDOWN_TIMEOUT", Default: defaultShutdownTimeout, Check: checkShutdownTimeout, Arg: "DURATION",
		Usage: "how long SIGINT/SIGTERM waits for in-flight requests before closing connections"},
	{Name: "token-refresh-margin", Env: "SEALRELAY_TOKEN_REFRESH_MARGIN", Default: defaultTokenRefreshMargin, Check: checkTokenRefreshMargin, Arg: "DURATION",
		Usage: "how long before its expiry a rotating Slack bot token is refreshed (token rotation; tokens last 12 h)"},
	{Name: "audit", Env: "SEALRELAY_AUDIT", Default: "on", Check: checkOnOff, Arg: "on|off",
		Usage: "append every bot-token use and trust change to the tamper-evident audit log in the store (see `broker audit`)"},
	{Name: "audit-required", Env: "SEALRELAY_AUDIT_REQUIRED", Default: "off", Check: checkOnOff, Arg: "on|off",
		Usage: "refuse (503 audit_unavailable) an /api/call or /api/send whose audit record cannot be written, before Slack is called"},
}

// knownEnvVars returns every environment variable the broker reads, with
// the _FILE variants of secrets, in table order.
func knownEnvVars() []string { return settings.EnvVars(allSettings()) }

// allSettings returns the table as pointers, in order.
func allSettings() []*setting { return settings.Pointers(serveTable) }

func settingByName(name string) *setting {
	for i := range serveTable {
		if serveTable[i].Name == name {
			return &serveTable[i]
		}
	}
	panic("unknown setting " + name)
}

// resolver is a loaded settings table plus the broker's own checks of
// several settings together (storage, keys, TLS, /api/call).
type resolver struct{ *settings.Loader }

// parseFlags parses args and the environment (through getenv) into the
// settings of l and returns the resolver. flag.ErrHelp is passed through;
// other command-line mistakes become usage errors.
func parseFlags(l *settings.Loader, args []string, getenv func(string) string) (*resolver, error) {
	err := l.Parse(args, getenv)
	var ue *settings.UsageError
	if errors.As(err, &ue) {
		return nil, usageError{ue.Msg}
	}
	if err != nil {
		return nil, err
	}
	return &resolver{l}, nil
}

// Checks of single settings (internal/settings appends their errors to
// where the value came from).

var tokenPattern = regexp.MustCompile(`^[\x21-\x7e]+$`)

// checkToken validates a credential: printable ASCII, no spaces.
func checkToken(text string) error {
	if !tokenPattern.MatchString(text) || len(text) > 512 {
		return errors.New("contains spaces or non-ASCII characters: copy the value again from your Slack app's Basic Information page")
	}
	return nil
}

func checkRedisPrefix(text string) error {
	if text == "" || strings.ContainsAny(text, " \t\r\n{}") {
		return errors.New("is not a usable key prefix: use a short word without spaces or braces (such as \"sealrelay:\")")
	}
	return nil
}

func checkLogLevel(text string) error {
	var l slog.Level
	if text == "" || l.UnmarshalText([]byte(text)) != nil {
		return errors.New("is not a log level: use debug, info, warn or error")
	}
	return nil
}

func checkLogFormat(text string) error {
	if settings.OneOf("json", "text")(text) != nil {
		return errors.New("is not a log format: use json or text")
	}
	return nil
}

func checkLifetime(text string) error {
	if d, err := settings.ParseDays(text); err != nil || d < time.Minute || d > 3650*24*time.Hour {
		return errors.New("is not a valid lifetime: use a duration between 1m and 3650d, such as 90d or 720h")
	}
	return nil
}

func checkSendRate(text string) error {
	if f, err := strconv.ParseFloat(text, 64); err != nil || math.IsNaN(f) || f < 0 || f > 1e6 {
		return errors.New("is not a rate: use messages per second such as 1 or 0.5 (0 = no limit)")
	}
	return nil
}

func checkShutdownTimeout(text string) error {
	if d, err := settings.ParseDays(text); err != nil || d <= 0 {
		return errors.New("is not a positive duration: use e.g. 30s")
	}
	return nil
}

// loadConfig parses the flags of `broker serve` and the SEALRELAY_*
// environment (through getenv), reads secret and key files, and validates
// everything. All problems are reported together in one *configError.
func loadConfig(args []string, getenv func(string) string) (*config, error) {
	r, err := parseFlags(settings.New("broker serve", allSettings()), args, getenv)
	if err != nil {
		return nil, err
	}
	c := &config{}
	c.Listen = r.Text("listen")
	c.MetricsListen = r.Text("metrics-listen")
	c.PprofListen = r.Text("pprof-listen")
	if c.MetricsListen != "" && c.MetricsListen == c.Listen && !strings.HasSuffix(c.Listen, ":0") {
		r.Problem("--metrics-listen and --listen are both %q: the metrics listener needs its own address (e.g. 127.0.0.1:9090)", c.Listen)
	}

	if c.PublicURL = r.Text("public-url"); c.PublicURL != "" {
		if u, err := url.Parse(c.PublicURL); err == nil && u.Scheme == "http" && !netutil.IsLoopbackHost(u.Hostname()) {
			c.Warnings = append(c.Warnings, "public URL "+c.PublicURL+" is not https: Slack requires https redirect and request URLs")
		}
		c.PublicURL = strings.TrimRight(c.PublicURL, "/")
	}
	c.SlackClientID = r.Text("slack-client-id")
	c.SlackClientSecret = r.Text("slack-client-secret")
	c.SlackSigningSecret = r.Text("slack-signing-secret")

	c.SlackAPIURL = r.Text("slack-api-url")
	if c.SlackAPIURL != "" && !strings.HasSuffix(c.SlackAPIURL, "/") {
		c.SlackAPIURL += "/"
	}
	c.SlackAuthorizeURL = r.Text("slack-authorize-url")
	c.SlackBotScopes = r.scopes()

	r.storage(c)

	s, v := r.Get("keys-dir")
	c.KeysDir = v.Text
	if c.KeysDir == "" && v.Source != "" {
		r.Problem("%s is empty: name the directory written by `broker init`", s.DescribeOrNames(v))
	}
	c.BoxKey, c.SigningKey, c.Keyring = r.keys(c.KeysDir, &c.Warnings)

	tlsCert, certV := r.Get("tls-cert")
	tlsKey, keyV := r.Get("tls-key")
	switch {
	case certV.Text == "" && keyV.Text == "":
	case certV.Text == "" || keyV.Text == "":
		r.Problem("%s and %s must be given together (or neither, behind a TLS-terminating proxy)", tlsCert.Names(), tlsKey.Names())
	default:
		if _, err := tls.LoadX509KeyPair(certV.Text, keyV.Text); err != nil {
			r.Problem("%s / %s: cannot load the TLS certificate and key: %v", tlsCert.Describe(certV), tlsKey.Describe(keyV), err)
		}
		c.TLSCert, c.TLSKey = certV.Text, keyV.Text
	}

	_ = c.LogLevel.UnmarshalText([]byte(r.Text("log-level")))
	c.LogFormat = strings.ToLower(r.Text("log-format"))
	c.AccessTokenTTL = r.Duration("access-token-ttl")
	c.SendRate = r.Float("send-rate")
	c.SendBurst = r.Int("send-burst")
	r.call(&c.Call)
	c.SyncResponseTimeout = r.Duration("sync-response-timeout")
	c.AgentsPerOrg = r.Int("agents-per-org")
	c.MaxPollsPerAgent = r.Int("max-polls-per-agent")
	c.ShutdownTimeout = r.Duration("shutdown-timeout")
	c.TokenRefreshMargin = r.Duration("token-refresh-margin")
	r.lifecycle(c)
	r.audit(c)
	r.admin(c)

	if err := r.Err(); err != nil {
		return nil, err
	}
	return c, nil
}

// storage resolves the Redis or embedded-store settings into c.
func (r *resolver) storage(c *config) {
	s, v := r.Get("redis-url")
	c.RedisURL = v.Text
	if v.Text != "" {
		opts, err := redis.ParseURL(v.Text)
		if err != nil {
			// The URL may hold a password: never echo it.
			r.Problem("%s is not a Redis URL (%v): use redis://[user:password@]host:6379/0 or rediss://... for TLS", v.Source, redactURLError(err, v.Text))
		} else {
			c.RedisOptions = opts
		}
	}
	c.RedisPrefix = r.Text("redis-prefix")
	r.redisTopology(c)
	ds, dv := r.Get("data-dir")
	if !c.usesRedis() && dv.Text == "" {
		r.Problem("%s is empty and no %s is set: name a directory for the embedded store, or set a Redis URL", ds.DescribeOrNames(dv), s.Env)
	}
	c.DataDir = dv.Text
}

// keyText returns the text of key setting name; when nothing is given it
// reads the file name in keysDir. It also returns where the text came from.
func (r *resolver) keyText(name, keysDir, file string) (string, string, bool) {
	s, v := r.Get(name)
	if v.Source == "" { // problem already reported
		return "", "", false
	}
	if v.IsSet {
		return v.Text, v.Source, true
	}
	if keysDir == "" {
		return "", "", false
	}
	path := filepath.Join(keysDir, file)
	text, err := readSecretFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		r.Problem("%s is not set and %s does not exist: run `broker init --dir %s` first, or point %s at the directory holding the keys",
			s.Names(), path, keysDir, r.Setting("keys-dir").Names())
		return "", "", false
	case err != nil:
		r.Problem("cannot read %s (%s): %v", path, s.Env, err)
		return "", "", false
	}
	return text, path, true
}

// readSecretFile reads a secret file, trimmed; an empty file is "".
func readSecretFile(path string) (string, error) { return settings.ReadSecretFile(path) }

// keys loads the box key, signing key and master keyring.
func (r *resolver) keys(keysDir string, warnings *[]string) (*crypto.BoxKeyPair, *crypto.SigningKey, *crypto.Keyring) {
	var box *crypto.BoxKeyPair
	var sig *crypto.SigningKey
	var kr *crypto.Keyring
	boxS, boxV := r.Get("box-key")
	sigS, sigV := r.Get("signing-key")
	mkS, mkV := r.Get("master-keys")
	if keysDir != "" && !boxV.IsSet && !sigV.IsSet && !mkV.IsSet && boxV.Source != "" && sigV.Source != "" && mkV.Source != "" {
		_, e1 := os.Stat(filepath.Join(keysDir, boxKeyFile))
		_, e2 := os.Stat(filepath.Join(keysDir, signingKeyFile))
		_, e3 := os.Stat(filepath.Join(keysDir, masterKeysFile))
		if errors.Is(e1, os.ErrNotExist) && errors.Is(e2, os.ErrNotExist) && errors.Is(e3, os.ErrNotExist) {
			r.Problem("no broker keys: %s holds none of %s, %s, %s and %s, %s, %s are not set: run `broker init --dir %s` once, or point %s at the directory holding the keys",
				keysDir, boxKeyFile, signingKeyFile, masterKeysFile, boxS.Env, sigS.Env, mkS.Env, keysDir, r.Setting("keys-dir").Names())
			return nil, nil, nil
		}
	}
	if text, src, ok := r.keyText("box-key", keysDir, boxKeyFile); ok {
		k, err := crypto.ParseBoxKeyPair(text)
		if err != nil {
			r.Problem("%s: not a broker box key (%v): use the %s written by `broker init`", src, err, boxKeyFile)
		}
		box = k
		checkMode(src, warnings)
	}
	if text, src, ok := r.keyText("signing-key", keysDir, signingKeyFile); ok {
		k, err := crypto.ParseSigningKey(text)
		if err != nil {
			r.Problem("%s: not a broker signing key (%v): use the %s written by `broker init`", src, err, signingKeyFile)
		}
		sig = k
		checkMode(src, warnings)
	}
	if text, src, ok := r.keyText("master-keys", keysDir, masterKeysFile); ok {
		k, err := crypto.ParseKeyring(text)
		if err != nil {
			r.Problem("%s: not a master keyring (%v): use the %s written by `broker init` (lines VERSION:BASE64)", src, err, masterKeysFile)
		}
		kr = k
		checkMode(src, warnings)
	}
	return box, sig, kr
}

func redactURLError(err error, secretURL string) string {
	msg := err.Error()
	if secretURL != "" {
		msg = strings.ReplaceAll(msg, secretURL, "<url>")
	}
	if u, perr := url.Parse(secretURL); perr == nil && u.User != nil {
		if p, ok := u.User.Password(); ok && p != "" {
			msg = strings.ReplaceAll(msg, p, "<password>")
		}
	}
	return msg
}

// checkMode warns when a key file named by src is readable by group or
// others.
func checkMode(src string, warnings *[]string) {
	path := src
	if i := strings.Index(src, "("); i >= 0 && strings.HasSuffix(src, ")") {
		path = src[i+1 : len(src)-1]
	} else if f, ok := strings.CutPrefix(src, "--"); ok {
		_, p, found := strings.Cut(f, " ")
		if !found {
			return
		}
		path = p
	}
	fi, err := os.Stat(path)
	if err != nil {
		return
	}
	if fi.Mode().Perm()&0o077 != 0 {
		*warnings = append(*warnings, fmt.Sprintf("key file %s has mode %v: restrict it with chmod 600", path, fi.Mode().Perm()))
	}
}

var scopePattern = regexp.MustCompile(`^[a-z][a-z0-9_.:-]*$`)

// scopes parses --slack-bot-scopes, a comma-separated list.
func (r *resolver) scopes() []string {
	s, v := r.Get("slack-bot-scopes")
	if v.Source == "" {
		return nil
	}
	var out []string
	for _, sc := range strings.Split(v.Text, ",") {
		sc = strings.TrimSpace(sc)
		if sc == "" {
			continue
		}
		if !scopePattern.MatchString(sc) {
			r.Problem("%s: %q is not a Slack scope: use a comma-separated list such as chat:write,app_mentions:read", s.Describe(v), sc)
			return nil
		}
		out = append(out, sc)
	}
	if len(out) == 0 {
		r.Problem("%s names no scope: the bot needs at least chat:write", s.DescribeOrNames(v))
	}
	return out
}

// config is the validated configuration of `broker serve`.
type config struct {
	Listen             string
	PublicURL          string // no trailing slash
	SlackClientID      string
	SlackClientSecret  string
	SlackSigningSecret string
	SlackAPIURL        string // with trailing slash
	SlackAuthorizeURL  string
	SlackBotScopes     []string
	RedisURL           string
	RedisOptions       *redis.Options
	// RedisCluster and RedisFailover are set instead of RedisOptions by
	// --redis-cluster-addrs and --redis-sentinel-master (config_redis.go).
	RedisCluster  *redis.ClusterOptions
	RedisFailover *redis.FailoverOptions
	// AgentsPerOrg is --agents-per-org (0 = unlimited).
	AgentsPerOrg int
	// PauseIdleFanout is --pause-idle-fanout.
	PauseIdleFanout    bool
	RedisPrefix        string
	DataDir            string
	KeysDir            string
	BoxKey             *crypto.BoxKeyPair
	SigningKey         *crypto.SigningKey
	Keyring            *crypto.Keyring
	MetricsListen      string
	PprofListen        string // --pprof-listen; "" = off
	TLSCert, TLSKey    string
	LogLevel           slog.Level
	LogFormat          string
	AccessTokenTTL     time.Duration
	SendRate           float64
	SendBurst          int
	MaxPollsPerAgent   int
	ShutdownTimeout    time.Duration
	TokenRefreshMargin time.Duration
	Call               callConfig
	// SyncResponseTimeout is --sync-response-timeout.
	SyncResponseTimeout time.Duration
	// AccessTokenOverlap is --access-token-overlap.
	AccessTokenOverlap time.Duration
	// RegistrationTokenTTL is --registration-token-ttl.
	RegistrationTokenTTL time.Duration
	// Audit and AuditRequired are --audit and --audit-required.
	Audit, AuditRequired bool
	Admin                adminConfig // --admin-listen, --admin-token, --agent-idle-after (config_admin.go)
	// Warnings are logged once the logger exists.
	Warnings []string
}

const serveHelpIntro = `Usage: broker serve [flags]

Runs the broker. Every setting is a flag and an environment variable; a flag
given on the command line wins over the environment, which wins over the
default; an empty variable counts as unset. Every secret can also be read
from a file: --NAME-file FILE or SEALRELAY_NAME_FILE=FILE (Docker/systemd
secrets; surrounding white space is trimmed). Giving a value and a file for
the same setting at the same level is an error. At start the broker refuses to
run when stored Slack tokens use a master key version its keyring lacks. Without Redis the broker keeps its state and inboxes in
--data-dir (one process only); with --redis-url, --redis-cluster-addrs or
--redis-sentinel-master (exactly one) any number of replicas can run side by
side.

Settings:
`

const serveHelpOutro = `
Endpoints: the public listener serves /slack/*, /api/*, /healthz and /readyz;
/metrics is served only on --metrics-listen. SIGINT or SIGTERM stops the
broker gracefully (long polls are released, in-flight requests finish within
--shutdown-timeout).
`

func printServeHelp(w io.Writer) {
	fmt.Fprint(w, serveHelpIntro)
	settings.Help(w, allSettings())
	fmt.Fprint(w, serveHelpOutro)
}
