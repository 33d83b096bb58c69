package broker

import "github.com/sealrelay/sealrelay/protocol"

// stored returns the form in which a sealed copy goes into an inbox: the
// compact binary form with Config.CompactStored, else the JSON every
// broker version reads.
func (s *Server) stored(m *protocol.InboxMessage) []byte {
	if s.cfg.CompactStored {
		return protocol.Stored(m)
	}
	return protocol.StoredJSON(m)
}
