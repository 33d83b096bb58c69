package slackfake

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/slack-go/slack"
)

func newClient(t *testing.T) (*Fake, *slack.Client, string) {
	t.Helper()
	f, srv := newFake(t, Options{})
	f.AddToken("xoxb-methods", Install{TeamID: "T0METH01", TeamName: "Methods", EnterpriseID: "E0METH01"})
	return f, slack.New("xoxb-methods", slack.OptionAPIURL(APIURL(srv.URL))), srv.URL
}

// TestMethodsThroughSlackGo drives every method the fake serves with the
// real slack-go client and checks the answers and the call records.
func TestMethodsThroughSlackGo(t *testing.T) {
	t.Parallel()
	f, api, _ := newClient(t)
	ctx := context.Background()

	at, err := api.AuthTestContext(ctx)
	if err != nil || at.TeamID != "T0METH01" || at.Team != "Methods" || at.UserID != "U0FAKEBOT" || at.BotID != "B0FAKEBOT" || at.EnterpriseID != "E0METH01" {
		t.Fatalf("auth.test: %+v %v", at, err)
	}
	ch, ts, err := api.PostMessageContext(ctx, "C1", slack.MsgOptionText("parent", false))
	if err != nil || ch != "C1" {
		t.Fatalf("postMessage: %v", err)
	}
	if _, _, err := api.PostMessageContext(ctx, "C1", slack.MsgOptionText("reply", false), slack.MsgOptionTS(ts)); err != nil {
		t.Fatal(err)
	}
	if _, err := api.PostEphemeralContext(ctx, "C1", "U1", slack.MsgOptionText("psst", false)); err != nil {
		t.Fatalf("postEphemeral: %v", err)
	}
	if _, _, _, err := api.UpdateMessageContext(ctx, "C1", ts, slack.MsgOptionText("parent!", false)); err != nil {
		t.Fatal(err)
	}
	if err := api.AddReactionContext(ctx, "eyes", slack.NewRefToMessage("C1", ts)); err != nil {
		t.Fatal(err)
	}
	msgs, _, _, err := api.GetConversationRepliesContext(ctx, &slack.GetConversationRepliesParameters{ChannelID: "C1", Timestamp: ts})
	if err != nil || len(msgs) != 2 || msgs[0].Text != "parent!" || msgs[1].Text != "reply" || msgs[0].User != "U0FAKEBOT" {
		t.Fatalf("replies: %+v %v", msgs, err)
	}
	hist, err := api.GetConversationHistoryContext(ctx, &slack.GetConversationHistoryParameters{ChannelID: "C1"})
	if err != nil || len(hist.Messages) != 1 || hist.Messages[0].Text != "parent!" || len(hist.Messages[0].Reactions) != 1 {
		t.Fatalf("history: %+v %v", hist, err)
	}
	info, err := api.GetConversationInfoContext(ctx, &slack.GetConversationInfoInput{ChannelID: "C1"})
	if err != nil || info.ID != "C1" {
		t.Fatalf("conversations.info: %+v %v", info, err)
	}

	sch, sts, err := api.StartStreamContext(ctx, "C1", slack.MsgOptionMarkdownText("Hel"))
	if err != nil || sch != "C1" || sts == "" {
		t.Fatalf("startStream: %v", err)
	}
	if _, _, err := api.AppendStreamContext(ctx, "C1", sts, slack.MsgOptionMarkdownText("lo")); err != nil {
		t.Fatalf("appendStream: %v", err)
	}
	if _, _, err := api.StopStreamContext(ctx, "C1", sts); err != nil {
		t.Fatalf("stopStream: %v", err)
	}
	if _, _, err := api.AppendStreamContext(ctx, "C1", sts, slack.MsgOptionMarkdownText("late")); err == nil || !strings.Contains(err.Error(), "message_not_in_streaming_state") {
		t.Fatalf("append after stop: %v", err)
	}
	if _, _, err := api.DeleteMessageContext(ctx, "C1", sts); err != nil {
		t.Fatalf("delete: %v", err)
	}

	modal := slack.ModalViewRequest{Type: slack.VTModal, Title: slack.NewTextBlockObject("plain_text", "T", false, false)}
	v, err := api.OpenViewContext(ctx, "trig-1", modal)
	if err != nil || v.ID == "" {
		t.Fatalf("views.open: %v", err)
	}
	if _, err := api.UpdateViewContext(ctx, modal, "", "", v.ID); err != nil {
		t.Fatalf("views.update: %v", err)
	}
	if _, err := api.PushViewContext(ctx, "trig-2", modal); err != nil {
		t.Fatalf("views.push: %v", err)
	}
	if err := api.SetAssistantThreadsStatusContext(ctx, slack.AssistantThreadsSetStatusParameters{ChannelID: "D1", ThreadTS: ts, Status: "thinking"}); err != nil {
		t.Fatalf("setStatus: %v", err)
	}
	if err := api.SetAssistantThreadsTitleContext(ctx, slack.AssistantThreadsSetTitleParameters{ChannelID: "D1", ThreadTS: ts, Title: "t"}); err != nil {
		t.Fatalf("setTitle: %v", err)
	}
	u, err := api.GetUserInfoContext(ctx, "U42")
	if err != nil || u.ID != "U42" || u.TeamID != "T0METH01" {
		t.Fatalf("users.info: %+v %v", u, err)
	}
	for _, c := range f.Calls() {
		if c.Token != "xoxb-methods" || c.Error != "" && c.Method != "views.open" && c.Method != "chat.appendStream" {
			t.Fatalf("call %s: token %q error %q", c.Method, c.Token, c.Error)
		}
		if c.ContentType != "application/x-www-form-urlencoded" && c.ContentType != "application/json" {
			t.Fatalf("call %s: content type %q", c.Method, c.ContentType)
		}
	}
}

