package bridge

import (
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net"
	"net/http"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/sealrelay/sealrelay/crypto"
	"github.com/sealrelay/sealrelay/internal/netutil"
	"github.com/sealrelay/sealrelay/protocol"
)

// MaxTextLength is the longest message text the local API accepts, in
// characters.
const MaxTextLength = 40000

var emojiPattern = regexp.MustCompile(`^[a-z0-9_+'-]{1,100}$`)

// CheckListenAddr refuses a listen address that is not loopback unless
// allowRemote is set: the local API must not be reachable from the network
// by accident.
func CheckListenAddr(addr string, allowRemote bool) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || port == "" {
		return fmt.Errorf("listen address %q: want host:port such as 127.0.0.1:7890", addr)
	}
	if allowRemote {
		return nil
	}
	if !netutil.IsLoopbackHost(host) {
		return fmt.Errorf("listen address %q is not loopback: the local API would be reachable from the network; use 127.0.0.1, or pass --allow-remote (and --local-token-file) if you really mean it", addr)
	}
	return nil
}

// Handler returns the local API: POST /send, /react, /reply, /update, GET
// /health and GET /events. It defends against web pages the user happens to
// open: the Host header must name the loopback listen address (DNS
// rebinding; skipped with AllowRemote), an Origin header must be loopback,
// POSTs must be application/json (no cross-site "simple request"), and with
// a local token every request needs it as a bearer token. Paths under
// /api/ are Slack's Web API, with its own guard (facade.go).
func (b *Bridge) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /send", b.handleSend)
	mux.HandleFunc("POST /react", b.handleReact)
	mux.HandleFunc("POST /reply", b.handleReply)
	mux.HandleFunc("POST /update", b.handleUpdate)
	mux.HandleFunc("GET /health", b.handleHealth)
	mux.HandleFunc("GET /events", b.serveEvents)
	return b.withWebAPI(b.guard(mux)) // /api/<method>: Slack's Web API (facade.go)
}

