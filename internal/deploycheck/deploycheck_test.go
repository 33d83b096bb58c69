package deploycheck

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

const repoRoot = "../.."

func readRepoFile(t *testing.T, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, rel))
	if err != nil {
		t.Fatalf("read %s: %v", rel, err)
	}
	return string(b)
}

// compose is the parsed compose.yaml with typed accessors that fail the test
// when the shape is wrong.
type compose struct {
	t    *testing.T
	root map[string]any
}

func loadCompose(t *testing.T) *compose {
	t.Helper()
	v, err := parseYAML(readRepoFile(t, "compose.yaml"))
	if err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	m, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("compose.yaml: top level is %T, want a mapping", v)
	}
	return &compose{t: t, root: m}
}

func (c *compose) m(v any, where string) map[string]any {
	c.t.Helper()
	m, ok := v.(map[string]any)
	if !ok {
		c.t.Fatalf("compose.yaml %s: got %T, want a mapping", where, v)
	}
	return m
}

func (c *compose) list(v any, where string) []string {
	c.t.Helper()
	l, ok := v.([]any)
	if !ok {
		c.t.Fatalf("compose.yaml %s: got %T, want a sequence", where, v)
	}
	out := make([]string, 0, len(l))
	for i, x := range l {
		s, ok := x.(string)
		if !ok {
			c.t.Fatalf("compose.yaml %s[%d]: got %T, want a scalar", where, i, x)
		}
		out = append(out, s)
	}
	return out
}

func (c *compose) service(name string) map[string]any {
	c.t.Helper()
	svcs := c.m(c.root["services"], "services")
	svc, ok := svcs[name]
	if !ok {
		c.t.Fatalf("compose.yaml: no service %q", name)
	}
	return c.m(svc, "services."+name)
}

func (c *compose) env(service string) map[string]string {
	c.t.Helper()
	svc := c.service(service)
	out := map[string]string{}
	if svc["environment"] == nil {
		return out
	}
	for k, v := range c.m(svc["environment"], "services."+service+".environment") {
		s, ok := v.(string)
		if !ok {
			c.t.Fatalf("services.%s.environment.%s: got %T, want a scalar", service, k, v)
		}
		out[k] = s
	}
	return out
}

func TestComposeRedis(t *testing.T) {
	t.Parallel()
	c := loadCompose(t)
	redis := c.service("redis")
	if img := redis["image"]; img != "redis:7-alpine" {
		t.Errorf("redis image = %v, want redis:7-alpine", img)
	}
	cmd := strings.Join(c.list(redis["command"], "services.redis.command"), " ")
	for _, want := range []string{"--appendonly yes", "--appendfsync everysec"} {
		if !strings.Contains(cmd, want) {
			t.Errorf("redis command %q lacks %q (AOF persistence, see docs/operations.md)", cmd, want)
		}
	}
	hc := c.m(redis["healthcheck"], "services.redis.healthcheck")
	if test := strings.Join(c.list(hc["test"], "services.redis.healthcheck.test"), " "); !strings.Contains(test, "redis-cli ping") {
		t.Errorf("redis healthcheck %q does not run redis-cli ping", test)
	}
	if _, published := redis["ports"]; published {
		t.Error("redis publishes ports; it must be reachable only on the compose network")
	}
	checkNamedVolumes(t, c, "redis", "/data")
}

func TestComposeBroker(t *testing.T) {
	t.Parallel()
	c := loadCompose(t)
	broker := c.service("broker")
	build := c.m(broker["build"], "services.broker.build")
	if build["context"] != "." {
		t.Errorf("broker build context = %v, want . (the repository's Dockerfile)", build["context"])
	}
	dep := c.m(c.m(broker["depends_on"], "services.broker.depends_on")["redis"], "services.broker.depends_on.redis")
	if dep["condition"] != "service_healthy" {
		t.Errorf("broker depends_on redis condition = %v, want service_healthy", dep["condition"])
	}
	if len(c.list(broker["ports"], "services.broker.ports")) == 0 {
		t.Error("broker publishes no port")
	}
	checkNamedVolumes(t, c, "broker", "/data")
	checkSecrets(t, c, "broker")
	env := c.env("broker")
	if !strings.HasPrefix(env["SEALRELAY_REDIS_URL"], "redis://redis:") {
		t.Errorf("SEALRELAY_REDIS_URL = %q, want the compose service redis://redis:6379/...", env["SEALRELAY_REDIS_URL"])
	}
}

