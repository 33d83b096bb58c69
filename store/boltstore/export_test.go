package boltstore

// waiting reports how many Pulls of this process wait on inbox.
func (s *Inbox) waiting(inbox string) int { return s.hub.Count(inbox) }
