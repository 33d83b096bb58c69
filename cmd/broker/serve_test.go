package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sealrelay/sealrelay/broker"
	"github.com/sealrelay/sealrelay/crypto"
	"github.com/sealrelay/sealrelay/internal/testredis"
	"github.com/sealrelay/sealrelay/protocol"
	"github.com/sealrelay/sealrelay/state"
	"github.com/sealrelay/sealrelay/store/boltstore"
	"github.com/sealrelay/sealrelay/store/redisstore"
)

// running is a broker started in-process by startServe.
type running struct {
	cfg     *config
	addrs   listening
	cancel  context.CancelFunc
	done    chan error
	logs    *syncBuffer
	baseURL string
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func newSyncBuffer() *syncBuffer { return &syncBuffer{} }

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startServe loads the configuration from args and env and runs serve in a
// goroutine until the test ends (or stop is called).
func startServe(t *testing.T, args []string, env map[string]string) *running {
	t.Helper()
	cfg, err := loadConfig(append([]string{"--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--log-level", "debug"}, args...), envMap(env))
	if err != nil {
		t.Fatal(err)
	}
	logs := newSyncBuffer()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan listening, 1)
	r := &running{cfg: cfg, cancel: cancel, done: make(chan error, 1), logs: logs}
	go func() {
		r.done <- serve(ctx, cfg, slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})), ready)
	}()
	select {
	case r.addrs = <-ready:
	case err := <-r.done:
		cancel()
		t.Fatalf("serve returned before listening: %v", err)
	}
	r.baseURL = "http://" + r.addrs.API.String()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop cancels serve and waits for it to return; it fails the test on an
