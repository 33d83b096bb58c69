// Package installflow walks a Slack admin's install of the sealrelay app
// through a broker, as a browser would: GET /slack/install, follow the
// redirect to the Slack consent page (the fake Slack of internal/slackfake
// approves at once and redirects back), land on the broker's OAuth callback
// page and read the `bridge register` command it shows. Tools that need a
// registered bridge without a person at a browser (cmd/relayload) use it.
package installflow

import (
	"context"
	"errors"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"regexp"
	"strings"
)

// maxPage caps the callback page read.
const maxPage = 1 << 20

// registerLine finds the command the broker's callback page shows.
var registerLine = regexp.MustCompile(`bridge register --broker-url (\S+) --org-id (\S+) --registration-token ([A-Za-z0-9_-]+)`)

// Result is what the callback page told the admin.
type Result struct {
	// BrokerURL is the broker URL of the register command.
	BrokerURL string
	// OrgID is the installed Slack org (team or enterprise) id.
	OrgID string
	// RegistrationToken is the one-time token for `bridge register`.
	RegistrationToken string
}

// Install runs one install against the broker at brokerURL. c may be nil
// (a default client is used); its cookie jar, when it has none, is replaced
// by a fresh one for the duration of the call, since the broker binds the
// OAuth state to a cookie.
func Install(ctx context.Context, c *http.Client, brokerURL string) (Result, error) {
	jar, err := cookiejar.New(nil)
	if err != nil {
		return Result{}, fmt.Errorf("install: cookie jar: %w", err)
	}
	hc := http.Client{Jar: jar}
	if c != nil {
		hc.Transport, hc.Timeout = c.Transport, c.Timeout
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(brokerURL, "/")+"/slack/install", nil)
	if err != nil {
		return Result{}, fmt.Errorf("install: %w", err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return Result{}, fmt.Errorf("install: %w", err)
	}
	defer resp.Body.Close()
	page, err := io.ReadAll(io.LimitReader(resp.Body, maxPage))
	if err != nil {
		return Result{}, fmt.Errorf("install: read the callback page: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return Result{}, fmt.Errorf("install: the callback page answered %s", resp.Status)
	}
	return ParsePage(page)
}

// ParsePage reads the register command from a broker's callback page.
func ParsePage(page []byte) (Result, error) {
	m := registerLine.FindStringSubmatch(html.UnescapeString(string(page)))
	if m == nil {
		return Result{}, errors.New("install: no registration command on the callback page")
	}
	return Result{BrokerURL: m[1], OrgID: m[2], RegistrationToken: m[3]}, nil
}
