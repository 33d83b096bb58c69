package bridge

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/sealrelay/sealrelay/internal/atomicfile"
)

// dedupFileName is the store's file inside the state directory.
const dedupFileName = "delivered.log"

// maxDedupLine bounds one line of the store (message ids are opaque but
// short; longer lines are ignored when loading).
const maxDedupLine = 4096

// dedupStore remembers delivered message ids, and the Slack event ids of
// the events they carried, for a TTL, across restarts. It is an append-only
// log, one line per delivered id: "<unix seconds> <Go-quoted message id>\n"
// or "<unix seconds> event:<Go-quoted Slack event id>\n" (older bridges
// skip the second form as malformed). Each Mark is one write(2), so a killed process loses
// nothing (the kernel holds the bytes); Sync makes it durable against power
// loss and is called once per batch before the ack. The log is compacted on
// open and when it grows to more than twice the live entries. The directory
// is locked so that two bridges cannot share it.
type dedupStore struct {
	mu       sync.Mutex
	path     string
	f        *os.File
	lock     *os.File
	ttl      time.Duration
	seen     map[string]int64
	events   map[string]int64
	lines    int
	now      func() time.Time
	lastPrun time.Time
}

// openDedupStore opens (creating) the store in dir.
func openDedupStore(dir string, ttl time.Duration, now func() time.Time) (*dedupStore, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	s := &dedupStore{path: filepath.Join(dir, dedupFileName), ttl: ttl, now: now, seen: map[string]int64{}, events: map[string]int64{}, lock: lock}
	data, err := os.ReadFile(s.path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		lock.Close()
		return nil, fmt.Errorf("read dedup store: %w", err)
	}
	cutoff := now().Add(-ttl).Unix()
	ids, events := parseDedupLog(data)
	for id, ts := range ids {
		if ts >= cutoff {
			s.seen[id] = ts
		}
	}
	for id, ts := range events {
		if ts >= cutoff {
			s.events[id] = ts
		}
	}
	if err := s.compactLocked(); err != nil {
		lock.Close()
		return nil, err
	}
	s.lastPrun = now()
	return s, nil
}

// eventPrefix marks a Slack event id line in the dedup log.
const eventPrefix = "event:"

// parseDedupLog parses the log into message ids and Slack event ids,
// skipping malformed or torn lines. The last timestamp of an id wins.
func parseDedupLog(data []byte) (ids, events map[string]int64) {
	ids, events = map[string]int64{}, map[string]int64{}
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			// Torn last line (crash mid-write): ignore it.
			break
		}
		line := data[:i]
		data = data[i+1:]
		if len(line) > maxDedupLine {
			continue
		}
		sp := bytes.IndexByte(line, ' ')
		if sp <= 0 {
			continue
		}
		ts, err := strconv.ParseInt(string(line[:sp]), 10, 64)
		if err != nil || ts < 0 {
			continue
		}
		rest, out := line[sp+1:], ids
		if r, ok := bytes.CutPrefix(rest, []byte(eventPrefix)); ok {
			rest, out = r, events
		}
		id, err := strconv.Unquote(string(rest))
		if err != nil || id == "" {
			continue
		}
		out[id] = ts
	}
	return ids, events
}

func appendDedupLine(b []byte, id string, ts int64) []byte {
	b = strconv.AppendInt(b, ts, 10)
	b = append(b, ' ')
	b = strconv.AppendQuote(b, id)
	return append(b, '\n')
}

func appendEventLine(b []byte, id string, ts int64) []byte {
	b = strconv.AppendInt(b, ts, 10)
	b = append(b, ' ')
	b = append(b, eventPrefix...)
	b = strconv.AppendQuote(b, id)
	return append(b, '\n')
}

// compactLocked rewrites the log with the live entries only and reopens it
// for appending.
func (s *dedupStore) compactLocked() error {
	var buf []byte
	for id, ts := range s.seen {
		buf = appendDedupLine(buf, id, ts)
	}
	for id, ts := range s.events {
		buf = appendEventLine(buf, id, ts)
	}
	if err := atomicfile.Write(s.path, buf, 0o600); err != nil {
		return fmt.Errorf("compact dedup store: %w", err)
	}
	if s.f != nil {
		s.f.Close()
	}
	var err error
	s.f, err = os.OpenFile(s.path, os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("open dedup store: %w", err)
	}
	s.lines = len(s.seen) + len(s.events)
	return nil
}

// Seen reports whether id was delivered within the TTL.
func (s *dedupStore) Seen(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	ts, ok := s.seen[id]
	return ok && ts >= s.now().Add(-s.ttl).Unix()
}

// SeenEvent reports whether an event with this Slack event id was
// delivered within the TTL.
func (s *dedupStore) SeenEvent(eventID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	ts, ok := s.events[eventID]
	return ok && ts >= s.now().Add(-s.ttl).Unix()
}

// Mark records id as delivered now.
func (s *dedupStore) Mark(id string) error { return s.MarkEvent(id, "") }

// MarkEvent records message id, and the Slack event id it carried (when
// not empty), as delivered now, with one write(2).
func (s *dedupStore) MarkEvent(id, eventID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	ts := now.Unix()
	var arr [256]byte
	line := appendDedupLine(arr[:0], id, ts)
	if eventID != "" {
		line = appendEventLine(line, eventID, ts)
	}
	if _, err := s.f.Write(line); err != nil {
		return fmt.Errorf("dedup store: %w", err)
	}
	s.seen[id] = ts
	s.lines++
	if eventID != "" {
		s.events[eventID] = ts
		s.lines++
	}
	if now.Sub(s.lastPrun) > time.Minute {
		s.lastPrun = now
		cutoff := now.Add(-s.ttl).Unix()
		for _, m := range []map[string]int64{s.seen, s.events} {
			for k, v := range m {
				if v < cutoff {
					delete(m, k)
				}
			}
		}
	}
	if s.lines > 2*(len(s.seen)+len(s.events))+1024 {
		return s.compactLocked()
	}
	return nil
}

// Sync makes the marks durable.
func (s *dedupStore) Sync() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("dedup store sync: %w", err)
	}
	return nil
}

// Len returns the number of remembered ids.
func (s *dedupStore) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.seen)
}

// Close closes the store and releases the directory lock.
func (s *dedupStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var err error
	if s.f != nil {
		err = s.f.Close()
		s.f = nil
	}
	if s.lock != nil {
		s.lock.Close()
		s.lock = nil
	}
	return err
}
