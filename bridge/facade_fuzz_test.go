package bridge

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/sealrelay/sealrelay/crypto"
	"github.com/sealrelay/sealrelay/protocol"
)

// FuzzParseWebAPIRequest feeds arbitrary content types, query strings,
// bodies and Authorization headers to the Web API request parser. It must
// never panic; what it accepts must be a JSON object of at most
// MaxCallArgsSize bytes without a token argument (form args: all strings,
// valid UTF-8); what it refuses must carry a Slack error code.
func FuzzParseWebAPIRequest(f *testing.F) {
	for _, s := range []struct{ method, ct, query, body, auth string }{
		{"POST", "application/x-www-form-urlencoded", "", "channel=C1&text=hi&token=xoxb-1", ""},
		{"POST", "application/json; charset=utf-8", "", `{"channel":"C1","blocks":[{"type":"section"}],"token":"t"}`, "Bearer xoxb-2"},
		{"GET", "", "channel=C1&limit=5&token=x", "", ""},
		{"POST", "multipart/form-data; boundary=XX", "", "--XX\r\nContent-Disposition: form-data; name=\"channel\"\r\n\r\nC1\r\n--XX--\r\n", ""},
		{"POST", "multipart/form-data; boundary=XX", "", "--XX\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n\r\nabc\r\n--XX--\r\n", ""},
		{"POST", "application/json", "a=1", `null`, ""},
		{"POST", "text/plain", "", "x", "Basic abc"},
		{"POST", "application/x-www-form-urlencoded; charset=latin1", "", "a=%E9", ""},
		{"POST", "", "%zz", "", ""},
	} {
		f.Add(s.method == "POST", s.ct, s.query, []byte(s.body), s.auth)
	}
	f.Fuzz(func(t *testing.T, post bool, ct, query string, body []byte, auth string) {
		method := http.MethodGet
		if post {
			method = http.MethodPost
		}
		r, err := http.NewRequest(method, "http://127.0.0.1:7890/api/chat.postMessage", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		r.URL.RawQuery = query
		r.Header.Set("Content-Type", ct)
		r.Header.Set("Authorization", auth)
		c, e := parseWebAPIRequest(r, 4096)
		if e != nil {
			if c != nil || e.code == "" || e.status != http.StatusOK || strings.ContainsAny(e.code, " \n") {
				t.Fatalf("bad refusal %+v", e)
			}
			return
		}
		if len(c.args) > MaxCallArgsSize {
			t.Fatalf("args of %d bytes", len(c.args))
		}
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(c.args, &obj); err != nil || obj == nil {
			t.Fatalf("args %q are not a JSON object: %v", c.args, err)
		}
		if _, ok := obj["token"]; ok {
			t.Fatalf("token kept in args %q", c.args)
		}
		switch c.encoding {
		case protocol.EncodingForm:
			var m map[string]string
			if err := json.Unmarshal(c.args, &m); err != nil {
				t.Fatalf("form args %q are not all strings: %v", c.args, err)
			}
			for k, v := range m {
				if !utf8.ValidString(k) || !utf8.ValidString(v) {
					t.Fatalf("form args %q not UTF-8", c.args)
				}
			}
		case protocol.EncodingJSON:
		default:
			t.Fatalf("encoding %q", c.encoding)
		}
	})
}

// FuzzOpenCallResponse feeds arbitrary response nonces and sealed answers
// to the /api/call response opener. It must never panic, must refuse the
// request's own nonce, and what it accepts must be a JSON object that the
// broker's key sealed.
func FuzzOpenCallResponse(f *testing.F) {
	brokerBox, _ := crypto.GenerateBoxKeyPair()
	agentBox, _ := crypto.GenerateBoxKeyPair()
	agentSign, _ := crypto.GenerateSigningKey()
	brokerSign, _ := crypto.GenerateSigningKey()
	b, err := New(Config{
		Identity: Identity{BrokerURLs: []string{"http://127.0.0.1:1"}, OrgID: "T0123ABCD", BoxKey: agentBox, SigningKey: agentSign,
			BrokerBoxKey: brokerBox.Public, BrokerSigningKey: brokerSign.Public(), AccessToken: "x"},
		StateDir: f.TempDir(), Stream: true,
	}, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { b.Close() })
	var reqNonce [crypto.NonceSize]byte
	reqNonce[0] = 7
	broker := brokerBox.Precompute(agentBox.Public)
	for _, pt := range []string{`{"ok":true}`, `{"ok":false,"error":"x"}`, `[1]`, `"s"`, ``, `{`} {
		ct, n, err := broker.Seal([]byte(pt))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(base64.StdEncoding.EncodeToString(n[:]), base64.StdEncoding.EncodeToString(ct))
		f.Add(base64.StdEncoding.EncodeToString(reqNonce[:]), base64.StdEncoding.EncodeToString(broker.SealWithNonce([]byte(pt), &reqNonce)))
	}
	f.Add("", "")
	f.Add("AAAA", "////")
	f.Fuzz(func(t *testing.T, nonce, sealed string) {
		out, err := b.openCallResponse(&protocol.CallResponse{OK: true, ResponseNonce: nonce, EncryptedResponse: sealed}, reqNonce)
		if err != nil {
			if out != nil || !errors.Is(err, ErrBrokerFault) {
				t.Fatalf("refusal %q, %v", out, err)
			}
			return
		}
		if nonce == base64.StdEncoding.EncodeToString(reqNonce[:]) {
			t.Fatal("accepted the request's nonce")
		}
		var obj map[string]json.RawMessage
		if json.Unmarshal(out, &obj) != nil || obj == nil {
			t.Fatalf("accepted %q, not a JSON object", out)
		}
	})
}