// error.
func (r *running) stop(t *testing.T) {
	t.Helper()
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	if err := <-r.done; err != nil {
		t.Errorf("serve returned %v", err)
	}
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func checkEndpoints(t *testing.T, r *running) {
	t.Helper()
	tests := []struct {
		url      string
		status   int
		contains string
	}{
		{r.baseURL + "/healthz", 200, `"ok":true`},
		{r.baseURL + "/readyz", 200, `"ok":true`},
		{r.baseURL + "/api/broker-pubkey", 200, r.cfg.BoxKey.Public.String()},
		{r.baseURL + "/api/broker-pubkey", 200, r.cfg.SigningKey.Public().String()},
		{r.baseURL + "/metrics", 404, ""}, // metrics only on their own listener
		{"http://" + r.addrs.Metrics.String() + "/metrics", 200, "sealrelay_broker_long_polls_active"},
		{"http://" + r.addrs.Metrics.String() + "/metrics", 200, "go_goroutines"},
	}
	for _, tt := range tests {
		status, body := httpGet(t, tt.url)
		if status != tt.status || !strings.Contains(body, tt.contains) {
			t.Errorf("GET %s = %d %.200q; want %d containing %q", tt.url, status, body, tt.status, tt.contains)
		}
	}
}

func TestServeEmbedded(t *testing.T) {
	env := baseEnv(t)
	r := startServe(t, nil, env)
	checkEndpoints(t, r)
	r.stop(t)

	// Stopping closed both stores: the files can be opened again, and they
	// are private.
	st, err := boltstore.OpenStateDir(env["SEALRELAY_DATA_DIR"])
	if err != nil {
		t.Fatalf("state still locked after shutdown: %v", err)
	}
	_ = st.Close()
	for _, f := range []string{boltstore.StateFileName, "queue.db"} {
		fi, err := os.Stat(filepath.Join(env["SEALRELAY_DATA_DIR"], f))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v mode %v", f, err, fi.Mode())
		}
	}
	logs := r.logs.String()
	for _, want := range []string{`"msg":"broker started"`, `"store":"embedded"`, `"master_key_version":1`,
		`"broker_pubkey":"` + r.cfg.BoxKey.Public.String(), `"msg":"broker stopped"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %s", want)
		}
	}
	for _, secret := range []string{"client-secret-value", "signing-secret-value", r.cfg.SigningKey.SeedString(), r.cfg.BoxKey.PrivateString()} {
		if strings.Contains(logs, secret) {
			t.Errorf("logs contain a secret")
		}
	}
}

func TestServeRedis(t *testing.T) {
	rdb, prefix := testredis.New(t, "serve")
	env := baseEnv(t)
	env["SEALRELAY_REDIS_URL"] = testredis.URL(t)
	env["SEALRELAY_REDIS_PREFIX"] = prefix
	r := startServe(t, nil, env)
	checkEndpoints(t, r)
	if _, err := os.Stat(env["SEALRELAY_DATA_DIR"]); !os.IsNotExist(err) {
		t.Errorf("serve with Redis created the data dir")
	}
	if !strings.Contains(r.logs.String(), `"store":"redis"`) {
		t.Error("logs do not say the store is redis")
	}
	// State lands under <prefix>st:, inboxes under <prefix>q:.
	st := redisstore.OpenState(rdb, prefix)
	if err := st.PutInstallation(context.Background(), &state.Installation{OrgID: "T1"}); err != nil {
		t.Fatal(err)
	}
	var stateKeys int
	iter := rdb.Scan(context.Background(), 0, prefix+"*", 1000).Iterator()
	for iter.Next(context.Background()) {
		k := iter.Val()
		switch {
		case strings.HasPrefix(k, prefix+"st:"):
			stateKeys++
		case strings.HasPrefix(k, prefix+"q:"):
		default:
			t.Errorf("key %s is outside the state and queue namespaces", k)
		}
	}
	if err := iter.Err(); err != nil || stateKeys == 0 {
		t.Fatalf("no state key under %s%s (%v)", prefix, "st:", err)
	}
}

func TestServeStartupErrors(t *testing.T) {
	t.Run("port in use", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		cfg, err := loadConfig([]string{"--listen", ln.Addr().String()}, envMap(baseEnv(t)))
		if err != nil {
			t.Fatal(err)
		}
		err = serve(context.Background(), cfg, slog.New(slog.DiscardHandler), nil)
		if err == nil || !strings.Contains(err.Error(), "--listen / SEALRELAY_LISTEN") {
			t.Fatalf("serve = %v", err)
		}
	})
	t.Run("data dir locked", func(t *testing.T) {
		env := baseEnv(t)
		st, err := boltstore.OpenStateDir(env["SEALRELAY_DATA_DIR"])
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		cfg, err := loadConfig([]string{"--listen", "127.0.0.1:0"}, envMap(env))
		if err != nil {
			t.Fatal(err)
		}
		err = serve(context.Background(), cfg, slog.New(slog.DiscardHandler), nil)
		if err == nil || !strings.Contains(err.Error(), "in use by another process") {
			t.Fatalf("serve = %v", err)
		}
	})
	t.Run("keyring lacks a stored version", func(t *testing.T) {
		env := baseEnv(t)
		cfg, err := loadConfig([]string{"--listen", "127.0.0.1:0"}, envMap(env))
		if err != nil {
			t.Fatal(err)
		}
		newer, err := crypto.NewKeyring(map[uint32][]byte{7: make([]byte, 32)})
		if err != nil {
			t.Fatal(err)
		}
		st, err := boltstore.OpenStateDir(env["SEALRELAY_DATA_DIR"])
		if err != nil {
			t.Fatal(err)
		}
		seedInstallations(t, st, newer)
		_ = st.Close()
		err = serve(context.Background(), cfg, slog.New(slog.DiscardHandler), nil)
		if err == nil || !strings.Contains(err.Error(), "lacks master key version 7 (4 secrets") {
			t.Fatalf("serve = %v", err)
		}
	})
	t.Run("redis unreachable", func(t *testing.T) {
		cfg, err := loadConfig([]string{"--listen", "127.0.0.1:0", "--redis-url", "redis://127.0.0.1:1/0"}, envMap(baseEnv(t)))
		if err != nil {
			t.Fatal(err)
		}
		err = serve(context.Background(), cfg, slog.New(slog.DiscardHandler), nil)
		if err == nil || !strings.Contains(err.Error(), "redis at 127.0.0.1:1 is unreachable") {
			t.Fatalf("serve = %v", err)
		}
	})
}

// TestServeShutdownReleasesLongPoll registers an agent, starts a 25-second
// long poll and stops the broker: the poll must be answered (200, empty)
// instead of being cut off when the shutdown timeout ends.
func TestServeShutdownReleasesLongPoll(t *testing.T) {
	ctx := context.Background()
	env := baseEnv(t)
	cfg, err := loadConfig(nil, envMap(env))
	if err != nil {
		t.Fatal(err)
	}
	// Seed an installation and a registration token, as the OAuth callback
	// would.
	st, err := boltstore.OpenStateDir(env["SEALRELAY_DATA_DIR"])
	if err != nil {
		t.Fatal(err)
	}
	hk, err := broker.DeriveHashKey(cfg.SigningKey)
	if err != nil {
		t.Fatal(err)
	}
	const regToken = "registration-token-for-the-shutdown-test-0123456789"
	if err := st.PutInstallation(ctx, &state.Installation{OrgID: "T1", InstalledAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := st.PutRegistrationToken(ctx, hk.Hash(broker.KindRegistrationToken, regToken), "T1", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	r := startServe(t, []string{"--shutdown-timeout", "10s"}, env)
	agentBox, _ := crypto.GenerateBoxKeyPair()
	agentSig, _ := crypto.GenerateSigningKey()
	var reg protocol.RegisterResponse
	postJSON(t, r.baseURL+"/api/register", "", protocol.RegisterRequest{OrgID: "T1", WorkspaceID: "T1",
		ServerPubkey: agentBox.Public.String(), ServerSigningPubkey: agentSig.Public().String(), RegistrationToken: regToken}, 200, &reg)
	if reg.BrokerAccessToken == "" {
		t.Fatal("no access token")
	}

	ts := time.Now().Unix()
	maxN, wait := 10, 25
	pull := protocol.PullRequest{OrgID: "T1", WorkspaceID: "T1", ProtocolVersion: protocol.Version,
		MaxMessages: &maxN, WaitSeconds: &wait, Timestamp: ts,
		Signature: protocol.EncodeSignature(agentSig.Sign(protocol.PullSigningBytes("T1", ts, maxN, wait)))}
	type result struct {
		resp protocol.PullResponse
		err  error
	}
	res := make(chan result, 1)
	go func() {
		var out protocol.PullResponse
		err := tryPostJSON(r.baseURL+"/api/inbox/pull", reg.BrokerAccessToken, pull, 200, &out)
		res <- result{out, err}
	}()
	// Wait until the broker reports the poll as waiting.
	metricsURL := "http://" + r.addrs.Metrics.String() + "/metrics"
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, body := httpGet(t, metricsURL)
		if strings.Contains(body, "sealrelay_broker_long_polls_active 1") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("long poll never became active; logs:\n%s", r.logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	r.stop(t)
	got := <-res
	if got.err != nil {
		t.Fatalf("long poll was not released cleanly by shutdown: %v", got.err)
	}
	if !got.resp.OK || len(got.resp.Messages) != 0 {
		t.Fatalf("pull response %+v", got.resp)
	}
}

func tryPostJSON(url, bearer string, body any, wantStatus int, out any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	rb, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != wantStatus {
		return fmt.Errorf("POST %s: status %d, body %s", url, resp.StatusCode, rb)
	}
	return json.Unmarshal(rb, out)
}

func postJSON(t *testing.T, url, bearer string, body any, wantStatus int, out any) {
	t.Helper()
	if err := tryPostJSON(url, bearer, body, wantStatus, out); err != nil {
		t.Fatal(err)
	}
}

// TestBinary builds the command and runs it as a user would: version with
// an -ldflags version, a configuration error (exit 2), and serve stopped by
// SIGTERM (exit 0).
func TestBinary(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "broker")
	if runtime.GOOS == "windows" {
		bin += ".exe"
	}
	build := exec.Command("go", "build", "-o", bin, "-ldflags", "-X main.version=v9.9.9-test", ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	out, err := exec.Command(bin, "version").Output()
	if err != nil || strings.TrimSpace(string(out)) != "sealrelay broker v9.9.9-test (protocol "+protocol.Version+")" {
		t.Fatalf("version: %q %v", out, err)
	}

	cmd := exec.Command(bin, "serve")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "SEALRELAY_KEYS_DIR=" + t.TempDir()}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err = cmd.Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
		t.Fatalf("serve without configuration: %v, want exit status 2", err)
	}
	for _, want := range []string{"SEALRELAY_PUBLIC_URL (or --public-url) is required", "SEALRELAY_SLACK_SIGNING_SECRET", "no broker keys"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
		}
	}

	env := baseEnv(t)
	cmd = exec.Command(bin, "serve", "--listen", "127.0.0.1:0")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	pr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill() }()
	lines := bufio.NewScanner(pr)
	addr := ""
	var logs strings.Builder
	for addr == "" && lines.Scan() {
		logs.WriteString(lines.Text() + "\n")
		var rec struct {
			Msg    string `json:"msg"`
			Listen string `json:"listen"`
		}
		if json.Unmarshal(lines.Bytes(), &rec) == nil && rec.Msg == "broker started" {
			addr = rec.Listen
		}
	}
	if addr == "" {
		t.Fatalf("no start line; stderr:\n%s", logs.String())
	}
	if status, _ := httpGet(t, "http://"+addr+"/readyz"); status != 200 {
		t.Fatalf("/readyz = %d", status)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	rest, _ := io.ReadAll(pr)
	logs.Write(rest)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("serve after SIGTERM: %v\n%s", err, logs.String())
	}
	if !strings.Contains(logs.String(), `"msg":"broker stopped"`) {
		t.Fatalf("no stop line:\n%s", logs.String())
	}
}

// writeSelfSignedCert writes a certificate for 127.0.0.1 and its key as PEM
// files and returns their paths and the certificate.
func writeSelfSignedCert(t *testing.T) (certPath, keyPath string, cert *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "sealrelay test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err = x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certPath, keyPath = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certPath, keyPath, cert
}

func TestServeTLS(t *testing.T) {
	certPath, keyPath, cert := writeSelfSignedCert(t)
	env := baseEnv(t)
	env["SEALRELAY_TLS_CERT"] = certPath
	env["SEALRELAY_TLS_KEY"] = keyPath
	r := startServe(t, nil, env)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	resp, err := client.Get("https://" + r.addrs.API.String() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.TLS == nil {
		t.Fatalf("https /readyz: %d tls=%v", resp.StatusCode, resp.TLS != nil)
	}
	// Plain HTTP on the TLS port is refused.
	if resp, err := http.Get("http://" + r.addrs.API.String() + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Fatal("plain HTTP served on the TLS listener")
		}
	}

	// A key that does not match the certificate fails at start.
	_, otherKey, _ := writeSelfSignedCert(t)
	env["SEALRELAY_TLS_KEY"] = otherKey
	if _, err := loadConfig(nil, envMap(env)); err == nil || !strings.Contains(err.Error(), "cannot load the TLS certificate and key") {
		t.Fatalf("mismatched key: %v", err)
	}
}
