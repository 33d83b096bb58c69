package broker

import "time"

// DefaultAccessTokenOverlap is how long an agent's previous access token
// keeps working after a renewal (Config.AccessTokenOverlap).
const DefaultAccessTokenOverlap = 10 * time.Minute
