package statetest

import (
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/sealrelay/sealrelay/protocol"
	"github.com/sealrelay/sealrelay/state"
)

// stateDrops: drop records accumulate, are taken into one pending notice,
// survive until confirmed (a second take returns the same notice), and drops
// recorded meanwhile go into the next notice.
func stateDrops(t *testing.T, st state.Store) {
	dr := st
	ctx := context.Background()
	at := time.Unix(1771465000, 0)
	if _, ok, err := dr.TakeDrops(ctx, "A1"); err != nil || ok {
		t.Fatalf("take with nothing recorded: %v %v", ok, err)
	}
	drops := []struct {
		reason protocol.DropReason
		event  string
		at     time.Time
	}{
		{protocol.DropInboxFull, "Ev1", at.Add(2 * time.Second)},
		{protocol.DropInboxFull, "Ev2", at},
		{protocol.DropTooLarge, "", at.Add(5 * time.Second)},
		{protocol.DropSealFailed, "Ev3", at.Add(time.Second)},
	}
	for _, d := range drops {
		if err := dr.RecordDrop(ctx, "A1", string(d.reason), d.event, d.at); err != nil {
			t.Fatal(err)
		}
	}
	if err := dr.RecordDrop(ctx, "A2", string(protocol.DropInboxFull), "EvOther", at); err != nil {
		t.Fatal(err)
	}
	want := protocol.DropNotice{Count: 4,
		Reasons:        map[protocol.DropReason]int{protocol.DropInboxFull: 2, protocol.DropTooLarge: 1, protocol.DropSealFailed: 1},
		FirstDroppedAt: at.Unix(), LastDroppedAt: at.Unix() + 5, EventIDs: []string{"Ev1", "Ev2", "Ev3"}}
	p, ok, err := dr.TakeDrops(ctx, "A1")
	if err != nil || !ok || p.Token == "" {
		t.Fatalf("take: %+v %v %v", p, ok, err)
	}
	if !reflect.DeepEqual(p.Notice, want) {
		t.Fatalf("notice %+v, want %+v", p.Notice, want)
	}
	// Recorded after the take: not in this notice.
	if err := dr.RecordDrop(ctx, "A1", string(protocol.DropInboxFull), "Ev4", at.Add(9*time.Second)); err != nil {
		t.Fatal(err)
	}
	again, ok, err := dr.TakeDrops(ctx, "A1")
	if err != nil || !ok || again.Token != p.Token || !reflect.DeepEqual(again.Notice, want) {
		t.Fatalf("unconfirmed notice not returned again: %+v %v %v", again, ok, err)
	}
	if err := dr.ConfirmDrops(ctx, "A1", "some-other-token"); err != nil {
		t.Fatal(err)
	}
	if again, _, _ := dr.TakeDrops(ctx, "A1"); again.Token != p.Token {
		t.Fatal("a wrong token confirmed the notice")
	}
	if err := dr.ConfirmDrops(ctx, "A1", p.Token); err != nil {
		t.Fatal(err)
	}
	next, ok, err := dr.TakeDrops(ctx, "A1")
	if err != nil || !ok || next.Token == p.Token {
		t.Fatalf("second notice: %+v %v %v", next, ok, err)
	}
	want2 := protocol.DropNotice{Count: 1, Reasons: map[protocol.DropReason]int{protocol.DropInboxFull: 1},
		FirstDroppedAt: at.Unix() + 9, LastDroppedAt: at.Unix() + 9, EventIDs: []string{"Ev4"}}
	if !reflect.DeepEqual(next.Notice, want2) {
		t.Fatalf("second notice %+v, want %+v", next.Notice, want2)
	}
	if err := dr.ConfirmDrops(ctx, "A1", next.Token); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := dr.TakeDrops(ctx, "A1"); err != nil || ok {
		t.Fatalf("take after confirming everything: %v %v", ok, err)
	}
	// Other agents are separate.
	if o, ok, err := dr.TakeDrops(ctx, "A2"); err != nil || !ok || o.Notice.Count != 1 || o.Notice.EventIDs[0] != "EvOther" {
		t.Fatalf("agent A2: %+v %v %v", o, ok, err)
	}

	// Event ids are capped and the cap is reported.
	for i := range protocol.MaxDropNoticeEventIDs + 5 {
		if err := dr.RecordDrop(ctx, "A3", string(protocol.DropInboxFull), fmt.Sprintf("Ev%d", i), at); err != nil {
			t.Fatal(err)
		}
	}
	big, ok, err := dr.TakeDrops(ctx, "A3")
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	if big.Notice.Count != protocol.MaxDropNoticeEventIDs+5 || len(big.Notice.EventIDs) != protocol.MaxDropNoticeEventIDs ||
		!big.Notice.EventIDsTruncated || big.Notice.EventIDs[0] != "Ev0" {
		t.Fatalf("capped notice: count %d, %d ids, truncated %v", big.Notice.Count, len(big.Notice.EventIDs), big.Notice.EventIDsTruncated)
	}
}
