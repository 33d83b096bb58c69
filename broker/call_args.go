package broker

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/url"
	"strings"

	"github.com/sealrelay/sealrelay/crypto"
	"github.com/sealrelay/sealrelay/protocol"
)

// maxCallChannels bounds the channels one call may name.
const maxCallChannels = 100

// slackRequest is the Slack request an api.call body turns into.
type slackRequest struct {
	contentType string
	body        []byte // caller wipes it
	channels    []string
	// channelsParsed is false when a channel argument was not a string (or
	// list of strings): a channel-restricted policy then refuses the call.
	channelsParsed bool
}

// buildSlackRequest turns a decrypted CallBody into the Slack request body,
// dropping any token argument and collecting the channel, channel_id and
// channels arguments. Errors name the problem, never argument values.
func buildSlackRequest(pt []byte) (*slackRequest, error) {
	var body protocol.CallBody
	if err := json.Unmarshal(pt, &body); err != nil {
		return nil, errors.New("invalid encrypted_body: not a JSON object with encoding and args")
	}
	defer crypto.Wipe(body.Args)
	args := bytes.TrimSpace(body.Args)
	if len(args) == 0 || args[0] != '{' {
		return nil, errors.New("invalid encrypted_body: args must be a JSON object")
	}
	switch body.Encoding {
	case protocol.EncodingForm:
		var m map[string]string
		if err := json.Unmarshal(args, &m); err != nil {
			return nil, errors.New("invalid encrypted_body: form args must be an object of strings")
		}
		delete(m, "token")
		form := url.Values{}
		for k, v := range m {
			form.Set(k, v)
		}
		req := &slackRequest{contentType: "application/x-www-form-urlencoded", body: []byte(form.Encode()), channelsParsed: true}
		req.addChannel(m["channel"])
		req.addChannel(m["channel_id"])
		req.addChannelList(m["channels"])
		return req.check()
	case protocol.EncodingJSON:
		var m map[string]json.RawMessage
		if err := json.Unmarshal(args, &m); err != nil {
			return nil, errors.New("invalid encrypted_body: json args must be an object")
		}
		defer func() {
			for _, v := range m {
				crypto.Wipe(v)
			}
		}()
		delete(m, "token")
		b, err := json.Marshal(m)
		if err != nil {
			return nil, errors.New("invalid encrypted_body: json args do not re-encode")
		}
		req := &slackRequest{contentType: "application/json; charset=utf-8", body: b, channelsParsed: true}
		for _, k := range []string{"channel", "channel_id"} {
			if raw, ok := m[k]; ok {
				var s string
				if json.Unmarshal(raw, &s) != nil {
					req.channelsParsed = false
					continue
				}
				req.addChannel(s)
			}
		}
		if raw, ok := m["channels"]; ok {
			var s string
			var list []string
			switch {
			case json.Unmarshal(raw, &s) == nil:
				req.addChannelList(s)
			case json.Unmarshal(raw, &list) == nil:
				for _, c := range list {
					req.addChannel(c)
				}
			default:
				req.channelsParsed = false
			}
		}
		return req.check()
	}
	return nil, errors.New("invalid encrypted_body: encoding must be form or json")
}

func (r *slackRequest) addChannel(c string) {
	if c = strings.TrimSpace(c); c != "" {
		r.channels = append(r.channels, c)
	}
}

func (r *slackRequest) addChannelList(s string) {
	for _, c := range strings.Split(s, ",") {
		r.addChannel(c)
	}
}

func (r *slackRequest) check() (*slackRequest, error) {
	if len(r.channels) > maxCallChannels {
		crypto.Wipe(r.body)
		return nil, errors.New("invalid encrypted_body: too many channels")
	}
	return r, nil
}