// TestUploadFlow runs slack-go's external upload (getUploadURLExternal →
// multipart POST to the upload URL → completeUploadExternal) and a raw one.
func TestUploadFlow(t *testing.T) {
	t.Parallel()
	f, api, base := newClient(t)
	ctx := context.Background()
	content := "file bytes \x00\x01 here"
	sum, err := api.UploadFileContext(ctx, slack.UploadFileParameters{Filename: "a.txt", FileSize: len(content),
		Reader: strings.NewReader(content), Title: "A", Channel: "C1"})
	if err != nil || sum.ID == "" {
		t.Fatalf("upload: %v", err)
	}
	ups := f.Uploads()
	if len(ups) != 1 || string(ups[0].Data) != content || !ups[0].Completed || ups[0].Channel != "C1" || ups[0].ContentType != "multipart/form-data" {
		t.Fatalf("uploads: %+v", ups)
	}
	if _, _, _, err := api.GetFileInfoContext(ctx, sum.ID, 0, 0); err != nil {
		t.Fatalf("files.info: %v", err)
	}

	// Raw bytes to the upload URL, and completing an id never uploaded.
	r, err := api.GetUploadURLExternalContext(ctx, slack.GetUploadURLExternalParameters{FileName: "b.bin", FileSize: 3})
	if err != nil || !strings.HasPrefix(r.UploadURL, base+"/upload/") {
		t.Fatalf("getUploadURLExternal: %+v %v", r, err)
	}
	if _, err := api.CompleteUploadExternalContext(ctx, slack.CompleteUploadExternalParameters{Files: []slack.FileSummary{{ID: r.FileID}}}); err == nil || !strings.Contains(err.Error(), "file_not_found") {
		t.Fatalf("complete before upload: %v", err)
	}
	resp, err := http.Post(r.UploadURL, "application/octet-stream", bytes.NewReader([]byte("xyz")))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "OK - 3" {
		t.Fatalf("raw upload: %d %s", resp.StatusCode, b)
	}
	if _, err := api.CompleteUploadExternalContext(ctx, slack.CompleteUploadExternalParameters{Files: []slack.FileSummary{{ID: r.FileID}}}); err != nil {
		t.Fatalf("complete: %v", err)
	}
	resp, err = http.Post(base+"/upload/F0NOPE", "application/octet-stream", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Fatalf("upload to unknown id: %d", resp.StatusCode)
	}
}

// TestJSONBodiesAndUnknownMethods: JSON bodies with a bearer token are
// parsed and recorded; unknown methods answer unknown_method; scripts apply
// to any method name.
func TestJSONBodiesAndUnknownMethods(t *testing.T) {
	t.Parallel()
	f, _, base := newClient(t)
	post := func(method, ct, body string) (int, http.Header, map[string]any) {
		req, _ := http.NewRequest(http.MethodPost, APIURL(base)+method, strings.NewReader(body))
		req.Header.Set("Content-Type", ct)
		req.Header.Set("Authorization", "Bearer xoxb-methods")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, resp.Header, out
	}
	tests := []struct {
		name, method, ct, body string
		script                 *Reply
		wantStatus             int
		wantOK                 bool
		wantError              string
	}{
		{"json post", "chat.postMessage", "application/json; charset=utf-8", `{"channel":"C9","text":"hi","metadata":{"a":1}}`, nil, 200, true, ""},
		{"views.open needs trigger_id", "views.open", "application/json", `{"view":{"type":"modal"}}`, nil, 200, false, "invalid_trigger_id"},
		{"unknown method", "chat.nonsense", "application/x-www-form-urlencoded", "a=b", nil, 200, false, "unknown_method"},
		{"scripted 429 on unknown name", "admin.users.list", "application/x-www-form-urlencoded", "", &Reply{Status: 429, RetryAfter: 3}, 429, false, "ratelimited"},
		{"scripted 503", "conversations.history", "application/json", `{"channel":"C9"}`, &Reply{Status: 503}, 503, false, ""},
	}
	for _, tt := range tests {
		if tt.script != nil {
			f.Script(tt.method, *tt.script)
		}
		status, hdr, out := post(tt.method, tt.ct, tt.body)
		if status != tt.wantStatus {
			t.Fatalf("%s: status %d", tt.name, status)
		}
		if tt.wantStatus == 200 && (out["ok"] != tt.wantOK || tt.wantError != "" && out["error"] != tt.wantError) {
			t.Fatalf("%s: %v", tt.name, out)
		}
		if tt.wantStatus == 429 && hdr.Get("Retry-After") != "3" {
			t.Fatalf("%s: Retry-After %q", tt.name, hdr.Get("Retry-After"))
		}
		calls := f.CallsTo(tt.method)
		last := calls[len(calls)-1]
		if last.Token != "xoxb-methods" {
			t.Fatalf("%s: token %q", tt.name, last.Token)
		}
	}
	c := f.CallsTo("chat.postMessage")[0]
	if c.ContentType != "application/json" || c.Params.Get("channel") != "C9" || c.Params.Get("metadata") != `{"a":1}` || !json.Valid(c.JSON) {
		t.Fatalf("json call record: %+v", c)
	}
}
