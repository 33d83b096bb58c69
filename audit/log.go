package audit

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/sealrelay/sealrelay/crypto"
)

// Recorder is what the broker records through. *Log implements it.
type Recorder interface {
	// Record appends ev and returns its sequence number in the writer's
	// chain. An error means the record may not be durable.
	Record(ctx context.Context, ev Event) (uint64, error)
}

// Defaults of Options.
const (
	DefaultCheckpointEvery    = 100
	DefaultCheckpointInterval = time.Minute
)

// Options tune a Log. Zero values take the defaults.
type Options struct {
	// CheckpointEvery writes a checkpoint after this many records
	// (default DefaultCheckpointEvery).
	CheckpointEvery int
	// CheckpointInterval writes a checkpoint this long after the last one
	// when records were added since (default DefaultCheckpointInterval).
	// Negative: no timed checkpoints.
	CheckpointInterval time.Duration
	// Now returns the current time (default time.Now). For tests.
	Now func() time.Time
	// Logger receives checkpoint lines (chain, seq, MAC: an off-store copy
	// of the head) and write failures; nil means slog.Default().
	Logger *slog.Logger
}

// Log appends records to one chain of its own. Create it with NewLog and
// Close it on shutdown (a final checkpoint). It is safe for concurrent use;
// appends are serialized, one store write each.
type Log struct {
	st    Store
	keys  *Keys
	opts  Options
	log   *slog.Logger
	stop  chan struct{}
	done  chan struct{}
	close sync.Once

	mu    sync.Mutex
	chain string
	seq   uint64
	prev  []byte
	since int // records since the last checkpoint
}

// NewLog starts a new chain (random id) on st, keyed by keys, and a
// goroutine that writes timed checkpoints until Close.
func NewLog(st Store, keys *Keys, opts Options) (*Log, error) {
	if st == nil || keys == nil {
		return nil, errors.New("audit: NewLog needs a Store and Keys")
	}
	if opts.CheckpointEvery <= 0 {
		opts.CheckpointEvery = DefaultCheckpointEvery
	}
	if opts.CheckpointInterval == 0 {
		opts.CheckpointInterval = DefaultCheckpointInterval
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	l := &Log{st: st, keys: keys, opts: opts, log: opts.Logger.With("component", "audit"),
		stop: make(chan struct{}), done: make(chan struct{})}
	if err := l.newChain(); err != nil {
		return nil, err
	}
	if opts.CheckpointInterval > 0 {
		go l.tick(opts.CheckpointInterval)
	} else {
		close(l.done)
	}
	return l, nil
}

// newChain starts a fresh chain; l.mu is held or l is not shared yet.
func (l *Log) newChain() error {
	id, err := crypto.RandomBytes(16)
	if err != nil {
		return fmt.Errorf("audit: chain id: %w", err)
	}
	l.chain, l.seq, l.prev, l.since = hex.EncodeToString(id), 0, zeroMAC, 0
	return nil
}

// Chain returns the id of the chain the Log currently appends to.
func (l *Log) Chain() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.chain
}

// Record implements Recorder. When the store write fails the Log cannot
// know whether the record landed, so it abandons the chain and continues
// on a new one: the abandoned chain verifies either way, and no sequence
// number is ever written twice.
func (l *Log) Record(ctx context.Context, ev Event) (uint64, error) {
	// What Decode would refuse must never be written: Verify would call it
	// tampering.
	if !validKind(ev.Kind) || (ev.Phase != PhaseNone && ev.Phase != PhaseIntent && ev.Phase != PhaseResult) {
		return 0, fmt.Errorf("audit: invalid event kind %q or phase %q", ev.Kind, ev.Phase)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	r := &Record{Chain: l.chain, Seq: l.seq + 1, Time: l.opts.Now().UTC(), Event: ev.normalize()}
	r.MAC = l.keys.recordMAC(l.prev, r.body())
	if err := l.st.Append(ctx, l.chain, r.Encode()); err != nil {
		old := l.chain
		if nerr := l.newChain(); nerr != nil {
			return 0, errors.Join(fmt.Errorf("audit: append to chain %s seq %d: %w", old, r.Seq, err), nerr)
		}
		l.log.Warn("audit append failed; continuing on a new chain", "chain", old, "seq", r.Seq, "new_chain", l.chain, "err", err)
		return 0, fmt.Errorf("audit: append to chain %s seq %d: %w", old, r.Seq, err)
	}
	l.seq, l.prev = r.Seq, r.MAC
	l.since++
	if l.since >= l.opts.CheckpointEvery {
		l.checkpointLocked(ctx)
	}
	return r.Seq, nil
}

// Checkpoint writes a signed checkpoint of the chain's head now (nothing
// when no record was added since the last one).
func (l *Log) Checkpoint(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.checkpointLocked(ctx)
}

func (l *Log) checkpointLocked(ctx context.Context) error {
	if l.since == 0 {
		return nil
	}
	c := &Checkpoint{Chain: l.chain, Seq: l.seq, MAC: l.prev, Time: l.opts.Now().UTC()}
	l.keys.sign(c)
	if err := l.st.Checkpoint(ctx, l.chain, c.Encode()); err != nil {
		l.log.Warn("audit checkpoint failed", "chain", l.chain, "seq", l.seq, "err", err)
		return fmt.Errorf("audit: checkpoint chain %s seq %d: %w", l.chain, l.seq, err)
	}
	l.since = 0
	// The head in the log too: a copy outside the store bounds truncation
	// even when an attacker also deletes the stored checkpoints.
	l.log.Info("audit checkpoint", "chain", c.Chain, "seq", c.Seq, "mac", hex.EncodeToString(c.MAC))
	return nil
}

func (l *Log) tick(every time.Duration) {
	defer close(l.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_ = l.Checkpoint(ctx)
			cancel()
		}
	}
}

// Close stops the timed checkpoints and writes a final one.
func (l *Log) Close(ctx context.Context) error {
	l.close.Do(func() { close(l.stop) })
	select {
	case <-l.done:
	case <-ctx.Done():
		return fmt.Errorf("audit close: %w", ctx.Err())
	}
	return l.Checkpoint(ctx)
}
