package bridge

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// streamHub keeps the last events in a bounded ring for SSE consumers. Event
// ids are increasing integers; they start from the process start time in
// milliseconds × 1000, so ids stay increasing across restarts and a consumer
// resuming with an id from a previous process gets the whole buffer.
type streamHub struct {
	mu      sync.Mutex
	ring    []streamItem
	start   int // index of the oldest item
	n       int // items held
	nextSeq uint64
	dropped uint64
	bytes   int // total size of held events
	maxSize int // bound on bytes
	notify  chan struct{}
}

type streamItem struct {
	seq  uint64
	data []byte
}

func newStreamHub(size, maxBytes int, now time.Time) *streamHub {
	return &streamHub{
		ring:    make([]streamItem, size),
		maxSize: maxBytes,
		nextSeq: uint64(now.UnixMilli())*1000 + 1,
		notify:  make(chan struct{}),
	}
}

// publish appends ev, dropping the oldest events when the ring or the byte
// bound is full. It reports whether an event was dropped.
func (h *streamHub) publish(ev *Event) (bool, error) {
	data, err := json.Marshal(ev)
	if err != nil {
		return false, fmt.Errorf("encode event: %w", err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	dropped := false
	for h.n > 0 && (h.n == len(h.ring) || h.bytes+len(data) > h.maxSize) {
		h.bytes -= len(h.ring[h.start].data)
		h.ring[h.start] = streamItem{}
		h.start = (h.start + 1) % len(h.ring)
		h.n--
		h.dropped++
		dropped = true
	}
	h.ring[(h.start+h.n)%len(h.ring)] = streamItem{seq: h.nextSeq, data: data}
	h.bytes += len(data)
	h.n++
	h.nextSeq++
	close(h.notify)
	h.notify = make(chan struct{})
	return dropped, nil
}

// since returns the events after lastID, how many events after lastID were
// dropped before the consumer could see them, and a channel closed on the
// next publish.
func (h *streamHub) since(lastID uint64) (items []streamItem, missed uint64, wait <-chan struct{}) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if lastID >= h.nextSeq {
		// An id from the future (clock moved back across a restart): replay all.
		lastID = 0
	}
	if h.n > 0 {
		oldest := h.ring[h.start].seq
		if lastID != 0 && lastID+1 < oldest && lastID >= h.baseSeqLocked() {
			missed = oldest - lastID - 1
		}
	}
	for i := 0; i < h.n; i++ {
		it := h.ring[(h.start+i)%len(h.ring)]
		if it.seq > lastID {
			items = append(items, it)
		}
	}
	return items, missed, h.notify
}

// baseSeqLocked returns the first id of this process.
func (h *streamHub) baseSeqLocked() uint64 {
	return h.nextSeq - uint64(h.n) - h.dropped
}

// stats returns the buffered count and the total dropped.
func (h *streamHub) stats() (buffered int, dropped uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n, h.dropped
}

// parseLastEventID reads the resume point from the Last-Event-ID header or
// the last_event_id query parameter (EventSource cannot set headers on its
// first connection). A malformed value means "from the start".
func parseLastEventID(r *http.Request) uint64 {
	v := r.Header.Get("Last-Event-ID")
	if v == "" {
		v = r.URL.Query().Get("last_event_id")
	}
	v = strings.TrimSpace(v)
	if len(v) > 20 {
		return 0
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0
	}
	return n
}

// sseKeepAlive is how often an idle stream gets a comment line.
const sseKeepAlive = 15 * time.Second

func (b *Bridge) serveEvents(w http.ResponseWriter, r *http.Request) {
	if !b.cfg.Stream {
		writeError(w, http.StatusNotFound, "the event stream is disabled (start the bridge with --stream)")
		return
	}
	last := parseLastEventID(r)
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if _, err := fmt.Fprint(w, "retry: 3000\n\n"); err != nil {
		return
	}
	_ = rc.Flush()
	b.metrics.streamConsumers.Inc()
	defer b.metrics.streamConsumers.Dec()
	ticker := time.NewTicker(sseKeepAlive)
	defer ticker.Stop()
	for {
		items, missed, wait := b.hub.since(last)
		var sb strings.Builder
		if missed > 0 {
			fmt.Fprintf(&sb, "event: dropped\ndata: {\"dropped\":%d}\n\n", missed)
		}
		for _, it := range items {
			fmt.Fprintf(&sb, "id: %d\ndata: %s\n\n", it.seq, it.data)
			last = it.seq
		}
		if sb.Len() > 0 {
			if _, err := w.Write([]byte(sb.String())); err != nil {
				return
			}
			if err := rc.Flush(); err != nil {
				return
			}
		}
		select {
		case <-r.Context().Done():
			return
		case <-b.done:
			return
		case <-wait:
		case <-ticker.C:
			if _, err := w.Write([]byte(": keepalive\n\n")); err != nil {
				return
			}
			if err := rc.Flush(); err != nil {
				return
			}
		}
	}
}
