package protocol

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestDropReasonKnown(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		r     DropReason
		known bool
	}{
		{DropInboxFull, true}, {DropTooLarge, true}, {DropSealFailed, true}, {DropAgentIdle, true},
		{"inbox_full ", false}, {"other", false}, {"", false}, {"INBOX_FULL", false},
	} {
		if got := tc.r.Known(); got != tc.known {
			t.Errorf("%q.Known() = %v, want %v", tc.r, got, tc.known)
		}
	}
}

// TestDropNoticeWire pins the notice's JSON: the typed reasons encode as
// the same object keys as before.
func TestDropNoticeWire(t *testing.T) {
	t.Parallel()
	n := DropNotice{Count: 3, Reasons: map[DropReason]int{DropTooLarge: 1, DropInboxFull: 2},
		FirstDroppedAt: 1771465000, LastDroppedAt: 1771465060, EventIDs: []string{"Ev1"}}
	got, err := json.Marshal(n)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"count":3,"reasons":{"inbox_full":2,"too_large":1},"first_dropped_at":1771465000,"last_dropped_at":1771465060,"event_ids":["Ev1"],"event_ids_truncated":false}`
	if string(got) != want {
		t.Fatalf("notice JSON:\n got  %s\n want %s", got, want)
	}
	back, err := ParseDropNotice(got)
	if err != nil || back.Count != 3 || back.Reasons[DropInboxFull] != 2 || back.Reasons[DropTooLarge] != 1 || len(back.EventIDs) != 1 {
		t.Fatalf("ParseDropNotice: %+v, %v", back, err)
	}
}

func TestParseDropNotice(t *testing.T) {
	t.Parallel()
	ids := func(n int) string {
		s := make([]string, n)
		for i := range s {
			s[i] = `"Ev"`
		}
		return "[" + strings.Join(s, ",") + "]"
	}
	for _, tc := range []struct {
		name, payload string
		wantErr       string // "" = valid
	}{
		{"docs example", `{"count":3,"reasons":{"inbox_full":3},"first_dropped_at":1771465000,"last_dropped_at":1771465060,"event_ids":["Ev0A1","Ev0A2","Ev0A3"],"event_ids_truncated":false}`, ""},
		{"unknown reason kept", `{"count":2,"reasons":{"inbox_full":1,"weird":1}}`, ""},
		{"empty object", `{}`, ""},
		{"100 ids", `{"count":100,"event_ids":` + ids(100) + `}`, ""},
		{"not JSON", `{"count":`, "not JSON"},
		{"array", `[]`, "must be a"},
		{"count string", `{"count":"3"}`, `field "count"`},
		{"negative count", `{"count":-1}`, "count is negative"},
		{"negative reason", `{"count":1,"reasons":{"inbox_full":-1}}`, "negative count"},
		{"reason with space", `{"count":1,"reasons":{"inbox full":1}}`, "reason name"},
		{"reason upper case", `{"count":1,"reasons":{"Inbox":1}}`, "reason name"},
		{"empty reason", `{"count":1,"reasons":{"":1}}`, "reason name"},
		{"long reason", `{"count":1,"reasons":{"` + strings.Repeat("a", 65) + `":1}}`, "reason name"},
		{"101 ids", `{"count":101,"event_ids":` + ids(101) + `}`, "more than 100"},
		{"empty id", `{"count":1,"event_ids":[""]}`, "event id"},
		{"long id", `{"count":1,"event_ids":["` + strings.Repeat("E", 257) + `"]}`, "event id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := ParseDropNotice([]byte(tc.payload))
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("unexpected error %v", err)
			case tc.wantErr != "" && (!errors.Is(err, ErrDropNoticeMalformed) || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("error %v, want ErrDropNoticeMalformed mentioning %q", err, tc.wantErr)
			}
		})
	}
}

// FuzzParseDropNotice: never panics; what it accepts satisfies every bound
// it promises, and its errors wrap ErrDropNoticeMalformed.
func FuzzParseDropNotice(f *testing.F) {
	f.Add([]byte(`{"count":3,"reasons":{"inbox_full":3},"first_dropped_at":1,"last_dropped_at":2,"event_ids":["Ev1"],"event_ids_truncated":true}`))
	f.Add([]byte(`{"count":-1}`))
	f.Add([]byte(`{"reasons":{"x y":1}}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		n, err := ParseDropNotice(payload)
		if err != nil {
			if !errors.Is(err, ErrDropNoticeMalformed) {
				t.Fatalf("error %v does not wrap ErrDropNoticeMalformed", err)
			}
			return
		}
		if n.Count < 0 || len(n.EventIDs) > MaxDropNoticeEventIDs {
			t.Fatalf("accepted out-of-bounds notice %+v", n)
		}
		for r, c := range n.Reasons {
			if !r.valid() || c < 0 {
				t.Fatalf("accepted reason %q with count %d", r, c)
			}
		}
		for _, id := range n.EventIDs {
			if id == "" || len(id) > maxDropNoticeEventIDLength {
				t.Fatalf("accepted event id of %d bytes", len(id))
			}
		}
	})
}
