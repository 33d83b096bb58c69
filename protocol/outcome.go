package protocol

import "net/http"

// SendOutcome is what a failed outbound request of an agent (POST /api/send,
// §4.7, or POST /api/call, §8.1) came to, classified once from what the
// wire carries: the HTTP status and the error text of the broker's answer.
// Clients switch on it instead of on statuses and texts. Success has no
// outcome value: the request returned an answer.
type SendOutcome string

// Outcomes of a refused or failed send or call.
const (
	// SendInvalid (400): the request was malformed; the error text says how.
	SendInvalid SendOutcome = "invalid"
	// SendUnauthorized (401, or 403 other than a policy refusal): the
	// broker refused the agent's credentials or signature.
	SendUnauthorized SendOutcome = "unauthorized"
	// SendNotAllowed (403 method_not_allowed or channel_not_allowed): the
	// broker's policy for this agent refused the call; nothing reached Slack.
	SendNotAllowed SendOutcome = "not_allowed"
	// SendNotFound (404, 405): the broker knows no installation for the org,
	// or does not serve the endpoint (a broker without §8.1).
	SendNotFound SendOutcome = "not_found"
	// SendReplay (409): the nonce was already used.
	SendReplay SendOutcome = "replay"
	// SendTooLarge (413): the request exceeded the broker's body limit.
	SendTooLarge SendOutcome = "too_large"
	// SendRateLimited (429, with Retry-After): the broker or Slack
	// rate-limited the request.
	SendRateLimited SendOutcome = "rate_limited"
	// SendSlackError (502 with a Slack error code such as channel_not_found,
	// token_revoked or slack_unavailable): the broker answered for Slack.
	// Another replica would answer the same.
	SendSlackError SendOutcome = "slack_error"
	// SendUnavailable: any other answer (a 5xx of the broker itself, a
	// status this protocol does not define). Trying later may work.
	SendUnavailable SendOutcome = "unavailable"
)

// ClassifySendAnswer returns the outcome of a failed send or call from the
// broker's HTTP status and its error text (the "error" field). A 2xx
// answer with "ok": false counts as 502, as the bridge's client treats it.
func ClassifySendAnswer(status int, errText string) SendOutcome {
	switch {
	case status >= 200 && status <= 299:
		status = http.StatusBadGateway
	}
	switch status {
	case http.StatusBadRequest:
		return SendInvalid
	case http.StatusUnauthorized:
		return SendUnauthorized
	case http.StatusForbidden:
		if errText == ErrMethodNotAllowed || errText == ErrChannelNotAllowed {
			return SendNotAllowed
		}
		return SendUnauthorized
	case http.StatusNotFound, http.StatusMethodNotAllowed:
		return SendNotFound
	case http.StatusConflict:
		return SendReplay
	case http.StatusRequestEntityTooLarge:
		return SendTooLarge
	case http.StatusTooManyRequests:
		return SendRateLimited
	case http.StatusBadGateway:
		if IsSlackErrorCode(errText) {
			return SendSlackError
		}
	}
	return SendUnavailable
}

// IsSlackErrorCode reports whether s looks like a Slack error code: 1–64
// bytes of [a-z0-9_] (Slack codes are snake_case words).
func IsSlackErrorCode(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}