func TestComposeBridgeProfile(t *testing.T) {
	t.Parallel()
	c := loadCompose(t)
	br := c.service("bridge")
	if p := c.list(br["profiles"], "services.bridge.profiles"); !slices.Equal(p, []string{"bridge"}) {
		t.Errorf("bridge profiles = %v, want [bridge] (optional service)", p)
	}
	ep := c.list(br["entrypoint"], "services.bridge.entrypoint")
	if len(ep) == 0 || filepath.Base(ep[0]) != "bridge" {
		t.Errorf("bridge entrypoint = %v, want the bridge binary", ep)
	}
	if cmd := c.list(br["command"], "services.bridge.command"); len(cmd) == 0 || cmd[0] != "run" {
		t.Errorf("bridge command = %v, want run ...", cmd)
	}
	checkNamedVolumes(t, c, "bridge", "")
	checkSecrets(t, c, "bridge")
}

// checkNamedVolumes asserts that every volume of the service that is not a
// host path is declared under the top-level volumes, and that one is
// mounted at mustMount (when not empty).
func checkNamedVolumes(t *testing.T, c *compose, service, mustMount string) {
	t.Helper()
	svc := c.service(service)
	declared := map[string]any{}
	if c.root["volumes"] != nil {
		declared = c.m(c.root["volumes"], "volumes")
	}
	mounted := false
	for _, v := range c.list(svc["volumes"], "services."+service+".volumes") {
		src, dst, ok := strings.Cut(v, ":")
		if !ok {
			t.Errorf("services.%s.volumes: %q is not source:target", service, v)
			continue
		}
		dst, _, _ = strings.Cut(dst, ":")
		if strings.HasPrefix(src, ".") || strings.HasPrefix(src, "/") || strings.HasPrefix(src, "~") {
			continue // bind mount
		}
		if _, ok := declared[src]; !ok {
			t.Errorf("services.%s.volumes: named volume %q is not declared under the top-level volumes", service, src)
		}
		if dst == mustMount {
			mounted = true
		}
	}
	if mustMount != "" && !mounted {
		t.Errorf("services.%s: no named volume mounted at %s", service, mustMount)
	}
}

// secretNamePattern flags variables that must not carry their value inline.
var secretNamePattern = regexp.MustCompile(`SECRET|PASSWORD|MASTER_KEY|PRIVATE|TOKEN$`)

// checkSecrets asserts that secrets come from files: every *_FILE variable
// points at /run/secrets/<name> of a secret the service mounts and the
// top-level secrets declare with a file, and no secret-looking variable is
// set inline.
func checkSecrets(t *testing.T, c *compose, service string) {
	t.Helper()
	svc := c.service(service)
	mounted := map[string]bool{}
	if svc["secrets"] != nil {
		for _, s := range c.list(svc["secrets"], "services."+service+".secrets") {
			mounted[s] = true
		}
	}
	declared := map[string]any{}
	if c.root["secrets"] != nil {
		declared = c.m(c.root["secrets"], "secrets")
	}
	for s := range mounted {
		d, ok := declared[s]
		if !ok {
			t.Errorf("services.%s mounts secret %q that is not declared under the top-level secrets", service, s)
			continue
		}
		if f, _ := c.m(d, "secrets."+s)["file"].(string); f == "" {
			t.Errorf("secrets.%s has no file", s)
		}
	}
	for k, v := range c.env(service) {
		if strings.HasSuffix(k, "_FILE") {
			name, ok := strings.CutPrefix(v, "/run/secrets/")
			if !ok || !mounted[name] {
				t.Errorf("services.%s.environment.%s = %q, want /run/secrets/<a secret the service mounts>", service, k, v)
			}
			continue
		}
		if secretNamePattern.MatchString(k) {
			t.Errorf("services.%s.environment.%s carries a secret inline; use %s_FILE and a compose secret", service, k, k)
		}
	}
}

