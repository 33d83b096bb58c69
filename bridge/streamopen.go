package bridge

import (
	"context"
	"log/slog"
)

// spoolKeyLabel names the stream spool's key, derived from the agent's box
// private key.
const spoolKeyLabel = "bridge-stream-spool"

// openStreamHub builds the SSE buffer. With the stream enabled it is backed
// by the encrypted spool in the state directory. It is durable — never
// evicts what no consumer has had — when the stream is the only sink; then
// the spooled events are also marked in the dedup store, so that a message
// spooled just before a crash and redelivered by the broker is not spooled
// twice.
func openStreamHub(cfg Config, store *dedupStore, logger *slog.Logger) (*streamHub, error) {
	if !cfg.Stream {
		return newStreamHub(cfg.StreamBuffer, cfg.StreamBufferBytes, cfg.Now()), nil
	}
	key := cfg.BoxKey.DeriveLocalKey(spoolKeyLabel)
	sp, ld, err := openSpool(cfg.StateDir, key)
	if err != nil {
		key.Wipe()
		return nil, err
	}
	if ld.skipped > 0 && cfg.PreviousBoxKey != nil {
		if sp, ld, err = migrateSpool(cfg, sp, ld, key, logger); err != nil {
			key.Wipe()
			return nil, err
		}
	}
	if ld.skipped > 0 {
		logger.Error("stream spool records do not authenticate (another agent identity, or a damaged file); they are skipped", "records", ld.skipped)
	}
	durable := cfg.ForwardURL == "" && cfg.Deliver == nil
	for _, it := range ld.items {
		// Only when the spool is the delivery: with another sink a spooled
		// event may not have reached that sink yet, and must come again.
		if durable && it.messageID != "" && !store.Seen(it.messageID) {
			if err := store.Mark(it.messageID); err != nil {
				return nil, err
			}
		}
	}
	h, err := newSpooledHub(cfg.StreamBuffer, cfg.StreamBufferBytes, cfg.Now(), durable, sp, ld)
	if err != nil {
		sp.close()
		return nil, err
	}
	if len(ld.items) > 0 {
		logger.Info("stream buffer restored from the spool", "events", len(ld.items))
	}
	return h, nil
}

// waitStreamRoom blocks, while the stream refuses events because no
// consumer read the buffer, until one does or ctx ends.
func (b *Bridge) waitStreamRoom(ctx context.Context) {
	blocked, room := b.hub.waitRoom()
	if !blocked {
		return
	}
	select {
	case <-room:
	case <-ctx.Done():
	case <-b.done:
	}
}
