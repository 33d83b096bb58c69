package audit_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sealrelay/sealrelay/audit"
	"github.com/sealrelay/sealrelay/audit/audittest"
	"github.com/sealrelay/sealrelay/crypto"
)

func newKeys(t testing.TB) *audit.Keys {
	t.Helper()
	sk, err := crypto.GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	k, err := audit.DeriveKeys(sk)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// writeChain writes n records through a Log with a checkpoint every 5 and
// returns the store and chain id (no final checkpoint unless closeIt).
func writeChain(t *testing.T, keys *audit.Keys, n int, closeIt bool) (*audit.MemStore, string) {
	t.Helper()
	st := audit.NewMemStore()
	l, err := audit.NewLog(st, keys, audit.Options{CheckpointEvery: 5, CheckpointInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		seq, err := l.Record(context.Background(), audit.Event{Kind: audit.KindSend, Org: "T1", Agent: "ag-1", Method: "chat.postMessage", Channel: "C1", Outcome: "ok", BytesIn: int64(i)})
		if err != nil || seq != uint64(i+1) {
			t.Fatalf("Record %d = %d, %v", i, seq, err)
		}
	}
	if closeIt {
		if err := l.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	return st, l.Chain()
}

func TestMemStoreConformance(t *testing.T) {
	t.Parallel()
	audittest.Run(t, func(*testing.T) audit.Store { return audit.NewMemStore() })
}

func TestVerifyIntact(t *testing.T) {
	t.Parallel()
	keys := newKeys(t)
	st, chain := writeChain(t, keys, 12, true)
	rep, err := audit.Verify(context.Background(), st, keys)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || len(rep.Chains) != 1 {
		t.Fatalf("intact chain reported %+v", rep.Problems())
	}
	cr := rep.Chains[0]
	if cr.Chain != chain || cr.Records != 12 || cr.Verified != 12 || cr.LastCheckpoint == nil || cr.LastCheckpoint.Seq != 12 {
		t.Fatalf("report %+v; want chain %s, 12 records verified, checkpoint at 12", cr, chain)
	}
}

// TestVerifyDetectsTampering: every kind of tampering is named with the
// right first bad seq. The chain has 12 records (indices 0..11 = seq 1..12)
// and checkpoints at 5 and 10; index i holds seq i+1.
func TestVerifyDetectsTampering(t *testing.T) {
	t.Parallel()
	otherKeys := newKeys(t)
	for _, tc := range []struct {
		name   string
		close  bool // final checkpoint at 12
		tamper func(t *testing.T, recs, cps [][]byte) ([][]byte, [][]byte)
		seq    uint64
		reason audit.Reason
	}{
		{"edit a field", false, func(t *testing.T, recs, cps [][]byte) ([][]byte, [][]byte) {
			recs[6] = reencode(t, recs[6], func(r *audit.Record) { r.Channel = "C-OTHER" })
			return recs, cps
		}, 7, audit.ReasonEdited},
		{"flip a byte", false, func(_ *testing.T, recs, cps [][]byte) ([][]byte, [][]byte) {
			recs[2][len(recs[2])-40] ^= 1
			return recs, cps
		}, 3, audit.ReasonEdited},
		{"garbage record", false, func(_ *testing.T, recs, cps [][]byte) ([][]byte, [][]byte) {
			recs[0] = []byte("not a record")
			return recs, cps
		}, 1, audit.ReasonEdited},
		{"remove one", false, func(_ *testing.T, recs, cps [][]byte) ([][]byte, [][]byte) {
			return slices.Delete(recs, 3, 4), cps
		}, 4, audit.ReasonRemoved},
		{"remove the first", false, func(_ *testing.T, recs, cps [][]byte) ([][]byte, [][]byte) {
			return recs[1:], cps
		}, 1, audit.ReasonRemoved},
		{"swap two", false, func(_ *testing.T, recs, cps [][]byte) ([][]byte, [][]byte) {
			recs[7], recs[8] = recs[8], recs[7]
			return recs, cps
		}, 8, audit.ReasonReordered},
		{"move one to the end", false, func(_ *testing.T, recs, cps [][]byte) ([][]byte, [][]byte) {
			r := recs[1]
			return append(slices.Delete(recs, 1, 2), r), cps
		}, 2, audit.ReasonReordered},
		{"duplicate one", false, func(_ *testing.T, recs, cps [][]byte) ([][]byte, [][]byte) {
			return slices.Insert(recs, 5, recs[4]), cps
		}, 5, audit.ReasonReordered},
		{"truncate before the last checkpoint", false, func(_ *testing.T, recs, cps [][]byte) ([][]byte, [][]byte) {
			return recs[:8], cps
		}, 9, audit.ReasonTruncated},
		{"truncate after close", true, func(_ *testing.T, recs, cps [][]byte) ([][]byte, [][]byte) {
			return recs[:11], cps
		}, 12, audit.ReasonTruncated},
		{"forged checkpoint", false, func(t *testing.T, recs, cps [][]byte) ([][]byte, [][]byte) {
			return recs, append(cps, forgeCheckpoint(t, otherKeys, recs[len(recs)-1]))
		}, 12, audit.ReasonBadCheckpoint},
		{"checkpoint signature flipped", false, func(_ *testing.T, recs, cps [][]byte) ([][]byte, [][]byte) {
			cps[0][len(cps[0])-1] ^= 1
			return recs, cps
		}, 5, audit.ReasonBadCheckpoint},
		{"rechained with another key", false, func(t *testing.T, recs, cps [][]byte) ([][]byte, [][]byte) {
			// An attacker without the broker key re-MACs from seq 6 on.
			return rechain(t, otherKeys, recs, 5), cps
		}, 6, audit.ReasonEdited},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			keys := newKeys(t)
			st, chain := writeChain(t, keys, 12, tc.close)
			st.Mutate(chain, func(recs, cps [][]byte) ([][]byte, [][]byte) { return tc.tamper(t, recs, cps) })
			rep, err := audit.Verify(context.Background(), st, keys)
			if err != nil {
				t.Fatal(err)
			}
			ps := rep.Problems()
			if len(ps) != 1 {
				t.Fatalf("problems = %v, want exactly one", ps)
			}
			if ps[0].Seq != tc.seq || ps[0].Reason != tc.reason || ps[0].Chain != chain {
				t.Fatalf("problem = %s; want chain %s seq %d %s", ps[0], chain, tc.seq, tc.reason)
			}
		})
	}
}

// reencode decodes raw, changes it and encodes it with its old MAC.
func reencode(t *testing.T, raw []byte, f func(*audit.Record)) []byte {
	t.Helper()
	r, err := audit.Decode(raw)
	if err != nil {
		t.Fatal(err)
	}
	f(r)
	return r.Encode()
}

// forgeCheckpoint signs a checkpoint of raw's head with keys (not the
// broker's).
func forgeCheckpoint(t *testing.T, keys *audit.Keys, raw []byte) []byte {
	t.Helper()
	r, err := audit.Decode(raw)
	if err != nil {
		t.Fatal(err)
	}
	return audit.SignCheckpointForTest(keys, r.Chain, r.Seq, r.MAC, time.Now())
}

// rechain recomputes MACs from index from on with keys.
func rechain(t *testing.T, keys *audit.Keys, recs [][]byte, from int) [][]byte {
	t.Helper()
	prev := make([]byte, audit.MACSize)
	if from > 0 {
		r, err := audit.Decode(recs[from-1])
		if err != nil {
			t.Fatal(err)
		}
		prev = r.MAC
	}
	for i := from; i < len(recs); i++ {
		r, err := audit.Decode(recs[i])
		if err != nil {
			t.Fatal(err)
		}
		r.Outcome = "rewritten"
		recs[i] = audit.RemacForTest(keys, prev, r)
		prev = r.MAC
	}
	return recs
}

func TestLogNeverContainsArguments(t *testing.T) {
	t.Parallel()
	keys := newKeys(t)
	st := audit.NewMemStore()
	l, err := audit.NewLog(st, keys, audit.Options{CheckpointInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("é", audit.MaxField) // 2 bytes each: clipped at a rune boundary
	if _, err := l.Record(context.Background(), audit.Event{Kind: audit.KindCall, Channel: long, Org: "bad\xffutf8", BytesIn: -5}); err != nil {
		t.Fatal(err)
	}
	raws, _ := st.Range(context.Background(), l.Chain(), 0, 1)
	r, err := audit.Decode(raws[0])
	if err != nil {
		t.Fatalf("recorded event does not decode: %v", err)
	}
	if len(r.Channel) > audit.MaxField || !strings.HasPrefix(long, r.Channel) || r.BytesIn != 0 || r.Org != "bad\uFFFDutf8" {
		t.Fatalf("record not normalized: channel %d bytes, org %q, bytes_in %d", len(r.Channel), r.Org, r.BytesIn)
	}
}

func TestLogRefusesInvalidEvents(t *testing.T) {
	t.Parallel()
	st := audit.NewMemStore()
	l, err := audit.NewLog(st, newKeys(t), audit.Options{CheckpointInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range []audit.Event{{}, {Kind: "Bad Kind"}, {Kind: audit.KindCall, Phase: "later"}} {
		if _, err := l.Record(context.Background(), ev); err == nil {
			t.Errorf("Record(%+v) succeeded, want an error", ev)
		}
	}
	if n, _ := st.Len(context.Background(), l.Chain()); n != 0 {
		t.Fatalf("%d invalid records stored", n)
	}
}

func TestLogAbandonsChainOnWriteFailure(t *testing.T) {
	t.Parallel()
	keys := newKeys(t)
	st := audit.NewMemStore()
	l, err := audit.NewLog(st, keys, audit.Options{CheckpointInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := l.Record(ctx, audit.Event{Kind: audit.KindRegister}); err != nil {
		t.Fatal(err)
	}
	first := l.Chain()
	boom := errors.New("store down")
	st.SetFail(boom)
	if _, err := l.Record(ctx, audit.Event{Kind: audit.KindCall}); !errors.Is(err, boom) {
		t.Fatalf("Record on a failing store = %v, want %v", err, boom)
	}
	st.SetFail(nil)
	seq, err := l.Record(ctx, audit.Event{Kind: audit.KindCall})
	if err != nil || seq != 1 || l.Chain() == first {
		t.Fatalf("after a failure Record = seq %d, %v on chain %s; want seq 1 on a new chain (not %s)", seq, err, l.Chain(), first)
	}
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	rep, err := audit.Verify(ctx, st, keys)
	if err != nil || !rep.OK() || len(rep.Chains) != 2 {
		t.Fatalf("Verify = %+v, %v; want two intact chains", rep, err)
	}
}

// signalStore reports each checkpoint written on a channel.
type signalStore struct {
	*audit.MemStore
	cps chan struct{}
}

func (s signalStore) Checkpoint(ctx context.Context, chain string, cp []byte) error {
	err := s.MemStore.Checkpoint(ctx, chain, cp)
	s.cps <- struct{}{}
	return err
}

func TestTimedCheckpoint(t *testing.T) {
	t.Parallel()
	keys := newKeys(t)
	st := signalStore{audit.NewMemStore(), make(chan struct{}, 100)}
	l, err := audit.NewLog(st, keys, audit.Options{CheckpointEvery: 1000, CheckpointInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Record(context.Background(), audit.Event{Kind: audit.KindInstall}); err != nil {
		t.Fatal(err)
	}
	// Only the ticker writes a checkpoint here (the count is 1000).
	<-st.cps
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	cps, _ := st.Checkpoints(context.Background(), l.Chain())
	if len(cps) != 1 {
		t.Fatalf("%d checkpoints, want 1 (timed; Close adds none without new records)", len(cps))
	}
}

func TestDecodeRoundTrip(t *testing.T) {
	t.Parallel()
	for _, r := range []audit.Record{
		{Chain: "a", Seq: 1, Time: time.Unix(0, 0).UTC(), Event: audit.Event{Kind: audit.KindInstall}},
		{Chain: "0123456789abcdef0123456789abcdef", Seq: 1 << 40, Time: time.Date(2026, 12, 1, 19, 0, 0, 123, time.UTC),
			Event: audit.Event{Kind: audit.KindCall, Phase: audit.PhaseResult, Ref: 7, Org: "T1", Agent: "ag-1", Method: "conversations.history",
				Channel: "C1", Outcome: "slack_error", ErrorCode: "channel_not_found", BytesIn: 10, BytesOut: 1 << 20}},
	} {
		r.MAC = bytes.Repeat([]byte{7}, audit.MACSize)
		enc := r.Encode()
		got, err := audit.Decode(enc)
		if err != nil {
			t.Fatalf("Decode(Encode(%+v)): %v", r, err)
		}
		if !bytes.Equal(got.Encode(), enc) || got.Event != r.Event || !got.Time.Equal(r.Time) || got.Seq != r.Seq {
			t.Fatalf("round trip changed the record: %+v → %+v", r, got)
		}
	}
}

func TestRecordJSON(t *testing.T) {
	t.Parallel()
	r := &audit.Record{Chain: "c", Seq: 2, Time: time.Unix(1, 0).UTC(), Event: audit.Event{Kind: audit.KindSend, Org: "T1"}, MAC: bytes.Repeat([]byte{0xab}, audit.MACSize)}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"chain":"c","seq":2,"time":"1970-01-01T00:00:01Z","kind":"send","org":"T1","mac":"` + strings.Repeat("ab", audit.MACSize) + `"}`
	if string(b) != want {
		t.Fatalf("JSON = %s, want %s", b, want)
	}
}

func TestDecodeRejects(t *testing.T) {
	t.Parallel()
	good := (&audit.Record{Chain: "c", Seq: 1, Event: audit.Event{Kind: audit.KindCall}, MAC: make([]byte, audit.MACSize)}).Encode()
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"short", good[:10]},
		{"trailing", append(slices.Clone(good[:len(good)-audit.MACSize]), append([]byte{0}, make([]byte, audit.MACSize)...)...)},
		{"version", append([]byte{9}, good[1:]...)},
		{"huge", make([]byte, audit.MaxRecordSize+1)},
		{"seq 0", (&audit.Record{Chain: "c", Seq: 0, Event: audit.Event{Kind: audit.KindCall}, MAC: make([]byte, audit.MACSize)}).Encode()},
		{"bad chain", (&audit.Record{Chain: "{x}", Seq: 1, Event: audit.Event{Kind: audit.KindCall}, MAC: make([]byte, audit.MACSize)}).Encode()},
		{"bad kind", (&audit.Record{Chain: "c", Seq: 1, Event: audit.Event{Kind: "Call!"}, MAC: make([]byte, audit.MACSize)}).Encode()},
	} {
		if _, err := audit.Decode(tc.data); !errors.Is(err, audit.ErrMalformed) {
			t.Errorf("%s: Decode = %v, want ErrMalformed", tc.name, err)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add((&audit.Record{Chain: "c", Seq: 3, Time: time.Unix(5, 6), Event: audit.Event{Kind: audit.KindSend, Org: "T", Channel: "C"}, MAC: make([]byte, audit.MACSize)}).Encode())
	f.Add([]byte{1, 1, 'c', 0x80, 0x00})
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := audit.Decode(data)
		if err != nil {
			return
		}
		// Only the canonical encoding decodes.
		if !bytes.Equal(r.Encode(), data) {
			t.Fatalf("Decode accepted a non-canonical encoding: %x → %x", data, r.Encode())
		}
	})
}

func FuzzDecodeCheckpoint(f *testing.F) {
	keys := newKeys(f)
	f.Add(audit.SignCheckpointForTest(keys, "c", 9, make([]byte, audit.MACSize), time.Unix(1, 2)))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := audit.DecodeCheckpoint(data)
		if err != nil {
			return
		}
		if !bytes.Equal(c.Encode(), data) {
			t.Fatalf("checkpoint round trip changed it: %x → %x", data, c.Encode())
		}
	})
}
