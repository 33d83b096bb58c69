package bridge

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/sealrelay/sealrelay/crypto"
	"github.com/sealrelay/sealrelay/protocol"
)

// SocketModePath is where the bridge serves its Slack Socket Mode
// emulation; apps get the URL (with a ticket) from apps.connections.open.
const SocketModePath = "/socket-mode/link/"

// Socket Mode defaults, as Slack's.
const (
	// socketTicketTTL is how long an apps.connections.open ticket can be
	// used (once).
	socketTicketTTL = 30 * time.Second
	// maxSocketConnections is Slack's limit of concurrent connections.
	maxSocketConnections = 10
	// socketMaxRetries is how often an unacked envelope is redelivered
	// within one delivery (Slack retries three times).
	socketMaxRetries = 3
	// socketWriteTimeout bounds one write to a client.
	socketWriteTimeout = 10 * time.Second
	// socketCloseGrace is how long a client told to disconnect may stay.
	socketCloseGrace = 5 * time.Second
	// defaultSocketAppID is the app id of hello when neither the
	// configuration nor an event named one.
	defaultSocketAppID = "A0SEALRELAY"
)

// socketPingInterval is how often the bridge pings each client (slack-go
// reconnects after 30 s without a ping). A variable for tests.
var socketPingInterval = 10 * time.Second

// errNoSocketClient means Socket Mode is the sink but no client is
// connected: the event is not taken (and not acked) until one connects.
var errNoSocketClient = errors.New("no Socket Mode client connected")

// errSocketAckTimeout means no client acked an envelope in time, even after
// the redeliveries.
var errSocketAckTimeout = errors.New("no Socket Mode client acked the envelope")

// socketHub holds the Socket Mode connections, the open tickets and the
// envelopes waiting for their ack.
type socketHub struct {
	b         *Bridge
	ticketKey []byte
	upgrader  websocket.Upgrader

	mu      sync.Mutex
	conns   []*socketConn
	rr      int
	tickets map[string]time.Time // HMAC(ticketKey, ticket) → expiry
	waiters map[string]*socketWaiter
	present chan struct{} // closed while at least one client is connected
	closed  bool
	appID   string
}

// socketConn is one client connection.
type socketConn struct {
	ws   *websocket.Conn
	wmu  sync.Mutex
	done chan struct{}
	once sync.Once
}

// socketWaiter is one delivery waiting for an ack of any of its envelopes.
type socketWaiter struct {
	ch chan json.RawMessage
}

func newSocketHub(b *Bridge) (*socketHub, error) {
	key, err := crypto.RandomBytes(32)
	if err != nil {
		return nil, fmt.Errorf("socket mode: %w", err)
	}
	h := &socketHub{b: b, ticketKey: key, tickets: map[string]time.Time{}, waiters: map[string]*socketWaiter{},
		present: make(chan struct{}), appID: b.cfg.SocketModeAppID}
	h.upgrader = websocket.Upgrader{
		HandshakeTimeout: 10 * time.Second,
		// serveWS checked Origin and Host itself.
		CheckOrigin: func(*http.Request) bool { return true },
	}
	return h, nil
}

// connected reports whether a client is connected.
func (h *socketHub) connected() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.conns) > 0
}

// count returns how many clients are connected.
func (h *socketHub) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.conns)
}

// waitPresent returns a channel closed once a client is connected.
func (h *socketHub) waitPresent() <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.conns) > 0 {
		c := make(chan struct{})
		close(c)
		return c
	}
	return h.present
}

func (h *socketHub) ticketID(ticket string) string {
	return hex.EncodeToString(crypto.HMACSHA256(h.ticketKey, []byte(ticket)))
}

// open answers apps.connections.open: a fresh single-use ticket in a
// ws:// URL on the Host the app used (checked by the facade).
func (h *socketHub) open() (string, error) {
	ticket, err := crypto.RandomToken(32)
	if err != nil {
		return "", fmt.Errorf("socket mode ticket: %w", err)
	}
	now := h.b.cfg.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	for k, exp := range h.tickets {
		if now.After(exp) {
			delete(h.tickets, k)
		}
	}
	if len(h.tickets) >= 1000 {
		return "", errors.New("too many unused Socket Mode tickets")
	}
	h.tickets[h.ticketID(ticket)] = now.Add(socketTicketTTL)
	return ticket, nil
}

// useTicket consumes ticket; it reports false for an unknown, used or
// expired one.
func (h *socketHub) useTicket(ticket string) bool {
	if ticket == "" || len(ticket) > 256 {
		return false
	}
	id := h.ticketID(ticket)
	h.mu.Lock()
	defer h.mu.Unlock()
	exp, ok := h.tickets[id]
	delete(h.tickets, id)
	return ok && !h.b.cfg.Now().After(exp)
}

