package slackfake

import (
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
)

// method is one Web API method the fake serves.
type method struct {
	needToken bool
	fn        apiFuncR
}

// methods returns the Web API methods the fake knows. Any other name is
// answered with unknown_method, as Slack does.
func (f *Fake) methods() map[string]method {
	plain := func(fn apiFunc) method {
		return method{needToken: true, fn: func(_ *http.Request, tok string, p url.Values) (map[string]any, string) { return fn(tok, p) }}
	}
	return map[string]method{
		"oauth.v2.access":                       {needToken: false, fn: func(_ *http.Request, tok string, p url.Values) (map[string]any, string) { return f.oauthAccess(tok, p) }},
		"auth.test":                             plain(f.authTest),
		"chat.postMessage":                      plain(f.postMessage),
		"chat.postEphemeral":                    plain(f.postEphemeral),
		"chat.update":                           plain(f.update),
		"chat.delete":                           plain(f.deleteMessage),
		"chat.startStream":                      plain(f.startStream),
		"chat.appendStream":                     plain(f.appendStream),
		"chat.stopStream":                       plain(f.stopStream),
		"reactions.add":                         plain(f.reactionsAdd),
		"conversations.history":                 plain(f.history),
		"conversations.replies":                 plain(f.replies),
		"conversations.info":                    plain(f.conversationInfo),
		"views.open":                            plain(f.viewsOpen(true)),
		"views.push":                            plain(f.viewsOpen(true)),
		"views.update":                          plain(f.viewsUpdate),
		"assistant.threads.setStatus":           plain(f.assistantThread("status")),
		"assistant.threads.setSuggestedPrompts": plain(f.assistantThread("prompts")),
		"assistant.threads.setTitle":            plain(f.assistantThread("title")),
		"users.info":                            plain(f.usersInfo),
		"files.getUploadURLExternal":            {needToken: true, fn: f.getUploadURL},
		"files.completeUploadExternal":          plain(f.completeUpload),
		"files.info":                            plain(f.filesInfo),
	}
}

// dispatch serves /api/<method>.
func (f *Fake) dispatch(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("method")
	m, ok := f.known[name]
	if !ok {
		m = method{fn: func(*http.Request, string, url.Values) (map[string]any, string) { return nil, "unknown_method" }}
	}
	f.apiR(name, m.needToken, m.fn)(w, r)
}

// Upload is a file created with files.getUploadURLExternal.
type Upload struct {
	ID       string
	Filename string
	Length   int
	// Data is what was POSTed to the upload URL (nil until then).
	Data []byte
	// ContentType is the upload request's media type.
	ContentType string
	// Completed is set by files.completeUploadExternal.
	Completed bool
	Title     string
	Channel   string
}

