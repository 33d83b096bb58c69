package protocol

import "testing"

// TestClassifySendAnswer covers every answer the broker gives to a failed
// send or call (shared/protocol.md §4.4, §4.7, §8.1) and the edges.
func TestClassifySendAnswer(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		status int
		text   string
		want   SendOutcome
	}{
		{400, "invalid routing: channel is required", SendInvalid},
		{400, ErrTimestampWindow, SendInvalid},
		{401, ErrInvalidToken, SendUnauthorized},
		{403, ErrInvalidSignature, SendUnauthorized},
		{403, ErrTokenOrgMismatch, SendUnauthorized},
		{403, ErrMethodNotAllowed, SendNotAllowed},
		{403, ErrChannelNotAllowed, SendNotAllowed},
		{403, ErrMethodNotAllowed + ": extra", SendUnauthorized},
		{404, ErrOrgNotFound, SendNotFound},
		{404, "Not Found", SendNotFound},
		{405, "", SendNotFound},
		{409, ErrReplay, SendReplay},
		{413, ErrBodyTooLarge, SendTooLarge},
		{429, ErrRateLimited, SendRateLimited},
		{502, "channel_not_found", SendSlackError},
		{502, "token_revoked", SendSlackError},
		{502, ErrSlackUnavailable, SendSlackError},
		{502, "slack_http_500", SendSlackError},
		{502, "Bad Gateway", SendUnavailable},
		{502, "", SendUnavailable},
		{502, "x" + string(make([]byte, 64)), SendUnavailable},
		{200, "not_in_channel", SendSlackError}, // ok:false with a 2xx
		{500, "internal error", SendUnavailable},
		{503, "state store unavailable", SendUnavailable},
		{504, "", SendUnavailable},
		{418, "teapot", SendUnavailable},
	} {
		if got := ClassifySendAnswer(tc.status, tc.text); got != tc.want {
			t.Errorf("ClassifySendAnswer(%d, %q) = %q, want %q", tc.status, tc.text, got, tc.want)
		}
	}
}