func (b *Bridge) guard(next http.Handler) http.Handler {
	_, port, _ := net.SplitHostPort(b.cfg.ListenAddr)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !b.cfg.AllowRemote && !allowedHost(r.Host, port) {
			writeError(w, http.StatusForbidden, "forbidden Host header: the local API answers only to 127.0.0.1, localhost or [::1] on its own port")
			return
		}
		// The Origin check stays on with AllowRemote: API clients send no
		// Origin, web pages do.
		if o := r.Header.Get("Origin"); o != "" && !netutil.IsLoopbackOrigin(o) {
			writeError(w, http.StatusForbidden, "forbidden Origin: the local API does not answer web pages")
			return
		}
		if r.Header.Get("Sec-Fetch-Site") == "cross-site" {
			writeError(w, http.StatusForbidden, "forbidden cross-site request")
			return
		}
		if b.cfg.LocalToken != "" {
			got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if !ok || !crypto.EqualString(strings.TrimSpace(got), b.cfg.LocalToken) {
				w.Header().Set("WWW-Authenticate", `Bearer realm="sealrelay-bridge"`)
				writeError(w, http.StatusUnauthorized, "missing or wrong local API token (Authorization: Bearer <token from --local-token-file>)")
				return
			}
		}
		if r.Method == http.MethodPost {
			mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
			if err != nil || mt != "application/json" {
				writeError(w, http.StatusUnsupportedMediaType, "Content-Type must be application/json")
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// allowedHost reports whether host (a Host header) names loopback on port.
func allowedHost(host, port string) bool {
	h, p, err := net.SplitHostPort(host)
	if err != nil {
		// No port: only acceptable when we listen on port 80.
		h, p = host, "80"
	}
	if p != port {
		return false
	}
	return netutil.IsLoopbackHost(h)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, protocol.ErrorResponse{OK: false, Error: msg})
}

type validator struct{ errs []string }

func (v *validator) channel(c string) {
	if c == "" {
		v.errs = append(v.errs, "channel is required")
	} else if !isChannelID(c) {
		v.errs = append(v.errs, "channel must be a Slack channel id (C…, G… or D…, e.g. C0123ABCD), not a name")
	}
}

func (v *validator) text(t string) {
	switch n := utf8.RuneCountInString(t); {
	case !utf8.ValidString(t):
		v.errs = append(v.errs, "text must be valid UTF-8")
	case strings.TrimSpace(t) == "":
		v.errs = append(v.errs, "text is required")
	case n > MaxTextLength:
		v.errs = append(v.errs, fmt.Sprintf("text is %d characters; the limit is %d", n, MaxTextLength))
	}
}

func (v *validator) ts(field, t string, required bool) {
	if t == "" {
		if required {
			v.errs = append(v.errs, field+" is required")
		}
		return
	}
	if !isMessageTS(t) {
		v.errs = append(v.errs, field+` must be a Slack message timestamp like "1771464999.000100"`)
	}
}

func (v *validator) blocks(b json.RawMessage) {
	if len(b) == 0 || string(b) == "null" {
		return
	}
	var arr []json.RawMessage
	if json.Unmarshal(b, &arr) != nil {
		v.errs = append(v.errs, "blocks must be a JSON array of Block Kit blocks")
	} else if len(arr) > 50 {
		v.errs = append(v.errs, "blocks holds more than 50 blocks (Slack's limit)")
	}
}

func (v *validator) fail(w http.ResponseWriter) bool {
	if len(v.errs) == 0 {
		return false
	}
	writeError(w, http.StatusBadRequest, strings.Join(v.errs, "; "))
	return true
}

type sendInput struct {
	Channel  string          `json:"channel"`
	Text     string          `json:"text"`
	ThreadTS string          `json:"thread_ts"`
	Blocks   json.RawMessage `json:"blocks"`
}

func (b *Bridge) handleSend(w http.ResponseWriter, r *http.Request) {
	var in sendInput
	if !decodeBody(w, r, &in) {
		return
	}
	var v validator
	v.channel(in.Channel)
	v.text(in.Text)
	v.ts("thread_ts", in.ThreadTS, false)
	v.blocks(in.Blocks)
	if v.fail(w) {
		return
	}
	b.relay(w, r, protocol.ActionPostMessage, protocol.Routing{Channel: in.Channel, ThreadTS: in.ThreadTS},
		protocol.SendBody{Text: in.Text, Blocks: nullToEmpty(in.Blocks)})
}

type replyInput struct {
	ThreadID string          `json:"thread_id"`
	Text     string          `json:"text"`
	Blocks   json.RawMessage `json:"blocks"`
}

func (b *Bridge) handleReply(w http.ResponseWriter, r *http.Request) {
	var in replyInput
	if !decodeBody(w, r, &in) {
		return
	}
	var v validator
	ch, ts, ok := ParseThreadID(in.ThreadID)
	if in.ThreadID == "" {
		v.errs = append(v.errs, "thread_id is required (take it from the event's thread_id)")
	} else if !ok {
		v.errs = append(v.errs, `thread_id must be "<channel>:<ts>" or "<channel>" as handed out with events`)
	}
	v.text(in.Text)
	v.blocks(in.Blocks)
	if v.fail(w) {
		return
	}
	b.relay(w, r, protocol.ActionPostMessage, protocol.Routing{Channel: ch, ThreadTS: ts},
		protocol.SendBody{Text: in.Text, Blocks: nullToEmpty(in.Blocks)})
}

type reactInput struct {
	Channel   string `json:"channel"`
	Timestamp string `json:"timestamp"`
	Emoji     string `json:"emoji"`
}

func (b *Bridge) handleReact(w http.ResponseWriter, r *http.Request) {
	var in reactInput
	if !decodeBody(w, r, &in) {
		return
	}
	emoji := strings.TrimSuffix(strings.TrimPrefix(in.Emoji, ":"), ":")
	var v validator
	v.channel(in.Channel)
	v.ts("timestamp", in.Timestamp, true)
	if emoji == "" {
		v.errs = append(v.errs, "emoji is required")
	} else if !emojiPattern.MatchString(emoji) {
		v.errs = append(v.errs, "emoji must be an emoji name like thumbsup (letters a-z, digits, _ + ' -)")
	}
	if v.fail(w) {
		return
	}
	b.relay(w, r, protocol.ActionReact, protocol.Routing{Channel: in.Channel, Timestamp: in.Timestamp, Emoji: emoji},
		protocol.SendBody{Emoji: emoji})
}

type updateInput struct {
	Channel   string          `json:"channel"`
	Timestamp string          `json:"timestamp"`
	Text      string          `json:"text"`
	Blocks    json.RawMessage `json:"blocks"`
}

func (b *Bridge) handleUpdate(w http.ResponseWriter, r *http.Request) {
	var in updateInput
	if !decodeBody(w, r, &in) {
		return
	}
	var v validator
	v.channel(in.Channel)
	v.ts("timestamp", in.Timestamp, true)
	v.text(in.Text)
	v.blocks(in.Blocks)
	if v.fail(w) {
		return
	}
	b.relay(w, r, protocol.ActionUpdate, protocol.Routing{Channel: in.Channel, Timestamp: in.Timestamp},
		protocol.SendBody{Text: in.Text, Blocks: nullToEmpty(in.Blocks)})
}

func nullToEmpty(b json.RawMessage) json.RawMessage {
	if string(b) == "null" {
		return nil
	}
	return b
}

// relay sends the call to the broker and passes its answer on.
func (b *Bridge) relay(w http.ResponseWriter, r *http.Request, action string, routing protocol.Routing, body protocol.SendBody) {
	resp, err := b.Send(r.Context(), action, routing, body)
	if err != nil {
		var be *BrokerError
		switch {
		case errors.As(err, &be):
			if be.RetryAfter != "" {
				w.Header().Set("Retry-After", be.RetryAfter)
			}
			// Passed on as the broker answered (shared/protocol.md §6).
			b.log.Warn("broker refused outbound call", "action", action, "status", be.Status, "outcome", be.Outcome(), "error", truncate(be.Message, 200))
			writeError(w, be.Status, be.Message)
		case errors.Is(err, ErrUnreachable):
			b.log.Warn("broker unreachable for outbound call", "action", action, "err", err)
			writeError(w, http.StatusBadGateway, "broker unreachable")
		default:
			b.log.Error("outbound call failed", "action", action, "err", err)
			writeError(w, http.StatusInternalServerError, "outbound call failed")
		}
		return
	}
	out := map[string]any{"ok": true}
	if resp.TS != "" {
		out["ts"] = resp.TS
	}
	if resp.Channel != "" {
		out["channel"] = resp.Channel
	}
	writeJSON(w, http.StatusOK, out)
}

// handleHealth answers 200 while the process serves (liveness); "ok" in the
// body is false while poll cycles are failing.
func (b *Bridge) handleHealth(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, b.Health())
}