func TestComposeEnvVarsKnownToBridge(t *testing.T) {
	t.Parallel()
	c := loadCompose(t)
	known, err := readSourceConfig(repoRoot, "cmd/bridge", "bridge")
	if err != nil {
		t.Fatal(err)
	}
	if len(known.EnvVars) == 0 {
		t.Fatal("found no SEALRELAY_* variable in cmd/bridge; has the scanner broken?")
	}
	for k := range c.env("bridge") {
		if strings.HasPrefix(k, "SEALRELAY_") && !known.EnvVars[k] {
			t.Errorf("compose.yaml sets %s on the bridge, which the bridge does not know (known: %v)", k, sortedKeys(known.EnvVars))
		}
	}
}

// dockerStages splits a Dockerfile into its stages (each starting at FROM).
func dockerStages(src string) [][]string {
	var stages [][]string
	var cont strings.Builder
	for _, line := range strings.Split(src, "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "#") || line == "" {
			continue
		}
		if strings.HasSuffix(line, "\\") {
			cont.WriteString(strings.TrimSuffix(line, "\\") + " ")
			continue
		}
		cont.WriteString(line)
		ins := cont.String()
		cont.Reset()
		if strings.HasPrefix(strings.ToUpper(ins), "FROM ") {
			stages = append(stages, nil)
		}
		if len(stages) > 0 {
			stages[len(stages)-1] = append(stages[len(stages)-1], ins)
		}
	}
	return stages
}

func TestDockerfile(t *testing.T) {
	t.Parallel()
	stages := dockerStages(readRepoFile(t, "Dockerfile"))
	if len(stages) < 2 {
		t.Fatalf("Dockerfile has %d stages, want a multi-stage build", len(stages))
	}
	build := strings.Join(stages[0], "\n")
	for _, want := range []string{"FROM golang:", "CGO_ENABLED=0", "-trimpath", "./cmd/broker", "./cmd/bridge"} {
		if !strings.Contains(build, want) {
			t.Errorf("build stage lacks %q", want)
		}
	}
	if !strings.Contains(readRepoFile(t, "Dockerfile"), "ARG GO_VERSION=1.26") {
		t.Error("Dockerfile does not pin GO_VERSION=1.26 (go.mod's Go)")
	}
	final := stages[len(stages)-1]
	if !strings.Contains(final[0], "distroless/static") && !strings.Contains(final[0], "alpine") {
		t.Errorf("final stage %q, want distroless/static or alpine", final[0])
	}
	var user string
	for _, ins := range final {
		if u, ok := strings.CutPrefix(ins, "USER "); ok {
			user = strings.TrimSpace(u)
		}
	}
	if user == "" || user == "root" || user == "0" || strings.HasPrefix(user, "0:") || strings.HasPrefix(user, "root:") {
		t.Errorf("final stage runs as %q, want a non-root USER", user)
	}
	for _, ins := range final {
		if strings.HasPrefix(ins, "RUN ") {
			t.Errorf("final stage runs %q; the runtime image must need no shell", ins)
		}
	}
}

func TestDockerignoreKeepsSecretsOut(t *testing.T) {
	t.Parallel()
	di := readRepoFile(t, ".dockerignore")
	for _, want := range []string{".git", "secrets/", "**/*.env"} {
		if !slices.Contains(strings.Split(di, "\n"), want) {
			t.Errorf(".dockerignore lacks %q", want)
		}
	}
}

// TestOperationsDocCoversBridgeConfig keeps the configuration reference in
// docs/operations.md complete: every flag and SEALRELAY_* variable the
// bridge's sources define must be named there.
func TestOperationsDocCoversBridgeConfig(t *testing.T) {
	t.Parallel()
	doc := readRepoFile(t, "docs/operations.md")
	sc, err := readSourceConfig(repoRoot, "cmd/bridge")
	if err != nil {
		t.Fatal(err)
	}
	if len(sc.Flags) == 0 {
		t.Fatal("found no flag in cmd/bridge; has the scanner broken?")
	}
	for _, f := range sortedKeys(sc.Flags) {
		if !strings.Contains(doc, "--"+f) {
			t.Errorf("docs/operations.md does not document bridge flag --%s", f)
		}
	}
	for _, v := range sortedKeys(sc.EnvVars) {
		if !strings.Contains(doc, v) {
			t.Errorf("docs/operations.md does not document bridge variable %s", v)
		}
	}
}
