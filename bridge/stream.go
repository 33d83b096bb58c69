package bridge

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// errStreamFull means the SSE buffer holds only events no consumer has had
// yet and the stream is the only sink: the event is not taken (and not
// acked) until a consumer reads some.
var errStreamFull = errors.New("stream buffer full of events no consumer has read yet")

// streamHub keeps the last events in a bounded ring for SSE consumers,
// mirrored to an encrypted spool on disk (see spool) so that the buffer
// survives restarts. Event ids are consecutive integers that continue
// across restarts (the spool remembers the next id); a new spool starts
// from the clock in milliseconds × 1000.
//
// sent is the highest id some consumer has been sent (or named as its
// Last-Event-ID). In durable mode (the stream is the bridge's only sink)
// an event above sent is never evicted: publish refuses new events with
// errStreamFull instead, the bridge stops pulling, and the broker keeps
// them. Otherwise the oldest events are evicted when the ring is full,
// which loses nothing that the other sink did not get. missed counts the
// events a resuming consumer asked for that were already evicted — events
// a consumer actually missed.
type streamHub struct {
	mu      sync.Mutex
	ring    []streamItem
	start   int // index of the oldest item
	n       int // items held
	nextSeq uint64
	first   uint64 // first id of this spool's lineage
	floor   uint64 // every id <= floor was evicted
	sent    uint64 // highest id a consumer has had
	missed  uint64
	bytes   int // total size of held events
	maxSize int // bound on bytes
	durable bool
	blocked bool // a publish was refused; cleared when sent advances
	// pending says that, in durable mode, events were published since the
	// last sync: consumers are woken once per pulled batch, after its
	// spool sync, so that a stream consumer gets a batch in one write and
	// one flush rather than one wake-up per event.
	pending bool
	notify  chan struct{}
	room    chan struct{}
	spool   *spool
	// ids holds the message ids of the buffered events, so that a message
	// the broker delivers again (a crash after spooling, before the ack)
	// is not streamed twice.
	ids map[string]struct{}
}

type streamItem struct {
	seq       uint64
	data      []byte
	messageID string
}

// newStreamHub returns a hub holding size events and maxBytes bytes. With
// a spool, the hub starts from what ld loaded and writes through to it.
func newStreamHub(size, maxBytes int, now time.Time) *streamHub {
	h, _ := newSpooledHub(size, maxBytes, now, false, nil, &spoolLoad{})
	return h
}

func newSpooledHub(size, maxBytes int, now time.Time, durable bool, sp *spool, ld *spoolLoad) (*streamHub, error) {
	h := &streamHub{
		ring:    make([]streamItem, max(size, len(ld.items))),
		maxSize: maxBytes,
		durable: durable,
		notify:  make(chan struct{}),
		room:    make(chan struct{}),
		spool:   sp,
		ids:     map[string]struct{}{},
	}
	h.nextSeq = ld.next
	if h.nextSeq == 0 {
		h.nextSeq = uint64(now.UnixMilli())*1000 + 1
	}
	h.first = ld.first
	if h.first == 0 || h.first > h.nextSeq {
		h.first = h.nextSeq
		if len(ld.items) > 0 {
			h.first = min(h.first, ld.items[0].seq)
		}
	}
	for _, it := range ld.items {
		h.ring[h.n] = it
		h.n++
		h.bytes += len(it.data)
		h.ids[it.messageID] = struct{}{}
	}
	h.floor = h.nextSeq - 1
	if h.n > 0 {
		h.floor = h.ring[0].seq - 1
	}
	h.sent = h.floor
	if sp != nil {
		if err := sp.rewrite(h.first, h.nextSeq, ld.items); err != nil {
			return nil, err
		}
	}
	return h, nil
}

// publish appends ev. It evicts the oldest events when the ring or the byte
// bound is full, except, in durable mode, events no consumer has had: then
// it returns errStreamFull. It reports whether an event was evicted.
func (h *streamHub) publish(ev *Event) (bool, error) {
	data, err := appendEventJSON(make([]byte, 0, len(ev.Payload)+len(ev.MessageID)+len(ev.ThreadID)+len(ev.Source)+len(ev.Type)+128), ev)
	if err != nil {
		return false, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, dup := h.ids[ev.MessageID]; dup && ev.MessageID != "" {
		return false, nil // already buffered (and spooled)
	}
	evicted := false
	for h.n > 0 && (h.n == len(h.ring) || h.bytes+len(data) > h.maxSize) {
		old := h.ring[h.start]
		if h.durable && old.seq > h.sent {
			h.blocked = true
			if err := h.spoolEvictLocked(evicted); err != nil {
				return evicted, err
			}
			return evicted, errStreamFull
		}
		h.bytes -= len(old.data)
		delete(h.ids, old.messageID)
		h.ring[h.start] = streamItem{}
		h.start = (h.start + 1) % len(h.ring)
		h.n--
		h.floor = old.seq
		evicted = true
	}
	if err := h.spoolEvictLocked(evicted); err != nil {
		return evicted, err
	}
	seq := h.nextSeq
	if h.spool != nil {
		if err := h.spool.appendEvent(seq, data); err != nil {
			return evicted, err
		}
	}
	h.ring[(h.start+h.n)%len(h.ring)] = streamItem{seq: seq, data: data, messageID: ev.MessageID}
	h.ids[ev.MessageID] = struct{}{}
	h.bytes += len(data)
	h.n++
	h.nextSeq++
	if h.durable {
		h.pending = true
	} else {
		h.wakeLocked()
	}
	if h.spool != nil && h.spool.size > 2*int64(h.bytes)+int64(h.n)*64+1<<20 {
		if err := h.spool.rewrite(h.first, h.nextSeq, h.itemsLocked()); err != nil {
			return evicted, err
		}
	}
	return evicted, nil
}

// wakeLocked wakes the consumers waiting for new events.
func (h *streamHub) wakeLocked() {
	h.pending = false
	close(h.notify)
	h.notify = make(chan struct{})
}

// spoolEvictLocked records the eviction floor in the spool.
func (h *streamHub) spoolEvictLocked(evicted bool) error {
	if !evicted || h.spool == nil {
		return nil
	}
	return h.spool.appendEvict(h.floor)
}

func (h *streamHub) itemsLocked() []streamItem {
	out := make([]streamItem, 0, h.n)
	for i := 0; i < h.n; i++ {
		out = append(out, h.ring[(h.start+i)%len(h.ring)])
	}
	return out
}

// since appends to items the events after lastID and returns them, how
// many events after lastID were evicted before the consumer could see
// them, and a channel closed when there are more (on the next publish; in
// durable mode on the next sync after a publish).
func (h *streamHub) since(items []streamItem, lastID uint64) (_ []streamItem, missed uint64, wait <-chan struct{}) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if lastID >= h.nextSeq {
		// An id from the future (another spool, clock moved back): replay all.
		lastID = 0
	}
	if lastID >= h.first && lastID < h.floor {
		missed = h.floor - lastID
	}
	for i := 0; i < h.n; i++ {
		it := h.ring[(h.start+i)%len(h.ring)]
		if it.seq > lastID {
			items = append(items, it)
		}
	}
	return items, missed, h.notify
}

