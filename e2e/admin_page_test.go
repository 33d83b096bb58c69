package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sealrelay/sealrelay/internal/slackfake"
)

// adminDir is the admin page driver's directory (playwright-core installed
// by ./scripts/test.sh with npm ci).
const adminDir = "apps/admin"

// chromiumPath is Debian's chromium, which the driver launches.
const chromiumPath = "/usr/bin/chromium"

// requireAdminDriver fails the test, saying what to run, unless node,
// chromium and the pinned playwright-core are installed.
func requireAdminDriver(t *testing.T) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node is not installed: the admin page test needs Node.js 18 or later (apt-get install nodejs npm; ./scripts/test.sh does)")
	}
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("%s is missing: apt-get install chromium (./scripts/test.sh does): %v", chromiumPath, err)
	}
	raw, err := os.ReadFile(filepath.Join(adminDir, "node_modules", "playwright-core", "package.json"))
	if err != nil {
		t.Fatalf("playwright-core is not installed in e2e/apps/admin: run `cd e2e/apps/admin && npm ci` (./scripts/test.sh does): %v", err)
	}
	var pkg struct {
		Version string `json:"version"`
	}
	if err := json.Unmarshal(raw, &pkg); err != nil || pkg.Version != "1.65.1" {
		t.Fatalf("e2e/apps/admin has playwright-core %q, package-lock.json pins 1.65.1: run `cd e2e/apps/admin && npm ci`", pkg.Version)
	}
	return node
}

// adminBroker is a broker with its admin listener.
type adminBroker struct {
	r         *replica
	adminURL  string
	tokenFile string
	token     string
}

// startAdminBroker starts one broker replica with the admin listener on a
// free loopback port, on the embedded store (in its own data directory)
// or on the env's Redis.
func startAdminBroker(e *env, store string) *adminBroker {
	t := e.t
	t.Helper()
	ab := &adminBroker{token: randHex(t, 32), tokenFile: filepath.Join(e.dir, "admin.token")}
	if err := os.WriteFile(ab.tokenFile, []byte(ab.token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	storeArgs := []string{"--data-dir", filepath.Join(e.dir, "data")}
	if store == "redis" {
		storeArgs = []string{"--redis-url", e.redis.url, "--redis-prefix", e.redis.prefix}
	}
	for attempt := 0; attempt < 3; attempt++ {
		port, adminPort := freePort(t), freePort(t)
		url := fmt.Sprintf("http://127.0.0.1:%d", port)
		p := startProc(t, "broker "+store, filepath.Join(e.dir, "broker-"+store+".log"), minimalEnv(e.dir), brokerBin, append([]string{"serve",
			"--listen", fmt.Sprintf("127.0.0.1:%d", port),
			"--public-url", url,
			"--slack-client-id", clientID,
			"--slack-client-secret", clientSecret,
			"--slack-signing-secret", signingSecret,
			"--slack-api-url", slackfake.APIURL(e.slack.URL),
			"--slack-authorize-url", slackfake.AuthorizeURL(e.slack.URL),
			"--keys-dir", e.keysDir,
			"--log-format", "json",
			"--shutdown-timeout", "5s",
			"--admin-listen", fmt.Sprintf("127.0.0.1:%d", adminPort),
			"--admin-token-file", ab.tokenFile,
		}, storeArgs...)...)
		if waitHTTP(url+"/readyz", p, 15*time.Second) {
			ab.r = &replica{name: store, url: url, proc: p}
			ab.adminURL = fmt.Sprintf("http://127.0.0.1:%d", adminPort)
			e.replicas[store] = ab.r
			e.publicURL = url
			return ab
		}
		p.stop(t)
		if !strings.Contains(p.log(), "address already in use") {
			t.Fatalf("broker did not become ready:\n%s", p.tail(40))
		}
	}
	t.Fatal("broker: no free port after 3 attempts")
	return nil
}

// cli runs `broker <args>` against the admin listener and returns stdout
// and the exit code.
func (ab *adminBroker) cli(t *testing.T, e *env, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(brokerBin, append(args, "--admin-url", ab.adminURL, "--admin-token-file", ab.tokenFile)...)
	cmd.Env = minimalEnv(e.dir)
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("broker %v: %v", args, err)
	}
	return out.String(), errOut.String(), code
}

type cliAgent struct {
	ID       string    `json:"id"`
	OrgID    string    `json:"org_id"`
	LastPull time.Time `json:"last_pull"`
	Idle     bool      `json:"idle"`
}

// agents returns `broker agents list --json`.
func (ab *adminBroker) agents(t *testing.T, e *env) []cliAgent {
	t.Helper()
	out, errOut, code := ab.cli(t, e, "agents", "list", "--json")
	if code != 0 {
		t.Fatalf("broker agents list: exit %d: %s", code, errOut)
	}
	var list []cliAgent
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("broker agents list --json: %q (%v)", out, err)
	}
	return list
}

