package broker

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"

	"github.com/sealrelay/sealrelay/protocol"
	"github.com/sealrelay/sealrelay/state"
)

// mintRequest is the body of POST /admin/api/orgs/{org}/registration-tokens:
// mode "add" (default) or "replace"; confirm repeats the org id.
type mintRequest struct {
	Mode    string `json:"mode"`
	Confirm string `json:"confirm"`
}

// mintToken mints a registration token for the org of the path; the
// answer carries the token once (and broker_url, the public URL a bridge
// registers at, when the handler knows it).
func (h *adminHandler) mintToken(w http.ResponseWriter, r *http.Request) error {
	org := r.PathValue("org")
	if err := protocol.ValidateID(org); err != nil {
		return adminErr(http.StatusBadRequest, "invalid org: %v", err)
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxAdminBody)
	b, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return adminErr(http.StatusRequestEntityTooLarge, "request body over %d bytes", maxAdminBody)
		}
		return adminErr(http.StatusBadRequest, "could not read request body")
	}
	var req mintRequest
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return adminErr(http.StatusBadRequest, "invalid JSON body: %s (want {\"mode\": \"add\"|\"replace\", \"confirm\": \"<org id>\"})", jsonBodyError(err))
	}
	mode, err := state.ParseRegistrationMode(req.Mode)
	if err != nil {
		return adminErr(http.StatusBadRequest, "invalid mode: want \"add\" or \"replace\"")
	}
	if req.Confirm != org {
		return adminErr(http.StatusBadRequest, "confirm does not match the org id %s", org)
	}
	tok, err := h.a.MintToken(r.Context(), org, mode)
	switch {
	case errors.Is(err, ErrNoInstallation):
		return adminErr(http.StatusNotFound, "no installation for org %s: install the Slack app first", org)
	case errors.Is(err, ErrInvalidAdminArgument):
		return adminErr(http.StatusBadRequest, "%s", err.Error())
	case errors.Is(err, ErrMintUnavailable):
		return adminErr(http.StatusNotImplemented, "%s", err.Error())
	case err != nil:
		return err
	}
	h.log.Info("registration token minted", "org_id", org, "mode", mode)
	w.Header().Set("Cache-Control", "no-store")
	ans := map[string]any{"ok": true, "registration_token": tok}
	if h.publicURL != "" {
		ans["broker_url"] = h.publicURL
	}
	writeJSON(w, http.StatusOK, ans)
	return nil
}