// sdkOrigin is the Origin slack-go sends on its WebSocket dial; a web page
// cannot claim it.
const sdkOrigin = "https://api.slack.com"

// serveWS upgrades a Socket Mode client. The ticket from
// apps.connections.open is the credential (single use, 30 s); the Host
// must be the loopback listener and browser requests are refused.
func (h *socketHub) serveWS(w http.ResponseWriter, r *http.Request) {
	if !h.b.cfg.AllowRemote {
		_, port, _ := net.SplitHostPort(h.b.cfg.ListenAddr)
		if !allowedHost(r.Host, port) {
			writeError(w, http.StatusForbidden, "forbidden Host header: Socket Mode answers only to 127.0.0.1, localhost or [::1] on its own port")
			return
		}
	}
	if o := r.Header.Get("Origin"); o != "" && o != sdkOrigin {
		n, err := normalizeOrigin(o)
		if err != nil || !h.b.webapi.origins[n] {
			writeError(w, http.StatusForbidden, "forbidden Origin: Socket Mode does not answer web pages")
			return
		}
	}
	if r.Header.Get("Sec-Fetch-Site") != "" { // browsers send it on every request
		if o := r.Header.Get("Origin"); o == "" || o == sdkOrigin {
			writeError(w, http.StatusForbidden, "forbidden browser request: Socket Mode does not answer browsers")
			return
		}
	}
	if !websocket.IsWebSocketUpgrade(r) {
		writeError(w, http.StatusBadRequest, "Socket Mode needs a WebSocket upgrade (GET with Upgrade: websocket)")
		return
	}
	if !h.useTicket(r.URL.Query().Get("ticket")) {
		writeError(w, http.StatusUnauthorized, "unknown, used or expired Socket Mode ticket: call apps.connections.open for a new URL")
		return
	}
	h.mu.Lock()
	full, closed := len(h.conns) >= maxSocketConnections, h.closed
	h.mu.Unlock()
	if closed {
		writeError(w, http.StatusServiceUnavailable, "the bridge is shutting down")
		return
	}
	if full {
		writeError(w, http.StatusTooManyRequests, fmt.Sprintf("at most %d Socket Mode connections at once", maxSocketConnections))
		return
	}
	ws, err := h.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader answered the client
	}
	c := &socketConn{ws: ws, done: make(chan struct{})}
	ws.SetReadLimit(MaxSocketAckSize)
	n := h.add(c)
	if n == 0 {
		c.close()
		return
	}
	hello, _ := json.Marshal(map[string]any{
		"type": "hello", "num_connections": n,
		"debug_info":      map[string]any{"host": "sealrelay-bridge", "approximate_connection_time": int(h.b.cfg.socketRefresh / time.Second)},
		"connection_info": map[string]any{"app_id": h.currentAppID()},
	})
	if err := c.write(websocket.TextMessage, hello); err != nil {
		h.remove(c)
		return
	}
	h.b.log.Info("socket mode client connected", "connections", n)
	go h.pinger(c)
	h.readLoop(c)
}

// socketRefreshAfter is how long a connection lives before the bridge asks
// the client to reconnect (refresh_requested), as Slack does
// (Config.socketRefresh overrides it in tests).
const socketRefreshAfter = 2 * time.Hour

func (h *socketHub) currentAppID() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.appID != "" {
		return h.appID
	}
	return defaultSocketAppID
}

// learnAppID takes the app id from an event (api_app_id) when the
// configuration named none.
func (h *socketHub) learnAppID(id string) {
	if id == "" || len(id) > 32 {
		return
	}
	h.mu.Lock()
	if h.appID == "" {
		h.appID = id
	}
	h.mu.Unlock()
}

// add registers c and returns the connection count (0 when closed).
func (h *socketHub) add(c *socketConn) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return 0
	}
	h.conns = append(h.conns, c)
	if len(h.conns) == 1 {
		close(h.present)
	}
	h.b.metrics.socketConns.Set(float64(len(h.conns)))
	return len(h.conns)
}

// remove forgets c and closes it.
func (h *socketHub) remove(c *socketConn) {
	c.close()
	h.detach(c)
}

// detach forgets c (no new envelopes go to it) without closing it.
func (h *socketHub) detach(c *socketConn) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i, x := range h.conns {
		if x == c {
			h.conns = append(h.conns[:i], h.conns[i+1:]...)
			if len(h.conns) == 0 {
				h.present = make(chan struct{})
			}
			h.b.metrics.socketConns.Set(float64(len(h.conns)))
			h.b.log.Info("socket mode client disconnected", "connections", len(h.conns))
			return
		}
	}
}

