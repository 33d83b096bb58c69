package audit

import "time"

// SignCheckpointForTest returns an encoded checkpoint signed with keys.
func SignCheckpointForTest(keys *Keys, chain string, seq uint64, mac []byte, at time.Time) []byte {
	c := &Checkpoint{Chain: chain, Seq: seq, MAC: mac, Time: at.UTC()}
	keys.sign(c)
	return c.Encode()
}

// RemacForTest sets r.MAC to the MAC after prev under keys and returns
// r's encoding.
func RemacForTest(keys *Keys, prev []byte, r *Record) []byte {
	r.MAC = keys.recordMAC(prev, r.body())
	return r.Encode()
}
