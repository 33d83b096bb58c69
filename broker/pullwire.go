package broker

import (
	"net/http"
	"sync"

	"github.com/sealrelay/sealrelay/protocol"
)

// pullSize is the JSON a pull response adds per message around its
// encrypted field.
const pullSize = 256

// respBufs holds response buffers of the pull path; buffers beyond
// maxPooledResp are left to the collector.
var respBufs = sync.Pool{New: func() any { return new([]byte) }}

const maxPooledResp = 1 << 20

// writePullResponse writes the 200 answer of a pull carrying msgs, as
// writeJSON(w, 200, protocol.PullResponse{OK: true, Messages: msgs}) does.
func writePullResponse(w http.ResponseWriter, msgs []protocol.InboxMessage) {
	bp := respBufs.Get().(*[]byte)
	n := 32
	for i := range msgs {
		n += len(msgs[i].Encrypted) + len(msgs[i].MessageID) + 2*len(msgs[i].OrgID) + len(msgs[i].BrokerSignature) + pullSize
	}
	b := (*bp)[:0]
	if cap(b) < n {
		b = make([]byte, 0, n)
	}
	b = append(protocol.AppendPullResponse(b, msgs), '\n')
	writeJSONBytes(w, http.StatusOK, b)
	if cap(b) <= maxPooledResp {
		*bp = b[:0]
		respBufs.Put(bp)
	}
}