func (c *socketConn) write(kind int, data []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.ws.SetWriteDeadline(time.Now().Add(socketWriteTimeout))
	return c.ws.WriteMessage(kind, data)
}

func (c *socketConn) close() {
	c.once.Do(func() {
		close(c.done)
		_ = c.ws.Close()
	})
}

// disconnect takes c out of rotation, tells the client to reconnect and
// closes the connection once the client did (acks of envelopes in flight
// still count until then) or after a grace period.
func (h *socketHub) disconnect(c *socketConn, reason string) {
	h.detach(c)
	msg, _ := json.Marshal(map[string]any{"type": "disconnect", "reason": reason, "debug_info": map[string]any{"host": "sealrelay-bridge"}})
	if c.write(websocket.TextMessage, msg) == nil {
		t := time.NewTimer(socketCloseGrace)
		select {
		case <-c.done:
		case <-t.C:
		}
		t.Stop()
	}
	c.wmu.Lock()
	_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, reason), time.Now().Add(time.Second))
	c.wmu.Unlock()
	h.remove(c)
}

// pinger pings c, ends it when it stops answering and asks it to refresh
// after socketRefreshAfter.
func (h *socketHub) pinger(c *socketConn) {
	t := time.NewTicker(socketPingInterval)
	defer t.Stop()
	refresh := time.NewTimer(h.b.cfg.socketRefresh)
	defer refresh.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-t.C:
			if err := c.ws.WriteControl(websocket.PingMessage, []byte("sealrelay"), time.Now().Add(socketWriteTimeout)); err != nil {
				h.remove(c)
				return
			}
		case <-refresh.C:
			h.disconnect(c, "refresh_requested")
			return
		}
	}
}

// readLoop reads acks until the connection ends.
func (h *socketHub) readLoop(c *socketConn) {
	defer h.remove(c)
	extend := func() { _ = c.ws.SetReadDeadline(time.Now().Add(3 * socketPingInterval)) }
	extend()
	c.ws.SetPongHandler(func(string) error { extend(); return nil })
	for {
		kind, data, err := c.ws.ReadMessage()
		if err != nil {
			return
		}
		extend()
		if kind != websocket.TextMessage {
			continue
		}
		ack, err := parseSocketAck(data)
		crypto.Wipe(data)
		if err != nil {
			h.b.log.Warn("socket mode: ignoring a message that is not an ack", "err", err)
			continue
		}
		h.mu.Lock()
		wt := h.waiters[ack.EnvelopeID]
		h.mu.Unlock()
		if wt == nil {
			h.b.log.Debug("socket mode: ack of an unknown or already acked envelope")
			continue
		}
		select {
		case wt.ch <- ack.Payload:
		default: // already acked (another envelope of the same delivery)
		}
	}
}

// pick returns the next connection, round robin, or nil.
func (h *socketHub) pick() *socketConn {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.conns) == 0 {
		return nil
	}
	h.rr = (h.rr + 1) % len(h.conns)
	return h.conns[h.rr]
}

// socketEnvelopeType maps an event to its Socket Mode envelope type ("" for
// events Socket Mode does not carry).
func socketEnvelopeType(ev *Event) string {
	switch {
	case ev.Source != protocol.SourceSlack:
		return ""
	case ev.Type == protocol.TypeEventCallback || ev.Type == protocol.TypeAppRateLimited:
		return "events_api"
	case ev.Type == protocol.TypeSlashCommand:
		return "slash_commands"
	default:
		return "interactive"
	}
}

// acceptsResponse reports whether Slack would set accepts_response_payload.
func acceptsResponse(ev *Event, held bool) bool {
	if held {
		return true
	}
	switch ev.Type {
	case protocol.TypeSlashCommand, "view_submission", "view_closed", "block_suggestion", "dialog_suggestion":
		return true
	}
	return false
}

