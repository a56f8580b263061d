//go:build linux

package leakcheck_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/closewait/closewait/leakcheck"
)

// Example tracks a server's accepted connections and a client's dialed
// ones, serves the report at /debug/closewait and checks for leaks.
func Example() {
	tr := leakcheck.New(nil)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	tracked := tr.Listener(ln)
	go func() {
		for {
			c, err := tracked.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close() // without this line, the report names this function
				io.Copy(io.Discard, c)
			}()
		}
	}()

	// The report, for operators and developers.
	mux := http.NewServeMux()
	mux.Handle("/debug/closewait", tr.Handler())

	c, err := tr.Dialer(nil)(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		panic(err)
	}
	c.Write([]byte("hello"))
	c.Close()

	for tr.Len() > 0 { // wait for the server side to close too
		time.Sleep(time.Millisecond)
	}
	rep := tr.Report()
	fmt.Println("tracked:", tr.Len(), "leaked:", rep.CloseWait)
	// Output: tracked: 0 leaked: 0
}
