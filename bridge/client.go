package bridge

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/sealrelay/sealrelay/internal/netutil"
	"github.com/sealrelay/sealrelay/protocol"
)

// maxResponseSize bounds every broker response body the bridge reads. A pull
// answer carries at most 100 messages of at most a few hundred KiB each.
const maxResponseSize = 64 << 20

// BrokerError is a failed broker answer: an HTTP status and the broker's
// error text.
type BrokerError struct {
	Status     int
	Message    string
	RetryAfter string // Retry-After header, when present
}

// Error returns the status and the broker's error text.
func (e *BrokerError) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("broker answered HTTP %d", e.Status)
	}
	return fmt.Sprintf("broker answered HTTP %d: %s", e.Status, e.Message)
}

// Contains reports whether the broker's error text contains phrase.
func (e *BrokerError) Contains(phrase string) bool { return strings.Contains(e.Message, phrase) }

// Outcome classifies a refused or failed send or call by its status and
// error text (protocol.ClassifySendAnswer), so that callers switch on the
// outcome rather than on statuses and texts.
func (e *BrokerError) Outcome() protocol.SendOutcome {
	return protocol.ClassifySendAnswer(e.Status, e.Message)
}

// ErrUnreachable wraps transport failures (connection refused, timeouts,
// TLS errors) after every broker URL was tried.
var ErrUnreachable = errors.New("broker unreachable")

// ParseBrokerURLs splits a comma-separated list of broker base URLs and
// validates each: http or https, a host, no query or fragment. Plain http is
// refused unless the host is loopback or insecure is set, because the bearer
// token would travel in clear.
func ParseBrokerURLs(list string, insecure bool) ([]string, error) {
	var out []string
	for _, s := range strings.Split(list, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		u, err := url.Parse(s)
		if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
			return nil, fmt.Errorf("broker URL %q: want an absolute http(s) URL such as https://broker.example.com", s)
		}
		if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			return nil, fmt.Errorf("broker URL %q: must not carry credentials, a query or a fragment", s)
		}
		if u.Scheme == "http" && !insecure && !netutil.IsLoopbackHost(u.Hostname()) {
			return nil, fmt.Errorf("broker URL %q uses plain http: the access token would travel in clear; use https, or pass --insecure-http if you really mean it", s)
		}
		out = append(out, strings.TrimRight(u.String(), "/"))
	}
	if len(out) == 0 {
		return nil, errors.New("no broker URL: pass --broker-url or set " + EnvBrokerURL)
	}
	return out, nil
}

// client talks to one logical broker served by one or more replicas. On a
// connection error or a 5xx answer it moves to the next URL.
type client struct {
	urls []string
	http *http.Client
	cur  atomic.Uint32
}

func newClient(urls []string, hc *http.Client) *client {
	if hc == nil {
		hc = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	}
	return &client{urls: urls, http: hc}
}

// current returns the URL requests go to now.
func (c *client) current() string { return c.urls[int(c.cur.Load())%len(c.urls)] }

func (c *client) rotate(from uint32) {
	c.cur.CompareAndSwap(from, (from+1)%uint32(len(c.urls)))
}

// do sends one request and decodes a successful JSON answer into out. body is
// resent unchanged to the next replica on failure (signed requests stay valid:
// pulls and acks are idempotent and a send's nonce makes a duplicate a 409).
// It tries each URL at most once.
func (c *client) do(ctx context.Context, method, path, bearer string, body []byte, timeout time.Duration, out any) error {
	var lastErr error
	for range c.urls {
		idx := c.cur.Load()
		base := c.urls[int(idx)%len(c.urls)]
		err := c.once(ctx, method, base+path, bearer, body, timeout, out)
		if err == nil {
			return nil
		}
		lastErr = err
		if ctx.Err() != nil {
			return err
		}
		var be *BrokerError
		if errors.As(err, &be) && !retryableStatus(be.Status, be.Message) {
			return err
		}
		c.rotate(idx)
	}
	return lastErr
}

// retryableStatus says whether another replica might answer better: 5xx
// that is not a relayed Slack error (protocol.SendSlackError: a send or
// call relays Slack errors as 502 with a Slack error code; those are
// answers, not replica failures).
func retryableStatus(status int, msg string) bool {
	return status >= 500 && protocol.ClassifySendAnswer(status, msg) != protocol.SendSlackError
}

func (c *client) once(ctx context.Context, method, u, bearer string, body []byte, timeout time.Duration, out any) error {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %s %s: %v", ErrUnreachable, method, redactURL(u), unwrapURLError(err))
	}
	defer resp.Body.Close()
	data, err := readLimited(resp.Body, maxResponseSize)
	if err != nil {
		return fmt.Errorf("%w: read answer of %s: %v", ErrUnreachable, redactURL(u), err)
	}
	if a, ok := out.(selfReporting); ok && resp.StatusCode >= 200 && resp.StatusCode <= 299 {
		// One parse for the common case (a pull answer is up to 100
		// messages of ~4 KB): the answer says "ok" itself. Anything else
		// takes the path below, which parses the status on its own.
		if f, ok := out.(fastDecoding); ok && f.decodeFast(data) && a.answerOK() {
			return nil
		}
		if json.Unmarshal(data, out) == nil && a.answerOK() {
			return nil
		}
	}
	var status struct {
		OK    *bool  `json:"ok"`
		Error string `json:"error"`
	}
	jsonErr := json.Unmarshal(data, &status)
	if resp.StatusCode < 200 || resp.StatusCode > 299 || jsonErr != nil || status.OK == nil || !*status.OK {
		msg := status.Error
		if msg == "" {
			msg = http.StatusText(resp.StatusCode)
			if jsonErr != nil {
				msg += " (answer is not sealrelay JSON; is this the broker URL?)"
			}
		}
		st := resp.StatusCode
		if st >= 200 && st <= 299 {
			// ok:false with a 2xx status: treat as a bad gateway answer.
			st = http.StatusBadGateway
		}
		return &BrokerError{Status: st, Message: msg, RetryAfter: resp.Header.Get("Retry-After")}
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("decode broker answer: %w", err)
		}
	}
	return nil
}

// selfReporting is an answer type whose decoded value tells whether the
// broker said "ok": true, so that client.once can decode it in one pass.
type selfReporting interface{ answerOK() bool }

// pullAnswer is the answer of /api/inbox/pull, decoded in one pass.
type pullAnswer struct{ protocol.PullResponse }

func (a *pullAnswer) answerOK() bool { return a.OK }

// fastDecoding is an answer type with a one-pass decoder for the shape the
// broker writes; when it reports false, client.once takes json.Unmarshal.
type fastDecoding interface{ decodeFast(data []byte) bool }

func (a *pullAnswer) decodeFast(data []byte) bool { return decodePull(data, &a.PullResponse) }

func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func redactURL(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "broker"
	}
	return p.Scheme + "://" + p.Host + p.Path
}

// brokerPubkey fetches GET /api/broker-pubkey.
func (c *client) brokerPubkey(ctx context.Context) (*protocol.BrokerPubkeyResponse, error) {
	var r protocol.BrokerPubkeyResponse
	if err := c.do(ctx, http.MethodGet, "/api/broker-pubkey", "", nil, 30*time.Second, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

func marshal(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode request: %w", err)
	}
	return b, nil
}

// marshalPlain encodes v without HTML escaping, so that '<', '>' and '&'
// in message text and blocks do not grow sixfold on the way to the broker
// (see maxLocalBody).
func marshalPlain(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("encode request: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}