// deliver sends ev to a client and waits for its ack, redelivering an
// unacked envelope every ackTimeout with retry_attempt + 1 (up to three
// times, to the next connection). It returns the ack's payload. attempt is
// the first retry_attempt (earlier deliveries of this message); stop ends
// the redeliveries (shutdown).
func (h *socketHub) deliver(ev *Event, held bool, attempt *int, stop <-chan struct{}) (json.RawMessage, error) {
	typ := socketEnvelopeType(ev)
	if typ == "" {
		return nil, nil // notices of other sources: nothing to deliver
	}
	wt := &socketWaiter{ch: make(chan json.RawMessage, 1)}
	var ids []string
	defer func() {
		h.mu.Lock()
		for _, id := range ids {
			delete(h.waiters, id)
		}
		h.mu.Unlock()
	}()
	timeout := h.b.cfg.socketAckTimeout
	for tries := 0; ; {
		c := h.pick()
		if c == nil {
			return nil, errNoSocketClient
		}
		idb, err := crypto.RandomBytes(16)
		if err != nil {
			return nil, err
		}
		id := hex.EncodeToString(idb[:4]) + "-" + hex.EncodeToString(idb[4:6]) + "-" + hex.EncodeToString(idb[6:8]) + "-" + hex.EncodeToString(idb[8:10]) + "-" + hex.EncodeToString(idb[10:])
		reason := ""
		if *attempt > 0 {
			reason = "timeout"
		}
		frame, err := json.Marshal(map[string]any{
			"envelope_id": id, "type": typ, "payload": ev.Payload,
			"accepts_response_payload": acceptsResponse(ev, held),
			"retry_attempt":            *attempt, "retry_reason": reason,
		})
		if err != nil {
			return nil, fmt.Errorf("socket mode envelope: %w", err)
		}
		h.mu.Lock()
		h.waiters[id] = wt
		ids = append(ids, id)
		h.mu.Unlock()
		err = c.write(websocket.TextMessage, frame)
		crypto.Wipe(frame)
		if err != nil {
			h.remove(c)
			continue // try another connection (or report none)
		}
		timer := time.NewTimer(timeout)
		select {
		case p := <-wt.ch:
			timer.Stop()
			return p, nil
		case <-c.done:
			timer.Stop()
			// The connection went away unacked: next one, as a retry.
		case <-timer.C:
		case <-stop:
			timer.Stop()
			select {
			case p := <-wt.ch:
				return p, nil
			default:
			}
			return nil, errNoSocketClient
		}
		*attempt++
		tries++
		h.b.metrics.socketRedeliveries.Inc()
		if tries > socketMaxRetries {
			return nil, errSocketAckTimeout
		}
	}
}

// close disconnects every client (reason refresh_requested, so SDKs
// reconnect to the next bridge) and refuses new ones.
func (h *socketHub) close() {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	h.closed = true
	conns := append([]*socketConn(nil), h.conns...)
	h.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h.disconnect(c, "refresh_requested")
		}()
	}
	wg.Wait()
}

// serveConnectionsOpen answers the facade's apps.connections.open.
// SDKs send the app-level token as a bearer token and no arguments (an
// empty JSON or form body), so the body is not parsed. Any app-level token
// is accepted, or only the local API token when one is configured.
func (a *webAPI) serveConnectionsOpen(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, 64<<10))
	token, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	token = strings.TrimSpace(token)
	if want := a.b.cfg.LocalToken; want != "" && token != "" && !crypto.EqualString(token, want) {
		a.finish(w, "apps.connections.open", &apiError{status: http.StatusOK, code: "invalid_auth", detail: "the token is not this bridge's local API token", outcome: outcomeUnauthed})
		return
	}
	if token == "" {
		a.finish(w, "apps.connections.open", &apiError{status: http.StatusOK, code: "not_authed", detail: "send an app-level token (xapp-…; any value, or the local API token when one is configured)", outcome: outcomeUnauthed})
		return
	}
	ticket, err := a.b.sm.open()
	if err != nil {
		a.b.log.Error("apps.connections.open failed", "err", err)
		a.finish(w, "apps.connections.open", &apiError{status: http.StatusServiceUnavailable, code: "internal_error", outcome: outcomeUnavailable})
		return
	}
	a.count("apps.connections.open", outcomeOK)
	host := r.Host
	if host == "" {
		host = a.b.cfg.ListenAddr
	}
	writeJSON(w, http.StatusOK, map[string]any{"ok": true, "url": "ws://" + host + SocketModePath + "?ticket=" + ticket + "&app_id=" + a.b.sm.currentAppID()})
}

// waitSocketClient blocks while Socket Mode is the only sink and no client
// is connected, so that the broker keeps the events (nothing is pulled).
func (b *Bridge) waitSocketClient(ctx context.Context) {
	if !b.socketOnly() || b.sm.connected() {
		return
	}
	b.log.Info("waiting for a Socket Mode client before pulling (events stay at the broker)")
	select {
	case <-ctx.Done():
	case <-b.sm.waitPresent():
	}
}

// socketOnly reports whether Socket Mode is the configured sink: with no
// client connected, events wait at the broker.
func (b *Bridge) socketOnly() bool { return b.cfg.SocketMode }
