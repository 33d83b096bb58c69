package bridge

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/sealrelay/sealrelay/crypto"
	"github.com/sealrelay/sealrelay/internal/atomicfile"
)

// spoolFileName is the stream spool's file inside the state directory.
const spoolFileName = "stream.spool"

// maxSpoolRecord bounds one spool record when loading (an event is at most a
// few hundred KiB; anything larger is a corrupt length).
const maxSpoolRecord = 16 << 20

// Spool record kinds.
const (
	spoolEvent byte = 1 // an SSE event: plaintext is the Event JSON
	spoolState byte = 2 // ids: plaintext is first id ‖ next id (2 × uint64)
	spoolEvict byte = 3 // every event up to seq was evicted; empty plaintext
)

// spoolHeader is the fixed part of a record: length of what follows the
// length field (uint32), kind (1 byte), seq (uint64), all big-endian.
const spoolHeader = 4 + 1 + 8

// spool is the encrypted, append-only on-disk copy of the SSE buffer, from
// which the buffer is rebuilt after a restart. Records are
//
//	len uint32 ‖ kind byte ‖ seq uint64 ‖ XChaCha20-Poly1305(nonce ‖ ct)
//
// with associated data "sealrelay/bridge/spool/v1" ‖ kind ‖ seq, so a
// record cannot be moved to another id or kind. The key is derived from the
// agent's box private key; every record has a fresh random nonce. Event
// bodies therefore never reach the disk in the clear. Each append is one
// write(2) (a killed process loses nothing the kernel took); sync is called
// once per batch before the batch is acked at the broker. A torn tail (crash
// mid-write) is cut off when loading.
type spool struct {
	path string
	f    *os.File
	key  *crypto.LocalKey
	size int64 // bytes in the file
	buf  []byte
}

// spoolLoad is what openSpool found on disk.
type spoolLoad struct {
	items   []streamItem // live events, in id order
	first   uint64       // first id of this spool's lineage (0: none)
	next    uint64       // next id to assign (0: none)
	skipped int          // records that did not authenticate
}

func spoolAD(kind byte, seq uint64) []byte {
	ad := make([]byte, 0, 40)
	ad = append(ad, "sealrelay/bridge/spool/v1"...)
	ad = append(ad, kind)
	return binary.BigEndian.AppendUint64(ad, seq)
}

// openSpool opens (creating) the spool in dir and returns what it holds.
func openSpool(dir string, key *crypto.LocalKey) (*spool, *spoolLoad, error) {
	s := &spool{path: filepath.Join(dir, spoolFileName), key: key}
	data, err := os.ReadFile(s.path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, nil, fmt.Errorf("read stream spool: %w", err)
	}
	ld := s.parse(data)
	crypto.Wipe(data)
	return s, ld, nil
}

// parse decodes the records of data, stopping at the first torn or
// malformed one.
func (s *spool) parse(data []byte) *spoolLoad {
	ld := &spoolLoad{}
	var floor uint64
	var items []streamItem
	for len(data) >= spoolHeader {
		n := binary.BigEndian.Uint32(data)
		if n < spoolHeader-4 || n > maxSpoolRecord || int(n) > len(data)-4 {
			break // torn or corrupt tail
		}
		kind, seq := data[4], binary.BigEndian.Uint64(data[5:])
		sealed := data[spoolHeader : 4+n]
		data = data[4+n:]
		pt, err := s.key.Open(sealed, spoolAD(kind, seq))
		if err != nil {
			ld.skipped++
			continue
		}
		switch kind {
		case spoolEvent:
			var head struct {
				MessageID string `json:"message_id"`
			}
			if json.Unmarshal(pt, &head) != nil {
				ld.skipped++
				continue
			}
			items = append(items, streamItem{seq: seq, data: pt, messageID: head.MessageID})
			ld.next = max(ld.next, seq+1)
		case spoolState:
			if len(pt) == 16 {
				if f := binary.BigEndian.Uint64(pt); ld.first == 0 || f < ld.first {
					ld.first = f
				}
				ld.next = max(ld.next, binary.BigEndian.Uint64(pt[8:]))
			}
		case spoolEvict:
			floor = max(floor, seq)
		}
	}
	for _, it := range items {
		if it.seq > floor && (len(ld.items) == 0 || it.seq > ld.items[len(ld.items)-1].seq) {
			ld.items = append(ld.items, it)
		}
	}
	return ld
}

// record appends one sealed record to s.buf.
func (s *spool) record(kind byte, seq uint64, pt []byte) error {
	sealed, err := s.key.Seal(pt, spoolAD(kind, seq))
	if err != nil {
		return err
	}
	s.buf = binary.BigEndian.AppendUint32(s.buf, uint32(1+8+len(sealed)))
	s.buf = append(s.buf, kind)
	s.buf = binary.BigEndian.AppendUint64(s.buf, seq)
	s.buf = append(s.buf, sealed...)
	return nil
}

// flush writes s.buf with one write(2).
func (s *spool) flush() error {
	if len(s.buf) == 0 {
		return nil
	}
	n, err := s.f.Write(s.buf)
	s.size += int64(n)
	s.buf = s.buf[:0]
	if err != nil {
		return fmt.Errorf("stream spool write: %w", err)
	}
	return nil
}

// appendEvent spools one event.
func (s *spool) appendEvent(seq uint64, data []byte) error {
	if err := s.record(spoolEvent, seq, data); err != nil {
		return err
	}
	return s.flush()
}

// appendEvict records that every event up to seq is gone.
func (s *spool) appendEvict(seq uint64) error {
	if err := s.record(spoolEvict, seq, nil); err != nil {
		return err
	}
	return s.flush()
}

// rewrite replaces the file with the id state and the live items (fresh
// nonces) through atomicfile.Write (fsync, rename, fsync of the directory)
// and reopens it for appending.
func (s *spool) rewrite(first, next uint64, items []streamItem) error {
	var st [16]byte
	binary.BigEndian.PutUint64(st[:], first)
	binary.BigEndian.PutUint64(st[8:], next)
	s.buf = s.buf[:0]
	if err := s.record(spoolState, 0, st[:]); err != nil {
		return err
	}
	for _, it := range items {
		if err := s.record(spoolEvent, it.seq, it.data); err != nil {
			return err
		}
	}
	size := int64(len(s.buf))
	err := atomicfile.Write(s.path, s.buf, 0o600)
	s.buf = s.buf[:0]
	if err != nil {
		return fmt.Errorf("compact stream spool: %w", err)
	}
	if s.f != nil {
		s.f.Close()
	}
	if s.f, err = os.OpenFile(s.path, os.O_WRONLY|os.O_APPEND, 0o600); err != nil {
		return fmt.Errorf("open stream spool: %w", err)
	}
	s.size = size
	return nil
}

// sync makes the appended records durable.
func (s *spool) sync() error {
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("stream spool sync: %w", err)
	}
	return nil
}

func (s *spool) close() error {
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f = nil
	return err
}