// Uploads returns a copy of every file upload, ordered by file id.
func (f *Fake) Uploads() []Upload {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]Upload, 0, len(f.uploads))
	for _, u := range f.uploads {
		c := *u
		c.Data = append([]byte(nil), u.Data...)
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// AddMessage stores a message as if it had been posted (for serving
// conversations.history and replies) and returns its ts (generated when
// m.TS is empty).
func (f *Fake) AddMessage(m Message) string {
	if m.TS == "" {
		m.TS = f.nextTS()
	}
	f.mu.Lock()
	f.messages[m.Channel+"/"+m.TS] = &m
	f.mu.Unlock()
	return m.TS
}

func (f *Fake) nextID(prefix string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seq++
	return fmt.Sprintf("%s0FAKE%06d", prefix, f.seq)
}

func messageJSON(m *Message) map[string]any {
	out := map[string]any{"type": "message", "ts": m.TS, "text": m.Text}
	if m.User != "" {
		out["user"] = m.User
	}
	if m.BotID != "" {
		out["bot_id"] = m.BotID
	}
	if m.ThreadTS != "" {
		out["thread_ts"] = m.ThreadTS
	}
	if m.Blocks != "" {
		var b any
		if json.Unmarshal([]byte(m.Blocks), &b) == nil {
			out["blocks"] = b
		}
	}
	if len(m.Reactions) > 0 {
		rs := make([]map[string]any, 0, len(m.Reactions))
		for _, r := range m.Reactions {
			rs = append(rs, map[string]any{"name": r, "count": 1})
		}
		out["reactions"] = rs
	}
	return out
}

func (f *Fake) postEphemeral(_ string, p url.Values) (map[string]any, string) {
	switch {
	case p.Get("channel") == "":
		return nil, "channel_not_found"
	case p.Get("user") == "":
		return nil, "user_not_in_channel"
	case p.Get("text") == "" && p.Get("blocks") == "" && p.Get("attachments") == "":
		return nil, "no_text"
	}
	return map[string]any{"message_ts": f.nextTS()}, ""
}

func (f *Fake) deleteMessage(_ string, p url.Values) (map[string]any, string) {
	ch, ts := p.Get("channel"), p.Get("ts")
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.messages[ch+"/"+ts] == nil {
		return nil, "message_not_found"
	}
	delete(f.messages, ch+"/"+ts)
	return map[string]any{"channel": ch, "ts": ts}, ""
}

func (f *Fake) startStream(tok string, p url.Values) (map[string]any, string) {
	ch := p.Get("channel")
	if ch == "" {
		return nil, "channel_not_found"
	}
	inst := f.instFor(tok)
	ts := f.nextTS()
	m := &Message{Channel: ch, TS: ts, ThreadTS: p.Get("thread_ts"), Text: p.Get("markdown_text"),
		User: inst.BotUserID, BotID: inst.BotID, Streaming: true}
	f.mu.Lock()
	f.messages[ch+"/"+ts] = m
	f.mu.Unlock()
	return map[string]any{"channel": ch, "ts": ts}, ""
}

func (f *Fake) appendStream(_ string, p url.Values) (map[string]any, string) {
	ch, ts := p.Get("channel"), p.Get("ts")
	if p.Get("markdown_text") == "" {
		return nil, "invalid_arguments"
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	m := f.messages[ch+"/"+ts]
	switch {
	case m == nil:
		return nil, "message_not_found"
	case !m.Streaming:
		return nil, "message_not_in_streaming_state"
	}
	m.Text += p.Get("markdown_text")
	return map[string]any{"channel": ch, "ts": ts}, ""
}

func (f *Fake) stopStream(_ string, p url.Values) (map[string]any, string) {
	ch, ts := p.Get("channel"), p.Get("ts")
	f.mu.Lock()
	defer f.mu.Unlock()
	m := f.messages[ch+"/"+ts]
	switch {
	case m == nil:
		return nil, "message_not_found"
	case !m.Streaming:
		return nil, "message_not_in_streaming_state"
	}
	m.Text += p.Get("markdown_text")
	m.Streaming = false
	return map[string]any{"channel": ch, "ts": ts, "message": messageJSON(m)}, ""
}

// channelMessages returns the messages of ch matching keep, oldest first.
func (f *Fake) channelMessages(ch string, keep func(*Message) bool) []map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	var ms []*Message
	for _, m := range f.messages {
		if m.Channel == ch && keep(m) {
			ms = append(ms, m)
		}
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].TS < ms[j].TS })
	out := make([]map[string]any, 0, len(ms))
	for _, m := range ms {
		out = append(out, messageJSON(m))
	}
	return out
}

func (f *Fake) history(_ string, p url.Values) (map[string]any, string) {
	ch := p.Get("channel")
	if ch == "" {
		return nil, "channel_not_found"
	}
	msgs := f.channelMessages(ch, func(m *Message) bool { return m.ThreadTS == "" || m.ThreadTS == m.TS })
	for i, j := 0, len(msgs)-1; i < j; i, j = i+1, j-1 { // newest first, as Slack
		msgs[i], msgs[j] = msgs[j], msgs[i]
	}
	return map[string]any{"messages": msgs, "has_more": false}, ""
}

func (f *Fake) replies(_ string, p url.Values) (map[string]any, string) {
	ch, ts := p.Get("channel"), p.Get("ts")
	if ch == "" {
		return nil, "channel_not_found"
	}
	msgs := f.channelMessages(ch, func(m *Message) bool { return m.TS == ts || m.ThreadTS == ts })
	if len(msgs) == 0 {
		return nil, "thread_not_found"
	}
	return map[string]any{"messages": msgs, "has_more": false}, ""
}

func (f *Fake) conversationInfo(_ string, p url.Values) (map[string]any, string) {
	ch := p.Get("channel")
	if ch == "" {
		return nil, "channel_not_found"
	}
	return map[string]any{"channel": map[string]any{
		"id": ch, "name": "fake-" + strings.ToLower(ch), "is_channel": strings.HasPrefix(ch, "C"),
		"is_im": strings.HasPrefix(ch, "D"), "is_private": strings.HasPrefix(ch, "G"), "is_member": true,
	}}, ""
}

func (f *Fake) viewsOpen(needTrigger bool) apiFunc {
	return func(_ string, p url.Values) (map[string]any, string) {
		if needTrigger && p.Get("trigger_id") == "" {
			return nil, "invalid_trigger_id"
		}
		return f.storeView(f.nextID("V"), p.Get("view"))
	}
}

func (f *Fake) viewsUpdate(_ string, p url.Values) (map[string]any, string) {
	id := p.Get("view_id")
	if id == "" && p.Get("external_id") == "" {
		return nil, "invalid_arguments"
	}
	if id != "" {
		f.mu.Lock()
		_, ok := f.views[id]
		f.mu.Unlock()
		if !ok {
			return nil, "not_found"
		}
	} else {
		id = "V0EXT" + p.Get("external_id")
	}
	return f.storeView(id, p.Get("view"))
}

