package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/slack-go/slack"
)

// sseFrame is one Server-Sent Event.
type sseFrame struct {
	ID    string
	Event string
	Data  []byte
}

// readSSE parses a text/event-stream and calls fn for every complete event
// that has data, until r ends, a line exceeds maxDeliveryBody or fn fails.
// The frame's Data is valid only during the call (the buffer is reused).
func readSSE(r io.Reader, fn func(sseFrame) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxDeliveryBody)
	var f sseFrame
	var data bytes.Buffer
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 {
			if data.Len() > 0 {
				f.Data = bytes.TrimSuffix(data.Bytes(), []byte("\n"))
				if err := fn(f); err != nil {
					return err
				}
			}
			f = sseFrame{}
			data.Reset()
			continue
		}
		if line[0] == ':' {
			continue // comment (keep-alive)
		}
		field, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimPrefix(value, []byte(" "))
		switch string(field) {
		case "id":
			f.ID = string(value)
		case "event":
			switch string(value) { // the names the bridge sends, without an allocation
			case "message":
				f.Event = "message"
			case "dropped":
				f.Event = "dropped"
			default:
				f.Event = string(value)
			}
		case "data":
			if data.Len()+len(value) > maxDeliveryBody {
				return errors.New("SSE event larger than the limit")
			}
			data.Write(value)
			data.WriteByte('\n')
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read the event stream: %w", err)
	}
	return nil
}

// sseConsumer reads one bridge's GET /events and reports every delivery to
// the tracker as consumer idx, reconnecting with Last-Event-ID.
type sseConsumer struct {
	idx       int
	url       string
	tr        *tracker
	client    *http.Client
	connected chan struct{} // closed on the first 200 answer
	once      sync.Once
	errs      *errorLog
}

// run consumes until ctx ends.
func (c *sseConsumer) run(ctx context.Context) {
	last := ""
	for ctx.Err() == nil {
		var err error
		last, err = c.once1(ctx, last)
		if err != nil && ctx.Err() == nil {
			c.errs.add(fmt.Sprintf("consumer %d: %v", c.idx, err))
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (c *sseConsumer) once1(ctx context.Context, last string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url, nil)
	if err != nil {
		return last, fmt.Errorf("build the stream request: %w", err)
	}
	req.Header.Set("Accept", "text/event-stream")
	if last != "" {
		req.Header.Set("Last-Event-ID", last)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return last, fmt.Errorf("connect to %s: %w", c.url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return last, fmt.Errorf("GET %s answered %s", c.url, resp.Status)
	}
	c.once.Do(func() { close(c.connected) })
	err = readSSE(resp.Body, func(f sseFrame) error {
		if f.ID != "" {
			last = f.ID
		}
		now := time.Now()
		if f.Event == "dropped" {
			c.tr.streamDropped(droppedCount(f.Data))
			return nil
		}
		if f.Event != "" && f.Event != "message" {
			return nil
		}
		id, err := sseEventID(f.Data)
		if err != nil {
			c.errs.add(fmt.Sprintf("consumer %d: %v", c.idx, err))
			return nil
		}
		c.tr.delivered(c.idx, id, now)
		return nil
	})
	if ctx.Err() != nil {
		return last, nil
	}
	return last, err
}

// droppedCount reads {"dropped":N}; an unreadable notice counts as 1.
func droppedCount(data []byte) int {
	s := strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(string(data)), `{"dropped":`), "}")
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return 1
	}
	return n
}

// forwardReceiver is the app the bridges forward to: it accepts a request
// only with a valid Slack signature (checked by slack-go's SecretsVerifier)
// and reports each Events API callback to the tracker. The consumer is
// named by the path: /c/<n>/… is consumer n, anything else consumer 0.
type forwardReceiver struct {
	secret    string
	consumers int
	tr        *tracker
	errs      *errorLog
}

func (f *forwardReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	if r.Method != http.MethodPost {
		writeError(w, http.StatusMethodNotAllowed, "POST only")
		return
	}
	idx, ok := consumerFromPath(r.URL.Path, f.consumers)
	if !ok {
		writeError(w, http.StatusNotFound, "no such consumer path")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxDeliveryBody))
	if err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, "body too large or unreadable")
		return
	}
	sv, err := slack.NewSecretsVerifier(r.Header, f.secret)
	if err == nil {
		_, _ = sv.Write(body)
		err = sv.Ensure()
	}
	if err != nil {
		f.errs.add(fmt.Sprintf("consumer %d: forwarded request refused: bad Slack signature", idx))
		writeError(w, http.StatusUnauthorized, "invalid Slack signature")
		return
	}
	if !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		w.WriteHeader(http.StatusOK) // interactivity or a command: not ours
		return
	}
	id, err := deliveredEventID(body)
	if err != nil {
		w.WriteHeader(http.StatusOK) // not an event callback: nothing to count
		return
	}
	f.tr.delivered(idx, id, now)
	w.WriteHeader(http.StatusOK)
}

// consumerFromPath maps /c/<n>/… to n (< consumers), any other path to 0.
func consumerFromPath(path string, consumers int) (int, bool) {
	rest, ok := strings.CutPrefix(path, "/c/")
	if !ok {
		return 0, true
	}
	num, _, _ := strings.Cut(rest, "/")
	n, err := strconv.Atoi(num)
	if err != nil || n < 0 || n >= consumers {
		return 0, false
	}
	return n, true
}

func writeError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	fmt.Fprintf(w, "{\"ok\":false,\"error\":%q}\n", msg)
}

// errorLog keeps the first few distinct errors of a run and counts all.
type errorLog struct {
	mu    sync.Mutex
	first []string
	seen  map[string]bool
	total int
}

const maxErrorsKept = 10

func (l *errorLog) add(msg string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total++
	if l.seen == nil {
		l.seen = map[string]bool{}
	}
	if len(l.first) < maxErrorsKept && !l.seen[msg] {
		l.seen[msg] = true
		l.first = append(l.first, msg)
	}
}

func (l *errorLog) snapshot() ([]string, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.first...), l.total
}