// markSent records that a consumer has every event up to seq.
func (h *streamHub) markSent(seq uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if seq <= h.sent || seq >= h.nextSeq {
		return
	}
	h.sent = seq
	if h.blocked {
		h.blocked = false
		close(h.room)
		h.room = make(chan struct{})
	}
}

// countMissed adds n to the events consumers missed.
func (h *streamHub) countMissed(n uint64) {
	h.mu.Lock()
	h.missed += n
	h.mu.Unlock()
}

// waitRoom reports whether publish is refusing events and, if so, a
// channel closed when a consumer made room.
func (h *streamHub) waitRoom() (blocked bool, room <-chan struct{}) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.blocked, h.room
}

// sync makes the spooled events durable, then wakes the consumers for
// the events published since the last sync (durable mode; they are woken
// even when the sync failed, as they were before it in the other modes).
func (h *streamHub) sync() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.pending {
		defer h.wakeLocked()
	}
	if h.spool == nil {
		return nil
	}
	return h.spool.sync()
}

// close closes the spool.
func (h *streamHub) close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.spool == nil {
		return nil
	}
	return h.spool.close()
}

// streamStats is the hub's part of Health.
type streamStats struct {
	buffered, unread int
	missed           uint64
}

func (h *streamHub) stats() streamStats {
	h.mu.Lock()
	defer h.mu.Unlock()
	st := streamStats{buffered: h.n, missed: h.missed}
	for i := h.n - 1; i >= 0; i-- {
		if h.ring[(h.start+i)%len(h.ring)].seq <= h.sent {
			break
		}
		st.unread++
	}
	return st
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

// sseWriteTimeout bounds each write to a stream consumer; the server's
// WriteTimeout would otherwise end every stream after a while.
const sseWriteTimeout = 30 * time.Second

func (b *Bridge) serveEvents(w http.ResponseWriter, r *http.Request) {
	if !b.cfg.Stream {
		writeError(w, http.StatusNotFound, "the event stream is disabled (start the bridge with --stream)")
		return
	}
	last := parseLastEventID(r)
	rc := http.NewResponseController(w)
	write := func(p []byte) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(sseWriteTimeout))
		if _, err := w.Write(p); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	_ = rc.SetWriteDeadline(time.Now().Add(sseWriteTimeout))
	w.WriteHeader(http.StatusOK)
	if !write([]byte("retry: 3000\n\n")) {
		return
	}
	// A consumer resuming after an id has every event up to it.
	b.hub.markSent(last)
	b.metrics.streamConsumers.Inc()
	defer b.metrics.streamConsumers.Dec()
	ticker := time.NewTicker(sseKeepAlive)
	defer ticker.Stop()
	// Reused across wake-ups: the events of one wake-up (a pulled batch)
	// go out in one write and one flush.
	var items []streamItem
	var buf []byte
	for {
		from := last
		var missed uint64
		var wait <-chan struct{}
		items, missed, wait = b.hub.since(items[:0], from)
		buf = buf[:0]
		if missed > 0 {
			buf = append(buf, "event: dropped\ndata: {\"dropped\":"...)
			buf = strconv.AppendUint(buf, missed, 10)
			buf = append(buf, "}\n\n"...)
		}
		for _, it := range items {
			buf = append(buf, "id: "...)
			buf = strconv.AppendUint(buf, it.seq, 10)
			buf = append(buf, "\ndata: "...)
			buf = append(buf, it.data...)
			buf = append(buf, "\n\n"...)
			last = it.seq
		}
		clear(items) // do not pin evicted events until the next wake-up
		if len(buf) > 0 {
			if !write(buf) {
				return
			}
			if missed > 0 {
				last = max(last, from+missed) // past the gap: report it once
				b.hub.countMissed(missed)
				b.metrics.streamDropped.Add(float64(missed))
			}
			b.hub.markSent(last)
		}
		select {
		case <-r.Context().Done():
			return
		case <-b.done:
			return
		case <-wait:
		case <-ticker.C:
			if !write([]byte(": keepalive\n\n")) {
				return
			}
		}
	}
}