func (f *Fake) storeView(id, view string) (map[string]any, string) {
	var v map[string]any
	if view == "" || json.Unmarshal([]byte(view), &v) != nil || v == nil {
		return nil, "invalid_arguments"
	}
	if v["type"] != "modal" && v["type"] != "home" {
		return nil, "invalid_arguments"
	}
	f.mu.Lock()
	f.views[id] = view
	f.mu.Unlock()
	v["id"] = id
	return map[string]any{"view": v}, ""
}

func (f *Fake) assistantThread(field string) apiFunc {
	return func(_ string, p url.Values) (map[string]any, string) {
		if p.Get("channel_id") == "" || p.Get("thread_ts") == "" || p.Get(field) == "" && field != "status" {
			return nil, "invalid_arguments"
		}
		return map[string]any{}, ""
	}
}

func (f *Fake) usersInfo(tok string, p url.Values) (map[string]any, string) {
	u := p.Get("user")
	if u == "" || (u[0] != 'U' && u[0] != 'W') {
		return nil, "user_not_found"
	}
	inst := f.instFor(tok)
	return map[string]any{"user": map[string]any{
		"id": u, "team_id": inst.TeamID, "name": "user-" + strings.ToLower(u), "real_name": "User " + u,
		"is_bot": u == inst.BotUserID, "deleted": false, "tz": "Europe/Berlin",
		"profile": map[string]any{"display_name": "user-" + strings.ToLower(u), "real_name": "User " + u},
	}}, ""
}

func baseURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

func (f *Fake) getUploadURL(r *http.Request, _ string, p url.Values) (map[string]any, string) {
	name := p.Get("filename")
	n, err := strconv.Atoi(p.Get("length"))
	if name == "" || err != nil || n <= 0 {
		return nil, "invalid_arguments"
	}
	id := f.nextID("F")
	f.mu.Lock()
	f.uploads[id] = &Upload{ID: id, Filename: name, Length: n}
	f.mu.Unlock()
	return map[string]any{"upload_url": baseURL(r) + "/upload/" + id, "file_id": id}, ""
}

// upload accepts the bytes of a file, raw or as multipart/form-data (the
// first file part, or the "file" field), as Slack's upload URL does, and
// answers "OK - <length>".
func (f *Fake) upload(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	var data []byte
	var err error
	if ct == "multipart/form-data" {
		data, err = multipartFile(r)
	} else {
		data, err = io.ReadAll(io.LimitReader(r.Body, 64<<20))
	}
	f.mu.Lock()
	u := f.uploads[id]
	if u != nil && err == nil {
		u.Data, u.ContentType = data, ct
	}
	f.mu.Unlock()
	status := http.StatusOK
	switch {
	case u == nil:
		status = http.StatusNotFound
	case err != nil:
		status = http.StatusBadRequest
	}
	f.record(Call{Method: "upload", Params: url.Values{"file_id": {id}}, ContentType: ct, Status: status})
	if status != http.StatusOK {
		http.Error(w, http.StatusText(status), status)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintf(w, "OK - %d", len(data))
}

func multipartFile(r *http.Request) ([]byte, error) {
	if err := r.ParseMultipartForm(64 << 20); err != nil {
		return nil, err
	}
	for _, fhs := range r.MultipartForm.File {
		if len(fhs) == 0 {
			continue
		}
		fh, err := fhs[0].Open()
		if err != nil {
			return nil, err
		}
		defer fh.Close()
		return io.ReadAll(fh)
	}
	if v := r.MultipartForm.Value["file"]; len(v) > 0 {
		return []byte(v[0]), nil
	}
	return nil, fmt.Errorf("no file part")
}

func (f *Fake) completeUpload(_ string, p url.Values) (map[string]any, string) {
	var files []struct {
		ID    string `json:"id"`
		Title string `json:"title"`
	}
	if err := json.Unmarshal([]byte(p.Get("files")), &files); err != nil || len(files) == 0 {
		return nil, "invalid_arguments"
	}
	ch := p.Get("channel_id")
	if ch == "" {
		ch = p.Get("channels")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, fl := range files {
		if u := f.uploads[fl.ID]; u == nil || u.Data == nil {
			return nil, "file_not_found"
		}
	}
	out := make([]map[string]any, 0, len(files))
	for _, fl := range files {
		u := f.uploads[fl.ID]
		u.Completed, u.Title, u.Channel = true, fl.Title, ch
		if u.Title == "" {
			u.Title = u.Filename
		}
		out = append(out, fileJSON(u))
	}
	return map[string]any{"files": out}, ""
}

func fileJSON(u *Upload) map[string]any {
	return map[string]any{"id": u.ID, "name": u.Filename, "title": u.Title, "size": len(u.Data)}
}

func (f *Fake) filesInfo(_ string, p url.Values) (map[string]any, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	u := f.uploads[p.Get("file")]
	if u == nil || !u.Completed {
		return nil, "file_not_found"
	}
	return map[string]any{"file": fileJSON(u)}, ""
}
