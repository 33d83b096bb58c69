package bridge

import (
	"fmt"
	"net/url"
	"strings"
)

// normalizeOrigin returns an origin as scheme://host[:port] in lower case,
// or an error when o is not an http(s) origin (no path, query or
// credentials).
func normalizeOrigin(o string) (string, error) {
	u, err := url.Parse(strings.TrimSpace(o))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
		u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("web API origin %q: want scheme://host[:port] such as http://localhost:5173", o)
	}
	return strings.ToLower(u.Scheme + "://" + u.Host), nil
}

// validateWebAPIOrigins checks Config.WebAPIAllowedOrigins.
func validateWebAPIOrigins(origins []string) error {
	for _, o := range origins {
		if _, err := normalizeOrigin(o); err != nil {
			return fmt.Errorf("config: %w", err)
		}
	}
	return nil
}
