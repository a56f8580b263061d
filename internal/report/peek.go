package report

import (
	"bufio"
	"fmt"

	"github.com/closewait/closewait/internal/peek"
)

// PeekNote marks peeked text in the JSON as what it is.
const PeekNote = "application data read with MSG_PEEK, not consumed"

// Peek is what closewait explain --peek read from one socket of a finding:
// the first bytes the peer sent that the application never read.
type Peek struct {
	Socket string // "local->remote"
	Unread int    // bytes unread on the socket (its Recv-Q without the FIN)
	Data   []byte // the first of them, as peeked
	Err    error  // why they could not be read, or nil
}

// JSONPeeked is a finding's "peeked" object (explain --peek).
type JSONPeeked struct {
	Socket string `json:"socket"`
	Bytes  int    `json:"bytes"`           // unread on the socket (Recv-Q without the FIN)
	Text   string `json:"text"`            // the first of them, printable (peek.Printable)
	Note   string `json:"note"`            // PeekNote
	Error  string `json:"error,omitempty"` // why the bytes could not be read; Text is then empty
}

// AddPeeks sets the "peeked" object of the findings of jp that peeks has,
// by finding index.
func AddPeeks(jp *JSONProcess, peeks map[int]Peek) {
	for i, pk := range peeks {
		if i < 0 || i >= len(jp.Findings) {
			continue
		}
		jv := &JSONPeeked{Socket: pk.Socket, Bytes: pk.Unread, Text: peek.Printable(pk.Data), Note: PeekNote}
		if pk.Err != nil {
			jv.Error, jv.Text = pk.Err.Error(), ""
		}
		jp.Findings[i].Peeked = jv
	}
}

// writePeek prints a finding's peeked bytes under its evidence.
func writePeek(bw *bufio.Writer, pk Peek, ok bool) {
	if !ok {
		return
	}
	if pk.Err != nil {
		fmt.Fprintf(bw, "     Peeked: could not read %s: %v\n", pk.Socket, pk.Err)
		return
	}
	fmt.Fprintf(bw, "     Peeked (application data, read with MSG_PEEK and left unread):\n")
	fmt.Fprintf(bw, "       the peer sent, unread: \"%s\"\n", peek.Printable(pk.Data))
	fmt.Fprintf(bw, "       %s unread on %s\n", bytesWord(pk.Unread), pk.Socket)
}

func bytesWord(n int) string {
	if n == 1 {
		return "1 byte"
	}
	return Thousands(n) + " bytes"
}
