package analyze

import (
	"bytes"
	"fmt"
	"testing"
)

// ssTanpi builds ss -tanpi output with n CLOSE_WAIT sockets held by 10
// processes, in the shape of the recorded sample (info on a continuation line).
func ssTanpi(n int) []byte {
	var b bytes.Buffer
	b.WriteString("State      Recv-Q Send-Q Local Address:Port  Peer Address:Port Process\n")
	b.WriteString("LISTEN     0      4096       10.0.0.1:8080      0.0.0.0:*     users:((\"java\",pid=4121,fd=5))\n\t bbr cwnd:10\n")
	for i := range n {
		fmt.Fprintf(&b, "CLOSE-WAIT %d      0          10.0.0.1:8080    10.%d.%d.%d:%d users:((\"java\",pid=%d,fd=%d))\n", i%2, i>>16&255, i>>8&255, i&255, 1024+i%60000, 4121+i%10, 10+i)
		fmt.Fprintf(&b, "\t ts sack bbr wscale:10,10 rto:200 rtt:0.01/0.005 ato:40 mss:32768 pmtu:65535 rcvmss:536 advmss:65483 cwnd:10 bytes_received:1 segs_out:1 segs_in:3 send 262144000000bps lastsnd:%d lastrcv:%d lastack:%d pacing_rate 524288000000bps delivered:1 app_limited rcv_space:65483 rcv_ssthresh:65483 minrtt:0.01 snd_wnd:65536\n", 4000+i, 4000+i, 3500+i)
	}
	return b.Bytes()
}

// BenchmarkParseSS parses ss -tanpi output of 100k CLOSE_WAIT sockets.
func BenchmarkParseSS(b *testing.B) {
	data := ssTanpi(100_000)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		res, err := Parse(data, Options{})
		if err != nil {
			b.Fatal(err)
		}
		if len(res.Snapshot.Sockets) != 100_000 {
			b.Fatalf("%d sockets", len(res.Snapshot.Sockets))
		}
	}
}

// ssManyOwners builds one ss -tanp line whose socket n processes share
// (users:((...),(...),...)), as a fork server's listener or a hostile input.
func ssManyOwners(n int) []byte {
	var b bytes.Buffer
	b.WriteString("State      Recv-Q Send-Q Local Address:Port  Peer Address:Port Process\n")
	b.WriteString("CLOSE-WAIT 1      0          10.0.0.1:8080    10.0.0.2:4000 users:(")
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "(\"worker\",pid=%d,fd=%d)", 1000+i, 3+i%1000)
	}
	b.WriteString(")\n")
	return b.Bytes()
}

// BenchmarkParseSSManyOwners parses one ss line listing 100k owners: linear,
// not quadratic, in the owners of one socket (issue 16).
//
//	go test ./internal/analyze -run '^$' -bench ParseSSManyOwners -benchtime 3x
func BenchmarkParseSSManyOwners(b *testing.B) {
	data := ssManyOwners(100_000)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		res, err := Parse(data, Options{})
		if err != nil {
			b.Fatal(err)
		}
		if n := len(res.Snapshot.Sockets[0].Owners); n != 100_000 {
			b.Fatalf("%d owners", n)
		}
	}
}
