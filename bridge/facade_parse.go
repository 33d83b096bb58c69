package bridge

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"strings"
	"unicode/utf8"

	"github.com/sealrelay/sealrelay/protocol"
)

// webCall is one parsed Web API request of the app.
type webCall struct {
	// token is the token the app presented (Authorization: Bearer wins
	// over a token argument); it is never forwarded.
	token string
	// encoding is protocol.EncodingForm or protocol.EncodingJSON.
	encoding string
	// args is the JSON object relayed to the broker, without "token".
	args json.RawMessage
}

// apiError is a Web API answer in Slack's form: HTTP status (200 for every
// Slack-level error), error code and an optional human detail.
type apiError struct {
	status     int
	code       string
	detail     string
	retryAfter string
	outcome    string
}

func slackErr(code, detail string) *apiError {
	return &apiError{status: http.StatusOK, code: code, detail: detail, outcome: outcomeInvalid}
}

var errBodyTooLarge = errors.New("request body too large")

// cappedReader reads at most left bytes and then fails with
// errBodyTooLarge if the underlying reader has more.
type cappedReader struct {
	r    io.Reader
	left int64
}

func (c *cappedReader) Read(p []byte) (int, error) {
	if c.left <= 0 {
		var one [1]byte
		n, err := c.r.Read(one[:])
		if n > 0 {
			return 0, errBodyTooLarge
		}
		return 0, err
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	return n, err
}

func tooLarge() *apiError {
	return slackErr("request_too_large", fmt.Sprintf("the request body or its arguments exceed %d bytes (the sealed relay call must fit the broker's 1 MiB request cap)", MaxCallArgsSize))
}

// parseWebAPIRequest reads an app's Web API request the way Slack does:
// query arguments, then an application/x-www-form-urlencoded,
// multipart/form-data (no files) or application/json body, whose
// arguments win over the query's. Repeated form keys: the last value wins.
// The token comes from Authorization: Bearer or, failing that, a token
// argument; the token argument is removed. At most limit bytes of body are
// read.
func parseWebAPIRequest(r *http.Request, limit int64) (*webCall, *apiError) {
	query, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, slackErr("invalid_form_data", "the query string is not valid URL encoding")
	}
	form := map[string]string{}
	for k, vs := range query {
		form[k] = vs[len(vs)-1]
	}
	c := &webCall{encoding: protocol.EncodingForm}
	var jsonArgs map[string]json.RawMessage
	if r.Method == http.MethodPost && r.Body != nil {
		body := &cappedReader{r: r.Body, left: limit}
		ct := r.Header.Get("Content-Type")
		var mt string
		var params map[string]string
		if ct != "" {
			mt, params, err = mime.ParseMediaType(ct)
			if err != nil {
				return nil, slackErr("invalid_post_type", "Content-Type does not parse")
			}
			if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") && !strings.EqualFold(cs, "utf8") {
				return nil, slackErr("invalid_charset", "the body must be UTF-8")
			}
		}
		switch mt {
		case "":
			data, err := io.ReadAll(body)
			if errors.Is(err, errBodyTooLarge) {
				return nil, tooLarge()
			}
			if err != nil {
				return nil, slackErr("invalid_form_data", "the body could not be read")
			}
			if len(bytes.TrimSpace(data)) > 0 {
				return nil, slackErr("invalid_post_type", "a body needs a Content-Type: application/x-www-form-urlencoded, multipart/form-data or application/json")
			}
		case "application/x-www-form-urlencoded":
			data, err := io.ReadAll(body)
			if errors.Is(err, errBodyTooLarge) {
				return nil, tooLarge()
			}
			if err != nil {
				return nil, slackErr("invalid_form_data", "the body could not be read")
			}
			vals, err := url.ParseQuery(string(data))
			if err != nil {
				return nil, slackErr("invalid_form_data", "the body is not valid URL encoding")
			}
			for k, vs := range vals {
				form[k] = vs[len(vs)-1]
			}
		case "multipart/form-data":
			if e := readMultipart(body, params["boundary"], form); e != nil {
				return nil, e
			}
		case "application/json":
			data, err := io.ReadAll(body)
			if errors.Is(err, errBodyTooLarge) {
				return nil, tooLarge()
			}
			if err != nil {
				return nil, slackErr("invalid_json", "the body could not be read")
			}
			if !utf8.Valid(data) {
				return nil, slackErr("invalid_charset", "the body must be UTF-8")
			}
			if err := json.Unmarshal(data, &jsonArgs); err != nil || jsonArgs == nil {
				return nil, slackErr("invalid_json", "the body must be one JSON object")
			}
			c.encoding = protocol.EncodingJSON
		default:
			return nil, slackErr("invalid_post_type", "Content-Type must be application/x-www-form-urlencoded, multipart/form-data or application/json")
		}
	}
	for k, v := range form {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return nil, slackErr("invalid_charset", "arguments must be UTF-8")
		}
	}
	if auth := r.Header.Get("Authorization"); auth != "" {
		if tok, ok := strings.CutPrefix(auth, "Bearer "); ok {
			c.token = strings.TrimSpace(tok)
		}
	}
	if c.encoding == protocol.EncodingJSON {
		if raw, ok := jsonArgs["token"]; ok {
			var s string
			if c.token == "" && json.Unmarshal(raw, &s) == nil {
				c.token = s
			}
			delete(jsonArgs, "token")
		}
		if c.token == "" {
			c.token = form["token"]
		}
		// Query arguments fill in what the JSON body lacks.
		for k, v := range form {
			if _, ok := jsonArgs[k]; !ok && k != "token" {
				jsonArgs[k], _ = json.Marshal(v)
			}
		}
		c.args, err = encodeArgs(jsonArgs)
	} else {
		if c.token == "" {
			c.token = form["token"]
		}
		delete(form, "token")
		c.args, err = encodeArgs(form)
	}
	if err != nil {
		return nil, slackErr("invalid_arguments", "the arguments could not be encoded")
	}
	if len(c.args) > MaxCallArgsSize {
		return nil, tooLarge()
	}
	return c, nil
}

// readMultipart reads the text fields of a multipart/form-data body into
// form. A file part is refused: uploads go through
// files.getUploadURLExternal, whose upload URL is Slack's, not the API's.
func readMultipart(body io.Reader, boundary string, form map[string]string) *apiError {
	if boundary == "" {
		return slackErr("invalid_form_data", "multipart/form-data without a boundary")
	}
	mr := multipart.NewReader(body, boundary)
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			return nil
		}
		if errors.Is(err, errBodyTooLarge) {
			return tooLarge()
		}
		if err != nil {
			return slackErr("invalid_form_data", "the multipart body does not parse")
		}
		if p.FileName() != "" {
			p.Close()
			return slackErr("invalid_arguments", "file uploads: use files.getUploadURLExternal and files.completeUploadExternal; the bridge relays no file parts")
		}
		name := p.FormName()
		if name == "" {
			p.Close()
			return slackErr("invalid_form_data", "a multipart part has no form field name")
		}
		v, err := io.ReadAll(p)
		p.Close()
		if errors.Is(err, errBodyTooLarge) {
			return tooLarge()
		}
		if err != nil {
			return slackErr("invalid_form_data", "the multipart body does not parse")
		}
		form[name] = string(v)
	}
}

// encodeArgs is json.Marshal without HTML escaping (< stays one byte, so
// the size bound means what the app sent).
func encodeArgs(v any) (json.RawMessage, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}