// mintAdd mints an add registration token for org through the admin API.
func (ab *adminBroker) mintAdd(t *testing.T, org string) string {
	t.Helper()
	req, err := http.NewRequest("POST", ab.adminURL+"/admin/api/orgs/"+org+"/registration-tokens",
		strings.NewReader(`{"mode":"add","confirm":"`+org+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+ab.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var ans struct {
		RegistrationToken struct {
			Token string `json:"token"`
		} `json:"registration_token"`
	}
	if err := json.Unmarshal(b, &ans); err != nil || resp.StatusCode != 200 || ans.RegistrationToken.Token == "" {
		t.Fatalf("mint add token: %d %q (%v)", resp.StatusCode, b, err)
	}
	return ans.RegistrationToken.Token
}

// pageResult is the driver's output (both steps; unset fields are zero).
type pageResult struct {
	Step                  string   `json:"step"`
	CSP                   string   `json:"csp"`
	RowsBefore            int      `json:"rowsBefore"`
	LastPull              string   `json:"lastPull"`
	Idle                  string   `json:"idle"`
	Installations         int      `json:"installations"`
	AuditHint             string   `json:"auditHint"`
	TokenFieldAfter       string   `json:"tokenFieldAfter"`
	DialogText            string   `json:"dialogText"`
	StillThereAfterCancel int      `json:"stillThereAfterCancel"`
	Status                string   `json:"status"`
	Verify                string   `json:"verify"`
	VerifyClass           string   `json:"verifyClass"`
	MintedBefore          bool     `json:"mintedBefore"`
	MintedAfterCancel     bool     `json:"mintedAfterCancel"`
	MintText              string   `json:"mintText"`
	WarningOnAdd          bool     `json:"warningOnAdd"`
	MintWarning           string   `json:"mintWarning"`
	MintedWhat            string   `json:"mintedWhat"`
	MintedToken           string   `json:"mintedToken"`
	MintedCommand         string   `json:"mintedCommand"`
	MintStatus            string   `json:"mintStatus"`
	MintedSelect          string   `json:"mintedSelect"`
	Agents                []string `json:"agents"`
	MintedOnLoad          bool     `json:"mintedOnLoad"`
	Problems              []string `json:"problems"`
}

// drivePage runs the Chromium driver for one step (see admin_page.js).
func drivePage(t *testing.T, e *env, node string, ab *adminBroker, vars ...string) pageResult {
	t.Helper()
	cmd := exec.Command(node, "admin_page.js")
	cmd.Dir = adminDir
	cmd.Env = append(append(minimalEnv(e.dir), "ADMIN_URL="+ab.adminURL, "ADMIN_TOKEN="+ab.token), vars...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("admin page driver %v: %v\n%s", vars, err, stderr.String())
	}
	var res pageResult
	if err := json.Unmarshal([]byte(stdout.String()), &res); err != nil {
		t.Fatalf("driver output %q: %v", stdout.String(), err)
	}
	return res
}

type pageCheck struct {
	what string
	ok   bool
}

func checkPage(t *testing.T, res pageResult, checks []pageCheck) {
	t.Helper()
	checks = append(checks,
		pageCheck{"strict CSP", strings.Contains(res.CSP, "script-src 'self'") && !strings.Contains(res.CSP, "unsafe-inline")},
		pageCheck{"no rows before the token", res.RowsBefore == 0},
		pageCheck{"no page errors (CSP violations included)", len(res.Problems) == 0})
	for _, c := range checks {
		if !c.ok {
			t.Errorf("admin page (step %s): %s: %+v", res.Step, c.what, res)
		}
	}
}

var pageVerifyIntact = regexp.MustCompile(`^intact: [1-9]\d* chains, [1-9]\d* records$`)

// TestAdminPageRevokeStopsPulls: a registered, pulling agent is listed
// (with its last pull) by `broker agents list` and by the admin page in
// headless Chromium; revoking it from the page (Cancel first changes
// nothing, Confirm revokes) makes the broker answer its bridge's next pull
// with 401. Then, from the page, "Verify audit log" reports the log intact,
// and "New registration token…" (Cancel first mints nothing; replace warns
// that the current agents stop) shows a replace token once with its
// `bridge register` command: a bridge registered with it replaces the
// remaining agent, and the page lists only the new one. On the embedded
// store, whose bbolt file the running server holds locked, and on Redis.
func TestAdminPageRevokeStopsPulls(t *testing.T) {
	node := requireAdminDriver(t)
	for _, store := range []string{"embedded", "redis"} {
		t.Run(store, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			ab := startAdminBroker(e, store)
			org, token := e.install(ab.r)
			e.register(ab.r.url, org, token)
			e.startBridge()

			// The bridge's first pull is recorded as its last pull.
			var ag cliAgent
			waitFor(t, "`broker agents list` to show the agent's last pull", 30*time.Second, func() bool {
				list := ab.agents(t, e)
				if len(list) != 1 {
					t.Fatalf("agents: %+v, want one", list)
				}
				ag = list[0]
				return !ag.LastPull.IsZero()
			})
			if ag.OrgID != teamID || ag.Idle {
				t.Fatalf("agent %+v: want org %s, not idle", ag, teamID)
			}
			table, _, _ := ab.cli(t, e, "agents", "list")
			if !strings.Contains(table, "LAST PULL") || !strings.Contains(table, ag.ID) || !strings.Contains(table, "ago") {
				t.Fatalf("agents table:\n%s", table)
			}

			// A second agent, added next to the first: the replace token
			// minted on the page must end it.
			two := e.newAgent("two")
			two.register(ab.r.url, org, ab.mintAdd(t, org))
			two.startBridge()
			var twoID string
			for _, a := range ab.agents(t, e) {
				if a.ID != ag.ID {
					twoID = a.ID
				}
			}
			if twoID == "" {
				t.Fatal("the second agent is not listed")
			}
			rejectedBefore := countLines(ab.r.proc, `"route":"pull"`, `"status":401`)

			res := drivePage(t, e, node, ab, "STEP=revoke", "AGENT_ID="+ag.ID, "ORG_ID="+org)
			minted := registerLine.FindStringSubmatch(res.MintedCommand)
			checkPage(t, res, []pageCheck{
				{"last pull shown", res.LastPull != "" && res.LastPull != "never"},
				{"not idle", res.Idle == ""},
				{"one installation", res.Installations == 1},
				{"audit records shown (install and register at least)", strings.Contains(res.AuditHint, "most recent records")},
				{"token field cleared", res.TokenFieldAfter == ""},
				{"dialog names the agent", strings.Contains(res.DialogText, ag.ID)},
				{"cancel keeps the agent", res.StillThereAfterCancel == 1},
				{"revoked status", strings.Contains(res.Status, "Revoked "+ag.ID)},
				{"verify: intact", pageVerifyIntact.MatchString(res.Verify) && res.VerifyClass == "ok"},
				{"no token before minting", !res.MintedBefore},
				{"cancel mints nothing", !res.MintedAfterCancel},
				{"mint dialog names the workspace", strings.Contains(res.MintText, "E2E Team") && strings.Contains(res.MintText, org)},
				{"no warning for add", !res.WarningOnAdd},
				{"replace warns that the current agent stops at once", strings.Contains(res.MintWarning, "the 1 current agent(s) of E2E Team") &&
					strings.Contains(res.MintWarning, "stop at once")},
				{"minted token says replace", strings.Contains(res.MintedWhat, "REPLACES") && strings.Contains(res.MintedWhat, org)},
				{"register command with the broker URL, org and token", minted != nil && minted[1] == ab.r.url && minted[2] == org &&
					minted[3] == res.MintedToken && minted[0] == res.MintedCommand},
				{"token selectable", res.MintedSelect == "all"},
				{"status without the token", res.MintedToken != "" && strings.Contains(res.MintStatus, "replaces the current agents") &&
					!strings.Contains(res.MintStatus, res.MintedToken)},
			})
			if t.Failed() {
				t.FailNow()
			}

			// The broker refuses the bridge's next pull (the one in flight
			// ends with its long-poll wait).
			waitFor(t, "the broker to answer the revoked bridge's pull with 401", 60*time.Second, func() bool {
				return countLines(ab.r.proc, `"route":"pull"`, `"status":401`) > rejectedBefore
			})
			if list := ab.agents(t, e); len(list) != 1 || list[0].ID != twoID {
				t.Fatalf("agents after revoke: %+v, want only %s", list, twoID)
			}
			_, errOut, code := ab.cli(t, e, "dlq", "list", ag.ID)
			if code != 1 || !strings.Contains(errOut, "unknown agent "+ag.ID) {
				t.Fatalf("dlq list of the revoked agent: exit %d %q", code, errOut)
			}

			// Replace: the page's token registers a new agent in place of
			// the second one.
			three := e.newAgent("three")
			three.register(minted[1], minted[2], minted[3])
			three.startBridge()
			list := ab.agents(t, e)
			if len(list) != 1 || list[0].ID == twoID || list[0].ID == ag.ID {
				t.Fatalf("agents after the replace registration: %+v, want one new agent (not %s or %s)", list, ag.ID, twoID)
			}
			threeID := list[0].ID
			res = drivePage(t, e, node, ab, "STEP=list", "AGENT_ID="+threeID)
			checkPage(t, res, []pageCheck{
				{"only the new agent listed", len(res.Agents) == 1 && res.Agents[0] == threeID},
				{"the token is not shown again", !res.MintedOnLoad},
			})

			log := ab.r.proc.log()
			if strings.Contains(log, ab.token) {
				t.Fatal("the admin token appears in the broker log")
			}
			if strings.Contains(log, minted[3]) {
				t.Fatal("the minted registration token appears in the broker log")
			}
		})
	}
}
